//! The connector of hyper-util's clients (HTTP/2 and TLS upstreams; HTTP/1.1 in the clear has
//! its own pool, `pool`, which is handed the route's connect timeout): TCP with the connect
//! timeout of the endpoint being dialled.
//!
//! Connection pools are per endpoint, and so are connect timeouts: the published table maps
//! each endpoint address to the shortest connect timeout of the routes that lead to it. The
//! connector looks it up when it dials, so the timeout follows the current table without
//! rebuilding the client (and its pools).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use crate::live::TableHandle;
use crate::table::Timeouts;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
pub struct TimedConnector {
    inner: HttpConnector,
    tables: Arc<TableHandle>,
}

#[derive(Debug, thiserror::Error)]
#[error("connect to {address} timed out after {timeout:?}")]
struct ConnectTimeout {
    address: String,
    timeout: std::time::Duration,
}

impl TimedConnector {
    pub fn new(inner: HttpConnector, tables: Arc<TableHandle>) -> Self {
        Self { inner, tables }
    }
}

impl Service<Uri> for TimedConnector {
    type Response = <HttpConnector as Service<Uri>>::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let address = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let timeout = address
            .parse::<SocketAddr>()
            .ok()
            .and_then(|a| self.tables.load().connect_timeouts.get(&a).copied())
            .unwrap_or(Timeouts::default().connect);
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(ConnectTimeout { address, timeout }.into()),
            }
        })
    }
}
