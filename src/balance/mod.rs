//! Load balancing: one file per algorithm behind the [`Balancer`] trait.
//!
//! ```text
//! table::Backend { endpoints, load_balancing (plain data) }
//!        │ Balancers::build, once per published table
//!        ▼
//! BackendBalancer { members: [Member { stats: Arc<EndpointStats>, weight }], picker: dyn Balancer }
//!        │ pick(&mut PickContext) on the hot path: no locks, no allocation
//!        ▼
//! index of the chosen endpoint
//! ```
//!
//! Whatever can be precomputed (weight sequences, prefix sums, hash tables) is built once, when
//! the table is published. Per-endpoint state ([`EndpointStats`]: in-flight count, latency)
//! lives in an [`EndpointRegistry`] keyed by address, so it survives table swaps. A backend
//! whose endpoints and algorithm are unchanged keeps its whole balancer (and so its round-robin
//! position). Randomness comes from the caller's RNG, so tests are seeded and reproducible.

mod consistent_hash;
mod least_connections;
mod least_response_time;
mod random;
mod round_robin;

use foldhash::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::endpoint::{
    in_panic, may_eject, EndpointRegistry, EndpointStats, RequestOutcome, Verdict,
};
use crate::table::{
    Backend, CookieAffinity, LoadBalancing, OutlierDetection, RoutingTable, SameSite, SlowStart,
    DEFAULT_DECAY,
};

pub use consistent_hash::ConsistentHashBalancer;
pub use least_connections::LeastConnections;
pub use least_response_time::LeastResponseTime;
pub use random::WeightedRandom;
pub use round_robin::RoundRobin;

/// What a balancer may look at in a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo<'a> {
    pub client_ip: IpAddr,
    pub headers: &'a HeaderMap,
    pub path: &'a str,
    pub query: Option<&'a str>,
}

/// One pick's inputs: the request, the time, and a random source.
pub struct PickContext<'a> {
    pub request: RequestInfo<'a>,
    pub now: Instant,
    pub rng: &'a mut fastrand::Rng,
    /// Set by the backend's balancer for the algorithms that honour slow start.
    slow_start: Option<SlowStart>,
    /// Endpoints (by index) that earlier attempts of this request already failed on.
    tried: &'a [usize],
}

impl<'a> PickContext<'a> {
    pub fn new(request: RequestInfo<'a>, now: Instant, rng: &'a mut fastrand::Rng) -> Self {
        Self {
            request,
            now,
            rng,
            slow_start: None,
            tried: &[],
        }
    }

    /// A retry: prefer endpoints other than `tried`.
    pub fn avoiding(mut self, tried: &'a [usize]) -> Self {
        self.tried = tried;
        self
    }

    /// The share of its weight `member` gets now: 1 once warm; while joining under slow start,
    /// max(min weight, (elapsed / window) ^ (1 / aggression)), as Envoy computes it.
    pub fn ramp(&self, member: &Member) -> f64 {
        let (Some(slow_start), Some(joined)) = (self.slow_start, member.stats.joined()) else {
            return 1.0;
        };
        let elapsed = self.now.saturating_duration_since(joined);
        if elapsed >= slow_start.window {
            return 1.0;
        }
        let progress = elapsed.as_secs_f64() / slow_start.window.as_secs_f64().max(f64::EPSILON);
        let exponent = 100.0 / f64::from(slow_start.aggression_percent.max(1));
        progress
            .powf(exponent)
            .max(f64::from(slow_start.min_weight_percent.min(100)) / 100.0)
    }
}

/// An endpoint as a balancer sees it.
#[derive(Clone, Debug)]
pub struct Member {
    pub address: SocketAddr,
    pub weight: u32,
    pub stats: Arc<EndpointStats>,
}

/// Chooses the endpoint of a backend for one request.
pub trait Balancer: Send + Sync + fmt::Debug {
    /// The index of the chosen member, or `None` when there is none.
    fn pick(&self, members: &[Member], ctx: &mut PickContext<'_>) -> Option<usize>;
}

/// The outcome of a pick.
#[derive(Debug)]
pub struct Picked<'a> {
    /// Index of the endpoint in the backend's endpoint list.
    pub index: usize,
    pub member: &'a Member,
    /// A `Set-Cookie` value to add to the response (cookie affinity pinning a new choice).
    pub set_cookie: Option<&'a HeaderValue>,
}

