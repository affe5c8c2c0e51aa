//! The control plane at scale (`make bench`, or `cargo bench --bench control_plane`):
//!
//! - f. compile + swap time and peak RSS for 1,000, 5,000 and 10,000 Ingresses, each with its
//!   own host, Service and EndpointSlice of 3 endpoints. Each size runs in a fresh process, so
//!   its peak RSS is its own. Targets: 10,000 in at most 100 ms and 150 MiB.
//! - g. route propagation in standalone mode: the time from a manifest written (atomically, as
//!   kubectl and ConfigMap mounts do) to the first request served by the new route, p50 and p99
//!   over 50 changes. Target: p99 at most 50 ms.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vane::args::{Config, LogFormat, Source};
use vane::compile::{compile, Options};
use vane::manifests::{self, Loaded};
use vane::proxy::{ServerLimits, TableHandle};

const SIZES: [usize; 3] = [1_000, 5_000, 10_000];
const SWAPS: usize = 5;
const CHANGES: usize = 50;

fn main() {
    // `cargo bench` passes `--bench`; a child run for one size gets it in the environment.
    if let Ok(size) = std::env::var("VANE_BENCH_INGRESSES") {
        scale_child(size.parse().expect("a number of Ingresses"));
        return;
    }
    println!(
        "f. control-plane scale (compile + swap, median of {SWAPS}; peak RSS of a fresh process)"
    );
    println!("| Ingresses | compile | swap | compile + swap | peak RSS |");
    println!("| --- | --- | --- | --- | --- |");
    for size in SIZES {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .env("VANE_BENCH_INGRESSES", size.to_string())
            .output()
            .expect("run the scale child");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        print!("{}", String::from_utf8_lossy(&output.stdout));
    }
    println!();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(propagation());
}

/// `n` Ingresses, each routing its own host to its own Service with 3 endpoints.
fn manifests(n: usize) -> String {
    let mut yaml = String::from(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: vane}\n\
         spec: {controller: vane.dev/ingress-controller}\n",
    );
    for i in 0..n {
        let (a, b) = (i / 250, i % 250 + 1);
        yaml += &format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc{i}, namespace: default}}\n\
             spec: {{ports: [{{name: http, port: 80}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: svc{i}-1, namespace: default, labels: {{kubernetes.io/service-name: svc{i}}}}}\n\
             addressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\n\
             endpoints:\n- addresses: [\"10.{a}.{b}.1\"]\n- addresses: [\"10.{a}.{b}.2\"]\n- addresses: [\"10.{a}.{b}.3\"]\n\
             ---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: ing{i}, namespace: default}}\n\
             spec:\n  ingressClassName: vane\n  rules:\n  - host: h{i}.example.com\n    http:\n      paths:\n\
             \x20     - {{path: /, pathType: Prefix, backend: {{service: {{name: svc{i}, port: {{name: http}}}}}}}}\n"
        );
    }
    yaml
}

fn scale_child(n: usize) {
    let mut loaded = Loaded::default();
    manifests::load_str(&manifests(n), Path::new("scale.yaml"), &mut loaded);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let options = Options::default();
    let tables = TableHandle::new();
    let mut compiles = Vec::new();
    let mut swaps = Vec::new();
    for _ in 0..SWAPS {
        let started = std::time::Instant::now();
        let compiled = compile(&loaded.snapshot, &options);
        let compiled_at = std::time::Instant::now();
        assert_eq!(compiled.table.routes().len(), n);
        tables.publish(compiled.table, compiled.diagnostics);
        swaps.push(compiled_at.elapsed());
        compiles.push(compiled_at - started);
    }
    let median = |d: &mut Vec<Duration>| {
        d.sort();
        d[d.len() / 2]
    };
    let (compile, swap) = (median(&mut compiles), median(&mut swaps));
    println!(
        "| {n} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} MiB |",
        ms(compile),
        ms(swap),
        ms(compile + swap),
        peak_rss_mib()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// An origin that answers 200 to everything.
async fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|_: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn write_atomically(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn propagation() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: vane}}\n\
         spec: {{controller: vane.dev/ingress-controller}}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {{name: app, namespace: default}}\n\
         spec: {{ports: [{{name: http, port: 80}}]}}\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: app-1, namespace: default, labels: {{kubernetes.io/service-name: app}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: {}, protocol: TCP}}]\n\
         endpoints:\n- addresses: [\"{}\"]\n",
        origin.port(),
        origin.ip()
    );
    write_atomically(&dir.path().join("base.yaml"), &base);
    let config = Config {
        source: Source::Manifests(dir.path().to_owned()),
        ingress_class: "vane".into(),
        controller_name: "vane.dev/ingress-controller".into(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        https_addr: "127.0.0.1:0".parse().unwrap(),
        default_ssl_certificate: None,
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        log_format: LogFormat::Text,
        shutdown_delay: Duration::ZERO,
        limits: ServerLimits {
            shutdown_grace: Duration::from_secs(1),
            ..ServerLimits::default()
        },
    };
    let shutdown = CancellationToken::new();
    let running = vane::app::start(config, shutdown.clone()).await.unwrap();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut delays = Vec::new();
    for i in 0..CHANGES {
        let ingress = format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: route{i}, namespace: default}}\n\
             spec:\n  ingressClassName: vane\n  rules:\n  - http:\n      paths:\n\
             \x20     - {{path: /r{i}, pathType: Exact, backend: {{service: {{name: app, port: {{name: http}}}}}}}}\n"
        );
        let url: http::Uri = format!("http://{}/r{i}", running.http).parse().unwrap();
        let written = Instant::now();
        write_atomically(&dir.path().join("route.yaml"), &ingress);
        loop {
            let response = client.get(url.clone()).await.unwrap();
            let status = response.status();
            let _ = response.into_body().collect().await;
            if status == StatusCode::OK {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(5),
                "route {i} never appeared"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        delays.push(written.elapsed());
        // Let the debounce settle, so each change is measured on its own.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    delays.sort();
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
    println!("g. route propagation, standalone ({CHANGES} changes, manifest written -> first 200)");
    println!("| p50 | p99 | max |");
    println!("| --- | --- | --- |");
    println!(
        "| {:.1} ms | {:.1} ms | {:.1} ms |",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(at(1.0))
    );
    shutdown.cancel();
    running.stopped().await;
}
