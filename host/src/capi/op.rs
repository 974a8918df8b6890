//! `calc_op_t`: an operation resolved once, for fast repeated calls.

use std::ffi::c_char;

use calc_sdk::abi::calc_status_t;

use super::error::CALC_STATUS_NOT_FOUND;
use super::ffi::{ffi_status, handle, out, slice_arg, str_arg, ApiError};
use super::host::calc_host_t;
use crate::manager::LiveOp;

/// An operation resolved by name: calling it does no name lookup, lock or allocation, and it
/// follows hot reloads (each call goes to the version serving at that moment).
///
/// Opaque; wraps the Rust `calc_host::LiveOp`. It keeps the plugin version it last saw loaded,
/// even after the host it came from is freed, until `calc_op_free`. `calc_op_call` may run concurrently from any
/// threads; the handle may be moved between threads.
pub struct calc_op_t {
    op: LiveOp,
}

/// Resolves `operation` (a name, or an infix symbol) in `host` and writes a new handle to
/// `*out_op`; free it with `calc_op_free`. Returns `CALC_STATUS_NOT_FOUND` when no plugin
/// provides it; `*out_op` is then unchanged. `[thread-safe]`
///
/// # Safety
/// `host` must be NULL or live; `operation` NULL or NUL-terminated; `out_op` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn calc_op_new(
    host: *const calc_host_t,
    operation: *const c_char,
    out_op: *mut *mut calc_op_t,
) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let (host, name, out_op) = unsafe {
            (
                handle(host, "host")?,
                str_arg(operation, "operation")?,
                out(out_op, "out_op")?,
            )
        };
        let op = host.manager().live_operation(name).ok_or_else(|| {
            ApiError::new(
                CALC_STATUS_NOT_FOUND,
                format!(
                    "unknown operation '{}' (no loaded plugin provides it)",
                    name.escape_debug()
                ),
            )
        })?;
        out_op.write(Box::into_raw(Box::new(calc_op_t { op })));
        Ok(())
    })
}

/// Calls the operation with `arg_count` operands and writes the result to `*out_result`.
/// Errors as for `calc_host_call`. `[thread-safe]`
///
/// # Safety
/// `op` must be NULL or live; `args` valid for `arg_count` values (may be NULL when 0);
/// `out_result` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn calc_op_call(
    op: *const calc_op_t,
    args: *const f64,
    arg_count: usize,
    out_result: *mut f64,
) -> calc_status_t {
    // SAFETY: forwarded contract.
    ffi_status(|| unsafe { op_call(op, args, arg_count, out_result) })
}

/// The body of `calc_op_call` (and `calc_op_call_err`).
///
/// # Safety
/// As for `calc_op_call`.
pub(super) unsafe fn op_call(
    op: *const calc_op_t,
    args: *const f64,
    arg_count: usize,
    out_result: *mut f64,
) -> Result<(), ApiError> {
    // SAFETY: forwarded contract.
    let (op, args, out_result) = unsafe {
        (
            handle(op, "op")?,
            slice_arg(args, arg_count, "args")?,
            out(out_result, "out_result")?,
        )
    };
    let value = op
        .op
        .call(args)
        .map_err(|e| ApiError::new(e.status.code(), e.to_string()))?;
    out_result.write(value);
    Ok(())
}

/// Frees a handle from `calc_op_new` (unloading its plugin if nothing else uses it). NULL does
/// nothing; freeing twice is undefined. `[exclusive]`
///
/// # Safety
/// `op` must be NULL or a handle from `calc_op_new` that is not used again.
#[no_mangle]
pub unsafe extern "C" fn calc_op_free(op: *mut calc_op_t) {
    if op.is_null() {
        return;
    }
    super::ffi::ffi_value((), || {
        // SAFETY: the unique owner per the contract, created by `Box::into_raw`.
        drop(unsafe { Box::from_raw(op) });
    });
}
