//! The annotations of an Ingress that vane does not honour, judged by [`compat::classify`]:
//! refused ones make its routes answer 503 (fail closed), ignored and unknown ones are reported
//! and the Ingress is served. One diagnostic per kind and Ingress, naming at most
//! [`MAX_NAMED`] annotations, so that an Ingress with hundreds of annotations cannot flood the
//! Events.

use super::{reasons, Annotations, Sink};
use crate::api::compat::{self, Status, Treatment};
use crate::table::ObjectRef;

/// Most annotations one diagnostic names; the rest are counted.
const MAX_NAMED: usize = 8;

/// Reports what `annotations` holds that vane does not honour, and returns why the Ingress's
/// routes are refused, if they are.
pub(super) fn screen(
    annotations: &Annotations<'_>,
    object: &ObjectRef,
    sink: &mut Sink,
) -> Option<Box<str>> {
    let mut refused = Vec::new();
    let mut ignored = Vec::new();
    let mut unknown = Vec::new();
    for name in annotations.names() {
        match compat::classify(name) {
            Some(Status::Known(Treatment::Refused(why))) => refused.push((name, why)),
            Some(Status::Known(Treatment::Ignored(why))) => ignored.push((name, why)),
            Some(Status::Unknown) => unknown.push(name),
            Some(Status::Known(Treatment::Honoured)) | None => {}
        }
    }
    let with_reasons = |entries: &[(&str, &str)]| {
        listed(entries.iter().map(|(name, why)| format!("{name} ({why})")))
    };
    if !ignored.is_empty() {
        sink.report(
            object,
            reasons::IGNORED_ANNOTATION,
            format!(
                "{}: not applied; the Ingress is served without them",
                with_reasons(&ignored)
            ),
        );
    }
    if !unknown.is_empty() {
        sink.report(
            object,
            reasons::UNKNOWN_ANNOTATION,
            format!(
                "{}: vane knows no such annotation (a typo?); ignored",
                listed(unknown.iter())
            ),
        );
    }
    if refused.is_empty() {
        return None;
    }
    sink.report(
        object,
        reasons::REFUSED_ANNOTATION,
        format!(
            "{}: vane does not apply these, and serving without them could expose the backend \
             or serve it otherwise than asked; the Ingress's routes answer 503 until they are \
             removed",
            with_reasons(&refused)
        ),
    );
    let names = listed(refused.iter().map(|(name, _)| name));
    Some(format!("{names} cannot be applied").into())
}

/// The first [`MAX_NAMED`] of `items`, joined with `; `, then how many more there are.
fn listed(items: impl ExactSizeIterator<Item = impl AsRef<str>>) -> String {
    let more = items.len().saturating_sub(MAX_NAMED);
    let mut text = items
        .take(MAX_NAMED)
        .map(|item| item.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}
