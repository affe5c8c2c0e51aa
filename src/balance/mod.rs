//! Load balancing: one file per algorithm behind the [`Balancer`] trait.
//!
//! A table carries each backend's algorithm as plain data ([`LoadBalancing`]); when a table is
//! published, [`Balancers::build`] turns it into runtime pickers. A backend whose name,
//! endpoints and algorithm are unchanged keeps its previous picker (and so its round-robin
//! position) across the swap.

mod round_robin;

use std::fmt;
use std::sync::Arc;

use crate::table::{Backend, Endpoint, LoadBalancing, RoutingTable};

pub use round_robin::RoundRobin;

/// Chooses the endpoint of a backend for one request. Runs on the hot path: no locks, no
/// allocation.
pub trait Balancer: Send + Sync + fmt::Debug {
    /// Returns the index of the chosen endpoint in `endpoints`, or `None` when it is empty.
    fn pick(&self, endpoints: &[Endpoint]) -> Option<usize>;
}

/// The runtime pickers of one table, indexed like [`RoutingTable::backends`].
#[derive(Debug, Default)]
pub struct Balancers {
    per_backend: Vec<Arc<dyn Balancer>>,
}

impl Balancers {
    /// Builds pickers for `table`, reusing those of `previous` whose backend did not change.
    pub fn build(table: &RoutingTable, previous: Option<(&RoutingTable, &Balancers)>) -> Self {
        let reusable = |backend: &Backend| {
            let (old_table, old) = previous?;
            let index = old_table
                .backends()
                .iter()
                .position(|b| b.name == backend.name)?;
            (old_table.backends()[index] == *backend)
                .then(|| old.per_backend.get(index).cloned())?
        };
        let per_backend = table
            .backends()
            .iter()
            .map(|backend| {
                reusable(backend).unwrap_or_else(|| new_balancer(backend.load_balancing))
            })
            .collect();
        Self { per_backend }
    }

    pub fn get(&self, backend: usize) -> Option<&dyn Balancer> {
        self.per_backend.get(backend).map(|b| &**b)
    }
}

fn new_balancer(kind: LoadBalancing) -> Arc<dyn Balancer> {
    match kind {
        LoadBalancing::RoundRobin => Arc::new(RoundRobin::default()),
    }
}
