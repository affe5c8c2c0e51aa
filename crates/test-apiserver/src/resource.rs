//! The kinds the fake API server serves ([`RESOURCES`]), and the conversions between the forms
//! an object takes: the stored form, the form of the request's API version, and the
//! metadata-only form; plus helpers for the `metadata` of an object held as JSON.

use serde_json::{json, Map, Value};

/// One served resource. The first entry of a kind is the form objects of that kind are stored in.
#[derive(Debug)]
pub(crate) struct Resource {
    pub(crate) kind: &'static str,
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
    pub(crate) plural: &'static str,
    pub(crate) namespaced: bool,
    /// Has a `status` subresource.
    pub(crate) status: bool,
}

const fn resource(
    kind: &'static str,
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    namespaced: bool,
    status: bool,
) -> Resource {
    Resource {
        kind,
        group,
        version,
        plural,
        namespaced,
        status,
    }
}

pub(crate) const RESOURCES: &[Resource] = &[
    resource(
        "IngressClass",
        "networking.k8s.io",
        "v1",
        "ingressclasses",
        false,
        false,
    ),
    resource(
        "Ingress",
        "networking.k8s.io",
        "v1",
        "ingresses",
        true,
        true,
    ),
    resource("Service", "", "v1", "services", true, true),
    resource(
        "EndpointSlice",
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        true,
        false,
    ),
    resource("Secret", "", "v1", "secrets", true, false),
    resource(
        "BackendPolicy",
        "vane.dev",
        "v1alpha1",
        "backendpolicies",
        true,
        true,
    ),
    resource("Lease", "coordination.k8s.io", "v1", "leases", true, false),
    // Stored form first: what kube's Recorder writes.
    resource("Event", "events.k8s.io", "v1", "events", true, false),
    resource("Event", "", "v1", "events", true, false),
];

/// Fields that are named differently in `v1` Events and `events.k8s.io/v1` Events.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

impl Resource {
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `services`, `ingresses.networking.k8s.io`: how the real server names it in messages.
    pub(crate) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub(crate) fn stored(&self) -> &'static Resource {
        by_kind(self.kind).expect("every kind has a stored form")
    }
}

pub(crate) fn by_kind(kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind)
}

pub(crate) fn by_type(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// Converts an object from the form of `from` into the form of `to`, setting apiVersion and kind.
pub(crate) fn convert(object: &Value, from: &Resource, to: &Resource) -> Value {
    let mut out = object.clone();
    let Some(map) = out.as_object_mut() else {
        return out;
    };
    if to.kind == "Event" && from.group != to.group {
        let to_core = to.group.is_empty();
        for (core, events) in EVENT_FIELDS {
            let (old, new) = if to_core {
                (events, core)
            } else {
                (core, events)
            };
            if let Some(value) = map.remove(*old) {
                map.insert(new.to_string(), value);
            }
        }
        if to_core {
            // Required by the v1 schema (and by k8s-openapi's deserializer).
            map.entry("involvedObject").or_insert_with(|| json!({}));
        }
    }
    map.insert("apiVersion".into(), to.api_version().into());
    map.insert("kind".into(), to.kind.into());
    out
}

/// The metadata-only form (`PartialObjectMetadata`).
pub(crate) fn partial(object: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

pub(crate) fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let map = object.as_object_mut().expect("just made an object");
    let metadata = map.entry("metadata").or_insert_with(|| json!({}));
    if !metadata.is_object() {
        *metadata = json!({});
    }
    metadata.as_object_mut().expect("just made an object")
}

pub(crate) fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}
