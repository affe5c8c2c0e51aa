//! The parsed contents of a manifests directory, kept between reloads.
//!
//! Reparsing 10,000 files (40 MB of YAML) takes about a second, so a reload rereads only the
//! files that changed and keeps the parsed objects of the others.
//!
//! When the watcher named the changed paths, and all of them are files in directories already
//! walked, a reload stats and rereads just those (a walk of 10,000 files took about 30 ms
//! of a one-file change). Anything else walks and stats the whole tree, which is
//! independent of the order and completeness of watcher events: a directory or a `..data`
//! link among the paths, a path outside the walked directories, no paths at all, or a tree
//! with symbolic links (an event names the link's target, not the links that show it). On a
//! walk, a file is reread when its [`Stamp`] (size, modification time, identity) differs from
//! the one it was parsed at, or when the watcher reported its path (a same-size rewrite within
//! the file system's timestamp granularity keeps the stamp). After a watcher error or overflow,
//! every file is reread.
//!
//! The walk skips hidden files and directories (which also skips the `..data` links of a
//! mounted ConfigMap), follows symbolic links, and reads each directory once: a link loop, or
//! a second link to a directory, is a load error naming both paths.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::load::{load_file, LoadError, Loaded};
use super::{is_manifest, Changes, ATOMIC_WRITER_LINK};
use crate::snapshot::Snapshot;

/// What identifies the version of a file that was parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    /// Device and inode: a file replaced by rename (as kubectl and ConfigMap mounts do) is a
    /// new inode even when its size and timestamp match the old one.
    identity: (u64, u64),
}

impl Stamp {
    fn of(metadata: &Metadata) -> Self {
        Self {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            identity: identity(metadata),
        }
    }
}

#[cfg(unix)]
fn identity(metadata: &Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}

// Elsewhere size and time decide alone, and the watcher's paths cover same-size rewrites.
#[cfg(not(unix))]
fn identity(_: &Metadata) -> (u64, u64) {
    (0, 0)
}

/// One file's parse: its objects and its errors, as of `stamp`.
struct Parsed {
    stamp: Stamp,
    objects: Snapshot,
    errors: Vec<LoadError>,
    /// The reload that last found the file on disk.
    seen: u64,
}

/// Every manifest file below a directory, parsed.
pub struct ManifestCache {
    dir: PathBuf,
    files: foldhash::HashMap<PathBuf, Parsed>,
    /// The paths of `files`, sorted: objects are assembled in this order. It is sorted again
    /// only when files come or go: at 10,000 files, comparing paths (component by component)
    /// in an ordered map on every reload took most of a reload's time; hashing them does not.
    order: Vec<PathBuf>,
    reloads: u64,
    /// What the last walk found besides files; `None` until the first walk.
    walked: Option<Walked>,
    /// What a reload returns, assembled from `files` in path order, with where each file's
    /// objects start in it (indexed like `order`). Rereading files that hold as many objects
    /// of each kind as before, and no errors, replaces their objects in place: at 10,000
    /// files, assembling 30,000 objects anew was a tenth of a one-file change. Shared with the
    /// compile of the last reload, which is done with it by the next one, so that the
    /// replacement copies nothing.
    assembled: Loaded,
    starts: Vec<Counts>,
}

/// A number (or position) of objects of each kind, in the order of [`Snapshot`]'s fields.
type Counts = [usize; 6];

fn counts(objects: &Snapshot) -> Counts {
    [
        objects.ingress_classes.len(),
        objects.ingresses.len(),
        objects.services.len(),
        objects.endpoint_slices.len(),
        objects.secrets.len(),
        objects.backend_policies.len(),
    ]
}

/// The directories a walk read (by the path it read them under) and what it reported.
struct Walked {
    dirs: HashSet<PathBuf>,
    errors: Vec<LoadError>,
    /// Whether any entry was a symbolic link: then only a walk sees every effect of a change.
    links: bool,
}

