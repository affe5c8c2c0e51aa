//! Property tests (`prop_*`): compile (and building the balancers of its table), the annotation
//! parsers and request-path normalization never panic and stay fast on arbitrary, hostile
//! input; normal paths are stable. `make fuzz` runs them longer (`PROPTEST_CASES`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{json, Value};
use vane::balance::Balancers;
use vane::compile::{compile, compile_cached, Compiled, Fragments, Options};
use vane::endpoint::EndpointRegistry;
use vane::snapshot::Snapshot;
use vane::table::RoutingTable;

/// 64 cases in `make test`; `PROPTEST_CASES` (as `make fuzz` sets it) overrides.
pub fn config() -> ProptestConfig {
    let default = ProptestConfig::default();
    match std::env::var_os("PROPTEST_CASES") {
        Some(_) => default,
        None => ProptestConfig {
            cases: 64,
            ..default
        },
    }
}

/// Names, hosts and paths as a hostile user might write them.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{1,6}",
        Just(String::new()),
        Just("..".to_string()),
        Just("%2F".to_string()),
        Just("*.example.com".to_string()),
        Just("/a/../b".to_string()),
        Just("//x".to_string()),
        "/[a-z%./]{0,12}",
        "\\PC{0,8}",
    ]
}

/// Numbers around every boundary.
fn number() -> impl Strategy<Value = i64> {
    prop_oneof![
        -2i64..70_000,
        Just(0),
        Just(65_535),
        Just(65_536),
        Just(i64::from(i32::MAX)),
        Just(i64::from(u32::MAX)),
        Just(4_294_967_291), // the largest prime below 2^32
        Just(50_000_017),
        any::<i64>(),
    ]
}

/// Mostly the Service that policies and Ingresses name, so that they meet.
fn service_name() -> impl Strategy<Value = String> {
    prop_oneof![3 => Just("app".to_string()), 1 => text()]
}

/// Mostly the port Ingresses name, so that backends resolve.
fn port() -> impl Strategy<Value = i64> {
    prop_oneof![3 => Just(80), 1 => number()]
}

fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,5}(h|m|s|ms)",
        Just("99999h99999h99999h99999h".to_string()),
        Just("0s".to_string()),
        text(),
    ]
}

/// Boxed: unboxed, the nested strategies of many alternatives overflow a test thread's stack.
fn annotations() -> BoxedStrategy<Value> {
    let key = prop_oneof![
        Just("vane.dev/load-balance"),
        Just("vane.dev/hash-by"),
        Just("vane.dev/slow-start"),
        Just("vane.dev/affinity"),
        Just("vane.dev/session-cookie-max-age"),
        Just("vane.dev/canary"),
        Just("vane.dev/canary-weight"),
        Just("vane.dev/canary-by-header"),
        Just("vane.dev/proxy-connect-timeout"),
        Just("vane.dev/proxy-request-timeout"),
        Just("vane.dev/hsts"),
        Just("vane.dev/auth-tls-secret"),
        Just("vane.dev/backend-protocol"),
        Just("nginx.ingress.kubernetes.io/auth-secret-type"),
        Just("vane.dev/auth-realm"),
        Just("vane.dev/satisfy"),
        Just("vane.dev/auth-url"),
        Just("kubernetes.io/ingress.class"),
    ];
    let value = prop_oneof![
        text(),
        number().prop_map(|n| n.to_string()),
        duration(),
        Just("consistent-hash".to_string()),
        Just("true".to_string()),
        Just("cookie".to_string()),
        Just("auth-map".to_string()),
        Just("any".to_string()),
    ];
    // Basic auth, often enough to meet the Secrets of `auth_secret`.
    let auth = proptest::option::of((
        prop_oneof![Just("basic"), Just("digest")],
        prop_oneof![3 => Just("users".to_string()), 1 => text()],
    ));
    (proptest::collection::btree_map(key, value, 0..4), auth)
        .prop_map(|(mut m, auth)| {
            if let Some((kind, secret)) = auth {
                m.insert("nginx.ingress.kubernetes.io/auth-type", kind.to_string());
                m.insert("vane.dev/auth-secret", secret);
            }
            json!(m)
        })
        .boxed()
}

