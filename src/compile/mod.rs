//! `compile`: the pure, total function from a [`Snapshot`] to a [`RoutingTable`] plus
//! diagnostics.
//!
//! Pure: no I/O, no clocks, no randomness; the same snapshot gives the same table. Total: any
//! input, however malformed, yields a table, and whatever could not be used is reported as a
//! [`Diagnostic`] that names the object. A broken object never affects the routes of another.
//!
//! Rules from many Ingresses merge per host. Ingresses are processed oldest first
//! (creationTimestamp, then namespace/name), so on a conflict (same host, same path and kind)
//! the oldest keeps the route and the younger one gets a diagnostic.

mod balancing;
mod canary;
mod certificate;
mod class;
mod fragment;
mod ingress;
mod policy;
mod resilience;
mod self_signed;
mod service;
mod tls;
mod upstream_tls;

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt, HashSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::annotations::{keys, parse_upgrade_protocols};
use crate::api::BackendPolicy;
use crate::snapshot::Snapshot;
use crate::table::{
    Backend, BackendProtocol, BackendTarget, Canary, Certificate, CircuitBreaker, CookieAffinity,
    Diagnostic, HealthCheck, HostPattern, LoadBalancing, ObjectRef, PathRule, PolicyStatus,
    RetryPolicy, Route, RoutingTable, SlowStart, UpstreamTls,
};

pub use class::{DEFAULT_CLASS_ANNOTATION, LEGACY_CLASS_ANNOTATION};
pub use fragment::Fragments;
pub use self_signed::self_signed;
pub use service::SERVICE_NAME_LABEL;
use service::{Resolved, Unresolved};

pub const DEFAULT_INGRESS_CLASS: &str = "vane";
pub const DEFAULT_CONTROLLER_NAME: &str = "vane.dev/ingress-controller";

/// Diagnostic reasons (used as Kubernetes Event reasons).
pub mod reasons {
    pub const INGRESS_CLASS_NOT_FOUND: &str = "IngressClassNotFound";
    pub const INVALID_HOST: &str = "InvalidHost";
    pub const INVALID_PATH: &str = "InvalidPath";
    pub const ROUTE_CONFLICT: &str = "RouteConflict";
    pub const DEFAULT_BACKEND_CONFLICT: &str = "DefaultBackendConflict";
    pub const SERVICE_NOT_FOUND: &str = "ServiceNotFound";
    pub const PORT_NOT_FOUND: &str = "PortNotFound";
    pub const NO_ENDPOINT_SLICES: &str = "NoEndpointSlices";
    pub const UNSUPPORTED_BACKEND: &str = "UnsupportedBackend";
    pub const INVALID_POLICY: &str = "InvalidPolicy";
    pub const POLICY_TARGET_NOT_FOUND: &str = "PolicyTargetNotFound";
    pub const POLICY_CONFLICT: &str = "PolicyConflict";
    pub const INVALID_ANNOTATION: &str = "InvalidAnnotation";
    pub const CANARY_WITHOUT_MAIN: &str = "CanaryWithoutMainIngress";
    pub const CANARY_CONFLICT: &str = "CanaryConflict";
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// A Secret of the wrong type, or whose certificate, key or CA bundle cannot be used.
    pub const INVALID_SECRET: &str = "InvalidSecret";
    pub const CERTIFICATE_EXPIRED: &str = "CertificateExpired";
    pub const TLS_CONFLICT: &str = "TLSConflict";
    /// A BackendPolicy turned off upstream certificate verification.
    pub const INSECURE_UPSTREAM_TLS: &str = "InsecureUpstreamTLS";
    /// A Service port, EndpointSlice port or endpoint address that cannot be used (out of
    /// range, not an IP of the slice's addressType, an unsupported addressType); the rest of
    /// the backend's endpoints still serve.
    pub const INVALID_ENDPOINT: &str = "InvalidEndpoint";
}

