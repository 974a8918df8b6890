//! Automatic hot reload: a debounced watcher of plugin directories ([`DirWatcher`]), the
//! application of its changes to a [`PluginManager`] ([`apply`]), and a thread that keeps a
//! shared manager current ([`spawn_auto_reload`]).
//!
//! ```no_run
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use calc_host::reload::{spawn_auto_reload, DirWatcher};
//! use calc_host::PluginManager;
//!
//! let dir = std::path::PathBuf::from("target/debug/plugins");
//! let mut manager = PluginManager::new();
//! manager.enable_hot_reload(PluginManager::default_copy_dir());
//! let watcher = DirWatcher::new(std::slice::from_ref(&dir), Duration::from_millis(250)).unwrap();
//! let _ = manager.load_dir(&dir);
//! let manager = Arc::new(Mutex::new(manager));
//! let _reload = spawn_auto_reload(Arc::clone(&manager), watcher, |event| println!("{event}"));
//! // ... evaluate with handles from `live_operation` or compiled expressions: they follow the
//! // reloads; dropping `_reload` stops the thread.
//! ```
//!
//! How changes are detected: `notify` reports raw file-system events and
//! `notify-debouncer-full` merges them (a rename's two halves become one event, duplicates are
//! dropped). On top of that, a library file is reported only once it has been *quiet* for the
//! debounce time: no event about it, and no change of its size, modification time or inode
//! (polled while it is pending, so a builder that writes in several chunks, or a slow copy, gives
//! one change after its last write). Its state then decides the change: present and different
//! from what was last reported (or found when watching started) is [`Change::Upserted`]; gone
//! while it was known is [`Change::Removed`]; a temporary file that came and went is nothing.
//! Reading a file (as loading it does) is not a change.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{
    new_debouncer, DebounceEventResult, DebouncedEvent, Debouncer, RecommendedCache,
};

use crate::events::HostEvent;
use crate::files::is_library_file;
use crate::manager::PluginManager;

/// A directory could not be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {}: {reason}", dir.display())]
pub struct WatchError {
    /// The directory.
    pub dir: PathBuf,
    /// Why.
    pub reason: String,
}

/// A change of one plugin library file, reported once the file is quiet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Change {
    /// The file appeared, was rewritten, or was renamed into place.
    Upserted(PathBuf),
    /// The file was deleted or renamed away.
    Removed(PathBuf),
}

impl Change {
    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            Change::Upserted(p) | Change::Removed(p) => p,
        }
    }
}

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

/// The fingerprint of the regular file at `path` (following symlinks); `None` when there is no
/// such file.
fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Fingerprint {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
    })
}

/// A file with recent activity, not reported yet.
#[derive(Debug)]
struct Pending {
    /// Last event or observed change of its fingerprint.
    since: Instant,
    /// Its fingerprint then.
    seen: Option<Fingerprint>,
}

#[derive(Debug, Default)]
struct State {
    pending: HashMap<PathBuf, Pending>,
    /// Library files as last reported (or as found when watching started).
    known: HashMap<PathBuf, Fingerprint>,
}

/// Watches plugin directories (not their subdirectories) and reports changes of their shared
/// libraries, debounced. Dropping it stops watching.
pub struct DirWatcher {
    dirs: Vec<PathBuf>,
    debounce: Duration,
    events: Mutex<Receiver<DebounceEventResult>>,
    state: Mutex<State>,
    debouncer: Option<Debouncer<RecommendedWatcher, RecommendedCache>>,
}

impl std::fmt::Debug for DirWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatcher")
            .field("dirs", &self.dirs)
            .field("debounce", &self.debounce)
            .finish_non_exhaustive()
    }
}

// The C API shares a `calc_host_t` (and so its watcher) between threads.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<DirWatcher>();
};

