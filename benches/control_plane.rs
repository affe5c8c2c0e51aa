//! The control plane at scale (`make bench`, or `cargo bench --bench control_plane`):
//!
//! - f. compile + swap time and peak RSS for 1,000, 5,000 and 10,000 Ingresses, each with its
//!   own host, Service and EndpointSlice of 3 endpoints. Each size runs in a fresh process, so
//!   its peak RSS is its own. Targets: 10,000 in at most 100 ms and 150 MiB.
//! - g. route propagation in standalone mode: the time from a manifest written (atomically, as
//!   kubectl and ConfigMap mounts do) to the first request served by the new route, p50 and p99
//!   over 50 changes. Target: p99 at most 50 ms.
//! - h. standalone mode at 10,000 files (each an Ingress with its Service and EndpointSlice,
//!   about 40 MB of YAML), in a fresh process: the time to the first table and the RSS then;
//!   the propagation of a one-file change (one Ingress moved to a new host), p50 and max over
//!   30 changes; the RSS after them. Targets: a change within 50 ms, RSS after within 1.5x
//!   the fresh figure.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vane::args::{Config, LogFormat, Source};
use vane::compile::{compile, Options};
use vane::live::TableHandle;
use vane::manifests::{self, Loaded};
use vane::proxy::ServerLimits;

const SIZES: [usize; 3] = [1_000, 5_000, 10_000];
const SWAPS: usize = 5;
const CHANGES: usize = 50;
const FILES: usize = 10_000;
const FILE_CHANGES: usize = 30;

fn main() {
    // `cargo bench` passes `--bench`; a child run for one size gets it in the environment.
    if let Ok(size) = std::env::var("VANE_BENCH_INGRESSES") {
        scale_child(size.parse().expect("a number of Ingresses"));
        return;
    }
    if let Ok(files) = std::env::var("VANE_BENCH_FILES") {
        runtime().block_on(files_child(files.parse().expect("a number of files")));
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
    runtime().block_on(propagation());
    println!();
    println!(
        "h. standalone at scale (one file per Ingress with its Service and EndpointSlice; \
         {FILE_CHANGES} one-file changes, manifest written -> first 200; fresh process)"
    );
    println!("| files | YAML | first table | RSS then | p50 | max | RSS after |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .env("VANE_BENCH_FILES", FILES.to_string())
        .output()
        .expect("run the files child");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    print!("{}", String::from_utf8_lossy(&output.stdout));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
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
    status_mib("VmHWM:")
}

fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

/// A memory figure of this process from /proc/self/status, in MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
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
    let shutdown = CancellationToken::new();
    let running = vane::app::start(standalone(dir.path()), shutdown.clone())
        .await
        .unwrap();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut delays = Vec::new();
    for i in 0..CHANGES {
        let ingress = format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: route{i}, namespace: default}}\n\
             spec:\n  ingressClassName: vane\n  rules:\n  - http:\n      paths:\n\
             \x20     - {{path: /r{i}, pathType: Exact, backend: {{service: {{name: app, port: {{name: http}}}}}}}}\n"
        );
        let written = Instant::now();
        write_atomically(&dir.path().join("route.yaml"), &ingress);
        until_served(
            &client,
            running.http,
            "localhost",
            &format!("/r{i}"),
            written,
        )
        .await;
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

