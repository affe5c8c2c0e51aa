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
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::Endpoint as SliceEndpoint;
use k8s_openapi::api::networking::v1::ServiceBackendPort;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::service_index::ServiceIndex;
use crate::table::Endpoint;

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

/// The endpoints of a backend, and what had to be skipped to get them (each an
/// `InvalidEndpoint` message naming the Service or EndpointSlice and the field).
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    pub endpoints: Vec<Endpoint>,
    pub skipped: Vec<String>,
}

/// A port number as the API declares it (int32), if it is a TCP port.
fn valid_port(number: i32) -> Option<u16> {
    u16::try_from(number).ok().filter(|&port| port != 0)
}

fn ports(service: &Service) -> &[ServicePort] {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
}

/// Resolving backends: what a Service port is, and what its endpoints are.
impl ServiceIndex {
    fn service(&self, namespace: &str, service_name: &str) -> Result<&Service, Unresolved> {
        self.get(namespace, service_name)
            .0
            .map(|s| &**s)
            .ok_or_else(|| Unresolved {
                reason: super::reasons::SERVICE_NOT_FOUND,
                message: format!("Service {namespace}/{service_name} not found"),
            })
    }

    /// The first port of a Service, which is the port of a Service named without one (as
    /// ingress-nginx takes a default backend's).
    pub fn first_port(
        &self,
        namespace: &str,
        service_name: &str,
    ) -> Result<ServiceBackendPort, Unresolved> {
        let service = self.service(namespace, service_name)?;
        match ports(service).first() {
            Some(port) => Ok(ServiceBackendPort {
                number: Some(port.port),
                name: None,
            }),
            None => Err(Unresolved {
                reason: super::reasons::PORT_NOT_FOUND,
                message: format!("Service {namespace}/{service_name} has no ports"),
            }),
        }
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
    ) -> Result<ServicePortRef<'_>, Unresolved> {
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
        port: &ServicePortRef<'_>,
        weight: &dyn Fn(Option<&str>, &SliceEndpoint, &str) -> u32,
    ) -> Result<Resolved, Unresolved> {
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
        // Only an object that skipped the API server's validation (a manifest) gets here with
        // these; endpoints come from the EndpointSlices, so the route still works.
        let mut skipped = Vec::new();
        if valid_port(service_port.port).is_none() {
            skipped.push(format!(
                "Service {namespace}/{service_name}: port {} is not between 1 and 65535",
                service_port.port
            ));
        }
        if let Some(IntOrString::Int(target)) = &service_port.target_port {
            if valid_port(*target).is_none() {
                skipped.push(format!(
                    "Service {namespace}/{service_name}: targetPort {target} is not between 1 and 65535"
                ));
            }
        }
        let (_, slices) = self.get(namespace, service_name);
        if slices.len() == 0 {
            return unresolved(
                super::reasons::NO_ENDPOINT_SLICES,
                format!("no EndpointSlices for Service {namespace}/{service_name}"),
            );
        }
        // Ready endpoints, and the serving-but-terminating ones kept in reserve.
        let mut addresses = BTreeMap::new();
        let mut terminating = BTreeMap::new();
        let mut any_endpoint = false;
        let mut port_found = false;
        for slice in slices {
            let slice_name = format!(
                "EndpointSlice {namespace}/{}",
                slice.metadata.name.as_deref().unwrap_or_default()
            );
            any_endpoint |= !slice.endpoints.is_empty();
            let slice_port = slice.ports.as_deref().unwrap_or_default().iter().find(|p| {
                p.name.as_deref().unwrap_or_default() == port_name
                    && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
            });
            let Some(number) = slice_port.and_then(|p| p.port) else {
                continue;
            };
            port_found = true;
            let Some(number) = valid_port(number) else {
                skipped.push(format!(
                    "{slice_name}: port {port_name:?} is {number}, not between 1 and 65535; its endpoints are skipped"
                ));
                continue;
            };
            let is_family: fn(&IpAddr) -> bool = match slice.address_type.as_str() {
                "IPv4" => IpAddr::is_ipv4,
                "IPv6" => IpAddr::is_ipv6,
                other => {
                    if !slice.endpoints.is_empty() {
                        skipped.push(format!(
                            "{slice_name}: addressType {other} is not supported (only IPv4 and IPv6); its endpoints are skipped"
                        ));
                    }
                    continue;
                }
            };
            let mut bad_addresses = Vec::new();
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
                match address.parse::<IpAddr>() {
                    Ok(ip) if is_family(&ip) => {
                        let name = service_port.name.as_deref();
                        into.insert(SocketAddr::new(ip, number), weight(name, endpoint, address));
                    }
                    _ => bad_addresses.push(address.as_str()),
                }
            }
            // One message per slice, however many addresses are bad.
            if let Some(first) = bad_addresses.first() {
                skipped.push(format!(
                    "{slice_name}: {} address(es) are not {} addresses (the first: {first:?}); those endpoints are skipped",
                    bad_addresses.len(),
                    slice.address_type
                ));
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
        let endpoints = addresses
            .into_iter()
            .map(|(address, weight)| Endpoint {
                terminating,
                ..Endpoint::weighted(address, weight)
            })
            .collect();
        Ok(Resolved { endpoints, skipped })
    }
}
