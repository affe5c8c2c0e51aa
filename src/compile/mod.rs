//! `compile`: the pure, total function from a [`Snapshot`] to a [`RoutingTable`] plus
//! diagnostics.
//!
//! Pure: no I/O, no clocks, no randomness; the same snapshot gives the same table. Total: any
//! input, however malformed, yields a table, and whatever could not be used is reported as a
//! [`Diagnostic`] that names the object. A broken object never affects the routes of another.
//!
//! Rules from many Ingresses merge per host. Ingresses are processed oldest first
//! (creationTimestamp, then namespace/name), so on a conflict (same host, same path and kind)
//! the oldest keeps the route and the younger one gets a diagnostic.

mod balancing;
mod basic_auth;
mod builder;
mod canary;
mod certificate;
mod class;
mod compat;
mod context;
mod cors;
mod external_auth;
mod fragment;
mod header_changes;
mod ingress;
mod ours;
mod policy;
mod resilience;
mod secrets;
mod self_signed;
mod service;
mod service_index;
mod tls;
mod transform;
mod upstream_tls;

use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;

use crate::snapshot::Snapshot;
use crate::table::{Certificate, Diagnostic, ObjectRef, PolicyStatus, RoutingTable};

use builder::TableBuilder;
pub use class::{DEFAULT_CLASS_ANNOTATION, LEGACY_CLASS_ANNOTATION};
pub use context::{Annotations, Sink};
pub use fragment::Fragments;
use fragment::Outside;
pub use self_signed::self_signed;
pub use service_index::SERVICE_NAME_LABEL;

pub const DEFAULT_INGRESS_CLASS: &str = "vane";
pub const DEFAULT_CONTROLLER_NAME: &str = "vane.dev/ingress-controller";

/// Diagnostic reasons (used as Kubernetes Event reasons).
pub mod reasons {
    pub const INGRESS_CLASS_NOT_FOUND: &str = "IngressClassNotFound";
    pub const INVALID_HOST: &str = "InvalidHost";
    pub const INVALID_PATH: &str = "InvalidPath";
    pub const ROUTE_CONFLICT: &str = "RouteConflict";
    pub const DEFAULT_BACKEND_CONFLICT: &str = "DefaultBackendConflict";
    pub const SERVICE_NOT_FOUND: &str = "ServiceNotFound";
    pub const PORT_NOT_FOUND: &str = "PortNotFound";
    pub const NO_ENDPOINT_SLICES: &str = "NoEndpointSlices";
    pub const UNSUPPORTED_BACKEND: &str = "UnsupportedBackend";
    pub const INVALID_POLICY: &str = "InvalidPolicy";
    pub const POLICY_TARGET_NOT_FOUND: &str = "PolicyTargetNotFound";
    pub const POLICY_CONFLICT: &str = "PolicyConflict";
    pub const INVALID_ANNOTATION: &str = "InvalidAnnotation";
    /// An annotation vane will not apply and cannot safely serve without (a configuration
    /// snippet, external authentication, an allow list; see `api::compat`): the Ingress's
    /// routes answer 503.
    pub const REFUSED_ANNOTATION: &str = "RefusedAnnotation";
    /// ingress-nginx annotations vane does not apply and serves without (buffer tuning, say).
    pub const IGNORED_ANNOTATION: &str = "IgnoredAnnotation";
    /// Annotations under `vane.dev/` or ingress-nginx's prefix that neither knows: a typo,
    /// most likely.
    pub const UNKNOWN_ANNOTATION: &str = "UnknownAnnotation";
    /// The same setting under both prefixes, with different values: `vane.dev/` is used.
    pub const ANNOTATION_OVERRIDDEN: &str = "AnnotationOverridden";
    pub const CANARY_WITHOUT_MAIN: &str = "CanaryWithoutMainIngress";
    pub const CANARY_CONFLICT: &str = "CanaryConflict";
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// A Secret of the wrong type, or whose certificate, key or CA bundle cannot be used.
    pub const INVALID_SECRET: &str = "InvalidSecret";
    pub const CERTIFICATE_EXPIRED: &str = "CertificateExpired";
    pub const TLS_CONFLICT: &str = "TLSConflict";
    /// A BackendPolicy turned off upstream certificate verification.
    pub const INSECURE_UPSTREAM_TLS: &str = "InsecureUpstreamTLS";
    /// A policy's `spec.tls` does not apply: its backend speaks a plain protocol.
    pub const UPSTREAM_TLS_NOT_USED: &str = "UpstreamTLSNotUsed";
    /// A Service port, EndpointSlice port or endpoint address that cannot be used (out of
    /// range, not an IP of the slice's addressType, an unsupported addressType); the rest of
    /// the backend's endpoints still serve.
    pub const INVALID_ENDPOINT: &str = "InvalidEndpoint";
}

