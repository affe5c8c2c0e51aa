//! Resolving an Ingress backend (a Service and a port) to endpoint addresses.
//!
//! The Service port is found by number or by name. Endpoints come from the EndpointSlices
//! labelled `kubernetes.io/service-name`; the endpoint port is the EndpointSlice port whose name
//! equals the Service port's name (both empty for an unnamed port), which is how named
//! `targetPort`s resolve. Only the first address of an endpoint is used: the EndpointSlice API
//! says consumers should treat the addresses of one endpoint as fungible. Ready endpoints take
//! traffic; serving and terminating ones only when no ready endpoint is left (as kube-proxy
//! does); all others none.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint as SliceEndpoint, EndpointSlice};
use k8s_openapi::api::networking::v1::ServiceBackendPort;

use crate::table::Endpoint;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service port that exists; its endpoints are read separately, once per backend.
#[derive(Debug)]
pub struct ServicePortRef<'a> {
    service: &'a Service,
    port: &'a ServicePort,
    /// `namespace/service:port`, the backend's identity in the table.
    pub name: String,
}

impl<'a> ServicePortRef<'a> {
    /// The Service port's name (policies attach to ports by name).
    pub fn port_name(&self) -> Option<&'a str> {
        self.port.name.as_deref()
    }

    /// The Service port's `appProtocol` (`kubernetes.io/h2c`, `https`, ...).
    pub fn app_protocol(&self) -> Option<&'a str> {
        self.port.app_protocol.as_deref()
    }
}

/// Why a backend did not resolve: the reason (an Event reason) and a message.
#[derive(Debug, Clone)]
pub struct Unresolved {
    pub reason: &'static str,
    pub message: String,
}

fn ports(service: &Service) -> &[ServicePort] {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
}

/// Services and their EndpointSlices, indexed by namespace and name.
pub struct ServiceIndex<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
}

impl<'a> ServiceIndex<'a> {
    pub fn new(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Self {
        let services = services
            .into_iter()
            .filter_map(|s| {
                Some((
                    (
                        s.metadata.namespace.as_deref()?,
                        s.metadata.name.as_deref()?,
                    ),
                    s,
                ))
            })
            .collect();
        let mut by_service: HashMap<_, Vec<_>> = HashMap::new();
        for slice in slices {
            let namespace = slice.metadata.namespace.as_deref();
            let service = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let (Some(namespace), Some(service)) = (namespace, service) {
                by_service
                    .entry((namespace, service.as_str()))
                    .or_default()
                    .push(slice);
            }
        }
        Self {
            services,
            slices: by_service,
        }
    }

    fn service(&self, namespace: &str, service_name: &str) -> Result<&'a Service, Unresolved> {
        self.services
            .get(&(namespace, service_name))
            .copied()
            .ok_or_else(|| Unresolved {
                reason: super::reasons::SERVICE_NOT_FOUND,
                message: format!("Service {namespace}/{service_name} not found"),
            })
    }

    /// Checks that a policy target exists: the Service, and the port named `section` if any.
    pub fn check_target(
        &self,
        namespace: &str,
        service_name: &str,
        section: Option<&str>,
    ) -> Result<(), String> {
        let service = self
            .service(namespace, service_name)
            .map_err(|u| u.message)?;
        match section {
            Some(section)
                if !ports(service)
                    .iter()
                    .any(|p| p.name.as_deref() == Some(section)) =>
            {
                Err(format!(
                    "Service {namespace}/{service_name} has no port named {section:?}"
                ))
            }
            _ => Ok(()),
        }
    }

