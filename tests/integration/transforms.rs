//! Route transforms: regex paths, rewrites, redirects, Host and prefix headers, body limits.
//! Compile-tier checks of what the annotations become, and the proxy on loopback applying them.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};

use vane::compile::{compile, reasons, Options};
use vane::proxy::{ServerLimits, TrustedProxies};

use crate::support::client::{client, get, send};
use crate::support::fixtures::{annotate, backend, docs, has_diagnostic, snapshot, INGRESS_CLASS};
use crate::support::origin;
use crate::support::proxy::TestProxy;

/// An Ingress `name` on `host` with `paths` as (path, pathType), all to Service `service`.
fn ingress(name: &str, host: &str, paths: &[(&str, &str)], service: &str) -> String {
    let mut yaml = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  ingressClassName: vane\n  rules:\n  - host: {host}\n    http:\n      paths:\n"
    );
    for (path, kind) in paths {
        yaml += &format!(
            "      - path: {}\n        pathType: {kind}\n        backend: {{service: {{name: {service}, port: {{name: http}}}}}}\n",
            serde_json::to_string(path).unwrap()
        );
    }
    yaml
}

/// An Ingress `name` routing `NAME.example.com` to Service `app`, with `annotations`.
fn routed(name: &str, annotations: &[(&str, &str)]) -> String {
    annotate(
        &ingress(
            name,
            &format!("{name}.example.com"),
            &[("/", "Prefix")],
            "app",
        ),
        annotations,
    )
}

/// ingress-nginx's rewrite example (docs/examples/rewrite), under its own prefix.
fn rewrite_example(service: &str) -> String {
    annotate(
        &ingress(
            "rewrite",
            "rewrite.bar.com",
            &[("/something(/|$)(.*)", "ImplementationSpecific")],
            service,
        ),
        &[
            ("nginx.ingress.kubernetes.io/use-regex", "true"),
            ("nginx.ingress.kubernetes.io/rewrite-target", "/$2"),
        ],
    )
}

#[tokio::test]
async fn rewrite_target_fills_in_capture_groups_and_keeps_the_query() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
        rewrite_example("app"),
    ]))
    .await;
    let client = client();
    for (path, upstream, query) in [
        ("/something", "/", None),
        ("/something/", "/", None),
        ("/something/new", "/new", None),
        ("/SOMETHING/new/deeper", "/new/deeper", None),
        ("/something/new?x=1&y=2", "/new", Some("x=1&y=2")),
        ("/something/../something/a", "/a", None),
    ] {
        let reply = get(&client, proxy.addr, "rewrite.bar.com", path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let echo = reply.json();
        assert_eq!(echo["path"], upstream, "{path}");
        assert_eq!(echo["query"].as_str(), query, "{path}");
    }
    // Anchored at the start: a path that only contains the expression is not routed.
    let reply = get(&client, proxy.addr, "rewrite.bar.com", "/x/something").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn upstream_vhost_and_forwarded_prefix_reach_the_endpoint() {
    let origins = origin::start(1).await;
    let ingress = annotate(
        &ingress("app", "app.example.com", &[("/api", "Prefix")], "app"),
        &[
            (
                "nginx.ingress.kubernetes.io/upstream-vhost",
                "internal.example:8080",
            ),
            ("vane.dev/x-forwarded-prefix", "/api"),
            ("vane.dev/rewrite-target", "/v2/"),
        ],
    );
    let proxy = TestProxy::start(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
        ingress,
    ]))
    .await;
    let echo = get(
        &client(),
        proxy.addr,
        "app.example.com",
        "/api/items?page=2",
    )
    .await
    .json();
    // A Prefix path taken literally: the whole path becomes the target, as in ingress-nginx.
    assert_eq!(echo["path"], "/v2/");
    assert_eq!(echo["query"], "page=2");
    assert_eq!(echo["headers"]["host"], "internal.example:8080");
    assert_eq!(echo["headers"]["x-forwarded-host"], "app.example.com");
    assert_eq!(echo["headers"]["x-forwarded-prefix"], "/api");
}

