//! TLS end to end: real rustls handshakes against the proxy on loopback, certificates made by
//! rcgen, real origins (in the clear, over TLS, h2c and gRPC), plus TLS compile checks.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;
use vane::compile::{compile, reasons, Options};
use vane::table::{Backend, BackendProtocol, RoutingTable, TlsHosts, UpstreamRoots, UpstreamTls};

use crate::support::binary::{write_atomically, Vane};
use crate::support::client::{client, get};
use crate::support::fixtures::{backend, docs, snapshot, INGRESS_CLASS};
use crate::support::origin;
use crate::support::proxy::TestProxy;
use crate::support::tls::{
    ca_secret, get_request, handshake, https_get, presented, secret, send_all, tls_ingress,
    tls_secret, Ca,
};
use crate::support::{grpc, origin::Origins};

const SELF_SIGNED: &str = "vane.invalid";

fn now() -> Option<i64> {
    let since = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
    Some(since.unwrap().as_secs() as i64)
}

async fn proxy(yaml: &str) -> TestProxy {
    let options = Options {
        now: now(),
        ..Options::default()
    };
    TestProxy::start_with(yaml, options).await
}

/// The DNS names of the certificate vane presents for `sni`.
async fn names_for(proxy: &TestProxy, sni: Option<&str>) -> Vec<String> {
    let stream = handshake(proxy.https, sni, &[b"http/1.1"], None)
        .await
        .expect("handshake");
    presented(&stream).dns_names
}

fn app(origins: &Origins) -> String {
    docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
    ])
}

/// A Secret `name` with a certificate for `host`, and an Ingress `name` serving `host` (to
/// Service `app`) over TLS with it.
fn tls_host(ca: &Ca, name: &str, host: &str) -> String {
    docs(&[
        tls_secret(name, &ca.server(&[host])),
        tls_ingress(name, host, "app", &[(&[host], Some(name))], &[]),
    ])
}

#[tokio::test]
async fn sni_picks_each_hosts_certificate_and_the_default_for_unknown_or_no_sni() {
    let origins = origin::start(1).await;
    let ca = Ca::new("test CA");
    let proxy = proxy(&docs(&[
        app(&origins),
        tls_host(&ca, "a", "a.example.com"),
        tls_host(&ca, "wild", "*.wild.example.com"),
    ]))
    .await;
    assert_eq!(
        names_for(&proxy, Some("a.example.com")).await,
        ["a.example.com"]
    );
    assert_eq!(
        names_for(&proxy, Some("x.wild.example.com")).await,
        ["*.wild.example.com"]
    );
    assert_eq!(
        names_for(&proxy, Some("x.y.wild.example.com")).await,
        [SELF_SIGNED]
    );
    assert_eq!(
        names_for(&proxy, Some("unknown.example.com")).await,
        [SELF_SIGNED]
    );
    assert_eq!(names_for(&proxy, None).await, [SELF_SIGNED]);
}

