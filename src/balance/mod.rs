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
//! the table is published. Per-endpoint state ([`EndpointStats`]: in-flight count, latency,
//! health) lives in an [`EndpointRegistry`](crate::endpoint::EndpointRegistry) keyed by
//! address, so it survives table swaps. A backend whose endpoints and algorithm are unchanged
//! keeps its whole balancer (and so its round-robin position). Randomness comes from the
//! caller's RNG, so tests are seeded and reproducible.

mod affinity;
mod backend;
mod balancers;
mod consistent_hash;
mod least_connections;
mod least_response_time;
mod random;
mod round_robin;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use crate::endpoint::EndpointStats;
use crate::table::SlowStart;

pub(crate) use affinity::cookie_value;
pub use backend::BackendBalancer;
pub use balancers::Balancers;
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
