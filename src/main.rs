//! The `vane` binary: parse flags, install the rustls crypto provider, set up logging and the
//! runtime, run the app.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vane::args::{Args, Command, Environment, LogFormat};

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Some(Command::Crdgen) => {
            print!("{}", vane::api::crd_yaml());
            return ExitCode::SUCCESS;
        }
        Some(Command::Annotations) => {
            print!("{}", vane::api::compat::markdown_table());
            return ExitCode::SUCCESS;
        }
        Some(Command::Check {
            ingress_class,
            output,
            strict,
            paths,
        }) => {
            let loaded = vane::check::load(&paths, &mut std::io::stdin().lock());
            let report = vane::check::Report::new(&loaded, &ingress_class);
            print!("{}", vane::check::render(&report, output));
            return ExitCode::from(report.verdict.exit_code(strict));
        }
        None => {}
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let env = Environment {
        pod_name: std::env::var("POD_NAME").ok().filter(|v| !v.is_empty()),
        pod_namespace: std::env::var("POD_NAMESPACE")
            .ok()
            .filter(|v| !v.is_empty()),
        hostname: hostname(),
        pid: std::process::id(),
    };
    let config = match args.into_config(cpus, &env) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("vane: {error}");
            return ExitCode::from(2);
        }
    };
    // vane's own TLS configurations name their provider; this covers every other rustls user.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let directives = vane::args::log_directives(std::env::var("RUST_LOG").ok());
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }

    // The control plane (sources, compiles, probes, admin) needs one thread; the proxy runs
    // on its own `--workers` threads (see `proxy::workers`), and compiles on the blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(vane::app::run(config)),
        Err(error) => Err(anyhow::Error::new(error).context("cannot start the runtime")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The host name, for a replica identity outside Kubernetes (where `POD_NAME` is unset).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "vane".into())
}
