//! Batching change signals: wait until changes pause, but never longer than a cap.
//!
//! A debounce without a cap can postpone an update forever under constant churn; with the cap,
//! a change reaches traffic within `cap` (plus one compile) however busy the source is.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a source must be quiet before a batch is taken.
pub const QUIET: Duration = Duration::from_millis(15);
/// The longest a batch may be held back after its first change.
pub const CAP: Duration = Duration::from_millis(250);

/// Waits for the next batch of changes: returns after the first signal once `quiet` has passed
/// without another one, or `cap` after the first signal, whichever is sooner. Returns `false`
/// when the channel is closed and no change is pending.
pub async fn next_batch(changes: &mut mpsc::Receiver<()>, quiet: Duration, cap: Duration) -> bool {
    if changes.recv().await.is_none() {
        return false;
    }
    let deadline = Instant::now() + cap;
    loop {
        let until = (Instant::now() + quiet).min(deadline);
        match tokio::time::timeout_at(until, changes.recv()).await {
            Ok(Some(())) if Instant::now() < deadline => continue,
            // Quiet long enough, capped, or the source is gone: take what we have.
            _ => return true,
        }
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
        assert!(next_batch(&mut rx, QUIET, CAP).await);
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
        assert!(next_batch(&mut rx, QUIET, CAP).await);
        let waited = start.elapsed();
        assert!(waited >= CAP && waited < CAP + QUIET, "waited {waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn closed_source_ends_the_loop() {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        drop(tx);
        assert!(!next_batch(&mut rx, QUIET, CAP).await);
    }
}
