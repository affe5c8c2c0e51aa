//! An in-process fake Kubernetes API server on loopback, for tests that drive the real `kube`
//! client (typed `Api`s, `watcher`, `reflector`, `events::Recorder`) over plain HTTP.
//!
//! What it speaks, for the kinds in [`RESOURCES`]:
//! - list (`GET` a collection): `fieldSelector` (any dotted field, `=`, `==`, `!=`) and
//!   `labelSelector` (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`); `limit` is ignored (one page,
//!   no `continue`); `resourceVersionMatch=Exact` answers the state at that version from the
//!   history, or 410 Expired if it was compacted; any other list answers the current state, as
//!   the real server does for `NotOlderThan`, `0` or no version;
//! - watch (`GET` a collection with `watch=true`): newline-delimited JSON events over a chunked
//!   stream. From `resourceVersion=N` it replays history after N (410 ERROR event if N was
//!   compacted); with no version or `0` it first sends ADDED for every current object; with
//!   `sendInitialEvents=true` it also sends the `k8s.io/initial-events-end` BOOKMARK (streaming
//!   lists); `allowWatchBookmarks=true` adds a BOOKMARK every second; `timeoutSeconds` ends the
//!   stream. An object that stops (starts) matching the selectors is sent as DELETED (ADDED);
//! - get, create (`generateName` too), replace (optimistic concurrency on
//!   `metadata.resourceVersion`), patch (merge, strategic treated as merge, server-side apply
//!   treated as a merge that creates, JSON patch), delete, and the `status` subresource of the
//!   kinds that have one (a write to the object keeps its status, a write to `/status` changes
//!   only the status). A write that changes nothing (patch or replace) is a no-op, like the real
//!   server: no new resourceVersion, no watch event;
//! - the metadata-only form (`Accept: ...;as=PartialObjectMetadata[List]`) used by
//!   `metadata_watcher`;
//! - errors are meta/v1 `Status` objects with the real reasons and codes.
//!
//! Events are accepted under both `v1` and `events.k8s.io/v1`, stored once in the
//! `events.k8s.io/v1` form (what `kube::runtime::events::Recorder` writes) and converted on the
//! way out, so [`ApiServer::list`]`("Event")` always shows `events.k8s.io/v1` objects.
//!
//! Not modelled: finalizers and graceful deletion, field ownership of server-side apply, admission,
//! validation, discovery (only `/version` and the health endpoints answer).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::future::pending;
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

/// One served resource. The first entry of a kind is the form objects of that kind are stored in.
#[derive(Debug)]
struct Resource {
    kind: &'static str,
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    namespaced: bool,
    /// Has a `status` subresource.
    status: bool,
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

const RESOURCES: &[Resource] = &[
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
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `services`, `ingresses.networking.k8s.io`: how the real server names it in messages.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn stored(&self) -> &'static Resource {
        by_kind(self.kind).expect("every kind has a stored form")
    }
}

fn by_kind(kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind)
}

