//! Diagnostics: what compile found wrong with an object, and why it was (partly) ignored.
//!
//! A diagnostic names the object it is about, so that the Kubernetes source can turn it into an
//! Event on that object and the standalone source into a log line that names it.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// A reference to a Kubernetes object, as used in diagnostics and route provenance. Its
/// names are shared, not copied: every route and diagnostic of an object holds them, and each
/// compile makes the routes of every Ingress anew.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: &'static str,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ObjectRef {
    pub fn new(
        kind: &'static str,
        namespace: impl Into<Arc<str>>,
        name: impl Into<Arc<str>>,
    ) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// One problem with one object. `reason` is a short CamelCase token (an Event reason); the
/// message is a sentence for humans.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Diagnostic {
    pub object: ObjectRef,
    pub reason: &'static str,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.reason, self.message)
    }
}
