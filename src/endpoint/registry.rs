//! The state of every endpoint in the current table, keyed by address, so that it outlives
//! table swaps.
//!
//! Publishing a table looks up (or creates) the state of each of its endpoints, so an endpoint
//! present before and after a swap keeps its counters and health; the balancers of both tables
//! share the same `Arc`. Endpoints that left are dropped from the registry, while requests still
//! in flight to them keep their own `Arc` until they finish.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use foldhash::{HashMap, HashMapExt};
use tokio::time::Instant;

use super::EndpointStats;

/// The state of every endpoint in the current table, by address.
#[derive(Debug)]
pub struct EndpointRegistry {
    epoch: Instant,
    endpoints: Mutex<Known>,
    /// Counts health changes of any endpoint (see [`EndpointHealth`](super::EndpointHealth)).
    health_changes: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct Known {
    /// Whether a table was registered before: endpoints of the first table are warm, not
    /// joining (a restart must not put a whole fleet into slow start).
    seeded: bool,
    /// Shared with the caller of [`EndpointRegistry::retain`] rather than copied.
    by_address: Arc<HashMap<SocketAddr, Arc<EndpointStats>>>,
}

impl Default for EndpointRegistry {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            endpoints: Mutex::default(),
            health_changes: Arc::default(),
        }
    }
}

impl EndpointRegistry {
    /// The states of `addresses`, creating missing ones; every other address is forgotten.
    pub fn retain(
        &self,
        addresses: impl IntoIterator<Item = SocketAddr>,
        now: Instant,
    ) -> Arc<HashMap<SocketAddr, Arc<EndpointStats>>> {
        let mut known = self
            .endpoints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let joined = known.seeded.then_some(now);
        // Tables mostly keep their endpoints: the last one's count is the best size guess.
        let mut current = HashMap::with_capacity(known.by_address.len());
        current.extend(addresses.into_iter().map(|address| {
            let stats = known.by_address.get(&address).cloned().unwrap_or_else(|| {
                Arc::new(EndpointStats::new(
                    self.epoch,
                    now,
                    joined,
                    self.health_changes.clone(),
                ))
            });
            (address, stats)
        }));
        known.by_address = Arc::new(current);
        known.seeded = true;
        Arc::clone(&known.by_address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn registry_keeps_state_of_endpoints_that_stay() {
        let registry = EndpointRegistry::default();
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let first = registry.retain([a, b], Instant::now());
        let _busy = first[&a].start(Instant::now());
        let second = registry.retain([a], Instant::now());
        assert!(Arc::ptr_eq(&first[&a], &second[&a]));
        assert_eq!(second[&a].in_flight(), 1);
        let third = registry.retain([a, b], Instant::now());
        assert!(
            !Arc::ptr_eq(&first[&b], &third[&b]),
            "an endpoint that left starts afresh"
        );
    }
}
