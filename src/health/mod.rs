//! Endpoint health: pure state machines ([`state`]) that the balancers read and the proxy
//! reports to, and the active probes ([`probe`]) that run for exactly the endpoints of the
//! current table. State is keyed by endpoint address and outlives table swaps.

mod probe;
mod state;

pub use probe::{Prober, Target};
pub use state::{in_panic, may_eject, EndpointHealth, Outcome, Transition, Verdict};
