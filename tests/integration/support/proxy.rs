//! The real proxy on 127.0.0.1:0, fed by compile, as `vane` would run it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use vane::compile::{compile, Options};
use vane::proxy::{self, Proxy, ServerLimits, TableHandle, UpstreamConfig};

use super::fixtures::snapshot;

pub struct TestProxy {
    pub addr: SocketAddr,
    pub tables: Arc<TableHandle>,
    pub options: Options,
    stop: CancellationToken,
}

impl TestProxy {
    pub async fn start(yaml: &str) -> Self {
        Self::start_with(yaml, Options::default()).await
    }

    pub async fn start_with(yaml: &str, options: Options) -> Self {
        let tables = Arc::new(TableHandle::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let test_proxy = Self {
            addr,
            tables: tables.clone(),
            options,
            stop: stop.clone(),
        };
        test_proxy.publish(yaml);
        let proxy = Arc::new(Proxy::new(tables, &UpstreamConfig::default()));
        tokio::spawn(proxy::serve(listener, proxy, ServerLimits::default(), stop));
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
