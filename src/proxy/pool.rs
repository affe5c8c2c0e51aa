//! HTTP/1.1 in the clear, vane's most common upstream protocol: hyper's connection-level client
//! over a pool of vane's own, one per proxy worker.
//!
//! hyper-util's pooled client (still used for HTTP/2 and TLS, see `upstream`) puts a pool keyed
//! by scheme and authority, a boxed future, a channel to a connection task and, for every
//! response with a body, a freshly spawned task that waits to put the connection back, between
//! a request and its connection. The proxy knows better when a connection is free again: when
//! it has forwarded the response body to its end. So here a request checks out an idle
//! connection of its endpoint (or dials one), and the response body hands the connection back
//! ([`Reusable::release`]) at its end, with no task in between.
//!
//! ```text
//! checkout ──▶ try_send_request ──▶ response body forwarded ──▶ release ──▶ idle list
//!    │ (none idle)                        │ (dropped early, error, 101)
//!    ▼                                    ▼
//! connect (TCP, nodelay, handshake)     connection closes
//! ```
//!
//! Idle connections are kept per endpoint (at most `max_idle_per_endpoint`, newest used first)
//! and closed after `idle_timeout` by a sweeper task.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::Duration;

use foldhash::{HashMap, HashMapExt};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use super::send_error::SendError;
use super::UpstreamConfig;

/// The largest read buffer of an upstream connection, which also bounds its response head.
/// hyper's default (about 400 KiB) lets every connection that streams a large body grow its
/// buffer that far, which for a pool of busy connections is most of the proxy's memory; 64 KiB
/// reads stream as fast on loopback and leave ingress-nginx's 4-8 KiB header limit far behind.
const MAX_READ_BUFFER: usize = 64 * 1024;

/// The idle HTTP/1.1 connections of one proxy worker, by endpoint.
pub struct Http1Pool<B> {
    shared: Arc<Shared<B>>,
    sweeper: Once,
    stats: Arc<PoolStats>,
}

/// What one worker's pool did: connections dialled and ended, and requests sent over a
/// connection an earlier request used. Only that worker writes them.
#[derive(Debug, Default)]
pub struct PoolStats {
    opened: AtomicU64,
    closed: AtomicU64,
    reused: AtomicU64,
}

impl PoolStats {
    pub fn open(&self) -> u64 {
        let closed = self.closed.load(Ordering::Relaxed);
        self.opened.load(Ordering::Relaxed).saturating_sub(closed)
    }

    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }
}

struct Shared<B> {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle<B>>>>,
    max_idle_per_endpoint: usize,
    idle_timeout: Duration,
}

struct Idle<B> {
    sender: http1::SendRequest<B>,
    since: Instant,
}

/// A connection whose response is still being forwarded. [`release`](Self::release) it when
/// the response body has ended; dropping it instead closes the connection once the exchange
/// in progress is over.
pub struct Reusable<B> {
    sender: http1::SendRequest<B>,
    endpoint: SocketAddr,
    pool: Weak<Shared<B>>,
}

#[derive(Debug, thiserror::Error)]
#[error("connect to {endpoint} timed out after {timeout:?}")]
struct ConnectTimeout {
    endpoint: SocketAddr,
    timeout: Duration,
}

impl<B> Http1Pool<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub fn new(config: &UpstreamConfig, stats: Arc<PoolStats>) -> Self {
        Self {
            shared: Arc::new(Shared {
                idle: Mutex::new(HashMap::new()),
                max_idle_per_endpoint: config.pool_max_idle_per_endpoint,
                idle_timeout: config.pool_idle_timeout,
            }),
            sweeper: Once::new(),
            stats,
        }
    }

    /// Sends `request` (origin-form URI, Host set) to `endpoint` over an idle connection, or a
    /// new one dialled within `connect_timeout`.
    pub async fn send(
        &self,
        endpoint: SocketAddr,
        connect_timeout: Duration,
        mut request: Request<B>,
    ) -> Result<(Response<Incoming>, Reusable<B>), SendError> {
        // An idle connection that its endpoint closed may look usable until the close is
        // read; hyper then hands the request back unsent, and the next connection gets it.
        while let Some(mut sender) = self.checkout(endpoint) {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    self.stats.reused.fetch_add(1, Ordering::Relaxed);
                    return Ok((response, self.reusable(sender, endpoint)));
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(SendError::of_hyper(error.into_error())),
                },
            }
        }
        let mut sender = self.connect(endpoint, connect_timeout).await?;
        match sender.send_request(request).await {
            Ok(response) => Ok((response, self.reusable(sender, endpoint))),
            Err(error) => Err(SendError::of_hyper(error)),
        }
    }

    /// The most recently used idle connection of `endpoint` that is ready for a request.
    fn checkout(&self, endpoint: SocketAddr) -> Option<http1::SendRequest<B>> {
        let mut idle = lock(&self.shared.idle);
        let connections = idle.get_mut(&endpoint)?;
        // Connections that are not ready were closed, or (rarely, on a multi-threaded
        // runtime) handed back an instant before hyper asked for the next request: either
        // way, dropping them is safe.
        std::iter::from_fn(|| connections.pop()).find_map(|idle| {
            let ready = idle.sender.is_ready();
            ready.then_some(idle.sender)
        })
    }

    async fn connect(
        &self,
        endpoint: SocketAddr,
        timeout: Duration,
    ) -> Result<http1::SendRequest<B>, SendError> {
        self.sweeper.call_once(|| {
            tokio::spawn(sweep(
                Arc::downgrade(&self.shared),
                self.shared.idle_timeout,
            ));
        });
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(endpoint)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(SendError::Connect(error.into())),
            Err(_) => {
                return Err(SendError::Connect(
                    ConnectTimeout { endpoint, timeout }.into(),
                ))
            }
        };
        // Requests and responses are written whole; Nagle would only delay them.
        stream
            .set_nodelay(true)
            .map_err(|e: io::Error| SendError::Connect(e.into()))?;
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(MAX_READ_BUFFER)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Connect(e.into()))?;
        self.stats.opened.fetch_add(1, Ordering::Relaxed);
        let stats = self.stats.clone();
        tokio::spawn(async move {
            // Upgrades: a 101 response hands the connection over to a WebSocket tunnel.
            if let Err(error) = connection.with_upgrades().await {
                debug!(%endpoint, %error, "upstream connection ended");
            }
            stats.closed.fetch_add(1, Ordering::Relaxed);
        });
        Ok(sender)
    }

    fn reusable(&self, sender: http1::SendRequest<B>, endpoint: SocketAddr) -> Reusable<B> {
        Reusable {
            sender,
            endpoint,
            pool: Arc::downgrade(&self.shared),
        }
    }
}

impl<B> Reusable<B> {
    /// Hands the connection back for the next request to its endpoint.
    pub fn release(self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        if self.sender.is_closed() {
            return;
        }
        let mut idle = lock(&pool.idle);
        let connections = idle.entry(self.endpoint).or_default();
        if connections.len() < pool.max_idle_per_endpoint {
            connections.push(Idle {
                sender: self.sender,
                since: Instant::now(),
            });
        }
    }
}

/// Closes connections idle for longer than `timeout`, checking every half of it, until the
/// pool is gone.
async fn sweep<B>(pool: Weak<Shared<B>>, timeout: Duration) {
    let mut ticks = tokio::time::interval((timeout / 2).max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let now = Instant::now();
        lock(&pool.idle).retain(|_, connections| {
            connections.retain(|idle| {
                !idle.sender.is_closed() && now.saturating_duration_since(idle.since) < timeout
            });
            !connections.is_empty()
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
