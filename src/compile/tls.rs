//! Downstream TLS: certificates from Ingress `spec.tls` and their Secrets, the default
//! certificate, client certificate verification (mTLS), and redirects and HSTS per route.
//! (Upstream TLS per backend is `upstream_tls.rs`; it shares this builder's Secret cache.)
//!
//! - A `spec.tls` entry with `hosts` serves its Secret's certificate for those hosts. Without
//!   `hosts`, it serves it for the Ingress's rule hosts that the certificate covers (its DNS
//!   names, wildcards included), as ingress-nginx does. Without `secretName`, its hosts use the
//!   default certificate.
//! - A Secret that is missing, not of type `kubernetes.io/tls`, unparsable, expired, or whose
//!   key does not match its certificate is reported on the Ingress; its hosts fall back to the
//!   default certificate. Each Secret is parsed once per compile, however many Ingresses use it.
//! - The first (oldest) Ingress to claim a TLS host decides its certificate and client
//!   verification; a younger one asking for a different one gets `TLSConflict`.
//! - Client verification whose CA cannot be used fails closed: that host's handshakes are
//!   refused rather than served without the verification asked for.
//!
//! The result is plain data ([`TlsHosts`]: certificates and CA roots as DER); the TLS module
//! builds the rustls configurations from it when the table is published.

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use rustls::pki_types::CertificateDer;

use super::certificate::{self, CertificateError};
use super::secrets::{value, Secrets};
use super::{ingress, reasons, Annotations, Options, Sink};
use crate::api;
use crate::api::annotations::{self, keys, VerifyClient};
use crate::snapshot::TLS_SECRET_TYPE;
use crate::table::{
    Certificate, ClientAuth, ClientAuthMode, HostPattern, ObjectRef, RouteTls, TlsHosts, TlsSite,
};

/// What an Ingress's annotations say about TLS and the upstream protocol.
#[derive(Debug, Default)]
pub struct IngressTls {
    ssl_redirect: Option<bool>,
    force_ssl_redirect: bool,
    hsts: Option<http::HeaderValue>,
    client_auth: Option<(String, ClientAuthMode)>,
    pub backend_protocol: Option<api::BackendProtocol>,
    /// The hosts this Ingress has TLS for (filled in by [`TlsBuilder::add_ingress`]).
    hosts: Vec<HostPattern>,
}

impl IngressTls {
    pub fn parse(annotations: &Annotations<'_>, object: &ObjectRef, sink: &mut Sink) -> Self {
        let verify = annotations.parse(
            keys::AUTH_TLS_VERIFY_CLIENT,
            annotations::parse_verify_client,
            sink,
        );
        let ca = annotations
            .parse(keys::AUTH_TLS_SECRET, annotations::parse_secret_ref, sink)
            .and_then(|(namespace, name)| match namespace {
                Some(namespace) if *namespace != *object.namespace => {
                    sink.report(
                        object,
                        reasons::INVALID_ANNOTATION,
                        format!(
                            "{}: the Secret must be in the Ingress's namespace {:?}, not {namespace:?}; the annotation is ignored",
                            keys::AUTH_TLS_SECRET, object.namespace
                        ),
                    );
                    None
                }
                _ => Some(name),
            });
        let client_auth = match (ca, verify) {
            (_, Some(VerifyClient::Off)) | (None, _) => None,
            (Some(ca), Some(VerifyClient::Optional)) => Some((ca, ClientAuthMode::Optional)),
            (Some(ca), Some(VerifyClient::On) | None) => Some((ca, ClientAuthMode::Required)),
        };
        Self {
            ssl_redirect: annotations.parse(keys::SSL_REDIRECT, annotations::parse_bool, sink),
            force_ssl_redirect: annotations
                .parse(keys::FORCE_SSL_REDIRECT, annotations::parse_bool, sink)
                .unwrap_or(false),
            hsts: annotations
                .parse(keys::HSTS, annotations::parse_hsts, sink)
                .map(|hsts| hsts.header_value()),
            client_auth,
            backend_protocol: annotations.parse(
                keys::BACKEND_PROTOCOL,
                annotations::parse_backend_protocol,
                sink,
            ),
            hosts: Vec::new(),
        }
    }

