//! The listeners: accept connections within limits, serve HTTP/1.1 and h2c (prior knowledge)
//! with upgrades, or the same over TLS (h2 by ALPN), and shut down gracefully.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::{ClientInfo, Proxy};
use crate::tls;

/// Bounds on what one client can make the proxy hold.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time a client has to send complete request headers (slowloris protection).
    pub header_read_timeout: Duration,
    /// Largest request head (HTTP/1.1 read buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    pub max_concurrent_streams: u32,
    /// Once the listener stops, how long in-flight requests and upgraded connections may take
    /// before they are cut.
    pub shutdown_grace: Duration,
    /// Time a client has to complete a TLS handshake.
    pub tls_handshake_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 16_384,
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_concurrent_streams: 256,
            shutdown_grace: Duration::from_secs(25),
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

fn connection_builder(limits: &ServerLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Serves `listener` until `shutdown` is cancelled, then stops accepting, asks open connections
/// to finish (HTTP/1.1 `Connection: close` after the current request, HTTP/2 GOAWAY) and waits
/// up to `limits.shutdown_grace` for them.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    accept_loop(listener, proxy, limits, shutdown, false).await
}

/// Like [`serve`], with TLS: each connection's SNI picks its certificate from the current
/// table, and X-Forwarded-Proto is `https`.
pub async fn serve_tls(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    accept_loop(listener, proxy, limits, shutdown, true).await
}

async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    limits: ServerLimits,
    shutdown: CancellationToken,
    with_tls: bool,
) {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let builder = Arc::new(connection_builder(&limits));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually EMFILE: back off briefly instead of spinning on the error.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%error, "could not set TCP_NODELAY");
        }
        let client = ClientInfo::new(peer.ip(), local_port, "http");
        let proxy = proxy.clone();
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let handshake_timeout = limits.tls_handshake_timeout;
        connections.spawn(async move {
            let _permit = permit;
            if !with_tls {
                return serve_connection(&builder, stream, proxy, client, &shutdown).await;
            }
            let tables = proxy.tables.clone();
            let handshake = tls::accept(stream, |server_name| {
                let active = tables.load();
                let site = active.table.tls().site(server_name)?;
                site.config.clone()
            });
            let handshake = tokio::select! {
                _ = shutdown.cancelled() => return,
                handshake = tokio::time::timeout(handshake_timeout, handshake) => handshake,
            };
            match handshake {
                Ok(Ok((stream, tls))) => {
                    serve_connection(&builder, stream, proxy, client.with_tls(tls), &shutdown).await
                }
                Ok(Err(error)) => debug!(%peer, %error, "TLS handshake failed"),
                Err(_elapsed) => debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
    drop(listener);
    connections.close();
    // Upgraded connections left their HTTP connections behind: they get the same grace.
    let tunnels = proxy.tunnels();
    tunnels.close();
    info!(
        open = connections.len(),
        upgraded = tunnels.len(),
        "listener closed; waiting for open connections"
    );
    let drained = async { tokio::join!(connections.wait(), tunnels.wait()) };
    if tokio::time::timeout(limits.shutdown_grace, drained)
        .await
        .is_err()
    {
        warn!(
            open = connections.len(),
            upgraded = tunnels.len(),
            "shutdown grace period over; closing remaining connections"
        );
    }
}

/// Serves one connection until it ends, or until shutdown asks it to finish.
async fn serve_connection<IO>(
    builder: &auto::Builder<TokioExecutor>,
    stream: IO,
    proxy: Arc<Proxy>,
    client: ClientInfo,
    shutdown: &CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = client.ip;
    // One allocation per connection; each request clones one Arc.
    let connection = Arc::new((proxy, client));
    let service = service_fn(move |request| {
        let connection = connection.clone();
        async move { connection.0.handle(request, &connection.1).await }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        debug!(%peer, %error, "connection ended with an error");
    }
}
