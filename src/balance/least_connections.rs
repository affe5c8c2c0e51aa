//! Least connections: the endpoint with the fewest requests in flight (counting this one) per
//! unit of weight, Envoy's least-request cost. Counting this request makes weights matter even
//! between idle endpoints.
//!
//! Exact over small backends, power of two choices over large ones (see `least_cost`); ties
//! are broken at random, so idle endpoints share new requests evenly.

use super::{least_cost, Balancer, Member, PickContext};

#[derive(Debug, Default)]
pub struct LeastConnections;

impl Balancer for LeastConnections {
    fn pick(&self, members: &[Member], ctx: &mut PickContext<'_>) -> Option<usize> {
        least_cost(members, ctx, |m, _| {
            f64::from(m.stats.in_flight() + 1) / f64::from(m.weight.max(1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{distribution, members};
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn prefers_idle_endpoints() {
        let m = members(&[1, 1, 1]);
        let _busy = [
            m[0].stats.start(Instant::now()),
            m[0].stats.start(Instant::now()),
            m[2].stats.start(Instant::now()),
        ];
        let counts = distribution(&LeastConnections, &m, 1000);
        assert_eq!(counts, [0, 1000, 0]);
    }

    #[test]
    fn idle_endpoints_share_evenly_and_weights_scale_the_load() {
        let m = members(&[1, 1, 1, 1]);
        let counts = distribution(&LeastConnections, &m, 40_000);
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
        // With 3 in flight on a weight-2 endpoint and 1 on a weight-1 endpoint, they tie:
        // (3 + 1) / 2 == (1 + 1) / 1.
        let m = members(&[2, 1]);
        let _load: Vec<_> = [0, 0, 0, 1]
            .iter()
            .map(|&i| m[i].stats.start(Instant::now()))
            .collect();
        let counts = distribution(&LeastConnections, &m, 10_000);
        assert!(
            counts.iter().all(|&c| (4_500..5_500).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn large_backends_use_two_choices_and_still_avoid_the_busiest() {
        let m = members(&[1; 100]);
        let _busy: Vec<_> = (0..50).map(|i| m[i].stats.start(Instant::now())).collect();
        let counts = distribution(&LeastConnections, &m, 10_000);
        let to_busy: usize = counts[..50].iter().sum();
        // A busy endpoint wins only against another busy one: about a quarter of picks.
        assert!(to_busy < 3_000, "{to_busy}");
    }
}
