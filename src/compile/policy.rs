//! Attaching BackendPolicies to Services, and the conditions each policy reports.
//!
//! Policies are considered oldest first (creationTimestamp, then namespace/name). A valid
//! policy attaches to each target that exists: a Service port (`sectionName`) or a whole
//! Service. When two policies target the same Service port (or the same whole Service), the
//! older one keeps it and the younger one is `Conflicted` there. For a backend, a policy on its
//! port beats a policy on the whole Service.

use std::sync::Arc;

use foldhash::HashMap;

use crate::api::{self, conditions, BackendPolicy};
use crate::table::{ConditionSpec, ObjectRef, PolicyStatus};

use super::service_index::ServiceIndex;
use super::{reasons, Sink};

/// `(namespace, service, port name)`; `None` as port name means the whole Service.
type TargetKey = (Arc<str>, String, Option<String>);

/// Which policy applies where.
#[derive(Debug, Default)]
pub struct Attachments<'a> {
    by_target: HashMap<TargetKey, (&'a BackendPolicy, ObjectRef)>,
}

impl<'a> Attachments<'a> {
    /// The policy for a Service port: one targeting that port, else one targeting the Service.
    pub fn for_port(
        &self,
        namespace: &str,
        service: &str,
        port_name: Option<&str>,
    ) -> Option<&(&'a BackendPolicy, ObjectRef)> {
        let key = |port: Option<&str>| {
            (
                namespace.into(),
                service.to_owned(),
                port.map(str::to_owned),
            )
        };
        port_name
            .and_then(|port| self.by_target.get(&key(Some(port))))
            .or_else(|| self.by_target.get(&key(None)))
    }
}

pub fn attach<'a>(
    policies: &'a [Arc<BackendPolicy>],
    services: &ServiceIndex,
    sink: &mut Sink,
) -> (Attachments<'a>, Vec<PolicyStatus>) {
    let mut ordered: Vec<(&BackendPolicy, ObjectRef)> = policies
        .iter()
        .filter_map(|p| {
            let name = p.metadata.name.as_deref().filter(|n| !n.is_empty())?;
            let namespace = p.metadata.namespace.as_deref().unwrap_or("default");
            Some((&**p, ObjectRef::new("BackendPolicy", namespace, name)))
        })
        .collect();
    super::context::oldest_first(&mut ordered, |policy| &policy.metadata);

    let mut attachments = Attachments::default();
    let mut statuses = Vec::with_capacity(ordered.len());
    for (policy, object) in ordered {
        let errors = api::validate(&policy.spec);
        if !errors.is_empty() {
            sink.report(&object, reasons::INVALID_POLICY, errors.join("; "));
        }
        let mut unresolved = Vec::new();
        let mut conflicts = Vec::new();
        let mut attached = 0;
        for target in &policy.spec.target_refs {
            if target.kind != "Service" || !target.group.is_empty() {
                continue; // reported by validation
            }
            let section = target.section_name.as_deref();
            if let Err(why) = services.check_target(&object.namespace, &target.name, section) {
                unresolved.push(why);
                continue;
            }
            if !errors.is_empty() {
                continue;
            }
            let key = (
                object.namespace.clone(),
                target.name.clone(),
                section.map(str::to_owned),
            );
            match attachments.by_target.get(&key) {
                Some((_, older)) => conflicts.push(format!(
                    "{}{} is already configured by older BackendPolicy {}",
                    target.name,
                    section.map(|s| format!(" port {s}")).unwrap_or_default(),
                    older.name
                )),
                None => {
                    attachments.by_target.insert(key, (policy, object.clone()));
                    attached += 1;
                }
            }
        }
        for why in &unresolved {
            sink.report(&object, reasons::POLICY_TARGET_NOT_FOUND, why.clone());
        }
        for why in &conflicts {
            sink.report(&object, reasons::POLICY_CONFLICT, why.clone());
        }
        let accepted = match () {
            _ if !errors.is_empty() => {
                condition(conditions::ACCEPTED, false, "Invalid", errors.join("; "))
            }
            _ if attached > 0 => condition(
                conditions::ACCEPTED,
                true,
                "Accepted",
                "the policy applies to its targets".into(),
            ),
            _ if !conflicts.is_empty() => condition(
                conditions::ACCEPTED,
                false,
                "Conflicted",
                conflicts.join("; "),
            ),
            _ => condition(
                conditions::ACCEPTED,
                false,
                "TargetNotFound",
                "no target of the policy exists".into(),
            ),
        };
        let resolved = if unresolved.is_empty() {
            condition(
                conditions::RESOLVED_REFS,
                true,
                "ResolvedRefs",
                "every target exists".into(),
            )
        } else {
            condition(
                conditions::RESOLVED_REFS,
                false,
                "TargetNotFound",
                unresolved.join("; "),
            )
        };
        let conflicted = if conflicts.is_empty() {
            condition(
                conditions::CONFLICTED,
                false,
                "NoConflicts",
                "no older policy targets the same Services".into(),
            )
        } else {
            condition(
                conditions::CONFLICTED,
                true,
                "Conflicted",
                conflicts.join("; "),
            )
        };
        statuses.push(PolicyStatus {
            object,
            observed_generation: policy.metadata.generation,
            conditions: vec![accepted, resolved, conflicted],
        });
    }
    (attachments, statuses)
}

fn condition(
    type_: &'static str,
    status: bool,
    reason: &'static str,
    message: String,
) -> ConditionSpec {
    ConditionSpec {
        type_,
        status,
        reason,
        message,
    }
}
