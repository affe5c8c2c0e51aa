//! TLS: certificates and rustls configurations, and the handshake of the HTTPS listener.
//!
//! The pure half (`certificate`, `client`, [`server_config`]) is what compile uses to put
//! ready-made rustls configurations into the routing table; nothing here reads a Secret itself.
//! The handshake half ([`accept`]) reads the ClientHello's SNI, picks that host's
//! `ServerConfig` from the current table, and finishes the handshake with it: each host can
//! have its own certificate and its own client-certificate policy (mTLS), and a table swap
//! changes the certificate of new handshakes while open connections go on.
//!
//! Every configuration names the ring provider explicitly, so nothing depends on a process-wide
//! default provider being installed.

pub mod certificate;
pub mod client;
mod handshake;
mod self_signed;

use std::sync::{Arc, LazyLock};

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::ServerConfig;

pub use handshake::{accept, ConnectionTls, HandshakeError};
pub use self_signed::self_signed;

/// ALPN protocol ids, in the server's order of preference.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

static PROVIDER: LazyLock<Arc<CryptoProvider>> =
    LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));

/// The crypto provider of every configuration vane builds (ring).
pub fn provider() -> Arc<CryptoProvider> {
    PROVIDER.clone()
}

/// A server configuration for one certificate: TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, and
/// client certificates verified by `client_auth` (none asked for without it).
pub fn server_config(
    certificate: Arc<CertifiedKey>,
    client_auth: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_auth {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certificate)));
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// A verifier of client certificates issued by `roots`; `optional` lets clients without one in.
pub fn client_cert_verifier(
    roots: &[rustls::pki_types::CertificateDer<'static>],
    optional: bool,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store
            .add(root.clone())
            .map_err(|e| format!("ca.crt holds an unusable CA certificate: {e}"))?;
    }
    let builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider());
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder.build().map_err(|e| e.to_string())
}
