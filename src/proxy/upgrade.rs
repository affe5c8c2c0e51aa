//! Protocol switches (WebSocket and other `Upgrade`s): once the upstream answered 101 and the
//! response reached the client, both connections are handed over and bytes are copied both ways
//! until either side closes, or neither sends anything for the idle timeout.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tracing::debug;

use super::record::RequestRecord;

/// Copies between the two sides once both connections are handed over; `record` reports the
/// request when the tunnel closes, with its duration and the bytes moved each way.
pub async fn tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    (route, endpoint): (String, SocketAddr),
    idle: Duration,
    mut record: RequestRecord,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(error) => {
            debug!(route, %endpoint, %error, "upgrade did not complete");
            return;
        }
    };
    let epoch = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let mut client = Active::new(TokioIo::new(client), epoch, activity.clone());
    let mut upstream = Active::new(TokioIo::new(upstream), epoch, activity.clone());
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    let watchdog = async {
        let mut due = epoch + idle;
        loop {
            tokio::time::sleep_until(due).await;
            let last = epoch + Duration::from_millis(activity.load(Ordering::Relaxed));
            if last + idle <= Instant::now() {
                return;
            }
            due = last + idle;
        }
    };
    tokio::select! {
        copied = copy => match copied {
            Ok((to_upstream, to_client)) => {
                debug!(route, %endpoint, to_upstream, to_client, "upgraded connection closed")
            }
            Err(error) => debug!(route, %endpoint, %error, "upgraded connection failed"),
        },
        _ = watchdog => debug!(route, %endpoint, ?idle, "upgraded connection idle; closed"),
    }
    // Counted as read, so an idle or failed tunnel reports what it moved too.
    record.tunnelled(client.read, upstream.read);
}

/// An IO that records when it last moved bytes (milliseconds since `epoch`), shared by both
/// sides of a tunnel.
struct Active<T> {
    io: T,
    epoch: Instant,
    activity: Arc<AtomicU64>,
    /// Bytes read from this side.
    read: u64,
}

impl<T> Active<T> {
    fn new(io: T, epoch: Instant, activity: Arc<AtomicU64>) -> Self {
        Self {
            io,
            epoch,
            activity,
            read: 0,
        }
    }

    fn touch(&self) {
        let since = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_millis();
        self.activity
            .store(u64::try_from(since).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Active<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            this.read += read as u64;
            this.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Active<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &polled {
            if *n > 0 {
                this.touch();
            }
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
