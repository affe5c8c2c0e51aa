//! The data plane: a hyper server that routes each request through the current
//! [`RoutingTable`](crate::table::RoutingTable) and forwards it over pooled upstream
//! connections.
//!
//! Per request: load the table once ([`TableHandle::load`]), look up host and path, let the
//! backend's balancer pick an endpoint, rewrite headers, forward. Bodies stream both ways with
//! hyper's backpressure and are never buffered whole (request bodies up to 64 KiB are, so that
//! a retry can replay them). The upstream connection pools are keyed by endpoint address
//! and protocol and live as long as the proxy, so they survive table swaps (see `upstream`;
//! HTTP/1.1 connections go back to theirs when the response body has been forwarded, see
//! `pool` and `response_body`). When to retry is in `retry` (the budget and the circuit
//! breaker are per backend, in [`crate::live`]), TLS decisions (redirects, HSTS, 421) in
//! `tls_policy`, gRPC error mapping in `grpc`.
//!
//! The client side: `server` accepts and serves connections with a deadline for every phase;
//! `client_io` tells HTTP/1.1 from HTTP/2 within the handshake timeout and cuts clients that stop
//! reading; `connection` keeps the process-wide connection cap and sheds idle connections at it.

pub mod access_log;
mod client_io;
mod connect;
mod connection;
mod cors;
mod error;
mod error_page;
mod external_auth;
mod grpc;
mod headers;
mod idle;
mod in_progress_body;
mod listener_stats;
mod pool;
mod record;
mod request_body;
mod response_body;
mod retry;
mod send_error;
mod server;
mod span;
mod tls_policy;
mod trace;
pub mod traffic;
mod transform;
mod upgrade;
mod upstream;
pub mod workers;

use std::cell::RefCell;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::balance::{cookie_value, BackendBalancer, PickContext, RequestInfo};
use crate::endpoint::RequestOutcome;
use crate::live::{ActiveTable, Admission, BackendGuard, TableHandle};
use crate::table::{Backend, BackendTarget, Canary, CanaryDecision, Endpoint, Route, Transforms};

use access_log::AccessLog;
use pool::Reusable;
use record::{Reporter, RequestRecord};
use request_body::{RequestBody, Uploaded, UpstreamBody};
use response_body::{Hold, Tracked};
use retry::{is_retryable, Failure};
use send_error::SendError;
use traffic::Traffic;
use upstream::{version_for, Upstreams};

pub use client_io::Protocol;
pub use connection::{Connections, HandshakeOutcome};
pub use error::ProxyError;
pub use headers::{ClientInfo, TrustedProxies};
pub use listener_stats::{Listener, ListenerStats, PROTOCOLS};
pub use server::{serve, serve_tls, ServerLimits};
pub use span::Spans;

/// The body of every response the proxy sends: streamed from an upstream, or generated here.
pub type ProxyBody = Either<Tracked, Full<Bytes>>;

/// Settings of the upstream side.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Idle keep-alive connections to an endpoint are closed after this.
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_endpoint: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle_per_endpoint: 128,
        }
    }
}

/// Where the proxy reports its requests: the traffic counters every worker adds to (which
/// `/metrics` reads), the access log when it is on, and spans when they are exported.
#[derive(Clone, Debug, Default)]
pub struct Telemetry {
    pub traffic: Arc<Traffic>,
    pub access_log: Option<AccessLog>,
    pub spans: Option<Spans>,
}

/// Routes and forwards requests. Shared by every connection of a listener.
pub struct Proxy {
    tables: Arc<TableHandle>,
    upstreams: Upstreams<UpstreamBody>,
    /// This worker's traffic counters and the access log.
    reporter: Arc<Reporter>,
    /// Upgraded (WebSocket) connections, which outlive the HTTP connections they came from.
    tunnels: TaskTracker,
    /// Asks `auth-url`s; `None` if it could not be built (then such routes answer 500).
    auth_client: Option<external_auth::AuthClient>,
}

