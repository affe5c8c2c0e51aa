//! Endpoint health, retries, timeouts, circuit breaking and graceful shutdown, through the real
//! proxy (and, for shutdown, the real binary) in front of real origins.
//!
//! Time here is the wall clock, kept short: real sockets and tokio's paused clock do not mix
//! (the paused clock jumps to the next timer whenever the runtime waits on I/O). Waits are
//! bounded polls of a condition, never sleeps that hope.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::time::Instant;

use crate::metrics::{metrics_of, sample};
use crate::support::binary::{write_atomically, Vane};
use crate::support::client::{client, get, send};
use crate::support::fixtures::{backend, docs, ingress, policy, single_route, INGRESS_CLASS};
use crate::support::origin::{self, Origins};
use crate::support::proxy::TestProxy;
use crate::support::wait::eventually;

/// Our class, Service `app` over `origins`, an Ingress for every host, and a policy.
fn route_with_policy(origins: &Origins, spec: &str) -> String {
    docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
        ingress("app", None, "/", "app"),
        policy("app", "app", spec),
    ])
}

/// The `/debug/routes` view of endpoint `address` of the first backend.
fn endpoint_view(proxy: &TestProxy, address: std::net::SocketAddr) -> serde_json::Value {
    let routes = vane::admin::routes_json(&proxy.tables.load());
    routes["backends"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == address.to_string())
        .cloned()
        .expect("endpoint listed")
}

fn hits(origins: &Origins) -> usize {
    origins.origins.iter().map(|o| o.hits()).sum()
}

#[tokio::test]
async fn a_killed_origin_fails_no_request_and_stops_getting_traffic() {
    let origins = origin::start(3).await;
    let proxy = TestProxy::start(&single_route(&origins, None)).await;
    let client = client();
    let dead = &origins.origins[1];
    let mut failed = 0;
    for i in 0..1000 {
        if i == 100 {
            dead.kill();
        }
        let reply = get(&client, proxy.addr, "x", "/").await;
        if reply.status != StatusCode::OK {
            failed += 1;
        }
    }
    assert_eq!(
        failed, 0,
        "every GET succeeds: connect failures are retried elsewhere"
    );
    // Passive detection took it out after 5 consecutive gateway errors.
    let view = endpoint_view(&proxy, dead.addr);
    assert_eq!(view["inRotation"], false, "{view}");
    assert!(view["ejectedForSeconds"].as_f64().unwrap() > 0.0, "{view}");
    let served: usize = [0, 2].iter().map(|&i| origins.origins[i].hits()).sum();
    assert_eq!(served + dead.hits(), 1000);
}

#[tokio::test]
async fn an_origin_answering_500s_is_ejected_and_comes_back_after_the_ejection_time() {
    let origins = origin::start(3).await;
    let spec = "healthCheck:\n  passive: {consecutive5xx: 3, baseEjectionTime: 500ms}\n";
    let proxy = TestProxy::start(&route_with_policy(&origins, spec)).await;
    let client = client();
    let sick = &origins.origins[0];
    sick.fail_with(Some(500));
    // Round robin: every third request goes to it; 500s are not retried.
    while sick.hits() < 3 {
        get(&client, proxy.addr, "x", "/").await;
    }
    let ejected_at = Instant::now();
    assert_eq!(endpoint_view(&proxy, sick.addr)["inRotation"], false);
    for _ in 0..30 {
        assert_eq!(
            get(&client, proxy.addr, "x", "/").await.status,
            StatusCode::OK
        );
    }
    assert_eq!(sick.hits(), 3, "no traffic while ejected");

    sick.fail_with(None);
    eventually("the ejected origin gets traffic again", || async {
        get(&client, proxy.addr, "x", "/").await;
        sick.hits() > 3
    })
    .await;
    assert!(
        ejected_at.elapsed() >= Duration::from_millis(500),
        "not before the ejection time"
    );
}

