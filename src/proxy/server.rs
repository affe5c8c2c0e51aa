//! The listeners: accept connections within limits, serve HTTP/1.1 and h2c (prior knowledge)
//! with upgrades, or the same over TLS (h2 by ALPN), and shut down gracefully.
//!
//! Every phase of a connection has a deadline: its first bytes and TLS handshake
//! (`handshake_timeout`), each request head (hyper's `header_read_timeout`), each pause in
//! accepting response data (`send_timeout`), and time without a request (`idle_timeout`).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::client_io::{sniff, Protocol, SendTimeout};
use super::connection::{Admitted, Connections, HandshakeOutcome};
use super::headers::{self, TrustedProxies};
use super::in_progress_body::InProgressBody;
use super::listener_stats::Listener;
use super::{ClientInfo, Proxy, ProxyError};
use crate::net::AcceptBackoff;
use crate::tls;

/// Bounds on what clients can make the proxy hold. Each is a flag (see `args`).
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Client connections open at once, across every worker and listener. At the cap, the
    /// longest-idle connections are closed to make room (see `connection`).
    pub max_connections: usize,
    /// Time a new connection has to say which protocol it speaks (its first bytes), and, with
    /// TLS, to complete the handshake.
    pub handshake_timeout: Duration,
    /// Time a client has to send complete request headers (slowloris protection). hyper starts
    /// it when it waits for a request, so it also bounds an idle HTTP/1.1 keep-alive connection.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress (an HTTP/2 connection without streams, say) is
    /// closed after this, HTTP/2 with a GOAWAY.
    pub idle_timeout: Duration,
    /// A client that accepts no response data for this long (on HTTP/2, on any one stream) is
    /// disconnected.
    pub send_timeout: Duration,
    /// Largest request head (HTTP/1.1 read buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Most header fields in an HTTP/1.1 request; more is answered 431.
    pub max_headers: usize,
    /// Longest request target (path and query); longer is answered 414.
    pub max_uri_bytes: usize,
    pub max_concurrent_streams: u32,
    /// Once the listener stops, how long in-flight requests and upgraded connections may take
    /// before they are cut.
    pub shutdown_grace: Duration,
    /// `--trusted-proxies`: peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Option<TrustedProxies>,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 16_384,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_concurrent_streams: 256,
            shutdown_grace: Duration::from_secs(25),
            trusted_proxies: None,
        }
    }
}

/// HTTP/2 keep-alive: a PING after this long without a frame from the client, and the
/// connection is closed when its answer takes longer than [`HTTP2_PING_TIMEOUT`]. Catches
/// clients that vanished without a FIN while a stream (a gRPC stream, say) stays open.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The connection builders of a listener, one per protocol: the protocol is known from the
/// first bytes, or from ALPN, before a builder sees the connection, so nothing sniffs again
/// (hyper-util's `auto` builder would, with no deadline).
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &ServerLimits) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(limits.max_headers)
            .max_buf_size(limits.max_header_bytes.max(8192));
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(HTTP2_PING_INTERVAL)
            .keep_alive_timeout(HTTP2_PING_TIMEOUT);
        Self { http1, http2 }
    }
}

/// Serves `listener` until `shutdown` is cancelled, then stops accepting, asks open connections
/// to finish (HTTP/1.1 `Connection: close` after the current request, HTTP/2 GOAWAY) and waits
/// up to `limits.shutdown_grace` for them. `connections` is shared by every listener, so its cap
/// is the process's.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    connections: Arc<Connections>,
    shutdown: CancellationToken,
) {
    accept_loop(listener, proxy, connections, shutdown, false).await
}

/// Like [`serve`], with TLS: each connection's SNI picks its certificate from the current
/// table, ALPN its protocol, and X-Forwarded-Proto is `https`.
pub async fn serve_tls(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    connections: Arc<Connections>,
    shutdown: CancellationToken,
) {
    accept_loop(listener, proxy, connections, shutdown, true).await
}

