//! The immutable routing table that compile produces and the proxy reads.
//!
//! ```text
//! RoutingTable
//! ├── exact_hosts:    "foo.example.com" ─▶ PathMatcher ─▶ route index
//! ├── wildcard_hosts: "example.com" (for *.example.com) ─▶ PathMatcher
//! ├── any_host:       PathMatcher of host-less rules
//! ├── default_route:  the oldest Ingress's spec.defaultBackend
//! ├── routes[]:       Route { ingress, host, path, backend index, timeouts, tls }
//! ├── backends[]:     Backend { name, Endpoints([Endpoint]) | Invalid(reason), load balancing,
//! │                             protocol, upstream TLS }
//! └── tls:            TlsHosts (sites, and the site of each SNI host, see `tls.rs`)
//! ```
//!
//! Lookup tries the exact host, then the wildcard, then host-less rules, then the default
//! backend; the first tier with a matching path wins. A host-less rule applies to every request
//! (as the Ingress documentation says), so it also catches paths that a named host leaves
//! unmatched. Everything here is plain data: no locks, no atomics, no I/O. Per-endpoint runtime
//! state lives outside the table, keyed by endpoint address, so it survives table swaps.

mod basic_auth;
mod cors;
mod diagnostic;
mod external_auth;
mod host;
mod path;
mod resilience;
mod source_range;
mod status;
mod tls;
mod transform;

use foldhash::{HashMap, HashMapExt};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use basic_auth::{BasicAuth, PasswordHash, MAX_BCRYPT_COST, MAX_SHA_CRYPT_ROUNDS};
pub use cors::{AllowedOrigins, Cors, OriginList, WildcardOrigin};
pub use diagnostic::{Diagnostic, ObjectRef};
pub use external_auth::{ExternalAuth, DEFAULT_SIGNIN_REDIRECT_PARAM};
pub use host::{normalize_request_host, wildcard_parent, HostPattern};
pub use path::normalize_request_path;
pub use path::{PathKind, PathMatcher, PathRegex, PathRule};
pub use resilience::{
    ActiveCheck, CircuitBreaker, HealthCheck, OutlierDetection, Probe, RetryOn, RetryPolicy,
    Timeouts,
};
pub use source_range::{IpSet, SourceRanges};
pub use status::{ConditionSpec, PolicyStatus};
pub use tls::{
    BackendProtocol, Certificate, ClientAuth, ClientAuthMode, RouteTls, TlsHosts, TlsSite,
    UpstreamRoots, UpstreamTls,
};
pub use transform::{
    ErrorPages, HeaderChanges, Location, RateLimits, Redirect, RequestRate, Rewrite, Template,
    TemplatePart, Transforms, Variable, HOP_BY_HOP,
};

/// One routable rule: a host pattern and path (or the default backend) leading to a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The Ingress the rule came from.
    pub ingress: ObjectRef,
    pub host: HostPattern,
    /// `None` for an Ingress's `spec.defaultBackend`.
    pub path: Option<PathRule>,
    /// Index into [`RoutingTable::backends`].
    pub backend: usize,
    pub timeouts: Timeouts,
    /// A canary Ingress that takes part of this route's traffic.
    pub canary: Option<Canary>,
    pub tls: RouteTls,
    /// `Upgrade` protocols tunnelled besides WebSocket, lowercase (`upgrade-protocols`).
    pub upgrade_protocols: Option<Arc<[Box<str>]>>,
    /// Whether its requests are written to the access log (`enable-access-log`).
    pub access_log: bool,
    /// Who its requests are counted for in the traffic metrics and the access log.
    pub labels: Arc<TrafficLabels>,
    /// The path sent upstream instead of the request's (`rewrite-target`).
    pub rewrite: Option<Arc<Rewrite>>,
    /// Redirects, Host and header changes, body limit: its Ingress's, if it has any.
    pub transforms: Option<Arc<Transforms>>,
    /// Which responses are replaced by an error page, and from where.
    pub error_pages: Option<Arc<ErrorPages>>,
}

