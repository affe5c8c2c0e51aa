//! The data plane: a hyper server that routes each request through the current
//! [`RoutingTable`](crate::table::RoutingTable) and forwards it over a pooled hyper client.
//!
//! Per request: load the table once ([`TableHandle::load`]), look up host and path, let the
//! backend's balancer pick an endpoint, rewrite headers, forward. Bodies stream both ways with
//! hyper's backpressure and are never buffered whole. The upstream clients' connection pools
//! are keyed by endpoint address and protocol and live as long as the proxy, so they survive
//! table swaps (see `upstream`). TLS decisions (redirects, HSTS, 421) are in `tls_policy`,
//! gRPC error mapping in `grpc`.

mod body;
mod error;
mod grpc;
mod handle;
mod headers;
mod server;
mod tls_policy;
mod upgrade;
mod upstream;

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{header, HeaderValue, Request, Response, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::balance::{cookie_value, InFlight, PickContext, RequestInfo};
use crate::table::{Backend, BackendTarget, Canary, CanaryDecision, Route};

pub use error::ProxyError;
pub use handle::{ActiveTable, TableHandle};
pub use headers::ClientInfo;
pub use server::{serve, serve_tls, ServerLimits};
use upstream::{scheme_for, version_for, Upstreams};

/// The body of every response the proxy sends: streamed from an upstream, or generated here.
pub type ProxyBody = Either<body::Tracked, Full<Bytes>>;

/// Settings of the upstream side.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    /// Idle keep-alive connections to an endpoint are closed after this.
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_endpoint: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle_per_endpoint: 128,
        }
    }
}

/// Routes and forwards requests. Shared by every connection of a listener.
pub struct Proxy {
    tables: Arc<TableHandle>,
    upstreams: Upstreams<Incoming>,
}

impl Proxy {
    pub fn new(tables: Arc<TableHandle>, config: &UpstreamConfig) -> Self {
        Self {
            tables,
            upstreams: Upstreams::new(config),
        }
    }