impl DirWatcher {
    /// Starts watching `dirs`; a library file is reported once it has been quiet for
    /// `debounce`. Files present now are the baseline: they are reported only when they change.
    /// Fails, naming the directory, when one is missing or cannot be watched.
    pub fn new(dirs: &[PathBuf], debounce: Duration) -> Result<DirWatcher, WatchError> {
        let error = |dir: &Path, reason: String| WatchError {
            dir: dir.to_path_buf(),
            reason,
        };
        let mut canonical = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let c = std::fs::canonicalize(dir).map_err(|e| error(dir, e.to_string()))?;
            if !c.is_dir() {
                return Err(error(dir, "not a directory".into()));
            }
            if !canonical.contains(&c) {
                canonical.push(c);
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        // The debouncer only merges raw events; the quiet period is applied here, so its own
        // delay is kept short.
        let merge = (debounce / 4).clamp(Duration::from_millis(10), Duration::from_millis(100));
        let first = canonical.first().map_or(Path::new(""), PathBuf::as_path);
        let mut debouncer =
            new_debouncer(merge, None, tx).map_err(|e| error(first, e.to_string()))?;
        let mut state = State::default();
        for dir in &canonical {
            debouncer
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| error(dir, e.to_string()))?;
            for file in crate::files::library_files(dir).unwrap_or_default() {
                if let Some(fp) = fingerprint(&file) {
                    state.known.insert(file, fp);
                }
            }
        }
        Ok(DirWatcher {
            dirs: canonical,
            debounce,
            events: Mutex::new(rx),
            state: Mutex::new(state),
            debouncer: Some(debouncer),
        })
    }

    /// The watched directories (canonical paths; change paths start with them).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The debounce time.
    pub fn debounce(&self) -> Duration {
        self.debounce
    }

    /// The changes that are ready now, without waiting: removals first, then upserts, each in
    /// path order, at most one per file.
    pub fn try_changes(&self) -> Vec<Change> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while let Ok(result) = events.try_recv() {
            self.note(&mut state, result);
        }
        self.ready(&mut state)
    }

    /// Waits up to `timeout` for changes and returns the first that are ready (as
    /// [`Self::try_changes`]); empty when none became ready in time.
    pub fn wait_changes(&self, timeout: Duration) -> Vec<Change> {
        let deadline = Instant::now() + timeout;
        let poll = (self.debounce / 4).clamp(Duration::from_millis(5), Duration::from_millis(50));
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let pending = {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                while let Ok(result) = events.try_recv() {
                    self.note(&mut state, result);
                }
                let changes = self.ready(&mut state);
                if !changes.is_empty() {
                    return changes;
                }
                !state.pending.is_empty()
            };
            let now = Instant::now();
            if now >= deadline {
                return Vec::new();
            }
            // Pending files are re-examined every `poll`; otherwise just wait for events.
            let wait = if pending {
                poll.min(deadline - now)
            } else {
                deadline - now
            };
            match events.recv_timeout(wait) {
                Ok(result) => {
                    let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                    self.note(&mut state, result);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// Records a batch of debounced events: every library file they name becomes pending, quiet
    /// since the event (not since this call: a caller that asks once, after the file has been
    /// quiet long enough, gets the change at once).
    fn note(&self, state: &mut State, result: DebounceEventResult) {
        let now = Instant::now();
        let touch = |state: &mut State, path: &Path, at: Instant| {
            let watched = path
                .parent()
                .is_some_and(|d| self.dirs.iter().any(|w| w == d));
            if watched && is_library_file(path) {
                state.pending.insert(
                    path.to_path_buf(),
                    Pending {
                        since: at.min(now),
                        seen: fingerprint(path),
                    },
                );
            }
        };
        match result {
            Ok(events) => {
                for event in events {
                    if event.need_rescan() {
                        tracing::debug!("file events were lost; rescanning the plugin directories");
                        self.rescan(state, &mut |s, p| touch(s, p, now));
                        continue;
                    }
                    if is_read_only(&event) {
                        continue;
                    }
                    for path in &event.paths {
                        touch(state, path, event.time);
                    }
                }
            }
            Err(errors) => {
                for e in &errors {
                    tracing::warn!("watching plugin directories: {e}");
                }
                self.rescan(state, &mut |s, p| touch(s, p, now));
            }
        }
    }

    /// Marks every library file that is or was in the watched directories pending.
    fn rescan(&self, state: &mut State, touch: &mut impl FnMut(&mut State, &Path)) {
        let mut paths: Vec<PathBuf> = state.known.keys().cloned().collect();
        for dir in &self.dirs {
            paths.extend(crate::files::library_files(dir).unwrap_or_default());
        }
        for path in paths {
            touch(state, &path);
        }
    }

    /// Takes the pending files that have been quiet for the debounce time and turns them into
    /// changes.
    fn ready(&self, state: &mut State) -> Vec<Change> {
        let now = Instant::now();
        let mut quiet = Vec::new();
        for (path, pending) in &mut state.pending {
            let current = fingerprint(path);
            if current != pending.seen {
                pending.seen = current;
                pending.since = now;
            } else if now.duration_since(pending.since) >= self.debounce {
                quiet.push(path.clone());
            }
        }
        let mut removed = Vec::new();
        let mut upserted = Vec::new();
        for path in quiet {
            let Some(pending) = state.pending.remove(&path) else {
                continue;
            };
            match pending.seen {
                Some(fp) => {
                    if state.known.insert(path.clone(), fp) != Some(fp) {
                        upserted.push(path);
                    }
                }
                None => {
                    if state.known.remove(&path).is_some() {
                        removed.push(path);
                    }
                }
            }
        }
        removed.sort();
        upserted.sort();
        removed
            .into_iter()
            .map(Change::Removed)
            .chain(upserted.into_iter().map(Change::Upserted))
            .collect()
    }
}

/// Opening, reading or closing a file without writing it.
fn is_read_only(event: &DebouncedEvent) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => false,
        EventKind::Access(_) => true,
        _ => false,
    }
}

