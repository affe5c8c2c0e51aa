//! The request body on its way upstream, in a form a retry can send again.
//!
//! - No body (most requests): nothing to keep.
//! - A body of known length up to [`REPLAY_LIMIT`]: read whole before the first attempt (as
//!   nginx buffers request bodies), so every attempt sends the same bytes.
//! - Anything else streams through. The stream is handed to the first attempt only when that
//!   attempt starts sending it, so an attempt that never sent (a failed connect) leaves it for
//!   the next one; once sent, it cannot be replayed.
//!
//! While streaming, a pause longer than the send timeout ends the upload with an error.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::oneshot;

use super::idle::Idle;
use super::ProxyError;

/// The largest request body that is buffered, and so can be replayed by a retry.
pub const REPLAY_LIMIT: u64 = 64 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body, owned by the request across its attempts.
pub enum RequestBody {
    Buffered(Bytes),
    Streamed(Arc<Mutex<Option<Incoming>>>),
}

impl RequestBody {
    /// Takes the client's body: buffers it if it is small and of known length (waiting at most
    /// `send_idle` for it), else prepares it for streaming.
    pub async fn read(
        body: Incoming,
        headers: &HeaderMap,
        send_idle: Duration,
    ) -> Result<Self, ProxyError> {
        if body.is_end_stream() {
            return Ok(RequestBody::Buffered(Bytes::new()));
        }
        let length = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match length {
            Some(length) if length <= REPLAY_LIMIT => {
                let collected = tokio::time::timeout(send_idle, body.collect())
                    .await
                    .map_err(|_| ProxyError::ClientBodyTimeout)?
                    .map_err(|e| ProxyError::ClientBody(e.into()))?;
                Ok(RequestBody::Buffered(collected.to_bytes()))
            }
            _ => Ok(RequestBody::Streamed(Arc::new(Mutex::new(Some(body))))),
        }
    }

    /// A body for the next attempt (retries check [`replayable`](Self::replayable) first: a
    /// stream that went to an earlier attempt fails this one). For a streamed body, also a
    /// receiver that resolves when the upload has ended.
    pub fn attempt(&self, send_idle: Duration) -> (UpstreamBody, Option<Uploaded>) {
        match self {
            RequestBody::Buffered(bytes) => (UpstreamBody::full(bytes.clone()), None),
            RequestBody::Streamed(shared) => {
                let (done, uploaded) = oneshot::channel();
                let body = UpstreamBody {
                    kind: Kind::Stream {
                        shared: shared.clone(),
                        taken: None,
                        idle: Idle::new(send_idle, "the client sent no request body data"),
                        done: Some(done),
                    },
                };
                (body, Some(Uploaded(uploaded)))
            }
        }
    }

    /// Whether another attempt can send the whole body.
    pub fn replayable(&self) -> bool {
        matches!(self, RequestBody::Buffered(_)) || !self.sent()
    }

    /// Whether some of the body may have gone upstream already.
    pub fn sent(&self) -> bool {
        match self {
            RequestBody::Buffered(bytes) => !bytes.is_empty(),
            RequestBody::Streamed(shared) => shared
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .is_none(),
        }
    }
}

/// Resolves when a streamed upload has ended (or was dropped).
pub struct Uploaded(oneshot::Receiver<()>);

impl Uploaded {
    pub async fn wait(self) {
        let _ = self.0.await;
    }
}

/// The body of one upstream attempt.
pub struct UpstreamBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Stream {
        shared: Arc<Mutex<Option<Incoming>>>,
        /// The client's body, once this attempt took it.
        taken: Option<Incoming>,
        idle: Idle,
        done: Option<oneshot::Sender<()>>,
    },
}

impl UpstreamBody {
    pub fn full(bytes: Bytes) -> Self {
        UpstreamBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream {
                shared,
                taken,
                idle,
                done,
            } => {
                if taken.is_none() {
                    *taken = shared
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .take();
                }
                let Some(body) = taken.as_mut() else {
                    // Another attempt took the stream: this one cannot send it.
                    return Poll::Ready(Some(Err("request body already sent".into())));
                };
                let polled = idle.poll_frame(body, cx);
                if let Poll::Ready(None) = polled {
                    if let Some(done) = done.take() {
                        let _ = done.send(());
                    }
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream { taken, .. } => taken.as_ref().is_some_and(|b| b.is_end_stream()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream { shared, taken, .. } => match taken {
                Some(body) => body.size_hint(),
                None => shared
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .as_ref()
                    .map(|b| b.size_hint())
                    .unwrap_or_default(),
            },
        }
    }
}
