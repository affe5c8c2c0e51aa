//! The Kubernetes source: the only code that holds a `kube::Client`.
//!
//! - [`watch`]: reflector stores for every kind vane reads, and change signals;
//! - [`backoff`]: how the watches retry while the API server is away;
//! - [`lease`]: leader election on a Lease;
//! - [`status`]: what the leader writes back (Ingress status, BackendPolicy conditions, Events).
//!
//! Least privilege: vane needs `get`, `list`, `watch` on IngressClasses, Ingresses, Services,
//! EndpointSlices, Secrets (of type `kubernetes.io/tls` only, by field selector) and
//! BackendPolicies; `patch` on `ingresses/status` and `backendpolicies/status`; `create` and
//! `patch` on `events.k8s.io` Events; `get`, `create`, `update` on its Lease; and `get` on the
//! published Service.

pub mod backoff;
pub mod lease;
pub mod status;
pub mod watch;

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub use lease::LeaseSettings;
pub use status::{Outcome, Publish, StatusWriter};
pub use watch::Stores;

/// Settings of the Kubernetes source.
#[derive(Clone, Debug)]
pub struct KubeSettings {
    /// `--kubeconfig`; without it, in-cluster config, then `$KUBECONFIG` / `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// `--watch-namespace`: only these namespaces' Ingresses, Services, ... are read, each by
    /// watches of its own. Empty: all namespaces. Sorted, without repeats (a namespace watched
    /// twice would put each of its objects into the snapshot twice).
    pub watch_namespaces: Vec<String>,
    pub publish: Option<Publish>,
    /// `--update-status`: whether this replica takes part in leader election and, when
    /// leader, writes status and Events. Without it vane only reads.
    pub update_status: bool,
    pub lease: LeaseSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration: not in a cluster ({in_cluster}), and no usable kubeconfig ({kubeconfig})")]
    Infer {
        in_cluster: kube::config::InClusterError,
        kubeconfig: kube::config::KubeconfigError,
    },
    #[error("cannot create the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// The client for `--kubeconfig PATH`, else in-cluster config, else the default kubeconfig.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, ClientError> {
    let options = KubeConfigOptions::default();
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|source| ClientError::Kubeconfig {
                path: path.to_owned(),
                source,
            })?;
            Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|source| ClientError::Kubeconfig {
                    path: path.to_owned(),
                    source,
                })?
        }
        None => match Config::incluster() {
            Ok(config) => config,
            Err(in_cluster) => Config::from_kubeconfig(&options)
                .await
                .map_err(|kubeconfig| ClientError::Infer {
                    in_cluster,
                    kubeconfig,
                })?,
        },
    };
    Ok(Client::try_from(config)?)
}