/// How one attempt to get a response from an endpoint failed.
enum AttemptError {
    Send(SendError),
    Timeout(Duration),
}

impl AttemptError {
    /// The endpoint's failure, if it is one: a failed client body (the client went away or
    /// stalled) or an unusable backend configuration is not the endpoint's fault, so it neither
    /// counts against it nor is retried.
    fn failure(&self) -> Option<Failure> {
        match self {
            AttemptError::Send(SendError::Connect(_)) => Some(Failure::Connect),
            AttemptError::Send(SendError::Broken(_)) => Some(Failure::Reset),
            AttemptError::Send(SendError::ClientBody(_) | SendError::Unusable(_)) => None,
            AttemptError::Timeout(_) => Some(Failure::Timeout),
        }
    }
}

impl From<AttemptError> for ProxyError {
    fn from(error: AttemptError) -> Self {
        match error {
            AttemptError::Send(SendError::Connect(e)) => ProxyError::UpstreamConnect(e),
            AttemptError::Send(SendError::Broken(e)) => ProxyError::Upstream(e),
            AttemptError::Send(SendError::ClientBody(e)) => ProxyError::ClientBody(e),
            AttemptError::Send(SendError::Unusable(why)) => {
                ProxyError::InvalidBackend(why.to_string())
            }
            AttemptError::Timeout(after) => ProxyError::UpstreamTimeout(after),
        }
    }
}

/// A protocol switch on its way (WebSocket, or a protocol the route allows): the protocol, the
/// client's side of the switch, and the client connection, whose place under the connection
/// cap the tunnel keeps.
struct Upgrade {
    protocol: HeaderValue,
    client_side: hyper::upgrade::OnUpgrade,
    connection: Option<Arc<connection::Activity>>,
}

/// What one request resolved to: its host, route, backend and their runtime parts.
struct Target<'t> {
    /// The `Host` the upstream gets: the request's validated host.
    host: HeaderValue,
    route: &'t Route,
    backend: &'t Backend,
    endpoints: &'t [Endpoint],
    balancer: &'t BackendBalancer,
    guard: &'t BackendGuard,
}

impl Proxy {
    /// A proxy, typically one per worker thread, each with its own share of `telemetry`'s
    /// traffic counters.
    pub fn new(tables: Arc<TableHandle>, config: &UpstreamConfig, telemetry: &Telemetry) -> Self {
        Self {
            upstreams: Upstreams::new(config, tables.clone(), telemetry.traffic.pool()),
            tables,
            reporter: Arc::new(Reporter {
                shard: telemetry.traffic.shard(),
                unmatched: Arc::default(),
                access_log: telemetry.access_log.clone(),
                spans: telemetry.spans.clone(),
            }),
            tunnels: TaskTracker::new(),
            auth_client: crate::tls::client::web_client()
                .inspect_err(|error| warn!(%error, "no client for auth-url; its routes answer 500"))
                .ok(),
        }
    }

    /// A record of `request`, which has just arrived, for the metrics, the access log and
    /// spans; settles its request ID and trace context (see [`RequestRecord::begin`]).
    fn record<B>(&self, request: &mut Request<B>, client: &ClientInfo) -> RequestRecord {
        RNG.with_borrow_mut(|rng| RequestRecord::begin(&self.reporter, request, client, rng))
    }

    /// The upgraded connections in progress; shutdown gives them a grace period.
    pub fn tunnels(&self) -> &TaskTracker {
        &self.tunnels
    }

    /// Handles one request. Never fails: errors become responses. What happens is noted in
    /// `record`.
    async fn handle(
        &self,
        request: Request<Incoming>,
        client: &ClientInfo,
        record: &mut RequestRecord,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let is_grpc = grpc::is_grpc(request.headers());
        let mut cors_reply = None;
        let mut response = match self
            .route_and_forward(request, client, record, &mut cors_reply)
            .await
        {
            Ok(response) => response,
            Err(error) if is_grpc => grpc::error_response(&error).map(Either::Right),
            Err(error) => error.to_response().map(Either::Right),
        };
        if let Some(reply) = cors_reply {
            reply.add_headers(response.headers_mut());
        }
        Ok(response)
    }