#[tokio::test]
async fn regex_and_prefix_paths_are_tried_longest_first() {
    let (one, two, three) = (
        origin::start(1).await,
        origin::start(1).await,
        origin::start(1).await,
    );
    let proxy = TestProxy::start(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("service1", one.port, &one.ips()),
        backend("service2", two.port, &two.ips()),
        backend("service3", three.port, &three.ips()),
        ingress("test-1", "test.com", &[("/foo/bar", "Prefix")], "service1"),
        ingress("test-2", "test.com", &[("/foo/baz", "Exact")], "service2"),
        annotate(
            &ingress(
                "test-3",
                "test.com",
                &[("/foo/bar/[0-9]+", "ImplementationSpecific")],
                "service3",
            ),
            &[("vane.dev/use-regex", "true")],
        ),
    ]))
    .await;
    let client = client();
    for (path, origin) in [
        ("/foo/bar/123", &three),
        ("/foo/bar/abc", &one),
        ("/foo/bar", &one),
        ("/foo/baz", &two),
    ] {
        let reply = get(&client, proxy.addr, "test.com", path).await;
        assert_eq!(
            reply.origin().as_deref(),
            Some(&*origin.origins[0].name),
            "{path}"
        );
    }
}

#[tokio::test]
async fn redirects_answer_without_the_backend() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
        annotate(
            &ingress("moved", "old.example.com", &[("/", "Prefix")], "app"),
            &[
                (
                    "nginx.ingress.kubernetes.io/permanent-redirect",
                    "https://new.example.com$request_uri",
                ),
                ("nginx.ingress.kubernetes.io/permanent-redirect-code", "308"),
            ],
        ),
        annotate(
            &ingress("away", "away.example.com", &[("/", "Prefix")], "app"),
            &[(
                "vane.dev/temporal-redirect",
                "https://elsewhere.example.com/maintenance",
            )],
        ),
        annotate(
            &ingress("root", "root.example.com", &[("/", "Prefix")], "app"),
            &[("nginx.ingress.kubernetes.io/app-root", "/app1")],
        ),
        annotate(
            &ingress("www", "example.com", &[("/", "Prefix")], "app"),
            &[("nginx.ingress.kubernetes.io/from-to-www-redirect", "true")],
        ),
    ]))
    .await;
    let client = client();
    let location = |reply: &crate::support::client::Reply| {
        reply.headers["location"].to_str().unwrap().to_owned()
    };

    let reply = get(&client, proxy.addr, "old.example.com", "/a/b?c=d").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(location(&reply), "https://new.example.com/a/b?c=d");

    let reply = get(&client, proxy.addr, "away.example.com", "/x").await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(
        location(&reply),
        "https://elsewhere.example.com/maintenance"
    );

    let reply = get(&client, proxy.addr, "root.example.com:8080", "/").await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(location(&reply), "http://root.example.com:8080/app1");
    // Only `/` is redirected.
    let reply = get(&client, proxy.addr, "root.example.com", "/app1/page").await;
    assert_eq!(reply.status, StatusCode::OK);

    let reply = get(&client, proxy.addr, "www.example.com", "/docs/?q=1").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(location(&reply), "http://example.com/docs/?q=1");
    let reply = get(&client, proxy.addr, "www.example.com:8080", "/docs/").await;
    assert_eq!(location(&reply), "http://example.com:8080/docs");
    assert_eq!(
        get(&client, proxy.addr, "example.com", "/").await.status,
        StatusCode::OK
    );

    assert_eq!(
        origins.origins[0].hits(),
        2,
        "only the app-root page and example.com"
    );
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
        annotate(
            &ingress("app", "app.example.com", &[("/", "Prefix")], "app"),
            &[("nginx.ingress.kubernetes.io/proxy-body-size", "1k")],
        ),
    ]))
    .await;
    let client = client();
    let upload = |body: Vec<u8>| {
        Request::post(format!("http://{}/upload", proxy.addr))
            .header("host", "app.example.com")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let reply = send(&client, upload(vec![b'x'; 1024])).await;
    assert_eq!(
        (reply.status, reply.text()),
        (StatusCode::OK, "1024".into())
    );
    let reply = send(&client, upload(vec![b'x'; 1025])).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        origins.origins[0].hits(),
        1,
        "the declared length was refused up front"
    );

    // A chunked body (no declared length) is cut as it grows past the limit.
    let chunks = futures_util::stream::iter((0..4).map(|_| {
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![b'y'; 512])))
    }));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(
        hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(proxy.addr).await.unwrap()),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = Request::post("/upload")
        .header("host", "app.example.com")
        .body(StreamBody::new(chunks))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let _ = response.into_body().collect().await;
}

