//! Routing one request: table lookup and the balancer's pick, with 1,000 regex paths on one
//! host (`make bench` or `cargo bench --bench lookup`). The target is at most 2 µs.

use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;
use tokio::time::Instant;
use vane::balance::{BackendBalancer, Member, PickContext, RequestInfo};
use vane::compile::{compile, Options};
use vane::endpoint::EndpointStats;
use vane::manifests::{self, Loaded};
use vane::table::BackendTarget;

const PATHS: usize = 1000;

/// One Ingress with `PATHS` regex paths on `api.example.com`, all to one Service.
fn manifests() -> String {
    let mut yaml = String::from(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: vane}\n\
         spec: {controller: vane.dev/ingress-controller}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: app, namespace: default}\n\
         spec: {ports: [{name: http, port: 80}]}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {name: app, namespace: default, labels: {kubernetes.io/service-name: app}}\n\
         addressType: IPv4\nports: [{name: http, port: 8080}]\n\
         endpoints: [{addresses: [10.0.0.1]}, {addresses: [10.0.0.2]}, {addresses: [10.0.0.3]}]\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\n\
         metadata: {name: api, namespace: default, annotations: {vane.dev/rewrite-target: /$2}}\n\
         spec:\n  ingressClassName: vane\n  rules:\n  - host: api.example.com\n    http:\n      paths:\n",
    );
    for i in 0..PATHS {
        yaml += &format!(
            "      - {{path: \"/v1/service{i}/items/([0-9]+)(/|$)(.*)\", pathType: ImplementationSpecific, \
             backend: {{service: {{name: app, port: {{name: http}}}}}}}}\n"
        );
    }
    yaml
}

fn lookup(c: &mut Criterion) {
    let mut loaded = Loaded::default();
    manifests::load_str(
        &manifests(),
        std::path::Path::new("bench.yaml"),
        &mut loaded,
    );
    let compiled = compile(&loaded.snapshot, &Options::default());
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    let table = compiled.table;
    assert_eq!(table.routes().len(), PATHS);
    let BackendTarget::Endpoints(endpoints) = &table.backends()[0].target else {
        panic!("the backend resolves");
    };
    let now = Instant::now();
    let members = endpoints
        .iter()
        .map(|e| Member {
            address: e.address,
            weight: 1,
            stats: EndpointStats::detached(now),
        })
        .collect();
    let balancer = BackendBalancer::new(members, &table.backends()[0].load_balancing, None);
    let headers = HeaderMap::new();
    let mut rng = fastrand::Rng::with_seed(1);
    let mut group = c.benchmark_group("lookup");
    for (name, path) in [
        ("regex_1000_first", "/v1/service999/items/42/detail"),
        ("regex_1000_last", "/v1/service0/items/42/detail"),
        ("regex_1000_miss", "/v2/nothing/here"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let route = table.lookup("api.example.com", std::hint::black_box(path));
                let picked = route.and_then(|_| {
                    let request = RequestInfo {
                        client_ip: IpAddr::from([192, 0, 2, 1]),
                        headers: &headers,
                        path,
                        query: None,
                    };
                    let mut ctx = PickContext::new(request, now, &mut rng);
                    balancer.pick(&mut ctx).map(|p| p.index)
                });
                std::hint::black_box(picked)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
