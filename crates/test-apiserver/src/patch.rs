//! The formats of a PATCH request, chosen by its Content-Type: JSON merge patch (RFC 7386;
//! strategic merge patches are treated as merge patches), server-side apply (treated as a merge
//! patch that may create the object) and JSON patch (RFC 6902). The `json-patch` crate applies
//! them.

use std::fmt::Display;

use http::StatusCode;
use serde_json::Value;

use crate::error::ApiError;

pub(crate) enum Patch {
    Merge(Value),
    /// Server-side apply: the handler creates the object from it if there is none.
    Apply(Value),
    /// Kept as sent until applied: a malformed operation list is reported, like a failing
    /// operation, only once the object was found (a missing object is a 404 first).
    Json(Value),
}

impl Patch {
    /// Parses a PATCH body: 415 for a media type the server does not take, 400 for a body that is
    /// not JSON (YAML for apply).
    pub(crate) fn parse(content_type: &str, body: &[u8]) -> Result<Patch, ApiError> {
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        let json = || {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))
        };
        match media_type {
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                json().map(Patch::Merge)
            }
            "application/json-patch+json" => json().map(Patch::Json),
            "application/apply-patch+yaml" => serde_yaml_ng::from_slice(body)
                .map(Patch::Apply)
                .map_err(|e| ApiError::bad_request(format!("invalid YAML patch: {e}"))),
            other => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {other:?}"),
            )),
        }
    }

    /// Applies the patch to `doc`; a JSON patch that is not a list of operations, or whose
    /// operation fails (a `test` included), is 422 Invalid and leaves `doc` unchanged.
    pub(crate) fn apply(&self, doc: &mut Value) -> Result<(), ApiError> {
        match self {
            Patch::Merge(patch) | Patch::Apply(patch) => {
                json_patch::merge(doc, patch);
                Ok(())
            }
            Patch::Json(operations) => {
                let invalid = |e: &dyn Display| {
                    ApiError::invalid(format!("the JSON patch could not be applied: {e}"))
                };
                let operations: json_patch::Patch =
                    serde_json::from_value(operations.clone()).map_err(|e| invalid(&e))?;
                json_patch::patch(doc, &operations).map_err(|e| invalid(&e))
            }
        }
    }
}