#[test]
fn invalid_transform_annotations_are_reported_and_only_they_are_dropped() {
    let compiled = compile(
        &snapshot(&docs(&[
            INGRESS_CLASS.to_string(),
            backend("app", 8080, &["10.0.0.1".parse().unwrap()]),
            annotate(
                &ingress(
                    "app",
                    "app.example.com",
                    &[
                        ("/lookahead(?=x)", "ImplementationSpecific"),
                        ("/ok/[0-9]+", "ImplementationSpecific"),
                    ],
                    "app",
                ),
                &[
                    ("vane.dev/use-regex", "true"),
                    ("vane.dev/permanent-redirect", "javascript:alert(1)"),
                    ("nginx.ingress.kubernetes.io/proxy-body-size", "8m"),
                    ("vane.dev/proxy-body-size", "1m"),
                ],
            ),
        ])),
        &Options::default(),
    );
    let found = &compiled.diagnostics;
    assert!(
        has_diagnostic(found, reasons::INVALID_PATH, "/lookahead(?=x)"),
        "{found:?}"
    );
    assert!(
        has_diagnostic(
            found,
            reasons::INVALID_ANNOTATION,
            "vane.dev/permanent-redirect"
        ),
        "{found:?}"
    );
    assert!(
        has_diagnostic(
            found,
            reasons::ANNOTATION_OVERRIDDEN,
            "nginx.ingress.kubernetes.io/proxy-body-size"
        ),
        "{found:?}"
    );
    let route = compiled.table.lookup("app.example.com", "/OK/42").unwrap();
    let transforms = route.transforms.as_ref().unwrap();
    assert_eq!(transforms.body_limit, Some(1 << 20), "vane.dev/ wins");
    assert!(transforms.redirect.is_none());
    assert!(compiled
        .table
        .lookup("app.example.com", "/lookaheadx")
        .is_none());
}

#[tokio::test]
async fn header_changes_apply_to_the_request_and_the_response() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
        annotate(
            &ingress("app", "app.example.com", &[("/", "Prefix")], "app"),
            &[
                (
                    "vane.dev/request-headers",
                    "set: {X-Env: prod}\nadd: {X-Tag: extra}\nremove: [X-Debug]",
                ),
                (
                    "vane.dev/response-headers",
                    "set: {X-Frame-Options: DENY}\nremove: [X-Origin]",
                ),
            ],
        ),
    ]))
    .await;
    let request = Request::get(format!("http://{}/", proxy.addr))
        .header("host", "app.example.com")
        .header("x-env", "dev")
        .header("x-debug", "1")
        .header("x-tag", "mine")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = send(&client(), request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["x-frame-options"], "DENY");
    assert!(reply.headers.get("x-origin").is_none());
    let seen = &reply.json()["headers"];
    assert_eq!(seen["x-env"], "prod");
    assert!(seen.get("x-debug").is_none());
    // Added after the client's own (the echo keeps a header's last value).
    assert_eq!(seen["x-tag"], "extra");
}

#[tokio::test]
async fn custom_http_errors_are_answered_by_the_default_backend() {
    let (app, errors) = (origin::start(1).await, origin::start(1).await);
    let proxy = TestProxy::start(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", app.port, &app.ips()),
        backend("errors", errors.port, &errors.ips()),
        backend("empty", app.port, &[]),
        annotate(
            &ingress("app", "app.example.com", &[("/", "Prefix")], "app"),
            &[
                ("nginx.ingress.kubernetes.io/custom-http-errors", "404,503"),
                ("nginx.ingress.kubernetes.io/default-backend", "errors"),
            ],
        ),
        annotate(
            &ingress("down", "down.example.com", &[("/", "Prefix")], "empty"),
            &[
                ("vane.dev/custom-http-errors", "503"),
                ("vane.dev/default-backend", "errors"),
            ],
        ),
    ]))
    .await;
    let client = client();
    let request = Request::get(format!("http://{}/status/404?q=1", proxy.addr))
        .header("host", "app.example.com")
        .header("accept", "application/json")
        .header("x-request-id", "req-42")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = send(&client, request).await;
    // The error backend's answer, status included, with the request described to it.
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.origin().as_deref(), Some(&*errors.origins[0].name));
    let echo = reply.json();
    assert_eq!(echo["path"], "/");
    let seen = &echo["headers"];
    assert_eq!(seen["x-code"], "404");
    assert_eq!(seen["x-format"], "application/json");
    assert_eq!(seen["x-original-uri"], "/status/404?q=1");
    assert_eq!(seen["x-namespace"], "default");
    assert_eq!(seen["x-ingress-name"], "app");
    assert_eq!(seen["x-service-name"], "app");
    assert_eq!(seen["x-service-port"], "80");
    assert_eq!(seen["x-request-id"], "req-42");
    assert_eq!(seen["host"], "app.example.com");

    // A code not listed passes through.
    let reply = get(&client, proxy.addr, "app.example.com", "/status/500").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    // vane's own 503 (no ready endpoint) is replaced too.
    let reply = get(&client, proxy.addr, "down.example.com", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["headers"]["x-code"], "503");
}

