//! vane's own validation of a `BackendPolicy`, mirroring the CRD schema (bounds, patterns and
//! CEL rules). Standalone manifests never pass an API server, and a cluster may run an older
//! CRD, so vane never trusts that the schema was applied.

use super::duration::Duration;
use super::*;

/// Every problem with `spec`, as sentences naming the field. Empty means valid.
pub fn validate(spec: &BackendPolicySpec) -> Vec<String> {
    let mut errors = Errors::default();
    if spec.target_refs.is_empty() {
        errors.add("spec.targetRefs", "must name at least one Service");
    }
    if spec.target_refs.len() > 16 {
        errors.add("spec.targetRefs", "may name at most 16 targets");
    }
    for (i, target) in spec.target_refs.iter().enumerate() {
        let at = format!("spec.targetRefs[{i}]");
        if !target.group.is_empty() {
            errors.add(
                &at,
                format!("group {:?} is not the core group \"\"", target.group),
            );
        }
        if target.kind != "Service" {
            errors.add(&at, format!("kind {:?} is not Service", target.kind));
        }
        if target.name.is_empty() {
            errors.add(&at, "has no name");
        }
    }
    if let Some(lb) = &spec.load_balancer {
        load_balancer(lb, &mut errors);
    }
    if let Some(session) = &spec.session_persistence {
        errors.duration(
            "spec.sessionPersistence.absoluteTimeout",
            session.absolute_timeout.as_ref(),
        );
        errors.duration(
            "spec.sessionPersistence.idleTimeout",
            session.idle_timeout.as_ref(),
        );
    }
    if let Some(health) = &spec.health_check {
        health_check(health, &mut errors);
    }
    if let Some(retry) = &spec.retry {
        errors.range("spec.retry.attempts", retry.attempts, 1, 10);
        errors.duration("spec.retry.perTryTimeout", retry.per_try_timeout.as_ref());
        if let Some(budget) = &retry.budget {
            errors.range("spec.retry.budget.percent", budget.percent, 0, 100);
        }
    }
    if let Some(timeouts) = &spec.timeouts {
        errors.duration("spec.timeouts.connect", timeouts.connect.as_ref());
        errors.duration(
            "spec.timeouts.responseHeaders",
            timeouts.response_headers.as_ref(),
        );
        errors.duration("spec.timeouts.idle", timeouts.idle.as_ref());
        errors.duration("spec.timeouts.request", timeouts.request.as_ref());
    }
    if let Some(breaker) = &spec.circuit_breaker {
        errors.range(
            "spec.circuitBreaker.maxConnections",
            breaker.max_connections,
            1,
            u32::MAX,
        );
        errors.range(
            "spec.circuitBreaker.maxRequests",
            breaker.max_requests,
            1,
            u32::MAX,
        );
    }
    if let Some(tls) = &spec.tls {
        if tls.insecure_skip_verify == Some(true) && !tls.ca_certificate_refs.is_empty() {
            errors.add(
                "spec.tls",
                "insecureSkipVerify and caCertificateRefs exclude each other",
            );
        }
        if tls.ca_certificate_refs.len() > 8 {
            errors.add("spec.tls.caCertificateRefs", "may name at most 8 Secrets");
        }
        if let Some(hostname) = &tls.hostname {
            if rustls::pki_types::ServerName::try_from(hostname.as_str()).is_err() {
                errors.add(
                    "spec.tls.hostname",
                    format!("{hostname:?} is not a DNS name or IP address"),
                );
            }
        }
    }
    errors.0
}