    /// Routes the request and answers it. `cors_reply` is set once the request is routed to a
    /// route with CORS, whose headers then go on whatever the answer is, errors included.
    async fn route_and_forward(
        &self,
        request: Request<Incoming>,
        client: &ClientInfo,
        record: &mut RequestRecord,
        cors_reply: &mut Option<cors::Reply>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let active = self.tables.load();
        if active.generation == 0 {
            // Nothing published yet: an empty table is not the truth, so no 404s either.
            return Err(ProxyError::NotReady);
        }
        if request.method() == Method::CONNECT {
            // vane is a reverse proxy: it opens no tunnels to arbitrary authorities.
            return Err(ProxyError::ConnectMethod);
        }
        let host = headers::request_host(&request).map_err(|why| {
            debug!(why, "bad host");
            ProxyError::BadHost(why)
        })?;
        if tls_policy::is_misdirected(&active.table, client, host) {
            return Err(ProxyError::Misdirected);
        }
        let Some(route) = active.table.lookup(host, request.uri().path()) else {
            debug!(host, path = request.uri().path(), "no route");
            return Err(ProxyError::NoRoute);
        };
        // Owned (a header is a reference count), since the request moves on without it.
        let host = match request.headers().get(header::HOST) {
            Some(header) if header.as_bytes() == host.as_bytes() => header.clone(),
            _ => HeaderValue::from_str(host).map_err(|_| ProxyError::BadHost("invalid"))?,
        };
        let answer = (record, cors_reply);
        let Some(pages) = route.error_pages.as_deref() else {
            return self
                .serve(&active, route, request, host, client, answer)
                .await;
        };
        let context = error_page::Context::of(&request, &host);
        let result = self
            .serve(&active, route, request, host, client, answer)
            .await;
        let status = match &result {
            Ok(response) => response.status(),
            Err(error) => error.status(),
        };
        if !pages.replaces(status) {
            return result;
        }
        // The error page replaces the answer; if it cannot be had, the answer stands.
        let page = self
            .error_page(&active, pages, route, context.with_code(status), client)
            .await;
        page.map_or(result, Ok)
    }

