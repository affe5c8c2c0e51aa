//! The `BackendPolicy` custom resource (`vane.dev/v1alpha1`): how vane balances, checks and
//! talks to the endpoints of a Service.
//!
//! A policy attaches to Services through `spec.targetRefs`, in the shape of Gateway API policy
//! attachment: a whole Service, or one of its ports by `sectionName` (the Service port's name).
//! The schema rejects malformed policies at the API server (enums, bounds, patterns and CEL
//! rules); vane validates again on its own, because standalone manifests never pass an API
//! server, and reports problems in `status.conditions`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::bounds;
use super::duration::Duration;

/// BackendPolicy tunes load balancing, session persistence, health checking, retries, timeouts
/// and circuit breaking for the Services it targets.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "vane.dev",
    version = "v1alpha1",
    kind = "BackendPolicy",
    plural = "backendpolicies",
    shortname = "vbp",
    namespaced,
    status = "BackendPolicyStatus",
    derive = "Default",
    doc = "BackendPolicy tunes how vane balances, checks and talks to the endpoints of Services.",
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BackendPolicySpec {
    /// The Services (or Service ports) this policy applies to, in the policy's namespace.
    #[schemars(length(min = bounds::TARGET_REFS.min, max = bounds::TARGET_REFS.max))]
    pub target_refs: Vec<TargetRef>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<SessionPersistence>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,

    /// How vane talks to the endpoints (default: the Service port's `appProtocol`, else HTTP).
    /// The Ingress annotation `vane.dev/backend-protocol` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_protocol: Option<BackendProtocol>,

    /// How vane verifies endpoints with protocol HTTPS or GRPCS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<BackendTls>,
}

// === backendProtocol, tls ===

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendProtocol {
    /// HTTP/1.1 in the clear.
    #[serde(rename = "HTTP")]
    Http,
    /// HTTP/1.1 over TLS.
    #[serde(rename = "HTTPS")]
    Https,
    /// HTTP/2 in the clear (prior knowledge).
    #[serde(rename = "H2C")]
    H2c,
    /// gRPC over HTTP/2 in the clear.
    #[serde(rename = "GRPC")]
    Grpc,
    /// gRPC over HTTP/2 over TLS.
    #[serde(rename = "GRPCS")]
    Grpcs,
}

/// Verification of upstream certificates. Without `caCertificateRefs`, certificates must chain
/// to a public root (the Mozilla root program).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.insecureSkipVerify) && self.insecureSkipVerify && has(self.caCertificateRefs))").message("insecureSkipVerify and caCertificateRefs exclude each other"))]
pub struct BackendTls {
    /// Secrets (type kubernetes.io/tls, in the policy's namespace) whose `ca.crt` holds the
    /// CA certificates that endpoint certificates must chain to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::CA_CERTIFICATE_REFS.max))]
    pub ca_certificate_refs: Vec<SecretRef>,
    /// The name sent as SNI and verified in the endpoint's certificate (default: the Service's
    /// cluster DNS name, `SERVICE.NAMESPACE.svc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub hostname: Option<String>,
    /// Do not verify endpoint certificates at all. Insecure: anyone on the path can read and
    /// change the traffic. vane reports it as a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// A Secret in the policy's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A Service, or one port of it, in the policy's own namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// The API group of the target: "" (the core group).
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == ''").message("only core-group Services can be targeted"))]
    pub group: String,
    /// The kind of the target: Service.
    #[x_kube(validation = Rule::new("self == 'Service'").message("only Services can be targeted"))]
    pub kind: String,
    /// The Service's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// A Service port name; without it the policy applies to every port of the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub section_name: Option<String>,
}

// === loadBalancer ===