#[tokio::test]
async fn h2_is_negotiated_by_alpn_and_the_upstream_learns_it_was_https() {
    let origins = origin::start(1).await;
    let ca = Ca::new("test CA");
    let proxy = proxy(&docs(&[app(&origins), tls_host(&ca, "a", "a.example.com")])).await;
    let stream = handshake(
        proxy.https,
        Some("a.example.com"),
        &[b"h2", b"http/1.1"],
        None,
    )
    .await
    .unwrap();
    assert_eq!(presented(&stream).alpn.as_deref(), Some(&b"h2"[..]));
    let replies = send_all(stream, vec![get_request("a.example.com", "/x")])
        .await
        .unwrap();
    let echo = replies[0].json();
    assert_eq!(replies[0].status, StatusCode::OK);
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
    assert_eq!(
        echo["headers"]["x-forwarded-port"],
        proxy.https.port().to_string()
    );

    let stream = handshake(proxy.https, Some("a.example.com"), &[b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(presented(&stream).alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn plain_http_is_redirected_to_https_unless_turned_off_or_forced_without_tls() {
    let origins = origin::start(1).await;
    let ca = Ca::new("test CA");
    let proxy = proxy(&docs(&[
        app(&origins),
        tls_secret("cert", &ca.server(&["*.example.com"])),
        tls_ingress(
            "tls",
            "tls.example.com",
            "app",
            &[(&["tls.example.com"], Some("cert"))],
            &[],
        ),
        tls_ingress(
            "off",
            "off.example.com",
            "app",
            &[(&["off.example.com"], Some("cert"))],
            &[("vane.dev/ssl-redirect", "false")],
        ),
        tls_ingress(
            "forced",
            "forced.example.com",
            "app",
            &[],
            &[("vane.dev/force-ssl-redirect", "true")],
        ),
        tls_ingress("plain", "plain.example.com", "app", &[], &[]),
    ]))
    .await;
    let client = client();
    let reply = get(&client, proxy.addr, "tls.example.com:8080", "/a/b?c=1&d=2").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        reply.headers["location"],
        "https://tls.example.com/a/b?c=1&d=2"
    );
    let reply = get(&client, proxy.addr, "forced.example.com", "/x").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(reply.headers["location"], "https://forced.example.com/x");
    let acme = "/.well-known/acme-challenge/token";
    for (host, path) in [
        ("off.example.com", "/"),
        ("plain.example.com", "/"),
        ("tls.example.com", acme),
    ] {
        let reply = get(&client, proxy.addr, host, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{host}{path}");
    }
    assert_eq!(origins.origins[0].hits(), 3);
    // Over HTTPS nothing redirects.
    let reply = https_get(proxy.https, "tls.example.com", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn hsts_is_sent_on_https_responses_only() {
    let origins = origin::start(1).await;
    let ca = Ca::new("test CA");
    let proxy = proxy(&docs(&[
        app(&origins),
        tls_secret("cert", &ca.server(&["a.example.com"])),
        tls_ingress(
            "a",
            "a.example.com",
            "app",
            &[(&["a.example.com"], Some("cert"))],
            &[
                ("vane.dev/ssl-redirect", "false"),
                (
                    "vane.dev/hsts",
                    "max-age=31536000; includeSubDomains; preload",
                ),
            ],
        ),
    ]))
    .await;
    let reply = https_get(proxy.https, "a.example.com", "/").await;
    assert_eq!(
        reply.headers["strict-transport-security"],
        "max-age=31536000; includeSubDomains; preload"
    );
    let reply = get(&client(), proxy.addr, "a.example.com", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.headers.contains_key("strict-transport-security"));
}

#[tokio::test]
async fn a_request_for_a_host_the_connections_certificate_does_not_serve_gets_421() {
    let origins = origin::start(1).await;
    let ca = Ca::new("test CA");
    let proxy = proxy(&docs(&[
        app(&origins),
        tls_host(&ca, "a", "a.example.com"),
        tls_host(&ca, "b", "b.example.com"),
        tls_host(&ca, "wild", "*.wild.example.com"),
    ]))
    .await;
    // HTTP/2 coalescing: one connection, requests for several hosts.
    let stream = handshake(proxy.https, Some("a.example.com"), &[b"h2"], None)
        .await
        .unwrap();
    let replies = send_all(
        stream,
        vec![
            get_request("a.example.com", "/"),
            get_request("b.example.com", "/"),
            get_request("unknown.example.com", "/"),
        ],
    )
    .await
    .unwrap();
    let statuses: Vec<_> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::MISDIRECTED_REQUEST,
            StatusCode::MISDIRECTED_REQUEST
        ]
    );
    // One wildcard certificate serves both hosts: no 421.
    let stream = handshake(proxy.https, Some("x.wild.example.com"), &[b"h2"], None)
        .await
        .unwrap();
    let replies = send_all(stream, vec![get_request("y.wild.example.com", "/")])
        .await
        .unwrap();
    assert_eq!(replies[0].status, StatusCode::OK);
}

#[tokio::test]
async fn rotating_a_secret_changes_new_handshakes_and_open_connections_go_on() {
    let origins = origin::start(1).await;
    let ca = Ca::new("test CA");
    let manifests = |names: &[&str]| {
        docs(&[
            app(&origins),
            tls_secret("a", &ca.server(names)),
            tls_ingress(
                "a",
                "a.example.com",
                "app",
                &[(&["a.example.com"], Some("a"))],
                &[],
            ),
        ])
    };
    let proxy = proxy(&manifests(&["a.example.com"])).await;
    let stream = handshake(proxy.https, Some("a.example.com"), &[b"h2"], None)
        .await
        .unwrap();
    assert_eq!(presented(&stream).dns_names, ["a.example.com"]);
    let (mut open, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = open.send_request(get_request("a.example.com", "/")).await;
    assert_eq!(response.unwrap().status(), StatusCode::OK);

    proxy.publish(&manifests(&["a.example.com", "rotated.example.com"]));
    assert_eq!(
        names_for(&proxy, Some("a.example.com")).await,
        ["a.example.com", "rotated.example.com"]
    );
    let response = open.send_request(get_request("a.example.com", "/")).await;
    assert_eq!(response.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn each_kind_of_bad_secret_is_reported_and_only_its_host_gets_the_default_certificate() {
    let origins = origin::start(1).await;
    let ca = Ca::new("test CA");
    let good = ca.server(&["good.example.com"]);
    let other = ca.server(&["mismatch.example.com"]);
    let mut documents = vec![
        app(&origins),
        tls_secret("good", &good),
        secret("opaque", "Opaque", &good.cert_pem, &good.key_pem, None),
        secret(
            "mismatch",
            "kubernetes.io/tls",
            &other.cert_pem,
            &good.key_pem,
            None,
        ),
        tls_secret("expired", &ca.expired_server(&["expired.example.com"])),
        secret(
            "garbage",
            "kubernetes.io/tls",
            "not a certificate",
            &good.key_pem,
            None,
        ),
    ];
    let cases = [
        ("good", None),
        ("missing", Some(reasons::SECRET_NOT_FOUND)),
        ("opaque", Some(reasons::INVALID_SECRET)),
        ("mismatch", Some(reasons::INVALID_SECRET)),
        ("expired", Some(reasons::CERTIFICATE_EXPIRED)),
        ("garbage", Some(reasons::INVALID_SECRET)),
    ];
    for (name, _) in cases {
        let host = format!("{name}.example.com");
        documents.push(tls_ingress(
            name,
            &host,
            "app",
            &[(&[&host], Some(name))],
            &[],
        ));
    }
    let proxy = proxy(&docs(&documents)).await;
    let diagnostics = proxy.publish(&docs(&documents));
    for (name, reason) in cases {
        let reported: Vec<_> = diagnostics
            .iter()
            .filter(|d| &*d.object.name == name)
            .map(|d| d.reason)
            .collect();
        assert_eq!(reported, reason.into_iter().collect::<Vec<_>>(), "{name}");
        let host = format!("{name}.example.com");
        let expected = if reason.is_none() {
            &host[..]
        } else {
            SELF_SIGNED
        };
        assert_eq!(names_for(&proxy, Some(&host)).await, [expected], "{name}");
        // The route itself still works, over the default certificate.
        let reply = https_get(proxy.https, &host, "/").await;
        assert_eq!(reply.status, StatusCode::OK, "{name}");
    }
}

/// `mtls.example.com`, requiring certificates of `clients`, and `open.example.com`, asking for
/// none; both served a `*.example.com` certificate of `ca`.
fn mtls_and_open(origins: &Origins, ca: &Ca, clients: &Ca) -> String {
    docs(&[
        app(origins),
        tls_secret("cert", &ca.server(&["*.example.com"])),
        ca_secret("client-ca", clients),
        tls_ingress(
            "mtls",
            "mtls.example.com",
            "app",
            &[(&["mtls.example.com"], Some("cert"))],
            &[("vane.dev/auth-tls-secret", "default/client-ca")],
        ),
        tls_ingress(
            "open",
            "open.example.com",
            "app",
            &[(&["open.example.com"], Some("cert"))],
            &[],
        ),
    ])
}

#[tokio::test]
async fn required_client_certificates_are_verified_and_their_subject_reaches_the_origin() {
    let origins = origin::start(1).await;
    let ca = Ca::new("server CA");
    let clients = Ca::new("client CA");
    let strangers = Ca::new("another CA");
    let proxy = proxy(&mtls_and_open(&origins, &ca, &clients)).await;
    let request = |host: &str| {
        let mut request = get_request(host, "/");
        request
            .headers_mut()
            .insert("ssl-client-subject-dn", "CN=mallory".parse().unwrap());
        request
    };
    let alice = clients.client("alice");
    let stream = handshake(
        proxy.https,
        Some("mtls.example.com"),
        &[b"http/1.1"],
        Some(&alice),
    )
    .await
    .unwrap();
    let reply = send_all(stream, vec![request("mtls.example.com")])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["headers"]["ssl-client-subject-dn"], "CN=alice");
    assert_eq!(reply.json()["headers"]["ssl-client-verify"], "SUCCESS");

    for certificate in [None, Some(strangers.client("eve"))] {
        let refused = match handshake(
            proxy.https,
            Some("mtls.example.com"),
            &[b"http/1.1"],
            certificate.as_ref(),
        )
        .await
        {
            Err(_) => true,
            Ok(stream) => send_all(stream, vec![request("mtls.example.com")])
                .await
                .is_err(),
        };
        assert!(refused, "a client without a valid certificate got through");
    }
    // Plain HTTP cannot bypass the verification, and other hosts never ask for certificates.
    let reply = get(&client(), proxy.addr, "mtls.example.com", "/").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    let stream = handshake(proxy.https, Some("open.example.com"), &[b"http/1.1"], None)
        .await
        .unwrap();
    let reply = send_all(stream, vec![request("open.example.com")])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.json()["headers"]["ssl-client-subject-dn"].is_null());
    assert_eq!(origins.origins[0].hits(), 2);
}

#[tokio::test]
async fn optional_client_certificates_let_clients_without_one_in() {
    let origins = origin::start(1).await;
    let ca = Ca::new("server CA");
    let clients = Ca::new("client CA");
    let proxy = proxy(&docs(&[
        app(&origins),
        tls_secret("cert", &ca.server(&["opt.example.com"])),
        ca_secret("client-ca", &clients),
        tls_ingress(
            "opt",
            "opt.example.com",
            "app",
            &[(&["opt.example.com"], Some("cert"))],
            &[
                ("vane.dev/auth-tls-secret", "client-ca"),
                ("vane.dev/auth-tls-verify-client", "optional"),
            ],
        ),
    ]))
    .await;
    for (certificate, verify, subject) in [
        (None, "NONE", None),
        (Some(clients.client("bob")), "SUCCESS", Some("CN=bob")),
    ] {
        let stream = handshake(
            proxy.https,
            Some("opt.example.com"),
            &[b"http/1.1"],
            certificate.as_ref(),
        )
        .await
        .unwrap();
        let reply = send_all(stream, vec![get_request("opt.example.com", "/")])
            .await
            .unwrap()
            .remove(0);
        let headers = &reply.json()["headers"];
        assert_eq!(headers["ssl-client-verify"], verify);
        assert_eq!(headers["ssl-client-subject-dn"].as_str(), subject);
    }
}

/// An Ingress to Service `app`, with a BackendPolicy saying how to reach it over TLS.
fn upstream_tls(origins: &Origins, upstream_ca: &Ca, tls: &str) -> String {
    docs(&[
        app(origins),
        ca_secret("upstream-ca", upstream_ca),
        tls_ingress("app", "app.example.com", "app", &[], &[]),
        format!(
            "apiVersion: vane.dev/v1alpha1\nkind: BackendPolicy\nmetadata: {{name: app, namespace: default}}\n\
             spec:\n  targetRefs: [{{group: \"\", kind: Service, name: app}}]\n  backendProtocol: HTTPS\n  tls: {tls}\n"
        ),
    ])
}

/// A policy asks for verified TLS to its Service, and an Ingress's `backend-protocol` says
/// plain HTTP: the Ingress's choice stands (it is the protocol the Service speaks), but the
/// policy's settings being unused is reported on the policy, not left silent.
#[tokio::test]
async fn a_policys_upstream_tls_unused_by_a_plain_backend_is_reported() {
    let origins = origin::start(1).await;
    let upstream_ca = Ca::new("upstream CA");
    let verified = "{caCertificateRefs: [{name: upstream-ca}], hostname: app.internal}";
    let plain = tls_ingress(
        "app",
        "app.example.com",
        "app",
        &[],
        &[("vane.dev/backend-protocol", "HTTP")],
    );
    let yaml = upstream_tls(&origins, &upstream_ca, verified).replace(
        &tls_ingress("app", "app.example.com", "app", &[], &[]),
        &plain,
    );
    let compiled = compile(&snapshot(&yaml), &Options::default());
    let reported: Vec<_> = compiled
        .diagnostics
        .iter()
        .filter(|d| d.reason == reasons::UPSTREAM_TLS_NOT_USED)
        .collect();
    assert_eq!(reported.len(), 1, "{:?}", compiled.diagnostics);
    assert_eq!(reported[0].object.kind, "BackendPolicy");
    assert!(
        reported[0].message.contains("speaks HTTP"),
        "{}",
        reported[0].message
    );
    assert!(compiled.table.backends()[0].upstream_tls.is_none());
}

/// Compile checks upstream CA roots; should a table's roots still not build a client
/// configuration, the backend's requests are refused without being sent, and its endpoint is
/// not blamed: no retries, no ejection, the same answer every time.
#[tokio::test]
async fn an_upstream_tls_configuration_that_cannot_be_built_refuses_and_blames_no_endpoint() {
    let upstream_ca = Ca::new("upstream CA");
    let origins = origin::start_tls(1, upstream_ca.server(&["app.internal"]).server_config()).await;
    let verified = "{caCertificateRefs: [{name: upstream-ca}], hostname: app.internal}";
    let yaml = upstream_tls(&origins, &upstream_ca, verified);
    let proxy = proxy(&yaml).await;
    // A table that did not come from compile: its CA root is not a certificate.
    let compiled = compile(&snapshot(&yaml), &proxy.options);
    let backends = compiled
        .table
        .backends()
        .iter()
        .map(|backend| {
            let mut backend = Backend::clone(backend);
            if let Some(tls) = &backend.upstream_tls {
                let roots = vec![CertificateDer::from(b"not a certificate".to_vec())];
                backend.upstream_tls = Some(UpstreamTls::new(
                    UpstreamRoots::Custom(roots.into()),
                    &tls.server_name,
                    tls.http2,
                    tls.ca.clone(),
                ));
            }
            Arc::new(backend)
        })
        .collect();
    let table = RoutingTable::new(compiled.table.routes().to_vec(), backends);
    proxy.tables.publish(table, compiled.diagnostics);
    for _ in 0..10 {
        let reply = get(&client(), proxy.addr, "app.example.com", "/x").await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.text()
        );
    }
    assert_eq!(origins.origins[0].hits(), 0, "nothing was sent");
    let routes = vane::admin::routes_json(&proxy.tables.load());
    let endpoint = &routes["backends"][0]["endpoints"][0];
    assert_eq!(
        endpoint["inRotation"], true,
        "the endpoint is not at fault: {endpoint}"
    );
}

#[tokio::test]
async fn upstream_https_is_verified_against_the_policys_ca_unless_explicitly_insecure() {
    let upstream_ca = Ca::new("upstream CA");
    let origins = origin::start_tls(1, upstream_ca.server(&["app.internal"]).server_config()).await;
    let wrong_ca = Ca::new("wrong CA");
    let verified = "{caCertificateRefs: [{name: upstream-ca}], hostname: app.internal}";
    let proxy = proxy(&upstream_tls(&origins, &upstream_ca, verified)).await;
    let client = client();
    let reply = get(&client, proxy.addr, "app.example.com", "/x").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["version"], "HTTP/1.1");

    let wrong_name = "{caCertificateRefs: [{name: upstream-ca}], hostname: other.internal}";
    proxy.publish(&upstream_tls(&origins, &upstream_ca, wrong_name));
    let reply = get(&client, proxy.addr, "app.example.com", "/x").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);

    proxy.publish(&upstream_tls(&origins, &wrong_ca, verified));
    let reply = get(&client, proxy.addr, "app.example.com", "/x").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);

    let diagnostics = proxy.publish(&upstream_tls(
        &origins,
        &wrong_ca,
        "{insecureSkipVerify: true}",
    ));
    assert!(
        diagnostics
            .iter()
            .any(|d| d.reason == reasons::INSECURE_UPSTREAM_TLS && &*d.object.name == "app"),
        "{diagnostics:?}"
    );
    let reply = get(&client, proxy.addr, "app.example.com", "/x").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(origins.origins[0].hits(), 2);
}

#[tokio::test]
async fn h2c_upstreams_get_http2_by_annotation_or_app_protocol() {
    let origins = origin::start(1).await;
    let h2c_service = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: h2c, namespace: default}}\n\
         spec:\n  ports:\n  - {{name: http, port: 80, appProtocol: kubernetes.io/h2c}}\n---\n{}",
        crate::support::fixtures::slice("h2c", origins.port, &origins.ips())
    );
    let proxy = proxy(&docs(&[
        app(&origins),
        h2c_service,
        tls_ingress(
            "annotated",
            "annotated.example.com",
            "app",
            &[],
            &[("vane.dev/backend-protocol", "H2C")],
        ),
        tls_ingress("by-port", "by-port.example.com", "h2c", &[], &[]),
        tls_ingress("plain", "plain.example.com", "app", &[], &[]),
    ]))
    .await;
    let client = client();
    for (host, version) in [
        ("annotated.example.com", "HTTP/2.0"),
        ("by-port.example.com", "HTTP/2.0"),
        ("plain.example.com", "HTTP/1.1"),
    ] {
        let reply = get(&client, proxy.addr, host, "/").await;
        assert_eq!(reply.status, StatusCode::OK, "{host}");
        assert_eq!(reply.json()["version"], version, "{host}");
        assert_eq!(reply.json()["headers"]["host"], host, "{host}");
    }
}

