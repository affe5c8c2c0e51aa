//! Least response time: the endpoint with the lowest peak-EWMA latency times requests in flight
//! plus one (Finagle's and Linkerd's "peak EWMA"), per unit of weight.
//!
//! New endpoints start at [`DEFAULT_RTT`](crate::endpoint::DEFAULT_RTT); estimates decay toward zero
//! while an endpoint gets no samples, so a once-slow endpoint is tried again.

use std::time::Duration;

use super::{least_cost, Balancer, Member, PickContext};

#[derive(Debug)]
pub struct LeastResponseTime {
    decay: Duration,
}

impl LeastResponseTime {
    pub fn new(decay: Duration) -> Self {
        Self { decay }
    }
}

impl Balancer for LeastResponseTime {
    fn pick(&self, members: &[Member], ctx: &mut PickContext<'_>) -> Option<usize> {
        least_cost(members, ctx, |m, ctx| {
            m.stats.rtt_ns(ctx.now, self.decay) * f64::from(m.stats.in_flight() + 1)
                / f64::from(m.weight.max(1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{distribution, members};
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn traffic_moves_away_from_a_slow_endpoint() {
        let decay = Duration::from_secs(10);
        let m = members(&[1, 1, 1]);
        let now = Instant::now();
        m[0].stats
            .record_rtt(Duration::from_millis(200), now, decay);
        m[1].stats.record_rtt(Duration::from_millis(5), now, decay);
        m[2].stats.record_rtt(Duration::from_millis(5), now, decay);
        let counts = distribution(&LeastResponseTime::new(decay), &m, 1000);
        assert_eq!(counts[0], 0, "{counts:?}");
        assert!(counts[1] > 400 && counts[2] > 400, "{counts:?}");

        // With time and no samples the slow estimate decays and the endpoint is tried again.
        tokio::time::advance(Duration::from_secs(60)).await;
        m[1].stats
            .record_rtt(Duration::from_millis(5), Instant::now(), decay);
        m[2].stats
            .record_rtt(Duration::from_millis(5), Instant::now(), decay);
        let counts = distribution(&LeastResponseTime::new(decay), &m, 1000);
        assert!(counts[0] > 0, "{counts:?}");
    }
}
