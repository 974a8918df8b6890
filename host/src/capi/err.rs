//! Every fallible call again, with its failure as an object the caller owns (`calc_error_t`)
//! instead of only this thread's last error: for callers that may run two calls on different
//! OS threads (a goroutine moves between threads between two cgo calls, so the message
//! `calc_last_error_message` returns may be another call's, or lost). Each `NAME_err` takes the
//! arguments of `NAME` and one more, `calc_error_t **out_error`: NULL after success; after a
//! failure a new error holding the status and the message, which the caller frees with
//! `calc_error_free`. Status, thread rules and everything else are `NAME`'s; the plain
//! functions are unchanged. An `_err` call may leave this thread's last error as it was: read
//! the error object instead. Since calc_host 1.4.

use std::ffi::{c_char, c_int, c_void, CString};

use calc_sdk::abi::{calc_bytes_write_fn, calc_status_t, CALC_STATUS_OK};

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::error::last_error_message;
use super::expr::*;
use super::ffi::ApiError;
use super::host::*;
use super::iface::*;
use super::op::*;
use super::op::{op_call, op_call_batch};

/// A failed call's status and message, owned by the caller: from an `_err` function, freed
/// with `calc_error_free`. Opaque. Its accessors may run on any thread; the error may be moved
/// between threads. Since calc_host 1.4.
pub struct calc_error_t {
    status: calc_status_t,
    message: CString,
}

/// The status of the failed call (never `CALC_STATUS_OK`); `CALC_STATUS_OK` for NULL.
/// `[thread-safe]` Since calc_host 1.4.
///
/// # Safety
/// `error` must be NULL or an error from an `_err` function, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn calc_error_status(error: *const calc_error_t) -> calc_status_t {
    // SAFETY: per the contract, NULL or live.
    unsafe { error.as_ref() }.map_or(CALC_STATUS_OK, |e| e.status)
}

/// The failure in one line (the file and reason of a failed load, the column of a parse
/// error, the operation and plugin of a failed call); "" for NULL. Owned by the error, valid
/// until `calc_error_free`. `[thread-safe]` Since calc_host 1.4.
///
/// # Safety
/// `error` must be NULL or an error from an `_err` function, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn calc_error_message(error: *const calc_error_t) -> *const c_char {
    // SAFETY: per the contract, NULL or live.
    unsafe { error.as_ref() }.map_or(c"".as_ptr(), |e| e.message.as_ptr())
}

/// Frees an error. NULL does nothing; freeing twice is undefined. `[exclusive]` Since
/// calc_host 1.4.
///
/// # Safety
/// `error` must be NULL or an error from an `_err` function that is not used again.
#[no_mangle]
pub unsafe extern "C" fn calc_error_free(error: *mut calc_error_t) {
    if !error.is_null() {
        // SAFETY: the unique owner per the contract, created by `Box::into_raw`.
        drop(unsafe { Box::from_raw(error) });
    }
}

/// Runs `body` (the body of a plain function of the C API) and hands its failure to the
/// caller as a new `calc_error_t` in `*out_error`, leaving this thread's last error alone.
///
/// # Safety
/// `out_error` must be NULL or valid for writing a pointer.
unsafe fn into_error(
    out_error: *mut *mut calc_error_t,
    body: impl FnOnce() -> Result<(), ApiError>,
) -> calc_status_t {
    let result = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| Err(ApiError::internal()));
    let (status, error) = match result {
        Ok(()) => (CALC_STATUS_OK, std::ptr::null_mut()),
        Err(e) => (
            e.code,
            Box::into_raw(Box::new(calc_error_t {
                status: e.code,
                message: CString::new(e.message.replace('\0', " ")).unwrap_or_default(),
            })),
        ),
    };
    if out_error.is_null() {
        // SAFETY: created just above by `Box::into_raw`, or NULL.
        unsafe { calc_error_free(error) };
    } else {
        // SAFETY: per the contract, writable.
        unsafe { out_error.write(error) };
    }
    status
}

/// Runs `call` (a plain function of the C API, which reports through this thread's last
/// error) and hands its failure to the caller as a new `calc_error_t` in `*out_error`: read
/// on the same OS thread, within the same C call, so it is this call's.
///
/// # Safety
/// `out_error` must be NULL or valid for writing a pointer.
unsafe fn with_error(
    out_error: *mut *mut calc_error_t,
    call: impl FnOnce() -> calc_status_t,
) -> calc_status_t {
    let status = call();
    if !out_error.is_null() {
        let error = if status == CALC_STATUS_OK {
            std::ptr::null_mut()
        } else {
            Box::into_raw(Box::new(calc_error_t {
                status,
                message: last_error_message(),
            }))
        };
        // SAFETY: per the contract, writable.
        unsafe { out_error.write(error) };
    }
    status
}