/// A gRPC call through vane over h2 + TLS: the request's messages, sent one at a time, each
/// only after the answer to the previous one arrived (so nothing is buffered), then trailers.
async fn grpc_call(
    proxy: &TestProxy,
    host: &str,
    path: &str,
    messages: &[&[u8]],
) -> (http::Response<()>, Vec<Bytes>, Option<http::HeaderMap>) {
    let stream = handshake(proxy.https, Some(host), &[b"h2"], None)
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let body = StreamBody::new(Box::pin(futures_util::stream::unfold(
        rx,
        |mut rx| async move {
            rx.recv()
                .await
                .map(|data| (Ok::<_, std::convert::Infallible>(Frame::data(data)), rx))
        },
    )));
    let request = Request::post(format!("https://{host}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .unwrap();
    let mut pending = messages.iter();
    if let Some(first) = pending.next() {
        tx.send(grpc::frame(first)).unwrap();
    }
    let response = sender.send_request(request).await.unwrap();
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    let mut trailers = None;
    if messages.is_empty() {
        drop(tx);
        while let Some(frame) = body.frame().await {
            trailers = frame.unwrap().into_trailers().ok().or(trailers);
        }
        return (http::Response::from_parts(parts, ()), data, trailers);
    }
    let mut tx = Some(tx);
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        match frame.into_data() {
            Ok(chunk) => {
                data.push(chunk);
                match pending.next() {
                    Some(next) => tx.as_ref().unwrap().send(grpc::frame(next)).unwrap(),
                    None => drop(tx.take()),
                }
            }
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    (http::Response::from_parts(parts, ()), data, trailers)
}

#[tokio::test]
async fn grpc_unary_and_streaming_calls_pass_with_their_trailers() {
    let origin = grpc::start("127.0.0.1".parse().unwrap()).await;
    let ca = Ca::new("test CA");
    let proxy = proxy(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("grpc", origin.port(), &[origin.ip()]),
        tls_secret("cert", &ca.server(&["grpc.example.com"])),
        tls_ingress(
            "grpc",
            "grpc.example.com",
            "grpc",
            &[(&["grpc.example.com"], Some("cert"))],
            &[("vane.dev/backend-protocol", "GRPC")],
        ),
    ]))
    .await;
    let (response, data, trailers) =
        grpc_call(&proxy, "grpc.example.com", "/test.Echo/Unary", &[b"ping"]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(data, [grpc::frame(b"ping")]);
    let trailers = trailers.expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-echo-trailer"], "kept");

    let messages: [&[u8]; 3] = [b"one", b"two", b"three"];
    let (_, data, trailers) =
        grpc_call(&proxy, "grpc.example.com", "/test.Echo/Stream", &messages).await;
    let expected: Vec<Bytes> = messages.iter().map(|m| grpc::frame(m)).collect();
    assert_eq!(data, expected);
    assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
}

#[tokio::test]
async fn errors_vane_makes_for_grpc_requests_carry_a_grpc_status() {
    let ca = Ca::new("test CA");
    let proxy = proxy(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("empty", 9, &[]),
        tls_secret("cert", &ca.server(&["*.example.com"])),
        tls_ingress(
            "empty",
            "empty.example.com",
            "empty",
            &[(&["empty.example.com"], Some("cert"))],
            &[("vane.dev/backend-protocol", "GRPC")],
        ),
    ]))
    .await;
    for (host, status) in [("empty.example.com", "14"), ("nothing.example.com", "12")] {
        let (response, data, _) = grpc_call(&proxy, host, "/test.Echo/Unary", &[]).await;
        assert_eq!(response.status(), StatusCode::OK, "{host}");
        assert_eq!(response.headers()["content-type"], "application/grpc");
        assert_eq!(response.headers()["grpc-status"], status, "{host}");
        assert!(data.is_empty());
    }
}

