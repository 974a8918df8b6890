//! Status codes returned across the ABI, and the other small enumerations.
//!
//! Every enumeration is a fixed-width integer with named constants, never a Rust `enum`: a value
//! arriving from the other side of the boundary may be one this side does not know, and must be
//! mapped (to [`CALC_STATUS_ERROR`] for statuses), never transmuted.
//! Numbers are never reused; a retired value stays listed as a comment.

/// Result of a call across the ABI. `CALC_STATUS_OK` (0) means success; any other value is a
/// failure whose details are in the caller-owned error buffer.
///
/// Since ABI 1.0.
pub type calc_status_t = i32;

/// Success. Since ABI 1.0.
pub const CALC_STATUS_OK: calc_status_t = 0;
/// Unspecified failure; the message says what went wrong. Since ABI 1.0.
pub const CALC_STATUS_ERROR: calc_status_t = 1;
/// An argument is invalid: wrong number of operands, NULL pointer, unknown configuration.
/// Since ABI 1.0.
pub const CALC_STATUS_INVALID_ARGUMENT: calc_status_t = 2;
/// An operand is outside the operation's domain, e.g. `sqrt(-1)`. Since ABI 1.0.
pub const CALC_STATUS_DOMAIN_ERROR: calc_status_t = 3;
/// Division (or remainder) by zero. Since ABI 1.0.
pub const CALC_STATUS_DIVISION_BY_ZERO: calc_status_t = 4;
/// The result is not representable as a finite `double`. Since ABI 1.0.
pub const CALC_STATUS_OVERFLOW: calc_status_t = 5;
/// The plugin's code panicked; the Rust SDK caught the panic before it could unwind into C.
/// Since ABI 1.0.
pub const CALC_STATUS_PANIC: calc_status_t = 6;

/// Severity of a message sent through `calc_host_api_t.log`.
///
/// Since ABI 1.0.
pub type calc_log_level_t = i32;

/// An error the user should see. Since ABI 1.0.
pub const CALC_LOG_LEVEL_ERROR: calc_log_level_t = 1;
/// Something suspicious that did not stop the plugin. Since ABI 1.0.
pub const CALC_LOG_LEVEL_WARN: calc_log_level_t = 2;
/// Normal progress. Since ABI 1.0.
pub const CALC_LOG_LEVEL_INFO: calc_log_level_t = 3;
/// Details for the plugin's developer. Since ABI 1.0.
pub const CALC_LOG_LEVEL_DEBUG: calc_log_level_t = 4;
/// Very verbose details. Since ABI 1.0.
pub const CALC_LOG_LEVEL_TRACE: calc_log_level_t = 5;

/// What kind of operation a `calc_operation_t` describes.
///
/// Since ABI 1.0.
pub type calc_operation_kind_t = i32;

/// A binary infix operator such as `a + b`: it has a `symbol`, a `precedence` and an
/// `associativity`, and is always called with exactly two operands. Since ABI 1.0.
pub const CALC_OPERATION_KIND_INFIX: calc_operation_kind_t = 1;
/// A function called as `name(a, b, ...)` with between `min_arity` and `max_arity` operands.
/// Since ABI 1.0.
pub const CALC_OPERATION_KIND_FUNCTION: calc_operation_kind_t = 2;

/// How a chain of infix operators of equal precedence groups.
///
/// Since ABI 1.0.
pub type calc_associativity_t = i32;

/// Not an infix operator (use for functions). Since ABI 1.0.
pub const CALC_ASSOCIATIVITY_NONE: calc_associativity_t = 0;
/// `a - b - c` is `(a - b) - c`. Since ABI 1.0.
pub const CALC_ASSOCIATIVITY_LEFT: calc_associativity_t = 1;
/// `a ^ b ^ c` is `a ^ (b ^ c)`. Since ABI 1.0.
pub const CALC_ASSOCIATIVITY_RIGHT: calc_associativity_t = 2;
