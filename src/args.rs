//! Command-line flags (each also settable as a `VANE_*` environment variable), validated into a
//! [`Config`]. No I/O happens here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use http::Uri;

use crate::api::bounds::TIMEOUT;
use crate::compile::{DEFAULT_CONTROLLER_NAME, DEFAULT_INGRESS_CLASS};
use crate::k8s::{KubeSettings, LeaseSettings, Publish};
use crate::proxy::{access_log, ServerLimits, TrustedProxies};

#[derive(Debug, Parser)]
#[command(
    name = "vane",
    version,
    about = "A Kubernetes ingress controller with an embedded reverse proxy"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Kubernetes source: this kubeconfig file (default: in-cluster config, then $KUBECONFIG or
    /// ~/.kube/config).
    #[arg(
        long,
        env = "VANE_KUBECONFIG",
        value_name = "PATH",
        conflicts_with = "manifests"
    )]
    pub kubeconfig: Option<PathBuf>,

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

    /// Watch only these namespaces (comma-separated; default: all namespaces).
    #[arg(
        long,
        env = "VANE_WATCH_NAMESPACE",
        value_name = "NS[,NS]",
        value_delimiter = ','
    )]
    pub watch_namespace: Vec<String>,

    /// Write this Service's address into the status of our Ingresses.
    #[arg(
        long,
        env = "VANE_PUBLISH_SERVICE",
        value_name = "NS/NAME",
        conflicts_with = "publish_status_address"
    )]
    pub publish_service: Option<String>,

    /// Write these addresses (IPs or hostnames, comma-separated) into the status of our Ingresses.
    #[arg(
        long,
        env = "VANE_PUBLISH_STATUS_ADDRESS",
        value_name = "ADDR[,ADDR]",
        value_delimiter = ','
    )]
    pub publish_status_address: Vec<String>,

    /// Write Ingress and BackendPolicy status and Events (under a leader-election Lease).
    /// `false`: vane writes nothing to the API server, so it can serve a class another
    /// controller (ingress-nginx) also serves, side by side, without fighting over status.
    #[arg(
        long,
        env = "VANE_UPDATE_STATUS",
        value_name = "BOOL",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub update_status: bool,

    /// The Lease used for leader election (status and Event writes).
    #[arg(
        long,
        env = "VANE_LEASE_NAME",
        value_name = "NAME",
        default_value = "vane-leader"
    )]
    pub lease_name: String,

    /// The namespace of that Lease (default: $POD_NAMESPACE, else "default").
    #[arg(long, env = "VANE_LEASE_NAMESPACE", value_name = "NS")]
    pub lease_namespace: Option<String>,

    /// Plain HTTP listener.
    #[arg(
        long,
        env = "VANE_HTTP_ADDR",
        value_name = "ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub http_addr: SocketAddr,

    /// TLS listener.
    #[arg(
        long,
        env = "VANE_HTTPS_ADDR",
        value_name = "ADDR",
        default_value = "0.0.0.0:8443"
    )]
    pub https_addr: SocketAddr,

    /// A Secret of type kubernetes.io/tls served for unknown or missing SNI (default: a
    /// self-signed certificate generated at start).
    #[arg(long, env = "VANE_DEFAULT_SSL_CERTIFICATE", value_name = "NS/NAME")]
    pub default_ssl_certificate: Option<String>,

    /// Health and readiness endpoints (/healthz, /readyz), for the kubelet's probes.
    #[arg(
        long,
        env = "VANE_ADMIN_ADDR",
        value_name = "ADDR",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_addr: SocketAddr,

    /// A listener of its own for Prometheus metrics (/metrics); unset: on --admin-addr.
    #[arg(long, env = "VANE_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// A listener of its own for the debug endpoints (/debug/routes: hosts, paths, endpoint
    /// addresses, certificate subjects); unset: on --admin-addr. Keep it on loopback: anyone
    /// who can reach it reads the whole routing table.
    #[arg(long, env = "VANE_DEBUG_ADDR", value_name = "ADDR")]
    pub debug_addr: Option<SocketAddr>,

    /// Proxy worker threads (default: the number of CPUs).
    #[arg(long, env = "VANE_WORKERS", value_name = "N")]
    pub workers: Option<usize>,

    /// A Service (its first port) that serves requests no rule matches, unless an Ingress has a
    /// spec.defaultBackend, and the error pages of --custom-http-errors.
    #[arg(long, env = "VANE_DEFAULT_BACKEND_SERVICE", value_name = "NS/NAME")]
    pub default_backend_service: Option<String>,

    /// Status codes (comma-separated, 400-599) whose responses, the endpoints' or vane's own,
    /// are replaced by the error page of --default-backend-service, for Ingresses that set no
    /// `custom-http-errors`.
    #[arg(long, env = "VANE_CUSTOM_HTTP_ERRORS", value_name = "CODES", value_delimiter = ',', value_parser = clap::value_parser!(u16).range(400..=599))]
    pub custom_http_errors: Vec<u16>,

    /// The status of requests refused by `limit-rps` or `limit-rpm` (ingress-nginx's 503; 429
    /// says what happened more exactly). They also get Retry-After.
    #[arg(long, env = "VANE_LIMIT_REQ_STATUS_CODE", value_name = "CODE", default_value_t = 503, value_parser = clap::value_parser!(u16).range(400..=599))]
    pub limit_req_status_code: u16,

    /// The largest request body of an Ingress that sets no `proxy-body-size`: bytes, or with
    /// k, m or g (`8m`). Larger bodies get 413. `0`: no limit. vane streams bodies rather than
    /// buffering them, so the limit protects the backends, not vane.
    #[arg(long, env = "VANE_PROXY_BODY_SIZE", value_name = "SIZE", default_value = "0", value_parser = crate::api::annotations::parse_body_size)]
    pub proxy_body_size: u64,

    /// Log output format.
    #[arg(long, env = "VANE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The access log: one line per request on stdout (`off`: none; an Ingress can also turn
    /// its own off with `vane.dev/enable-access-log: "false"`).
    #[arg(long, env = "VANE_ACCESS_LOG", value_enum, default_value_t = Switch::On)]
    pub access_log: Switch,

    /// Access log format (default: that of --log-format).
    #[arg(long, env = "VANE_ACCESS_LOG_FORMAT", value_enum)]
    pub access_log_format: Option<LogFormat>,

    /// Export a span per request to this OpenTelemetry collector, over OTLP/HTTP (protobuf),
    /// POSTed to URL/v1/traces (unless URL ends in /v1/traces already). Default: no export.
    #[arg(long, env = "VANE_OTLP_ENDPOINT", value_name = "URL", value_parser = parse_otlp_endpoint)]
    pub otlp_endpoint: Option<Uri>,

    /// With --otlp-endpoint: the share of new traces (requests without a usable traceparent)
    /// that vane records, 0.0 to 1.0. A request's traceparent decides for the traces it
    /// continues.
    #[arg(long, env = "VANE_TRACE_SAMPLE_RATIO", value_name = "R", default_value = "1.0", value_parser = parse_ratio)]
    pub trace_sample_ratio: f64,

    /// On SIGTERM, keep accepting connections this long (with /readyz failing) while load
    /// balancers and endpoints stop sending traffic here.
    #[arg(long, env = "VANE_SHUTDOWN_DELAY", value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// Then stop accepting, and give in-flight requests and upgraded connections this long.
    #[arg(long, env = "VANE_SHUTDOWN_GRACE", value_name = "DURATION", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Addresses (CIDRs) of proxies in front of vane, such as a cloud load balancer: for a
    /// connection from one of them, the client is the right-most address of X-Forwarded-For
    /// that is not a trusted proxy. Default: none, so no client-sent header is believed.
    #[arg(long, env = "VANE_TRUSTED_PROXIES", value_name = "CIDR[,CIDR]", value_parser = crate::api::annotations::parse_cidrs)]
    pub trusted_proxies: Option<Vec<ipnet::IpNet>>,

    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Bounds on what clients can make the proxy hold (README "Limits").
