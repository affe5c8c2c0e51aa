//! The certificate of last resort: for unknown or missing SNI when no
//! `--default-ssl-certificate` is usable. Generated at start (it is random), never written.
//!
//! It lives with compile because it is one of compile's inputs
//! ([`Options::fallback_certificate`](super::Options)) and is parsed like a Secret's certificate;
//! [`compile`](super::compile) itself never calls it, and stays pure.

use rcgen::{CertificateParams, DnType, KeyPair};

use crate::table::Certificate;

/// The SAN of the self-signed certificate: a name that can never be a real host (RFC 6761).
pub const SELF_SIGNED_NAME: &str = "vane.invalid";

/// Generates a self-signed ECDSA P-256 certificate, valid for a year.
pub fn self_signed() -> Result<Certificate, String> {
    let mut params =
        CertificateParams::new(vec![SELF_SIGNED_NAME.to_owned()]).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "vane default certificate");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let certificate = params.self_signed(&key).map_err(|e| e.to_string())?;
    super::certificate::parse(
        certificate.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
        None,
        None,
    )
    .map_err(|e| e.to_string())
}
