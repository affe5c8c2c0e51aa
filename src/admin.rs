//! The admin listeners: health and readiness, `/metrics`, and `/debug/routes`. Who can reach an
//! endpoint is decided by where it listens, not by a check here: the kubelet must probe health
//! on the pod address, Prometheus must scrape metrics over the pod network, and the debug output
//! (hosts, paths, endpoint addresses, certificate subjects) is for people on the pod or the
//! node, so it stays on loopback, where `kubectl port-forward` still reaches it.
//!
//! | [`Surface`] | flag (default) | serves |
//! | --- | --- | --- |
//! | `Health` | `--admin-addr` (127.0.0.1:9090) | `/healthz`, `/readyz` |
//! | `Metrics` | `--metrics-addr` (unset: the admin listener) | `/metrics` |
//! | `Debug` | `--debug-addr` (unset: the admin listener) | `/debug/routes` |
//!
//! By default everything is on the admin listener, on loopback. Binding the admin listener on
//! the pod network for the kubelet (as the chart does) calls for the other two to have
//! listeners of their own; a path is served on one listener only, the others answer 404. All
//! are read-only.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::live::{ActiveTable, TableHandle};
use crate::metrics::Metrics;
use crate::net::AcceptBackoff;
use crate::table::{BackendTarget, ClientAuthMode, PathKind, Timeouts};

/// What the admin endpoints report on.
#[derive(Debug)]
pub struct AdminState {
    tables: Arc<TableHandle>,
    metrics: Arc<Metrics>,
    draining: AtomicBool,
}

impl AdminState {
    pub fn new(tables: Arc<TableHandle>, metrics: Arc<Metrics>) -> Self {
        Self {
            tables,
            metrics,
            draining: AtomicBool::new(false),
        }
    }

    /// Ready once the first table is published, and until shutdown begins.
    pub fn is_ready(&self) -> bool {
        self.tables.is_published() && !self.draining.load(Ordering::Relaxed)
    }

    /// Marks the process as shutting down: `/readyz` fails from now on.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// A group of admin endpoints, by audience.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// `/healthz` and `/readyz`, for the kubelet's probes (`--admin-addr`).
    Health,
    /// `/metrics`, for Prometheus (`--metrics-addr`).
    Metrics,
    /// `/debug/routes`, for people (`--debug-addr`).
    Debug,
}

impl Surface {
    /// The flag that gives this surface a listener.
    pub fn flag(self) -> &'static str {
        match self {
            Surface::Health => "--admin-addr",
            Surface::Metrics => "--metrics-addr",
            Surface::Debug => "--debug-addr",
        }
    }
}

/// The surfaces one listener serves. The admin listener serves health, and metrics and debug
/// too unless they were given listeners of their own (the chart gives both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Surfaces {
    health: bool,
    metrics: bool,
    debug: bool,
}

impl Surfaces {
    pub fn only(surface: Surface) -> Self {
        Self {
            health: false,
            metrics: false,
            debug: false,
        }
        .with(surface)
    }

    pub fn with(mut self, surface: Surface) -> Self {
        *self.flag_of(surface) = true;
        self
    }

    pub fn serves(mut self, surface: Surface) -> bool {
        *self.flag_of(surface)
    }

    fn flag_of(&mut self, surface: Surface) -> &mut bool {
        match surface {
            Surface::Health => &mut self.health,
            Surface::Metrics => &mut self.metrics,
            Surface::Debug => &mut self.debug,
        }
    }

    /// The flag of the listener: that of its first surface.
    pub fn flag(self) -> &'static str {
        [Surface::Health, Surface::Metrics, Surface::Debug]
            .into_iter()
            .find(|&surface| self.serves(surface))
            .map_or("--admin-addr", Surface::flag)
    }
}

/// Connections each admin listener serves at once. Probes and scrapes need a handful; beyond
/// that a client waits for a place rather than making the process hold (and render `/metrics`
/// for) more. Each listener has its own places, so a flood of scrapes or debug requests never
/// keeps the kubelet's probes waiting.
pub const MAX_ADMIN_CONNECTIONS: usize = 64;

/// Serves the endpoints of `surfaces` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    surfaces: Surfaces,
    state: Arc<AdminState>,
    shutdown: CancellationToken,
) {
    let mut failures = AcceptBackoff::default();
    let places = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
    loop {
        let place = tokio::select! {
            _ = shutdown.cancelled() => return,
            place = places.clone().acquire_owned() => place.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    failures.failed(surfaces.flag(), &error).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _place = place;
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, surfaces, &request)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                debug!(%error, "admin connection failed");
            }
        });
    }
}