async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    connections: Arc<Connections>,
    shutdown: CancellationToken,
    with_tls: bool,
) {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let limits = connections.limits.clone();
    let builders = Arc::new(Builders::new(&limits));
    let tasks = TaskTracker::new();
    let listener_kind = if with_tls {
        Listener::Https
    } else {
        Listener::Http
    };
    let listener_name = listener_kind.as_str();
    let mut accept_failures = AcceptBackoff::default();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failures.failed(listener_name, &error).await;
                    continue;
                }
            },
        };
        // Accepted before admitted: a client is really waiting when idle ones are shed.
        let admitted = tokio::select! {
            _ = shutdown.cancelled() => break,
            admitted = connections.admit() => admitted,
        };
        let Some(admitted) = admitted else {
            debug!(%peer, "connection limit reached and every connection busy; closed");
            continue;
        };
        connections.listeners.accepted(listener_kind);
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%error, "could not set TCP_NODELAY");
        }
        let stream = SendTimeout::new(stream, limits.send_timeout);
        let client = ClientInfo::new(peer.ip(), local_port, "http").on(admitted.activity.clone());
        let connection = Connection {
            proxy: proxy.clone(),
            builders: builders.clone(),
            shutdown: shutdown.clone(),
            admitted,
        };
        tasks.spawn(async move {
            if with_tls {
                connection.serve_tls(stream, client).await
            } else {
                connection.serve_plain(stream, client).await
            }
        });
    }
    drop(listener);
    tasks.close();
    // Upgraded connections left their HTTP connections behind: they get the same grace.
    let tunnels = proxy.tunnels();
    tunnels.close();
    info!(
        open = tasks.len(),
        upgraded = tunnels.len(),
        "listener closed; waiting for open connections"
    );
    let drained = async { tokio::join!(tasks.wait(), tunnels.wait()) };
    if tokio::time::timeout(limits.shutdown_grace, drained)
        .await
        .is_err()
    {
        warn!(
            open = tasks.len(),
            upgraded = tunnels.len(),
            "shutdown grace period over; closing remaining connections"
        );
    }
}

/// One accepted client connection and what serving it needs.
struct Connection {
    proxy: Arc<Proxy>,
    builders: Arc<Builders>,
    shutdown: CancellationToken,
    admitted: Admitted,
}

impl Connection {
    fn limits(&self) -> &ServerLimits {
        &self.admitted.connections().limits
    }

    async fn serve_plain(self, stream: SendTimeout<TcpStream>, client: ClientInfo) {
        let peer = client.ip;
        let sniffed = tokio::select! {
            sniffed = sniff(stream, self.limits().handshake_timeout) => sniffed,
            _ = self.admitted.activity.shed() => return,
            _ = self.shutdown.cancelled() => return,
        };
        match sniffed {
            Ok((protocol, stream)) => self.serve(protocol, stream, client).await,
            Err(error) => debug!(%peer, %error, "connection dropped"),
        }
    }

    async fn serve_tls(self, stream: SendTimeout<TcpStream>, client: ClientInfo) {
        let peer = client.ip;
        let tables = self.proxy.tables.clone();
        let handshake = tls::accept(stream, |server_name| {
            tables.load().server_config(server_name)
        });
        let handshake = tokio::select! {
            _ = self.shutdown.cancelled() => return,
            _ = self.admitted.activity.shed() => return,
            handshake = tokio::time::timeout(self.limits().handshake_timeout, handshake) => handshake,
        };
        let outcome = match &handshake {
            Ok(Ok(_)) => HandshakeOutcome::Completed,
            Ok(Err(_)) => HandshakeOutcome::Failed,
            Err(_) => HandshakeOutcome::TimedOut,
        };
        self.admitted.connections().handshakes.record(outcome);
        match handshake {
            Ok(Ok((stream, tls))) => {
                // HTTP/2 over TLS is chosen by ALPN (RFC 9113 section 3.2), never by sniffing.
                let protocol = match stream.get_ref().1.alpn_protocol() {
                    Some(b"h2") => Protocol::Http2,
                    _ => Protocol::Http1,
                };
                self.serve(protocol, stream, client.with_tls(tls)).await
            }
            Ok(Err(error)) => debug!(%peer, %error, "TLS handshake failed"),
            Err(_elapsed) => debug!(%peer, "TLS handshake timed out"),
        }
    }

