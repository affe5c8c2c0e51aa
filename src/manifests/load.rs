//! Reading a directory of YAML manifests into a [`Snapshot`].
//!
//! Every `*.yaml` / `*.yml` file below the directory is read (hidden files and directories are
//! skipped, which also skips the `..data` links of a mounted ConfigMap). A file is split into
//! documents on `---` lines, as `kubectl` does, so a document that does not parse is reported
//! with its file and index and the documents after it still load. `kind: List` is unpacked.
//! Kinds vane does not use are skipped (including other versions of the kinds it does use). Namespaced objects without a namespace get `default`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use crate::api::BackendPolicy;
use crate::snapshot::Snapshot;

/// Files larger than this are refused rather than read into memory.
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// A document (or file) that could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    /// 1-based index of the document in the file; `None` when the whole file failed.
    pub document: Option<usize>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.document {
            Some(index) => write!(
                f,
                "{}, document {index}: {}",
                self.file.display(),
                self.message
            ),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

#[derive(Debug, Default)]
pub struct Loaded {
    pub snapshot: Snapshot,
    pub errors: Vec<LoadError>,
}

/// Reads a manifest file of `len` bytes (as stat reported it), unless it is too large.
pub(super) fn read_file(file: &Path, len: u64) -> Result<String, String> {
    if len > MAX_FILE_BYTES {
        return Err(format!(
            "file is {len} bytes, more than the limit of {MAX_FILE_BYTES}"
        ));
    }
    std::fs::read_to_string(file).map_err(|e| e.to_string())
}

/// Loads the documents of one file's text into `loaded`.
pub fn load_str(text: &str, file: &Path, loaded: &mut Loaded) {
    for (index, document) in split_documents(text).enumerate() {
        let error = |message: String| LoadError {
            file: file.to_path_buf(),
            document: Some(index + 1),
            message,
        };
        match serde_yaml_ng::from_str::<Value>(document) {
            Ok(Value::Null) => {}
            Ok(value) => {
                if let Err(message) = add_object(value, &mut loaded.snapshot) {
                    loaded.errors.push(error(message));
                }
            }
            Err(e) => loaded.errors.push(error(format!("invalid YAML: {e}"))),
        }
    }
}

/// Splits a multi-document YAML stream on lines that start a new document (`---`).
fn split_documents(text: &str) -> impl Iterator<Item = &str> {
    let mut starts = vec![0];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end();
        if offset > 0 && (content == "---" || content.starts_with("--- ")) {
            starts.push(offset);
        }
        offset += line.len();
    }
    // The very first line may itself be a separator; it then opens the first document.
    let ends: Vec<usize> = starts.iter().skip(1).copied().chain([text.len()]).collect();
    starts.into_iter().zip(ends).map(move |(start, end)| {
        let document = &text[start..end];
        document
            .strip_prefix("---")
            .filter(|rest| rest.is_empty() || rest.starts_with([' ', '\n', '\r']))
            .unwrap_or(document)
    })
}

/// Adds one parsed document to the snapshot. `Err` carries a message naming the object.
fn add_object(value: Value, snapshot: &mut Snapshot) -> Result<(), String> {
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>")
        .to_owned();
    let described =
        |e: serde_yaml_ng::Error| format!("{kind} {name:?} ({api_version}) is invalid: {e}");
    match (api_version.as_str(), kind.as_str()) {
        ("networking.k8s.io/v1", "IngressClass") => {
            snapshot
                .ingress_classes
                .push(Arc::new(parse::<IngressClass>(value).map_err(described)?));
        }
        ("networking.k8s.io/v1", "Ingress") => {
            let mut ingress: Ingress = parse(value).map_err(described)?;
            default_namespace(&mut ingress.metadata);
            snapshot.ingresses.push(Arc::new(ingress));
        }
        ("v1", "Service") => {
            let mut service: Service = parse(value).map_err(described)?;
            default_namespace(&mut service.metadata);
            snapshot.services.push(Arc::new(service));
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            let mut slice: EndpointSlice = parse(value).map_err(described)?;
            default_namespace(&mut slice.metadata);
            snapshot.endpoint_slices.push(Arc::new(slice));
        }
        ("v1", "Secret") => {
            let mut secret: Secret = parse(value).map_err(described)?;
            default_namespace(&mut secret.metadata);
            snapshot.secrets.push(Arc::new(secret));
        }
        ("vane.dev/v1alpha1", "BackendPolicy") => {
            let mut policy: BackendPolicy = parse(value).map_err(described)?;
            default_namespace(&mut policy.metadata);
            snapshot.backend_policies.push(Arc::new(policy));
        }
        ("v1", "List") => {
            let items = match value.get("items") {
                Some(Value::Sequence(items)) => items.clone(),
                Some(Value::Null) | None => Vec::new(),
                Some(_) => return Err("List has an items field that is not a list".into()),
            };
            let mut errors = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                if let Err(e) = add_object(item, snapshot) {
                    errors.push(format!("items[{i}]: {e}"));
                }
            }
            if !errors.is_empty() {
                return Err(errors.join("; "));
            }
        }
        ("", _) | (_, "") => return Err("document has no apiVersion or kind".into()),
        _ => tracing::debug!(api_version, kind, name, "skipping a kind vane does not use"),
    }
    Ok(())
}

fn parse<T: DeserializeOwned>(value: Value) -> Result<T, serde_yaml_ng::Error> {
    serde_yaml_ng::from_value(value)
}

fn default_namespace(metadata: &mut ObjectMeta) {
    if metadata.namespace.as_deref().is_none_or(str::is_empty) {
        metadata.namespace = Some("default".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_on_separator_lines_only() {
        let text = "---\na: 1\n---\nb: '---'\n--- \nc: 3\n";
        let docs: Vec<_> = split_documents(text).collect();
        assert_eq!(docs, ["\na: 1\n", "\nb: '---'\n", " \nc: 3\n"]);
    }

    #[test]
    fn a_broken_document_is_reported_and_the_rest_load() {
        let text = "\
apiVersion: v1
kind: Service
metadata: {name: one}
---
apiVersion: v1
kind: Service
metadata: {name: [broken
---
apiVersion: v1
kind: Service
metadata: {name: three}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: wrong-type}
spec: {ports: 80}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: skipped}
";
        let mut loaded = Loaded::default();
        load_str(text, Path::new("demo.yaml"), &mut loaded);
        let names: Vec<_> = loaded
            .snapshot
            .services
            .iter()
            .map(|s| {
                (
                    s.metadata.namespace.clone().unwrap(),
                    s.metadata.name.clone().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("default".into(), "one".into()),
                ("default".into(), "three".into())
            ]
        );
        let where_: Vec<_> = loaded.errors.iter().map(|e| e.document).collect();
        assert_eq!(where_, [Some(2), Some(4)]);
        assert!(loaded.errors[1]
            .to_string()
            .contains("demo.yaml, document 4: Service \"wrong-type\""));
    }

    #[test]
    fn lists_are_unpacked_with_secrets_of_every_type() {
        let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Secret
  metadata: {name: tls, namespace: web}
  type: kubernetes.io/tls
- apiVersion: v1
  kind: Secret
  metadata: {name: opaque}
  type: Opaque
";
        let mut loaded = Loaded::default();
        load_str(text, Path::new("list.yaml"), &mut loaded);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let names: Vec<_> = loaded
            .snapshot
            .secrets
            .iter()
            .map(|s| s.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(names, ["tls", "opaque"]);
    }
}
