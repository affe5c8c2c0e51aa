//! Tier 1: compile, from manifests to a routing table and diagnostics. No I/O.

use std::net::IpAddr;
use std::sync::Arc;

use vane::compile::{compile, compile_cached, reasons, Compiled, Fragments, Options};
use vane::table::{BackendTarget, Diagnostic};

use crate::support::fixtures::{backend, docs, ingress, snapshot, INGRESS_CLASS};

fn ip(last: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, last])
}

fn compile_yaml(yaml: &str) -> Compiled {
    compile(&snapshot(yaml), &Options::default())
}

/// The backend (Service) name a request would reach, `None` for a 404.
fn route_to(compiled: &Compiled, host: &str, path: &str) -> Option<String> {
    let route = compiled.table.lookup(host, path)?;
    let name = &compiled.table.backend(route.backend)?.name;
    // "default/svc:80" -> "svc"
    Some(name.split(['/', ':']).nth(1).unwrap_or(name).to_owned())
}

fn reasons_of(diagnostics: &[Diagnostic]) -> Vec<(&str, &str)> {
    diagnostics
        .iter()
        .map(|d| (&*d.object.name, d.reason))
        .collect()
}

/// Services named `names`, each with one ready endpoint.
fn services(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| backend(n, 8080, &[ip(i as u8 + 1)]))
        .collect()
}

fn ingress_with_paths(name: &str, host: Option<&str>, paths: &[(&str, &str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  ingressClassName: vane\n  rules:\n"
    );
    yaml += &match host {
        Some(h) => format!("  - host: \"{h}\"\n    http:\n      paths:\n"),
        None => "  - http:\n      paths:\n".into(),
    };
    for (path, kind, service) in paths {
        yaml += &format!(
            "      - path: {path}\n        pathType: {kind}\n        backend: {{service: {{name: {service}, port: {{number: 80}}}}}}\n"
        );
    }
    yaml
}

#[test]
fn conformance_path_rules() {
    let mut documents = vec![INGRESS_CLASS.to_string()];
    documents.extend(services(&[
        "foo-exact",
        "foo-prefix",
        "aaa-prefix",
        "aaa-bbb-prefix",
        "trailing",
        "mixed-exact",
        "mixed-prefix",
    ]));
    documents.push(ingress_with_paths(
        "exact",
        Some("exact.example.com"),
        &[("/foo", "Exact", "foo-exact")],
    ));
    documents.push(ingress_with_paths(
        "prefix",
        Some("prefix.example.com"),
        &[
            ("/foo", "Prefix", "foo-prefix"),
            ("/aaa", "Prefix", "aaa-prefix"),
            ("/aaa/bbb", "Prefix", "aaa-bbb-prefix"),
        ],
    ));
    documents.push(ingress_with_paths(
        "trailing",
        Some("trailing.example.com"),
        &[("/aaa/bbb/", "Prefix", "trailing")],
    ));
    documents.push(ingress_with_paths(
        "mixed",
        Some("mixed.example.com"),
        &[
            ("/foo", "Prefix", "mixed-prefix"),
            ("/foo", "Exact", "mixed-exact"),
        ],
    ));
    let compiled = compile_yaml(&docs(&documents));
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );

    let cases: &[(&str, &str, Option<&str>)] = &[
        ("exact.example.com", "/foo", Some("foo-exact")),
        ("exact.example.com", "/foo/", None),
        ("exact.example.com", "/FOO", None),
        ("prefix.example.com", "/foo", Some("foo-prefix")),
        ("prefix.example.com", "/foo/", Some("foo-prefix")),
        ("prefix.example.com", "/foo/bar", Some("foo-prefix")),
        ("prefix.example.com", "/FOO", None),
        ("prefix.example.com", "/foobar", None),
        ("prefix.example.com", "/aaa", Some("aaa-prefix")),
        ("prefix.example.com", "/aaa/bbb", Some("aaa-bbb-prefix")),
        ("prefix.example.com", "/aaa/bbb/ccc", Some("aaa-bbb-prefix")),
        ("prefix.example.com", "/aaa/bbbxyz", Some("aaa-prefix")),
        ("prefix.example.com", "/aaaccc", None),
        ("trailing.example.com", "/aaa/bbb", Some("trailing")),
        ("trailing.example.com", "/aaa/bbb/", Some("trailing")),
        ("trailing.example.com", "/aaa/bbbb", None),
        ("mixed.example.com", "/foo", Some("mixed-exact")),
        ("mixed.example.com", "/foo/", Some("mixed-prefix")),
    ];
    for &(host, path, expected) in cases {
        assert_eq!(
            route_to(&compiled, host, path).as_deref(),
            expected,
            "{host}{path}"
        );
    }
}

