//! What every accept loop does when `accept` fails.
//!
//! The usual cause is fd exhaustion (EMFILE, ENFILE): the pending connection stays in the
//! kernel's queue, so the listener stays readable and an accept loop that simply tries again
//! spins at full CPU (the admin loop did, at 41%) and floods the log. Pausing briefly lets
//! connections close and fds come back; logging at most once a second keeps the log readable.

use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

/// How long a loop pauses after a failed accept.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);
/// At most one log line per listener per this long.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The accept failures of one listener.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptBackoff {
    /// Logs `error` (rate-limited, with the count of failures not logged since), then pauses.
    pub async fn failed(&mut self, listener: &str, error: &std::io::Error) {
        if let Some(unlogged) = self.should_log(Instant::now()) {
            warn!(listener, %error, unlogged, "accept failed; pausing before the next accept");
        }
        tokio::time::sleep(ACCEPT_PAUSE).await;
    }

    /// `Some(failures not logged since the last line)` when this failure should be logged.
    fn should_log(&mut self, now: Instant) -> Option<u64> {
        match self.last_logged {
            Some(at) if now.duration_since(at) < ACCEPT_LOG_INTERVAL => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last_logged = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_failure_a_second_is_logged_with_the_count_of_the_others() {
        let mut backoff = AcceptBackoff::default();
        let start = Instant::now();
        // A failure every 50 ms for 2.2 s: logged at 0 s, 1 s and 2 s.
        let logged: Vec<(u32, u64)> = (0..45)
            .filter_map(|i| backoff.should_log(start + ACCEPT_PAUSE * i).map(|n| (i, n)))
            .collect();
        assert_eq!(logged, [(0, 0), (20, 19), (40, 19)]);
    }

    #[tokio::test(start_paused = true)]
    async fn each_failure_pauses() {
        let mut backoff = AcceptBackoff::default();
        let emfile = std::io::Error::from_raw_os_error(24);
        let start = Instant::now();
        for _ in 0..10 {
            backoff.failed("test", &emfile).await;
        }
        assert_eq!(start.elapsed(), ACCEPT_PAUSE * 10);
    }
}
