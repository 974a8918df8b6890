//! A cache of plugin metadata, so that listing plugins does not have to open them.
//!
//! Each entry is keyed by a library file's canonical path, size, modification time (ns) and
//! inode, and holds what validation made of that file: its [`PluginInfo`], or the refusal; and
//! whether the plugin started (`init`), with a fingerprint of the settings it started with
//! ([`start_fingerprint`]). An
//! entry whose key no longer matches the file is stale and the file is validated again
//! ([`loader::inspect`]: `dlopen`, descriptor checks, no `init`). A fresh entry is used as is:
//! the file is not opened at all, only `stat`ed.
//!
//! The cache is one JSON file, by default `$XDG_CACHE_HOME/calc/plugins.json`
//! (`~/.cache/calc/plugins.json`), written atomically (a temporary file renamed over it) and
//! only when something changed. A file that cannot be read or parsed, or that another build of
//! the host wrote (the validation rules may differ), is ignored (logged at debug level) and
//! rewritten.
//!
//! What the cache does not see, by design: refusals by the dynamic loader (`dlopen` failed) are
//! not cached, because they depend on the environment (library search path, dependencies); and a
//! valid entry stays valid while its file is unchanged, even if a library the plugin depends on
//! goes away. A file modified less than [`RACY_WINDOW`] before it was validated is validated
//! again next time (file timestamps are coarser than a nanosecond: a second write in the same
//! tick, to the same size and inode, would keep the key), as Git does for "racily clean" entries.
//!
//! [`Listing`] is what `calc plugins list` prints: built from a [`PluginManager`] that loaded
//! the directories, or by [`Listing::scan`] from this cache, which starts only the plugins it
//! has no recorded successful start of (so that a plugin whose `init` fails is never listed as
//! enabled).
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::error::LoadError;
use crate::info::PluginInfo;
use crate::loader;
use crate::manager::{
    is_library_file, replace_conflicts, slot_conflicts, slot_rollout, Conflict, PluginManager,
    LOAD_RANKS,
};

/// Version of the cache file's layout.
const FORMAT: u32 = 1;

/// An entry validated less than this long after its file's modification time is not trusted:
/// the file is validated again on the next lookup (the entry is then refreshed).
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// The identity of one version of a file: the cache key besides its canonical path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Inode number (0 where there is none).
    pub inode: u64,
}

impl FileStamp {
    /// The stamp of a file's metadata.
    pub fn of(meta: &std::fs::Metadata) -> FileStamp {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            FileStamp {
                size: meta.size(),
                mtime_ns: meta
                    .mtime()
                    .saturating_mul(1_000_000_000)
                    .saturating_add(meta.mtime_nsec()),
                inode: meta.ino(),
            }
        }
        #[cfg(not(unix))]
        {
            FileStamp {
                size: meta.len(),
                mtime_ns: meta.modified().map_or(0, ns_since_epoch),
                inode: 0,
            }
        }
    }
}

pub(crate) fn ns_since_epoch(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// Why validation refused a file, as recorded in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The file the error names.
    pub path: PathBuf,
    /// [`LoadError::kind`].
    pub kind: String,
    /// The error's one-line message (its `Display`).
    pub message: String,
    /// [`LoadError::mismatches`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<crate::error::Mismatch>,
}

impl From<&LoadError> for Refusal {
    fn from(e: &LoadError) -> Self {
        Refusal {
            path: e.path().to_path_buf(),
            kind: e.kind().to_string(),
            message: e.to_string(),
            mismatches: e.mismatches(),
        }
    }
}

impl From<Refusal> for LoadError {
    /// The refusal as a load error of its own kind ([`LoadError::Vetted`]).
    fn from(r: Refusal) -> Self {
        LoadError::Vetted {
            path: r.path,
            kind: crate::isolation::static_kind(&r.kind),
            message: r.message,
            mismatches: r.mismatches,
        }
    }
}

