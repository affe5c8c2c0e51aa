//! The standalone source: a directory of Kubernetes YAML manifests, watched for changes.
//!
//! [`load_dir`] reads the directory into a snapshot; [`watch`] signals that something below it
//! changed. The app debounces those signals and reloads the whole directory, which keeps the
//! loader stateless: what is on disk is the truth, whatever order events arrived in.

mod load;

use std::path::Path;
use std::time::Duration;

use notify::{EventKind, PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

pub use load::{is_manifest, load_dir, load_str, LoadError, Loaded, MAX_FILE_BYTES};

/// Interval of the polling fallback, used where inotify is unavailable (or out of watches).
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A running watch; dropping it stops watching.
pub struct DirWatch {
    _watcher: Box<dyn Watcher + Send>,
}

/// Watches `dir` recursively. Each relevant change sends a signal on the returned channel; the
/// channel holds at most one pending signal, since one reload covers any number of changes.
pub fn watch(dir: &Path) -> notify::Result<(DirWatch, mpsc::Receiver<()>)> {
    let (tx, rx) = mpsc::channel(1);
    let handler = move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(event) => is_relevant(event),
            // An error may mean missed events: reload to be safe.
            Err(_) => true,
        };
        if relevant {
            // Full means a reload is already pending, which will see this change too.
            let _ = tx.try_send(());
        }
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
    Ok((DirWatch { _watcher: watcher }, rx))
}

/// Reads (access events, which our own loading causes) and files that are not manifests do not
/// count; paths without an extension may be directories and do.
fn is_relevant(event: &notify::Event) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.paths.is_empty()
        || event.paths.iter().any(|p| {
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            is_manifest(p) || (p.extension().is_none() && !hidden)
        })
}