#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Client connections open at once, over all workers and listeners. At the cap, the
    /// longest-idle connections are closed to make room for new ones.
    #[arg(long, env = "VANE_MAX_CONNECTIONS", value_name = "N", default_value = "16384", value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub max_connections: u32,

    /// Time a new connection has to send its first request bytes, or to complete the TLS
    /// handshake.
    #[arg(long, env = "VANE_HANDSHAKE_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    pub handshake_timeout: Duration,

    /// Time a client has to send a request's headers; on HTTP/1.1 it also bounds the wait for
    /// the next request on a keep-alive connection.
    #[arg(long, env = "VANE_HEADER_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub header_timeout: Duration,

    /// A connection with no request in progress (an HTTP/2 connection without streams) is
    /// closed after this.
    #[arg(long, env = "VANE_IDLE_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = parse_timeout)]
    pub idle_timeout: Duration,

    /// A client that accepts no response data for this long is disconnected.
    #[arg(long, env = "VANE_SEND_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = parse_timeout)]
    pub send_timeout: Duration,

    /// Largest request head in bytes (request line and headers; HTTP/2 header list); larger is
    /// answered 431.
    #[arg(long, env = "VANE_MAX_HEADER_BYTES", value_name = "BYTES", default_value = "65536", value_parser = clap::value_parser!(u32).range(8192..=1_048_576))]
    pub max_header_bytes: u32,

    /// Most header fields in an HTTP/1.1 request; more is answered 431.
    #[arg(long, env = "VANE_MAX_HEADERS", value_name = "N", default_value = "100", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_headers: u32,

    /// Longest request target (path and query) in bytes; longer is answered 414.
    #[arg(long, env = "VANE_MAX_URI_BYTES", value_name = "BYTES", default_value = "8192", value_parser = clap::value_parser!(u32).range(256..=1_048_576))]
    pub max_uri_bytes: u32,

    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, env = "VANE_HTTP2_MAX_STREAMS", value_name = "N", default_value = "256", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub http2_max_streams: u32,
}

