//! What the leader writes back to the cluster: Ingress `status.loadBalancer`, BackendPolicy
//! conditions, and an Event per diagnostic.
//!
//! The writer runs after every compile and every 30 s (to follow changes of the published
//! Service's address). It compares what compile wants with what the stores hold and patches
//! only differences. Leadership is checked before every single write, so losing the Lease stops
//! writes at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef as StoreRef;
use kube::{Api, Client, Resource};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::watch::Stores;
use crate::api::BackendPolicy;
use crate::table::{ConditionSpec, Diagnostic, ObjectRef, PolicyStatus};

/// How often status is reconciled even without changes.
const RESYNC: Duration = Duration::from_secs(30);

/// Where the addresses written to Ingress status come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Publish {
    /// `--publish-service NS/NAME`: that Service's addresses.
    Service { namespace: String, name: String },
    /// `--publish-status-address ADDR[,ADDR]`: IPs or hostnames, as given.
    Addresses(Vec<String>),
}

/// What one compile decided that the leader should write.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Ingresses of our class.
    pub ingresses: Vec<ObjectRef>,
    pub policies: Vec<PolicyStatus>,
    pub diagnostics: Vec<Diagnostic>,
}

pub struct StatusWriter {
    client: Client,
    stores: Stores,
    publish: Option<Publish>,
    recorder: Recorder,
    /// Diagnostics already sent as Events by this leader; forgotten once resolved, so a problem
    /// that comes back is reported again.
    emitted: HashSet<Diagnostic>,
    written: Written,
}

/// What this writer last patched, per object. The stores learn of a write only when its watch
/// event arrives; until then they still show the object as it was, and comparing against them
/// alone would write the same status again. So a write is remembered with the resourceVersion
/// the store showed when it was made: while the store still shows that version, the write is in
/// flight and is not repeated. Once the version moves on (our write arrived, or someone else's
/// did), the store is the truth again.
#[derive(Default)]
struct Written {
    by_object: HashMap<WrittenKey, (Option<String>, serde_json::Value)>,
}