/// Cookie affinity at run time: which token names which member, and each member's cookie.
#[derive(Debug)]
struct Affinity {
    cookie: Box<str>,
    by_token: HashMap<String, usize>,
    set_cookie: Vec<HeaderValue>,
}

impl Affinity {
    /// Tokens are a keyed hash of backend and address: opaque (never the IP), and the same on
    /// every replica, so any replica honours any replica's cookie.
    fn new(config: &CookieAffinity, backend: &str, members: &[Member]) -> Self {
        let token = |m: &Member| {
            format!(
                "{:016x}",
                xxh3_64_with_seed(format!("{backend}|{}", m.address).as_bytes(), AFFINITY_SEED)
            )
        };
        let attributes = cookie_attributes(config);
        Self {
            cookie: config.name.clone(),
            by_token: members
                .iter()
                .enumerate()
                .map(|(i, m)| (token(m), i))
                .collect(),
            set_cookie: members
                .iter()
                .map(|m| {
                    HeaderValue::from_str(&format!("{}={}{attributes}", config.name, token(m)))
                        .unwrap_or_else(|_| HeaderValue::from_static(""))
                })
                .collect(),
        }
    }
}

const AFFINITY_SEED: u64 = 0x7661_6e65_7374_6b79; // "vanestky"

/// `; Path=/; Max-Age=...; ...`: built from typed, validated settings only.
fn cookie_attributes(config: &CookieAffinity) -> String {
    let mut attributes = format!("; Path={}", config.path);
    if let Some(domain) = &config.domain {
        attributes += &format!("; Domain={domain}");
    }
    if let Some(max_age) = config.max_age {
        attributes += &format!("; Max-Age={}", max_age.as_secs());
    }
    if let Some(same_site) = config.same_site {
        attributes += &format!("; SameSite={same_site:?}");
    }
    // Browsers reject SameSite=None without Secure.
    if config.secure || config.same_site == Some(SameSite::None) {
        attributes += "; Secure";
    }
    if config.http_only {
        attributes += "; HttpOnly";
    }
    attributes
}

/// The value of cookie `name` in the request, if any.
pub(crate) fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// The runtime balancer of one backend.
///
/// Only endpoints in rotation (probes healthy, not ejected) are picked. Which ones are is a
/// [`Rotation`], recomputed on the hot path only when some endpoint's health changed or an
/// ejection ran out; while every endpoint is healthy, picks go straight to the algorithm over
/// all members. A rotation without some members gets its own algorithm over the rest (for
/// hashing, as Envoy does: keys of the missing endpoints move, the others stay).
#[derive(Debug)]
pub struct BackendBalancer {
    members: Vec<Member>,
    load_balancing: LoadBalancing,
    picker: Box<dyn Balancer>,
    rotation: ArcSwap<Rotation>,
    outlier: OutlierDetection,
    affinity: Option<Affinity>,
    /// Only for the algorithms that honour it (not random, not hashing).
    slow_start: Option<SlowStart>,
    /// EWMA decay used when recording latency samples for this backend.
    decay: Duration,
}

/// The members of a backend in rotation at some point in time.
#[derive(Debug)]
struct Rotation {
    /// The registry's health change count this was computed at.
    changes: u64,
    /// The earliest end of an ejection among the members: recompute then.
    until: Option<Instant>,
    /// `None`: every member (all healthy, or panic mode).
    partial: Option<Partial>,
    panic: bool,
}

#[derive(Debug)]
struct Partial {
    /// Member indexes in rotation, ascending.
    indexes: Vec<usize>,
    members: Vec<Member>,
    picker: Box<dyn Balancer>,
}

impl Rotation {
    fn admits(&self, index: usize) -> bool {
        self.partial
            .as_ref()
            .is_none_or(|p| p.indexes.binary_search(&index).is_ok())
    }
}

fn picker_for(members: &[Member], load_balancing: &LoadBalancing) -> Box<dyn Balancer> {
    match load_balancing {
        LoadBalancing::RoundRobin => Box::new(RoundRobin::new(members)),
        LoadBalancing::Random => Box::new(WeightedRandom::new(members)),
        LoadBalancing::LeastConnections => Box::new(LeastConnections),
        LoadBalancing::LeastResponseTime { decay } => Box::new(LeastResponseTime::new(*decay)),
        LoadBalancing::ConsistentHash(config) => {
            Box::new(ConsistentHashBalancer::new(members, config))
        }
    }
}