    /// Whether [`TlsBuilder::add_ingress`] leaves `ingress` (parsed into these settings)
    /// alone: it has no `spec.tls` and asks for no client verification.
    pub fn adds_nothing(&self, ingress: &Ingress) -> bool {
        ingress.spec.as_ref().is_none_or(|spec| {
            spec.tls.as_deref().unwrap_or_default().is_empty() && self.client_auth.is_none()
        })
    }

    /// What a route of this Ingress on `host` does about TLS. Hosts with TLS redirect plain
    /// HTTP unless `ssl-redirect: "false"`, except that a host requiring client certificates
    /// always does (plain HTTP would bypass the verification); `force-ssl-redirect` redirects
    /// any host.
    pub fn route(&self, host: &HostPattern) -> RouteTls {
        let has_tls = self.hosts.contains(host);
        let requires_client_certificate =
            matches!(self.client_auth, Some((_, ClientAuthMode::Required)));
        RouteTls {
            redirect_to_https: self.force_ssl_redirect
                || (has_tls && (self.ssl_redirect.unwrap_or(true) || requires_client_certificate)),
            hsts: self.hsts.clone(),
        }
    }
}

/// Why a Secret cannot be used: an Event reason and a message naming the Secret.
#[derive(Debug, Clone)]
pub(super) struct SecretProblem {
    pub(super) reason: &'static str,
    pub(super) message: String,
}

/// The CA certificates of a Secret's `ca.crt`.
pub(super) type CaBundle = Arc<[CertificateDer<'static>]>;

/// Which sites exist, deduplicated: one per certificate and client verification (and so one
/// rustls `ServerConfig` once published).
type SiteKey = (*const Certificate, Option<ClientAuth>);

/// Builds the [`TlsHosts`] of a table, and the upstream TLS of its backends (`upstream_tls.rs`),
/// reading each TLS Secret once for both.
pub struct TlsBuilder<'a> {
    secrets: &'a Secrets<'a>,
    now: Option<i64>,
    certificates: HashMap<(String, String), Result<Arc<Certificate>, SecretProblem>>,
    cas: HashMap<(String, String), Result<CaBundle, SecretProblem>>,
    /// Every site once, and its index by key.
    sites: Vec<TlsSite>,
    site_index: HashMap<SiteKey, usize>,
    default: Option<usize>,
    /// Each TLS host, the Ingress that claimed it first, and its site.
    hosts: HashMap<HostPattern, (ObjectRef, usize)>,
    /// Host order of first claim, so that the table does not depend on hash order.
    order: Vec<HostPattern>,
}

impl<'a> TlsBuilder<'a> {
    pub(super) fn new(secrets: &'a Secrets<'a>, options: &Options, sink: &mut Sink) -> Self {
        let mut builder = Self {
            secrets,
            now: options.now,
            certificates: HashMap::new(),
            cas: HashMap::new(),
            sites: Vec::new(),
            site_index: HashMap::new(),
            default: None,
            hosts: HashMap::new(),
            order: Vec::new(),
        };
        let configured = options.default_certificate.as_ref().and_then(|(ns, name)| {
            builder
                .certificate(ns, name)
                .map_err(|problem| {
                    sink.report(
                        &ObjectRef::new("Secret", ns.as_str(), name.as_str()),
                        problem.reason,
                        format!(
                            "--default-ssl-certificate: {}; the self-signed certificate is used instead",
                            problem.message
                        ),
                    )
                })
                .ok()
        });
        builder.default = configured
            .or_else(|| options.fallback_certificate.clone())
            .map(|certificate| builder.site(certificate, None));
        builder
    }