impl Drop for DirWatcher {
    fn drop(&mut self) {
        if let Some(debouncer) = self.debouncer.take() {
            debouncer.stop();
        }
    }
}

/// Applies one change to `manager`: [`PluginManager::reload_file`] for
/// [`Change::Upserted`] (a new file is loaded, a changed one reloaded), and
/// [`PluginManager::remove_file`] for [`Change::Removed`]. Returns the event the manager
/// reported (and sent to its event channel, if any): a [`HostEvent::Failed`] when the file could
/// not be (re)loaded (the old version keeps serving), a [`HostEvent::Disabled`] for the file of a
/// plugin the settings disable (it stays disabled, its listing refreshed); `None` for the removal
/// of a file no plugin came from.
pub fn apply(manager: &mut PluginManager, change: &Change) -> Option<HostEvent> {
    match change {
        Change::Upserted(path) => match manager.reload_file(path) {
            Ok(event) => Some(event),
            Err(error) => {
                let error = error.to_string();
                let failed_path = manager
                    .failures()
                    .last()
                    .map_or_else(|| path.clone(), |f| f.path.clone());
                Some(HostEvent::Failed {
                    path: failed_path,
                    error,
                })
            }
        },
        Change::Removed(path) => manager.remove_file(path),
    }
}

/// The thread started by [`spawn_auto_reload`]; dropping this guard (or calling
/// [`AutoReload::stop`]) stops it and waits for it to finish the change it is applying.
#[derive(Debug)]
pub struct AutoReload {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AutoReload {
    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for AutoReload {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How long the reload thread waits for changes before checking its stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Starts a thread that applies every change `watcher` reports to `manager` (see [`apply`]),
/// holding the lock only while applying one change, and passes each resulting event to
/// `on_event` (after releasing the lock). Runs until the returned guard is dropped.
///
/// Evaluation is not blocked meanwhile: compiled expressions and [`crate::manager::LiveOp`]s
/// follow the swaps, and a call in flight finishes on the version it started on.
pub fn spawn_auto_reload(
    manager: Arc<Mutex<PluginManager>>,
    watcher: DirWatcher,
    on_event: impl Fn(&HostEvent) + Send + 'static,
) -> AutoReload {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("calc-auto-reload".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                for change in watcher.wait_changes(STOP_POLL) {
                    tracing::debug!(?change, "applying");
                    let event = {
                        let mut manager = manager.lock().unwrap_or_else(PoisonError::into_inner);
                        apply(&mut manager, &change)
                    };
                    if let Some(event) = event {
                        on_event(&event);
                    }
                }
            }
        })
        .expect("spawning the auto-reload thread");
    AutoReload {
        stop,
        thread: Some(thread),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const DEBOUNCE: Duration = Duration::from_millis(100);

    fn lib(name: &str) -> String {
        format!("lib{name}.{}", std::env::consts::DLL_EXTENSION)
    }

    /// A fresh, empty temporary directory for one test.
    fn temp_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("calc-reload-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.canonicalize().unwrap()
    }

    /// Every change reported until none has come for a while.
    fn settle(w: &DirWatcher) -> Vec<Change> {
        let mut all = w.wait_changes(Duration::from_secs(10));
        loop {
            let more = w.wait_changes(DEBOUNCE * 6);
            if more.is_empty() {
                return all;
            }
            all.extend(more);
        }
    }

    #[test]
    fn reload_watcher_reports_one_upsert_per_written_file() {
        let dir = temp_dir("write");
        let w = DirWatcher::new(std::slice::from_ref(&dir), DEBOUNCE).unwrap();
        assert!(w.try_changes().is_empty());
        std::fs::write(dir.join(lib("a")), b"version 1").unwrap();
        std::fs::write(dir.join("notes.txt"), b"not a library").unwrap();
        assert_eq!(settle(&w), vec![Change::Upserted(dir.join(lib("a")))]);

        // Reading the file (as loading it does) is not a change.
        let _ = std::fs::read(dir.join(lib("a"))).unwrap();
        assert!(w.wait_changes(DEBOUNCE * 4).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reload_watcher_merges_a_write_in_chunks() {
        let dir = temp_dir("chunks");
        let path = dir.join(lib("b"));
        std::fs::write(&path, b"old").unwrap();
        let w = DirWatcher::new(std::slice::from_ref(&dir), DEBOUNCE * 2).unwrap();
        let mut f = std::fs::File::create(&path).unwrap();
        for chunk in 0..8 {
            f.write_all(format!("chunk {chunk}\n").as_bytes()).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(f);
        assert_eq!(settle(&w), vec![Change::Upserted(path)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reload_watcher_handles_rename_into_place_and_away() {
        let dir = temp_dir("rename");
        let path = dir.join(lib("c"));
        std::fs::write(&path, b"old").unwrap();
        let w = DirWatcher::new(std::slice::from_ref(&dir), DEBOUNCE).unwrap();

        // A builder writes a temporary file (with or without the library extension) and
        // renames it over the old one.
        for temp in [dir.join(".c.tmp"), dir.join(lib("c-tmp"))] {
            std::fs::write(&temp, b"new version").unwrap();
            std::fs::rename(&temp, &path).unwrap();
            assert_eq!(settle(&w), vec![Change::Upserted(path.clone())]);
        }

        // Renamed away: the old name is removed, the new name (a library) appears.
        let moved = dir.join(lib("d"));
        std::fs::rename(&path, &moved).unwrap();
        assert_eq!(
            settle(&w),
            vec![
                Change::Removed(path.clone()),
                Change::Upserted(moved.clone())
            ]
        );
        std::fs::rename(&moved, dir.join("d.disabled")).unwrap();
        assert_eq!(settle(&w), vec![Change::Removed(moved)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reload_watcher_reports_deletions_of_known_files_only() {
        let dir = temp_dir("delete");
        let path = dir.join(lib("e"));
        std::fs::write(&path, b"x").unwrap();
        let w = DirWatcher::new(std::slice::from_ref(&dir), DEBOUNCE).unwrap();
        std::fs::remove_file(&path).unwrap();
        // A file that comes and goes within the debounce time is nothing.
        let brief = dir.join(lib("brief"));
        std::fs::write(&brief, b"x").unwrap();
        std::fs::remove_file(&brief).unwrap();
        assert_eq!(settle(&w), vec![Change::Removed(path)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reload_watcher_orders_removals_before_upserts_by_path() {
        let dir = temp_dir("order");
        std::fs::write(dir.join(lib("gone")), b"x").unwrap();
        let w = DirWatcher::new(std::slice::from_ref(&dir), DEBOUNCE).unwrap();
        for name in ["z", "m", "a"] {
            std::fs::write(dir.join(lib(name)), b"x").unwrap();
        }
        std::fs::remove_file(dir.join(lib("gone"))).unwrap();
        let changes = settle(&w);
        let mut expected = vec![Change::Removed(dir.join(lib("gone")))];
        expected.extend(["a", "m", "z"].map(|n| Change::Upserted(dir.join(lib(n)))));
        assert_eq!(changes, expected);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reload_watcher_names_a_missing_directory() {
        let missing = std::env::temp_dir().join("calc-reload-no-such-dir");
        let e = DirWatcher::new(std::slice::from_ref(&missing), DEBOUNCE).unwrap_err();
        assert_eq!(e.dir, missing);
        assert!(
            e.to_string()
                .starts_with(&format!("cannot watch {}: ", missing.display())),
            "{e}"
        );
    }

    #[test]
    fn reload_auto_reload_thread_stops_when_dropped() {
        let dir = temp_dir("auto");
        let w = DirWatcher::new(std::slice::from_ref(&dir), DEBOUNCE).unwrap();
        let manager = Arc::new(Mutex::new(PluginManager::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let guard = spawn_auto_reload(Arc::clone(&manager), w, move |e| {
            let _ = tx.send(e.clone());
        });
        // Not a plugin: the manager reports the failure, and the thread passes it on.
        std::fs::write(dir.join(lib("junk")), b"not a library").unwrap();
        let event = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            matches!(&event, HostEvent::Failed { path, .. } if path.ends_with(lib("junk"))),
            "{event:?}"
        );
        assert_eq!(manager.lock().unwrap().failures().len(), 1);
        let started = Instant::now();
        drop(guard);
        assert!(started.elapsed() < Duration::from_secs(2));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