    /// Serves a request that matched `route`: CORS, its redirects and limits, then the
    /// backend. What happens is noted in the record, and the CORS answer in `cors_reply`.
    async fn serve(
        &self,
        active: &ActiveTable,
        route: &Route,
        mut request: Request<Incoming>,
        host_header: HeaderValue,
        client: &ClientInfo,
        (record, cors_reply): (&mut RequestRecord, &mut Option<cors::Reply>),
    ) -> Result<Response<ProxyBody>, ProxyError> {
        // Validated as a host already, so visible ASCII.
        let host = host_header
            .to_str()
            .map_err(|_| ProxyError::BadHost("invalid"))?;
        // Counted for the route's Ingress, whatever answers (a canary's is counted for its own).
        record.routed(&route.labels, route.access_log);
        if let Some(transforms) = &route.transforms {
            if transforms.refused.is_some() {
                return Err(ProxyError::Refused);
            }
            if let Some(policy) = &transforms.cors {
                let reply = cors_reply.insert(cors::Reply::new(policy, &request));
                // Before the redirects, as nginx runs the CORS block's `return 204` first:
                // a preflight is answered for the route, and the request that follows it
                // gets the redirect.
                if let Some(preflight) = reply.preflight() {
                    return Ok(preflight.map(Either::Right));
                }
            }
            if let Some(redirect) = transform::redirect(transforms, client, &request, host) {
                return Ok(redirect.map(Either::Right));
            }
        }
        if let Some(redirect) = tls_policy::redirect(route, client, &request, host) {
            return Ok(redirect.map(Either::Right));
        }
        // After the redirects, as nginx's access phase (and its rate limits, in the phase
        // before) follows its rewrite phase.
        let granted = match &route.transforms {
            Some(transforms) => {
                let settings = (transforms, route.timeouts.response_headers);
                let granted = self
                    .access(active, settings, client, (&request, host))
                    .await?;
                if let Some(granted) = &granted {
                    granted.set_upstream_headers(request.headers_mut());
                }
                granted
            }
            None => None,
        };
        transform::check_body_size(transform::body_limit(route), &request)?;
        let backend_index = match &route.canary {
            Some(canary) if choose_canary(canary, request.headers()) => {
                record.routed(&canary.labels, route.access_log);
                canary.backend
            }
            _ => route.backend,
        };
        let (Some(backend), Some(balancer), Some(guard)) = (
            active.table.backend(backend_index),
            active.balancers.get(backend_index),
            active.guards.get(backend_index),
        ) else {
            return Err(ProxyError::NoEndpoint);
        };
        let endpoints = match &backend.target {
            BackendTarget::Endpoints(endpoints) => endpoints,
            BackendTarget::Invalid(reason) => {
                warn!(route = %route, backend = %backend.name, reason, "backend cannot be resolved");
                return Err(ProxyError::InvalidBackend(reason.clone()));
            }
        };
        let target = Target {
            host: host_header.clone(),
            route,
            backend,
            endpoints,
            balancer,
            guard,
        };
        let admission = guard
            .admit(route.timeouts.connect)
            .await
            .inspect_err(|tripped| {
                warn!(route = %route, backend = %backend.name, "circuit breaker open: {tripped}")
            })
            .map_err(ProxyError::CircuitOpen)?;
        let mut response = self
            .forward(request, &target, admission, client, record)
            .await?;
        tls_policy::add_hsts(route, client, &mut response);
        if let Some(granted) = granted {
            granted.add_cookies(&mut response);
        }
        Ok(response)
    }