    /// Finds the Service port a backend names, by name or number.
    pub fn port(
        &self,
        namespace: &str,
        service_name: &str,
        port: &ServiceBackendPort,
    ) -> Result<ServicePortRef<'a>, Unresolved> {
        let unresolved = |reason, message| Err(Unresolved { reason, message });
        let service = self.service(namespace, service_name)?;
        if service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            return unresolved(
                super::reasons::UNSUPPORTED_BACKEND,
                format!("Service {namespace}/{service_name} is of type ExternalName, which vane does not route to"),
            );
        }
        let ports = ports(service);
        let service_port = match (&port.name, port.number) {
            (Some(name), _) if !name.is_empty() => {
                ports.iter().find(|p| p.name.as_ref() == Some(name))
            }
            (_, Some(number)) => ports.iter().find(|p| p.port == number),
            _ => {
                return unresolved(
                    super::reasons::PORT_NOT_FOUND,
                    format!("backend for Service {namespace}/{service_name} names no port"),
                )
            }
        };
        let Some(service_port) = service_port else {
            let wanted = port
                .name
                .clone()
                .unwrap_or_else(|| port.number.unwrap_or_default().to_string());
            return unresolved(
                super::reasons::PORT_NOT_FOUND,
                format!("Service {namespace}/{service_name} has no port {wanted}"),
            );
        };
        Ok(ServicePortRef {
            service,
            port: service_port,
            name: format!("{namespace}/{service_name}:{}", service_port.port),
        })
    }

    /// The endpoints of a Service port. `weight` gives each endpoint's weight from the
    /// Service port's name, the EndpointSlice endpoint and its address.
    pub fn endpoints(
        &self,
        port: &ServicePortRef<'a>,
        weight: &dyn Fn(Option<&str>, &SliceEndpoint, &str) -> u32,
    ) -> Result<Vec<Endpoint>, Unresolved> {
        let unresolved = |reason, message| Err(Unresolved { reason, message });
        let namespace = port
            .service
            .metadata
            .namespace
            .as_deref()
            .unwrap_or_default();
        let service_name = port.service.metadata.name.as_deref().unwrap_or_default();
        let service_port = port.port;
        let port_name = service_port.name.as_deref().unwrap_or_default();
        let Some(slices) = self.slices.get(&(namespace, service_name)) else {
            return unresolved(
                super::reasons::NO_ENDPOINT_SLICES,
                format!("no EndpointSlices for Service {namespace}/{service_name}"),
            );
        };
        // Ready endpoints, and the serving-but-terminating ones kept in reserve.
        let mut addresses = BTreeMap::new();
        let mut terminating = BTreeMap::new();
        let mut any_endpoint = false;
        let mut port_found = false;
        for slice in slices {
            let ip_family_ok = matches!(slice.address_type.as_str(), "IPv4" | "IPv6");
            any_endpoint |= !slice.endpoints.is_empty();
            let slice_port = slice.ports.as_deref().unwrap_or_default().iter().find(|p| {
                p.name.as_deref().unwrap_or_default() == port_name
                    && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
            });
            let Some(number) = slice_port.and_then(|p| p.port) else {
                continue;
            };
            port_found = true;
            let Ok(number) = u16::try_from(number) else {
                continue;
            };
            if !ip_family_ok {
                continue;
            }
            for endpoint in &slice.endpoints {
                let conditions = endpoint.conditions.as_ref();
                // An unset condition means "unknown", which the API says to read as true.
                let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
                let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
                let is_terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
                let into = match (ready, serving && is_terminating) {
                    (true, _) => &mut addresses,
                    (false, true) => &mut terminating,
                    (false, false) => continue,
                };
                let Some(address) = endpoint.addresses.first() else {
                    continue;
                };
                if let Ok(ip) = address.parse::<IpAddr>() {
                    let name = service_port.name.as_deref();
                    into.insert(SocketAddr::new(ip, number), weight(name, endpoint, address));
                }
            }
        }
        if any_endpoint && !port_found {
            return unresolved(
                super::reasons::PORT_NOT_FOUND,
                format!(
                    "no EndpointSlice of Service {namespace}/{service_name} lists a TCP port named {port_name:?}"
                ),
            );
        }
        // Like kube-proxy: terminating endpoints that still serve take traffic only when no
        // ready endpoint is left, so connections drain instead of failing.
        let (addresses, terminating) = if addresses.is_empty() {
            (terminating, true)
        } else {
            (addresses, false)
        };
        Ok(addresses
            .into_iter()
            .map(|(address, weight)| Endpoint {
                terminating,
                ..Endpoint::weighted(address, weight)
            })
            .collect())
    }
}
