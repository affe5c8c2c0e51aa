//! `auth-url`: each request of the route is first sent to the auth service, as ingress-nginx's
//! `auth_request` location sends it (rootfs/etc/nginx/template/nginx.tmpl):
//! - no body (`proxy_pass_request_body off`, `Content-Length: ""`), the client's headers
//!   (`proxy_pass_request_headers on`) less hop-by-hop ones, method `GET` or `auth-method`;
//! - `Host` the auth URL's host name, `X-Original-URL` (`$scheme://$http_host$request_uri`),
//!   `X-Original-Method`, `X-Sent-From: nginx-ingress-controller`, `X-Real-IP` and
//!   `X-Forwarded-For` the client's address, no `X-Forwarded-Proto` (nginx sets it to ""),
//!   `X-Auth-Request-Redirect` (`auth-request-redirect`, else the request URI), and with
//!   `auth-method`, `X-Original-URI` and `X-Scheme`.
//!
//! Its answer: 2xx lets the request through, with the `auth-response-headers` set upstream
//! from the answer (removed when it has none, so a client cannot forge them) and its
//! `Set-Cookie` on the response; 401 goes to the client with the service's `WWW-Authenticate`,
//! or is a 302 to `auth-signin`; 403 goes to the client; anything else, no answer within the
//! route's read timeout, or no connection, is a 500, as nginx answers. Fail closed.
//!
//! The answer's body is read (at most [`MAX_BODY`]) and dropped, so that the connection goes
//! back to the client's pool for the next request; hyper-util's client keeps connections per
//! host, and resolves host names with the system resolver (vane's upstream pools only dial the
//! table's endpoint addresses).

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use tracing::warn;

use super::headers::{self, ClientInfo};
use super::{transform, ProxyError};
use crate::table::ExternalAuth;
use crate::tls::client::WebClient;

/// The client that asks auth services.
pub type AuthClient = WebClient<Empty<Bytes>>;

/// Most of an auth answer's body that is read (to reuse the connection); a longer one is left
/// unread and its connection closed.
const MAX_BODY: usize = 64 * 1024;

static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_SCHEME: HeaderName = HeaderName::from_static("x-scheme");
static X_SENT_FROM: HeaderName = HeaderName::from_static("x-sent-from");
static X_AUTH_REQUEST_REDIRECT: HeaderName = HeaderName::from_static("x-auth-request-redirect");

/// What a request the auth service let through takes along.
#[derive(Debug, Default)]
pub struct Granted {
    /// Each of `auth-response-headers`, with the answer's value or none.
    upstream: Vec<(HeaderName, Option<HeaderValue>)>,
    /// The answer's `Set-Cookie`s.
    cookies: Vec<HeaderValue>,
    always_set_cookie: bool,
}

impl Granted {
    /// Sets the `auth-response-headers` on the upstream request (`proxy_set_header`: an empty
    /// value, for a header the answer lacks, removes it).
    pub fn set_upstream_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.upstream {
            match value {
                Some(value) => headers.insert(name.clone(), value.clone()),
                None => headers.remove(name),
            };
        }
    }

    /// Adds the answer's cookies to the response: below 400 only, unless
    /// `auth-always-set-cookie` (nginx's `add_header` without and with `always`).
    pub fn add_cookies<B>(&self, response: &mut Response<B>) {
        if self.always_set_cookie || response.status().as_u16() < 400 {
            for cookie in &self.cookies {
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, cookie.clone());
            }
        }
    }
}