/// An object's namespace, name and kind.
type WrittenKey = (Arc<str>, Arc<str>, &'static str);

impl Written {
    fn in_flight(
        &self,
        key: &WrittenKey,
        store_version: Option<&String>,
        desired: &serde_json::Value,
    ) -> bool {
        self.by_object.get(key).is_some_and(|(version, written)| {
            version.as_ref() == store_version && written == desired
        })
    }

    fn record(
        &mut self,
        key: WrittenKey,
        store_version: Option<String>,
        desired: serde_json::Value,
    ) {
        self.by_object.insert(key, (store_version, desired));
    }
}

impl StatusWriter {
    pub fn new(
        client: Client,
        stores: Stores,
        publish: Option<Publish>,
        controller: &str,
        identity: &str,
    ) -> Self {
        let reporter = Reporter {
            controller: controller.to_owned(),
            instance: Some(identity.to_owned()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            stores,
            publish,
            emitted: HashSet::new(),
            written: Written::default(),
        }
    }

    /// Writes status whenever a new outcome arrives, leadership is gained, or the resync
    /// period passes, until `shutdown`.
    pub async fn run(
        mut self,
        mut outcomes: watch::Receiver<Arc<Outcome>>,
        mut leader: watch::Receiver<bool>,
        shutdown: CancellationToken,
    ) {
        let mut resync = tokio::time::interval(RESYNC);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = outcomes.changed() => if changed.is_err() { return },
                changed = leader.changed() => if changed.is_err() { return },
                _ = resync.tick() => {}
            }
            if !*leader.borrow() {
                self.emitted.clear();
                continue;
            }
            let outcome = outcomes.borrow_and_update().clone();
            self.sync(&outcome, &leader).await;
        }
    }

    async fn sync(&mut self, outcome: &Outcome, leader: &watch::Receiver<bool>) {
        let is_leader = || *leader.borrow();
        match self.published_addresses().await {
            Ok(Some(addresses)) => self.sync_ingresses(outcome, &addresses, &is_leader).await,
            Ok(None) => {}
            Err(error) => {
                warn!(%error, "cannot read the published Service; Ingress status left as is")
            }
        }
        self.sync_policies(outcome, &is_leader).await;
        self.publish_events(outcome, &is_leader).await;
    }

    /// The load-balancer entries to write, or `None` when no publish source is configured.
    async fn published_addresses(&self) -> kube::Result<Option<Vec<IngressLoadBalancerIngress>>> {
        match &self.publish {
            None => Ok(None),
            Some(Publish::Addresses(addresses)) => {
                Ok(Some(addresses.iter().map(|a| entry(a)).collect()))
            }
            Some(Publish::Service { namespace, name }) => {
                let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
                Ok(Some(
                    api.get_opt(name)
                        .await?
                        .map(|s| service_addresses(&s))
                        .unwrap_or_default(),
                ))
            }
        }
    }

    async fn sync_ingresses(
        &mut self,
        outcome: &Outcome,
        addresses: &[IngressLoadBalancerIngress],
        is_leader: &impl Fn() -> bool,
    ) {
        let ours: HashSet<(&str, &str)> = outcome
            .ingresses
            .iter()
            .map(|o| (&*o.namespace, &*o.name))
            .collect();
        let desired_ours = normalized(addresses);
        for ingress in self.stores.ingresses.state() {
            let (Some(namespace), Some(name)) = (
                ingress.metadata.namespace.as_deref(),
                ingress.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let current = normalized(
                ingress
                    .status
                    .as_ref()
                    .and_then(|s| s.load_balancer.as_ref())
                    .and_then(|lb| lb.ingress.as_deref())
                    .unwrap_or_default(),
            );
            let desired = if ours.contains(&(namespace, name)) {
                desired_ours.clone()
            } else if !current.is_empty() && current == desired_ours {
                // It left our class (or was never ours but carries our address): clear it.
                Vec::new()
            } else {
                continue;
            };
            let value = if desired.is_empty() {
                serde_json::Value::Null
            } else {
                json!(desired)
            };
            let key = (namespace.into(), name.into(), "Ingress");
            let version = ingress.metadata.resource_version.as_ref();
            if current == desired || self.written.in_flight(&key, version, &value) {
                continue;
            }
            if !is_leader() {
                return;
            }
            let patch = json!({"status": {"loadBalancer": {"ingress": value}}});
            let api: Api<Ingress> = Api::namespaced(self.client.clone(), namespace);
            let object = format!("{namespace}/{name}");
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    info!(ingress = object, addresses = ?desired, "Ingress status updated");
                    self.written.record(key, version.cloned(), value);
                }
                Err(error) => warn!(ingress = object, %error, "cannot update Ingress status"),
            }
        }
    }

    async fn sync_policies(&mut self, outcome: &Outcome, is_leader: &impl Fn() -> bool) {
        for status in &outcome.policies {
            let key = StoreRef::new(&status.object.name).within(&status.object.namespace);
            let Some(policy) = self.stores.backend_policies.get(&key) else {
                continue;
            };
            let current = policy
                .status
                .as_ref()
                .map(|s| s.conditions.as_slice())
                .unwrap_or_default();
            let desired = conditions(&status.conditions, status.observed_generation, current);
            let key = (
                status.object.namespace.clone(),
                status.object.name.clone(),
                "BackendPolicy",
            );
            let version = policy.metadata.resource_version.as_ref();
            // Transition times differ from write to write; what matters is the rest.
            let comparable = json!(desired.iter().map(condition_key).collect::<Vec<_>>());
            if same_conditions(current, &desired)
                || self.written.in_flight(&key, version, &comparable)
            {
                continue;
            }
            if !is_leader() {
                return;
            }
            let api: Api<BackendPolicy> =
                Api::namespaced(self.client.clone(), &status.object.namespace);
            let patch = json!({"status": {"conditions": desired}});
            match api
                .patch_status(
                    &status.object.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {
                    debug!(policy = %status.object, "BackendPolicy status updated");
                    self.written.record(key, version.cloned(), comparable);
                }
                Err(error) => {
                    warn!(policy = %status.object, %error, "cannot update BackendPolicy status")
                }
            }
        }
    }

    async fn publish_events(&mut self, outcome: &Outcome, is_leader: &impl Fn() -> bool) {
        let mut still_present = HashSet::new();
        for diagnostic in &outcome.diagnostics {
            still_present.insert(diagnostic.clone());
            if self.emitted.contains(diagnostic) {
                continue;
            }
            let Some(reference) = self.reference(&diagnostic.object) else {
                continue;
            };
            if !is_leader() {
                return;
            }
            let event = Event {
                type_: EventType::Warning,
                reason: diagnostic.reason.to_owned(),
                note: Some(truncate(&diagnostic.message, 1024)),
                action: "Compile".to_owned(),
                secondary: None,
            };
            match self.recorder.publish(&event, &reference).await {
                Ok(()) => {
                    self.emitted.insert(diagnostic.clone());
                }
                Err(error) => warn!(object = %diagnostic.object, %error, "cannot publish Event"),
            }
        }
        self.emitted.retain(|d| still_present.contains(d));
    }

    /// A reference to an Ingress or BackendPolicy in the stores (with its uid, so the Event
    /// shows up in `kubectl describe`).
    fn reference(&self, object: &ObjectRef) -> Option<ObjectReference> {
        let (name, namespace) = (&*object.name, &*object.namespace);
        match object.kind {
            "Ingress" => self
                .stores
                .ingresses
                .get(&StoreRef::new(name).within(namespace))
                .map(|i| i.object_ref(&())),
            "BackendPolicy" => self
                .stores
                .backend_policies
                .get(&StoreRef::new(name).within(namespace))
                .map(|p| p.object_ref(&())),
            _ => None,
        }
    }
}