/// Settings of compile that come from the command line.
#[derive(Clone, Debug)]
pub struct Options {
    pub ingress_class: String,
    pub controller_name: String,
    /// `--default-ssl-certificate`: the Secret (namespace, name) served for unknown or missing
    /// SNI.
    pub default_certificate: Option<(String, String)>,
    /// The certificate served when there is no usable default Secret (the self-signed one
    /// generated at start). Without either, such handshakes are refused.
    pub fallback_certificate: Option<Arc<Certificate>>,
    /// Seconds since the Unix epoch, to refuse expired certificates; `None`: not checked.
    pub now: Option<i64>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ingress_class: DEFAULT_INGRESS_CLASS.into(),
            controller_name: DEFAULT_CONTROLLER_NAME.into(),
            default_certificate: None,
            fallback_certificate: None,
            now: None,
        }
    }
}

/// The output of compile.
#[derive(Debug, Default)]
pub struct Compiled {
    pub table: RoutingTable,
    pub diagnostics: Vec<Diagnostic>,
    /// The Ingresses of our class (whose status the leader writes), oldest first.
    pub ingresses: Vec<ObjectRef>,
    /// The conditions of every BackendPolicy, oldest first.
    pub policies: Vec<PolicyStatus>,
}

/// An object's annotations, read with typed parsers. A value that does not parse is reported
/// (`InvalidAnnotation`, naming the annotation) and treated as absent, so that setting falls
/// back to its default while the rest of the object is used.
pub struct Annotations<'a> {
    map: Option<&'a BTreeMap<String, String>>,
    object: &'a ObjectRef,
}

impl<'a> Annotations<'a> {
    pub fn new(map: Option<&'a BTreeMap<String, String>>, object: &'a ObjectRef) -> Self {
        Self { map, object }
    }

    pub fn parse<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
        sink: &mut Sink,
    ) -> Option<T> {
        let value = self.map?.get(key)?;
        parse(value)
            .map_err(|why| {
                sink.report(
                    self.object,
                    reasons::INVALID_ANNOTATION,
                    format!("{key}: {why}; the annotation is ignored"),
                )
            })
            .ok()
    }
}

/// Sorts objects oldest first: by creationTimestamp, then namespace/name (which also orders
/// objects without a timestamp, as in standalone manifests).
fn oldest_first<T>(objects: &mut [(&T, ObjectRef)], metadata: impl Fn(&T) -> &ObjectMeta) {
    objects.sort_by(|(a, a_ref), (b, b_ref)| {
        metadata(a)
            .creation_timestamp
            .cmp(&metadata(b).creation_timestamp)
            .then_with(|| a_ref.cmp(b_ref))
    });
}

/// Collects diagnostics, dropping exact repeats (one missing Service referenced by ten paths of
/// one Ingress is one problem).
#[derive(Default)]
pub struct Sink {
    diagnostics: Vec<Diagnostic>,
    seen: HashSet<Diagnostic>,
}

impl Sink {
    pub fn report(&mut self, object: &ObjectRef, reason: &'static str, message: String) {
        let diagnostic = Diagnostic {
            object: object.clone(),
            reason,
            message,
        };
        if self.seen.insert(diagnostic.clone()) {
            self.diagnostics.push(diagnostic);
        }
    }
}

/// Compiles `snapshot` from scratch.
pub fn compile(snapshot: &Snapshot, options: &Options) -> Compiled {
    compile_cached(snapshot, options, &mut Fragments::default())
}

