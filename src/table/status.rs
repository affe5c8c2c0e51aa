//! Object statuses: what compile reports about an object besides its routes and diagnostics,
//! for the Kubernetes source's status writer (the conditions of each BackendPolicy). Plain
//! data, here so that compile produces it and the writer reads it without depending on each
//! other.

use super::ObjectRef;

/// A condition to write into a policy's status (the writer adds the transition time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionSpec {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The status compile computed for one policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyStatus {
    pub object: ObjectRef,
    /// The `metadata.generation` the conditions describe.
    pub observed_generation: Option<i64>,
    pub conditions: Vec<ConditionSpec>,
}
