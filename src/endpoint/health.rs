//! The health of one endpoint: its active-probe verdict and its passive outlier state. Pure
//! state machines over atomics (no I/O, time passed in), shared by the balancers that read them,
//! the proxy that reports outcomes and the probes.
//!
//! An endpoint takes traffic when its probes say healthy and it is not ejected. Before its
//! first probe completes, an endpoint counts as healthy: Kubernetes readiness already vouched
//! for it, and a restart of vane must not take a whole fleet out of rotation (HAProxy starts
//! servers up for the same reason). It takes `unhealthy_threshold` failed probes in a row to
//! take it out, `healthy_threshold` successes to bring it back.
//!
//! Ejection: after `consecutive_*` failures in a row an endpoint is ejected for
//! `base_ejection_time × ejections`, capped at `max_ejection_time`. Each `base_ejection_time`
//! spent healthy since its last ejection forgives one ejection (as Envoy does), so a flapping
//! endpoint stays out longer and longer while one that recovered starts over.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::table::OutlierDetection;

/// What became of one request sent to an endpoint, as outlier detection sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Any response below 500.
    Success,
    /// 500, 501 or 505 and above: an application error.
    ServerError,
    /// 502, 503 or 504, a failed connect, or a connection reset before the response.
    GatewayError,
}

impl RequestOutcome {
    pub fn of_status(status: http::StatusCode) -> RequestOutcome {
        match status.as_u16() {
            502..=504 => RequestOutcome::GatewayError,
            500..=599 => RequestOutcome::ServerError,
            _ => RequestOutcome::Success,
        }
    }
}

#[derive(Debug)]
pub struct EndpointHealth {
    epoch: Instant,
    /// Bumped on every change of any endpoint's health in the registry, so balancers know to
    /// recompute which members are in rotation.
    changes: Arc<AtomicU64>,
    probe_healthy: AtomicBool,
    /// Consecutive probe results that disagree with `probe_healthy`.
    probe_streak: AtomicU32,
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    /// Ejection count and the end of the last ejection, changed together.
    ejection: Mutex<Ejection>,
    /// The end of the current (or last) ejection, in ns since `epoch`; 0: never ejected. Read
    /// on the hot path without the lock.
    ejected_until_ns: AtomicU64,
    /// Ejections since the endpoint joined, none forgiven (for metrics).
    ejected_total: AtomicU64,
}

#[derive(Debug, Default)]
struct Ejection {
    count: u32,
    until: Option<Instant>,
}

/// What reporting an outcome led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Fine,
    /// A threshold of consecutive failures was reached: the endpoint should be ejected, if the
    /// backend's `max_ejection_percent` allows.
    Eject,
}

/// How a probe result changed an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Unchanged,
    BecameHealthy,
    BecameUnhealthy,
}

impl EndpointHealth {
    pub fn new(epoch: Instant, changes: Arc<AtomicU64>) -> Self {
        Self {
            epoch,
            changes,
            probe_healthy: AtomicBool::new(true),
            probe_streak: AtomicU32::new(0),
            consecutive_5xx: AtomicU32::new(0),
            consecutive_gateway: AtomicU32::new(0),
            ejection: Mutex::default(),
            ejected_until_ns: AtomicU64::new(0),
            ejected_total: AtomicU64::new(0),
        }
    }

    /// Whether the endpoint may take traffic now.
    pub fn is_available(&self, now: Instant) -> bool {
        self.probe_healthy() && self.ejected_until(now).is_none()
    }

    pub fn probe_healthy(&self) -> bool {
        self.probe_healthy.load(Ordering::Relaxed)
    }

    /// The end of the ejection in force at `now`, if any.
    pub fn ejected_until(&self, now: Instant) -> Option<Instant> {
        let until = self.ejected_until_ns.load(Ordering::Relaxed);
        let until = self.epoch + Duration::from_nanos(until);
        (until > now).then_some(until)
    }

