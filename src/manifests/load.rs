//! Reading manifest files into a [`Snapshot`].
//!
//! A file is split into documents on `---` lines, as `kubectl` does, so a document that does
//! not parse is reported with its file and index and the documents after it still load.
//! `kind: List` is unpacked. Kinds vane does not use are skipped (including other versions of
//! the kinds it does use) without being built into values: only the document's header
//! (`header`: `apiVersion`, `kind` and `metadata.name`) is read before deciding. Namespaced
//! objects without a namespace get `default`. Documents nested deeper than
//! [`MAX_NESTING`](super::MAX_NESTING) levels, or larger than [`MAX_DOCUMENT_BYTES`], are
//! refused before they are parsed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde::Deserializer;
use serde_yaml_ng::Value;

use super::header::Header;
use super::nesting;

use crate::api::BackendPolicy;
use crate::snapshot::Snapshot;

/// Files larger than this are refused rather than read into memory.
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Documents larger than this are refused unparsed. The YAML parser holds every event of a
/// document at once, about 15 times its size (a 31 MB document peaked at 455 MB, an 8 MiB one at
/// 132 MB), so this, not the file limit, bounds the loader's memory. The API server stores no
/// object over 1.5 MiB; only a `kind: List` comes near, and it can be split into documents.
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;

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
    /// Shared, so that a cache can hand out what it holds without copying it.
    pub snapshot: Arc<Snapshot>,
    pub errors: Vec<LoadError>,
}

/// Loads the documents of the manifest file `file`, of `len` bytes (as stat reported it), into
/// `loaded`; a file that is too large or cannot be read is one error.
pub fn load_file(file: &Path, len: u64, loaded: &mut Loaded) {
    match read_file(file, len) {
        Ok(text) => load_str(&text, file, loaded),
        Err(message) => loaded.errors.push(LoadError {
            file: file.to_owned(),
            document: None,
            message,
        }),
    }
}

/// Reads a manifest file of `len` bytes (as stat reported it), unless it is too large.
fn read_file(file: &Path, len: u64) -> Result<String, String> {
    if len > MAX_FILE_BYTES {
        return Err(format!(
            "file is {len} bytes, more than the limit of {MAX_FILE_BYTES}"
        ));
    }
    std::fs::read_to_string(file).map_err(|e| e.to_string())
}

/// Loads the documents of one file's text into `loaded`.
pub fn load_str(text: &str, file: &Path, loaded: &mut Loaded) {
    let snapshot = Arc::make_mut(&mut loaded.snapshot);
    for (index, document) in split_documents(text).enumerate() {
        if let Err(message) = add_document(document, snapshot) {
            loaded.errors.push(LoadError {
                file: file.to_path_buf(),
                document: Some(index + 1),
                message,
            });
        }
    }
}

/// Adds one document's object(s) to the snapshot. `Err` carries a message naming the object.
///
/// The document is read twice: once for its [`Header`] only, then, if it is a kind vane uses,
/// straight into its type. A kind vane skips is never built into a value, so a 31 MB document
/// of another kind costs the parser's events, not a tree of it (which took 1 GB).
fn add_document(document: &str, snapshot: &mut Snapshot) -> Result<(), String> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "document is {} bytes, more than the limit of {MAX_DOCUMENT_BYTES}; not parsed \
             (split a List into documents separated by ---)",
            document.len()
        ));
    }
    nesting::check(document)?;
    match serde_yaml_ng::from_str::<Header>(document) {
        Ok(Header::Empty) => Ok(()),
        Ok(header) => add_object(&header, Source::Text(document), snapshot),
        Err(e) => Err(format!("invalid YAML: {e}")),
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

/// Where an object is read from: a whole document's text, or an item of a List.
enum Source<'a> {
    Text(&'a str),
    Value(Value),
}

impl Source<'_> {
    fn parse<T: DeserializeOwned>(self) -> Result<T, serde_yaml_ng::Error> {
        match self {
            Source::Text(text) => serde_yaml_ng::from_str(text),
            Source::Value(value) => serde_yaml_ng::from_value(value),
        }
    }
}

