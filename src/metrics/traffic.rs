//! The traffic families: requests, their durations, upstream header times and bytes, by the
//! Ingress and Service that served them. The workers' counts are summed at scrape time
//! ([`Traffic::totals`]), and series of Ingresses the table no longer routes for are dropped.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::{counters, family};
use crate::live::ActiveTable;
use crate::proxy::traffic::{Attempts, Histogram, Tally, Traffic};
use crate::table::{BackendTarget, TrafficLabels};

/// `namespace`, `ingress`, `service`.
fn labels(labels: &TrafficLabels) -> [(&'static str, &str); 3] {
    [
        ("namespace", &labels.namespace),
        ("ingress", &labels.ingress),
        ("service", &labels.service),
    ]
}

/// Folds the workers' counts into the totals, keeping only the series `active` still routes
/// for and the endpoints it still has.
pub(super) fn fold(active: &ActiveTable, traffic: &Traffic) {
    let routed: HashSet<&TrafficLabels> = active
        .table
        .routes()
        .iter()
        .flat_map(|route| {
            let canary = route.canary.as_ref().map(|canary| &*canary.labels);
            std::iter::once(&*route.labels).chain(canary)
        })
        .collect();
    let members: HashSet<std::net::SocketAddr> = active
        .table
        .backends()
        .iter()
        .filter_map(|backend| match &backend.target {
            BackendTarget::Endpoints(endpoints) => Some(endpoints),
            BackendTarget::Invalid(_) => None,
        })
        .flatten()
        .map(|endpoint| endpoint.address)
        .collect();
    traffic.fold(
        |labels| routed.contains(labels),
        |endpoint| members.contains(&endpoint),
    );
}

pub(super) fn encode(
    active: &ActiveTable,
    traffic: &Traffic,
    encoder: &mut DescriptorEncoder,
) -> fmt::Result {
    fold(active, traffic);
    let totals = traffic.totals();

    let mut family = encoder.encode_descriptor(
        "requests",
        "Requests answered, by the Ingress and Service that served them (empty when no route \
         matched), method and status code.",
        None,
        MetricType::Counter,
    )?;
    for (key, tally) in &totals.series {
        let [namespace, ingress, service] = labels(&key.labels);
        let code = key.code.to_string();
        let series = [
            namespace,
            ingress,
            service,
            ("method", key.method.as_str()),
            ("code", code.as_str()),
        ];
        prometheus_client::metrics::counter::ConstCounter::new(tally.requests)
            .encode(family.encode_family(&series)?)?;
    }

    // The other families are by Ingress and Service only.
    let mut by_labels: BTreeMap<&TrafficLabels, Tally> = BTreeMap::new();
    for (key, tally) in &totals.series {
        by_labels.entry(&key.labels).or_default().add(tally);
    }
    histograms(
        encoder,
        "request_duration",
        "Time from the request head to the end of the response.",
        by_labels.iter().map(|(l, t)| (labels(l), &t.duration)),
    )?;
    histograms(
        encoder,
        "upstream_response_headers_duration",
        "Time from sending a request to an endpoint to its response headers (the answered \
         attempt).",
        by_labels
            .iter()
            .map(|(l, t)| (labels(l), &t.upstream_headers)),
    )?;
    counters(
        encoder,
        "request_body_bytes",
        "Request body bytes read from clients.",
        by_labels.iter().map(|(l, t)| (labels(l), t.request_bytes)),
    )?;
    counters(
        encoder,
        "response_body_bytes",
        "Response body bytes sent to clients.",
        by_labels.iter().map(|(l, t)| (labels(l), t.response_bytes)),
    )?;

    let endpoints: Vec<(String, Attempts)> = totals
        .endpoints
        .iter()
        .map(|(endpoint, attempts)| (endpoint.to_string(), *attempts))
        .collect();
    counters(
        encoder,
        "endpoint_upstream_requests",
        "Attempts sent to the endpoint, retries included.",
        endpoints
            .iter()
            .map(|(e, a)| ([("endpoint", e.as_str())], a.sent)),
    )?;
    let (open, opened, reused) = traffic.pools();
    super::gauges(
        encoder,
        "upstream_connections_open",
        "HTTP/1.1 connections to endpoints open (idle or busy), over every worker.",
        None,
        [([("protocol", "http1")], open as f64)],
    )?;
    counters(
        encoder,
        "upstream_connections_opened",
        "HTTP/1.1 connections dialled to endpoints.",
        [([("protocol", "http1")], opened)],
    )?;
    counters(
        encoder,
        "upstream_connection_reuses",
        "Requests sent over an HTTP/1.1 connection an earlier request used (keep-alive).",
        [([("protocol", "http1")], reused)],
    )?;
    counters(
        encoder,
        "endpoint_upstream_failures",
        "Attempts at the endpoint that got no response: a failed connect, a reset, a timeout.",
        endpoints
            .iter()
            .map(|(e, a)| ([("endpoint", e.as_str())], a.failed)),
    )
}

fn histograms<'t, L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (L, &'t Histogram)>,
) -> fmt::Result {
    let kind = (name, help, Some(&Unit::Seconds), MetricType::Histogram);
    family(encoder, kind, rows.map(|(labels, h)| (labels, Encoded(h))))
}

/// A histogram counted elsewhere, encoded as it is.
struct Encoded<'h>(&'h Histogram);

impl EncodeMetric for Encoded<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let buckets: Vec<(f64, u64)> = self.0.by_bound().collect();
        encoder.encode_histogram::<NoLabelSet>(self.0.sum, self.0.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}
