//! Merging Ingresses into a table: each rule's backend is resolved to its Service port and
//! endpoints, backends are deduplicated by what makes them the same, and routes are claimed per
//! host and path, oldest Ingress first.

use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::fast::RandomState;
use foldhash::{HashMap, HashMapExt};
use hashbrown::HashTable;
use http::StatusCode;

use crate::api::annotations::{keys, parse_bool, parse_upgrade_protocols};
use crate::api::BackendPolicy;
use crate::table::{
    Backend, BackendProtocol, BackendTarget, Canary, CircuitBreaker, CookieAffinity, ErrorPages,
    HealthCheck, HostPattern, LoadBalancing, ObjectRef, PathRule, RetryPolicy, Route, RouteTls,
    SlowStart, Timeouts, TrafficLabels, Transforms, UpstreamTls,
};

use super::secrets::Secrets;
use super::service::{self, Resolved, Unresolved};
use super::service_index::ServiceIndex;
use super::{
    balancing, canary, ingress, policy, reasons, resilience, tls, transform, upstream_tls,
    Annotations, Sink,
};

/// What an Ingress's annotations say, parsed once per Ingress.
pub(super) struct IngressConfig {
    pub(super) balancing: balancing::IngressBalancing,
    pub(super) timeouts: resilience::IngressTimeouts,
    pub(super) tls: tls::IngressTls,
    pub(super) shared: RouteShared,
}

/// What every route of an Ingress takes from its annotations as it is.
#[derive(Clone, Debug)]
pub(super) struct RouteShared {
    upgrade_protocols: Option<Arc<[Box<str>]>>,
    access_log: bool,
    pub(super) transforms: transform::IngressTransforms,
    /// The backend of the Ingress's own `default-backend`, once resolved.
    error_backend: Option<usize>,
}

/// One route's own parts: its rule, backend, TLS, timeouts and traffic labels.
pub(super) struct RouteParts {
    pub(super) host: HostPattern,
    pub(super) path: Option<PathRule>,
    pub(super) backend: usize,
    pub(super) tls: RouteTls,
    pub(super) timeouts: Timeouts,
    pub(super) labels: Arc<TrafficLabels>,
}

