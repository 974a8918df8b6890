//! The interface-agnostic plugin runtime under calc.
//!
//! Everything here serves any plugin interface, not only the calculator's: nothing in this
//! crate knows what an operation is. The calculator interface (`calc-host`) is built on it.
//!
//! - [`files`]: which files of a directory are plugins, and which version of a file a result
//!   is about.
//! - [`trust`]: the trust policy every plugin file passes before it is opened (permissions,
//!   lock file of digests, signatures).
//! - [`elf`]: what a plugin file's ELF headers say without running any of it.
//! - [`memory`]: reading plugin memory without trusting the plugin's pointers.
//! - [`error`]: why a plugin file was refused.
//! - [`rcu`]: the read-copy-update cell behind lock-free calls during hot reload.
//! - [`deadline`]: cooperative per-thread deadlines that long-running plugins poll.
//! - [`events`]: what a host reports as plugins come and go.
//! - [`process`]: the child processes plugins run in: system calls and memory limits.
//! - [`signals`]: names of the signals that end plugin processes.
#![deny(missing_docs)]

pub mod deadline;
pub mod elf;
pub mod error;
pub mod events;
pub mod files;
pub mod memory;
pub mod process;
pub mod rcu;
pub mod signals;
pub mod trust;

pub use error::LoadError;