/// Compiles `snapshot`, reusing the per-Ingress work of earlier compiles kept in `fragments`
/// where its inputs are the same objects (see [`Fragments`]); the result is the table
/// [`compile`] gives.
pub fn compile_cached(
    snapshot: &Snapshot,
    options: &Options,
    fragments: &mut Fragments,
) -> Compiled {
    let mut sink = Sink::default();
    let classes = class::ClassSelector::new(options, snapshot.ingress_classes.iter().map(|c| &**c));
    let services = service::ServiceIndex::new(&snapshot.services, &snapshot.endpoint_slices);
    let mut fragments = fragments.generation(&snapshot.backend_policies);

    let mut ours: Vec<(&Arc<Ingress>, ObjectRef)> = snapshot
        .ingresses
        .iter()
        .filter_map(|ingress| {
            let object = ingress_ref(ingress)?;
            classes
                .is_ours(ingress, &object, &mut sink)
                .then_some((ingress, object))
        })
        .collect();
    oldest_first(&mut ours, |ingress| &ingress.metadata);

    let (attachments, policies) = policy::attach(&snapshot.backend_policies, &services, &mut sink);
    let certificates =
        tls::TlsBuilder::new(snapshot.secrets.iter().map(|s| &**s), options, &mut sink);
    let routes = ours
        .iter()
        .map(|(ingress, _)| ingress::route_count(ingress))
        .sum();
    let mut builder = TableBuilder::new(&services, &attachments, certificates, routes);
    // Main Ingresses first, so that every canary finds the route it attaches to.
    let mut canaries = Vec::new();
    for (ingress, object) in &ours {
        if let Some(fragment) = fragments.get(ingress, object, &mut builder) {
            builder.add_fragment(object, fragment, &mut sink);
            continue;
        }
        let annotations = Annotations::new(ingress.metadata.annotations.as_ref(), object);
        let mut config = IngressConfig::parse(&annotations, object, &mut sink);
        match canary::parse(&annotations, &mut sink) {
            Some(settings) => canaries.push((ingress, object, config, settings)),
            None => {
                builder
                    .tls
                    .add_ingress(ingress, object, &mut config.tls, &mut sink);
                for candidate in ingress::candidates(ingress, object, &mut sink) {
                    builder.add(object, &config, candidate, &mut sink);
                }
            }
        }
    }
    for (ingress, object, config, settings) in canaries {
        for candidate in ingress::candidates(ingress, object, &mut sink) {
            builder.add_canary(object, &config, &settings, candidate, &mut sink);
        }
    }
    Compiled {
        table: RoutingTable::new(builder.routes, builder.backends).with_tls(builder.tls.finish()),
        diagnostics: sink.diagnostics,
        ingresses: ours.into_iter().map(|(_, object)| object).collect(),
        policies,
    }
}

/// Ingresses without a name cannot be referred to (nor exist in a cluster); they are skipped.
/// A missing namespace is `default`, as `kubectl apply` would make it.
fn ingress_ref(ingress: &Ingress) -> Option<ObjectRef> {
    let name = ingress.metadata.name.as_deref().filter(|n| !n.is_empty())?;
    let namespace = ingress.metadata.namespace.as_deref().unwrap_or("default");
    Some(ObjectRef::new("Ingress", namespace, name))
}

/// What an Ingress's annotations say, parsed once per Ingress.
struct IngressConfig {
    balancing: balancing::IngressBalancing,
    timeouts: resilience::IngressTimeouts,
    tls: tls::IngressTls,
    upgrade_protocols: Option<Arc<[Box<str>]>>,
}

impl IngressConfig {
    fn parse(annotations: &Annotations<'_>, object: &ObjectRef, sink: &mut Sink) -> Self {
        Self {
            balancing: balancing::IngressBalancing::parse(annotations, sink),
            timeouts: resilience::IngressTimeouts::parse(annotations, sink),
            tls: tls::IngressTls::parse(annotations, object, sink),
            upgrade_protocols: annotations
                .parse(keys::UPGRADE_PROTOCOLS, parse_upgrade_protocols, sink)
                .map(Arc::from),
        }
    }
}

/// What makes two backends the same: the Service port, how it is balanced and how it is
/// spoken to. (Health checks, retries and circuit breaking come from the port's policy alone,
/// so the name settles them.)
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BackendKey {
    name: String,
    load_balancing: LoadBalancing,
    slow_start: Option<SlowStart>,
    affinity: Option<CookieAffinity>,
    health: HealthCheck,
    retry: RetryPolicy,
    circuit_breaker: CircuitBreaker,
    protocol: BackendProtocol,
    upstream_tls: Option<UpstreamTls>,
}

