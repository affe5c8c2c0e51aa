//! The HTTP client the OTLP exporter posts with: [`tls::client::web_client`], over rustls for an
//! `https://` collector (verified against the web PKI, as upstream TLS is by default).
//!
//! The SDK's batch thread drives each export with a plain executor (`block_on`), which cannot
//! run hyper's connections: they need tokio's reactor. So each request is spawned on the runtime
//! the client was made on (the control plane's) and awaited from the batch thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry_http::{HttpClient, HttpError};
use tokio::runtime::Handle;
use tracing::{info, warn};

use crate::tls;

/// A collector's answer is a small protobuf message (partial success counts); more is refused.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Debug)]
pub struct Client {
    http: tls::client::WebClient<Full<Bytes>>,
    runtime: Handle,
    timeout: Duration,
    /// Whether the last export failed: failures are logged when they start and when they end,
    /// not once per batch.
    failing: AtomicBool,
}

impl Client {
    /// A client whose requests run on `runtime` and give up after `timeout`.
    pub fn new(runtime: Handle, timeout: Duration) -> Result<Self, String> {
        let http = tls::client::web_client()?;
        Ok(Self {
            http,
            runtime,
            timeout,
            failing: AtomicBool::new(false),
        })
    }

    /// Notes how an export to `endpoint` went, logging when exports start or stop failing.
    fn note(&self, endpoint: &http::Uri, failure: Option<String>) {
        match failure {
            Some(error) if !self.failing.swap(true, Ordering::Relaxed) => {
                warn!(%endpoint, %error, "cannot export spans; they are dropped until the collector takes them again");
            }
            None if self.failing.swap(false, Ordering::Relaxed) => {
                info!(%endpoint, "the collector takes spans again");
            }
            _ => {}
        }
    }
}

#[async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let endpoint = request.uri().clone();
        let (http, timeout) = (self.http.clone(), self.timeout);
        let exchange = async move {
            let response = http.request(request.map(Full::new)).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES).collect().await?;
            Ok::<_, HttpError>(Response::from_parts(parts, body.to_bytes()))
        };
        let timed = async move {
            tokio::time::timeout(timeout, exchange)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}").into()))
        };
        // A runtime that has shut down cancels the task: the export fails, nothing waits.
        let result = self.runtime.spawn(timed).await.map_err(HttpError::from);
        let result = result.and_then(|answered| answered);
        let failure = match &result {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("the collector answered {}", response.status())),
            Err(error) => Some(with_causes(error.as_ref())),
        };
        self.note(&endpoint, failure);
        result
    }
}

/// An error with its causes: hyper's own message ("client error (Connect)") says little.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}