/// The Ingress and Service a request is counted for: the label values of the traffic metrics
/// (`namespace`, `ingress`, `service`) and the access log's fields. They come only from the
/// table, so clients cannot create series; a request that matched no route is counted under
/// the default (empty) labels, as ingress-nginx reports them. Shared by pointer (`Arc`): the
/// proxy copies no string per request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrafficLabels {
    pub namespace: Box<str>,
    pub ingress: Box<str>,
    pub service: Box<str>,
}

impl TrafficLabels {
    /// The labels of `ingress`'s requests to the backend named `backend` (`namespace/service:port`,
    /// see [`Backend::name`]).
    pub fn new(ingress: &ObjectRef, backend: &str) -> Self {
        let service = backend.split_once('/').map_or(backend, |(_, rest)| rest);
        let service = service.rsplit_once(':').map_or(service, |(name, _)| name);
        Self {
            namespace: (*ingress.namespace).into(),
            ingress: (*ingress.name).into(),
            service: service.into(),
        }
    }
}

/// A canary on a route, with ingress-nginx's semantics: the header decides first (`always`,
/// `never`, or equality with `header_value` when set), then the cookie (`always` or `never`),
/// then `weight_percent` of the remaining requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canary {
    pub ingress: ObjectRef,
    /// Index into [`RoutingTable::backends`].
    pub backend: usize,
    pub by_header: Option<http::HeaderName>,
    pub header_value: Option<http::HeaderValue>,
    pub by_cookie: Option<Box<str>>,
    pub weight_percent: u32,
    /// Who the requests sent to the canary are counted for.
    pub labels: Arc<TrafficLabels>,
}

/// Where a request of a route with a canary goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanaryDecision {
    Canary,
    Main,
    /// Neither header nor cookie decided: split by weight.
    ByWeight,
}

impl Canary {
    /// The header and cookie rules; `cookie` is the value of the canary cookie, if present.
    pub fn decide(&self, headers: &http::HeaderMap, cookie: Option<&str>) -> CanaryDecision {
        if let Some(value) = self.by_header.as_ref().and_then(|name| headers.get(name)) {
            match &self.header_value {
                Some(wanted) if value == wanted => return CanaryDecision::Canary,
                Some(_) => {}
                None if value == "always" => return CanaryDecision::Canary,
                None if value == "never" => return CanaryDecision::Main,
                None => {}
            }
        }
        match cookie {
            Some("always") => CanaryDecision::Canary,
            Some("never") => CanaryDecision::Main,
            _ => CanaryDecision::ByWeight,
        }
    }
}

impl fmt::Display for Route {
    /// `default/web host=foo.com path=Prefix /api`: enough to find the rule in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} host={}",
            self.ingress.namespace, self.ingress.name, self.host
        )?;
        match &self.path {
            Some(path) => write!(f, " path={path}"),
            None => f.write_str(" defaultBackend"),
        }
    }
}

/// How long a latency sample keeps influencing an endpoint's average when nothing says
/// otherwise (Linkerd's choice): the compiler's default for least response time, and the decay
/// the balancers of every other algorithm record latency with.
pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);

/// Load-balancing algorithm of a backend, as plain data; `balance` builds the runtime picker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum LoadBalancing {
    /// Smooth weighted round robin: weights interleave instead of bursting.
    #[default]
    RoundRobin,
    /// Weighted random.
    Random,
    /// Fewest requests in flight per unit of weight.
    LeastConnections,
    /// Lowest peak-EWMA latency times requests in flight (plus one); `decay` is how long a
    /// sample keeps counting.
    LeastResponseTime {
        decay: Duration,
    },
    ConsistentHash(ConsistentHash),
}

/// Slow start: an endpoint that joins ramps its weight up over `window`, from
/// `min_weight_percent` to full, as (elapsed / window) ^ (100 / aggression_percent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlowStart {
    pub window: Duration,
    /// 100 is a linear ramp; larger values rise faster at first.
    pub aggression_percent: u32,
    pub min_weight_percent: u32,
}

/// Cookie session affinity: the first response sets a cookie naming the endpoint opaquely, and
/// later requests carrying it go to the same endpoint while it is available.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CookieAffinity {
    pub name: Box<str>,
    pub path: Box<str>,
    pub domain: Option<Box<str>>,
    /// `None`: a session cookie.
    pub max_age: Option<Duration>,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: Option<SameSite>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// Consistent hashing: requests with the same key go to the same endpoint while the set of
