//! Prometheus metrics, served by the admin listener at `GET /metrics`.
//!
//! This module reads state that other rooms keep in plain form (the live table, the connection
//! registry, the process's `/proc` entries) when a scraper asks, and records the control plane's
//! events (publishes) as they happen. Nothing here runs per request: the data plane keeps its
//! own counters, and a scrape reads them, so a metric never adds a shared write to the hot
//! path.
//!
//! Names follow Prometheus conventions (base units, `_total` on counters), with the `vane_`
//! prefix; the process metrics are the standard `process_*` set. The text format (0.0.4) is
//! served unless the scraper asks for OpenMetrics in its `Accept` header.

mod process;
mod traffic;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, text, DescriptorEncoder, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::watch;

use crate::endpoint::EndpointStats;
use crate::k8s::watch::{KindStats, WatchStats};
use crate::live::{ActiveTable, BackendGuard, Credentials, TableHandle};
use crate::proxy::access_log::Counts;
use crate::proxy::traffic::Traffic;
use crate::proxy::{Connections, HandshakeOutcome, Listener, Telemetry, PROTOCOLS};
use crate::table::Diagnostic;

/// The `Content-Type` of an OpenMetrics answer.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric of the process, and the handles the control plane records with.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    swaps: Counter,
    compile_seconds: Histogram,
    last_swap: Gauge<f64, std::sync::atomic::AtomicU64>,
    diagnostics: Family<ReasonLabel, Gauge>,
    state: Arc<State>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

impl Metrics {
    /// The metrics of the table in `tables`, of the client connections, and of the requests
    /// reported to `telemetry`.
    pub fn new(
        tables: Arc<TableHandle>,
        connections: Arc<Connections>,
        telemetry: &Telemetry,
    ) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(process::ProcessCollector));
        let vane = registry.sub_registry_with_prefix("vane");
        let state = Arc::new(State {
            tables,
            connections,
            traffic: telemetry.traffic.clone(),
            access_log: telemetry.access_log.as_ref().map(|log| log.counts()),
            leader: OnceLock::new(),
            watches: OnceLock::new(),
        });
        vane.register_collector(Box::new(state.clone()));
        let swaps = Counter::default();
        vane.register(
            "table_swaps",
            "Routing tables published (swapped in atomically)",
            swaps.clone(),
        );
        // 100 µs to ~6.5 s: a small table compiles in well under a millisecond, 10,000
        // Ingresses in a few hundred.
        let compile_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        vane.register_with_unit(
            "compile_duration",
            "Time to compile a snapshot into a table and publish it",
            Unit::Seconds,
            compile_seconds.clone(),
        );
        let last_swap = Gauge::default();
        vane.register_with_unit(
            "last_table_swap_timestamp",
            "When the current table was published, as seconds since the Unix epoch",
            Unit::Seconds,
            last_swap.clone(),
        );
        let diagnostics = Family::default();
        vane.register(
            "diagnostics",
            "Problems the current table was compiled with (objects or settings not used), by reason",
            diagnostics.clone(),
        );
        Self {
            registry,
            swaps,
            compile_seconds,
            last_swap,
            diagnostics,
            state,
        }
    }

    /// Reports `vane_watch_lists_total` and `vane_watch_failures_total` from `watches`.
    pub fn follow_watches(&self, watches: Arc<WatchStats>) {
        // Set once, when the Kubernetes source starts.
        let _ = self.state.watches.set(watches);
    }

    /// Reports `vane_leader` from now on, following `leader` (Kubernetes mode).
    pub fn follow_leadership(&self, leader: watch::Receiver<bool>) {
        let _ = self.state.leader.set(leader);
    }

    /// Records a table published after `took` of compiling and publishing, with its
    /// diagnostics (which replace the last table's in `vane_diagnostics`).
    pub fn published(&self, took: Duration, diagnostics: &[Diagnostic], at: SystemTime) {
        self.swaps.inc();
        self.compile_seconds.observe(took.as_secs_f64());
        let at = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_swap.set(at.as_secs_f64());
        // The series of what the new table no longer routes go now, scraped or not.
        traffic::fold(&self.state.tables.load(), &self.state.traffic);
        // Reasons that no longer occur go away rather than stay at their last count.
        self.diagnostics.clear();
        for diagnostic in diagnostics {
            let reason = ReasonLabel {
                reason: diagnostic.reason,
            };
            self.diagnostics.get_or_create(&reason).inc();
        }
    }

    /// The metrics in the format `accept` (a request's `Accept` header) asks for, with its
    /// `Content-Type`.
    pub fn encode(&self, accept: Option<&str>) -> (&'static str, String) {
        let mut body = String::new();
        let openmetrics = accept.is_some_and(|a| a.contains("application/openmetrics-text"));
        // Writing to a String cannot fail, and the metrics here never produce an error.
        if openmetrics {
            let _ = text::encode(&mut body, &self.registry);
            (OPENMETRICS_CONTENT_TYPE, body)
        } else {
            let _ = prometheus_text::encode(&mut body, &self.registry);
            (prometheus_text::CONTENT_TYPE, body)
        }
    }
}

