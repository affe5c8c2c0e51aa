//! `vane check`: the offline migration report. It reads manifests (files, directories, or
//! stdin, such as `kubectl get ingress,svc,endpointslices -A -o yaml`) with the standalone
//! loader, compiles them with the controller's own [`compile`](crate::compile::compile), and
//! says per Ingress what vane would serve, which annotations it honours, ignores or refuses,
//! and every diagnostic. Sharing the loader and compile, the report cannot drift from what the
//! controller does.

mod report;
mod text;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::manifests::{self, LoadError, Loaded};

pub use report::{AnnotationReport, Finding, IngressReport, Report, Unhonoured, Verdict};

/// How the report is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// For CI: one JSON object.
    Json,
}

/// The path that names stdin.
const STDIN: &str = "-";

/// Loads every path: a file, a directory (its `*.yaml` and `*.yml`, recursively, as
/// `--manifests` reads it) or `-` (`stdin`). What cannot be read is a load error, reported with
/// the rest.
pub fn load(paths: &[PathBuf], stdin: &mut dyn Read) -> Loaded {
    let mut loaded = Loaded::default();
    for path in paths {
        if path.as_os_str() == STDIN {
            let mut text = String::new();
            match stdin
                .take(manifests::MAX_FILE_BYTES + 1)
                .read_to_string(&mut text)
            {
                Ok(_) if text.len() as u64 > manifests::MAX_FILE_BYTES => error(
                    &mut loaded,
                    path,
                    &format!("more than the limit of {} bytes", manifests::MAX_FILE_BYTES),
                ),
                Ok(_) => manifests::load_str(&text, path, &mut loaded),
                Err(e) => error(&mut loaded, path, &e.to_string()),
            }
            continue;
        }
        match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_dir() => match manifests::load_dir(path) {
                Ok(dir) => {
                    Arc::make_mut(&mut loaded.snapshot).extend(&dir.snapshot);
                    loaded.errors.extend(dir.errors);
                }
                Err(e) => error(&mut loaded, path, &e.to_string()),
            },
            Ok(metadata) => manifests::load_file(path, metadata.len(), &mut loaded),
            Err(e) => error(&mut loaded, path, &e.to_string()),
        }
    }
    loaded
}

fn error(loaded: &mut Loaded, path: &Path, message: &str) {
    loaded.errors.push(LoadError {
        file: path.to_owned(),
        document: None,
        message: message.to_owned(),
    });
}

/// The report written in `format`.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Text => text::render(report),
        Format::Json => {
            let mut json = serde_json::to_string_pretty(report).expect("a report serializes");
            json.push('\n');
            json
        }
    }
}