/// One load-balancer entry: an IP if it parses as one, else a hostname.
fn entry(address: &str) -> IngressLoadBalancerIngress {
    if address.parse::<std::net::IpAddr>().is_ok() {
        IngressLoadBalancerIngress {
            ip: Some(address.to_owned()),
            ..Default::default()
        }
    } else {
        IngressLoadBalancerIngress {
            hostname: Some(address.to_owned()),
            ..Default::default()
        }
    }
}

/// A Service's addresses, with ingress-nginx's fallbacks: a LoadBalancer's ingress entries
/// (plus external IPs); else external IPs; else an ExternalName's name; else the cluster IP.
pub fn service_addresses(service: &Service) -> Vec<IngressLoadBalancerIngress> {
    let spec = service.spec.clone().unwrap_or_default();
    let external: Vec<IngressLoadBalancerIngress> = spec
        .external_ips
        .unwrap_or_default()
        .iter()
        .map(|a| entry(a))
        .collect();
    let balancer: Vec<IngressLoadBalancerIngress> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|entries| {
            entries
                .iter()
                .map(|e| IngressLoadBalancerIngress {
                    ip: e.ip.clone(),
                    hostname: e.hostname.clone(),
                    ..Default::default()
                })
                .collect()
        })
        .unwrap_or_default();
    match spec.type_.as_deref() {
        Some("LoadBalancer") => balancer.into_iter().chain(external).collect(),
        _ if !external.is_empty() => external,
        Some("ExternalName") => spec.external_name.iter().map(|n| entry(n)).collect(),
        _ => spec
            .cluster_ip
            .filter(|ip| !ip.is_empty() && ip != "None")
            .map(|ip| vec![entry(&ip)])
            .unwrap_or_default(),
    }
}

