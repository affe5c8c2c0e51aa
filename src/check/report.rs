//! The report of `vane check`, built from what compile makes of the manifests: per Ingress of
//! the class, its routes, its annotations as [`compat`] judges them, and its diagnostics.
//! Pure: the same manifests give the same report.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{IngressClass, IngressClassSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::api::compat::{self, Status, Treatment};
use crate::compile::{self, reasons, Options};
use crate::manifests::Loaded;
use crate::snapshot::Snapshot;
use crate::table::{Diagnostic, ObjectRef, Route, RoutingTable};

/// How an Ingress (or the whole report) fares, worst last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// Served as written.
    Honoured,
    /// Served, with ignored or unknown annotations, or another warning.
    Warnings,
    /// Served in part, or not as written: something could not be used.
    Errors,
    /// Not served: its routes answer 503.
    Refused,
}

impl Verdict {
    /// `vane check`'s exit status: 2 for refusals and errors; 1 for warnings when `strict`.
    pub fn exit_code(self, strict: bool) -> u8 {
        match self {
            Verdict::Honoured => 0,
            Verdict::Warnings => u8::from(strict),
            Verdict::Errors | Verdict::Refused => 2,
        }
    }

    fn of(diagnostic: &Diagnostic) -> Verdict {
        match diagnostic.reason {
            reasons::REFUSED_ANNOTATION => Verdict::Refused,
            reasons::IGNORED_ANNOTATION
            | reasons::UNKNOWN_ANNOTATION
            | reasons::ANNOTATION_OVERRIDDEN
            | reasons::INSECURE_UPSTREAM_TLS
            | reasons::UPSTREAM_TLS_NOT_USED => Verdict::Warnings,
            _ => Verdict::Errors,
        }
    }
}

/// An annotation vane does not honour, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Unhonoured {
    pub name: String,
    pub reason: &'static str,
}

/// An Ingress's annotations under `vane.dev/` and ingress-nginx's prefix, as vane treats them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AnnotationReport {
    pub honoured: Vec<String>,
    pub ignored: Vec<Unhonoured>,
    pub refused: Vec<Unhonoured>,
    pub unknown: Vec<String>,
}

/// One diagnostic of an Ingress.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub reason: &'static str,
    pub message: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressReport {
    pub namespace: String,
    pub name: String,
    pub verdict: Verdict,
    /// `HOST PATH -> BACKEND`, in table order.
    pub routes: Vec<String>,
    /// The routes this Ingress is the canary of, written the same way.
    pub canary_of: Vec<String>,
    pub annotations: AnnotationReport,
    pub diagnostics: Vec<Finding>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub ingress_class: String,
    pub verdict: Verdict,
    pub ingresses: Vec<IngressReport>,
    /// Ingresses of other classes: vane would not serve them under this class.
    pub other_classes: usize,
    /// Diagnostics of other objects (Services, Secrets, BackendPolicies).
    pub other_diagnostics: Vec<Diagnostic>,
    /// Files and documents that could not be read.
    pub load_errors: Vec<String>,
}

