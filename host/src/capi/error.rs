//! Host status codes and the per-thread last error.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

use calc_sdk::abi::calc_status_t;
use calc_sdk::Status;

/// A required pointer argument was NULL (a handle, a string, an out-parameter).
/// Since calc_host 1.0.
pub const CALC_STATUS_NULL_ARGUMENT: calc_status_t = 100;
/// A string argument is not valid UTF-8. Since calc_host 1.0.
pub const CALC_STATUS_INVALID_UTF8: calc_status_t = 101;
/// No loaded plugin provides the named operation. Since calc_host 1.0.
pub const CALC_STATUS_NOT_FOUND: calc_status_t = 102;
/// The expression is malformed or names an unknown operator or function; the message gives the
/// column. Since calc_host 1.0.
pub const CALC_STATUS_PARSE_ERROR: calc_status_t = 103;
/// A plugin file or directory could not be loaded; the message names the file and the reason.
/// Since calc_host 1.0.
pub const CALC_STATUS_LOAD_FAILED: calc_status_t = 104;
/// A bug inside libcalc_host (a caught panic). The host handle stays usable. Since calc_host 1.0.
pub const CALC_STATUS_INTERNAL: calc_status_t = 105;
/// The trust policy refused a plugin file before it was opened (insecure permissions, a
/// symbolic link, not in or different from its directory's lock file, unsigned or badly
/// signed); the message names the file, the reason and how to allow it. Since calc_host 1.2.
pub const CALC_STATUS_UNTRUSTED: calc_status_t = 106;

/// The status for a failed load: `CALC_STATUS_UNTRUSTED` for refusals by the trust policy,
/// `CALC_STATUS_LOAD_FAILED` otherwise.
pub(crate) fn load_status(e: &crate::error::LoadError) -> calc_status_t {
    if e.is_untrusted() {
        CALC_STATUS_UNTRUSTED
    } else {
        CALC_STATUS_LOAD_FAILED
    }
}

struct LastError {
    code: calc_status_t,
    message: CString,
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = RefCell::new(LastError { code: 0, message: CString::default() });
}

pub(crate) fn set_last_error(code: calc_status_t, message: &str) {
    if message.is_empty() {
        // Every successful call comes here: no allocation when the message is empty already.
        let _ = LAST_ERROR.try_with(|e| {
            if let Ok(mut e) = e.try_borrow_mut() {
                e.code = code;
                if !e.message.is_empty() {
                    e.message = CString::default();
                }
            }
        });
        return;
    }
    let message = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // Ignore the error of a thread that is being torn down: there is nobody left to read it.
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            *e = LastError { code, message };
        }
    });
}

/// A copy of this thread's last error message (for `calc_error_t`).
pub(crate) fn last_error_message() -> CString {
    LAST_ERROR
        .try_with(|e| {
            e.try_borrow()
                .map(|e| e.message.clone())
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

/// The message of the most recent status-returning call on this thread: empty after success,
/// one line naming what failed and why otherwise.
///
/// The string is owned by the library and valid until the next status-returning call on the
/// same thread. Never NULL. `[thread-safe]` (each thread has its own).
#[no_mangle]
pub extern "C" fn calc_last_error_message() -> *const c_char {
    LAST_ERROR
        .try_with(|e| {
            e.try_borrow()
                .map(|e| e.message.as_ptr())
                .unwrap_or(c"".as_ptr())
        })
        .unwrap_or(c"".as_ptr())
}

/// The status of the most recent status-returning call on this thread (`CALC_STATUS_OK` after
/// success). `[thread-safe]`
#[no_mangle]
pub extern "C" fn calc_last_error_code() -> calc_status_t {
    LAST_ERROR
        .try_with(|e| e.try_borrow().map(|e| e.code).unwrap_or(0))
        .unwrap_or(0)
}

/// A short, static description of a status code, e.g. `"division by zero"`; unknown codes give
/// `"unknown status"`. The string is static: never freed, valid forever. `[thread-safe]`
#[no_mangle]
pub extern "C" fn calc_status_describe(status: calc_status_t) -> *const c_char {
    let s: &'static std::ffi::CStr = match status {
        0 => c"ok",
        CALC_STATUS_NULL_ARGUMENT => c"NULL argument",
        CALC_STATUS_INVALID_UTF8 => c"invalid UTF-8",
        CALC_STATUS_NOT_FOUND => c"operation not found",
        CALC_STATUS_PARSE_ERROR => c"parse error",
        CALC_STATUS_LOAD_FAILED => c"plugin load failed",
        CALC_STATUS_INTERNAL => c"internal error",
        CALC_STATUS_UNTRUSTED => c"plugin refused by the trust policy",
        1..=99 => match Status::from_code(status) {
            Some(Status::InvalidArgument) => c"invalid argument",
            Some(Status::DomainError) => c"domain error",
            Some(Status::DivisionByZero) => c"division by zero",
            Some(Status::Overflow) => c"overflow",
            Some(Status::Panic) => c"plugin panicked",
            _ if status == 1 => c"error",
            _ => c"unknown status",
        },
        _ => c"unknown status",
    };
    s.as_ptr()
}
