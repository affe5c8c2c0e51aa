//! Wiring: the source, the compile loop, the proxy and the admin listeners, and the order in
//! which they start and stop.
//!
//! Start: bind every listener (so a taken port fails fast), start the source, serve. Until the
//! first table is published, `/readyz` fails and the proxy answers 503: an empty table is never
//! served as if it were the truth. Standalone, the first table is built before serving starts;
//! from a cluster, once every watch has listed.
//! Stop (SIGTERM or Ctrl-C): `/readyz` turns false, listeners stop accepting, open connections
//! are asked to finish and get a grace period, the leader releases its Lease.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin::{self, AdminState, Surface, Surfaces};
use crate::args::{Config, Source};
use crate::compile::{self, Compiled, Fragments, Options};
use crate::debounce::{self, Debounce};
use crate::k8s::{self, KubeSettings, Outcome, StatusWriter};
use crate::live::TableHandle;
use crate::manifests::{self, Changes, LoadError, ManifestCache};
use crate::metrics::Metrics;
use crate::otlp;
use crate::proxy::access_log::AccessLog;
use crate::proxy::{workers, Connections, Spans, Telemetry};
use crate::snapshot::Snapshot;
use crate::table::Diagnostic;

/// A started vane: where it listens, and its tasks.
pub struct Running {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
    pub debug: SocketAddr,
    pub tables: Arc<TableHandle>,
    admin_state: Arc<AdminState>,
    shutdown_delay: std::time::Duration,
    tasks: JoinSet<()>,
}

impl Running {
    /// Waits until every task has finished after `shutdown` was cancelled.
    pub async fn stopped(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Runs vane until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let running = start(config, shutdown.clone()).await?;
    shutdown_signal().await;
    info!("shutting down");
    // Stay reachable while the endpoint is removed from Services and load balancers: /readyz
    // fails at once, the listeners stop only after the delay.
    running.admin_state.begin_drain();
    info!(delay = ?running.shutdown_delay, "draining: /readyz fails, still accepting");
    tokio::time::sleep(running.shutdown_delay).await;
    shutdown.cancel();
    running.stopped().await;
    info!("stopped");
    Ok(())
}

/// Binds the listeners and starts every task; they run until `shutdown` is cancelled.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let tables = Arc::new(TableHandle::new());
    let fallback = compile::self_signed()
        .map_err(anyhow::Error::msg)
        .context("cannot generate the self-signed default certificate")?;
    let options = Options {
        ingress_class: config.ingress_class.clone(),
        controller_name: config.controller_name.clone(),
        default_certificate: config.default_ssl_certificate.clone(),
        fallback_certificate: Some(Arc::new(fallback)),
        proxy_body_size: config.proxy_body_size,
        default_backend_service: config.default_backend_service.clone(),
        custom_http_errors: config.custom_http_errors.clone(),
        limit_req_status_code: config.limit_req_status_code,
        ..Options::default()
    };

    let http = workers::bind(config.http_addr, config.workers)
        .with_context(|| format!("cannot listen on --http-addr {}", config.http_addr))?;
    let https = workers::bind(config.https_addr, config.workers)
        .with_context(|| format!("cannot listen on --https-addr {}", config.https_addr))?;
    // Metrics and debug on listeners of their own when asked, else on the admin one (admin.rs).
    let mut admin_serves = Surfaces::only(Surface::Health);
    let mut admin_listeners = Vec::new();
    for (surface, addr) in [
        (Surface::Metrics, config.metrics_addr),
        (Surface::Debug, config.debug_addr),
    ] {
        match addr {
            Some(addr) => admin_listeners.push(bind_admin(Surfaces::only(surface), addr).await?),
            None => admin_serves = admin_serves.with(surface),
        }
    }
    admin_listeners.insert(0, bind_admin(admin_serves, config.admin_addr).await?);
    let address_of = |surface| {
        admin_listeners
            .iter()
            .find(|(surfaces, _, _)| surfaces.serves(surface))
            .map(|(_, addr, _)| *addr)
            .expect("every surface has a listener")
    };
    let (admin_addr, metrics_addr, debug_addr) = (
        address_of(Surface::Health),
        address_of(Surface::Metrics),
        address_of(Surface::Debug),
    );
    let (http_addr, https_addr) = (http.addr, https.addr);

