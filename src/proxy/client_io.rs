//! The client side of a connection below HTTP: telling HTTP/1.1 from HTTP/2 by the first bytes,
//! within a deadline, and cutting a client that stops accepting response data.
//!
//! hyper-util's protocol sniffing waits for the first bytes with no timeout, so a connection
//! that sends nothing (or a partial HTTP/2 preface) would hold its slot forever: the sniff here
//! is bounded by the handshake timeout, and hyper's own header timeout takes over after it.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The HTTP/2 connection preface (RFC 9113 section 3.4): a client speaking HTTP/2 with prior
/// knowledge starts with it; no HTTP/1.1 request does.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's first bytes say it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1 = 0,
    Http2 = 1,
}

/// Why a connection was dropped before it made its first request.
#[derive(Debug, thiserror::Error)]
pub enum SniffError {
    #[error("sent no request within {0:?}")]
    Silent(Duration),
    #[error("closed before its first request")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads until the first bytes tell the protocol (a byte that departs from the HTTP/2 preface,
/// or the whole preface), within `timeout`. The bytes read are handed back in the [`Rewind`].
pub async fn sniff<IO: AsyncRead + Unpin>(
    mut io: IO,
    timeout: Duration,
) -> Result<(Protocol, Rewind<IO>), SniffError> {
    let mut prefix = [0; H2_PREFACE.len()];
    let mut filled = 0;
    let read = async {
        loop {
            let n = io.read(&mut prefix[filled..]).await?;
            if n == 0 {
                return Err(SniffError::Closed);
            }
            filled += n;
            if prefix[..filled] != H2_PREFACE[..filled] {
                return Ok(Protocol::Http1);
            }
            if filled == H2_PREFACE.len() {
                return Ok(Protocol::Http2);
            }
        }
    };
    let protocol = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_elapsed| SniffError::Silent(timeout))??;
    Ok((
        protocol,
        Rewind {
            prefix,
            start: 0,
            end: filled,
            io,
        },
    ))
}

/// An IO whose first reads return the bytes the sniff consumed.
pub struct Rewind<IO> {
    prefix: [u8; H2_PREFACE.len()],
    start: usize,
    end: usize,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start < this.end {
            let n = (this.end - this.start).min(buf.remaining());
            buf.put_slice(&this.prefix[this.start..this.start + n]);
            this.start += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A client stream whose writes fail once they have made no progress for `limit`: a client
/// that stops reading its response (nginx's `send_timeout`) is disconnected, which frees the
/// connection, and the response body's upstream connection with it. Backpressure alone would
/// hold both for as long as the client likes.
///
/// The timer is armed only when a write has to wait, so a client that keeps up never touches
/// the timer wheel.
pub struct SendTimeout<IO> {
    io: IO,
    limit: Duration,
    /// Armed while a write waits; `None` until the first wait.
    stall: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl<IO> SendTimeout<IO> {
    pub fn new(io: IO, limit: Duration) -> Self {
        Self {
            io,
            limit,
            stall: None,
            waiting: false,
        }
    }

    /// Passes on a write's result, failing a wait that has lasted the limit.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = false;
            return polled;
        }
        if !self.waiting {
            self.waiting = true;
            let due = Instant::now() + self.limit;
            match &mut self.stall {
                Some(stall) => stall.as_mut().reset(due),
                None => self.stall = Some(Box::pin(tokio::time::sleep_until(due))),
            }
        }
        let expired = self
            .stall
            .as_mut()
            .is_some_and(|stall| stall.as_mut().poll(cx).is_ready());
        if expired {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client accepted no data for {:?}", self.limit),
            )));
        }
        Poll::Pending
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for SendTimeout<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for SendTimeout<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, data);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, data);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.watch(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn sniff_tells_the_protocol_and_replays_the_bytes() {
        for (sent, protocol) in [
            (&b"GET / HTTP/1.1\r\n"[..], Protocol::Http1),
            (&b"PRI * HTTP/1.1\r\n"[..], Protocol::Http1),
            (&H2_PREFACE[..], Protocol::Http2),
        ] {
            let (mut client, server) = tokio::io::duplex(64);
            client.write_all(sent).await.unwrap();
            let (found, mut rewound) = sniff(server, Duration::from_secs(1)).await.unwrap();
            assert_eq!(found, protocol, "{sent:?}");
            client.write_all(b"rest").await.unwrap();
            let mut read = vec![0; sent.len() + 4];
            rewound.read_exact(&mut read).await.unwrap();
            assert_eq!(read, [sent, b"rest"].concat());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sniff_gives_up_on_silence_and_on_a_partial_preface() {
        for sent in [&b""[..], &H2_PREFACE[..16]] {
            let (mut client, server) = tokio::io::duplex(64);
            client.write_all(sent).await.unwrap();
            let error = sniff(server, Duration::from_secs(10)).await.err().unwrap();
            assert!(matches!(error, SniffError::Silent(_)), "{sent:?}: {error}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_past_the_limit_fails() {
        // A peer that never reads: the pipe's buffer fills, and then writes wait.
        let (_peer, io) = tokio::io::duplex(16);
        let mut io = SendTimeout::new(io, Duration::from_secs(5));
        let started = Instant::now();
        let error = io.write_all(&[0; 64]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_reader_is_not_cut() {
        let (mut peer, io) = tokio::io::duplex(16);
        let mut io = SendTimeout::new(io, Duration::from_secs(5));
        let reader = tokio::spawn(async move {
            let mut total = 0;
            let mut buf = [0; 16];
            while total < 64 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                total += peer.read(&mut buf).await.unwrap();
            }
        });
        io.write_all(&[0; 64]).await.unwrap();
        reader.await.unwrap();
    }
}