/// What validation made of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// It is a valid plugin.
    Valid(PluginInfo),
    /// It was refused.
    Refused(Refusal),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    stamp: FileStamp,
    /// When the file was validated, nanoseconds since the Unix epoch.
    checked_ns: i64,
    verdict: Verdict,
    /// The last recorded start of this version of the file, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    started: Option<StartRecord>,
}

/// What starting a plugin (`init`) gave, and under which settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StartRecord {
    /// [`start_fingerprint`] of the settings it was started with.
    settings: u64,
    /// Why its `init` refused to start; `None` when it started.
    refused: Option<Refusal>,
}

/// Identifies what, besides the file, decides how plugin `name` starts: its configuration values
/// (`[plugins.NAME.config]`) and whether it runs isolated. A recorded start counts only for the
/// same fingerprint.
pub fn start_fingerprint(settings: &Settings, name: &str) -> u64 {
    let config = settings.plugin_config.get(name);
    let isolated = settings.isolation.isolates(name);
    let bytes = serde_json::to_vec(&(config, isolated)).expect("JSON of plain data");
    crate::manager::rollout_hash(&bytes)
}

impl Entry {
    /// Whether the entry may describe an older content of the file with the same stamp.
    fn racy(&self) -> bool {
        let window = RACY_WINDOW.as_nanos() as i64;
        self.stamp.mtime_ns.saturating_add(window) >= self.checked_ns
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    host: String,
    entries: BTreeMap<String, Entry>,
}

/// Lookup counts of a [`MetadataCache`] since it was opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache, without opening the file.
    pub hits: u64,
    /// Lookups of files the cache had no entry for.
    pub misses: u64,
    /// Lookups whose entry no longer matched the file (or was too recent to trust).
    pub stale: u64,
    /// Files validated (`dlopen`ed): misses, stale entries, and files that cannot be cached
    /// (not a regular file, path not UTF-8, refused by the dynamic loader).
    pub inspections: u64,
    /// Plugins started (`init`) by [`Listing::scan`] because no start of their file with the
    /// same settings was recorded.
    pub starts: u64,
}

/// The plugin metadata cache (see the [module docs](self)).
#[derive(Debug)]
pub struct MetadataCache {
    /// Where it is stored; `None` for a cache that lives only in memory.
    path: Option<PathBuf>,
    file: CacheFile,
    dirty: bool,
    stats: CacheStats,
    /// Validates files without an entry in a child process ([`Self::vet_with`]); `None`:
    /// in this process.
    vetter: Option<crate::vet::Vetter>,
    /// Verdicts [`Self::validate_all`] found ahead of the lookups that use them, by canonical
    /// path, with the stamp of the file they are about.
    ahead: std::collections::HashMap<PathBuf, (FileStamp, Verdict)>,
}

impl MetadataCache {
    /// Validates every file this cache has no fresh entry for with `vetter`, in its child
    /// process, instead of opening it in this one (see [`crate::vet`]): a file whose loading
    /// crashes, exits or hangs is refused, and the refusal is remembered until the file
    /// changes, like any other.
    pub fn vet_with(&mut self, vetter: crate::vet::Vetter) {
        self.vetter = Some(vetter);
    }

    /// `$XDG_CACHE_HOME/calc/plugins.json`, else `~/.cache/calc/plugins.json`; `None` when
    /// neither variable is set.
    pub fn default_path() -> Option<PathBuf> {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
            .map(|d| d.join("calc/plugins.json"))
    }

    /// An empty cache that is never stored.
    pub fn in_memory() -> Self {
        MetadataCache {
            path: None,
            file: CacheFile {
                format: FORMAT,
                host: host_fingerprint(),
                entries: BTreeMap::new(),
            },
            dirty: false,
            stats: CacheStats::default(),
            vetter: None,
            ahead: std::collections::HashMap::new(),
        }
    }