/// The configuration of a standalone vane on `dir`, on ephemeral loopback ports.
fn standalone(dir: &Path) -> Config {
    Config {
        source: Source::Manifests(dir.to_owned()),
        ingress_class: "vane".into(),
        controller_name: "vane.dev/ingress-controller".into(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        https_addr: "127.0.0.1:0".parse().unwrap(),
        default_ssl_certificate: None,
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
        debug_addr: Some("127.0.0.1:0".parse().unwrap()),
        workers: 2,
        log_format: LogFormat::Text,
        access_log: None,
        span_export: None,
        shutdown_delay: Duration::ZERO,
        proxy_body_size: None,
        default_backend_service: None,
        custom_http_errors: Vec::new(),
        limit_req_status_code: http::StatusCode::SERVICE_UNAVAILABLE,
        limits: ServerLimits {
            shutdown_grace: Duration::from_secs(1),
            ..ServerLimits::default()
        },
    }
}

/// Polls `path` on `host` every millisecond until it answers 200; fails after 5 s.
async fn until_served(
    client: &Client<HttpConnector, Empty<Bytes>>,
    http: SocketAddr,
    host: &str,
    path: &str,
    since: Instant,
) {
    loop {
        let request = Request::get(format!("http://{http}{path}"))
            .header("host", host)
            .body(Empty::new())
            .unwrap();
        let response = client.request(request).await.unwrap();
        let status = response.status();
        let _ = response.into_body().collect().await;
        if status == StatusCode::OK {
            return;
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "{host}{path} never appeared"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One file of scenario h: Ingress `i` on host `host`, with its Service and EndpointSlice
/// (pointing at `origin`), and an annotation of the size kubectl's last-applied-configuration
/// has, so that 10,000 files are about 40 MB as in the report this scenario reproduces.
fn ingress_file(i: usize, host: &str, origin: SocketAddr) -> String {
    let applied = format!(
        "{{\"metadata\":{{\"name\":\"ing{i}\"}},\"pad\":\"{}\"}}",
        "x".repeat(3_400)
    );
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: svc{i}, namespace: default}}\n\
         spec: {{ports: [{{name: http, port: 80}}]}}\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: svc{i}-1, namespace: default, labels: {{kubernetes.io/service-name: svc{i}}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: {port}, protocol: TCP}}]\n\
         endpoints:\n- addresses: [\"{ip}\"]\n\
         ---\napiVersion: networking.k8s.io/v1\nkind: Ingress\n\
         metadata:\n  name: ing{i}\n  namespace: default\n  annotations:\n    \
         kubectl.kubernetes.io/last-applied-configuration: '{applied}'\n\
         spec:\n  ingressClassName: vane\n  rules:\n  - host: {host}\n    http:\n      paths:\n\
         \x20     - {{path: /, pathType: Prefix, backend: {{service: {{name: svc{i}, port: {{name: http}}}}}}}}\n",
        port = origin.port(),
        ip = origin.ip(),
    )
}

/// Scenario h, in its own process: `files` files, then one-file changes.
async fn files_child(files: usize) {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    write_atomically(
        &dir.path().join("class.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: vane}\n\
         spec: {controller: vane.dev/ingress-controller}\n",
    );
    let mut bytes = 0;
    for i in 0..files {
        let file = ingress_file(i, &format!("h{i}.example.com"), origin);
        bytes += file.len();
        write_atomically(&dir.path().join(format!("app{i:05}.yaml")), &file);
    }
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let running = vane::app::start(standalone(dir.path()), shutdown.clone())
        .await
        .unwrap();
    let first_table = started.elapsed();
    let fresh = rss_mib();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut delays = Vec::new();
    for change in 0..FILE_CHANGES {
        // Spread over the directory: first, last and in between.
        let i = change * (files - 1) / (FILE_CHANGES - 1);
        let host = format!("moved{change}.example.com");
        let written = Instant::now();
        write_atomically(
            &dir.path().join(format!("app{i:05}.yaml")),
            &ingress_file(i, &host, origin),
        );
        until_served(&client, running.http, &host, "/", written).await;
        delays.push(written.elapsed());
        // Let the debounce settle, so each change is measured on its own.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    delays.sort();
    println!(
        "| {files} | {:.0} MB | {:.0} ms | {:.0} MiB | {:.1} ms | {:.1} ms | {:.0} MiB |",
        bytes as f64 / 1e6,
        ms(first_table),
        fresh,
        ms(delays[delays.len() / 2]),
        ms(delays[delays.len() - 1]),
        rss_mib()
    );
    shutdown.cancel();
    running.stopped().await;
}