#[tokio::test]
async fn with_default_settings_an_origin_answering_500_to_everything_leaves_rotation() {
    let origins = origin::start(3).await;
    let proxy = TestProxy::start(&single_route(&origins, None)).await;
    let client = client();
    let sick = &origins.origins[0];
    sick.fail_with(Some(500));
    while sick.hits() < 5 {
        get(&client, proxy.addr, "x", "/").await;
    }
    assert_eq!(endpoint_view(&proxy, sick.addr)["inRotation"], false);
    for _ in 0..30 {
        let reply = get(&client, proxy.addr, "x", "/").await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert_eq!(sick.hits(), 5, "no traffic once ejected");
    let metrics = metrics_of(&proxy);
    let sick_endpoint = format!("endpoint=\"{}\"", sick.addr);
    let ejections = |endpoint: &str| sample(&metrics, "vane_endpoint_ejections_total{", endpoint);
    assert_eq!(ejections(&sick_endpoint), 1.0);
    let healthy = format!("endpoint=\"{}\"", origins.origins[1].addr);
    assert_eq!(ejections(&healthy), 0.0);
    assert_eq!(
        sample(&metrics, "vane_endpoint_ejected{", &sick_endpoint),
        1.0
    );
}

#[tokio::test]
async fn an_active_probe_takes_an_origin_out_and_brings_it_back() {
    let origins = origin::start(2).await;
    let spec = "healthCheck:\n  active:\n    type: HTTP\n    http: {path: /healthz}\n    \
                interval: 50ms\n    timeout: 500ms\n    healthyThreshold: 2\n    unhealthyThreshold: 2\n";
    let proxy = TestProxy::start(&route_with_policy(&origins, spec)).await;
    let client = client();
    let sick = &origins.origins[0];
    eventually("probes run", || async { sick.probes() >= 2 }).await;
    assert_eq!(endpoint_view(&proxy, sick.addr)["probe"], "Healthy");

    sick.fail_with(Some(503));
    eventually("the probe marks it down", || async {
        endpoint_view(&proxy, sick.addr)["probe"] == "Unhealthy"
    })
    .await;
    // The verdict outlives a table swap (here: another Ingress appears).
    proxy.publish(&docs(&[
        route_with_policy(&origins, spec),
        ingress("other", Some("other.example.com"), "/", "app"),
    ]));
    assert_eq!(endpoint_view(&proxy, sick.addr)["probe"], "Unhealthy");
    let before = sick.hits();
    for _ in 0..20 {
        assert_eq!(
            get(&client, proxy.addr, "x", "/").await.status,
            StatusCode::OK
        );
    }
    assert_eq!(sick.hits(), before, "no traffic while the probe fails");

    sick.fail_with(None);
    eventually("the probe brings it back", || async {
        endpoint_view(&proxy, sick.addr)["probe"] == "Healthy"
    })
    .await;
    for _ in 0..20 {
        get(&client, proxy.addr, "x", "/").await;
    }
    assert_eq!(sick.hits(), before + 10, "back to its share");
}

/// An EndpointSlice of `app` with explicit conditions per origin.
fn slice_with_conditions(origins: &Origins, conditions: &[(usize, &str)]) -> String {
    let endpoints: String = conditions
        .iter()
        .map(|(i, c)| {
            format!(
                "- addresses: [\"{}\"]\n  conditions: {c}\n",
                origins.origins[*i].addr.ip()
            )
        })
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata:\n  name: app-slice\n  namespace: default\n  labels: {{kubernetes.io/service-name: app}}\n\
         addressType: IPv4\nports:\n- {{name: http, port: {}, protocol: TCP}}\nendpoints:\n{endpoints}",
        origins.port
    )
}