/// Adds one object (or the items of a List) to the snapshot. `Err` carries a message naming
/// the object.
fn add_object(header: &Header, source: Source, snapshot: &mut Snapshot) -> Result<(), String> {
    let (api_version, kind, name) = match header {
        Header::Empty => return Ok(()),
        Header::NotAnObject => return Err(NO_API_VERSION_OR_KIND.into()),
        Header::Object {
            api_version,
            kind,
            name,
        } => (api_version, kind, name.as_deref().unwrap_or("<unnamed>")),
    };
    let described =
        |e: serde_yaml_ng::Error| format!("{kind} {name:?} ({api_version}) is invalid: {e}");
    match (api_version.as_str(), kind.as_str()) {
        ("networking.k8s.io/v1", "IngressClass") => {
            snapshot
                .ingress_classes
                .push(Arc::new(source.parse::<IngressClass>().map_err(described)?));
        }
        ("networking.k8s.io/v1", "Ingress") => {
            let mut ingress: Ingress = source.parse().map_err(described)?;
            default_namespace(&mut ingress.metadata);
            snapshot.ingresses.push(Arc::new(ingress));
        }
        ("v1", "Service") => {
            let mut service: Service = source.parse().map_err(described)?;
            default_namespace(&mut service.metadata);
            snapshot.services.push(Arc::new(service));
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            let mut slice: EndpointSlice = source.parse().map_err(described)?;
            default_namespace(&mut slice.metadata);
            snapshot.endpoint_slices.push(Arc::new(slice));
        }
        ("v1", "Secret") => {
            let mut secret: Secret = source.parse().map_err(described)?;
            default_namespace(&mut secret.metadata);
            snapshot.secrets.push(Arc::new(secret));
        }
        ("vane.dev/v1alpha1", "BackendPolicy") => {
            let mut policy: BackendPolicy = source.parse().map_err(described)?;
            default_namespace(&mut policy.metadata);
            snapshot.backend_policies.push(Arc::new(policy));
        }
        ("v1", "List") => add_items(source, snapshot)?,
        ("", _) | (_, "") => return Err(NO_API_VERSION_OR_KIND.into()),
        _ => tracing::debug!(api_version, kind, name, "skipping a kind vane does not use"),
    }
    Ok(())
}

const NO_API_VERSION_OR_KIND: &str = "document has no apiVersion or kind";

/// Adds the items of a List. Items are built into values one at a time, so a large List of
/// kinds vane skips holds one item's tree at most.
fn add_items(list: Source, snapshot: &mut Snapshot) -> Result<(), String> {
    let mut items = Items {
        snapshot,
        next: 0,
        errors: Vec::new(),
    };
    match list {
        Source::Text(text) => {
            (&mut items)
                .deserialize(serde_yaml_ng::Deserializer::from_str(text))
                .map_err(|e| e.to_string())?;
        }
        Source::Value(mut value) => match value.get_mut("items").map(std::mem::take) {
            Some(Value::Sequence(list)) => list.into_iter().for_each(|item| items.add(item)),
            Some(Value::Null) | None => {}
            Some(_) => return Err(ITEMS_NOT_A_LIST.into()),
        },
    }
    if items.errors.is_empty() {
        Ok(())
    } else {
        Err(items.errors.join("; "))
    }
}

const ITEMS_NOT_A_LIST: &str = "List has an items field that is not a list";

/// The items of a List being added, with the errors of those that could not be.
struct Items<'a> {
    snapshot: &'a mut Snapshot,
    next: usize,
    errors: Vec<String>,
}

impl Items<'_> {
    fn add(&mut self, item: Value) {
        if let Err(e) = add_object(&Header::of(&item), Source::Value(item), self.snapshot) {
            self.errors.push(format!("items[{}]: {e}", self.next));
        }
        self.next += 1;
    }
}

