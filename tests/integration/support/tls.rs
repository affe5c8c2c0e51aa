//! Certificates made in tests (rcgen), the manifests that carry them, and rustls clients that
//! report what vane presented.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::client::Reply;

/// A certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, in PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for `names` (DNS SANs, wildcards allowed), valid now.
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.issue(names, |_| {})
    }

    /// A server certificate that expired yesterday.
    pub fn expired_server(&self, names: &[&str]) -> Leaf {
        self.issue(names, |params| {
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::days(30);
            params.not_after = now - time::Duration::days(1);
        })
    }

    /// A client certificate with this common name.
    pub fn client(&self, common_name: &str) -> Leaf {
        self.issue(&[], |params| {
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        })
    }

    fn issue(&self, names: &[&str], adjust: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        adjust(&mut params);
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Leaf {
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        use rustls::pki_types::pem::PemObject;
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }

    /// A rustls server configuration serving this certificate (for TLS origins).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(vane::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(self.chain(), self.key())
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// Indents PEM text as a YAML block scalar's content.
fn block(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

/// A Secret of type kubernetes.io/tls in `default` holding `leaf` (in stringData).
pub fn tls_secret(name: &str, leaf: &Leaf) -> String {
    secret(
        name,
        "kubernetes.io/tls",
        &leaf.cert_pem,
        &leaf.key_pem,
        None,
    )
}

/// A CA Secret: type kubernetes.io/tls (the only type vane reads) with `ca.crt`, and empty
/// `tls.crt`/`tls.key` (the API server requires only that the keys exist).
pub fn ca_secret(name: &str, ca: &Ca) -> String {
    secret(name, "kubernetes.io/tls", "", "", Some(&ca.pem()))
}

/// Any Secret in `default`.
pub fn secret(name: &str, type_: &str, cert: &str, key: &str, ca: Option<&str>) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\ntype: {type_}\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        block(cert),
        block(key)
    );
    if cert.is_empty() {
        yaml = yaml.replace("  tls.crt: |\n", "  tls.crt: \"\"\n");
    }
    if key.is_empty() {
        yaml = yaml.replace("  tls.key: |\n", "  tls.key: \"\"\n");
    }
    if let Some(ca) = ca {
        yaml += &format!("  ca.crt: |\n{}", block(ca));
    }
    yaml
}

/// An Ingress of class vane routing `host` `/` to `service` (port `http`), with `spec.tls`
/// entries `(hosts, secretName)` and annotations.
pub fn tls_ingress(
    name: &str,
    host: &str,
    service: &str,
    tls: &[(&[&str], Option<&str>)],
    annotations: &[(&str, &str)],
) -> String {
    let annotations: String = annotations
        .iter()
        .map(|(k, v)| format!("    {k}: {v:?}\n"))
        .collect();
    let annotations = if annotations.is_empty() {
        String::new()
    } else {
        format!("  annotations:\n{annotations}")
    };
    let mut tls_yaml = String::new();
    if !tls.is_empty() {
        tls_yaml.push_str("  tls:\n");
        for (hosts, secret) in tls {
            let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
            tls_yaml += &format!("  - hosts: [{}]\n", hosts.join(", "));
            if let Some(secret) = secret {
                tls_yaml += &format!("    secretName: {secret}\n");
            }
        }
    }
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n{annotations}\
         spec:\n  ingressClassName: vane\n{tls_yaml}  rules:\n  - host: {host:?}\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n\
         \x20       backend: {{service: {{name: {service}, port: {{name: http}}}}}}\n"
    )
}

/// What the server presented in a handshake.
#[derive(Debug)]
pub struct Presented {
    pub dns_names: Vec<String>,
    pub subject: String,
    pub alpn: Option<Vec<u8>>,
}

/// A TLS handshake with `addr`: `sni` (none: no SNI is sent), ALPN `alpn`, and a client
/// certificate if given. Any server certificate is accepted; [`presented`] tells which it was.
pub async fn handshake(
    addr: SocketAddr,
    sni: Option<&str>,
    alpn: &[&[u8]],
    client_certificate: Option<&Leaf>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let builder = rustls::ClientConfig::builder_with_provider(vane::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(vane::tls::client::accept_any_server_certificate());
    let mut config = match client_certificate {
        Some(leaf) => builder
            .with_client_auth_cert(leaf.chain(), leaf.key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // An IP address as server name sends no SNI at all.
    let server_name = match sni {
        Some(name) => ServerName::try_from(name.to_owned()).unwrap(),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let stream = TcpStream::connect(addr).await?;
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, stream)
        .await?;
    // TLS 1.3 reports a refused client certificate only with the first read: surface it now.
    use tokio::io::AsyncWriteExt;
    stream.flush().await?;
    Ok(stream)
}

/// The certificate (and ALPN protocol) the server presented.
pub fn presented(stream: &TlsStream<TcpStream>) -> Presented {
    let (_, connection) = stream.get_ref();
    let der = &connection.peer_certificates().unwrap()[0];
    let (_, certificate) = X509Certificate::from_der(der).unwrap();
    let dns_names = certificate
        .subject_alternative_name()
        .unwrap()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Presented {
        dns_names,
        subject: certificate.subject().to_string(),
        alpn: connection.alpn_protocol().map(<[u8]>::to_vec),
    }
}

/// Sends `requests` on one TLS connection, as HTTP/2 when ALPN chose h2, else HTTP/1.1.
pub async fn send_all(
    stream: TlsStream<TcpStream>,
    requests: Vec<Request<Full<Bytes>>>,
) -> hyper::Result<Vec<Reply>> {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    let mut replies = Vec::new();
    if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(connection);
        for request in requests {
            replies.push(reply(sender.send_request(request).await?).await?);
        }
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(connection);
        for request in requests {
            replies.push(reply(sender.send_request(request).await?).await?);
        }
    }
    Ok(replies)
}

async fn reply(response: http::Response<hyper::body::Incoming>) -> hyper::Result<Reply> {
    let (parts, body) = response.into_parts();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await?.to_bytes(),
    })
}

/// A GET of `path` with Host `host`.
pub fn get_request(host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("https://{host}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// One HTTPS GET on a new connection with SNI `host` (HTTP/1.1).
pub async fn https_get(addr: SocketAddr, host: &str, path: &str) -> Reply {
    let stream = handshake(addr, Some(host), &[b"http/1.1"], None)
        .await
        .expect("handshake");
    send_all(stream, vec![get_request(host, path)])
        .await
        .expect("request")
        .remove(0)
}
