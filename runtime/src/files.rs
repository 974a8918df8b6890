//! Plugin files: which files of a directory are shared libraries, in load order, and which
//! version of a file a result is about ([`FileStamp`]). The bottom layer: it imports nothing.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The shared libraries directly inside `dir`, sorted by path (the load order).
pub fn library_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_library_file(p))
        .collect();
    files.sort();
    Ok(files)
}

/// Whether `path` has the platform's shared-library file extension.
pub fn is_library_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == std::env::consts::DLL_EXTENSION)
}

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
    /// Whether a validation made at `checked_ns` (ns since the epoch) may describe an older
    /// content of the file with this same stamp: one within [`RACY_WINDOW`] of the file's
    /// modification (timestamps are coarser than a nanosecond).
    pub fn racy_at(&self, checked_ns: i64) -> bool {
        let window = i64::try_from(RACY_WINDOW.as_nanos()).unwrap_or(i64::MAX);
        self.mtime_ns.saturating_add(window) >= checked_ns
    }

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

/// Nanoseconds from the Unix epoch to `t` (negative before it), saturating.
pub fn ns_since_epoch(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}