impl BackendKey {
    /// The key of backend `name` as this Ingress balances it, given the attached policy.
    fn new(
        name: String,
        balancing: &balancing::IngressBalancing,
        policy: Option<&BackendPolicy>,
    ) -> Self {
        Self {
            name,
            load_balancing: balancing.load_balancing(policy),
            slow_start: balancing.slow_start(policy),
            affinity: balancing.affinity(policy),
            health: resilience::health(policy),
            retry: resilience::retry(policy),
            circuit_breaker: resilience::circuit_breaker(policy),
            protocol: BackendProtocol::Http,
            upstream_tls: None,
        }
    }
}

/// A backend as one rule asks for it, resolved up to its Service port.
struct Resolution<'a, 't> {
    key: BackendKey,
    /// The policy that configures the backend (none when it does not resolve).
    policy: Option<&'a (&'a BackendPolicy, ObjectRef)>,
    /// The Service port and the Service's name, or why the backend does not resolve.
    target: Result<(service::ServicePortRef<'a>, &'t str), Unresolved>,
}

/// The endpoints of a resolved backend in `namespace`, weighted by the policies of its port.
fn endpoints(
    services: &service::ServiceIndex<'_>,
    policies: &policy::Attachments<'_>,
    namespace: &str,
    target: Result<(service::ServicePortRef<'_>, &str), Unresolved>,
) -> Result<Resolved, Unresolved> {
    let (found, service) = target?;
    let weight = |port_name: Option<&str>, endpoint: &_, address: &str| {
        let policy = policies
            .for_port(namespace, service, port_name)
            .map(|(p, _)| *p);
        balancing::endpoint_weight(policy, endpoint, address)
    };
    services.endpoints(&found, &weight)
}

/// Accumulates routes and deduplicated backends while Ingresses are merged.
struct TableBuilder<'a> {
    services: &'a service::ServiceIndex<'a>,
    policies: &'a policy::Attachments<'a>,
    tls: tls::TlsBuilder<'a>,
    routes: Vec<Route>,
    backends: Vec<Backend>,
    /// Backends by name and algorithm (Ingresses may balance one Service port differently).
    backend_by_key: HashMap<BackendKey, usize>,
    /// Why a backend (by index) could not be resolved, or what it had to skip.
    problems: HashMap<usize, Vec<Unresolved>>,
    /// Who owns each (host, path) so far, and its route; `None` path is the default backend.
    owners: HashMap<(HostPattern, Option<PathRule>), (ObjectRef, usize)>,
}

impl<'a> TableBuilder<'a> {
    fn new(
        services: &'a service::ServiceIndex<'a>,
        policies: &'a policy::Attachments<'a>,
        tls: tls::TlsBuilder<'a>,
        routes: usize,
    ) -> Self {
        // Sized for the common case of a backend per route.
        Self {
            services,
            policies,
            tls,
            routes: Vec::with_capacity(routes),
            backends: Vec::with_capacity(routes),
            backend_by_key: HashMap::with_capacity(routes),
            problems: HashMap::new(),
            owners: HashMap::with_capacity(routes),
        }
    }

    fn add(
        &mut self,
        object: &ObjectRef,
        config: &IngressConfig,
        candidate: ingress::Candidate<'_>,
        sink: &mut Sink,
    ) {
        if !self.claim(object, &candidate.host, &candidate.path, sink) {
            return;
        }
        let resolution = self.resolve(object, config, &candidate.backend, sink);
        let (backend, policy) = self.backend(object, resolution, sink);
        self.routes.push(Route {
            tls: config.tls.route(&candidate.host),
            ingress: object.clone(),
            host: candidate.host,
            path: candidate.path,
            backend,
            timeouts: config.timeouts.timeouts(policy),
            canary: None,
            upgrade_protocols: config.upgrade_protocols.clone(),
        });
    }

