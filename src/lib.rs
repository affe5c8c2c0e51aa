//! vane: a Kubernetes ingress controller with an embedded hyper reverse proxy.
//!
//! A source (Kubernetes watches or a manifests directory) produces a [`snapshot::Snapshot`];
//! [`compile::compile`] turns it into an immutable [`table::RoutingTable`]; the proxy reads the
//! table through one atomic swap ([`live::TableHandle`]). See ARCHITECTURE.md.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod app;
pub mod args;
pub mod balance;
pub mod check;
pub mod compile;
pub mod debounce;
pub mod endpoint;
pub mod health;
pub mod k8s;
pub mod live;
pub mod manifests;
pub mod metrics;
pub mod net;
pub mod otlp;
pub mod proxy;
pub mod snapshot;
pub mod table;
pub mod tls;
