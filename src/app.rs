//! Wiring: the source, the compile loop, the proxy and the admin listener, and the order in
//! which they start and stop.
//!
//! Start: bind every listener (so a taken port fails fast), load and publish the first table,
//! then serve. `/readyz` turns true only once that first table is published.
//! Stop (SIGTERM or Ctrl-C): `/readyz` turns false, listeners stop accepting, open connections
//! are asked to finish and get a grace period.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin::{self, AdminState};
use crate::args::{Config, Source};
use crate::compile::{self, Compiled, Options};
use crate::debounce;
use crate::manifests::{self, LoadError, Loaded};
use crate::proxy::{self, Proxy, ServerLimits, TableHandle, UpstreamConfig};
use crate::table::Diagnostic;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let tables = Arc::new(TableHandle::new());
    let shutdown = CancellationToken::new();
    let options = Options {
        ingress_class: config.ingress_class.clone(),
        controller_name: config.controller_name.clone(),
        ..Options::default()
    };

    let http = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on --http-addr {}", config.http_addr))?;
    let admin_listener = TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("cannot listen on --admin-addr {}", config.admin_addr))?;

    let source = match &config.source {
        Source::Manifests(dir) => {
            let watcher = manifests::watch(dir)
                .with_context(|| format!("cannot watch --manifests {}", dir.display()))?;
            let mut compiler = ManifestCompiler::new(dir.clone(), options, tables.clone());
            // The first load must work: a mistyped directory should stop vane, not serve nothing.
            compiler.reload().await?;
            tokio::spawn(compiler.run(watcher, shutdown.clone()))
        }
    };

    let admin_state = Arc::new(AdminState::new(tables.clone()));
    // The bound addresses, not the configured ones: with port 0 the kernel picks the port.
    let bound = |listener: &TcpListener| {
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    info!(
        http = bound(&http),
        admin = bound(&admin_listener),
        workers = config.workers,
        "vane is serving"
    );
    let admin = tokio::spawn(admin::serve(
        admin_listener,
        admin_state.clone(),
        shutdown.clone(),
    ));
    let proxy = Arc::new(Proxy::new(tables, &UpstreamConfig::default()));
    let server = tokio::spawn(proxy::serve(
        http,
        proxy,
        ServerLimits::default(),
        shutdown.clone(),
    ));

    shutdown_signal().await;
    info!("shutting down");
    admin_state.begin_drain();
    shutdown.cancel();
    let _ = server.await;
    let _ = admin.await;
    let _ = source.await;
    info!("stopped");
    Ok(())
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

/// The standalone compile loop: reload the directory, compile, publish, wait for changes.
struct ManifestCompiler {
    dir: PathBuf,
    options: Arc<Options>,
    tables: Arc<TableHandle>,
    reported: Reported,
}

impl ManifestCompiler {
    fn new(dir: PathBuf, options: Options, tables: Arc<TableHandle>) -> Self {
        Self {
            dir,
            options: Arc::new(options),
            tables,
            reported: Reported::default(),
        }
    }

    /// Loads, compiles and publishes once. On error the previous table stays in place.
    async fn reload(&mut self) -> anyhow::Result<()> {
        let dir = self.dir.clone();
        let options = self.options.clone();
        let (loaded, compiled) =
            tokio::task::spawn_blocking(move || load_and_compile(&dir, &options))
                .await
                .context("compile task failed")?
                .with_context(|| format!("cannot read --manifests {}", self.dir.display()))?;
        self.reported.log(&loaded.errors, &compiled.diagnostics);
        let routes = compiled.table.routes().len();
        let backends = compiled.table.backends().len();
        let generation = self.tables.publish(compiled.table, compiled.diagnostics);
        info!(generation, routes, backends, "routing table published");
        Ok(())
    }

    async fn run(
        mut self,
        watch: (manifests::DirWatch, tokio::sync::mpsc::Receiver<()>),
        shutdown: CancellationToken,
    ) {
        let (_watch, mut changes) = watch;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                more = debounce::next_batch(&mut changes, debounce::QUIET, debounce::CAP) => {
                    if !more {
                        return;
                    }
                }
            }
            if let Err(error) = self.reload().await {
                error!("{error:#}; keeping the last routing table");
            }
        }
    }
}

fn load_and_compile(dir: &Path, options: &Options) -> std::io::Result<(Loaded, Compiled)> {
    let loaded = manifests::load_dir(dir)?;
    let compiled = compile::compile(&loaded.snapshot, options);
    Ok((loaded, compiled))
}

/// Logs each load error and diagnostic once while it persists, so a reload does not repeat it.
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