impl LimitArgs {
    fn into_limits(
        self,
        shutdown_grace: Duration,
        trusted_proxies: Option<Vec<ipnet::IpNet>>,
    ) -> ServerLimits {
        // u32 to usize never truncates on the 32- and 64-bit targets vane builds for.
        let size = |value: u32| usize::try_from(value).unwrap_or(usize::MAX);
        ServerLimits {
            max_connections: size(self.max_connections),
            handshake_timeout: self.handshake_timeout,
            header_read_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            send_timeout: self.send_timeout,
            max_header_bytes: size(self.max_header_bytes),
            max_headers: size(self.max_headers),
            max_uri_bytes: size(self.max_uri_bytes),
            max_concurrent_streams: self.http2_max_streams,
            shutdown_grace,
            trusted_proxies: trusted_proxies.map(TrustedProxies::new),
        }
    }
}

/// A timeout of the proxy's listeners, within the bounds of every timeout vane takes (1ms to a
/// day: a longer one is a mistake, and a deadline that far off could overflow a clock).
fn parse_timeout(value: &str) -> Result<Duration, String> {
    let timeout = parse_duration(value)?;
    if TIMEOUT.contains(timeout) {
        Ok(timeout)
    } else {
        Err(format!("must be {TIMEOUT}"))
    }
}

/// An OTLP/HTTP base URL (`http://collector:4318`) or traces URL (`.../v1/traces`), as the
/// traces URL.
fn parse_otlp_endpoint(value: &str) -> Result<Uri, String> {
    let uri: Uri = value
        .trim()
        .parse()
        .map_err(|e| format!("{value:?} is not a URL: {e}"))?;
    let scheme = uri.scheme_str().unwrap_or_default();
    if !matches!(scheme, "http" | "https") || uri.host().is_none_or(str::is_empty) {
        return Err(format!(
            "{value:?} is not an http:// or https:// URL with a host"
        ));
    }
    if uri.query().is_some() {
        return Err(format!("{value:?} has a query; OTLP takes none"));
    }
    const TRACES: &str = "/v1/traces";
    let path = uri.path().trim_end_matches('/');
    let path = if path.ends_with(TRACES) {
        path.to_owned()
    } else {
        format!("{path}{TRACES}")
    };
    let mut parts = uri.into_parts();
    parts.path_and_query = Some(path.parse().map_err(|e| format!("{value:?}: {e}"))?);
    Uri::from_parts(parts).map_err(|e| format!("{value:?}: {e}"))
}

