//! Authentication: basic auth (`auth-type: basic`) through compile, through the proxy on
//! loopback with real clients and origins, and through the built binary on a manifests
//! directory; external auth (`auth-url`) against an auth service on loopback.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::json;

use vane::compile::{compile, reasons, Options};
use vane::table::Diagnostic;

use crate::metrics::metrics_of;
use crate::support::binary::{write_atomically, Vane};
use crate::support::client::{client, get, send, Reply, TestClient};
use crate::support::fixtures::{
    annotate, backend, docs, has_diagnostic, ingress, snapshot, INGRESS_CLASS,
};
use crate::support::origin::{self, Origins};
use crate::support::proxy::TestProxy;
use crate::support::wait::eventually;

/// "password" as `htpasswd -B`, `htpasswd -m` (apr1), `htpasswd -s` ({SHA}) and
/// `openssl passwd -1`, `-5`, `-6` write it; `{PLAIN}` as nginx reads it.
const HASHES: &[(&str, &str)] = &[
    ("bcrypt", "$2y$05$bvIG6Nmid91Mu9RcmmWZfO5HJIMCT8riNW0hEp8f6/FuA2/mHZFpe"),
    ("apr1", "$apr1$63JlJ2NH$smE0mnB5h3tDri0zkpWXt1"),
    ("sha", "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="),
    ("md5", "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/"),
    ("sha256", "$5$saltsalt$gOjOtoMpVhru2uyjeJSEc/JaLQWOXMNmlOnj6T4AtC."),
    (
        "sha512",
        "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/",
    ),
    ("plain", "{PLAIN}password"),
];

/// An Opaque Secret `name` with these string values.
fn secret(name: &str, data: serde_json::Value) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "type": "Opaque",
        "stringData": data,
    })
    .to_string()
}

/// An htpasswd file of these users.
fn htpasswd(users: &[(&str, &str)]) -> String {
    users
        .iter()
        .map(|(user, hash)| format!("{user}:{hash}\n"))
        .collect()
}

/// Our IngressClass, Service `app` of `origins`, an Ingress `app` on `app.example.com` with
/// `annotations`, and `extra` objects.
fn manifests(origins: &Origins, annotations: &[(&str, &str)], extra: &[String]) -> String {
    let mut objects = vec![
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
        annotate(
            &ingress("app", Some("app.example.com"), "/", "app"),
            annotations,
        ),
    ];
    objects.extend_from_slice(extra);
    docs(&objects)
}

const BASIC: &[(&str, &str)] = &[
    ("nginx.ingress.kubernetes.io/auth-type", "basic"),
    ("nginx.ingress.kubernetes.io/auth-secret", "users"),
    (
        "nginx.ingress.kubernetes.io/auth-realm",
        "Authentication Required - app",
    ),
];

/// GET `/` of `app.example.com` from the proxy at `addr`, as `user:password` if given.
async fn get_as(client: &TestClient, addr: SocketAddr, credentials: Option<&str>) -> Reply {
    let mut request = Request::get(format!("http://{addr}/")).header("host", "app.example.com");
    if let Some(credentials) = credentials {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        request = request.header("authorization", format!("Basic {encoded}"));
    }
    send(client, request.body(Full::new(Bytes::new())).unwrap()).await
}

fn compiled(yaml: &str) -> Vec<Diagnostic> {
    compile(&snapshot(yaml), &Options::default()).diagnostics
}

#[tokio::test]
async fn basic_auth_takes_every_hash_htpasswd_writes_and_answers_401_otherwise() {
    let origins = origin::start(1).await;
    let users = htpasswd(HASHES);
    let proxy = TestProxy::start(&manifests(
        &origins,
        BASIC,
        &[secret("users", json!({"auth": users}))],
    ))
    .await;
    let client = client();
    for (user, _) in HASHES {
        let reply = get_as(&client, proxy.addr, Some(&format!("{user}:password"))).await;
        assert_eq!(reply.status, StatusCode::OK, "{user}");
        // The credentials were for vane, as nginx's `proxy_set_header Authorization ""`.
        assert!(
            reply.json()["headers"].get("authorization").is_none(),
            "{user}"
        );
        let reply = get_as(&client, proxy.addr, Some(&format!("{user}:wrong"))).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{user}");
    }
    for credentials in [None, Some("nobody:password"), Some("bcrypt")] {
        let reply = get_as(&client, proxy.addr, credentials).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{credentials:?}");
        assert_eq!(
            reply.headers["www-authenticate"],
            "Basic realm=\"Authentication Required - app\""
        );
    }
    // A logged-in client pays the hash once: the repeat is answered from the cache.
    let again = get_as(&client, proxy.addr, Some("bcrypt:password")).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(origins.by_name("origin-0").hits(), HASHES.len() + 1);
    let metrics = metrics_of(&proxy);
    // One right and one wrong password per user; none for unknown users or the repeat.
    let hashed = (2 * HASHES.len()) as f64;
    assert_eq!(metrics["vane_basic_auth_verifications_total"], hashed);
    assert_eq!(metrics["vane_basic_auth_cache_evictions_total"], 0.0);
}