#[tokio::test]
async fn terminating_endpoints_serve_only_when_no_ready_one_is_left() {
    let origins = origin::start(3).await;
    let terminating = "{ready: false, serving: true, terminating: true}";
    let gone = "{ready: false, serving: false, terminating: true}";
    let yaml = |conditions: &[(usize, &str)]| {
        docs(&[
            INGRESS_CLASS.to_string(),
            crate::support::fixtures::service("app"),
            slice_with_conditions(&origins, conditions),
            ingress("app", None, "/", "app"),
        ])
    };
    let proxy = TestProxy::start(&yaml(&[(0, "{ready: true}"), (1, terminating), (2, gone)])).await;
    let client = client();
    for _ in 0..10 {
        get(&client, proxy.addr, "x", "/").await;
    }
    assert_eq!(
        origins.origins[0].hits(),
        10,
        "the ready endpoint takes everything"
    );

    proxy.publish(&yaml(&[(1, terminating), (2, gone)]));
    for _ in 0..10 {
        assert_eq!(
            get(&client, proxy.addr, "x", "/").await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        origins.origins[1].hits(),
        10,
        "only the serving, terminating endpoint is left"
    );
    assert_eq!(
        origins.origins[2].hits(),
        0,
        "a non-serving endpoint never gets traffic"
    );
    assert_eq!(
        endpoint_view(&proxy, origins.origins[1].addr)["readiness"],
        "Terminating"
    );
}

#[tokio::test]
async fn a_post_whose_large_body_was_sent_is_not_retried() {
    let origins = origin::start(2).await;
    let proxy = TestProxy::start(&single_route(&origins, None)).await;
    let client = client();
    for origin in &origins.origins {
        origin.fail_with(Some(503));
    }
    let large = vec![b'x'; 1024 * 1024];
    let post = Request::post(proxy.url("/upload"))
        .body(Full::new(Bytes::from(large)))
        .unwrap();
    assert_eq!(
        send(&client, post).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        hits(&origins),
        1,
        "a sent body that is not idempotent is never sent twice"
    );

    // An idempotent request is retried, up to the 3 attempts.
    assert_eq!(
        get(&client, proxy.addr, "x", "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(hits(&origins), 1 + 3);
}

#[tokio::test]
async fn a_small_body_is_replayed_when_the_first_endpoint_refuses_the_connection() {
    let origins = origin::start(2).await;
    let proxy = TestProxy::start(&single_route(&origins, None)).await;
    let client = client();
    origins.origins[0].kill();
    for _ in 0..4 {
        let post = Request::post(proxy.url("/upload"))
            .body(Full::new(Bytes::from_static(b"0123456789")))
            .unwrap();
        let reply = send(&client, post).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text(), "10", "the whole body arrived");
    }
}

#[tokio::test]
async fn the_circuit_breaker_answers_503_beyond_max_requests() {
    let origins = origin::start(1).await;
    let spec = "circuitBreaker: {maxRequests: 2}\n";
    let proxy = TestProxy::start(&route_with_policy(&origins, spec)).await;
    let requests = (0..5).map(|_| {
        let client = client();
        let addr = proxy.addr;
        tokio::spawn(async move { get(&client, addr, "x", "/delay/1000").await })
    });
    let replies = futures_util::future::join_all(requests).await;
    let mut statuses: Vec<u16> = replies
        .iter()
        .map(|r| r.as_ref().unwrap().status.as_u16())
        .collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 503, 503, 503]);
    let tripped = replies
        .iter()
        .map(|r| r.as_ref().unwrap())
        .find(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .unwrap();
    assert!(
        tripped.text().contains("circuit breaker"),
        "{}",
        tripped.text()
    );
    assert_eq!(
        origins.origins[0].hits(),
        2,
        "turned away without reaching the origin"
    );
    // Once they finished, requests pass again.
    assert_eq!(
        get(&client(), proxy.addr, "x", "/").await.status,
        StatusCode::OK
    );
    let metrics = metrics_of(&proxy);
    let rejections = "vane_backend_circuit_breaker_rejections_total{";
    assert_eq!(sample(&metrics, rejections, "backend=\"default/app:"), 3.0);
}

#[tokio::test]
async fn the_retry_budget_caps_retries_under_a_total_outage() {
    let origins = origin::start(2).await;
    let spec = "retry:\n  attempts: 3\n  budget: {percent: 10, minRetriesPerSecond: 0}\n";
    let proxy = TestProxy::start(&route_with_policy(&origins, spec)).await;
    let client = client();
    for origin in &origins.origins {
        origin.fail_with(Some(503));
    }
    for _ in 0..100 {
        assert_eq!(
            get(&client, proxy.addr, "x", "/").await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    let total = hits(&origins);
    // Without a budget: 300. With it: the 100 requests plus at most 10% more.
    assert!((100..=110).contains(&total), "{total} upstream attempts");
    // Every attempt beyond the first of each request was a retry the budget granted; each
    // failure that wanted one and did not get it was refused.
    let metrics = metrics_of(&proxy);
    let backend = "backend=\"default/app:";
    let granted = sample(&metrics, "vane_backend_retries_total{", backend);
    assert_eq!(granted, (total - 100) as f64);
    assert!(sample(&metrics, "vane_backend_retries_refused_total{", backend) >= 90.0);
}

#[tokio::test]
async fn sigterm_lets_a_slow_request_finish_and_refuses_connections_after_the_delay() {
    let origins = origin::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    write_atomically(&dir.path().join("app.yaml"), &single_route(&origins, None));
    let mut vane = Vane::start_with(&[
        "--manifests".as_ref(),
        dir.path().as_os_str(),
        "--shutdown-delay".as_ref(),
        "1s".as_ref(),
    ])
    .await;
    let (http, admin) = (vane.http, vane.admin);
    let slow = tokio::spawn(async move { get(&client(), http, "x", "/delay/2000").await });
    eventually("the slow request reached the origin", || async {
        origins.origins[0].hits() == 1
    })
    .await;
    let signalled = Instant::now();
    vane.send_sigterm();
    eventually("/readyz fails", || async {
        get(&client(), admin, "x", "/readyz").await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    // Within the delay, a new connection is still served.
    assert_eq!(get(&client(), http, "x", "/").await.status, StatusCode::OK);
    assert!(
        signalled.elapsed() < Duration::from_secs(1),
        "checked within the delay"
    );
    eventually("new connections are refused", || async {
        tokio::net::TcpStream::connect(http).await.is_err()
    })
    .await;
    assert!(
        signalled.elapsed() >= Duration::from_secs(1),
        "not before the delay"
    );
    let reply = slow.await.unwrap();
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the in-flight request completed"
    );
    assert!(vane.exited(Duration::from_secs(10)).await.success());
}

#[tokio::test]
async fn probes_follow_the_endpoints_of_the_current_table() {
    let origins = origin::start(2).await;
    let spec = "healthCheck:\n  active: {type: HTTP, http: {path: /healthz}, interval: 20ms}\n";
    let proxy = TestProxy::start(&route_with_policy(&origins, spec)).await;
    let (kept, removed) = (&origins.origins[0], &origins.origins[1]);
    eventually("both are probed", || async {
        kept.probes() >= 2 && removed.probes() >= 2
    })
    .await;

    // The second endpoint leaves the Service: its probes stop, the other's go on.
    let only_kept = docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &[kept.addr.ip()]),
        ingress("app", None, "/", "app"),
        policy("app", "app", spec),
    ]);
    proxy.publish(&only_kept);
    let settled = removed.probes();
    let kept_before = kept.probes();
    eventually("the kept endpoint is still probed", || async {
        kept.probes() >= kept_before + 5
    })
    .await;
    assert!(
        removed.probes() <= settled + 1,
        "a probe in flight may finish, no more"
    );

    // A TCP check: a killed origin is refused, so it goes down.
    let tcp = "healthCheck:\n  active: {type: TCP, interval: 20ms, unhealthyThreshold: 1}\n";
    proxy.publish(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &[kept.addr.ip()]),
        ingress("app", None, "/", "app"),
        policy("app", "app", tcp),
    ]));
    assert_eq!(endpoint_view(&proxy, kept.addr)["probe"], "Healthy");
    kept.kill();
    eventually("the TCP probe marks it down", || async {
        endpoint_view(&proxy, kept.addr)["probe"] == "Unhealthy"
    })
    .await;
}

