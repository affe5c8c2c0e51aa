//! vane's spans (`--otlp-endpoint`): the real exporter posting to an in-process collector
//! (support/collector.rs), the trace context the origin sees, a WebSocket's span, what a
//! collector that never answers does to requests (nothing), and the binary's last export at
//! shutdown.
//!
//! A request's span ends just before its access log line is written, so a test waits for the
//! line, then flushes the exporter: the span is at the collector when the flush returns.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode, Uri};
use http_body_util::Full;
use tokio::io::{BufReader, Lines};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use vane::otlp::{self, Exporter};
use vane::proxy::access_log::Format;
use vane::proxy::Spans;

use crate::observability::{access_log, next_line};
use crate::support::binary::{write_atomically, Vane};
use crate::support::client::{client, get, send};
use crate::support::collector::{self, text_of};
use crate::support::fixtures::{backend, docs, ingress, INGRESS_CLASS};
use crate::support::origin::{self, Origins};
use crate::support::proxy::TestProxy;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn client_traceparent(flags: &str) -> String {
    format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-{flags}")
}

/// A proxy exporting its spans to `endpoint` at `sample_ratio`, with a JSON access log.
struct Traced {
    proxy: TestProxy,
    exporter: Arc<Exporter>,
    log: Lines<BufReader<tokio::net::UnixStream>>,
}

impl Traced {
    async fn start(origins: &Origins, endpoint: &Uri, sample_ratio: f64) -> Self {
        let (tracer, exporter) = otlp::start(endpoint).unwrap();
        let (mut telemetry, log) = access_log(Format::Json);
        telemetry.spans = Some(Spans {
            tracer,
            sample_ratio,
        });
        let yaml = docs(&[
            INGRESS_CLASS.to_string(),
            backend("web", origins.port, &origins.ips()),
            ingress("shop", Some("shop.example.com"), "/", "web"),
        ]);
        Self {
            proxy: TestProxy::start_with_telemetry(&yaml, telemetry).await,
            exporter: Arc::new(exporter),
            log,
        }
    }

    /// Sends a request to shop.example.com with these headers; returns the headers the origin
    /// saw.
    async fn echo(&self, path: &str, headers: &[(&str, &str)]) -> serde_json::Value {
        let mut request = Request::get(self.proxy.url(path)).header("host", "shop.example.com");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let reply = send(&client(), request.body(Full::default()).unwrap()).await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.json()["headers"].clone()
    }

    /// The next request's access log line: its span has ended by then.
    async fn reported(&mut self) -> serde_json::Value {
        serde_json::from_str(&next_line(&mut self.log).await).unwrap()
    }

    /// Exports the spans that have ended, off the runtime the exports run on.
    async fn flush(&self) {
        let exporter = self.exporter.clone();
        tokio::task::spawn_blocking(move || exporter.flush())
            .await
            .unwrap()
            .expect("the collector takes the spans");
    }
}