#[tokio::test]
async fn an_auth_map_secret_holds_one_user_per_key_and_the_realm_defaults_to_empty() {
    let origins = origin::start(1).await;
    let proxy = TestProxy::start(&manifests(
        &origins,
        &[
            ("vane.dev/auth-type", "basic"),
            ("vane.dev/auth-secret", "default/users"),
            ("vane.dev/auth-secret-type", "auth-map"),
        ],
        &[secret(
            "users",
            json!({"alice": HASHES[0].1, "bob": "{PLAIN}builder"}),
        )],
    ))
    .await;
    let client = client();
    assert_eq!(
        get_as(&client, proxy.addr, Some("alice:password"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get_as(&client, proxy.addr, Some("bob:builder"))
            .await
            .status,
        StatusCode::OK
    );
    let refused = get_as(&client, proxy.addr, Some("bob:password")).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers["www-authenticate"], "Basic realm=\"\"");
}

#[tokio::test]
async fn a_rotated_secret_takes_effect_with_the_next_table() {
    let origins = origin::start(1).await;
    let with = |password: &str| {
        manifests(
            &origins,
            BASIC,
            &[secret(
                "users",
                json!({"auth": format!("alice:{{PLAIN}}{password}\n")}),
            )],
        )
    };
    let proxy = TestProxy::start(&with("old")).await;
    let client = client();
    assert_eq!(
        get_as(&client, proxy.addr, Some("alice:old")).await.status,
        StatusCode::OK
    );
    proxy.publish(&with("new"));
    // The old password was verified and remembered; the new users do not know it.
    assert_eq!(
        get_as(&client, proxy.addr, Some("alice:old")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_as(&client, proxy.addr, Some("alice:new")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn basic_auth_that_cannot_be_applied_fails_closed_with_a_503() {
    let origins = origin::start(1).await;
    let good = secret("users", json!({"auth": "alice:{PLAIN}a\n"}));
    // (case, annotations, other objects, the diagnostic's reason and text)
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<String>,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "missing Secret",
            BASIC.to_vec(),
            vec![],
            reasons::SECRET_NOT_FOUND,
            "default/users",
        ),
        (
            "no auth key",
            BASIC.to_vec(),
            vec![secret("users", json!({"htpasswd": "alice:{PLAIN}a"}))],
            reasons::INVALID_SECRET,
            "no key \"auth\"",
        ),
        (
            "no usable user",
            BASIC.to_vec(),
            vec![secret("users", json!({"auth": "# nobody\nalice:$9$x\n"}))],
            reasons::INVALID_SECRET,
            "no user who can log in",
        ),
        (
            "digest",
            vec![
                ("nginx.ingress.kubernetes.io/auth-type", "digest"),
                ("nginx.ingress.kubernetes.io/auth-secret", "users"),
            ],
            vec![good.clone()],
            reasons::REFUSED_ANNOTATION,
            "digest authentication is not supported",
        ),
        (
            "unknown secret type",
            [
                BASIC,
                &[("nginx.ingress.kubernetes.io/auth-secret-type", "auth-json")],
            ]
            .concat(),
            vec![good.clone()],
            reasons::REFUSED_ANNOTATION,
            "auth-secret-type",
        ),
        (
            "no auth-secret",
            vec![("nginx.ingress.kubernetes.io/auth-type", "basic")],
            vec![good.clone()],
            reasons::REFUSED_ANNOTATION,
            "basic needs vane.dev/auth-secret",
        ),
        (
            "another namespace",
            vec![
                ("nginx.ingress.kubernetes.io/auth-type", "basic"),
                ("nginx.ingress.kubernetes.io/auth-secret", "other/users"),
            ],
            vec![good.clone()],
            reasons::REFUSED_ANNOTATION,
            "must be in the Ingress's namespace",
        ),
    ];
    let client = client();
    for (case, annotations, extra, reason, text) in cases {
        let yaml = manifests(&origins, &annotations, &extra);
        let diagnostics = compiled(&yaml);
        assert!(
            has_diagnostic(&diagnostics, reason, text),
            "{case}: {diagnostics:#?}"
        );
        let proxy = TestProxy::start(&yaml).await;
        let reply = get_as(&client, proxy.addr, Some("alice:a")).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{case}");
        assert!(
            reply.text().contains("refuses to apply"),
            "{case}: {}",
            reply.text()
        );
    }
    assert_eq!(origins.by_name("origin-0").hits(), 0);
}

#[tokio::test]
async fn a_user_whose_line_cannot_be_used_is_reported_by_name_and_the_others_log_in() {
    let origins = origin::start(1).await;
    let yaml = manifests(
        &origins,
        BASIC,
        &[secret(
            "users",
            json!({"auth": "alice:{PLAIN}a\nmallory:$2y$31$bvIG6Nmid91Mu9RcmmWZfO5HJIMCT8riNW0hEp8f6/FuA2/mHZFpe\neve:xOAFZqRz5RduI\n"}),
        )],
    );
    let compiled = compile(&snapshot(&yaml), &Options::default());
    let diagnostics = &compiled.diagnostics;
    assert!(has_diagnostic(
        diagnostics,
        reasons::INVALID_SECRET,
        "user \"mallory\": its bcrypt cost 31"
    ));
    assert!(has_diagnostic(
        diagnostics,
        reasons::INVALID_SECRET,
        "user \"eve\": its hash is of no scheme"
    ));
    let route = &compiled.table.routes()[0];
    let transforms = route.transforms.as_ref().unwrap();
    assert_eq!(transforms.refused, None);
    let users = transforms.basic_auth.as_ref().unwrap();
    assert!(users.user("alice").is_some());
    assert!(users.user("mallory").is_none());
}

#[tokio::test]
async fn satisfy_any_lets_an_allowed_address_in_without_credentials_and_others_with_them() {
    let origins = origin::start(1).await;
    let users = secret("users", json!({"auth": "alice:{PLAIN}a\n"}));
    let client = client();
    // (allow list, satisfy, credentials, status)
    for (allow, satisfy, credentials, status) in [
        ("127.0.0.0/8", "any", None, StatusCode::OK),
        ("203.0.113.0/24", "any", None, StatusCode::UNAUTHORIZED),
        ("203.0.113.0/24", "any", Some("alice:a"), StatusCode::OK),
        ("127.0.0.0/8", "all", None, StatusCode::UNAUTHORIZED),
        ("127.0.0.0/8", "all", Some("alice:a"), StatusCode::OK),
        (
            "203.0.113.0/24",
            "all",
            Some("alice:a"),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let annotations = [
            BASIC,
            &[
                ("nginx.ingress.kubernetes.io/allowlist-source-range", allow),
                ("nginx.ingress.kubernetes.io/satisfy", satisfy),
            ],
        ]
        .concat();
        let proxy = TestProxy::start(&manifests(
            &origins,
            &annotations,
            std::slice::from_ref(&users),
        ))
        .await;
        let reply = get_as(&client, proxy.addr, credentials).await;
        assert_eq!(reply.status, status, "{allow} {satisfy} {credentials:?}");
    }
}

#[tokio::test]
async fn routes_without_auth_are_served_beside_routes_with_it() {
    let origins = origin::start(1).await;
    let yaml = docs(&[
        manifests(&origins, BASIC, &[]),
        ingress("open", Some("open.example.com"), "/", "app"),
    ]);
    let proxy = TestProxy::start(&yaml).await;
    let client = client();
    assert_eq!(
        get(&client, proxy.addr, "open.example.com", "/")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get(&client, proxy.addr, "app.example.com", "/")
            .await
            .status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

/// Through the binary, whose compiles reuse an unchanged Ingress's work: a rotated Secret (its
/// own file; the Ingress's file unchanged) still takes effect, and so does a deleted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_applies_a_rotated_secret_beside_an_unchanged_ingress() {
    let origins = origin::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let users = |password: &str| {
        secret(
            "users",
            json!({"auth": format!("alice:{{PLAIN}}{password}\n")}),
        )
    };
    write_atomically(
        &dir.path().join("app.yaml"),
        &manifests(&origins, BASIC, &[]),
    );
    write_atomically(&dir.path().join("users.yaml"), &users("old"));
    let vane = Vane::start(dir.path()).await;
    let client = client();
    let status = |credentials: &'static str| {
        let (client, http) = (client.clone(), vane.http);
        async move { get_as(&client, http, Some(credentials)).await.status }
    };
    eventually("the old password is taken", || async {
        status("alice:old").await == StatusCode::OK
    })
    .await;
    write_atomically(&dir.path().join("users.yaml"), &users("new"));
    eventually("the new password is taken", || async {
        status("alice:new").await == StatusCode::OK
    })
    .await;
    assert_eq!(status("alice:old").await, StatusCode::UNAUTHORIZED);
    std::fs::remove_file(dir.path().join("users.yaml")).unwrap();
    eventually("without its Secret the route fails closed", || async {
        status("alice:new").await == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
}

// === External auth (auth-url) ===

/// What the auth service saw of the last request it was asked.
#[derive(Clone, Debug)]
struct Asked {
    method: http::Method,
    path: String,
    headers: http::HeaderMap,
    body: Bytes,
}

/// An auth service on loopback: `/allow` lets through (with `X-Auth-User` and a cookie),
/// `/deny` answers 401 with `WWW-Authenticate`, `/forbid` 403, `/broken` 502, `/hang` never.
struct AuthService {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<Asked>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl AuthService {
    async fn start() -> AuthService {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let record = asked.clone();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let record = record.clone();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let record = record.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let path = parts.uri.path().to_owned();
                        record.lock().unwrap().push(Asked {
                            method: parts.method,
                            path: path.clone(),
                            headers: parts.headers,
                            body,
                        });
                        let reply = Response::builder();
                        let reply = match path.as_str() {
                            "/allow" => reply
                                .header("x-auth-user", "alice")
                                .header("set-cookie", "session=1; Path=/"),
                            "/deny" => reply
                                .status(401)
                                .header("www-authenticate", "Bearer realm=\"sso\""),
                            "/forbid" => reply.status(403),
                            "/hang" => std::future::pending().await,
                            _ => reply.status(502),
                        };
                        Ok::<_, std::convert::Infallible>(
                            reply
                                .body(Full::new(Bytes::from_static(b"ignored")))
                                .unwrap(),
                        )
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        AuthService {
            addr,
            asked,
            connections,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn last(&self) -> Asked {
        self.asked
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the auth service was asked")
    }
}

/// A request for `path` of `app.example.com` through the proxy, with `headers`.
async fn request(proxy: &TestProxy, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(proxy.url(path))
        .header("host", "app.example.com");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(
        &client(),
        request
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn auth_url_lets_through_with_its_headers_and_is_asked_as_nginx_asks() {
    let origins = origin::start(1).await;
    let auth = AuthService::start().await;
    let url = auth.url("/allow");
    let proxy = TestProxy::start(&manifests(
        &origins,
        &[
            ("nginx.ingress.kubernetes.io/auth-url", &url),
            (
                "nginx.ingress.kubernetes.io/auth-response-headers",
                "X-Auth-User, X-Auth-Email",
            ),
        ],
        &[],
    ))
    .await;
    let reply = request(
        &proxy,
        "POST",
        "/a/b?x=1",
        &[
            ("authorization", "Bearer token"),
            ("cookie", "sso=abc"),
            // Forged by the client: replaced, or removed when the auth answer has none.
            ("x-auth-user", "mallory"),
            ("x-auth-email", "mallory@example.com"),
            ("x-forwarded-proto", "gopher"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["set-cookie"], "session=1; Path=/");
    let echo = reply.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["headers"]["x-auth-user"], "alice");
    assert!(echo["headers"].get("x-auth-email").is_none(), "{echo}");
    // The endpoint still gets the client's credentials (only basic auth keeps them).
    assert_eq!(echo["headers"]["authorization"], "Bearer token");

    let asked = auth.last();
    assert_eq!(asked.method, http::Method::GET);
    assert_eq!(asked.path, "/allow");
    assert!(asked.body.is_empty());
    let header = |name: &str| {
        asked
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header("host").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        header("x-original-url").as_deref(),
        Some("http://app.example.com/a/b?x=1")
    );
    assert_eq!(header("x-original-method").as_deref(), Some("POST"));
    assert_eq!(
        header("x-sent-from").as_deref(),
        Some("nginx-ingress-controller")
    );
    assert_eq!(header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        header("x-auth-request-redirect").as_deref(),
        Some("/a/b?x=1")
    );
    assert_eq!(header("authorization").as_deref(), Some("Bearer token"));
    assert_eq!(header("cookie").as_deref(), Some("sso=abc"));
    assert_eq!(header("x-forwarded-proto"), None);
    assert_eq!(header("content-length"), None);

    // The auth service's connection is kept and reused.
    for _ in 0..3 {
        assert_eq!(
            request(&proxy, "GET", "/", &[]).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(auth.asked.lock().unwrap().len(), 4);
    assert_eq!(
        auth.connections.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn auth_url_refusals_reach_the_client_and_failures_are_500s() {
    let origins = origin::start(1).await;
    let auth = AuthService::start().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let down = format!("http://{closed}/allow");
    let cases = [
        (auth.url("/deny"), StatusCode::UNAUTHORIZED),
        (auth.url("/forbid"), StatusCode::FORBIDDEN),
        (auth.url("/broken"), StatusCode::INTERNAL_SERVER_ERROR),
        (auth.url("/hang"), StatusCode::INTERNAL_SERVER_ERROR),
        (down, StatusCode::INTERNAL_SERVER_ERROR),
    ];
    for (url, status) in cases {
        let proxy = TestProxy::start(&manifests(
            &origins,
            &[
                ("vane.dev/auth-url", &url),
                // The auth service's answer is awaited for the route's read timeout.
                ("vane.dev/proxy-read-timeout", "1"),
            ],
            &[],
        ))
        .await;
        let reply = request(&proxy, "GET", "/", &[]).await;
        assert_eq!(reply.status, status, "{url}");
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(reply.headers["www-authenticate"], "Bearer realm=\"sso\"");
        }
    }
    assert_eq!(origins.by_name("origin-0").hits(), 0);
}

#[tokio::test]
async fn auth_signin_redirects_a_401_with_the_request_url() {
    let origins = origin::start(1).await;
    let auth = AuthService::start().await;
    let deny = auth.url("/deny");
    let client = client();
    for (signin, param, location) in [
        (
            "https://login.example.com/start",
            None,
            "https://login.example.com/start?rd=http://app.example.com%2Fa%2520b%3Fq%3D1",
        ),
        (
            "https://$host/oauth2/start?x=1",
            Some("return_to"),
            "https://app.example.com/oauth2/start?x=1&return_to=http://app.example.com%2Fa%2520b%3Fq%3D1",
        ),
        (
            "https://login.example.com/start?rd=$escaped_request_uri",
            None,
            "https://login.example.com/start?rd=%2Fa%2520b%3Fq%3D1",
        ),
    ] {
        let mut annotations = vec![
            ("nginx.ingress.kubernetes.io/auth-url", deny.as_str()),
            ("nginx.ingress.kubernetes.io/auth-signin", signin),
        ];
        if let Some(param) = param {
            annotations.push(("nginx.ingress.kubernetes.io/auth-signin-redirect-param", param));
        }
        let proxy = TestProxy::start(&manifests(&origins, &annotations, &[])).await;
        // `%` is escaped too, as nginx's set_escape_uri does: the signin service decodes once.
        let reply = get(&client, proxy.addr, "app.example.com", "/a%20b?q=1").await;
        assert_eq!(reply.status, StatusCode::FOUND, "{signin}");
        assert_eq!(reply.headers["location"], location, "{signin}");
    }
}

#[tokio::test]
async fn an_unusable_auth_url_fails_closed() {
    let origins = origin::start(1).await;
    for (annotation, value) in [
        (
            "nginx.ingress.kubernetes.io/auth-url",
            "ftp://auth.example.com/check",
        ),
        ("nginx.ingress.kubernetes.io/auth-url", "not a url"),
        ("nginx.ingress.kubernetes.io/auth-method", "get it"),
        (
            "nginx.ingress.kubernetes.io/auth-response-headers",
            "X User",
        ),
        (
            "nginx.ingress.kubernetes.io/auth-proxy-set-headers",
            "default/headers",
        ),
        ("nginx.ingress.kubernetes.io/auth-snippet", "return 200;"),
    ] {
        let mut annotations = vec![(annotation, value)];
        if !annotation.ends_with("auth-url") {
            annotations.push((
                "nginx.ingress.kubernetes.io/auth-url",
                "http://auth.example.com/",
            ));
        }
        let yaml = manifests(&origins, &annotations, &[]);
        let diagnostics = compiled(&yaml);
        assert!(
            has_diagnostic(
                &diagnostics,
                reasons::REFUSED_ANNOTATION,
                annotation.rsplit('/').next().unwrap()
            ),
            "{annotation}: {diagnostics:#?}"
        );
        let proxy = TestProxy::start(&yaml).await;
        let reply = request(&proxy, "GET", "/", &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{annotation}"
        );
    }
    assert_eq!(origins.by_name("origin-0").hits(), 0);
}
