//! Upstream TLS: how a backend talks to its endpoints (the protocol, from annotation, policy or
//! `appProtocol`) and, over TLS, whom their certificates must chain to and under which name.
//!
//! The result is plain data ([`UpstreamTls`]: roots as DER); the proxy's upstream client cache
//! builds a rustls client configuration from it on first use. CA Secrets are read through
//! [`TlsBuilder`]'s cache, which downstream client verification shares, so a `ca.crt` is parsed
//! once per compile whoever uses it.

use super::reasons;
use super::service::Unresolved;
use super::tls::TlsBuilder;
use super::Sink;
use crate::api::{self, BackendPolicy};
use crate::table::{BackendProtocol, ObjectRef, UpstreamRoots, UpstreamTls};

impl TlsBuilder<'_> {
    /// The TLS client side of a backend with `protocol` (none for plain protocols). Endpoints
    /// are verified against the policy's CA Secrets, else the public web PKI, under the
    /// policy's `hostname`, else the Service's cluster DNS name.
    pub fn upstream(
        &mut self,
        protocol: BackendProtocol,
        policy: Option<(&BackendPolicy, &ObjectRef)>,
        namespace: &str,
        service: &str,
        sink: &mut Sink,
    ) -> Result<Option<UpstreamTls>, Unresolved> {
        let settings = policy.and_then(|(p, object)| Some((p.spec.tls.as_ref()?, object)));
        if !protocol.uses_tls() {
            // Said out loud: the policy's owner asked for verified TLS, and whoever chose the
            // plain protocol (an Ingress's backend-protocol, say) may not be that owner.
            if let Some((_, object)) = settings {
                sink.report(
                    object,
                    reasons::UPSTREAM_TLS_NOT_USED,
                    format!("spec.tls is not used for {namespace}/{service}: the backend speaks {protocol}, in plain text"),
                );
            }
            return Ok(None);
        }
        let server_name = settings
            .and_then(|(tls, _)| tls.hostname.clone())
            .unwrap_or_else(|| format!("{service}.{namespace}.svc"));
        let (roots, ca) = match settings {
            Some((tls, object)) if tls.insecure_skip_verify == Some(true) => {
                sink.report(
                    object,
                    reasons::INSECURE_UPSTREAM_TLS,
                    format!("spec.tls.insecureSkipVerify: certificates of {namespace}/{service} are not verified; anyone on the path can read and change this traffic"),
                );
                (UpstreamRoots::Insecure, None)
            }
            Some((tls, object)) if !tls.ca_certificate_refs.is_empty() => {
                let mut roots = Vec::new();
                for reference in &tls.ca_certificate_refs {
                    let ca = self
                        .ca(namespace, &reference.name)
                        .map_err(|problem| Unresolved {
                            reason: problem.reason,
                            message: format!(
                                "BackendPolicy {}/{} spec.tls.caCertificateRefs: {}",
                                object.namespace, object.name, problem.message
                            ),
                        })?;
                    roots.extend(ca.iter().cloned());
                }
                let refs = tls
                    .ca_certificate_refs
                    .iter()
                    .map(|r| ObjectRef::new("Secret", namespace, r.name.as_str()))
                    .collect();
                (UpstreamRoots::Custom(roots.into()), Some(refs))
            }
            _ => (UpstreamRoots::WebPki, None),
        };
        Ok(Some(UpstreamTls::new(
            roots,
            &server_name,
            protocol.is_http2(),
            ca,
        )))
    }
}

/// The upstream protocol of a backend: the annotation, then the attached policy, then the
/// Service port's `appProtocol`, then HTTP.
pub fn backend_protocol(
    annotation: Option<api::BackendProtocol>,
    policy: Option<&BackendPolicy>,
    app_protocol: Option<&str>,
) -> BackendProtocol {
    let configured = annotation.or_else(|| policy.and_then(|p| p.spec.backend_protocol));
    match configured {
        Some(api::BackendProtocol::Http) => BackendProtocol::Http,
        Some(api::BackendProtocol::Https) => BackendProtocol::Https,
        Some(api::BackendProtocol::H2c) => BackendProtocol::H2c,
        Some(api::BackendProtocol::Grpc) => BackendProtocol::Grpc,
        Some(api::BackendProtocol::Grpcs) => BackendProtocol::Grpcs,
        None => match app_protocol {
            Some("kubernetes.io/h2c") => BackendProtocol::H2c,
            Some("kubernetes.io/https" | "https") => BackendProtocol::Https,
            Some("grpc") => BackendProtocol::Grpc,
            _ => BackendProtocol::Http,
        },
    }
}
