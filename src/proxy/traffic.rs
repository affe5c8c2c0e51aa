//! Per-request traffic counters: requests by Ingress, Service, method and status; their
//! durations, the upstream's time to response headers, and bytes; and the attempts each
//! endpoint was sent, and how many it failed.
//!
//! Each worker counts in its own [`Shard`], which only that worker and a scrape ever lock, so a
//! request pays an uncontended lock and a hash of a pointer, never a shared atomic. A scrape
//! ([`Traffic::totals`]) drains every shard into the running totals, keyed by label values, and
//! drops the series of Ingresses and Services the current table no longer routes to. A shard
//! therefore holds only what happened since the last scrape.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use foldhash::HashMap;
use http::Method;

use super::pool::PoolStats;
use crate::table::TrafficLabels;

/// Upper bounds of the duration histograms, in seconds: Prometheus's defaults, which are also
/// ingress-nginx's, so dashboards and alerts carry over.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every worker's counters, and their totals.
#[derive(Debug, Default)]
pub struct Traffic {
    shards: Mutex<Vec<Arc<Shard>>>,
    totals: Mutex<Totals>,
    /// Each worker's HTTP/1.1 upstream pool's counts, read (not drained) at scrape time.
    pools: Mutex<Vec<Arc<PoolStats>>>,
}

/// The counters of one worker since the last scrape.
#[derive(Debug, Default)]
pub struct Shard(Mutex<ShardState>);

#[derive(Debug, Default)]
struct ShardState {
    tallies: HashMap<ShardKey, Tally>,
    /// This worker's copies of the table's labels, by the address of the table's: a request
    /// holds the worker's copy, so its reference count is only ever touched by this worker
    /// (every worker cloning the table's own `Arc` would bounce its count between cores).
    /// Emptied at each scrape, so copies for swapped-out tables do not pile up.
    copies: HashMap<usize, Arc<TrafficLabels>>,
    endpoints: HashMap<SocketAddr, Attempts>,
}

/// The running totals, by label values and by endpoint.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub series: BTreeMap<SeriesKey, Tally>,
    pub endpoints: BTreeMap<SocketAddr, Attempts>,
}

/// What an endpoint was sent: attempts (retries included), and those that got no response (a
/// failed connect, a reset, a timeout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attempts {
    pub sent: u64,
    pub failed: u64,
}

impl Attempts {
    fn add(&mut self, other: Attempts) {
        self.sent += other.sent;
        self.failed += other.failed;
    }
}

/// One attempt at an endpoint, for its counts: where, and whether it got a response.
#[derive(Clone, Copy, Debug)]
pub struct Attempted {
    pub endpoint: SocketAddr,
    pub answered: bool,
}

/// A series: who the request was for, its method and the status it was answered with.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub labels: Arc<TrafficLabels>,
    pub method: MethodLabel,
    pub code: u16,
}

/// A [`SeriesKey`] compared by the labels' address: every route has its own labels, so the
/// pointer identifies them within a table's life, and the shard holds the `Arc`, so the address
/// is not reused while it is a key.
#[derive(Debug)]
struct ShardKey(SeriesKey);

impl PartialEq for ShardKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0.labels, &other.0.labels)
            && self.0.method == other.0.method
            && self.0.code == other.0.code
    }
}

impl Eq for ShardKey {}

impl Hash for ShardKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0.labels).hash(state);
        self.0.method.hash(state);
        self.0.code.hash(state);
    }
}

/// A request method as a label: the methods of RFC 9110 and PATCH, and every other one as
/// `OTHER`, so a client cannot create series with made-up methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MethodLabel {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    Other,
}

impl MethodLabel {
    pub fn of(method: &Method) -> Self {
        match *method {
            Method::GET => Self::Get,
            Method::HEAD => Self::Head,
            Method::POST => Self::Post,
            Method::PUT => Self::Put,
            Method::DELETE => Self::Delete,
            Method::CONNECT => Self::Connect,
            Method::OPTIONS => Self::Options,
            Method::TRACE => Self::Trace,
            Method::PATCH => Self::Patch,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
            Self::Options => "OPTIONS",
            Self::Trace => "TRACE",
            Self::Patch => "PATCH",
            Self::Other => "OTHER",
        }
    }
}

/// The counts of one series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    pub requests: u64,
    /// From the request head to the end of the response.
    pub duration: Histogram,
    /// From sending to an endpoint to its response headers, for the last attempt of requests
    /// an endpoint answered.
    pub upstream_headers: Histogram,
    /// Request body bytes read from the client.
    pub request_bytes: u64,
    /// Response body bytes sent to the client.
    pub response_bytes: u64,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.duration.add(&other.duration);
        self.upstream_headers.add(&other.upstream_headers);
        self.request_bytes += other.request_bytes;
        self.response_bytes += other.response_bytes;
    }
}