/// The state other rooms keep, read at scrape time.
#[derive(Debug)]
struct State {
    tables: Arc<TableHandle>,
    connections: Arc<Connections>,
    traffic: Arc<Traffic>,
    /// The access log's queue, when the log is on.
    access_log: Option<Arc<Counts>>,
    /// Kubernetes mode: leadership of the Lease, and how the watches fare.
    leader: OnceLock<watch::Receiver<bool>>,
    watches: OnceLock<Arc<WatchStats>>,
}

impl Collector for State {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        // One table for the whole scrape, so that its metrics agree with each other.
        let active = self.tables.load();
        let generation = ConstGauge::new(active.generation as i64);
        generation.encode(encoder.encode_descriptor(
            "table_generation",
            "Generation of the routing table in use (0 until the first is published).",
            None,
            generation.metric_type(),
        )?)?;
        let open = ConstGauge::new(self.connections.open() as i64);
        open.encode(encoder.encode_descriptor(
            "client_connections_open",
            "Client connections open, over every listener and worker (WebSocket tunnels included).",
            None,
            open.metric_type(),
        )?)?;
        let listeners = &self.connections.listeners;
        counters(
            &mut encoder,
            "client_connections_accepted",
            "Client connections accepted under the connection cap, by listener (http, https).",
            Listener::ALL.map(|l| ([("listener", l.as_str())], listeners.accepted_total(l))),
        )?;
        let serving = Listener::ALL.into_iter().flat_map(|listener| {
            PROTOCOLS.map(|(protocol, p)| {
                let labels = [("listener", listener.as_str()), ("protocol", protocol)];
                (labels, listeners.serving_now(listener, p) as f64)
            })
        });
        gauges(
            &mut encoder,
            "client_connections_serving",
            "Client connections serving HTTP, by listener and protocol (http1, http2); not those \
             in their handshake, nor WebSocket tunnels.",
            None,
            serving,
        )?;
        let handshakes = &self.connections.handshakes;
        let outcomes = [
            ("completed", HandshakeOutcome::Completed),
            ("failed", HandshakeOutcome::Failed),
            ("timeout", HandshakeOutcome::TimedOut),
        ];
        let mut family = encoder.encode_descriptor(
            "tls_handshakes",
            "TLS handshakes on the HTTPS listener, by outcome (completed, failed, timeout).",
            None,
            MetricType::Counter,
        )?;
        for (label, outcome) in outcomes {
            let count = ConstCounter::new(handshakes.count(outcome));
            count.encode(family.encode_family(&[("outcome", label)])?)?;
        }
        if let Some(leader) = self.leader.get() {
            let leader = ConstGauge::new(i64::from(*leader.borrow()));
            leader.encode(encoder.encode_descriptor(
                "leader",
                "1 if this replica holds the leader Lease (writes Ingress status and Events).",
                None,
                leader.metric_type(),
            )?)?;
        }
        if let Some(watches) = self.watches.get() {
            let by_kind = watches.by_kind();
            let kinds = |count: fn(&KindStats) -> u64| {
                by_kind
                    .iter()
                    .map(move |(kind, stats)| ([("kind", kind.as_str())], count(stats)))
            };
            counters(
                &mut encoder,
                "watch_lists",
                "Lists of a watched kind: the first, and each relist (after a 410 Gone, say).",
                kinds(|stats| stats.lists),
            )?;
            counters(
                &mut encoder,
                "watch_failures",
                "Failures of a kind's watch, each retried with backoff.",
                kinds(|stats| stats.failures),
            )?;
        }
        if let Some(access_log) = &self.access_log {
            let dropped = ConstCounter::new(access_log.dropped());
            dropped.encode(encoder.encode_descriptor(
                "access_log_dropped",
                "Access log lines dropped because the output could not keep up (or failed).",
                None,
                dropped.metric_type(),
            )?)?;
        }
        traffic::encode(&active, &self.traffic, &mut encoder)?;
        endpoints(&active, &mut encoder)?;
        rate_limits(&active, &mut encoder)?;
        basic_auth(self.tables.credentials(), &mut encoder)?;
        certificates(&active, &mut encoder)
    }
}

