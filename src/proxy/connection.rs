//! Client connections as a shared, bounded resource: the connection cap across every worker
//! and listener, each connection's activity (requests in progress, idle since when, HTTP/2
//! streams waiting for the client to accept data), and shedding idle connections when the cap
//! is reached.
//!
//! Without shedding, one client that opens thousands of connections and sends nothing fills
//! the cap and locks every other client out until its sockets time out. At the cap, vane closes
//! the connections that have been idle longest first (no request in progress: before the first
//! request, between keep-alive requests, or an HTTP/2 connection without streams); busy ones are
//! never touched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::listener_stats::ListenerStats;
use super::ServerLimits;

/// Marks "not idle" in [`Activity::idle_since`].
const BUSY: u64 = u64::MAX;

/// Marks a stream that is not waiting for the client in [`SendProgress`].
const NOT_WAITING: u64 = u64::MAX;

/// Every client connection of the process, and the cap on them.
#[derive(Debug)]
pub struct Connections {
    pub limits: ServerLimits,
    permits: Arc<Semaphore>,
    /// Connections accepted and serving, by listener and protocol.
    pub listeners: ListenerStats,
    /// TLS handshakes of the HTTPS listener, by how they ended.
    pub handshakes: Handshakes,
    open: Mutex<Registry>,
    /// Where idle times are measured from.
    epoch: Instant,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    by_id: HashMap<u64, Arc<Activity>, foldhash::fast::RandomState>,
}

/// A connection in the registry of those that may be shed; dropping it takes it out. Its place
/// under the cap is its [`Activity`]'s, which a WebSocket tunnel keeps after the HTTP
/// connection ended.
pub struct Admitted {
    id: u64,
    pub activity: Arc<Activity>,
    connections: Arc<Connections>,
}

impl Admitted {
    pub fn connections(&self) -> &Connections {
        &self.connections
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.registry().by_id.remove(&self.id);
    }
}

impl Connections {
    pub fn new(limits: ServerLimits) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            listeners: ListenerStats::default(),
            handshakes: Handshakes::default(),
            limits,
            open: Mutex::new(Registry::default()),
            epoch: Instant::now(),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        lock(&self.open)
    }

    /// Connections open now, WebSocket tunnels that outlived their HTTP connection included.
    pub fn open(&self) -> usize {
        self.limits.max_connections - self.permits.available_permits()
    }

    /// A place for a newly accepted connection. At the cap, the longest-idle connections are
    /// asked to close, and the new one waits for a place up to the handshake timeout; `None`
    /// when none frees up (every connection is busy), and the new connection should be closed.
    pub async fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.shed_idle();
                let wait = self.permits.clone().acquire_owned();
                tokio::time::timeout(self.limits.handshake_timeout, wait)
                    .await
                    .ok()?
                    .ok()?
            }
        };
        let activity = Arc::new(Activity {
            in_progress: AtomicU32::new(0),
            idle_since: AtomicU64::new(micros_since(self.epoch, Instant::now())),
            shed: Notify::new(),
            shedding: AtomicBool::new(false),
            sending: Mutex::default(),
            epoch: self.epoch,
            _place: permit,
        });
        let id = {
            let mut registry = self.registry();
            let id = registry.next_id;
            registry.next_id += 1;
            registry.by_id.insert(id, activity.clone());
            id
        };
        Some(Admitted {
            id,
            activity,
            connections: self.clone(),
        })
    }

    /// Asks the longest-idle connections to close: a batch, so that a burst of new clients does
    /// not scan the registry once each.
    ///
    /// A connection already asked (still finishing its goodbye) is not picked again: asking it
    /// twice would free no room.
    fn shed_idle(&self) {
        let batch = (self.limits.max_connections / 64).clamp(1, 256);
        let registry = self.registry();
        let mut idle: Vec<(u64, &Activity)> = registry
            .by_id
            .values()
            .filter(|activity| !activity.shedding.load(Ordering::Relaxed))
            .filter_map(|activity| {
                let since = activity.idle_since.load(Ordering::Relaxed);
                (since != BUSY).then_some((since, &**activity))
            })
            .collect();
        if idle.len() > batch {
            idle.select_nth_unstable_by_key(batch, |(since, _)| *since);
            idle.truncate(batch);
        }
        tracing::debug!(
            shed = idle.len(),
            "connection limit reached; closing the longest-idle connections"
        );
        for (_, activity) in idle {
            activity.shedding.store(true, Ordering::Relaxed);
            activity.shed.notify_one();
        }
    }
}

/// How a TLS handshake on the HTTPS listener ended.
#[derive(Clone, Copy, Debug)]
pub enum HandshakeOutcome {
    Completed,
    Failed,
    TimedOut,
}