fn by_type(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// Converts an object from the form of `from` into the form of `to`, setting apiVersion and kind.
fn convert(object: &Value, from: &Resource, to: &Resource) -> Value {
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
fn partial(object: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
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

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Everything that counts for `metadata.generation`: all but apiVersion, kind, metadata, status.
fn spec_of(object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(map) = out.as_object_mut() {
        for field in ["apiVersion", "kind", "metadata", "status"] {
            map.remove(field);
        }
    }
    out
}

fn now_rfc3339() -> String {
    use k8s_openapi::jiff::Timestamp;
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second())
        .expect("now is a valid timestamp")
        .to_string()
}

/// Five characters like the real server appends to `generateName`.
fn random_suffix(seed: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = std::collections::hash_map::RandomState::new().hash_one(seed);
    (0..5)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize];
            x /= ALPHABET.len() as u64;
            c as char
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Errors

#[derive(Debug)]
struct ApiError {
    code: StatusCode,
    reason: &'static str,
    message: String,
    details: Option<Value>,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn about(mut self, res: &Resource, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": res.group, "kind": res.plural}));
        self
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    fn not_found(res: &Resource, name: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", res.qualified()),
        )
        .about(res, name)
    }

    fn conflict(res: &Resource, name: &str) -> Self {
        ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                res.qualified()
            ),
        )
        .about(res, name)
    }

    fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
    }

    fn expired(requested: u64, oldest: u64) -> Self {
        ApiError::new(
            StatusCode::GONE,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    fn method_not_allowed() -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }

    fn response(&self) -> Response<Body> {
        json_response(self.code, &self.status())
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(full(serde_json::to_vec(value).expect("JSON")));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

// ---------------------------------------------------------------------------------------------
// The store

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One write, as watches replay it.
struct Change {
    rv: u64,
    kind: &'static str,
    namespace: String,
    change: ChangeType,
    /// The object after the write (for a delete: the last state, with the delete's version).
    object: Value,
    /// The object before a modification.
    previous: Option<Value>,
}

/// (kind, namespace or "", name)
type Key = (&'static str, String, String);

struct Store {
    /// The global resourceVersion: the version of the last write.
    rv: u64,
    /// Watches and exact lists from a version older than this get 410.
    compacted: u64,
    next_uid: u64,
    /// Objects in their stored form.
    objects: BTreeMap<Key, Value>,
    /// Every write since the start (compaction only moves `compacted`).
    history: Vec<Change>,
    /// Tells watches that `rv` moved.
    notify: watch::Sender<u64>,
}

fn key(res: &Resource, namespace: Option<&str>, name: &str) -> Key {
    let namespace = if res.namespaced {
        namespace.unwrap_or("default").to_string()
    } else {
        String::new()
    };
    (res.stored().kind, namespace, name.to_string())
}

impl Store {
    fn new() -> Self {
        Store {
            rv: 1,
            compacted: 0,
            next_uid: 1,
            objects: BTreeMap::new(),
            history: Vec::new(),
            notify: watch::Sender::new(1),
        }
    }

    fn objects_of<'a>(&'a self, res: &Resource) -> impl Iterator<Item = &'a Value> + 'a {
        let kind = res.stored().kind;
        self.objects
            .iter()
            .filter(move |((k, _, _), _)| *k == kind)
            .map(|(_, v)| v)
    }

    /// The objects of a kind as they were at version `rv` (rebuilt from the history).
    fn objects_at(&self, res: &Resource, rv: u64) -> Vec<Value> {
        let kind = res.stored().kind;
        let mut state: BTreeMap<(String, String), Option<&Value>> = BTreeMap::new();
        for change in self.history.iter().take_while(|c| c.rv <= rv) {
            if change.kind != kind {
                continue;
            }
            let name = meta_str(&change.object, "name")
                .unwrap_or_default()
                .to_string();
            let entry = (change.namespace.clone(), name);
            let object = (change.change != ChangeType::Deleted).then_some(&change.object);
            state.insert(entry, object);
        }
        state.into_values().flatten().cloned().collect()
    }

    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Stores `object` (stored form, name and namespace set, server-owned metadata either set by
    /// the caller or to be filled in here). Unless `force`, a write that changes nothing keeps
    /// the stored object and emits nothing.
    fn write(&mut self, res: &Resource, mut object: Value, force: bool) -> Value {
        let res = res.stored();
        let name = meta_str(&object, "name").expect("write of an object without a name");
        let key = key(res, meta_str(&object, "namespace"), name);
        let old = self.objects.get(&key).cloned();
        let spec_changed = old
            .as_ref()
            .is_some_and(|old| spec_of(old) != spec_of(&object));
        {
            let metadata = metadata_mut(&mut object);
            metadata.remove("resourceVersion");
            match &old {
                Some(old) => {
                    let old_meta = &old["metadata"];
                    metadata.insert("uid".into(), old_meta["uid"].clone());
                    if !metadata.contains_key("creationTimestamp") {
                        metadata.insert(
                            "creationTimestamp".into(),
                            old_meta["creationTimestamp"].clone(),
                        );
                    }
                    let generation = old_meta["generation"].as_i64().unwrap_or(1);
                    metadata.insert(
                        "generation".into(),
                        (generation + i64::from(spec_changed)).into(),
                    );
                }
                None => {
                    let uid = self.next_uid;
                    self.next_uid += 1;
                    metadata.insert(
                        "uid".into(),
                        format!("00000000-0000-4000-8000-{uid:012x}").into(),
                    );
                    if metadata
                        .get("creationTimestamp")
                        .is_none_or(|t| t.as_str().is_none_or(str::is_empty))
                    {
                        metadata.insert("creationTimestamp".into(), now_rfc3339().into());
                    }
                    metadata.insert("generation".into(), 1.into());
                }
            }
        }
        if let Some(old) = &old {
            let mut unversioned = old.clone();
            metadata_mut(&mut unversioned).remove("resourceVersion");
            if !force && unversioned == object {
                return old.clone();
            }
        }
        let rv = self.bump();
        metadata_mut(&mut object).insert("resourceVersion".into(), rv.to_string().into());
        self.objects.insert(key.clone(), object.clone());
        self.history.push(Change {
            rv,
            kind: res.kind,
            namespace: key.1,
            change: if old.is_some() {
                ChangeType::Modified
            } else {
                ChangeType::Added
            },
            object: object.clone(),
            previous: old,
        });
        self.notify.send_replace(rv);
        object
    }

    fn create(
        &mut self,
        res: &'static Resource,
        namespace: Option<&str>,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        let res = res.stored();
        let metadata = metadata_mut(&mut object);
        for field in ["resourceVersion", "uid", "creationTimestamp", "generation"] {
            metadata.remove(field);
        }
        if res.namespaced {
            metadata.insert(
                "namespace".into(),
                namespace.unwrap_or("default").to_string().into(),
            );
        } else {
            metadata.remove("namespace");
        }
        let name = match metadata.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => {
                let Some(prefix) = metadata
                    .get("generateName")
                    .and_then(Value::as_str)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                else {
                    return Err(ApiError::invalid(format!(
                        "{} is invalid: metadata.name: Required value: name or generateName is required",
                        res.kind
                    )));
                };
                let mut seed = self.rv;
                loop {
                    let candidate = format!("{prefix}{}", random_suffix(seed));
                    if !self.objects.contains_key(&key(res, namespace, &candidate)) {
                        break candidate;
                    }
                    seed += 1;
                }
            }
        };
        metadata.insert("name".into(), name.clone().into());
        if self.objects.contains_key(&key(res, namespace, &name)) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", res.qualified()),
            )
            .about(res, &name));
        }
        Ok(self.write(res, object, true))
    }

    fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        let rv = self.bump();
        metadata_mut(&mut object).insert("resourceVersion".into(), rv.to_string().into());
        self.history.push(Change {
            rv,
            kind: key.0,
            namespace: key.1.clone(),
            change: ChangeType::Deleted,
            object: object.clone(),
            previous: None,
        });
        self.notify.send_replace(rv);
        Some(object)
    }
}

