//! What validating a plugin file gave ([`Verdict`]: its metadata, or the [`Refusal`]), and
//! which version of the file it is about ([`FileStamp`]): shared by vetting, the manager's
//! memory of verdicts and the metadata cache.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::LoadError;
use crate::info::PluginInfo;

pub use calc_runtime::files::{FileStamp, RACY_WINDOW};

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
            kind: calc_runtime::error::static_kind(&r.kind),
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