impl BackendBalancer {
    pub fn new(
        members: Vec<Member>,
        load_balancing: &LoadBalancing,
        slow_start: Option<SlowStart>,
    ) -> Self {
        Self::with_affinity(members, load_balancing, slow_start, None)
    }

    /// A balancer with cookie affinity (`affinity` is the config and the backend's name).
    pub fn with_affinity(
        members: Vec<Member>,
        load_balancing: &LoadBalancing,
        slow_start: Option<SlowStart>,
        affinity: Option<(&CookieAffinity, &str)>,
    ) -> Self {
        let affinity = affinity.map(|(config, backend)| Affinity::new(config, backend, &members));
        let slow_start = match load_balancing {
            LoadBalancing::RoundRobin
            | LoadBalancing::LeastConnections
            | LoadBalancing::LeastResponseTime { .. } => slow_start,
            LoadBalancing::Random | LoadBalancing::ConsistentHash(_) => None,
        };
        let decay = match load_balancing {
            LoadBalancing::LeastResponseTime { decay } => *decay,
            _ => DEFAULT_DECAY,
        };
        Self {
            picker: picker_for(&members, load_balancing),
            members,
            load_balancing: load_balancing.clone(),
            // Computed at the first pick.
            rotation: ArcSwap::from_pointee(Rotation {
                changes: u64::MAX,
                until: None,
                partial: None,
                panic: false,
            }),
            outlier: OutlierDetection::default(),
            affinity,
            slow_start,
            decay,
        }
    }

    /// Sets how live traffic ejects endpoints, and the panic threshold.
    pub fn with_outlier_detection(mut self, outlier: OutlierDetection) -> Self {
        self.outlier = outlier;
        self
    }

    fn health_changes(&self) -> u64 {
        self.members.first().map_or(0, |m| m.stats.health.changes())
    }

    fn compute_rotation(&self, now: Instant) -> Rotation {
        let changes = self.health_changes();
        let mut until: Option<Instant> = None;
        let mut indexes = Vec::with_capacity(self.members.len());
        for (i, member) in self.members.iter().enumerate() {
            if let Some(end) = member.stats.health.ejected_until(now) {
                until = Some(until.map_or(end, |u| u.min(end)));
            }
            if member.stats.health.is_available(now) {
                indexes.push(i);
            }
        }
        let all = self.members.len();
        let panic = in_panic(indexes.len(), all, self.outlier.panic_threshold_percent);
        let partial = (!panic && indexes.len() < all).then(|| {
            let members: Vec<Member> = indexes.iter().map(|&i| self.members[i].clone()).collect();
            Partial {
                picker: picker_for(&members, &self.load_balancing),
                indexes,
                members,
            }
        });
        Rotation {
            changes,
            until,
            partial,
            panic,
        }
    }

    /// The rotation at `now`, recomputed if health changed since it was computed. (A guard,
    /// not a cloned `Arc`: worker threads picking at once never write a shared count.)
    fn rotation(&self, now: Instant) -> arc_swap::Guard<Arc<Rotation>> {
        let current = self.rotation.load();
        let stale = current.changes != self.health_changes()
            || current.until.is_some_and(|until| until <= now);
        if !stale {
            return current;
        }
        drop(current);
        self.rotation.store(Arc::new(self.compute_rotation(now)));
        self.rotation.load()
    }