fn respond(
    state: &AdminState,
    surfaces: Surfaces,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    let path = request.uri().path();
    let surface = match path {
        "/healthz" | "/readyz" => Surface::Health,
        "/metrics" => Surface::Metrics,
        _ => Surface::Debug,
    };
    if !surfaces.serves(surface) {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if state.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/metrics" => {
            let accept = request.headers().get(header::ACCEPT);
            let (content_type, body) = state.metrics.encode(accept.and_then(|a| a.to_str().ok()));
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(content_type),
            );
            response
        }
        "/debug/routes" => {
            let body =
                serde_json::to_vec_pretty(&routes_json(&state.tables.load())).unwrap_or_default();
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The table as JSON: routes grouped by host, backends with their endpoints, diagnostics.
pub fn routes_json(active: &ActiveTable) -> Value {
    let now = tokio::time::Instant::now();
    let table = &active.table;
    let backend_name = |index: usize| table.backend(index).map(|b| b.name.to_string());
    let mut hosts: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut default_backend = Value::Null;
    for route in table.routes() {
        let Some(path) = &route.path else {
            default_backend = json!({
                "ingress": format!("{}/{}", route.ingress.namespace, route.ingress.name),
                "backend": backend_name(route.backend),
            });
            continue;
        };
        hosts.entry(route.host.to_string()).or_default().push(json!({
            "path": path.display_path(),
            "pathType": match path.kind() { PathKind::Exact => "Exact", PathKind::Prefix => "Prefix", PathKind::Regex => "ImplementationSpecific" },
            "ingress": format!("{}/{}", route.ingress.namespace, route.ingress.name),
            "backend": backend_name(route.backend),
            "timeouts": timeouts_json(&route.timeouts),
            "upgradeProtocols": route.upgrade_protocols.as_deref().unwrap_or_default(),
        }));
    }
    let backends: Vec<Value> = table
        .backends()
        .iter()
        .enumerate()
        .map(|(index, backend)| match &backend.target {
            BackendTarget::Endpoints(endpoints) => {
                let balancer = active.balancers.get(index);
                let members = balancer.map(|b| b.members()).unwrap_or_default();
                let probed = backend.health.active.is_some();
                json!({
                    "name": backend.name,
                    "protocol": backend.protocol.as_str(),
                    "upstreamTls": backend.upstream_tls.as_ref().map(|tls| json!({
                        "serverName": tls.server_name,
                        "verify": if tls.is_insecure() { "insecureSkipVerify".to_string() } else {
                            match &tls.ca {
                                Some(secrets) => secrets.iter().map(|s| format!("{}/{}", s.namespace, s.name)).collect::<Vec<_>>().join(","),
                                None => "webpki-roots".to_string(),
                            }
                        },
                    })),
                    "loadBalancing": format!("{:?}", backend.load_balancing),
                    "policy": backend.policy.as_ref().map(|p| format!("{}/{}", p.namespace, p.name)),
                    "panic": balancer.is_some_and(|b| b.in_panic(now)),
                    "retry": {
                        "attempts": backend.retry.attempts,
                        "budgetPercent": backend.retry.budget_percent,
                    },
                    "endpoints": endpoints.iter().enumerate().map(|(i, e)| {
                        let stats = members.get(i).map(|m| &m.stats);
                        let health = stats.map(|s| &s.health);
                        json!({
                            "address": e.address.to_string(),
                            "weight": e.weight,
                            "readiness": if e.terminating { "Terminating" } else { "Ready" },
                            "probe": match (probed, health) {
                                (false, _) | (_, None) => "None",
                                (true, Some(h)) if h.probe_healthy() => "Healthy",
                                (true, Some(_)) => "Unhealthy",
                            },
                            "ejectedForSeconds": health
                                .and_then(|h| h.ejected_until(now))
                                .map(|until| until.saturating_duration_since(now).as_secs_f64()),
                            "ejections": health.map(|h| h.ejections()),
                            "inRotation": health.is_some_and(|h| h.is_available(now)),
                            "inFlight": stats.map(|s| s.in_flight()),
                        })
                    }).collect::<Vec<_>>(),
                })
            }
            BackendTarget::Invalid(reason) => json!({
                "name": backend.name,
                "invalid": reason,
            }),
        })
        .collect();
    let sites = table.tls().sites();
    let default_index = table.tls().default_index();
    let default_site = default_index.map(|index| &sites[index]);
    let mut tls: Vec<(String, Value)> = table
        .tls()
        .hosts()
        .map(|(host, index)| {
            let site = &sites[index];
            let is_default = default_site
                .is_some_and(|d| std::sync::Arc::ptr_eq(&d.certificate, &site.certificate));
            (host.to_string(), site_json(active, index, is_default))
        })
        .collect();
    tls.sort_by(|a, b| a.0.cmp(&b.0));
    json!({
        "generation": active.generation,
        "tls": tls.into_iter().map(|(host, site)| json!({"host": host, "site": site})).collect::<Vec<_>>(),
        "defaultCertificate": default_index.map(|index| site_json(active, index, true)),
        "hosts": hosts.into_iter().map(|(host, paths)| json!({"host": host, "paths": paths})).collect::<Vec<_>>(),
        "defaultBackend": default_backend,
        "backends": backends,
        "diagnostics": active.diagnostics,
    })
}

fn timeouts_json(timeouts: &Timeouts) -> Value {
    json!({
        "connectSeconds": timeouts.connect.as_secs_f64(),
        "responseHeadersSeconds": timeouts.response_headers.as_secs_f64(),
        "readIdleSeconds": timeouts.read_idle.as_secs_f64(),
        "sendIdleSeconds": timeouts.send_idle.as_secs_f64(),
        "requestSeconds": timeouts.request.map(|t| t.as_secs_f64()),
    })
}

/// TLS site `index`: its certificate (which Secret, or the self-signed one; subject, DNS names,
/// notAfter), its client verification, and whether its handshakes are refused (as published:
/// without a server configuration).
fn site_json(active: &ActiveTable, index: usize, is_default: bool) -> Value {
    let site = &active.table.tls().sites()[index];
    let certificate = &site.certificate;
    json!({
        "certificate": {
            "source": match (&certificate.secret, is_default) {
                (Some(secret), false) => format!("{}/{}", secret.namespace, secret.name),
                (Some(secret), true) => format!("default ({}/{})", secret.namespace, secret.name),
                (None, _) => "default (self-signed)".to_string(),
            },
            "subject": certificate.subject,
            "dnsNames": certificate.dns_names,
            "notAfter": certificate.not_after,
        },
        "clientAuth": site.client_auth.as_ref().map(|auth| json!({
            "ca": format!("{}/{}", auth.ca.namespace, auth.ca.name),
            "mode": match auth.mode { ClientAuthMode::Required => "on", ClientAuthMode::Optional => "optional" },
        })),
        "refused": active.server_configs.get(index).is_none(),
    })
}