/// A histogram over [`DURATION_BUCKETS`]: a count per bucket (not cumulative; the last is
/// above every bound), and the sum.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub buckets: [u64; DURATION_BUCKETS.len() + 1],
    pub sum: f64,
}

impl Histogram {
    fn observe(&mut self, value: Duration) {
        let seconds = value.as_secs_f64();
        let bucket = DURATION_BUCKETS.partition_point(|&bound| bound < seconds);
        self.buckets[bucket] += 1;
        self.sum += seconds;
    }

    fn add(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// `(upper bound, count)` pairs, the last bound infinite, as Prometheus encoders take them.
    pub fn by_bound(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        DURATION_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.buckets.iter().copied())
    }
}

/// What a finished request is counted as.
pub struct Completed<'r> {
    pub labels: &'r Arc<TrafficLabels>,
    pub method: MethodLabel,
    pub code: u16,
    pub duration: Duration,
    pub upstream_headers: Option<Duration>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// The last attempt at an endpoint (earlier ones are counted by [`Shard::attempted`]).
    pub last_attempt: Option<Attempted>,
}

impl Shard {
    /// This worker's copy of `labels` (a table's).
    pub fn labels(&self, labels: &Arc<TrafficLabels>) -> Arc<TrafficLabels> {
        let mut state = self.lock();
        let copy = state
            .copies
            .entry(Arc::as_ptr(labels) as usize)
            .or_insert_with(|| Arc::new(TrafficLabels::clone(labels)));
        // The address may be that of a dropped table's labels, reused: compared by content
        // (reading shared memory costs nothing; writing its reference count would).
        if **copy != **labels {
            *copy = Arc::new(TrafficLabels::clone(labels));
        }
        copy.clone()
    }

    pub fn record(&self, request: Completed<'_>) {
        let key = ShardKey(SeriesKey {
            labels: request.labels.clone(),
            method: request.method,
            code: request.code,
        });
        let mut state = self.lock();
        let tally = state.tallies.entry(key).or_default();
        tally.requests += 1;
        tally.duration.observe(request.duration);
        if let Some(headers) = request.upstream_headers {
            tally.upstream_headers.observe(headers);
        }
        tally.request_bytes += request.request_bytes;
        tally.response_bytes += request.response_bytes;
        if let Some(attempt) = request.last_attempt {
            count(&mut state, attempt);
        }
    }