// ---------------------------------------------------------------------------------------------
// Selectors

#[derive(Debug)]
enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_labels(selector: &str) -> Result<Vec<LabelReq>, ApiError> {
    let bad = || ApiError::bad_request(format!("unable to parse requirement: {selector:?}"));
    let mut reqs = Vec::new();
    for term in split_terms(selector) {
        let req = if let Some(key) = term.strip_prefix('!') {
            LabelReq::NotExists(key.trim().to_string())
        } else if let Some((key, value)) = term.split_once("!=") {
            LabelReq::Ne(key.trim().into(), value.trim().into())
        } else if let Some((key, value)) = term.split_once("==") {
            LabelReq::Eq(key.trim().into(), value.trim().into())
        } else if let Some((key, value)) = term.split_once('=') {
            LabelReq::Eq(key.trim().into(), value.trim().into())
        } else if let Some(open) = term.find('(') {
            let values: Vec<String> = term[open + 1..]
                .trim_end()
                .strip_suffix(')')
                .ok_or_else(bad)?
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            let words: Vec<&str> = term[..open].split_whitespace().collect();
            match words.as_slice() {
                [key, "in"] => LabelReq::In(key.to_string(), values),
                [key, "notin"] => LabelReq::NotIn(key.to_string(), values),
                _ => return Err(bad()),
            }
        } else if term.split_whitespace().count() == 1 {
            LabelReq::Exists(term.to_string())
        } else {
            return Err(bad());
        };
        let key = match &req {
            LabelReq::Eq(k, _)
            | LabelReq::Ne(k, _)
            | LabelReq::In(k, _)
            | LabelReq::NotIn(k, _)
            | LabelReq::Exists(k)
            | LabelReq::NotExists(k) => k,
        };
        if key.is_empty() {
            return Err(bad());
        }
        reqs.push(req);
    }
    Ok(reqs)
}

impl LabelReq {
    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let get = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        match self {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::Ne(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelReq::NotIn(k, vs) => !get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        }
    }
}

#[derive(Debug)]
struct FieldReq {
    path: Vec<String>,
    value: String,
    negate: bool,
}

fn parse_fields(selector: &str) -> Result<Vec<FieldReq>, ApiError> {
    let mut reqs = Vec::new();
    for term in split_terms(selector) {
        let (path, value, negate) = if let Some((p, v)) = term.split_once("!=") {
            (p, v, true)
        } else if let Some((p, v)) = term.split_once("==") {
            (p, v, false)
        } else if let Some((p, v)) = term.split_once('=') {
            (p, v, false)
        } else {
            return Err(ApiError::bad_request(format!(
                "invalid selector: '{selector}'; can't understand '{term}'"
            )));
        };
        reqs.push(FieldReq {
            path: path.trim().split('.').map(str::to_string).collect(),
            value: value.trim().to_string(),
            negate,
        });
    }
    Ok(reqs)
}

impl FieldReq {
    fn matches(&self, object: &Value) -> bool {
        let found = self
            .path
            .iter()
            .try_fold(object, |v, segment| v.get(segment.as_str()));
        let actual = match found {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        (actual == self.value) != self.negate
    }
}

/// Which objects a list or watch sees, and in which form.
struct Filter {
    res: &'static Resource,
    namespace: Option<String>,
    fields: Vec<FieldReq>,
    labels: Vec<LabelReq>,
    meta_only: bool,
}

impl Filter {
    fn new(
        target: &Target,
        query: &HashMap<String, String>,
        meta_only: bool,
    ) -> Result<Filter, ApiError> {
        Ok(Filter {
            res: target.res,
            namespace: target.namespace.clone(),
            fields: parse_fields(query.get("fieldSelector").map_or("", String::as_str))?,
            labels: parse_labels(query.get("labelSelector").map_or("", String::as_str))?,
            meta_only,
        })
    }

    fn in_scope(&self, kind: &str, namespace: &str) -> bool {
        kind == self.res.kind && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
    }

    fn selects(&self, view: &Value) -> bool {
        let labels = view
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        self.fields.iter().all(|f| f.matches(view)) && self.labels.iter().all(|l| l.matches(labels))
    }

