//! `GET /metrics` on the metrics listener of the built binary: both formats parse strictly, and
//! the control-plane, connection and process metrics move with what vane does. And the admin
//! listeners themselves: each path on exactly one of them, each with its own connection bound.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vane::metrics::Metrics;
use vane::proxy::{Connections, ServerLimits};

use crate::support::binary::{write_atomically, Vane};
use crate::support::client::{client, get, send, status_of};
use crate::support::fixtures::{docs, ingress, single_route};
use crate::support::origin;
use crate::support::proxy::TestProxy;
use crate::support::tls::{handshake, tls_ingress, tls_secret, Ca};
use crate::support::wait::eventually;

/// The samples of a Prometheus text exposition, by series (`name{labels}`), after checking
/// every line: `# HELP` and `# TYPE` lines name valid metrics, each sample belongs to a family
/// declared by a `# TYPE` before it, and each value is a number. `# EOF` may only end it.
pub fn parse_strictly(text: &str) -> BTreeMap<String, f64> {
    let valid_name = |name: &str| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut families: Vec<String> = Vec::new();
    let mut samples = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        if *line == "# EOF" {
            assert_eq!(index, lines.len() - 1, "# EOF before the end");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(valid_name(name), "{line}");
            assert!(
                [
                    "counter",
                    "gauge",
                    "histogram",
                    "summary",
                    "unknown",
                    "untyped"
                ]
                .contains(&kind),
                "{line}"
            );
            families.push(name.to_owned());
            continue;
        }
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or(line.strip_prefix("# UNIT "))
        {
            assert!(valid_name(rest.split(' ').next().unwrap()), "{line}");
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect(line);
        let name = &series[..series.find('{').unwrap_or(series.len())];
        assert!(valid_name(name), "{line}");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
        }
        assert!(
            families
                .iter()
                .any(|family| name.starts_with(family.as_str())),
            "sample before its # TYPE: {line}"
        );
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other.parse().expect(line),
        };
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "repeated: {line}"
        );
    }
    samples
}

/// The metrics of a [`TestProxy`]'s table, as `/metrics` would serve them, parsed strictly.
pub fn metrics_of(proxy: &TestProxy) -> BTreeMap<String, f64> {
    let connections = Arc::new(Connections::new(ServerLimits::default()));
    let metrics = Metrics::new(proxy.tables.clone(), connections, &proxy.telemetry);
    parse_strictly(&metrics.encode(None).1)
}

/// The one sample of `family` (its name with the opening brace) whose labels contain `labels`.
pub fn sample(samples: &BTreeMap<String, f64>, family: &str, labels: &str) -> f64 {
    let found: Vec<f64> = samples
        .iter()
        .filter(|(series, _)| series.starts_with(family) && series.contains(labels))
        .map(|(_, value)| *value)
        .collect();
    assert_eq!(found.len(), 1, "{family} with {labels}: {samples:?}");
    found[0]
}

