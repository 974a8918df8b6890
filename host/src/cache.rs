//! A cache of plugin metadata, so that listing plugins does not have to open them.
//!
//! Each entry is keyed by a library file's canonical path, size, modification time (ns) and
//! inode, and holds what validation made of that file: its [`PluginInfo`](crate::info::PluginInfo), or the refusal; and
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
//! `crate::listing::Listing` is what `calc plugins list` prints, built from this cache or from
//! a manager.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::error::LoadError;
use crate::loader;

/// Version of the cache file's layout.
const FORMAT: u32 = 1;

pub use crate::verdict::{FileStamp, Refusal, Verdict, RACY_WINDOW};
pub(crate) use calc_runtime::files::ns_since_epoch;

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
    crate::slots::rollout_hash(&bytes)
}

impl Entry {
    /// Whether the entry may describe an older content of the file with the same stamp.
    fn racy(&self) -> bool {
        self.stamp.racy_at(self.checked_ns)
    }

    /// Whether the entry describes the version `stamp` of its file, and may be trusted to.
    fn fresh_for(&self, stamp: FileStamp) -> bool {
        self.stamp == stamp && !self.racy()
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
    /// Plugins started (`init`) by `Listing::scan` because no start of their file with the
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
    pub(crate) stats: CacheStats,
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
    /// `canonical_dir`, when every path is directly in one directory, is that directory's
    /// canonical form (as for the lookups that follow): it spares resolving each path.
    pub fn validate_all(&mut self, paths: &[PathBuf], canonical_dir: Option<&Path>) {
        let Some(mut vetter) = self.vetter.take() else {
            return;
        };
        let todo: Vec<(PathBuf, FileStamp)> = paths
            .iter()
            .filter_map(|path| identify(path, canonical_dir))
            .filter(|(canonical, stamp)| {
                let entry = canonical.to_str().and_then(|k| self.file.entries.get(k));
                !entry.is_some_and(|e| e.fresh_for(*stamp))
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
    pub(crate) fn validate_in(
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
            Some(e) if e.fresh_for(stamp) => {
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

    /// Drops the entries of files directly in `canonical_dir` that are not in `seen` (files
    /// deleted since they were cached).
    pub(crate) fn prune_dir(&mut self, canonical_dir: &Path, seen: &HashSet<String>) {
        let before = self.file.entries.len();
        // Compared as text (the keys are canonical paths): not component by component.
        let in_dir = |key: &str| {
            let Some(dir) = canonical_dir.to_str() else {
                return false;
            };
            let name = match key.strip_prefix(dir) {
                Some(rest) if dir.ends_with('/') => Some(rest),
                Some(rest) => rest.strip_prefix('/'),
                None => None,
            };
            name.is_some_and(|name| !name.is_empty() && !name.contains('/'))
        };
        self.file
            .entries
            .retain(|k, _| !in_dir(k) || seen.contains(k));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::PluginInfo;

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
            interfaces: vec![crate::InterfaceInfo {
                id: "acme.fmt".into(),
                major: 1,
                minor: 2,
                vtable_size: 24,
                bytes: true,
            }],
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

    /// An entry for a refused file modified at `mtime_ns` and checked at `checked_ns`.
    fn refused_entry(mtime_ns: i64, checked_ns: i64) -> Entry {
        Entry {
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
        }
    }

    #[test]
    fn pruning_a_directory_drops_only_its_own_unseen_files() {
        let keys = [
            "/p/a.so",     // in the directory, seen: kept
            "/p/gone.so",  // in the directory, not seen: dropped
            "/p/sub/b.so", // in a subdirectory: kept
            "/p2/c.so",    // in a directory whose name starts alike: kept
            "/top.so",     // in the root: kept here, dropped when the root is pruned
        ];
        let mut cache = MetadataCache::in_memory();
        for k in keys {
            cache
                .file
                .entries
                .insert(k.to_string(), refused_entry(1, 1));
        }
        let seen = HashSet::from(["/p/a.so".to_string()]);
        cache.prune_dir(Path::new("/p"), &seen);
        let left: Vec<&str> = cache.file.entries.keys().map(String::as_str).collect();
        assert_eq!(left, ["/p/a.so", "/p/sub/b.so", "/p2/c.so", "/top.so"]);
        cache.prune_dir(Path::new("/"), &seen);
        let left: Vec<&str> = cache.file.entries.keys().map(String::as_str).collect();
        assert_eq!(left, ["/p/a.so", "/p/sub/b.so", "/p2/c.so"]);
    }

    #[test]
    fn a_recent_modification_is_not_trusted() {
        assert!(refused_entry(10, 10).racy());
        assert!(refused_entry(10, 10 + RACY_WINDOW.as_nanos() as i64).racy());
        assert!(!refused_entry(10, 11 + RACY_WINDOW.as_nanos() as i64).racy());
    }
}
