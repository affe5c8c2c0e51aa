//! The standalone source: a directory of Kubernetes YAML manifests, watched for changes.
//!
//! [`ManifestCache`] holds the parsed directory and brings it up to date on a reload; [`watch`]
//! signals that something below the directory changed and collects the paths it saw. The app
//! debounces those signals, then reloads: the cache rereads only what changed, statting just
//! the named files when they say enough, else the whole tree (so what is on disk stays the
//! truth whatever order events arrived in, at the cost of one stat per file rather than one
//! parse per file).

mod cache;
mod header;
mod load;
mod nesting;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::{EventKind, PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

pub use cache::ManifestCache;
pub use load::{load_file, load_str, LoadError, Loaded, MAX_FILE_BYTES};
pub use nesting::MAX_NESTING;

/// Interval of the polling fallback, used where inotify is unavailable (or out of watches).
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Loads every manifest below `dir` at once. Fails only when `dir` itself cannot be read;
/// problems with single files and documents are collected in [`Loaded::errors`].
pub fn load_dir(dir: &Path) -> std::io::Result<Loaded> {
    ManifestCache::new(dir).reload(&Changes::default())
}

/// Whether a path names a manifest file (`*.yaml` or `*.yml`).
pub fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// What the watcher saw since it was last asked.
#[derive(Debug, Default)]
pub struct Changes {
    /// Paths events named: these files are reread even if their size and time look unchanged.
    pub paths: HashSet<PathBuf>,
    /// Events may have been lost (a watcher error, an inotify queue overflow): reread all.
    pub overflowed: bool,
}

/// A running watch; dropping it stops watching.
pub struct DirWatch {
    _watcher: Box<dyn Watcher + Send>,
    changes: Arc<Mutex<Changes>>,
}

impl DirWatch {
    /// Takes the changes seen since the last call.
    pub fn take_changes(&self) -> Changes {
        // The handler only inserts into the set; a panic there cannot leave it inconsistent.
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Watches `dir` recursively. Each relevant change is recorded (see [`DirWatch::take_changes`])
/// and sends a signal on the returned channel; the channel holds at most one pending signal,
/// since one reload covers any number of changes.
pub fn watch(dir: &Path) -> notify::Result<(DirWatch, mpsc::Receiver<()>)> {
    let (tx, rx) = mpsc::channel(1);
    let changes = Arc::new(Mutex::new(Changes::default()));
    let seen = changes.clone();
    let handler = move |event: notify::Result<notify::Event>| {
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        match &event {
            Ok(event) if event.need_rescan() => seen.overflowed = true,
            Ok(event) if is_relevant(event) => seen.paths.extend(event.paths.iter().cloned()),
            Ok(_) => return,
            // An error may mean missed events.
            Err(_) => seen.overflowed = true,
        }
        drop(seen);
        // Full means a reload is already pending, which will see this change too.
        let _ = tx.try_send(());
    };
    let native =
        RecommendedWatcher::new(handler.clone(), notify::Config::default()).and_then(|mut w| {
            w.watch(dir, RecursiveMode::Recursive)?;
            Ok(w)
        });
    let watcher: Box<dyn Watcher + Send> = match native {
        Ok(watcher) => Box::new(watcher),
        Err(error) => {
            tracing::warn!(%error, dir = %dir.display(), "native file watching unavailable; polling every {POLL_INTERVAL:?}");
            let mut poll = PollWatcher::new(
                handler,
                notify::Config::default().with_poll_interval(POLL_INTERVAL),
            )?;
            poll.watch(dir, RecursiveMode::Recursive)?;
            Box::new(poll)
        }
    };
    Ok((
        DirWatch {
            _watcher: watcher,
            changes,
        },
        rx,
    ))
}

/// The link through which a mounted ConfigMap or Secret shows its files: kubelet updates the
/// volume by pointing it at a new directory (`..data_tmp` renamed over `..data`), and the
/// visible files, links into `..data`, never change themselves.
const ATOMIC_WRITER_LINK: &str = "..data";

/// Reads (access events, which our own loading causes) and files that are not manifests do not
/// count; paths without an extension may be directories and do, and so does a mounted volume's
/// `..data` link, though hidden.
fn is_relevant(event: &notify::Event) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.paths.is_empty()
        || event.paths.iter().any(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy());
            let hidden = name.as_ref().is_some_and(|n| n.starts_with('.'));
            let swapped = name.is_some_and(|n| n == ATOMIC_WRITER_LINK);
            is_manifest(p) || swapped || (p.extension().is_none() && !hidden)
        })
}
