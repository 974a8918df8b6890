//! Errors a Rust plugin returns, and their status codes on the wire.

use std::borrow::Cow;
use std::fmt;

use crate::abi::{self, calc_status_t};

/// Why an operation or `init` failed; each maps to one `CALC_STATUS_*` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// `CALC_STATUS_ERROR`: unspecified failure.
    Error,
    /// `CALC_STATUS_INVALID_ARGUMENT`: wrong operand count, NULL pointer, bad configuration.
    InvalidArgument,
    /// `CALC_STATUS_DOMAIN_ERROR`: operand outside the operation's domain.
    DomainError,
    /// `CALC_STATUS_DIVISION_BY_ZERO`.
    DivisionByZero,
    /// `CALC_STATUS_OVERFLOW`: result not representable.
    Overflow,
    /// `CALC_STATUS_PANIC`: the plugin panicked and the SDK caught it.
    Panic,
}

impl Status {
    /// The wire value of this status.
    pub const fn code(self) -> calc_status_t {
        match self {
            Status::Error => abi::CALC_STATUS_ERROR,
            Status::InvalidArgument => abi::CALC_STATUS_INVALID_ARGUMENT,
            Status::DomainError => abi::CALC_STATUS_DOMAIN_ERROR,
            Status::DivisionByZero => abi::CALC_STATUS_DIVISION_BY_ZERO,
            Status::Overflow => abi::CALC_STATUS_OVERFLOW,
            Status::Panic => abi::CALC_STATUS_PANIC,
        }
    }

    /// Maps a wire value to a status. `CALC_STATUS_OK` gives `None`; a value this SDK does not
    /// know (a newer plugin, or garbage) gives [`Status::Error`], never undefined behaviour.
    pub const fn from_code(code: calc_status_t) -> Option<Status> {
        Some(match code {
            abi::CALC_STATUS_OK => return None,
            abi::CALC_STATUS_INVALID_ARGUMENT => Status::InvalidArgument,
            abi::CALC_STATUS_DOMAIN_ERROR => Status::DomainError,
            abi::CALC_STATUS_DIVISION_BY_ZERO => Status::DivisionByZero,
            abi::CALC_STATUS_OVERFLOW => Status::Overflow,
            abi::CALC_STATUS_PANIC => Status::Panic,
            _ => Status::Error,
        })
    }

    /// A short lowercase description, e.g. `"division by zero"`.
    pub const fn describe(self) -> &'static str {
        match self {
            Status::Error => "error",
            Status::InvalidArgument => "invalid argument",
            Status::DomainError => "domain error",
            Status::DivisionByZero => "division by zero",
            Status::Overflow => "overflow",
            Status::Panic => "panic",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// An error from a plugin: a [`Status`] and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalcError {
    /// Which kind of failure.
    pub status: Status,
    /// What went wrong, in one line. Truncated to the host's buffer when it crosses the ABI.
    pub message: Cow<'static, str>,
}

impl CalcError {
    /// An error with the given status and message.
    pub fn new(status: Status, message: impl Into<Cow<'static, str>>) -> Self {
        CalcError {
            status,
            message: message.into(),
        }
    }

    /// A [`Status::Error`].
    pub fn other(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Status::Error, message)
    }

    /// A [`Status::InvalidArgument`].
    pub fn invalid_argument(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Status::InvalidArgument, message)
    }

    /// A [`Status::DomainError`].
    pub fn domain(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Status::DomainError, message)
    }

    /// A [`Status::DivisionByZero`] with the message `"division by zero"`.
    pub fn division_by_zero() -> Self {
        Self::new(Status::DivisionByZero, "division by zero")
    }

    /// A [`Status::Overflow`].
    pub fn overflow(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Status::Overflow, message)
    }
}

impl fmt::Display for CalcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.status)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for CalcError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_code() {
        for s in [
            Status::Error,
            Status::InvalidArgument,
            Status::DomainError,
            Status::DivisionByZero,
            Status::Overflow,
            Status::Panic,
        ] {
            assert_eq!(Status::from_code(s.code()), Some(s));
        }
    }

    #[test]
    fn ok_and_unknown_codes_map_safely() {
        assert_eq!(Status::from_code(abi::CALC_STATUS_OK), None);
        assert_eq!(Status::from_code(9999), Some(Status::Error));
        assert_eq!(Status::from_code(-1), Some(Status::Error));
    }
}
