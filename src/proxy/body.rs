//! Response bodies that keep their endpoint's in-flight count until the body ends, so that
//! least-connections and least-response-time see a long download as the load it is.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::balance::InFlight;

pin_project_lite::pin_project! {
    /// An upstream body plus the in-flight guard of the request it answers.
    pub struct Tracked {
        #[pin]
        body: Incoming,
        in_flight: Option<InFlight>,
    }
}

impl Tracked {
    pub fn new(body: Incoming, in_flight: InFlight) -> Self {
        Self {
            body,
            in_flight: Some(in_flight),
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let polled = this.body.poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = &polled {
            // Done (or broken): the request no longer loads the endpoint.
            this.in_flight.take();
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