/// What a reload of only the named paths must do.
enum Named<'a> {
    /// Reread these manifest files (with their stamps) and drop those.
    Files {
        reread: Vec<(&'a Path, Stamp)>,
        gone: Vec<&'a Path>,
    },
    /// The named paths are not enough to tell: walk the tree.
    Walk,
}

impl ManifestCache {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            files: foldhash::HashMap::default(),
            order: Vec::new(),
            reloads: 0,
            walked: None,
            assembled: Loaded::default(),
            starts: Vec::new(),
        }
    }

    /// Brings the cache up to date with the directory and returns everything in it: the
    /// objects of all files in path order, and the errors of all files. Fails only when the
    /// directory itself cannot be read (the cache is then left as it was).
    pub fn reload(&mut self, changes: &Changes) -> std::io::Result<Loaded> {
        match self.named(changes) {
            Named::Files { reread, gone } => {
                self.reread(reread, gone);
                Ok(self.loaded())
            }
            Named::Walk => self.reload_walking(changes),
        }
    }

    /// Whether the changed paths alone tell what to reread, and if so, what.
    fn named<'c>(&self, changes: &'c Changes) -> Named<'c> {
        let Some(walked) = &self.walked else {
            return Named::Walk;
        };
        if changes.overflowed || changes.paths.is_empty() || walked.links {
            return Named::Walk;
        }
        let (mut reread, mut gone) = (Vec::new(), Vec::new());
        for path in &changes.paths {
            let Ok(relative) = path.strip_prefix(&self.dir) else {
                return Named::Walk;
            };
            let names = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy());
            let mut hidden = false;
            for name in names {
                if name == ATOMIC_WRITER_LINK {
                    return Named::Walk;
                }
                hidden |= name.starts_with('.');
            }
            // The walk skips hidden entries and everything below them.
            if hidden {
                continue;
            }
            if !path.parent().is_some_and(|p| walked.dirs.contains(p)) {
                return Named::Walk;
            }
            // `symlink_metadata`: a new link must lead to a walk, which notes that the tree has
            // links, so that later changes to its target are seen through it too.
            match std::fs::symlink_metadata(path) {
                Ok(metadata) if metadata.is_dir() || metadata.is_symlink() => return Named::Walk,
                Ok(metadata) if is_manifest(path) => reread.push((&**path, Stamp::of(&metadata))),
                Ok(_) => {}
                // Whatever cannot be stat'ed the walk skips: gone, unless it was a directory.
                Err(_) if walked.dirs.contains(&**path) => return Named::Walk,
                Err(_) => gone.push(&**path),
            }
        }
        Named::Files { reread, gone }
    }

    /// Rereads the named files and drops the gone ones; the rest stays as parsed.
    fn reread(&mut self, reread: Vec<(&Path, Stamp)>, gone: Vec<&Path>) {
        let reload = self.reloads;
        // Paths that are gone are mostly not manifests anyway (the temporary file of a write
        // and rename); a manifest that is gone makes the snapshot shorter.
        let mut in_place = true;
        for path in gone {
            if self.files.remove(path).is_some() {
                in_place = false;
                if let Ok(at) = self.order.binary_search_by(|p| p.as_path().cmp(path)) {
                    self.order.remove(at);
                }
            }
        }
        for (path, stamp) in reread {
            let parsed = parse_file(path, stamp, reload);
            let at = self.order.binary_search_by(|p| p.as_path().cmp(path));
            match (self.files.get_mut(path), at) {
                (Some(old), Ok(at)) if in_place && same_shape(old, &parsed) => {
                    replace(
                        Arc::make_mut(&mut self.assembled.snapshot),
                        self.starts[at],
                        &parsed.objects,
                    );
                    *old = parsed;
                }
                (old, at) => {
                    in_place = false;
                    if let (None, Err(at)) = (old, at) {
                        self.order.insert(at, path.to_owned());
                    }
                    self.files.insert(path.to_owned(), parsed);
                }
            }
        }
        if !in_place {
            self.assemble();
        }
    }

    /// Walks the whole tree, rereading what changed.
    fn reload_walking(&mut self, changes: &Changes) -> std::io::Result<Loaded> {
        let walk = walk(&self.dir)?;
        if changes.overflowed {
            self.files.clear();
        }
        self.reloads += 1;
        let reload = self.reloads;
        let mut added = false;
        for (path, metadata) in walk.files {
            let stamp = Stamp::of(&metadata);
            match self.files.get_mut(&path) {
                Some(parsed) if parsed.stamp == stamp && !changes.paths.contains(&path) => {
                    parsed.seen = reload;
                }
                cached => {
                    added |= cached.is_none();
                    let parsed = parse_file(&path, stamp, reload);
                    self.files.insert(path, parsed);
                }
            }
        }
        // Files that are gone (or no longer manifests) drop out with their objects.
        let count = self.files.len();
        self.files.retain(|_, parsed| parsed.seen == reload);
        if added || self.files.len() != count {
            self.order = self.files.keys().cloned().collect();
            self.order.sort();
        }
        self.walked = Some(Walked {
            dirs: walk.dirs,
            errors: walk.errors,
            links: walk.links,
        });
        self.assemble();
        Ok(self.loaded())
    }

    /// Assembles everything in the cache: the objects of all files in path order, and all
    /// errors.
    fn assemble(&mut self) {
        let mut snapshot = Snapshot::default();
        let mut errors = self
            .walked
            .as_ref()
            .map(|w| w.errors.clone())
            .unwrap_or_default();
        let mut starts = Vec::with_capacity(self.order.len());
        for path in &self.order {
            starts.push(counts(&snapshot));
            if let Some(parsed) = self.files.get(path) {
                snapshot.extend(&parsed.objects);
                errors.extend(parsed.errors.iter().cloned());
            }
        }
        self.assembled = Loaded {
            snapshot: Arc::new(snapshot),
            errors,
        };
        self.starts = starts;
    }

    /// Everything in the cache, as last assembled.
    fn loaded(&self) -> Loaded {
        Loaded {
            snapshot: Arc::clone(&self.assembled.snapshot),
            errors: self.assembled.errors.clone(),
        }
    }
}

