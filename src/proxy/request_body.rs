//! The request body on its way upstream, in a form a retry can send again.
//!
//! - No body (most requests): nothing to keep.
//! - A body of known length up to [`REPLAY_LIMIT`]: read whole before the first attempt (as
//!   nginx buffers request bodies), so every attempt sends the same bytes.
//! - Anything else streams through. The stream is handed to the first attempt only when that
//!   attempt starts sending it, so an attempt that never sent (a failed connect) leaves it for
//!   the next one; once sent, it cannot be replayed.
//!
//! While streaming, a pause longer than the send timeout ends the upload with an error, and so
//! does a body that grows past the route's limit (`proxy-body-size`; a declared length over
//! it was refused before).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
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
    Streamed(Arc<Stream>),
}

/// A streamed body: the client's, until an attempt takes it, and how much of it was read.
pub struct Stream {
    body: Mutex<Option<Incoming>>,
    read: AtomicU64,
    /// The most bytes it may have (`u64::MAX`: no limit).
    limit: u64,
}

impl Stream {
    fn take(&self) -> Option<Incoming> {
        self.body
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// Body bytes read from the client so far.
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
}

/// How many body bytes a request brought: known when it was buffered, counted as it goes when
/// it streams (the count is read when the request is logged).
pub enum BodyBytes {
    Known(u64),
    Streamed(Arc<Stream>),
}

impl BodyBytes {
    pub fn get(&self) -> u64 {
        match self {
            BodyBytes::Known(bytes) => *bytes,
            BodyBytes::Streamed(stream) => stream.read(),
        }
    }
}

impl RequestBody {
    /// Takes the client's body: buffers it if it is small and of known length (waiting at most
    /// `send_idle` for it), else prepares it for streaming, cut at `limit` bytes.
    pub async fn read(
        body: Incoming,
        headers: &HeaderMap,
        send_idle: Duration,
        limit: Option<u64>,
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
            _ => Ok(RequestBody::Streamed(Arc::new(Stream {
                body: Mutex::new(Some(body)),
                read: AtomicU64::new(0),
                limit: limit.unwrap_or(u64::MAX),
            }))),
        }
    }

    /// What counts this body's bytes.
    pub fn bytes(&self) -> BodyBytes {
        match self {
            RequestBody::Buffered(bytes) => BodyBytes::Known(bytes.len() as u64),
            RequestBody::Streamed(stream) => BodyBytes::Streamed(stream.clone()),
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

    /// Whether the body was cut for growing past the route's limit.
    pub fn over_limit(&self) -> bool {
        match self {
            RequestBody::Buffered(_) => false,
            RequestBody::Streamed(stream) => stream.read() > stream.limit,
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
            RequestBody::Streamed(stream) => stream
                .body
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
        shared: Arc<Stream>,
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
                    *taken = shared.take();
                }
                let Some(body) = taken.as_mut() else {
                    // Another attempt took the stream: this one cannot send it.
                    return Poll::Ready(Some(Err("request body already sent".into())));
                };
                let polled = idle.poll_frame(body, cx);
                match &polled {
                    Poll::Ready(None) => {
                        if let Some(done) = done.take() {
                            let _ = done.send(());
                        }
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            let len = data.len() as u64;
                            let read = shared.read.fetch_add(len, Ordering::Relaxed) + len;
                            if read > shared.limit {
                                // Nothing of this frame goes upstream: the endpoint never sees
                                // more than the limit.
                                return Poll::Ready(Some(Err(
                                    "the request body is larger than the route allows".into(),
                                )));
                            }
                        }
                    }
                    _ => {}
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
                    .body
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .as_ref()
                    .map(|b| b.size_hint())
                    .unwrap_or_default(),
            },
        }
    }
}
