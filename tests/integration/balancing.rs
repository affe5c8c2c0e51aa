//! Load balancing end to end: configuration (annotations, BackendPolicy, precedence, weights)
//! through compile, and the algorithms through the real proxy.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use vane::compile::{compile, reasons, Options};
use vane::table::{BackendTarget, HashKey, LoadBalancing};

use crate::support::client::{client, get, send};
use crate::support::fixtures::{backend, docs, ingress, snapshot, INGRESS_CLASS};
use crate::support::origin::{self, Origins};
use crate::support::proxy::TestProxy;

fn annotated(name: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    let list: Vec<String> = annotations
        .iter()
        .map(|(k, v)| format!("\"{k}\": \"{v}\""))
        .collect();
    ingress(name, Some(host), "/", "app").replace(
        "metadata: {name: ",
        &format!("metadata: {{annotations: {{{}}}, name: ", list.join(", ")),
    )
}

fn policy(name: &str, section: Option<&str>, load_balancer: &str) -> String {
    let section = section
        .map(|s| format!(", sectionName: {s}"))
        .unwrap_or_default();
    format!(
        "apiVersion: vane.dev/v1alpha1\nkind: BackendPolicy\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  targetRefs: [{{group: '', kind: Service, name: app{section}}}]\n  loadBalancer: {load_balancer}\n"
    )
}

fn manifests(origins: &Origins, extra: &[String]) -> String {
    let mut documents = vec![
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
    ];
    documents.extend(extra.iter().cloned());
    docs(&documents)
}

fn load_balancing_of(yaml: &str, host: &str) -> LoadBalancing {
    let compiled = compile(&snapshot(yaml), &Options::default());
    let route = compiled.table.lookup(host, "/").expect(host);
    compiled
        .table
        .backend(route.backend)
        .unwrap()
        .load_balancing
        .clone()
}

#[tokio::test]
async fn annotation_beats_port_policy_beats_service_policy_beats_default() {
    let origins = origin::start(1).await;
    let plain = ingress("plain", Some("plain.com"), "/", "app");
    let annotated = annotated(
        "annotated",
        "annotated.com",
        &[("vane.dev/load-balance", "least-connections")],
    );

    let yaml = manifests(&origins, &[plain.clone(), annotated.clone()]);
    assert_eq!(
        load_balancing_of(&yaml, "plain.com"),
        LoadBalancing::RoundRobin
    );

    let service_policy = policy("whole", None, "{type: Random}");
    let yaml = manifests(
        &origins,
        &[plain.clone(), annotated.clone(), service_policy.clone()],
    );
    assert_eq!(load_balancing_of(&yaml, "plain.com"), LoadBalancing::Random);

    let port_policy = policy(
        "port",
        Some("http"),
        "{type: LeastResponseTime, leastResponseTime: {decay: 5s}}",
    );
    let yaml = manifests(&origins, &[plain, annotated, service_policy, port_policy]);
    let expected = LoadBalancing::LeastResponseTime {
        decay: Duration::from_secs(5),
    };
    assert_eq!(load_balancing_of(&yaml, "plain.com"), expected);
    assert_eq!(
        load_balancing_of(&yaml, "annotated.com"),
        LoadBalancing::LeastConnections
    );

    // One Service port balanced two ways by two Ingresses: two backends, one per algorithm.
    let compiled = compile(&snapshot(&yaml), &Options::default());
    assert_eq!(compiled.table.backends().len(), 2);
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
}

#[tokio::test]
async fn hash_by_alone_turns_on_consistent_hashing() {
    let origins = origin::start(1).await;
    let yaml = manifests(
        &origins,
        &[annotated(
            "h",
            "h.com",
            &[("vane.dev/hash-by", "header:x-user")],
        )],
    );
    match load_balancing_of(&yaml, "h.com") {
        LoadBalancing::ConsistentHash(hash) => {
            assert_eq!(hash.key, HashKey::Header("x-user".parse().unwrap()))
        }
        other => panic!("{other:?}"),
    }
}

