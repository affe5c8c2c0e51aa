//! Which Ingresses belong to vane.
//!
//! Ours is the IngressClass named `--ingress-class` whose `spec.controller` is
//! `--controller-name`. An Ingress is ours when:
//! - `spec.ingressClassName` names that IngressClass (which must exist and be ours), or
//! - it has no `spec.ingressClassName` and its legacy `kubernetes.io/ingress.class` annotation
//!   equals `--ingress-class` (the annotation predates IngressClass and names the class
//!   directly), or
//! - it has neither, and our IngressClass is marked as the cluster default with
//!   `ingressclass.kubernetes.io/is-default-class: "true"`.

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use super::{reasons, Options, Sink};
use crate::table::ObjectRef;

pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// What decides which Ingresses are ours, apart from the Ingresses themselves.
#[derive(Debug, PartialEq, Eq)]
pub struct Criteria {
    ingress_class: String,
    controller_name: String,
    exists: bool,
    is_default: bool,
}

/// What the snapshot says about our IngressClass.
pub struct ClassSelector<'a> {
    options: &'a Options,
    /// Our IngressClass exists with our controller name.
    exists: bool,
    is_default: bool,
}

impl<'a> ClassSelector<'a> {
    pub fn new<'c>(
        options: &'a Options,
        classes: impl IntoIterator<Item = &'c IngressClass>,
    ) -> Self {
        let ours = classes.into_iter().find(|c| {
            c.metadata.name.as_deref() == Some(&options.ingress_class)
                && c.spec.as_ref().and_then(|s| s.controller.as_deref())
                    == Some(&options.controller_name)
        });
        let is_default = ours
            .and_then(|c| c.metadata.annotations.as_ref())
            .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
            .is_some_and(|v| v == "true");
        Self {
            options,
            exists: ours.is_some(),
            is_default,
        }
    }

    /// What decides, so that a decision can be known to still hold.
    pub fn criteria(&self) -> Criteria {
        Criteria {
            ingress_class: self.options.ingress_class.clone(),
            controller_name: self.options.controller_name.clone(),
            exists: self.exists,
            is_default: self.is_default,
        }
    }

    /// Whether [`Self::is_ours`] never reports (our IngressClass exists).
    pub fn is_quiet(&self) -> bool {
        self.exists
    }

    /// Decides whether `ingress` is ours. An Ingress that names our class while our IngressClass
    /// is missing is reported, since that is almost always a forgotten manifest.
    pub fn is_ours(&self, ingress: &Ingress, object: &ObjectRef, sink: &mut Sink) -> bool {
        let class_name = ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref());
        if let Some(name) = class_name {
            if name != self.options.ingress_class {
                return false;
            }
            if !self.exists {
                sink.report(
                    object,
                    reasons::INGRESS_CLASS_NOT_FOUND,
                    format!(
                        "spec.ingressClassName is {name:?}, but no IngressClass {name:?} with \
                         spec.controller {:?} exists; the Ingress is ignored",
                        self.options.controller_name
                    ),
                );
            }
            return self.exists;
        }
        let legacy = ingress
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION));
        match legacy {
            Some(name) => *name == self.options.ingress_class,
            None => self.is_default,
        }
    }
}
