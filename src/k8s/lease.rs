//! Leader election on a `coordination.k8s.io/v1` Lease, the way client-go does it.
//!
//! Every replica serves traffic; only the leader writes status and Events. A replica becomes
//! leader by creating the Lease or by taking over one whose holder stopped renewing. Expiry is
//! judged by when *this* replica last saw the Lease change (not by the timestamps in it), so
//! clock skew between nodes cannot make two replicas leaders at once. A leader renews every
//! `retry_period`; if renewing fails for `renew_deadline` (shorter than the lease duration) it
//! steps down before anyone else may take over. On shutdown it releases the Lease so that
//! another replica takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// This replica's identity in the Lease (the pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
    pub fn new(name: String, namespace: String, identity: String) -> Self {
        Self {
            name,
            namespace,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What this replica last saw of the Lease, and when it saw it change.
struct Observed {
    resource_version: Option<String>,
    at: Instant,
}

/// Runs the election until `shutdown`, publishing leadership on `leader`.
pub async fn run(
    client: Client,
    settings: LeaseSettings,
    leader: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let mut observed: Option<Observed> = None;
    let mut last_renewal: Option<Instant> = None;
    let mut ticks = tokio::time::interval(settings.retry_period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let is_leader = match try_acquire_or_renew(&api, &settings, &mut observed).await {
            Ok(held) => {
                if held {
                    last_renewal = Some(Instant::now());
                }
                held
            }
            Err(error) => {
                warn!(lease = %settings.name, %error, "cannot read or update the leader Lease");
                // Keep leading only while the last renewal is recent enough that nobody else
                // can have taken over.
                *leader.borrow()
                    && last_renewal.is_some_and(|t| t.elapsed() < settings.renew_deadline)
            }
        };
        leader.send_if_modified(|current| {
            if *current != is_leader {
                info!(lease = %settings.name, identity = %settings.identity, leader = is_leader, "leadership changed");
                *current = is_leader;
                return true;
            }
            false
        });
    }
    let was_leader = leader.send_replace(false);
    if was_leader {
        release(&api, &settings).await;
    }
}

/// One round of the election. `Ok(true)` when this replica holds the Lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    settings: &LeaseSettings,
    observed: &mut Option<Observed>,
) -> kube::Result<bool> {
    let now = MicroTime(Timestamp::now());
    let Some(current) = api.get_opt(&settings.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(settings.name.clone()),
                namespace: Some(settings.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(settings.identity.clone()),
                lease_duration_seconds: Some(duration_seconds(settings.lease_duration)),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return conflict_is_false(api.create(&PostParams::default(), &lease).await);
    };

    let spec = current.spec.clone().unwrap_or_default();
    let resource_version = current.metadata.resource_version.clone();
    if observed
        .as_ref()
        .is_none_or(|o| o.resource_version != resource_version)
    {
        *observed = Some(Observed {
            resource_version,
            at: Instant::now(),
        });
    }
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    let held_by_us = holder == settings.identity;
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(settings.lease_duration, Duration::from_secs);
    let expired = holder.is_empty() || observed.as_ref().is_some_and(|o| o.at.elapsed() > duration);
    if !held_by_us && !expired {
        return Ok(false);
    }

    let mut lease = current;
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(duration_seconds(settings.lease_duration)),
        acquire_time: if held_by_us {
            spec.acquire_time.clone()
        } else {
            Some(now.clone())
        },
        renew_time: Some(now),
        lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!held_by_us)),
        ..spec
    });
    if !held_by_us {
        info!(lease = %settings.name, previous = holder, "taking over the leader Lease");
    }
    // Replace carries the resourceVersion we read: if someone else wrote in between, 409.
    conflict_is_false(
        api.replace(&settings.name, &PostParams::default(), &lease)
            .await,
    )
}

/// A write that lost a race (409 Conflict, or AlreadyExists on create) means someone else holds
/// the Lease; any other error is a real failure.
fn conflict_is_false(result: kube::Result<Lease>) -> kube::Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Gives the Lease up so another replica can take over without waiting for it to expire.
async fn release(api: &Api<Lease>, settings: &LeaseSettings) {
    let result = async {
        let Some(mut lease) = api.get_opt(&settings.name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        api.replace(&settings.name, &PostParams::default(), &lease)
            .await
            .map(drop)
    }
    .await;
    match result {
        Ok(()) => info!(lease = %settings.name, "released the leader Lease"),
        Err(error) => {
            warn!(lease = %settings.name, %error, "cannot release the leader Lease; it will expire")
        }
    }
}

fn duration_seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX)
}