    /// Picks an endpoint in rotation. With cookie affinity, a request whose cookie names a
    /// member in rotation goes there; otherwise the algorithm picks and the response (re)sets
    /// the cookie. A retry avoids the endpoints it already tried while others are in rotation.
    pub fn pick(&self, ctx: &mut PickContext<'_>) -> Option<Picked<'_>> {
        let rotation = self.rotation(ctx.now);
        if let Some(affinity) = &self.affinity {
            let pinned = cookie_value(ctx.request.headers, &affinity.cookie)
                .and_then(|token| affinity.by_token.get(token))
                .filter(|&&i| rotation.admits(i) && !ctx.tried.contains(&i));
            if let Some(&index) = pinned {
                return Some(Picked {
                    index,
                    member: self.members.get(index)?,
                    set_cookie: None,
                });
            }
        }
        ctx.slow_start = self.slow_start;
        let index = match &rotation.partial {
            None => self.picker.pick(&self.members, ctx)?,
            Some(partial) => *partial
                .indexes
                .get(partial.picker.pick(&partial.members, ctx)?)?,
        };
        let index = self.untried(index, &rotation, ctx.tried);
        Some(Picked {
            index,
            member: self.members.get(index)?,
            set_cookie: self.affinity.as_ref().and_then(|a| a.set_cookie.get(index)),
        })
    }

    /// `index`, or when a retry already tried it, the next member in rotation that it did not.
    fn untried(&self, index: usize, rotation: &Rotation, tried: &[usize]) -> usize {
        if !tried.contains(&index) {
            return index;
        }
        let n = self.members.len();
        (1..n)
            .map(|step| (index + step) % n)
            .find(|i| rotation.admits(*i) && !tried.contains(i))
            .unwrap_or(index)
    }

    /// Whether a member in rotation is left that `tried` does not name.
    pub fn has_untried(&self, tried: &[usize], now: Instant) -> bool {
        let rotation = self.rotation(now);
        (0..self.members.len()).any(|i| rotation.admits(i) && !tried.contains(&i))
    }

    /// Reports what became of a request to member `index`; returns the end of the ejection
    /// when this outcome ejected the endpoint.
    pub fn report(&self, index: usize, outcome: RequestOutcome, now: Instant) -> Option<Instant> {
        let member = self.members.get(index)?;
        if member.stats.health.record(outcome, &self.outlier) != Verdict::Eject {
            return None;
        }
        let ejected = self
            .members
            .iter()
            .filter(|m| m.stats.health.ejected_until(now).is_some())
            .count();
        if !may_eject(
            ejected,
            self.members.len(),
            self.outlier.max_ejection_percent,
        ) {
            return None;
        }
        member.stats.health.eject(&self.outlier, now)
    }

    /// Whether the backend is in panic mode (too few endpoints healthy, so health is ignored).
    pub fn in_panic(&self, now: Instant) -> bool {
        self.rotation(now).panic
    }

    pub fn decay(&self) -> Duration {
        self.decay
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }
}

/// The balancers of one table, indexed like [`RoutingTable::backends`].
#[derive(Debug, Default)]
pub struct Balancers {
    per_backend: Vec<Arc<BackendBalancer>>,
}

impl Balancers {
    /// Builds balancers for `table`. `same[i]` is the index in `previous` of a backend
    /// identical to backend `i` (see [`RoutingTable::same_backends`]): it keeps its balancer;
    /// all others get new balancers over the registry's (surviving) endpoint state.
    pub fn build(
        table: &RoutingTable,
        same: &[Option<usize>],
        previous: &Balancers,
        registry: &EndpointRegistry,
        now: Instant,
    ) -> Self {
        let addresses = table
            .backends()
            .iter()
            .flat_map(|b| b.endpoints().iter().map(|e| e.address));
        let stats = registry.retain(addresses, now);
        let per_backend = table
            .backends()
            .iter()
            .zip(same)
            .map(
                |(backend, same)| match same.and_then(|old| previous.per_backend.get(old)) {
                    Some(balancer) => Arc::clone(balancer),
                    None => Arc::new(new_balancer(backend, &stats, now)),
                },
            )
            .collect();
        Self { per_backend }
    }