/// ingress-nginx's balancing annotations, under its prefix and with its values, compile to
/// what vane's own say: `load-balance` (`round_robin`, `ewma`), `upstream-hash-by` with one
/// nginx variable, and cookie affinity with the `session-cookie-*` set.
#[tokio::test]
async fn ingress_nginx_balancing_annotations_mean_what_they_mean_there() {
    let origins = origin::start(1).await;
    let nginx = |name: &str| format!("nginx.ingress.kubernetes.io/{name}");
    let cases: [(&str, &[(&str, &str)]); 8] = [
        ("rr.com", &[("load-balance", "round_robin")]),
        ("ewma.com", &[("load-balance", "ewma")]),
        ("addr.com", &[("upstream-hash-by", "$remote_addr")]),
        ("uri.com", &[("upstream-hash-by", "$request_uri")]),
        ("path.com", &[("upstream-hash-by", "${uri}")]),
        ("header.com", &[("upstream-hash-by", "$http_x_user_id")]),
        ("arg.com", &[("upstream-hash-by", "$arg_tenant")]),
        (
            "sticky.com",
            &[
                ("affinity", "cookie"),
                ("session-cookie-name", "route"),
                ("session-cookie-domain", "example.com"),
                ("session-cookie-expires", "172800"),
                ("session-cookie-samesite", "Lax"),
                ("session-cookie-secure", "true"),
            ],
        ),
    ];
    let documents: Vec<String> = cases
        .iter()
        .map(|(host, annotations)| {
            let annotations: Vec<(String, &str)> =
                annotations.iter().map(|(k, v)| (nginx(k), *v)).collect();
            let annotations: Vec<(&str, &str)> =
                annotations.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            annotated(host.trim_end_matches(".com"), host, &annotations)
        })
        .collect();
    let yaml = manifests(&origins, &documents);
    let compiled = compile(&snapshot(&yaml), &Options::default());
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    let backend = |host: &str| {
        let route = compiled.table.lookup(host, "/").expect(host);
        compiled.table.backend(route.backend).unwrap().clone()
    };
    let hash_key = |host: &str| match backend(host).load_balancing {
        LoadBalancing::ConsistentHash(hash) => hash.key,
        other => panic!("{host}: {other:?}"),
    };
    assert!(matches!(
        backend("rr.com").load_balancing,
        LoadBalancing::RoundRobin
    ));
    assert!(matches!(
        backend("ewma.com").load_balancing,
        LoadBalancing::LeastResponseTime { .. }
    ));
    assert_eq!(hash_key("addr.com"), HashKey::SourceIp);
    assert_eq!(hash_key("uri.com"), HashKey::RequestUri);
    assert_eq!(hash_key("path.com"), HashKey::Path);
    assert_eq!(
        hash_key("header.com"),
        HashKey::Header("x-user-id".parse().unwrap())
    );
    assert_eq!(hash_key("arg.com"), HashKey::Query("tenant".into()));
    let affinity = backend("sticky.com").affinity.expect("affinity");
    assert_eq!(&*affinity.name, "route");
    assert_eq!(affinity.domain.as_deref(), Some("example.com"));
    assert_eq!(affinity.max_age, Some(Duration::from_secs(172_800)));
    assert_eq!(affinity.same_site, Some(vane::table::SameSite::Lax));
    assert!(affinity.secure);
}

