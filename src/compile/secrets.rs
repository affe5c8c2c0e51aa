//! The snapshot's Secrets by namespace and name, for the compilers that read them (TLS
//! certificates and CAs, basic auth users), and what a fragment remembers of the Secret it
//! read.

use std::sync::Arc;

use foldhash::HashMap;
use k8s_openapi::api::core::v1::Secret;

/// Every Secret of the snapshot, by (namespace, name); built once per compile.
#[derive(Default)]
pub(super) struct Secrets<'a> {
    by_name: HashMap<(&'a str, &'a str), &'a Arc<Secret>>,
}

impl<'a> Secrets<'a> {
    pub(super) fn new(secrets: &'a [Arc<Secret>]) -> Self {
        let by_name = secrets
            .iter()
            .filter_map(|s| {
                let namespace = s.metadata.namespace.as_deref()?;
                Some(((namespace, s.metadata.name.as_deref()?), s))
            })
            .collect();
        Self { by_name }
    }

    pub(super) fn get(&self, namespace: &str, name: &str) -> Option<&'a Arc<Secret>> {
        self.by_name.get(&(namespace, name)).copied()
    }
}

/// A Secret an Ingress's compile read (or looked for and did not find), as it was: a fragment
/// built from it is current only while the snapshot has the very same object (the same `Arc`)
/// under that name, or still none.
#[derive(Clone, Debug)]
pub(super) struct SecretInput {
    /// (namespace, name)
    name: (String, String),
    object: Option<Arc<Secret>>,
}

impl SecretInput {
    pub(super) fn of(secrets: &Secrets<'_>, namespace: &str, name: &str) -> Self {
        Self {
            name: (namespace.to_owned(), name.to_owned()),
            object: secrets.get(namespace, name).cloned(),
        }
    }

    pub(super) fn is_current(&self, secrets: &Secrets<'_>) -> bool {
        match (&self.object, secrets.get(&self.name.0, &self.name.1)) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

/// A Secret value from `data`, else from `stringData` (manifests that never passed an API
/// server may use it).
pub(super) fn value<'s>(secret: &'s Secret, key: &str) -> Option<&'s [u8]> {
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|bytes| bytes.0.as_slice())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|data| data.get(key))
                .map(|text| text.as_bytes())
        })
}

/// Every key of a Secret with its value, `data` first, then the `stringData` keys `data` lacks.
pub(super) fn entries(secret: &Secret) -> Vec<(&str, &[u8])> {
    let mut entries: Vec<(&str, &[u8])> = secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key.as_str(), value.0.as_slice()))
        .collect();
    for (key, text) in secret.string_data.iter().flatten() {
        if !entries.iter().any(|(k, _)| *k == key) {
            entries.push((key.as_str(), text.as_bytes()));
        }
    }
    entries
}