    pub fn get(&self, backend: usize) -> Option<&BackendBalancer> {
        self.per_backend.get(backend).map(|b| &**b)
    }
}

/// Members line up with the backend's endpoints, index for index.
fn new_balancer(
    backend: &Backend,
    stats: &HashMap<SocketAddr, Arc<EndpointStats>>,
    now: Instant,
) -> BackendBalancer {
    let members = backend
        .endpoints()
        .iter()
        .map(|e| Member {
            address: e.address,
            weight: e.weight,
            // The registry holds every address of the table; detached is only a fallback.
            stats: stats
                .get(&e.address)
                .cloned()
                .unwrap_or_else(|| EndpointStats::detached(now)),
        })
        .collect();
    let affinity = backend
        .affinity
        .as_ref()
        .map(|config| (config, &*backend.name));
    BackendBalancer::with_affinity(
        members,
        &backend.load_balancing,
        backend.slow_start,
        affinity,
    )
    .with_outlier_detection(backend.health.passive)
}

/// Two distinct random indexes below `n` (n >= 2): the candidates of a power-of-two-choices pick.
fn two_choices(n: usize, rng: &mut fastrand::Rng) -> (usize, usize) {
    let a = rng.usize(..n);
    let b = rng.usize(..n - 1);
    (a, if b >= a { b + 1 } else { b })
}

/// The index with the lowest `cost` (divided by the slow-start ramp, so joining endpoints look
/// costlier): every member when there are few (exact), else the better
/// of two random choices (Mitzenmacher's power of two choices), which stays O(1) for large
/// backends while avoiding the herd behaviour of always picking the global minimum. Ties go to
/// a random one of the tied.
fn least_cost(
    members: &[Member],
    ctx: &mut PickContext<'_>,
    cost: impl Fn(&Member, &PickContext<'_>) -> f64,
) -> Option<usize> {
    let cost = |m: &Member, ctx: &PickContext<'_>| cost(m, ctx) / ctx.ramp(m);
    const EXACT_UP_TO: usize = 8;
    match members.len() {
        0 => None,
        1 => Some(0),
        n if n <= EXACT_UP_TO => {
            let mut best = f64::INFINITY;
            let mut tied = 0usize;
            let mut choice = 0;
            for (i, member) in members.iter().enumerate() {
                let c = cost(member, ctx);
                if c < best {
                    best = c;
                    tied = 1;
                    choice = i;
                } else if c == best {
                    // Reservoir sampling: each of the tied wins with equal probability.
                    tied += 1;
                    if ctx.rng.usize(..tied) == 0 {
                        choice = i;
                    }
                }
            }
            Some(choice)
        }
        n => {
            let (a, b) = two_choices(n, ctx.rng);
            let (ca, cb) = (cost(&members[a], ctx), cost(&members[b], ctx));
            Some(if ca < cb || (ca == cb && ctx.rng.bool()) {
                a
            } else {
                b
            })
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn members(weights: &[u32]) -> Vec<Member> {
        let now = Instant::now();
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Member {
                address: SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8080)),
                weight,
                stats: EndpointStats::detached(now),
            })
            .collect()
    }

    /// A request from 192.0.2.1 for `path`, with `headers`.
    pub fn request<'a>(headers: &'a HeaderMap, path: &'a str) -> RequestInfo<'a> {
        RequestInfo {
            client_ip: IpAddr::from([192, 0, 2, 1]),
            headers,
            path,
            query: None,
        }
    }

    /// Counts picks over `n` requests with a seeded RNG.
    pub fn distribution(balancer: &dyn Balancer, members: &[Member], n: usize) -> Vec<usize> {
        let headers = HeaderMap::new();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = vec![0; members.len()];
        for _ in 0..n {
            let mut ctx = PickContext::new(request(&headers, "/"), Instant::now(), &mut rng);
            counts[balancer.pick(members, &mut ctx).unwrap()] += 1;
        }
        counts
    }

    /// Asserts that `counts` follow `weights` within `tolerance` (a share, e.g. 0.02).
    pub fn assert_shares(counts: &[usize], weights: &[u32], tolerance: f64) {
        let total: usize = counts.iter().sum();
        let weight_total: u32 = weights.iter().sum();
        for (i, (&count, &weight)) in counts.iter().zip(weights).enumerate() {
            let share = count as f64 / total as f64;
            let expected = f64::from(weight) / f64::from(weight_total);
            assert!(
                (share - expected).abs() <= tolerance,
                "endpoint {i}: share {share:.4}, expected {expected:.4} ({counts:?})"
            );
        }
    }
}

#[cfg(test)]
mod slow_start_tests {
    use super::test_support::{members, request};
    use super::*;
    use std::time::Duration;

    const SLOW_START: SlowStart = SlowStart {
        window: Duration::from_secs(10),
        aggression_percent: 100,
        min_weight_percent: 10,
    };

