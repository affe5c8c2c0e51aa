//! vane's own validation of a `BackendPolicy`, mirroring the CRD schema (bounds, patterns and
//! CEL rules). Standalone manifests never pass an API server, and a cluster may run an older
//! CRD, so vane never trusts that the schema was applied.

use std::fmt::Display;

use super::bounds::{self, Bound};
use super::duration::Duration;
use super::*;

/// Every problem with `spec`, as sentences naming the field. Empty means valid.
pub fn validate(spec: &BackendPolicySpec) -> Vec<String> {
    let mut errors = Errors::default();
    errors.length(
        "spec.targetRefs",
        spec.target_refs.len(),
        bounds::TARGET_REFS,
    );
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
            bounds::COOKIE_LIFETIME,
        );
        errors.duration(
            "spec.sessionPersistence.idleTimeout",
            session.idle_timeout.as_ref(),
            bounds::COOKIE_LIFETIME,
        );
    }
    if let Some(health) = &spec.health_check {
        health_check(health, &mut errors);
    }
    if let Some(retry) = &spec.retry {
        errors.range(
            "spec.retry.attempts",
            retry.attempts,
            bounds::RETRY_ATTEMPTS,
        );
        errors.duration(
            "spec.retry.perTryTimeout",
            retry.per_try_timeout.as_ref(),
            bounds::TIMEOUT,
        );
        if let Some(budget) = &retry.budget {
            errors.range("spec.retry.budget.percent", budget.percent, bounds::PERCENT);
            errors.range(
                "spec.retry.budget.minRetriesPerSecond",
                budget.min_retries_per_second,
                bounds::MIN_RETRIES_PER_SECOND,
            );
        }
    }
    if let Some(timeouts) = &spec.timeouts {
        for (field, value) in [
            ("spec.timeouts.connect", &timeouts.connect),
            ("spec.timeouts.responseHeaders", &timeouts.response_headers),
            ("spec.timeouts.idle", &timeouts.idle),
            ("spec.timeouts.request", &timeouts.request),
        ] {
            errors.duration(field, value.as_ref(), bounds::TIMEOUT);
        }
    }
    if let Some(breaker) = &spec.circuit_breaker {
        errors.range(
            "spec.circuitBreaker.maxConnections",
            breaker.max_connections,
            bounds::CIRCUIT_BREAKER_LIMIT,
        );
        errors.range(
            "spec.circuitBreaker.maxPendingRequests",
            breaker.max_pending_requests,
            bounds::CIRCUIT_BREAKER_PENDING,
        );
        errors.range(
            "spec.circuitBreaker.maxRequests",
            breaker.max_requests,
            bounds::CIRCUIT_BREAKER_LIMIT,
        );
    }
    if let Some(tls) = &spec.tls {
        if tls.insecure_skip_verify == Some(true) && !tls.ca_certificate_refs.is_empty() {
            errors.add(
                "spec.tls",
                "insecureSkipVerify and caCertificateRefs exclude each other",
            );
        }
        errors.length(
            "spec.tls.caCertificateRefs",
            tls.ca_certificate_refs.len(),
            bounds::CA_CERTIFICATE_REFS,
        );
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
            bounds::SLOW_START_WINDOW,
        );
        errors.range(
            "spec.loadBalancer.slowStart.minWeightPercent",
            slow_start.min_weight_percent,
            bounds::SLOW_START_MIN_WEIGHT_PERCENT,
        );
        errors.range(
            "spec.loadBalancer.slowStart.aggression",
            slow_start.aggression,
            bounds::SLOW_START_AGGRESSION,
        );
    }
    if let Some(lrt) = &lb.least_response_time {
        errors.duration(
            "spec.loadBalancer.leastResponseTime.decay",
            lrt.decay.as_ref(),
            bounds::LATENCY_DECAY,
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
            let field = "spec.loadBalancer.consistentHash.tableSize";
            match hash.table_size {
                // The bound first: it keeps the prime test (and the table) small.
                Some(size) if !bounds::MAGLEV_TABLE_SIZE.contains(size) => errors.add(
                    field,
                    format!("{size} is not {}", bounds::MAGLEV_TABLE_SIZE),
                ),
                Some(size) if !is_prime(size) => {
                    errors.add(field, format!("{size} is not a prime"))
                }
                _ => {}
            }
            errors.range(
                "spec.loadBalancer.consistentHash.boundedLoadFactor",
                hash.bounded_load_factor,
                bounds::BOUNDED_LOAD_FACTOR,
            );
        }
        _ => {}
    }
    errors.length(
        "spec.loadBalancer.endpointWeights",
        lb.endpoint_weights.len(),
        bounds::ENDPOINT_WEIGHTS,
    );
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
        errors.range(
            &format!("{at}.weight"),
            Some(weight.weight),
            bounds::ENDPOINT_WEIGHT,
        );
    }
}

