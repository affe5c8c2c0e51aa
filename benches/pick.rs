//! `pick` of every balancing algorithm at 10, 100 and 1,000 endpoints (`make bench` or
//! `cargo bench --bench pick`). The target is at most 100 ns per pick at 1,000 endpoints.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::HeaderMap;
use tokio::time::Instant;
use vane::balance::{BackendBalancer, Member, PickContext, RequestInfo};
use vane::endpoint::EndpointStats;
use vane::table::{ConsistentHash, HashKey, HashRing, LoadBalancing};

fn members(n: usize, weighted: bool) -> Vec<Member> {
    let now = Instant::now();
    (0..n)
        .map(|i| Member {
            address: SocketAddr::from((
                [
                    10,
                    (i / 65536) as u8,
                    (i / 256 % 256) as u8,
                    (i % 256) as u8,
                ],
                8080,
            )),
            weight: if weighted { 1 + (i % 5) as u32 } else { 1 },
            stats: EndpointStats::detached(now),
        })
        .collect()
}

fn algorithms() -> Vec<(&'static str, LoadBalancing, bool)> {
    let hash = |ring| {
        LoadBalancing::ConsistentHash(ConsistentHash {
            key: HashKey::Path,
            ring,
            bounded_load_percent: None,
        })
    };
    vec![
        ("round_robin", LoadBalancing::RoundRobin, false),
        ("round_robin_weighted", LoadBalancing::RoundRobin, true),
        ("random_weighted", LoadBalancing::Random, true),
        ("least_connections", LoadBalancing::LeastConnections, false),
        (
            "least_response_time",
            LoadBalancing::LeastResponseTime {
                decay: Duration::from_secs(10),
            },
            false,
        ),
        (
            "maglev",
            hash(HashRing::Maglev { table_size: 65537 }),
            false,
        ),
        (
            "ring_hash",
            hash(HashRing::Ring {
                points_per_weight: 160,
            }),
            false,
        ),
    ]
}

fn pick(c: &mut Criterion) {
    let headers = HeaderMap::new();
    let mut group = c.benchmark_group("pick");
    for (name, load_balancing, weighted) in algorithms() {
        for n in [10, 100, 1000] {
            let balancer = BackendBalancer::new(members(n, weighted), &load_balancing, None);
            let mut rng = fastrand::Rng::with_seed(1);
            let now = Instant::now();
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    let request = RequestInfo {
                        client_ip: IpAddr::from([192, 0, 2, 1]),
                        headers: &headers,
                        path: "/api/users/42",
                        query: None,
                    };
                    let mut ctx = PickContext::new(request, now, &mut rng);
                    std::hint::black_box(balancer.pick(&mut ctx).map(|p| p.index))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, pick);
criterion_main!(benches);
