//! The live table: what the data plane, the TLS resolver and the admin endpoint read, and the
//! publish step that makes a compiled table live.
//!
//! [`TableHandle`] is the one atomic swap between the compile loop and its readers. Everything
//! that must change together (routes, backends, their balancers, circuit breakers and retry
//! budgets, the rustls server configuration of each TLS site, diagnostics) is one
//! [`ActiveTable`] behind one `ArcSwap`, so a request, the TLS resolver and the admin endpoint
//! never see a mix of two generations. Publishing builds the server configurations from the
//! table's certificates (reusing those of unchanged sites), carries the runtime state of
//! unchanged backends over, and reconciles the active health checks with the new table's
//! endpoints.

mod backend_guard;
mod credentials;
mod rate_limit;
mod retry_budget;

use foldhash::{HashMap, HashMapExt};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio::time::Instant;

use crate::balance::Balancers;
use crate::endpoint::EndpointRegistry;
use crate::health::{ProbeTarget, Prober};
use crate::table::{Diagnostic, RoutingTable, Transforms};
use crate::tls::ServerConfigs;

pub use backend_guard::{Admission, BackendGuard, Tripped};
pub use credentials::Credentials;
pub use rate_limit::RateLimiter;
pub use retry_budget::RetryBudget;

/// One published generation of the routing table, with its runtime balancers.
#[derive(Debug, Default)]
pub struct ActiveTable {
    /// 0 until the first table is published, then 1, 2, ...
    pub generation: u64,
    pub table: RoutingTable,
    pub diagnostics: Vec<Diagnostic>,
    pub balancers: Balancers,
    /// Circuit breaker and retry budget of each backend, indexed like the backends.
    pub guards: Vec<Arc<BackendGuard>>,
    /// The rustls configuration of each TLS site, indexed like the table's sites.
    pub server_configs: ServerConfigs,
    /// The connect timeout of each endpoint that hyper-util's clients dial (HTTP/2 and TLS
    /// backends): the shortest of the routes leading to it. Plain HTTP/1.1 takes the route's
    /// own timeout.
    pub connect_timeouts: HashMap<SocketAddr, Duration>,
    /// The rate limiter of each Ingress with rate limits, by the address of its routes'
    /// shared [`Transforms`] (which the table holds as long as this).
    rate_limiters: HashMap<usize, Arc<RateLimiter>>,
}

impl ActiveTable {
    /// The rate limiter of routes with these transforms, if they limit rates.
    pub fn rate_limiter(&self, transforms: &Arc<Transforms>) -> Option<&RateLimiter> {
        self.rate_limiters
            .get(&(Arc::as_ptr(transforms) as usize))
            .map(|limiter| &**limiter)
    }

    /// Every rate limiter, for the metrics.
    pub fn rate_limiters(&self) -> impl Iterator<Item = &RateLimiter> {
        self.rate_limiters.values().map(|limiter| &**limiter)
    }

    /// The configuration of a TLS handshake for `server_name` (SNI): its site's, else the
    /// default site's. `None`: refuse the handshake.
    pub fn server_config(&self, server_name: Option<&str>) -> Option<Arc<ServerConfig>> {
        let site = self.table.tls().site_index(server_name)?;
        self.server_configs.get(site).cloned()
    }
}

#[derive(Debug, Default)]
pub struct TableHandle {
    current: ArcSwap<ActiveTable>,
    /// Serializes publishers, so that carrying state over from the previous generation is
    /// never raced by a second publish.
    publish: Mutex<()>,
    /// Per-endpoint load state, shared by the balancers of successive tables.
    endpoints: EndpointRegistry,
    /// Active health checks of the current table's endpoints.
    prober: Prober,
    /// Basic auth: verified credentials and the bound on verifications in progress.
    credentials: Credentials,
}