// === compile ===

#[test]
fn tls_without_hosts_covers_the_rule_hosts_its_certificate_names() {
    let ca = Ca::new("test CA");
    let yaml = docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", 8080, &["10.0.0.1".parse().unwrap()]),
        tls_secret("wild", &ca.server(&["*.example.com"])),
        tls_ingress(
            "covered",
            "a.example.com",
            "app",
            &[(&[], Some("wild"))],
            &[],
        ),
        tls_ingress(
            "not-covered",
            "a.other.org",
            "app",
            &[(&[], Some("wild"))],
            &[],
        ),
    ]);
    let compiled = compile(&snapshot(&yaml), &Options::default());
    let tls = compiled.table.tls();
    let site = tls.site(Some("a.example.com")).expect("a site");
    assert_eq!(&*site.certificate.dns_names, ["*.example.com".into()]);
    assert!(tls.site(Some("a.other.org")).is_none());
    let redirects = |host: &str| {
        compiled
            .table
            .lookup(host, "/")
            .unwrap()
            .tls
            .redirect_to_https
    };
    assert!(redirects("a.example.com"));
    assert!(!redirects("a.other.org"));
}

#[test]
fn backend_protocol_comes_from_annotation_then_policy_then_app_protocol() {
    let service = |name: &str, app_protocol: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
             spec:\n  ports:\n  - {{name: http, port: 80, appProtocol: {app_protocol}}}\n---\n{}",
            crate::support::fixtures::slice(name, 8080, &["10.0.0.1".parse().unwrap()])
        )
    };
    let policy = |service: &str, protocol: &str| {
        format!(
            "apiVersion: vane.dev/v1alpha1\nkind: BackendPolicy\nmetadata: {{name: {service}, namespace: default}}\n\
             spec:\n  targetRefs: [{{group: \"\", kind: Service, name: {service}}}]\n  backendProtocol: {protocol}\n"
        )
    };
    let yaml = docs(&[
        INGRESS_CLASS.to_string(),
        service("annotated", "kubernetes.io/h2c"),
        policy("annotated", "GRPC"),
        service("by-policy", "kubernetes.io/h2c"),
        policy("by-policy", "HTTPS"),
        service("by-port", "kubernetes.io/h2c"),
        service("plain", "http"),
        tls_ingress(
            "annotated",
            "annotated.example.com",
            "annotated",
            &[],
            &[("vane.dev/backend-protocol", "GRPCS")],
        ),
        tls_ingress("by-policy", "by-policy.example.com", "by-policy", &[], &[]),
        tls_ingress("by-port", "by-port.example.com", "by-port", &[], &[]),
        tls_ingress(
            "plain",
            "plain.example.com",
            "plain",
            &[],
            &[("vane.dev/backend-protocol", "SPDY")],
        ),
    ]);
    let compiled = compile(&snapshot(&yaml), &Options::default());
    let protocol = |host: &str| {
        let route = compiled.table.lookup(host, "/").unwrap();
        let backend = compiled.table.backend(route.backend).unwrap();
        (
            backend.protocol,
            backend
                .upstream_tls
                .as_ref()
                .map(|t| t.server_name.to_string()),
        )
    };
    assert_eq!(
        protocol("annotated.example.com"),
        (BackendProtocol::Grpcs, Some("annotated.default.svc".into()))
    );
    assert_eq!(
        protocol("by-policy.example.com"),
        (BackendProtocol::Https, Some("by-policy.default.svc".into()))
    );
    assert_eq!(
        protocol("by-port.example.com"),
        (BackendProtocol::H2c, None)
    );
    assert_eq!(protocol("plain.example.com"), (BackendProtocol::Http, None));
    assert!(compiled
        .diagnostics
        .iter()
        .any(|d| &*d.object.name == "plain" && d.reason == reasons::INVALID_ANNOTATION));
}

