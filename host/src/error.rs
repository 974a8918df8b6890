//! Errors of the host: why a plugin was refused ([`LoadError`], from the runtime), why a call
//! failed, why an expression failed.
//!
//! Every `Display` is one line that names the file (for load errors) or the operation, and the
//! reason; the structured fields carry the details.

use std::path::PathBuf;

use calc_sdk::Status;

pub use calc_runtime::error::{LoadError, Mismatch};

/// An operation returned an error. Displayed as `op (plugin p): message`, or `op: message`
/// when no plugin serves the operation any more. Read the details through `Deref`
/// (`error.status`, `error.message`, ...).
///
/// The details are boxed so that `Result<f64, CallError>` is two words: the success path of a
/// call returns in registers instead of through memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError(Box<CallErrorDetails>);

/// What a [`CallError`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallErrorDetails {
    /// The operation's name.
    pub operation: String,
    /// The plugin that provides it.
    pub plugin: String,
    /// The plugin's file.
    pub path: PathBuf,
    /// The failure kind.
    pub status: Status,
    /// The plugin's message, or the status description when it wrote none.
    pub message: String,
}

impl CallError {
    /// An error with these details.
    pub fn new(details: CallErrorDetails) -> Self {
        CallError(Box::new(details))
    }

    /// The details, by value.
    pub fn into_details(self) -> CallErrorDetails {
        *self.0
    }
}

impl std::ops::Deref for CallError {
    type Target = CallErrorDetails;
    fn deref(&self) -> &CallErrorDetails {
        &self.0
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.plugin.is_empty() {
            write!(f, "{}: {}", self.operation, self.message)
        } else {
            write!(
                f,
                "{} (plugin {}): {}",
                self.operation, self.plugin, self.message
            )
        }
    }
}

impl std::error::Error for CallError {}

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// The expression is malformed, or names an operator or function no plugin provides.
    #[error("{message} at column {column}")]
    Parse {
        /// What is wrong.
        message: String,
        /// 1-based column (in characters) where it was found.
        column: usize,
    },
    /// An operation failed while evaluating.
    #[error(transparent)]
    Call(#[from] CallError),
}
