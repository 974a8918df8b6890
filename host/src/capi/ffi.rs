//! Pointer conversions and the panic boundary shared by every exported function.

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use calc_sdk::abi::{calc_status_t, CALC_STATUS_INVALID_ARGUMENT, CALC_STATUS_OK};

use super::error::{
    set_last_error, CALC_STATUS_INTERNAL, CALC_STATUS_INVALID_UTF8, CALC_STATUS_NULL_ARGUMENT,
};

/// A failure to report to C: its status and message.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) code: calc_status_t,
    pub(crate) message: String,
}

impl ApiError {
    /// A caught panic: a bug in the library.
    pub(crate) fn internal() -> Self {
        ApiError::new(
            CALC_STATUS_INTERNAL,
            "internal error in libcalc_host (a bug: please report it)",
        )
    }

    pub(crate) fn new(code: calc_status_t, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn null(what: &str) -> Self {
        Self::new(CALC_STATUS_NULL_ARGUMENT, format!("{what} is NULL"))
    }
}

/// Runs the body of a status-returning function: records the outcome as the thread's last
/// error and turns a panic into `CALC_STATUS_INTERNAL`.
pub(crate) fn ffi_status(f: impl FnOnce() -> Result<(), ApiError>) -> calc_status_t {
    let result = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err(ApiError::internal()));
    match result {
        Ok(()) => {
            set_last_error(CALC_STATUS_OK, "");
            CALC_STATUS_OK
        }
        Err(e) => {
            set_last_error(e.code, &e.message);
            e.code
        }
    }
}

/// Runs the body of a getter (no status), returning `fallback` on a panic.
pub(crate) fn ffi_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Borrows a C string argument as UTF-8.
///
/// # Safety
/// `p` must be NULL or a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, ApiError> {
    if p.is_null() {
        return Err(ApiError::null(what));
    }
    // SAFETY: non-NULL and NUL-terminated per the contract.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| {
        ApiError::new(
            CALC_STATUS_INVALID_UTF8,
            format!("{what} is not valid UTF-8"),
        )
    })
}

/// Borrows `(ptr, len)` as a slice; `(NULL, 0)` is the empty slice.
///
/// # Safety
/// Unless `len` is 0, `p` must point to `len` initialised values valid for `'a`.
pub(crate) unsafe fn slice_arg<'a, T>(
    p: *const T,
    len: usize,
    what: &str,
) -> Result<&'a [T], ApiError> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(ApiError::null(what));
    }
    check_len::<T>(len, what)?;
    // SAFETY: non-NULL and valid for `len` elements per the contract; `len` elements fit in
    // an allocation (checked above).
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Refuses a count no allocation can hold (more than `isize::MAX` bytes): a caller's mistake
/// that would otherwise be undefined behaviour in `slice::from_raw_parts`.
pub(crate) fn check_len<T>(len: usize, what: &str) -> Result<(), ApiError> {
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(ApiError::new(
            CALC_STATUS_INVALID_ARGUMENT,
            format!("{what}: {len} elements is more than memory can hold"),
        ));
    }
    Ok(())
}

/// Borrows `(ptr, len)` as a writable slice; `(NULL, 0)` is the empty slice.
///
/// # Safety
/// Unless `len` is 0, `p` must point to `len` initialised values valid for writing during
/// `'a` and overlapping nothing else borrowed.
pub(crate) unsafe fn slice_mut_arg<'a, T>(
    p: *mut T,
    len: usize,
    what: &str,
) -> Result<&'a mut [T], ApiError> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(ApiError::null(what));
    }
    check_len::<T>(len, what)?;
    // SAFETY: non-NULL, valid and unaliased for `len` elements per the contract; `len`
    // elements fit in an allocation (checked above).
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// Columns of a batch held on the stack; more go to the heap.
const STACK_COLUMNS: usize = 16;

/// Borrows `count` column pointers of `rows` values each (`columns[k][r]`: operand or
/// variable `k` of row `r`) and runs `f` over them: no allocation for up to `STACK_COLUMNS`
/// columns, and a message formatted only for a NULL column.
///
/// # Safety
/// `columns` must be NULL or valid for `count` pointers, each NULL or valid for `rows` values
/// during the call.
pub(crate) unsafe fn with_columns<R>(
    columns: *const *const f64,
    count: usize,
    rows: usize,
    f: impl FnOnce(&[&[f64]]) -> Result<R, ApiError>,
) -> Result<R, ApiError> {
    // SAFETY: `columns` holds `count` pointers per the contract.
    let pointers = unsafe { slice_arg(columns, count, "columns")? };
    check_len::<f64>(rows, "rows")?;
    let column = |i: usize, c: *const f64| {
        if rows > 0 && c.is_null() {
            return Err(ApiError::null(&format!("columns[{i}]")));
        }
        // SAFETY: each column is valid for `rows` values per the contract (and non-NULL when
        // `rows` is not 0).
        unsafe { slice_arg(c, rows, "") }
    };
    if count <= STACK_COLUMNS {
        let mut stack: [&[f64]; STACK_COLUMNS] = [&[]; STACK_COLUMNS];
        for (i, (slot, &c)) in stack.iter_mut().zip(pointers).enumerate() {
            *slot = column(i, c)?;
        }
        f(&stack[..count])
    } else {
        let heap = pointers
            .iter()
            .enumerate()
            .map(|(i, &c)| column(i, c))
            .collect::<Result<Vec<_>, _>>()?;
        f(&heap)
    }
}

/// Writes the index of a batch's failing row to `out_failed_row` unless it is NULL.
///
/// # Safety
/// `out_failed_row` must be NULL or writable.
pub(crate) unsafe fn write_failed_row(out_failed_row: *mut usize, row: usize) {
    if !out_failed_row.is_null() {
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out_failed_row.write(row) };
    }
}

/// Borrows a handle.
///
/// # Safety
/// `p` must be NULL or a live handle of type `T` created by this library.
pub(crate) unsafe fn handle<'a, T>(p: *const T, what: &str) -> Result<&'a T, ApiError> {
    // SAFETY: NULL or live per the contract.
    unsafe { p.as_ref() }.ok_or_else(|| ApiError::null(what))
}

/// Borrows a handle mutably.
///
/// # Safety
/// `p` must be NULL or a live handle of type `T` not used by any other thread during the call.
pub(crate) unsafe fn handle_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, ApiError> {
    // SAFETY: NULL or live and exclusive per the contract.
    unsafe { p.as_mut() }.ok_or_else(|| ApiError::null(what))
}

/// Checks an out-parameter.
///
/// # Safety
/// `p` must be NULL or valid for a write of `T`.
pub(crate) unsafe fn out<'a, T>(
    p: *mut T,
    what: &str,
) -> Result<&'a mut std::mem::MaybeUninit<T>, ApiError> {
    // SAFETY: NULL or writable per the contract; `MaybeUninit` makes no claim on the old value.
    unsafe { p.cast::<std::mem::MaybeUninit<T>>().as_mut() }.ok_or_else(|| ApiError::null(what))
}