#[test]
fn hosts_exact_then_wildcard_then_hostless() {
    let mut documents = vec![INGRESS_CLASS.to_string()];
    documents.extend(services(&["exact", "wildcard", "any"]));
    documents.push(ingress_with_paths(
        "a",
        Some("foo.bar.com"),
        &[("/", "Prefix", "exact")],
    ));
    documents.push(ingress_with_paths(
        "b",
        Some("*.bar.com"),
        &[("/", "Prefix", "wildcard")],
    ));
    documents.push(ingress_with_paths("c", None, &[("/", "Prefix", "any")]));
    let compiled = compile_yaml(&docs(&documents));
    for (host, expected) in [
        ("foo.bar.com", "exact"),
        ("FOO.Bar.com:8080", "exact"),
        ("baz.bar.com", "wildcard"),
        ("baz.foo.bar.com", "any"),
        ("bar.com", "any"),
        ("other.org", "any"),
    ] {
        assert_eq!(
            route_to(&compiled, host, "/x").as_deref(),
            Some(expected),
            "{host}"
        );
    }
}

#[test]
fn wildcard_host_matches_one_label_only() {
    let mut documents = vec![INGRESS_CLASS.to_string()];
    documents.extend(services(&["wildcard"]));
    documents.push(ingress_with_paths(
        "w",
        Some("*.foo.com"),
        &[("/", "Prefix", "wildcard")],
    ));
    let compiled = compile_yaml(&docs(&documents));
    assert_eq!(
        route_to(&compiled, "bar.foo.com", "/").as_deref(),
        Some("wildcard")
    );
    assert_eq!(route_to(&compiled, "baz.bar.foo.com", "/"), None);
    assert_eq!(route_to(&compiled, "foo.com", "/"), None);
}

#[test]
fn class_selection() {
    let class = |name: &str, controller: &str, default: bool| {
        let annotation = if default {
            "\n  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}"
        } else {
            ""
        };
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: {name}{annotation}\nspec: {{controller: {controller}}}\n"
        )
    };
    let ingress_yaml = |name: &str, class_name: Option<&str>, legacy_class: Option<&str>| {
        let mut yaml =
            format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n");
        if let Some(legacy) = legacy_class {
            yaml += &format!("  annotations: {{kubernetes.io/ingress.class: {legacy}}}\n");
        }
        yaml += "spec:\n";
        if let Some(class_name) = class_name {
            yaml += &format!("  ingressClassName: {class_name}\n");
        }
        yaml += &format!(
            "  rules:\n  - host: {name}.example.com\n    http:\n      paths:\n\
             \x20     - {{path: /, pathType: Prefix, backend: {{service: {{name: svc, port: {{number: 80}}}}}}}}\n"
        );
        yaml
    };
    let ingresses = [
        ingress_yaml("by-name", Some("vane"), None),
        ingress_yaml("other-name", Some("nginx"), None),
        ingress_yaml("legacy", None, Some("vane")),
        ingress_yaml("legacy-other", None, Some("nginx")),
        ingress_yaml("classless", None, None),
    ];
    let served = |compiled: &Compiled| -> Vec<String> {
        let mut names: Vec<String> = compiled
            .table
            .routes()
            .iter()
            .map(|r| r.ingress.name.to_string())
            .collect();
        names.sort();
        names
    };

    let mut documents = vec![
        class("vane", "vane.dev/ingress-controller", false),
        class("nginx", "k8s.io/ingress-nginx", false),
    ];
    documents.extend(services(&["svc"]));
    documents.extend(ingresses.iter().cloned());
    let compiled = compile_yaml(&docs(&documents));
    assert_eq!(served(&compiled), ["by-name", "legacy"]);
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );

    // Marked default: class-less Ingresses are ours too.
    documents[0] = class("vane", "vane.dev/ingress-controller", true);
    let compiled = compile_yaml(&docs(&documents));
    assert_eq!(served(&compiled), ["by-name", "classless", "legacy"]);

    // An IngressClass named vane that belongs to another controller is not ours.
    documents[0] = class("vane", "example.com/other", true);
    let compiled = compile_yaml(&docs(&documents));
    assert_eq!(served(&compiled), ["legacy"]);
    assert_eq!(
        reasons_of(&compiled.diagnostics),
        [("by-name", reasons::INGRESS_CLASS_NOT_FOUND)]
    );
}