/// Asks the auth service of `auth` about `request` (from `client`, for the validated `host`),
/// waiting at most `timeout` for its answer.
pub async fn check<B>(
    http: Option<&AuthClient>,
    auth: &ExternalAuth,
    (request, client, host): (&Request<B>, &ClientInfo, &str),
    timeout: Duration,
) -> Result<Granted, ProxyError> {
    let url = transform::expand_for(&auth.url, request, client, host);
    let (Some(http), Ok(uri)) = (http, url.parse::<Uri>()) else {
        warn!(
            url,
            "auth-url cannot be asked (no client, or not a URL once filled in)"
        );
        return Err(ProxyError::AuthFailed);
    };
    let mut ask = Request::new(Empty::new());
    *ask.method_mut() = auth.method.clone();
    *ask.headers_mut() = auth_headers(auth, &uri, (request, client, host));
    *ask.uri_mut() = uri;
    let answer = tokio::time::timeout(timeout, async {
        let response = http.request(ask).await?;
        let (parts, body) = response.into_parts();
        // Read to its end, so that the connection can serve the next request; the content is
        // not used (nginx discards a subrequest's body too).
        let _ = Limited::new(body, MAX_BODY).collect().await;
        Ok::<_, hyper_util::client::legacy::Error>(parts)
    })
    .await;
    let parts = match answer {
        Ok(Ok(parts)) => parts,
        Ok(Err(error)) => {
            warn!(url, %error, "auth-url failed; answering 500");
            return Err(ProxyError::AuthFailed);
        }
        Err(_) => {
            warn!(
                url,
                ?timeout,
                "auth-url did not answer in time; answering 500"
            );
            return Err(ProxyError::AuthFailed);
        }
    };
    let cookies = parts
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    match parts.status {
        status if status.is_success() => Ok(Granted {
            upstream: auth
                .response_headers
                .iter()
                .map(|name| (name.clone(), parts.headers.get(name).cloned()))
                .collect(),
            cookies,
            always_set_cookie: auth.always_set_cookie,
        }),
        StatusCode::UNAUTHORIZED => match &auth.signin {
            Some(signin) => Err(ProxyError::SignIn {
                location: signin_location(
                    signin,
                    &auth.signin_redirect_param,
                    (request, client, host),
                ),
                cookies,
            }),
            None => Err(ProxyError::Unauthorized(
                parts.headers.get(header::WWW_AUTHENTICATE).cloned(),
            )),
        },
        StatusCode::FORBIDDEN => Err(ProxyError::Forbidden),
        status => {
            warn!(url, %status, "auth-url answered neither 2xx, 401 nor 403; answering 500");
            Err(ProxyError::AuthFailed)
        }
    }
}

/// The headers of the request to the auth service (see the module's documentation).
fn auth_headers<B>(
    auth: &ExternalAuth,
    uri: &Uri,
    (request, client, host): (&Request<B>, &ClientInfo, &str),
) -> HeaderMap {
    let mut headers = request.headers().clone();
    headers::remove_hop_by_hop(&mut headers, None);
    for name in [
        header::CONTENT_LENGTH,
        header::EXPECT,
        headers::X_FORWARDED_PROTO.clone(),
    ] {
        headers.remove(name);
    }
    let request_uri = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let value = |text: String| HeaderValue::from_str(&text).ok();
    let set = [
        (header::HOST, uri.host().and_then(|h| value(h.to_owned()))),
        (
            X_ORIGINAL_URL.clone(),
            value(format!("{}://{host}{request_uri}", client.scheme)),
        ),
        (
            X_ORIGINAL_METHOD.clone(),
            value(request.method().to_string()),
        ),
        (
            X_SENT_FROM.clone(),
            Some(HeaderValue::from_static("nginx-ingress-controller")),
        ),
        (headers::X_REAL_IP.clone(), Some(client.ip_header().clone())),
        (
            headers::X_FORWARDED_FOR.clone(),
            Some(client.ip_header().clone()),
        ),
        (
            X_AUTH_REQUEST_REDIRECT.clone(),
            auth.request_redirect
                .clone()
                .or_else(|| value(request_uri.to_owned())),
        ),
    ];
    for (name, value) in set.into_iter().chain(
        (auth.method != http::Method::GET)
            .then(|| {
                [
                    (X_ORIGINAL_URI.clone(), value(request_uri.to_owned())),
                    (
                        X_SCHEME.clone(),
                        Some(HeaderValue::from_static(client.scheme)),
                    ),
                ]
            })
            .into_iter()
            .flatten(),
    ) {
        if let Some(value) = value {
            headers.insert(name, value);
        }
    }
    headers
}

/// ingress-nginx's `buildAuthSignURL`: `auth-signin` with
/// `PARAM=$scheme://$http_host$escaped_request_uri` added, unless its query has `PARAM`.
fn signin_location<B>(
    signin: &crate::table::Template,
    param: &str,
    (request, client, host): (&Request<B>, &ClientInfo, &str),
) -> HeaderValue {
    let url = transform::expand_for(signin, request, client, host);
    let query = url.split_once('?').map(|(_, query)| query);
    let has_param = query.is_some_and(|query| {
        query.split('&').any(|pair| {
            pair.split_once('=')
                .is_some_and(|(name, value)| name == param && !value.is_empty())
        })
    });
    let location = if has_param {
        url
    } else {
        let escaped = transform::escaped_request_uri(request);
        let separator = if query.is_some() { '&' } else { '?' };
        format!(
            "{url}{separator}{param}={}://{host}{escaped}",
            client.scheme
        )
    };
    // Compile checked the URL's characters, and the request's parts are header characters.
    HeaderValue::from_str(&location).unwrap_or_else(|_| HeaderValue::from_static("/"))
}
