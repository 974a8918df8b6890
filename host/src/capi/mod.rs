//! The C API of the host, shipped as `libcalc_host` (shared and static) and described by
//! `include/calc_host.h` (generated from this module by cbindgen).
//!
//! Conventions, stated once here and in the header:
//! - Every fallible function returns a `calc_status_t`: `CALC_STATUS_OK` (0), a status an
//!   operation reported (1-99, see `calc_plugin.h`), or a host status (100-199, below). Results
//!   are written through `out_*` parameters only on success.
//! - After every call that returns a status, `calc_last_error_message()` describes it (empty on
//!   success) until the next such call on the same thread: e.g. the file and the reason of a
//!   failed load, or the column of a parse error. Each such call `NAME` also has a `NAME_err`
//!   twin that hands the failure to the caller as a `calc_error_t` it frees (see `err`), for
//!   callers whose calls may run on different threads (Go).
//! - Handles are opaque, created by `_new` and destroyed by `_free`. `_free(NULL)` does nothing;
//!   freeing twice is undefined, so set the pointer to NULL after freeing: every function given a
//!   NULL handle returns `CALC_STATUS_NULL_ARGUMENT` (or NULL / 0) instead of crashing.
//! - No panic crosses into C: a bug inside the library returns `CALC_STATUS_INTERNAL`.
//! - Strings are NUL-terminated UTF-8. Strings and structs the library returns are owned by it;
//!   each function says how long they stay valid.

#![allow(non_camel_case_types)]

mod err;
mod error;
mod expr;
mod ffi;
mod host;
mod iface;
mod op;

pub use err::*;
pub use error::*;
pub use expr::*;
pub use host::*;
pub use iface::*;
pub use op::*;
