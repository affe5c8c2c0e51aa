//! The balancers of a whole table, built when it is published: a backend that is unchanged
//! keeps its balancer (and so its round-robin position and rotation); the others get new ones
//! over the endpoints' surviving state.

use std::net::SocketAddr;
use std::sync::Arc;

use foldhash::HashMap;
use tokio::time::Instant;

use super::{BackendBalancer, Member};
use crate::endpoint::{EndpointRegistry, EndpointStats};
use crate::table::{Backend, RoutingTable};

/// The balancers of one table, indexed like [`RoutingTable::backends`].
#[derive(Debug, Default)]
pub struct Balancers {
    per_backend: Vec<Arc<BackendBalancer>>,
}

impl Balancers {
    /// Builds balancers for `table`. `same[i]` is the index in `previous` of a backend
    /// identical to backend `i` (see [`RoutingTable::same_backends`]): it keeps its balancer;
    /// all others get new balancers over the registry's (surviving) endpoint state.
    pub fn build(
        table: &RoutingTable,
        same: &[Option<usize>],
        previous: &Balancers,
        registry: &EndpointRegistry,
        now: Instant,
    ) -> Self {
        let addresses = table
            .backends()
            .iter()
            .flat_map(|b| b.endpoints().iter().map(|e| e.address));
        let stats = registry.retain(addresses, now);
        let per_backend = table
            .backends()
            .iter()
            .zip(same)
            .map(
                |(backend, same)| match same.and_then(|old| previous.per_backend.get(old)) {
                    Some(balancer) => Arc::clone(balancer),
                    None => Arc::new(new_balancer(backend, &stats, now)),
                },
            )
            .collect();
        Self { per_backend }
    }

    pub fn get(&self, backend: usize) -> Option<&BackendBalancer> {
        self.per_backend.get(backend).map(|b| &**b)
    }
}

/// Members line up with the backend's endpoints, index for index.
fn new_balancer(
    backend: &Backend,
    stats: &HashMap<SocketAddr, Arc<EndpointStats>>,
    now: Instant,
) -> BackendBalancer {
    let members = backend
        .endpoints()
        .iter()
        .map(|e| Member {
            address: e.address,
            weight: e.weight,
            // The registry holds every address of the table; detached is only a fallback.
            stats: stats
                .get(&e.address)
                .cloned()
                .unwrap_or_else(|| EndpointStats::detached(now)),
        })
        .collect();
    let affinity = backend
        .affinity
        .as_ref()
        .map(|config| (config, &*backend.name));
    BackendBalancer::with_affinity(
        members,
        &backend.load_balancing,
        backend.slow_start,
        affinity,
    )
    .with_outlier_detection(backend.health.passive)
}
