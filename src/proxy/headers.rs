//! Request and response header rewriting for a reverse proxy (RFC 9110 section 7.6).
//!
//! Hop-by-hop headers describe one connection and are never forwarded, nor are headers that a
//! `Connection` header names. The client-facing `X-Forwarded-*` headers are set by vane, not
//! trusted from the client, except `X-Forwarded-For`, to which the client address is appended
//! (as ingress-nginx and most proxies do). The client-certificate headers (mTLS) are likewise
//! always vane's: a client-sent copy is removed on every listener, so it cannot be spoofed.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::tls::ConnectionTls;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// The verified client certificate's subject (ingress-nginx's name for it).
pub static SSL_CLIENT_SUBJECT_DN: HeaderName = HeaderName::from_static("ssl-client-subject-dn");
/// `SUCCESS` (a verified client certificate) or `NONE`, on TLS connections.
pub static SSL_CLIENT_VERIFY: HeaderName = HeaderName::from_static("ssl-client-verify");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that are hop-by-hop whatever `Connection` says.
fn hop_by_hop() -> [&'static HeaderName; 9] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ]
}

/// Whether the request asks to switch protocols (WebSocket and the like): an `Upgrade` header
/// and the `upgrade` token in `Connection`.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has_token(headers, "upgrade")
}

fn connection_has_token(headers: &HeaderMap, token: &str) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(token))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers. With `keep_upgrade`, `Upgrade` and `Connection: upgrade` are
/// kept, since a protocol switch must pass through the proxy.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        if !(keep_upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    // `TE: trailers` is the one TE value that must reach an upstream (gRPC depends on it).
    let te_trailers = headers.get_all(header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
    });
    let upgrade = headers.get(header::UPGRADE).cloned();
    for name in hop_by_hop() {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let (true, Some(upgrade)) = (keep_upgrade, upgrade) {
        headers.insert(header::UPGRADE, upgrade);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// What the proxy knows about the client side of a connection. The header values are built
/// once per connection, so requests only clone them.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub ip: IpAddr,
    /// `ip` as a header value (X-Real-IP, X-Forwarded-For).
    ip_header: HeaderValue,
    /// The port of the listener the connection arrived on, as a header value.
    port_header: HeaderValue,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// What the TLS handshake established; `None` on plain connections.
    pub tls: Option<Arc<ConnectionTls>>,
}

impl ClientInfo {
    pub fn new(ip: IpAddr, local_port: u16, scheme: &'static str) -> Self {
        Self {
            ip,
            ip_header: HeaderValue::from_str(&ip.to_string())
                .expect("an IP address is a valid header value"),
            port_header: HeaderValue::from(local_port),
            scheme,
            tls: None,
        }
    }

    /// The same client on a TLS connection.
    pub fn with_tls(self, tls: ConnectionTls) -> Self {
        Self {
            scheme: "https",
            tls: Some(Arc::new(tls)),
            ..self
        }
    }
}

/// Sets `X-Forwarded-For` (appended), `X-Real-IP`, `X-Forwarded-Proto`, `-Host` and `-Port`.
pub fn set_forwarded(headers: &mut HeaderMap, client: &ClientInfo, host: &HeaderValue) {
    let mut prior = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .peekable();
    // Only a client that sent X-Forwarded-For costs a new string.
    let forwarded_for = if prior.peek().is_none() {
        client.ip_header.clone()
    } else {
        let mut joined = String::new();
        for value in prior {
            joined.push_str(value);
            joined.push_str(", ");
        }
        joined.push_str(client.ip_header.to_str().unwrap_or_default());
        HeaderValue::from_str(&joined).unwrap_or_else(|_| client.ip_header.clone())
    };
    headers.insert(X_FORWARDED_FOR.clone(), forwarded_for);
    headers.insert(X_REAL_IP.clone(), client.ip_header.clone());
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(client.scheme),
    );
    headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    headers.insert(X_FORWARDED_PORT.clone(), client.port_header.clone());
    headers.remove(&SSL_CLIENT_SUBJECT_DN);
    headers.remove(&SSL_CLIENT_VERIFY);
    if let Some(tls) = &client.tls {
        let verify = match &tls.client_subject {
            Some(subject) => {
                headers.insert(SSL_CLIENT_SUBJECT_DN.clone(), subject.clone());
                "SUCCESS"
            }
            None => "NONE",
        };
        headers.insert(SSL_CLIENT_VERIFY.clone(), HeaderValue::from_static(verify));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip, trailers"),
            ("x-kept", "yes"),
        ]);
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.get("x-kept").unwrap(), "yes");
        assert_eq!(h.get("te").unwrap(), "trailers");
        for gone in ["connection", "keep-alive", "x-secret", "transfer-encoding"] {
            assert!(!h.contains_key(gone), "{gone} should be removed");
        }
    }

    #[test]
    fn end_to_end_headers_are_left_alone() {
        let pairs = [("host", "example.com"), ("x-a", "1"), ("accept", "*/*")];
        let mut h = headers(&pairs);
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h, headers(&pairs));
        // `close` names no header; `keep-alive` names a listed one.
        let mut h = headers(&[("connection", "close, Keep-Alive"), ("x-a", "1")]);
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h, headers(&[("x-a", "1")]));
    }

    #[test]
    fn upgrade_survives_when_kept() {
        let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade_request(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
    }

    #[test]
    fn forwarded_for_is_appended_and_the_rest_overwritten() {
        let mut h = headers(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "https"),
        ]);
        let client = ClientInfo::new("192.0.2.7".parse().unwrap(), 8080, "http");
        set_forwarded(&mut h, &client, &HeaderValue::from_static("example.com"));
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1, 192.0.2.7");
        assert_eq!(h.get("x-real-ip").unwrap(), "192.0.2.7");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "example.com");
        assert_eq!(h.get("x-forwarded-port").unwrap(), "8080");
    }

    #[test]
    fn client_certificate_headers_are_never_taken_from_the_client() {
        let spoofed = || {
            headers(&[
                ("ssl-client-subject-dn", "CN=admin"),
                ("ssl-client-verify", "SUCCESS"),
            ])
        };
        let host = HeaderValue::from_static("example.com");
        let plain = ClientInfo::new("192.0.2.7".parse().unwrap(), 8080, "http");
        let mut h = spoofed();
        set_forwarded(&mut h, &plain, &host);
        assert!(!h.contains_key("ssl-client-subject-dn"));
        assert!(!h.contains_key("ssl-client-verify"));

        let anonymous = plain.clone().with_tls(ConnectionTls::default());
        let mut h = spoofed();
        set_forwarded(&mut h, &anonymous, &host);
        assert!(!h.contains_key("ssl-client-subject-dn"));
        assert_eq!(h.get("ssl-client-verify").unwrap(), "NONE");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");

        let verified = plain.with_tls(ConnectionTls {
            server_name: None,
            client_subject: Some(HeaderValue::from_static("CN=client")),
        });
        let mut h = spoofed();
        set_forwarded(&mut h, &verified, &host);
        assert_eq!(h.get("ssl-client-subject-dn").unwrap(), "CN=client");
        assert_eq!(h.get("ssl-client-verify").unwrap(), "SUCCESS");
    }
}