/// `calc_host_new`, with its failure in `*out_error` (see `calc_error_t`). `[thread-safe]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_host_new`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_host_new_err(
    out_host: *mut *mut calc_host_t,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe { with_error(out_error, || calc_host_new(out_host)) }
}

/// `calc_host_set_plugin_config`, with its failure in `*out_error` (see `calc_error_t`). `[exclusive]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_host_set_plugin_config`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_host_set_plugin_config_err(
    host: *mut calc_host_t,
    plugin: *const c_char,
    key: *const c_char,
    value: *const c_char,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe {
        with_error(out_error, || {
            calc_host_set_plugin_config(host, plugin, key, value)
        })
    }
}

/// `calc_host_load_config`, with its failure in `*out_error` (see `calc_error_t`). `[exclusive]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_host_load_config`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_host_load_config_err(
    host: *mut calc_host_t,
    path: *const c_char,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe { with_error(out_error, || calc_host_load_config(host, path)) }
}

/// `calc_host_load_file`, with its failure in `*out_error` (see `calc_error_t`). `[exclusive]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_host_load_file`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_host_load_file_err(
    host: *mut calc_host_t,
    path: *const c_char,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe { with_error(out_error, || calc_host_load_file(host, path)) }
}

/// `calc_host_load_dir`, with its failure in `*out_error` (see `calc_error_t`). `[exclusive]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_host_load_dir`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_host_load_dir_err(
    host: *mut calc_host_t,
    dir: *const c_char,
    out_loaded: *mut usize,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe { with_error(out_error, || calc_host_load_dir(host, dir, out_loaded)) }
}

/// `calc_host_call`, with its failure in `*out_error` (see `calc_error_t`). `[thread-safe]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_host_call`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_host_call_err(
    host: *const calc_host_t,
    operation: *const c_char,
    args: *const f64,
    arg_count: usize,
    out_result: *mut f64,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe {
        with_error(out_error, || {
            calc_host_call(host, operation, args, arg_count, out_result)
        })
    }
}

/// `calc_host_eval`, with its failure in `*out_error` (see `calc_error_t`). `[thread-safe]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_host_eval`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_host_eval_err(
    host: *const calc_host_t,
    expression: *const c_char,
    out_result: *mut f64,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe { with_error(out_error, || calc_host_eval(host, expression, out_result)) }
}

/// `calc_host_enable_hot_reload`, with its failure in `*out_error` (see `calc_error_t`). `[exclusive]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_host_enable_hot_reload`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_host_enable_hot_reload_err(
    host: *mut calc_host_t,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe { with_error(out_error, || calc_host_enable_hot_reload(host)) }
}

/// `calc_host_reload_file`, with its failure in `*out_error` (see `calc_error_t`). `[exclusive]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_host_reload_file`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_host_reload_file_err(
    host: *mut calc_host_t,
    path: *const c_char,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe { with_error(out_error, || calc_host_reload_file(host, path)) }
}

/// `calc_host_remove_file`, with its failure in `*out_error` (see `calc_error_t`). `[exclusive]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_host_remove_file`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_host_remove_file_err(
    host: *mut calc_host_t,
    path: *const c_char,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe { with_error(out_error, || calc_host_remove_file(host, path)) }
}

/// `calc_host_watch`, with its failure in `*out_error` (see `calc_error_t`). `[exclusive]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_host_watch`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_host_watch_err(
    host: *mut calc_host_t,
    enable: c_int,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe { with_error(out_error, || calc_host_watch(host, enable)) }
}

/// `calc_host_poll_changes`, with its failure in `*out_error` (see `calc_error_t`). `[exclusive]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_host_poll_changes`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_host_poll_changes_err(
    host: *mut calc_host_t,
    out_applied: *mut usize,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe { with_error(out_error, || calc_host_poll_changes(host, out_applied)) }
}