impl TableHandle {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current table. A request holds this `Arc` until its response headers are sent, so it
    /// finishes on the table it started with, whatever swaps happen meanwhile.
    pub fn load(&self) -> Arc<ActiveTable> {
        self.current.load_full()
    }

    /// Checks Basic credentials of every table's routes.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Whether a table has been published since start (the readiness gate).
    pub fn is_published(&self) -> bool {
        self.current.load().generation > 0
    }

    /// Publishes a new table and returns its generation.
    pub fn publish(&self, table: RoutingTable, diagnostics: Vec<Diagnostic>) -> u64 {
        let _writer = self
            .publish
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let previous = self.current.load_full();
        let now = Instant::now();
        let same = table.same_backends(&previous.table);
        let balancers = Balancers::build(&table, &same, &previous.balancers, &self.endpoints, now);
        self.prober.reconcile(probe_targets(&table, &balancers));
        let guards = table
            .backends()
            .iter()
            .zip(&same)
            .map(
                |(backend, same)| match same.and_then(|old| previous.guards.get(old)) {
                    Some(guard) => Arc::clone(guard),
                    None => Arc::new(BackendGuard::new(&backend.circuit_breaker, now)),
                },
            )
            .collect();
        let server_configs = ServerConfigs::build(
            table.tls(),
            (previous.table.tls(), &previous.server_configs),
        );
        let generation = previous.generation + 1;
        self.current.store(Arc::new(ActiveTable {
            generation,
            rate_limiters: rate_limiters(&table, &previous.rate_limiters),
            connect_timeouts: connect_timeouts(&table),
            server_configs,
            table,
            diagnostics,
            balancers,
            guards,
        }));
        generation
    }
}

/// The rate limiter of each Ingress with rate limits, by its transforms: the previous table's
/// where the Ingress and its limits are the same, so clients keep their buckets.
fn rate_limiters(
    table: &RoutingTable,
    previous: &HashMap<usize, Arc<RateLimiter>>,
) -> HashMap<usize, Arc<RateLimiter>> {
    let mut limiters = HashMap::new();
    for route in table.routes() {
        let Some(transforms) = &route.transforms else {
            continue;
        };
        let Some(limits) = &transforms.rate_limits else {
            continue;
        };
        limiters
            .entry(Arc::as_ptr(transforms) as usize)
            .or_insert_with(|| {
                previous
                    .values()
                    .find(|old| old.enforces(&route.ingress, limits))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(RateLimiter::new(&route.ingress, limits)))
            });
    }
    limiters
}

fn connect_timeouts(table: &RoutingTable) -> HashMap<SocketAddr, Duration> {
    let mut timeouts: HashMap<SocketAddr, Duration> = HashMap::new();
    for route in table.routes() {
        let backends =
            std::iter::once(route.backend).chain(route.canary.as_ref().map(|c| c.backend));
        let dialled_by_hyper_util = backends
            .filter_map(|b| table.backend(b))
            .filter(|backend| !backend.is_plain_http1());
        for backend in dialled_by_hyper_util {
            for endpoint in backend.endpoints() {
                timeouts
                    .entry(endpoint.address)
                    .and_modify(|t| *t = (*t).min(route.timeouts.connect))
                    .or_insert(route.timeouts.connect);
            }
        }
    }
    timeouts
}

/// Every endpoint of a backend with active health checks, with its state.
fn probe_targets<'t>(
    table: &'t RoutingTable,
    balancers: &'t Balancers,
) -> impl Iterator<Item = ProbeTarget> + 't {
    table
        .backends()
        .iter()
        .enumerate()
        .filter_map(|(i, backend)| {
            Some((backend, backend.health.active.as_ref()?, balancers.get(i)?))
        })
        .flat_map(|(backend, check, balancer)| {
            balancer.members().iter().map(move |member| ProbeTarget {
                address: member.address,
                check: check.clone(),
                backend: backend.name.clone(),
                stats: member.stats.clone(),
            })
        })
}
