//! External authentication of a route (`auth-url`, nginx's `auth_request`): where each request
//! is first sent, and what of the answer goes where. Compiled from an Ingress's annotations;
//! the proxy sends the requests.

use http::{HeaderName, HeaderValue, Method};

use super::Template;

/// ingress-nginx's default `auth-signin-redirect-param`.
pub const DEFAULT_SIGNIN_REDIRECT_PARAM: &str = "rd";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalAuth {
    /// `auth-url`: an absolute http(s) URL, with nginx variables.
    pub url: Template,
    /// `auth-method` (default `GET`, as nginx's subrequests).
    pub method: Method,
    /// `auth-response-headers`: set on the upstream request from the auth answer.
    pub response_headers: Box<[HeaderName]>,
    /// `auth-signin`: where a 401 is redirected (302), with nginx variables.
    pub signin: Option<Template>,
    /// `auth-signin-redirect-param`: the query parameter of `signin` that carries the request's
    /// URL.
    pub signin_redirect_param: Box<str>,
    /// `auth-request-redirect`: the `X-Auth-Request-Redirect` sent (default the request URI).
    pub request_redirect: Option<HeaderValue>,
    /// `auth-always-set-cookie`: the auth answer's `Set-Cookie` goes on every answer, not only
    /// those below 400.
    pub always_set_cookie: bool,
}
