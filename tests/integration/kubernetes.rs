//! Tier 3: vane's Kubernetes source, with the real kube client talking HTTP to the in-process
//! API server (list, watch, resourceVersion, 410 Gone, status patches, Leases, Events).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::StatusCode;
use tokio_util::sync::CancellationToken;
use vane::app::{self, Running};
use vane::args::{Config, LogFormat, Source};
use vane::k8s::{KubeSettings, LeaseSettings, Publish};
use vane_test_apiserver::ApiServer;

use crate::support::client::{client, get, status_of};
use crate::support::fixtures::{backend, docs, ingress, INGRESS_CLASS};
use crate::support::origin::{self, Origins};
use crate::support::wait::eventually;

/// A vane instance running in this process against the test API server.
struct Vane {
    http: SocketAddr,
    admin: SocketAddr,
    metrics: SocketAddr,
    debug: SocketAddr,
    shutdown: CancellationToken,
    running: Option<Running>,
}

impl Vane {
    async fn start(api: &ApiServer, dir: &Path, identity: &str, publish: Option<Publish>) -> Vane {
        Self::start_with(api, dir, identity, |settings| settings.publish = publish).await
    }

    /// Starts with short lease timings; `adjust` may change the other Kubernetes settings.
    async fn start_with(
        api: &ApiServer,
        dir: &Path,
        identity: &str,
        adjust: impl FnOnce(&mut KubeSettings),
    ) -> Vane {
        let lease = LeaseSettings {
            lease_duration: Duration::from_secs(2),
            renew_deadline: Duration::from_millis(1200),
            retry_period: Duration::from_millis(100),
            ..LeaseSettings::new("vane-leader".into(), "default".into(), identity.into())
        };
        let mut settings = KubeSettings {
            kubeconfig: Some(api.write_kubeconfig(dir)),
            watch_namespaces: Vec::new(),
            publish: None,
            update_status: true,
            lease,
        };
        adjust(&mut settings);
        let config = Config {
            source: Source::Kubernetes(settings),
            ingress_class: "vane".into(),
            controller_name: "vane.dev/ingress-controller".into(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            https_addr: "127.0.0.1:0".parse().unwrap(),
            default_ssl_certificate: None,
            admin_addr: "127.0.0.1:0".parse().unwrap(),
            metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
            debug_addr: Some("127.0.0.1:0".parse().unwrap()),
            // Two workers: two threads share the listeners (SO_REUSEPORT).
            workers: 2,
            log_format: LogFormat::Text,
            access_log: None,
            span_export: None,
            shutdown_delay: std::time::Duration::ZERO,
            proxy_body_size: None,
            default_backend_service: None,
            custom_http_errors: Vec::new(),
            limit_req_status_code: http::StatusCode::SERVICE_UNAVAILABLE,
            limits: vane::proxy::ServerLimits {
                shutdown_grace: std::time::Duration::from_secs(5),
                ..Default::default()
            },
        };
        let shutdown = CancellationToken::new();
        let running = app::start(config, shutdown.clone())
            .await
            .expect("vane starts");
        Vane {
            http: running.http,
            admin: running.admin,
            metrics: running.metrics,
            debug: running.debug,
            shutdown,
            running: Some(running),
        }
    }

    /// Graceful stop, as on SIGTERM (the leader releases its Lease).
    async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.stopped().await;
        }
    }
}

impl Drop for Vane {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `check` until it holds, for at most 10 s.
async fn status(vane: &Vane, host: &str) -> StatusCode {
    status_of(&client(), vane.http, host, "/").await
}

async fn served_by(vane: &Vane, host: &str) -> Option<String> {
    get(&client(), vane.http, host, "/").await.origin()
}

fn cluster(origins: &Origins) -> String {
    docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
    ])
}

