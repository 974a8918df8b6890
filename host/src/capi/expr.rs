//! `calc_expr_t`: an expression compiled once and evaluated over columns of numbers.

use std::ffi::c_char;

use calc_sdk::abi::calc_status_t;

use super::error::CALC_STATUS_PARSE_ERROR;
use super::ffi::{
    ffi_status, handle, out, slice_arg, slice_mut_arg, str_arg, with_columns, write_failed_row,
    ApiError,
};
use super::host::calc_host_t;
use crate::error::EvalError;
use crate::expr::{compile_program, Program};

/// An expression compiled for evaluation over arrays: its variables are named input columns,
/// and `calc_expr_eval` runs it over many rows at once, operation by operation in batches
/// (no per-row parsing or tree walk).
///
/// Opaque; wraps the Rust `calc_host::expr::Program`. Create with `calc_expr_new`, destroy
/// with `calc_expr_free`. It follows hot reloads like `calc_op_t` and keeps the plugin versions
/// it uses loaded, even after the host it came from is freed, until `calc_expr_free`.
/// `calc_expr_eval` may run concurrently from any threads; the handle may be moved between
/// threads.
///
/// Batch evaluation always uses the implementation serving each operation (its primary
/// provider): it chooses no rollout candidate, does not fall back to another provider when that
/// implementation fails, and does not count calls in the host's statistics.
///
/// Since calc_host 1.2.
pub struct calc_expr_t {
    program: Program,
}

/// Compiles `expression` against the operations loaded in `host`, with `variable_count`
/// variables named by `variables` (identifiers such as `"x"`): a bare identifier in the
/// expression (not followed by `(`) is the input column of that name. Writes a new handle to
/// `*out_expr`; free it with `calc_expr_free`.
///
/// Returns `CALC_STATUS_PARSE_ERROR` for a malformed expression, an unknown operator or
/// function, or a variable not in `variables` (the message gives the column), with `*out_expr`
/// unchanged. The strings are copied. `[thread-safe]` Since calc_host 1.2.
///
/// # Safety
/// `host` must be NULL or live; `expression` NULL or NUL-terminated; `variables` valid for
/// `variable_count` NUL-terminated strings (may be NULL when 0); `out_expr` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn calc_expr_new(
    host: *const calc_host_t,
    expression: *const c_char,
    variables: *const *const c_char,
    variable_count: usize,
    out_expr: *mut *mut calc_expr_t,
) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let (host, expression, variables, out_expr) = unsafe {
            (
                handle(host, "host")?,
                str_arg(expression, "expression")?,
                slice_arg(variables, variable_count, "variables")?,
                out(out_expr, "out_expr")?,
            )
        };
        let names = variables
            .iter()
            .enumerate()
            // SAFETY: each pointer is NULL or NUL-terminated per the contract.
            .map(|(i, &v)| unsafe { str_arg(v, &format!("variables[{i}]")) })
            .collect::<Result<Vec<&str>, ApiError>>()?;
        let program = compile_program(host.manager(), expression, &names)
            .map_err(|e| ApiError::new(CALC_STATUS_PARSE_ERROR, e.to_string()))?;
        out_expr.write(Box::into_raw(Box::new(calc_expr_t { program })));
        Ok(())
    })
}

/// Evaluates the expression over `rows` rows and writes one result per row to `out[0..rows]`.
///
/// `columns` points to one column per variable, in the order given to `calc_expr_new`, each
/// holding `rows` values: `columns[k][r]` is variable `k` in row `r` (`columns` may be NULL when
/// the expression has no variables). `out` must hold `rows` values and may be NULL when `rows`
/// is 0.
///
/// On failure returns the status of the operation that failed in the first failing row, with
/// a message naming the row, the operation and its plugin (e.g. `"row 7: div (plugin div):
/// division by zero"`), and writes that row's 0-based index to `*out_failed_row` when
/// `out_failed_row` is not NULL; `out[0..row]` then hold the results of the rows before it and
/// the rest of `out` is unspecified. On success `*out_failed_row` is unchanged.
/// `[thread-safe]` Since calc_host 1.2.
///
/// # Safety
/// `expr` must be NULL or live; `columns` valid for as many pointers as the expression has
/// variables, each valid for `rows` values; `out` NULL or writable for `rows` values, not
/// overlapping a column; `out_failed_row` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn calc_expr_eval(
    expr: *const calc_expr_t,
    columns: *const *const f64,
    rows: usize,
    out: *mut f64,
    out_failed_row: *mut usize,
) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let expr = unsafe { handle(expr, "expr")? };
        let program = &expr.program;
        let variables = program.variables().len();
        let run = |columns: &[&[f64]]| {
            // SAFETY: `out` is writable for `rows` values and overlaps no column per the
            // contract.
            let results = unsafe { slice_mut_arg(out, rows, "out")? };
            program.eval_into(columns, results).map_err(|(row, e)| {
                // SAFETY: NULL or writable per the contract.
                unsafe { write_failed_row(out_failed_row, row) };
                match e {
                    EvalError::Call(c) => ApiError::new(c.status.code(), format!("row {row}: {c}")),
                    other => ApiError::new(CALC_STATUS_PARSE_ERROR, format!("row {row}: {other}")),
                }
            })
        };
        // SAFETY: `columns` holds one pointer per variable, each valid for `rows` values, per
        // the contract.
        unsafe { with_columns(columns, variables, rows, run) }
    })
}

/// Frees a handle from `calc_expr_new` (unloading plugins nothing else uses). NULL does
/// nothing; freeing twice is undefined. `[exclusive]` Since calc_host 1.2.
///
/// # Safety
/// `expr` must be NULL or a handle from `calc_expr_new` that is not used again.
#[no_mangle]
pub unsafe extern "C" fn calc_expr_free(expr: *mut calc_expr_t) {
    if expr.is_null() {
        return;
    }
    super::ffi::ffi_value((), || {
        // SAFETY: the unique owner per the contract, created by `Box::into_raw`.
        drop(unsafe { Box::from_raw(expr) });
    });
}
