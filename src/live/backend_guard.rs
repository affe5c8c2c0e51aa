//! Per-backend runtime guards: the circuit breaker and the retry budget. Like the balancers,
//! they are built when a table is published and carried over while the backend is unchanged.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::RetryBudget;
use crate::table::CircuitBreaker;

#[derive(Debug)]
pub struct BackendGuard {
    pub budget: RetryBudget,
    breaker: Option<Breaker>,
    /// Requests the circuit breaker turned away (for metrics; only counted when it trips).
    rejected: AtomicU64,
}

#[derive(Debug)]
struct Breaker {
    limits: CircuitBreaker,
    requests: Arc<AtomicU32>,
    pending: Arc<AtomicU32>,
    /// One permit per upstream exchange in progress (`max_connections`).
    connections: Option<Arc<Semaphore>>,
}

/// Which limit turned a request away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Tripped {
    #[error("maxRequests ({0}) requests in progress")]
    Requests(u32),
    #[error("maxPendingRequests ({0}) requests waiting for a connection")]
    Pending(u32),
    #[error("maxConnections ({0}) busy for longer than the connect timeout")]
    Connections(u32),
}

/// A request admitted by the circuit breaker; it counts until dropped.
#[derive(Debug)]
pub struct Admission {
    _request: Counted,
    _connection: Option<OwnedSemaphorePermit>,
}

/// One unit of a shared count, given back on drop.
#[derive(Debug)]
struct Counted(Arc<AtomicU32>);

impl Counted {
    /// Counts one more; returns the unit and the new count.
    fn enter(count: &Arc<AtomicU32>) -> (Self, u32) {
        let now = count.fetch_add(1, Ordering::Relaxed) + 1;
        (Counted(count.clone()), now)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BackendGuard {
    pub fn new(limits: &CircuitBreaker, now: Instant) -> Self {
        Self {
            budget: RetryBudget::new(now),
            breaker: limits.is_set().then(|| Breaker {
                limits: *limits,
                requests: Arc::default(),
                pending: Arc::default(),
                connections: limits
                    .max_connections
                    .map(|max| Arc::new(Semaphore::new(max as usize))),
            }),
            rejected: AtomicU64::new(0),
        }
    }

    /// Admits a request, or says which limit it hit. A request that finds every connection
    /// busy waits for one, up to `wait`, unless too many wait already.
    pub async fn admit(&self, wait: Duration) -> Result<Option<Admission>, Tripped> {
        let Some(breaker) = &self.breaker else {
            return Ok(None);
        };
        let admitted = Self::admit_under(breaker, wait).await;
        if admitted.is_err() {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// Requests the circuit breaker turned away since the guard was made.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    async fn admit_under(breaker: &Breaker, wait: Duration) -> Result<Option<Admission>, Tripped> {
        let limits = &breaker.limits;
        let (request, in_progress) = Counted::enter(&breaker.requests);
        if let Some(max) = limits.max_requests.filter(|&max| in_progress > max) {
            return Err(Tripped::Requests(max));
        }
        let connection = match &breaker.connections {
            None => None,
            Some(connections) => Some(match connections.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    let (_waiting, pending) = Counted::enter(&breaker.pending);
                    if let Some(max) = limits.max_pending_requests.filter(|&max| pending > max) {
                        return Err(Tripped::Pending(max));
                    }
                    tokio::time::timeout(wait, connections.clone().acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .ok_or(Tripped::Connections(
                            limits.max_connections.unwrap_or_default(),
                        ))?
                }
            }),
        };
        Ok(Some(Admission {
            _request: request,
            _connection: connection,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit_later(
        guard: &Arc<BackendGuard>,
        wait: Duration,
    ) -> tokio::task::JoinHandle<Result<bool, Tripped>> {
        let guard = guard.clone();
        tokio::spawn(async move { guard.admit(wait).await.map(|a| a.is_some()) })
    }

    #[tokio::test(start_paused = true)]
    async fn connections_queue_up_to_max_pending_then_trip() {
        let guard = Arc::new(BackendGuard::new(
            &CircuitBreaker {
                max_connections: Some(1),
                max_pending_requests: Some(1),
                max_requests: None,
            },
            Instant::now(),
        ));
        let wait = Duration::from_secs(1);
        let first = guard.admit(wait).await.unwrap();
        let second = admit_later(&guard, wait);
        tokio::task::yield_now().await;
        assert_eq!(
            guard.admit(wait).await.unwrap_err(),
            Tripped::Pending(1),
            "one waits already"
        );
        drop(first);
        assert_eq!(
            second.await.unwrap(),
            Ok(true),
            "admitted once the connection freed up"
        );

        let _held = guard.admit(wait).await.unwrap();
        let waiting = admit_later(&guard, wait);
        assert_eq!(
            waiting.await.unwrap(),
            Err(Tripped::Connections(1)),
            "gave up after `wait`"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_progress_are_capped() {
        let guard = BackendGuard::new(
            &CircuitBreaker {
                max_requests: Some(2),
                ..CircuitBreaker::default()
            },
            Instant::now(),
        );
        let wait = Duration::from_secs(1);
        let a = guard.admit(wait).await.unwrap();
        let b = guard.admit(wait).await.unwrap();
        assert_eq!(guard.admit(wait).await.unwrap_err(), Tripped::Requests(2));
        drop((a, b));
        assert!(guard.admit(wait).await.is_ok());
    }
}