    let connections = Arc::new(Connections::new(config.limits));
    let (access_log, log_writer) = match config.access_log {
        Some(format) => {
            let (log, writer) = AccessLog::start(format, Box::new(std::io::stdout()))
                .context("cannot start the access log writer")?;
            (Some(log), Some(writer))
        }
        None => (None, None),
    };
    let (spans, span_exporter) = match &config.span_export {
        Some(export) => {
            let (tracer, exporter) = otlp::start(&export.endpoint)?;
            let sample_ratio = export.sample_ratio;
            (
                Some(Spans {
                    tracer,
                    sample_ratio,
                }),
                Some(exporter),
            )
        }
        None => (None, None),
    };
    let telemetry = Telemetry {
        traffic: Arc::default(),
        access_log,
        spans,
    };
    let metrics = Arc::new(Metrics::new(
        tables.clone(),
        connections.clone(),
        &telemetry,
    ));
    let mut tasks = JoinSet::new();
    let compiler = Compiler::new(options, tables.clone(), metrics.clone());
    match config.source {
        Source::Manifests(dir) => start_manifests(dir, compiler, &shutdown, &mut tasks).await?,
        Source::Kubernetes(settings) => {
            start_kubernetes(
                settings,
                &config.controller_name,
                compiler,
                &shutdown,
                &mut tasks,
            )
            .await?
        }
    }

    let admin_state = Arc::new(AdminState::new(tables.clone(), metrics));
    for (surfaces, _, listener) in admin_listeners {
        tasks.spawn(admin::serve(
            listener,
            surfaces,
            admin_state.clone(),
            shutdown.clone(),
        ));
    }
    let shared = workers::Shared {
        tables: tables.clone(),
        connections,
        telemetry,
    };
    let threads = workers::spawn(http, https, shared, shutdown.clone())
        .context("cannot start the proxy workers")?;
    tasks.spawn(async move {
        // Returns once the workers served out their grace period after `shutdown`; then the
        // access log and the span exporter have every line and span they will get, and write
        // them out (the exports run on this runtime, which is why this thread may wait).
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
            if let Some(writer) = log_writer {
                writer.finish();
            }
            if let Some(exporter) = span_exporter {
                exporter.finish();
            }
        })
        .await;
    });
    info!(http = %http_addr, https = %https_addr, admin = %admin_addr, metrics = %metrics_addr, debug = %debug_addr, workers = config.workers, "vane is serving");
    Ok(Running {
        http: http_addr,
        https: https_addr,
        admin: admin_addr,
        metrics: metrics_addr,
        debug: debug_addr,
        tables,
        admin_state,
        shutdown_delay: config.shutdown_delay,
        tasks,
    })
}

/// Binds an admin listener: (what it serves, bound address, listener).
async fn bind_admin(
    surfaces: Surfaces,
    addr: SocketAddr,
) -> anyhow::Result<(Surfaces, SocketAddr, TcpListener)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {} {addr}", surfaces.flag()))?;
    Ok((surfaces, listener.local_addr()?, listener))
}

async fn start_manifests(
    dir: PathBuf,
    mut compiler: Compiler,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    // Watch before the first load, so no change between the two is missed.
    let (watch, mut changes) = manifests::watch(&dir)
        .with_context(|| format!("cannot watch --manifests {}", dir.display()))?;
    let cache = Arc::new(Mutex::new(ManifestCache::new(&dir)));
    // The first load must work: a mistyped directory should stop vane, not serve nothing.
    reload_manifests(&cache, Changes::default(), &mut compiler)
        .await
        .with_context(|| format!("cannot read --manifests {}", dir.display()))?;
    let shutdown = shutdown.clone();
    // Writing one file is a lone burst of events: taken after a shorter pause.
    let mut debounce = Debounce::new(debounce::QUIET, debounce::CAP)
        .with_lone_quiet(debounce::LONE_QUIET, debounce::IDLE);
    tasks.spawn(async move {
        while next_batch(&mut debounce, &mut changes, &shutdown).await {
            if let Err(error) = reload_manifests(&cache, watch.take_changes(), &mut compiler).await
            {
                error!(
                    "cannot read --manifests {}: {error:#}; keeping the last routing table",
                    dir.display()
                );
            }
        }
    });
    Ok(())
}

/// Rereads what changed below the manifests directory (off the async workers: a first load
/// parses every file), compiles and publishes.
async fn reload_manifests(
    cache: &Arc<Mutex<ManifestCache>>,
    changes: Changes,
    compiler: &mut Compiler,
) -> anyhow::Result<()> {
    let cache = cache.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        // A reload replaces whole entries; one interrupted by a panic leaves no half-parsed file.
        let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.reload(&changes)
    })
    .await??;
    compiler
        .compile_and_publish(loaded.snapshot, &loaded.errors)
        .await?;
    Ok(())
}

