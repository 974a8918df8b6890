//! What validating a plugin file gave ([`Verdict`]: its metadata, or the [`Refusal`]), and
//! which version of the file it is about ([`FileStamp`]): shared by vetting, the manager's
//! memory of verdicts and the metadata cache.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::LoadError;
use crate::info::PluginInfo;

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
    pub(crate) fn racy_at(&self, checked_ns: i64) -> bool {
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
            kind: crate::error::static_kind(&r.kind),
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

impl Verdict {
    /// The verdict of [`crate::loader::inspect`]'s result.
    pub fn of(result: Result<PluginInfo, LoadError>) -> Verdict {
        match result {
            Ok(info) => Verdict::Valid(info),
            Err(e) => Verdict::Refused(Refusal::from(&e)),
        }
    }
}