#[test]
fn conflicts_go_to_the_oldest_ingress() {
    let with_time = |name: &str, namespace_time: &str, service: &str| {
        ingress(name, Some("app.example.com"), "/api", service).replace(
            "namespace: default}",
            &format!("namespace: default, creationTimestamp: \"{namespace_time}\"}}"),
        )
    };
    let mut documents = vec![INGRESS_CLASS.to_string()];
    documents.extend(services(&["old", "new", "tie"]));
    documents.push(with_time("newer", "2024-05-01T00:00:00Z", "new"));
    documents.push(with_time("older", "2024-01-01T00:00:00Z", "old"));
    documents.push(with_time("z-same-time", "2024-05-01T00:00:00Z", "tie"));
    let compiled =
        compile_yaml(&docs(&documents).replace("port: {name: http}", "port: {number: 80}"));
    assert_eq!(
        route_to(&compiled, "app.example.com", "/api").as_deref(),
        Some("old")
    );
    assert_eq!(
        reasons_of(&compiled.diagnostics),
        [
            ("newer", reasons::ROUTE_CONFLICT),
            ("z-same-time", reasons::ROUTE_CONFLICT)
        ]
    );
    assert!(
        compiled.diagnostics[0].message.contains("default/older"),
        "{}",
        compiled.diagnostics[0].message
    );

    // Without timestamps (standalone manifests), namespace/name decides.
    let mut documents = vec![INGRESS_CLASS.to_string()];
    documents.extend(services(&["first", "second"]));
    documents.push(ingress("b", Some("app.example.com"), "/", "second"));
    documents.push(ingress("a", Some("app.example.com"), "/", "first"));
    let compiled =
        compile_yaml(&docs(&documents).replace("port: {name: http}", "port: {number: 80}"));
    assert_eq!(
        route_to(&compiled, "app.example.com", "/").as_deref(),
        Some("first")
    );
    assert_eq!(
        reasons_of(&compiled.diagnostics),
        [("b", reasons::ROUTE_CONFLICT)]
    );
}

#[test]
fn named_ports_resolve_through_the_endpoint_slice_port_name() {
    let yaml = docs(&[
        INGRESS_CLASS.to_string(),
        // Service port 80 named "web" targets the container port named "http-alt"; the
        // EndpointSlice carries the resolved number under the Service port's name.
        "apiVersion: v1\nkind: Service\nmetadata: {name: app}\nspec:\n  ports:\n  - {name: metrics, port: 9000}\n  - {name: web, port: 80, targetPort: http-alt}\n".into(),
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: app-x\n  labels: {kubernetes.io/service-name: app}\naddressType: IPv4\n\
         ports:\n- {name: metrics, port: 9100}\n- {name: web, port: 3000}\nendpoints:\n- addresses: [10.1.0.1]\n- addresses: [10.1.0.2]\n  conditions: {ready: false}\n".into(),
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: by-name}\nspec:\n  ingressClassName: vane\n  rules:\n  - host: a.com\n    http:\n      paths:\n\
         \x20     - {path: /, pathType: Prefix, backend: {service: {name: app, port: {name: web}}}}\n  - host: b.com\n    http:\n      paths:\n\
         \x20     - {path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}\n".into(),
    ]);
    let compiled = compile_yaml(&yaml);
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    let a = compiled.table.lookup("a.com", "/").unwrap();
    let b = compiled.table.lookup("b.com", "/").unwrap();
    assert_eq!(
        a.backend, b.backend,
        "port by name and by number are one backend"
    );
    let backend = compiled.table.backend(a.backend).unwrap();
    assert_eq!(&*backend.name, "default/app:80");
    // Ready unset counts as ready; ready: false is out.
    let BackendTarget::Endpoints(endpoints) = &backend.target else {
        panic!("{backend:?}")
    };
    let addresses: Vec<String> = endpoints.iter().map(|e| e.address.to_string()).collect();
    assert_eq!(addresses, ["10.1.0.1:3000"]);
}

#[test]
fn unresolvable_backends_are_invalid_and_reported_without_touching_other_routes() {
    let rule = |host: &str, backend: &str| {
        format!("  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {backend}}}\n")
    };
    let ingress_yaml = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: mixed}}\nspec:\n  ingressClassName: vane\n  rules:\n{}{}{}{}{}",
        rule("good.com", "{service: {name: good, port: {number: 80}}}"),
        rule("missing.com", "{service: {name: nope, port: {number: 80}}}"),
        rule("port.com", "{service: {name: good, port: {number: 81}}}"),
        rule("noslice.com", "{service: {name: lonely, port: {number: 80}}}"),
        rule("resource.com", "{resource: {apiGroup: k8s.example.com, kind: StorageBucket, name: assets}}"),
    );
    let yaml = docs(&[
        INGRESS_CLASS.to_string(),
        backend("good", 8080, &[ip(1)]),
        crate::support::fixtures::service("lonely"),
        ingress_yaml,
    ]);
    let compiled = compile_yaml(&yaml);
    assert_eq!(
        reasons_of(&compiled.diagnostics),
        [
            ("mixed", reasons::SERVICE_NOT_FOUND),
            ("mixed", reasons::PORT_NOT_FOUND),
            ("mixed", reasons::NO_ENDPOINT_SLICES),
            ("mixed", reasons::UNSUPPORTED_BACKEND),
        ]
    );
    let target = |host: &str| {
        let route = compiled.table.lookup(host, "/").expect(host);
        compiled
            .table
            .backend(route.backend)
            .unwrap()
            .target
            .clone()
    };
    assert!(matches!(target("good.com"), BackendTarget::Endpoints(e) if e.len() == 1));
    for host in ["missing.com", "port.com", "noslice.com", "resource.com"] {
        assert!(matches!(target(host), BackendTarget::Invalid(_)), "{host}");
    }
}