async fn start_kubernetes(
    settings: KubeSettings,
    controller_name: &str,
    mut compiler: Compiler,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let client = k8s::client(settings.kubeconfig.as_deref()).await?;
    let (changes_tx, mut changes) = mpsc::channel(1);
    let stores = k8s::watch::start(
        &client,
        &settings.watch_namespaces,
        changes_tx,
        shutdown,
        tasks,
    );

    compiler.metrics.follow_watches(stores.stats.clone());
    let (outcomes_tx, outcomes) = watch::channel(Arc::new(Outcome::default()));
    if settings.update_status {
        let (leader_tx, leader) = watch::channel(false);
        compiler.metrics.follow_leadership(leader.clone());
        tasks.spawn(k8s::lease::run(
            client.clone(),
            settings.lease.clone(),
            leader_tx,
            shutdown.clone(),
        ));
        let writer = StatusWriter::new(
            client,
            stores.clone(),
            settings.publish,
            controller_name,
            &settings.lease.identity,
        );
        tasks.spawn(writer.run(outcomes, leader, shutdown.clone()));
    } else {
        // Side by side with another controller of the same class: no Lease, no status, no
        // Events. Diagnostics still reach the log.
        info!("--update-status=false: writing nothing to the API server");
    }

    let shutdown = shutdown.clone();
    // An apply of several objects is a series of watch events as far apart as the API
    // server's writes: the full pause, so that it is more likely to be one table.
    let mut debounce = Debounce::new(debounce::QUIET, debounce::CAP);
    tasks.spawn(async move {
        info!("waiting for every watch to list once");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = stores.wait_until_ready() => {}
        }
        loop {
            match compiler
                .compile_and_publish(Arc::new(stores.snapshot()), &[])
                .await
            {
                Ok(outcome) => {
                    outcomes_tx.send_replace(Arc::new(outcome));
                }
                Err(error) => error!("{error:#}; keeping the last routing table"),
            }
            if !next_batch(&mut debounce, &mut changes, &shutdown).await {
                return;
            }
        }
    });
    Ok(())
}

/// Waits for the next debounced batch of changes; `false` on shutdown or when the source ended.
async fn next_batch(
    debounce: &mut Debounce,
    changes: &mut mpsc::Receiver<()>,
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        more = debounce.next_batch(changes) => more,
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops vane");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Compiles snapshots from either source and publishes the tables.
struct Compiler {
    options: Options,
    tables: Arc<TableHandle>,
    reported: Reported,
    /// The last compile's per-Ingress work, reused for Ingresses whose inputs did not change.
    fragments: Fragments,
    metrics: Arc<Metrics>,
}

impl Compiler {
    fn new(options: Options, tables: Arc<TableHandle>, metrics: Arc<Metrics>) -> Self {
        Self {
            options,
            tables,
            metrics,
            reported: Reported::default(),
            fragments: Fragments::default(),
        }
    }

    /// Compiles off the async workers, logs new problems, publishes the table.
    /// Returns what the Kubernetes status writer needs of the result.
    async fn compile_and_publish(
        &mut self,
        snapshot: Arc<Snapshot>,
        load_errors: &[LoadError],
    ) -> anyhow::Result<Outcome> {
        // The clock is read here, not in compile, which stays pure: certificates are checked for
        // expiry against the time of each compile.
        let mut options = self.options.clone();
        options.now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok());
        // Compiling and publishing a large table takes milliseconds (building the balancers,
        // dropping the previous table): off the async workers that serve traffic.
        let (tables, metrics) = (self.tables.clone(), self.metrics.clone());
        // Should the task fail, the next compile starts without fragments.
        let mut fragments = std::mem::take(&mut self.fragments);
        let (compiled, generation, routes, backends, fragments) =
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let mut compiled: Compiled =
                    compile::compile_cached(&snapshot, &options, &mut fragments);
                let table = std::mem::take(&mut compiled.table);
                let (routes, backends) = (table.routes().len(), table.backends().len());
                let generation = tables.publish(table, compiled.diagnostics.clone());
                metrics.published(started.elapsed(), &compiled.diagnostics, SystemTime::now());
                (compiled, generation, routes, backends, fragments)
            })
            .await
            .context("compile task failed")?;
        self.fragments = fragments;
        self.reported.log(load_errors, &compiled.diagnostics);
        info!(generation, routes, backends, "routing table published");
        Ok(Outcome {
            ingresses: compiled.ingresses,
            policies: compiled.policies,
            diagnostics: compiled.diagnostics,
        })
    }
}

/// Logs each load error and diagnostic once while it persists, so a recompile does not repeat it.
#[derive(Default)]
struct Reported {
    load_errors: HashSet<String>,
    diagnostics: HashSet<Diagnostic>,
}

impl Reported {
    fn log(&mut self, errors: &[LoadError], diagnostics: &[Diagnostic]) {
        let mut current_errors = HashSet::new();
        for error in errors {
            let line = error.to_string();
            if !self.load_errors.contains(&line) {
                warn!("manifest skipped: {line}");
            }
            current_errors.insert(line);
        }
        self.load_errors = current_errors;
        let mut current = HashSet::new();
        for diagnostic in diagnostics {
            if !self.diagnostics.contains(diagnostic) {
                warn!(object = %diagnostic.object, reason = diagnostic.reason, "{}", diagnostic.message);
            }
            current.insert(diagnostic.clone());
        }
        self.diagnostics = current;
    }
}
