//! vane's own span of a request, when spans are exported (`--otlp-endpoint`): kind SERVER,
//! named and described as OpenTelemetry's HTTP semantic conventions ask, from the request head
//! to the end of the response (the duration the metrics and the access log have too).
//!
//! A span is started only for a request `trace::identify` sampled, so an unsampled request costs
//! the SDK nothing (starting an SDK span, even one it would not record, clones the tracer: a
//! reference count every worker would touch).
//!
//! Attributes: `http.request.method` (`_OTHER` with `http.request.method_original` for a method
//! outside RFC 9110 and PATCH), `url.scheme`, `url.path` (not the query, which often carries
//! tokens), `server.address` and `server.port` (from the Host), `client.address`,
//! `network.protocol.version`, `user_agent.original`; when the response has ended
//! `http.response.status_code`, `http.request.body.size`, `http.response.body.size`, and for the
//! route that served it `k8s.namespace.name`, `vane.ingress` and `vane.service`. A 5xx answer, or
//! none, sets `error.type` and the status Error. Each try at an endpoint is an event `upstream`
//! with `network.peer.address`, `network.peer.port` and the status it answered, if any.

use std::net::SocketAddr;
use std::time::SystemTime;

use http::uri::Authority;
use http::{header, Request, StatusCode, Version};
use opentelemetry::trace::{Span as _, SpanContext, SpanKind, Status, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, Span};
use tokio::time::Instant;

use super::headers::ClientInfo;
use super::traffic::{Completed, MethodLabel};

/// Where the workers' spans go, and how many new traces they record.
#[derive(Clone, Debug)]
pub struct Spans {
    pub tracer: SdkTracer,
    /// The share of new traces (requests without a usable `traceparent`) recorded, 0 to 1.
    pub sample_ratio: f64,
}

/// One request's span, ended with its record.
pub struct ServerSpan {
    span: Span,
    /// When the request arrived, by the wall clock and by the record's clock. Every time the
    /// span reports is the first plus a duration of the second, so the span lasts exactly as
    /// long as the record says and its events fall within it.
    started: (SystemTime, Instant),
}

impl ServerSpan {
    /// Starts the span of `request`, which arrived from `client` at `arrived`, as a child of
    /// `parent` (a remote span, or none for a new trace).
    pub fn start<B>(
        tracer: &SdkTracer,
        parent: &Context,
        request: &Request<B>,
        client: &ClientInfo,
        arrived: Instant,
    ) -> Self {
        let started = SystemTime::now();
        let method = MethodLabel::of(request.method());
        let mut attributes = Vec::with_capacity(10);
        let name = match method {
            MethodLabel::Other => {
                attributes.push(KeyValue::new("http.request.method", "_OTHER"));
                attributes.push(KeyValue::new(
                    "http.request.method_original",
                    request.method().as_str().to_owned(),
                ));
                "HTTP"
            }
            known => {
                attributes.push(KeyValue::new("http.request.method", known.as_str()));
                known.as_str()
            }
        };
        attributes.push(KeyValue::new("url.scheme", client.scheme));
        attributes.push(KeyValue::new("url.path", request.uri().path().to_owned()));
        let host = request.uri().authority().cloned().or_else(|| {
            let host = request.headers().get(header::HOST)?;
            Authority::try_from(host.as_bytes()).ok()
        });
        if let Some(host) = host {
            attributes.push(KeyValue::new("server.address", host.host().to_owned()));
            if let Some(port) = host.port_u16() {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        attributes.push(KeyValue::new("client.address", client.ip.to_string()));
        attributes.push(KeyValue::new(
            "network.protocol.version",
            protocol_version(request.version()),
        ));
        if let Some(agent) = request.headers().get(header::USER_AGENT) {
            let agent = String::from_utf8_lossy(agent.as_bytes()).into_owned();
            attributes.push(KeyValue::new("user_agent.original", agent));
        }
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_start_time(started)
            .with_attributes(attributes)
            .start_with_context(tracer, parent);
        Self {
            span,
            started: (started, arrived),
        }
    }

    /// The span's identity, the parent of the upstream request.
    pub fn context(&self) -> &SpanContext {
        self.span.span_context()
    }

    /// A try at the endpoint at `address` ended: answered with `status`, or failed.
    pub fn attempted(&mut self, address: SocketAddr, status: Option<StatusCode>) {
        let mut attributes = vec![
            KeyValue::new("network.peer.address", address.ip().to_string()),
            KeyValue::new("network.peer.port", i64::from(address.port())),
        ];
        if let Some(status) = status {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status.as_u16()),
            ));
        }
        let (wall, arrived) = self.started;
        self.span
            .add_event_with_timestamp("upstream", wall + arrived.elapsed(), attributes);
    }

    /// Ends the span as the request's response ended, and hands it to the export queue.
    pub fn end(mut self, request: &Completed<'_>) {
        let labels = request.labels;
        let mut attributes = vec![
            KeyValue::new(
                "http.request.body.size",
                saturating_i64(request.request_bytes),
            ),
            KeyValue::new(
                "http.response.body.size",
                saturating_i64(request.response_bytes),
            ),
        ];
        // Empty labels: no route matched.
        if !labels.ingress.is_empty() {
            attributes.push(KeyValue::new(
                "k8s.namespace.name",
                labels.namespace.to_string(),
            ));
            attributes.push(KeyValue::new("vane.ingress", labels.ingress.to_string()));
            attributes.push(KeyValue::new("vane.service", labels.service.to_string()));
        }
        match request.code {
            // No response was sent (the client went away first).
            0 => {
                attributes.push(KeyValue::new("error.type", "no_response"));
                self.span.set_status(Status::error("no response was sent"));
            }
            code => {
                attributes.push(KeyValue::new("http.response.status_code", i64::from(code)));
                // A server span's error is a 5xx; a 4xx is the client's.
                if code >= 500 {
                    attributes.push(KeyValue::new("error.type", code.to_string()));
                    self.span.set_status(Status::error(""));
                }
            }
        }
        self.span.set_attributes(attributes);
        self.span
            .end_with_timestamp(self.started.0 + request.duration);
    }
}

fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "",
    }
}

fn saturating_i64(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}