impl Report {
    /// Compiles `loaded` as the controller would if it served `ingress_class`, and reports.
    pub fn new(loaded: &Loaded, ingress_class: &str) -> Report {
        let options = Options {
            ingress_class: ingress_class.to_owned(),
            ..Options::default()
        };
        let compiled = compile::compile(&serving(&loaded.snapshot, &options), &options);
        let mut by_object: BTreeMap<ObjectRef, Vec<Diagnostic>> = BTreeMap::new();
        for diagnostic in compiled.diagnostics {
            by_object
                .entry(diagnostic.object.clone())
                .or_default()
                .push(diagnostic);
        }
        let annotations: HashMap<(&str, &str), &BTreeMap<String, String>> = loaded
            .snapshot
            .ingresses
            .iter()
            .filter_map(|ingress| {
                let metadata = &ingress.metadata;
                let namespace = metadata.namespace.as_deref().unwrap_or("default");
                Some((
                    (namespace, metadata.name.as_deref()?),
                    metadata.annotations.as_ref()?,
                ))
            })
            .collect();
        let ingresses: Vec<IngressReport> = compiled
            .ingresses
            .iter()
            .map(|object| {
                let key = (&*object.namespace, &*object.name);
                ingress_report(
                    object,
                    annotations.get(&key).copied(),
                    by_object.remove(object).unwrap_or_default(),
                    &compiled.table,
                )
            })
            .collect();
        let diagnostics: Vec<Diagnostic> = by_object.into_values().flatten().collect();
        let load_errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        let verdict = ingresses
            .iter()
            .map(|ingress| ingress.verdict)
            .chain(diagnostics.iter().map(Verdict::of))
            .chain((!load_errors.is_empty()).then_some(Verdict::Errors))
            .max()
            .unwrap_or(Verdict::Honoured);
        Report {
            ingress_class: ingress_class.to_owned(),
            verdict,
            other_classes: loaded.snapshot.ingresses.len() - ingresses.len(),
            ingresses,
            other_diagnostics: diagnostics,
            load_errors,
        }
    }
}

/// `snapshot` with the IngressClass `options.ingress_class` as vane's own, whatever controller
/// it names (or whether it exists at all): the report answers what vane would do if it served
/// that class, `nginx` say, in ingress-nginx's place.
fn serving(snapshot: &Snapshot, options: &Options) -> Snapshot {
    let mut snapshot = snapshot.clone();
    let existing = snapshot
        .ingress_classes
        .iter()
        .position(|class| class.metadata.name.as_deref() == Some(&options.ingress_class))
        .map(|at| snapshot.ingress_classes.remove(at));
    snapshot.ingress_classes.push(Arc::new(IngressClass {
        metadata: ObjectMeta {
            name: Some(options.ingress_class.clone()),
            // Keeps `is-default-class`, which decides about Ingresses that name no class.
            annotations: existing.and_then(|class| class.metadata.annotations.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(IngressClassSpec {
            controller: Some(options.controller_name.clone()),
            ..IngressClassSpec::default()
        }),
    }));
    snapshot
}

fn ingress_report(
    object: &ObjectRef,
    annotations: Option<&BTreeMap<String, String>>,
    diagnostics: Vec<Diagnostic>,
    table: &RoutingTable,
) -> IngressReport {
    let mut report = AnnotationReport::default();
    for name in annotations.into_iter().flat_map(|map| map.keys()) {
        let unhonoured = |reason| Unhonoured {
            name: name.clone(),
            reason,
        };
        match compat::classify(name) {
            Some(Status::Known(Treatment::Honoured)) => report.honoured.push(name.clone()),
            Some(Status::Known(Treatment::Ignored(why))) => report.ignored.push(unhonoured(why)),
            Some(Status::Known(Treatment::Refused(why))) => report.refused.push(unhonoured(why)),
            Some(Status::Unknown) => report.unknown.push(name.clone()),
            None => {}
        }
    }
    let backend = |index: usize| table.backend(index).map_or("?", |b| &b.name).to_owned();
    let describe = |route: &Route, backend: String| match &route.path {
        Some(path) => format!("{} {path} -> {backend}", route.host),
        None => format!("{} defaultBackend -> {backend}", route.host),
    };
    let routes = table
        .routes()
        .iter()
        .filter(|route| route.ingress == *object)
        .map(|route| describe(route, backend(route.backend)))
        .collect();
    let canary_of = table
        .routes()
        .iter()
        .filter_map(|route| Some((route, route.canary.as_ref()?)))
        .filter(|(_, canary)| canary.ingress == *object)
        .map(|(route, canary)| describe(route, backend(canary.backend)))
        .collect();
    IngressReport {
        namespace: object.namespace.to_string(),
        name: object.name.to_string(),
        verdict: diagnostics
            .iter()
            .map(Verdict::of)
            .max()
            .unwrap_or(Verdict::Honoured),
        routes,
        canary_of,
        annotations: report,
        diagnostics: diagnostics
            .into_iter()
            .map(|d| Finding {
                reason: d.reason,
                message: d.message,
            })
            .collect(),
    }
}