fn load_balancer(lb: &LoadBalancer, errors: &mut Errors) {
    let block_for = |present: bool, name: &str, wanted: LoadBalancerType| {
        (present && lb.type_ != wanted)
            .then(|| format!("{name} settings need type {wanted:?}, not {:?}", lb.type_))
    };
    for mismatch in [
        block_for(
            lb.round_robin.is_some(),
            "roundRobin",
            LoadBalancerType::RoundRobin,
        ),
        block_for(
            lb.least_connections.is_some(),
            "leastConnections",
            LoadBalancerType::LeastConnections,
        ),
        block_for(
            lb.least_response_time.is_some(),
            "leastResponseTime",
            LoadBalancerType::LeastResponseTime,
        ),
        block_for(
            lb.consistent_hash.is_some(),
            "consistentHash",
            LoadBalancerType::ConsistentHash,
        ),
    ]
    .into_iter()
    .flatten()
    {
        errors.add("spec.loadBalancer", mismatch);
    }
    let slow_starts = [
        lb.round_robin.as_ref().and_then(|s| s.slow_start.as_ref()),
        lb.least_connections
            .as_ref()
            .and_then(|s| s.slow_start.as_ref()),
        lb.least_response_time
            .as_ref()
            .and_then(|s| s.slow_start.as_ref()),
    ];
    for slow_start in slow_starts.into_iter().flatten() {
        errors.duration(
            "spec.loadBalancer.slowStart.window",
            Some(&slow_start.window),
        );
        errors.range(
            "spec.loadBalancer.slowStart.minWeightPercent",
            slow_start.min_weight_percent,
            1,
            100,
        );
        if slow_start
            .aggression
            .is_some_and(|a| !(0.1..=10.0).contains(&a))
        {
            errors.add(
                "spec.loadBalancer.slowStart.aggression",
                "must be between 0.1 and 10",
            );
        }
    }
    if let Some(lrt) = &lb.least_response_time {
        errors.duration(
            "spec.loadBalancer.leastResponseTime.decay",
            lrt.decay.as_ref(),
        );
    }
    match (&lb.type_, &lb.consistent_hash) {
        (LoadBalancerType::ConsistentHash, None) => errors.add(
            "spec.loadBalancer",
            "type ConsistentHash needs consistentHash settings",
        ),
        (_, Some(hash)) => {
            let needs_name = matches!(
                hash.hash_on,
                HashOn::Header | HashOn::Cookie | HashOn::QueryParameter
            );
            if needs_name && hash.name.as_deref().is_none_or(str::is_empty) {
                errors.add(
                    "spec.loadBalancer.consistentHash.name",
                    format!("is required for hashOn {:?}", hash.hash_on),
                );
            }
            if let Some(size) = hash.table_size {
                if !is_prime(size) || size < 251 {
                    errors.add(
                        "spec.loadBalancer.consistentHash.tableSize",
                        format!("{size} is not a prime of at least 251"),
                    );
                }
            }
            if hash
                .bounded_load_factor
                .is_some_and(|f| !(1.0..=10.0).contains(&f))
            {
                errors.add(
                    "spec.loadBalancer.consistentHash.boundedLoadFactor",
                    "must be between 1 and 10",
                );
            }
        }
        _ => {}
    }
    for (i, weight) in lb.endpoint_weights.iter().enumerate() {
        let at = format!("spec.loadBalancer.endpointWeights[{i}]");
        if weight.zone.is_none()
            && weight.node_name.is_none()
            && weight.hostname.is_none()
            && weight.address.is_none()
        {
            errors.add(
                &at,
                "selects no endpoints: set zone, nodeName, hostname or address",
            );
        }
        errors.range(&format!("{at}.weight"), Some(weight.weight), 1, 1000);
    }
}

fn health_check(health: &HealthCheck, errors: &mut Errors) {
    if let Some(active) = &health.active {
        if active.http.is_some() && active.type_ != ProbeType::Http {
            errors.add("spec.healthCheck.active", "http settings need type HTTP");
        }
        errors.duration("spec.healthCheck.active.interval", active.interval.as_ref());
        errors.duration("spec.healthCheck.active.timeout", active.timeout.as_ref());
        errors.duration(
            "spec.healthCheck.active.initialJitter",
            active.initial_jitter.as_ref(),
        );
        errors.range(
            "spec.healthCheck.active.healthyThreshold",
            active.healthy_threshold,
            1,
            100,
        );
        errors.range(
            "spec.healthCheck.active.unhealthyThreshold",
            active.unhealthy_threshold,
            1,
            100,
        );
        if active.port == Some(0) {
            errors.add(
                "spec.healthCheck.active.port",
                "must be between 1 and 65535",
            );
        }
        if let Some(http) = &active.http {
            if http.path.as_deref().is_some_and(|p| !p.starts_with('/')) {
                errors.add("spec.healthCheck.active.http.path", "must start with /");
            }
            for (i, range) in http.expected_statuses.iter().enumerate() {
                if !(100..=599).contains(&range.min)
                    || !(100..=599).contains(&range.max)
                    || range.min > range.max
                {
                    errors.add(
                        &format!("spec.healthCheck.active.http.expectedStatuses[{i}]"),
                        format!(
                            "{}-{} is not a range of HTTP status codes",
                            range.min, range.max
                        ),
                    );
                }
            }
        }
    }
    if let Some(passive) = &health.passive {
        errors.range(
            "spec.healthCheck.passive.consecutive5xx",
            passive.consecutive_5xx,
            1,
            1000,
        );
        errors.range(
            "spec.healthCheck.passive.consecutiveGatewayErrors",
            passive.consecutive_gateway_errors,
            1,
            1000,
        );
        errors.duration(
            "spec.healthCheck.passive.baseEjectionTime",
            passive.base_ejection_time.as_ref(),
        );
        errors.duration(
            "spec.healthCheck.passive.maxEjectionTime",
            passive.max_ejection_time.as_ref(),
        );
        errors.range(
            "spec.healthCheck.passive.maxEjectionPercent",
            passive.max_ejection_percent,
            0,
            100,
        );
        errors.range(
            "spec.healthCheck.passive.panicThresholdPercent",
            passive.panic_threshold_percent,
            0,
            100,
        );
    }
}

