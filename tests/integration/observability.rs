//! What vane tells about the requests it serves: the traffic metrics, the access log (written
//! to a real socket pair read here), request IDs and trace context as the origin sees them.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use vane::proxy::access_log::{AccessLog, Format};
use vane::proxy::Telemetry;

use crate::metrics::{metrics_of, sample};
use crate::support::client::{client, get, send};
use crate::support::fixtures::{annotate, backend, docs, ingress, single_route, INGRESS_CLASS};
use crate::support::origin;
use crate::support::proxy::TestProxy;

/// An access log writing `format` into one end of a socket pair, and the lines arriving at the
/// other.
pub fn access_log(format: Format) -> (Telemetry, Lines<BufReader<tokio::net::UnixStream>>) {
    let (write, read) = std::os::unix::net::UnixStream::pair().unwrap();
    read.set_nonblocking(true).unwrap();
    let (log, _writer) = AccessLog::start(format, Box::new(write)).unwrap();
    let telemetry = Telemetry {
        access_log: Some(log),
        ..Telemetry::default()
    };
    let read = tokio::net::UnixStream::from_std(read).unwrap();
    (telemetry, BufReader::new(read).lines())
}

pub async fn next_line(lines: &mut Lines<BufReader<tokio::net::UnixStream>>) -> String {
    tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("an access log line within 10 s")
        .unwrap()
        .expect("the log is open")
}

fn shop(origins: &origin::Origins) -> String {
    docs(&[
        INGRESS_CLASS.to_string(),
        backend("web", origins.port, &origins.ips()),
        ingress("shop", Some("shop.example.com"), "/", "web"),
    ])
}

