//! Per-Ingress compile results kept between compiles, so that a change to one Ingress (or its
//! Service) recompiles that Ingress, not all of them.
//!
//! A [`Fragment`] is what compile derives from one Ingress before merging it into the table:
//! the diagnostics of its annotations and rules, and each rule with its backend resolved to
//! endpoints. Merging (route conflicts, backend sharing) still runs over every Ingress, in
//! order, exactly as for a fragment built afresh, so a reused fragment gives the table a full
//! compile gives.
//!
//! A fragment is reused only when every input it was built from is the same object as then
//! (the same `Arc`: an unchanged file or watch object keeps its `Arc`, a changed one gets a
//! new one): the Ingress, the Secret of its basic auth users (looked up by name each compile,
//! so a rotated or deleted Secret recompiles it), and for each Service it routes to, the
//! Service and its EndpointSlices. The Services are compared only where the Service index says they changed
//! since the last compile (see [`Generation`]). Which BackendPolicy attaches where depends on
//! all policies, so any change among them drops every fragment. Ingresses that take part in what is shared across
//! Ingresses beyond routes and backends (canaries, TLS hosts and client verification, upstream
//! TLS, which reads Secrets) are compiled as before, outside fragments.

use std::sync::Arc;

use foldhash::HashMap;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;

use super::builder::{
    endpoints, BuiltBackend, IngressConfig, RouteParts, RouteShared, TableBuilder,
};
use super::canary::{self, CanarySettings};
use super::class::ClassSelector;
use super::ours::OurIngresses;
use super::secrets::Secrets;
use super::service_index::{Changed, ServiceIndex};
use super::{ingress, Annotations, Sink};
use crate::api::BackendPolicy;
use crate::snapshot::Snapshot;
use crate::table::{
    Diagnostic, HostPattern, ObjectRef, PathRule, RouteTls, Timeouts, TrafficLabels,
};

/// The fragments of the last compile, by Ingress, and the Service index they were built
/// with.
#[derive(Debug, Default)]
pub struct Fragments {
    /// The Services and EndpointSlices of the last compile: brought up to date by each
    /// compile, which learns from it which Services changed.
    services: ServiceIndex,
    /// The Ingresses of our class, oldest first, as of the last compile.
    ours: OurIngresses,
    /// Each fragment with the compile that last used it, by the address of the Ingress it was
    /// built from: a fragment is reused only for that very `Arc`, and holds it, so the address
    /// names no other object while the entry lives. (Hashing an address rather than the
    /// Ingress's namespace and name spares a look at 10,000 strings per compile.) Updated in
    /// place rather than rebuilt: a new map of 10,000 fragments per compile was allocator
    /// churn that kept growing RSS.
    by_ingress: HashMap<usize, (u64, Fragment)>,
    /// The BackendPolicies the fragments were built with.
    policies: Vec<Arc<BackendPolicy>>,
    compiles: u64,
}

impl Fragments {
    /// Starts a compile of `snapshot`: brings the Service index and the Ingresses of our class
    /// (as `classes` selects them, reporting to `sink`) up to date and returns them, and makes
    /// the fragments of the last compile candidates for reuse, unless the policies changed.
    pub(super) fn generation(
        &mut self,
        snapshot: &Snapshot,
        classes: &ClassSelector<'_>,
        sink: &mut Sink,
    ) -> (Generation<'_>, &ServiceIndex, &[(Arc<Ingress>, ObjectRef)]) {
        let ours = self.ours.update(&snapshot.ingresses, classes, sink);
        let changed = self
            .services
            .update(&snapshot.services, &snapshot.endpoint_slices);
        let policies = &snapshot.backend_policies;
        let same = self.policies.len() == policies.len()
            && self
                .policies
                .iter()
                .zip(policies)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if !same {
            self.by_ingress.clear();
            self.policies = policies.to_vec();
        }
        self.compiles += 1;
        let generation = Generation {
            by_ingress: &mut self.by_ingress,
            compile: self.compiles,
            changed,
        };
        (generation, &self.services, ours)
    }
}

/// One compile's use of [`Fragments`]: the fragments it uses are kept for the next compile;
/// those of Ingresses that are gone are dropped with it. So every fragment kept was current
/// at the last compile, and is still current unless a Service it routes to changed since.
pub(super) struct Generation<'f> {
    by_ingress: &'f mut HashMap<usize, (u64, Fragment)>,
    compile: u64,
    /// The Services whose objects changed since the last compile.
    changed: Changed,
}

