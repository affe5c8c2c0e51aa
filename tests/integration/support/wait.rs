//! Bounded waits for a condition: the tests' alternative to sleeps that hope.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Polls `check` every 10 ms until it holds; fails the test after 10 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
