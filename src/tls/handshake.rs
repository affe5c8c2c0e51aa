//! The server side of a handshake: the ClientHello's SNI picks the host's prepared
//! `ServerConfig`.

use std::sync::Arc;

use http::HeaderValue;
use rustls::pki_types::CertificateDer;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::table::normalize_request_host;

/// What one TLS connection established, for every request on it.
#[derive(Debug, Clone, Default)]
pub struct ConnectionTls {
    /// The SNI the client sent (normalized like a Host header), if any.
    pub server_name: Option<Box<str>>,
    /// The subject of the client certificate, verified by the host's CA (mTLS).
    pub client_subject: Option<HeaderValue>,
    /// The negotiated version, as nginx's `$ssl_protocol` writes it (`TLSv1.3`).
    pub version: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("no certificate for server name {0:?} and no default certificate")]
    NoCertificate(Option<Box<str>>),
}

/// Reads the ClientHello, asks `select` for the configuration of its server name, and finishes
/// the handshake with it.
pub async fn accept<IO, F>(
    stream: IO,
    select: F,
) -> Result<(TlsStream<IO>, ConnectionTls), HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(Option<&str>) -> Option<Arc<ServerConfig>>,
{
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let server_name: Option<Box<str>> = start
        .client_hello()
        .server_name()
        .map(|name| normalize_request_host(name).into());
    let Some(config) = select(server_name.as_deref()) else {
        return Err(HandshakeError::NoCertificate(server_name));
    };
    let stream = start.into_stream(config).await?;
    let connection = stream.get_ref().1;
    let version = match connection.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        _ => "unknown",
    };
    let client_subject = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(subject)
        .and_then(|subject| HeaderValue::from_str(&subject).ok());
    Ok((
        stream,
        ConnectionTls {
            server_name,
            client_subject,
            version,
        },
    ))
}

/// The subject distinguished name of a DER certificate (`CN=client, O=Example`).
fn subject(der: &CertificateDer<'_>) -> Option<String> {
    X509Certificate::from_der(der)
        .ok()
        .map(|(_, certificate)| certificate.subject().to_string())
}
