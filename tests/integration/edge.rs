//! The proxy as an attacker or a careless client meets it: connections that send nothing,
//! clients that never read, h2c smuggling, malformed hosts and request lines, and origins that
//! frame responses badly. Each test here failed before the defect it names was fixed.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use vane::proxy::ServerLimits;

use crate::support::client::{client, get};
use crate::support::fixtures::{annotate, backend, docs, ingress, single_route, INGRESS_CLASS};
use crate::support::origin;
use crate::support::proxy::TestProxy;
use crate::support::tls::handshake;
use crate::support::wait::eventually;

/// Short timeouts, so that the tests see them fire.
fn short() -> ServerLimits {
    ServerLimits {
        handshake_timeout: Duration::from_millis(300),
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        send_timeout: Duration::from_millis(300),
        ..ServerLimits::default()
    }
}

/// Reads until the peer closes; fails the test if that takes 10 s.
async fn closed_by_peer<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut read = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut read))
        .await
        .expect("the proxy should close the connection")
        .ok();
    read
}

/// An HTTP/2 client connection with prior knowledge, driven by its own task.
async fn h2c_client(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    (sender, tokio::spawn(connection))
}

/// Sends `raw` on a new connection and returns everything the proxy answers until it closes.
async fn exchange(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    String::from_utf8_lossy(&closed_by_peer(&mut stream).await).into_owned()
}

#[tokio::test]
async fn connections_that_send_nothing_or_half_a_preface_are_closed() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start_with_limits(&single_route(&origins, None), short()).await;
    for sent in [&b""[..], b"PRI * HTTP/2.0\r\n", b"GET / HT"] {
        let started = Instant::now();
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(sent).await.unwrap();
        closed_by_peer(&mut stream).await;
        assert!(started.elapsed() >= Duration::from_millis(300), "{sent:?}");
    }
    // A TLS handshake, then silence, with either protocol.
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let started = Instant::now();
        let mut stream = handshake(proxy.https, None, &[alpn], None).await.unwrap();
        closed_by_peer(&mut stream).await;
        assert!(started.elapsed() >= Duration::from_millis(300), "{alpn:?}");
    }
}

#[tokio::test]
async fn at_the_connection_cap_idle_connections_make_room_for_new_clients() {
    let origins = origin::start(1).await;
    let limits = ServerLimits {
        max_connections: 8,
        // Long enough that only shedding can free a place in time.
        handshake_timeout: Duration::from_secs(30),
        ..ServerLimits::default()
    };
    let proxy = TestProxy::start_with_limits(&single_route(&origins, None), limits).await;
    let mut idle = vec![TcpStream::connect(proxy.addr).await.unwrap()];
    // Make the first connection the oldest for certain, whatever the clock's resolution.
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 1..8 {
        idle.push(TcpStream::connect(proxy.addr).await.unwrap());
    }
    let started = Instant::now();
    let reply = get(&client(), proxy.addr, "x", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The oldest idle sockets were the ones closed.
    let mut first = idle.remove(0);
    closed_by_peer(&mut first).await;
}

#[tokio::test]
async fn idle_http2_connections_are_closed_with_goaway() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start_with_limits(&single_route(&origins, None), short()).await;
    let (mut sender, connection) = h2c_client(proxy.addr).await;
    let request = Request::get("http://h2.example.com/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let last_request = Instant::now();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();
    // A graceful close: GOAWAY, then the connection ends without an error.
    let ended = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the idle connection should be closed");
    let ended = ended.unwrap();
    assert!(ended.is_ok(), "closed with GOAWAY, not reset: {ended:?}");
    assert!(last_request.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn h2c_upgrades_are_never_forwarded_but_websocket_handshakes_are() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&single_route(&origins, None)).await;
    let answer = exchange(
        proxy.addr,
        b"GET /smuggle HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let echo = &answer[answer.find("\r\n\r\n").unwrap()..].to_ascii_lowercase();
    assert!(!echo.contains("h2c"), "{echo}");
    assert!(!echo.contains("http2-settings"), "{echo}");
    assert!(!echo.contains("upgrade"), "{echo}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_and_frees_the_upstream_connection() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start_with_limits(&single_route(&origins, None), short()).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    // 64 MiB, far more than the socket buffers on the way hold; never read.
    stream
        .write_all(b"GET /bytes/67108864 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let origin = &origins.origins[0];
    eventually("the origin serves the download", || async {
        origin.hits() == 1
    })
    .await;
    eventually("the upstream connection is closed", || async {
        origin.open_connections() == 0
    })
    .await;
}

/// HTTP/2 flow control lets a client stop accepting data on one stream without the socket ever
/// blocking: the send timeout must see the stream, not just the connection's writes.
#[tokio::test]
async fn an_http2_client_that_withholds_window_updates_is_cut_and_frees_the_upstream_connection() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start_with_limits(&single_route(&origins, None), short()).await;
    let (mut sender, connection) = h2c_client(proxy.addr).await;
    let request = Request::get("http://x/bytes/67108864")
        .body(Full::new(Bytes::new()))
        .unwrap();
    // The body is never read, so the client never opens its flow-control windows again.
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let origin = &origins.origins[0];
    eventually("the upstream connection is closed", || async {
        origin.open_connections() == 0
    })
    .await;
    let ended = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the stalled connection should be closed");
    assert!(ended.is_ok());
    drop(response);
}

#[tokio::test]
async fn malformed_hosts_connect_and_long_targets_are_refused() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&single_route(&origins, None)).await;
    let long_path = format!("/{}", "a".repeat(9000));
    let too_many_headers: String = (0..101).map(|i| format!("x-h{i}: 1\r\n")).collect();
    let cases: [(String, &str); 9] = [
        ("GET / HTTP/1.1\r\n".into(), "400"),
        ("GET / HTTP/1.0\r\n".into(), "400"),
        (
            "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n".into(),
            "400",
        ),
        ("GET / HTTP/1.1\r\nHost: user@a.example\r\n".into(), "400"),
        ("GET / HTTP/1.1\r\nHost: a b\r\n".into(), "400"),
        (
            "GET http://user@a.example/ HTTP/1.1\r\nHost: a.example\r\n".into(),
            "400",
        ),
        (
            "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n".into(),
            "405",
        ),
        (format!("GET {long_path} HTTP/1.1\r\nHost: x\r\n"), "414"),
        (
            format!("GET / HTTP/1.1\r\nHost: x\r\n{too_many_headers}"),
            "431",
        ),
    ];
    for (head, status) in cases {
        let request = format!("{head}Connection: close\r\n\r\n");
        let answer = exchange(proxy.addr, request.as_bytes()).await;
        let first_line = answer.lines().next().unwrap_or_default();
        assert!(
            first_line.contains(status),
            "{:?}: {first_line}",
            &head[..head.len().min(60)]
        );
    }
    assert_eq!(origins.origins[0].hits(), 0, "nothing reached the origin");
}

#[tokio::test]
async fn a_response_with_content_length_and_chunked_reaches_the_client_whole() {
    // An origin that frames its body with chunked encoding and also sends a wrong
    // Content-Length (RFC 9112 section 6.3: chunked wins, and a proxy drops the length).
    let listener = TcpListener::bind("127.0.2.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = [0; 4096];
                let _ = stream.read(&mut head).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
                          a\r\n0123456789\r\n0\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    let proxy = TestProxy::start(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", addr.port(), &[addr.ip()]),
        ingress("app", None, "/", "app"),
    ]))
    .await;
    let reply = get(&client(), proxy.addr, "x", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "0123456789");
}

