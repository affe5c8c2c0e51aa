//! Services and their EndpointSlices by namespace and name, kept between compiles.
//!
//! ```text
//! ServiceIndex
//! ├── by_name:  namespace ─▶ name ─▶ Named { services: [(i, Service)], slices: [(i, EndpointSlice)] }
//! └── services, slices: the snapshot's objects as indexed, in its order (i is the position)
//! ```
//!
//! Each compile brings the index up to date with its snapshot. A snapshot that keeps its
//! objects where they were (a manifest file rewritten: its objects are replaced in place;
//! every other object is the same `Arc` at the same position) costs a comparison of pointers
//! per object and an update per replaced object, and the update names the Services whose
//! objects changed. Any other snapshot (objects added or removed) rebuilds the index. Building
//! a map of 20,000 objects on every compile, which reads every object's name, was a fifth of
//! a one-file change at 10,000 Services.

use std::sync::Arc;

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use foldhash::{HashMap, HashSet};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The Service names an update changed objects of.
#[derive(Debug)]
pub enum Changed {
    /// The index was rebuilt: any name may have changed.
    All,
    /// The [`ServiceIndex::name_hash`] of each Service whose Service or EndpointSlices are not
    /// the same objects as before the update. Hashes, so that asking about a name reads no
    /// string; a name whose hash is here may still be unchanged.
    Names(HashSet<u64>),
}

impl Changed {
    /// Whether the Service whose name has `hash` may have other objects than before the update.
    pub fn may_include(&self, hash: u64) -> bool {
        match self {
            Changed::All => true,
            Changed::Names(hashes) => hashes.contains(&hash),
        }
    }
}

#[derive(Debug, Default)]
pub struct ServiceIndex {
    by_name: HashMap<String, HashMap<String, Named>>,
    services: Vec<Arc<Service>>,
    slices: Vec<Arc<EndpointSlice>>,
    /// Hashes names for [`Changed`]: the same for the life of the index.
    hasher: RandomState,
}

/// What a Service name stands for, each object with its position in the snapshot, in
/// snapshot order: the Services of that name (more than one only in a snapshot with
/// duplicates, where the last one counts) and the EndpointSlices labelled with it.
#[derive(Debug, Default)]
struct Named {
    services: Vec<(usize, Arc<Service>)>,
    slices: Vec<(usize, Arc<EndpointSlice>)>,
}

fn service_name(service: &Service) -> Option<(&str, &str)> {
    let metadata = &service.metadata;
    Some((metadata.namespace.as_deref()?, metadata.name.as_deref()?))
}

fn slice_service_name(slice: &EndpointSlice) -> Option<(&str, &str)> {
    let metadata = &slice.metadata;
    let service = metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some((metadata.namespace.as_deref()?, service))
}

/// Adds `object` at position `at` of its list, keeping the list in snapshot order.
fn insert_at<T>(list: &mut Vec<(usize, Arc<T>)>, at: usize, object: &Arc<T>) {
    let index = list.partition_point(|&(i, _)| i < at);
    list.insert(index, (at, Arc::clone(object)));
}