    /// The route's rate limits, then its allow and deny lists, basic auth and `auth-url`
    /// (nginx's order: its preaccess phase limits requests before its access phase checks
    /// addresses, then credentials). With `satisfy any`, an address the lists admit needs no
    /// authentication, and an authenticated client no admitted address; when both refuse, the
    /// authentication's answer wins (401), as in nginx. What `auth-url` let through carries
    /// headers for the upstream and cookies for the client.
    async fn access<B>(
        &self,
        active: &ActiveTable,
        (transforms, timeout): (&Arc<Transforms>, Duration),
        client: &ClientInfo,
        (request, host): (&Request<B>, &str),
    ) -> Result<Option<external_auth::Granted>, ProxyError> {
        if let Some(limiter) = transforms
            .rate_limits
            .as_ref()
            .and_then(|_| active.rate_limiter(transforms))
        {
            limiter
                .check(client.ip)
                .map_err(|retry_after| ProxyError::RateLimited {
                    status: limiter.status(),
                    retry_after,
                })?;
        }
        let admitted = transforms
            .source_ranges
            .as_ref()
            .is_none_or(|ranges| ranges.admits(client.ip));
        let authenticates = transforms.basic_auth.is_some() || transforms.external_auth.is_some();
        match (admitted, authenticates && transforms.satisfy_any) {
            (true, true) => return Ok(None),
            (false, false) => return Err(ProxyError::Forbidden),
            _ => {}
        }
        if let Some(auth) = &transforms.basic_auth {
            let credentials = request.headers().get(header::AUTHORIZATION);
            if !self.tables.credentials().check(auth, credentials).await {
                return Err(ProxyError::Unauthorized(Some(auth.challenge.clone())));
            }
        }
        match &transforms.external_auth {
            Some(auth) => {
                let asked = (request, client, host);
                external_auth::check(self.auth_client.as_ref(), auth, asked, timeout)
                    .await
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    /// Sends the request to an endpoint of the target's backend, and again to others while the
    /// failure is retryable, the attempts last and the budget allows.
    async fn forward(
        &self,
        mut request: Request<Incoming>,
        target: &Target<'_>,
        admission: Option<Admission>,
        client: &ClientInfo,
        record: &mut RequestRecord,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let Target {
            host,
            route,
            backend,
            endpoints,
            balancer,
            guard,
        } = target;
        let timeouts = &route.timeouts;
        let policy = &backend.retry;
        let wait = policy.per_try_timeout.unwrap_or(timeouts.response_headers);
        // One clock read per step: the request's arrival (read for its record, and close
        // enough: routing takes microseconds), then the end of each attempt.
        let mut now = record.started();
        let deadline = timeouts.request.map(|total| (now + total, total));
        guard.budget.deposit(now);

        let upgrade =
            headers::upgrade_protocol(request.headers(), route.upgrade_protocols.as_deref()).map(
                |protocol| Upgrade {
                    protocol,
                    client_side: hyper::upgrade::on(&mut request),
                    connection: client.connection.clone(),
                },
            );
        let (mut parts, body) = request.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        // The balancer (hashing by path or query) sees the request as the client sent it;
        // the endpoint gets the rewritten path.
        let rewritten = match &route.rewrite {
            Some(rewrite) => Some(transform::rewrite(rewrite, &path_and_query)?),
            None => None,
        };
        let upstream_target = rewritten.as_ref().unwrap_or(&path_and_query);
        let protocol = upgrade.as_ref().map(|u| u.protocol.clone());
        prepare_headers(
            &mut parts,
            client,
            protocol,
            host,
            route.transforms.as_deref(),
        );
        let body = RequestBody::read(
            body,
            &parts.headers,
            timeouts.send_idle,
            transform::body_limit(route),
        )
        .await?;
        record.body(body.bytes());

        let mut tried = Vec::new();
        let mut attempt = 1;
        loop {
            let picked = RNG.with_borrow_mut(|rng| {
                let info = RequestInfo {
                    client_ip: client.ip,
                    headers: &parts.headers,
                    path: path_and_query.path(),
                    query: path_and_query.query(),
                };
                let mut ctx = PickContext::new(info, now, rng).avoiding(&tried);
                balancer.pick(&mut ctx).map(|picked| {
                    let set_cookie = picked.set_cookie.cloned();
                    (picked.index, picked.member.stats.start(now), set_cookie)
                })
            });
            let Some((index, in_flight, set_cookie, endpoint)) =
                picked.and_then(|(i, guard, cookie)| Some((i, guard, cookie, endpoints.get(i)?)))
            else {
                warn!(route = %route, backend = %backend.name, "no ready endpoint");
                return Err(ProxyError::NoEndpoint);
            };
            let (upstream_body, uploaded) = body.attempt(timeouts.send_idle);
            let last = attempt >= policy.attempts;
            let headers = if last {
                std::mem::take(&mut parts.headers)
            } else {
                parts.headers.clone()
            };
            let upstream = upstream_request(
                &parts.method,
                upstream_target,
                backend,
                headers,
                upstream_body,
            );
            let result = self
                .exchange(
                    (backend, endpoint),
                    (upstream, uploaded),
                    (timeouts.connect, wait),
                    deadline,
                )
                .await;
            let started = now;
            now = Instant::now();
            let answered = result.as_ref().ok().map(|(response, _)| response.status());
            record.attempted(endpoint.address, answered, now - started);

            let failure = match &result {
                Ok((response, _)) if response.status().is_server_error() => {
                    Some(Failure::Status(response.status()))
                }
                Ok(_) => None,
                Err(error) => error.failure(),
            };
            // An error that is not the endpoint's failure (a failed client body, say) says
            // nothing about the endpoint.
            let outcome = match (&result, failure) {
                (Err(_), None) => None,
                (_, failure) => Some(failure.map_or(RequestOutcome::Success, Failure::outcome)),
            };
            if let Some(until) = outcome.and_then(|o| balancer.report(index, o, now)) {
                warn!(backend = %backend.name, endpoint = %endpoint.address, ejected_for = ?until.saturating_duration_since(now), "endpoint ejected after consecutive failures");
            }
            if failure.is_some() {
                tried.push(index);
            }
            let retry = failure.filter(|&failure| {
                !last
                    && body.replayable()
                    && deadline.is_none_or(|(at, _)| now < at)
                    && is_retryable(policy, failure, &parts.method, body.sent())
                    // An endpoint that let one try time out would most likely let the next
                    // one time out too: a timeout is retried only on another endpoint, so
                    // that the client waits about the timeout it set, not a multiple of it.
                    && (failure != Failure::Timeout || balancer.has_untried(&tried, now))
                    && guard.budget.withdraw(policy, now)
            });
            match (result, retry) {
                (_, Some(failure)) => {
                    debug!(route = %route, backend = %backend.name, endpoint = %endpoint.address, attempt, ?failure, "retrying on another endpoint");
                    attempt += 1;
                }
                (Ok((response, connection)), None) => {
                    in_flight.record_response(now, balancer.decay());
                    let response =
                        self.respond(response, route, endpoint, (upgrade, record), set_cookie)?;
                    // An upgraded connection belongs to its tunnel: neither the total timeout
                    // (only the idle one) nor the pool applies to it.
                    let switching = response.status() == http::StatusCode::SWITCHING_PROTOCOLS;
                    let deadline = deadline.map(|(at, _)| at).filter(|_| !switching);
                    let hold = Hold {
                        in_flight,
                        admission,
                        connection: connection.filter(|_| !switching),
                    };
                    return Ok(response.map(|body| {
                        Either::Left(Tracked::new(body, hold, timeouts.read_idle, deadline))
                    }));
                }
                (Err(error), None) => {
                    let error = match body.over_limit() {
                        true => ProxyError::PayloadTooLarge,
                        false => ProxyError::from(error),
                    };
                    warn!(route = %route, backend = %backend.name, endpoint = %endpoint.address, attempts = attempt, error = %error, kind = error.label(), "upstream error");
                    return Err(error);
                }
            }
        }
    }

    /// One attempt: the request to the endpoint (connected within `connect`), and its response
    /// headers within `wait` (from the end of the upload) and before the request's deadline
    /// (when, and the total timeout).
    async fn exchange(
        &self,
        (backend, endpoint): (&Backend, &Endpoint),
        (request, uploaded): (Request<UpstreamBody>, Option<Uploaded>),
        (connect, wait): (Duration, Duration),
        deadline: Option<(Instant, Duration)>,
    ) -> Result<(Response<Incoming>, Option<Reusable<UpstreamBody>>), AttemptError> {
        let headers_due = async {
            if let Some(uploaded) = uploaded {
                uploaded.wait().await;
            }
            tokio::time::sleep(wait).await;
        };
        let total_due = async {
            match deadline {
                Some((at, total)) => {
                    tokio::time::sleep_until(at).await;
                    total
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = self.upstreams.send(backend, endpoint, connect, request) => {
                result.map_err(AttemptError::Send)
            }
            _ = headers_due => Err(AttemptError::Timeout(wait)),
            total = total_due => Err(AttemptError::Timeout(total)),
        }
    }

    /// The client's response: hop-by-hop headers removed and the affinity cookie added; for a
    /// protocol switch, the tunnel set up.
    fn respond(
        &self,
        mut response: Response<Incoming>,
        route: &Route,
        endpoint: &Endpoint,
        (upgrade, record): (Option<Upgrade>, &mut RequestRecord),
        set_cookie: Option<HeaderValue>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let switching = response.status() == http::StatusCode::SWITCHING_PROTOCOLS;
        match (switching, upgrade) {
            (
                true,
                Some(Upgrade {
                    client_side,
                    connection,
                    ..
                }),
            ) => {
                let upstream_side = hyper::upgrade::on(&mut response);
                record.responded(response.status());
                let tunnel = upgrade::tunnel(
                    client_side,
                    upstream_side,
                    (route.to_string(), endpoint.address),
                    route.timeouts.read_idle,
                    record.hand_over(),
                );
                self.tunnels.spawn(async move {
                    tunnel.await;
                    // The client connection's place under the cap is free only now.
                    drop(connection);
                });
            }
            (true, None) => {
                // An upstream may not switch protocols unasked; refuse rather than hang.
                warn!(route = %route, endpoint = %endpoint.address, "upstream answered 101 to a request without Upgrade");
                return Err(ProxyError::UnexpectedUpgrade);
            }
            _ => {}
        }
        // A response framed by Transfer-Encoding had its Content-Length ignored (RFC 9112
        // section 6.3); forwarded with the decoded body, it would misframe it for the client.
        if response.headers().contains_key(header::TRANSFER_ENCODING) {
            response.headers_mut().remove(header::CONTENT_LENGTH);
        }
        // The 101's `Upgrade` names the protocol the endpoint switched to; the client needs it.
        let switched_to = switching
            .then(|| response.headers().get(header::UPGRADE).cloned())
            .flatten();
        headers::remove_hop_by_hop(response.headers_mut(), switched_to);
        if let Some(cookie) = set_cookie {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        if let Some(transforms) = &route.transforms {
            if transforms.cors.is_some() {
                cors::remove_upstream_headers(response.headers_mut());
            }
            transforms.response_headers.apply(response.headers_mut());
        }
        Ok(response)
    }
}

/// Rewrites the client's headers for the upstream, once for all attempts: hop-by-hop headers
/// out, forwarding headers in, and Host set to the host vane routed by (HTTP/2 requests carry
/// it in `:authority`, and HTTP/1.1 upstreams need it) or the route's `upstream-vhost`.
fn prepare_headers(
    parts: &mut http::request::Parts,
    client: &ClientInfo,
    upgrade: Option<HeaderValue>,
    host: &HeaderValue,
    transforms: Option<&Transforms>,
) {
    let headers = &mut parts.headers;
    headers::remove_hop_by_hop(headers, upgrade);
    headers::set_forwarded(headers, client, host);
    let upstream_host = transforms.and_then(|t| t.upstream_host.as_ref());
    headers.insert(header::HOST, upstream_host.unwrap_or(host).clone());
    if let Some(transforms) = transforms {
        // The credentials were for vane: nginx sends basic auth routes' requests upstream with
        // `proxy_set_header Authorization ""`, and so does vane.
        if transforms.basic_auth.is_some() {
            headers.remove(header::AUTHORIZATION);
        }
        if let Some(prefix) = &transforms.forwarded_prefix {
            headers.insert(headers::X_FORWARDED_PREFIX.clone(), prefix.clone());
        }
        transforms.request_headers.apply(headers);
    }
}

/// The request for one attempt, with an origin-form URI (`/path?query`).
fn upstream_request(
    method: &Method,
    path_and_query: &PathAndQuery,
    backend: &Backend,
    headers: HeaderMap,
    body: UpstreamBody,
) -> Request<UpstreamBody> {
    let mut request = Request::new(body);
    *request.method_mut() = method.clone();
    *request.uri_mut() = Uri::from(path_and_query.clone());
    *request.version_mut() = version_for(backend);
    *request.headers_mut() = headers;
    request
}

/// Whether a request of a route with a canary goes to the canary: by header, then cookie, then
/// weight.
fn choose_canary(canary: &Canary, headers: &http::HeaderMap) -> bool {
    let cookie = canary
        .by_cookie
        .as_deref()
        .and_then(|name| cookie_value(headers, name));
    match canary.decide(headers, cookie) {
        CanaryDecision::Canary => true,
        CanaryDecision::Main => false,
        CanaryDecision::ByWeight => {
            RNG.with_borrow_mut(|rng| rng.u32(..100) < canary.weight_percent)
        }
    }
}

thread_local! {
    /// The balancers' random source: one per worker thread, so picks never contend.
    static RNG: RefCell<fastrand::Rng> = RefCell::new(fastrand::Rng::new());
}
