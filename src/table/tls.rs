//! TLS in the table: which certificate (and client-certificate policy) each SNI host gets, what
//! a route does about plain HTTP (redirect, HSTS), and how a backend talks to its endpoints.
//!
//! ```text
//! TlsHosts
//! ├── sites:    [TlsSite { certificate (chain, key: DER), client_auth (CA roots: DER) }]
//! ├── exact:    "foo.example.com" ─▶ site index
//! ├── wildcard: "example.com" (for *.example.com) ─▶ site index
//! └── default:  site index of --default-ssl-certificate, else of the self-signed certificate
//! ```
//!
//! Plain data only: compile parses and validates certificates into these types, and the TLS
//! module builds rustls configurations from them when a table is published (`live`, one
//! `ServerConfig` per site, indexed like [`TlsHosts::sites`]; the upstream client cache, one
//! `ClientConfig` per distinct [`UpstreamTls`]). So a handshake still only looks up a prepared
//! configuration, and certificates change with the table, in the same swap.

use foldhash::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{wildcard_parent, HostPattern, ObjectRef};

/// A server certificate with what `/debug/routes` and the 421 check need to know about it.
#[derive(Debug)]
pub struct Certificate {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key of the leaf (checked to match it when parsed). Shared, as the key is
    /// not cheap to clone and every configuration built from this certificate reads it.
    pub key: Arc<PrivateKeyDer<'static>>,
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

/// Client certificates a host asks for (mTLS).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientAuth {
    /// The Secret whose `ca.crt` verifies client certificates.
    pub ca: ObjectRef,
    pub mode: ClientAuthMode,
    /// The CA certificates of its `ca.crt`; `None` when they cannot be used, and then the
    /// site refuses handshakes (fail closed).
    pub roots: Option<Arc<[CertificateDer<'static>]>>,
}

/// What a TLS handshake for one host uses: one per certificate and client-auth pair.
#[derive(Clone, Debug)]
pub struct TlsSite {
    pub certificate: Arc<Certificate>,
    pub client_auth: Option<ClientAuth>,
}

impl TlsSite {
    /// Its client CA cannot be used, and serving the host without the verification it asks
    /// for would fail open: handshakes are refused.
    pub fn refuses_handshakes(&self) -> bool {
        self.client_auth
            .as_ref()
            .is_some_and(|auth| auth.roots.is_none())
    }
}

/// The TLS sites, and which one each SNI host name gets. Build with [`TlsHosts::new`].
#[derive(Clone, Debug, Default)]
pub struct TlsHosts {
    /// Each distinct site once; the maps hold indexes into it.
    sites: Vec<TlsSite>,
    exact: HashMap<Arc<str>, usize>,
    wildcard: HashMap<Arc<str>, usize>,
    default: Option<usize>,
}

impl TlsHosts {
    /// `hosts` and `default` name sites by their index in `sites`. Host-less patterns are
    /// ignored: SNI always names a host.
    ///
    /// # Panics
    ///
    /// If an index is out of range of `sites`.
    pub fn new(
        sites: Vec<TlsSite>,
        hosts: Vec<(HostPattern, usize)>,
        default: Option<usize>,
    ) -> Self {
        let in_range = |index: &usize| *index < sites.len();
        assert!(
            default
                .iter()
                .chain(hosts.iter().map(|(_, i)| i))
                .all(in_range),
            "a TLS host names a site that does not exist"
        );
        let mut tls = TlsHosts {
            sites,
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

    /// Every site, in index order.
    pub fn sites(&self) -> &[TlsSite] {
        &self.sites
    }

    /// The index of the site for a server name (SNI, or a request's normalized host): exact,
    /// then wildcard, then the default. `None` only when there is no default certificate
    /// either.
    pub fn site_index(&self, server_name: Option<&str>) -> Option<usize> {
        server_name
            .and_then(|name| {
                self.exact
                    .get(name)
                    .or_else(|| wildcard_parent(name).and_then(|parent| self.wildcard.get(parent)))
            })
            .copied()
            .or(self.default)
    }

    /// The site for a server name, as [`TlsHosts::site_index`] finds it.
    pub fn site(&self, server_name: Option<&str>) -> Option<&TlsSite> {
        self.site_index(server_name).map(|index| &self.sites[index])
    }

    /// Every host with its own site, as `(pattern, site index)`.
    pub fn hosts(&self) -> impl Iterator<Item = (HostPattern, usize)> + '_ {
        let exact = self
            .exact
            .iter()
            .map(|(name, site)| (HostPattern::Exact(name.clone()), *site));
        let wildcard = self
            .wildcard
            .iter()
            .map(|(parent, site)| (HostPattern::Wildcard(parent.clone()), *site));
        exact.chain(wildcard)
    }

    /// The index of the default site.
    pub fn default_index(&self) -> Option<usize> {
        self.default
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

/// Whom an upstream's certificate must chain to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UpstreamRoots {
    /// The Mozilla root program (webpki-roots).
    WebPki,
    /// These CA certificates only (those of a BackendPolicy's CA Secrets, in order).
    Custom(Arc<[CertificateDer<'static>]>),
    /// Anyone: `insecureSkipVerify`.
    Insecure,
}

/// The TLS client side of a backend: verification roots (or none), the name to send as SNI
/// and verify, and the protocol to ask for by ALPN.
///
/// Two `UpstreamTls` are equal when the client configurations they give are (every field but
/// `ca`, which only says where the roots came from), so connection pools keyed by it survive
/// table swaps. The hash is computed once: pools are looked up by it on every request.
#[derive(Clone, Debug)]
pub struct UpstreamTls {
    pub roots: UpstreamRoots,
    pub server_name: Box<str>,
    pub http2: bool,
    /// Where the roots came from: the CA Secrets, or `None` for the public web PKI.
    pub ca: Option<Vec<ObjectRef>>,
    hash: u64,
}

impl UpstreamTls {
    pub fn new(
        roots: UpstreamRoots,
        server_name: &str,
        http2: bool,
        ca: Option<Vec<ObjectRef>>,
    ) -> Self {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        (&roots, server_name, http2).hash(&mut hasher);
        Self {
            roots,
            server_name: server_name.into(),
            http2,
            ca,
            hash: hasher.finish(),
        }
    }

    /// Verification is off (`insecureSkipVerify`).
    pub fn is_insecure(&self) -> bool {
        self.roots == UpstreamRoots::Insecure
    }
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        // The hash first: unequal configurations almost always differ there, cheaply.
        self.hash == other.hash
            && self.http2 == other.http2
            && self.server_name == other.server_name
            && self.roots == other.roots
    }
}

impl Eq for UpstreamTls {}

impl Hash for UpstreamTls {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::PrivatePkcs8KeyDer;

    #[test]
    fn certificate_names_cover_exact_and_one_label_wildcards() {
        let certificate = Certificate {
            chain: Vec::new(),
            key: Arc::new(PrivatePkcs8KeyDer::from(Vec::new()).into()),
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

    #[test]
    fn upstream_tls_is_equal_by_content_whatever_secrets_the_roots_came_from() {
        let root = || UpstreamRoots::Custom(vec![CertificateDer::from(vec![1, 2, 3])].into());
        let from = |name: &str| Some(vec![ObjectRef::new("Secret", "default", name)]);
        let one = UpstreamTls::new(root(), "app.internal", false, from("one"));
        assert_eq!(
            one,
            UpstreamTls::new(root(), "app.internal", false, from("two"))
        );
        assert_ne!(
            one,
            UpstreamTls::new(root(), "app.internal", true, from("one"))
        );
        assert_ne!(
            one,
            UpstreamTls::new(root(), "other.internal", false, from("one"))
        );
        assert_ne!(
            one,
            UpstreamTls::new(UpstreamRoots::WebPki, "app.internal", false, None)
        );
    }
}