impl IngressConfig {
    /// `defaults` apply where the Ingress sets nothing; `secrets` are those basic auth reads.
    pub(super) fn parse(
        annotations: &Annotations<'_>,
        object: &ObjectRef,
        settings: (transform::Defaults, &Secrets<'_>),
        sink: &mut Sink,
    ) -> Self {
        Self {
            balancing: balancing::IngressBalancing::parse(annotations, sink),
            timeouts: resilience::IngressTimeouts::parse(annotations, sink),
            tls: tls::IngressTls::parse(annotations, object, sink),
            shared: RouteShared {
                upgrade_protocols: annotations
                    .parse(keys::UPGRADE_PROTOCOLS, parse_upgrade_protocols, sink)
                    .map(Arc::from),
                access_log: annotations
                    .parse(keys::ENABLE_ACCESS_LOG, parse_bool, sink)
                    .unwrap_or(true),
                transforms: transform::IngressTransforms::parse(
                    annotations,
                    object,
                    settings,
                    sink,
                ),
                error_backend: None,
            },
        }
    }
}

/// What makes two backends the same: the Service port, how it is balanced and how it is
/// spoken to. (Health checks, retries and circuit breaking come from the port's policy alone,
/// so the name settles them.)
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct BackendKey {
    pub(super) name: String,
    pub(super) load_balancing: LoadBalancing,
    pub(super) slow_start: Option<SlowStart>,
    pub(super) affinity: Option<CookieAffinity>,
    pub(super) health: HealthCheck,
    pub(super) retry: RetryPolicy,
    pub(super) circuit_breaker: CircuitBreaker,
    pub(super) protocol: BackendProtocol,
    pub(super) upstream_tls: Option<UpstreamTls>,
}

impl BackendKey {
    /// The key of backend `name` as this Ingress balances it, given the attached policy.
    pub(super) fn new(
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
pub(super) struct Resolution<'a, 't> {
    pub(super) key: BackendKey,
    /// The policy that configures the backend (none when it does not resolve).
    pub(super) policy: Option<&'a (&'a BackendPolicy, ObjectRef)>,
    /// The Service port and the Service's name, or why the backend does not resolve.
    pub(super) target: Result<(service::ServicePortRef<'a>, &'t str), Unresolved>,
}

/// The endpoints of a resolved backend in `namespace`, weighted by the policies of its port.
pub(super) fn endpoints(
    services: &ServiceIndex,
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
pub(super) struct TableBuilder<'a> {
    pub(super) services: &'a ServiceIndex,
    pub(super) policies: &'a policy::Attachments<'a>,
    pub(super) tls: tls::TlsBuilder<'a>,
    /// The snapshot's Secrets (basic auth reads its users from them).
    pub(super) secrets: &'a Secrets<'a>,
    pub(super) routes: Vec<Route>,
    pub(super) backends: Vec<Arc<Backend>>,
    /// Backends by name and algorithm (Ingresses may balance one Service port differently).
    pub(super) backend_by_key: HashMap<Arc<BackendKey>, usize>,
    /// Why a backend (by index) could not be resolved, or what it had to skip.
    pub(super) problems: HashMap<usize, Vec<Unresolved>>,
    /// The route (by index) that owns each (host, path) so far, found by the hash of its host
    /// and path (`None` path: the default backend); the route has its owner. Indexes rather
    /// than a map of copies: copying every host, path and owner on each compile was a tenth
    /// of a one-file change at 10,000 Ingresses.
    owners: HashTable<usize>,
    hasher: RandomState,
    /// What applies where an Ingress sets nothing (`--proxy-body-size`, ...).
    pub(super) defaults: transform::Defaults,
    /// Routes whose Ingress asked for `from-to-www-redirect`, by host.
    www: Vec<(Arc<str>, usize)>,
    /// `--default-backend-service`: its backend, and the route it serves unmatched requests on.
    default_backend: Option<usize>,
    default_route: Option<Route>,
    /// `--custom-http-errors` from that backend: the error pages of Ingresses that set none.
    default_pages: Option<Arc<ErrorPages>>,
    /// `--custom-http-errors`.
    default_codes: Box<[StatusCode]>,
}

impl<'a> TableBuilder<'a> {
    pub(super) fn new(
        services: &'a ServiceIndex,
        policies: &'a policy::Attachments<'a>,
        (tls, secrets): (tls::TlsBuilder<'a>, &'a Secrets<'a>),
        routes: usize,
        defaults: transform::Defaults,
    ) -> Self {
        // Sized for the common case of a backend per route.
        Self {
            services,
            policies,
            tls,
            secrets,
            routes: Vec::with_capacity(routes),
            backends: Vec::with_capacity(routes),
            backend_by_key: HashMap::with_capacity(routes),
            problems: HashMap::new(),
            owners: HashTable::with_capacity(routes),
            hasher: RandomState::default(),
            defaults,
            www: Vec::new(),
            default_backend: None,
            default_route: None,
            default_pages: None,
            default_codes: Box::default(),
        }
    }

    /// Resolves `--default-backend-service` (its first port) into a backend, with the route
    /// that serves unmatched requests and the error pages of `codes`.
    pub(super) fn set_default_backend(
        &mut self,
        namespace: &str,
        name: &str,
        codes: &[u16],
        sink: &mut Sink,
    ) {
        let object = ObjectRef::new("Service", namespace, name);
        let config = IngressConfig::parse(
            &Annotations::new(None, &object),
            &object,
            (self.defaults, self.secrets),
            sink,
        );
        let backend = self.error_backend(&object, &config, name, sink);
        let route = Route {
            ingress: object.clone(),
            host: HostPattern::Any,
            path: None,
            backend,
            timeouts: config.timeouts.timeouts(None),
            canary: None,
            tls: RouteTls::default(),
            upgrade_protocols: None,
            access_log: true,
            labels: self.labels(&object, backend),
            rewrite: None,
            transforms: None,
            error_pages: None,
        };
        self.default_codes = transform::status_codes(codes);
        self.default_pages = (!codes.is_empty()).then(|| {
            Arc::new(ErrorPages {
                codes: self.default_codes.clone(),
                backend,
            })
        });
        self.default_backend = Some(backend);
        self.default_route = Some(route);
    }

    /// Serves requests no rule matches on `--default-backend-service`, unless an Ingress's
    /// `spec.defaultBackend` does (the first route without a path is the table's default).
    pub(super) fn add_default_backend_route(&mut self) {
        if let Some(route) = self.default_route.take() {
            self.routes.push(route);
        }
    }

    /// Resolves the Ingress's own `default-backend`, if it has one, for its error pages.
    pub(super) fn resolve_error_backend(
        &mut self,
        object: &ObjectRef,
        config: &mut IngressConfig,
        sink: &mut Sink,
    ) {
        if let Some(service) = config.shared.transforms.default_backend.clone() {
            config.shared.error_backend = Some(self.error_backend(object, config, &service, sink));
        }
    }

    /// The backend of Service `service` (of `object`'s namespace) on its first port.
    fn error_backend(
        &mut self,
        object: &ObjectRef,
        config: &IngressConfig,
        service: &str,
        sink: &mut Sink,
    ) -> usize {
        let port = self.services.first_port(&object.namespace, service);
        let target = match &port {
            Ok(port) => ingress::BackendRef::Service {
                name: service,
                port,
            },
            Err(problem) => ingress::BackendRef::Unsupported(problem.message.clone()),
        };
        let resolution = self.resolve(object, config, &target, sink);
        self.backend(object, resolution, sink).0
    }

    /// The error pages of a route of an Ingress: its own codes and backend where it sets them,
    /// else `--custom-http-errors` and `--default-backend-service`.
    fn error_pages(&self, shared: &RouteShared) -> Option<Arc<ErrorPages>> {
        let codes = shared.transforms.error_codes.as_ref();
        if codes.is_none() && shared.error_backend.is_none() {
            return self.default_pages.clone();
        }
        let codes = codes.unwrap_or(&self.default_codes);
        let backend = shared.error_backend.or(self.default_backend)?;
        (!codes.is_empty()).then(|| {
            Arc::new(ErrorPages {
                codes: codes.clone(),
                backend,
            })
        })
    }

    pub(super) fn add(
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
        let parts = RouteParts {
            tls: config.tls.route(&candidate.host),
            timeouts: config.timeouts.timeouts(policy),
            host: candidate.host,
            path: candidate.path,
            backend,
            labels: self.labels(object, backend),
        };
        self.push_route(object, parts, &config.shared);
    }

    /// Adds a route of `object`'s.
    pub(super) fn push_route(
        &mut self,
        object: &ObjectRef,
        parts: RouteParts,
        shared: &RouteShared,
    ) {
        let transforms = &shared.transforms;
        if let (true, HostPattern::Exact(host)) = (transforms.www_redirect, &parts.host) {
            self.www.push((host.clone(), self.routes.len()));
        }
        self.routes.push(Route {
            ingress: object.clone(),
            rewrite: transforms.rewrite(parts.path.as_ref()),
            transforms: transforms.transforms.clone(),
            error_pages: self.error_pages(shared),
            host: parts.host,
            path: parts.path,
            backend: parts.backend,
            timeouts: parts.timeouts,
            canary: None,
            tls: parts.tls,
            upgrade_protocols: shared.upgrade_protocols.clone(),
            access_log: shared.access_log,
            labels: parts.labels,
        });
    }

    /// Adds the redirects `from-to-www-redirect` asked for, once every Ingress has its routes:
    /// the other name of each such host (`www.example.com` for `example.com`, and the other
    /// way round) answers every request with a redirect to it, unless an Ingress serves that
    /// name (as ingress-nginx does).
    pub(super) fn add_www_redirects(&mut self) {
        let served: foldhash::HashSet<&str> = self
            .routes
            .iter()
            .filter_map(|route| match &route.host {
                HostPattern::Exact(host) => Some(&**host),
                _ => None,
            })
            .collect();
        let mut redirects: Vec<(String, Transforms, usize)> = Vec::new();
        for (host, route) in &self.www {
            let Some((from, transforms)) = transform::www_redirect(host) else {
                continue;
            };
            if served.contains(from.as_str()) || redirects.iter().any(|(f, ..)| f == &from) {
                continue;
            }
            redirects.push((from, transforms, *route));
        }
        for (from, transforms, route) in redirects {
            let source = &self.routes[route];
            let redirect = Route {
                host: HostPattern::from_rule(Some(&from)),
                path: Some(PathRule::prefix("/")),
                canary: None,
                rewrite: None,
                transforms: Some(Arc::new(transforms)),
                error_pages: None,
                ..source.clone()
            };
            self.routes.push(redirect);
        }
    }

    /// What `object`'s requests to `backend` are counted for in the traffic metrics.
    fn labels(&self, object: &ObjectRef, backend: usize) -> Arc<TrafficLabels> {
        let backend = self.backends.get(backend).map_or("", |b| &*b.name);
        Arc::new(TrafficLabels::new(object, backend))
    }

    /// Makes `object` the owner of the route on `host` and `path`, unless another Ingress is
    /// (which is reported) or it already is (a repeated rule, silently ignored).
    pub(super) fn claim(
        &mut self,
        object: &ObjectRef,
        host: &HostPattern,
        path: &Option<PathRule>,
        sink: &mut Sink,
    ) -> bool {
        let hash = self.hasher.hash_one((host, path));
        if let Some(route) = self.owner(hash, host, path) {
            let owner = &self.routes[route].ingress;
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
        // Every claim made is followed by its route, at this index.
        let (routes, hasher) = (&self.routes, &self.hasher);
        self.owners.insert_unique(hash, routes.len(), |&route| {
            hasher.hash_one((&routes[route].host, &routes[route].path))
        });
        true
    }

    /// The route on `host` and `path` (whose hash is `hash`), if any.
    fn owner(&self, hash: u64, host: &HostPattern, path: &Option<PathRule>) -> Option<usize> {
        let route = |&index: &usize| &self.routes[index];
        self.owners
            .find(hash, |index| {
                route(index).host == *host && route(index).path == *path
            })
            .copied()
    }

    /// Makes `candidate` the canary of the route with the same host and path (and kind).
    pub(super) fn add_canary(
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
        let hash = self.hasher.hash_one((&candidate.host, &candidate.path));
        let Some(route) = self.owner(hash, &candidate.host, &candidate.path) else {
            sink.report(
                object,
                reasons::CANARY_WITHOUT_MAIN,
                format!("{what}: no Ingress serves this route, so there is nothing to be a canary of; the rule is ignored"),
            );
            return;
        };
        if let Some(why) = config.shared.transforms.refused_as_canary() {
            sink.report(
                object,
                reasons::REFUSED_ANNOTATION,
                format!("{what}: {why}; the canary takes no traffic"),
            );
            return;
        }
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
        let labels = self.labels(object, backend);
        if let Some(route) = self.routes.get_mut(route) {
            route.canary = Some(Canary {
                labels,
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
    pub(super) fn backend(
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
    pub(super) fn resolve<'t>(
        &mut self,
        object: &ObjectRef,
        config: &IngressConfig,
        target: &ingress::BackendRef<'t>,
        sink: &mut Sink,
    ) -> Resolution<'a, 't> {
        let namespace = &*object.namespace;
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
    pub(super) fn intern(
        &mut self,
        object: &ObjectRef,
        key: BackendKey,
        policy: Option<ObjectRef>,
        sink: &mut Sink,
        resolve: impl FnOnce() -> Result<Resolved, Unresolved>,
    ) -> usize {
        if let Some(index) = self.existing(object, &key, sink) {
            return index;
        }
        self.insert(object, &BuiltBackend::new(key, policy, resolve()), sink)
    }

    /// [`intern`](Self::intern) for a backend built beforehand (a fragment's).
    pub(super) fn intern_built(
        &mut self,
        object: &ObjectRef,
        built: &BuiltBackend,
        sink: &mut Sink,
    ) -> usize {
        match self.existing(object, &built.key, sink) {
            Some(index) => index,
            None => self.insert(object, built, sink),
        }
    }

    /// The index of the backend `key` names, if there is one yet: its problems reported to
    /// `object` too.
    fn existing(&self, object: &ObjectRef, key: &BackendKey, sink: &mut Sink) -> Option<usize> {
        let &index = self.backend_by_key.get(key)?;
        for problem in self.problems.get(&index).into_iter().flatten() {
            sink.report(object, problem.reason, problem.message.clone());
        }
        Some(index)
    }

    fn insert(&mut self, object: &ObjectRef, built: &BuiltBackend, sink: &mut Sink) -> usize {
        let index = self.backends.len();
        for problem in &built.problems {
            sink.report(object, problem.reason, problem.message.clone());
        }
        if !built.problems.is_empty() {
            self.problems.insert(index, built.problems.clone());
        }
        self.backends.push(Arc::clone(&built.backend));
        self.backend_by_key.insert(Arc::clone(&built.key), index);
        index
    }
}

/// A backend made whole from its key and endpoints, with what resolving it had to report.
/// A fragment keeps it, so that the next compile adds the backend to its table by pointer,
/// not by copying its key, name and endpoints.
#[derive(Debug)]
pub(super) struct BuiltBackend {
    pub(super) key: Arc<BackendKey>,
    backend: Arc<Backend>,
    problems: Vec<Unresolved>,
}

impl BuiltBackend {
    pub(super) fn new(
        key: BackendKey,
        policy: Option<ObjectRef>,
        resolved: Result<Resolved, Unresolved>,
    ) -> Self {
        let (target, problems) = match resolved {
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
        let backend = Backend {
            name: key.name.as_str().into(),
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
        };
        Self {
            key: Arc::new(key),
            backend: Arc::new(backend),
            problems,
        }
    }
}