#[test]
fn default_backend_catches_unmatched_requests_and_oldest_wins() {
    let default_backend = |name: &str, service: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}}}\nspec:\n  ingressClassName: vane\n\
             \x20 defaultBackend: {{service: {{name: {service}, port: {{number: 80}}}}}}\n"
        )
    };
    let mut documents = vec![INGRESS_CLASS.to_string()];
    documents.extend(services(&["fallback", "other", "app"]));
    documents.push(default_backend("a-default", "fallback"));
    documents.push(default_backend("b-default", "other"));
    documents.push(ingress_with_paths(
        "app",
        Some("app.com"),
        &[("/app", "Prefix", "app")],
    ));
    let compiled = compile_yaml(&docs(&documents));
    assert_eq!(
        route_to(&compiled, "app.com", "/app").as_deref(),
        Some("app")
    );
    assert_eq!(
        route_to(&compiled, "app.com", "/other").as_deref(),
        Some("fallback")
    );
    assert_eq!(
        route_to(&compiled, "unknown.org", "/").as_deref(),
        Some("fallback")
    );
    assert_eq!(
        reasons_of(&compiled.diagnostics),
        [("b-default", reasons::DEFAULT_BACKEND_CONFLICT)]
    );
}

#[test]
fn invalid_hosts_and_paths_are_reported_and_skipped() {
    let mut documents = vec![INGRESS_CLASS.to_string()];
    documents.extend(services(&["svc"]));
    documents.push(ingress_with_paths(
        "paths",
        Some("ok.com"),
        &[
            ("/fine", "Prefix", "svc"),
            ("relative", "Prefix", "svc"),
            ("/a//b", "Exact", "svc"),
            ("/x", "Sometimes", "svc"),
        ],
    ));
    documents.push(ingress_with_paths(
        "host",
        Some("bad_host.com"),
        &[("/", "Prefix", "svc")],
    ));
    documents.push(ingress_with_paths(
        "inner-wildcard",
        Some("foo.*.com"),
        &[("/", "Prefix", "svc")],
    ));
    let compiled = compile_yaml(&docs(&documents));
    assert_eq!(
        route_to(&compiled, "ok.com", "/fine").as_deref(),
        Some("svc")
    );
    assert_eq!(compiled.table.routes().len(), 1);
    assert_eq!(
        reasons_of(&compiled.diagnostics),
        [
            ("host", reasons::INVALID_HOST),
            ("inner-wildcard", reasons::INVALID_HOST),
            ("paths", reasons::INVALID_PATH),
            ("paths", reasons::INVALID_PATH),
            ("paths", reasons::INVALID_PATH),
        ]
    );
}

#[test]
fn compile_is_deterministic() {
    let mut documents = vec![INGRESS_CLASS.to_string()];
    documents.extend(services(&["a", "b", "c"]));
    documents.push(ingress_with_paths(
        "x",
        Some("x.com"),
        &[("/a", "Prefix", "a"), ("/b", "Exact", "b")],
    ));
    documents.push(ingress_with_paths(
        "y",
        None,
        &[("/c", "Prefix", "c"), ("/a", "Prefix", "missing")],
    ));
    let yaml = docs(&documents);
    let first = compile_yaml(&yaml);
    let second = compile_yaml(&yaml);
    assert_eq!(first.table.routes(), second.table.routes());
    assert_eq!(first.table.backends(), second.table.backends());
    assert_eq!(first.diagnostics, second.diagnostics);
}

/// A catalogue of objects that are well-formed YAML of the right kind but nonsense inside.
/// Compile must produce a table (and keep the good route) for every one of them.
#[test]
fn compile_is_total_over_a_catalogue_of_malformed_objects() {
    let malformed = [
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: empty}\n",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: nospec}\nspec: {ingressClassName: vane}\n",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {}\nspec: {ingressClassName: vane}\n",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: r}\nspec:\n  ingressClassName: vane\n  rules: [{}, {host: ''}, {http: {paths: []}}]\n",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: p}\nspec:\n  ingressClassName: vane\n  rules:\n  - http:\n      paths:\n      - {pathType: Prefix, backend: {}}\n      - {path: '', pathType: Exact, backend: {service: {name: ''}}}\n      - {path: /x, pathType: Prefix, backend: {service: {name: good, port: {}}}}\n",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: huge-port}\nspec:\n  ingressClassName: vane\n  rules:\n  - host: h.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: weird, port: {number: 80}}}}\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: weird}\nspec: {type: ExternalName, externalName: example.com, ports: [{port: 80}]}\n",
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: junk, labels: {kubernetes.io/service-name: good}}\naddressType: FQDN\nports: [{name: http, port: 99999}]\nendpoints: [{addresses: [not-an-ip]}, {addresses: []}]\n",
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: nolabel}\naddressType: IPv4\nendpoints: []\n",
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: vane}\n",
    ];
    for bad in malformed {
        let mut documents = vec![
            INGRESS_CLASS.to_string(),
            backend("good", 8080, &[ip(1)]),
            bad.to_string(),
        ];
        documents.push(ingress_with_paths(
            "good",
            Some("good.com"),
            &[("/", "Prefix", "good")],
        ));
        let compiled = compile_yaml(&docs(&documents));
        assert_eq!(
            route_to(&compiled, "good.com", "/").as_deref(),
            Some("good"),
            "with {bad}"
        );
    }
}