/// `calc_op_new`, with its failure in `*out_error` (see `calc_error_t`). `[thread-safe]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_op_new`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_op_new_err(
    host: *const calc_host_t,
    operation: *const c_char,
    out_op: *mut *mut calc_op_t,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe { with_error(out_error, || calc_op_new(host, operation, out_op)) }
}

/// `calc_op_call`, with its failure in `*out_error` (see `calc_error_t`). `[thread-safe]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_op_call`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_op_call_err(
    op: *const calc_op_t,
    args: *const f64,
    arg_count: usize,
    out_result: *mut f64,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // The hot path: straight to the error object, without the thread-local last error.
    // SAFETY: forwarded contracts.
    unsafe { into_error(out_error, || op_call(op, args, arg_count, out_result)) }
}

/// `calc_op_call_batch`, with its failure in `*out_error` (see `calc_error_t`).
/// `[thread-safe]` Since calc_host 1.4.
///
/// # Safety
/// As for `calc_op_call_batch`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_op_call_batch_err(
    op: *const calc_op_t,
    columns: *const *const f64,
    column_count: usize,
    rows: usize,
    out: *mut f64,
    out_failed_row: *mut usize,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // A batch path: straight to the error object, as `calc_op_call_err` does.
    // SAFETY: forwarded contracts.
    unsafe {
        into_error(out_error, || {
            op_call_batch(op, columns, column_count, rows, out, out_failed_row)
        })
    }
}

/// `calc_expr_new`, with its failure in `*out_error` (see `calc_error_t`). `[thread-safe]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_expr_new`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_expr_new_err(
    host: *const calc_host_t,
    expression: *const c_char,
    variables: *const *const c_char,
    variable_count: usize,
    out_expr: *mut *mut calc_expr_t,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe {
        with_error(out_error, || {
            calc_expr_new(host, expression, variables, variable_count, out_expr)
        })
    }
}

/// `calc_expr_eval`, with its failure in `*out_error` (see `calc_error_t`). `[thread-safe]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_expr_eval`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_expr_eval_err(
    expr: *const calc_expr_t,
    columns: *const *const f64,
    rows: usize,
    out: *mut f64,
    out_failed_row: *mut usize,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe {
        with_error(out_error, || {
            calc_expr_eval(expr, columns, rows, out, out_failed_row)
        })
    }
}

/// `calc_iface_new`, with its failure in `*out_error` (see `calc_error_t`). `[thread-safe]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_iface_new`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_iface_new_err(
    host: *const calc_host_t,
    id: *const c_char,
    major: u16,
    index: usize,
    out_iface: *mut *mut calc_iface_t,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe {
        with_error(out_error, || {
            calc_iface_new(host, id, major, index, out_iface)
        })
    }
}

/// `calc_iface_call_bytes`, with its failure in `*out_error` (see `calc_error_t`). `[thread-safe]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_iface_call_bytes`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_iface_call_bytes_err(
    iface: *const calc_iface_t,
    slot: usize,
    input: *const c_void,
    input_len: usize,
    write: calc_bytes_write_fn,
    writer: *mut c_void,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe {
        with_error(out_error, || {
            calc_iface_call_bytes(iface, slot, input, input_len, write, writer)
        })
    }
}

/// `calc_host_interface_call_bytes`, with its failure in `*out_error` (see `calc_error_t`). `[thread-safe]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_host_interface_call_bytes`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_host_interface_call_bytes_err(
    host: *const calc_host_t,
    id: *const c_char,
    major: u16,
    slot: usize,
    key: *const c_void,
    key_len: usize,
    input: *const c_void,
    input_len: usize,
    write: calc_bytes_write_fn,
    writer: *mut c_void,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe {
        with_error(out_error, || {
            calc_host_interface_call_bytes(
                host, id, major, slot, key, key_len, input, input_len, write, writer,
            )
        })
    }
}

/// `calc_host_offer_interface`, with its failure in `*out_error` (see `calc_error_t`). `[exclusive]` Since
/// calc_host 1.4.
///
/// # Safety
/// As for `calc_host_offer_interface`; `out_error` NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_host_offer_interface_err(
    host: *mut calc_host_t,
    id: *const c_char,
    major: u16,
    minor: u16,
    vtable: *const c_void,
    vtable_size: usize,
    out_error: *mut *mut calc_error_t,
) -> calc_status_t {
    // SAFETY: forwarded contracts.
    unsafe {
        with_error(out_error, || {
            calc_host_offer_interface(host, id, major, minor, vtable, vtable_size)
        })
    }
}
