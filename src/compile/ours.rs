//! The Ingresses of our class, oldest first, kept between compiles.
//!
//! Selecting and sorting 10,000 Ingresses reads every one of them (class, name, timestamp),
//! which was a sixth of a one-file change. When the snapshot keeps its Ingresses in place
//! (a manifest file rewritten: its objects are replaced where they were) and what decides
//! which are ours is as before, the list is brought up to date by the replaced Ingresses
//! only: each old one leaves it, each new one of ours enters at its place in the order.
//! Anything else, or a case the update could not place exactly (two Ingresses of the same
//! name and age), selects and sorts them all, as a compile from scratch does.

use std::cmp::Ordering;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;

use super::class::{ClassSelector, Criteria};
use super::context::{oldest_first, order};
use super::{ingress_ref, Sink};
use crate::table::ObjectRef;

#[derive(Debug, Default)]
pub(super) struct OurIngresses {
    /// The snapshot's Ingresses as last selected from, in its order.
    ingresses: Vec<Arc<Ingress>>,
    /// What decided which were ours; `None` until the first selection.
    criteria: Option<Criteria>,
    /// Ours, oldest first.
    ours: Vec<(Arc<Ingress>, ObjectRef)>,
}

impl OurIngresses {
    /// Brings the list up to date with `ingresses` (a snapshot's) as `classes` selects them,
    /// reporting what selecting reports, and returns it.
    pub fn update(
        &mut self,
        ingresses: &[Arc<Ingress>],
        classes: &ClassSelector<'_>,
        sink: &mut Sink,
    ) -> &[(Arc<Ingress>, ObjectRef)] {
        let criteria = classes.criteria();
        // A selection that reports (our IngressClass is missing) reports in snapshot order,
        // which only a full selection gives.
        let in_place = classes.is_quiet()
            && self.criteria.as_ref() == Some(&criteria)
            && self.ingresses.len() == ingresses.len();
        if !(in_place && self.replace(ingresses, classes, sink)) {
            self.select(ingresses, classes, sink);
        }
        self.criteria = Some(criteria);
        &self.ours
    }

    fn select(&mut self, ingresses: &[Arc<Ingress>], classes: &ClassSelector<'_>, sink: &mut Sink) {
        self.ours = ingresses
            .iter()
            .filter_map(|ingress| {
                let object = ingress_ref(ingress)?;
                classes
                    .is_ours(ingress, &object, sink)
                    .then(|| (Arc::clone(ingress), object))
            })
            .collect();
        oldest_first(&mut self.ours, |ingress| &ingress.metadata);
        self.ingresses = ingresses.to_vec();
    }

    /// Replaces the Ingresses that are not the same `Arc`s as before; `false` when one cannot
    /// be placed exactly (then the list is to be selected afresh).
    fn replace(
        &mut self,
        ingresses: &[Arc<Ingress>],
        classes: &ClassSelector<'_>,
        sink: &mut Sink,
    ) -> bool {
        for (at, ingress) in ingresses.iter().enumerate() {
            if Arc::ptr_eq(&self.ingresses[at], ingress) {
                continue;
            }
            let old = std::mem::replace(&mut self.ingresses[at], Arc::clone(ingress));
            if let Some(index) = self.ours.iter().position(|(o, _)| Arc::ptr_eq(o, &old)) {
                self.ours.remove(index);
            }
            let Some(object) = ingress_ref(ingress) else {
                continue;
            };
            if !classes.is_ours(ingress, &object, sink) {
                continue;
            }
            let new = (Arc::clone(ingress), object);
            let compare = |(o, object): &(Arc<Ingress>, ObjectRef)| {
                order((&o.metadata, object), (&new.0.metadata, &new.1))
            };
            // Among equals, a stable sort keeps snapshot order, which the list does not know.
            let index = self.ours.partition_point(|o| compare(o) == Ordering::Less);
            if self
                .ours
                .get(index)
                .is_some_and(|o| compare(o) == Ordering::Equal)
            {
                return false;
            }
            self.ours.insert(index, new);
        }
        true
    }
}