/// One labelled gauge per row: `rows` of label pairs and a value.
fn gauges<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: impl IntoIterator<Item = (L, f64)>,
) -> fmt::Result {
    let rows = rows.into_iter().map(|(l, v)| (l, ConstGauge::new(v)));
    family(encoder, (name, help, unit, MetricType::Gauge), rows)
}

/// One labelled counter per row.
fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let rows = rows.into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
    family(encoder, (name, help, None, MetricType::Counter), rows)
}

/// A family (name, help, unit, type) with one metric per row of labels.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    (name, help, unit, kind): (&str, &str, Option<&Unit>, MetricType),
    rows: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, unit, kind)?;
    for (labels, metric) in rows {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Each endpoint of each backend of the table in use: whether it is in rotation, ejected and
/// (for backends with active checks) healthy by its probes, its requests in flight and
/// ejections; each backend's panic mode, retries and circuit-breaker rejections. Departed
/// endpoints and backends disappear with their table. A backend's counters live in its guard
/// and an endpoint's in its state, so they start over when the backend's configuration changes
/// or the endpoint rejoins (a counter reset, which Prometheus's `rate` handles).
fn endpoints(active: &ActiveTable, encoder: &mut DescriptorEncoder) -> fmt::Result {
    let now = tokio::time::Instant::now();
    struct Row<'t> {
        backend: &'t str,
        endpoint: String,
        stats: &'t EndpointStats,
        probed: bool,
    }
    fn labels<'r>(row: &'r Row<'_>) -> [(&'static str, &'r str); 2] {
        [
            ("backend", row.backend),
            ("endpoint", row.endpoint.as_str()),
        ]
    }
    let mut rows = Vec::new();
    let mut panics = Vec::new();
    let mut guards = Vec::new();
    for (index, backend) in active.table.backends().iter().enumerate() {
        if let Some(guard) = active.guards.get(index) {
            guards.push((&*backend.name, guard));
        }
        let Some(balancer) = active.balancers.get(index) else {
            continue;
        };
        panics.push((
            [("backend", &*backend.name)],
            f64::from(u8::from(balancer.in_panic(now))),
        ));
        rows.extend(balancer.members().iter().map(|member| Row {
            backend: &backend.name,
            endpoint: member.address.to_string(),
            stats: &member.stats,
            probed: backend.health.active.is_some(),
        }));
    }
    let flag = |on: bool| f64::from(u8::from(on));
    gauges(
        encoder,
        "endpoint_in_rotation",
        "1 if the endpoint takes traffic now (healthy by its probes and not ejected), else 0.",
        None,
        rows.iter()
            .map(|row| (labels(row), flag(row.stats.health.is_available(now)))),
    )?;
    gauges(
        encoder,
        "endpoint_ejected",
        "1 if passive health checking (outlier detection) has ejected the endpoint, else 0.",
        None,
        rows.iter().map(|row| {
            let ejected = row.stats.health.ejected_until(now).is_some();
            (labels(row), flag(ejected))
        }),
    )?;
    gauges(
        encoder,
        "endpoint_probe_healthy",
        "1 if the endpoint's active health checks pass, else 0 (backends with active checks only).",
        None,
        rows.iter()
            .filter(|row| row.probed)
            .map(|row| (labels(row), flag(row.stats.health.probe_healthy()))),
    )?;
    gauges(
        encoder,
        "endpoint_requests_in_flight",
        "Requests to the endpoint whose responses have not ended.",
        None,
        rows.iter()
            .map(|row| (labels(row), f64::from(row.stats.in_flight()))),
    )?;
    counters(
        encoder,
        "endpoint_ejections",
        "Times outlier detection ejected the endpoint.",
        rows.iter()
            .map(|row| (labels(row), row.stats.health.ejected_total())),
    )?;
    let per_backend = |count: fn(&BackendGuard) -> u64| {
        guards
            .iter()
            .map(move |(backend, guard)| ([("backend", *backend)], count(guard)))
    };
    counters(
        encoder,
        "backend_retries",
        "Retries sent to another endpoint (or the same one, for a connect failure).",
        per_backend(|guard| guard.budget.granted()),
    )?;
    counters(
        encoder,
        "backend_retries_refused",
        "Retries the backend's retry budget refused.",
        per_backend(|guard| guard.budget.refused()),
    )?;
    counters(
        encoder,
        "backend_circuit_breaker_rejections",
        "Requests the backend's circuit breaker answered 503 without forwarding.",
        per_backend(BackendGuard::rejected),
    )?;
    gauges(
        encoder,
        "backend_panic",
        "1 if too few of the backend's endpoints are healthy, so health is ignored (panic mode).",
        None,
        panics,
    )
}