#[tokio::test]
async fn the_default_backend_service_serves_unmatched_requests_and_global_error_pages() {
    let (app, errors) = (origin::start(1).await, origin::start(1).await);
    let options = Options {
        default_backend_service: Some(("default".into(), "errors".into())),
        custom_http_errors: vec![502],
        ..Options::default()
    };
    let proxy = TestProxy::start_with(
        &docs(&[
            INGRESS_CLASS.to_string(),
            backend("app", app.port, &app.ips()),
            backend("errors", errors.port, &errors.ips()),
            ingress("app", "app.example.com", &[("/", "Prefix")], "app"),
        ]),
        options,
    )
    .await;
    let client = client();
    let reply = get(&client, proxy.addr, "unknown.example.com", "/anything").await;
    assert_eq!(reply.origin().as_deref(), Some(&*errors.origins[0].name));
    assert_eq!(
        reply.json()["path"],
        "/anything",
        "proxied as it is, as ingress-nginx does"
    );
    let reply = get(&client, proxy.addr, "app.example.com", "/status/502").await;
    assert_eq!(reply.json()["headers"]["x-code"], "502");
    let reply = get(&client, proxy.addr, "app.example.com", "/status/503").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn an_ingress_with_a_snippet_fails_closed_and_others_serve() {
    let origins = origin::start(1).await;
    let yaml = docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
        annotate(
            &ingress("guarded", "guarded.example.com", &[("/", "Prefix")], "app"),
            &[(
                "nginx.ingress.kubernetes.io/configuration-snippet",
                "allow 10.0.0.0/8;\ndeny all;",
            )],
        ),
        ingress("open", "open.example.com", &[("/", "Prefix")], "app"),
    ]);
    let proxy = TestProxy::start(&yaml).await;
    let diagnostics = proxy.publish(&yaml);
    assert!(
        has_diagnostic(
            &diagnostics,
            reasons::REFUSED_ANNOTATION,
            "configuration-snippet"
        ),
        "{diagnostics:?}"
    );
    let client = client();
    let reply = get(&client, proxy.addr, "guarded.example.com", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.text().contains("refuses"), "{}", reply.text());
    assert_eq!(
        origins.origins[0].hits(),
        0,
        "the backend is never served unprotected"
    );
    let reply = get(&client, proxy.addr, "open.example.com", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn source_ranges_admit_deny_and_fail_closed_on_bad_cidrs() {
    let origins = origin::start(1).await;
    let yaml = docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
        routed(
            "loopback",
            &[(
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "127.0.0.0/8, ::1",
            )],
        ),
        routed(
            "elsewhere",
            &[(
                "nginx.ingress.kubernetes.io/allowlist-source-range",
                "10.0.0.0/8,192.0.2.7",
            )],
        ),
        routed(
            "denied",
            &[
                ("vane.dev/allowlist-source-range", "127.0.0.0/8"),
                ("vane.dev/denylist-source-range", "127.0.0.1"),
            ],
        ),
        routed(
            "broken",
            &[(
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "10.0.0.0/33",
            )],
        ),
    ]);
    let proxy = TestProxy::start(&yaml).await;
    let client = client();
    let status = |host: &'static str| {
        let client = client.clone();
        let addr = proxy.addr;
        async move { get(&client, addr, host, "/").await.status }
    };
    assert_eq!(status("loopback.example.com").await, StatusCode::OK);
    assert_eq!(status("elsewhere.example.com").await, StatusCode::FORBIDDEN);
    assert_eq!(status("denied.example.com").await, StatusCode::FORBIDDEN);
    assert_eq!(
        status("broken.example.com").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        origins.origins[0].hits(),
        1,
        "only the allowed client got through"
    );
    let diagnostics = proxy.publish(&yaml);
    assert!(
        has_diagnostic(&diagnostics, reasons::REFUSED_ANNOTATION, "10.0.0.0/33"),
        "{diagnostics:?}"
    );
}

