//! Tier 2: the real proxy on loopback, in front of real origins, driven by real clients.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::client::{client, get, send};
use crate::support::fixtures::{annotate, backend, docs, ingress, single_route, INGRESS_CLASS};
use crate::support::origin;
use crate::support::proxy::TestProxy;

#[tokio::test]
async fn round_robin_gives_each_endpoint_exactly_its_share() {
    let origins = origin::start(3).await;
    let proxy = TestProxy::start(&single_route(&origins, None)).await;
    let client = client();
    const N: usize = 20;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..3 * N {
        let reply = get(&client, proxy.addr, "anything.example.com", "/").await;
        assert_eq!(reply.status, StatusCode::OK);
        *counts.entry(reply.origin().unwrap()).or_default() += 1;
    }
    for origin in &origins.origins {
        assert_eq!(counts.get(&origin.name), Some(&N), "{counts:?}");
        assert_eq!(origin.hits(), N);
    }
}

#[tokio::test]
async fn unmatched_request_gets_404() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
        ingress("app", Some("app.example.com"), "/api", "app"),
    ]))
    .await;
    let client = client();
    let reply = get(&client, proxy.addr, "app.example.com", "/other").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.text().contains("no route"), "{}", reply.text());
    let reply = get(&client, proxy.addr, "elsewhere.example.com", "/api").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(origins.origins[0].hits(), 0);
}

#[tokio::test]
async fn invalid_backend_and_backend_without_endpoints_get_503_while_others_route() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
        backend("empty", origins.port, &[]),
        ingress("app", Some("app.example.com"), "/", "app"),
        ingress(
            "missing",
            Some("missing.example.com"),
            "/",
            "does-not-exist",
        ),
        ingress("empty", Some("empty.example.com"), "/", "empty"),
    ]))
    .await;
    let client = client();
    let reply = get(&client, proxy.addr, "missing.example.com", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.text().contains("not configured"), "{}", reply.text());
    let reply = get(&client, proxy.addr, "empty.example.com", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.text().contains("no ready endpoint"),
        "{}",
        reply.text()
    );
    let reply = get(&client, proxy.addr, "app.example.com", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn endpoint_refusing_connections_gives_502() {
    // Bind and drop a listener: nothing listens on that address afterwards.
    let origins = origin::start(1).await;
    let (ip, port) = (origins.origins[0].addr.ip(), origins.port);
    origins.origins[0].kill();
    drop(origins);
    // Wait until the port is really closed (the origin task drops its listener asynchronously).
    while TcpStream::connect((ip, port)).await.is_ok() {
        tokio::task::yield_now().await;
    }
    let proxy = TestProxy::start(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("dead", port, &[ip]),
        ingress("dead", None, "/", "dead"),
    ]))
    .await;
    let reply = get(&client(), proxy.addr, "x", "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(
        reply.text().contains("could not connect"),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn hanging_upstream_gives_504_at_the_timeout_and_is_not_tried_again() {
    for endpoints in [1, 2] {
        let origins = origin::start(endpoints).await;
        let yaml = docs(&[
            INGRESS_CLASS.to_string(),
            backend("app", origins.port, &origins.ips()),
            annotate(
                &ingress("app", None, "/", "app"),
                &[("vane.dev/proxy-read-timeout", "200ms")],
            ),
        ]);
        let proxy = TestProxy::start(&yaml).await;
        let started = tokio::time::Instant::now();
        let reply = get(&client(), proxy.addr, "x", "/hang").await;
        assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
        let waited = started.elapsed();
        // A timeout is retried only on an endpoint not tried yet, so the client waits the
        // read timeout once per endpoint (up to 3 attempts), never 3 times on one endpoint.
        let timeouts = u32::try_from(endpoints).unwrap();
        assert!(
            waited >= Duration::from_millis(200) * timeouts,
            "{waited:?}"
        );
        for origin in &origins.origins {
            assert_eq!(origin.hits(), 1, "{endpoints} endpoints");
        }
    }
}

#[tokio::test]
async fn forwarded_headers_are_set_and_hop_by_hop_headers_removed() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&single_route(&origins, Some("app.example.com"))).await;
    let request = Request::get(format!("http://{}/echo?x=1", proxy.addr))
        .header("host", "App.Example.com:8443")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-real-ip", "198.51.100.1")
        .header("connection", "x-private")
        .header("x-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("x-custom", "kept")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = send(&client(), request).await;
    assert_eq!(reply.status, StatusCode::OK);
    let echo = reply.json();
    let headers = &echo["headers"];
    assert_eq!(echo["path"], "/echo");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(headers["host"], "App.Example.com:8443", "Host is preserved");
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(headers["x-real-ip"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "App.Example.com:8443");
    assert_eq!(headers["x-forwarded-port"], proxy.addr.port().to_string());
    assert_eq!(headers["x-custom"], "kept");
    assert!(headers.get("x-private").is_none(), "{headers}");
    assert!(headers.get("keep-alive").is_none(), "{headers}");
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&single_route(&origins, Some("ws.example.com"))).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut socket, response) = tokio_tungstenite::client_async("ws://ws.example.com/ws", stream)
        .await
        .expect("WebSocket handshake through vane");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for i in 0..10 {
        let text = format!("hello {i}");
        socket.send(Message::text(text.clone())).await.unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed, Message::text(text));
    }
    let binary = vec![7u8; 100_000];
    socket.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::binary(binary)
    );
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn h2c_prior_knowledge_request() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&single_route(&origins, Some("h2.example.com"))).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    for _ in 0..3 {
        let request = Request::get("http://h2.example.com/over-h2")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), http::Version::HTTP_2);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(echo["path"], "/over-h2");
        // The upstream speaks HTTP/1.1, so the :authority became its Host header.
        assert_eq!(echo["headers"]["host"], "h2.example.com");
    }
}

