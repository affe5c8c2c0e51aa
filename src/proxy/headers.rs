//! Request and response header rewriting for a reverse proxy (RFC 9110 section 7.6).
//!
//! Hop-by-hop headers describe one connection and are never forwarded, nor are headers that a
//! `Connection` header names. The client-facing `X-Forwarded-*` headers are set by vane, not
//! trusted from the client, except `X-Forwarded-For`, to which the client address is appended
//! (as ingress-nginx and most proxies do). The client-certificate headers (mTLS) are likewise
//! always vane's: a client-sent copy is removed on every listener, so it cannot be spoofed.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::connection::Activity;
use crate::table::{IpSet, HOP_BY_HOP};
use crate::tls::ConnectionTls;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// The verified client certificate's subject (ingress-nginx's name for it).
pub static SSL_CLIENT_SUBJECT_DN: HeaderName = HeaderName::from_static("ssl-client-subject-dn");
/// `SUCCESS` (a verified client certificate) or `NONE`, on TLS connections.
pub static SSL_CLIENT_VERIFY: HeaderName = HeaderName::from_static("ssl-client-verify");
/// The protocol the request may switch to, as the client wrote it: the first of its `Upgrade`
/// protocols that is `websocket` or one the route allows (`upgrade-protocols`), when
/// `Connection` has `upgrade`.
///
/// No other protocol is tunnelled, and never `h2c` (the annotation refuses it). An endpoint that
/// accepted `Upgrade: h2c` would speak HTTP/2 with the client directly, and every later request
/// on that connection would reach any path of the endpoint past routing, header rewriting and
/// access rules ("h2c smuggling"); Envoy strips h2c upgrades for the same reason.
pub fn upgrade_protocol(headers: &HeaderMap, allowed: Option<&[Box<str>]>) -> Option<HeaderValue> {
    if !connection_has_token(headers, "upgrade") {
        return None;
    }
    let allowed = |protocol: &str| {
        protocol.eq_ignore_ascii_case("websocket")
            || allowed.is_some_and(|list| list.iter().any(|a| protocol.eq_ignore_ascii_case(a)))
    };
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|protocol| allowed(protocol))
        .and_then(|protocol| HeaderValue::from_str(protocol).ok())
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