#[test]
fn terminating_endpoints_serve_only_when_no_ready_endpoint_is_left() {
    let slice = |endpoints: &str| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: app-x\n  labels: {{kubernetes.io/service-name: app}}\n\
             addressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n{endpoints}"
        )
    };
    let ready = "- {addresses: [10.0.0.1], conditions: {ready: true}}\n";
    let draining =
        "- {addresses: [10.0.0.2], conditions: {ready: false, serving: true, terminating: true}}\n";
    let gone = "- {addresses: [10.0.0.3], conditions: {ready: false, serving: false, terminating: true}}\n";
    let starting = "- {addresses: [10.0.0.4], conditions: {ready: false}}\n";
    let endpoints_of = |endpoints: String| {
        let yaml = docs(&[
            INGRESS_CLASS.to_string(),
            crate::support::fixtures::service("app"),
            slice(&endpoints),
            ingress("app", None, "/", "app"),
        ]);
        let compiled = compile_yaml(&yaml);
        match &compiled.table.backends()[0].target {
            BackendTarget::Endpoints(e) => e
                .iter()
                .map(|e| e.address.ip().to_string())
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        endpoints_of(format!("{ready}{draining}{gone}{starting}")),
        ["10.0.0.1"]
    );
    assert_eq!(
        endpoints_of(format!("{draining}{gone}{starting}")),
        ["10.0.0.2"]
    );
    assert!(endpoints_of(format!("{gone}{starting}")).is_empty());
}

#[test]
fn timeouts_come_from_annotations_over_the_policy_over_the_defaults() {
    use crate::support::fixtures::{annotate, policy};
    use std::time::Duration;
    use vane::table::Timeouts;
    let with_policy = docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", 8080, &[ip(1)]),
        backend("plain", 8080, &[ip(2)]),
        annotate(
            &ingress("annotated", Some("a.example.com"), "/", "app"),
            &[
                ("vane.dev/proxy-connect-timeout", "3"),
                ("vane.dev/proxy-read-timeout", "90s"),
                ("vane.dev/proxy-send-timeout", "forever"),
            ],
        ),
        ingress("from-policy", Some("b.example.com"), "/", "app"),
        ingress("defaults", Some("c.example.com"), "/", "plain"),
        policy(
            "app",
            "app",
            "timeouts: {connect: 2s, responseHeaders: 30s, idle: 45s, request: 5m}\n",
        ),
    ]);
    let compiled = compile_yaml(&with_policy);
    let timeouts = |host| compiled.table.lookup(host, "/").unwrap().timeouts;
    assert_eq!(
        timeouts("a.example.com"),
        Timeouts {
            connect: Duration::from_secs(3),
            response_headers: Duration::from_secs(90),
            read_idle: Duration::from_secs(90),
            // The invalid annotation falls back to the policy.
            send_idle: Duration::from_secs(45),
            request: Some(Duration::from_secs(300)),
        }
    );
    assert_eq!(
        timeouts("b.example.com"),
        Timeouts {
            connect: Duration::from_secs(2),
            response_headers: Duration::from_secs(30),
            read_idle: Duration::from_secs(45),
            send_idle: Duration::from_secs(45),
            request: Some(Duration::from_secs(300)),
        }
    );
    assert_eq!(timeouts("c.example.com"), Timeouts::default());
    let invalid: Vec<_> = compiled
        .diagnostics
        .iter()
        .filter(|d| d.reason == reasons::INVALID_ANNOTATION)
        .collect();
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert_eq!(&*invalid[0].object.name, "annotated");
    assert!(invalid[0].message.contains("vane.dev/proxy-send-timeout"));
}