/// TLS handshakes since start, by outcome (counted once per connection).
#[derive(Debug, Default)]
pub struct Handshakes {
    completed: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
}

impl Handshakes {
    pub fn record(&self, outcome: HandshakeOutcome) {
        self.counter(outcome).fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self, outcome: HandshakeOutcome) -> u64 {
        self.counter(outcome).load(Ordering::Relaxed)
    }

    fn counter(&self, outcome: HandshakeOutcome) -> &AtomicU64 {
        match outcome {
            HandshakeOutcome::Completed => &self.completed,
            HandshakeOutcome::Failed => &self.failed,
            HandshakeOutcome::TimedOut => &self.timed_out,
        }
    }
}

/// Microseconds from `epoch` to `at`, rounded up, so that an idle period is never cut short.
fn micros_since(epoch: Instant, at: Instant) -> u64 {
    let nanos = at.saturating_duration_since(epoch).as_nanos();
    u64::try_from(nanos.div_ceil(1000)).unwrap_or(BUSY - 1)
}

/// What one connection is doing, shared by its requests and the listener.
#[derive(Debug)]
pub struct Activity {
    in_progress: AtomicU32,
    /// Microseconds since `epoch` at which the last request ended (or the connection opened);
    /// [`BUSY`] while a request is in progress.
    idle_since: AtomicU64,
    /// Notified when the connection should close because the cap was reached; `shedding` once
    /// it has been asked.
    shed: Notify,
    shedding: AtomicBool,
    /// The HTTP/2 response streams, each with the time since which it has waited for the client
    /// to accept data ([`NOT_WAITING`] if it is not waiting). Dead entries are pruned as it grows.
    sending: Mutex<Vec<Arc<AtomicU64>>>,
    epoch: Instant,
    /// The connection's place under the cap, freed when the last holder lets go.
    _place: OwnedSemaphorePermit,
}

impl Activity {
    /// A request started; the returned guard ends it when dropped.
    pub fn start(self: &Arc<Self>) -> InProgress {
        if self.in_progress.fetch_add(1, Ordering::Relaxed) == 0 {
            self.idle_since.store(BUSY, Ordering::Relaxed);
        }
        InProgress(self.clone())
    }