/// The balancing algorithm and its settings: `type` names the algorithm, and at most the one
/// matching settings block may be present.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.roundRobin) || self.type == 'RoundRobin'").message("roundRobin settings need type RoundRobin"))]
#[x_kube(validation = Rule::new("!has(self.leastConnections) || self.type == 'LeastConnections'").message("leastConnections settings need type LeastConnections"))]
#[x_kube(validation = Rule::new("!has(self.leastResponseTime) || self.type == 'LeastResponseTime'").message("leastResponseTime settings need type LeastResponseTime"))]
#[x_kube(validation = Rule::new("has(self.consistentHash) == (self.type == 'ConsistentHash')").message("type ConsistentHash needs, and only it allows, consistentHash settings"))]
pub struct LoadBalancer {
    #[serde(rename = "type")]
    pub type_: LoadBalancerType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_robin: Option<WeightedSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub least_connections: Option<WeightedSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub least_response_time: Option<LeastResponseTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHash>,
    /// Weights for endpoints picked by zone, node, hostname or address; endpoints that no
    /// entry selects keep weight 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::ENDPOINT_WEIGHTS.max))]
    pub endpoint_weights: Vec<EndpointWeight>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoadBalancerType {
    RoundRobin,
    Random,
    LeastConnections,
    LeastResponseTime,
    ConsistentHash,
}

/// Settings shared by algorithms that honour weights.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WeightedSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<SlowStart>,
}

/// Ramps the weight of a joining endpoint up over `window`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SlowStart {
    #[x_kube(validation = bounds::SLOW_START_WINDOW.rule())]
    pub window: Duration,
    /// How fast the ramp rises: 1.0 is linear, larger values rise faster at first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::SLOW_START_AGGRESSION.min, max = bounds::SLOW_START_AGGRESSION.max))]
    pub aggression: Option<f64>,
    /// The weight a new endpoint starts at, in percent of its full weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::SLOW_START_MIN_WEIGHT_PERCENT.min, max = bounds::SLOW_START_MIN_WEIGHT_PERCENT.max))]
    pub min_weight_percent: Option<u32>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LeastResponseTime {
    /// How long a latency sample keeps influencing the average (the EWMA decay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = bounds::LATENCY_DECAY.rule())]
    pub decay: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<SlowStart>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.hashOn == 'SourceIP' || self.hashOn == 'Path' || has(self.name)").message("hashOn Header, Cookie and QueryParameter need a name"))]
pub struct ConsistentHash {
    /// What the hash key is taken from.
    pub hash_on: HashOn,
    /// The header, cookie or query parameter name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<HashAlgorithm>,
    /// Maglev lookup table size; must be a prime (default 65537).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::MAGLEV_TABLE_SIZE.min, max = bounds::MAGLEV_TABLE_SIZE.max))]
    pub table_size: Option<u32>,
    /// Bounded load: no endpoint takes more than this factor times the mean load (e.g. 1.25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::BOUNDED_LOAD_FACTOR.min, max = bounds::BOUNDED_LOAD_FACTOR.max))]
    pub bounded_load_factor: Option<f64>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashOn {
    #[serde(rename = "SourceIP")]
    SourceIp,
    Header,
    Cookie,
    QueryParameter,
    Path,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    Maglev,
    RingHash,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.zone) || has(self.nodeName) || has(self.hostname) || has(self.address)").message("select endpoints by zone, nodeName, hostname or address"))]
pub struct EndpointWeight {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[schemars(range(min = bounds::ENDPOINT_WEIGHT.min, max = bounds::ENDPOINT_WEIGHT.max))]
    pub weight: u32,
}

// === sessionPersistence ===

/// Keeps a client on one endpoint. The shape of Gateway API's SessionPersistence, plus cookie
/// attributes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SessionPersistence {
    /// The cookie (or header) name; default `vane-affinity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub session_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = bounds::COOKIE_LIFETIME.rule())]
    pub absolute_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = bounds::COOKIE_LIFETIME.rule())]
    pub idle_timeout: Option<Duration>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<SessionPersistenceType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_config: Option<CookieConfig>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionPersistenceType {
    Cookie,
    Header,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CookieConfig {
    /// `Permanent` sets Max-Age from `absoluteTimeout`; `Session` sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_type: Option<CookieLifetime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<SameSite>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CookieLifetime {
    Permanent,
    Session,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

// === healthCheck ===

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveHealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<PassiveHealthCheck>,
}

/// Probes vane sends to every endpoint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'HTTP' || !has(self.http)").message("http settings need type HTTP"))]
pub struct ActiveHealthCheck {
    #[serde(rename = "type")]
    pub type_: ProbeType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = bounds::PROBE_INTERVAL.rule())]
    pub interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = bounds::PROBE_TIMEOUT.rule())]
    pub timeout: Option<Duration>,
    /// Consecutive successes that mark an endpoint healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::PROBE_THRESHOLD.min, max = bounds::PROBE_THRESHOLD.max))]
    pub healthy_threshold: Option<u32>,
    /// Consecutive failures that mark an endpoint unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::PROBE_THRESHOLD.min, max = bounds::PROBE_THRESHOLD.max))]
    pub unhealthy_threshold: Option<u32>,
    /// Spreads the first probes of many endpoints over up to this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = bounds::PROBE_INITIAL_JITTER.rule())]
    pub initial_jitter: Option<Duration>,
    /// Probe this port instead of the endpoint's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::PORT.min, max = bounds::PORT.max))]
    pub port: Option<u16>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeType {
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "TCP")]
    Tcp,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpProbe {
    /// Default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/"))]
    pub path: Option<String>,
    /// The Host header of probes; default the endpoint address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Default GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<ProbeMethod>,
    /// Status ranges that count as healthy; default 200-399.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::EXPECTED_STATUSES.max))]
    pub expected_statuses: Vec<StatusRange>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProbeMethod {
    Get,
    Head,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[x_kube(validation = Rule::new("self.min <= self.max").message("min must not exceed max"))]
pub struct StatusRange {
    #[schemars(range(min = bounds::STATUS_CODE.min, max = bounds::STATUS_CODE.max))]
    pub min: u16,
    #[schemars(range(min = bounds::STATUS_CODE.min, max = bounds::STATUS_CODE.max))]
    pub max: u16,
}

/// Outlier detection from live traffic.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PassiveHealthCheck {
    /// Consecutive 5xx responses that eject an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::OUTLIER_THRESHOLD.min, max = bounds::OUTLIER_THRESHOLD.max))]
    pub consecutive_5xx: Option<u32>,
    /// Consecutive 502/503/504 and connect errors that eject an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::OUTLIER_THRESHOLD.min, max = bounds::OUTLIER_THRESHOLD.max))]
    pub consecutive_gateway_errors: Option<u32>,
    /// Ejection time is this times the number of ejections so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = bounds::EJECTION_TIME.rule())]
    pub base_ejection_time: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = bounds::EJECTION_TIME.rule())]
    pub max_ejection_time: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::PERCENT.min, max = bounds::PERCENT.max))]
    pub max_ejection_percent: Option<u32>,
    /// Below this share of healthy endpoints, traffic goes to all endpoints (panic mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::PERCENT.min, max = bounds::PERCENT.max))]
    pub panic_threshold_percent: Option<u32>,
}

