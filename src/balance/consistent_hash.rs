//! Consistent hashing: the same key goes to the same endpoint while the endpoints stay the same,
//! and removing one of N endpoints moves only about 1/N of the keys.
//!
//! - **Maglev** (Eisenbud et al., NSDI 2016): a lookup table of a prime size M, filled from a
//!   per-endpoint permutation; a pick is one hash and one index. Weights are honoured by letting
//!   heavier endpoints take more turns while the table fills.
//! - **Ring hash** (Ketama): each endpoint owns points on a ring in proportion to its weight; a
//!   pick is a binary search for the first point at or after the key's hash.
//! - **Bounded load** (Mirrokni et al., 2018): an endpoint with more than `factor` times the mean
//!   load in flight passes the key on to the next endpoint along the table or ring.
//!
//! Hashes are xxh3 of the endpoint address with fixed seeds, so every replica (and every
//! rebuild) computes the same table for the same endpoints. A request without a key (say, a
//! missing header) goes to a random endpoint.

use std::net::IpAddr;

use xxhash_rust::xxh3::{xxh3_64_with_seed, Xxh3};

use super::{Balancer, Member, PickContext, RequestInfo};
use crate::table::{ConsistentHash, HashKey, HashRing};

const OFFSET_SEED: u64 = 0x7661_6e65_6f66_6673; // "vaneoffs"
const SKIP_SEED: u64 = 0x7661_6e65_736b_6970; // "vaneskip"
const RING_SEED: u64 = 0x7661_6e65_7269_6e67; // "vanering"
const KEY_SEED: u64 = 0x7661_6e65_6b65_7973; // "vanekeys"

#[derive(Debug)]
pub struct ConsistentHashBalancer {
    key: HashKey,
    lookup: Lookup,
    bounded_load_percent: Option<u32>,
}

#[derive(Debug)]
enum Lookup {
    /// Table slot to member index.
    Maglev(Box<[u32]>),
    /// (point, member index), sorted by point.
    Ring(Box<[(u64, u32)]>),
}

impl ConsistentHashBalancer {
    pub fn new(members: &[Member], config: &ConsistentHash) -> Self {
        let names: Vec<String> = members.iter().map(|m| m.address.to_string()).collect();
        let weights: Vec<u32> = members.iter().map(|m| m.weight.max(1)).collect();
        let lookup = match config.ring {
            HashRing::Maglev { table_size } => {
                Lookup::Maglev(maglev_table(&names, &weights, table_size.max(1)))
            }
            HashRing::Ring { points_per_weight } => {
                Lookup::Ring(ring(&names, &weights, points_per_weight.max(1)))
            }
        };
        Self {
            key: config.key.clone(),
            lookup,
            bounded_load_percent: config.bounded_load_percent,
        }
    }

    /// The member for `hash` before any load bound: for tests of the placement itself.
    fn place(&self, hash: u64) -> Option<usize> {
        self.candidates(hash).next()
    }

    /// Members in the order the table or ring offers them for `hash` (may repeat). Plain index
    /// arithmetic: a pick allocates nothing.
    fn candidates(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let len = match &self.lookup {
            Lookup::Maglev(table) => table.len(),
            Lookup::Ring(points) => points.len(),
        };
        let start = match &self.lookup {
            _ if len == 0 => 0,
            Lookup::Maglev(_) => (hash % len as u64) as usize,
            Lookup::Ring(points) => points.partition_point(|&(point, _)| point < hash),
        };
        (0..len).map(move |i| match &self.lookup {
            Lookup::Maglev(table) => table[(start + i) % len] as usize,
            Lookup::Ring(points) => points[(start + i) % len].1 as usize,
        })
    }
}

