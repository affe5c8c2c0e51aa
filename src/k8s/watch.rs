//! Watches with reflector stores for every kind vane reads.
//!
//! Namespaced kinds are watched in all namespaces, or in each namespace `--watch-namespace`
//! lists: one watch and one store per namespace and kind ([`ScopedStore`]), since a field
//! selector cannot name several namespaces, and RBAC may grant only those namespaces.
//!
//! Each kind is listed and then watched by kube-runtime's watcher, which relists on `410 Gone`
//! and retries failures with a capped, jittered backoff ([`ReconnectBackoff`]); while it does,
//! the store keeps its last state, so traffic is served from the last table. Objects that fail to deserialize are logged by name and left
//! out (a previously valid version is removed), so one bad object never stops a watch.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::ready;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::core::{DeserializeGuard, NamespaceResourceScope};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::backoff::ReconnectBackoff;
use crate::api::BackendPolicy;
use crate::snapshot::{Snapshot, OPAQUE_SECRET_TYPE, TLS_SECRET_TYPE};

/// How the watches of each kind have fared: lists (the first and every relist, as after a
/// `410 Gone`) and failures (each retried with backoff). For metrics.
#[derive(Debug, Default)]
pub struct WatchStats {
    by_kind: Mutex<BTreeMap<String, KindStats>>,
}

/// One kind's [`WatchStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindStats {
    pub lists: u64,
    pub failures: u64,
}

impl WatchStats {
    fn record(&self, kind: &str, update: impl FnOnce(&mut KindStats)) {
        let mut by_kind = self.by_kind.lock().unwrap_or_else(|p| p.into_inner());
        update(by_kind.entry(kind.to_owned()).or_default());
    }

    /// Each kind's counts so far, by kind name.
    pub fn by_kind(&self) -> BTreeMap<String, KindStats> {
        self.by_kind
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The stores of every watched kind. Cheap to clone.
#[derive(Clone)]
pub struct Stores {
    pub ingress_classes: Store<IngressClass>,
    pub ingresses: ScopedStore<Ingress>,
    pub services: ScopedStore<Service>,
    pub endpoint_slices: ScopedStore<EndpointSlice>,
    /// Secrets of type `kubernetes.io/tls` (certificates, CAs).
    pub secrets: ScopedStore<Secret>,
    /// Secrets of type `Opaque` (basic auth users, as `kubectl create secret generic` makes
    /// them). A field selector names one type, so each type has a watch of its own; other
    /// types (service account tokens, Helm releases, registry credentials) are never read.
    pub opaque_secrets: ScopedStore<Secret>,
    pub backend_policies: ScopedStore<BackendPolicy>,
    pub stats: Arc<WatchStats>,
}

/// A namespaced kind's objects in the watched namespaces: one reflector store per namespace
/// (or a single one for all). The stores cannot be shared: a relist replaces its store's whole
/// content, and would drop the other namespaces' objects.
#[derive(Clone)]
pub struct ScopedStore<K: Resource<DynamicType = ()> + 'static>(Vec<Store<K>>);

impl<K: Resource<DynamicType = ()> + Clone + 'static> ScopedStore<K> {
    /// Every object of every watched namespace.
    pub fn state(&self) -> Vec<Arc<K>> {
        self.0.iter().flat_map(Store::state).collect()
    }

    /// The object `key` names, if its namespace is watched and it exists.
    pub fn get(&self, key: &ObjectRef<K>) -> Option<Arc<K>> {
        self.0.iter().find_map(|store| store.get(key))
    }

    /// Resolves once the watch of every namespace has listed once.
    async fn wait_until_ready(&self) {
        // Errors mean the writer was dropped, i.e. the watch task ended: nothing to wait for.
        futures_util::future::join_all(self.0.iter().map(Store::wait_until_ready)).await;
    }
}

impl Stores {
    /// Resolves once every watch has completed its first list.
    pub async fn wait_until_ready(&self) {
        // Errors mean the writer was dropped, i.e. the watch task ended: nothing to wait for.
        let _ = tokio::join!(
            self.ingress_classes.wait_until_ready(),
            self.ingresses.wait_until_ready(),
            self.services.wait_until_ready(),
            self.endpoint_slices.wait_until_ready(),
            self.secrets.wait_until_ready(),
            self.opaque_secrets.wait_until_ready(),
            self.backend_policies.wait_until_ready(),
        );
    }

    /// The current state of every store (pointer copies only).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            ingress_classes: self.ingress_classes.state(),
            ingresses: self.ingresses.state(),
            services: self.services.state(),
            endpoint_slices: self.endpoint_slices.state(),
            secrets: [self.secrets.state(), self.opaque_secrets.state()].concat(),
            backend_policies: self.backend_policies.state(),
        }
    }
}

