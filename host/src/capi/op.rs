//! `calc_op_t`: an operation resolved once, for fast repeated calls.

use std::ffi::c_char;

use calc_sdk::abi::calc_status_t;

use super::error::CALC_STATUS_NOT_FOUND;
use super::ffi::{
    ffi_status, handle, out, slice_arg, slice_mut_arg, str_arg, with_columns, write_failed_row,
    ApiError,
};
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

/// Calls the operation once per row over whole columns, in place: `columns[k][r]` is operand
/// `k` of row `r` and the result of row `r` goes to `out[r]`. `column_count` is the number of
/// operands per row (within the operation's arity), each column holds `rows` values, `out`
/// holds `rows` values (`columns` may be NULL when `column_count` is 0, `out` when `rows` is
/// 0). The version serving when the call starts serves every row (a reload meanwhile takes
/// effect at the next call) and uses the plugin's `execute_batch` when it has one (ABI 1.2),
/// else its `execute` once per row: no copy of the columns and no allocation for up to 16
/// operands per row.
///
/// On failure returns the status of the first failing row with a message naming the row, the
/// operation and its plugin (e.g. `"row 7: div (plugin div): division by zero"`), and writes
/// that row's 0-based index to `*out_failed_row` when `out_failed_row` is not NULL; `out[0..row]`
/// then hold the results of the rows before it and the rest of `out` is unspecified. An operand
/// count outside the operation's arity fails before any row is called: the message names no
/// row and `*out_failed_row` is unchanged, as it is on success. `[thread-safe]` Since
/// calc_host 1.4.
///
/// # Safety
/// `op` must be NULL or live; `columns` NULL or valid for `column_count` pointers, each valid
/// for `rows` values; `out` NULL or writable for `rows` values, not overlapping a column;
/// `out_failed_row` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn calc_op_call_batch(
    op: *const calc_op_t,
    columns: *const *const f64,
    column_count: usize,
    rows: usize,
    out: *mut f64,
    out_failed_row: *mut usize,
) -> calc_status_t {
    // SAFETY: forwarded contract.
    ffi_status(|| unsafe { op_call_batch(op, columns, column_count, rows, out, out_failed_row) })
}

/// The body of `calc_op_call_batch` (and `calc_op_call_batch_err`).
///
/// # Safety
/// As for `calc_op_call_batch`.
pub(super) unsafe fn op_call_batch(
    op: *const calc_op_t,
    columns: *const *const f64,
    column_count: usize,
    rows: usize,
    out: *mut f64,
    out_failed_row: *mut usize,
) -> Result<(), ApiError> {
    // SAFETY: forwarded contract.
    let op = unsafe { handle(op, "op")? };
    let run = |columns: &[&[f64]]| {
        // SAFETY: `out` is writable for `rows` values and overlaps no column per the
        // contract.
        let results = unsafe { slice_mut_arg(out, rows, "out")? };
        op.op.call_batch(columns, results).map_err(|(row, e)| {
            // An operand count outside the arity is refused before any row runs.
            let before_rows = op.op.pin().handle().is_some_and(|h| {
                let (min, max) = h.info().arity();
                let n = column_count as u64;
                n < u64::from(min) || max.is_some_and(|m| n > u64::from(m))
            });
            if before_rows {
                return ApiError::new(e.status.code(), e.to_string());
            }
            // SAFETY: NULL or writable per the contract.
            unsafe { write_failed_row(out_failed_row, row) };
            ApiError::new(e.status.code(), format!("row {row}: {e}"))
        })
    };
    // SAFETY: `columns` holds `column_count` pointers of `rows` values each per the contract.
    unsafe { with_columns(columns, column_count, rows, run) }
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
