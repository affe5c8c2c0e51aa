//! TLS in the table: which certificate (and client-certificate policy) each SNI host gets, what
//! a route does about plain HTTP (redirect, HSTS), and how a backend talks to its endpoints.
//!
//! ```text
//! TlsHosts
//! ├── exact:    "foo.example.com" ─▶ TlsSite { certificate, client_auth, rustls ServerConfig }
//! ├── wildcard: "example.com" (for *.example.com) ─▶ TlsSite
//! └── default:  TlsSite of --default-ssl-certificate, else of the self-signed certificate
//! ```
//!
//! Everything is built by compile, rustls configurations included, so a handshake only looks
//! up a prepared `Arc<ServerConfig>`; certificates change with the table, in the same swap.

use foldhash::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::{wildcard_parent, HostPattern, ObjectRef};

/// A server certificate with what `/debug/routes` and the 421 check need to know about it.
#[derive(Debug)]
pub struct Certificate {
    pub key: Arc<CertifiedKey>,
    /// The Secret it came from; `None` for the self-signed certificate generated at start.
    pub secret: Option<ObjectRef>,
    pub subject: Box<str>,
    /// DNS subject alternative names, lowercase (`*.example.com` for a wildcard).
    pub dns_names: Vec<Box<str>>,
    /// notAfter, as RFC 2822 text, and as seconds since the Unix epoch.
    pub not_after: Box<str>,
    pub not_after_unix: i64,
}

impl Certificate {
    /// Whether one of the certificate's DNS names covers `host` (lowercase): exactly, or as a
    /// wildcard of exactly one label.
    pub fn covers(&self, host: &str) -> bool {
        self.dns_names
            .iter()
            .any(|name| match name.strip_prefix("*.") {
                Some(parent) => wildcard_parent(host) == Some(parent),
                None => **name == *host,
            })
    }
}

/// Client certificates a host asks for (mTLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientAuthMode {
    /// Handshakes without a valid client certificate fail.
    Required,
    /// A client certificate is asked for and verified if sent, but not required.
    Optional,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientAuth {
    /// The Secret whose `ca.crt` verifies client certificates.
    pub ca: ObjectRef,
    pub mode: ClientAuthMode,
}

/// What a TLS handshake for one host uses.
#[derive(Debug)]
pub struct TlsSite {
    pub certificate: Arc<Certificate>,
    pub client_auth: Option<ClientAuth>,
    /// Built once per certificate and client-auth pair, with vane's protocols and ALPN.
    /// `None`: handshakes are refused (its client CA cannot be used, and serving the host
    /// without the verification it asks for would fail open).
    pub config: Option<Arc<rustls::ServerConfig>>,
}

/// The TLS sites by SNI host name. Build with [`TlsHosts::new`].
#[derive(Clone, Debug, Default)]
pub struct TlsHosts {
    exact: HashMap<Box<str>, Arc<TlsSite>>,
    wildcard: HashMap<Box<str>, Arc<TlsSite>>,
    default: Option<Arc<TlsSite>>,
}

impl TlsHosts {
    /// Host-less patterns are ignored: SNI always names a host.
    pub fn new(hosts: Vec<(HostPattern, Arc<TlsSite>)>, default: Option<Arc<TlsSite>>) -> Self {
        let mut tls = TlsHosts {
            default,
            ..Default::default()
        };
        for (host, site) in hosts {
            match host {
                HostPattern::Exact(name) => tls.exact.entry(name).or_insert(site),
                HostPattern::Wildcard(parent) => tls.wildcard.entry(parent).or_insert(site),
                HostPattern::Any => continue,
            };
        }
        tls
    }

    /// The site for a server name (SNI, or a request's normalized host): exact, then wildcard,
    /// then the default. `None` only when there is no default certificate either.
    pub fn site(&self, server_name: Option<&str>) -> Option<&Arc<TlsSite>> {
        server_name
            .and_then(|name| {
                self.exact
                    .get(name)
                    .or_else(|| wildcard_parent(name).and_then(|parent| self.wildcard.get(parent)))
            })
            .or(self.default.as_ref())
    }

    /// Every host with its own site, as `(pattern, site)`.
    pub fn hosts(&self) -> impl Iterator<Item = (HostPattern, &Arc<TlsSite>)> {
        let exact = self
            .exact
            .iter()
            .map(|(name, site)| (HostPattern::Exact(name.clone()), site));
        let wildcard = self
            .wildcard
            .iter()
            .map(|(parent, site)| (HostPattern::Wildcard(parent.clone()), site));
        exact.chain(wildcard)
    }

