//! The data plane's threads: one single-threaded runtime per worker (`--workers`), each with
//! its own listeners and its own upstream connection pools.
//!
//! Every worker listens on the same addresses with `SO_REUSEPORT`, so the kernel spreads new
//! connections over them, and a connection's requests, its upstream connections and their tasks
//! all stay on one thread: no work-stealing queues, no cross-thread wakeups, no contended
//! counters on the hot path (the design of nginx's and HAProxy's workers). The workers share only
//! the [`TableHandle`], read once per request. The control plane (sources, compiles, probes,
//! admin) runs on the main runtime, so a large compile never delays a request.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tracing::error;

use super::{serve, serve_tls, Connections, Proxy, TableHandle, Telemetry, UpstreamConfig};

/// One listening socket per worker, all on the same address.
pub struct Listeners {
    pub addr: SocketAddr,
    sockets: Vec<std::net::TcpListener>,
}

/// Binds `addr` once per worker with `SO_REUSEPORT` (port 0: the first bind picks the port,
/// the others take the same). Needs a runtime only for the duration of the call.
pub fn bind(addr: SocketAddr, workers: usize) -> io::Result<Listeners> {
    let mut sockets = Vec::with_capacity(workers);
    let mut bound = addr;
    for _ in 0..workers.max(1) {
        let socket = match bound {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(bound)?;
        let listener = socket.listen(1024)?;
        bound = listener.local_addr()?;
        // Handed to the worker's own runtime, which registers it with its own reactor.
        sockets.push(listener.into_std()?);
    }
    Ok(Listeners {
        addr: bound,
        sockets,
    })
}

/// What every worker shares: the table, the connection cap, where requests are reported.
#[derive(Clone)]
pub struct Shared {
    pub tables: Arc<TableHandle>,
    pub connections: Arc<Connections>,
    pub telemetry: Telemetry,
}

/// Starts one thread per pair of sockets, serving plain HTTP and TLS until `shutdown` (then
/// the graceful shutdown of [`serve`]). The workers share `shared.connections`, and so its cap.
/// Join the handles to wait for them.
pub fn spawn(
    http: Listeners,
    https: Listeners,
    shared: Shared,
    shutdown: CancellationToken,
) -> io::Result<Vec<JoinHandle<()>>> {
    http.sockets
        .into_iter()
        .zip(https.sockets)
        .enumerate()
        .map(|(index, (http, https))| {
            let (shared, shutdown) = (shared.clone(), shutdown.clone());
            std::thread::Builder::new()
                .name(format!("vane-worker-{index}"))
                .spawn(move || worker(http, https, shared, shutdown))
        })
        .collect()
}

fn worker(
    http: std::net::TcpListener,
    https: std::net::TcpListener,
    shared: Shared,
    shutdown: CancellationToken,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            error!(%error, "cannot start a worker runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let listeners =
            (|| Ok::<_, io::Error>((TcpListener::from_std(http)?, TcpListener::from_std(https)?)))(
            );
        let (http, https) = match listeners {
            Ok(listeners) => listeners,
            Err(error) => {
                error!(%error, "a worker cannot take over its listeners");
                return;
            }
        };
        let Shared {
            tables,
            connections,
            telemetry,
        } = shared;
        let proxy = Arc::new(Proxy::new(tables, &UpstreamConfig::default(), &telemetry));
        tokio::join!(
            serve(http, proxy.clone(), connections.clone(), shutdown.clone()),
            serve_tls(https, proxy, connections, shutdown),
        );
    });
}