/// Whether `new` can take the place of `old` in the assembled snapshot: as many objects of
/// each kind, and no errors before or after (errors are assembled apart).
fn same_shape(old: &Parsed, new: &Parsed) -> bool {
    old.errors.is_empty() && new.errors.is_empty() && counts(&old.objects) == counts(&new.objects)
}

/// Puts `objects` in place of as many objects of each kind of `snapshot`, from `start`.
fn replace(snapshot: &mut Snapshot, start: Counts, objects: &Snapshot) {
    fn put<T>(into: &mut [Arc<T>], start: usize, objects: &[Arc<T>]) {
        into[start..start + objects.len()].clone_from_slice(objects);
    }
    put(
        &mut snapshot.ingress_classes,
        start[0],
        &objects.ingress_classes,
    );
    put(&mut snapshot.ingresses, start[1], &objects.ingresses);
    put(&mut snapshot.services, start[2], &objects.services);
    put(
        &mut snapshot.endpoint_slices,
        start[3],
        &objects.endpoint_slices,
    );
    put(&mut snapshot.secrets, start[4], &objects.secrets);
    put(
        &mut snapshot.backend_policies,
        start[5],
        &objects.backend_policies,
    );
}

/// Reads and parses one file; `stamp` was taken before reading, so a write that races the
/// read leaves a newer stamp on disk and the file is read again on the next reload.
fn parse_file(path: &Path, stamp: Stamp, seen: u64) -> Parsed {
    let mut loaded = Loaded::default();
    load_file(path, stamp.len, &mut loaded);
    Parsed {
        stamp,
        objects: Arc::unwrap_or_clone(loaded.snapshot),
        errors: loaded.errors,
        seen,
    }
}