/// Settings of compile that come from the command line.
#[derive(Clone, Debug)]
pub struct Options {
    pub ingress_class: String,
    pub controller_name: String,
    /// `--default-ssl-certificate`: the Secret (namespace, name) served for unknown or missing
    /// SNI.
    pub default_certificate: Option<(String, String)>,
    /// The certificate served when there is no usable default Secret (the self-signed one
    /// generated at start). Without either, such handshakes are refused.
    pub fallback_certificate: Option<Arc<Certificate>>,
    /// Seconds since the Unix epoch, to refuse expired certificates; `None`: not checked.
    pub now: Option<i64>,
    /// `--proxy-body-size`: the largest request body of Ingresses that set no
    /// `proxy-body-size`; `None`: no limit.
    pub proxy_body_size: Option<u64>,
    /// `--default-backend-service` (namespace, name): serves requests no rule matches (unless
    /// an Ingress has a `spec.defaultBackend`) and the error pages of `custom-http-errors`.
    pub default_backend_service: Option<(String, String)>,
    /// `--custom-http-errors`: the codes replaced by error pages where an Ingress sets none.
    pub custom_http_errors: Vec<u16>,
    /// `--limit-req-status-code`: what rate-limited requests get (ingress-nginx's 503).
    pub limit_req_status_code: http::StatusCode,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ingress_class: DEFAULT_INGRESS_CLASS.into(),
            controller_name: DEFAULT_CONTROLLER_NAME.into(),
            default_certificate: None,
            fallback_certificate: None,
            now: None,
            proxy_body_size: None,
            default_backend_service: None,
            custom_http_errors: Vec::new(),
            limit_req_status_code: http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The output of compile.
#[derive(Debug, Default)]
pub struct Compiled {
    pub table: RoutingTable,
    pub diagnostics: Vec<Diagnostic>,
    /// The Ingresses of our class (whose status the leader writes), oldest first.
    pub ingresses: Vec<ObjectRef>,
    /// The conditions of every BackendPolicy, oldest first.
    pub policies: Vec<PolicyStatus>,
}

/// Compiles `snapshot` from scratch.
pub fn compile(snapshot: &Snapshot, options: &Options) -> Compiled {
    compile_cached(snapshot, options, &mut Fragments::default())
}

/// Compiles `snapshot`, reusing the per-Ingress work of earlier compiles kept in `fragments`
/// where its inputs are the same objects (see [`Fragments`]); the result is the table
/// [`compile`] gives.
pub fn compile_cached(
    snapshot: &Snapshot,
    options: &Options,
    fragments: &mut Fragments,
) -> Compiled {
    let mut sink = Sink::default();
    let classes = class::ClassSelector::new(options, snapshot.ingress_classes.iter().map(|c| &**c));
    let (mut fragments, services, ours) = fragments.generation(snapshot, &classes, &mut sink);

    let (attachments, policies) = policy::attach(&snapshot.backend_policies, services, &mut sink);
    let secrets = secrets::Secrets::new(&snapshot.secrets);
    let certificates = tls::TlsBuilder::new(&secrets, options, &mut sink);
    let routes = ours
        .iter()
        .map(|(ingress, _)| ingress::route_count(ingress))
        .sum();
    let mut builder = TableBuilder::new(
        services,
        &attachments,
        (certificates, &secrets),
        routes,
        transform::Defaults::of(options),
    );
    if let Some((namespace, name)) = &options.default_backend_service {
        builder.set_default_backend(namespace, name, &options.custom_http_errors, &mut sink);
    }
    // Main Ingresses first, so that every canary finds the route it attaches to.
    let mut canaries = Vec::new();
    for (ingress, object) in ours {
        let Outside {
            mut config,
            canary,
            parsed,
        } = match fragments.get(ingress, object, &mut builder) {
            Ok(fragment) => {
                builder.add_fragment(object, fragment, &mut sink);
                continue;
            }
            Err(outside) => *outside,
        };
        sink.replay(&parsed.diagnostics);
        match canary {
            Some(settings) => canaries.push((ingress, object, config, settings)),
            None => {
                builder
                    .tls
                    .add_ingress(ingress, object, &mut config.tls, &mut sink);
                builder.resolve_error_backend(object, &mut config, &mut sink);
                let regex = config.shared.transforms.regex_paths;
                for candidate in ingress::candidates(ingress, object, regex, &mut sink) {
                    builder.add(object, &config, candidate, &mut sink);
                }
            }
        }
    }
    for (ingress, object, config, settings) in canaries {
        let regex = config.shared.transforms.regex_paths;
        for candidate in ingress::candidates(ingress, object, regex, &mut sink) {
            builder.add_canary(object, &config, &settings, candidate, &mut sink);
        }
    }
    builder.add_www_redirects();
    builder.add_default_backend_route();
    Compiled {
        table: RoutingTable::new(builder.routes, builder.backends).with_tls(builder.tls.finish()),
        diagnostics: sink.diagnostics,
        ingresses: ours.iter().map(|(_, object)| object.clone()).collect(),
        policies,
    }
}

/// Ingresses without a name cannot be referred to (nor exist in a cluster); they are skipped.
/// A missing namespace is `default`, as `kubectl apply` would make it.
fn ingress_ref(ingress: &Ingress) -> Option<ObjectRef> {
    let name = ingress.metadata.name.as_deref().filter(|n| !n.is_empty())?;
    let namespace = ingress.metadata.namespace.as_deref().unwrap_or("default");
    Some(ObjectRef::new("Ingress", namespace, name))
}
