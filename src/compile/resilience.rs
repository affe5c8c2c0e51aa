//! Timeouts, retries, health checks and circuit breaking of a backend, from its BackendPolicy,
//! and the Ingress's `vane.dev/proxy-*-timeout` annotations over them (the same precedence as
//! balancing: annotation, then port policy, then Service policy, then the default). Invalid
//! policies are never attached, so a policy value that does not parse here cannot occur; it
//! falls back to the default all the same.

use std::time::Duration;

use super::{Annotations, Sink};
use crate::api::annotations::{self, keys};
use crate::api::{self, BackendPolicy, ProbeMethod, ProbeType};
use crate::table::{
    ActiveCheck, CircuitBreaker, HealthCheck, OutlierDetection, Probe, RetryOn, RetryPolicy,
    Timeouts,
};

fn duration(value: Option<&api::duration::Duration>) -> Option<Duration> {
    value.and_then(|d| d.parse().ok())
}

/// The timeout annotations of one Ingress.
#[derive(Debug, Default)]
pub struct IngressTimeouts {
    connect: Option<Duration>,
    read: Option<Duration>,
    send: Option<Duration>,
    request: Option<Duration>,
}

impl IngressTimeouts {
    pub fn parse(annotations: &Annotations<'_>, sink: &mut Sink) -> Self {
        let timeout =
            |key, sink: &mut Sink| annotations.parse(key, annotations::parse_timeout, sink);
        Self {
            connect: timeout(keys::PROXY_CONNECT_TIMEOUT, sink),
            read: timeout(keys::PROXY_READ_TIMEOUT, sink),
            send: timeout(keys::PROXY_SEND_TIMEOUT, sink),
            request: timeout(keys::PROXY_REQUEST_TIMEOUT, sink),
        }
    }

    /// The timeouts of a route of this Ingress to a backend configured by `policy`.
    /// `proxy-read-timeout` is nginx's: it bounds the wait for the response headers and every
    /// pause while reading the body; a policy says the two apart.
    pub fn timeouts(&self, policy: Option<&BackendPolicy>) -> Timeouts {
        let defaults = Timeouts::default();
        let policy = policy.and_then(|p| p.spec.timeouts.as_ref());
        let from_policy = |field: fn(&api::Timeouts) -> Option<&api::duration::Duration>| {
            policy.and_then(|t| duration(field(t)))
        };
        let policy_idle = from_policy(|t| t.idle.as_ref());
        Timeouts {
            connect: self
                .connect
                .or_else(|| from_policy(|t| t.connect.as_ref()))
                .unwrap_or(defaults.connect),
            response_headers: self
                .read
                .or_else(|| from_policy(|t| t.response_headers.as_ref()))
                .unwrap_or(defaults.response_headers),
            read_idle: self.read.or(policy_idle).unwrap_or(defaults.read_idle),
            send_idle: self.send.or(policy_idle).unwrap_or(defaults.send_idle),
            request: self.request.or_else(|| from_policy(|t| t.request.as_ref())),
        }
    }
}

/// The retry policy of a backend: the policy's `retry` block over the defaults.
pub fn retry(policy: Option<&BackendPolicy>) -> RetryPolicy {
    let defaults = RetryPolicy::default();
    let Some(retry) = policy.and_then(|p| p.spec.retry.as_ref()) else {
        return defaults;
    };
    let retry_on = if retry.retry_on.is_empty() {
        defaults.retry_on
    } else {
        retry
            .retry_on
            .iter()
            .fold(RetryOn::NONE, |set, on| set.with(retry_on(*on)))
    };
    let budget = retry.budget.as_ref();
    RetryPolicy {
        attempts: retry.attempts.unwrap_or(defaults.attempts).clamp(1, 10),
        per_try_timeout: duration(retry.per_try_timeout.as_ref()),
        retry_on,
        budget_percent: budget
            .and_then(|b| b.percent)
            .unwrap_or(defaults.budget_percent)
            .min(100),
        budget_min_per_second: budget
            .and_then(|b| b.min_retries_per_second)
            .unwrap_or(defaults.budget_min_per_second),
    }
}

