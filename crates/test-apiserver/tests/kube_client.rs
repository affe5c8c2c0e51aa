//! The fake API server, driven by the real kube client: typed `Api`s, `watcher` (also on
//! `PartialObjectMeta`, i.e. metadata-only) and the events `Recorder`.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use http::Method;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ObjectReference, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, ResourceExt, WatchEvent,
    WatchParams,
};
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event as RecordedEvent, EventType, Recorder, Reporter};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;

use vane_test_apiserver::ApiServer;

/// Long enough for any expected event; only reached when something is broken.
const WAIT: Duration = Duration::from_secs(30);

fn client(server: &ApiServer) -> Client {
    Client::try_from(server.kube_config()).expect("kube client")
}

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn service(name: &str, namespace: &str, app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\n\
         metadata: {{name: {name}, namespace: {namespace}, labels: {{app: {app}}}}}\n\
         spec:\n  ports:\n  - {{name: http, port: 80}}\n"
    )
}

fn api_error(error: kube::Error) -> Box<kube::core::Status> {
    match error {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

type Events<K> = BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

/// The next event (or error) of a watcher stream.
async fn next<K>(stream: &mut Events<K>) -> Result<watcher::Event<K>, watcher::Error> {
    bounded("a watcher event", stream.next())
        .await
        .expect("the watcher stream never ends")
}

/// Skips events (and errors) until `want` returns Some.
async fn until<K, T>(
    stream: &mut Events<K>,
    what: &str,
    want: impl Fn(&watcher::Event<K>) -> Option<T>,
) -> T {
    bounded(what, async {
        loop {
            if let Ok(event) = stream.next().await.expect("the watcher stream never ends") {
                if let Some(found) = want(&event) {
                    return found;
                }
            }
        }
    })
    .await
}

/// Reads a whole initial listing (Init, InitApply..., InitDone) and returns the names.
async fn initial_names<K: ResourceExt + Debug>(stream: &mut Events<K>) -> BTreeSet<String> {
    until(stream, "Init", |e| {
        matches!(e, watcher::Event::Init).then_some(())
    })
    .await;
    let mut names = BTreeSet::new();
    loop {
        match next(stream)
            .await
            .expect("no error during the initial listing")
        {
            watcher::Event::InitApply(object) => {
                names.insert(object.name_any());
            }
            watcher::Event::InitDone => return names,
            other => panic!("unexpected event during the initial listing: {other:?}"),
        }
    }
}

fn names<K: ResourceExt>(objects: impl IntoIterator<Item = K>) -> Vec<String> {
    objects.into_iter().map(|o| o.name_any()).collect()
}

#[tokio::test]
async fn list_get_and_selectors() {
    let server = ApiServer::start().await;
    server.apply_yaml(&format!(
        "{}---\n{}---\n{}",
        service("web", "default", "web"),
        service("api", "default", "api"),
        service("other", "elsewhere", "web"),
    ));
    server.apply_yaml(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: cert}\ntype: kubernetes.io/tls\n\
         data: {tls.crt: '', tls.key: ''}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: token}\ntype: Opaque\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: vane}\n\
         spec: {controller: vane.dev/ingress-controller}\n",
    );
    let client = client(&server);

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let list = services.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(list.items), ["api", "web"]);
    let rv: u64 = list.metadata.resource_version.unwrap().parse().unwrap();
    assert_eq!(rv, server.resource_version());
    let all: Api<Service> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );
    let web = all
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    // Ordered by namespace, then name, like the real server.
    assert_eq!(names(web.items), ["web", "other"]);
    let not_web = services
        .list(&ListParams::default().labels("app!=web"))
        .await
        .unwrap();
    assert_eq!(names(not_web.items), ["api"]);
    let by_name = all
        .list(&ListParams::default().fields("metadata.name=other"))
        .await
        .unwrap();
    assert_eq!(by_name.items[0].namespace().as_deref(), Some("elsewhere"));

    let web = services.get("web").await.unwrap();
    assert_eq!(web.spec.unwrap().ports.unwrap()[0].port, 80);
    assert!(web.metadata.uid.is_some());
    assert!(web.metadata.creation_timestamp.is_some());
    assert_eq!(web.metadata.generation, Some(1));
    assert_eq!(web.metadata.namespace.as_deref(), Some("default"));
    let missing = api_error(services.get("missing").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(services.get_opt("missing").await.unwrap(), None);

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let tls = secrets
        .list(&ListParams::default().fields("type=kubernetes.io/tls"))
        .await
        .unwrap();
    assert_eq!(names(tls.items), ["cert"]);
    let other = secrets
        .list(&ListParams::default().fields("type!=kubernetes.io/tls"))
        .await
        .unwrap();
    assert_eq!(names(other.items), ["token"]);

    let classes: Api<IngressClass> = Api::all(client.clone());
    let class = classes.get("vane").await.unwrap();
    assert_eq!(class.metadata.namespace, None);
    assert_eq!(
        class.spec.unwrap().controller.as_deref(),
        Some("vane.dev/ingress-controller")
    );

    // An unknown path is a 404 Status, not a hang or a parse error.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, "default");
    let error = api_error(pods.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(error.code, 404);
}

#[tokio::test]
async fn watcher_sees_added_modified_and_deleted() {
    let server = ApiServer::start().await;
    server.apply_yaml(&service("web", "default", "web"));
    let client = client(&server);
    let services: Api<Service> = Api::namespaced(client, "default");
    let mut stream: Events<Service> = watcher(services.clone(), watcher::Config::default()).boxed();
    assert_eq!(
        initial_names(&mut stream).await,
        BTreeSet::from(["web".into()])
    );

    // The wire events, on a raw watch from the listing's version.
    let rv = services
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut raw = services
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .unwrap()
        .boxed();

    server.apply_yaml(&service("api", "default", "api"));
    let added = until(&mut stream, "api applied", |e| match e {
        watcher::Event::Apply(s) if s.name_any() == "api" => Some(s.clone()),
        _ => None,
    })
    .await;
    assert_eq!(added.metadata.generation, Some(1));

    server.apply_yaml(&service("web", "default", "web").replace("port: 80", "port: 81"));
    let modified = until(&mut stream, "web modified", |e| match e {
        watcher::Event::Apply(s) if s.name_any() == "web" => Some(s.clone()),
        _ => None,
    })
    .await;
    assert_eq!(modified.spec.unwrap().ports.unwrap()[0].port, 81);
    assert_eq!(modified.metadata.generation, Some(2));

    server.delete("Service", Some("default"), "api");
    until(&mut stream, "api deleted", |e| match e {
        watcher::Event::Delete(s) if s.name_any() == "api" => Some(()),
        _ => None,
    })
    .await;
    assert!(server.get("Service", None, "api").is_none());

    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match bounded("a raw watch event", raw.next())
            .await
            .unwrap()
            .unwrap()
        {
            WatchEvent::Added(s) => kinds.push(format!("ADDED {}", s.name_any())),
            WatchEvent::Modified(s) => kinds.push(format!("MODIFIED {}", s.name_any())),
            WatchEvent::Deleted(s) => kinds.push(format!("DELETED {}", s.name_any())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(kinds, ["ADDED api", "MODIFIED web", "DELETED api"]);
}

#[tokio::test]
async fn compaction_makes_the_watcher_relist() {
    let server = ApiServer::start().await;
    server.apply_yaml(&service("web", "default", "web"));
    let client = client(&server);
    let services: Api<Service> = Api::namespaced(client, "default");
    // Without bookmarks, the watcher's version only moves with Service events; with a 1 s timeout
    // it re-watches from that version soon.
    let config = watcher::Config::default().timeout(1).disable_bookmarks();
    let mut stream: Events<Service> = watcher(services.clone(), config).boxed();
    let lists = || {
        server.count_requests(|method, path| {
            method == Method::GET
                && path.starts_with("/api/v1/namespaces/default/services?")
                && !path.contains("watch=true")
        })
    };
    assert_eq!(
        initial_names(&mut stream).await,
        BTreeSet::from(["web".into()])
    );
    assert_eq!(lists(), 1);

    server.apply_yaml(&service("api", "default", "api"));
    until(&mut stream, "api applied", |e| {
        matches!(e, watcher::Event::Apply(s) if s.name_any() == "api").then_some(())
    })
    .await;
    // Writes the watcher does not see move the version on, then the history is forgotten.
    server.apply_yaml("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n");
    server.compact();

    // `until` skips errors, so look for the error by hand.
    let gone = bounded("the 410 error", async {
        loop {
            if let Err(watcher::Error::WatchError(status)) = next(&mut stream).await {
                return status;
            }
        }
    })
    .await;
    assert_eq!((gone.code, gone.reason.as_str()), (410, "Expired"));
    assert_eq!(
        initial_names(&mut stream).await,
        BTreeSet::from(["web".into(), "api".into()])
    );
    assert_eq!(lists(), 2);

    // On the wire: 200, then one ERROR event that is a 410 Status, then the end.
    let mut raw = services
        .watch(&WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed();
    match bounded("the raw 410", raw.next()).await.unwrap().unwrap() {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected an ERROR event, got {other:?}"),
    }
    assert!(bounded("the end of the stream", raw.next()).await.is_none());
    // A list at an exact, compacted version is gone too.
    let error = api_error(
        services
            .list(
                &ListParams::default()
                    .at("1")
                    .matching(kube::api::VersionMatch::Exact),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code, 410);
}

#[tokio::test]
async fn status_patches_and_optimistic_concurrency() {
    let server = ApiServer::start().await;
    server.apply_yaml(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\n\
         spec:\n  ingressClassName: vane\n  defaultBackend:\n    service: {name: web, port: {number: 80}}\n",
    );
    let client = client(&server);
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), "default");
    let before = ingresses.get("web").await.unwrap();

    let patch = json!({
        "spec": {"ingressClassName": "ignored"},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
    });
    let after = ingresses
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let ip = |i: &Ingress| {
        i.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref()?.ingress.as_ref()?[0].ip.clone())
    };
    assert_eq!(ip(&after).as_deref(), Some("192.0.2.1"));
    assert_eq!(
        after.spec.as_ref().unwrap().ingress_class_name.as_deref(),
        Some("vane")
    );
    assert_eq!(after.metadata.generation, Some(1));
    assert_ne!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    let stored = server.get("Ingress", Some("default"), "web").unwrap();
    assert_eq!(
        stored["status"]["loadBalancer"]["ingress"][0]["ip"],
        "192.0.2.1"
    );

    // The same status again changes nothing: no new version.
    let again = ingresses
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        after.metadata.resource_version
    );

    // Server-side apply of the status (what a controller does), with the type fields.
    let apply = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}},
    });
    let applied = ingresses
        .patch_status(
            "web",
            &PatchParams::apply("vane").force(),
            &Patch::Apply(&apply),
        )
        .await
        .unwrap();
    let lb = applied
        .status
        .unwrap()
        .load_balancer
        .unwrap()
        .ingress
        .unwrap();
    assert_eq!(lb[0].hostname.as_deref(), Some("lb.example.com"));

    // A patch of the object changes the spec (and the generation), never the status.
    let spec_patch = json!({"spec": {"ingressClassName": "other"}, "status": null});
    let patched = ingresses
        .patch("web", &PatchParams::default(), &Patch::Merge(&spec_patch))
        .await
        .unwrap();
    assert_eq!(
        patched.spec.as_ref().unwrap().ingress_class_name.as_deref(),
        Some("other")
    );
    assert_eq!(patched.metadata.generation, Some(2));
    assert!(patched
        .status
        .unwrap()
        .load_balancer
        .unwrap()
        .ingress
        .is_some());
    let json_patch = Patch::Json::<()>(
        serde_json::from_value(json!([
            {"op": "test", "path": "/spec/ingressClassName", "value": "other"},
            {"op": "replace", "path": "/spec/ingressClassName", "value": "vane"},
            {"op": "add", "path": "/metadata/labels", "value": {"team": "edge"}},
        ]))
        .unwrap(),
    );
    let patched = ingresses
        .patch("web", &PatchParams::default(), &json_patch)
        .await
        .unwrap();
    assert_eq!(patched.labels()["team"], "edge");
    assert_eq!(
        patched.spec.unwrap().ingress_class_name.as_deref(),
        Some("vane")
    );
    let missing = api_error(
        ingresses
            .patch_status("missing", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_err(),
    );
    assert_eq!(missing.code, 404);

    // Lease: create, conflicting create, replace with a stale and with the current version.
    let leases: Api<Lease> = Api::namespaced(client, "default");
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("vane-leader".into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("pod-a".into()),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }),
    };
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    assert!(created.metadata.resource_version.is_some());
    let exists = api_error(
        leases
            .create(&PostParams::default(), &lease)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (exists.code, exists.reason.as_str()),
        (409, "AlreadyExists")
    );

    let mut first = created.clone();
    first.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    let replaced = leases
        .replace("vane-leader", &PostParams::default(), &first)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );

    let mut stale = created.clone();
    stale.spec.as_mut().unwrap().holder_identity = Some("pod-c".into());
    let conflict = api_error(
        leases
            .replace("vane-leader", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));

    let mut current = replaced.clone();
    current.spec.as_mut().unwrap().holder_identity = Some("pod-c".into());
    let taken = leases
        .replace("vane-leader", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(
        taken.spec.unwrap().holder_identity.as_deref(),
        Some("pod-c")
    );
    let stored = server.get("Lease", Some("default"), "vane-leader").unwrap();
    assert_eq!(stored["spec"]["holderIdentity"], "pod-c");

    let gone = api_error(
        leases
            .replace(
                "absent",
                &PostParams::default(),
                &Lease {
                    metadata: ObjectMeta {
                        name: Some("absent".into()),
                        ..ObjectMeta::default()
                    },
                    spec: None,
                },
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(gone.code, 404);
    leases
        .delete("vane-leader", &DeleteParams::default())
        .await
        .unwrap();
    assert!(server
        .get("Lease", Some("default"), "vane-leader")
        .is_none());
}

#[tokio::test]
async fn outage_and_recovery_keep_state_and_the_watcher_recovers() {
    let server = ApiServer::start().await;
    let url = server.url();
    server.apply_yaml(&service("web", "default", "web"));
    let client = client(&server);
    let services: Api<Service> = Api::namespaced(client, "default");
    let mut stream: Events<Service> = watcher(services.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    assert_eq!(
        initial_names(&mut stream).await,
        BTreeSet::from(["web".into()])
    );

    bounded("stop", server.stop()).await;
    let error = bounded("a failing get", services.get("web"))
        .await
        .unwrap_err();
    assert!(!matches!(error, kube::Error::Api(_)), "{error:?}");
    // The watcher notices the end of its stream and fails to re-watch.
    bounded("a watcher error", async {
        while next(&mut stream).await.is_ok() {}
    })
    .await;

    // A change made during the outage.
    server.apply_yaml(&service("api", "default", "api"));
    bounded("restart", server.restart()).await;
    assert_eq!(server.url(), url);
    assert_eq!(services.get("web").await.unwrap().name_any(), "web");
    assert_eq!(services.get("api").await.unwrap().name_any(), "api");

    // The watcher resumes from its version and sees the change without a relist.
    until(&mut stream, "api after the restart", |e| match e {
        watcher::Event::Apply(s) if s.name_any() == "api" => Some(()),
        _ => None,
    })
    .await;
    let lists = server.count_requests(|method, path| {
        method == Method::GET && !path.contains("watch=true") && path.contains("/services?")
    });
    assert_eq!(lists, 1);
}

#[tokio::test]
async fn recorder_creates_then_patches_events() {
    let server = ApiServer::start().await;
    let client = client(&server);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "vane".into(),
            instance: Some("vane-0".into()),
        },
    );
    let reference = ObjectReference {
        api_version: Some("networking.k8s.io/v1".into()),
        kind: Some("Ingress".into()),
        name: Some("web".into()),
        namespace: Some("default".into()),
        ..ObjectReference::default()
    };
    let event = RecordedEvent {
        type_: EventType::Warning,
        reason: "InvalidBackend".into(),
        note: Some("service web has no port http".into()),
        action: "Compile".into(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();

    let events = server.list("Event");
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["apiVersion"], "events.k8s.io/v1");
    assert_eq!(events[0]["regarding"]["name"], "web");
    assert_eq!(events[0]["series"]["count"], 2);
    let path = "/apis/events.k8s.io/v1/namespaces/default/events";
    assert_eq!(
        server.count_requests(|m, p| m == Method::POST && p.starts_with(path)),
        1
    );
    assert_eq!(
        server.count_requests(|m, p| m == Method::PATCH && p.starts_with(path)),
        1
    );

    // The same event through the core API, converted.
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, "default");
    let listed = core.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].involved_object.name.as_deref(), Some("web"));
    assert_eq!(
        listed.items[0].message.as_deref(),
        Some("service web has no port http")
    );
    let created = core
        .create(
            &PostParams::default(),
            &k8s_openapi::api::core::v1::Event {
                metadata: ObjectMeta {
                    generate_name: Some("web.".into()),
                    ..ObjectMeta::default()
                },
                message: Some("core".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        created.name_any().starts_with("web."),
        "{}",
        created.name_any()
    );
    assert_eq!(created.name_any().len(), "web.".len() + 5);
    assert_eq!(server.list("Event").len(), 2);
}

#[tokio::test]
async fn kubeconfig_streaming_lists_and_metadata_watches() {
    let server = ApiServer::start().await;
    server.apply_yaml(&service("web", "default", "web"));
    let dir = tempfile::tempdir().unwrap();
    let path = server.write_kubeconfig(dir.path());
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = Client::try_from(config).unwrap();
    let services: Api<Service> = Api::default_namespaced(client.clone());

    // Streaming list: one watch with sendInitialEvents, no list.
    let config = watcher::Config::default().streaming_lists();
    let mut stream: Events<Service> = watcher(services.clone(), config).boxed();
    assert_eq!(
        initial_names(&mut stream).await,
        BTreeSet::from(["web".into()])
    );
    assert_eq!(
        server.count_requests(|_, p| p.contains("sendInitialEvents=true")),
        1
    );
    assert_eq!(server.count_requests(|_, p| !p.contains("watch=true")), 0);

    // Metadata-only watcher; a label change that leaves the selector is a delete.
    let config = watcher::Config::default().labels("app=web");
    let metadata: Api<PartialObjectMeta<Service>> = Api::default_namespaced(client);
    let mut meta = watcher(metadata, config).boxed();
    until(&mut meta, "InitDone", |e| {
        matches!(e, watcher::Event::InitDone).then_some(())
    })
    .await;
    server.apply_yaml(&service("web", "default", "other"));
    until(&mut meta, "web leaving the selector", |e| match e {
        watcher::Event::Delete(m) => Some(m.name_any()),
        _ => None,
    })
    .await;
    let app = until(&mut stream, "web modified", |e| match e {
        watcher::Event::Apply(s) => Some(s.labels()["app"].clone()),
        _ => None,
    })
    .await;
    assert_eq!(app, "other");
}