fn is_prime(n: u32) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    fn add(&mut self, field: &str, problem: impl std::fmt::Display) {
        self.0.push(format!("{field}: {problem}"));
    }

    fn duration(&mut self, field: &str, value: Option<&Duration>) {
        if let Some(Err(error)) = value.map(Duration::parse) {
            self.add(field, error);
        }
    }

    fn range(&mut self, field: &str, value: Option<u32>, min: u32, max: u32) {
        if let Some(value) = value.filter(|v| !(min..=max).contains(v)) {
            self.add(field, format!("{value} is not between {min} and {max}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> BackendPolicySpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn a_complete_valid_policy_has_no_errors() {
        let errors = validate(&spec(
            "targetRefs: [{group: '', kind: Service, name: web, sectionName: http}]
loadBalancer:
  type: ConsistentHash
  consistentHash: {hashOn: Header, name: x-user, algorithm: Maglev, tableSize: 65537, boundedLoadFactor: 1.25}
  endpointWeights: [{zone: eu-1a, weight: 3}]
sessionPersistence: {sessionName: s, absoluteTimeout: 1h, cookieConfig: {lifetimeType: Permanent, sameSite: Lax}}
healthCheck:
  active: {type: HTTP, http: {path: /healthz, expectedStatuses: [{min: 200, max: 299}]}, interval: 5s, timeout: 1s}
  passive: {consecutive5xx: 5, baseEjectionTime: 30s, maxEjectionPercent: 50}
retry: {attempts: 3, perTryTimeout: 2s, retryOn: [ConnectFailure, '503'], budget: {percent: 20}}
timeouts: {connect: 2s, responseHeaders: 30s, idle: 1m, request: 5m}
circuitBreaker: {maxConnections: 100, maxRequests: 1000}
backendProtocol: GRPCS
tls: {caCertificateRefs: [{name: ca}], hostname: api.internal}
",
        ));
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn each_kind_of_mistake_is_named() {
        let errors = validate(&spec(
            "targetRefs: [{group: apps, kind: Deployment, name: web}]
loadBalancer: {type: RoundRobin, consistentHash: {hashOn: Cookie, tableSize: 1000}}
healthCheck: {active: {type: TCP, http: {path: nope}, interval: 5 seconds}}
retry: {attempts: 0}
tls: {insecureSkipVerify: true, caCertificateRefs: [{name: ca}], hostname: 'a b'}
",
        ));
        let expected = [
            "spec.targetRefs[0]: group \"apps\"",
            "spec.targetRefs[0]: kind \"Deployment\"",
            "consistentHash settings need type ConsistentHash",
            "spec.loadBalancer.consistentHash.name: is required",
            "spec.loadBalancer.consistentHash.tableSize: 1000 is not a prime",
            "spec.healthCheck.active: http settings need type HTTP",
            "spec.healthCheck.active.interval: \"5 seconds\" is not a duration",
            "spec.healthCheck.active.http.path: must start with /",
            "spec.retry.attempts: 0 is not between 1 and 10",
            "spec.tls: insecureSkipVerify and caCertificateRefs exclude each other",
            "spec.tls.hostname: \"a b\" is not a DNS name",
        ];
        for fragment in expected {
            assert!(
                errors.iter().any(|e| e.contains(fragment)),
                "missing {fragment:?} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    }
}
