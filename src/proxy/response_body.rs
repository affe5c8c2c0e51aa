//! Response bodies that keep their request's load accounting (the endpoint's in-flight count,
//! the backend's circuit-breaker admission) until the body ends, so that least-connections,
//! least-response-time and the circuit breaker see a long download as the load it is; and that
//! end with an error when the upstream goes quiet for longer than the read timeout, or the
//! request's total time runs out.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::idle::Idle;
use super::pool::Reusable;
use super::request_body::UpstreamBody;
use crate::endpoint::InFlight;
use crate::live::Admission;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a response body holds on to until it ends.
pub struct Hold {
    pub in_flight: InFlight,
    pub admission: Option<Admission>,
    /// The HTTP/1.1 connection the body comes over, back to its pool when the body has ended.
    pub connection: Option<Reusable<UpstreamBody>>,
}

impl Hold {
    /// The body ended well: its connection can serve the next request.
    fn release(mut self) {
        if let Some(connection) = self.connection.take() {
            connection.release();
        }
    }
}

/// An upstream body plus what it holds, and its timeouts.
pub struct Tracked {
    body: Incoming,
    hold: Option<Hold>,
    idle: Idle,
    /// The end of the request's total time, if it has one.
    deadline: Option<Pin<Box<Sleep>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request timeout ran out while the response was being sent")]
struct DeadlinePassed;

impl Tracked {
    pub fn new(body: Incoming, hold: Hold, read_idle: Duration, deadline: Option<Instant>) -> Self {
        // Without a body (HEAD, 204, 304, empty) the exchange is over already.
        let hold = if body.is_end_stream() {
            hold.release();
            None
        } else {
            Some(hold)
        };
        Self {
            body,
            hold,
            idle: Idle::new(read_idle, "the upstream sent no response data"),
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = match this.idle.poll_frame(&mut this.body, cx) {
            Poll::Pending
                if this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready()) =>
            {
                Poll::Ready(Some(Err(DeadlinePassed.into())))
            }
            polled => polled,
        };
        // Done (or broken): the request no longer loads the endpoint or the backend. hyper's
        // server stops polling after a frame that ends the body, so the end is noticed there.
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.body.is_end_stream(),
            _ => false,
        };
        if ended {
            if let Some(hold) = this.hold.take() {
                hold.release();
            }
        } else if let Poll::Ready(Some(Err(_))) = &polled {
            // Broken: let go of the load, and of the connection, which is not reused.
            this.hold = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
