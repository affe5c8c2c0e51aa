//! Client configurations for TLS to upstreams, from a table's [`UpstreamRoots`]: verification
//! against the public web PKI (webpki-roots, compiled in, so building them is pure), against
//! the CAs of a BackendPolicy, or, when a policy explicitly says so, no verification at all.
//! The proxy's upstream client cache calls [`client_config`] once per distinct `UpstreamTls`.

use std::sync::{Arc, LazyLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{provider, root_store};
use crate::table::UpstreamRoots;

static WEB_PKI: LazyLock<Result<Arc<ClientConfig>, String>> =
    LazyLock::new(|| with_roots(webpki_roots::TLS_SERVER_ROOTS.iter().cloned().collect()));

/// hyper-util's pooled HTTP/1.1 client for `http://` and `https://` URLs of any host (resolved
/// with the system resolver), verifying servers against the web PKI: what vane's own requests
/// to services outside the table use (the OTLP collector, `auth-url`).
pub fn web_client<B>() -> Result<WebClient<B>, String>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let config = client_config(&UpstreamRoots::WebPki)?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(ClientConfig::clone(&config))
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// The client of [`web_client`].
pub type WebClient<B> = Client<HttpsConnector<HttpConnector>, B>;

/// A client configuration (TLS 1.2 and 1.3; ALPN is set by the connector).
pub fn client_config(roots: &UpstreamRoots) -> Result<Arc<ClientConfig>, String> {
    match roots {
        UpstreamRoots::WebPki => WEB_PKI.clone(),
        UpstreamRoots::Custom(certificates) => with_roots(
            root_store(certificates).map_err(|e| format!("unusable CA certificate: {e}"))?,
        ),
        UpstreamRoots::Insecure => Ok(Arc::new(
            builder()?
                .dangerous()
                .with_custom_certificate_verifier(accept_any_server_certificate())
                .with_no_client_auth(),
        )),
    }
}

fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, String> {
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())
}

fn with_roots(roots: RootCertStore) -> Result<Arc<ClientConfig>, String> {
    Ok(Arc::new(
        builder()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// A verifier that accepts any certificate for any name, but still checks that the peer holds
/// its key (the handshake signatures), so the connection is at least encrypted to whoever
/// answered. Only for `insecureSkipVerify`.
pub fn accept_any_server_certificate() -> Arc<dyn ServerCertVerifier> {
    Arc::new(AcceptAnyServerCertificate)
}

#[derive(Debug)]
struct AcceptAnyServerCertificate;

impl ServerCertVerifier for AcceptAnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
