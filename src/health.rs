//! Active health checks: one task per endpoint whose backend configures `healthCheck.active`.
//!
//! [`Prober::reconcile`] runs after every table publish with the endpoints that need probing:
//! it starts tasks for new endpoints, restarts those whose check changed and stops the rest.
//! The verdict lives in the endpoint's [`EndpointStats`], keyed by address, so it survives
//! table swaps and a restarted task continues from it. Each probe uses a fresh connection, so a
//! healthy pooled connection cannot hide an endpoint that stopped accepting new ones.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::endpoint::{EndpointStats, Transition};
use crate::table::{ActiveCheck, Probe};

/// One endpoint to probe: its address, the check, the backend that asked for it (for logs)
/// and its state.
pub struct ProbeTarget {
    pub address: SocketAddr,
    pub check: ActiveCheck,
    pub backend: Box<str>,
    pub stats: Arc<EndpointStats>,
}

/// The probe tasks of the current table. Dropping it stops them all.
#[derive(Debug, Default)]
pub struct Prober {
    running: Mutex<HashMap<SocketAddr, RunningProbe>>,
    stop: CancellationToken,
}

#[derive(Debug)]
struct RunningProbe {
    check: ActiveCheck,
    stop: CancellationToken,
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Prober {
    /// Makes the running probes match `targets`. An address with two different checks (two
    /// backends over the same endpoint) is probed with the first one.
    pub fn reconcile(&self, targets: impl IntoIterator<Item = ProbeTarget>) {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut wanted: HashMap<SocketAddr, ProbeTarget> = HashMap::new();
        for target in targets {
            wanted.entry(target.address).or_insert(target);
        }
        running.retain(|address, task| {
            let keep = wanted
                .get(address)
                .is_some_and(|target| target.check == task.check);
            if !keep {
                task.stop.cancel();
            }
            keep
        });
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            warn!("no async runtime: active health checks are not started");
            return;
        };
        for (address, target) in wanted {
            if running.contains_key(&address) {
                continue;
            }
            let stop = self.stop.child_token();
            running.insert(
                address,
                RunningProbe {
                    check: target.check.clone(),
                    stop: stop.clone(),
                },
            );
            runtime.spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = probe_loop(target) => {}
                }
            });
        }
    }
}

async fn probe_loop(target: ProbeTarget) {
    let check = &target.check;
    if !check.initial_jitter.is_zero() {
        let jitter = fastrand::u64(..=check.initial_jitter.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(jitter)).await;
    }
    let mut interval = tokio::time::interval(check.interval.max(Duration::from_millis(10)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let result =
            match tokio::time::timeout(check.timeout, probe_once(target.address, check)).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {:?}", check.timeout)),
            };
        let transition = target.stats.health.probe(
            result.is_ok(),
            check.healthy_threshold,
            check.unhealthy_threshold,
        );
        match (transition, &result) {
            (Transition::BecameUnhealthy, Err(why)) => warn!(
                backend = %target.backend, endpoint = %target.address,
                "active health check failed {} times in a row ({why}); endpoint taken out of rotation",
                check.unhealthy_threshold
            ),
            (Transition::BecameHealthy, _) => info!(
                backend = %target.backend, endpoint = %target.address,
                "active health check passed {} times in a row; endpoint back in rotation",
                check.healthy_threshold
            ),
            (_, Err(why)) => {
                debug!(backend = %target.backend, endpoint = %target.address, "probe failed: {why}")
            }
            _ => {}
        }
    }
}

/// One probe: `Ok` when healthy, else why not.
async fn probe_once(endpoint: SocketAddr, check: &ActiveCheck) -> Result<(), String> {
    let address = SocketAddr::new(endpoint.ip(), check.port.unwrap_or(endpoint.port()));
    let stream = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect to {address}: {e}"))?;
    let Probe::Http {
        method,
        path,
        host,
        expected: _,
    } = &check.probe
    else {
        return Ok(());
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {address}: {e}"))?;
    tokio::spawn(async move {
        // Ends when the response is read and the sender dropped, or on error.
        let _ = connection.await;
    });
    let host = match host {
        Some(host) => host.clone(),
        None => {
            HeaderValue::from_str(&address.to_string()).map_err(|e| format!("host header: {e}"))?
        }
    };
    let request = Request::builder()
        .method(method.clone())
        .uri(path.clone())
        .header(header::HOST, host)
        .header(header::USER_AGENT, "vane-health-check")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("probe request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let status = response.status().as_u16();
    if check.probe.accepts(status) {
        Ok(())
    } else {
        Err(format!("{method} {path} answered {status}"))
    }
}
