//! A body that stops making progress for too long is cut off.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reads a body, and fails it once it has waited `limit` since its last data. The timer is
/// armed only when the body waits, so a body that is always ready never touches the timer
/// wheel.
pub struct Idle {
    limit: Duration,
    /// Who went quiet, for the error: "the upstream sent no response data".
    what: &'static str,
    sleep: Option<Pin<Box<Sleep>>>,
    progressed: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{what} for {limit:?}")]
struct Stalled {
    what: &'static str,
    limit: Duration,
}

impl Idle {
    pub fn new(limit: Duration, what: &'static str) -> Self {
        Self {
            limit,
            what,
            sleep: None,
            progressed: false,
        }
    }

    /// Polls `body`; data restarts the idle period, a wait past the limit is an error.
    pub fn poll_frame(
        &mut self,
        body: &mut Incoming,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.progressed = true;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending if self.expired(cx) => Poll::Ready(Some(Err(Stalled {
                what: self.what,
                limit: self.limit,
            }
            .into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The body is waiting: whether it has now waited the limit since the last progress.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.sleep {
            None => self.sleep = Some(Box::pin(tokio::time::sleep(self.limit))),
            Some(sleep) if self.progressed => sleep.as_mut().reset(Instant::now() + self.limit),
            Some(_) => {}
        }
        self.progressed = false;
        self.sleep
            .as_mut()
            .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
    }
}