/// `00-TRACE-PARENT-FLAGS` into its trace ID, parent ID and flags.
fn fields(traceparent: &serde_json::Value) -> (String, String, String) {
    let text = traceparent.as_str().expect("a traceparent upstream");
    let parts: Vec<&str> = text.split('-').collect();
    assert_eq!((parts.len(), parts[0]), (4, "00"), "{text}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[tokio::test]
async fn a_sampled_request_is_exported_and_its_span_is_the_parent_upstream() {
    let origins = origin::start(1).await;
    let mut collector = collector::start().await;
    let mut traced = Traced::start(&origins, &collector.endpoint(), 0.5).await;

    let before = SystemTime::now();
    let parent = client_traceparent("01");
    let seen = traced
        .echo(
            "/echo?token=secret",
            &[("traceparent", parent.as_str()), ("tracestate", "k=v")],
        )
        .await;
    let line = traced.reported().await;
    let after = SystemTime::now();

    // The origin's parent is vane's span, in the client's trace.
    let (trace_id, vanes_span, flags) = fields(&seen["traceparent"]);
    assert_eq!(trace_id, CLIENT_TRACE);
    assert_eq!(flags, "01");
    assert_eq!(vanes_span.len(), 16);
    assert_ne!(vanes_span, CLIENT_SPAN);
    assert_eq!(seen["tracestate"], "k=v");
    assert_eq!(line["trace_id"], CLIENT_TRACE);

    traced.flush().await;
    let received = collector.next_span().await;
    assert_eq!(received.trace_id(), CLIENT_TRACE);
    assert_eq!(received.span_id(), vanes_span);
    assert_eq!(received.parent_span_id(), CLIENT_SPAN);
    let span = &received.span;
    assert_eq!(span.name, "GET");
    assert_eq!(span.kind, 2, "SPAN_KIND_SERVER");
    for (key, value) in [
        ("http.request.method", "GET"),
        ("url.scheme", "http"),
        ("url.path", "/echo"),
        ("server.address", "shop.example.com"),
        ("client.address", "127.0.0.1"),
        ("network.protocol.version", "1.1"),
        ("http.response.status_code", "200"),
        ("k8s.namespace.name", "default"),
        ("vane.ingress", "shop"),
        ("vane.service", "web"),
    ] {
        assert_eq!(received.attribute(key).as_deref(), Some(value), "{key}");
    }
    // The query is not exported: it often carries secrets.
    assert!(received.attribute("url.query").is_none());
    assert!(!format!("{span:?}").contains("secret"));
    assert_eq!(
        received.attribute("http.response.body.size"),
        line["response_bytes"].as_u64().map(|n| n.to_string())
    );
    assert_eq!(span.status.as_ref().map_or(0, |s| s.code), 0, "unset");

    // The try at the origin is an event.
    let [event] = &span.events[..] else {
        panic!("one upstream event: {:?}", span.events)
    };
    assert_eq!(event.name, "upstream");
    let origin = origins.origins[0].addr;
    let peer = text_of(&event.attributes, "network.peer.address");
    assert_eq!(peer, Some(origin.ip().to_string()));
    let status = text_of(&event.attributes, "http.response.status_code");
    assert_eq!(status.as_deref(), Some("200"));

    // Times: within the test's, in order, and the duration the access log has.
    let (start, end) = (span.start_time_unix_nano, span.end_time_unix_nano);
    assert!(
        unix_nanos(before) <= start && start <= end,
        "{start}..{end}"
    );
    assert!(end <= unix_nanos(after), "{end} after {after:?}");
    assert!(
        start <= event.time_unix_nano && event.time_unix_nano <= end,
        "{start} {} {end}",
        event.time_unix_nano
    );
    let logged = line["duration"].as_f64().unwrap();
    let exported = (end - start) as f64 / 1e9;
    assert!((exported - logged).abs() < 0.001, "{exported} vs {logged}");

    assert_eq!(received.resource["service.name"], "vane");
    assert!(collector.received().is_none(), "one request, one span");
}

#[tokio::test]
async fn a_request_without_traceparent_starts_a_trace_with_vanes_span_as_root() {
    let origins = origin::start(1).await;
    let mut collector = collector::start().await;
    let mut traced = Traced::start(&origins, &collector.endpoint(), 1.0).await;

    let seen = traced.echo("/", &[]).await;
    let line = traced.reported().await;
    let (trace_id, vanes_span, flags) = fields(&seen["traceparent"]);
    assert_eq!(flags, "01");
    assert_eq!(line["trace_id"], trace_id.as_str());

    traced.flush().await;
    let received = collector.next_span().await;
    assert_eq!(received.trace_id(), trace_id);
    assert_eq!(received.span_id(), vanes_span);
    assert_eq!(received.parent_span_id(), "", "a root span");

    // A 5xx answer is an error.
    let reply = get(
        &client(),
        traced.proxy.addr,
        "shop.example.com",
        "/status/503",
    )
    .await;
    assert_eq!(reply.status.as_u16(), 503);
    traced.reported().await;
    traced.flush().await;
    let received = collector.next_span().await;
    assert_eq!(received.attribute("error.type").as_deref(), Some("503"));
    assert_eq!(
        received.span.status.as_ref().unwrap().code,
        2,
        "STATUS_CODE_ERROR"
    );
}

#[tokio::test]
async fn at_ratio_zero_only_sampled_traceparents_are_recorded() {
    let origins = origin::start(1).await;
    let mut collector = collector::start().await;
    let mut traced = Traced::start(&origins, &collector.endpoint(), 0.0).await;

    // An unsampled trace passes through untouched.
    let unsampled = client_traceparent("00");
    let seen = traced
        .echo("/", &[("traceparent", unsampled.as_str())])
        .await;
    assert_eq!(seen["traceparent"], unsampled.as_str());
    traced.reported().await;
    // A new trace is not recorded, and goes upstream unsampled so the services follow suit.
    let seen = traced.echo("/", &[]).await;
    let (trace_id, _, flags) = fields(&seen["traceparent"]);
    assert_eq!(flags, "00");
    assert_eq!(traced.reported().await["trace_id"], trace_id.as_str());
    // Whatever had ended by now is exported by the flush: nothing.
    traced.flush().await;
    assert!(collector.received().is_none());

    // A client's sampled trace is recorded whatever the ratio.
    let sampled = client_traceparent("01");
    let seen = traced.echo("/", &[("traceparent", sampled.as_str())]).await;
    let (_, vanes_span, _) = fields(&seen["traceparent"]);
    traced.reported().await;
    traced.flush().await;
    assert_eq!(collector.next_span().await.span_id(), vanes_span);
    assert!(collector.received().is_none());
}

#[tokio::test]
async fn a_collector_that_never_answers_never_slows_requests() {
    let origins = origin::start(1).await;
    let (endpoint, _silent) = collector::start_silent().await;
    let traced = Traced::start(&origins, &endpoint, 1.0).await;
    let client = client();
    // More spans than the export queue holds: the rest are dropped, never waited for.
    let requests = otlp::QUEUE_SPANS + 100;
    let all = async {
        for _ in 0..requests {
            let reply = get(&client, traced.proxy.addr, "shop.example.com", "/").await;
            assert_eq!(reply.status, StatusCode::OK);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("requests never wait for the collector");
}

#[tokio::test]
async fn a_websockets_span_ends_when_its_tunnel_closes() {
    let origins = origin::start(1).await;
    let mut collector = collector::start().await;
    let mut traced = Traced::start(&origins, &collector.endpoint(), 1.0).await;
    let stream = TcpStream::connect(traced.proxy.addr).await.unwrap();
    let (mut socket, _) = tokio_tungstenite::client_async("ws://shop.example.com/ws", stream)
        .await
        .unwrap();
    socket.send(Message::text("hello")).await.unwrap();
    socket.next().await.unwrap().unwrap();
    let open = SystemTime::now();
    socket.close(None).await.unwrap();
    drop(socket);

    let line = traced.reported().await;
    assert_eq!(line["status"], 101);
    traced.flush().await;
    let received = collector.next_span().await;
    assert_eq!(
        received.attribute("http.response.status_code").as_deref(),
        Some("101")
    );
    assert!(received.span.end_time_unix_nano >= unix_nanos(open));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_sends_its_last_spans_before_it_exits() {
    let origins = origin::start(1).await;
    let mut collector = collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = docs(&[
        INGRESS_CLASS.to_string(),
        backend("web", origins.port, &origins.ips()),
        ingress("shop", Some("shop.example.com"), "/", "web"),
    ]);
    write_atomically(&dir.path().join("shop.yaml"), &yaml);
    // The base URL, as an operator would give it.
    let endpoint = format!("http://{}", collector.addr);
    let mut vane = Vane::start_with(&[
        "--manifests".as_ref(),
        dir.path().as_os_str(),
        "--otlp-endpoint".as_ref(),
        endpoint.as_ref(),
    ])
    .await;
    let reply = get(&client(), vane.http, "shop.example.com", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    let (trace_id, vanes_span, _) = fields(&reply.json()["headers"]["traceparent"]);

    // Stopped well within the 5 s between scheduled exports: the span goes out at shutdown.
    assert!(vane.terminate(Duration::from_secs(30)).await.success());
    let received = collector
        .received()
        .expect("the span reached the collector before vane exited");
    assert_eq!(
        (received.trace_id(), received.span_id()),
        (trace_id, vanes_span)
    );
}
