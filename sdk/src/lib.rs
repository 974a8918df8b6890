//! The calc plugin SDK.
//!
//! Two layers:
//! - [`abi`]: the `#[repr(C)]` types of the plugin ABI, published unchanged as
//!   `include/calc_plugin.h`. C and C++ plugins use that header; the host uses these types.
//! - The safe layer for Rust plugins: implement [`Plugin`] and call [`export_plugin!`]. The macro
//!   exports `plugin_entry`, fills the descriptor, converts [`CalcError`]s into status codes and
//!   messages, and catches every panic so none unwinds into the host.
//!
//! ```
//! use calc_sdk::{export_plugin, Associativity, CalcError, Host, Operation, Plugin};
//!
//! pub struct Mul;
//!
//! impl Plugin for Mul {
//!     const NAME: &'static str = "mul";
//!     const VERSION: &'static str = "1.0.0";
//!     const OPERATIONS: &'static [Operation<Self>] = &[Operation::infix(
//!         "mul", "*", 20, Associativity::Left, "product of two numbers",
//!         |_, a, b| Ok(a * b),
//!     )];
//!     fn init(_host: &Host) -> Result<Self, CalcError> {
//!         Ok(Mul)
//!     }
//! }
//!
//! export_plugin!(Mul);
//! ```
#![deny(missing_docs)]

pub mod abi;
mod error;
#[doc(hidden)]
pub mod export;
mod host;
pub mod interface;
mod plugin;
mod version;

pub use error::{CalcError, Status};
pub use host::{Host, LogLevel, OfferedInterface};
pub use interface::Interface;
pub use plugin::{Associativity, Operation, OperationKind, Plugin};

/// The version of this SDK, which is also the version of the calc API it implements
/// (`CALC_SDK_VERSION` in the C header).
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The host API requirement a plugin built with this SDK declares unless it says otherwise:
/// any host with the same major and at least this minor (`CALC_API_REQUIREMENT_DEFAULT`).
pub const API_REQUIREMENT_DEFAULT: &str = concat!(
    "^",
    env!("CARGO_PKG_VERSION_MAJOR"),
    ".",
    env!("CARGO_PKG_VERSION_MINOR")
);