#[tokio::test]
async fn in_flight_request_finishes_on_its_table_after_a_swap() {
    let old = origin::start(1).await;
    let new = origin::start(1).await;
    let proxy = TestProxy::start(&single_route(&old, None)).await;
    let client = client();
    // A large streamed response is in flight while the table changes under it.
    let request = Request::get(proxy.url("/bytes/8388608"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    proxy.publish(&single_route(&new, None));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 8 * 1024 * 1024);
    assert_eq!(old.origins[0].hits(), 1);
    // New requests use the new table.
    let reply = get(&client, proxy.addr, "x", "/").await;
    assert_eq!(reply.origin().as_deref(), Some("origin-0"));
    assert_eq!(new.origins[0].hits(), 1);
}

#[tokio::test]
async fn paths_are_routed_in_normal_form_and_forwarded_as_sent() {
    let public = origin::start(1).await;
    let admin = origin::start(1).await;
    let proxy = TestProxy::start(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("public", public.port, &public.ips()),
        backend("admin", admin.port, &admin.ips()),
        ingress("public", None, "/public", "public"),
        ingress("admin", None, "/admin", "admin"),
    ]))
    .await;
    let client = client();
    // Each of these names /admin once dot segments, encoded dots and double slashes are
    // resolved, so none of them may pass for a /public request.
    let sneaky = [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin/x",
        "//admin",
        "/public/./../admin/",
        // nginx decodes %2F before it resolves dot segments, and so do origins that decode.
        "/public%2F..%2Fadmin",
        "/public/%2e%2e%2fadmin",
    ];
    for (n, path) in sneaky.iter().enumerate() {
        let reply = get(&client, proxy.addr, "x", path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(admin.origins[0].hits(), n + 1, "{path} went elsewhere");
        // The backend gets the path as the client wrote it, as nginx forwards it.
        assert_eq!(reply.json()["path"], *path);
    }
    assert_eq!(public.origins[0].hits(), 0);
    let reply = get(&client, proxy.addr, "x", "/public/./x").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(public.origins[0].hits(), 1);
    let reply = get(&client, proxy.addr, "x", "/public%2Fx").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        public.origins[0].hits(),
        2,
        "an encoded slash separates segments, as in nginx"
    );
}
