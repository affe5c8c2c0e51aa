//! CORS (`enable-cors` and the `cors-*` annotations): what compile makes of the annotations,
//! and the proxy on loopback answering preflights and adding headers to responses.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::Full;

use vane::compile::{compile, reasons, Compiled, Options};
use vane::table::AllowedOrigins;

use crate::support::client::{client, send, Reply, TestClient};
use crate::support::fixtures::{
    annotate, backend, docs, has_diagnostic, ingress, snapshot, INGRESS_CLASS,
};
use crate::support::origin::{self, Origins};
use crate::support::proxy::TestProxy;

const ACAO: &str = "access-control-allow-origin";
const ACAC: &str = "access-control-allow-credentials";

/// Our IngressClass, Service `app` on `origins`, and Ingress `app` for `api.example.com`
/// with `annotations`.
fn cors_ingress(origins: &Origins, annotations: &[(&str, &str)]) -> String {
    docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
        annotate(
            &ingress("app", Some("api.example.com"), "/", "app"),
            annotations,
        ),
    ])
}

/// ingress-nginx's annotations, under its own prefix: two listed origins, one a wildcard.
fn listed(origins: &Origins) -> String {
    cors_ingress(
        origins,
        &[
            ("nginx.ingress.kubernetes.io/enable-cors", "true"),
            (
                "nginx.ingress.kubernetes.io/cors-allow-origin",
                "https://app.example.com, https://*.example.org",
            ),
            ("nginx.ingress.kubernetes.io/cors-allow-methods", "GET,POST"),
            ("nginx.ingress.kubernetes.io/cors-max-age", "600"),
            (
                "nginx.ingress.kubernetes.io/cors-expose-headers",
                "X-Request-Id",
            ),
        ],
    )
}

async fn request(
    client: &TestClient,
    proxy: &TestProxy,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut builder = Request::builder()
        .method(method)
        .uri(proxy.url(path))
        .header("host", "api.example.com");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    send(client, builder.body(Full::new(Bytes::new())).unwrap()).await
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

fn vary(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

fn has_no_cors_headers(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .all(|name| !name.as_str().starts_with("access-control-"))
}

#[tokio::test]
async fn preflights_are_answered_by_vane_and_never_reach_the_endpoint() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&listed(&origins)).await;
    let client = client();
    let preflight = |origin: &'static str| {
        let (client, proxy) = (&client, &proxy);
        async move {
            request(
                client,
                proxy,
                Method::OPTIONS,
                "/items",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    ("access-control-request-headers", "content-type"),
                ],
            )
            .await
        }
    };

    let reply = preflight("https://app.example.com").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let h = &reply.headers;
    assert_eq!(header(h, ACAO), Some("https://app.example.com"));
    assert_eq!(header(h, ACAC), Some("true"), "credentials default to true");
    assert_eq!(header(h, "access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(
        header(h, "access-control-allow-headers"),
        Some("DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization")
    );
    assert_eq!(header(h, "access-control-max-age"), Some("600"));
    assert_eq!(header(h, "content-type"), Some("text/plain; charset=UTF-8"));
    assert_eq!(vary(h), ["Origin"]);
    assert!(reply.body.is_empty());

    // From an origin not listed: answered all the same, without a yes.
    let reply = preflight("https://evil.example.com").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(has_no_cors_headers(&reply.headers), "{:?}", reply.headers);
    assert_eq!(vary(&reply.headers), ["Origin"]);
    assert_eq!(origins.origins[0].hits(), 0, "no preflight was forwarded");

    // An OPTIONS request that is no preflight is the endpoint's.
    let reply = request(
        &client,
        &proxy,
        Method::OPTIONS,
        "/items",
        &[("origin", "https://app.example.com")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["method"], "OPTIONS");
    assert_eq!(origins.origins[0].hits(), 1);
}

#[tokio::test]
async fn listed_origins_get_cors_headers_and_others_none() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&listed(&origins)).await;
    let client = client();
    let get_from = |origin: Option<&'static str>| {
        let (client, proxy) = (&client, &proxy);
        async move {
            let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
            request(client, proxy, Method::GET, "/items", &headers).await
        }
    };

    for allowed in ["https://app.example.com", "https://eu-1.example.org"] {
        let reply = get_from(Some(allowed)).await;
        assert_eq!(reply.status, StatusCode::OK);
        let h = &reply.headers;
        assert_eq!(header(h, ACAO), Some(allowed));
        assert_eq!(header(h, ACAC), Some("true"));
        assert_eq!(
            header(h, "access-control-expose-headers"),
            Some("X-Request-Id")
        );
        // The preflight's headers are not repeated on other answers.
        assert_eq!(header(h, "access-control-allow-methods"), None);
        assert_eq!(vary(h), ["Origin"]);
    }
    for refused in [
        Some("https://a.b.example.org"),
        Some("https://example.org"),
        Some("http://app.example.com"),
        None,
    ] {
        let reply = get_from(refused).await;
        assert_eq!(reply.status, StatusCode::OK, "{refused:?}");
        assert!(has_no_cors_headers(&reply.headers), "{refused:?}");
        assert_eq!(vary(&reply.headers), ["Origin"], "{refused:?}");
    }
}