#[tokio::test]
async fn rate_limits_hold_each_client_to_its_burst() {
    let origins = origin::start(1).await;
    let yaml = docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
        // One request a minute, and a burst of one: the second request within the minute
        // is refused, however fast the machine.
        routed(
            "limited",
            &[
                ("nginx.ingress.kubernetes.io/limit-rpm", "1"),
                ("nginx.ingress.kubernetes.io/limit-burst-multiplier", "1"),
            ],
        ),
        routed(
            "exempt",
            &[
                ("vane.dev/limit-rpm", "1"),
                ("vane.dev/limit-burst-multiplier", "1"),
                ("vane.dev/limit-allowlist", "127.0.0.0/8"),
            ],
        ),
        routed(
            "broken",
            &[("nginx.ingress.kubernetes.io/limit-rps", "fast")],
        ),
    ]);
    let options = Options {
        limit_req_status_code: StatusCode::TOO_MANY_REQUESTS,
        ..Options::default()
    };
    let proxy = TestProxy::start_with(&yaml, options).await;
    let client = client();
    assert_eq!(
        get(&client, proxy.addr, "limited.example.com", "/")
            .await
            .status,
        StatusCode::OK
    );
    let refused = get(&client, proxy.addr, "limited.example.com", "/").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // A new table with the same limits keeps the buckets: still refused.
    proxy.publish(&yaml);
    assert_eq!(
        get(&client, proxy.addr, "limited.example.com", "/")
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..3 {
        assert_eq!(
            get(&client, proxy.addr, "exempt.example.com", "/")
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(
        get(&client, proxy.addr, "broken.example.com", "/")
            .await
            .status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(origins.origins[0].hits(), 4);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_the_client() {
    let origins = origin::start(1).await;
    let limits = ServerLimits {
        trusted_proxies: Some(TrustedProxies::new(vec!["127.0.0.0/8".parse().unwrap()])),
        ..ServerLimits::default()
    };
    let proxy = TestProxy::start_with_limits(
        &docs(&[
            INGRESS_CLASS.to_string(),
            backend("app", origins.port, &origins.ips()),
            routed(
                "app",
                &[("vane.dev/allowlist-source-range", "203.0.113.0/24")],
            ),
        ]),
        limits,
    )
    .await;
    let client = client();
    let request = |forwarded: &str| {
        Request::get(format!("http://{}/", proxy.addr))
            .header("host", "app.example.com")
            .header("x-forwarded-for", forwarded)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    // The load balancer (a trusted loopback peer) saw 203.0.113.9; the client forged the rest.
    let reply = send(&client, request("198.51.100.1, 203.0.113.9")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["headers"]["x-real-ip"], "203.0.113.9");
    let reply = send(&client, request("203.0.113.9, 198.51.100.1")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[test]
fn a_canary_with_access_rules_of_its_own_takes_no_traffic() {
    let canary = |name: &str, rule: (&str, &str)| {
        annotate(
            &ingress(name, "app.example.com", &[("/", "Prefix")], "app"),
            &[
                ("nginx.ingress.kubernetes.io/canary", "true"),
                ("nginx.ingress.kubernetes.io/canary-weight", "50"),
                rule,
            ],
        )
    };
    let compiled = compile(
        &snapshot(&docs(&[
            INGRESS_CLASS.to_string(),
            backend("app", 8080, &["10.0.0.1".parse().unwrap()]),
            ingress("main", "app.example.com", &[("/", "Prefix")], "app"),
            canary("limited", ("nginx.ingress.kubernetes.io/limit-rps", "5")),
        ])),
        &Options::default(),
    );
    assert!(
        has_diagnostic(
            &compiled.diagnostics,
            reasons::REFUSED_ANNOTATION,
            "the canary takes no traffic"
        ),
        "{:?}",
        compiled.diagnostics
    );
    let route = compiled.table.lookup("app.example.com", "/").unwrap();
    assert!(route.canary.is_none());
}
