//! Server configurations: one rustls `ServerConfig` per TLS site of a table, built when the
//! table is published, so that a handshake only looks up a prepared configuration.

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::ServerConfig;
use tracing::error;

use super::{provider, root_store, ALPN_H2, ALPN_HTTP11};
use crate::table::{ClientAuth, ClientAuthMode, TlsHosts, TlsSite};

/// The server configuration of each site of one table, indexed like [`TlsHosts::sites`].
#[derive(Debug, Default)]
pub struct ServerConfigs {
    /// `None`: the site's handshakes are refused (fail closed), because compile found its
    /// client CA unusable or its configuration could not be built.
    by_site: Vec<Option<Arc<ServerConfig>>>,
}

/// Everything a site's configuration is built from: sites with equal inputs get equivalent
/// configurations. (The Secret names and the descriptive fields do not matter.)
#[derive(PartialEq, Eq, Hash)]
struct Inputs<'t> {
    chain: &'t [CertificateDer<'static>],
    key: &'t [u8],
    client_auth: Option<(ClientAuthMode, Option<&'t [CertificateDer<'static>]>)>,
}

impl<'t> Inputs<'t> {
    fn of(site: &'t TlsSite) -> Self {
        Self {
            chain: &site.certificate.chain,
            key: site.certificate.key.secret_der(),
            client_auth: site
                .client_auth
                .as_ref()
                .map(|auth| (auth.mode, auth.roots.as_deref())),
        }
    }
}

impl ServerConfigs {
    /// Builds the configuration of every site of `tls`. A site whose inputs equal those of a
    /// site of the `previous` table takes that site's configuration rather than loading its key
    /// and CA again. A site whose configuration cannot be built refuses handshakes, and that is
    /// logged with its hosts.
    pub fn build(tls: &TlsHosts, previous: (&TlsHosts, &ServerConfigs)) -> Self {
        let (previous_tls, previous_configs) = previous;
        let mut reusable = HashMap::with_capacity(previous_tls.sites().len());
        for (site, config) in previous_tls.sites().iter().zip(&previous_configs.by_site) {
            if let Some(config) = config {
                reusable.insert(Inputs::of(site), config);
            }
        }
        let by_site = tls
            .sites()
            .iter()
            .enumerate()
            .map(|(index, site)| {
                if let Some(config) = reusable.get(&Inputs::of(site)) {
                    return Some(Arc::clone(config));
                }
                server_config(site).unwrap_or_else(|error| {
                    error!(
                        hosts = ?hosts_of(tls, index),
                        %error,
                        "cannot build the TLS configuration of these hosts; their handshakes are refused"
                    );
                    None
                })
            })
            .collect();
        Self { by_site }
    }

    /// The configuration of site `index`; `None` when its handshakes are refused.
    pub fn get(&self, index: usize) -> Option<&Arc<ServerConfig>> {
        self.by_site.get(index)?.as_ref()
    }
}

/// The hosts served by site `index`, for logs.
fn hosts_of(tls: &TlsHosts, index: usize) -> Vec<String> {
    let default = (tls.default_index() == Some(index)).then(|| "(default)".to_string());
    tls.hosts()
        .filter(|(_, site)| *site == index)
        .map(|(host, _)| host.to_string())
        .chain(default)
        .collect()
}

/// The server configuration of a site: TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, and client
/// certificates verified against its CA (none asked for without client auth). `None` when the
/// site refuses handshakes because its CA could not be used (compile reported it).
fn server_config(site: &TlsSite) -> Result<Option<Arc<ServerConfig>>, String> {
    let verifier = match &site.client_auth {
        None => None,
        Some(ClientAuth { roots: None, .. }) => return Ok(None),
        Some(ClientAuth {
            roots: Some(roots),
            mode,
            ..
        }) => Some(client_cert_verifier(
            roots,
            *mode == ClientAuthMode::Optional,
        )?),
    };
    let certificate = &site.certificate;
    let key = provider()
        .key_provider
        .load_private_key(certificate.key.clone_key())
        .map_err(|e| format!("the private key cannot be loaded: {e}"))?;
    let certified = CertifiedKey::new(certificate.chain.clone(), key);
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    Ok(Some(Arc::new(config)))
}

/// A verifier of client certificates issued by `roots`; `optional` lets clients without one in.
fn client_cert_verifier(
    roots: &[CertificateDer<'static>],
    optional: bool,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let store = root_store(roots)
        .map_err(|e| format!("the client CA holds an unusable certificate: {e}"))?;
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider());
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Certificate, HostPattern};

    fn tls(certificate: Arc<Certificate>) -> TlsHosts {
        let site = TlsSite {
            certificate,
            client_auth: None,
        };
        let host = HostPattern::from_rule(Some("a.example.com"));
        TlsHosts::new(vec![site], vec![(host, 0)], Some(0))
    }

    #[test]
    fn a_site_with_the_same_certificate_keeps_its_configuration_and_a_new_one_gets_its_own() {
        let certificate = crate::compile::self_signed().unwrap();
        // A later compile parses the same Secret again: equal content, another allocation.
        let reparsed = Certificate {
            chain: certificate.chain.clone(),
            key: Arc::new(certificate.key.clone_key()),
            secret: None,
            subject: certificate.subject.clone(),
            dns_names: certificate.dns_names.clone(),
            not_after: certificate.not_after.clone(),
            not_after_unix: certificate.not_after_unix,
        };
        let first = tls(Arc::new(certificate));
        let first_configs =
            ServerConfigs::build(&first, (&TlsHosts::default(), &Default::default()));
        let config = first_configs.get(0).expect("a configuration for the site");

        let second = tls(Arc::new(reparsed));
        let second_configs = ServerConfigs::build(&second, (&first, &first_configs));
        assert!(Arc::ptr_eq(config, second_configs.get(0).unwrap()));

        let rotated = tls(Arc::new(crate::compile::self_signed().unwrap()));
        let rotated_configs = ServerConfigs::build(&rotated, (&second, &second_configs));
        assert!(!Arc::ptr_eq(config, rotated_configs.get(0).unwrap()));
    }
}