#[tokio::test]
async fn endpoint_weights_select_by_zone_node_hostname_and_address() {
    let yaml = docs(&[
        INGRESS_CLASS.to_string(),
        crate::support::fixtures::service("app"),
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: app-1, labels: {kubernetes.io/service-name: app}}\n\
         addressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints:\n\
         - {addresses: [10.0.0.1], zone: big, nodeName: n1}\n\
         - {addresses: [10.0.0.2], zone: small, nodeName: n2, hostname: special}\n\
         - {addresses: [10.0.0.3], zone: small, nodeName: n3}\n\
         - {addresses: [10.0.0.4]}\n"
            .to_string(),
        ingress("app", None, "/", "app"),
        policy(
            "weights",
            None,
            "{type: RoundRobin, endpointWeights: [{hostname: special, weight: 7}, {zone: big, weight: 5}, {zone: small, nodeName: n3, weight: 3}, {address: 10.0.0.4, weight: 2}]}",
        ),
    ]);
    let compiled = compile(&snapshot(&yaml), &Options::default());
    let BackendTarget::Endpoints(endpoints) = &compiled.table.backends()[0].target else {
        panic!()
    };
    let weights: Vec<(String, u32)> = endpoints
        .iter()
        .map(|e| (e.address.ip().to_string(), e.weight))
        .collect();
    let expected = [
        ("10.0.0.1", 5),
        ("10.0.0.2", 7),
        ("10.0.0.3", 3),
        ("10.0.0.4", 2),
    ];
    assert_eq!(weights, expected.map(|(a, w)| (a.to_string(), w)));
}

#[tokio::test]
async fn every_invalid_annotation_is_reported_and_leaves_other_routes_alone() {
    let origins = origin::start(1).await;
    let catalogue = [
        ("vane.dev/load-balance", "leastconn"),
        ("vane.dev/load-balance", ""),
        ("vane.dev/load-balance", "round-robin; drop"),
        ("vane.dev/hash-by", "header:"),
        ("vane.dev/hash-by", "$host$request_uri"),
        (
            "nginx.ingress.kubernetes.io/upstream-hash-by",
            "${request_uri}-text",
        ),
        ("nginx.ingress.kubernetes.io/load-balance", "least_conn"),
        ("vane.dev/hash-by", "cookie:a b"),
        ("vane.dev/hash-by", "ip"),
        ("vane.dev/slow-start", "forever"),
        ("vane.dev/slow-start", "0s"),
        ("vane.dev/affinity", "ip"),
        ("vane.dev/session-cookie-name", "a b"),
        ("vane.dev/session-cookie-path", "app"),
        ("vane.dev/session-cookie-max-age", "-1"),
        ("vane.dev/session-cookie-samesite", "lax"),
        ("vane.dev/session-cookie-secure", "yes"),
        ("vane.dev/canary", "yes"),
    ];
    let mut documents = vec![ingress("good", Some("good.com"), "/", "app")];
    for (i, (key, value)) in catalogue.iter().enumerate() {
        documents.push(annotated(
            &format!("bad-{i}"),
            &format!("bad-{i}.com"),
            &[(key, value)],
        ));
    }
    let yaml = manifests(&origins, &documents);
    let compiled = compile(&snapshot(&yaml), &Options::default());
    for (i, (key, _)) in catalogue.iter().enumerate() {
        let name = format!("bad-{i}");
        let reported = compiled.diagnostics.iter().any(|d| {
            *d.object.name == *name
                && d.reason == reasons::INVALID_ANNOTATION
                && d.message.starts_with(key)
        });
        assert!(reported, "{name} not reported: {:?}", compiled.diagnostics);
        // The setting falls back to the default; the route itself still works.
        let route = compiled.table.lookup(&format!("{name}.com"), "/").unwrap();
        assert_eq!(
            compiled
                .table
                .backend(route.backend)
                .unwrap()
                .load_balancing,
            LoadBalancing::RoundRobin
        );
    }
    assert!(compiled.table.lookup("good.com", "/").is_some());
    assert_eq!(compiled.diagnostics.len(), catalogue.len());
}

