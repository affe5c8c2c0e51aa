//! CORS on the request path, for routes whose Ingress enables it. Compile built every header
//! value; a request costs the comparison of its `Origin`. On such a route vane is the only
//! source of CORS headers: the endpoint's are removed from its responses, and vane's are added
//! to every response of the route (vane's own errors and redirects too, as ingress-nginx's
//! `more_set_headers` does), so the Ingress's policy is the whole answer.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::table::{AllowedOrigins, Cors};

static ANY: HeaderValue = HeaderValue::from_static("*");
static TRUE: HeaderValue = HeaderValue::from_static("true");
static ORIGIN: HeaderValue = HeaderValue::from_static("Origin");
/// The preflight's Content-Type: ingress-nginx's, with the `;` its `text/plain charset=UTF-8`
/// lacks.
static TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=UTF-8");

/// The CORS answer to one request of a route with CORS.
pub struct Reply {
    cors: Arc<Cors>,
    /// `Access-Control-Allow-Origin`: `*`, or the request's `Origin` when it is allowed;
    /// `None` when it is not (or there is none): no CORS headers then.
    allow_origin: Option<HeaderValue>,
    /// Whether the request is a preflight, which vane answers itself.
    preflight: bool,
}

impl Reply {
    pub fn new<B>(cors: &Arc<Cors>, request: &Request<B>) -> Self {
        let headers = request.headers();
        let origin = headers.get(header::ORIGIN);
        let allow_origin = match &cors.origins {
            AllowedOrigins::Any => Some(ANY.clone()),
            listed => origin
                .filter(|origin| origin.to_str().is_ok_and(|o| listed.allows(o)))
                .cloned(),
        };
        Self {
            cors: cors.clone(),
            allow_origin,
            // The Fetch standard's preflight. Other OPTIONS requests go to the endpoint.
            preflight: request.method() == Method::OPTIONS
                && origin.is_some()
                && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD),
        }
    }

    /// The answer to a preflight, which never reaches the endpoint (from an origin not
    /// allowed, it carries no CORS headers, which is the browser's no); `None` for other
    /// requests. [`Reply::add_headers`] completes it.
    pub fn preflight(&self) -> Option<Response<Full<Bytes>>> {
        if !self.preflight {
            return None;
        }
        let mut response = Response::new(Full::default());
        *response.status_mut() = StatusCode::NO_CONTENT;
        // No Content-Length (ingress-nginx sets 0): RFC 9110 forbids it on a 204.
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, TEXT_PLAIN.clone());
        Some(response)
    }

    /// Adds the CORS headers to a response of the route (the endpoint's were removed by
    /// [`remove_upstream_headers`]). Each header goes where the Fetch standard reads it: the
    /// preflight's on preflights, `Expose-Headers` on the rest.
    pub fn add_headers(&self, headers: &mut HeaderMap) {
        if let Some(origin) = &self.allow_origin {
            let cors = &*self.cors;
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            if cors.allow_credentials {
                headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
            }
            if self.preflight {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    cors.allow_methods.clone(),
                );
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    cors.allow_headers.clone(),
                );
                headers.insert(header::ACCESS_CONTROL_MAX_AGE, cors.max_age.clone());
            } else if let Some(expose) = &cors.expose_headers {
                headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
            }
        }
        // With listed origins every answer depends on `Origin` (with or without one), so a
        // cache must keep them apart; `*` answers all alike.
        if matches!(self.cors.origins, AllowedOrigins::Listed(_)) {
            add_vary_origin(headers);
        }
    }
}

/// Removes an endpoint's CORS headers from its response, on a route whose CORS vane answers:
/// mixed with vane's, they could grant what the Ingress does not (credentials, say).
pub fn remove_upstream_headers(headers: &mut HeaderMap) {
    const CORS_HEADERS: [HeaderName; 6] = [
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        header::ACCESS_CONTROL_MAX_AGE,
    ];
    for name in CORS_HEADERS {
        headers.remove(name);
    }
}

/// Appends `Origin` to `Vary`, keeping the endpoint's, unless it is listed already (or `*`).
fn add_vary_origin(headers: &mut HeaderMap) {
    let listed = headers.get_all(header::VARY).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .map(str::trim)
                .any(|name| name == "*" || name.eq_ignore_ascii_case("origin"))
        })
    });
    if !listed {
        headers.append(header::VARY, ORIGIN.clone());
    }
}
