//! What a route does besides forwarding a request as it came: answering it with a redirect,
//! rewriting its path or Host, limiting its body, answering for CORS. Compiled from an
//! Ingress's annotations (ingress-nginx's `rewrite-target`, `permanent-redirect`, `app-root`,
//! `enable-cors`, ...) into typed values, so that nothing is parsed per request; the proxy
//! applies them.

use std::sync::Arc;

use http::header::{self, HeaderName};
use http::{HeaderValue, StatusCode};

use super::cors::Cors;
use super::path::PathRegex;

/// A string with substitutions, parsed once: `https://example.com$request_uri`, `/$2`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(Box<str>),
    /// `$1`..`$9`: a capture group of the route's expression (empty when it did not take part).
    Capture(usize),
    Variable(Variable),
}

/// The nginx variables a redirect target may use, with nginx's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variable {
    /// `$request_uri`: the path and query as the client sent them.
    RequestUri,
    /// `$uri`: the normalized path, without the query.
    Uri,
    /// `$args` and `$query_string`: the query, without `?`.
    Args,
    /// `$is_args`: `?` if there is a query, else nothing.
    IsArgs,
    /// `$scheme`: `http` or `https`.
    Scheme,
    /// `$host`: the request's host, without port, lowercase.
    Host,
    /// `$http_host`: the `Host` header (or `:authority`) as sent, port included.
    HttpHost,
    /// `$escaped_request_uri` (ingress-nginx's, for `auth-signin`): `$request_uri` with every
    /// byte but letters, digits and `-._~` percent-encoded, fit for a query parameter.
    EscapedRequestUri,
}

impl Template {
    /// A template of one literal string.
    pub fn literal(text: &str) -> Self {
        Self {
            parts: vec![TemplatePart::Literal(text.into())],
        }
    }

    /// Whether expanding it needs the request's captures.
    pub fn uses_captures(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, TemplatePart::Capture(_)))
    }
}

/// `rewrite-target`: the path sent upstream instead of the request's, as nginx's
/// `rewrite "(?i)PATH" TARGET break;` makes it. The whole path is replaced by the target with
/// `$N` filled from the route's expression; the request's query follows (after `&` when the
/// target has a query of its own; not at all when the target ends with `?`). Routing itself
/// used the request's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// The route's expression for a Regex rule; else its path, taken literally.
    pub pattern: PathRegex,
    pub target: Template,
}

/// A response vane gives instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub code: StatusCode,
    pub location: Location,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// `permanent-redirect` and `temporal-redirect`: a URL, with nginx variables.
    Url(Template),
    /// `from-to-www-redirect`: the same scheme, port and request URI on host `to` (less a
    /// trailing slash, as ingress-nginx writes it).
    Host(Box<str>),
}

/// Headers that are hop-by-hop whatever `Connection` says: the proxy drops them on both sides,
/// and header changes may not name them. `HTTP2-Settings` among them: it only ever accompanies
/// `Upgrade: h2c`, which vane never forwards.
pub const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// Header changes (`vane.dev/request-headers`, `vane.dev/response-headers`), applied in this
/// order: remove, set (replacing every value), add (appending).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderChanges {
    pub remove: Vec<HeaderName>,
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderChanges {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// Error pages (`custom-http-errors` with `default-backend`, or `--custom-http-errors` with
/// `--default-backend-service`): a response with one of `codes`, the endpoint's or vane's own,
/// is replaced by what `backend` answers to `GET /` with ingress-nginx's `X-Code`, `X-Format`,
/// `X-Original-URI`, `X-Namespace`, `X-Ingress-Name`, `X-Service-Name` and `X-Service-Port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorPages {
    pub codes: Box<[StatusCode]>,
    /// Index into [`super::RoutingTable::backends`].
    pub backend: usize,
}

impl ErrorPages {
    pub fn replaces(&self, status: StatusCode) -> bool {
        self.codes.contains(&status)
    }
}

/// A request rate: `requests` per `period` per client address, with `burst` more allowed at
/// once (ingress-nginx's `limit_req ... burst=N nodelay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestRate {
    pub requests: std::num::NonZeroU32,
    pub period: std::time::Duration,
    pub burst: std::num::NonZeroU32,
}

impl RequestRate {
    /// `requests` per `period`, `burst` at once; `None` if either is zero.
    pub fn new(requests: u32, period: std::time::Duration, burst: u32) -> Option<Self> {
        Some(Self {
            requests: std::num::NonZeroU32::new(requests)?,
            period,
            burst: std::num::NonZeroU32::new(burst)?,
        })
    }
}

/// `limit-rps` and `limit-rpm`, per client address and local to each replica; clients in
/// `exempt` (`limit-allowlist`) are not limited. Refused requests get `status`
/// (`--limit-req-status-code`) with `Retry-After`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimits {
    pub rates: Vec<RequestRate>,
    pub exempt: Option<super::IpSet>,
    pub status: StatusCode,
}

/// What the routes of one Ingress change, shared by them all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transforms {
    /// Why the Ingress asks for something vane will not do safely (a configuration snippet,
    /// say): its routes answer 503 rather than serve the backend without what was asked.
    pub refused: Option<Box<str>>,
    /// Every request is answered with this redirect.
    pub redirect: Option<Redirect>,
    /// `app-root`: a request for `/` is redirected (302) to this path on the same host.
    pub app_root: Option<Box<str>>,
    /// `upstream-vhost`: the `Host` sent upstream (`X-Forwarded-Host` keeps the client's).
    pub upstream_host: Option<HeaderValue>,
    /// `x-forwarded-prefix`: the `X-Forwarded-Prefix` sent upstream.
    pub forwarded_prefix: Option<HeaderValue>,
    /// `proxy-body-size`: the largest request body, in bytes; `None`: no limit.
    pub body_limit: Option<u64>,
    /// Changes to the request before it goes upstream.
    pub request_headers: HeaderChanges,
    /// Changes to the endpoint's response before it goes to the client.
    pub response_headers: HeaderChanges,
    /// `allowlist-source-range` and `denylist-source-range`: who may reach the routes (403 for
    /// anyone else).
    pub source_ranges: Option<super::SourceRanges>,
    /// `limit-rps`, `limit-rpm`: limits shared by every route of the Ingress.
    pub rate_limits: Option<RateLimits>,
    /// `auth-type: basic`: who may reach the routes (401 for anyone else). An `Arc` of its
    /// own, so that a check on the blocking pool can hold it.
    pub basic_auth: Option<Arc<super::BasicAuth>>,
    /// `auth-url`: each request is first sent there (401/403 or a failure for anyone it does
    /// not let through).
    pub external_auth: Option<Arc<super::ExternalAuth>>,
    /// `satisfy: any`: a client the allow and deny lists admit need not authenticate, and one
    /// that authenticates need not be admitted by them (`false`: both are needed).
    pub satisfy_any: bool,
    /// `enable-cors`: the CORS policy. An `Arc` of its own, so that a request's answer can
    /// keep it after the table is let go (error responses get CORS headers too).
    pub cors: Option<Arc<Cors>>,
}

impl Transforms {
    /// Whether there is nothing to apply, so routes need not carry it.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}
