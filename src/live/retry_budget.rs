//! The retry budget of one backend: retries may be a share of its recent requests, so that
//! retries cannot multiply the load on a backend that is already failing.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use crate::table::RetryPolicy;

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
    /// Retries granted and refused since the budget was made (for metrics). Counted only when
    /// a retry is wanted, which is after a failure, never on the common path.
    granted: AtomicU64,
    refused: AtomicU64,
}

impl RetryBudget {
    pub fn new(now: Instant) -> Self {
        Self {
            epoch: now,
            requests: Default::default(),
            retries: Default::default(),
            granted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
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
            self.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        bump(&self.retries, second);
        self.granted.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Retries granted since the budget was made.
    pub fn granted(&self) -> u64 {
        self.granted.load(Ordering::Relaxed)
    }

    /// Retries the budget refused since it was made.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
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
}