#[test]
fn an_older_ingress_keeps_a_tls_host_and_an_unusable_client_ca_refuses_handshakes() {
    let ca = Ca::new("test CA");
    let yaml = docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", 8080, &["10.0.0.1".parse().unwrap()]),
        tls_secret("one", &ca.server(&["a.example.com"])),
        tls_secret("two", &ca.server(&["a.example.com"])),
        tls_ingress(
            "first",
            "a.example.com",
            "app",
            &[(&["a.example.com"], Some("one"))],
            &[],
        ),
        tls_ingress(
            "second",
            "a.example.com",
            "app",
            &[(&["a.example.com"], Some("two"))],
            &[],
        ),
        tls_ingress(
            "locked",
            "locked.example.com",
            "app",
            &[(&["locked.example.com"], Some("one"))],
            &[("vane.dev/auth-tls-secret", "no-such-ca")],
        ),
    ]);
    let compiled = compile(&snapshot(&yaml), &Options::default());
    let site = compiled.table.tls().site(Some("a.example.com")).unwrap();
    assert_eq!(
        site.certificate.secret.as_ref().map(|s| &*s.name),
        Some("one")
    );
    let reported: Vec<_> = compiled
        .diagnostics
        .iter()
        .map(|d| (&*d.object.name, d.reason))
        .collect();
    assert!(
        reported.contains(&("second", reasons::TLS_CONFLICT)),
        "{reported:?}"
    );
    assert!(
        reported.contains(&("locked", reasons::SECRET_NOT_FOUND)),
        "{reported:?}"
    );
    let locked = compiled
        .table
        .tls()
        .site(Some("locked.example.com"))
        .unwrap();
    assert!(
        locked
            .client_auth
            .as_ref()
            .is_some_and(|auth| auth.roots.is_none()),
        "handshakes must be refused"
    );
}