#[test]
fn health_retry_and_circuit_breaker_come_from_the_policy() {
    use crate::support::fixtures::policy;
    use std::time::Duration;
    use vane::table::{CircuitBreaker, OutlierDetection, Probe, RetryOn, RetryPolicy};
    let yaml = docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", 8080, &[ip(1)]),
        backend("plain", 8080, &[ip(2)]),
        ingress("app", Some("a.example.com"), "/", "app"),
        ingress("plain", Some("b.example.com"), "/", "plain"),
        policy(
            "app",
            "app",
            "healthCheck:\n  active: {type: HTTP, http: {path: /healthz, method: HEAD}, interval: 2s, port: 9000}\n  \
             passive: {consecutive5xx: 4, baseEjectionTime: 10s, panicThresholdPercent: 0}\n\
             retry: {attempts: 2, perTryTimeout: 1s, retryOn: [ConnectFailure, \"503\"], budget: {percent: 5}}\n\
             circuitBreaker: {maxConnections: 10, maxRequests: 20}\n",
        ),
    ]);
    let compiled = compile_yaml(&yaml);
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    let backend_of = |host| {
        let route = compiled.table.lookup(host, "/").unwrap();
        compiled.table.backend(route.backend).unwrap()
    };
    let app = backend_of("a.example.com");
    let active = app.health.active.as_ref().unwrap();
    assert_eq!(
        active.probe,
        Probe::Http {
            method: http::Method::HEAD,
            path: "/healthz".parse().unwrap(),
            host: None,
            expected: vec![(200, 399)],
        }
    );
    assert_eq!(active.interval, Duration::from_secs(2));
    assert_eq!(active.port, Some(9000));
    assert_eq!(
        (active.healthy_threshold, active.unhealthy_threshold),
        (2, 3)
    );
    assert_eq!(
        app.health.passive,
        OutlierDetection {
            consecutive_5xx: Some(4),
            consecutive_gateway_errors: None,
            base_ejection_time: Duration::from_secs(10),
            panic_threshold_percent: 0,
            ..OutlierDetection::default()
        }
    );
    assert_eq!(
        app.retry,
        RetryPolicy {
            attempts: 2,
            per_try_timeout: Some(Duration::from_secs(1)),
            retry_on: RetryOn::CONNECT_FAILURE.with(RetryOn::SERVICE_UNAVAILABLE),
            budget_percent: 5,
            ..RetryPolicy::default()
        }
    );
    assert_eq!(
        app.circuit_breaker,
        CircuitBreaker {
            max_connections: Some(10),
            max_pending_requests: None,
            max_requests: Some(20),
        }
    );
    let plain = backend_of("b.example.com");
    assert_eq!(plain.health.active, None);
    assert_eq!(plain.health.passive, OutlierDetection::default());
    assert_eq!(plain.retry, RetryPolicy::default());
    assert_eq!(plain.circuit_breaker, CircuitBreaker::default());
}

#[test]
fn out_of_bounds_policies_are_reported_by_field_and_bound_and_never_applied() {
    use crate::support::fixtures::policy;
    use vane::table::LoadBalancing;
    // The largest prime below 2^32: a Maglev table of 17 GB had it been accepted; the old
    // prime test overflowed on it, and a timeout of 99999h is a deadline years away.
    let yaml = docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", 8080, &[ip(1)]),
        ingress("app", Some("a.example.com"), "/", "app"),
        policy(
            "huge",
            "app",
            "loadBalancer: {type: ConsistentHash, consistentHash: {hashOn: SourceIP, tableSize: 4294967291}}\n\
             timeouts: {request: 99999h}\n",
        ),
    ]);
    let compiled = compile_yaml(&yaml);
    let invalid: Vec<_> = compiled
        .diagnostics
        .iter()
        .filter(|d| d.reason == reasons::INVALID_POLICY)
        .collect();
    assert_eq!(invalid.len(), 1, "{:?}", compiled.diagnostics);
    assert_eq!(&*invalid[0].object.name, "huge");
    for fragment in [
        "spec.loadBalancer.consistentHash.tableSize: 4294967291 is not between 251 and 1310719",
        "spec.timeouts.request: 99999h is not between 1ms and 24h",
    ] {
        assert!(
            invalid[0].message.contains(fragment),
            "{}",
            invalid[0].message
        );
    }
    // The invalid policy is not attached: the backend keeps the defaults.
    let route = compiled.table.lookup("a.example.com", "/").unwrap();
    assert_eq!(route.timeouts, vane::table::Timeouts::default());
    let backend = compiled.table.backend(route.backend).unwrap();
    assert_eq!(backend.load_balancing, LoadBalancing::RoundRobin);
}

