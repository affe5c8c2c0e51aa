//! TLS decisions on the request path. Each reads what compile decided for the route or the
//! table; nothing here is computed per request beyond comparing names.

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;

use super::ClientInfo;
use crate::table::{normalize_request_host, Route, RoutingTable};

/// The ACME HTTP-01 challenge path: never redirected, since certificate issuers fetch it over
/// plain HTTP (cert-manager's solver answers it through an Ingress).
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// For a plain-HTTP request on a route that redirects: a 308 to the same host, path and query
/// over https on the default port (vane's https listener is expected behind port 443).
pub fn redirect<B>(
    route: &Route,
    client: &ClientInfo,
    request: &Request<B>,
    host: &str,
) -> Option<Response<Full<Bytes>>> {
    if client.tls.is_some()
        || !route.tls.redirect_to_https
        || request.uri().path().starts_with(ACME_CHALLENGE_PREFIX)
    {
        return None;
    }
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{}{path}", normalize_request_host(host));
    // A host that is no header value cannot be redirected to; routing it is still correct.
    let location = HeaderValue::from_str(&location).ok()?;
    let mut response = Response::new(Full::new(Bytes::from_static(
        b"308 Permanent Redirect: use https\n",
    )));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Some(response)
}

/// Adds the route's `Strict-Transport-Security` to a response sent over TLS.
pub fn add_hsts<B>(route: &Route, client: &ClientInfo, response: &mut Response<B>) {
    if let (Some(_), Some(hsts)) = (&client.tls, &route.tls.hsts) {
        response
            .headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
}

/// Whether a request arrived on a TLS connection whose handshake (SNI) picked another site
/// (certificate and client verification) than the request's host would: a client reusing a
/// connection for a host it does not serve, as HTTP/2 connection coalescing does. Answering
/// 421 makes it open a connection for that host, which also keeps client-certificate
/// verification from being bypassed. Both names are looked up in the current table, so a
/// certificate rotation does not misdirect connections opened before it.
pub fn is_misdirected(table: &RoutingTable, client: &ClientInfo, host: &str) -> bool {
    let Some(server_name) = client.tls.as_ref().and_then(|t| t.server_name.as_deref()) else {
        // No TLS, or no SNI: the client asked for no particular host.
        return false;
    };
    let host = normalize_request_host(host);
    if *host == *server_name {
        return false;
    }
    let sites = table.tls();
    sites.site_index(Some(server_name)) != sites.site_index(Some(&host))
}