    /// The value of the registry-wide change counter.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Records a probe result and tells what changed. Only the endpoint's probe task calls
    /// this, so the streak needs no compare-and-swap.
    pub fn probe(
        &self,
        success: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Transition {
        let healthy = self.probe_healthy();
        if success == healthy {
            self.probe_streak.store(0, Ordering::Relaxed);
            return Transition::Unchanged;
        }
        let streak = self.probe_streak.load(Ordering::Relaxed) + 1;
        let threshold = if healthy {
            unhealthy_threshold
        } else {
            healthy_threshold
        };
        if streak < threshold.max(1) {
            self.probe_streak.store(streak, Ordering::Relaxed);
            return Transition::Unchanged;
        }
        self.probe_streak.store(0, Ordering::Relaxed);
        self.probe_healthy.store(success, Ordering::Relaxed);
        self.changes.fetch_add(1, Ordering::Release);
        if success {
            Transition::BecameHealthy
        } else {
            Transition::BecameUnhealthy
        }
    }

    /// Counts one outcome of live traffic. A success resets the failure counts; it writes only
    /// when there is something to reset, so the common case stays read-only.
    pub fn record(&self, outcome: RequestOutcome, config: &OutlierDetection) -> Verdict {
        let reached = |counter: &AtomicU32, threshold: Option<u32>| {
            let count = counter.fetch_add(1, Ordering::Relaxed) + 1;
            threshold.is_some_and(|t| count >= t)
        };
        let eject = match outcome {
            RequestOutcome::Success => {
                for counter in [&self.consecutive_5xx, &self.consecutive_gateway] {
                    if counter.load(Ordering::Relaxed) != 0 {
                        counter.store(0, Ordering::Relaxed);
                    }
                }
                false
            }
            RequestOutcome::ServerError => {
                self.consecutive_gateway.store(0, Ordering::Relaxed);
                reached(&self.consecutive_5xx, config.consecutive_5xx)
            }
            RequestOutcome::GatewayError => {
                let by_5xx = reached(&self.consecutive_5xx, config.consecutive_5xx);
                reached(&self.consecutive_gateway, config.consecutive_gateway_errors) || by_5xx
            }
        };
        if eject {
            Verdict::Eject
        } else {
            Verdict::Fine
        }
    }

    /// Ejects the endpoint at `now` and returns until when, or `None` if it already is ejected.
    pub fn eject(&self, config: &OutlierDetection, now: Instant) -> Option<Instant> {
        let mut ejection = self
            .ejection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if ejection.until.is_some_and(|until| until > now) {
            return None;
        }
        let base = config.base_ejection_time.max(Duration::from_millis(1));
        let forgiven = ejection.until.map_or(0, |until| {
            let healthy_for = now.saturating_duration_since(until);
            u32::try_from(healthy_for.as_nanos() / base.as_nanos()).unwrap_or(u32::MAX)
        });
        ejection.count = ejection.count.saturating_sub(forgiven).saturating_add(1);
        let length = base
            .saturating_mul(ejection.count)
            .min(config.max_ejection_time.max(base));
        let until = now + length;
        ejection.until = Some(until);
        self.ejected_until_ns.store(
            u64::try_from(until.saturating_duration_since(self.epoch).as_nanos())
                .unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_gateway.store(0, Ordering::Relaxed);
        self.changes.fetch_add(1, Ordering::Release);
        self.ejected_total.fetch_add(1, Ordering::Relaxed);
        Some(until)
    }

    /// Ejections since the endpoint joined.
    pub fn ejected_total(&self) -> u64 {
        self.ejected_total.load(Ordering::Relaxed)
    }

    /// How many times the endpoint was ejected (less those forgiven so far).
    pub fn ejections(&self) -> u32 {
        self.ejection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .count
    }
}

/// Whether one more of `members` endpoints may be ejected when `ejected` already are: at most
/// `max_percent` of them, but always at least one.
pub fn may_eject(ejected: usize, members: usize, max_percent: u32) -> bool {
    ejected == 0 || (ejected + 1) * 100 <= members * max_percent.min(100) as usize
}

/// Whether a backend with `available` of `members` endpoints in rotation is in panic mode.
pub fn in_panic(available: usize, members: usize, panic_threshold_percent: u32) -> bool {
    members > 0 && available * 100 < members * panic_threshold_percent.min(100) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> EndpointHealth {
        EndpointHealth::new(Instant::now(), Arc::default())
    }

    fn config() -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: Some(3),
            consecutive_gateway_errors: Some(2),
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(25),
            ..OutlierDetection::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn probes_need_a_streak_to_change_the_verdict() {
        let h = health();
        assert!(h.probe_healthy(), "healthy before the first probe");
        assert_eq!(h.probe(false, 2, 3), Transition::Unchanged);
        assert_eq!(h.probe(false, 2, 3), Transition::Unchanged);
        assert_eq!(
            h.probe(true, 2, 3),
            Transition::Unchanged,
            "a success breaks the streak"
        );
        assert_eq!(h.probe(false, 2, 3), Transition::Unchanged);
        assert_eq!(h.probe(false, 2, 3), Transition::Unchanged);
        let before = h.changes();
        assert_eq!(h.probe(false, 2, 3), Transition::BecameUnhealthy);
        assert!(h.changes() > before);
        assert!(!h.is_available(Instant::now()));
        assert_eq!(h.probe(true, 2, 3), Transition::Unchanged);
        assert_eq!(h.probe(true, 2, 3), Transition::BecameHealthy);
        assert!(h.is_available(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_reach_the_threshold_and_a_success_resets_them() {
        let h = health();
        let c = config();
        assert_eq!(h.record(RequestOutcome::ServerError, &c), Verdict::Fine);
        assert_eq!(h.record(RequestOutcome::ServerError, &c), Verdict::Fine);
        assert_eq!(h.record(RequestOutcome::Success, &c), Verdict::Fine);
        assert_eq!(h.record(RequestOutcome::ServerError, &c), Verdict::Fine);
        assert_eq!(h.record(RequestOutcome::ServerError, &c), Verdict::Fine);
        assert_eq!(h.record(RequestOutcome::ServerError, &c), Verdict::Eject);

        let h = health();
        assert_eq!(h.record(RequestOutcome::GatewayError, &c), Verdict::Fine);
        assert_eq!(h.record(RequestOutcome::GatewayError, &c), Verdict::Eject);

        let off = OutlierDetection {
            consecutive_5xx: None,
            consecutive_gateway_errors: None,
            ..c
        };
        let h = health();
        for _ in 0..100 {
            assert_eq!(h.record(RequestOutcome::GatewayError, &off), Verdict::Fine);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_grows_with_the_count_up_to_the_cap_and_is_forgiven_over_time() {
        let h = health();
        let c = config();
        let start = Instant::now();
        assert_eq!(h.eject(&c, start), Some(start + Duration::from_secs(10)));
        assert_eq!(h.eject(&c, start), None, "already ejected");
        assert!(!h.is_available(start + Duration::from_secs(9)));
        assert!(h.is_available(start + Duration::from_secs(10)));

        // Ejected again right after coming back: twice as long.
        tokio::time::advance(Duration::from_secs(10)).await;
        let now = Instant::now();
        assert_eq!(h.eject(&c, now), Some(now + Duration::from_secs(20)));
        // Third time: capped at 25 s.
        tokio::time::advance(Duration::from_secs(20)).await;
        let now = Instant::now();
        assert_eq!(h.eject(&c, now), Some(now + Duration::from_secs(25)));
        assert_eq!(h.ejections(), 3);

        // Healthy for 20 s after that: two ejections forgiven, so the next one counts 2.
        tokio::time::advance(Duration::from_secs(45)).await;
        let now = Instant::now();
        assert_eq!(h.eject(&c, now), Some(now + Duration::from_secs(20)));
        assert_eq!(h.ejections(), 2);
    }

    #[test]
    fn max_ejection_percent_always_allows_one() {
        assert!(may_eject(0, 3, 10), "one is always allowed");
        assert!(!may_eject(1, 3, 10));
        assert!(may_eject(1, 4, 50));
        assert!(!may_eject(2, 4, 50));
        assert!(may_eject(3, 4, 100));
    }

    #[test]
    fn panic_below_the_threshold() {
        assert!(!in_panic(2, 4, 50));
        assert!(in_panic(1, 4, 50));
        assert!(in_panic(0, 4, 1));
        assert!(!in_panic(0, 4, 0), "a threshold of 0 never panics");
        assert!(!in_panic(0, 0, 50), "no endpoints is no panic");
    }
}