/// Sends a POST to `/upload` whose body breaks off after one chunk, as a client that goes away
/// mid-upload; returns once the exchange is over on the client's side.
async fn aborted_upload(proxy: std::net::SocketAddr) {
    use futures_util::stream;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let driver = tokio::spawn(connection);
    // A first chunk, then (once the request is on its way upstream) the end of the client.
    let chunks = stream::unfold(0, |sent| async move {
        let frame = match sent {
            0 => Ok(Frame::data(Bytes::from(vec![b'x'; 100_000]))),
            1 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(std::io::Error::other("the client went away"))
            }
            _ => return None,
        };
        Some((frame, sent + 1))
    });
    let request = Request::post("/upload")
        .header("host", "x")
        .header("content-length", "1000000")
        .body(StreamBody::new(chunks))
        .unwrap();
    let _ = sender.send_request(request).await;
    let _ = driver.await;
}

#[tokio::test]
async fn a_client_abandoning_its_upload_does_not_count_against_the_endpoint() {
    let origins = origin::start(1).await;
    // One gateway error would eject the endpoint at once.
    let spec = "healthCheck:\n  passive: {consecutiveGatewayErrors: 1}\n";
    let proxy = TestProxy::start(&route_with_policy(&origins, spec)).await;
    let origin = &origins.origins[0];
    for attempt in 1..=3 {
        aborted_upload(proxy.addr).await;
        eventually("the proxy finished with the upload", || async {
            origin.hits() == attempt && endpoint_view(&proxy, origin.addr)["inFlight"] == 0
        })
        .await;
    }
    let view = endpoint_view(&proxy, origin.addr);
    assert_eq!(view["inRotation"], true, "{view}");
    assert_eq!(origin.hits(), 3, "a broken upload is not retried");
    assert_eq!(
        get(&client(), proxy.addr, "x", "/").await.status,
        StatusCode::OK
    );
}

