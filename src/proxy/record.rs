//! What is known about one request, from its head to the end of its response, for the traffic
//! metrics, the access log and vane's span. The record is filled as the request is routed and
//! forwarded, rides along with the response body, and reports itself when dropped: when the
//! body has been sent or abandoned, or, for a protocol switch, when the tunnel closes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{header, HeaderValue, Method, Request, StatusCode, Uri, Version};
use tokio::time::Instant;

use super::access_log::{AccessLog, Attempt, Entry};
use super::headers::ClientInfo;
use super::request_body::BodyBytes;
use super::span::{ServerSpan, Spans};
use super::trace::{self, RequestIds};
use super::traffic::{Attempted, Completed, MethodLabel, Shard};
use crate::table::TrafficLabels;
use crate::tls::ConnectionTls;

/// Where a worker's requests are reported.
#[derive(Debug)]
pub struct Reporter {
    pub shard: Arc<Shard>,
    /// The worker's own labels of requests no route served (empty ones; see [`Shard::labels`]
    /// for why each worker has its own).
    pub unmatched: Arc<TrafficLabels>,
    pub access_log: Option<AccessLog>,
    pub spans: Option<Spans>,
}

/// One request's record; reported when dropped.
pub struct RequestRecord {
    reporter: Arc<Reporter>,
    started: Instant,
    method: MethodLabel,
    labels: Arc<TrafficLabels>,
    status: u16,
    /// Time to the response headers of the attempt that was answered.
    upstream_headers: Option<Duration>,
    /// The latest attempt at an endpoint, counted with the request.
    last_attempt: Option<Attempted>,
    request_bytes: BodyBytes,
    response_bytes: u64,
    /// What only the access log needs; `None` when the request is not logged.
    log: Option<Box<LogFields>>,
    /// vane's span of the request, when it is recorded.
    span: Option<Box<ServerSpan>>,
    /// Moved to a tunnel, which reports it.
    handed_over: bool,
}

struct LogFields {
    time: SystemTime,
    client: IpAddr,
    method: Method,
    target: Uri,
    version: Version,
    host: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    referer: Option<HeaderValue>,
    tls: Option<Arc<ConnectionTls>>,
    ids: RequestIds,
    attempts: Vec<Attempt>,
}

impl RequestRecord {
    /// A record of `request`, which has just arrived from `client`. Settles the request's ID
    /// and trace context first (in its headers, which go upstream; `rng` makes new IDs and
    /// sampling decisions), and starts vane's span if the request is sampled. Copies only
    /// references (`Bytes` and `Arc` clones), and only when the access log is on.
    pub fn begin<B>(
        reporter: &Arc<Reporter>,
        request: &mut Request<B>,
        client: &ClientInfo,
        rng: &mut fastrand::Rng,
    ) -> Self {
        let started = Instant::now();
        let spans = reporter.spans.as_ref();
        let sample_ratio = spans.map(|spans| spans.sample_ratio);
        let (mut ids, parent) = trace::identify(request.headers_mut(), rng, sample_ratio);
        let span = spans.zip(parent).map(|(spans, parent)| {
            let span = ServerSpan::start(&spans.tracer, &parent, request, client, started);
            ids.trace_id = Some(trace::propagate(request.headers_mut(), span.context()));
            Box::new(span)
        });
        let log = reporter.access_log.as_ref().map(|_| {
            let header = |name| request.headers().get(name).cloned();
            Box::new(LogFields {
                time: SystemTime::now(),
                client: client.ip,
                method: request.method().clone(),
                target: request.uri().clone(),
                version: request.version(),
                host: header(header::HOST),
                user_agent: header(header::USER_AGENT),
                referer: header(header::REFERER),
                tls: client.tls.clone(),
                ids,
                attempts: Vec::new(),
            })
        });
        Self {
            reporter: reporter.clone(),
            started,
            method: MethodLabel::of(request.method()),
            labels: reporter.unmatched.clone(),
            status: 0,
            upstream_headers: None,
            last_attempt: None,
            request_bytes: BodyBytes::Known(0),
            response_bytes: 0,
            log,
            span,
            handed_over: false,
        }
    }

    /// The request matched a route: it counts for `labels` (the table's), and is logged if the
    /// route says so.
    pub fn routed(&mut self, labels: &Arc<TrafficLabels>, access_log: bool) {
        self.labels = self.reporter.shard.labels(labels);
        if !access_log {
            self.log = None;
        }
    }

