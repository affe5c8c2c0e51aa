//! The HTTP/1.1 upstream connection pool, seen from the origins: connections are reused
//! whatever the shape of the exchange, never reused when they cannot be, and closed when idle.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use vane::proxy::UpstreamConfig;

use crate::support::client::{client, get, send};
use crate::support::fixtures::{backend, docs, ingress, policy, single_route, INGRESS_CLASS};
use crate::support::origin;
use crate::support::proxy::TestProxy;
use crate::support::wait::eventually;

#[tokio::test]
async fn one_upstream_connection_serves_sequential_requests_of_every_shape() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&single_route(&origins, None)).await;
    let client = client();
    let request = |method: Method, path: &str, body: Bytes| {
        Request::builder()
            .method(method)
            .uri(proxy.url(path))
            .body(Full::new(body))
            .unwrap()
    };
    let exchanges = [
        (Method::GET, "/", Bytes::new()),
        (Method::HEAD, "/", Bytes::new()),
        (Method::GET, "/status/204", Bytes::new()),
        (Method::GET, "/status/404", Bytes::new()),
        (Method::GET, "/bytes/1048576", Bytes::new()),
        // Buffered (small, replayable) and streamed (over 64 KiB) request bodies.
        (Method::POST, "/upload", Bytes::from(vec![b'a'; 1000])),
        (Method::POST, "/upload", Bytes::from(vec![b'b'; 200 * 1024])),
        (Method::GET, "/", Bytes::new()),
    ];
    for (method, path, body) in exchanges {
        let length = body.len();
        let reply = send(&client, request(method.clone(), path, body)).await;
        assert!(
            reply.status.is_success() || reply.status == StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            reply.status
        );
        if path == "/upload" {
            assert_eq!(reply.text(), length.to_string());
        }
        if path == "/bytes/1048576" {
            assert_eq!(reply.body.len(), 1024 * 1024);
        }
    }
    assert_eq!(origins.origins[0].hits(), 8);
    assert_eq!(origins.origins[0].connections(), 1);
}

#[tokio::test]
async fn a_connection_the_origin_closes_is_not_reused() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&single_route(&origins, None)).await;
    let client = client();
    for _ in 0..5 {
        let reply = get(&client, proxy.addr, "x", "/close").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    assert_eq!(origins.origins[0].connections(), 5);
    // And the pool goes on as usual afterwards.
    for _ in 0..3 {
        assert_eq!(
            get(&client, proxy.addr, "x", "/").await.status,
            StatusCode::OK
        );
    }
    assert_eq!(origins.origins[0].connections(), 6);
}

/// An origin that answers one request per connection as if it kept the connection alive, then,
/// when told to, closes it without saying so (as an origin whose keep-alive timeout ran out
/// does), and reports that it did.
async fn origin_dropping_idle_connections() -> (SocketAddr, mpsc::Sender<()>, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (close, mut close_now) = mpsc::channel(1);
    let (closed, was_closed) = mpsc::channel(1);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            while !request.ends_with(b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let response = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
            let _ = stream.write_all(response).await;
            if close_now.recv().await.is_none() {
                return;
            }
            drop(stream);
            let _ = closed.send(()).await;
        }
    });
    (addr, close, was_closed)
}

#[tokio::test]
async fn an_idle_connection_closed_by_the_origin_is_replaced_without_a_retry() {
    let (addr, close, mut closed) = origin_dropping_idle_connections().await;
    // No retries: a request must not fail because its pooled connection was dead.
    let proxy = TestProxy::start(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", addr.port(), &[addr.ip()]),
        ingress("app", None, "/", "app"),
        policy("app", "app", "retry:\n  attempts: 1\n"),
    ]))
    .await;
    let client = client();
    for _ in 0..3 {
        let reply = get(&client, proxy.addr, "x", "/").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.text(), "ok\n");
        // The connection is idle in the pool now; the origin closes it.
        close.send(()).await.unwrap();
        closed.recv().await.unwrap();
    }
}

#[tokio::test]
async fn idle_upstream_connections_are_closed_after_the_idle_timeout() {
    let origins = origin::start(1).await;
    let upstream = UpstreamConfig {
        pool_idle_timeout: Duration::from_millis(200),
        ..UpstreamConfig::default()
    };
    let proxy = TestProxy::start_with_upstream(&single_route(&origins, None), &upstream).await;
    let reply = get(&client(), proxy.addr, "x", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    let origin = &origins.origins[0];
    assert_eq!(origin.connections(), 1);
    eventually("the idle upstream connection is closed", || async {
        origin.open_connections() == 0
    })
    .await;
}