/// When the certificate served for each TLS host expires.
/// Requests that went to a rate limiter's shared overflow bucket, because it tracked as many
/// clients as it may: a sign of a flood from many sources.
fn rate_limits(active: &ActiveTable, encoder: &mut DescriptorEncoder) -> fmt::Result {
    counters(
        encoder,
        "rate_limit_overflow",
        "Requests checked against an Ingress's shared overflow bucket because its rate limiter tracked as many client addresses as it may.",
        active.rate_limiters().map(|limiter| {
            let ingress = limiter.ingress();
            (
                [
                    ("namespace", ingress.namespace.clone()),
                    ("ingress", ingress.name.clone()),
                ],
                limiter.overflowed(),
            )
        }),
    )
}

/// Basic auth's password hashing and its cache of verified credentials (`live/credentials.rs`).
fn basic_auth(credentials: &Credentials, encoder: &mut DescriptorEncoder) -> fmt::Result {
    for (name, help, count) in [
        (
            "basic_auth_verifications",
            "Passwords hashed to check basic auth credentials (a cache miss for a known user).",
            credentials.verifications(),
        ),
        (
            "basic_auth_cache_evictions",
            "Verified credentials pushed out of the bounded cache by newer ones: their clients \
             pay a password hash again.",
            credentials.evictions(),
        ),
    ] {
        let counter = ConstCounter::new(count);
        counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
    }
    Ok(())
}

fn certificates(active: &ActiveTable, encoder: &mut DescriptorEncoder) -> fmt::Result {
    let tls = active.table.tls();
    let sites = tls.sites();
    let hosts: Vec<(String, f64)> = tls
        .hosts()
        .map(|(host, index)| {
            let expiry = sites[index].certificate.not_after_unix as f64;
            (host.to_string(), expiry)
        })
        .collect();
    gauges(
        encoder,
        "tls_certificate_expiry_timestamp",
        "When the certificate served for the TLS host expires, as seconds since the Unix epoch.",
        Some(&Unit::Seconds),
        hosts
            .iter()
            .map(|(host, expiry)| ([("host", host.as_str())], *expiry)),
    )
}
