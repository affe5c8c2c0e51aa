//! How vane talks to endpoints: its own HTTP/1.1 pool for the common case, and one pooled
//! hyper-util client per other protocol, so that connection pools are per endpoint and
//! protocol and outlive table swaps.
//!
//! ```text
//! Upstreams
//! ├── http1: HTTP/1.1 in the clear (Http): `pool::Http1Pool`
//! ├── h2c:   HTTP/2 in the clear, prior knowledge (H2c, Grpc)
//! └── tls:   UpstreamTls (roots, server name, ALPN) ─▶ client over rustls (Https, Grpcs)
//! ```
//!
//! The table holds each backend's TLS settings as plain data ([`UpstreamTls`]); a client (its
//! rustls configuration, built by `tls::client`, and its pool) is created the first time those
//! settings are used and found again by content on later tables, so an unchanged backend keeps
//! its connections across swaps and a configuration is built once, not per table. The request
//! body type is generic, so the forwarding code may wrap bodies (e.g. to replay them) without
//! touching this file.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Builder, Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::ServerName;
use tracing::{error, warn};

use super::connect::TimedConnector;
use super::pool::{Http1Pool, PoolStats, Reusable};
use super::send_error::SendError;
use super::UpstreamConfig;
use crate::live::TableHandle;
use crate::table::{Backend, Endpoint, UpstreamTls};
use crate::tls;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Distinct TLS configurations kept at once. Beyond it (only under extreme CA churn) the cache
/// starts over, which costs idle connections and nothing else.
const MAX_TLS_CLIENTS: usize = 256;

type TlsClient<B> = Client<HttpsConnector<TimedConnector>, B>;

/// A TLS configuration's client, or why it cannot be built.
type TlsClientOrWhy<B> = Result<TlsClient<B>, Arc<str>>;

/// The upstream clients of one proxy worker, shared by its connections.
pub struct Upstreams<B> {
    config: UpstreamConfig,
    /// The connectors look up each endpoint's connect timeout in the current table.
    tables: Arc<TableHandle>,
    http1: Http1Pool<B>,
    h2c: Client<TimedConnector, B>,
    /// Each TLS configuration's client, or why it cannot be built (kept, so that it is logged
    /// once, not per request).
    tls: ArcSwap<HashMap<UpstreamTls, TlsClientOrWhy<B>>>,
}

impl<B> Upstreams<B>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// The upstreams of one worker; `stats` counts what its HTTP/1.1 pool does.
    pub fn new(config: &UpstreamConfig, tables: Arc<TableHandle>, stats: Arc<PoolStats>) -> Self {
        Self {
            config: config.clone(),
            http1: Http1Pool::new(config, stats),
            h2c: builder(config)
                .http2_only(true)
                .build(connector(&tables, true)),
            tables,
            tls: ArcSwap::default(),
        }
    }

    /// Sends `request` (origin-form URI, Host set) to `endpoint` the way `backend` is spoken
    /// to. An HTTP/1.1 connection in the clear comes back with the response, to be released
    /// when the response body has been forwarded; the other clients pool by themselves.
    pub async fn send(
        &self,
        backend: &Backend,
        endpoint: &Endpoint,
        connect_timeout: Duration,
        mut request: Request<B>,
    ) -> Result<(Response<Incoming>, Option<Reusable<B>>), SendError> {
        if backend.is_plain_http1() {
            let (response, connection) = self
                .http1
                .send(endpoint.address, connect_timeout, request)
                .await?;
            return Ok((response, Some(connection)));
        }
        // hyper-util's client finds its pool by the absolute URI.
        let mut uri = http::uri::Parts::from(std::mem::take(request.uri_mut()));
        uri.scheme = Some(scheme_for(backend));
        uri.authority = Some(
            Authority::try_from(endpoint.address.to_string())
                .map_err(|e| SendError::Connect(e.into()))?,
        );
        *request.uri_mut() = Uri::from_parts(uri).map_err(|e| SendError::Connect(e.into()))?;
        let response = match &backend.upstream_tls {
            None => self.h2c.request(request),
            Some(tls) => self.tls_request(tls, request)?,
        };
        response
            .await
            .map(|response| (response, None))
            .map_err(SendError::of_legacy)
    }

    /// Sends `request` with the client for `tls`, created on first use. The response future
    /// owns what it needs, so a known client is used in place, not cloned.
    fn tls_request(
        &self,
        tls: &UpstreamTls,
        request: Request<B>,
    ) -> Result<ResponseFuture, SendError> {
        let send = |client: &TlsClientOrWhy<B>| match client {
            Ok(client) => Ok(client.request(request)),
            Err(why) => Err(SendError::Unusable(why.clone())),
        };
        if let Some(client) = self.tls.load().get(tls) {
            return send(client);
        }
        let client = self.new_tls_client(tls);
        self.tls.rcu(|clients| {
            let mut clients = if clients.len() >= MAX_TLS_CLIENTS {
                HashMap::new()
            } else {
                HashMap::clone(clients)
            };
            clients.entry(tls.clone()).or_insert_with(|| client.clone());
            clients
        });
        send(&client)
    }

    /// A client for `tls`. Compile checked its roots, so its configuration builds; if it did
    /// not, the backend's requests are refused (and it is logged) rather than going out
    /// unverified.
    fn new_tls_client(&self, tls: &UpstreamTls) -> TlsClientOrWhy<B> {
        if tls.is_insecure() {
            warn!(server_name = %tls.server_name, "upstream TLS without certificate verification (insecureSkipVerify)");
        }
        let config = tls::client::client_config(&tls.roots).map_err(|message| {
            error!(server_name = %tls.server_name, %message, "cannot build the upstream TLS configuration; the backend's requests are refused");
            Arc::<str>::from(format!("upstream TLS configuration: {message}"))
        })?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(rustls::ClientConfig::clone(&config))
            .https_only();
        let name = ServerName::try_from(tls.server_name.to_string())
            .unwrap_or_else(|_| ServerName::try_from("invalid.invalid").expect("a DNS name"));
        let https = https.with_server_name_resolver(FixedServerNameResolver::new(name));
        let http = connector(&self.tables, false);
        let mut builder = builder(&self.config);
        Ok(if tls.http2 {
            builder
                .http2_only(true)
                .build(https.enable_http2().wrap_connector(http))
        } else {
            builder.build(https.enable_http1().wrap_connector(http))
        })
    }
}

/// The scheme of upstream request URIs for `backend`.
fn scheme_for(backend: &Backend) -> Scheme {
    if backend.upstream_tls.is_some() {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    }
}

/// The HTTP version of upstream requests for `backend`.
pub fn version_for(backend: &Backend) -> Version {
    if backend.protocol.is_http2() {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    }
}

/// TCP with the endpoint's connect timeout; `plain`: refuses `https` URIs (TLS wraps it).
fn connector(tables: &Arc<TableHandle>, plain: bool) -> TimedConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(plain);
    TimedConnector::new(connector, tables.clone())
}

fn builder(config: &UpstreamConfig) -> Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(config.pool_max_idle_per_endpoint)
        // vane sets Host itself: the client's Host must be the one the user sent.
        .set_host(false);
    builder
}