#[test]
fn bad_endpoint_ports_and_addresses_are_reported_and_the_rest_still_serves() {
    let slice = |name: &str, address_type: &str, port: i64, addresses: &str| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: default\n  labels: {{kubernetes.io/service-name: app}}\n\
             addressType: {address_type}\nports: [{{name: http, port: {port}}}]\nendpoints:\n- {{addresses: {addresses}}}\n"
        )
    };
    let yaml = docs(&[
        INGRESS_CLASS.to_string(),
        "apiVersion: v1\nkind: Service\nmetadata: {name: app, namespace: default}\n\
         spec:\n  ports:\n  - {name: http, port: 80, targetPort: 70000}\n"
            .to_string(),
        slice("good", "IPv4", 8080, "[10.0.0.1]"),
        slice("mixed", "IPv4", 8080, "[not-an-ip]"),
        slice("v6-in-v4", "IPv4", 8080, "['::1']"),
        slice("huge-port", "IPv4", 99999, "[10.0.0.2]"),
        slice("negative-port", "IPv4", -1, "[10.0.0.3]"),
        slice("fqdn", "FQDN", 8080, "[app.example.com]"),
        ingress("app", Some("a.example.com"), "/", "app"),
        ingress("again", Some("b.example.com"), "/", "app"),
    ]);
    let compiled = compile_yaml(&yaml);
    let route = compiled.table.lookup("a.example.com", "/").unwrap();
    let endpoints: Vec<String> = compiled
        .table
        .backend(route.backend)
        .unwrap()
        .endpoints()
        .iter()
        .map(|e| e.address.to_string())
        .collect();
    assert_eq!(endpoints, ["10.0.0.1:8080"]);
    for ingress in ["app", "again"] {
        let messages: Vec<&str> = compiled
            .diagnostics
            .iter()
            .filter(|d| &*d.object.name == ingress && d.reason == reasons::INVALID_ENDPOINT)
            .map(|d| d.message.as_str())
            .collect();
        for fragment in [
            "Service default/app: targetPort 70000 is not between 1 and 65535",
            "EndpointSlice default/mixed: 1 address(es) are not IPv4 addresses (the first: \"not-an-ip\")",
            "EndpointSlice default/v6-in-v4: 1 address(es) are not IPv4 addresses (the first: \"::1\")",
            "EndpointSlice default/huge-port: port \"http\" is 99999, not between 1 and 65535",
            "EndpointSlice default/negative-port: port \"http\" is -1, not between 1 and 65535",
            "EndpointSlice default/fqdn: addressType FQDN is not supported",
        ] {
            assert!(
                messages.iter().any(|m| m.contains(fragment)),
                "{ingress}: missing {fragment:?} in {messages:#?}"
            );
        }
        assert_eq!(messages.len(), 6, "{ingress}: {messages:#?}");
    }
}

/// ingress-nginx's annotations are honoured, ignored (served, reported) or refused (not
/// served); names under either prefix that nobody knows are reported as typos. One diagnostic
/// per kind and Ingress.
#[test]
fn unhonoured_annotations_are_ignored_refused_or_unknown_as_the_table_says() {
    use crate::support::fixtures::{annotate, has_diagnostic};
    let mut documents = vec![INGRESS_CLASS.to_string()];
    documents.extend(services(&["app"]));
    documents.push(annotate(
        &ingress("tuned", Some("tuned.example.com"), "/", "app"),
        &[
            ("nginx.ingress.kubernetes.io/rewrite-target", "/"),
            ("nginx.ingress.kubernetes.io/proxy-buffering", "on"),
            ("nginx.ingress.kubernetes.io/proxy-buffer-size", "8k"),
            ("nginx.ingress.kubernetes.io/rewrite-targett", "/"),
            ("vane.dev/hashby", "path"),
            ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
        ],
    ));
    documents.push(annotate(
        &ingress("guarded", Some("guarded.example.com"), "/", "app"),
        &[
            (
                "nginx.ingress.kubernetes.io/auth-proxy-set-headers",
                "auth-headers",
            ),
            ("nginx.ingress.kubernetes.io/limit-connections", "10"),
            ("nginx.ingress.kubernetes.io/proxy-buffering", "on"),
        ],
    ));
    let compiled = compile_yaml(&docs(&documents));
    let diagnostics = &compiled.diagnostics;
    let of = |name: &str, reason: &str| {
        diagnostics
            .iter()
            .filter(|d| &*d.object.name == name && d.reason == reason)
            .count()
    };
    assert_eq!(
        of("tuned", reasons::IGNORED_ANNOTATION),
        1,
        "{diagnostics:?}"
    );
    assert!(has_diagnostic(
        diagnostics,
        reasons::IGNORED_ANNOTATION,
        "proxy-buffer-size (vane streams"
    ));
    assert_eq!(
        of("tuned", reasons::UNKNOWN_ANNOTATION),
        1,
        "{diagnostics:?}"
    );
    assert!(has_diagnostic(
        diagnostics,
        reasons::UNKNOWN_ANNOTATION,
        "nginx.ingress.kubernetes.io/rewrite-targett; vane.dev/hashby"
    ));
    assert_eq!(of("tuned", reasons::REFUSED_ANNOTATION), 0);
    assert!(!diagnostics
        .iter()
        .any(|d| d.message.contains("last-applied")));
    let tuned = compiled.table.lookup("tuned.example.com", "/").unwrap();
    assert!(tuned
        .transforms
        .as_ref()
        .is_none_or(|t| t.refused.is_none()));
    assert!(tuned.rewrite.is_some(), "rewrite-target is honoured");

    assert_eq!(
        of("guarded", reasons::REFUSED_ANNOTATION),
        1,
        "{diagnostics:?}"
    );
    assert!(has_diagnostic(
        diagnostics,
        reasons::REFUSED_ANNOTATION,
        "auth-proxy-set-headers (headers from a ConfigMap"
    ));
    assert!(has_diagnostic(
        diagnostics,
        reasons::REFUSED_ANNOTATION,
        "limit-connections"
    ));
    assert_eq!(of("guarded", reasons::IGNORED_ANNOTATION), 1);
    let guarded = compiled.table.lookup("guarded.example.com", "/").unwrap();
    let refused = guarded
        .transforms
        .as_ref()
        .unwrap()
        .refused
        .as_deref()
        .unwrap();
    assert!(refused.contains("auth-proxy-set-headers"), "{refused}");
}