    /// Counts an attempt that was not a request's last (one that was retried): rare, so it is
    /// counted at once rather than carried in the record.
    pub fn attempted(&self, attempt: Attempted) {
        count(&mut self.lock(), attempt);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ShardState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn count(state: &mut ShardState, attempt: Attempted) {
    let counts = state.endpoints.entry(attempt.endpoint).or_default();
    counts.sent += 1;
    counts.failed += u64::from(!attempt.answered);
}

impl Traffic {
    /// A new worker's shard.
    pub fn shard(&self) -> Arc<Shard> {
        let shard = Arc::new(Shard::default());
        self.lock_shards().push(shard.clone());
        shard
    }

    /// A new worker's upstream pool counts.
    pub fn pool(&self) -> Arc<PoolStats> {
        let pool = Arc::new(PoolStats::default());
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools.push(pool.clone());
        pool
    }

    /// `(open, opened, reused)` over every worker's HTTP/1.1 upstream pool.
    pub fn pools(&self) -> (u64, u64, u64) {
        let pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools
            .iter()
            .fold((0, 0, 0), |(open, opened, reused), pool| {
                (
                    open + pool.open(),
                    opened + pool.opened(),
                    reused + pool.reused(),
                )
            })
    }

    /// Drains every worker's shard into the totals and forgets the series whose labels
    /// `routed` no longer accepts (unmatched requests always stay) and the endpoints `member`
    /// no longer accepts, so the series of a deleted Ingress or a departed endpoint disappear.
    /// Run at every table swap as well as at every scrape: shards are keyed by the table's
    /// label copies, so without it a process nobody scrapes would keep a set per table.
    pub fn fold(
        &self,
        routed: impl Fn(&TrafficLabels) -> bool,
        member: impl Fn(SocketAddr) -> bool,
    ) {
        let mut totals = self.totals();
        // A worker that stopped leaves its shard here with only the last scrape's counts.
        let shards = self.lock_shards().clone();
        for shard in shards {
            // Taken whole, so the worker waits only for a swap of maps, not for the merge.
            let (tallies, endpoints) = {
                let mut state = shard.lock();
                state.copies.clear();
                let tallies = std::mem::take(&mut state.tallies);
                (tallies, std::mem::take(&mut state.endpoints))
            };
            for (ShardKey(key), tally) in tallies {
                totals.series.entry(key).or_default().add(&tally);
            }
            for (endpoint, attempts) in endpoints {
                totals.endpoints.entry(endpoint).or_default().add(attempts);
            }
        }
        let unmatched = TrafficLabels::default();
        totals
            .series
            .retain(|key, _| *key.labels == unmatched || routed(&key.labels));
        totals.endpoints.retain(|&endpoint, _| member(endpoint));
    }

    /// The totals as of the last [`fold`](Self::fold).
    pub fn totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        self.totals.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_shards(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Shard>>> {
        self.shards.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(ingress: &str) -> Arc<TrafficLabels> {
        Arc::new(TrafficLabels {
            namespace: "default".into(),
            ingress: ingress.into(),
            service: "web".into(),
        })
    }

    fn completed(labels: &Arc<TrafficLabels>, millis: u64) -> Completed<'_> {
        Completed {
            labels,
            method: MethodLabel::Get,
            code: 200,
            duration: Duration::from_millis(millis),
            upstream_headers: Some(Duration::from_millis(millis / 2)),
            request_bytes: 10,
            response_bytes: 100,
            last_attempt: Some(Attempted {
                endpoint: "10.0.0.1:80".parse().unwrap(),
                answered: true,
            }),
        }
    }

    #[test]
    fn workers_are_summed_by_label_values_and_departed_series_dropped() {
        let traffic = Traffic::default();
        let (one, two) = (traffic.shard(), traffic.shard());
        // Two tables' routes for the same Ingress: distinct Arcs, one series.
        let (old, new, gone) = (labels("shop"), labels("shop"), labels("gone"));
        one.record(completed(&old, 3));
        two.record(completed(&new, 30));
        two.record(completed(&gone, 1));
        two.attempted(Attempted {
            endpoint: "10.0.0.1:80".parse().unwrap(),
            answered: false,
        });
        two.attempted(Attempted {
            endpoint: "10.0.0.9:80".parse().unwrap(),
            answered: false,
        });
        let member =
            |endpoint: SocketAddr| endpoint.ip() != "10.0.0.9".parse::<std::net::IpAddr>().unwrap();
        traffic.fold(|labels| &*labels.ingress != "gone", member);
        let totals = traffic.totals();
        assert_eq!(totals.series.len(), 1);
        let endpoint = totals.endpoints[&"10.0.0.1:80".parse().unwrap()];
        assert_eq!(endpoint, Attempts { sent: 4, failed: 1 });
        assert_eq!(
            totals.endpoints.len(),
            1,
            "the departed endpoint is forgotten"
        );
        let tally = &totals.series[&SeriesKey {
            labels: new.clone(),
            method: MethodLabel::Get,
            code: 200,
        }];
        assert_eq!(tally.requests, 2);
        assert_eq!(tally.duration.count(), 2);
        assert_eq!(tally.duration.buckets[0], 1, "3 ms is under 5 ms");
        assert_eq!(tally.duration.buckets[3], 1, "30 ms is under 50 ms");
        assert!((tally.duration.sum - 0.033).abs() < 1e-9);
        assert_eq!((tally.request_bytes, tally.response_bytes), (20, 200));

        // Drained: the next scrape adds only what came since.
        one.record(completed(&new, 3));
        drop(totals);
        traffic.fold(|_| true, |_| true);
        let totals = traffic.totals();
        assert_eq!(totals.series.values().map(|t| t.requests).sum::<u64>(), 3);
    }

    #[test]
    fn a_worker_counts_with_its_own_copies_of_the_labels() {
        let traffic = Traffic::default();
        let shard = traffic.shard();
        let table = labels("shop");
        let copy = shard.labels(&table);
        assert!(!Arc::ptr_eq(&copy, &table));
        assert_eq!(copy, table);
        assert!(
            Arc::ptr_eq(&copy, &shard.labels(&table)),
            "one copy per worker"
        );
        assert_eq!(
            Arc::strong_count(&table),
            1,
            "the table's count is never touched"
        );
    }

    #[test]
    fn a_duration_on_a_bound_falls_in_that_bucket_and_beyond_all_in_the_last() {
        let mut histogram = Histogram::default();
        histogram.observe(Duration::from_millis(5));
        histogram.observe(Duration::from_secs(60));
        assert_eq!(histogram.buckets[0], 1);
        assert_eq!(histogram.buckets[DURATION_BUCKETS.len()], 1);
        let bounds: Vec<_> = histogram.by_bound().collect();
        assert_eq!(bounds.last(), Some(&(f64::INFINITY, 1)));
    }

    #[test]
    fn unknown_methods_share_one_label() {
        let made_up = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(MethodLabel::of(&made_up), MethodLabel::Other);
        assert_eq!(MethodLabel::of(&Method::PATCH).as_str(), "PATCH");
    }
}