impl Drop for Generation<'_> {
    fn drop(&mut self) {
        let compile = self.compile;
        self.by_ingress.retain(|_, (used, _)| *used == compile);
    }
}

/// An Ingress compiled outside fragments (a canary, or one with TLS settings), with what was
/// parsed of it on the way, so that it is not parsed again.
pub(super) struct Outside {
    pub config: IngressConfig,
    pub canary: Option<CanarySettings>,
    /// What parsing the annotations reported, to be reported in its turn.
    pub parsed: Sink,
}

impl Generation<'_> {
    /// The fragment of `ingress`: the last compile's when its inputs are unchanged, else a new
    /// one; or, for an Ingress compiled outside fragments, what was parsed of it.
    pub(super) fn get(
        &mut self,
        ingress: &Arc<Ingress>,
        object: &ObjectRef,
        builder: &mut TableBuilder<'_>,
    ) -> Result<&Fragment, Box<Outside>> {
        let compile = self.compile;
        let (services, changed) = (builder.services, &self.changed);
        let key = Arc::as_ptr(ingress).addr();
        let secrets = builder.secrets;
        let current = |(_, fragment): &(u64, Fragment)| {
            fragment.is_current(ingress, changed, services, secrets)
        };
        if !self.by_ingress.get(&key).is_some_and(current) {
            let fragment = Fragment::build(ingress, object, builder)?;
            self.by_ingress.insert(key, (compile, fragment));
        }
        let (used, fragment) = self
            .by_ingress
            .get_mut(&key)
            .expect("inserted or found above");
        *used = compile;
        Ok(fragment)
    }
}

/// What compile derives from one Ingress, ready to be merged.
#[derive(Debug)]
pub(super) struct Fragment {
    ingress: Arc<Ingress>,
    /// The Services its rules route to, as they were.
    inputs: Vec<Input>,
    /// Whether it may be reused: not when a backend speaks TLS (its client configuration
    /// depends on Secrets, which are not tracked).
    reusable: bool,
    /// Reported for its annotations and rules, in order.
    diagnostics: Vec<Diagnostic>,
    pub rules: Vec<Rule>,
    pub shared: RouteShared,
}

/// One rule of the Ingress, with its backend resolved.
#[derive(Debug)]
pub(super) struct Rule {
    pub host: HostPattern,
    pub path: Option<PathRule>,
    pub tls: RouteTls,
    pub timeouts: Timeouts,
    /// The route's traffic labels: the Ingress and the backend's name, which the backend it
    /// is merged into has too (backends are merged by key, name included). Made once, not
    /// at every compile.
    pub labels: Arc<TrafficLabels>,
    pub resolution: Resolution,
}

/// A rule's backend, built (with its endpoints, or why it has none), and what resolving it
/// reported.
#[derive(Debug)]
pub(super) struct Resolution {
    pub backend: BuiltBackend,
    diagnostics: Vec<Diagnostic>,
}

impl Resolution {
    /// Reports what resolving the backend reported.
    pub fn replay(&self, sink: &mut Sink) {
        sink.replay(&self.diagnostics);
    }
}

/// A Service a fragment routes to, and the objects it was resolved from.
#[derive(Debug)]
struct Input {
    /// (namespace, name)
    name: (String, String),
    /// Its [`ServiceIndex::name_hash`].
    hash: u64,
    object: Option<Arc<Service>>,
    slices: Vec<Arc<EndpointSlice>>,
}

impl Input {
    fn of(services: &ServiceIndex, namespace: &str, service: &str) -> Self {
        let (object, slices) = services.get(namespace, service);
        Self {
            name: (namespace.to_owned(), service.to_owned()),
            hash: services.name_hash(namespace, service),
            object: object.cloned(),
            slices: slices.cloned().collect(),
        }
    }

