//! Certificates from Secrets' PEM: the server certificates of TLS Secrets (checked against their
//! key and their expiry), CA bundles and whether rustls can use them as trust anchors, and the
//! self-signed certificate of last resort. Pure but for [`self_signed`]: no I/O, no clock (the
//! caller passes `now`).
//!
//! This is validation, so it belongs to compile: what fails here becomes a diagnostic naming the
//! Secret. The results are plain data ([`Certificate`], DER roots); the TLS module builds rustls
//! configurations from them when a table is published.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::table::{Certificate, ObjectRef};

/// Why a Secret's certificate cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    #[error("tls.crt is not a valid X.509 certificate: {0}")]
    BadCertificate(String),
    #[error("tls.key holds no PEM private key")]
    NoKey,
    #[error("tls.key is not a usable private key: {0}")]
    BadKey(String),
    #[error("tls.key does not match the certificate in tls.crt")]
    KeyMismatch,
    #[error("the certificate expired on {0}")]
    Expired(String),
}

/// Parses a certificate chain (leaf first) and its private key. With `now` (seconds since the
/// Unix epoch), an expired leaf is refused.
pub fn parse(
    cert_pem: &[u8],
    key_pem: &[u8],
    secret: Option<ObjectRef>,
    now: Option<i64>,
) -> Result<Certificate, CertificateError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertificateError::BadCertificate(e.to_string()))?;
    let leaf = chain.first().ok_or(CertificateError::NoCertificate)?;
    let (_, parsed) = X509Certificate::from_der(leaf)
        .map_err(|e| CertificateError::BadCertificate(e.to_string()))?;
    let not_after = parsed.validity().not_after;
    let not_after_text = not_after
        .to_rfc2822()
        .unwrap_or_else(|_| not_after.to_string());
    if now.is_some_and(|now| not_after.timestamp() < now) {
        return Err(CertificateError::Expired(not_after_text));
    }
    let subject = parsed.subject().to_string();
    let dns_names = dns_names(&parsed);

    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(key) => key,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => return Err(CertificateError::NoKey),
        Err(e) => return Err(CertificateError::BadKey(e.to_string())),
    };
    check_key(&chain, &key)?;
    Ok(Certificate {
        chain,
        key: Arc::new(key),
        secret,
        subject: subject.into(),
        dns_names,
        not_after: not_after_text.into(),
        not_after_unix: not_after.timestamp(),
    })
}

/// Whether `key` is usable and belongs to the leaf of `chain`.
///
/// Only a crypto provider can load a key and derive its public half, so this loads it with
/// rustls's ring provider (the one the TLS module serves with, so "usable" means the same
/// thing) and drops it: the table keeps the DER, and the TLS module loads the key again when it
/// builds the site's configuration at publish. Without the check here, a wrong key would only
/// show as failed handshakes, not as a diagnostic on the Ingress.
fn check_key(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<(), CertificateError> {
    let signing_key = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| CertificateError::BadKey(e.to_string()))?;
    match CertifiedKey::new(chain.to_vec(), signing_key).keys_match() {
        Ok(()) => Ok(()),
        // A key type whose public half rustls cannot derive: the handshake will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(_) => Err(CertificateError::KeyMismatch),
    }
}

fn dns_names(certificate: &X509Certificate<'_>) -> Vec<Box<str>> {
    let Ok(Some(names)) = certificate.subject_alternative_name() else {
        return Vec::new();
    };
    names
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase().into()),
            _ => None,
        })
        .collect()
}

/// The CA certificates of a PEM bundle (at least one).
pub fn ca_bundle(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca.crt is not PEM: {e}"))?;
    if certificates.is_empty() {
        return Err("ca.crt holds no PEM certificate".into());
    }
    for certificate in &certificates {
        X509Certificate::from_der(certificate)
            .map_err(|e| format!("ca.crt holds an invalid certificate: {e}"))?;
    }
    Ok(certificates)
}

/// Whether rustls accepts every one of `roots` as a trust anchor: what the TLS module's client
/// verifiers and upstream client configurations are built from. Checked here so that an
/// unusable CA is a diagnostic (and fails closed in the table), not a surprise at publish.
pub fn check_trust_anchors(roots: &[CertificateDer<'static>]) -> Result<(), rustls::Error> {
    let mut store = RootCertStore::empty();
    roots.iter().try_for_each(|root| store.add(root.clone()))
}