#[tokio::test]
async fn a_site_whose_client_verifier_cannot_be_built_at_publish_refuses_handshakes() {
    let origins = origin::start(1).await;
    let ca = Ca::new("server CA");
    let clients = Ca::new("client CA");
    let yaml = mtls_and_open(&origins, &ca, &clients);
    let proxy = proxy(&yaml).await;
    let alice = clients.client("alice");
    let mtls = || handshake(proxy.https, Some("mtls.example.com"), &[], Some(&alice));
    mtls()
        .await
        .expect("a valid client certificate is accepted");

    // A table that did not come from compile: the client CA is not a certificate, so no
    // verifier can be built when it is published.
    let compiled = compile(&snapshot(&yaml), &proxy.options);
    let tls = compiled.table.tls();
    let sites = tls
        .sites()
        .iter()
        .cloned()
        .map(|mut site| {
            if let Some(auth) = &mut site.client_auth {
                auth.roots = Some(vec![CertificateDer::from(b"not a certificate".to_vec())].into());
            }
            site
        })
        .collect();
    let broken = TlsHosts::new(sites, tls.hosts().collect(), tls.default_index());
    proxy
        .tables
        .publish(compiled.table.with_tls(broken), compiled.diagnostics);

    assert!(
        mtls().await.is_err(),
        "handshakes must be refused, not served without client verification"
    );
    let stream = handshake(proxy.https, Some("open.example.com"), &[], None)
        .await
        .expect("other hosts are still served");
    assert_eq!(presented(&stream).dns_names, ["*.example.com"]);
    let routes = vane::admin::routes_json(&proxy.tables.load());
    let refused = |host: &str| {
        routes["tls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["host"] == host)
            .map(|entry| entry["site"]["refused"].clone())
    };
    assert_eq!(refused("mtls.example.com"), Some(true.into()));
    assert_eq!(refused("open.example.com"), Some(false.into()));
}

#[test]
fn the_tls_example_compiles_cleanly() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/tls/tls.yaml");
    let options = Options {
        now: now(),
        ..Options::default()
    };
    let compiled = compile(&snapshot(&std::fs::read_to_string(path).unwrap()), &options);
    assert_eq!(compiled.diagnostics, []);
    let site = compiled.table.tls().site(Some("localhost")).unwrap();
    let secret = site.certificate.secret.as_ref().unwrap();
    assert_eq!(&*secret.name, "localhost-demo-tls");
    assert!(
        compiled
            .table
            .lookup("localhost", "/")
            .unwrap()
            .tls
            .redirect_to_https
    );
}

// === standalone ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_https_from_a_tls_secret_manifest() {
    let origins = origin::start(1).await;
    let ca = Ca::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    write_atomically(
        &dir.path().join("tls.yaml"),
        &docs(&[
            app(&origins),
            tls_secret("cert", &ca.server(&["secure.example.com"])),
            tls_ingress(
                "secure",
                "secure.example.com",
                "app",
                &[(&["secure.example.com"], Some("cert"))],
                &[],
            ),
        ]),
    );
    let vane = Vane::start(dir.path()).await;
    let stream = handshake(vane.https, Some("secure.example.com"), &[b"h2"], None)
        .await
        .unwrap();
    assert_eq!(presented(&stream).dns_names, ["secure.example.com"]);
    let reply = send_all(stream, vec![get_request("secure.example.com", "/")])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["headers"]["x-forwarded-proto"], "https");
    let reply = get(&client(), vane.http, "secure.example.com", "/").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
}