    /// Serves HTTP on the connection until it ends, it has been idle for the idle timeout, or
    /// shutdown asks it to finish.
    async fn serve<IO>(self, protocol: Protocol, stream: IO, client: ClientInfo)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = client.ip;
        let listener = match client.tls {
            Some(_) => Listener::Https,
            None => Listener::Http,
        };
        let _serving = self
            .admitted
            .connections()
            .listeners
            .serving(listener, protocol);
        let activity = self.admitted.activity.clone();
        let max_uri_bytes = self.limits().max_uri_bytes;
        // HTTP/1.1 has one response at a time, and its socket's send timeout sees a client that
        // stops reading; HTTP/2 streams are watched one by one (`Activity::send_stalled`).
        let streams = protocol == Protocol::Http2;
        // One allocation per connection; each request clones one Arc.
        let trusted = self.limits().trusted_proxies.clone();
        let shared = Arc::new((self.proxy.clone(), client, activity.clone(), trusted));
        let service = service_fn(move |mut request: Request<Incoming>| {
            let shared = shared.clone();
            async move {
                let (proxy, client, activity, trusted) = &*shared;
                let client = &*headers::real_client(client, &request, trusted.as_ref());
                let in_progress = activity.start();
                let send = streams.then(|| activity.track_send());
                let mut record = proxy.record(&mut request, client);
                let response = match request.uri().path_and_query() {
                    // Checked here, not by hyper: hyper answers 431 for any head too large.
                    Some(target) if target.as_str().len() > max_uri_bytes => {
                        Ok(ProxyError::UriTooLong.to_response().map(Either::Right))
                    }
                    _ => proxy.handle(request, client, &mut record).await,
                };
                response.map(|response| {
                    record.responded(response.status());
                    response.map(|body| InProgressBody::new(body, in_progress, send, record))
                })
            }
        });
        let io = TokioIo::new(stream);
        let result = match protocol {
            Protocol::Http1 => {
                let connection = self.builders.http1.serve_connection(io, service);
                let connection = connection.with_upgrades();
                let stalled = std::future::pending();
                self.drive(connection, |c| c.graceful_shutdown(), stalled, peer)
                    .await
            }
            Protocol::Http2 => {
                let connection = self.builders.http2.serve_connection(io, service);
                let stalled = activity.send_stalled(self.limits().send_timeout);
                self.drive(connection, |c| c.graceful_shutdown(), stalled, peer)
                    .await
            }
        };
        if let Err(error) = result {
            debug!(%peer, %error, "connection ended with an error");
        }
    }

    /// Runs `connection` until it ends, or, once it has been idle for the idle timeout, the
    /// listener needs its place, or shutdown begins, until it has finished gracefully. When
    /// `send_stalled` resolves (a stream the client stopped accepting data on), the connection
    /// is cut, as a socket that stops accepting writes is.
    async fn drive<C>(
        &self,
        connection: C,
        graceful: fn(Pin<&mut C>),
        send_stalled: impl Future<Output = ()>,
        peer: IpAddr,
    ) -> hyper::Result<()>
    where
        C: Future<Output = hyper::Result<()>>,
    {
        let activity = &self.admitted.activity;
        tokio::pin!(connection);
        let idle = tokio::select! {
            // The connection first and in order: it is what wakes this task on every I/O
            // event, and the watches rarely are ready, so random order only adds polls.
            biased;
            result = connection.as_mut() => return result,
            _ = send_stalled => {
                debug!(%peer, "client accepted no response data within the send timeout; cut");
                return Ok(());
            }
            _ = self.shutdown.cancelled() => false,
            _ = activity.idle_for(self.limits().idle_timeout) => true,
            // A request may have started since the connection was picked: then it finishes
            // gracefully, as on shutdown, rather than being cut after a short wait.
            _ = activity.shed() => activity.is_idle(),
        };
        graceful(connection.as_mut());
        if !idle {
            // In-flight requests finish within the listener's shutdown grace.
            return connection.await;
        }
        // Nothing in progress, so this is quick, unless the client never finished its HTTP/2
        // handshake: hyper then waits for it before it sends GOAWAY, and the connection is cut.
        tokio::time::timeout(self.limits().handshake_timeout, connection)
            .await
            .unwrap_or(Ok(()))
    }
}
