//! The input of compile: every object vane reads, from either source.
//!
//! Both the Kubernetes source (reflector stores) and the standalone source (a manifests
//! directory) produce this, so everything after the source is shared and tested once. Objects
//! are `Arc`s because reflector stores hand out `Arc`s: taking a snapshot copies pointers only.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use crate::api::BackendPolicy;

/// The Secret type of certificates.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
/// The Secret type of basic auth users (`kubectl create secret generic`). These two types are
/// the only ones read from a cluster.
pub const OPAQUE_SECRET_TYPE: &str = "Opaque";

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub ingress_classes: Vec<Arc<IngressClass>>,
    pub ingresses: Vec<Arc<Ingress>>,
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// From a cluster only Secrets of type `kubernetes.io/tls` and `Opaque` (by field
    /// selectors); from manifests every Secret, so that compile can name the type of a wrong
    /// one.
    pub secrets: Vec<Arc<Secret>>,
    pub backend_policies: Vec<Arc<BackendPolicy>>,
}

impl Snapshot {
    /// Appends the objects of `other`: pointer copies.
    pub fn extend(&mut self, other: &Snapshot) {
        self.ingress_classes
            .extend(other.ingress_classes.iter().cloned());
        self.ingresses.extend(other.ingresses.iter().cloned());
        self.services.extend(other.services.iter().cloned());
        self.endpoint_slices
            .extend(other.endpoint_slices.iter().cloned());
        self.secrets.extend(other.secrets.iter().cloned());
        self.backend_policies
            .extend(other.backend_policies.iter().cloned());
    }
}