/// Sends `per_client` GETs from each of `clients` concurrent clients; returns hits per origin.
async fn concurrent_load(
    proxy: &TestProxy,
    host: &str,
    clients: usize,
    per_client: usize,
) -> HashMap<String, usize> {
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let addr = proxy.addr;
            let host = host.to_owned();
            tokio::spawn(async move {
                let client = client();
                let mut seen = Vec::new();
                for _ in 0..per_client {
                    let reply = get(&client, addr, &host, "/").await;
                    assert_eq!(reply.status, StatusCode::OK);
                    seen.push(reply.origin().unwrap());
                }
                seen
            })
        })
        .collect();
    let mut counts = HashMap::new();
    for task in tasks {
        for origin in task.await.unwrap() {
            *counts.entry(origin).or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_origin_gets_clearly_fewer_requests_under_least_connections_and_least_response_time()
{
    let origins = origin::start(3).await;
    origins.origins[0].set_delay(Duration::from_millis(40));
    let (clients, per_client) = (6, 20);
    let total = clients * per_client;
    let mut shares = HashMap::new();
    for (name, value) in [
        ("round-robin", "round-robin"),
        ("least-connections", "least-connections"),
        ("least-response-time", "least-response-time"),
    ] {
        let host = format!("{name}.com");
        let yaml = manifests(
            &origins,
            &[annotated(name, &host, &[("vane.dev/load-balance", value)])],
        );
        let proxy = TestProxy::start(&yaml).await;
        let counts = concurrent_load(&proxy, &host, clients, per_client).await;
        let slow = counts.get("origin-0").copied().unwrap_or(0);
        shares.insert(name, slow as f64 / total as f64);
    }
    assert!(
        (shares["round-robin"] - 1.0 / 3.0).abs() < 0.02,
        "{shares:?}"
    );
    assert!(shares["least-connections"] < 0.2, "{shares:?}");
    assert!(shares["least-response-time"] < 0.2, "{shares:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_swap_under_load_keeps_least_connection_counts() {
    let origins = origin::start(2).await;
    let base = [annotated(
        "app",
        "app.com",
        &[("vane.dev/load-balance", "least-connections")],
    )];
    let proxy = TestProxy::start(&manifests(&origins, &base)).await;

    // One request hangs on whichever endpoint gets it, and stays in flight.
    let hanging = tokio::spawn({
        let url = proxy.url("/hang");
        async move {
            let request = Request::get(url)
                .header("host", "app.com")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let _ = client().request(request).await;
        }
    });
    let busy = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(origin) = origins.origins.iter().find(|o| o.hits() == 1) {
                return origin.name.clone();
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the hanging request reached an origin");

    // A swap: same backend, plus an unrelated route. The in-flight count must survive it.
    let mut swapped = base.to_vec();
    swapped.push(ingress("other", Some("other.com"), "/", "app"));
    proxy.publish(&manifests(&origins, &swapped));
    let client = client();
    for _ in 0..20 {
        let reply = send(
            &client,
            Request::get(proxy.url("/"))
                .header("host", "app.com")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_ne!(
            reply.origin().unwrap(),
            busy,
            "a request went to the endpoint with one in flight"
        );
    }
    hanging.abort();
}

#[tokio::test]
async fn consistent_hashing_keeps_a_key_on_one_endpoint() {
    let origins = origin::start(3).await;
    let yaml = manifests(
        &origins,
        &[annotated(
            "app",
            "app.com",
            &[("vane.dev/hash-by", "header:x-user")],
        )],
    );
    let proxy = TestProxy::start(&yaml).await;
    let client = client();
    let mut homes = HashMap::new();
    for round in 0..5 {
        for user in 0..20 {
            let request = Request::get(proxy.url("/"))
                .header("host", "app.com")
                .header("x-user", format!("user-{user}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let origin = send(&client, request).await.origin().unwrap();
            let home = homes.entry(user).or_insert_with(|| origin.clone());
            assert_eq!(*home, origin, "user-{user} moved in round {round}");
        }
    }
    let distinct: std::collections::HashSet<_> = homes.values().collect();
    assert!(
        distinct.len() > 1,
        "20 keys all landed on one endpoint: {homes:?}"
    );
}

#[tokio::test]
async fn policy_weights_shape_round_robin_through_the_proxy() {
    let origins = origin::start(2).await;
    let heavy = origins.origins[0].addr.ip().to_string();
    let yaml = manifests(
        &origins,
        &[
            ingress("app", None, "/", "app"),
            policy(
                "weights",
                None,
                &format!(
                    "{{type: RoundRobin, endpointWeights: [{{address: '{heavy}', weight: 3}}]}}"
                ),
            ),
        ],
    );
    let proxy = TestProxy::start(&yaml).await;
    let client = client();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..40 {
        *counts
            .entry(get(&client, proxy.addr, "x", "/").await.origin().unwrap())
            .or_default() += 1;
    }
    assert_eq!(counts.get("origin-0"), Some(&30), "{counts:?}");
    assert_eq!(counts.get("origin-1"), Some(&10), "{counts:?}");
}

#[tokio::test]
async fn slow_start_comes_from_the_annotation_or_the_policy() {
    let origins = origin::start(1).await;
    let slow_start_of = |yaml: &str, host: &str| {
        let compiled = compile(&snapshot(yaml), &Options::default());
        let route = compiled.table.lookup(host, "/").expect(host);
        compiled.table.backend(route.backend).unwrap().slow_start
    };
    let yaml = manifests(
        &origins,
        &[
            annotated("annotated", "annotated.com", &[("vane.dev/slow-start", "30s")]),
            ingress("plain", Some("plain.com"), "/", "app"),
            policy(
                "ramp",
                None,
                "{type: LeastConnections, leastConnections: {slowStart: {window: 1m, aggression: 2.0, minWeightPercent: 25}}}",
            ),
        ],
    );
    let annotated = slow_start_of(&yaml, "annotated.com").expect("annotation");
    assert_eq!(
        (
            annotated.window,
            annotated.aggression_percent,
            annotated.min_weight_percent
        ),
        (Duration::from_secs(30), 100, 10)
    );
    let from_policy = slow_start_of(&yaml, "plain.com").expect("policy");
    assert_eq!(
        (
            from_policy.window,
            from_policy.aggression_percent,
            from_policy.min_weight_percent
        ),
        (Duration::from_secs(60), 200, 25)
    );
}

#[tokio::test]
async fn cookie_affinity_keeps_a_client_on_one_endpoint_until_it_is_removed() {
    let origins = origin::start(3).await;
    let sticky = annotated(
        "app",
        "app.com",
        &[
            ("vane.dev/affinity", "cookie"),
            ("vane.dev/session-cookie-name", "route"),
        ],
    );
    let proxy = TestProxy::start(&manifests(&origins, std::slice::from_ref(&sticky))).await;
    let client = client();
    let request = |cookie: Option<&str>| {
        let mut builder = Request::get(proxy.url("/")).header("host", "app.com");
        if let Some(cookie) = cookie {
            builder = builder.header("cookie", cookie);
        }
        builder.body(Full::new(Bytes::new())).unwrap()
    };
    let first = send(&client, request(None)).await;
    let set_cookie = first.headers["set-cookie"].to_str().unwrap().to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("route="), "{set_cookie}");
    let home = first.origin().unwrap();
    for _ in 0..100 {
        let reply = send(&client, request(Some(&cookie))).await;
        assert_eq!(reply.origin().unwrap(), home);
        assert!(reply.headers.get("set-cookie").is_none());
    }

    // The pinned endpoint leaves: the client is moved and gets a new cookie.
    let remaining: Vec<_> = origins
        .origins
        .iter()
        .filter(|o| o.name != home)
        .map(|o| o.addr.ip())
        .collect();
    proxy.publish(&docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &remaining),
        sticky,
    ]));
    let moved = send(&client, request(Some(&cookie))).await;
    assert_ne!(moved.origin().unwrap(), home);
    let new_cookie = moved.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(new_cookie, cookie);
    let new_home = moved.origin().unwrap();
    for _ in 0..10 {
        assert_eq!(
            send(&client, request(Some(&new_cookie)))
                .await
                .origin()
                .unwrap(),
            new_home
        );
    }
}

#[tokio::test]
async fn session_persistence_in_a_policy_turns_on_cookie_affinity() {
    let origins = origin::start(1).await;
    let persistence = "apiVersion: vane.dev/v1alpha1\nkind: BackendPolicy\nmetadata: {name: sticky, namespace: default}\n\
        spec:\n  targetRefs: [{group: '', kind: Service, name: app}]\n\
        \x20 sessionPersistence: {sessionName: shop, absoluteTimeout: 2h, cookieConfig: {lifetimeType: Permanent, secure: true, sameSite: Strict}}\n";
    let yaml = manifests(
        &origins,
        &[
            ingress("app", Some("app.com"), "/", "app"),
            annotated(
                "renamed",
                "renamed.com",
                &[("vane.dev/session-cookie-name", "mine")],
            ),
            persistence.to_string(),
        ],
    );
    let compiled = compile(&snapshot(&yaml), &Options::default());
    let affinity_of = |host: &str| {
        let route = compiled.table.lookup(host, "/").unwrap();
        compiled
            .table
            .backend(route.backend)
            .unwrap()
            .affinity
            .clone()
            .expect("affinity")
    };
    let from_policy = affinity_of("app.com");
    assert_eq!(&*from_policy.name, "shop");
    assert_eq!(from_policy.max_age, Some(Duration::from_secs(7200)));
    assert!(from_policy.secure);
    // An annotation overrides that one attribute only.
    let renamed = affinity_of("renamed.com");
    assert_eq!(&*renamed.name, "mine");
    assert_eq!(renamed.max_age, Some(Duration::from_secs(7200)));
}

fn canary(name: &str, host: &str, service: &str, annotations: &[(&str, &str)]) -> String {
    let mut all = vec![("vane.dev/canary", "true")];
    all.extend_from_slice(annotations);
    annotated(name, host, &all).replace("name: app, port:", &format!("name: {service}, port:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_weight_and_header_split_traffic_like_ingress_nginx() {
    let stable = origin::start(1).await;
    let preview = origin::start(1).await;
    let yaml = docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", stable.port, &stable.ips()),
        backend("preview", preview.port, &preview.ips()),
        annotated("app", "app.com", &[]),
        canary(
            "app-canary",
            "app.com",
            "preview",
            &[
                ("vane.dev/canary-weight", "20"),
                ("vane.dev/canary-by-header", "x-canary"),
                ("vane.dev/canary-by-cookie", "canary"),
            ],
        ),
    ]);
    let proxy = TestProxy::start(&yaml).await;
    assert!(proxy.publish(&yaml).is_empty());
    let client = client();
    let get_with = |header: Option<&str>, cookie: Option<&str>| {
        let mut builder = Request::get(proxy.url("/")).header("host", "app.com");
        if let Some(value) = header {
            builder = builder.header("x-canary", value);
        }
        if let Some(value) = cookie {
            builder = builder.header("cookie", format!("canary={value}"));
        }
        builder.body(Full::new(Bytes::new())).unwrap()
    };

    for _ in 0..2000 {
        let reply = send(&client, get_with(None, None)).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let preview_hits = preview.origins[0].hits();
    assert_eq!(stable.origins[0].hits() + preview_hits, 2000);
    assert!(
        (340..=460).contains(&preview_hits),
        "canary got {preview_hits} of 2000 (want 20% ± 3)"
    );

    let before = preview.origins[0].hits();
    for _ in 0..50 {
        send(&client, get_with(Some("always"), Some("never"))).await;
    }
    assert_eq!(
        preview.origins[0].hits() - before,
        50,
        "by-header always wins over the cookie"
    );
    let before = preview.origins[0].hits();
    for _ in 0..50 {
        send(&client, get_with(Some("never"), None)).await;
        send(&client, get_with(None, Some("never"))).await;
    }
    assert_eq!(
        preview.origins[0].hits(),
        before,
        "never keeps requests on the main backend"
    );
    for _ in 0..20 {
        send(&client, get_with(None, Some("always"))).await;
    }
    assert_eq!(
        preview.origins[0].hits() - before,
        20,
        "the cookie's always sends to the canary"
    );
}

#[tokio::test]
async fn canary_by_header_value_and_the_canary_diagnostics() {
    let origins = origin::start(1).await;
    let yaml = docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
        backend("preview", origins.port, &origins.ips()),
        annotated("app", "app.com", &[]),
        canary(
            "valued",
            "app.com",
            "preview",
            &[
                ("vane.dev/canary-by-header", "x-group"),
                ("vane.dev/canary-by-header-value", "beta"),
            ],
        ),
        canary(
            "second",
            "app.com",
            "preview",
            &[("vane.dev/canary-weight", "50")],
        ),
        canary(
            "orphan",
            "nothing.com",
            "preview",
            &[("vane.dev/canary-weight", "50")],
        ),
        canary(
            "bad",
            "app.com",
            "preview",
            &[("vane.dev/canary-weight", "120")],
        ),
    ]);
    let compiled = compile(&snapshot(&yaml), &Options::default());
    let route = compiled.table.lookup("app.com", "/").unwrap();
    let canary = route.canary.as_ref().expect("canary attached");
    assert_eq!(
        &*canary.ingress.name, "bad",
        "oldest by name wins among canaries without timestamps"
    );
    assert_eq!(
        compiled
            .table
            .backend(canary.backend)
            .unwrap()
            .name
            .as_ref(),
        "default/preview:80"
    );
    let reasons_of = |name: &str| -> Vec<&str> {
        compiled
            .diagnostics
            .iter()
            .filter(|d| &*d.object.name == name)
            .map(|d| d.reason)
            .collect()
    };
    assert_eq!(reasons_of("bad"), [reasons::INVALID_ANNOTATION]);
    assert_eq!(reasons_of("orphan"), [reasons::CANARY_WITHOUT_MAIN]);
    assert_eq!(reasons_of("second"), [reasons::CANARY_CONFLICT]);
    assert_eq!(reasons_of("valued"), [reasons::CANARY_CONFLICT]);
    assert!(
        compiled.table.lookup("nothing.com", "/").is_none(),
        "a canary adds no routes of its own"
    );
}

#[test]
fn the_balancing_examples_compile_cleanly_and_mean_what_they_say() {
    let loaded = vane::manifests::load_dir(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/examples/balancing"
    )))
    .unwrap();
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let compiled = compile(&loaded.snapshot, &Options::default());
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    let backend_of = |host: &str| {
        let route = compiled.table.lookup(host, "/").expect(host);
        (route, compiled.table.backend(route.backend).unwrap())
    };
    let (shop_route, shop) = backend_of("shop.example.com");
    assert_eq!(shop.load_balancing, LoadBalancing::LeastConnections);
    assert!(shop.slow_start.is_some());
    let BackendTarget::Endpoints(endpoints) = &shop.target else {
        panic!()
    };
    assert_eq!(
        endpoints.iter().map(|e| e.weight).collect::<Vec<_>>(),
        [3, 1]
    );
    assert_eq!(
        shop_route.canary.as_ref().map(|c| c.weight_percent),
        Some(20)
    );
    assert!(matches!(
        backend_of("users.example.com").1.load_balancing,
        LoadBalancing::ConsistentHash(_)
    ));
    let cart = backend_of("cart.example.com")
        .1
        .affinity
        .clone()
        .expect("affinity");
    assert_eq!(&*cart.name, "basket");
    assert!(matches!(
        backend_of("api.example.com").1.load_balancing,
        LoadBalancing::LeastResponseTime { .. }
    ));
}