fn ingress() -> impl Strategy<Value = Value> {
    let path = (
        text(),
        prop_oneof![
            Just("Exact"),
            Just("Prefix"),
            Just("ImplementationSpecific"),
            Just("Bogus")
        ],
        service_name(),
        port(),
    );
    (
        text(),
        annotations(),
        proptest::option::of(text()),
        proptest::collection::vec(path, 0..4),
    )
        .prop_map(|(name, annotations, host, paths)| {
            let paths: Vec<Value> = paths
                .into_iter()
                .map(|(path, kind, service, port)| {
                    json!({"path": path, "pathType": kind,
                           "backend": {"service": {"name": service, "port": {"number": port.clamp(i32::MIN.into(), i32::MAX.into())}}}})
                })
                .collect();
            json!({
                "metadata": {"name": name, "namespace": "default", "annotations": annotations},
                "spec": {"ingressClassName": "vane",
                         "tls": [{"hosts": [host.clone().unwrap_or_default()], "secretName": "tls"}],
                         "rules": [{"host": host, "http": {"paths": paths}}]}
            })
        })
}

fn service_and_slice() -> impl Strategy<Value = (Value, Value)> {
    let address = prop_oneof![
        Just("10.0.0.1".to_string()),
        Just("::1".to_string()),
        Just("999.1.1.1".to_string()),
        text(),
    ];
    (
        service_name(),
        port(),
        number(),
        prop_oneof![Just("IPv4"), Just("IPv6"), Just("FQDN"), Just("")],
        proptest::collection::vec(address, 0..4),
    )
        .prop_map(|(name, port, target, address_type, addresses)| {
            let int32 = |n: i64| n.clamp(i32::MIN.into(), i32::MAX.into());
            let service = json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"ports": [{"name": "http", "port": int32(port), "targetPort": int32(target)}]}
            });
            let endpoints: Vec<Value> = addresses.into_iter().map(|a| json!({"addresses": [a]})).collect();
            let slice = json!({
                "metadata": {"name": format!("{name}-x"), "namespace": "default",
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": address_type,
                "ports": [{"name": "http", "port": int32(port)}],
                "endpoints": endpoints,
            });
            (service, slice)
        })
}

fn policy() -> impl Strategy<Value = Value> {
    (
        service_name(),
        number(),
        number(),
        duration(),
        duration(),
        prop_oneof![Just("Maglev"), Just("RingHash")],
    )
        .prop_map(|(service, size, count, timeout, interval, algorithm)| {
            let u32_of = |n: i64| n.clamp(0, u32::MAX.into());
            json!({
                "metadata": {"name": format!("p-{service}"), "namespace": "default"},
                "spec": {
                    "targetRefs": [{"group": "", "kind": "Service", "name": service}],
                    "loadBalancer": {"type": "ConsistentHash",
                                     "consistentHash": {"hashOn": "SourceIP", "algorithm": algorithm, "tableSize": u32_of(size)},
                                     "endpointWeights": [{"address": "10.0.0.1", "weight": u32_of(count)}]},
                    "healthCheck": {"active": {"type": "TCP", "interval": interval, "healthyThreshold": u32_of(count)},
                                    "passive": {"maxEjectionTime": timeout, "maxEjectionPercent": u32_of(count)}},
                    "retry": {"attempts": u32_of(count), "perTryTimeout": timeout},
                    "timeouts": {"connect": timeout, "request": interval},
                    "circuitBreaker": {"maxConnections": u32_of(count), "maxPendingRequests": u32_of(size)}
                }
            })
        })
}

/// The Secret `users` of basic auth: usable, empty, without the `auth` key, or of bad lines.
fn auth_secret() -> BoxedStrategy<Value> {
    let file = prop_oneof![
        Just("alice:{PLAIN}a\nbob:$apr1$63JlJ2NH$smE0mnB5h3tDri0zkpWXt1\n".to_string()),
        Just("alice:{PLAIN}b\n".to_string()),
        Just(String::new()),
        text(),
    ];
    (file, any::<bool>(), text())
        .prop_map(|(file, under_auth, other)| {
            let key = if under_auth { "auth" } else { "alice" };
            json!({
                "metadata": {"name": "users", "namespace": "default"},
                "type": "Opaque",
                "stringData": {key: file, "bob": other},
            })
        })
        .boxed()
}

/// Typed objects from JSON; what does not deserialize is left out, as the sources do.
fn typed<T: serde::de::DeserializeOwned>(values: Vec<Value>) -> Vec<Arc<T>> {
    values
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .map(Arc::new)
        .collect()
}

