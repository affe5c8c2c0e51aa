//! The body every response goes out with: it keeps its request in progress on its connection
//! (so the connection is not idle, and not shed), lets the connection watch an HTTP/2 stream
//! the client stopped reading, and counts the bytes sent into the request's record. Apart from
//! `connection`, so that the connection registry does not depend on what a request reports.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::connection::{InProgress, SendProgress};
use super::record::RequestRecord;

/// A response body that keeps its request in progress until hyper has sent it (or dropped it),
/// on HTTP/2 tells [`Activity::send_stalled`] when it waits for the client, and counts the
/// bytes sent into the request's record, which reports the request when the body is dropped.
pub struct InProgressBody<B> {
    body: B,
    send: Option<SendProgress>,
    record: RequestRecord,
    _request: InProgress,
}

impl<B> InProgressBody<B> {
    pub fn new(
        body: B,
        request: InProgress,
        send: Option<SendProgress>,
        record: RequestRecord,
    ) -> Self {
        Self {
            body,
            send,
            record,
            _request: request,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for InProgressBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(send) = &mut this.send {
            // hyper is back for more: the client took the last frame.
            send.resumed();
        }
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.record.sent(data.len() as u64);
                if let Some(send) = &mut this.send {
                    send.handed_over();
                }
            }
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