    /// Share of `picks` that go to member 0, which joins now; the others are warm.
    fn joining_share(balancer: &BackendBalancer, picks: usize) -> f64 {
        let headers = HeaderMap::new();
        let mut rng = fastrand::Rng::with_seed(3);
        let mut hits = 0;
        for _ in 0..picks {
            let mut ctx = PickContext::new(request(&headers, "/"), Instant::now(), &mut rng);
            if balancer.pick(&mut ctx).map(|p| p.index) == Some(0) {
                hits += 1;
            }
        }
        hits as f64 / picks as f64
    }

    fn with_joining(load_balancing: &LoadBalancing) -> BackendBalancer {
        let mut m = members(&[1, 1, 1]);
        m[0].stats = EndpointStats::joining(Instant::now());
        BackendBalancer::new(m, load_balancing, Some(SLOW_START))
    }

    #[tokio::test(start_paused = true)]
    async fn round_robin_ramps_a_joining_endpoint_up_over_the_window() {
        let balancer = with_joining(&LoadBalancing::RoundRobin);
        let at_start = joining_share(&balancer, 30_000);
        assert!(at_start < 0.06, "{at_start}");
        tokio::time::advance(Duration::from_secs(5)).await;
        let halfway = joining_share(&balancer, 30_000);
        assert!((0.15..0.28).contains(&halfway), "{halfway}");
        tokio::time::advance(Duration::from_secs(5)).await;
        let warm = joining_share(&balancer, 30_000);
        assert!((warm - 1.0 / 3.0).abs() < 0.001, "{warm}");
    }

    #[tokio::test(start_paused = true)]
    async fn least_connections_avoids_a_joining_endpoint_until_it_is_warm() {
        let balancer = with_joining(&LoadBalancing::LeastConnections);
        assert_eq!(joining_share(&balancer, 3_000), 0.0);
        tokio::time::advance(Duration::from_secs(10)).await;
        let warm = joining_share(&balancer, 30_000);
        assert!((warm - 1.0 / 3.0).abs() < 0.02, "{warm}");
    }

    #[tokio::test(start_paused = true)]
    async fn random_and_hashing_ignore_slow_start() {
        let balancer = with_joining(&LoadBalancing::Random);
        let share = joining_share(&balancer, 30_000);
        assert!((share - 1.0 / 3.0).abs() < 0.02, "{share}");

        // Hashing: the joining endpoint keeps every key it owns (one key per path here).
        let hashing = LoadBalancing::ConsistentHash(crate::table::ConsistentHash {
            key: crate::table::HashKey::Path,
            ring: crate::table::HashRing::Maglev { table_size: 65537 },
            bounded_load_percent: None,
        });
        let balancer = with_joining(&hashing);
        let headers = HeaderMap::new();
        let mut rng = fastrand::Rng::with_seed(3);
        let keys = 30_000;
        let to_joining = (0..keys)
            .filter(|i| {
                let path = format!("/{i}");
                let mut ctx = PickContext::new(request(&headers, &path), Instant::now(), &mut rng);
                balancer.pick(&mut ctx).map(|p| p.index) == Some(0)
            })
            .count();
        let share = to_joining as f64 / keys as f64;
        assert!((share - 1.0 / 3.0).abs() < 0.02, "{share}");
    }
}

#[cfg(test)]
mod affinity_tests {
    use super::test_support::{members, request};
    use super::*;
    use std::time::Duration;

    fn config() -> CookieAffinity {
        CookieAffinity {
            name: "sticky".into(),
            path: "/app".into(),
            domain: Some("example.com".into()),
            max_age: Some(Duration::from_secs(3600)),
            secure: false,
            http_only: true,
            same_site: Some(SameSite::Lax),
        }
    }