/// A snapshot of our IngressClass and these objects.
fn snapshot(
    ingresses: Vec<Value>,
    backends: Vec<(Value, Value)>,
    (policies, secrets): (Vec<Value>, Vec<Value>),
) -> Snapshot {
    let class = json!({"metadata": {"name": "vane"}, "spec": {"controller": "vane.dev/ingress-controller"}});
    let (services, slices): (Vec<Value>, Vec<Value>) = backends.into_iter().unzip();
    Snapshot {
        ingress_classes: typed(vec![class]),
        ingresses: typed(ingresses),
        services: typed(services),
        endpoint_slices: typed(slices),
        secrets: typed(secrets),
        backend_policies: typed(policies),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn prop_compile_is_total_and_fast_on_hostile_snapshots(
        ingresses in proptest::collection::vec(ingress(), 0..5),
        backends in proptest::collection::vec(service_and_slice(), 0..4),
        policies in proptest::collection::vec(policy(), 0..3),
        secrets in proptest::collection::vec(auth_secret(), 0..2),
    ) {
        let snapshot = snapshot(ingresses, backends, (policies, secrets));
        let started = Instant::now();
        let compiled = compile(&snapshot, &Options::default());
        // The balancers are where a table size or weight turns into memory.
        let table: &RoutingTable = &compiled.table;
        let same = vec![None; table.backends().len()];
        let _balancers = Balancers::build(
            table,
            &same,
            &Balancers::default(),
            &EndpointRegistry::default(),
            tokio::time::Instant::now(),
        );
        prop_assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        for diagnostic in &compiled.diagnostics {
            prop_assert!(!diagnostic.message.is_empty());
        }
    }

    /// Over any sequence of changes, compiling with the fragments of the previous compiles
    /// gives what compiling from scratch gives.
    #[test]
    fn prop_cached_compile_equals_a_full_compile(
        ingresses in proptest::collection::vec(any_ingress(), 0..6),
        backends in proptest::collection::vec(service_and_slice(), 0..4),
        policies in proptest::collection::vec(policy(), 0..2),
        secrets in proptest::collection::vec(auth_secret(), 0..2),
        changes in proptest::collection::vec(change(), 1..12),
    ) {
        let mut snapshot = snapshot(ingresses, backends, (policies, secrets));
        let options = Options::default();
        let mut fragments = Fragments::default();
        same_output(&compile_cached(&snapshot, &options, &mut fragments), &compile(&snapshot, &options))?;
        for change in changes {
            match change {
                Change::Ingress(at, new) => apply(&mut snapshot.ingresses, &at, new),
                // A Service and its EndpointSlice change apart: most real changes are a slice's
                // endpoints alone.
                Change::Service(at, new) => apply(&mut snapshot.services, &at, new),
                Change::Slice(at, new) => apply(&mut snapshot.endpoint_slices, &at, new),
                Change::Policy(at, new) => apply(&mut snapshot.backend_policies, &at, new),
                // A rotated, deleted or created Secret of basic auth users.
                Change::Secret(at, new) => apply(&mut snapshot.secrets, &at, new),
            }
            let cached = compile_cached(&snapshot, &options, &mut fragments);
            same_output(&cached, &compile(&snapshot, &options))?;
        }
    }
}

/// An Ingress with or without `spec.tls` (fragments leave those with TLS to the full path).
fn any_ingress() -> impl Strategy<Value = Value> {
    (ingress(), any::<bool>()).prop_map(|(mut ingress, tls)| {
        if !tls {
            if let Some(spec) = ingress["spec"].as_object_mut() {
                spec.remove("tls");
            }
        }
        ingress
    })
}

/// One change to a snapshot: the object at an index replaced (or added), or removed.
#[derive(Clone, Debug)]
enum Change {
    Ingress(prop::sample::Index, Option<Value>),
    Service(prop::sample::Index, Option<Value>),
    Slice(prop::sample::Index, Option<Value>),
    Policy(prop::sample::Index, Option<Value>),
    Secret(prop::sample::Index, Option<Value>),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => (any::<prop::sample::Index>(), proptest::option::of(any_ingress()))
            .prop_map(|(at, new)| Change::Ingress(at, new)),
        1 => (any::<prop::sample::Index>(), proptest::option::of(service_and_slice()))
            .prop_map(|(at, new)| Change::Service(at, new.map(|(service, _)| service))),
        2 => (any::<prop::sample::Index>(), proptest::option::of(service_and_slice()))
            .prop_map(|(at, new)| Change::Slice(at, new.map(|(_, slice)| slice))),
        1 => (any::<prop::sample::Index>(), proptest::option::of(policy()))
            .prop_map(|(at, new)| Change::Policy(at, new)),
        2 => (any::<prop::sample::Index>(), proptest::option::of(auth_secret()))
            .prop_map(|(at, new)| Change::Secret(at, new)),
    ]
}