    /// Resolves when the connection has had no request in progress for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        self.lasted(limit, || {
            let since = self.idle_since.load(Ordering::Relaxed);
            (since != BUSY).then_some(since)
        })
        .await
    }

    /// Resolves once the state `since` reports (when it began, in microseconds since the
    /// epoch; `None` while it does not hold) has lasted `limit`. While it does not hold, it is
    /// looked at again after `limit`: a state that begins later is due later than that anyway.
    async fn lasted(&self, limit: Duration, since: impl Fn() -> Option<u64>) {
        loop {
            let Some(since) = since() else {
                tokio::time::sleep(limit).await;
                continue;
            };
            let due = self.epoch + Duration::from_micros(since) + limit;
            if due <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }

    /// Resolves when the listener asks this connection to make room.
    pub async fn shed(&self) {
        self.shed.notified().await
    }

    /// Whether no request is in progress now. A connection asked to make room checks this when
    /// it wakes: a request may have started since it was picked, and busy ones are never cut.
    pub fn is_idle(&self) -> bool {
        self.idle_since.load(Ordering::Relaxed) != BUSY
    }

    /// Tracks an HTTP/2 response stream for [`Activity::send_stalled`].
    pub fn track_send(&self) -> SendProgress {
        let waiting_since = Arc::new(AtomicU64::new(NOT_WAITING));
        let mut sending = lock(&self.sending);
        // Pruned only when the vector would grow, and then given room for as many streams again
        // as are alive: at least that many pushes come before the next prune, so its cost is
        // amortised, and the vector stays within about twice the streams alive.
        if sending.len() == sending.capacity() {
            sending.retain(|stream| Arc::strong_count(stream) > 1);
            let alive = sending.len();
            sending.reserve(alive.max(4));
        }
        sending.push(waiting_since.clone());
        SendProgress {
            waiting_since,
            waiting: false,
            epoch: self.epoch,
        }
    }

    /// Resolves when an HTTP/2 stream has waited `limit` for the client to accept its data.
    ///
    /// HTTP/2 flow control lets a client stop reading one stream (by withholding its
    /// WINDOW_UPDATEs) while the socket stays writable, so the socket's send timeout never sees
    /// it; the stream holds its upstream connection and hyper's send buffer meanwhile.
    pub async fn send_stalled(&self, limit: Duration) {
        self.lasted(limit, || {
            lock(&self.sending)
                .iter()
                .map(|stream| stream.load(Ordering::Relaxed))
                .filter(|&since| since != NOT_WAITING)
                .min()
        })
        .await
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The vectors and maps behind these locks hold no invariant a panic could break halfway.
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// One HTTP/2 response stream's side of [`Activity::send_stalled`]: waiting from when its body
/// hands hyper a data frame until hyper asks for the next one, which hyper does only once the
/// client's flow-control window has room.
pub struct SendProgress {
    waiting_since: Arc<AtomicU64>,
    /// A copy of whether `waiting_since` is set, so the common path writes nothing shared.
    waiting: bool,
    epoch: Instant,
}

impl SendProgress {
    /// hyper came back for the next frame: the client took the last one.
    pub fn resumed(&mut self) {
        if self.waiting {
            self.waiting = false;
            self.waiting_since.store(NOT_WAITING, Ordering::Relaxed);
        }
    }

    /// A data frame went to hyper: the stream waits for the client until [`Self::resumed`].
    pub fn handed_over(&mut self) {
        self.waiting = true;
        let now = micros_since(self.epoch, Instant::now());
        self.waiting_since.store(now, Ordering::Relaxed);
    }
}

impl Drop for SendProgress {
    fn drop(&mut self) {
        self.resumed();
    }
}

/// A request in progress on its connection, until its response body is done.
pub struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.in_progress.fetch_sub(1, Ordering::Relaxed) == 1 {
            let since = micros_since(activity.epoch, Instant::now());
            activity.idle_since.store(since, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connections(max: usize) -> Arc<Connections> {
        Arc::new(Connections::new(ServerLimits {
            max_connections: max,
            handshake_timeout: Duration::from_secs(1),
            ..ServerLimits::default()
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_idle_connection_is_shed_and_busy_ones_never() {
        let connections = connections(3);
        let oldest_idle = connections.admit().await.unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        let busy = connections.admit().await.unwrap();
        let _request = busy.activity.start();
        let newer_idle = connections.admit().await.unwrap();

        let oldest_shed = oldest_idle.activity.clone();
        let closer = tokio::spawn(async move {
            oldest_shed.shed().await;
            drop(oldest_idle);
        });
        let admitted = connections.admit().await;
        assert!(admitted.is_some(), "the idle connection made room");
        closer.await.unwrap();
        // The busy one and the newer idle one were left alone.
        for kept in [&busy, &newer_idle] {
            let notified = tokio::time::timeout(Duration::from_millis(1), kept.activity.shed());
            assert!(notified.await.is_err());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_already_asked_to_close_is_not_asked_again() {
        let connections = connections(2);
        let oldest = connections.admit().await.unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        let newer = connections.admit().await.unwrap();
        // Neither closes in time: each admission asks one more connection.
        assert!(connections.admit().await.is_none());
        assert!(connections.admit().await.is_none());
        for asked in [&oldest, &newer] {
            let notified = tokio::time::timeout(Duration::from_millis(1), asked.activity.shed());
            assert!(notified.await.is_ok(), "each was asked once");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_connection_is_busy_a_new_one_is_refused_after_the_handshake_timeout() {
        let connections = connections(1);
        let busy = connections.admit().await.unwrap();
        let _request = busy.activity.start();
        let started = Instant::now();
        assert!(connections.admit().await.is_none());
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_counts_from_the_end_of_the_last_request() {
        let connections = connections(1);
        let admitted = connections.admit().await.unwrap();
        let activity = admitted.activity.clone();
        let request = activity.start();
        let watch = tokio::spawn(async move {
            activity.idle_for(Duration::from_secs(10)).await;
            Instant::now()
        });
        tokio::time::advance(Duration::from_secs(25)).await;
        let ended = Instant::now();
        drop(request);
        assert_eq!(watch.await.unwrap() - ended, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_is_stalled_once_it_has_waited_the_whole_limit_for_the_client() {
        let connections = connections(1);
        let admitted = connections.admit().await.unwrap();
        let activity = admitted.activity.clone();
        let mut moving = activity.track_send();
        let mut stuck = activity.track_send();
        let started = Instant::now();
        let watch = tokio::spawn(async move {
            activity.send_stalled(Duration::from_secs(10)).await;
            Instant::now()
        });
        // One stream keeps taking its frames within the limit; that never counts as a stall.
        for _ in 0..5 {
            moving.handed_over();
            tokio::time::advance(Duration::from_secs(9)).await;
            moving.resumed();
        }
        // The other waits from here on, and a finished stream leaves no trace.
        stuck.handed_over();
        let waiting_from = Instant::now();
        drop(moving);
        assert!(!watch.is_finished());
        assert_eq!(watch.await.unwrap() - waiting_from, Duration::from_secs(10));
        assert!(waiting_from - started >= Duration::from_secs(45));
        stuck.resumed();
    }
}