/// Entries without ports, sorted and deduplicated, so that order never causes a write.
fn normalized(entries: &[IngressLoadBalancerIngress]) -> Vec<IngressLoadBalancerIngress> {
    let mut out: Vec<IngressLoadBalancerIngress> = entries
        .iter()
        .map(|e| IngressLoadBalancerIngress {
            ip: e.ip.clone(),
            hostname: e.hostname.clone(),
            ..Default::default()
        })
        .collect();
    out.sort_by(|a, b| (&a.ip, &a.hostname).cmp(&(&b.ip, &b.hostname)));
    out.dedup();
    out
}

/// The conditions to write: compile's, with `lastTransitionTime` kept where the status of a
/// condition did not change.
fn conditions(
    specs: &[ConditionSpec],
    generation: Option<i64>,
    current: &[Condition],
) -> Vec<Condition> {
    let previous: HashMap<&str, &Condition> =
        current.iter().map(|c| (c.type_.as_str(), c)).collect();
    specs
        .iter()
        .map(|spec| {
            let status = if spec.status { "True" } else { "False" };
            let last_transition_time = match previous.get(spec.type_) {
                Some(old) if old.status == status => old.last_transition_time.clone(),
                _ => Time(Timestamp::now()),
            };
            Condition {
                type_: spec.type_.to_owned(),
                status: status.to_owned(),
                reason: spec.reason.to_owned(),
                message: truncate(&spec.message, 32 * 1024),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// A condition without its transition time.
fn condition_key(c: &Condition) -> (String, String, String, String, Option<i64>) {
    (
        c.type_.clone(),
        c.status.clone(),
        c.reason.clone(),
        c.message.clone(),
        c.observed_generation,
    )
}

fn same_conditions(current: &[Condition], desired: &[Condition]) -> bool {
    let mut a: Vec<_> = current.iter().map(condition_key).collect();
    let mut b: Vec<_> = desired.iter().map(condition_key).collect();
    a.sort();
    b.sort();
    a == b
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus,
    };

    fn ips(entries: &[IngressLoadBalancerIngress]) -> Vec<String> {
        entries
            .iter()
            .map(|e| e.ip.clone().or(e.hostname.clone()).unwrap())
            .collect()
    }

    #[test]
    fn service_addresses_follow_ingress_nginx_fallbacks() {
        let service = |type_: &str, external: &[&str], lb: &[&str]| Service {
            spec: Some(ServiceSpec {
                type_: Some(type_.into()),
                cluster_ip: Some("10.96.0.10".into()),
                external_ips: Some(external.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(
                        lb.iter()
                            .map(|a| LoadBalancerIngress {
                                ip: Some(a.to_string()),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            ips(&service_addresses(&service(
                "LoadBalancer",
                &[],
                &["203.0.113.1"]
            ))),
            ["203.0.113.1"]
        );
        assert_eq!(
            ips(&service_addresses(&service(
                "NodePort",
                &["198.51.100.7"],
                &[]
            ))),
            ["198.51.100.7"]
        );
        assert_eq!(
            ips(&service_addresses(&service("ClusterIP", &[], &[]))),
            ["10.96.0.10"]
        );
    }

    #[test]
    fn unchanged_condition_keeps_its_transition_time() {
        let spec = |status| ConditionSpec {
            type_: "Accepted",
            status,
            reason: "Accepted",
            message: "ok".into(),
        };
        let first = conditions(&[spec(true)], Some(1), &[]);
        let old_time = Time("2020-01-01T00:00:00Z".parse().unwrap());
        let stored = vec![Condition {
            last_transition_time: old_time.clone(),
            ..first[0].clone()
        }];
        let again = conditions(&[spec(true)], Some(1), &stored);
        assert_eq!(again[0].last_transition_time, old_time);
        assert!(same_conditions(&stored, &again));
        let flipped = conditions(&[spec(false)], Some(1), &stored);
        assert_ne!(flipped[0].last_transition_time, old_time);
        assert!(!same_conditions(&stored, &flipped));
    }
}