fn health_check(health: &HealthCheck, errors: &mut Errors) {
    if let Some(active) = &health.active {
        if active.http.is_some() && active.type_ != ProbeType::Http {
            errors.add("spec.healthCheck.active", "http settings need type HTTP");
        }
        errors.duration(
            "spec.healthCheck.active.interval",
            active.interval.as_ref(),
            bounds::PROBE_INTERVAL,
        );
        errors.duration(
            "spec.healthCheck.active.timeout",
            active.timeout.as_ref(),
            bounds::PROBE_TIMEOUT,
        );
        errors.duration(
            "spec.healthCheck.active.initialJitter",
            active.initial_jitter.as_ref(),
            bounds::PROBE_INITIAL_JITTER,
        );
        errors.range(
            "spec.healthCheck.active.healthyThreshold",
            active.healthy_threshold,
            bounds::PROBE_THRESHOLD,
        );
        errors.range(
            "spec.healthCheck.active.unhealthyThreshold",
            active.unhealthy_threshold,
            bounds::PROBE_THRESHOLD,
        );
        errors.range("spec.healthCheck.active.port", active.port, bounds::PORT);
        if let Some(http) = &active.http {
            if http.path.as_deref().is_some_and(|p| !p.starts_with('/')) {
                errors.add("spec.healthCheck.active.http.path", "must start with /");
            }
            errors.length(
                "spec.healthCheck.active.http.expectedStatuses",
                http.expected_statuses.len(),
                bounds::EXPECTED_STATUSES,
            );
            for (i, range) in http.expected_statuses.iter().enumerate() {
                if !bounds::STATUS_CODE.contains(range.min)
                    || !bounds::STATUS_CODE.contains(range.max)
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
            bounds::OUTLIER_THRESHOLD,
        );
        errors.range(
            "spec.healthCheck.passive.consecutiveGatewayErrors",
            passive.consecutive_gateway_errors,
            bounds::OUTLIER_THRESHOLD,
        );
        errors.duration(
            "spec.healthCheck.passive.baseEjectionTime",
            passive.base_ejection_time.as_ref(),
            bounds::EJECTION_TIME,
        );
        errors.duration(
            "spec.healthCheck.passive.maxEjectionTime",
            passive.max_ejection_time.as_ref(),
            bounds::EJECTION_TIME,
        );
        errors.range(
            "spec.healthCheck.passive.maxEjectionPercent",
            passive.max_ejection_percent,
            bounds::PERCENT,
        );
        errors.range(
            "spec.healthCheck.passive.panicThresholdPercent",
            passive.panic_threshold_percent,
            bounds::PERCENT,
        );
    }
}

/// Trial division in u64: `d * d` of a divisor near the square root of a u32 overflows u32.
fn is_prime(n: u32) -> bool {
    let n = u64::from(n);
    n >= 2 && (2u64..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    fn add(&mut self, field: &str, problem: impl std::fmt::Display) {
        self.0.push(format!("{field}: {problem}"));
    }

    fn duration(
        &mut self,
        field: &str,
        value: Option<&Duration>,
        bound: Bound<std::time::Duration>,
    ) {
        let Some(value) = value else { return };
        match value.parse() {
            Err(error) => self.add(field, error),
            Ok(parsed) if !bound.contains(parsed) => {
                self.add(field, format!("{value} is not {bound}"))
            }
            Ok(_) => {}
        }
    }

    fn range<T>(&mut self, field: &str, value: Option<T>, bound: Bound<T>)
    where
        T: PartialOrd + Copy + Display,
        Bound<T>: Display,
    {
        if let Some(value) = value.filter(|v| !bound.contains(*v)) {
            self.add(field, format!("{value} is not {bound}"));
        }
    }

    fn length(&mut self, field: &str, length: usize, bound: Bound<usize>) {
        if !bound.contains(length) {
            self.add(field, format!("has {length} entries, not {bound}"));
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
    /// The errors of a policy with `extra` added to a valid one.
    fn errors_with(extra: &str) -> Vec<String> {
        validate(&spec(&format!(
            "targetRefs: [{{group: '', kind: Service, name: web}}]\n{extra}"
        )))
    }

    fn assert_rejected(extra: &str, field: &str, bound: &str) {
        let errors = errors_with(extra);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&format!("{field}: ")) && e.contains(bound)),
            "{extra}: expected {field} ... {bound} in {errors:#?}"
        );
    }

    #[test]
    fn maglev_tables_are_bounded_before_the_prime_test() {
        let hash = |size: u64| {
            format!("loadBalancer: {{type: ConsistentHash, consistentHash: {{hashOn: SourceIP, tableSize: {size}}}}}")
        };
        let field = "spec.loadBalancer.consistentHash.tableSize";
        // A prime, 38 times the cap: 200 MB and seconds per reload if accepted.
        assert_rejected(&hash(50_000_017), field, "between 251 and 1310719");
        // The largest prime below 2^32: 17 GB if accepted.
        assert_rejected(&hash(4_294_967_291), field, "between 251 and 1310719");
        assert_rejected(&hash(1_310_723), field, "between 251 and 1310719");
        assert_rejected(&hash(65_541), field, "is not a prime");
        assert!(errors_with(&hash(1_310_719)).is_empty());
        assert!(errors_with(&hash(251)).is_empty());
    }

    #[test]
    fn the_prime_test_holds_up_to_u32_max() {
        assert!(is_prime(4_294_967_291));
        assert!(is_prime(65_537));
        assert!(!is_prime(u32::MAX)); // 3 × 5 × 17 × 257 × 65537
        assert!(!is_prime(65_521 * 65_521)); // the square of the largest 16-bit prime
        assert!(!is_prime(0) && !is_prime(1) && is_prime(2));
    }

    #[test]
    fn durations_are_bounded_per_field() {
        for (extra, field, bound) in [
            (
                "timeouts: {request: 99999h}",
                "spec.timeouts.request",
                "between 1ms and 24h",
            ),
            (
                "timeouts: {connect: 0s}",
                "spec.timeouts.connect",
                "between 1ms and 24h",
            ),
            (
                "timeouts: {idle: 24h1ms}",
                "spec.timeouts.idle",
                "between 1ms and 24h",
            ),
            (
                "timeouts: {responseHeaders: 25h}",
                "spec.timeouts.responseHeaders",
                "between 1ms and 24h",
            ),
            (
                "retry: {perTryTimeout: 99999h99999h}",
                "spec.retry.perTryTimeout",
                "between 1ms and 24h",
            ),
            (
                "healthCheck: {active: {type: TCP, interval: 1ms}}",
                "spec.healthCheck.active.interval",
                "between 10ms and 1h",
            ),
            (
                "healthCheck: {active: {type: TCP, timeout: 2h}}",
                "spec.healthCheck.active.timeout",
                "between 1ms and 1h",
            ),
            (
                "healthCheck: {active: {type: TCP, initialJitter: 61m}}",
                "spec.healthCheck.active.initialJitter",
                "between 0s and 1h",
            ),
            (
                "healthCheck: {passive: {baseEjectionTime: 0s}}",
                "spec.healthCheck.passive.baseEjectionTime",
                "between 1ms and 24h",
            ),
            (
                "healthCheck: {passive: {maxEjectionTime: 99999h}}",
                "spec.healthCheck.passive.maxEjectionTime",
                "between 1ms and 24h",
            ),
            (
                "loadBalancer: {type: RoundRobin, roundRobin: {slowStart: {window: 2h}}}",
                "spec.loadBalancer.slowStart.window",
                "between 1s and 1h",
            ),
            (
                "loadBalancer: {type: LeastResponseTime, leastResponseTime: {decay: 99999h}}",
                "spec.loadBalancer.leastResponseTime.decay",
                "between 1ms and 1h",
            ),
            (
                "sessionPersistence: {absoluteTimeout: 8761h}",
                "spec.sessionPersistence.absoluteTimeout",
                "between 1s and 8760h",
            ),
            (
                "sessionPersistence: {idleTimeout: 500ms}",
                "spec.sessionPersistence.idleTimeout",
                "between 1s and 8760h",
            ),
        ] {
            assert_rejected(extra, field, bound);
        }
        assert!(errors_with("timeouts: {connect: 1ms, request: 24h}").is_empty());
    }

    #[test]
    fn counts_and_limits_are_bounded() {
        for (extra, field, bound) in [
            ("circuitBreaker: {maxConnections: 4294967295}", "spec.circuitBreaker.maxConnections", "between 1 and 1000000"),
            ("circuitBreaker: {maxRequests: 0}", "spec.circuitBreaker.maxRequests", "between 1 and 1000000"),
            ("circuitBreaker: {maxPendingRequests: 1000001}", "spec.circuitBreaker.maxPendingRequests", "between 0 and 1000000"),
            ("retry: {budget: {minRetriesPerSecond: 10001}}", "spec.retry.budget.minRetriesPerSecond", "between 0 and 10000"),
            ("retry: {attempts: 4294967295}", "spec.retry.attempts", "between 1 and 10"),
            ("healthCheck: {passive: {consecutive5xx: 1001}}", "spec.healthCheck.passive.consecutive5xx", "between 1 and 1000"),
            ("healthCheck: {passive: {panicThresholdPercent: 101}}", "spec.healthCheck.passive.panicThresholdPercent", "between 0 and 100"),
            ("healthCheck: {active: {type: TCP, unhealthyThreshold: 101}}", "spec.healthCheck.active.unhealthyThreshold", "between 1 and 100"),
            ("healthCheck: {active: {type: TCP, port: 0}}", "spec.healthCheck.active.port", "between 1 and 65535"),
            ("loadBalancer: {type: ConsistentHash, consistentHash: {hashOn: Path, boundedLoadFactor: 1e308}}", "spec.loadBalancer.consistentHash.boundedLoadFactor", "between 1 and 10"),
            ("loadBalancer: {type: RoundRobin, roundRobin: {slowStart: {window: 1m, aggression: .nan}}}", "spec.loadBalancer.slowStart.aggression", "between 0.1 and 10"),
            ("loadBalancer: {type: RoundRobin, endpointWeights: [{zone: a, weight: 1001}]}", "spec.loadBalancer.endpointWeights[0].weight", "between 1 and 1000"),
        ] {
            assert_rejected(extra, field, bound);
        }
    }

    #[test]
    fn lists_are_bounded() {
        let weights = vec!["{zone: a, weight: 2}"; 65].join(", ");
        assert_rejected(
            &format!("loadBalancer: {{type: RoundRobin, endpointWeights: [{weights}]}}"),
            "spec.loadBalancer.endpointWeights",
            "has 65 entries, not between 0 and 64",
        );
        let statuses = vec!["{min: 200, max: 299}"; 17].join(", ");
        assert_rejected(
            &format!(
                "healthCheck: {{active: {{type: HTTP, http: {{expectedStatuses: [{statuses}]}}}}}}"
            ),
            "spec.healthCheck.active.http.expectedStatuses",
            "has 17 entries",
        );
        let targets = vec!["{group: '', kind: Service, name: web}"; 17].join(", ");
        let errors = validate(&spec(&format!("targetRefs: [{targets}]")));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.targetRefs: has 17 entries")),
            "{errors:#?}"
        );
    }
}