    fn is_current(&self, services: &ServiceIndex) -> bool {
        let (object, slices) = services.get(&self.name.0, &self.name.1);
        let same_service = match (&self.object, object) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        same_service
            && self.slices.len() == slices.len()
            && self
                .slices
                .iter()
                .zip(slices)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

impl Fragment {
    /// Whether this fragment is what [`Fragment::build`] would give for `ingress` now; its
    /// Services are compared with the index only where `changed` says they may differ.
    fn is_current(
        &self,
        ingress: &Arc<Ingress>,
        changed: &Changed,
        services: &ServiceIndex,
        secrets: &Secrets<'_>,
    ) -> bool {
        self.reusable
            && Arc::ptr_eq(&self.ingress, ingress)
            && self
                .shared
                .transforms
                .auth_secret
                .as_ref()
                .is_none_or(|secret| secret.is_current(secrets))
            && self
                .inputs
                .iter()
                .all(|input| !changed.may_include(input.hash) || input.is_current(services))
    }

    /// Compiles `ingress` into a fragment, in the order compile reports in; a canary or an
    /// Ingress with TLS settings comes back as parsed so far.
    fn build(
        ingress: &Arc<Ingress>,
        object: &ObjectRef,
        builder: &mut TableBuilder<'_>,
    ) -> Result<Self, Box<Outside>> {
        let mut sink = Sink::default();
        let annotations = Annotations::new(ingress.metadata.annotations.as_ref(), object);
        let settings = (builder.defaults, builder.secrets);
        let config = IngressConfig::parse(&annotations, object, settings, &mut sink);
        let canary = canary::parse(&annotations, &mut sink);
        // An Ingress's own error backend is resolved with the table's backends, not cached.
        let own_error_backend = config.shared.transforms.default_backend.is_some();
        if canary.is_some() || !config.tls.adds_nothing(ingress) || own_error_backend {
            return Err(Box::new(Outside {
                config,
                canary,
                parsed: sink,
            }));
        }
        let regex = config.shared.transforms.regex_paths;
        let candidates = ingress::candidates(ingress, object, regex, &mut sink);
        let mut inputs: Vec<Input> = Vec::new();
        let mut reusable = true;
        let mut rules = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            if let ingress::BackendRef::Service { name, .. } = candidate.backend {
                if !inputs.iter().any(|i| i.name.1 == name) {
                    inputs.push(Input::of(builder.services, &object.namespace, name));
                }
            }
            let mut resolving = Sink::default();
            let resolution = builder.resolve(object, &config, &candidate.backend, &mut resolving);
            reusable &= !resolution.key.protocol.uses_tls();
            let policy = resolution.policy;
            rules.push(Rule {
                tls: config.tls.route(&candidate.host),
                timeouts: config.timeouts.timeouts(policy.map(|(p, _)| *p)),
                host: candidate.host,
                path: candidate.path,
                labels: Arc::new(TrafficLabels::new(object, &resolution.key.name)),
                resolution: Resolution {
                    backend: BuiltBackend::new(
                        resolution.key,
                        policy.map(|(_, o)| o.clone()),
                        endpoints(
                            builder.services,
                            builder.policies,
                            &object.namespace,
                            resolution.target,
                        ),
                    ),
                    diagnostics: resolving.diagnostics,
                },
            });
        }
        Ok(Self {
            ingress: Arc::clone(ingress),
            inputs,
            reusable,
            diagnostics: sink.diagnostics,
            rules,
            shared: config.shared,
        })
    }

    /// Reports what compiling the Ingress's annotations and rules reported.
    pub fn replay(&self, sink: &mut Sink) {
        sink.replay(&self.diagnostics);
    }
}

/// Fragments are merged like freshly compiled Ingresses, in the same oldest-first order.
impl TableBuilder<'_> {
    /// Adds the routes of an Ingress compiled into a fragment: what [`TableBuilder::add`] does
    /// for each of its candidates, with the backends resolved beforehand.
    pub(super) fn add_fragment(
        &mut self,
        object: &ObjectRef,
        fragment: &Fragment,
        sink: &mut Sink,
    ) {
        fragment.replay(sink);
        for rule in &fragment.rules {
            if !self.claim(object, &rule.host, &rule.path, sink) {
                continue;
            }
            rule.resolution.replay(sink);
            let backend = self.intern_built(object, &rule.resolution.backend, sink);
            let parts = RouteParts {
                host: rule.host.clone(),
                path: rule.path.clone(),
                backend,
                tls: rule.tls.clone(),
                timeouts: rule.timeouts,
                labels: Arc::clone(&rule.labels),
            };
            self.push_route(object, parts, &fragment.shared);
        }
    }
}
