//! Error pages: an answer whose status a route's `custom-http-errors` lists is replaced by
//! what its error backend answers, as ingress-nginx's `error_page CODE = @custom_...` does:
//! `GET /` with the original request described in `X-Code`, `X-Format`, `X-Original-URI`,
//! `X-Namespace`, `X-Ingress-Name`, `X-Service-Name`, `X-Service-Port` and `X-Request-ID`, and
//! the client gets the error backend's status and body.

use http::uri::PathAndQuery;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Either;
use tokio::time::Instant;

use super::request_body::UpstreamBody;
use super::response_body::{Hold, Tracked};
use super::upstream::version_for;
use super::{headers, ClientInfo, Proxy, ProxyBody, RNG};
use crate::balance::{PickContext, RequestInfo};
use crate::endpoint::RequestOutcome;
use crate::live::ActiveTable;
use crate::table::{BackendTarget, ErrorPages, Route};

static X_CODE: HeaderName = HeaderName::from_static("x-code");
static X_FORMAT: HeaderName = HeaderName::from_static("x-format");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_NAMESPACE: HeaderName = HeaderName::from_static("x-namespace");
static X_INGRESS_NAME: HeaderName = HeaderName::from_static("x-ingress-name");
static X_SERVICE_NAME: HeaderName = HeaderName::from_static("x-service-name");
static X_SERVICE_PORT: HeaderName = HeaderName::from_static("x-service-port");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the error backend is told of the original request, taken before it moves on.
pub struct Context {
    headers: HeaderMap,
    host: HeaderValue,
}

impl Context {
    /// The request's parts an error page needs: its Accept (`X-Format`), target, request ID
    /// and host.
    pub fn of<B>(request: &Request<B>, host: &HeaderValue) -> Self {
        let mut headers = HeaderMap::with_capacity(12);
        let uri = request
            .uri()
            .path_and_query()
            .map_or("/", PathAndQuery::as_str);
        if let Ok(uri) = HeaderValue::from_str(uri) {
            headers.insert(X_ORIGINAL_URI.clone(), uri);
        }
        let original = request.headers();
        if let Some(accept) = original.get(header::ACCEPT) {
            headers.insert(X_FORMAT.clone(), accept.clone());
        }
        if let Some(id) = original.get(&X_REQUEST_ID) {
            headers.insert(X_REQUEST_ID.clone(), id.clone());
        }
        headers.insert(header::HOST, host.clone());
        Self {
            headers,
            host: host.clone(),
        }
    }

    pub fn with_code(mut self, status: StatusCode) -> Self {
        self.headers
            .insert(X_CODE.clone(), HeaderValue::from(status.as_u16()));
        self
    }
}

impl Proxy {
    /// The error page of `route` for the request `context` describes: one attempt at one
    /// endpoint of the error backend, within the route's connect and read timeouts. `None`
    /// when the backend has no ready endpoint or fails, so the original answer stands.
    pub(super) async fn error_page(
        &self,
        active: &ActiveTable,
        pages: &ErrorPages,
        route: &Route,
        context: Context,
        client: &ClientInfo,
    ) -> Option<Response<ProxyBody>> {
        let backend = active.table.backend(pages.backend)?;
        let balancer = active.balancers.get(pages.backend)?;
        let BackendTarget::Endpoints(endpoints) = &backend.target else {
            return None;
        };
        let mut headers = context.headers;
        let labels = &route.labels;
        for (name, value) in [
            (&X_NAMESPACE, &labels.namespace),
            (&X_INGRESS_NAME, &labels.ingress),
            (&X_SERVICE_NAME, &labels.service),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name.clone(), value);
            }
        }
        if let Some(port) = route_port(active, route) {
            headers.insert(X_SERVICE_PORT.clone(), port);
        }
        headers::set_forwarded(&mut headers, client, &context.host);

        let now = Instant::now();
        let (index, in_flight) = RNG.with_borrow_mut(|rng| {
            let info = RequestInfo {
                client_ip: client.ip,
                headers: &headers,
                path: "/",
                query: None,
            };
            let mut pick = PickContext::new(info, now, rng);
            balancer
                .pick(&mut pick)
                .map(|picked| (picked.index, picked.member.stats.start(now)))
        })?;
        let endpoint = endpoints.get(index)?;
        let mut request = Request::new(UpstreamBody::full(Default::default()));
        *request.method_mut() = Method::GET;
        *request.uri_mut() = http::Uri::from_static("/");
        *request.version_mut() = version_for(backend);
        *request.headers_mut() = headers;
        let timeouts = &route.timeouts;
        let sent = tokio::time::timeout(
            timeouts.connect + timeouts.response_headers,
            self.upstreams
                .send(backend, endpoint, timeouts.connect, request),
        )
        .await;
        let now = Instant::now();
        let Ok(Ok((mut response, connection))) = sent else {
            balancer.report(index, RequestOutcome::GatewayError, now);
            return None;
        };
        // An error backend answers with error codes by design: any answer is a success.
        balancer.report(index, RequestOutcome::Success, now);
        in_flight.record_response(now, balancer.decay());
        headers::remove_hop_by_hop(response.headers_mut(), None);
        let hold = Hold {
            in_flight,
            admission: None,
            connection,
        };
        Some(response.map(|body| Either::Left(Tracked::new(body, hold, timeouts.read_idle, None))))
    }
}

/// The Service port of the route's backend (`namespace/name:port`), for `X-Service-Port`.
fn route_port(active: &ActiveTable, route: &Route) -> Option<HeaderValue> {
    let name = &active.table.backend(route.backend)?.name;
    let port = name.rsplit_once(':')?.1;
    HeaderValue::from_str(port).ok()
}
