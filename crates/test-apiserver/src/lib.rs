//! An in-process fake Kubernetes API server on loopback, for tests that drive the real `kube`
//! client (typed `Api`s, `watcher`, `reflector`, `events::Recorder`) over plain HTTP. This file
//! holds [`ApiServer`], what tests call; the modules hold the server:
//! - `resource`: the served kinds and the conversions between their forms;
//! - `store`: the objects, resourceVersions and the history watches replay;
//! - `selectors`: label and field selectors, and which objects a request sees;
//! - `watch`: watch streams;
//! - `patch`: the patch formats;
//! - `server`: serving connections, routing requests and the query parameters;
//! - `handlers`: what each request does to the store;
//! - `error`: errors as meta/v1 `Status` objects.
//!
//! What it speaks, for the kinds in `resource::RESOURCES`:
//! - list (`GET` a collection): `fieldSelector` (any dotted field, `=`, `==`, `!=`) and
//!   `labelSelector` (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`); `limit` is ignored (one page,
//!   no `continue`); `resourceVersionMatch=Exact` answers the state at that version from the
//!   history, or 410 Expired if it was compacted; any other list answers the current state, as
//!   the real server does for `NotOlderThan`, `0` or no version;
//! - watch (`GET` a collection with `watch=true`): newline-delimited JSON events over a chunked
//!   stream. From `resourceVersion=N` it replays history after N (410 ERROR event if N was
//!   compacted); with no version or `0` it first sends ADDED for every current object; with
//!   `sendInitialEvents=true` it also sends the `k8s.io/initial-events-end` BOOKMARK (streaming
//!   lists); `allowWatchBookmarks=true` adds a BOOKMARK every second; `timeoutSeconds` ends the
//!   stream. An object that stops (starts) matching the selectors is sent as DELETED (ADDED);
//! - get, create (`generateName` too), replace (optimistic concurrency on
//!   `metadata.resourceVersion`), patch (merge, strategic treated as merge, server-side apply
//!   treated as a merge that creates, JSON patch), delete, and the `status` subresource of the
//!   kinds that have one (a write to the object keeps its status, a write to `/status` changes
//!   only the status). A write that changes nothing (patch or replace) is a no-op, like the real
//!   server: no new resourceVersion, no watch event;
//! - the metadata-only form (`Accept: ...;as=PartialObjectMetadata[List]`) used by
//!   `metadata_watcher`;
//! - errors are meta/v1 `Status` objects with the real reasons and codes.
//!
//! Events are accepted under both `v1` and `events.k8s.io/v1`, stored once in the
//! `events.k8s.io/v1` form (what `kube::runtime::events::Recorder` writes) and converted on the
//! way out, so [`ApiServer::list`]`("Event")` always shows `events.k8s.io/v1` objects.
//!
//! Not modelled: finalizers and graceful deletion, field ownership of server-side apply, admission,
//! validation, discovery (only `/version` and the health endpoints answer).

mod error;
mod handlers;
mod patch;
mod resource;
mod selectors;
mod server;
mod store;
mod watch;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::resource::{by_kind, by_type, convert, meta_str, metadata_mut, Resource};
use crate::server::{bind, serve, Running, Shared};
use crate::store::{key, Store};

/// A fake Kubernetes API server on 127.0.0.1; see the crate documentation.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    running: Mutex<Option<Running>>,
}

