//! When to try a request again, and the budget that keeps retries from amplifying an outage.
//!
//! A failed connect is always worth retrying (the request never left). After the request left,
//! a retry could run it twice, so it is retried only if its method is idempotent, or the
//! upstream rejected it before any of its body was sent. A body is replayed only while vane
//! still has all of it (see [`RequestBody`](super::request_body::RequestBody)).

use std::sync::atomic::{AtomicU64, Ordering};

use http::{Method, StatusCode};
use tokio::time::Instant;

use crate::endpoint::RequestOutcome;
use crate::table::{RetryOn, RetryPolicy};

/// How one attempt ended, for the retry decision and outlier detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The connection could not be made: nothing was sent.
    Connect,
    /// The connection broke before a response (reset, closed, protocol error).
    Reset,
    /// No response headers within the attempt's timeout.
    Timeout,
    /// The upstream answered with this status (a 5xx).
    Status(StatusCode),
}

impl Failure {
    pub fn outcome(self) -> RequestOutcome {
        match self {
            Failure::Connect | Failure::Reset | Failure::Timeout => RequestOutcome::GatewayError,
            Failure::Status(status) => RequestOutcome::of_status(status),
        }
    }

    fn retry_on(self) -> RetryOn {
        match self {
            Failure::Connect => RetryOn::CONNECT_FAILURE,
            Failure::Reset => RetryOn::RESET,
            Failure::Timeout => RetryOn::GATEWAY_TIMEOUT,
            Failure::Status(StatusCode::BAD_GATEWAY) => RetryOn::BAD_GATEWAY,
            Failure::Status(StatusCode::SERVICE_UNAVAILABLE) => RetryOn::SERVICE_UNAVAILABLE,
            Failure::Status(StatusCode::GATEWAY_TIMEOUT) => RetryOn::GATEWAY_TIMEOUT,
            Failure::Status(_) => RetryOn::NONE,
        }
    }
}

/// Whether `failure` may be retried: the policy asks for it, and a second run is safe.
/// `body_sent`: some of the request body already went upstream.
pub fn is_retryable(
    policy: &RetryPolicy,
    failure: Failure,
    method: &Method,
    body_sent: bool,
) -> bool {
    if !policy.retry_on.contains(failure.retry_on()) {
        return false;
    }
    match failure {
        Failure::Connect => true,
        _ => method.is_idempotent() || !body_sent,
    }
}

/// Seconds of history the budget looks at.
const WINDOW_SECONDS: u64 = 10;

/// Counts requests and retries of one backend over the last [`WINDOW_SECONDS`], in one slot
/// per second. Lock-free; a race may lose a count at a second boundary, which only makes the
/// budget approximate.
#[derive(Debug)]
pub struct RetryBudget {
    epoch: Instant,
    requests: [AtomicU64; WINDOW_SECONDS as usize],
    retries: [AtomicU64; WINDOW_SECONDS as usize],
}

impl RetryBudget {
    pub fn new(now: Instant) -> Self {
        Self {
            epoch: now,
            requests: Default::default(),
            retries: Default::default(),
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    /// Counts a request (its first attempt).
    pub fn deposit(&self, now: Instant) {
        bump(&self.requests, self.second(now));
    }

    /// Takes a retry from the budget, if one is left: retries in the window may be
    /// `percent` of the requests, or `min_per_second` × the window, whichever is more.
    pub fn withdraw(&self, policy: &RetryPolicy, now: Instant) -> bool {
        let second = self.second(now);
        let requests = sum(&self.requests, second);
        let retries = sum(&self.retries, second);
        let allowed = (requests * u64::from(policy.budget_percent) / 100)
            .max(u64::from(policy.budget_min_per_second) * WINDOW_SECONDS);
        if retries >= allowed {
            return false;
        }
        bump(&self.retries, second);
        true
    }
}

/// A slot holds `second << 32 | count`.
fn bump(slots: &[AtomicU64; WINDOW_SECONDS as usize], second: u64) {
    let slot = &slots[(second % WINDOW_SECONDS) as usize];
    let current = slot.load(Ordering::Relaxed);
    if current >> 32 != second
        && slot
            .compare_exchange(
                current,
                (second << 32) | 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    {
        return;
    }
    slot.fetch_add(1, Ordering::Relaxed);
}

fn sum(slots: &[AtomicU64; WINDOW_SECONDS as usize], second: u64) -> u64 {
    slots
        .iter()
        .map(|slot| slot.load(Ordering::Relaxed))
        .filter(|value| {
            second.saturating_sub(value >> 32) < WINDOW_SECONDS && value >> 32 <= second
        })
        .map(|value| value & u64::from(u32::MAX))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(percent: u32, min_per_second: u32) -> RetryPolicy {
        RetryPolicy {
            budget_percent: percent,
            budget_min_per_second: min_per_second,
            ..RetryPolicy::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_allows_a_share_of_requests_over_the_window() {
        let budget = RetryBudget::new(Instant::now());
        let policy = policy(20, 0);
        for _ in 0..100 {
            budget.deposit(Instant::now());
        }
        let granted = (0..100)
            .filter(|_| budget.withdraw(&policy, Instant::now()))
            .count();
        assert_eq!(granted, 20);
        // Ten seconds later the old requests and retries are forgotten.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(
            !budget.withdraw(&policy, Instant::now()),
            "no requests, no retries"
        );
        budget.deposit(Instant::now());
        for _ in 0..4 {
            budget.deposit(Instant::now());
        }
        assert!(budget.withdraw(&policy, Instant::now()));
        assert!(!budget.withdraw(&policy, Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_floor_of_retries_per_second_is_always_allowed() {
        let budget = RetryBudget::new(Instant::now());
        let policy = policy(0, 2);
        let granted = (0..100)
            .filter(|_| budget.withdraw(&policy, Instant::now()))
            .count();
        assert_eq!(granted, 20, "2 per second over a 10 s window");
    }

    #[test]
    fn only_safe_retries_are_allowed() {
        let all = RetryPolicy::default();
        let post = Method::POST;
        let get = Method::GET;
        assert!(is_retryable(&all, Failure::Connect, &post, true));
        assert!(is_retryable(&all, Failure::Reset, &get, true));
        assert!(!is_retryable(&all, Failure::Reset, &post, true));
        assert!(is_retryable(
            &all,
            Failure::Status(StatusCode::SERVICE_UNAVAILABLE),
            &post,
            false
        ));
        assert!(!is_retryable(
            &all,
            Failure::Status(StatusCode::INTERNAL_SERVER_ERROR),
            &get,
            false
        ));
        let connect_only = RetryPolicy {
            retry_on: RetryOn::CONNECT_FAILURE,
            ..all
        };
        assert!(!is_retryable(&connect_only, Failure::Timeout, &get, false));
        assert!(is_retryable(&connect_only, Failure::Connect, &get, false));
    }
}
