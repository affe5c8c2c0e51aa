//! The route transforms on the request path: redirects answered here, the rewritten path, and
//! the body limit's first check. Compile parsed everything; this fills templates in.

use std::borrow::Cow;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;

use super::{ClientInfo, ProxyError};
use crate::table::{
    normalize_request_host, normalize_request_path, Location, Rewrite, Route, Template,
    TemplatePart, Transforms, Variable,
};

/// The redirect the route answers `request` with, if any: its Ingress's redirect, or
/// `app-root` for a request for `/`.
pub fn redirect<B>(
    transforms: &Transforms,
    client: &ClientInfo,
    request: &Request<B>,
    host: &str,
) -> Option<Response<Full<Bytes>>> {
    let vars = Vars {
        request,
        client,
        host,
    };
    let (code, location) = match (&transforms.redirect, &transforms.app_root) {
        (Some(redirect), _) => {
            let location = match &redirect.location {
                Location::Url(template) => expand(template, &vars),
                Location::Host(to) => www_location(&vars, to),
            };
            (redirect.code, location)
        }
        (None, Some(root)) if normalize_request_path(request.uri().path()) == "/" => (
            StatusCode::FOUND,
            format!("{}://{host}{root}", client.scheme),
        ),
        _ => return None,
    };
    // Every part is a header value's characters (compile checked the literals; the request's
    // parts came in as such), so this fails only for a host hyper let through that is none.
    let location = HeaderValue::from_str(&location).ok()?;
    let mut response = Response::new(Full::new(Bytes::from_static(b"")));
    *response.status_mut() = code;
    response.headers_mut().insert(header::LOCATION, location);
    Some(response)
}

/// ingress-nginx's www redirect: scheme, host `to`, the port the client used, and the request
/// URI less a trailing slash.
fn www_location<B>(vars: &Vars<'_, B>, to: &str) -> String {
    let uri = vars.request.uri();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let path = path.strip_suffix('/').unwrap_or(path);
    let port = vars
        .host
        .rsplit_once(':')
        .filter(|(host, port)| !host.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()))
        .map_or("", |(_, port)| port);
    let colon = if port.is_empty() { "" } else { ":" };
    format!("{}://{to}{colon}{port}{path}", vars.client.scheme)
}

/// The path and query sent upstream for a route that rewrites: the target with the captures of
/// the route's expression over the request's normal path, then the request's query.
pub fn rewrite(rewrite: &Rewrite, original: &PathAndQuery) -> Result<PathAndQuery, ProxyError> {
    let path = normalize_request_path(original.path());
    // Only a target with `$N` pays for the captures.
    let captures = rewrite
        .target
        .uses_captures()
        .then(|| rewrite.pattern.regex().captures(path.as_bytes()))
        .flatten();
    let mut target = String::with_capacity(path.len() + 16);
    for part in &rewrite.target.parts {
        match part {
            TemplatePart::Literal(text) => target.push_str(text),
            TemplatePart::Capture(group) => {
                if let Some(text) = captures.as_ref().and_then(|c| c.get(*group)) {
                    // A byte-wise expression can cut a character in two (the path is ASCII
                    // in practice): such a capture makes no request target.
                    let text =
                        std::str::from_utf8(text.as_bytes()).map_err(|_| ProxyError::BadRewrite)?;
                    target.push_str(text);
                }
            }
            // Compile allows only captures in a rewrite target.
            TemplatePart::Variable(_) => {}
        }
    }
    // nginx's rule: the request's query follows, after `&` if the target has one, unless the
    // target ends with `?`.
    match (target.strip_suffix('?'), original.query()) {
        (Some(bare), _) => target.truncate(bare.len()),
        (None, Some(query)) if !query.is_empty() => {
            target.push(if target.contains('?') { '&' } else { '?' });
            target.push_str(query);
        }
        _ => {}
    }
    if target.is_empty() {
        target.push('/');
    }
    PathAndQuery::try_from(target).map_err(|_| ProxyError::BadRewrite)
}

/// Refuses a request whose declared body is larger than the route's limit (a body of unknown
/// length is counted as it streams, see `request_body`).
pub fn check_body_size<B>(limit: Option<u64>, request: &Request<B>) -> Result<(), ProxyError> {
    let Some(limit) = limit else {
        return Ok(());
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit => Err(ProxyError::PayloadTooLarge),
        _ => Ok(()),
    }
}

/// The route's body limit, if it has one.
pub fn body_limit(route: &Route) -> Option<u64> {
    route.transforms.as_ref().and_then(|t| t.body_limit)
}

/// What a redirect template's variables are read from.
struct Vars<'r, B> {
    request: &'r Request<B>,
    client: &'r ClientInfo,
    /// The validated request host (Host or `:authority`).
    host: &'r str,
}

impl<B> Vars<'_, B> {
    fn get(&self, variable: Variable) -> Cow<'_, str> {
        let uri = self.request.uri();
        match variable {
            Variable::RequestUri => uri.path_and_query().map_or("/", |p| p.as_str()).into(),
            Variable::Uri => normalize_request_path(uri.path()),
            Variable::Args => uri.query().unwrap_or_default().into(),
            Variable::IsArgs => if uri.query().is_some() { "?" } else { "" }.into(),
            Variable::Scheme => self.client.scheme.into(),
            Variable::Host => normalize_request_host(self.host).into_owned().into(),
            Variable::HttpHost => self.host.into(),
            Variable::EscapedRequestUri => escaped_request_uri(self.request).into(),
        }
    }
}

/// What `set_escape_uri` leaves as it is: letters, digits and `-._~`.
const URI_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `$escaped_request_uri`: the request URI fit for a query value.
pub fn escaped_request_uri<B>(request: &Request<B>) -> String {
    let uri = request.uri().path_and_query().map_or("/", |p| p.as_str());
    percent_encoding::utf8_percent_encode(uri, URI_COMPONENT).to_string()
}

/// `template` with nginx's variables filled in from `request`, which arrived from `client` for
/// the validated `host`.
pub fn expand_for<B>(
    template: &Template,
    request: &Request<B>,
    client: &ClientInfo,
    host: &str,
) -> String {
    let vars = Vars {
        request,
        client,
        host,
    };
    expand(template, &vars)
}

fn expand<B>(template: &Template, vars: &Vars<'_, B>) -> String {
    let mut out = String::new();
    for part in &template.parts {
        match part {
            TemplatePart::Literal(text) => out.push_str(text),
            TemplatePart::Variable(variable) => out.push_str(&vars.get(*variable)),
            // Compile allows no captures in a redirect URL.
            TemplatePart::Capture(_) => {}
        }
    }
    out
}