#[tokio::test]
async fn the_endpoint_s_cors_headers_are_replaced_and_its_vary_kept() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&cors_ingress(
        &origins,
        &[
            ("vane.dev/enable-cors", "true"),
            ("vane.dev/cors-allow-origin", "https://app.example.com"),
            ("vane.dev/cors-allow-credentials", "false"),
        ],
    ))
    .await;
    let client = client();
    let path = "/headers?access-control-allow-origin=*&access-control-allow-credentials=true\
                &access-control-max-age=1&vary=Accept-Encoding";

    let reply = request(
        &client,
        &proxy,
        Method::GET,
        path,
        &[("origin", "https://app.example.com")],
    )
    .await;
    let h = &reply.headers;
    assert_eq!(header(h, ACAO), Some("https://app.example.com"));
    assert_eq!(header(h, ACAC), None, "the Ingress said no credentials");
    assert_eq!(header(h, "access-control-max-age"), None);
    assert_eq!(vary(h), ["Accept-Encoding", "Origin"]);

    let reply = request(
        &client,
        &proxy,
        Method::GET,
        path,
        &[("origin", "https://evil.example.com")],
    )
    .await;
    assert!(has_no_cors_headers(&reply.headers), "{:?}", reply.headers);

    // An endpoint that already varies by Origin is left as it is.
    let reply = request(
        &client,
        &proxy,
        Method::GET,
        "/headers?vary=origin",
        &[("origin", "https://app.example.com")],
    )
    .await;
    assert_eq!(vary(&reply.headers), ["origin"]);
}

