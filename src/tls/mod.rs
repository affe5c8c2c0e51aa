//! TLS: rustls configurations built from the table's plain data, and the handshake of the HTTPS
//! listener.
//!
//! Compile parses and validates certificates and CA bundles into the table as DER; nothing here
//! reads a Secret or reports on one. This module turns that data into rustls objects:
//! [`ServerConfigs`] (one `ServerConfig` per TLS site, with its client-certificate verifier),
//! built by `live` when a table is published, so that they change in the same swap as the
//! routes; and [`client::client_config`], called by the proxy's upstream client cache the first
//! time it meets an `UpstreamTls`. The handshake half ([`accept`]) reads the ClientHello's SNI,
//! asks for that host's prepared `ServerConfig`, and finishes the handshake with it: each host
//! can have its own certificate and its own client-certificate policy (mTLS), and a table swap
//! changes the certificate of new handshakes while open connections go on.
//!
//! Every configuration names the ring provider explicitly, so nothing depends on a process-wide
//! default provider being installed.

pub mod client;
mod handshake;
mod server;

use std::sync::{Arc, LazyLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

pub use handshake::{accept, ConnectionTls, HandshakeError};
pub use server::ServerConfigs;

/// ALPN protocol ids, in the server's order of preference.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

static PROVIDER: LazyLock<Arc<CryptoProvider>> =
    LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));

/// The crypto provider of every configuration vane builds (ring).
pub fn provider() -> Arc<CryptoProvider> {
    PROVIDER.clone()
}

/// A store of trust anchors. Compile already checked that each of `roots` is one, so an error
/// here means a table that did not come from compile.
fn root_store(roots: &[CertificateDer<'static>]) -> Result<RootCertStore, rustls::Error> {
    let mut store = RootCertStore::empty();
    roots.iter().try_for_each(|root| store.add(root.clone()))?;
    Ok(store)
}