/// Reads a List document, adding its items as they are read.
impl<'de> DeserializeSeed<'de> for &mut Items<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for &mut Items<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a List")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Value>()? {
            if key.as_str() == Some("items") {
                map.next_value_seed(ItemSeq(&mut *self))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// The `items` field of a List document.
struct ItemSeq<'i, 'a>(&'i mut Items<'a>);

impl<'de> DeserializeSeed<'de> for ItemSeq<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeq<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<Value>()? {
            self.0.add(item);
        }
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(ITEMS_NOT_A_LIST))
    }
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

    #[test]
    fn a_document_of_a_skipped_kind_is_not_built_into_a_value() {
        // Building a value of this ConfigMap would fail on the duplicate key: that it loads
        // without an error shows it was skipped unbuilt (which is what keeps a 31 MB document
        // of another kind from taking a gigabyte).
        let text = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: skipped}
data:
  same: 1
  same: 2
---
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: skipped-too}
- apiVersion: v1
  kind: Service
  metadata: {name: kept}
";
        let mut loaded = Loaded::default();
        load_str(text, Path::new("other-kinds.yaml"), &mut loaded);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.snapshot.services.len(), 1);
    }

    #[test]
    fn a_document_over_the_size_limit_is_refused_unparsed_and_the_others_load() {
        let padding = "#".repeat(MAX_DOCUMENT_BYTES);
        let text = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: kept}}\n---\n{padding}\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: too-big}}\n"
        );
        let mut loaded = Loaded::default();
        load_str(&text, Path::new("big.yaml"), &mut loaded);
        assert_eq!(loaded.snapshot.services.len(), 1);
        assert_eq!(loaded.errors.len(), 1);
        let error = loaded.errors[0].to_string();
        let expected = format!("more than the limit of {MAX_DOCUMENT_BYTES}; not parsed");
        assert!(
            error.starts_with("big.yaml, document 2: document is "),
            "{error}"
        );
        assert!(error.contains(&expected), "{error}");
    }

    #[test]
    fn documents_that_are_not_objects_are_reported() {
        let text = "- 1\n- 2\n---\njust a string\n---\n# only a comment\n---\nkind: Service\n";
        let mut loaded = Loaded::default();
        load_str(text, Path::new("odd.yaml"), &mut loaded);
        let reported: Vec<_> = loaded.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            reported,
            [
                "odd.yaml, document 1: document has no apiVersion or kind",
                "odd.yaml, document 2: document has no apiVersion or kind",
                "odd.yaml, document 4: document has no apiVersion or kind",
            ]
        );
    }

    #[test]
    fn deeply_nested_documents_are_refused_before_parsing() {
        let text = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: before}}\n---\n\
             apiVersion: v1\nkind: ConfigMap\ndata: {}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: after}}\n",
            "[".repeat(50_000)
        );
        // Parsing this took 25 s in a debug build: bounded, on its own thread. (Lines count
        // from the separator line, as in the parser's own messages.)
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut loaded = Loaded::default();
            load_str(&text, Path::new("deep.yaml"), &mut loaded);
            let _ = done.send(loaded);
        });
        let loaded = result
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the load ends");
        let reported: Vec<_> = loaded.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            reported,
            ["deep.yaml, document 2: collections nest more than 128 levels deep (line 4); not parsed"]
        );
        assert_eq!(loaded.snapshot.services.len(), 2);
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any bytes in a manifest file: no panic, and every error names the file.
        #[test]
        fn prop_any_file_loads_or_is_reported(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("any.yaml"), &bytes).unwrap();
            let loaded = super::super::load_dir(dir.path()).unwrap();
            for error in &loaded.errors {
                prop_assert!(error.file.ends_with("any.yaml"), "{}", error);
            }
        }

        /// YAML-ish text: no panic; errors name the file and a document that exists.
        #[test]
        fn prop_yamlish_documents_load_or_are_reported(
            text in proptest::collection::vec(
                proptest::sample::select(super::super::nesting::tests::PIECES),
                0..400,
            )
            .prop_map(|pieces| pieces.concat())
        ) {
            let mut loaded = Loaded::default();
            load_str(&text, Path::new("yamlish.yaml"), &mut loaded);
            let documents = split_documents(&text).count();
            for error in &loaded.errors {
                prop_assert_eq!(&error.file, Path::new("yamlish.yaml"));
                prop_assert!(error.document.is_some_and(|d| (1..=documents).contains(&d)), "{}", error);
            }
        }
    }
}