    /// Reads the cache stored at `path`. A missing file gives an empty cache; a file that
    /// cannot be read or parsed, or was written by another build of the host, is ignored (and
    /// replaced by the next [`Self::save`]).
    pub fn open(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let mut cache = MetadataCache::in_memory();
        match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::debug!("{}: ignoring the plugin cache: {e}", path.display());
                cache.dirty = true;
            }
            Ok(bytes) => match serde_json::from_slice::<CacheFile>(&bytes) {
                Ok(file) if file.format == FORMAT && file.host == cache.file.host => {
                    cache.file = file;
                }
                Ok(file) => {
                    tracing::debug!(
                        "{}: ignoring the plugin cache: written by {:?} (format {}), this is {:?} (format {FORMAT})",
                        path.display(),
                        file.host,
                        file.format,
                        cache.file.host
                    );
                    cache.dirty = true;
                }
                Err(e) => {
                    tracing::debug!("{}: ignoring the corrupt plugin cache: {e}", path.display());
                    cache.dirty = true;
                }
            },
        }
        cache.path = Some(path);
        cache
    }

    /// Where the cache is stored, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Lookup counts since the cache was opened.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.file.entries.len()
    }

    /// Whether the cache has no entries.
    pub fn is_empty(&self) -> bool {
        self.file.entries.is_empty()
    }

    /// Whether [`Self::save`] would write anything.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// What validating the library at `path` gives: from the cache when its entry is fresh
    /// (the file is not opened), otherwise by [`loader::inspect`], recorded in the cache.
    pub fn validate(&mut self, path: &Path) -> Verdict {
        self.validate_in(path, None).0
    }

    /// As [`Self::validate`], with the stamp of the version of the file the verdict is about
    /// (`None` when the file could not be identified).
    pub fn validate_stamped(&mut self, path: &Path) -> (Verdict, Option<FileStamp>) {
        self.validate_in(path, None)
    }

    /// Vets, in one pass of the vetting child, every file of `paths` that has no fresh entry
    /// (see [`crate::vet::Vetter::vet_all`]: many files in flight at once, not one round trip
    /// each), so that the [`Self::validate`] calls that follow for these files need not wait
    /// for the child one file at a time. Does nothing without a vetter (see
    /// [`Self::vet_with`]). Counts nothing: the lookups that use the verdicts count them.
    pub fn validate_all(&mut self, paths: &[PathBuf]) {
        let Some(mut vetter) = self.vetter.take() else {
            return;
        };
        let todo: Vec<(PathBuf, FileStamp)> = paths
            .iter()
            .filter_map(|path| identify(path, None))
            .filter(|(canonical, stamp)| {
                let entry = canonical.to_str().and_then(|k| self.file.entries.get(k));
                !entry.is_some_and(|e| e.stamp == *stamp && !e.racy())
            })
            .collect();
        if todo.len() > 1 {
            let targets: Vec<PathBuf> = todo.iter().map(|(p, _)| p.clone()).collect();
            let ahead = &mut self.ahead;
            vetter.vet_all(&targets, |i, verdict| {
                let (path, stamp) = &todo[i];
                ahead.insert(path.clone(), (*stamp, verdict));
            });
        }
        self.vetter = Some(vetter);
    }

    /// As [`Self::validate`]; `canonical_dir` is the canonical form of `path`'s directory,
    /// which spares resolving every file of a directory when it is not a symbolic link.
    fn validate_in(
        &mut self,
        path: &Path,
        canonical_dir: Option<&Path>,
    ) -> (Verdict, Option<FileStamp>) {
        let Some((canonical, stamp)) = identify(path, canonical_dir) else {
            return (self.inspect(path, None), None);
        };
        let Some(key) = canonical.to_str() else {
            return (self.inspect(path, None), None);
        };
        match self.file.entries.get(key) {
            Some(e) if e.stamp == stamp && !e.racy() => {
                self.stats.hits += 1;
                return (e.verdict.clone(), Some(stamp));
            }
            Some(_) => self.stats.stale += 1,
            None => self.stats.misses += 1,
        }
        let checked_ns = ns_since_epoch(SystemTime::now());
        let verdict = self.inspect(&canonical, Some(stamp));
        // The loader's verdict depends on more than the file (search path, dependencies), and
        // a vetter that could not run says nothing about the file.
        let cacheable =
            !matches!(&verdict, Verdict::Refused(r) if r.kind == "open" || r.kind == "vetting");
        // Stat again: a file replaced while it was being validated must not be cached under
        // the old stamp.
        let unchanged = std::fs::metadata(&canonical).is_ok_and(|m| FileStamp::of(&m) == stamp);
        if cacheable && unchanged {
            self.file.entries.insert(
                key.to_string(),
                Entry {
                    stamp,
                    checked_ns,
                    verdict: verdict.clone(),
                    started: None,
                },
            );
            self.dirty = true;
        } else if self.file.entries.remove(key).is_some() {
            self.dirty = true;
        }
        (verdict, unchanged.then_some(stamp))
    }

    /// Validates the file at `path` (whose stamp is `stamp`, when known): by the verdict
    /// [`Self::validate_all`] found for it, the vetter, or the loader in this process.
    fn inspect(&mut self, path: &Path, stamp: Option<FileStamp>) -> Verdict {
        self.stats.inspections += 1;
        if let Some((found, verdict)) = self.ahead.remove(path) {
            if Some(found) == stamp {
                return verdict;
            }
        }
        match &mut self.vetter {
            Some(vetter) => vetter.vet(path),
            None => Verdict::of(loader::inspect(path)),
        }
    }

    /// The last recorded start of the plugin whose canonical path is `path`, if it was made
    /// with settings fingerprint `settings` ([`start_fingerprint`]): `Ok` when it started,
    /// the refusal when its `init` failed. `None` when no such start is recorded (or the file
    /// has no entry).
    pub fn last_start(&self, path: &Path, settings: u64) -> Option<Result<(), Refusal>> {
        let record = self.file.entries.get(path.to_str()?)?.started.as_ref()?;
        (record.settings == settings).then(|| match &record.refused {
            None => Ok(()),
            Some(refusal) => Err(refusal.clone()),
        })
    }

    /// Records how starting the plugin whose canonical path is `path` went, with settings
    /// fingerprint `settings`: started (`Ok`), or refused by its `init` (an
    /// [`LoadError::InitFailed`], also as reported by a runner). Other errors depend on more
    /// than the file and the settings and are not recorded (nor is anything for a file without
    /// an entry). Returns whether it recorded.
    pub fn record_start(
        &mut self,
        path: &Path,
        settings: u64,
        outcome: Result<(), &LoadError>,
    ) -> bool {
        let refused = match outcome {
            Ok(()) => None,
            Err(e) if e.kind() == "init_failed" => Some(Refusal::from(e)),
            Err(_) => return false,
        };
        let Some(entry) = path.to_str().and_then(|k| self.file.entries.get_mut(k)) else {
            return false;
        };
        let record = Some(StartRecord { settings, refused });
        if entry.started != record {
            entry.started = record;
            self.dirty = true;
        }
        true
    }

    /// Records the starts `manager` made (it loaded the plugins of directories this cache
    /// lists): each loaded plugin started, each `init` that failed (see
    /// [`Self::record_start`]).
    pub fn record_starts(&mut self, manager: &PluginManager) {
        let settings = manager.settings();
        for p in manager.plugins() {
            self.record_start(&p.path, start_fingerprint(settings, &p.name), Ok(()));
        }
        for f in manager.failures() {
            if let Some(name) = f.error.plugin_name() {
                let fingerprint = start_fingerprint(settings, name);
                self.record_start(&f.path, fingerprint, Err(&f.error));
            }
        }
    }

    /// Drops the entries of files directly in `canonical_dir` that are not in `seen` (files
    /// deleted since they were cached).
    fn prune_dir(&mut self, canonical_dir: &Path, seen: &HashSet<String>) {
        let before = self.file.entries.len();
        self.file
            .entries
            .retain(|k, _| Path::new(k).parent() != Some(canonical_dir) || seen.contains(k));
        self.dirty |= self.file.entries.len() != before;
    }

    /// Writes the cache to its file if anything changed since it was read: to a temporary file
    /// in the same directory, then renamed over it. Returns whether it wrote.
    pub fn save(&mut self) -> std::io::Result<bool> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        if !self.dirty {
            return Ok(false);
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let name = path
            .file_name()
            .map_or_else(|| "plugins.json".into(), |n| n.to_string_lossy());
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec(&self.file).map_err(std::io::Error::other)?;
        let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        self.dirty = false;
        Ok(true)
    }
}

