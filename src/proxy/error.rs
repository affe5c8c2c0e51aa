//! Why a request could not be proxied, and what the client is told.
//!
//! Each variant decides the status code, a short plain-text body (which never echoes request
//! data back) and a stable label for logs and metrics.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no routing table has been published yet")]
    NotReady,
    #[error("no route matches the request")]
    NoRoute,
    #[error("backend cannot be resolved: {0}")]
    InvalidBackend(String),
    #[error("backend has no ready endpoint")]
    NoEndpoint,
    #[error("connecting to the upstream failed: {0}")]
    UpstreamConnect(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("upstream request failed: {0}")]
    Upstream(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("upstream switched protocols without being asked to")]
    UnexpectedUpgrade,
    #[error("upstream did not answer within {0:?}")]
    UpstreamTimeout(std::time::Duration),
    #[error("circuit breaker open: {0}")]
    CircuitOpen(#[source] crate::live::Tripped),
    #[error("reading the request body failed: {0}")]
    ClientBody(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the client did not send the request body in time")]
    ClientBodyTimeout,
    #[error("the request's host is served with another certificate than this connection's")]
    Misdirected,
    #[error("the request target is longer than the limit")]
    UriTooLong,
    #[error("the request has no valid Host: {0}")]
    BadHost(&'static str),
    #[error("CONNECT is not supported")]
    ConnectMethod,
    #[error("the request body is larger than the route allows")]
    PayloadTooLarge,
    #[error("the rewritten path is not a valid request target")]
    BadRewrite,
    #[error("the route's Ingress asks for something vane refuses to apply")]
    Refused,
    #[error("the client's address is not allowed on this route")]
    Forbidden,
    /// Basic auth or `auth-url` refused; the value is the `WWW-Authenticate` to send.
    #[error("the request has no valid credentials for this route")]
    Unauthorized(Option<header::HeaderValue>),
    /// `auth-url` refused (401) and the route signs clients in at `location`, with the auth
    /// answer's cookies.
    #[error("the request has no valid credentials for this route; redirected to sign in")]
    SignIn {
        location: header::HeaderValue,
        cookies: Vec<header::HeaderValue>,
    },
    #[error(
        "the route's auth-url failed, answered otherwise than 2xx, 401 or 403, or not in time"
    )]
    AuthFailed,
    #[error("the client is over the route's rate limit for {retry_after:?}")]
    RateLimited {
        status: StatusCode,
        retry_after: std::time::Duration,
    },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::InvalidBackend(_) | ProxyError::NoEndpoint => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::UpstreamConnect(_)
            | ProxyError::Upstream(_)
            | ProxyError::UnexpectedUpgrade => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::CircuitOpen(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::BadHost(_) => StatusCode::BAD_REQUEST,
            ProxyError::ConnectMethod => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadRewrite => StatusCode::BAD_REQUEST,
            ProxyError::Refused => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Forbidden => StatusCode::FORBIDDEN,
            ProxyError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ProxyError::SignIn { .. } => StatusCode::FOUND,
            ProxyError::AuthFailed => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::RateLimited { status, .. } => *status,
        }
    }

    /// A stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ProxyError::NotReady => "not_ready",
            ProxyError::NoRoute => "no_route",
            ProxyError::InvalidBackend(_) => "invalid_backend",
            ProxyError::NoEndpoint => "no_endpoint",
            ProxyError::UpstreamConnect(_) => "upstream_connect",
            ProxyError::Upstream(_) => "upstream",
            ProxyError::UnexpectedUpgrade => "unexpected_upgrade",
            ProxyError::UpstreamTimeout(_) => "upstream_timeout",
            ProxyError::CircuitOpen(_) => "circuit_open",
            ProxyError::ClientBody(_) => "client_body",
            ProxyError::ClientBodyTimeout => "client_body_timeout",
            ProxyError::Misdirected => "misdirected",
            ProxyError::UriTooLong => "uri_too_long",
            ProxyError::BadHost(_) => "bad_host",
            ProxyError::ConnectMethod => "connect_method",
            ProxyError::PayloadTooLarge => "payload_too_large",
            ProxyError::BadRewrite => "bad_rewrite",
            ProxyError::Refused => "refused",
            ProxyError::Forbidden => "forbidden",
            ProxyError::Unauthorized(_) => "unauthorized",
            ProxyError::SignIn { .. } => "sign_in",
            ProxyError::AuthFailed => "auth_failed",
            ProxyError::RateLimited { .. } => "rate_limited",
        }
    }

    pub(super) fn body(&self) -> &'static str {
        match self {
            ProxyError::NotReady => "503 Service Unavailable: vane is starting\n",
            ProxyError::NoRoute => "404 Not Found: no route for this host and path\n",
            ProxyError::InvalidBackend(_) => {
                "503 Service Unavailable: backend is not configured correctly\n"
            }
            ProxyError::NoEndpoint => "503 Service Unavailable: no ready endpoint\n",
            ProxyError::UpstreamConnect(_) => {
                "502 Bad Gateway: could not connect to the upstream\n"
            }
            ProxyError::Upstream(_) | ProxyError::UnexpectedUpgrade => {
                "502 Bad Gateway: the upstream failed\n"
            }
            ProxyError::UpstreamTimeout(_) => {
                "504 Gateway Timeout: the upstream did not answer in time\n"
            }
            ProxyError::CircuitOpen(_) => {
                "503 Service Unavailable: the backend is at its limit (circuit breaker open)\n"
            }
            ProxyError::ClientBody(_) => "400 Bad Request: the request body could not be read\n",
            ProxyError::ClientBodyTimeout => {
                "408 Request Timeout: the request body did not arrive in time\n"
            }
            ProxyError::Misdirected => {
                "421 Misdirected Request: open a new connection for this host\n"
            }
            ProxyError::UriTooLong => "414 URI Too Long: the request target is too long\n",
            ProxyError::BadHost(_) => "400 Bad Request: missing, repeated or invalid Host\n",
            ProxyError::ConnectMethod => "405 Method Not Allowed: CONNECT is not supported\n",
            ProxyError::PayloadTooLarge => {
                "413 Content Too Large: the request body is larger than this route allows\n"
            }
            ProxyError::BadRewrite => {
                "400 Bad Request: the path cannot be rewritten into a valid request\n"
            }
            ProxyError::Refused => {
                "503 Service Unavailable: this route's Ingress has an annotation vane refuses \
                 to apply (see its events)\n"
            }
            ProxyError::Forbidden => "403 Forbidden\n",
            ProxyError::Unauthorized(_) => "401 Unauthorized\n",
            ProxyError::SignIn { .. } => "302 Found: sign in first\n",
            ProxyError::AuthFailed => {
                "500 Internal Server Error: the authentication service failed\n"
            }
            ProxyError::RateLimited { .. } => {
                "Too many requests from this address: slow down and retry after Retry-After\n"
            }
        }
    }

    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from_static(self.body().as_bytes())));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let ProxyError::RateLimited { retry_after, .. } = self {
            // Whole seconds, rounded up: a client retrying at once would only be refused again.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(seconds.max(1)),
            );
        }
        match self {
            ProxyError::Unauthorized(Some(challenge)) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge.clone());
            }
            ProxyError::SignIn { location, cookies } => {
                let headers = response.headers_mut();
                headers.insert(header::LOCATION, location.clone());
                for cookie in cookies {
                    headers.append(header::SET_COOKIE, cookie.clone());
                }
            }
            _ => {}
        }
        if let ProxyError::ConnectMethod = self {
            // A 405 names the methods that are allowed (RFC 9110 section 15.5.6).
            response.headers_mut().insert(
                header::ALLOW,
                header::HeaderValue::from_static(
                    "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE",
                ),
            );
        }
        response
    }
}