/// Removes hop-by-hop headers. With `upgrade` (the protocol of an allowed switch), `Upgrade:
/// <that protocol>` and `Connection: upgrade` are set, since the switch must pass through.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: Option<HeaderValue>) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    // `TE: trailers` is the one TE value that must reach an upstream (gRPC depends on it).
    let te_trailers = headers.get_all(header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
    });
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(protocol) = upgrade {
        // Only the protocol vane tunnels, whatever else the client listed.
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Why a request's host is refused (400).
pub type BadHost = &'static str;

/// The host a request is for: the authority of its target when it has one (HTTP/2's
/// `:authority`, or an HTTP/1.1 absolute-form target, which RFC 9112 section 3.2.2 says
/// overrides `Host`), else its one `Host` header. Missing, repeated and malformed hosts are
/// refused rather than routed: an origin that reads the host differently than vane does could
/// otherwise be reached under a name vane never routed.
pub fn request_host<B>(request: &http::Request<B>) -> Result<&str, BadHost> {
    let host = match request.uri().authority() {
        Some(authority) => authority.as_str(),
        None => {
            let mut hosts = request.headers().get_all(header::HOST).iter();
            let host = hosts.next().ok_or("no Host header")?;
            if hosts.next().is_some() {
                return Err("more than one Host header");
            }
            host.to_str().map_err(|_| "Host is not ASCII")?
        }
    };
    if is_valid_host(host) {
        Ok(host)
    } else {
        Err("Host is not a host name or address with an optional port")
    }
}

/// `host[:port]` where host is a DNS-style name (letters, digits, `-`, `.`, `_`, `~`), an IPv4
/// address or a bracketed IPv6 address, and port is 1 to 5 digits. Narrower than RFC 3986's
/// reg-name on purpose: user info (`user@host`), percent-encoding and the sub-delimiters never
/// appear in a name an Ingress can route, and are what parser differentials are made of.
fn is_valid_host(host: &str) -> bool {
    let (name_ok, port) = match host.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((ipv6, port)) => (ipv6.parse::<std::net::Ipv6Addr>().is_ok(), port),
            None => return false,
        },
        None => {
            let (name, port) = host.split_at(host.find(':').unwrap_or(host.len()));
            let name_ok = !name.is_empty()
                && !name.contains("..")
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
            (name_ok, port)
        }
    };
    let port_ok = match port.strip_prefix(':') {
        Some(digits) => {
            (1..=5).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
        }
        None => port.is_empty(),
    };
    name_ok && port_ok
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
    /// The connection's activity, which holds its place under the connection cap: a WebSocket
    /// tunnel keeps it, so upgraded connections count against the cap until they close.
    pub connection: Option<Arc<Activity>>,
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
            connection: None,
        }
    }

    /// `ip` as a header value.
    pub fn ip_header(&self) -> &HeaderValue {
        &self.ip_header
    }

    /// The same connection, for a request from client `ip` (behind a trusted proxy).
    pub fn with_ip(self, ip: IpAddr) -> Self {
        Self {
            ip,
            ip_header: HeaderValue::from_str(&ip.to_string())
                .expect("an IP address is a valid header value"),
            ..self
        }
    }

    /// The same client, on a connection admitted under the cap.
    pub fn on(self, connection: Arc<Activity>) -> Self {
        Self {
            connection: Some(connection),
            ..self
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

/// `--trusted-proxies`: the proxies in front of vane whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug)]
pub struct TrustedProxies(Arc<IpSet>);

impl TrustedProxies {
    pub fn new(cidrs: Vec<ipnet::IpNet>) -> Self {
        Self(Arc::new(IpSet::new(cidrs)))
    }
}

/// The client a request is from: the connection's peer; or, when the peer is a trusted proxy,
/// the right-most address of `X-Forwarded-For` that is not one (the proxies in front append
/// what they saw, so everything left of the first untrusted address could be forged by the
/// client). An entry that is no address ends the walk at the last address read. The result is
/// the one address allow lists, rate limits, hashing, logs and `X-Real-IP` use.
pub fn real_client<'c, B>(
    client: &'c ClientInfo,
    request: &http::Request<B>,
    trusted: Option<&TrustedProxies>,
) -> Cow<'c, ClientInfo> {
    let Some(TrustedProxies(trusted)) = trusted.filter(|t| t.0.contains(client.ip)) else {
        return Cow::Borrowed(client);
    };
    let mut real = client.ip;
    let hops = request
        .headers()
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .rev()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.rsplit(','));
    for hop in hops {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                real = ip;
                if !trusted.contains(ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    if real == client.ip {
        Cow::Borrowed(client)
    } else {
        Cow::Owned(client.clone().with_ip(real))
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
        remove_hop_by_hop(&mut h, None);
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
        remove_hop_by_hop(&mut h, None);
        assert_eq!(h, headers(&pairs));
        // `close` names no header; `keep-alive` names a listed one.
        let mut h = headers(&[("connection", "close, Keep-Alive"), ("x-a", "1")]);
        remove_hop_by_hop(&mut h, None);
        assert_eq!(h, headers(&[("x-a", "1")]));
    }

    #[test]
    fn upgrade_survives_when_kept() {
        let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "WebSocket")]);
        let protocol = upgrade_protocol(&h, None).unwrap();
        assert_eq!(protocol, "WebSocket");
        remove_hop_by_hop(&mut h, Some(protocol));
        assert_eq!(h.get("upgrade").unwrap(), "WebSocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
    }

    #[test]
    fn only_websocket_and_allowed_protocols_are_upgrades_and_h2c_never_passes() {
        let allowed: &[Box<str>] = &["spdy/3.1".into()];
        for upgrade in ["h2c", "TLS/1.0", "websocketx", "SPDY/3.2"] {
            let h = headers(&[
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", upgrade),
            ]);
            assert_eq!(upgrade_protocol(&h, Some(allowed)), None, "{upgrade}");
        }
        let h = headers(&[("connection", "Upgrade"), ("upgrade", "SPDY/3.1")]);
        assert_eq!(
            upgrade_protocol(&h, None),
            None,
            "not allowed by this route"
        );
        assert_eq!(upgrade_protocol(&h, Some(allowed)).unwrap(), "SPDY/3.1");
        let h = headers(&[("upgrade", "websocket")]);
        assert_eq!(upgrade_protocol(&h, None), None, "no Connection: upgrade");
        let mut h = headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ]);
        remove_hop_by_hop(&mut h, None);
        assert!(h.is_empty(), "{h:?}");
        // A client listing h2c beside websocket gets only the WebSocket handshake through.
        let mut h = headers(&[("connection", "upgrade"), ("upgrade", "h2c, websocket")]);
        let protocol = upgrade_protocol(&h, None);
        remove_hop_by_hop(&mut h, protocol);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
    }

    #[test]
    fn hosts_are_validated() {
        for good in [
            "example.com",
            "Example.COM.",
            "a-b_c.example:8080",
            "192.0.2.1",
            "192.0.2.1:80",
            "[2001:db8::1]",
            "[::1]:8443",
        ] {
            assert!(is_valid_host(good), "{good}");
        }
        for bad in [
            "",
            ":80",
            "user@example.com",
            "a b",
            "example.com:",
            "example.com:123456",
            "example.com:8o",
            "exa%6dple.com",
            "a..b",
            "2001:db8::1",
            "[not-ipv6]",
            "example.com/path",
            "example.com\\x",
        ] {
            assert!(!is_valid_host(bad), "{bad}");
        }
    }

    #[test]
    fn the_request_host_is_the_authority_else_the_one_host_header() {
        let request = |uri: &str, hosts: &[&str]| {
            let mut builder = http::Request::builder().uri(uri);
            for host in hosts {
                builder = builder.header("host", *host);
            }
            builder.body(()).unwrap()
        };
        let r = request("/", &["example.com"]);
        assert_eq!(request_host(&r), Ok("example.com"));
        let r = request("http://target.example/x", &["other.example"]);
        assert_eq!(request_host(&r), Ok("target.example"));
        assert!(request_host(&request("/", &[])).is_err());
        assert!(request_host(&request("/", &["a.example", "b.example"])).is_err());
        assert!(request_host(&request("/", &["user@a.example"])).is_err());
        assert!(request_host(&request("http://user@a.example/", &[])).is_err());
    }

    #[test]
    fn the_real_client_is_the_right_most_untrusted_forwarded_address() {
        let trusted = TrustedProxies::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ]);
        let real = |peer: &str, forwarded: &[&str]| {
            let mut request = http::Request::new(());
            for value in forwarded {
                request
                    .headers_mut()
                    .append(&X_FORWARDED_FOR, value.parse().unwrap());
            }
            let client = ClientInfo::new(peer.parse().unwrap(), 80, "http");
            let real = real_client(&client, &request, Some(&trusted));
            (
                real.ip.to_string(),
                real.ip_header.to_str().unwrap().to_owned(),
            )
        };
        let ip = |peer, forwarded| real(peer, forwarded).0;
        // From an untrusted peer, nothing it says is believed.
        assert_eq!(ip("192.0.2.1", &["198.51.100.7"]), "192.0.2.1");
        assert_eq!(ip("10.0.0.1", &["198.51.100.7"]), "198.51.100.7");
        // Forged entries left of the first untrusted address are not reached.
        assert_eq!(
            ip("10.0.0.1", &["6.6.6.6, 198.51.100.7, 10.1.1.1"]),
            "198.51.100.7"
        );
        assert_eq!(
            ip("10.0.0.1", &["6.6.6.6", "198.51.100.7, 10.1.1.1"]),
            "198.51.100.7"
        );
        // Only proxies: the left-most.
        assert_eq!(ip("10.0.0.1", &["10.2.2.2, 10.1.1.1"]), "10.2.2.2");
        // Garbage ends the walk at the last address read.
        assert_eq!(
            ip("10.0.0.1", &["198.51.100.7, junk, 10.1.1.1"]),
            "10.1.1.1"
        );
        assert_eq!(
            ip("2001:db8::1", &["2001:db8::2, 2001:db9::5"]),
            "2001:db9::5"
        );
        assert_eq!(ip("10.0.0.1", &[]), "10.0.0.1");
        assert_eq!(real("10.0.0.1", &["198.51.100.7"]).1, "198.51.100.7");
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
            version: "TLSv1.3",
        });
        let mut h = spoofed();
        set_forwarded(&mut h, &verified, &host);
        assert_eq!(h.get("ssl-client-subject-dn").unwrap(), "CN=client");
        assert_eq!(h.get("ssl-client-verify").unwrap(), "SUCCESS");
    }
}