    /// The requested form of a stored object.
    fn output(&self, view: Value) -> Value {
        if self.meta_only {
            partial(&view)
        } else {
            view
        }
    }

    /// The requested form of a stored object, if it is in scope and selected.
    fn project(&self, stored: &Value) -> Option<Value> {
        let namespace = meta_str(stored, "namespace").unwrap_or_default();
        if !self.in_scope(self.res.kind, namespace) {
            return None;
        }
        let view = convert(stored, self.res.stored(), self.res);
        self.selects(&view).then(|| self.output(view))
    }

    /// What a watch sends for a change, if anything.
    fn translate(&self, change: &Change) -> Option<(&'static str, Value)> {
        if !self.in_scope(change.kind, &change.namespace) {
            return None;
        }
        match change.change {
            ChangeType::Added => self.project(&change.object).map(|o| ("ADDED", o)),
            ChangeType::Deleted => self.project(&change.object).map(|o| ("DELETED", o)),
            ChangeType::Modified => {
                let now = self.project(&change.object);
                let before = change.previous.as_ref().and_then(|p| self.project(p));
                match (now, before) {
                    (Some(now), Some(_)) => Some(("MODIFIED", now)),
                    (Some(now), None) => Some(("ADDED", now)),
                    (None, Some(mut before)) => {
                        metadata_mut(&mut before)
                            .insert("resourceVersion".into(), change.rv.to_string().into());
                        Some(("DELETED", before))
                    }
                    (None, None) => None,
                }
            }
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let (api_version, kind) = if self.meta_only {
            ("meta.k8s.io/v1".to_string(), "PartialObjectMetadata")
        } else {
            (self.res.api_version(), self.res.kind)
        };
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"apiVersion": api_version, "kind": kind, "metadata": metadata})
    }
}

fn event_line(kind: &str, object: Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("JSON");
    line.push(b'\n');
    line.into()
}

// ---------------------------------------------------------------------------------------------
// Watch streams

struct WatchStream {
    shared: Arc<Shared>,
    filter: Filter,
    /// Every change up to this version has been sent (or filtered out).
    last: u64,
    pending: VecDeque<Bytes>,
    changes: watch::Receiver<u64>,
    stop: CancellationToken,
    deadline: Option<Instant>,
    bookmarks: Option<Interval>,
}

impl WatchStream {
    fn scan(&mut self) {
        let store = self.shared.store.lock().unwrap();
        let start = store.history.partition_point(|c| c.rv <= self.last);
        for change in &store.history[start..] {
            if let Some((kind, object)) = self.filter.translate(change) {
                self.pending.push_back(event_line(kind, object));
            }
        }
        self.last = store.rv;
    }

