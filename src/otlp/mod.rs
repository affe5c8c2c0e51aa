//! OpenTelemetry span export (`--otlp-endpoint`): the tracer the proxy's workers record their
//! server spans with, and the exporter behind it.
//!
//! ```text
//!  worker: a span ends ─try_send─▶ queue (at most QUEUE_SPANS) ─▶ the SDK's batch thread
//!                       full: the span is dropped                  │ up to BATCH_SPANS at a time,
//!                                                                  │ every BATCH_DELAY
//!                                                                  ▼
//!          client.rs: POST /v1/traces (protobuf) on the control plane's runtime ─▶ collector
//! ```
//!
//! A worker only hands a finished span to the bounded queue of the SDK's `BatchSpanProcessor`;
//! it never waits for the collector, and a full queue drops the span. The SDK does not expose
//! how many it dropped (it counts them privately), so vane has no metric for them; a collector
//! that fails is logged by the client. A failed export is retried by the OTLP exporter
//! (backoff, at most 3 times) within `EXPORT_TIMEOUT`, then its batch is dropped.

mod client;

use std::time::Duration;

use http::Uri;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;

/// Finished spans waiting for export at most; beyond it they are dropped. At 1 to 2 KB a span,
/// a few MB.
pub const QUEUE_SPANS: usize = 2_048;
/// Spans in one export request at most.
pub const BATCH_SPANS: usize = 512;
/// The queue is exported at least this often (and whenever a batch is full).
pub const BATCH_DELAY: Duration = Duration::from_secs(5);
/// One export, retries included, gives up after this.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// At shutdown, the last export may take this long.
const FINISH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("cannot set up span export to {endpoint}: {reason}")]
pub struct StartError {
    endpoint: Uri,
    reason: String,
}

/// The export pipeline, to be finished at shutdown.
#[derive(Debug)]
pub struct Exporter {
    provider: SdkTracerProvider,
}

/// Starts exporting to `endpoint` (the collector's `/v1/traces`) and returns the tracer to
/// record spans with. Must be called on a tokio runtime, which the exports then run on; the
/// service name is `vane` (OTEL_RESOURCE_ATTRIBUTES adds attributes, and
/// OTEL_EXPORTER_OTLP_HEADERS headers, as the OpenTelemetry SDK reads them).
pub fn start(endpoint: &Uri) -> Result<(SdkTracer, Exporter), StartError> {
    let failed = |reason: String| StartError {
        endpoint: endpoint.clone(),
        reason,
    };
    let client =
        client::Client::new(tokio::runtime::Handle::current(), EXPORT_TIMEOUT).map_err(failed)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.to_string())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| failed(e.to_string()))?;
    // Set here rather than left to the SDK's defaults, which OTEL_BSP_* variables change: the
    // bound is part of vane's documented behaviour.
    let batches = BatchConfigBuilder::default()
        .with_max_queue_size(QUEUE_SPANS)
        .with_max_export_batch_size(BATCH_SPANS)
        .with_scheduled_delay(BATCH_DELAY)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(
            BatchSpanProcessor::builder(exporter)
                .with_batch_config(batches)
                .build(),
        )
        // The proxy decides what to sample before it starts a span (see `proxy::trace`), so
        // that an unsampled request never reaches the SDK.
        .with_sampler(Sampler::AlwaysOn)
        .with_resource(
            Resource::builder()
                .with_service_name("vane")
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build(),
        )
        .build();
    let tracer = provider.tracer("vane");
    Ok((tracer, Exporter { provider }))
}

impl Exporter {
    /// Exports every span queued so far, waiting (up to 5 s) for the collector: call it from a
    /// thread that may block, never from a runtime the exports need.
    pub fn flush(&self) -> Result<(), String> {
        self.provider.force_flush().map_err(|e| e.to_string())
    }

    /// Exports what is queued and stops. Call it once the workers have stopped, so no span
    /// ends after it, from a thread that may block.
    pub fn finish(self) {
        if let Err(error) = self.provider.shutdown_with_timeout(FINISH_TIMEOUT) {
            tracing::warn!(%error, "the last spans could not be exported");
        }
    }
}
