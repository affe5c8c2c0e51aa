//! Authentication: basic auth (`auth-type: basic`) through compile, through the proxy on
//! loopback with real clients and origins, and through the built binary on a manifests
//! directory.

use std::net::SocketAddr;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
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