    /// Handles one request. Never fails: errors become responses.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        client: &ClientInfo,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let is_grpc = grpc::is_grpc(request.headers());
        Ok(match self.route_and_forward(request, client).await {
            Ok(response) => response,
            Err(error) if is_grpc => grpc::error_response(&error).map(Either::Right),
            Err(error) => error.to_response().map(Either::Right),
        })
    }

    async fn route_and_forward(
        &self,
        request: Request<Incoming>,
        client: &ClientInfo,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let active = self.tables.load();
        if active.generation == 0 {
            // Nothing published yet: an empty table is not the truth, so no 404s either.
            return Err(ProxyError::NotReady);
        }
        let host = request_host(&request).unwrap_or_default();
        if tls_policy::is_misdirected(&active.table, client, host) {
            return Err(ProxyError::Misdirected);
        }
        let Some(route) = active.table.lookup(host, request.uri().path()) else {
            debug!(host, path = request.uri().path(), "no route");
            return Err(ProxyError::NoRoute);
        };
        if let Some(redirect) = tls_policy::redirect(route, client, &request, host) {
            return Ok(redirect.map(Either::Right));
        }
        let backend_index = match &route.canary {
            None => route.backend,
            Some(canary) => choose_canary(canary, route.backend, request.headers()),
        };
        let (Some(backend), Some(balancer)) = (
            active.table.backend(backend_index),
            active.balancers.get(backend_index),
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
        let now = Instant::now();
        let picked = RNG.with_borrow_mut(|rng| {
            let info = RequestInfo {
                client_ip: client.ip,
                headers: request.headers(),
                path: request.uri().path(),
                query: request.uri().query(),
            };
            let mut ctx = PickContext::new(info, now, rng);
            balancer.pick(&mut ctx).map(|picked| {
                let set_cookie = picked.set_cookie.cloned();
                (picked.index, picked.member.stats.start(now), set_cookie)
            })
        });
        let Some((endpoint, in_flight, set_cookie)) =
            picked.and_then(|(i, guard, cookie)| Some((endpoints.get(i)?, guard, cookie)))
        else {
            warn!(route = %route, backend = %backend.name, "no ready endpoint");
            return Err(ProxyError::NoEndpoint);
        };
        let upstream = Upstream {
            address: endpoint.address,
            authority: endpoint.authority.clone(),
            in_flight,
            decay: balancer.decay(),
            set_cookie,
        };
        let mut result = self
            .forward(request, route, backend, upstream, client)
            .await;
        match &mut result {
            Ok(response) => tls_policy::add_hsts(route, client, response),
            Err(error) => {
                warn!(route = %route, backend = %backend.name, endpoint = %endpoint.address, error = %error, kind = error.label(), "upstream error");
            }
        }
        result
    }

    async fn forward(
        &self,
        mut request: Request<Incoming>,
        route: &Route,
        backend: &Backend,
        upstream: Upstream,
        client: &ClientInfo,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let upgrade = headers::is_upgrade_request(request.headers())
            .then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();

        // HTTP/2 requests carry the host in :authority; upstreams speak HTTP/1.1 and need Host.
        let host = match parts.headers.get(header::HOST) {
            Some(host) => host.clone(),
            None => match parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                Some(host) => host,
                None => HeaderValue::from_static(""),
            },
        };
        headers::remove_hop_by_hop(&mut parts.headers, upgrade.is_some());
        headers::set_forwarded(&mut parts.headers, client, &host);
        parts.headers.insert(header::HOST, host);

        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(scheme_for(backend));
        uri.authority = Some(upstream.authority);
        uri.path_and_query = Some(path_and_query);
        parts.uri = Uri::from_parts(uri).expect("scheme, authority and path make a valid URI");
        parts.version = version_for(backend);

        let timeout = route.timeouts.response_headers;
        let mut response = match tokio::time::timeout(
            timeout,
            self.upstreams
                .request(backend, Request::from_parts(parts, body)),
        )
        .await
        {
            Err(_elapsed) => return Err(ProxyError::UpstreamTimeout(timeout)),
            Ok(Err(error)) if error.is_connect() => return Err(ProxyError::UpstreamConnect(error)),
            Ok(Err(error)) => return Err(ProxyError::Upstream(error)),
            Ok(Ok(response)) => response,
        };
        upstream
            .in_flight
            .record_response(Instant::now(), upstream.decay);

        let switching = response.status() == http::StatusCode::SWITCHING_PROTOCOLS;
        match (switching, upgrade) {
            (true, Some(client_side)) => {
                let upstream_side = hyper::upgrade::on(&mut response);
                upgrade::tunnel(
                    client_side,
                    upstream_side,
                    route.to_string(),
                    upstream.address,
                );
            }
            (true, None) => {
                // An upstream may not switch protocols unasked; refuse rather than hang.
                warn!(route = %route, endpoint = %upstream.address, "upstream answered 101 to a request without Upgrade");
                return Err(ProxyError::UnexpectedUpgrade);
            }
            _ => {}
        }
        headers::remove_hop_by_hop(response.headers_mut(), switching);
        if let Some(cookie) = upstream.set_cookie {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        Ok(response.map(|body| Either::Left(body::Tracked::new(body, upstream.in_flight))))
    }
}

/// The endpoint a request goes to, and its load accounting.
struct Upstream {
    address: SocketAddr,
    authority: http::uri::Authority,
    in_flight: InFlight,
    decay: std::time::Duration,
    /// Cookie affinity pinning this endpoint for the client.
    set_cookie: Option<HeaderValue>,
}

/// The backend of a route with a canary: by header, then cookie, then weight.
fn choose_canary(canary: &Canary, main: usize, headers: &http::HeaderMap) -> usize {
    let cookie = canary
        .by_cookie
        .as_deref()
        .and_then(|name| cookie_value(headers, name));
    let to_canary = match canary.decide(headers, cookie) {
        CanaryDecision::Canary => true,
        CanaryDecision::Main => false,
        CanaryDecision::ByWeight => {
            RNG.with_borrow_mut(|rng| rng.u32(..100) < canary.weight_percent)
        }
    };
    if to_canary {
        canary.backend
    } else {
        main
    }
}

thread_local! {
    /// The balancers' random source: one per worker thread, so picks never contend.
    static RNG: RefCell<fastrand::Rng> = RefCell::new(fastrand::Rng::new());
}

/// The request's host: the Host header, else the URI authority (HTTP/2).
fn request_host<B>(request: &Request<B>) -> Option<&str> {
    match request.headers().get(header::HOST) {
        Some(host) => host.to_str().ok(),
        None => request.uri().authority().map(|a| a.as_str()),
    }
}