    /// Adds the routes of an Ingress compiled into a fragment: what [`Self::add`] does for each
    /// of its candidates, with the backends resolved beforehand.
    fn add_fragment(&mut self, object: &ObjectRef, fragment: &fragment::Fragment, sink: &mut Sink) {
        fragment.replay(sink);
        for rule in &fragment.rules {
            if !self.claim(object, &rule.host, &rule.path, sink) {
                continue;
            }
            rule.resolution.replay(sink);
            let backend = self.intern(
                object,
                rule.resolution.key.clone(),
                rule.resolution.policy.clone(),
                sink,
                || rule.resolution.resolved.clone(),
            );
            self.routes.push(Route {
                tls: rule.tls.clone(),
                ingress: object.clone(),
                host: rule.host.clone(),
                path: rule.path.clone(),
                backend,
                timeouts: rule.timeouts,
                canary: None,
                upgrade_protocols: fragment.upgrade_protocols.clone(),
            });
        }
    }

    /// Makes `object` the owner of the route on `host` and `path`, unless another Ingress is
    /// (which is reported) or it already is (a repeated rule, silently ignored).
    fn claim(
        &mut self,
        object: &ObjectRef,
        host: &HostPattern,
        path: &Option<PathRule>,
        sink: &mut Sink,
    ) -> bool {
        let key = (host.clone(), path.clone());
        if let Some((owner, _)) = self.owners.get(&key) {
            if owner != object {
                let (reason, what) = match path {
                    Some(path) => (reasons::ROUTE_CONFLICT, format!("host {host} path {path}")),
                    None => (
                        reasons::DEFAULT_BACKEND_CONFLICT,
                        "spec.defaultBackend".to_string(),
                    ),
                };
                sink.report(
                    object,
                    reason,
                    format!(
                        "{what} is already served by older Ingress {}/{}; this one is ignored",
                        owner.namespace, owner.name
                    ),
                );
            }
            // Within one Ingress, the first occurrence of a rule wins silently, as the API allows it.
            return false;
        }
        self.owners.insert(key, (object.clone(), self.routes.len()));
        true
    }

    /// Makes `candidate` the canary of the route with the same host and path (and kind).
    fn add_canary(
        &mut self,
        object: &ObjectRef,
        config: &IngressConfig,
        settings: &canary::CanarySettings,
        candidate: ingress::Candidate<'_>,
        sink: &mut Sink,
    ) {
        let what = match &candidate.path {
            Some(path) => format!("host {} path {path}", candidate.host),
            None => "spec.defaultBackend".to_string(),
        };
        let Some(&(_, route)) = self
            .owners
            .get(&(candidate.host.clone(), candidate.path.clone()))
        else {
            sink.report(
                object,
                reasons::CANARY_WITHOUT_MAIN,
                format!("{what}: no Ingress serves this route, so there is nothing to be a canary of; the rule is ignored"),
            );
            return;
        };
        if let Some(older) = self.routes.get(route).and_then(|r| r.canary.as_ref()) {
            let older = format!("{}/{}", older.ingress.namespace, older.ingress.name);
            sink.report(
                object,
                reasons::CANARY_CONFLICT,
                format!("{what} already has the canary {older}; this one is ignored"),
            );
            return;
        }
        // The route's timeouts stay the main Ingress's: they bound the request before the
        // canary decision is made.
        let resolution = self.resolve(object, config, &candidate.backend, sink);
        let (backend, _) = self.backend(object, resolution, sink);
        if let Some(route) = self.routes.get_mut(route) {
            route.canary = Some(Canary {
                ingress: object.clone(),
                backend,
                by_header: settings.by_header.clone(),
                header_value: settings.header_value.clone(),
                by_cookie: settings.by_cookie.as_deref().map(Into::into),
                weight_percent: settings.weight_percent,
            });
        }
    }

    /// The index of the backend `resolution` names, and the policy that configures it. The
    /// Service port is resolved for every route; its endpoints are read only the first time a
    /// backend (port and balancing) is seen.
    fn backend(
        &mut self,
        object: &ObjectRef,
        resolution: Resolution<'a, '_>,
        sink: &mut Sink,
    ) -> (usize, Option<&'a BackendPolicy>) {
        let Resolution {
            key,
            policy,
            target,
        } = resolution;
        let (services, policies) = (self.services, self.policies);
        let index = self.intern(object, key, policy.map(|(_, o)| o.clone()), sink, || {
            endpoints(services, policies, &object.namespace, target)
        });
        (index, policy.map(|(p, _)| *p))
    }