fn retry_on(on: api::RetryOn) -> RetryOn {
    match on {
        api::RetryOn::ConnectFailure => RetryOn::CONNECT_FAILURE,
        api::RetryOn::Reset => RetryOn::RESET,
        api::RetryOn::BadGateway => RetryOn::BAD_GATEWAY,
        api::RetryOn::ServiceUnavailable => RetryOn::SERVICE_UNAVAILABLE,
        api::RetryOn::GatewayTimeout => RetryOn::GATEWAY_TIMEOUT,
    }
}

/// Defaults of an active check's unset fields.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const PROBE_HEALTHY_THRESHOLD: u32 = 2;
const PROBE_UNHEALTHY_THRESHOLD: u32 = 3;
/// The consecutive-failure count of a `passive` block that names neither threshold.
const PASSIVE_THRESHOLD: u32 = 5;

/// Health checking of a backend: the policy's `healthCheck` over the defaults (passive
/// detection of every 5xx and gateway error, no probes).
pub fn health(policy: Option<&BackendPolicy>) -> HealthCheck {
    let check = policy.and_then(|p| p.spec.health_check.as_ref());
    HealthCheck {
        active: check.and_then(|c| c.active.as_ref()).map(active),
        passive: check
            .and_then(|c| c.passive.as_ref())
            .map_or_else(OutlierDetection::default, passive),
    }
}

fn active(check: &api::ActiveHealthCheck) -> ActiveCheck {
    let probe = match check.type_ {
        ProbeType::Tcp => Probe::Tcp,
        ProbeType::Http => {
            let http = check.http.clone().unwrap_or_default();
            Probe::Http {
                method: match http.method {
                    Some(ProbeMethod::Head) => http::Method::HEAD,
                    Some(ProbeMethod::Get) | None => http::Method::GET,
                },
                path: http
                    .path
                    .as_deref()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
                host: http.hostname.as_deref().and_then(|h| h.parse().ok()),
                expected: if http.expected_statuses.is_empty() {
                    vec![(200, 399)]
                } else {
                    http.expected_statuses
                        .iter()
                        .map(|r| (r.min, r.max))
                        .collect()
                },
            }
        }
    };
    ActiveCheck {
        probe,
        interval: duration(check.interval.as_ref()).unwrap_or(PROBE_INTERVAL),
        timeout: duration(check.timeout.as_ref()).unwrap_or(PROBE_TIMEOUT),
        healthy_threshold: check.healthy_threshold.unwrap_or(PROBE_HEALTHY_THRESHOLD),
        unhealthy_threshold: check
            .unhealthy_threshold
            .unwrap_or(PROBE_UNHEALTHY_THRESHOLD),
        initial_jitter: duration(check.initial_jitter.as_ref()).unwrap_or_default(),
        port: check.port,
    }
}

fn passive(passive: &api::PassiveHealthCheck) -> OutlierDetection {
    let defaults = OutlierDetection::default();
    // A block that names neither threshold counts both (the block says "detect outliers").
    let neither = passive.consecutive_5xx.is_none() && passive.consecutive_gateway_errors.is_none();
    let threshold = |value: Option<u32>| value.or(neither.then_some(PASSIVE_THRESHOLD));
    OutlierDetection {
        consecutive_5xx: threshold(passive.consecutive_5xx),
        consecutive_gateway_errors: threshold(passive.consecutive_gateway_errors),
        base_ejection_time: duration(passive.base_ejection_time.as_ref())
            .unwrap_or(defaults.base_ejection_time),
        max_ejection_time: duration(passive.max_ejection_time.as_ref())
            .unwrap_or(defaults.max_ejection_time),
        max_ejection_percent: passive
            .max_ejection_percent
            .unwrap_or(defaults.max_ejection_percent),
        panic_threshold_percent: passive
            .panic_threshold_percent
            .unwrap_or(defaults.panic_threshold_percent),
    }
}

/// The policy's `circuitBreaker`; none by default.
pub fn circuit_breaker(policy: Option<&BackendPolicy>) -> CircuitBreaker {
    let Some(cb) = policy.and_then(|p| p.spec.circuit_breaker.as_ref()) else {
        return CircuitBreaker::default();
    };
    CircuitBreaker {
        max_connections: cb.max_connections,
        max_pending_requests: cb.max_pending_requests,
        max_requests: cb.max_requests,
    }
}
