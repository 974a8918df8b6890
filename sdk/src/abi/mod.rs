//! The C ABI of calc plugins, version 1.
//!
//! Every type here is `#[repr(C)]` (or a fixed-width integer) and is published as
//! `include/calc_plugin.h` by cbindgen (`cargo xtask headers`); nothing in this module has logic.
//! The rules for evolving these types are in `docs/ABI.md`: structs are append-only, new fields
//! come with a minor version bump, and `struct_size` tells a reader which fields exist.
//!
//! Memory and threading conventions used in the field docs:
//! - *owned by the plugin*: the plugin allocates it and keeps it valid and unchanged while the
//!   library is loaded; the host copies what it keeps and never frees it.
//! - *owned by the host*: the host allocates it and keeps it valid for the stated time; the plugin
//!   never frees it.
//! - `[any-thread]`: may be called from any thread, concurrently with other `[any-thread]` calls.
//! - `[main-thread]`: called by the host from one thread at a time, never concurrently with any
//!   other call into the same plugin.
#![allow(non_camel_case_types)]

pub mod entry;
pub mod host_api;
pub mod interface;
pub mod plugin;
pub mod status;
pub mod version;

pub use entry::*;
pub use host_api::*;
pub use interface::*;
pub use plugin::*;
pub use status::*;
pub use version::*;
