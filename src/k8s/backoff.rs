//! How the watches retry while the API server is unreachable.
//!
//! kube-runtime's default backoff doubles from 0.8 s up to 30 s (with jitter, up to a minute),
//! so after a 15 s outage a watch could sleep another 18 s before it noticed that the API
//! server was back. vane caps the delay at [`MAX_DELAY`]: a returning API server is seen
//! within 4 s, while six watches that keep failing still ask only about twice a second in all.
//! The jitter keeps replicas (and the six watches of one replica) from retrying in lockstep.

use std::time::Duration;

/// The first delay after a failure.
pub const INITIAL_DELAY: Duration = Duration::from_millis(250);
/// The longest delay between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(4);

/// Exponential backoff with "equal jitter": the n-th delay after the last success is uniform in
/// [d/2, d], where d = `INITIAL_DELAY` × 2^n, capped at `MAX_DELAY`. A success (any event of the
/// watch) resets it.
#[derive(Debug)]
pub struct ReconnectBackoff {
    ceiling: Duration,
    rng: fastrand::Rng,
}

impl ReconnectBackoff {
    pub fn new() -> Self {
        Self::with_rng(fastrand::Rng::new())
    }

    fn with_rng(rng: fastrand::Rng) -> Self {
        Self {
            ceiling: INITIAL_DELAY,
            rng,
        }
    }
}

impl Default for ReconnectBackoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Iterator for ReconnectBackoff {
    type Item = Duration;

    /// Never `None`: a watch never gives up.
    fn next(&mut self) -> Option<Duration> {
        let ceiling = self.ceiling;
        self.ceiling = (ceiling * 2).min(MAX_DELAY);
        let half = ceiling / 2;
        let jitter = self.rng.u64(..=half.as_millis() as u64);
        Some(half + Duration::from_millis(jitter))
    }
}

impl kube::runtime::utils::Backoff for ReconnectBackoff {
    fn reset(&mut self) {
        self.ceiling = INITIAL_DELAY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;

    #[test]
    fn delays_double_from_250ms_up_to_4s_with_jitter_and_reset_after_a_success() {
        for seed in 0..100 {
            let mut backoff = ReconnectBackoff::with_rng(fastrand::Rng::with_seed(seed));
            let ceilings = [250, 500, 1000, 2000, 4000, 4000, 4000, 4000];
            for ceiling in ceilings {
                let delay = backoff.next().unwrap();
                let ceiling = Duration::from_millis(ceiling);
                assert!(
                    ceiling / 2 <= delay && delay <= ceiling,
                    "seed {seed}: {delay:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
            backoff.reset();
            assert!(backoff.next().unwrap() <= INITIAL_DELAY);
        }
    }

    #[test]
    fn an_hour_of_failures_never_waits_more_than_4s() {
        let mut backoff = ReconnectBackoff::new();
        let mut waited = Duration::ZERO;
        while waited < Duration::from_secs(3600) {
            let delay = backoff.next().unwrap();
            assert!(delay <= MAX_DELAY, "{delay:?} after {waited:?}");
            waited += delay;
        }
    }
}