    /// Registers the TLS hosts of `ingress` and records them in `settings`.
    pub fn add_ingress(
        &mut self,
        ingress: &Ingress,
        object: &ObjectRef,
        settings: &mut IngressTls,
        sink: &mut Sink,
    ) {
        let Some(spec) = ingress.spec.as_ref() else {
            return;
        };
        let entries = spec.tls.as_deref().unwrap_or_default();
        if entries.is_empty() {
            if settings.client_auth.is_some() {
                sink.report(
                    object,
                    reasons::INVALID_ANNOTATION,
                    format!("{}: the Ingress has no spec.tls, so there is no handshake to verify clients in; the annotation is ignored", keys::AUTH_TLS_SECRET),
                );
            }
            return;
        }
        let client_auth = settings
            .client_auth
            .as_ref()
            .map(|(name, mode)| self.client_auth(object, name, *mode, sink));
        let rule_hosts: Vec<HostPattern> = spec
            .rules
            .iter()
            .flatten()
            .filter_map(|rule| rule.host.as_deref())
            .filter(|host| ingress::validate_host(host).is_ok())
            .map(|host| HostPattern::from_rule(Some(host)))
            .collect();
        for (index, entry) in entries.iter().enumerate() {
            let at = format!("spec.tls[{index}]");
            let certificate = match entry.secret_name.as_deref().filter(|n| !n.is_empty()) {
                None => None,
                Some(name) => match self.certificate(&object.namespace, name) {
                    Ok(certificate) => Some(certificate),
                    Err(problem) => {
                        sink.report(
                            object,
                            problem.reason,
                            format!(
                                "{at}: {}; its hosts get the default certificate",
                                problem.message
                            ),
                        );
                        None
                    }
                },
            };
            let hosts: Vec<HostPattern> = match entry.hosts.as_deref().unwrap_or_default() {
                [] => rule_hosts
                    .iter()
                    .filter(|host| {
                        certificate
                            .as_ref()
                            .is_some_and(|c| c.covers(&host.to_string()))
                    })
                    .cloned()
                    .collect(),
                hosts => hosts
                    .iter()
                    .filter_map(|host| match ingress::validate_host(host) {
                        Ok(()) => Some(HostPattern::from_rule(Some(host))),
                        Err(why) => {
                            sink.report(
                                object,
                                reasons::INVALID_HOST,
                                format!("{at}.hosts: {host:?} {why}; the host is ignored"),
                            );
                            None
                        }
                    })
                    .collect(),
            };
            settings.hosts.extend(hosts.iter().cloned());
            // Without a usable certificate of its own, a host gets the default one (and without
            // that either, no site: its handshakes are refused).
            let Some(certificate) = certificate.or_else(|| {
                self.default
                    .map(|index| self.sites[index].certificate.clone())
            }) else {
                continue;
            };
            let site = self.site(certificate, client_auth.clone());
            for host in hosts {
                self.claim(object, host, site, sink);
            }
        }
    }

    /// The client verification of an Ingress; when its CA cannot be used, without roots: its
    /// hosts refuse handshakes.
    fn client_auth(
        &mut self,
        object: &ObjectRef,
        name: &str,
        mode: ClientAuthMode,
        sink: &mut Sink,
    ) -> ClientAuth {
        let roots = match self.ca(&object.namespace, name) {
            Ok(roots) => Some(roots),
            Err(problem) => {
                sink.report(
                    object,
                    problem.reason,
                    format!(
                        "{}: {}; handshakes for the Ingress's TLS hosts are refused",
                        keys::AUTH_TLS_SECRET,
                        problem.message
                    ),
                );
                None
            }
        };
        ClientAuth {
            ca: ObjectRef::new("Secret", &*object.namespace, name),
            mode,
            roots,
        }
    }

