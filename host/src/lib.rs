//! The calc plugin host.
//!
//! - [`loader`]: loads one plugin file (the only module that touches plugin memory).
//! - `validate`: the checks every descriptor must pass before the plugin runs.
//! - [`manager`]: loads directories, tracks plugins and failures, resolves operations.
//! - [`expr`]: parses and evaluates expressions over the loaded operations.
//! - [`reload`]: watches plugin directories and applies their changes (hot reload).
//! - [`cache`]: caches validated plugin metadata, so that listing plugins need not open them.
//! - [`isolation`]: runs plugins in child processes (`calc-plugin-runner`) that may crash or hang.
//! - [`trust`]: the trust policy every plugin file passes before it is opened (permissions,
//!   lock file of digests, signatures).
//! - [`interface`]: handles to the application-defined interfaces plugins implement (ABI 1.4).
//! - [`deadline`]: cooperative per-thread deadlines that long-running plugins poll (ABI 1.3).
//!
//! ```no_run
//! let mut plugins = calc_host::PluginManager::new();
//! let _ = plugins.load_dir(std::path::Path::new("target/debug/plugins"));
//! for failure in plugins.failures() {
//!     eprintln!("skipped {}", failure.error);
//! }
//! assert_eq!(plugins.eval("2 * (3 + 4)").unwrap(), 14.0);
//! let add = plugins.operation("add").unwrap();
//! assert_eq!(add.call(&[10.0, 5.0]).unwrap(), 15.0);
//! ```
#![deny(missing_docs)]

// The runtime's modules, where this crate's users have always found them.
pub use calc_runtime::{deadline, events, trust};
// The runtime's modules this crate uses everywhere.
use calc_runtime::{elf, files, memory, rcu, signals};

pub mod cache;
/// The C API (`include/calc_host.h`, built as `libcalc_host` by `calc-host-capi`): its
/// documentation and its compatibility promise are the header's, not this crate's.
#[doc(hidden)]
pub mod capi;
pub mod config;
pub mod conformance;
pub mod error;
pub mod expr;
pub mod info;
pub mod interface;
pub mod isolation;
mod limit;
pub mod listing;
pub mod loader;
pub mod manager;
pub mod reload;
mod services;
pub mod slots;
pub(crate) mod validate;
pub(crate) mod verdict;
pub mod vet;

pub use error::{CallError, CallErrorDetails, EvalError, LoadError};
pub use info::{InterfaceInfo, OperationInfo, OperationKind, PluginInfo};
pub use interface::{
    HostInterface, InterfaceError, InterfaceHandle, InterfaceSlot, LiveInterface, PinnedInterface,
};
pub use loader::{BinaryOp, OpHandle};
pub use manager::{Conflict, LiveOp, LoadFailure, PinnedLiveOp, PluginManager};