/// endpoints stays the same, and removing one of N endpoints moves only about 1/N of the keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConsistentHash {
    pub key: HashKey,
    pub ring: HashRing,
    /// Bounded load, in percent of the mean load (e.g. 125): an endpoint above it passes its
    /// keys on to the next one. `None` for plain consistent hashing.
    pub bounded_load_percent: Option<u32>,
}

/// Where the hash key of a request comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HashKey {
    SourceIp,
    Header(http::HeaderName),
    Cookie(Box<str>),
    Query(Box<str>),
    Path,
    /// The path and query as the client sent them.
    RequestUri,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashRing {
    /// Maglev lookup table of `table_size` entries (a prime).
    Maglev { table_size: u32 },
    /// Ketama-style ring: each endpoint owns `points_per_weight` × its weight points. The count
    /// depends on nothing else, so other endpoints coming and going never move an endpoint's
    /// points.
    Ring { points_per_weight: u32 },
}

/// A backend: one Service port, resolved to its endpoints, or the reason it could not be.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Backend {
    /// `namespace/service:port` (port number). Two backends share a name when Ingresses ask
    /// for different balancing of the same Service port.
    pub name: Box<str>,
    pub target: BackendTarget,
    pub load_balancing: LoadBalancing,
    /// Ramp-up of joining endpoints (round robin, least connections, least response time).
    pub slow_start: Option<SlowStart>,
    /// Keeps clients on one endpoint; the algorithm makes the first pick.
    pub affinity: Option<CookieAffinity>,
    pub health: HealthCheck,
    pub retry: RetryPolicy,
    pub circuit_breaker: CircuitBreaker,
    /// The BackendPolicy that configures this backend, if any.
    pub policy: Option<ObjectRef>,
    pub protocol: BackendProtocol,
    /// Set exactly when `protocol` uses TLS.
    pub upstream_tls: Option<UpstreamTls>,
}

impl Backend {
    /// Whether the backend is spoken to in HTTP/1.1 without TLS (the proxy's own upstream
    /// pool; the other protocols go through hyper-util's clients).
    pub fn is_plain_http1(&self) -> bool {
        self.upstream_tls.is_none() && !self.protocol.is_http2()
    }

