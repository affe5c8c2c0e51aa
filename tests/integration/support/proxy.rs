//! The real proxy on 127.0.0.1:0, fed by compile, as `vane` would run it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use vane::compile::{compile, Options};
use vane::live::TableHandle;
use vane::proxy::{self, Connections, Proxy, ServerLimits, Telemetry, UpstreamConfig};

use super::fixtures::snapshot;

pub struct TestProxy {
    pub addr: SocketAddr,
    /// The TLS listener.
    pub https: SocketAddr,
    pub tables: Arc<TableHandle>,
    pub options: Options,
    /// The traffic counters (and access log, if given) its requests are reported to.
    pub telemetry: Telemetry,
    stop: CancellationToken,
}

impl TestProxy {
    pub async fn start(yaml: &str) -> Self {
        Self::start_with(yaml, Options::default()).await
    }

    /// Starts with `options`; without a fallback certificate in them, a self-signed one is
    /// generated, as `vane` does at start.
    pub async fn start_with(yaml: &str, options: Options) -> Self {
        Self::start_full(
            yaml,
            options,
            &UpstreamConfig::default(),
            ServerLimits::default(),
            Telemetry::default(),
        )
        .await
    }

    /// Starts reporting its requests to `telemetry` (an access log, say).
    pub async fn start_with_telemetry(yaml: &str, telemetry: Telemetry) -> Self {
        let (upstream, limits) = (UpstreamConfig::default(), ServerLimits::default());
        Self::start_full(yaml, Options::default(), &upstream, limits, telemetry).await
    }

    /// Starts with these upstream connection settings.
    pub async fn start_with_upstream(yaml: &str, upstream: &UpstreamConfig) -> Self {
        let limits = ServerLimits::default();
        Self::start_full(
            yaml,
            Options::default(),
            upstream,
            limits,
            Telemetry::default(),
        )
        .await
    }

    /// Starts with these client-side limits.
    pub async fn start_with_limits(yaml: &str, limits: ServerLimits) -> Self {
        let upstream = UpstreamConfig::default();
        Self::start_full(
            yaml,
            Options::default(),
            &upstream,
            limits,
            Telemetry::default(),
        )
        .await
    }

    async fn start_full(
        yaml: &str,
        mut options: Options,
        upstream: &UpstreamConfig,
        limits: ServerLimits,
        telemetry: Telemetry,
    ) -> Self {
        if options.fallback_certificate.is_none() {
            options.fallback_certificate = Some(Arc::new(vane::compile::self_signed().unwrap()));
        }
        let tables = Arc::new(TableHandle::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let test_proxy = Self {
            addr,
            https: tls_listener.local_addr().unwrap(),
            tables: tables.clone(),
            options,
            telemetry,
            stop: stop.clone(),
        };
        test_proxy.publish(yaml);
        let proxy = Arc::new(Proxy::new(tables, upstream, &test_proxy.telemetry));
        let connections = Arc::new(Connections::new(limits));
        tokio::spawn(proxy::serve(
            listener,
            proxy.clone(),
            connections.clone(),
            stop.clone(),
        ));
        tokio::spawn(proxy::serve_tls(tls_listener, proxy, connections, stop));
        test_proxy
    }

    /// Compiles `yaml` and swaps it in; returns the diagnostics.
    pub fn publish(&self, yaml: &str) -> Vec<vane::table::Diagnostic> {
        let compiled = compile(&snapshot(yaml), &self.options);
        self.tables
            .publish(compiled.table, compiled.diagnostics.clone());
        compiled.diagnostics
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