/// A ratio from 0.0 to 1.0.
fn parse_ratio(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("{value:?} is not a number from 0.0 to 1.0")),
    }
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    match value.trim() {
        "0" => Ok(Duration::ZERO),
        value => crate::api::duration::parse(value)
            .ok_or_else(|| format!("{value:?} is not a duration like 500ms, 5s or 1m")),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the BackendPolicy CustomResourceDefinition as YAML.
    Crdgen,
    /// Print README's annotation table: what vane does with each of its own annotations and
    /// each of ingress-nginx's (Markdown).
    Annotations,
    /// Report offline what vane would do with the Ingresses of YAML manifests (files,
    /// directories, or `-` for stdin, such as `kubectl get ingress,svc,endpointslices -A -o
    /// yaml`). Exit status: 0 when all is honoured, 1 for ignored or unknown annotations with
    /// --strict, 2 when an Ingress would be refused or anything has an error.
    Check {
        /// The IngressClass to report on, as if vane served it (`nginx` while migrating).
        #[arg(long, value_name = "NAME", default_value = DEFAULT_INGRESS_CLASS)]
        ingress_class: String,
        /// Report format.
        #[arg(long, short = 'o', value_name = "FORMAT", default_value = "text")]
        output: crate::check::Format,
        /// Exit with 1 when annotations are ignored or unknown (and nothing is worse).
        #[arg(long)]
        strict: bool,
        /// YAML files or directories (read recursively), `-` for stdin.
        #[arg(value_name = "PATH", required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// Where the objects come from.
#[derive(Clone, Debug)]
pub enum Source {
    Manifests(PathBuf),
    Kubernetes(KubeSettings),
}

/// What the process environment says about this replica (read by `main`, not here).
#[derive(Clone, Debug, Default)]
pub struct Environment {
    /// `$POD_NAME`, set by the chart through the downward API.
    pub pod_name: Option<String>,
    /// `$POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
    pub hostname: String,
    pub pid: u32,
}

/// Span export (`--otlp-endpoint`, `--trace-sample-ratio`).
#[derive(Clone, Debug, PartialEq)]
pub struct SpanExport {
    /// Where spans are POSTed: the collector's `/v1/traces`.
    pub endpoint: Uri,
    /// The share of new traces recorded.
    pub sample_ratio: f64,
}

/// Validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub source: Source,
    pub ingress_class: String,
    pub controller_name: String,
    pub http_addr: SocketAddr,
    pub https_addr: SocketAddr,
    /// `--default-ssl-certificate` as (namespace, name).
    pub default_ssl_certificate: Option<(String, String)>,
    /// `--admin-addr`: health and readiness.
    pub admin_addr: SocketAddr,
    /// `--metrics-addr`: `/metrics`.
    /// `None`: served on the admin listener.
    pub metrics_addr: Option<SocketAddr>,
    /// `--debug-addr`: `/debug/routes`.
    /// `None`: served on the admin listener.
    pub debug_addr: Option<SocketAddr>,
    pub workers: usize,
    pub log_format: LogFormat,
    /// The access log's format; `None` when it is off.
    pub access_log: Option<access_log::Format>,
    /// Span export; `None` when it is off.
    pub span_export: Option<SpanExport>,
    pub shutdown_delay: Duration,
    pub limits: ServerLimits,
    /// `--proxy-body-size`; `None`: no limit.
    pub proxy_body_size: Option<u64>,
    /// `--default-backend-service` as (namespace, name).
    pub default_backend_service: Option<(String, String)>,
    /// `--custom-http-errors`.
    pub custom_http_errors: Vec<u16>,
    /// `--limit-req-status-code`.
    pub limit_req_status_code: http::StatusCode,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--publish-service must be NAMESPACE/NAME, not {0:?}")]
    PublishService(String),
    #[error("--default-ssl-certificate must be NAMESPACE/NAME, not {0:?}")]
    DefaultSslCertificate(String),
    #[error("--default-backend-service must be NAMESPACE/NAME, not {0:?}")]
    DefaultBackendService(String),
    #[error("--workers must be at least 1")]
    NoWorkers,
    #[error("--{0} must not be empty")]
    Empty(&'static str),
    #[error("--publish-service and --publish-status-address write Ingress status, which --update-status=false turns off")]
    PublishWithoutStatus,
}

impl Args {
    /// Validates the flags. `cpus` is the default worker count.
    pub fn into_config(self, cpus: usize, env: &Environment) -> Result<Config, ConfigError> {
        let publish = match (self.publish_service, self.publish_status_address) {
            (Some(service), _) => match namespaced_name(&service) {
                Some((namespace, name)) => Some(Publish::Service { namespace, name }),
                None => return Err(ConfigError::PublishService(service)),
            },
            (None, addresses) => {
                let addresses = non_empty(addresses);
                (!addresses.is_empty()).then_some(Publish::Addresses(addresses))
            }
        };
        if publish.is_some() && !self.update_status {
            return Err(ConfigError::PublishWithoutStatus);
        }
        let mut watch_namespaces = non_empty(self.watch_namespace);
        watch_namespaces.sort();
        watch_namespaces.dedup();
        let source = match self.manifests {
            Some(dir) => Source::Manifests(dir),
            None => Source::Kubernetes(KubeSettings {
                kubeconfig: self.kubeconfig,
                watch_namespaces,
                publish,
                update_status: self.update_status,
                lease: LeaseSettings::new(
                    self.lease_name,
                    self.lease_namespace
                        .or_else(|| env.pod_namespace.clone())
                        .unwrap_or_else(|| "default".into()),
                    // Without a pod name, hostname plus pid: two processes on one host never
                    // share an identity.
                    env.pod_name
                        .clone()
                        .unwrap_or_else(|| format!("{}-{}", env.hostname, env.pid)),
                ),
            }),
        };
        if self.ingress_class.is_empty() {
            return Err(ConfigError::Empty("ingress-class"));
        }
        if self.controller_name.is_empty() {
            return Err(ConfigError::Empty("controller-name"));
        }
        let default_ssl_certificate = match self.default_ssl_certificate {
            Some(secret) => {
                Some(namespaced_name(&secret).ok_or(ConfigError::DefaultSslCertificate(secret))?)
            }
            None => None,
        };
        let default_backend_service = match self.default_backend_service {
            Some(service) => {
                Some(namespaced_name(&service).ok_or(ConfigError::DefaultBackendService(service))?)
            }
            None => None,
        };
        let workers = self.workers.unwrap_or(cpus);
        if workers == 0 {
            return Err(ConfigError::NoWorkers);
        }
        Ok(Config {
            source,
            ingress_class: self.ingress_class,
            controller_name: self.controller_name,
            http_addr: self.http_addr,
            https_addr: self.https_addr,
            default_ssl_certificate,
            admin_addr: self.admin_addr,
            metrics_addr: self.metrics_addr,
            debug_addr: self.debug_addr,
            workers,
            log_format: self.log_format,
            proxy_body_size: (self.proxy_body_size > 0).then_some(self.proxy_body_size),
            default_backend_service,
            custom_http_errors: self.custom_http_errors,
            limit_req_status_code: http::StatusCode::from_u16(self.limit_req_status_code)
                .unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE),
            access_log: match (
                self.access_log,
                self.access_log_format.unwrap_or(self.log_format),
            ) {
                (Switch::Off, _) => None,
                (Switch::On, LogFormat::Text) => Some(access_log::Format::Text),
                (Switch::On, LogFormat::Json) => Some(access_log::Format::Json),
            },
            span_export: self.otlp_endpoint.map(|endpoint| SpanExport {
                endpoint,
                sample_ratio: self.trace_sample_ratio,
            }),
            shutdown_delay: self.shutdown_delay,
            limits: self
                .limits
                .into_limits(self.shutdown_grace, self.trusted_proxies),
        })
    }
}

/// The log filter: `RUST_LOG` (default `info`), with rustls held to errors unless `RUST_LOG`
/// names it. rustls warns about what a peer sent (an IP address as SNI, which wrk and many
/// scanners send on every handshake): a client's mistake, not vane's, and any client could
/// flood the log with it.
pub fn log_directives(rust_log: Option<String>) -> String {
    let directives = rust_log
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| "info".into());
    if directives.contains("rustls") {
        directives
    } else {
        format!("{directives},rustls=error")
    }
}

