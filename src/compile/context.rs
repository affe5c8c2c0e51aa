//! What every per-kind compiler works with: an object's annotations read with typed parsers,
//! the sink its problems are reported to, and the oldest-first order that settles conflicts.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use foldhash::HashSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::annotations::Key;
use crate::table::{Diagnostic, ObjectRef};

use super::reasons;

/// An object's annotations, read with typed parsers. A value that does not parse is reported
/// (`InvalidAnnotation`, naming the annotation) and treated as absent, so that setting falls
/// back to its default while the rest of the object is used. A key vane honours under both
/// prefixes is read under `vane.dev/` first; a different value under ingress-nginx's prefix
/// is then reported (`AnnotationOverridden`) and not used.
pub struct Annotations<'a> {
    map: Option<&'a BTreeMap<String, String>>,
    object: &'a ObjectRef,
}

impl<'a> Annotations<'a> {
    pub fn new(map: Option<&'a BTreeMap<String, String>>, object: &'a ObjectRef) -> Self {
        Self { map, object }
    }

    pub fn parse<T>(
        &self,
        key: Key,
        parse: impl FnOnce(&str) -> Result<T, String>,
        sink: &mut Sink,
    ) -> Option<T> {
        let (key, value) = self.get(key, sink)?;
        parse(value)
            .map_err(|why| {
                sink.report(
                    self.object,
                    reasons::INVALID_ANNOTATION,
                    format!("{key}: {why}; the annotation is ignored"),
                )
            })
            .ok()
    }

    /// Like [`parse`](Self::parse), for a security setting: a value that does not parse is
    /// reported as refused, and `Err` says why, so that the caller fails closed rather than
    /// serving without the setting.
    pub fn parse_or_refuse<T>(
        &self,
        key: Key,
        parse: impl FnOnce(&str) -> Result<T, String>,
        sink: &mut Sink,
    ) -> Result<Option<T>, String> {
        let Some((key, value)) = self.get(key, sink) else {
            return Ok(None);
        };
        parse(value).map(Some).map_err(|why| {
            sink.report(
                self.object,
                reasons::REFUSED_ANNOTATION,
                format!(
                    "{key}: {why}; a security setting that cannot be applied is not skipped: \
                     the Ingress's routes answer 503 until it is fixed"
                ),
            );
            format!("{key} cannot be applied")
        })
    }

    /// Every annotation's name, in order.
    pub fn names(&self) -> impl Iterator<Item = &'a str> {
        self.map
            .into_iter()
            .flat_map(|map| map.keys().map(String::as_str))
    }

    /// Whether `key` is set under either prefix.
    pub fn has(&self, key: Key) -> bool {
        self.map.is_some_and(|map| {
            map.contains_key(key.vane) || key.nginx.is_some_and(|n| map.contains_key(n))
        })
    }

    /// The annotation `key` is read from, and its value.
    fn get(&self, key: Key, sink: &mut Sink) -> Option<(&'static str, &'a str)> {
        let map = self.map?;
        let nginx = key
            .nginx
            .and_then(|name| Some((name, map.get(name)?.as_str())));
        match (map.get(key.vane), nginx) {
            (Some(value), Some((name, other))) => {
                if value != other {
                    sink.report(
                        self.object,
                        reasons::ANNOTATION_OVERRIDDEN,
                        format!("{} is used; {name} ({other:?}) is ignored", key.vane),
                    );
                }
                Some((key.vane, value))
            }
            (Some(value), None) => Some((key.vane, value)),
            (None, nginx) => nginx,
        }
    }
}

/// Sorts objects oldest first (see [`order`]); equals keep their order.
pub(super) fn oldest_first<T>(
    objects: &mut [(T, ObjectRef)],
    metadata: impl Fn(&T) -> &ObjectMeta,
) {
    objects.sort_by(|(a, a_ref), (b, b_ref)| order((metadata(a), a_ref), (metadata(b), b_ref)));
}

/// The oldest-first order: by creationTimestamp, then namespace/name (which also orders
/// objects without a timestamp, as in standalone manifests).
pub(super) fn order(a: (&ObjectMeta, &ObjectRef), b: (&ObjectMeta, &ObjectRef)) -> Ordering {
    a.0.creation_timestamp
        .cmp(&b.0.creation_timestamp)
        .then_with(|| a.1.cmp(b.1))
}

/// Collects diagnostics, dropping exact repeats (one missing Service referenced by ten paths of
/// one Ingress is one problem).
#[derive(Default)]
pub struct Sink {
    pub(super) diagnostics: Vec<Diagnostic>,
    seen: HashSet<Diagnostic>,
}

impl Sink {
    /// Reports `diagnostics` (collected by another sink, or kept from an earlier compile), in
    /// their order.
    pub fn replay(&mut self, diagnostics: &[Diagnostic]) {
        for diagnostic in diagnostics {
            let message = diagnostic.message.clone();
            self.report(&diagnostic.object, diagnostic.reason, message);
        }
    }

    pub fn report(&mut self, object: &ObjectRef, reason: &'static str, message: String) {
        let diagnostic = Diagnostic {
            object: object.clone(),
            reason,
            message,
        };
        if self.seen.insert(diagnostic.clone()) {
            self.diagnostics.push(diagnostic);
        }
    }
}