    fn pick_with_cookie<'b>(balancer: &'b BackendBalancer, cookie: Option<&str>) -> Picked<'b> {
        let mut headers = HeaderMap::new();
        if let Some(cookie) = cookie {
            headers.insert(http::header::COOKIE, cookie.parse().unwrap());
        }
        let mut rng = fastrand::Rng::with_seed(5);
        balancer
            .pick(&mut PickContext::new(
                request(&headers, "/"),
                Instant::now(),
                &mut rng,
            ))
            .unwrap()
    }

    #[test]
    fn first_pick_sets_an_opaque_cookie_and_later_picks_follow_it() {
        let m = members(&[1, 1, 1]);
        let balancer = BackendBalancer::with_affinity(
            m.clone(),
            &LoadBalancing::RoundRobin,
            None,
            Some((&config(), "default/app:80")),
        );
        let first = pick_with_cookie(&balancer, None);
        let cookie = first.set_cookie.unwrap().to_str().unwrap().to_owned();
        assert!(cookie.starts_with("sticky="), "{cookie}");
        assert!(
            cookie
                .ends_with("; Path=/app; Domain=example.com; Max-Age=3600; SameSite=Lax; HttpOnly"),
            "{cookie}"
        );
        let address = m[first.index].address;
        assert!(
            !cookie.contains(&address.ip().to_string()),
            "the cookie must not reveal the address: {cookie}"
        );

        let pair = cookie.split(';').next().unwrap();
        for _ in 0..10 {
            let again = pick_with_cookie(&balancer, Some(&format!("other=1; {pair}")));
            assert_eq!(again.index, first.index);
            assert!(again.set_cookie.is_none());
        }
    }

    #[test]
    fn an_unknown_token_picks_again_and_resets_the_cookie() {
        let balancer = BackendBalancer::with_affinity(
            members(&[1, 1]),
            &LoadBalancing::RoundRobin,
            None,
            Some((&config(), "b")),
        );
        let picked = pick_with_cookie(&balancer, Some("sticky=0123456789abcdef"));
        assert!(picked.set_cookie.is_some());
    }

    #[test]
    fn same_site_none_is_always_secure() {
        let config = CookieAffinity {
            same_site: Some(SameSite::None),
            domain: None,
            max_age: None,
            ..config()
        };
        assert_eq!(
            cookie_attributes(&config),
            "; Path=/app; SameSite=None; Secure; HttpOnly"
        );
    }
}

#[cfg(test)]
mod rotation_tests {
    use super::test_support::{members, request};
    use super::*;
    use std::collections::HashSet;

    fn outlier(max_ejection_percent: u32, panic_threshold_percent: u32) -> OutlierDetection {
        OutlierDetection {
            consecutive_gateway_errors: Some(1),
            base_ejection_time: Duration::from_secs(10),
            max_ejection_percent,
            panic_threshold_percent,
            ..OutlierDetection::default()
        }
    }