impl ServiceIndex {
    /// Brings the index up to date with `services` and `slices` (a snapshot's), and says which
    /// Service names have other objects than at the last update.
    pub fn update(&mut self, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Changed {
        if services.len() != self.services.len() || slices.len() != self.slices.len() {
            self.rebuild(services, slices);
            return Changed::All;
        }
        let mut changed = Vec::new();
        let mut note = |name: Option<(&str, &str)>| {
            if let Some((namespace, name)) = name {
                changed.push((namespace.to_owned(), name.to_owned()));
            }
        };
        for (at, service) in services.iter().enumerate() {
            if Arc::ptr_eq(&self.services[at], service) {
                continue;
            }
            let old = std::mem::replace(&mut self.services[at], Arc::clone(service));
            if let Some(named) = self.named_mut(service_name(&old)) {
                named.services.retain(|&(i, _)| i != at);
            }
            if let Some(named) = self.named_mut(service_name(service)) {
                insert_at(&mut named.services, at, service);
            }
            note(service_name(&old));
            note(service_name(service));
        }
        for (at, slice) in slices.iter().enumerate() {
            if Arc::ptr_eq(&self.slices[at], slice) {
                continue;
            }
            let old = std::mem::replace(&mut self.slices[at], Arc::clone(slice));
            if let Some(named) = self.named_mut(slice_service_name(&old)) {
                named.slices.retain(|&(i, _)| i != at);
            }
            if let Some(named) = self.named_mut(slice_service_name(slice)) {
                insert_at(&mut named.slices, at, slice);
            }
            note(slice_service_name(&old));
            note(slice_service_name(slice));
        }
        // Names left without objects go, so that the index does not grow with renames.
        for (namespace, name) in &changed {
            let Some(names) = self.by_name.get_mut(namespace) else {
                continue;
            };
            if names
                .get(name)
                .is_some_and(|n| n.services.is_empty() && n.slices.is_empty())
            {
                names.remove(name);
            }
            if names.is_empty() {
                self.by_name.remove(namespace);
            }
        }
        let hashes = changed
            .iter()
            .map(|(namespace, name)| self.name_hash(namespace, name))
            .collect();
        Changed::Names(hashes)
    }

    /// The hash of Service name `namespace/name`, as [`Changed`] has it.
    pub fn name_hash(&self, namespace: &str, name: &str) -> u64 {
        self.hasher.hash_one((namespace, name))
    }

    fn rebuild(&mut self, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) {
        self.by_name.clear();
        for (at, service) in services.iter().enumerate() {
            if let Some(named) = self.named_mut(service_name(service)) {
                named.services.push((at, Arc::clone(service)));
            }
        }
        for (at, slice) in slices.iter().enumerate() {
            if let Some(named) = self.named_mut(slice_service_name(slice)) {
                named.slices.push((at, Arc::clone(slice)));
            }
        }
        self.services = services.to_vec();
        self.slices = slices.to_vec();
    }

    /// The entry of `name`, made if missing; `None` for an object without a name.
    fn named_mut(&mut self, name: Option<(&str, &str)>) -> Option<&mut Named> {
        let (namespace, name) = name?;
        // Looked up before inserting, so that a name already there allocates no key.
        if !self.by_name.contains_key(namespace) {
            self.by_name
                .insert(namespace.to_owned(), HashMap::default());
        }
        let names = self.by_name.get_mut(namespace)?;
        if !names.contains_key(name) {
            names.insert(name.to_owned(), Named::default());
        }
        names.get_mut(name)
    }

    /// The Service `namespace/name` (the last of that name) and the EndpointSlices labelled
    /// with its name, in snapshot order.
    pub fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> (
        Option<&Arc<Service>>,
        impl ExactSizeIterator<Item = &Arc<EndpointSlice>> + Clone,
    ) {
        let named = self.by_name.get(namespace).and_then(|n| n.get(name));
        let service = named.and_then(|n| n.services.last()).map(|(_, s)| s);
        let slices = named.map_or(&[][..], |n| &n.slices[..]);
        (service, slices.iter().map(|(_, s)| s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(name: &str) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"}}))
                .unwrap(),
        )
    }

    fn slice(name: &str, service: &str) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default",
                             "labels": {SERVICE_NAME_LABEL: service}},
                "addressType": "IPv4", "endpoints": [],
            }))
            .unwrap(),
        )
    }

    /// The objects of `name` as the index has them, as pointers.
    fn objects(
        index: &ServiceIndex,
        name: &str,
    ) -> (Option<*const Service>, Vec<*const EndpointSlice>) {
        let (service, slices) = index.get("default", name);
        (service.map(Arc::as_ptr), slices.map(Arc::as_ptr).collect())
    }

    fn rebuilt(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> ServiceIndex {
        let mut index = ServiceIndex::default();
        index.update(services, slices);
        index
    }

    #[test]
    fn objects_replaced_in_place_update_the_index_as_a_rebuild_would() {
        let mut services = vec![service("a"), service("b"), service("a")];
        let mut slices = vec![slice("a-1", "a"), slice("b-1", "b"), slice("a-2", "a")];
        let mut index = rebuilt(&services, &slices);
        // The second Service of a name counts; a slice moves from one Service to another.
        services[2] = service("c");
        slices[0] = slice("b-2", "b");
        let Changed::Names(changed) = index.update(&services, &slices) else {
            panic!("rebuilt, though nothing was added or removed");
        };
        let names: HashSet<_> = ["a", "b", "c"]
            .map(|n| index.name_hash("default", n))
            .into_iter()
            .collect();
        assert_eq!(changed, names);
        let fresh = rebuilt(&services, &slices);
        for name in ["a", "b", "c", "d"] {
            assert_eq!(objects(&index, name), objects(&fresh, name), "{name}");
        }
        assert_eq!(objects(&index, "b").1.len(), 2);
        assert!(matches!(index.update(&services, &slices), Changed::Names(n) if n.is_empty()));
        services.pop();
        assert!(matches!(index.update(&services, &slices), Changed::All));
        assert_eq!(objects(&index, "c"), (None, vec![]));
    }
}