/// The canonical path and stamp of `path` if it is a regular file (following symbolic links).
fn identify(path: &Path, canonical_dir: Option<&Path>) -> Option<(PathBuf, FileStamp)> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let (canonical, meta) = match (canonical_dir, path.file_name()) {
        (Some(dir), Some(name)) if !meta.file_type().is_symlink() => (dir.join(name), meta),
        _ => {
            let canonical = std::fs::canonicalize(path).ok()?;
            let meta = std::fs::metadata(&canonical).ok()?;
            (canonical, meta)
        }
    };
    meta.is_file().then(|| (canonical, FileStamp::of(&meta)))
}

/// Identifies the host build whose validation rules the entries reflect: the crate version, the
/// ABI, and the running executable's stamp (a rebuilt host may validate differently).
fn host_fingerprint() -> String {
    let exe = std::env::current_exe()
        .and_then(std::fs::metadata)
        .map(|m| FileStamp::of(&m))
        .map_or_else(
            |_| "unknown".to_string(),
            |s| format!("{}:{}:{}", s.size, s.mtime_ns, s.inode),
        );
    let abi = crate::validate::HOST_ABI;
    format!(
        "calc-host {} abi {}.{} exe {exe}",
        env!("CARGO_PKG_VERSION"),
        abi.major,
        abi.minor
    )
}

