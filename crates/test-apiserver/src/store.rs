//! The objects, in their stored form, with the global resourceVersion and the history of every
//! write, from which watches replay and Exact lists rebuild an older state. The store fills in
//! server-owned metadata (uid, creationTimestamp, generation, resourceVersion) on each write.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use http::StatusCode;
use serde_json::Value;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::resource::{meta_str, metadata_mut, Resource};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One write, as watches replay it.
pub(crate) struct Change {
    pub(crate) rv: u64,
    pub(crate) kind: &'static str,
    pub(crate) namespace: String,
    pub(crate) change: ChangeType,
    /// The object after the write (for a delete: the last state, with the delete's version).
    pub(crate) object: Value,
    /// The object before a modification.
    pub(crate) previous: Option<Value>,
}

/// (kind, namespace or "", name)
pub(crate) type Key = (&'static str, String, String);

pub(crate) struct Store {
    /// The global resourceVersion: the version of the last write.
    pub(crate) rv: u64,
    /// Watches and exact lists from a version older than this get 410.
    pub(crate) compacted: u64,
    next_uid: u64,
    /// Objects in their stored form.
    pub(crate) objects: BTreeMap<Key, Value>,
    /// Every write since the start (compaction only moves `compacted`).
    pub(crate) history: Vec<Change>,
    /// Tells watches that `rv` moved.
    pub(crate) notify: watch::Sender<u64>,
}

pub(crate) fn key(res: &Resource, namespace: Option<&str>, name: &str) -> Key {
    let namespace = if res.namespaced {
        namespace.unwrap_or("default").to_string()
    } else {
        String::new()
    };
    (res.stored().kind, namespace, name.to_string())
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

impl Store {
    pub(crate) fn new() -> Self {
        Store {
            rv: 1,
            compacted: 0,
            next_uid: 1,
            objects: BTreeMap::new(),
            history: Vec::new(),
            notify: watch::Sender::new(1),
        }
    }

    pub(crate) fn objects_of<'a>(&'a self, res: &Resource) -> impl Iterator<Item = &'a Value> + 'a {
        let kind = res.stored().kind;
        self.objects
            .iter()
            .filter(move |((k, _, _), _)| *k == kind)
            .map(|(_, v)| v)
    }

    /// The objects of a kind as they were at version `rv` (rebuilt from the history).
    pub(crate) fn objects_at(&self, res: &Resource, rv: u64) -> Vec<Value> {
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
    pub(crate) fn write(&mut self, res: &Resource, mut object: Value, force: bool) -> Value {
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

    pub(crate) fn create(
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

    pub(crate) fn remove(&mut self, key: &Key) -> Option<Value> {
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