    /// The endpoints; none for an invalid backend.
    pub fn endpoints(&self) -> &[Endpoint] {
        match &self.target {
            BackendTarget::Endpoints(endpoints) => endpoints,
            BackendTarget::Invalid(_) => &[],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackendTarget {
    /// Resolved. May be empty when the Service has no ready endpoint right now (answers 503).
    Endpoints(Vec<Endpoint>),
    /// Could not resolve (missing Service or port, no EndpointSlices, unsupported backend).
    /// Answers 503; the reason is also reported as a diagnostic.
    Invalid(String),
}

/// An endpoint address with its URI authority precomputed, so the hot path never formats it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub address: SocketAddr,
    /// Relative share of traffic (1 unless a BackendPolicy says otherwise).
    pub weight: u32,
    /// Serving but terminating: in the table only because no ready endpoint is left.
    pub terminating: bool,
}

impl Endpoint {
    pub fn new(address: SocketAddr) -> Self {
        Self::weighted(address, 1)
    }

    pub fn weighted(address: SocketAddr, weight: u32) -> Self {
        Self {
            address,
            weight: weight.max(1),
            terminating: false,
        }
    }
}

/// The compiled routing table. Build it with [`RoutingTable::new`]; it never changes after that.
#[derive(Clone, Debug, Default)]
pub struct RoutingTable {
    exact_hosts: HashMap<Arc<str>, PathMatcher>,
    wildcard_hosts: HashMap<Arc<str>, PathMatcher>,
    any_host: PathMatcher,
    default_route: Option<usize>,
    routes: Vec<Route>,
    /// Shared with the compile results they were built from: a backend whose inputs did not
    /// change is the same allocation in the next table, and so found the same at once.
    backends: Vec<Arc<Backend>>,
    tls: TlsHosts,
}

impl RoutingTable {
    /// Indexes `routes`. Compile guarantees that no two routes share host, path and kind, and
    /// that at most one route has no path (the default backend); should that not hold, the
    /// first one wins. Route backend indexes must be valid indexes into `backends`.
    pub fn new(routes: Vec<Route>, backends: Vec<Arc<Backend>>) -> Self {
        // Sized for the common case of a host per route.
        let mut table = RoutingTable {
            exact_hosts: HashMap::with_capacity(routes.len()),
            ..Default::default()
        };
        for (index, route) in routes.iter().enumerate() {
            debug_assert!(
                route.backend < backends.len(),
                "route {route} has no backend"
            );
            let Some(path) = &route.path else {
                table.default_route.get_or_insert(index);
                continue;
            };
            let matcher = match &route.host {
                HostPattern::Exact(host) => table.exact_hosts.entry(host.clone()).or_default(),
                HostPattern::Wildcard(parent) => {
                    table.wildcard_hosts.entry(parent.clone()).or_default()
                }
                HostPattern::Any => &mut table.any_host,
            };
            matcher.insert(path.clone(), index);
        }
        let matchers = table.exact_hosts.values_mut();
        let matchers = matchers.chain(table.wildcard_hosts.values_mut());
        for matcher in matchers.chain([&mut table.any_host]) {
            matcher.index_regexes();
        }
        table.routes = routes;
        table.backends = backends;
        table
    }

    /// Finds the route for a request. `host` is the raw Host header or `:authority` (port and
    /// case are handled here); `path` is the raw request path, without the query (it is
    /// matched in normal form: dot segments resolved, slashes merged).
    pub fn lookup(&self, host: &str, path: &str) -> Option<&Route> {
        let host = normalize_request_host(host);
        let host: &str = &host;
        let path = normalize_request_path(path);
        let path: &str = &path;
        let index = self
            .exact_hosts
            .get(host)
            .and_then(|m| m.lookup(path))
            .or_else(|| {
                wildcard_parent(host)
                    .and_then(|parent| self.wildcard_hosts.get(parent))
                    .and_then(|m| m.lookup(path))
            })
            .or_else(|| self.any_host.lookup(path))
            .or(self.default_route)?;
        self.routes.get(index)
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    pub fn backend(&self, index: usize) -> Option<&Backend> {
        self.backends.get(index).map(|backend| &**backend)
    }

    /// For each backend, the index of an identical backend of `previous`, if any: runtime
    /// state built for it (balancers, guards) can be kept across the swap.
    ///
    /// A new table mostly keeps its backends where they were, so each is first compared with
    /// the backend at its own index (an unchanged one is the same `Arc`, which `==` sees
    /// without comparing fields); only the rest are looked up by hash, among the previous
    /// backends left unmatched (hashing every backend of both tables was most of a publish at
    /// 10,000 backends).
    pub fn same_backends(&self, previous: &RoutingTable) -> Vec<Option<usize>> {
        let mut same: Vec<Option<usize>> = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, backend)| (previous.backends.get(i) == Some(backend)).then_some(i))
            .collect();
        if same.iter().all(Option::is_some) {
            return same;
        }
        let unmatched: HashMap<&Arc<Backend>, usize> = previous
            .backends
            .iter()
            .enumerate()
            .filter(|&(i, _)| same.get(i).is_none_or(Option::is_none))
            .map(|(i, backend)| (backend, i))
            .collect();
        for (backend, same) in self.backends.iter().zip(&mut same) {
            if same.is_none() {
                *same = unmatched.get(backend).copied();
            }
        }
        same
    }

    /// The table with these TLS sites.
    pub fn with_tls(self, tls: TlsHosts) -> Self {
        Self { tls, ..self }
    }

    pub fn tls(&self) -> &TlsHosts {
        &self.tls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: HostPattern, path: Option<PathRule>, backend: usize) -> Route {
        Route {
            ingress: ObjectRef::new("Ingress", "default", format!("ing{backend}")),
            host,
            path,
            backend,
            timeouts: Timeouts::default(),
            canary: None,
            tls: RouteTls::default(),
            upgrade_protocols: None,
            access_log: true,
            labels: Arc::default(),
            rewrite: None,
            transforms: None,
            error_pages: None,
        }
    }

    fn backend(name: &str) -> Arc<Backend> {
        Arc::new(Backend {
            name: name.into(),
            target: BackendTarget::Endpoints(vec![]),
            load_balancing: LoadBalancing::RoundRobin,
            slow_start: None,
            affinity: None,
            health: HealthCheck::default(),
            retry: RetryPolicy::default(),
            circuit_breaker: CircuitBreaker::default(),
            policy: None,
            protocol: BackendProtocol::Http,
            upstream_tls: None,
        })
    }

    #[test]
    fn same_backends_are_found_in_place_and_where_they_moved() {
        let table =
            |names: &[&str]| RoutingTable::new(vec![], names.iter().map(|n| backend(n)).collect());
        let previous = table(&["a", "b", "c", "d"]);
        let next = table(&["a", "c", "x", "d", "b"]);
        assert_eq!(
            next.same_backends(&previous),
            [Some(0), Some(2), None, Some(3), Some(1)]
        );
        assert_eq!(
            previous.same_backends(&previous),
            [Some(0), Some(1), Some(2), Some(3)]
        );
        assert_eq!(table(&[]).same_backends(&previous), []);
    }

    #[test]
    fn exact_beats_wildcard_beats_hostless_then_default() {
        let table = RoutingTable::new(
            vec![
                route(
                    HostPattern::from_rule(Some("a.example.com")),
                    Some(PathRule::prefix("/")),
                    0,
                ),
                route(
                    HostPattern::from_rule(Some("*.example.com")),
                    Some(PathRule::prefix("/")),
                    1,
                ),
                route(HostPattern::Any, Some(PathRule::prefix("/only-here")), 2),
                route(HostPattern::Any, None, 3),
            ],
            vec![backend("0"), backend("1"), backend("2"), backend("3")],
        );
        let backend_for = |host, path| table.lookup(host, path).map(|r| r.backend);
        assert_eq!(backend_for("A.example.com:8080", "/x"), Some(0));
        assert_eq!(backend_for("b.example.com", "/x"), Some(1));
        assert_eq!(backend_for("other.org", "/only-here/x"), Some(2));
        assert_eq!(backend_for("other.org", "/x"), Some(3));
    }

    #[test]
    fn canary_header_then_cookie_then_weight() {
        let canary = |header_value: Option<&str>| Canary {
            ingress: ObjectRef::new("Ingress", "default", "canary"),
            backend: 1,
            by_header: Some("x-canary".parse().unwrap()),
            header_value: header_value.map(|v| v.parse().unwrap()),
            by_cookie: Some("canary".into()),
            weight_percent: 10,
            labels: Arc::default(),
        };
        let headers = |value: &str| {
            let mut map = http::HeaderMap::new();
            map.insert("x-canary", value.parse().unwrap());
            map
        };
        let none = http::HeaderMap::new();
        let plain = canary(None);
        assert_eq!(
            plain.decide(&headers("always"), Some("never")),
            CanaryDecision::Canary
        );
        assert_eq!(
            plain.decide(&headers("never"), Some("always")),
            CanaryDecision::Main
        );
        assert_eq!(
            plain.decide(&headers("maybe"), Some("always")),
            CanaryDecision::Canary
        );
        assert_eq!(plain.decide(&none, Some("never")), CanaryDecision::Main);
        assert_eq!(plain.decide(&none, Some("other")), CanaryDecision::ByWeight);
        assert_eq!(plain.decide(&none, None), CanaryDecision::ByWeight);
        let valued = canary(Some("beta"));
        assert_eq!(
            valued.decide(&headers("beta"), None),
            CanaryDecision::Canary
        );
        assert_eq!(
            valued.decide(&headers("always"), None),
            CanaryDecision::ByWeight
        );
    }

    #[test]
    fn no_match_and_no_default_backend_is_none() {
        let table = RoutingTable::new(
            vec![route(
                HostPattern::from_rule(Some("a.com")),
                Some(PathRule::exact("/a")),
                0,
            )],
            vec![backend("0")],
        );
        assert!(table.lookup("a.com", "/b").is_none());
        assert!(table.lookup("b.com", "/a").is_none());
    }
}