    async fn next(mut self) -> Option<(Result<Frame<Bytes>, Infallible>, Self)> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some((Ok(Frame::data(chunk)), self));
            }
            // Mark the current version seen before reading the history, so that no write is
            // missed between the two.
            self.changes.borrow_and_update();
            self.scan();
            if !self.pending.is_empty() {
                continue;
            }
            let deadline = self.deadline;
            let timeout = async move {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => pending().await,
                }
            };
            let bookmark_due = async {
                match self.bookmarks.as_mut() {
                    Some(interval) => {
                        interval.tick().await;
                    }
                    None => pending().await,
                }
            };
            let bookmark = tokio::select! {
                _ = self.stop.cancelled() => return None,
                _ = timeout => return None,
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    false
                }
                _ = bookmark_due => true,
            };
            if bookmark {
                let object = self.filter.bookmark(self.last, false);
                self.pending.push_back(event_line("BOOKMARK", object));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Routing and handlers

struct Target {
    res: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn route(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, plural, tail) = match rest {
        ["namespaces", namespace, plural, tail @ ..] => (Some(*namespace), *plural, tail),
        [plural, tail @ ..] => (None, *plural, tail),
        [] => return None,
    };
    let res = RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)?;
    let (name, status) = match tail {
        [] => (None, false),
        [name] => (Some(*name), false),
        [name, "status"] if res.status => (Some(*name), true),
        _ => return None,
    };
    if namespace.is_some() && !res.namespaced
        || namespace.is_none() && res.namespaced && name.is_some()
        || namespace.is_some_and(str::is_empty)
        || name.is_some_and(str::is_empty)
    {
        return None;
    }
    Some(Target {
        res,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        status,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn is_true(query: &HashMap<String, String>, name: &str) -> bool {
    matches!(query.get(name).map(String::as_str), Some("true" | "1"))
}

fn parse_rv(rv: &str) -> Result<u64, ApiError> {
    rv.parse().map_err(|_| {
        ApiError::invalid(format!(
            "resourceVersion: Invalid value: {rv:?}: must be a valid resource version"
        ))
    })
}

fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    Ok(value)
}

struct Shared {
    store: Mutex<Store>,
    requests: Mutex<Vec<(Method, String)>>,
}

async fn handle(
    shared: Arc<Shared>,
    stop: CancellationToken,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    shared
        .requests
        .lock()
        .unwrap()
        .push((request.method().clone(), target));
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return Ok(ApiError::bad_request(format!("reading body: {e}")).response()),
    };
    Ok(dispatch(&shared, &stop, &parts, &body).unwrap_or_else(|e| e.response()))
}

fn dispatch(
    shared: &Arc<Shared>,
    stop: &CancellationToken,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let path = parts.uri.path();
    match path {
        "/version" => {
            return Ok(json_response(
                StatusCode::OK,
                &json!({
                    "major": "1", "minor": "33", "gitVersion": "v1.33.0-vane-fake",
                    "gitCommit": "", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                    "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
                }),
            ));
        }
        "/healthz" | "/readyz" | "/livez" => return Ok(Response::new(full("ok"))),
        _ => {}
    }
    let Some(target) = route(path) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        ));
    };
    let query = parse_query(parts.uri.query().unwrap_or(""));
    let meta_only = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
    let filter = Filter::new(&target, &query, meta_only)?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .unwrap_or("");
    match (&target.name, &parts.method) {
        (None, &Method::GET) if is_true(&query, "watch") => {
            start_watch(shared, stop, filter, &query)
        }
        (None, &Method::GET) => list(shared, &filter, &query),
        (None, &Method::POST) => create(shared, &target, &filter, body),
        (Some(name), &Method::GET) => {
            let store = shared.store.lock().unwrap();
            let stored = store
                .objects
                .get(&key(target.res, target.namespace.as_deref(), name))
                .ok_or_else(|| ApiError::not_found(target.res, name))?;
            let view = convert(stored, target.res.stored(), target.res);
            Ok(json_response(StatusCode::OK, &filter.output(view)))
        }
        (Some(name), &Method::PUT) => replace(shared, &target, name, &filter, body),
        (Some(name), &Method::PATCH) => patch(shared, &target, name, &filter, content_type, body),
        (Some(name), &Method::DELETE) if !target.status => {
            let mut store = shared.store.lock().unwrap();
            let deleted = store
                .remove(&key(target.res, target.namespace.as_deref(), name))
                .ok_or_else(|| ApiError::not_found(target.res, name))?;
            let view = convert(&deleted, target.res.stored(), target.res);
            Ok(json_response(StatusCode::OK, &filter.output(view)))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn list(
    shared: &Arc<Shared>,
    filter: &Filter,
    query: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let rv = query.get("resourceVersion").filter(|v| !v.is_empty());
    let version_match = query.get("resourceVersionMatch").filter(|v| !v.is_empty());
    let store = shared.store.lock().unwrap();
    let (rv, objects) = match (version_match.map(String::as_str), rv) {
        (Some(_), None) => {
            return Err(ApiError::invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
            ))
        }
        (Some("Exact"), Some(rv)) => {
            let rv = parse_rv(rv)?;
            if rv < store.compacted {
                return Err(ApiError::expired(rv, store.compacted));
            }
            if rv >= store.rv {
                (store.rv, store.objects_of(filter.res).cloned().collect())
            } else {
                (rv, store.objects_at(filter.res, rv))
            }
        }
        (Some("NotOlderThan") | None, rv) => {
            if let Some(rv) = rv {
                parse_rv(rv)?;
            }
            (store.rv, store.objects_of(filter.res).cloned().collect::<Vec<_>>())
        }
        (Some(other), _) => {
            return Err(ApiError::invalid(format!(
                "resourceVersionMatch: Unsupported value: {other:?}"
            )))
        }
    };
    drop(store);
    let items: Vec<Value> = objects.iter().filter_map(|o| filter.project(o)).collect();
    let (api_version, kind) = if filter.meta_only {
        (
            "meta.k8s.io/v1".to_string(),
            "PartialObjectMetadataList".to_string(),
        )
    } else {
        (filter.res.api_version(), format!("{}List", filter.res.kind))
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        }),
    ))
}

