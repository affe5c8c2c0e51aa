//! Command-line flags (each also settable as a `VANE_*` environment variable), validated into a
//! [`Config`]. No I/O happens here.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::compile::{DEFAULT_CONTROLLER_NAME, DEFAULT_INGRESS_CLASS};

#[derive(Debug, Parser)]
#[command(
    name = "vane",
    version,
    about = "A Kubernetes ingress controller with an embedded reverse proxy"
)]
pub struct Args {
    /// Standalone mode: serve the Kubernetes YAML manifests in this directory (watched for
    /// changes) instead of watching a cluster.
    #[arg(long, env = "VANE_MANIFESTS", value_name = "DIR")]
    pub manifests: Option<PathBuf>,

    /// The IngressClass this controller serves.
    #[arg(long, env = "VANE_INGRESS_CLASS", value_name = "NAME", default_value = DEFAULT_INGRESS_CLASS)]
    pub ingress_class: String,

    /// The `spec.controller` value of our IngressClass.
    #[arg(long, env = "VANE_CONTROLLER_NAME", value_name = "NAME", default_value = DEFAULT_CONTROLLER_NAME)]
    pub controller_name: String,

    /// Plain HTTP listener.
    #[arg(
        long,
        env = "VANE_HTTP_ADDR",
        value_name = "ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub http_addr: SocketAddr,

    /// Health, readiness and debug endpoints.
    #[arg(
        long,
        env = "VANE_ADMIN_ADDR",
        value_name = "ADDR",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_addr: SocketAddr,

    /// Proxy worker threads (default: the number of CPUs).
    #[arg(long, env = "VANE_WORKERS", value_name = "N")]
    pub workers: Option<usize>,

    /// Log output format.
    #[arg(long, env = "VANE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the objects come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Manifests(PathBuf),
}

/// Validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub source: Source,
    pub ingress_class: String,
    pub controller_name: String,
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub workers: usize,
    pub log_format: LogFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no source: pass --manifests DIR (the Kubernetes source is not built yet)")]
    NoSource,
    #[error("--workers must be at least 1")]
    NoWorkers,
    #[error("--{0} must not be empty")]
    Empty(&'static str),
}

impl Args {
    /// Validates the flags. `cpus` is the default worker count.
    pub fn into_config(self, cpus: usize) -> Result<Config, ConfigError> {
        let source = match self.manifests {
            Some(dir) => Source::Manifests(dir),
            None => return Err(ConfigError::NoSource),
        };
        if self.ingress_class.is_empty() {
            return Err(ConfigError::Empty("ingress-class"));
        }
        if self.controller_name.is_empty() {
            return Err(ConfigError::Empty("controller-name"));
        }
        let workers = self.workers.unwrap_or(cpus);
        if workers == 0 {
            return Err(ConfigError::NoWorkers);
        }
        Ok(Config {
            source,
            ingress_class: self.ingress_class,
            controller_name: self.controller_name,
            http_addr: self.http_addr,
            admin_addr: self.admin_addr,
            workers,
            log_format: self.log_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_interface() {
        let config = Args::try_parse_from(["vane", "--manifests", "/m"])
            .unwrap()
            .into_config(4)
            .unwrap();
        assert_eq!(config.source, Source::Manifests("/m".into()));
        assert_eq!(config.ingress_class, "vane");
        assert_eq!(config.controller_name, "vane.dev/ingress-controller");
        assert_eq!(config.http_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.admin_addr, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(config.workers, 4);
        assert_eq!(config.log_format, LogFormat::Text);
    }

    #[test]
    fn zero_workers_is_rejected() {
        let args = Args::try_parse_from(["vane", "--manifests", "/m", "--workers", "0"]).unwrap();
        assert!(matches!(args.into_config(2), Err(ConfigError::NoWorkers)));
    }
}