/// Replaces (or adds) the object at `at` with `new`, or removes it; the others keep their `Arc`s.
fn apply<T: serde::de::DeserializeOwned>(
    objects: &mut Vec<Arc<T>>,
    at: &prop::sample::Index,
    new: Option<Value>,
) {
    let at = (!objects.is_empty()).then(|| at.index(objects.len()));
    match (new.map(|v| typed::<T>(vec![v])), at) {
        (Some(mut new), Some(at)) if !new.is_empty() => objects[at] = new.remove(0),
        (Some(new), _) => objects.extend(new),
        (None, Some(at)) => {
            objects.remove(at);
        }
        (None, None) => {}
    }
}

/// What two compiles must agree on.
fn same_output(cached: &Compiled, full: &Compiled) -> Result<(), TestCaseError> {
    prop_assert_eq!(cached.table.routes(), full.table.routes());
    prop_assert_eq!(cached.table.backends(), full.table.backends());
    prop_assert_eq!(&cached.diagnostics, &full.diagnostics);
    prop_assert_eq!(&cached.ingresses, &full.ingresses);
    prop_assert_eq!(&cached.policies, &full.policies);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn prop_annotation_parsers_never_panic(value in prop_oneof![any::<String>(), text(), number().prop_map(|n| n.to_string()), duration()]) {
        use vane::api::annotations::*;
        let _ = parse_percent(&value);
        let _ = parse_header_name(&value);
        let _ = parse_header_value(&value);
        let _ = parse_cookie_name(&value);
        let _ = parse_cookie_path(&value);
        let _ = parse_affinity(&value);
        let _ = parse_same_site(&value);
        let _ = parse_bool(&value);
        let _ = parse_verify_client(&value);
        let _ = parse_secret_ref(&value);
        let _ = parse_backend_protocol(&value);
        let _ = parse_auth_type(&value);
        let _ = parse_auth_secret_type(&value);
        let _ = parse_realm(&value);
        let _ = parse_satisfy(&value);
        let _ = parse_method(&value);
        let _ = parse_header_names(&value);
        let _ = parse_query_param(&value);
        let _ = vane::table::PasswordHash::parse(&value);
        let _ = parse_algorithm(&value);
        let _ = parse_hash_by(&value);
        if let Ok(hsts) = parse_hsts(&value) {
            let _ = hsts.header_value();
        }
        // Whatever parses is within the bounds, so `now + timeout` cannot overflow.
        for parsed in [parse_timeout(&value), parse_slow_start(&value), parse_max_age(&value)].into_iter().flatten() {
            prop_assert!(parsed <= Duration::from_secs(366 * 86_400));
        }
    }

    #[test]
    fn prop_request_paths_normalize_once_and_for_all(
        path in prop_oneof![
            any::<String>(),
            "(/|//|/\\.|/\\.\\.|/%2[eE]|/%2[fF]|%|%%|%3|%32|%65|[a-z]){0,16}",
        ]
    ) {
        use vane::table::normalize_request_path;
        let normal = normalize_request_path(&path);
        let again = normalize_request_path(&normal);
        prop_assert_eq!(again.as_ref(), normal.as_ref(), "from {:?}", path);
        if path.starts_with('/') {
            prop_assert!(normal.starts_with('/'));
            for bad in ["//", "/../", "/./"] {
                prop_assert!(!normal.contains(bad), "{:?} from {:?}", normal, path);
            }
            prop_assert!(!normal.ends_with("/..") && !normal.ends_with("/."), "{:?}", normal);
        }
    }

    #[test]
    fn prop_path_lookup_matches_the_normal_form(
        rules in proptest::collection::vec(("/[a-z]{0,3}(/[a-z]{1,3}){0,2}", any::<bool>()), 0..6),
        path in "(/|//|/\\.\\.|/%2e|/[a-z]{1,3}){0,6}",
    ) {
        let matcher = vane::table::PathMatcher::new(rules.iter().enumerate().map(|(i, (rule, exact))| {
            let rule = if *exact { vane::table::PathRule::exact(rule) } else { vane::table::PathRule::prefix(rule) };
            (rule, i)
        }));
        let normal = vane::table::normalize_request_path(&path);
        // Matching never panics, and a normal path routes as its normal form does.
        let again = vane::table::normalize_request_path(&normal);
        prop_assert_eq!(matcher.lookup(&normal), matcher.lookup(&again));
    }
}