    /// The member indexes `picks` picks land on.
    fn picked(balancer: &BackendBalancer, picks: usize, tried: &[usize]) -> HashSet<usize> {
        let headers = HeaderMap::new();
        let mut rng = fastrand::Rng::with_seed(7);
        (0..picks)
            .filter_map(|i| {
                let path = format!("/{i}");
                let mut ctx = PickContext::new(request(&headers, &path), Instant::now(), &mut rng)
                    .avoiding(tried);
                balancer.pick(&mut ctx).map(|p| p.index)
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_ejected_endpoint_is_skipped_until_its_ejection_ends() {
        for load_balancing in [
            LoadBalancing::RoundRobin,
            LoadBalancing::Random,
            LoadBalancing::LeastConnections,
            LoadBalancing::LeastResponseTime {
                decay: DEFAULT_DECAY,
            },
            LoadBalancing::ConsistentHash(crate::table::ConsistentHash {
                key: crate::table::HashKey::Path,
                ring: crate::table::HashRing::Maglev { table_size: 251 },
                bounded_load_percent: None,
            }),
        ] {
            let balancer = BackendBalancer::new(members(&[1, 1, 1]), &load_balancing, None)
                .with_outlier_detection(outlier(50, 0));
            assert_eq!(picked(&balancer, 300, &[]).len(), 3, "{load_balancing:?}");
            let until = balancer.report(1, RequestOutcome::GatewayError, Instant::now());
            assert!(until.is_some(), "ejected");
            assert_eq!(
                picked(&balancer, 300, &[]),
                HashSet::from([0, 2]),
                "{load_balancing:?}"
            );
            tokio::time::advance(Duration::from_secs(10)).await;
            assert_eq!(
                picked(&balancer, 300, &[]).len(),
                3,
                "back: {load_balancing:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn hashing_keeps_the_keys_of_healthy_endpoints_when_one_is_ejected() {
        let hashing = LoadBalancing::ConsistentHash(crate::table::ConsistentHash {
            key: crate::table::HashKey::Path,
            ring: crate::table::HashRing::Maglev { table_size: 65537 },
            bounded_load_percent: None,
        });
        let balancer = BackendBalancer::new(members(&[1, 1, 1, 1]), &hashing, None)
            .with_outlier_detection(outlier(50, 0));
        let headers = HeaderMap::new();
        let mut rng = fastrand::Rng::with_seed(1);
        let mut owner = |path: &str| {
            let mut ctx = PickContext::new(request(&headers, path), Instant::now(), &mut rng);
            balancer.pick(&mut ctx).unwrap().index
        };
        let before: Vec<usize> = (0..2000).map(|i| owner(&format!("/{i}"))).collect();
        balancer.report(2, RequestOutcome::GatewayError, Instant::now());
        let mut owner = |path: &str| {
            let mut ctx = PickContext::new(request(&headers, path), Instant::now(), &mut rng);
            balancer.pick(&mut ctx).unwrap().index
        };
        for (i, was) in before.iter().enumerate() {
            let now = owner(&format!("/{i}"));
            if *was == 2 {
                assert_ne!(now, 2);
            } else {
                assert_eq!(now, *was, "key /{i} moved off a healthy endpoint");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn max_ejection_percent_and_the_panic_threshold() {
        // At most 50% of 4 ejected: the third report ejects no one.
        let balancer =
            BackendBalancer::new(members(&[1, 1, 1, 1]), &LoadBalancing::RoundRobin, None)
                .with_outlier_detection(outlier(50, 0));
        let now = Instant::now();
        assert!(balancer
            .report(0, RequestOutcome::GatewayError, now)
            .is_some());
        assert!(balancer
            .report(1, RequestOutcome::GatewayError, now)
            .is_some());
        assert!(balancer
            .report(2, RequestOutcome::GatewayError, now)
            .is_none());
        assert_eq!(picked(&balancer, 100, &[]), HashSet::from([2, 3]));

        // 2 of 3 ejected is below a 50% panic threshold: every endpoint takes traffic.
        let panicky = BackendBalancer::new(members(&[1, 1, 1]), &LoadBalancing::RoundRobin, None)
            .with_outlier_detection(outlier(100, 50));
        panicky.report(0, RequestOutcome::GatewayError, now);
        assert_eq!(picked(&panicky, 100, &[]), HashSet::from([1, 2]));
        assert!(!panicky.in_panic(now));
        panicky.report(1, RequestOutcome::GatewayError, now);
        assert!(panicky.in_panic(now));
        assert_eq!(picked(&panicky, 100, &[]).len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_avoids_the_endpoints_it_tried() {
        let balancer =
            BackendBalancer::new(members(&[1, 1, 1]), &LoadBalancing::LeastConnections, None);
        assert_eq!(picked(&balancer, 100, &[0, 2]), HashSet::from([1]));
        assert_eq!(
            picked(&balancer, 100, &[0, 1, 2]).len(),
            3,
            "with every endpoint tried, any will do"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn affinity_to_an_ejected_endpoint_picks_again_and_resets_the_cookie() {
        let config = CookieAffinity {
            name: "sticky".into(),
            path: "/".into(),
            domain: None,
            max_age: None,
            secure: false,
            http_only: true,
            same_site: None,
        };
        let balancer = BackendBalancer::with_affinity(
            members(&[1, 1]),
            &LoadBalancing::RoundRobin,
            None,
            Some((&config, "b")),
        )
        .with_outlier_detection(outlier(50, 0));
        let headers = HeaderMap::new();
        let mut rng = fastrand::Rng::with_seed(1);
        let first = balancer
            .pick(&mut PickContext::new(
                request(&headers, "/"),
                Instant::now(),
                &mut rng,
            ))
            .unwrap();
        let (index, cookie) = (first.index, first.set_cookie.unwrap().clone());
        let mut pinned = HeaderMap::new();
        let pair = cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        pinned.insert(http::header::COOKIE, pair.parse().unwrap());
        balancer.report(index, RequestOutcome::GatewayError, Instant::now());
        let again = balancer
            .pick(&mut PickContext::new(
                request(&pinned, "/"),
                Instant::now(),
                &mut rng,
            ))
            .unwrap();
        assert_ne!(again.index, index);
        assert!(
            again.set_cookie.is_some(),
            "the cookie moves to the new endpoint"
        );
    }
}