// === retry, timeouts, circuitBreaker ===

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    /// Total tries, the first included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::RETRY_ATTEMPTS.min, max = bounds::RETRY_ATTEMPTS.max))]
    pub attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = bounds::TIMEOUT.rule())]
    pub per_try_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<RetryOn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<RetryBudget>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetryOn {
    ConnectFailure,
    Reset,
    #[serde(rename = "502")]
    BadGateway,
    #[serde(rename = "503")]
    ServiceUnavailable,
    #[serde(rename = "504")]
    GatewayTimeout,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    /// Retries may add at most this percentage to the requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::PERCENT.min, max = bounds::PERCENT.max))]
    pub percent: Option<u32>,
    /// Retries always allowed per second, whatever the percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::MIN_RETRIES_PER_SECOND.min, max = bounds::MIN_RETRIES_PER_SECOND.max))]
    pub min_retries_per_second: Option<u32>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = bounds::TIMEOUT.rule())]
    pub connect: Option<Duration>,
    /// From the request sent to the response headers received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = bounds::TIMEOUT.rule())]
    pub response_headers: Option<Duration>,
    /// Longest pause between two reads or writes of a body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = bounds::TIMEOUT.rule())]
    pub idle: Option<Duration>,
    /// The whole exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = bounds::TIMEOUT.rule())]
    pub request: Option<Duration>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::CIRCUIT_BREAKER_LIMIT.min, max = bounds::CIRCUIT_BREAKER_LIMIT.max))]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::CIRCUIT_BREAKER_PENDING.min, max = bounds::CIRCUIT_BREAKER_PENDING.max))]
    pub max_pending_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::CIRCUIT_BREAKER_LIMIT.min, max = bounds::CIRCUIT_BREAKER_LIMIT.max))]
    pub max_requests: Option<u32>,
}

// === status ===

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackendPolicyStatus {
    /// `Accepted`, `ResolvedRefs` and `Conflicted`, each with the generation it describes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
