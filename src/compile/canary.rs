//! Canary Ingresses, with ingress-nginx's annotations and semantics: an Ingress marked
//! `vane.dev/canary: "true"` adds no routes of its own; each of its rules becomes the canary of
//! the route (same host, path and kind) served by another Ingress.

use super::{Annotations, Sink};
use crate::api::annotations::{self, keys};

/// The canary settings of one Ingress.
#[derive(Debug, Default)]
pub struct CanarySettings {
    pub weight_percent: u32,
    pub by_header: Option<http::HeaderName>,
    pub header_value: Option<http::HeaderValue>,
    pub by_cookie: Option<String>,
}

/// `Some` when the Ingress is a canary. Invalid values are reported; that setting is then left
/// at its default (no header, no cookie, weight 0), which never sends more traffic than asked.
pub fn parse(annotations: &Annotations<'_>, sink: &mut Sink) -> Option<CanarySettings> {
    if !annotations.parse(keys::CANARY, annotations::parse_bool, sink)? {
        return None;
    }
    Some(CanarySettings {
        weight_percent: annotations
            .parse(keys::CANARY_WEIGHT, annotations::parse_percent, sink)
            .unwrap_or(0),
        by_header: annotations.parse(keys::CANARY_BY_HEADER, annotations::parse_header_name, sink),
        header_value: annotations.parse(
            keys::CANARY_BY_HEADER_VALUE,
            annotations::parse_header_value,
            sink,
        ),
        by_cookie: annotations.parse(
            keys::CANARY_BY_COOKIE,
            |v| annotations::parse_cookie_name(v.trim()),
            sink,
        ),
    })
}
