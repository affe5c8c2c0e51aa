//! Per-endpoint load state: requests in flight, a peak-EWMA of response latency, and when the
//! endpoint joined; with the endpoint's [`EndpointHealth`].

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::EndpointHealth;

/// Latency assumed for an endpoint that has not answered yet: low enough that new endpoints get
/// tried, high enough that a proven fast endpoint is not abandoned for an unknown one.
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);

#[derive(Debug)]
pub struct EndpointStats {
    in_flight: AtomicU32,
    /// Peak-EWMA latency in nanoseconds (f64 bits).
    rtt_ns: AtomicU64,
    /// When `rtt_ns` was last updated, in nanoseconds since the registry's epoch.
    rtt_at_ns: AtomicU64,
    epoch: Instant,
    /// When the endpoint joined; `None` for endpoints that were there from the start (warm).
    joined: Option<Instant>,
    /// Probe verdict and outlier ejection.
    pub health: EndpointHealth,
}

impl EndpointStats {
    pub(super) fn new(
        epoch: Instant,
        now: Instant,
        joined: Option<Instant>,
        changes: Arc<AtomicU64>,
    ) -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            rtt_ns: AtomicU64::new((DEFAULT_RTT.as_nanos() as f64).to_bits()),
            rtt_at_ns: AtomicU64::new(since(epoch, now)),
            epoch,
            joined,
            health: EndpointHealth::new(epoch, changes),
        }
    }

    /// A fresh, warm state outside any registry (for tests and benchmarks).
    pub fn detached(now: Instant) -> Arc<Self> {
        Arc::new(Self::new(now, now, None, detached_health_changes()))
    }

    /// A fresh state of an endpoint that joins at `now` (slow start applies).
    pub fn joining(now: Instant) -> Arc<Self> {
        Arc::new(Self::new(now, now, Some(now), detached_health_changes()))
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// When this endpoint joined (slow start counts from here); `None` if it was there when
    /// vane started.
    pub fn joined(&self) -> Option<Instant> {
        self.joined
    }

    /// Counts a request as in flight until the returned guard is dropped.
    pub fn start(self: &Arc<Self>, now: Instant) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            stats: self.clone(),
            started: now,
        }
    }

    /// The latency estimate at `now`: the peak EWMA, decayed toward zero for the time since the
    /// last sample, so an endpoint that was slow once is tried again eventually.
    pub fn rtt_ns(&self, now: Instant, decay: Duration) -> f64 {
        let rtt = f64::from_bits(self.rtt_ns.load(Ordering::Relaxed));
        let at = self.rtt_at_ns.load(Ordering::Relaxed);
        let elapsed = since(self.epoch, now).saturating_sub(at) as f64;
        rtt * (-elapsed / decay.as_nanos().max(1) as f64).exp()
    }

    /// Records a latency sample: a sample above the estimate replaces it at once (the "peak"),
    /// a lower one is blended in with a weight that grows with the time since the last sample.
    pub fn record_rtt(&self, sample: Duration, now: Instant, decay: Duration) {
        let sample = sample.as_nanos() as f64;
        let current = self.rtt_ns(now, decay);
        let next = if sample > current {
            sample
        } else {
            let at = self.rtt_at_ns.load(Ordering::Relaxed);
            let elapsed = since(self.epoch, now).saturating_sub(at) as f64;
            let keep = (-elapsed / decay.as_nanos().max(1) as f64).exp();
            current * keep + sample * (1.0 - keep)
        };
        // Two racing samples may lose one update; the estimate stays a valid estimate.
        self.rtt_ns.store(next.to_bits(), Ordering::Relaxed);
        self.rtt_at_ns
            .store(since(self.epoch, now), Ordering::Relaxed);
    }
}

/// The health change counter of states outside a registry. A balancer watches one counter for
/// all its members, so they must share one, as a registry's do.
fn detached_health_changes() -> Arc<AtomicU64> {
    static CHANGES: std::sync::OnceLock<Arc<AtomicU64>> = std::sync::OnceLock::new();
    CHANGES.get_or_init(Arc::default).clone()
}

fn since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// A request in flight to an endpoint. Dropping it ends the request.
#[derive(Debug)]
pub struct InFlight {
    stats: Arc<EndpointStats>,
    started: Instant,
}

impl InFlight {
    /// Records the time from the start to `now` (the response headers) as a latency sample.
    pub fn record_response(&self, now: Instant, decay: Duration) {
        self.stats
            .record_rtt(now.saturating_duration_since(self.started), now, decay);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn peak_ewma_jumps_up_and_decays_down() {
        let stats = EndpointStats::detached(Instant::now());
        let decay = Duration::from_secs(10);
        stats.record_rtt(Duration::from_millis(500), Instant::now(), decay);
        assert_eq!(
            stats.rtt_ns(Instant::now(), decay),
            500e6,
            "a slow sample counts at once"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        let decayed = stats.rtt_ns(Instant::now(), decay);
        assert!(
            (decayed - 500e6 / std::f64::consts::E).abs() < 1e3,
            "{decayed}"
        );
        stats.record_rtt(Duration::from_millis(1), Instant::now(), decay);
        assert!(stats.rtt_ns(Instant::now(), decay) < decayed);
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_counts_until_the_guard_drops() {
        let stats = EndpointStats::detached(Instant::now());
        let a = stats.start(Instant::now());
        let b = stats.start(Instant::now());
        assert_eq!(stats.in_flight(), 2);
        drop(a);
        drop(b);
        assert_eq!(stats.in_flight(), 0);
    }
}