impl ApiServer {
    /// Binds 127.0.0.1:0 and serves.
    pub async fn start() -> ApiServer {
        let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("bind apiserver");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            requests: Mutex::new(Vec::new()),
        });
        let running = serve(shared.clone(), listener);
        ApiServer {
            shared,
            addr,
            running: Mutex::new(Some(running)),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `kube::Config` pointing at this server (no auth, default namespace "default").
    pub fn kube_config(&self) -> kube::Config {
        kube::Config::new(self.url().parse().expect("a valid URL"))
    }

    /// Writes a kubeconfig YAML file into `dir` pointing at this server and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("kubeconfig-{}", self.addr.port()));
        let yaml = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: fake\n  cluster:\n    server: {url}\n\
             users:\n\
             - name: fake\n  user: {{}}\n\
             contexts:\n\
             - name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\n",
            url = self.url()
        );
        std::fs::write(&path, yaml).expect("write kubeconfig");
        path
    }

    /// Creates or replaces objects given as (multi-document) YAML, like `kubectl apply`. Every
    /// object is written (a new resourceVersion and an ADDED or MODIFIED event even if nothing
    /// changed). A `status` in the YAML is stored; without one, a replaced object keeps its
    /// status. `metadata.creationTimestamp` is kept if given. Panics on an unknown kind.
    pub fn apply_yaml(&self, yaml: &str) {
        for document in serde_yaml_ng::Deserializer::from_str(yaml) {
            let value = Value::deserialize(document).expect("apply_yaml: invalid YAML");
            if !value.is_null() {
                self.apply_value(value);
            }
        }
    }

    fn apply_value(&self, mut object: Value) {
        let api_version = object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        if kind == "List" {
            if let Some(Value::Array(items)) = object.get_mut("items").map(Value::take) {
                items.into_iter().for_each(|item| self.apply_value(item));
            }
            return;
        }
        let res = by_type(&api_version, &kind).unwrap_or_else(|| {
            panic!("apply_yaml: the fake apiserver does not serve {api_version} {kind}")
        });
        let name = meta_str(&object, "name")
            .unwrap_or_else(|| panic!("apply_yaml: a {kind} without metadata.name"))
            .to_string();
        let namespace = meta_str(&object, "namespace").map(str::to_string);
        let metadata = metadata_mut(&mut object);
        if res.namespaced {
            metadata.insert(
                "namespace".into(),
                namespace.as_deref().unwrap_or("default").into(),
            );
        } else {
            metadata.remove("namespace");
        }
        let mut object = convert(&object, res, res.stored());
        let mut store = self.shared.store.lock().unwrap();
        if let Some(old) = store.objects.get(&key(res, namespace.as_deref(), &name)) {
            if let (Some(status), Some(map)) = (old.get("status"), object.as_object_mut()) {
                map.entry("status").or_insert_with(|| status.clone());
            }
        }
        store.write(res, object, true);
    }

    fn resource(kind: &str) -> &'static Resource {
        by_kind(kind).unwrap_or_else(|| panic!("the fake apiserver does not serve kind {kind:?}"))
    }

    /// Deletes an object (if it exists) and notifies watchers with DELETED. `kind` is e.g.
    /// "Service", "Ingress"; `namespace` None means "default" for namespaced kinds.
    pub fn delete(&self, kind: &str, namespace: Option<&str>, name: &str) {
        let key = key(Self::resource(kind), namespace, name);
        self.shared.store.lock().unwrap().remove(&key);
    }

    /// The stored object, as JSON, if any (`namespace` None means "default" for namespaced
    /// kinds). Events are in their `events.k8s.io/v1` form.
    pub fn get(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let key = key(Self::resource(kind), namespace, name);
        self.shared.store.lock().unwrap().objects.get(&key).cloned()
    }

    /// All stored objects of a kind, ordered by namespace and name ("Event": events from either
    /// API group, in their `events.k8s.io/v1` form).
    pub fn list(&self, kind: &str) -> Vec<Value> {
        let res = Self::resource(kind);
        let store = self.shared.store.lock().unwrap();
        store.objects_of(res).cloned().collect()
    }

    /// Forgets the change history: a watch (or an Exact list) from a resourceVersion older than
    /// the current one gets 410 Gone (for a watch: 200 and a single ERROR event). Watches that
    /// are already open are not affected, as on the real server.
    pub fn compact(&self) {
        let mut store = self.shared.store.lock().unwrap();
        store.compacted = store.rv;
    }

    /// Simulates an outage: closes the listener and ends every open connection and watch
    /// stream. State is kept.
    pub async fn stop(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some(running) = running {
            running.stop.cancel();
            running.tasks.close();
            running.tasks.wait().await;
        }
    }

    /// Ends the outage: listens again on the same port with the same state.
    pub async fn restart(&self) {
        if self.running.lock().unwrap().is_some() {
            return;
        }
        let mut attempts = 0;
        let listener = loop {
            match bind(self.addr) {
                Ok(listener) => break listener,
                Err(_) if attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("apiserver: cannot listen on {} again: {e}", self.addr),
            }
        };
        let running = serve(self.shared.clone(), listener);
        *self.running.lock().unwrap() = Some(running);
    }

    /// How many requests matched a predicate on (method, path-and-query). The path and query are
    /// as sent, so percent-encoded: e.g. `fieldSelector=metadata.name%3Dx`.
    pub fn count_requests(&self, f: impl Fn(&Method, &str) -> bool) -> usize {
        let requests = self.shared.requests.lock().unwrap();
        requests.iter().filter(|(m, p)| f(m, p)).count()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().unwrap().rv
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.get_mut().unwrap().take() {
            running.stop.cancel();
        }
    }
}