    /// The request's body, whose bytes are counted when the record is reported.
    pub fn body(&mut self, bytes: BodyBytes) {
        self.request_bytes = bytes;
    }

    /// An attempt at `address` ended after `took`: answered with `status`, or failed.
    pub fn attempted(&mut self, address: SocketAddr, status: Option<StatusCode>, took: Duration) {
        if status.is_some() {
            self.upstream_headers = Some(took);
        }
        let attempt = Attempted {
            endpoint: address,
            answered: status.is_some(),
        };
        if let Some(retried) = self.last_attempt.replace(attempt) {
            self.reporter.shard.attempted(retried);
        }
        if let Some(span) = &mut self.span {
            span.attempted(address, status);
        }
        if let Some(log) = &mut self.log {
            log.attempts.push(Attempt {
                address,
                status: status.map(|s| s.as_u16()),
                took,
            });
        }
    }

    /// When the request arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn responded(&mut self, status: StatusCode) {
        self.status = status.as_u16();
    }

    /// Response body bytes sent to the client.
    pub fn sent(&mut self, bytes: u64) {
        self.response_bytes += bytes;
    }

    /// The record, for the tunnel of a protocol switch to report when it closes; this one
    /// reports nothing.
    pub fn hand_over(&mut self) -> RequestRecord {
        let record = RequestRecord {
            reporter: self.reporter.clone(),
            started: self.started,
            method: self.method,
            labels: self.labels.clone(),
            status: self.status,
            upstream_headers: self.upstream_headers,
            last_attempt: self.last_attempt.take(),
            request_bytes: std::mem::replace(&mut self.request_bytes, BodyBytes::Known(0)),
            response_bytes: self.response_bytes,
            log: self.log.take(),
            span: self.span.take(),
            handed_over: false,
        };
        self.handed_over = true;
        record
    }

    /// A tunnel closed after moving these bytes.
    pub fn tunnelled(&mut self, to_upstream: u64, to_client: u64) {
        self.request_bytes = BodyBytes::Known(to_upstream);
        self.response_bytes = to_client;
    }

    fn report(&mut self) {
        let span = self.span.take();
        let duration = self.started.elapsed();
        let request_bytes = self.request_bytes.get();
        let completed = Completed {
            labels: &self.labels,
            method: self.method,
            code: self.status,
            duration,
            upstream_headers: self.upstream_headers,
            request_bytes,
            response_bytes: self.response_bytes,
            last_attempt: self.last_attempt,
        };
        if let Some(span) = span {
            span.end(&completed);
        }
        self.reporter.shard.record(completed);
        let (Some(log), Some(access_log)) = (&self.log, &self.reporter.access_log) else {
            return;
        };
        fn text(value: Option<&HeaderValue>) -> std::borrow::Cow<'_, str> {
            value
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
                .unwrap_or_default()
        }
        fn id(value: Option<&HeaderValue>) -> &str {
            value.and_then(|v| v.to_str().ok()).unwrap_or("")
        }
        let user_agent = text(log.user_agent.as_ref());
        let referer = text(log.referer.as_ref());
        let host = log
            .target
            .authority()
            .map(|a| a.as_str())
            .or_else(|| log.host.as_ref().and_then(|h| h.to_str().ok()))
            .unwrap_or_default();
        let ids = &log.ids;
        access_log.log(&Entry {
            time: log.time,
            client: log.client,
            method: log.method.as_str(),
            host,
            target: log.target.path_and_query().map_or("/", |p| p.as_str()),
            protocol: protocol(log.version),
            status: self.status,
            request_bytes,
            response_bytes: self.response_bytes,
            duration,
            attempts: &log.attempts,
            namespace: &self.labels.namespace,
            ingress: &self.labels.ingress,
            service: &self.labels.service,
            request_id: id(Some(&ids.request_id)),
            trace_id: id(ids.trace_id.as_ref()),
            user_agent: &user_agent,
            referer: &referer,
            tls_version: log.tls.as_ref().map_or("", |tls| tls.version),
            sni: log
                .tls
                .as_ref()
                .and_then(|tls| tls.server_name.as_deref())
                .unwrap_or(""),
        });
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        if !self.handed_over {
            self.report();
        }
    }
}

/// As nginx's `$server_protocol` writes it.
fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "-",
    }
}