fn start_watch(
    shared: &Arc<Shared>,
    stop: &CancellationToken,
    filter: Filter,
    query: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let rv = query
        .get("resourceVersion")
        .map(String::as_str)
        .filter(|v| !v.is_empty() && *v != "0");
    let initial_events = is_true(query, "sendInitialEvents");
    let timeout = match query.get("timeoutSeconds") {
        Some(t) => {
            let seconds: u64 = t
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?;
            (seconds > 0).then(|| Instant::now() + Duration::from_secs(seconds))
        }
        None => None,
    };
    let mut pending = VecDeque::new();
    let store = shared.store.lock().unwrap();
    let last = match rv {
        Some(rv) if !initial_events => {
            let rv = parse_rv(rv)?;
            if rv < store.compacted {
                // The real server answers 200 and sends the error as the only event.
                let status = ApiError::expired(rv, store.compacted).status();
                let mut response = Response::new(full(event_line("ERROR", status)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                return Ok(response);
            }
            rv
        }
        _ => {
            // No version (or 0), or a streaming list: start with the current state.
            for object in store.objects_of(filter.res) {
                if let Some(object) = filter.project(object) {
                    pending.push_back(event_line("ADDED", object));
                }
            }
            if initial_events {
                pending.push_back(event_line("BOOKMARK", filter.bookmark(store.rv, true)));
            }
            store.rv
        }
    };
    let changes = store.notify.subscribe();
    drop(store);
    let bookmarks = is_true(query, "allowWatchBookmarks").then(|| {
        let mut interval =
            tokio::time::interval_at(Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    });
    let stream = WatchStream {
        shared: shared.clone(),
        filter,
        last,
        pending,
        changes,
        stop: stop.clone(),
        deadline: timeout,
        bookmarks,
    };
    let body = StreamBody::new(futures_util::stream::unfold(stream, WatchStream::next));
    let mut response = Response::new(BodyExt::boxed_unsync(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Checks the namespace in the body against the URL's, and fills it in.
fn check_namespace(target: &Target, object: &mut Value) -> Result<(), ApiError> {
    if !target.res.namespaced {
        metadata_mut(object).remove("namespace");
        return Ok(());
    }
    let namespace = target.namespace.as_deref().unwrap_or("default");
    match meta_str(object, "namespace") {
        Some(ns) if ns != namespace => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            metadata_mut(object).insert("namespace".into(), namespace.into());
            Ok(())
        }
    }
}

fn create(
    shared: &Arc<Shared>,
    target: &Target,
    filter: &Filter,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    if target.res.namespaced && target.namespace.is_none() {
        return Err(ApiError::method_not_allowed());
    }
    let mut object = parse_object(body)?;
    check_namespace(target, &mut object)?;
    if target.res.status {
        // The status subresource owns the status: a create starts without one.
        object.as_object_mut().expect("an object").remove("status");
    }
    let object = convert(&object, target.res, target.res.stored());
    let created =
        shared
            .store
            .lock()
            .unwrap()
            .create(target.res, target.namespace.as_deref(), object)?;
    let view = convert(&created, target.res.stored(), target.res);
    Ok(json_response(StatusCode::CREATED, &filter.output(view)))
}

/// Applies a write to the object at `target`: `new` is the wanted object in the form of the
/// request. Checks the resourceVersion precondition, keeps what the request may not change
/// (status on the object, everything but status on `/status`, server-owned metadata) and stores.
fn update(
    store: &mut Store,
    target: &Target,
    name: &str,
    old_stored: &Value,
    new: Value,
) -> Result<Value, ApiError> {
    let res = target.res;
    let old = convert(old_stored, res.stored(), res);
    if let Some(rv) = meta_str(&new, "resourceVersion") {
        if Some(rv) != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(res, name));
        }
    }
    let mut result = if target.status {
        let mut result = old.clone();
        let map = result.as_object_mut().expect("an object");
        match new.get("status") {
            Some(status) => map.insert("status".into(), status.clone()),
            None => map.remove("status"),
        };
        result
    } else {
        let mut result = new;
        if res.status {
            let map = result.as_object_mut().expect("an object");
            match old.get("status") {
                Some(status) => map.insert("status".into(), status.clone()),
                None => map.remove("status"),
            };
        }
        result
    };
    {
        let old_meta = &old["metadata"];
        let metadata = metadata_mut(&mut result);
        for field in ["name", "namespace", "uid", "creationTimestamp"] {
            match old_meta.get(field) {
                Some(value) => metadata.insert(field.into(), value.clone()),
                None => metadata.remove(field),
            };
        }
        metadata.remove("generation");
    }
    let stored = store.write(res, convert(&result, res, res.stored()), false);
    Ok(convert(&stored, res.stored(), res))
}

fn replace(
    shared: &Arc<Shared>,
    target: &Target,
    name: &str,
    filter: &Filter,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let mut object = parse_object(body)?;
    match meta_str(&object, "name") {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )))
        }
        _ => {}
    }
    check_namespace(target, &mut object)?;
    let mut store = shared.store.lock().unwrap();
    let old = store
        .objects
        .get(&key(target.res, target.namespace.as_deref(), name))
        .cloned()
        .ok_or_else(|| ApiError::not_found(target.res, name))?;
    let view = update(&mut store, target, name, &old, object)?;
    Ok(json_response(StatusCode::OK, &filter.output(view)))
}

enum PatchType {
    Merge,
    Json,
    Apply,
}