impl Balancer for ConsistentHashBalancer {
    fn pick(&self, members: &[Member], ctx: &mut PickContext<'_>) -> Option<usize> {
        if members.is_empty() {
            return None;
        }
        let Some(hash) = key_hash(&self.key, &ctx.request) else {
            return Some(ctx.rng.usize(..members.len()));
        };
        let Some(percent) = self.bounded_load_percent else {
            return self.place(hash);
        };
        // Capacity per endpoint: ceil(factor * (load + 1) / n), counting this request.
        let load: u64 = members.iter().map(|m| u64::from(m.stats.in_flight())).sum();
        let capacity = (u64::from(percent) * (load + 1))
            .div_ceil(100 * members.len() as u64)
            .max(1);
        let mut first = None;
        for index in self.candidates(hash).take(members.len() * 8) {
            first.get_or_insert(index);
            if u64::from(members[index].stats.in_flight()) < capacity {
                return Some(index);
            }
        }
        first
    }
}

/// The hash of a request's key, or `None` when the request has no such key.
fn key_hash(key: &HashKey, request: &RequestInfo<'_>) -> Option<u64> {
    let hash = |bytes: &[u8]| xxh3_64_with_seed(bytes, KEY_SEED);
    match key {
        HashKey::SourceIp => Some(match request.client_ip {
            IpAddr::V4(ip) => hash(&ip.octets()),
            IpAddr::V6(ip) => hash(&ip.octets()),
        }),
        HashKey::Header(name) => request.headers.get(name).map(|v| hash(v.as_bytes())),
        HashKey::Cookie(name) => {
            super::cookie_value(request.headers, name).map(|v| hash(v.as_bytes()))
        }
        HashKey::Query(name) => request.query?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == &**name).then(|| hash(v.as_bytes()))
        }),
        HashKey::Path => Some(hash(request.path.as_bytes())),
        HashKey::RequestUri => {
            let mut uri = Xxh3::with_seed(KEY_SEED);
            uri.update(request.path.as_bytes());
            if let Some(query) = request.query {
                uri.update(b"?");
                uri.update(query.as_bytes());
            }
            Some(uri.digest())
        }
    }
}

/// Maglev's population: every endpoint walks its own permutation of the table and claims the
/// first free slot on each of its turns. An endpoint of weight w takes a turn in w out of every
/// `max weight` rounds.
fn maglev_table(names: &[String], weights: &[u32], size: u32) -> Box<[u32]> {
    let size = u64::from(size);
    if names.is_empty() {
        return Box::new([]);
    }
    let permutations: Vec<(u64, u64)> = names
        .iter()
        .map(|name| {
            let offset = xxh3_64_with_seed(name.as_bytes(), OFFSET_SEED) % size;
            let skip = xxh3_64_with_seed(name.as_bytes(), SKIP_SEED) % (size - 1).max(1) + 1;
            (offset, skip)
        })
        .collect();
    let max_weight = u64::from(weights.iter().copied().max().unwrap_or(1));
    let mut next = vec![0u64; names.len()];
    let mut table = vec![u32::MAX; size as usize];
    let mut filled = 0u64;
    let mut round = 0u64;
    while filled < size {
        for (i, &(offset, skip)) in permutations.iter().enumerate() {
            let weight = u64::from(weights[i]);
            if (round + 1) * weight / max_weight == round * weight / max_weight {
                continue;
            }
            loop {
                let slot = ((offset + next[i] * skip) % size) as usize;
                next[i] += 1;
                if table[slot] == u32::MAX {
                    table[slot] = i as u32;
                    filled += 1;
                    break;
                }
            }
            if filled == size {
                break;
            }
        }
        round += 1;
    }
    table.into_boxed_slice()
}

/// The most points a ring holds (16 MiB), as Envoy's `maximum_ring_size` caps it: 160 points
/// per unit of weight for a thousand endpoints of weight 1000 would be 160 million points,
/// gigabytes and minutes of hashing per rebuild.
pub const MAX_RING_POINTS: u64 = 1 << 20;