#[tokio::test]
async fn websocket_tunnels_count_against_the_connection_cap_until_they_close() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let origins = origin::start(1).await;
    let limits = ServerLimits {
        max_connections: 1,
        // How long a new connection waits for a place: ample for the closed tunnel to free it.
        handshake_timeout: Duration::from_secs(2),
        ..ServerLimits::default()
    };
    let proxy = TestProxy::start_with_limits(&single_route(&origins, None), limits).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut socket, _) = tokio_tungstenite::client_async("ws://x/ws", stream)
        .await
        .expect("WebSocket handshake through vane");
    socket.send(Message::text("ping")).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("ping"));
    // The tunnel holds the only place, and is busy: a new connection is turned away.
    let answer = exchange(proxy.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(answer, "", "no place for a second connection");
    socket.close(None).await.unwrap();
    drop(socket);
    eventually("the tunnel's place is free again", || async {
        get(&client(), proxy.addr, "x", "/").await.status == StatusCode::OK
    })
    .await;
}

/// An origin that switches to whatever `Upgrade` names and then echoes bytes; without an
/// `Upgrade`, it answers 200.
async fn switching_origin() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.2.2:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let Some(protocol) = head
                    .lines()
                    .find_map(|line| line.strip_prefix("upgrade: "))
                    .map(str::to_owned)
                else {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nno upgrade")
                        .await;
                    return;
                };
                let switch = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: {protocol}\r\n\r\n"
                );
                let _ = stream.write_all(switch.as_bytes()).await;
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_route_can_allow_other_upgrade_protocols_but_never_h2c() {
    let addr = switching_origin().await;
    let spdy = b"GET /exec HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n";
    let manifests = |annotation: Option<&str>| {
        let ingress = ingress("app", None, "/", "app");
        let ingress = match annotation {
            Some(value) => annotate(&ingress, &[("vane.dev/upgrade-protocols", value)]),
            None => ingress,
        };
        docs(&[
            INGRESS_CLASS.to_string(),
            backend("app", addr.port(), &[addr.ip()]),
            ingress,
        ])
    };
    let proxy = TestProxy::start(&manifests(None)).await;
    // Not allowed: the upgrade is dropped on the way, and the origin answers the plain request.
    let answer = exchange(
        proxy.addr,
        b"GET /exec HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: SPDY/3.1\r\n\r\n",
    )
    .await;
    assert!(answer.ends_with("no upgrade"), "{answer}");

    proxy.publish(&manifests(Some("websocket, SPDY/3.1")));
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(spdy).await.unwrap();
    let mut head = vec![0; 1024];
    let n = stream.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: spdy/3.1"), "{head}");
    stream.write_all(b"through the tunnel").await.unwrap();
    let mut echoed = [0; 18];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"through the tunnel");

    let diagnostics = proxy.publish(&manifests(Some("h2c")));
    assert!(
        diagnostics
            .iter()
            .any(|d| d.reason == "InvalidAnnotation" && d.message.contains("h2c")),
        "{diagnostics:?}"
    );
}