#[tokio::test]
async fn requests_are_counted_by_ingress_service_method_and_code_and_forgotten_with_the_ingress() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&shop(&origins)).await;
    let before = metrics_of(&proxy);
    let series = r#"namespace="default",ingress="shop",service="web""#;
    assert!(!before.keys().any(|k| k.contains(series)), "{before:?}");

    let client = client();
    for _ in 0..5 {
        let reply = get(&client, proxy.addr, "shop.example.com", "/bytes/1000").await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let post = Request::post(format!("http://{}/upload", proxy.addr))
        .header("host", "shop.example.com")
        .body(Full::from(vec![b'x'; 300]))
        .unwrap();
    assert_eq!(send(&client, post).await.status, StatusCode::OK);
    for _ in 0..2 {
        let reply = get(&client, proxy.addr, "nowhere.example.com", "/x").await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
    }

    let after = metrics_of(&proxy);
    let requests = |labels: &str| sample(&after, "vane_requests_total{", labels);
    assert_eq!(
        requests(&format!(r#"{series},method="GET",code="200""#)),
        5.0
    );
    assert_eq!(
        requests(&format!(r#"{series},method="POST",code="200""#)),
        1.0
    );
    // A host no route serves is counted under empty labels, never under its own name.
    let unmatched = r#"namespace="",ingress="",service="",method="GET",code="404""#;
    assert_eq!(requests(unmatched), 2.0);
    assert!(!after.keys().any(|k| k.contains("nowhere")));
    let count = |family: &str| sample(&after, family, series);
    assert_eq!(count("vane_request_duration_seconds_count{"), 6.0);
    assert_eq!(
        sample(
            &after,
            "vane_request_duration_seconds_bucket{",
            &format!(r#"{series},le="+Inf""#)
        ),
        6.0
    );
    assert_eq!(
        count("vane_upstream_response_headers_duration_seconds_count{"),
        6.0
    );
    assert_eq!(count("vane_request_body_bytes_total{"), 300.0);
    // The five downloads, and the upload's answer (its length as text).
    assert_eq!(count("vane_response_body_bytes_total{"), 5000.0 + 3.0);

    // Each attempt went over a connection dialled for it or one kept alive from before.
    let pool = |family: &str| sample(&after, family, r#"protocol="http1""#);
    let (opened, reused) = (
        pool("vane_upstream_connections_opened_total{"),
        pool("vane_upstream_connection_reuses_total{"),
    );
    assert_eq!(opened + reused, 6.0);
    assert!(reused >= 1.0, "keep-alive to the origin");
    assert!(
        pool("vane_upstream_connections_open{") >= 1.0,
        "idle in the pool"
    );

    // Six attempts at the one endpoint, all answered.
    let endpoint = format!(r#"endpoint="{}""#, origins.origins[0].addr);
    assert_eq!(
        sample(&after, "vane_endpoint_upstream_requests_total{", &endpoint),
        6.0
    );
    assert_eq!(
        sample(&after, "vane_endpoint_upstream_failures_total{", &endpoint),
        0.0
    );

    // The Ingress is deleted: its series go with the swap.
    proxy.publish(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("web", origins.port, &origins.ips()),
    ]));
    let gone = metrics_of(&proxy);
    assert!(
        !gone.keys().any(|k| k.contains(r#"ingress="shop""#)),
        "{gone:?}"
    );
    assert_eq!(sample(&gone, "vane_requests_total{", unmatched), 2.0);
}

#[tokio::test]
async fn every_request_is_logged_as_one_json_line_with_the_id_the_origin_saw() {
    let origins = origin::start(1).await;
    let (telemetry, mut lines) = access_log(Format::Json);
    let proxy = TestProxy::start_with_telemetry(&shop(&origins), telemetry).await;

    let request = Request::get(format!("http://{}/echo?q=1", proxy.addr))
        .header("host", "shop.example.com")
        .header("user-agent", "tester/1.0")
        .header("referer", "https://example.org/")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Full::default())
        .unwrap();
    let reply = send(&client(), request).await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = reply.json();
    let request_id = seen["headers"]["x-request-id"].as_str().unwrap().to_owned();
    assert_eq!(request_id.len(), 32, "a generated ID: {request_id}");
    assert_eq!(
        seen["headers"]["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );

    let line: serde_json::Value = serde_json::from_str(&next_line(&mut lines).await).unwrap();
    assert_eq!(line["method"], "GET");
    assert_eq!(line["host"], "shop.example.com");
    assert_eq!(line["path"], "/echo?q=1");
    assert_eq!(line["protocol"], "HTTP/1.1");
    assert_eq!(line["status"], 200);
    assert_eq!(line["client"], "127.0.0.1");
    assert_eq!(line["namespace"], "default");
    assert_eq!(line["ingress"], "shop");
    assert_eq!(line["service"], "web");
    assert_eq!(line["request_id"], request_id.as_str());
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(line["user_agent"], "tester/1.0");
    assert_eq!(line["referer"], "https://example.org/");
    assert_eq!(line["response_bytes"], reply.body.len());
    assert_eq!(
        line["upstreams"][0]["address"],
        origins.origins[0].addr.to_string()
    );
    assert_eq!(line["upstreams"][0]["status"], 200);
    assert!(
        line["duration"].as_f64().unwrap() >= line["upstreams"][0]["duration"].as_f64().unwrap()
    );
    for field in ["time", "request_bytes", "tls_version", "sni"] {
        assert!(line.get(field).is_some(), "{field} missing: {line}");
    }

    // A client's own sane request ID is passed on and logged.
    let request = Request::get(format!("http://{}/", proxy.addr))
        .header("host", "shop.example.com")
        .header("x-request-id", "from-the-client")
        .body(Full::default())
        .unwrap();
    let seen = send(&client(), request).await.json();
    assert_eq!(seen["headers"]["x-request-id"], "from-the-client");
    let line: serde_json::Value = serde_json::from_str(&next_line(&mut lines).await).unwrap();
    assert_eq!(line["request_id"], "from-the-client");
}

#[tokio::test]
async fn an_ingress_can_turn_its_access_log_off_and_text_lines_follow_upstreaminfo() {
    let origins = origin::start(1).await;
    let (telemetry, mut lines) = access_log(Format::Text);
    let quiet = annotate(
        &ingress("quiet", Some("quiet.example.com"), "/", "web"),
        &[("vane.dev/enable-access-log", "false")],
    );
    let yaml = format!("{}---\n{quiet}", shop(&origins));
    let proxy = TestProxy::start_with_telemetry(&yaml, telemetry).await;
    let client = client();
    assert_eq!(
        get(&client, proxy.addr, "quiet.example.com", "/")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get(&client, proxy.addr, "shop.example.com", "/status/503")
            .await
            .status
            .as_u16(),
        503
    );

    // Only the second request is logged: the next line is it.
    let line = next_line(&mut lines).await;
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains("] \"GET /status/503 HTTP/1.1\" 503 "),
        "{line}"
    );
    assert!(line.contains(" [default/shop/web] [] "), "{line}");
    assert!(
        line.contains(&format!(" {} ", origins.origins[0].addr)),
        "{line}"
    );
}

#[tokio::test]
async fn a_websocket_is_logged_once_when_it_closes_with_its_bytes() {
    let origins = origin::start(1).await;
    let (telemetry, mut lines) = access_log(Format::Json);
    let proxy = TestProxy::start_with_telemetry(&single_route(&origins, None), telemetry).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut socket, _) = tokio_tungstenite::client_async("ws://ws.example.com/ws", stream)
        .await
        .unwrap();
    socket
        .send(Message::binary(vec![7u8; 10_000]))
        .await
        .unwrap();
    socket.next().await.unwrap().unwrap();
    socket.close(None).await.unwrap();
    drop(socket);

    let line: serde_json::Value = serde_json::from_str(&next_line(&mut lines).await).unwrap();
    assert_eq!(line["status"], 101);
    assert_eq!(line["path"], "/ws");
    // Framing adds a few bytes each way.
    let (sent, received) = (
        line["request_bytes"].as_u64().unwrap(),
        line["response_bytes"].as_u64().unwrap(),
    );
    assert!((10_000..10_100).contains(&sent), "{line}");
    assert!((10_000..10_100).contains(&received), "{line}");
}

#[tokio::test]
async fn a_log_nobody_reads_drops_lines_and_never_slows_requests() {
    let origins = origin::start(1).await;
    // The reading end stays open and unread: the socket buffer fills, then the queue.
    let (telemetry, _unread) = access_log(Format::Json);
    let proxy = TestProxy::start_with_telemetry(&shop(&origins), telemetry).await;
    let client = client();
    // 60 KB user agents make each line 60 KB: the 4 MiB queue and the socket buffer are full
    // after some 75 lines.
    let agent = "a".repeat(60_000);
    let all = async {
        for _ in 0..200 {
            let request = Request::get(format!("http://{}/", proxy.addr))
                .header("host", "shop.example.com")
                .header("user-agent", agent.as_str())
                .body(Full::default())
                .unwrap();
            assert_eq!(send(&client, request).await.status, StatusCode::OK);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("requests never wait for the log");
    let metrics = metrics_of(&proxy);
    assert!(
        metrics["vane_access_log_dropped_total"] >= 100.0,
        "{metrics:?}"
    );
}

#[tokio::test]
async fn attempts_that_get_no_response_count_as_the_endpoints_failures() {
    let origins = origin::start(2).await;
    let proxy = TestProxy::start(&shop(&origins)).await;
    let (dead, alive) = (&origins.origins[0], &origins.origins[1]);
    dead.kill();
    let client = client();
    for _ in 0..6 {
        // A refused connect is retried on the other endpoint: every request succeeds.
        let reply = get(&client, proxy.addr, "shop.example.com", "/").await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let metrics = metrics_of(&proxy);
    let attempts = |family: &str, origin: &origin::Origin| {
        sample(&metrics, family, &format!(r#"endpoint="{}""#, origin.addr))
    };
    let refused = attempts("vane_endpoint_upstream_failures_total{", dead);
    assert!(refused >= 1.0, "{metrics:?}");
    assert_eq!(
        attempts("vane_endpoint_upstream_requests_total{", dead),
        refused
    );
    assert_eq!(
        attempts("vane_endpoint_upstream_failures_total{", alive),
        0.0
    );
    assert_eq!(
        attempts("vane_endpoint_upstream_requests_total{", alive),
        6.0
    );
}