    /// Resolves `target` up to its Service port: the backend's key and policy, but not yet its
    /// endpoints.
    fn resolve<'t>(
        &mut self,
        object: &ObjectRef,
        config: &IngressConfig,
        target: &ingress::BackendRef<'t>,
        sink: &mut Sink,
    ) -> Resolution<'a, 't> {
        let namespace = object.namespace.as_str();
        let balancing = &config.balancing;
        let invalid = |key, problem| Resolution {
            key,
            policy: None,
            target: Err(problem),
        };
        let (service, port) = match target {
            ingress::BackendRef::Service { name, port } => (*name, *port),
            ingress::BackendRef::Unsupported(why) => {
                let problem = Unresolved {
                    reason: reasons::UNSUPPORTED_BACKEND,
                    message: why.clone(),
                };
                let key = BackendKey::new(format!("{object} (unsupported)"), balancing, None);
                return invalid(key, problem);
            }
        };
        let found = match self.services.port(namespace, service, port) {
            Ok(found) => found,
            Err(problem) => {
                let wanted = port
                    .name
                    .clone()
                    .unwrap_or_else(|| port.number.unwrap_or_default().to_string());
                let key =
                    BackendKey::new(format!("{namespace}/{service}:{wanted}"), balancing, None);
                return invalid(key, problem);
            }
        };
        let policy = self
            .policies
            .for_port(namespace, service, found.port_name());
        let mut key = BackendKey::new(found.name.clone(), balancing, policy.map(|(p, _)| *p));
        key.protocol = upstream_tls::backend_protocol(
            config.tls.backend_protocol,
            policy.map(|(p, _)| *p),
            found.app_protocol(),
        );
        let upstream = policy.map(|(p, o)| (*p, o));
        match self
            .tls
            .upstream(key.protocol, upstream, namespace, service, sink)
        {
            Ok(upstream_tls) => key.upstream_tls = upstream_tls,
            Err(problem) => {
                key.name.push_str(" (upstream TLS)");
                return invalid(key, problem);
            }
        }
        Resolution {
            key,
            policy,
            target: Ok((found, service)),
        }
    }

    /// The backend for `key`, created with `resolve`'s endpoints on first use. An unresolvable
    /// backend, or one that had to skip endpoints, is reported to every Ingress that uses it,
    /// not just the first.
    fn intern(
        &mut self,
        object: &ObjectRef,
        key: BackendKey,
        policy: Option<ObjectRef>,
        sink: &mut Sink,
        resolve: impl FnOnce() -> Result<Resolved, Unresolved>,
    ) -> usize {
        if let Some(&index) = self.backend_by_key.get(&key) {
            for problem in self.problems.get(&index).into_iter().flatten() {
                sink.report(object, problem.reason, problem.message.clone());
            }
            return index;
        }
        let index = self.backends.len();
        let (target, problems) = match resolve() {
            Ok(resolved) => (
                BackendTarget::Endpoints(resolved.endpoints),
                resolved
                    .skipped
                    .into_iter()
                    .map(|message| Unresolved {
                        reason: reasons::INVALID_ENDPOINT,
                        message,
                    })
                    .collect(),
            ),
            Err(problem) => (
                BackendTarget::Invalid(problem.message.clone()),
                vec![problem],
            ),
        };
        for problem in &problems {
            sink.report(object, problem.reason, problem.message.clone());
        }
        if !problems.is_empty() {
            self.problems.insert(index, problems);
        }
        self.backends.push(Backend {
            name: key.name.clone().into(),
            target,
            load_balancing: key.load_balancing.clone(),
            slow_start: key.slow_start,
            affinity: key.affinity.clone(),
            health: key.health.clone(),
            retry: key.retry,
            circuit_breaker: key.circuit_breaker,
            policy,
            protocol: key.protocol,
            upstream_tls: key.upstream_tls.clone(),
        });
        self.backend_by_key.insert(key, index);
        index
    }
}