/// `origins` behind one Ingress with the given timeout annotations.
fn route_with_timeouts(origins: &Origins, timeouts: &[(&str, &str)]) -> String {
    docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
        crate::support::fixtures::annotate(&ingress("app", None, "/", "app"), timeouts),
    ])
}

#[tokio::test]
async fn a_response_body_that_stalls_is_cut_after_the_read_timeout() {
    use http_body_util::BodyExt;
    let origins = origin::start(1).await;
    let yaml = route_with_timeouts(&origins, &[("vane.dev/proxy-read-timeout", "300ms")]);
    let proxy = TestProxy::start(&yaml).await;
    let request = Request::get(proxy.url("/stall"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the headers came in time"
    );
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first chunk\n");
    let stalled_at = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("vane cut the stalled body");
    assert!(
        !matches!(end, Some(Ok(_))),
        "the stalled body ends without more data: {end:?}"
    );
    assert!(
        stalled_at.elapsed() >= Duration::from_millis(250),
        "not before the timeout"
    );
}

#[tokio::test]
async fn the_request_timeout_bounds_the_whole_exchange_and_is_not_retried_past() {
    let origins = origin::start(2).await;
    let yaml = route_with_timeouts(&origins, &[("vane.dev/proxy-request-timeout", "300ms")]);
    let proxy = TestProxy::start(&yaml).await;
    let started = Instant::now();
    let reply = get(&client(), proxy.addr, "x", "/delay/2000").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "well before the origin answered"
    );
    assert_eq!(
        origins.origins.iter().map(|o| o.hits()).sum::<usize>(),
        1,
        "no retry once the total time is spent"
    );
}
