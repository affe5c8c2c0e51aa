//! Rate limits at run time: one limiter per Ingress with `limit-rps` or `limit-rpm`, shared by
//! the workers, kept across table swaps while the Ingress's limits stay the same.
//!
//! Each rate is a GCRA bucket per client address (governor's keyed limiter). The buckets are
//! bounded: every [`CLEANUP_EVERY`] checks, buckets as full as a fresh one are dropped; and
//! when [`MAX_CLIENTS`] addresses are tracked all the same (many sources, or a spoofed flood),
//! requests share one overflow bucket until the cleanup makes room, so memory stays bounded
//! and the flood is still limited. Such requests are counted.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::table::{ObjectRef, RateLimits, RequestRate};

/// Most client addresses one rate tracks.
pub const MAX_CLIENTS: usize = 65_536;
/// How often (in checks) idle clients are dropped.
const CLEANUP_EVERY: u64 = 4096;
/// The key of requests over [`MAX_CLIENTS`].
const OVERFLOW: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// The limiter of one Ingress.
pub struct RateLimiter {
    ingress: ObjectRef,
    limits: RateLimits,
    buckets: Vec<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
    checks: AtomicU64,
    overflowed: AtomicU64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn quota(rate: &RequestRate) -> Quota {
    let per_request = rate.period / rate.requests.get();
    Quota::with_period(per_request.max(Duration::from_nanos(1)))
        .expect("a period of at least a nanosecond")
        .allow_burst(rate.burst)
}

impl RateLimiter {
    pub fn new(ingress: &ObjectRef, limits: &RateLimits) -> Self {
        Self {
            ingress: ingress.clone(),
            buckets: limits
                .rates
                .iter()
                .map(|rate| DefaultKeyedRateLimiter::dashmap(quota(rate)))
                .collect(),
            limits: limits.clone(),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
        }
    }

    /// Whether it enforces `limits` for `ingress` (so that a new table with the same limits
    /// keeps it, and clients their buckets).
    pub fn enforces(&self, ingress: &ObjectRef, limits: &RateLimits) -> bool {
        self.ingress == *ingress && self.limits == *limits
    }

    /// The Ingress it limits.
    pub fn ingress(&self) -> &ObjectRef {
        &self.ingress
    }

    /// The status refused requests get.
    pub fn status(&self) -> http::StatusCode {
        self.limits.status
    }

    /// Lets a request from `ip` pass, or says how long until it would.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self
            .limits
            .exempt
            .as_ref()
            .is_some_and(|exempt| exempt.contains(ip))
        {
            return Ok(());
        }
        let mut key = ip.to_canonical();
        let checks = self.checks.fetch_add(1, Ordering::Relaxed);
        for bucket in &self.buckets {
            if checks % CLEANUP_EVERY == 0 {
                bucket.retain_recent();
                bucket.shrink_to_fit();
            }
            if bucket.len() >= MAX_CLIENTS {
                key = OVERFLOW;
            }
        }
        if key == OVERFLOW {
            self.overflowed.fetch_add(1, Ordering::Relaxed);
        }
        for bucket in &self.buckets {
            bucket
                .check_key(&key)
                .map_err(|not_until| not_until.wait_time_from(self.clock.now()))?;
        }
        Ok(())
    }

    /// Requests checked against the shared overflow bucket, since start.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_waits_and_others_are_separate() {
        let limits = RateLimits {
            rates: vec![RequestRate::new(1, Duration::from_secs(60), 2).unwrap()],
            exempt: None,
            status: http::StatusCode::TOO_MANY_REQUESTS,
        };
        let limiter = RateLimiter::new(&ObjectRef::new("Ingress", "default", "app"), &limits);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(a).is_ok());
        let wait = limiter.check(a).unwrap_err();
        // The burst is spent: the next request conforms when one more has replenished.
        assert!(
            wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert!(limiter.check(b).is_ok());
        assert!(limiter.enforces(&ObjectRef::new("Ingress", "default", "app"), &limits));
    }

    #[test]
    fn clients_beyond_the_bound_share_one_bucket() {
        let limits = RateLimits {
            rates: vec![RequestRate::new(1, Duration::from_secs(3600), 1).unwrap()],
            exempt: None,
            status: http::StatusCode::TOO_MANY_REQUESTS,
        };
        let limiter = RateLimiter::new(&ObjectRef::new("Ingress", "default", "app"), &limits);
        // From 1: 0.0.0.0 is the overflow key itself.
        for i in 1..=MAX_CLIENTS as u32 {
            let _ = limiter.check(IpAddr::from(i.to_be_bytes()));
        }
        let late: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(
            limiter.check(late).is_ok(),
            "the overflow bucket's first request"
        );
        assert!(limiter.check("2001:db8::2".parse().unwrap()).is_err());
        assert_eq!(limiter.overflowed(), 2);
        assert!(limiter.buckets[0].len() <= MAX_CLIENTS + 1);
    }
}
