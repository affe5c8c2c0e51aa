//! Per-endpoint state, keyed by endpoint address and outliving table swaps: load ([`stats`]:
//! requests in flight, latency), health ([`health`]: probe verdict, outlier ejection) and the
//! [`EndpointRegistry`] that hands out one state per address.
//!
//! It sits below the balancers (which read it), the probes and the proxy (which report to it),
//! so none of those needs another to reach an endpoint's state.

mod health;
mod registry;
mod stats;

pub use health::{in_panic, may_eject, EndpointHealth, RequestOutcome, Transition, Verdict};
pub use registry::EndpointRegistry;
pub use stats::{EndpointStats, InFlight, DEFAULT_RTT};