/// The items of a comma-separated list flag, trimmed, without empty ones.
fn non_empty(items: Vec<String>) -> Vec<String> {
    items
        .into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

/// `NAMESPACE/NAME`, both non-empty.
fn namespaced_name(value: &str) -> Option<(String, String)> {
    match value.split_once('/') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Some((namespace.to_owned(), name.to_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment {
            pod_name: None,
            pod_namespace: None,
            hostname: "node-1".into(),
            pid: 42,
        }
    }

    fn kube(args: &[&str], env: &Environment) -> KubeSettings {
        let args =
            Args::try_parse_from(std::iter::once("vane").chain(args.iter().copied())).unwrap();
        match args.into_config(2, env).unwrap().source {
            Source::Kubernetes(settings) => settings,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_access_log_follows_the_log_format_unless_told_otherwise() {
        let access_log = |args: &[&str]| {
            let all = ["vane", "--manifests", "/m"].iter().chain(args).copied();
            Args::try_parse_from(all)
                .unwrap()
                .into_config(1, &env())
                .unwrap()
                .access_log
        };
        assert_eq!(
            access_log(&["--log-format", "json"]),
            Some(access_log::Format::Json)
        );
        let text = ["--log-format", "json", "--access-log-format", "text"];
        assert_eq!(access_log(&text), Some(access_log::Format::Text));
        assert_eq!(access_log(&["--access-log", "off"]), None);
    }

    #[test]
    fn defaults_match_the_documented_interface() {
        let config = Args::try_parse_from(["vane", "--manifests", "/m"])
            .unwrap()
            .into_config(4, &env())
            .unwrap();
        assert!(
            matches!(&config.source, Source::Manifests(dir) if dir == std::path::Path::new("/m"))
        );
        assert_eq!(config.ingress_class, "vane");
        assert_eq!(config.controller_name, "vane.dev/ingress-controller");
        assert_eq!(config.http_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.https_addr, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(config.default_ssl_certificate, None);
        assert_eq!(config.admin_addr, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(config.metrics_addr, None, "on the admin listener");
        assert_eq!(config.debug_addr, None, "on the admin listener");
        assert_eq!(config.workers, 4);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.access_log, Some(access_log::Format::Text));
        assert_eq!(config.shutdown_delay, Duration::from_secs(5));
        let limits = config.limits;
        let documented = ServerLimits::default();
        assert_eq!(limits.shutdown_grace, Duration::from_secs(25));
        assert_eq!(limits.max_connections, 16_384);
        assert_eq!(limits.max_connections, documented.max_connections);
        assert_eq!(limits.handshake_timeout, documented.handshake_timeout);
        assert_eq!(limits.header_read_timeout, documented.header_read_timeout);
        assert_eq!(limits.idle_timeout, documented.idle_timeout);
        assert_eq!(limits.send_timeout, documented.send_timeout);
        assert_eq!(limits.max_header_bytes, documented.max_header_bytes);
        assert_eq!(limits.max_headers, documented.max_headers);
        assert_eq!(limits.max_uri_bytes, documented.max_uri_bytes);
        assert_eq!(
            limits.max_concurrent_streams,
            documented.max_concurrent_streams
        );
    }

    #[test]
    fn limits_are_flags_with_bounds() {
        let parse = |extra: &[&str]| {
            Args::try_parse_from(["vane", "--manifests", "/m"].iter().chain(extra))
                .map(|args| args.into_config(1, &env()).unwrap().limits)
        };
        let limits = parse(&[
            "--max-connections=100",
            "--idle-timeout=5m",
            "--max-uri-bytes=4096",
            "--http2-max-streams=64",
        ])
        .unwrap();
        assert_eq!(limits.max_connections, 100);
        assert_eq!(limits.idle_timeout, Duration::from_secs(300));
        assert_eq!(limits.max_uri_bytes, 4096);
        assert_eq!(limits.max_concurrent_streams, 64);
        for bad in [
            "--max-connections=0",
            "--idle-timeout=0",
            "--send-timeout=25h",
            "--max-header-bytes=1024",
            "--max-headers=0",
            "--handshake-timeout=soon",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn span_export_is_off_by_default_and_posts_to_v1_traces() {
        let export = |args: &[&str]| {
            let all = ["vane", "--manifests", "/m"].iter().chain(args).copied();
            Args::try_parse_from(all)
                .map(|args| args.into_config(1, &env()).unwrap().span_export)
                .map_err(|e| e.to_string())
        };
        assert_eq!(export(&[]).unwrap(), None);
        // The ratio alone turns nothing on.
        assert_eq!(export(&["--trace-sample-ratio", "0.5"]).unwrap(), None);
        for (given, posted) in [
            ("http://collector:4318", "http://collector:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            (
                "https://otel.example.com/v1/traces",
                "https://otel.example.com/v1/traces",
            ),
            (
                "http://10.0.0.1:4318/otlp/",
                "http://10.0.0.1:4318/otlp/v1/traces",
            ),
        ] {
            let on = export(&["--otlp-endpoint", given]).unwrap().unwrap();
            assert_eq!(on.endpoint.to_string(), posted, "{given}");
            assert_eq!(on.sample_ratio, 1.0);
        }
        let on = export(&["--otlp-endpoint=http://c:4318", "--trace-sample-ratio=0.25"]);
        assert_eq!(on.unwrap().unwrap().sample_ratio, 0.25);

        for bad in [
            "collector:4318",
            "grpc://collector:4317",
            "http://",
            "/v1/traces",
            "http://c:4318/?x=1",
            "not a url",
        ] {
            let error = export(&["--otlp-endpoint", bad]).unwrap_err();
            assert!(error.contains("--otlp-endpoint"), "{bad}: {error}");
        }
        for bad in ["1.5", "-0.1", "half", "NaN"] {
            let ratio = format!("--trace-sample-ratio={bad}");
            let error = export(&["--otlp-endpoint=http://c", &ratio]);
            assert!(error.unwrap_err().contains("0.0 to 1.0"), "{bad}");
        }
    }

    #[test]
    fn default_backend_and_error_codes_parse() {
        let config = Args::try_parse_from([
            "vane",
            "--manifests",
            "/m",
            "--default-backend-service",
            "ingress/errors",
            "--custom-http-errors",
            "404,503",
        ])
        .unwrap()
        .into_config(1, &env())
        .unwrap();
        assert_eq!(
            config.default_backend_service,
            Some(("ingress".into(), "errors".into()))
        );
        assert_eq!(config.custom_http_errors, [404, 503]);
        for bad in ["200", "404;x", "404,600"] {
            let args = ["vane", "--manifests", "/m", "--custom-http-errors", bad];
            assert!(Args::try_parse_from(args).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_ssl_certificate_is_a_namespaced_name() {
        let parse = |value: &str| {
            Args::try_parse_from([
                "vane",
                "--manifests",
                "/m",
                "--default-ssl-certificate",
                value,
            ])
            .unwrap()
            .into_config(1, &env())
        };
        assert_eq!(
            parse("ingress/wildcard").unwrap().default_ssl_certificate,
            Some(("ingress".into(), "wildcard".into()))
        );
        for bad in ["wildcard", "/x", "a/b/c"] {
            assert!(
                matches!(parse(bad), Err(ConfigError::DefaultSslCertificate(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn rustls_warnings_about_peers_stay_out_of_the_log_unless_asked_for() {
        assert_eq!(log_directives(None), "info,rustls=error");
        assert_eq!(log_directives(Some("debug".into())), "debug,rustls=error");
        assert_eq!(
            log_directives(Some("info,rustls=debug".into())),
            "info,rustls=debug"
        );
    }

    #[test]
    fn zero_workers_is_rejected() {
        let args = Args::try_parse_from(["vane", "--manifests", "/m", "--workers", "0"]).unwrap();
        assert!(matches!(
            args.into_config(2, &env()),
            Err(ConfigError::NoWorkers)
        ));
    }

    #[test]
    fn kubernetes_source_defaults() {
        let settings = kube(&[], &env());
        assert_eq!(settings.kubeconfig, None);
        assert_eq!(settings.watch_namespaces, Vec::<String>::new());
        assert_eq!(settings.publish, None);
        assert_eq!(settings.lease.name, "vane-leader");
        assert_eq!(settings.lease.namespace, "default");
        assert_eq!(settings.lease.identity, "node-1-42");

        let pod = Environment {
            pod_name: Some("vane-abc".into()),
            pod_namespace: Some("ingress".into()),
            ..env()
        };
        let settings = kube(&[], &pod);
        assert_eq!(settings.lease.namespace, "ingress");
        assert_eq!(settings.lease.identity, "vane-abc");
        let settings = kube(&["--lease-namespace", "other"], &pod);
        assert_eq!(settings.lease.namespace, "other");
    }

    #[test]
    fn watch_namespace_is_a_list_without_repeats_or_blanks() {
        let namespaces = |args: &[&str]| kube(args, &env()).watch_namespaces;
        assert_eq!(namespaces(&["--watch-namespace", "shop"]), ["shop"]);
        assert_eq!(
            namespaces(&["--watch-namespace", "shop, blog,,shop"]),
            ["blog", "shop"]
        );
        assert_eq!(
            namespaces(&["--watch-namespace=a", "--watch-namespace=b"]),
            ["a", "b"]
        );
        // Empty, as an unset chart value renders it: every namespace.
        assert_eq!(namespaces(&["--watch-namespace="]), Vec::<String>::new());
    }

    #[test]
    fn publish_flags() {
        let settings = kube(&["--publish-service", "ingress/vane"], &env());
        let expected = Publish::Service {
            namespace: "ingress".into(),
            name: "vane".into(),
        };
        assert_eq!(settings.publish, Some(expected));
        let settings = kube(
            &["--publish-status-address", "203.0.113.1, lb.example.com"],
            &env(),
        );
        let expected = Publish::Addresses(vec!["203.0.113.1".into(), "lb.example.com".into()]);
        assert_eq!(settings.publish, Some(expected));
        let args = Args::try_parse_from(["vane", "--publish-service", "no-namespace"]).unwrap();
        assert!(matches!(
            args.into_config(2, &env()),
            Err(ConfigError::PublishService(_))
        ));
        let both = [
            "vane",
            "--publish-service",
            "a/b",
            "--publish-status-address",
            "1.2.3.4",
        ];
        assert!(Args::try_parse_from(both).is_err());
        assert!(Args::try_parse_from(["vane", "--manifests", "/m", "--kubeconfig", "/k"]).is_err());
    }

    #[test]
    fn update_status_is_on_unless_turned_off_and_then_publishes_nothing() {
        assert!(kube(&[], &env()).update_status);
        assert!(!kube(&["--update-status=false"], &env()).update_status);
        assert!(kube(&["--update-status", "true"], &env()).update_status);
        let args = Args::try_parse_from([
            "vane",
            "--update-status=false",
            "--publish-status-address",
            "203.0.113.1",
        ])
        .unwrap();
        assert!(matches!(
            args.into_config(2, &env()),
            Err(ConfigError::PublishWithoutStatus)
        ));
    }
}