    fn claim(&mut self, object: &ObjectRef, host: HostPattern, site: usize, sink: &mut Sink) {
        match self.hosts.get(&host) {
            Some((_, existing)) if *existing == site => {}
            Some((owner, _)) => sink.report(
                object,
                reasons::TLS_CONFLICT,
                format!(
                    "TLS host {host} already has its certificate and client verification from older Ingress {}/{}; this one's are ignored",
                    owner.namespace, owner.name
                ),
            ),
            None => {
                self.order.push(host.clone());
                self.hosts.insert(host, (object.clone(), site));
            }
        }
    }

    /// The index of the site of a certificate and client verification, added once.
    fn site(&mut self, certificate: Arc<Certificate>, client_auth: Option<ClientAuth>) -> usize {
        let key = (Arc::as_ptr(&certificate), client_auth.clone());
        *self.site_index.entry(key).or_insert_with(|| {
            self.sites.push(TlsSite {
                certificate,
                client_auth,
            });
            self.sites.len() - 1
        })
    }

    fn secret(&self, namespace: &str, name: &str) -> Result<&'a Secret, SecretProblem> {
        let secret = self
            .secrets
            .get(namespace, name)
            .ok_or_else(|| SecretProblem {
                reason: reasons::SECRET_NOT_FOUND,
                message: format!(
                    "Secret {namespace}/{name} not found (vane reads Secrets of type {TLS_SECRET_TYPE} and Opaque only)"
                ),
            })?;
        match secret.type_.as_deref() {
            Some(TLS_SECRET_TYPE) => Ok(secret),
            other => Err(SecretProblem {
                reason: reasons::INVALID_SECRET,
                message: format!(
                    "Secret {namespace}/{name} is of type {:?}, not {TLS_SECRET_TYPE}",
                    other.unwrap_or("Opaque")
                ),
            }),
        }
    }

    /// The server certificate of a Secret (`tls.crt`, `tls.key`), parsed once.
    fn certificate(
        &mut self,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Certificate>, SecretProblem> {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(cached) = self.certificates.get(&key) {
            return cached.clone();
        }
        let parsed = self.secret(namespace, name).and_then(|secret| {
            let value = |key| value(secret, key).unwrap_or_default();
            certificate::parse(
                value("tls.crt"),
                value("tls.key"),
                Some(ObjectRef::new("Secret", namespace, name)),
                self.now,
            )
            .map(Arc::new)
            .map_err(|error| SecretProblem {
                reason: match error {
                    CertificateError::Expired(_) => reasons::CERTIFICATE_EXPIRED,
                    _ => reasons::INVALID_SECRET,
                },
                message: format!("Secret {namespace}/{name}: {error}"),
            })
        });
        self.certificates.insert(key, parsed.clone());
        parsed
    }

    /// The CA certificates in a Secret's `ca.crt`, parsed once.
    ///
    /// Checked as trust anchors too, once per Secret: an unusable CA is a diagnostic here, and
    /// every client verifier and upstream client configuration built from the table's roots
    /// then builds.
    pub(super) fn ca(&mut self, namespace: &str, name: &str) -> Result<CaBundle, SecretProblem> {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(cached) = self.cas.get(&key) {
            return cached.clone();
        }
        let parsed = self.secret(namespace, name).and_then(|secret| {
            let problem = |message: String| SecretProblem {
                reason: reasons::INVALID_SECRET,
                message: format!("Secret {namespace}/{name}: {message}"),
            };
            let roots = certificate::ca_bundle(value(secret, "ca.crt").unwrap_or_default())
                .map_err(problem)?;
            certificate::check_trust_anchors(&roots)
                .map_err(|e| problem(format!("ca.crt holds an unusable CA certificate: {e}")))?;
            Ok(roots.into())
        });
        self.cas.insert(key, parsed.clone());
        parsed
    }

    pub fn finish(self) -> TlsHosts {
        let mut hosts = self.hosts;
        let ordered = self
            .order
            .into_iter()
            .filter_map(|host| {
                let (_, site) = hosts.remove(&host)?;
                Some((host, site))
            })
            .collect();
        TlsHosts::new(self.sites, ordered, self.default)
    }
}
