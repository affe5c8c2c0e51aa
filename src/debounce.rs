//! Batching change signals: wait until changes pause, but never longer than a cap.
//!
//! A debounce without a cap can postpone an update forever under constant churn; with the cap,
//! a change reaches traffic within `cap` (plus one compile) however busy the source is.
//!
//! A source may also take a change that comes after a while without any (one file written)
//! after a shorter pause: the events of one write arrive within a millisecond, so most of the
//! longer pause would only delay it. Changes that keep coming wait for the longer pause, so
//! churn is still coalesced as much.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a source must be quiet before a batch is taken.
pub const QUIET: Duration = Duration::from_millis(15);
/// How long a source must be quiet before a batch is taken when its first change came at
/// least [`IDLE`] after the last batch (for sources that opt in).
pub const LONE_QUIET: Duration = Duration::from_millis(5);
/// How long after a batch a change counts as a lone one.
pub const IDLE: Duration = Duration::from_millis(50);
/// The longest a batch may be held back after its first change.
pub const CAP: Duration = Duration::from_millis(250);

/// The batching of one source's change signals.
#[derive(Debug)]
pub struct Debounce {
    quiet: Duration,
    cap: Duration,
    /// The pause that ends a batch begun after `idle` without one, and `idle`.
    lone: Option<(Duration, Duration)>,
    /// When the last batch was taken.
    last: Option<Instant>,
}

impl Debounce {
    /// Takes a batch once `quiet` has passed without a signal, or `cap` after its first one.
    pub fn new(quiet: Duration, cap: Duration) -> Self {
        Self {
            quiet,
            cap,
            lone: None,
            last: None,
        }
    }

    /// A batch whose first signal came at least `idle` after the last batch (or first of all)
    /// is taken once `lone_quiet` has passed without a signal (or at the cap).
    pub fn with_lone_quiet(self, lone_quiet: Duration, idle: Duration) -> Self {
        Self {
            lone: Some((lone_quiet, idle)),
            ..self
        }
    }

    /// Waits for the next batch of changes: returns after the first signal once the quiet
    /// period has passed without another one, or `cap` after the first signal, whichever is
    /// sooner. Returns `false` when the channel is closed and no change is pending.
    pub async fn next_batch(&mut self, changes: &mut mpsc::Receiver<()>) -> bool {
        if changes.recv().await.is_none() {
            return false;
        }
        let first = Instant::now();
        let after_idle = |&(_, idle): &(Duration, Duration)| {
            self.last
                .is_none_or(|last| first.duration_since(last) >= idle)
        };
        let quiet = self
            .lone
            .filter(after_idle)
            .map_or(self.quiet, |(lone_quiet, _)| lone_quiet);
        let deadline = first + self.cap;
        loop {
            let until = (Instant::now() + quiet).min(deadline);
            match tokio::time::timeout_at(until, changes.recv()).await {
                Ok(Some(())) if Instant::now() < deadline => continue,
                // Quiet long enough, capped, or the source is gone: take what we have.
                _ => break,
            }
        }
        self.last = Some(Instant::now());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_single_change_is_taken_after_the_quiet_period() {
        let (tx, mut rx) = mpsc::channel(1);
        tx.send(()).await.unwrap();
        let start = Instant::now();
        assert!(Debounce::new(QUIET, CAP).next_batch(&mut rx).await);
        assert_eq!(start.elapsed(), QUIET);
    }

    #[tokio::test(start_paused = true)]
    async fn constant_churn_is_cut_off_at_the_cap() {
        let (tx, mut rx) = mpsc::channel(1);
        tx.send(()).await.unwrap();
        // A change every 5 ms forever: quieter than QUIET never happens.
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if tx.send(()).await.is_err() {
                    return;
                }
            }
        });
        let start = Instant::now();
        assert!(Debounce::new(QUIET, CAP).next_batch(&mut rx).await);
        let waited = start.elapsed();
        assert!(waited >= CAP && waited < CAP + QUIET, "waited {waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_change_is_taken_sooner_and_one_that_follows_a_batch_is_not() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut debounce = Debounce::new(QUIET, CAP).with_lone_quiet(LONE_QUIET, IDLE);
        for (pause, quiet) in [
            (Duration::ZERO, LONE_QUIET),
            (IDLE / 2, QUIET),
            (IDLE, LONE_QUIET),
        ] {
            tokio::time::sleep(pause).await;
            tx.send(()).await.unwrap();
            let start = Instant::now();
            assert!(debounce.next_batch(&mut rx).await);
            assert_eq!(start.elapsed(), quiet, "after a pause of {pause:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_after_a_pause_is_taken_once_it_pauses_briefly() {
        let (tx, mut rx) = mpsc::channel(1);
        tx.send(()).await.unwrap();
        // Four more changes, 2 ms apart: within the shorter pause. (The source stays open.)
        let _open = tx.clone();
        tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(2)).await;
                tx.send(()).await.unwrap();
            }
        });
        let start = Instant::now();
        let mut debounce = Debounce::new(QUIET, CAP).with_lone_quiet(LONE_QUIET, IDLE);
        assert!(debounce.next_batch(&mut rx).await);
        assert_eq!(start.elapsed(), Duration::from_millis(8) + LONE_QUIET);
    }

    #[tokio::test(start_paused = true)]
    async fn closed_source_ends_the_loop() {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        drop(tx);
        assert!(!Debounce::new(QUIET, CAP).next_batch(&mut rx).await);
    }
}
