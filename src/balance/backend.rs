//! The runtime balancer of one backend: its members, their rotation (who is healthy and not
//! ejected, and panic mode when too few are), slow start, cookie affinity and retries' choice of
//! an untried endpoint, around the backend's algorithm.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

use super::affinity::{cookie_value, Affinity};
use super::{
    Balancer, ConsistentHashBalancer, LeastConnections, LeastResponseTime, Member, PickContext,
    Picked, RoundRobin, WeightedRandom,
};
use crate::endpoint::{in_panic, may_eject, RequestOutcome, Verdict};
use crate::table::{CookieAffinity, LoadBalancing, OutlierDetection, SlowStart, DEFAULT_DECAY};

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

#[cfg(test)]
mod slow_start_tests {
    use super::*;
    use crate::balance::test_support::{members, request};
    use crate::endpoint::EndpointStats;
    use http::HeaderMap;
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
mod rotation_tests {
    use super::*;
    use crate::balance::test_support::{members, request};
    use http::HeaderMap;
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