#[tokio::test]
async fn any_origin_is_answered_with_a_star_and_never_with_credentials() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&cors_ingress(
        &origins,
        &[
            ("nginx.ingress.kubernetes.io/enable-cors", "true"),
            ("nginx.ingress.kubernetes.io/cors-allow-credentials", "true"),
        ],
    ))
    .await;
    let client = client();
    for headers in [&[("origin", "https://anywhere.test")][..], &[]] {
        let reply = request(&client, &proxy, Method::GET, "/", headers).await;
        assert_eq!(header(&reply.headers, ACAO), Some("*"), "{headers:?}");
        assert_eq!(header(&reply.headers, ACAC), None, "{headers:?}");
        assert!(vary(&reply.headers).is_empty(), "{headers:?}");
    }
    let reply = request(
        &client,
        &proxy,
        Method::OPTIONS,
        "/",
        &[
            ("origin", "https://anywhere.test"),
            ("access-control-request-method", "DELETE"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(header(&reply.headers, ACAO), Some("*"));
    assert_eq!(
        header(&reply.headers, "access-control-allow-methods"),
        Some("GET, PUT, POST, DELETE, PATCH, OPTIONS")
    );
    assert_eq!(
        header(&reply.headers, "access-control-max-age"),
        Some("1728000")
    );
    assert_eq!(origins.origins[0].hits(), 2);
}

#[tokio::test]
async fn vane_s_own_errors_carry_the_cors_headers() {
    let proxy = TestProxy::start(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", 8080, &[]),
        annotate(
            &ingress("app", Some("api.example.com"), "/", "app"),
            &[
                ("vane.dev/enable-cors", "true"),
                ("vane.dev/cors-allow-origin", "https://app.example.com"),
            ],
        ),
    ]))
    .await;
    let reply = request(
        &client(),
        &proxy,
        Method::GET,
        "/",
        &[("origin", "https://app.example.com")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        header(&reply.headers, ACAO),
        Some("https://app.example.com")
    );
    assert_eq!(header(&reply.headers, ACAC), Some("true"));
    assert_eq!(vary(&reply.headers), ["Origin"]);
}

/// What compile makes of Ingress `app` on `api.example.com` with `annotations`.
fn compile_with(annotations: &[(&str, &str)]) -> Compiled {
    compile(
        &snapshot(&docs(&[
            INGRESS_CLASS.to_string(),
            backend("app", 8080, &["10.0.0.1".parse().unwrap()]),
            annotate(
                &ingress("app", Some("api.example.com"), "/", "app"),
                annotations,
            ),
        ])),
        &Options::default(),
    )
}

#[test]
fn invalid_cors_annotations_are_reported_and_fall_back_to_their_defaults() {
    let compiled = compile_with(&[
        ("nginx.ingress.kubernetes.io/enable-cors", "true"),
        // No scheme: refused, so the default, `*`.
        (
            "nginx.ingress.kubernetes.io/cors-allow-origin",
            "app.example.com",
        ),
        ("nginx.ingress.kubernetes.io/cors-max-age", "20d"),
        (
            "nginx.ingress.kubernetes.io/cors-allow-methods",
            "GET; DROP",
        ),
        ("nginx.ingress.kubernetes.io/cors-expose-headers", "X-A"),
        ("vane.dev/cors-expose-headers", "X-B"),
    ]);
    let found = &compiled.diagnostics;
    for key in ["cors-allow-origin", "cors-max-age", "cors-allow-methods"] {
        let name = format!("nginx.ingress.kubernetes.io/{key}");
        assert!(
            has_diagnostic(found, reasons::INVALID_ANNOTATION, &name),
            "{name}: {found:?}"
        );
    }
    assert!(
        has_diagnostic(
            found,
            reasons::ANNOTATION_OVERRIDDEN,
            "nginx.ingress.kubernetes.io/cors-expose-headers"
        ),
        "{found:?}"
    );
    let route = compiled.table.lookup("api.example.com", "/").unwrap();
    let cors = route.transforms.as_ref().unwrap().cors.as_ref().unwrap();
    assert_eq!(cors.origins, AllowedOrigins::Any);
    assert!(!cors.allow_credentials, "never with *");
    assert_eq!(cors.max_age, "1728000");
    assert_eq!(cors.allow_methods, "GET, PUT, POST, DELETE, PATCH, OPTIONS");
    assert_eq!(
        cors.expose_headers.as_ref().unwrap(),
        "X-B",
        "vane.dev/ wins"
    );
}

#[test]
fn without_enable_cors_routes_carry_no_cors_policy() {
    let compiled = compile_with(&[
        ("nginx.ingress.kubernetes.io/enable-cors", "false"),
        (
            "nginx.ingress.kubernetes.io/cors-allow-origin",
            "not an origin",
        ),
    ]);
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    let route = compiled.table.lookup("api.example.com", "/").unwrap();
    assert!(
        route.transforms.is_none(),
        "nothing to apply, nothing carried"
    );
}
