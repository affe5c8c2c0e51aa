//! Reading one Ingress into route candidates, validating what the API server would validate
//! (compile also sees manifests that never went through an API server).

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use super::{reasons, Sink};
use crate::table::{HostPattern, ObjectRef, PathRule};

/// What a rule points at, before resolution.
#[derive(Debug, Clone)]
pub enum BackendRef<'a> {
    Service {
        name: &'a str,
        port: &'a k8s_openapi::api::networking::v1::ServiceBackendPort,
    },
    /// A backend vane cannot route to (a `resource` backend, or one with neither field).
    Unsupported(String),
}

/// One rule of an Ingress: host and path (`None` for `spec.defaultBackend`) and its backend.
#[derive(Debug)]
pub struct Candidate<'a> {
    pub host: HostPattern,
    pub path: Option<PathRule>,
    pub backend: BackendRef<'a>,
}

/// How many routes `ingress` asks for at most (its paths and default backend), so that the
/// table's collections are allocated once rather than grown.
pub fn route_count(ingress: &Ingress) -> usize {
    ingress.spec.as_ref().map_or(0, |spec| {
        let paths: usize = spec
            .rules
            .iter()
            .flatten()
            .filter_map(|rule| rule.http.as_ref())
            .map(|http| http.paths.len())
            .sum();
        paths + usize::from(spec.default_backend.is_some())
    })
}

/// The route candidates of `ingress`, in the order they are written; with `regex`, its
/// `ImplementationSpecific` paths are regular expressions. Invalid rules are reported and left
/// out; valid rules of the same Ingress are unaffected.
pub fn candidates<'a>(
    ingress: &'a Ingress,
    object: &ObjectRef,
    regex: bool,
    sink: &mut Sink,
) -> Vec<Candidate<'a>> {
    let Some(spec) = ingress.spec.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(default) = &spec.default_backend {
        out.push(Candidate {
            host: HostPattern::Any,
            path: None,
            backend: backend_ref(default),
        });
    }
    for (rule_index, rule) in spec.rules.iter().flatten().enumerate() {
        if let Some(host) = rule.host.as_deref() {
            if let Err(why) = validate_host(host) {
                sink.report(
                    object,
                    reasons::INVALID_HOST,
                    format!("spec.rules[{rule_index}].host {host:?} {why}; the rule is ignored"),
                );
                continue;
            }
        }
        let host = HostPattern::from_rule(rule.host.as_deref());
        let paths = rule
            .http
            .as_ref()
            .map(|h| h.paths.as_slice())
            .unwrap_or_default();
        for (path_index, path) in paths.iter().enumerate() {
            let value = path.path.as_deref().unwrap_or("/");
            let rule = match path.path_type.as_str() {
                "Exact" => validate_path(value).map(|()| PathRule::exact(value)),
                // An expression is checked by compiling it: `/`, `..` and the like mean
                // something else in one.
                "ImplementationSpecific" if regex => PathRule::regex(value),
                // vane documents ImplementationSpecific as Prefix otherwise.
                "Prefix" | "ImplementationSpecific" => {
                    validate_path(value).map(|()| PathRule::prefix(value))
                }
                "" => Err("has no pathType".to_string()),
                other => Err(format!("has unknown pathType {other:?}")),
            };
            match rule {
                Ok(rule) => out.push(Candidate {
                    host: host.clone(),
                    path: Some(rule),
                    backend: backend_ref(&path.backend),
                }),
                Err(why) => sink.report(
                    object,
                    reasons::INVALID_PATH,
                    format!(
                        "spec.rules[{rule_index}].http.paths[{path_index}] (path {value:?}) {why}; \
                         the path is ignored"
                    ),
                ),
            }
        }
    }
    out
}

fn backend_ref(backend: &IngressBackend) -> BackendRef<'_> {
    match (&backend.service, &backend.resource) {
        (Some(service), _) => match &service.port {
            Some(port) => BackendRef::Service {
                name: &service.name,
                port,
            },
            None => {
                BackendRef::Unsupported(format!("backend Service {:?} names no port", service.name))
            }
        },
        (None, Some(resource)) => BackendRef::Unsupported(format!(
            "resource backend {}/{} is not supported by vane",
            resource.kind, resource.name
        )),
        (None, None) => {
            BackendRef::Unsupported("backend names neither a Service nor a resource".into())
        }
    }
}

/// A DNS-1123 subdomain, optionally with a leading `*.` (a wildcard of exactly one label).
pub fn validate_host(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return Err("is not a valid DNS name".into());
    }
    for label in name.split('.') {
        let bytes = label.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 63
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes.first() != Some(&b'-')
            && bytes.last() != Some(&b'-');
        if !valid {
            return Err(format!("has an invalid DNS label {label:?}"));
        }
    }
    Ok(())
}

/// The checks the API server applies to Exact and Prefix paths.
fn validate_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("must be an absolute path".into());
    }
    for bad in ["//", "/./", "/../", "%2f", "%2F"] {
        if path.contains(bad) {
            return Err(format!("must not contain {bad:?}"));
        }
    }
    if path.ends_with("/..") || path.ends_with("/.") {
        return Err("must not end with a dot segment".into());
    }
    if path
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#')
    {
        return Err("contains characters that cannot appear in a request path".into());
    }
    Ok(())
}
