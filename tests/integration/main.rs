//! vane's integration tests, in one binary so that `cargo test` links once.
//!
//! - `compile`: tier 1, manifests to table, no I/O;
//! - `proxy`: tier 2, the real proxy on loopback with real origins and clients;
//! - `standalone`: tier 4, the built `vane` binary on a manifests directory.

mod compile;
mod proxy;
mod standalone;
mod support;
