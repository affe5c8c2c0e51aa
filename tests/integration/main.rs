//! vane's integration tests, in one binary so that `cargo test` links once.
//!
//! - `auth`: basic auth through compile and the proxy;
//! - `check`: `vane check`, the built binary on manifests, its report and exit status;
//! - `compile`: tier 1, manifests to table, no I/O;
//! - `cors`: CORS annotations through compile, and preflights and headers through the proxy;
//! - `proxy`: tier 2, the real proxy on loopback with real origins and clients;
//! - `edge`: the proxy against hostile and careless clients and origins (hardening);
//! - `pool`: the HTTP/1.1 upstream connection pool, seen from the origins;
//! - `balancing`: balancing configuration through compile, and the algorithms through the proxy;
//! - `kubernetes`: tier 3, the Kubernetes source against the in-process API server
//!   (`vane_test_apiserver`, crates/test-apiserver);
//! - `generated`: committed generated files match the code;
//! - `metrics`: `/metrics` of the built binary, parsed strictly;
//! - `observability`: traffic metrics, the access log, request IDs and trace context;
//! - `spans`: vane's spans, exported over OTLP to an in-process collector;
//! - `layering`: each module imports only what ARCHITECTURE.md's rooms table allows;
//! - `standalone`: tier 4, the built `vane` binary on a manifests directory;
//! - `tls`: TLS termination, redirects, mTLS, upstream TLS, h2c and gRPC through the proxy,
//!   and TLS compile.

mod auth;
mod balancing;
mod check;
mod compile;
mod cors;
mod edge;
mod generated;
mod kubernetes;
mod layering;
mod metrics;
mod observability;
mod pool;
mod properties;
mod proxy;
mod resilience;
mod spans;
mod standalone;
mod support;
mod tls;
mod transforms;