/// The manifest files below a directory with their metadata, the directories read and those
/// skipped, and whether any entry was a symbolic link.
#[derive(Default)]
struct Walk {
    files: Vec<(PathBuf, Metadata)>,
    dirs: HashSet<PathBuf>,
    errors: Vec<LoadError>,
    links: bool,
}

/// Walks `dir` breadth first, following symbolic links. Each directory is walked once, by the
/// identity of what it resolves to, so symbolic link loops end; a second path to a directory
/// is reported, naming the (shallowest) path it was read by.
fn walk(dir: &Path) -> std::io::Result<Walk> {
    let mut walk = Walk::default();
    let root = std::fs::metadata(dir)?;
    let mut walked = HashMap::from([(identity(&root), dir.to_owned())]);
    let mut queue = VecDeque::from([dir.to_owned()]);
    while let Some(current) = queue.pop_front() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => {
                walk.dirs.insert(current.clone());
                entries
            }
            Err(error) if current == dir => return Err(error),
            // Below the root, an unreadable directory is skipped, not fatal.
            Err(error) => {
                tracing::warn!(dir = %current.display(), %error, "cannot read manifests directory");
                continue;
            }
        };
        let mut subdirs = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            walk.links |= entry.file_type().is_ok_and(|t| t.is_symlink());
            // Follows symbolic links, as a mounted ConfigMap needs.
            let Ok(metadata) = std::fs::metadata(&path) else {
                continue;
            };
            if metadata.is_dir() {
                subdirs.push((path, identity(&metadata)));
            } else if is_manifest(&path) {
                walk.files.push((path, metadata));
            }
        }
        // In name order, so which of two paths to a directory wins does not depend on the
        // order read_dir returns entries in.
        subdirs.sort();
        for (path, id) in subdirs {
            match walked.get(&id) {
                Some(first) => walk.errors.push(LoadError {
                    message: format!(
                        "is the directory {}, which is already read (a symbolic link loop, \
                         or a second link to it); not read again",
                        first.display()
                    ),
                    file: path,
                    document: None,
                }),
                None => {
                    walked.insert(id, path.clone());
                    queue.push_back(path);
                }
            }
        }
    }
    walk.errors.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(walk)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: NAME}\n";

    fn service(name: &str) -> String {
        SERVICE.replace("NAME", name)
    }

    fn service_names(loaded: &Loaded) -> Vec<String> {
        loaded
            .snapshot
            .services
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect()
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_link_loops_are_walked_once_and_reported() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(a.join("deeper")).unwrap();
        std::fs::create_dir(&b).unwrap();
        std::fs::write(a.join("one.yaml"), service("one")).unwrap();
        std::fs::write(b.join("two.yaml"), service("two")).unwrap();
        // Two loops: a/deeper/up -> a, and a/to-b -> b with b/to-a -> a.
        symlink(&a, a.join("deeper").join("up")).unwrap();
        symlink(&b, a.join("to-b")).unwrap();
        symlink(&a, b.join("to-a")).unwrap();
        // Without loop detection the walk never ends: bounded, on its own thread.
        let (done, result) = std::sync::mpsc::channel();
        let root = dir.path().to_owned();
        std::thread::spawn(move || {
            let _ = done.send(ManifestCache::new(&root).reload(&Changes::default()));
        });
        let loaded = result
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the walk ends")
            .unwrap();
        assert_eq!(service_names(&loaded), ["one", "two"]);
        let skipped: Vec<_> = loaded.errors.iter().map(|e| e.to_string()).collect();
        let root = dir.path().display();
        let expected = [
            format!("{root}/a/deeper/up: is the directory {root}/a, which is already read"),
            format!("{root}/a/to-b: is the directory {root}/b, which is already read"),
            format!("{root}/b/to-a: is the directory {root}/a, which is already read"),
        ];
        assert_eq!(skipped.len(), expected.len(), "{skipped:?}");
        for (skipped, expected) in skipped.iter().zip(&expected) {
            assert!(skipped.starts_with(expected.as_str()), "{skipped}");
        }
    }

    #[test]
    fn a_reload_rereads_changed_files_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, changed) = (
            dir.path().join("kept.yaml"),
            dir.path().join("changed.yaml"),
        );
        std::fs::write(&kept, service("kept")).unwrap();
        std::fs::write(&changed, service("before")).unwrap();
        std::fs::write(dir.path().join("removed.yaml"), service("removed")).unwrap();
        let mut cache = ManifestCache::new(dir.path());
        let first = cache.reload(&Changes::default()).unwrap();
        assert_eq!(service_names(&first), ["before", "kept", "removed"]);

        std::fs::write(&changed, service("after-a-longer-name")).unwrap();
        std::fs::remove_file(dir.path().join("removed.yaml")).unwrap();
        std::fs::write(dir.path().join("added.yaml"), service("added")).unwrap();
        let second = cache.reload(&Changes::default()).unwrap();
        assert_eq!(
            service_names(&second),
            ["added", "after-a-longer-name", "kept"]
        );
        // The unchanged file's object is the one parsed before, not a new parse.
        assert!(std::sync::Arc::ptr_eq(
            &first.snapshot.services[1],
            &second.snapshot.services[2]
        ));
    }

    #[test]
    fn a_reported_path_is_reread_even_when_its_stamp_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.yaml");
        std::fs::write(&file, service("aaa")).unwrap();
        let mut cache = ManifestCache::new(dir.path());
        cache.reload(&Changes::default()).unwrap();
        // Same size, same inode; the modification time is put back, as a rewrite within one
        // tick of the file system's clock would leave it.
        let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::fs::write(&file, service("bbb")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        let unreported = cache.reload(&Changes::default()).unwrap();
        assert_eq!(
            service_names(&unreported),
            ["aaa"],
            "the stamp alone cannot tell"
        );
        let changes = Changes {
            paths: HashSet::from([file]),
            overflowed: false,
        };
        assert_eq!(service_names(&cache.reload(&changes).unwrap()), ["bbb"]);
    }

    fn named(paths: &[PathBuf]) -> Changes {
        Changes {
            paths: paths.iter().cloned().collect(),
            overflowed: false,
        }
    }

    #[test]
    fn a_file_reread_in_place_gives_what_a_fresh_load_gives() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        for name in ["a", "b", "c"] {
            let two = format!("{}---\n{}", service(name), service(&format!("{name}2")));
            std::fs::write(path(&format!("{name}.yaml")), two).unwrap();
        }
        let mut cache = ManifestCache::new(dir.path());
        let first = cache.reload(&Changes::default()).unwrap();
        // As many objects of each kind: replaced in place. Then one object more: assembled.
        for (text, expected) in [
            (format!("{}---\n{}", service("x"), service("y")), 6),
            (
                format!(
                    "{}---\n{}---\n{}",
                    service("z"),
                    service("z2"),
                    service("z3")
                ),
                7,
            ),
        ] {
            // Written as kubectl and the bench write: a temporary file renamed over it.
            std::fs::write(path("b.tmp"), text).unwrap();
            std::fs::rename(path("b.tmp"), path("b.yaml")).unwrap();
            let reread = cache
                .reload(&named(&[path("b.tmp"), path("b.yaml")]))
                .unwrap();
            let fresh = ManifestCache::new(dir.path())
                .reload(&Changes::default())
                .unwrap();
            assert_eq!(service_names(&reread), service_names(&fresh));
            assert_eq!(reread.snapshot.services.len(), expected);
        }
        // What an earlier reload returned stays as it was.
        assert_eq!(service_names(&first), ["a", "a2", "b", "b2", "c", "c2"]);
    }

    #[test]
    fn named_files_are_reread_without_a_walk() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        for name in ["b", "d"] {
            std::fs::write(path(&format!("{name}.yaml")), service(name)).unwrap();
        }
        let mut cache = ManifestCache::new(dir.path());
        cache.reload(&Changes::default()).unwrap();

        // d changes too, but only b is named: a reload that walked would see d.
        std::fs::write(path("b.yaml"), service("b2")).unwrap();
        std::fs::write(path("d.yaml"), service("d-unnamed")).unwrap();
        std::fs::write(path("c.yaml"), service("c")).unwrap();
        std::fs::write(path("a.yaml.tmp"), service("not-a-manifest")).unwrap();
        let changes = named(&[path("b.yaml"), path("c.yaml"), path("a.yaml.tmp")]);
        let loaded = cache.reload(&changes).unwrap();
        assert_eq!(service_names(&loaded), ["b2", "c", "d"]);

        std::fs::remove_file(path("b.yaml")).unwrap();
        std::fs::write(path("a.yaml"), service("a")).unwrap();
        let loaded = cache
            .reload(&named(&[path("b.yaml"), path("a.yaml")]))
            .unwrap();
        assert_eq!(service_names(&loaded), ["a", "c", "d"]);

        // Without paths, the reload walks.
        let loaded = cache.reload(&Changes::default()).unwrap();
        assert_eq!(service_names(&loaded), ["a", "c", "d-unnamed"]);
    }

    #[test]
    fn a_named_directory_is_walked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), service("a")).unwrap();
        let mut cache = ManifestCache::new(dir.path());
        cache.reload(&Changes::default()).unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("b.yaml"), service("b")).unwrap();
        // A file in a directory not walked yet, or the directory itself: both walk.
        let loaded = cache.reload(&named(&[sub.join("b.yaml")])).unwrap();
        assert_eq!(service_names(&loaded), ["a", "b"]);
        std::fs::write(sub.join("c.yaml"), service("c")).unwrap();
        std::fs::remove_file(sub.join("b.yaml")).unwrap();
        let loaded = cache.reload(&named(std::slice::from_ref(&sub))).unwrap();
        assert_eq!(service_names(&loaded), ["a", "c"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_tree_with_symbolic_links_is_walked() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.yaml");
        std::fs::write(&target, service("before")).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("link.yaml")).unwrap();
        let mut cache = ManifestCache::new(dir.path());
        assert_eq!(
            service_names(&cache.reload(&Changes::default()).unwrap()),
            ["before", "before"]
        );
        // The event names the target; the link shows the change too.
        std::fs::write(&target, service("after-longer")).unwrap();
        let loaded = cache.reload(&named(&[target])).unwrap();
        assert_eq!(service_names(&loaded), ["after-longer", "after-longer"]);
    }

    #[test]
    fn a_link_created_after_the_first_load_is_followed_when_its_target_changes() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.yaml");
        std::fs::write(&target, service("before")).unwrap();
        let mut cache = ManifestCache::new(dir.path());
        assert_eq!(
            service_names(&cache.reload(&Changes::default()).unwrap()),
            ["before"]
        );
        let link = dir.path().join("link.yaml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let loaded = cache.reload(&named(&[link])).unwrap();
        assert_eq!(service_names(&loaded), ["before", "before"]);
        std::fs::write(&target, service("after-longer")).unwrap();
        let loaded = cache.reload(&named(&[target])).unwrap();
        assert_eq!(service_names(&loaded), ["after-longer", "after-longer"]);
    }

    #[test]
    fn errors_of_unchanged_files_stay_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("broken.yaml"), "kind: [unclosed\n").unwrap();
        std::fs::write(dir.path().join("good.yaml"), service("good")).unwrap();
        let mut cache = ManifestCache::new(dir.path());
        assert_eq!(cache.reload(&Changes::default()).unwrap().errors.len(), 1);
        std::fs::write(dir.path().join("good.yaml"), service("changed")).unwrap();
        let loaded = cache.reload(&Changes::default()).unwrap();
        assert_eq!(loaded.errors.len(), 1);
        assert!(loaded.errors[0].file.ends_with("broken.yaml"));
    }
}