/// A file that failed, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFailure {
    /// The file (or directory).
    pub path: PathBuf,
    /// [`LoadError::kind`].
    pub kind: String,
    /// The one-line reason.
    pub error: String,
    /// The plugin's name, when it described itself before it failed
    /// ([`LoadError::plugin_name`]).
    pub plugin: Option<String>,
}

impl From<&LoadError> for ListedFailure {
    fn from(e: &LoadError) -> Self {
        ListedFailure {
            path: e.path().to_path_buf(),
            kind: e.kind().to_string(),
            error: e.to_string(),
            plugin: e.plugin_name().map(str::to_string),
        }
    }
}

/// The plugins of a set of directories as `calc plugins list` shows them: enabled and disabled
/// plugins, failures, conflicts, and which plugin serves each operation.
#[derive(Debug, Default)]
pub struct Listing {
    /// Enabled plugins, in load order.
    pub plugins: Vec<PluginInfo>,
    /// Valid plugins the settings disable.
    pub disabled: Vec<PluginInfo>,
    /// Files (and directories) that failed, in the order they were tried.
    pub failures: Vec<ListedFailure>,
    /// Operation names and symbols provided by more than one enabled plugin.
    pub conflicts: Vec<Conflict>,
    /// Operation name to the plugin that serves it.
    serving: HashMap<String, String>,
    /// What the listing knows of plugins, for [`Settings::notices`].
    known: crate::config::KnownPlugins,
}

impl Listing {
    /// The listing of what `manager` loaded (plugins initialised, so `init` failures show).
    pub fn from_manager(manager: &PluginManager) -> Listing {
        let plugins: Vec<PluginInfo> = manager.plugins().cloned().collect();
        let serving = plugins
            .iter()
            .flat_map(|p| &p.operations)
            .filter_map(|op| Some((op.name.clone(), manager.serving(&op.name)?)))
            .collect();
        Listing {
            plugins,
            disabled: manager.disabled().to_vec(),
            failures: manager
                .failures()
                .iter()
                .map(|f| ListedFailure {
                    path: f.path.clone(),
                    ..ListedFailure::from(&f.error)
                })
                .collect(),
            conflicts: manager.conflicts().to_vec(),
            serving,
            known: manager.known_plugins(),
        }
    }

