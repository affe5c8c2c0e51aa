//! An in-process OpenTelemetry collector: a hyper server on loopback that takes OTLP/HTTP
//! protobuf exports (`POST /v1/traces`), decodes them with the protocol's own types, and hands
//! every span to the test, with the resource it came with.
//!
//! [`start_silent`] starts one that takes connections and never answers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A span as the collector received it.
#[derive(Debug)]
pub struct Received {
    pub span: Span,
    /// Its resource's attributes.
    pub resource: BTreeMap<String, String>,
}

impl Received {
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// Empty for a root span.
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// The span's attribute `key`, as text.
    pub fn attribute(&self, key: &str) -> Option<String> {
        text_of(&self.span.attributes, key)
    }
}

/// `key`'s value among `attributes`, as text (numbers in decimal).
pub fn text_of(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(text) => Some(text.clone()),
        any_value::Value::IntValue(n) => Some(n.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        other => Some(format!("{other:?}")),
    }
}

pub struct Collector {
    pub addr: SocketAddr,
    spans: mpsc::UnboundedReceiver<Received>,
    stop: CancellationToken,
}

impl Collector {
    /// The URL vane posts to.
    pub fn endpoint(&self) -> Uri {
        format!("http://{}/v1/traces", self.addr).parse().unwrap()
    }

    /// The next span received, within 10 s.
    pub async fn next_span(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(10), self.spans.recv())
            .await
            .expect("a span within 10 s")
            .expect("the collector runs")
    }

    /// A span received so far, if any, without waiting.
    pub fn received(&mut self) -> Option<Received> {
        self.spans.try_recv().ok()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts a collector on 127.0.0.1.
pub async fn start() -> Collector {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sender, spans) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let serving = stop.clone();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = serving.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let sender = sender.clone();
            let service = service_fn(move |request| receive(request, sender.clone()));
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Collector { addr, spans, stop }
}

/// Starts a collector that accepts connections and reads nothing, answers nothing.
pub async fn start_silent() -> (Uri, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let serving = stop.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                _ = serving.cancelled() => return,
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        held.push(stream);
                    }
                }
            }
        }
    });
    (endpoint.parse().unwrap(), stop)
}

async fn receive(
    request: Request<Incoming>,
    spans: mpsc::UnboundedSender<Received>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let answer = |status: StatusCode, body: Vec<u8>| {
        Ok(Response::builder()
            .status(status)
            .header("content-type", "application/x-protobuf")
            .body(Full::from(body))
            .unwrap())
    };
    let protobuf = request
        .headers()
        .get("content-type")
        .is_some_and(|t| t == "application/x-protobuf");
    if request.method() != http::Method::POST || request.uri().path() != "/v1/traces" {
        return answer(StatusCode::NOT_FOUND, Vec::new());
    }
    if !protobuf {
        return answer(StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
    }
    let Ok(body) = request.into_body().collect().await else {
        return answer(StatusCode::BAD_REQUEST, Vec::new());
    };
    let Ok(export) = ExportTraceServiceRequest::decode(body.to_bytes()) else {
        return answer(StatusCode::BAD_REQUEST, Vec::new());
    };
    for resource_spans in export.resource_spans {
        let resource: BTreeMap<String, String> = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .filter_map(|kv| Some((kv.key.clone(), text_of(std::slice::from_ref(kv), &kv.key)?)))
            .collect();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                let _ = spans.send(Received {
                    span,
                    resource: resource.clone(),
                });
            }
        }
    }
    answer(
        StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