async fn scrape(vane: &Vane, accept: Option<&str>) -> (String, BTreeMap<String, f64>) {
    let mut request = Request::get(format!("http://{}/metrics", vane.metrics));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let reply = send(&client(), request.body(Full::default()).unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let content_type = reply.headers["content-type"].to_str().unwrap().to_owned();
    (content_type, parse_strictly(&reply.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_swaps_diagnostics_connections_and_the_process() {
    let origins = origin::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.yaml");
    write_atomically(&routes, &single_route(&origins, Some("app.example.com")));
    let vane = Vane::start(dir.path()).await;

    let (content_type, before) = scrape(&vane, None).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let generation = before["vane_table_generation"];
    assert!(generation >= 1.0, "{before:?}");
    assert_eq!(before["vane_table_swaps_total"], generation);
    assert_eq!(before["vane_compile_duration_seconds_count"], generation);
    assert!(before["vane_last_table_swap_timestamp_seconds"] > 1.7e9);
    assert!(before["process_resident_memory_bytes"] > 1e6);
    assert!(before["process_open_fds"] >= 3.0);
    assert!(before["process_start_time_seconds"] > 1.7e9);
    assert!(!before
        .keys()
        .any(|series| series.starts_with("vane_diagnostics")));

    // Each request on a connection of its own.
    const REQUESTS: usize = 5;
    for _ in 0..REQUESTS {
        assert_eq!(
            status_of(&client(), vane.http, "app.example.com", "/").await,
            StatusCode::OK
        );
    }
    let (_, after) = scrape(&vane, None).await;
    let accepted = r#"vane_client_connections_accepted_total{listener="http"}"#;
    assert_eq!(after[accepted] - before[accepted], REQUESTS as f64);
    // A keep-alive connection that has had its answer is still serving.
    let mut held = tokio::net::TcpStream::connect(vane.http).await.unwrap();
    held.write_all(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    held.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let (_, holding) = scrape(&vane, None).await;
    let serving = r#"vane_client_connections_serving{listener="http",protocol="http1"}"#;
    assert!(holding[serving] >= 1.0, "{holding:?}");
    let h2 = r#"vane_client_connections_serving{listener="http",protocol="http2"}"#;
    assert_eq!(holding[h2], 0.0);

    // The endpoint is in rotation and not ejected; nothing is probed or in flight.
    let endpoint = |family: &str| {
        let series: Vec<_> = after
            .iter()
            .filter(|(s, _)| s.starts_with(family))
            .collect();
        assert_eq!(series.len(), 1, "{family}: {series:?}");
        assert!(series[0].0.contains("endpoint=\"127.0.1."), "{series:?}");
        *series[0].1
    };
    assert_eq!(endpoint("vane_endpoint_in_rotation{"), 1.0);
    assert_eq!(endpoint("vane_endpoint_ejected{"), 0.0);
    assert_eq!(endpoint("vane_endpoint_requests_in_flight{"), 0.0);
    assert!(!after
        .keys()
        .any(|s| s.starts_with("vane_endpoint_probe_healthy{")));

    // A dangling backend and a TLS host: one more table, with the diagnostic counted by reason
    // and the certificate's expiry.
    let dangling = ingress("dangling", Some("d.example.com"), "/", "no-such-service");
    let ca = Ca::new("metrics test CA");
    let secure = tls_ingress(
        "secure",
        "secure.example.com",
        "app",
        &[(&["secure.example.com"], Some("secure"))],
        &[],
    );
    let secret = tls_secret("secure", &ca.server(&["secure.example.com"]));
    write_atomically(
        &routes,
        &docs(&[
            single_route(&origins, Some("app.example.com")),
            dangling,
            secure,
            secret,
        ]),
    );
    eventually("the new table is published", || async {
        scrape(&vane, None).await.1["vane_table_generation"] > generation
    })
    .await;
    let (content_type, body) = {
        let request = Request::get(format!("http://{}/metrics", vane.metrics))
            .header(
                "accept",
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
            )
            .body(Full::default())
            .unwrap();
        let reply = send(&client(), request).await;
        let content_type = reply.headers["content-type"].to_str().unwrap().to_owned();
        (content_type, reply.text())
    };
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    let samples = parse_strictly(&body);
    assert_eq!(
        samples["vane_diagnostics{reason=\"ServiceNotFound\"}"], 1.0,
        "{samples:?}"
    );
    assert_eq!(
        samples["vane_table_swaps_total"],
        samples["vane_table_generation"]
    );
    // One TLS handshake completes, one is refused (it offers no protocol vane speaks).
    let host = Some("secure.example.com");
    assert!(handshake(vane.https, host, &[b"h2"], None).await.is_ok());
    assert!(handshake(vane.https, host, &[b"spdy/1"], None)
        .await
        .is_err());
    eventually("both handshakes are counted", || async {
        let samples = scrape(&vane, None).await.1;
        samples["vane_tls_handshakes_total{outcome=\"completed\"}"] == 1.0
            && samples["vane_tls_handshakes_total{outcome=\"failed\"}"] == 1.0
    })
    .await;
    assert!(
        !samples.keys().any(|s| s.starts_with("vane_leader")),
        "standalone mode has no Lease"
    );
    let expiry =
        samples["vane_tls_certificate_expiry_timestamp_seconds{host=\"secure.example.com\"}"];
    assert!(expiry > 1.7e9, "{samples:?}");
}

/// Health, metrics and debug each have a listener of their own, and every path is answered on
/// its listener only: scraping `/metrics` never reaches `/debug/routes`, and neither does
/// anything that can reach the health port the kubelet probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_admin_path_is_served_on_its_own_listener_only() {
    let origins = origin::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.yaml");
    write_atomically(&routes, &single_route(&origins, Some("app.example.com")));
    let vane = Vane::start(dir.path()).await;
    let listeners = [
        ("admin", vane.admin),
        ("metrics", vane.metrics),
        ("debug", vane.debug),
    ];
    let distinct: BTreeSet<_> = listeners.iter().map(|l| l.1).collect();
    assert_eq!(distinct.len(), 3, "three addresses: {listeners:?}");
    let client = client();
    for (path, served_on) in [
        ("/healthz", "admin"),
        ("/readyz", "admin"),
        ("/metrics", "metrics"),
        ("/debug/routes", "debug"),
    ] {
        for (listener, addr) in listeners {
            let expected = if listener == served_on {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            };
            assert_eq!(
                status_of(&client, addr, "x", path).await,
                expected,
                "{path} on the {listener} listener"
            );
        }
    }
    // What each serves is what it says it serves.
    let routes = get(&client, vane.debug, "x", "/debug/routes").await;
    assert_eq!(routes.json()["hosts"][0]["host"], "app.example.com");
    let (_, samples) = scrape(&vane, None).await;
    assert!(samples.contains_key("vane_table_generation"), "{samples:?}");
}

/// By default (the interface every vane has had), health, metrics and debug are all on the
/// admin listener, on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_listeners_of_their_own_every_admin_path_is_on_the_admin_listener() {
    let dir = tempfile::tempdir().unwrap();
    let vane = Vane::start_with_one_admin_listener(dir.path()).await;
    assert_eq!((vane.metrics, vane.debug), (vane.admin, vane.admin));
    assert!(vane.admin.ip().is_loopback());
    let client = client();
    for path in ["/healthz", "/readyz", "/metrics", "/debug/routes"] {
        let status = status_of(&client, vane.admin, "x", path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    assert_eq!(
        status_of(&client, vane.admin, "x", "/debug/other").await,
        StatusCode::NOT_FOUND
    );
}

/// Each admin listener serves a bounded number of connections: one more waits for a place,
/// and gets it when one closes. The bounds are per listener, so a flood of scrapes leaves the
/// health probes answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_admin_listener_serves_a_bounded_number_of_connections() {
    let dir = tempfile::tempdir().unwrap();
    let vane = Vane::start(dir.path()).await;
    let mut held = Vec::new();
    for _ in 0..vane::admin::MAX_ADMIN_CONNECTIONS {
        held.push(tokio::net::TcpStream::connect(vane.metrics).await.unwrap());
    }
    let mut waiting = tokio::net::TcpStream::connect(vane.metrics).await.unwrap();
    waiting
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let early = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        waiting.read_to_end(&mut answer),
    );
    assert!(early.await.is_err(), "answered beyond the cap");
    // The metrics listener is full; the kubelet's probes are not held up by it.
    assert_eq!(
        status_of(&client(), vane.admin, "x", "/healthz").await,
        StatusCode::OK
    );
    drop(held.pop());
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        waiting.read_to_end(&mut answer),
    )
    .await
    .expect("a place freed up")
    .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}
