//! YAML builders for the objects tests need. Tests read as manifests, and go through the same
//! loader as standalone mode.

use std::net::IpAddr;

use super::origin::Origins;

use vane::manifests::{self, Loaded};
use vane::snapshot::Snapshot;
use vane::table::Diagnostic;

pub const INGRESS_CLASS: &str = "\
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: vane}
spec: {controller: vane.dev/ingress-controller}
";

/// A Service in `default` with one port named `http` (port 80).
pub fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  ports:\n  - {{name: http, port: 80, targetPort: 8080}}\n"
    )
}

/// An EndpointSlice for `service` listing `ips` as ready endpoints on port `http` = `port`.
pub fn slice(service: &str, port: u16, ips: &[IpAddr]) -> String {
    let endpoints: String = ips
        .iter()
        .map(|ip| format!("- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n"))
        .collect();
    let endpoints = if endpoints.is_empty() {
        "[]\n".to_string()
    } else {
        format!("\n{endpoints}")
    };
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata:\n  name: {service}-slice\n  namespace: default\n  labels: {{kubernetes.io/service-name: {service}}}\n\
         addressType: IPv4\nports:\n- {{name: http, port: {port}, protocol: TCP}}\nendpoints: {endpoints}"
    )
}

/// A Service plus its EndpointSlice.
pub fn backend(service_name: &str, port: u16, ips: &[IpAddr]) -> String {
    format!(
        "{}---\n{}",
        service(service_name),
        slice(service_name, port, ips)
    )
}

/// An Ingress of class vane with one rule: `host` (None for host-less), a Prefix path, and a
/// backend Service by port name `http`.
pub fn ingress(name: &str, host: Option<&str>, path: &str, service: &str) -> String {
    let host = host
        .map(|h| format!("  - host: {h}\n    http:\n"))
        .unwrap_or_else(|| "  - http:\n".into());
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  ingressClassName: vane\n  rules:\n{host}      paths:\n      - path: {path}\n        pathType: Prefix\n\
         \x20       backend: {{service: {{name: {service}, port: {{name: http}}}}}}\n"
    )
}

/// `object` (a fixture whose metadata is a flow mapping, like [`ingress`]'s) with annotations.
pub fn annotate(object: &str, annotations: &[(&str, &str)]) -> String {
    let pairs: Vec<String> = annotations
        .iter()
        .map(|(k, v)| format!("{k}: {}", serde_json::to_string(v).unwrap()))
        .collect();
    let marker = "namespace: default}";
    assert!(object.contains(marker), "not an annotatable fixture");
    object.replacen(
        marker,
        &format!(
            "namespace: default, annotations: {{{}}}}}",
            pairs.join(", ")
        ),
        1,
    )
}

/// A BackendPolicy `name` targeting Service `service`, with `spec` (YAML, indented by two)
/// after the targetRefs.
pub fn policy(name: &str, service: &str, spec: &str) -> String {
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "apiVersion: vane.dev/v1alpha1\nkind: BackendPolicy\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  targetRefs: [{{group: \"\", kind: Service, name: {service}}}]\n{spec}"
    )
}

/// Joins documents into one multi-document stream.
pub fn docs<S: AsRef<str>>(documents: &[S]) -> String {
    documents
        .iter()
        .map(|d| d.as_ref().trim_end().to_owned() + "\n")
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Loads YAML through the standalone loader, failing the test on any load error.
pub fn snapshot(yaml: &str) -> Snapshot {
    let mut loaded = Loaded::default();
    manifests::load_str(yaml, std::path::Path::new("test.yaml"), &mut loaded);
    assert!(
        loaded.errors.is_empty(),
        "fixture does not load: {:?}",
        loaded.errors
    );
    std::sync::Arc::unwrap_or_clone(loaded.snapshot)
}

/// The common case: our IngressClass, a Service `app` backed by `origins`, and an Ingress `app`
/// routing `host` (every host when `None`), path `/`, to it.
pub fn single_route(origins: &Origins, host: Option<&str>) -> String {
    docs(&[
        INGRESS_CLASS.to_string(),
        backend("app", origins.port, &origins.ips()),
        ingress("app", host, "/", "app"),
    ])
}

/// Whether compile reported `reason` with a message that mentions `text` (an annotation's
/// name, say).
pub fn has_diagnostic(diagnostics: &[Diagnostic], reason: &str, text: &str) -> bool {
    diagnostics
        .iter()
        .any(|d| d.reason == reason && d.message.contains(text))
}