    /// What the listing knows of plugins (enabled, disabled, failed, operations and who serves
    /// them), to warn about settings that name none of them ([`Settings::notices`]).
    pub fn known_plugins(&self) -> &crate::config::KnownPlugins {
        &self.known
    }

    /// The listing of `dirs` (each with whether its absence is reported), as a
    /// [`PluginManager`] with `settings` would load them (file-name order, duplicate names,
    /// version ranges, disabled plugins, provider order and conflicts), but from `cache`: files
    /// with a fresh cache entry are not opened. An enabled plugin is listed as enabled only when
    /// the cache records that this version of its file started with the same settings
    /// ([`start_fingerprint`]); otherwise it is started once, as the manager would (in process
    /// or isolated, with its configuration values), shut down again, and the outcome recorded:
    /// a plugin whose `init` fails is listed as a failure, as by [`Self::from_manager`], and is
    /// started again by the next scan (so a fixed configuration or environment shows at once).
    /// Entries of files deleted from `dirs` are dropped from the cache.
    pub fn scan(dirs: &[(PathBuf, bool)], settings: &Settings, cache: &mut MetadataCache) -> Self {
        let mut scan = Scan {
            settings,
            listing: Listing::default(),
            names: HashMap::new(),
            slots: HashMap::new(),
            loads: 0,
        };
        for (dir, report_missing) in dirs {
            if !report_missing && !dir.is_dir() {
                continue;
            }
            let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
                Ok(entries) => entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| is_library_file(p))
                    .collect(),
                Err(source) => {
                    scan.fail(&LoadError::Directory {
                        path: dir.clone(),
                        source,
                    });
                    continue;
                }
            };
            files.sort();
            let canonical_dir = std::fs::canonicalize(dir).ok();
            // The trust policy before the cache, which opens files it has no fresh entry for.
            let trusted = match canonical_dir
                .as_deref()
                .map(|d| settings.trust.check_dir(d))
            {
                Some(Err(e)) => {
                    scan.fail(&e);
                    continue;
                }
                Some(Ok(trusted)) => Some(trusted),
                None => None,
            };
            let policies: Vec<Result<(), LoadError>> = files
                .iter()
                .map(|file| match (&trusted, file.file_name()) {
                    (Some(t), Some(name)) => t.check_policy(&t.path().join(name)).map(|_| ()),
                    _ => settings.trust.check_policy(file).map(|_| ()),
                })
                .collect();
            // New files that passed the policy are vetted in one pass (pipelined).
            let admitted: Vec<PathBuf> = files
                .iter()
                .zip(&policies)
                .filter(|(_, policy)| policy.is_ok())
                .map(|(file, _)| file.clone())
                .collect();
            cache.validate_all(&admitted);
            for (file, policy) in files.iter().zip(policies) {
                if let Err(e) = policy {
                    scan.fail(&e);
                    continue;
                }
                match cache.validate_in(file, canonical_dir.as_deref()).0 {
                    Verdict::Valid(info) => scan.admit(info, cache),
                    Verdict::Refused(r) => scan.listing.failures.push(ListedFailure {
                        path: r.path,
                        kind: r.kind,
                        error: r.message,
                        plugin: None,
                    }),
                }
            }
            if let Some(canonical_dir) = &canonical_dir {
                let seen = files
                    .iter()
                    .filter_map(|f| Some(canonical_dir.join(f.file_name()?)))
                    .filter_map(|p| p.to_str().map(str::to_string))
                    .collect();
                cache.prune_dir(canonical_dir, &seen);
            }
        }
        let mut listing = scan.listing;
        let serving: Vec<(bool, String, String)> = scan
            .slots
            .into_iter()
            .filter(|(_, providers)| !providers.is_empty())
            .map(|((is_symbol, key), mut providers)| (is_symbol, key, providers.swap_remove(0).1))
            .collect();
        let names = |plugins: &[PluginInfo]| plugins.iter().map(|p| p.name.clone()).collect();
        listing.known = crate::config::KnownPlugins {
            enabled: names(&listing.plugins),
            disabled: names(&listing.disabled),
            failed: listing
                .failures
                .iter()
                .filter_map(|f| f.plugin.clone())
                .collect(),
            operations: listing
                .plugins
                .iter()
                .chain(&listing.disabled)
                .flat_map(|p| &p.operations)
                .flat_map(|op| {
                    std::iter::once(op.name.clone()).chain(op.symbol().map(str::to_string))
                })
                .collect(),
            serving: serving
                .iter()
                .map(|(_, key, plugin)| (key.clone(), plugin.clone()))
                .collect(),
        };
        listing.serving = serving
            .into_iter()
            .filter(|(is_symbol, _, _)| !is_symbol)
            .map(|(_, key, plugin)| (key, plugin))
            .collect();
        listing
    }

    /// The plugin that serves operation `name`, if an enabled plugin provides it.
    pub fn serving(&self, name: &str) -> Option<&str> {
        self.serving.get(name).map(String::as_str)
    }
}