/// Starts the watches: one per cluster-scoped kind, and one per namespaced kind and watched
/// namespace (`namespaces`; all namespaces when empty). Each change (after the initial list,
/// each applied or deleted object, each relist) sends a signal on `changes`.
pub fn start(
    client: &Client,
    namespaces: &[String],
    changes: mpsc::Sender<()>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Stores {
    let stats = Arc::new(WatchStats::default());
    let mut watches = Watches {
        client,
        namespaces,
        changes: &changes,
        stats: &stats,
        shutdown,
        tasks,
    };
    let all = watcher::Config::default;
    Stores {
        ingress_classes: watches.spawn(Api::all(client.clone()), all()),
        ingresses: watches.scoped(all()),
        services: watches.scoped(all()),
        endpoint_slices: watches.scoped(all()),
        secrets: watches.scoped(all().fields(&format!("type={TLS_SECRET_TYPE}"))),
        opaque_secrets: watches.scoped(all().fields(&format!("type={OPAQUE_SECRET_TYPE}"))),
        backend_policies: watches.scoped(all()),
        stats: stats.clone(),
    }
}

/// What every watch task shares.
struct Watches<'a> {
    client: &'a Client,
    /// The watched namespaces; all when empty.
    namespaces: &'a [String],
    changes: &'a mpsc::Sender<()>,
    stats: &'a Arc<WatchStats>,
    shutdown: &'a CancellationToken,
    tasks: &'a mut JoinSet<()>,
}

/// What a watched kind is: a Kubernetes resource of a static type that a store can hold.
trait Watched:
    Resource<DynamicType = ()> + DeserializeOwned + Clone + Default + Debug + Send + Sync + 'static
{
}

impl<K> Watched for K where
    K: Resource<DynamicType = ()>
        + DeserializeOwned
        + Clone
        + Default
        + Debug
        + Send
        + Sync
        + 'static
{
}

impl Watches<'_> {
    /// Watches a namespaced kind in each watched namespace.
    fn scoped<K>(&mut self, config: watcher::Config) -> ScopedStore<K>
    where
        K: Watched + Resource<Scope = NamespaceResourceScope>,
    {
        let apis: Vec<Api<DeserializeGuard<K>>> = if self.namespaces.is_empty() {
            vec![Api::all(self.client.clone())]
        } else {
            let client = self.client;
            let namespaces = self.namespaces.iter();
            namespaces
                .map(|namespace| Api::namespaced(client.clone(), namespace))
                .collect()
        };
        ScopedStore(
            apis.into_iter()
                .map(|api| self.spawn(api, config.clone()))
                .collect(),
        )
    }

    /// Watches `api` into a store of its own, in a task.
    fn spawn<K: Watched>(
        &mut self,
        api: Api<DeserializeGuard<K>>,
        config: watcher::Config,
    ) -> Store<K> {
        let (reader, writer) = reflector::store::<K>();
        let kind = K::kind(&()).into_owned();
        let events = watcher::watcher(api, config)
            .backoff(ReconnectBackoff::new())
            .filter_map(move |event| ready(unguard(event)));
        let changes = self.changes.clone();
        let shutdown = self.shutdown.clone();
        let stats = self.stats.clone();
        self.tasks.spawn(async move {
        let mut stream = std::pin::pin!(reflector::reflector(writer, events));
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => break,
                event = stream.next() => match event {
                    Some(event) => event,
                    None => break,
                },
            };
            match event {
                Ok(Event::Apply(_) | Event::Delete(_) | Event::InitDone) => {
                    // Full means a recompile is already pending; it will see this change too.
                    let _ = changes.try_send(());
                }
                Ok(Event::Init) => stats.record(&kind, |k| k.lists += 1),
                Ok(Event::InitApply(_)) => {}
                Err(error) => {
                    stats.record(&kind, |k| k.failures += 1);
                    warn!(kind, %error, "watch failed; retrying with backoff, serving the last table meanwhile")
                }
            }
        }
        debug!(kind, "watch ended");
    });
        reader
    }
}

/// Unwraps objects that deserialized; logs and drops the rest. A modified object that no
/// longer deserializes becomes a deletion, so its last valid version stops being routed.
fn unguard<K>(
    event: Result<Event<DeserializeGuard<K>>, watcher::Error>,
) -> Option<Result<Event<K>, watcher::Error>>
where
    K: Resource<DynamicType = ()> + Default,
{
    let invalid = |object: kube::core::error_boundary::InvalidObject| {
        let name = format!(
            "{}/{}",
            object.metadata.namespace.as_deref().unwrap_or_default(),
            object.metadata.name.as_deref().unwrap_or_default()
        );
        warn!(kind = %K::kind(&()), object = name, error = object.error, "skipping an object that does not deserialize");
        let mut placeholder = K::default();
        *placeholder.meta_mut() = object.metadata;
        placeholder
    };
    let event = match event {
        Err(error) => return Some(Err(error)),
        Ok(event) => event,
    };
    Some(Ok(match event {
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
        Event::InitApply(DeserializeGuard(Ok(object))) => Event::InitApply(object),
        Event::InitApply(DeserializeGuard(Err(object))) => {
            invalid(object);
            return None;
        }
        Event::Apply(DeserializeGuard(Ok(object))) => Event::Apply(object),
        Event::Apply(DeserializeGuard(Err(object)))
        | Event::Delete(DeserializeGuard(Err(object))) => Event::Delete(invalid(object)),
        Event::Delete(DeserializeGuard(Ok(object))) => Event::Delete(object),
    }))
}
