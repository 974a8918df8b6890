//! The `execute` and `execute_batch` functions of an isolated plugin: `extern "C"` functions
//! in the host, with the ABI's signatures, whose instance pointer is a [`ProxyOp`]. The rest of
//! the host calls them exactly as it calls a plugin's own functions (`OpHandle`, fallback,
//! expressions, the C API, `calc map`), so in-process plugins pay nothing for isolation.

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use calc_sdk::abi;

use super::client::{Failure, RunnerClient};

/// What an isolated operation's instance pointer points at: the runner connection and the
/// operation's index in the plugin's table. Held by [`super::Isolated`] in a vector that is
/// never resized, so its address is stable for as long as the `LoadedPlugin` (and so every
/// `OpHandle`) lives.
pub(crate) struct ProxyOp {
    pub(crate) client: Arc<RunnerClient>,
    pub(crate) index: u32,
}

/// Copies `message` into the plugin-style error buffer: at most `size - 1` bytes, cut on a
/// character boundary, NUL-terminated.
///
/// # Safety
/// `err` must be NULL or writable for `size` bytes.
unsafe fn write_message(err: *mut c_char, size: usize, message: &str) {
    if err.is_null() || size == 0 {
        return;
    }
    let mut n = message.len().min(size - 1);
    while !message.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: `err` is writable for `size > n` bytes (contract); the source is `n` bytes of
    // `message`; the regions are distinct (the buffer belongs to the caller).
    unsafe {
        std::ptr::copy_nonoverlapping(message.as_ptr(), err.cast::<u8>(), n);
        *err.add(n) = 0;
    }
}

/// The status of a failure, written with its message into the error buffer.
///
/// # Safety
/// As [`write_message`].
unsafe fn fail(err: *mut c_char, size: usize, failure: Failure) -> abi::calc_status_t {
    // SAFETY: forwarded contract.
    unsafe { write_message(err, size, &failure.message) };
    failure.status.code()
}

/// `execute` of an isolated operation: one request to the runner.
///
/// # Safety
/// The `calc_execute_fn` contract: `instance` is the [`ProxyOp`] this function was registered
/// with, `args` is readable for `n` values, `out` writable, `err` writable for `err_size`
/// bytes.
pub(crate) unsafe extern "C" fn execute(
    instance: *mut c_void,
    args: *const f64,
    n: usize,
    out: *mut f64,
    err: *mut c_char,
    err_size: usize,
) -> abi::calc_status_t {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract, `instance` is a live `ProxyOp` (kept alive by the plugin's
        // `LoadedPlugin`, which every caller's `OpHandle` holds).
        let op = unsafe { &*instance.cast::<ProxyOp>() };
        let args = if n == 0 {
            &[][..]
        } else {
            // SAFETY: per the contract, `args` is readable for `n` values.
            unsafe { std::slice::from_raw_parts(args, n) }
        };
        op.client.call(op.index, args)
    }));
    match result {
        Ok(Ok(value)) => {
            // SAFETY: `out` is writable (contract).
            unsafe { *out = value };
            abi::CALC_STATUS_OK
        }
        // SAFETY: `err` is writable for `err_size` bytes (contract).
        Ok(Err(failure)) => unsafe { fail(err, err_size, failure) },
        // SAFETY: as above.
        Err(_) => unsafe { fail(err, err_size, Failure::internal("isolation proxy panicked")) },
    }
}

/// `execute_batch` of an isolated operation: one request to the runner for the whole batch.
///
/// # Safety
/// The `calc_execute_batch_fn` contract: `instance` as for [`execute`], `columns` holds
/// `n_columns` pointers each readable for `rows` values, `out` is writable for `rows` values,
/// `failed_row` writable, `err` writable for `err_size` bytes.
#[allow(clippy::too_many_arguments)] // the ABI's signature
pub(crate) unsafe extern "C" fn execute_batch(
    instance: *mut c_void,
    columns: *const *const f64,
    n_columns: usize,
    rows: usize,
    out: *mut f64,
    failed_row: *mut usize,
    err: *mut c_char,
    err_size: usize,
) -> abi::calc_status_t {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in `execute`.
        let op = unsafe { &*instance.cast::<ProxyOp>() };
        let pointers = if n_columns == 0 {
            &[][..]
        } else {
            // SAFETY: `columns` holds `n_columns` pointers (contract).
            unsafe { std::slice::from_raw_parts(columns, n_columns) }
        };
        let cols: Vec<&[f64]> = pointers
            .iter()
            // SAFETY: each column is readable for `rows` values (contract).
            .map(|&p| unsafe { std::slice::from_raw_parts(p, rows) })
            .collect();
        // SAFETY: `out` is writable for `rows` values and overlaps no column (contract).
        let out = unsafe { std::slice::from_raw_parts_mut(out, rows) };
        op.client.call_batch(op.index, &cols, out)
    }));
    let (row, failure) = match result {
        Ok(Ok(())) => return abi::CALC_STATUS_OK,
        Ok(Err(e)) => e,
        Err(_) => (0, Failure::internal("isolation proxy panicked")),
    };
    if !failed_row.is_null() {
        // SAFETY: NULL-checked; writable per the contract.
        unsafe { *failed_row = row };
    }
    // SAFETY: `err` is writable for `err_size` bytes (contract).
    unsafe { fail(err, err_size, failure) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_on_a_character_boundary_and_terminated() {
        let mut buf = [0xFFu8; 6];
        // SAFETY: the buffer is 6 writable bytes.
        unsafe { write_message(buf.as_mut_ptr().cast(), buf.len(), "abcdé") };
        // "abcdé" is 6 bytes; 5 fit, which would split "é": 4 are kept.
        assert_eq!(&buf[..5], b"abcd\0");
        // SAFETY: as above.
        unsafe { write_message(buf.as_mut_ptr().cast(), buf.len(), "ok") };
        assert_eq!(&buf[..3], b"ok\0");
    }
}