/// One provider in a slot of [`Scan`]: rank, plugin, operation name and infix symbol.
type Listed = (u64, String, String, Option<String>);

/// State of [`Listing::scan`]: mirrors the manager's admission and provider ranking.
struct Scan<'a> {
    settings: &'a Settings,
    listing: Listing,
    /// Names of admitted (enabled or disabled) plugins, to the file they came from.
    names: HashMap<String, PathBuf>,
    /// (is symbol, key) to its providers, best first.
    slots: HashMap<(bool, String), Vec<Listed>>,
    loads: u64,
}

impl Scan<'_> {
    fn fail(&mut self, e: &LoadError) {
        self.listing.failures.push(ListedFailure::from(e));
    }

    /// Whether the enabled plugin `info` starts: from the start `cache` recorded, else by
    /// starting it now (see [`Listing::scan`]). On failure, the failure is listed.
    fn starts(&mut self, info: &PluginInfo, cache: &mut MetadataCache) -> bool {
        let fingerprint = start_fingerprint(self.settings, &info.name);
        let refusal = match cache.last_start(&info.path, fingerprint) {
            Some(Ok(())) => return true,
            // A recorded refusal is not trusted: `init` may depend on more than the file and
            // the settings, and failures are rare, so it runs again.
            Some(Err(_)) | None => {
                cache.stats.starts += 1;
                let mut manager = PluginManager::with_settings(self.settings.clone());
                let started = manager.load_file(&info.path).map(|_| ());
                cache.record_start(&info.path, fingerprint, started);
                match started {
                    Ok(()) => return true,
                    Err(e) => ListedFailure::from(e),
                }
            }
        };
        self.listing.failures.push(ListedFailure {
            plugin: Some(info.name.clone()),
            ..refusal
        });
        false
    }

    /// What `PluginManager::admit` and `try_load` do with a validated plugin, starting it if
    /// `cache` has no record that it starts.
    fn admit(&mut self, info: PluginInfo, cache: &mut MetadataCache) {
        if let Some(other) = self.names.get(&info.name) {
            let e = LoadError::DuplicatePlugin {
                path: info.path.clone(),
                name: info.name.clone(),
                other: other.clone(),
            };
            return self.fail(&e);
        }
        if let Some(requirement) = self.settings.versions.get(&info.name) {
            if !requirement.matches(&info.version) {
                let e = LoadError::VersionRequirement {
                    path: info.path.clone(),
                    plugin: info.name.clone(),
                    version: info.version.clone(),
                    requirement: requirement.clone(),
                };
                return self.fail(&e);
            }
        }
        if self.settings.disabled.contains(&info.name) {
            self.names.insert(info.name.clone(), info.path.clone());
            self.listing.disabled.push(info);
            return;
        }
        // A plugin that fails to start takes no name and no place in the load order, as in
        // the manager.
        if !self.starts(&info, cache) {
            return;
        }
        self.names.insert(info.name.clone(), info.path.clone());
        self.loads += 1;
        let load_rank = LOAD_RANKS + self.loads;
        for op in &info.operations {
            let mut keys = vec![(false, op.name.clone(), format!("operation {}", op.name))];
            if let Some(symbol) = op.symbol() {
                keys.push((true, symbol.to_string(), format!("operator {symbol}")));
            }
            let names: Vec<&str> = std::iter::once(op.name.as_str())
                .chain(op.symbol())
                .collect();
            for (is_symbol, key, what) in keys {
                let (rank, _) = self.settings.rank(&names, &info.name, load_rank);
                let slot = self.slots.entry((is_symbol, key)).or_default();
                let at = slot.partition_point(|(r, ..)| *r <= rank);
                let symbol = op.symbol().map(str::to_string);
                slot.insert(at, (rank, info.name.clone(), op.name.clone(), symbol));
                let ops: Vec<(&str, &str, Option<&str>)> = slot
                    .iter()
                    .map(|(_, plugin, name, symbol)| {
                        (plugin.as_str(), name.as_str(), symbol.as_deref())
                    })
                    .collect();
                let rollout = slot_rollout(self.settings, &ops).map(|(c, percent, _)| (c, percent));
                let ranked: Vec<(&str, u64)> = slot
                    .iter()
                    .map(|(rank, plugin, ..)| (plugin.as_str(), *rank))
                    .collect();
                let conflicts = slot_conflicts(&what, &ranked, rollout);
                replace_conflicts(&mut self.listing.conflicts, &what, conflicts);
            }
        }
        self.listing.plugins.push(info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_round_trips_through_json() {
        let info = PluginInfo {
            name: "p".into(),
            version: "1.2.3-rc.1".parse().unwrap(),
            author: String::new(),
            description: "d".into(),
            path: "/x/libp.so".into(),
            abi_version: "1.1".into(),
            sdk_version: "1.0.0".parse().unwrap(),
            api_requirement: "^1, <1.5".parse().unwrap(),
            operations: vec![
                crate::OperationInfo {
                    name: "f".into(),
                    description: String::new(),
                    kind: crate::OperationKind::Function {
                        min_arity: 1,
                        max_arity: None,
                    },
                },
                crate::OperationInfo {
                    name: "plus".into(),
                    description: "+".into(),
                    kind: crate::OperationKind::Infix {
                        symbol: "+".into(),
                        precedence: 10,
                        right_associative: true,
                    },
                },
            ],
        };
        for verdict in [
            Verdict::Valid(info),
            Verdict::Refused(Refusal {
                path: "/x".into(),
                kind: "bad_magic".into(),
                message: "m".into(),
                mismatches: vec![crate::error::Mismatch {
                    field: "magic".into(),
                    expected: "a".into(),
                    found: "b".into(),
                }],
            }),
        ] {
            let json = serde_json::to_string(&verdict).unwrap();
            assert_eq!(serde_json::from_str::<Verdict>(&json).unwrap(), verdict);
        }
    }

    #[test]
    fn a_recent_modification_is_not_trusted() {
        let entry = |mtime_ns: i64, checked_ns: i64| Entry {
            stamp: FileStamp {
                size: 1,
                mtime_ns,
                inode: 1,
            },
            checked_ns,
            verdict: Verdict::Refused(Refusal {
                path: "/x".into(),
                kind: "k".into(),
                message: "m".into(),
                mismatches: Vec::new(),
            }),
            started: None,
        };
        assert!(entry(10, 10).racy());
        assert!(entry(10, 10 + RACY_WINDOW.as_nanos() as i64).racy());
        assert!(!entry(10, 11 + RACY_WINDOW.as_nanos() as i64).racy());
    }
}