fn ingress_status_ips(api: &ApiServer, name: &str) -> Vec<String> {
    let ingress = api
        .get("Ingress", Some("default"), name)
        .unwrap_or_default();
    ingress["status"]["loadBalancer"]["ingress"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| e["ip"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_ingress_is_routed_and_endpoint_changes_move_traffic() {
    let first = origin::start(1).await;
    let second = origin::start(1).await;
    let api = ApiServer::start().await;
    api.apply_yaml(&cluster(&first));
    let dir = tempfile::tempdir().unwrap();
    let vane = Vane::start(&api, dir.path(), "a", None).await;
    eventually("first table published", || async {
        status_of(&client(), vane.admin, "x", "/readyz").await == StatusCode::OK
    })
    .await;
    assert_eq!(
        status(&vane, "app.example.com").await,
        StatusCode::NOT_FOUND
    );

    api.apply_yaml(&ingress("app", Some("app.example.com"), "/", "app"));
    eventually("the new Ingress routes", || async {
        status(&vane, "app.example.com").await == StatusCode::OK
    })
    .await;
    assert_eq!(first.origins[0].hits(), 1);

    api.apply_yaml(&crate::support::fixtures::slice(
        "app",
        second.port,
        &second.ips(),
    ));
    eventually("traffic moves to the new endpoint", || async {
        served_by(&vane, "app.example.com").await.is_some() && second.origins[0].hits() > 0
    })
    .await;

    api.delete("Service", Some("default"), "app");
    eventually("a deleted Service answers 503", || async {
        status(&vane, "app.example.com").await == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_every_watch_to_list_and_the_proxy_does_not_guess() {
    let origins = origin::start(1).await;
    let api = ApiServer::start().await;
    api.apply_yaml(&docs(&[
        cluster(&origins),
        ingress("app", None, "/", "app"),
    ]));
    api.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let vane = Vane::start(&api, dir.path(), "a", None).await;

    // The API server is unreachable: nothing has been listed, so nothing is known.
    assert_eq!(
        status_of(&client(), vane.admin, "x", "/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let reply = get(&client(), vane.http, "x", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.text().contains("starting"), "{}", reply.text());

    api.restart().await;
    eventually("ready after the first list", || async {
        status_of(&client(), vane.admin, "x", "/readyz").await == StatusCode::OK
    })
    .await;
    assert_eq!(status(&vane, "x").await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_outage_keeps_traffic_and_410_gone_relists_to_converge() {
    let origins = origin::start(1).await;
    let api = ApiServer::start().await;
    api.apply_yaml(&docs(&[
        cluster(&origins),
        ingress("app", Some("app.example.com"), "/", "app"),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let vane = Vane::start(&api, dir.path(), "a", None).await;
    eventually("routed", || async {
        status(&vane, "app.example.com").await == StatusCode::OK
    })
    .await;
    let ingress_lists = || {
        api.count_requests(|method, path| {
            method == http::Method::GET && path.contains("/ingresses") && !path.contains("watch=")
        })
    };
    let lists_before = ingress_lists();

    api.stop().await;
    for _ in 0..20 {
        assert_eq!(
            status(&vane, "app.example.com").await,
            StatusCode::OK,
            "traffic during the outage"
        );
    }
    // The cluster changes while vane cannot see it, and history is compacted: resuming the
    // watch from vane's last resourceVersion must fail with 410 and lead to a relist.
    api.apply_yaml(&ingress("new", Some("new.example.com"), "/", "app"));
    api.delete("Ingress", Some("default"), "app");
    api.compact();
    api.restart().await;

    eventually("converged after the outage", || async {
        status(&vane, "new.example.com").await == StatusCode::OK
            && status(&vane, "app.example.com").await == StatusCode::NOT_FOUND
    })
    .await;
    assert!(
        ingress_lists() > lists_before,
        "410 Gone should have led to a relist"
    );
    let metrics = get(&client(), vane.metrics, "x", "/metrics").await.text();
    let samples = crate::metrics::parse_strictly(&metrics);
    let ingress = |family: &str| samples[&format!("{family}{{kind=\"Ingress\"}}")];
    assert!(ingress("vane_watch_lists_total") >= 2.0, "{metrics}");
    assert!(ingress("vane_watch_failures_total") >= 1.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_writes_status_and_another_takes_over_when_it_stops() {
    let origins = origin::start(1).await;
    let api = ApiServer::start().await;
    api.apply_yaml(&docs(&[
        cluster(&origins),
        ingress("ours", Some("ours.example.com"), "/", "app"),
        // Another controller's Ingress: vane must neither route it nor touch its status.
        ingress("theirs", Some("theirs.example.com"), "/", "app")
            .replace("ingressClassName: vane", "ingressClassName: nginx"),
    ]));
    let dir = tempfile::tempdir().unwrap();
    // Each replica publishes a different address, so the status shows who wrote it.
    let publish = |ip: &str| Some(Publish::Addresses(vec![ip.into()]));
    let mut a = Vane::start(&api, dir.path(), "vane-a", publish("203.0.113.1")).await;
    eventually("a is leader and wrote status", || async {
        ingress_status_ips(&api, "ours") == ["203.0.113.1"]
    })
    .await;
    let b = Vane::start(&api, dir.path(), "vane-b", publish("203.0.113.2")).await;
    eventually("b is serving", || async {
        status(&b, "ours.example.com").await == StatusCode::OK
    })
    .await;

    // b follows: a new Ingress gets a's address, and b never overwrites anything.
    api.apply_yaml(&ingress("second", Some("second.example.com"), "/", "app"));
    eventually("second Ingress status", || async {
        ingress_status_ips(&api, "second") == ["203.0.113.1"]
    })
    .await;
    assert_eq!(ingress_status_ips(&api, "ours"), ["203.0.113.1"]);
    let lease = api.get("Lease", Some("default"), "vane-leader").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "vane-a");
    let leader_metric = |vane: &Vane| {
        let addr = vane.metrics;
        async move {
            let metrics = get(&client(), addr, "x", "/metrics").await.text();
            metrics
                .lines()
                .find_map(|line| line.strip_prefix("vane_leader "))
                .map(str::to_owned)
        }
    };
    assert_eq!(leader_metric(&a).await.as_deref(), Some("1"));
    assert_eq!(leader_metric(&b).await.as_deref(), Some("0"));
    let status_patches = || {
        api.count_requests(|method, path| {
            method == http::Method::PATCH
                && path.contains("/ingresses/")
                && path.contains("/status")
        })
    };
    assert_eq!(status_patches(), 2, "exactly one write per Ingress");

    // The other class is untouched, both in routing and in status.
    assert_eq!(
        status(&a, "theirs.example.com").await,
        StatusCode::NOT_FOUND
    );
    assert!(ingress_status_ips(&api, "theirs").is_empty());

    a.stop().await;
    eventually("b took over and rewrote status", || async {
        ingress_status_ips(&api, "ours") == ["203.0.113.2"]
            && ingress_status_ips(&api, "second") == ["203.0.113.2"]
    })
    .await;
    let lease = api.get("Lease", Some("default"), "vane-leader").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "vane-b");
    assert!(ingress_status_ips(&api, "theirs").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_leaving_our_class_has_its_status_cleared() {
    let origins = origin::start(1).await;
    let api = ApiServer::start().await;
    api.apply_yaml(&docs(&[
        cluster(&origins),
        ingress("app", Some("app.example.com"), "/", "app"),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let vane = Vane::start(
        &api,
        dir.path(),
        "a",
        Some(Publish::Addresses(vec!["203.0.113.9".into()])),
    )
    .await;
    eventually("status written", || async {
        ingress_status_ips(&api, "app") == ["203.0.113.9"]
    })
    .await;

    api.apply_yaml(
        &ingress("app", Some("app.example.com"), "/", "app")
            .replace("ingressClassName: vane", "ingressClassName: nginx"),
    );
    eventually("status cleared", || async {
        ingress_status_ips(&api, "app").is_empty()
    })
    .await;
    assert_eq!(
        status(&vane, "app.example.com").await,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ingress_gets_one_event_while_the_others_keep_routing() {
    let origins = origin::start(1).await;
    let api = ApiServer::start().await;
    api.apply_yaml(&docs(&[
        cluster(&origins),
        ingress("good", Some("good.example.com"), "/", "app"),
        ingress("bad", Some("bad.example.com"), "/", "no-such-service"),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let vane = Vane::start(&api, dir.path(), "a", None).await;
    let events_for_bad = || {
        api.list("Event")
            .into_iter()
            .filter(|e| {
                let regarding = if e["regarding"].is_object() {
                    &e["regarding"]
                } else {
                    &e["involvedObject"]
                };
                regarding["name"] == "bad" && e["reason"] == "ServiceNotFound"
            })
            .count()
    };
    eventually("an Event on the bad Ingress", || async {
        events_for_bad() == 1
    })
    .await;
    assert_eq!(status(&vane, "good.example.com").await, StatusCode::OK);
    assert_eq!(
        status(&vane, "bad.example.com").await,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Recompiles (here: an unrelated change) must not repeat the Event.
    api.apply_yaml(&ingress("other", Some("other.example.com"), "/", "app"));
    eventually("the unrelated change is routed", || async {
        status(&vane, "other.example.com").await == StatusCode::OK
    })
    .await;
    api.apply_yaml(&ingress("third", Some("third.example.com"), "/", "app"));
    eventually("another change is routed", || async {
        status(&vane, "third.example.com").await == StatusCode::OK
    })
    .await;
    assert_eq!(events_for_bad(), 1);
}

/// Side by side with another controller of the same class (`--update-status=false`): vane
/// serves, and reports its diagnostics in its log only, but writes nothing to the API server:
/// no Lease, no status, no Events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_status_updates_vane_serves_and_writes_nothing() {
    let origins = origin::start(1).await;
    let api = ApiServer::start().await;
    api.apply_yaml(&docs(&[
        cluster(&origins),
        ingress("good", Some("good.example.com"), "/", "app"),
        ingress("bad", Some("bad.example.com"), "/", "no-such-service"),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let vane = Vane::start_with(&api, dir.path(), "a", |settings| {
        settings.update_status = false;
    })
    .await;
    eventually("served", || async {
        status(&vane, "good.example.com").await == StatusCode::OK
            && status(&vane, "bad.example.com").await == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    // A change after the first table: were a writer running, it would have taken the Lease
    // (at start) and written status and the bad Ingress's Event by the time this is routed.
    api.apply_yaml(&ingress("later", Some("later.example.com"), "/", "app"));
    eventually("the change is routed", || async {
        status(&vane, "later.example.com").await == StatusCode::OK
    })
    .await;

    let writes = api.count_requests(|method, _| method != http::Method::GET);
    assert_eq!(writes, 0, "vane wrote to the API server");
    assert!(api.get("Lease", Some("default"), "vane-leader").is_none());
    assert!(api.list("Event").is_empty());
    assert!(ingress_status_ips(&api, "good").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_that_does_not_deserialize_is_skipped_without_stopping_its_watch() {
    let origins = origin::start(1).await;
    let api = ApiServer::start().await;
    api.apply_yaml(&docs(&[
        cluster(&origins),
        ingress("good", Some("good.example.com"), "/", "app"),
        // `rules` must be a list: kube cannot deserialize this Ingress.
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: broken, namespace: default}\nspec: {ingressClassName: vane, rules: not-a-list}\n".to_string(),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let vane = Vane::start(&api, dir.path(), "a", None).await;
    eventually("the good Ingress routes", || async {
        status(&vane, "good.example.com").await == StatusCode::OK
    })
    .await;
    // The watch keeps working after the bad object.
    api.apply_yaml(&ingress("later", Some("later.example.com"), "/", "app"));
    eventually("a later Ingress routes", || async {
        status(&vane, "later.example.com").await == StatusCode::OK
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_policy_conditions_are_written_and_attach_to_services() {
    let origins = origin::start(1).await;
    let api = ApiServer::start().await;
    let policy = |name: &str, created: &str, target: &str, extra: &str| {
        format!(
            "apiVersion: vane.dev/v1alpha1\nkind: BackendPolicy\nmetadata: {{name: {name}, namespace: default, creationTimestamp: '{created}'}}\n\
             spec:\n  targetRefs: [{{group: '', kind: Service, name: {target}}}]\n{extra}"
        )
    };
    api.apply_yaml(&docs(&[
        cluster(&origins),
        ingress("app", Some("app.example.com"), "/", "app"),
        policy("older", "2024-01-01T00:00:00Z", "app", ""),
        policy("younger", "2024-02-01T00:00:00Z", "app", ""),
        policy(
            "invalid",
            "2024-03-01T00:00:00Z",
            "app",
            "  retry: {attempts: 0}\n",
        ),
        policy("dangling", "2024-04-01T00:00:00Z", "missing", ""),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let vane = Vane::start(&api, dir.path(), "a", None).await;
    let condition = |name: &str, type_: &str| -> Option<(String, String)> {
        let policy = api.get("BackendPolicy", Some("default"), name)?;
        let conditions = policy["status"]["conditions"].as_array()?;
        let c = conditions.iter().find(|c| c["type"] == type_)?;
        Some((
            c["status"].as_str()?.to_owned(),
            c["reason"].as_str()?.to_owned(),
        ))
    };
    let is = |status: &str, reason: &str| Some((status.to_owned(), reason.to_owned()));
    eventually("policy conditions written", || async {
        condition("dangling", "ResolvedRefs").is_some()
    })
    .await;
    assert_eq!(condition("older", "Accepted"), is("True", "Accepted"));
    assert_eq!(condition("older", "Conflicted"), is("False", "NoConflicts"));
    assert_eq!(condition("younger", "Accepted"), is("False", "Conflicted"));
    assert_eq!(condition("younger", "Conflicted"), is("True", "Conflicted"));
    assert_eq!(condition("invalid", "Accepted"), is("False", "Invalid"));
    assert_eq!(
        condition("dangling", "ResolvedRefs"),
        is("False", "TargetNotFound")
    );
    let generation = api.get("BackendPolicy", Some("default"), "older").unwrap()["metadata"]
        ["generation"]
        .clone();
    let observed = api.get("BackendPolicy", Some("default"), "older").unwrap()["status"]
        ["conditions"][0]["observedGeneration"]
        .clone();
    assert_eq!(observed, generation);

    let routes = get(&client(), vane.debug, "x", "/debug/routes")
        .await
        .json();
    assert_eq!(routes["backends"][0]["policy"], "default/older");
}

/// `--watch-namespace team-a,team-b`, given to the binary: vane lists and watches each
/// namespaced kind in exactly those two namespaces, one watch each, routes their Ingresses, and
/// never requests anything of team-c (RBAC may grant only the listed namespaces).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_namespace_list_reads_exactly_those_namespaces() {
    let origins = origin::start(1).await;
    let api = ApiServer::start().await;
    let mut objects = vec![INGRESS_CLASS.to_string()];
    for team in ["a", "b", "c"] {
        let in_namespace =
            |yaml: String| yaml.replace("namespace: default", &format!("namespace: team-{team}"));
        let host = format!("{team}.example.com");
        objects.push(in_namespace(backend("app", origins.port, &origins.ips())));
        objects.push(in_namespace(ingress(team, Some(&host), "/", "app")));
    }
    api.apply_yaml(&docs(&objects));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let vane = crate::support::binary::Vane::start_with(&[
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
        "--watch-namespace".as_ref(),
        "team-a,team-b".as_ref(),
    ])
    .await;
    let client = client();
    let status = |host: &'static str| status_of(&client, vane.http, host, "/");
    eventually("team-a and team-b are routed", || async {
        status("a.example.com").await == StatusCode::OK
            && status("b.example.com").await == StatusCode::OK
    })
    .await;
    assert_eq!(status("c.example.com").await, StatusCode::NOT_FOUND);
    for plural in [
        "ingresses",
        "services",
        "endpointslices",
        "secrets",
        "backendpolicies",
    ] {
        for namespace in ["team-a", "team-b"] {
            let listed = api.count_requests(|method, path| {
                method == http::Method::GET
                    && path.contains(&format!("/namespaces/{namespace}/{plural}?"))
            });
            assert!(listed > 0, "{plural} of {namespace} never requested");
        }
        let elsewhere = api.count_requests(|_, path| {
            path.contains(&format!("/{plural}"))
                && !path.contains("/namespaces/team-a/")
                && !path.contains("/namespaces/team-b/")
        });
        assert_eq!(elsewhere, 0, "{plural} requested outside team-a and team-b");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_routes_from_a_kubeconfig_and_releases_its_lease_on_sigterm() {
    let origins = origin::start(1).await;
    let api = ApiServer::start().await;
    api.apply_yaml(&docs(&[
        cluster(&origins),
        ingress("app", Some("app.example.com"), "/", "app"),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let mut vane = crate::support::binary::Vane::start_with(&[
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
        "--publish-status-address".as_ref(),
        "203.0.113.5".as_ref(),
    ])
    .await;
    eventually("routed", || async {
        status_of(&client(), vane.http, "app.example.com", "/").await == StatusCode::OK
    })
    .await;
    eventually("status written by the leader", || async {
        ingress_status_ips(&api, "app") == ["203.0.113.5"]
    })
    .await;
    let holder =
        api.get("Lease", Some("default"), "vane-leader").unwrap()["spec"]["holderIdentity"].clone();
    assert!(holder.as_str().is_some_and(|h| !h.is_empty()), "{holder}");

    let exit = vane.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit:?}");
    let lease = api.get("Lease", Some("default"), "vane-leader").unwrap();
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .is_none_or(str::is_empty),
        "lease not released: {lease}"
    );
}

/// Under paused time (one thread, so the clock jumps only when every task waits): a minute of
/// outage would grow kube-runtime's default backoff to 13-60 s per watch; the capped one still
/// retries within 4 s, so every watch is back, and a new Ingress seen, within 5 s of the restart.
#[tokio::test(start_paused = true)]
async fn watches_reconnect_within_5s_of_the_api_server_returning_after_a_long_outage() {
    use tokio::time::Instant;
    let api = ApiServer::start().await;
    api.apply_yaml(INGRESS_CLASS);
    let client = kube::Client::try_from(api.kube_config()).unwrap();
    let (changes, _changed) = tokio::sync::mpsc::channel(1);
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let stores = vane::k8s::watch::start(&client, &[], changes, &shutdown, &mut tasks);
    stores.wait_until_ready().await;

    api.stop().await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let resources = [
        "/ingressclasses?",
        "/ingresses?",
        "/services?",
        "/endpointslices?",
        "/secrets?",
        "/backendpolicies?",
    ];
    let requests = |resource: &str| api.count_requests(|_, path| path.contains(resource));
    let before: Vec<usize> = resources.iter().map(|r| requests(r)).collect();
    api.restart().await;
    let restarted = Instant::now();
    api.apply_yaml(&ingress("new", Some("new.example.com"), "/", "app"));

    let back = || {
        let every_watch_asked = resources
            .iter()
            .zip(&before)
            .all(|(resource, before)| requests(resource) > *before);
        let seen = stores
            .ingresses
            .state()
            .iter()
            .any(|i| i.metadata.name.as_deref() == Some("new"));
        every_watch_asked && seen
    };
    while !back() && restarted.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = restarted.elapsed();
    assert!(back(), "not reconnected a minute after the restart");
    assert!(
        took <= Duration::from_secs(5),
        "reconnected {took:?} after the API server returned"
    );
    shutdown.cancel();
}

/// Basic auth users come from an Opaque Secret, read by a watch of that type alone: a Secret of
/// another type (here `kubernetes.io/basic-auth`) is never read, so an Ingress naming one fails
/// closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_users_come_from_opaque_secrets_only() {
    use base64::Engine as _;
    let origins = origin::start(1).await;
    let api = ApiServer::start().await;
    let secret = |name: &str, kind: &str| {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "type": kind,
            "metadata": {"name": name, "namespace": "default"},
            "data": {"auth": base64::engine::general_purpose::STANDARD.encode("alice:{PLAIN}a\n")},
        })
        .to_string()
    };
    let protected = |name: &str, secret: &str| {
        crate::support::fixtures::annotate(
            &ingress(name, Some(&format!("{name}.example.com")), "/", "app"),
            &[
                ("nginx.ingress.kubernetes.io/auth-type", "basic"),
                ("nginx.ingress.kubernetes.io/auth-secret", secret),
            ],
        )
    };
    api.apply_yaml(&docs(&[
        cluster(&origins),
        secret("users", "Opaque"),
        secret("typed", "kubernetes.io/basic-auth"),
        protected("opaque", "users"),
        protected("typed", "typed"),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let vane = Vane::start(&api, dir.path(), "a", None).await;
    let login = |host: &'static str| {
        let request = http::Request::get(format!("http://{}/", vane.http))
            .header("host", host)
            .header("authorization", "Basic YWxpY2U6YQ==")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        async move {
            crate::support::client::send(&client(), request)
                .await
                .status
        }
    };
    eventually(
        "alice logs in with the Opaque Secret's password",
        || async { login("opaque.example.com").await == StatusCode::OK },
    )
    .await;
    assert_eq!(
        login("typed.example.com").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        status(&vane, "opaque.example.com").await,
        StatusCode::UNAUTHORIZED
    );
    let opaque_watches = api.count_requests(|_, path| {
        path.contains("/secrets?") && path.contains("fieldSelector=type%3DOpaque")
    });
    assert!(opaque_watches > 0);
}