fn patch(
    shared: &Arc<Shared>,
    target: &Target,
    name: &str,
    filter: &Filter,
    content_type: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    let patch_type = match media_type {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            PatchType::Merge
        }
        "application/json-patch+json" => PatchType::Json,
        "application/apply-patch+yaml" => PatchType::Apply,
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {other:?}"),
            ))
        }
    };
    let patch: Value = match patch_type {
        PatchType::Apply => serde_yaml_ng::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid YAML patch: {e}")))?,
        _ => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?,
    };
    let mut store = shared.store.lock().unwrap();
    let Some(old) = store
        .objects
        .get(&key(target.res, target.namespace.as_deref(), name))
        .cloned()
    else {
        if !matches!(patch_type, PatchType::Apply) || target.status {
            return Err(ApiError::not_found(target.res, name));
        }
        // Server-side apply creates.
        let mut object = patch;
        if !object.is_object() {
            return Err(ApiError::bad_request("an apply patch must be an object"));
        }
        check_namespace(target, &mut object)?;
        metadata_mut(&mut object).insert("name".into(), name.into());
        if target.res.status {
            object.as_object_mut().expect("an object").remove("status");
        }
        let object = convert(&object, target.res, target.res.stored());
        let created = store.create(target.res, target.namespace.as_deref(), object)?;
        let view = convert(&created, target.res.stored(), target.res);
        return Ok(json_response(StatusCode::CREATED, &filter.output(view)));
    };
    let mut new = convert(&old, target.res.stored(), target.res);
    match patch_type {
        PatchType::Merge | PatchType::Apply => merge_patch(&mut new, &patch),
        PatchType::Json => json_patch(&mut new, &patch)
            .map_err(|e| ApiError::invalid(format!("the JSON patch could not be applied: {e}")))?,
    }
    if !new.is_object() {
        return Err(ApiError::invalid("the patched object is not an object"));
    }
    let view = update(&mut store, target, name, &old, new)?;
    Ok(json_response(StatusCode::OK, &filter.output(view)))
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().expect("just made an object");
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn pointer(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn pointer_get_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    tokens.iter().try_fold(doc, |v, t| match v {
        Value::Object(map) => map.get_mut(t),
        Value::Array(items) => t.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

fn pointer_add(doc: &mut Value, tokens: &[String], value: Value) -> Result<(), String> {
    let Some((last, parent)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match pointer_get_mut(doc, parent) {
        Some(Value::Object(map)) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Some(Value::Array(items)) if last == "-" => {
            items.push(value);
            Ok(())
        }
        Some(Value::Array(items)) => match last.parse::<usize>() {
            Ok(i) if i <= items.len() => {
                items.insert(i, value);
                Ok(())
            }
            _ => Err(format!("index {last:?} out of bounds")),
        },
        _ => Err(format!("no parent for /{}", tokens.join("/"))),
    }
}

fn pointer_remove(doc: &mut Value, tokens: &[String]) -> Result<Value, String> {
    let (last, parent) = tokens.split_last().ok_or("cannot remove the root")?;
    let missing = || format!("nothing at /{}", tokens.join("/"));
    match pointer_get_mut(doc, parent) {
        Some(Value::Object(map)) => map.remove(last).ok_or_else(missing),
        Some(Value::Array(items)) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => Ok(items.remove(i)),
            _ => Err(missing()),
        },
        _ => Err(missing()),
    }
}

/// RFC 6902 JSON patch.
fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops.as_array().ok_or("a JSON patch must be an array")?;
    for op in ops {
        let name = op["op"].as_str().ok_or("an operation without op")?;
        let path = pointer(op["path"].as_str().ok_or("an operation without path")?)?;
        let value = || op.get("value").cloned().ok_or("an operation without value");
        let from = || pointer(op["from"].as_str().unwrap_or_default());
        match name {
            "add" => pointer_add(doc, &path, value()?)?,
            "remove" => {
                pointer_remove(doc, &path)?;
            }
            "replace" => {
                let target = pointer_get_mut(doc, &path)
                    .ok_or_else(|| format!("nothing to replace at {}", op["path"]))?;
                *target = value()?;
            }
            "move" => {
                let moved = pointer_remove(doc, &from()?)?;
                pointer_add(doc, &path, moved)?;
            }
            "copy" => {
                let copied = pointer_get_mut(doc, &from()?)
                    .map(|v| v.clone())
                    .ok_or("nothing to copy")?;
                pointer_add(doc, &path, copied)?;
            }
            "test" => {
                let expected = value()?;
                if pointer_get_mut(doc, &path).map(|v| &*v) != Some(&expected) {
                    return Err(format!("test failed at {}", op["path"]));
                }
            }
            other => return Err(format!("unknown operation {other:?}")),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The server

struct Running {
    stop: CancellationToken,
    tasks: TaskTracker,
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn serve(shared: Arc<Shared>, listener: TcpListener) -> Running {
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (accept_stop, accept_tasks) = (stop.clone(), tasks.clone());
    tasks.spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = accept_stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let (shared, stop) = (shared.clone(), accept_stop.clone());
            accept_tasks.spawn(async move {
                let service_stop = stop.clone();
                let service = service_fn(move |request| {
                    handle(shared.clone(), service_stop.clone(), request)
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = connection => {}
                    _ = stop.cancelled() => {}
                }
            });
        }
    });
    Running { stop, tasks }
}

/// A fake Kubernetes API server on 127.0.0.1; see the module documentation.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    running: Mutex<Option<Running>>,
}

impl ApiServer {
    /// Binds 127.0.0.1:0 and serves.
    pub async fn start() -> ApiServer {
        let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("bind apiserver");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            requests: Mutex::new(Vec::new()),
        });
        let running = serve(shared.clone(), listener);
        ApiServer {
            shared,
            addr,
            running: Mutex::new(Some(running)),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `kube::Config` pointing at this server (no auth, default namespace "default").
    pub fn kube_config(&self) -> kube::Config {
        kube::Config::new(self.url().parse().expect("a valid URL"))
    }

    /// Writes a kubeconfig YAML file into `dir` pointing at this server and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("kubeconfig-{}", self.addr.port()));
        let yaml = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: fake\n  cluster:\n    server: {url}\n\
             users:\n\
             - name: fake\n  user: {{}}\n\
             contexts:\n\
             - name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\n",
            url = self.url()
        );
        std::fs::write(&path, yaml).expect("write kubeconfig");
        path
    }

    /// Creates or replaces objects given as (multi-document) YAML, like `kubectl apply`. Every
    /// object is written (a new resourceVersion and an ADDED or MODIFIED event even if nothing
    /// changed). A `status` in the YAML is stored; without one, a replaced object keeps its
    /// status. `metadata.creationTimestamp` is kept if given. Panics on an unknown kind.
    pub fn apply_yaml(&self, yaml: &str) {
        for document in serde_yaml_ng::Deserializer::from_str(yaml) {
            let value = Value::deserialize(document).expect("apply_yaml: invalid YAML");
            if !value.is_null() {
                self.apply_value(value);
            }
        }
    }

    fn apply_value(&self, mut object: Value) {
        let api_version = object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        if kind == "List" {
            if let Some(Value::Array(items)) = object.get_mut("items").map(Value::take) {
                items.into_iter().for_each(|item| self.apply_value(item));
            }
            return;
        }
        let res = by_type(&api_version, &kind).unwrap_or_else(|| {
            panic!("apply_yaml: the fake apiserver does not serve {api_version} {kind}")
        });
        let name = meta_str(&object, "name")
            .unwrap_or_else(|| panic!("apply_yaml: a {kind} without metadata.name"))
            .to_string();
        let namespace = meta_str(&object, "namespace").map(str::to_string);
        let metadata = metadata_mut(&mut object);
        if res.namespaced {
            metadata.insert(
                "namespace".into(),
                namespace.as_deref().unwrap_or("default").into(),
            );
        } else {
            metadata.remove("namespace");
        }
        let mut object = convert(&object, res, res.stored());
        let mut store = self.shared.store.lock().unwrap();
        if let Some(old) = store.objects.get(&key(res, namespace.as_deref(), &name)) {
            if let (Some(status), Some(map)) = (old.get("status"), object.as_object_mut()) {
                map.entry("status").or_insert_with(|| status.clone());
            }
        }
        store.write(res, object, true);
    }

    fn resource(kind: &str) -> &'static Resource {
        by_kind(kind).unwrap_or_else(|| panic!("the fake apiserver does not serve kind {kind:?}"))
    }

    /// Deletes an object (if it exists) and notifies watchers with DELETED. `kind` is e.g.
    /// "Service", "Ingress"; `namespace` None means "default" for namespaced kinds.
    pub fn delete(&self, kind: &str, namespace: Option<&str>, name: &str) {
        let key = key(Self::resource(kind), namespace, name);
        self.shared.store.lock().unwrap().remove(&key);
    }

    /// The stored object, as JSON, if any (`namespace` None means "default" for namespaced
    /// kinds). Events are in their `events.k8s.io/v1` form.
    pub fn get(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let key = key(Self::resource(kind), namespace, name);
        self.shared.store.lock().unwrap().objects.get(&key).cloned()
    }

    /// All stored objects of a kind, ordered by namespace and name ("Event": events from either
    /// API group, in their `events.k8s.io/v1` form).
    pub fn list(&self, kind: &str) -> Vec<Value> {
        let res = Self::resource(kind);
        let store = self.shared.store.lock().unwrap();
        store.objects_of(res).cloned().collect()
    }

    /// Forgets the change history: a watch (or an Exact list) from a resourceVersion older than
    /// the current one gets 410 Gone (for a watch: 200 and a single ERROR event). Watches that
    /// are already open are not affected, as on the real server.
    pub fn compact(&self) {
        let mut store = self.shared.store.lock().unwrap();
        store.compacted = store.rv;
    }

    /// Simulates an outage: closes the listener and ends every open connection and watch
    /// stream. State is kept.
    pub async fn stop(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some(running) = running {
            running.stop.cancel();
            running.tasks.close();
            running.tasks.wait().await;
        }
    }

    /// Ends the outage: listens again on the same port with the same state.
    pub async fn restart(&self) {
        if self.running.lock().unwrap().is_some() {
            return;
        }
        let mut attempts = 0;
        let listener = loop {
            match bind(self.addr) {
                Ok(listener) => break listener,
                Err(_) if attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("apiserver: cannot listen on {} again: {e}", self.addr),
            }
        };
        let running = serve(self.shared.clone(), listener);
        *self.running.lock().unwrap() = Some(running);
    }

    /// How many requests matched a predicate on (method, path-and-query). The path and query are
    /// as sent, so percent-encoded: e.g. `fieldSelector=metadata.name%3Dx`.
    pub fn count_requests(&self, f: impl Fn(&Method, &str) -> bool) -> usize {
        let requests = self.shared.requests.lock().unwrap();
        requests.iter().filter(|(m, p)| f(m, p)).count()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().unwrap().rv
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.get_mut().unwrap().take() {
            running.stop.cancel();
        }
    }
}
