//! Canary Ingresses, with ingress-nginx's annotations and semantics: an Ingress marked
//! `vane.dev/canary: "true"` adds no routes of its own; each of its rules becomes the canary of
//! the route (same host, path and kind) served by another Ingress.

use std::collections::BTreeMap;

use super::{reasons, Sink};
use crate::api::annotations::{self, keys};
use crate::table::ObjectRef;

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
pub fn parse(
    annotations: Option<&BTreeMap<String, String>>,
    object: &ObjectRef,
    sink: &mut Sink,
) -> Option<CanarySettings> {
    let annotations = annotations?;
    let mut report = |key: &str, why: String| {
        sink.report(
            object,
            reasons::INVALID_ANNOTATION,
            format!("{key}: {why}; the annotation is ignored"),
        )
    };
    match annotations.get(keys::CANARY).map(|v| v.trim()) {
        Some("true") => {}
        None | Some("false") => return None,
        Some(other) => {
            report(keys::CANARY, format!("{other:?} is not true or false"));
            return None;
        }
    }
    let mut settings = CanarySettings::default();
    if let Some(value) = annotations.get(keys::CANARY_WEIGHT) {
        match annotations::parse_percent(value) {
            Ok(percent) => settings.weight_percent = percent,
            Err(why) => report(keys::CANARY_WEIGHT, why),
        }
    }
    if let Some(value) = annotations.get(keys::CANARY_BY_HEADER) {
        match annotations::parse_header_name(value) {
            Ok(name) => settings.by_header = Some(name),
            Err(why) => report(keys::CANARY_BY_HEADER, why),
        }
    }
    if let Some(value) = annotations.get(keys::CANARY_BY_HEADER_VALUE) {
        match annotations::parse_header_value(value) {
            Ok(value) => settings.header_value = Some(value),
            Err(why) => report(keys::CANARY_BY_HEADER_VALUE, why),
        }
    }
    if let Some(value) = annotations.get(keys::CANARY_BY_COOKIE) {
        match annotations::parse_cookie_name(value.trim()) {
            Ok(name) => settings.by_cookie = Some(name),
            Err(why) => report(keys::CANARY_BY_COOKIE, why),
        }
    }
    Some(settings)
}