/// Ketama: each endpoint owns `points_per_weight` × weight points, each at the hash of
/// `address_k`; scaled down in proportion (at least one point each) when the ring would exceed
/// [`MAX_RING_POINTS`].
fn ring(names: &[String], weights: &[u32], points_per_weight: u32) -> Box<[(u64, u32)]> {
    // u128: a product of two u32 times the cap, summed over the endpoints, fits.
    let wanted = |i: usize| u128::from(points_per_weight) * u128::from(weights[i]);
    let total: u128 = (0..names.len()).map(wanted).sum();
    let cap = u128::from(MAX_RING_POINTS);
    let points_of = |i: usize| match total > cap {
        true => (wanted(i) * cap / total).max(1) as u64,
        false => wanted(i) as u64,
    };
    let mut points: Vec<(u64, u32)> = Vec::with_capacity(total.min(cap) as usize);
    for (i, name) in names.iter().enumerate() {
        for k in 0..points_of(i) {
            let point = xxh3_64_with_seed(format!("{name}_{k}").as_bytes(), RING_SEED);
            points.push((point, i as u32));
        }
    }
    points.sort_unstable();
    points.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::members;
    use super::*;
    use tokio::time::Instant;

    fn balancer(members: &[Member], ring: HashRing, bound: Option<u32>) -> ConsistentHashBalancer {
        ConsistentHashBalancer::new(
            members,
            &ConsistentHash {
                key: HashKey::Path,
                ring,
                bounded_load_percent: bound,
            },
        )
    }

    const MAGLEV: HashRing = HashRing::Maglev { table_size: 65537 };
    const RING: HashRing = HashRing::Ring {
        points_per_weight: 160,
    };

    /// Where each of `keys` lands, by endpoint address.
    fn placements(members: &[Member], ring: HashRing, keys: &[u64]) -> Vec<std::net::SocketAddr> {
        let b = balancer(members, ring, None);
        keys.iter()
            .map(|&k| members[b.place(k).unwrap()].address)
            .collect()
    }

    #[test]
    fn a_ring_never_holds_more_than_its_cap_and_keeps_the_weights() {
        // 20 endpoints of weight 1000 would want 3.2 million points.
        let mut weights = vec![1000; 19];
        weights.push(1);
        let names: Vec<String> = (0..20).map(|i| format!("10.0.0.{i}:80")).collect();
        let points = ring(&names, &weights, 160);
        assert!(points.len() as u64 <= MAX_RING_POINTS, "{}", points.len());
        let owned = |i: u32| points.iter().filter(|p| p.1 == i).count();
        assert_eq!(owned(0), owned(18));
        // Scaled in proportion: the weights still count 1000 to 1 (up to rounding).
        let ratio = owned(0) as f64 / owned(19) as f64;
        assert!((ratio - 1000.0).abs() < 10.0, "{ratio}");
    }

    #[test]
    fn the_same_key_maps_to_the_same_endpoint_across_rebuilds() {
        let m = members(&[1; 10]);
        let keys: Vec<u64> = (0..1000u64)
            .map(|k| xxh3_64_with_seed(&k.to_le_bytes(), 1))
            .collect();
        for ring in [MAGLEV, RING] {
            assert_eq!(placements(&m, ring, &keys), placements(&m, ring, &keys));
        }
    }

    /// Property: for random N and a random endpoint removed, the share of keys that move is at
    /// most 1/N (those of the removed endpoint) plus a small margin.
    #[test]
    fn removing_one_of_n_endpoints_moves_about_one_nth_of_the_keys() {
        let mut rng = fastrand::Rng::with_seed(42);
        let keys: Vec<u64> = (0..20_000).map(|_| rng.u64(..)).collect();
        for _case in 0..12 {
            let n = rng.usize(3..60);
            let all = members(&vec![1; n]);
            let removed = rng.usize(..n);
            let rest: Vec<Member> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != removed)
                .map(|(_, m)| m.clone())
                .collect();
            for ring in [MAGLEV, RING] {
                let before = placements(&all, ring, &keys);
                let after = placements(&rest, ring, &keys);
                let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
                let share = moved as f64 / keys.len() as f64;
                let bound = 1.0 / n as f64 + 0.03;
                assert!(
                    share <= bound,
                    "{ring:?}, n={n}: {share:.4} of keys moved, bound {bound:.4}"
                );
            }
        }
    }

    #[test]
    fn keys_spread_in_proportion_to_weight() {
        let weights = [1, 2, 1, 4];
        let m = members(&weights);
        let mut rng = fastrand::Rng::with_seed(9);
        let keys: Vec<u64> = (0..80_000).map(|_| rng.u64(..)).collect();
        for ring in [MAGLEV, RING] {
            let b = balancer(&m, ring, None);
            let mut counts = vec![0usize; m.len()];
            keys.iter().for_each(|&k| counts[b.place(k).unwrap()] += 1);
            for (count, weight) in counts.iter().zip(weights) {
                let share = *count as f64 / keys.len() as f64;
                assert!(
                    (share - f64::from(weight) / 8.0).abs() < 0.03,
                    "{ring:?}: {counts:?}"
                );
            }
        }
    }

    #[test]
    fn bounded_load_passes_keys_on_from_an_overloaded_endpoint() {
        let m = members(&[1, 1, 1, 1]);
        let b = balancer(&m, MAGLEV, Some(125));
        let hash = key_hash(&HashKey::Path, &request("/user/7")).unwrap();
        let home = b.place(hash).unwrap();
        let _load: Vec<_> = (0..10)
            .map(|_| m[home].stats.start(Instant::now()))
            .collect();
        let mut rng = fastrand::Rng::with_seed(1);
        let headers = http::HeaderMap::new();
        let request = RequestInfo {
            path: "/user/7",
            ..request_with(&headers)
        };
        let mut ctx = PickContext::new(request, Instant::now(), &mut rng);
        let picked = b.pick(&m, &mut ctx).unwrap();
        assert_ne!(picked, home);
        // Without the bound, the key stays home however loaded it is.
        assert_eq!(balancer(&m, MAGLEV, None).pick(&m, &mut ctx), Some(home));
    }

    fn request(path: &'static str) -> RequestInfo<'static> {
        static EMPTY: std::sync::OnceLock<http::HeaderMap> = std::sync::OnceLock::new();
        RequestInfo {
            path,
            ..request_with(EMPTY.get_or_init(http::HeaderMap::new))
        }
    }

    fn request_with(headers: &http::HeaderMap) -> RequestInfo<'_> {
        RequestInfo {
            client_ip: IpAddr::from([192, 0, 2, 1]),
            headers,
            path: "/",
            query: None,
        }
    }

    #[test]
    fn keys_come_from_headers_cookies_queries_and_addresses() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-user", "alice".parse().unwrap());
        headers.insert(
            http::header::COOKIE,
            "a=1; session=abc; z=9".parse().unwrap(),
        );
        let request = RequestInfo {
            query: Some("x=1&user=bob&y"),
            ..request_with(&headers)
        };
        let hash = |b: &[u8]| Some(xxh3_64_with_seed(b, KEY_SEED));
        assert_eq!(
            key_hash(&HashKey::Header("x-user".parse().unwrap()), &request),
            hash(b"alice")
        );
        assert_eq!(
            key_hash(&HashKey::Cookie("session".into()), &request),
            hash(b"abc")
        );
        assert_eq!(
            key_hash(&HashKey::Query("user".into()), &request),
            hash(b"bob")
        );
        assert_eq!(
            key_hash(&HashKey::SourceIp, &request),
            hash(&[192, 0, 2, 1])
        );
        assert_eq!(
            key_hash(&HashKey::Header("x-missing".parse().unwrap()), &request),
            None
        );
        assert_eq!(key_hash(&HashKey::Query("nope".into()), &request), None);
        // The request URI: path and query as sent, as one string.
        let uri = RequestInfo {
            path: "/a",
            ..request
        };
        assert_eq!(
            key_hash(&HashKey::RequestUri, &uri),
            hash(b"/a?x=1&user=bob&y")
        );
        let bare = RequestInfo { query: None, ..uri };
        assert_eq!(key_hash(&HashKey::RequestUri, &bare), hash(b"/a"));
    }
}
