//! [`TableHandle`]: the one atomic swap between the compile loop and the data plane.
//!
//! Everything that must change together (routes, backends, their balancers, diagnostics) is
//! one [`ActiveTable`] behind one `ArcSwap`, so a request, the TLS resolver and the admin
//! endpoint never see a mix of two generations.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::balance::{Balancers, EndpointRegistry};
use crate::table::{Diagnostic, RoutingTable};

/// One published generation of the routing table, with its runtime balancers.
#[derive(Debug, Default)]
pub struct ActiveTable {
    /// 0 until the first table is published, then 1, 2, ...
    pub generation: u64,
    pub table: RoutingTable,
    pub diagnostics: Vec<Diagnostic>,
    pub balancers: Balancers,
}

#[derive(Debug, Default)]
pub struct TableHandle {
    current: ArcSwap<ActiveTable>,
    /// Serializes publishers, so that carrying state over from the previous generation is
    /// never raced by a second publish.
    publish: Mutex<()>,
    /// Per-endpoint load state, shared by the balancers of successive tables.
    endpoints: EndpointRegistry,
}

impl TableHandle {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current table. A request holds this `Arc` until its response headers are sent, so it
    /// finishes on the table it started with, whatever swaps happen meanwhile.
    pub fn load(&self) -> Arc<ActiveTable> {
        self.current.load_full()
    }

    /// Whether a table has been published since start (the readiness gate).
    pub fn is_published(&self) -> bool {
        self.current.load().generation > 0
    }

    /// Publishes a new table and returns its generation.
    pub fn publish(&self, table: RoutingTable, diagnostics: Vec<Diagnostic>) -> u64 {
        let _writer = self
            .publish
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let previous = self.current.load_full();
        let balancers = Balancers::build(
            &table,
            Some((&previous.table, &previous.balancers)),
            &self.endpoints,
            tokio::time::Instant::now(),
        );
        let generation = previous.generation + 1;
        self.current.store(Arc::new(ActiveTable {
            generation,
            table,
            diagnostics,
            balancers,
        }));
        generation
    }
}
