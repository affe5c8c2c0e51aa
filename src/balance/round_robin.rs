//! Round robin: each endpoint in turn.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::Balancer;
use crate::table::Endpoint;

#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Balancer for RoundRobin {
    fn pick(&self, endpoints: &[Endpoint]) -> Option<usize> {
        if endpoints.is_empty() {
            return None;
        }
        // Relaxed is enough: the counter only has to hand out distinct tickets.
        Some(self.next.fetch_add(1, Ordering::Relaxed) % endpoints.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: u16) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint::new(([127, 0, 0, 1], 8000 + i).into()))
            .collect()
    }

    #[test]
    fn visits_every_endpoint_in_turn() {
        let rr = RoundRobin::default();
        let eps = endpoints(3);
        let picks: Vec<_> = (0..6).map(|_| rr.pick(&eps).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn empty_backend_has_no_pick() {
        assert_eq!(RoundRobin::default().pick(&[]), None);
    }
}