/// However many annotations an Ingress has, each kind is one diagnostic naming a few of them.
#[test]
fn many_unknown_annotations_are_one_bounded_diagnostic() {
    use crate::support::fixtures::annotate;
    let names: Vec<String> = (0..100).map(|i| format!("vane.dev/typo-{i:03}")).collect();
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x")).collect();
    let mut documents = vec![INGRESS_CLASS.to_string()];
    documents.extend(services(&["app"]));
    documents.push(annotate(&ingress("typos", None, "/", "app"), &pairs));
    let compiled = compile_yaml(&docs(&documents));
    let unknown: Vec<&Diagnostic> = compiled
        .diagnostics
        .iter()
        .filter(|d| d.reason == reasons::UNKNOWN_ANNOTATION)
        .collect();
    assert_eq!(unknown.len(), 1);
    assert!(
        unknown[0].message.contains("and 92 more"),
        "{}",
        unknown[0].message
    );
    assert!(unknown[0].message.len() < 400, "{}", unknown[0].message);
}

/// A canary written for ingress-nginx is a canary in vane too, not a second main Ingress.
#[test]
fn ingress_nginx_canary_annotations_make_a_canary() {
    use crate::support::fixtures::annotate;
    let mut documents = vec![INGRESS_CLASS.to_string()];
    documents.extend(services(&["app", "next"]));
    documents.push(ingress("main", Some("shop.example.com"), "/", "app"));
    documents.push(annotate(
        &ingress("main-canary", Some("shop.example.com"), "/", "next"),
        &[
            ("nginx.ingress.kubernetes.io/canary", "true"),
            ("nginx.ingress.kubernetes.io/canary-weight", "30"),
            ("nginx.ingress.kubernetes.io/canary-by-header", "x-canary"),
        ],
    ));
    let compiled = compile_yaml(&docs(&documents));
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    assert_eq!(
        route_to(&compiled, "shop.example.com", "/").as_deref(),
        Some("app")
    );
    let route = compiled.table.lookup("shop.example.com", "/").unwrap();
    let canary = route
        .canary
        .as_ref()
        .expect("the second Ingress is a canary");
    assert_eq!(&*canary.ingress.name, "main-canary");
    assert_eq!(canary.weight_percent, 30);
    assert_eq!(canary.by_header.as_ref().unwrap(), "x-canary");
}

/// A compile that reuses an Ingress's fragment hands the next table the very backend (the same
/// allocation) the last table had, which is what lets publish keep its runtime state without
/// comparing it field by field; a changed Ingress gets a new one.
#[test]
fn a_reused_fragment_shares_its_backend_with_the_last_table() {
    let yaml = docs(&[
        INGRESS_CLASS.to_owned(),
        backend("a", 8080, &[ip(1)]),
        backend("b", 8080, &[ip(2)]),
        ingress("a", Some("a.example.com"), "/", "a"),
        ingress("b", Some("b.example.com"), "/", "b"),
    ]);
    let mut snapshot = snapshot(&yaml);
    let options = Options::default();
    let mut fragments = Fragments::default();
    let first = compile_cached(&snapshot, &options, &mut fragments).table;
    let changed = docs(&[ingress("b", Some("b2.example.com"), "/", "b")]);
    let changed = crate::support::fixtures::snapshot(&changed).ingresses;
    let at = snapshot
        .ingresses
        .iter()
        .position(|i| i.metadata.name.as_deref() == Some("b"))
        .expect("Ingress b");
    snapshot.ingresses[at] = Arc::clone(&changed[0]);
    let second = compile_cached(&snapshot, &options, &mut fragments).table;

    let backend_of = |table: &vane::table::RoutingTable, host: &str| {
        let route = table.lookup(host, "/").expect("a route");
        Arc::clone(&table.backends()[route.backend])
    };
    assert!(Arc::ptr_eq(
        &backend_of(&first, "a.example.com"),
        &backend_of(&second, "a.example.com")
    ));
    assert!(!Arc::ptr_eq(
        &backend_of(&first, "b.example.com"),
        &backend_of(&second, "b2.example.com")
    ));
    assert_eq!(second.same_backends(&first), vec![Some(0), Some(1)]);
}