    pub fn default_site(&self) -> Option<&Arc<TlsSite>> {
        self.default.as_ref()
    }
}

/// What a route does about TLS, decided at compile time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTls {
    /// Plain-HTTP requests get a 308 to the same URL on https.
    pub redirect_to_https: bool,
    /// `Strict-Transport-Security` for HTTPS responses.
    pub hsts: Option<http::HeaderValue>,
}

/// How a backend talks to its endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackendProtocol {
    /// HTTP/1.1 in the clear.
    #[default]
    Http,
    /// HTTP/1.1 over TLS.
    Https,
    /// HTTP/2 in the clear, with prior knowledge.
    H2c,
    /// gRPC: HTTP/2 in the clear.
    Grpc,
    /// gRPC over TLS (HTTP/2 by ALPN).
    Grpcs,
}

impl BackendProtocol {
    pub fn uses_tls(self) -> bool {
        matches!(self, BackendProtocol::Https | BackendProtocol::Grpcs)
    }

    pub fn is_http2(self) -> bool {
        matches!(
            self,
            BackendProtocol::H2c | BackendProtocol::Grpc | BackendProtocol::Grpcs
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BackendProtocol::Http => "HTTP",
            BackendProtocol::Https => "HTTPS",
            BackendProtocol::H2c => "H2C",
            BackendProtocol::Grpc => "GRPC",
            BackendProtocol::Grpcs => "GRPCS",
        }
    }
}

impl fmt::Display for BackendProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The TLS client side of a backend: verification roots (or none), the name to send as SNI
/// and verify, and the protocol to ask for by ALPN.
///
/// Two `UpstreamTls` are equal when their configuration is (compared by `identity`, which
/// holds every input of `config`), so connection pools keyed by it survive table swaps.
#[derive(Clone, Debug)]
pub struct UpstreamTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: Box<str>,
    pub http2: bool,
    /// Verification is off (`insecureSkipVerify`).
    pub insecure: bool,
    /// Where the roots came from: the CA Secrets, or `None` for the public web PKI.
    pub ca: Option<Vec<ObjectRef>>,
    identity: Arc<[u8]>,
    identity_hash: u64,
}

impl UpstreamTls {
    /// `roots_der` must be every CA certificate (DER) that `config` trusts, in order; with the
    /// other fields it is the identity of the configuration.
    pub fn new(
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
        http2: bool,
        insecure: bool,
        ca: Option<Vec<ObjectRef>>,
        roots_der: &[&[u8]],
    ) -> Self {
        let mut identity = Vec::new();
        identity.extend_from_slice(&[u8::from(http2), u8::from(insecure), u8::from(ca.is_some())]);
        for part in std::iter::once(server_name.as_bytes()).chain(roots_der.iter().copied()) {
            identity.extend_from_slice(&(part.len() as u64).to_be_bytes());
            identity.extend_from_slice(part);
        }
        let identity_hash = xxhash_rust::xxh3::xxh3_64(&identity);
        Self {
            config,
            server_name: server_name.into(),
            http2,
            insecure,
            ca,
            identity: identity.into(),
            identity_hash,
        }
    }
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.identity, &other.identity) || self.identity == other.identity
    }
}

impl Eq for UpstreamTls {}

impl Hash for UpstreamTls {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.identity_hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_names_cover_exact_and_one_label_wildcards() {
        let certificate = Certificate {
            key: Arc::new(CertifiedKey::new(vec![], Arc::new(NoKey))),
            secret: None,
            subject: "".into(),
            dns_names: vec!["a.example.com".into(), "*.wild.example.com".into()],
            not_after: "".into(),
            not_after_unix: 0,
        };
        assert!(certificate.covers("a.example.com"));
        assert!(certificate.covers("x.wild.example.com"));
        assert!(!certificate.covers("x.y.wild.example.com"));
        assert!(!certificate.covers("wild.example.com"));
        assert!(!certificate.covers("b.example.com"));
    }

    #[derive(Debug)]
    struct NoKey;

    impl rustls::sign::SigningKey for NoKey {
        fn choose_scheme(
            &self,
            _: &[rustls::SignatureScheme],
        ) -> Option<Box<dyn rustls::sign::Signer>> {
            None
        }

        fn algorithm(&self) -> rustls::SignatureAlgorithm {
            rustls::SignatureAlgorithm::ECDSA
        }
    }
}
