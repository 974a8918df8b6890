//! `div`: an example calc plugin written in Rust with the safe SDK.
//!
//! It provides two infix operators, both at precedence 20 and left-associative:
//! - `a / b` (operation `div`): the quotient;
//! - `a % b` (operation `mod`): the remainder of truncated division, with the sign of `a`
//!   (like C's `fmod`), e.g. `-7 % 3` is `-1`.
//!
//! A zero divisor (`0` or `-0`) is a `CALC_STATUS_DIVISION_BY_ZERO` error for both, never `inf`
//! or NaN. Other IEEE 754 edge cases are passed through: a NaN operand gives NaN.
//!
//! Build it with `cargo build -p calc-example-div`; the plugin is `target/debug/libdiv.so`
//! (`libdiv.dylib` on macOS, `div.dll` on Windows).

use calc_sdk::{export_plugin, Associativity, CalcError, Host, Operation, Plugin};

/// The `div` plugin. It has no state.
#[derive(Debug)]
pub struct Div;

/// `a / b`, or a division-by-zero error when `b` is zero.
fn divide(_: &Div, a: f64, b: f64) -> Result<f64, CalcError> {
    if b == 0.0 {
        return Err(CalcError::division_by_zero());
    }
    Ok(a / b)
}

/// `a % b` (truncated, sign of `a`), or a division-by-zero error when `b` is zero.
fn remainder(_: &Div, a: f64, b: f64) -> Result<f64, CalcError> {
    if b == 0.0 {
        return Err(CalcError::division_by_zero());
    }
    Ok(a % b)
}

impl Plugin for Div {
    const NAME: &'static str = "div";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const AUTHOR: &'static str = "calc examples";
    const DESCRIPTION: &'static str = "Division (/) and remainder (%) that report division by zero";
    const OPERATIONS: &'static [Operation<Self>] = &[
        Operation::infix(
            "div",
            "/",
            20,
            Associativity::Left,
            "quotient of two numbers; a zero divisor is an error",
            divide,
        ),
        Operation::infix(
            "mod",
            "%",
            20,
            Associativity::Left,
            "remainder of truncated division, with the sign of the dividend; a zero divisor is an error",
            remainder,
        ),
    ];

    fn init(_host: &Host) -> Result<Self, CalcError> {
        Ok(Div)
    }
}

export_plugin!(Div);

#[cfg(test)]
mod tests {
    use super::*;
    use calc_sdk::Status;
    use std::ffi::CStr;

    fn call(name: &str, args: &[f64]) -> Result<f64, CalcError> {
        let op = <Div as Plugin>::OPERATIONS
            .iter()
            .find(|op| op.name == name)
            .expect("operation exists");
        op.call(&Div, args)
    }

    #[test]
    fn divides() {
        assert_eq!(call("div", &[1.0, 4.0]), Ok(0.25));
        assert_eq!(call("div", &[-9.0, 3.0]), Ok(-3.0));
    }

    #[test]
    fn division_by_zero_is_an_error_not_inf() {
        let e = <Div as Plugin>::OPERATIONS[0]
            .call(&Div, &[1.0, 0.0])
            .unwrap_err();
        assert_eq!(e.status, Status::DivisionByZero);
        assert_eq!(e.message, "division by zero");
        assert_eq!(
            call("div", &[1.0, -0.0]).unwrap_err().status,
            Status::DivisionByZero
        );
        assert_eq!(
            call("div", &[0.0, 0.0]).unwrap_err().status,
            Status::DivisionByZero
        );
    }

    #[test]
    fn remainder_has_the_sign_of_the_dividend() {
        assert_eq!(call("mod", &[7.0, 3.0]), Ok(1.0));
        assert_eq!(call("mod", &[-7.0, 3.0]), Ok(-1.0));
        assert_eq!(call("mod", &[7.0, -3.0]), Ok(1.0));
        assert_eq!(call("mod", &[5.5, 2.0]), Ok(1.5));
    }

    #[test]
    fn remainder_by_zero_is_an_error() {
        let e = call("mod", &[7.0, 0.0]).unwrap_err();
        assert_eq!(e.status, Status::DivisionByZero);
        assert_eq!(
            call("mod", &[7.0, -0.0]).unwrap_err().status,
            Status::DivisionByZero
        );
    }

    #[test]
    fn nan_passes_through() {
        assert!(call("div", &[f64::NAN, 2.0]).unwrap().is_nan());
        assert!(call("mod", &[1.0, f64::NAN]).unwrap().is_nan());
    }

    #[test]
    fn rejects_the_wrong_operand_count() {
        assert_eq!(
            call("div", &[1.0]).unwrap_err().status,
            Status::InvalidArgument
        );
    }

    #[test]
    fn plugin_entry_returns_a_descriptor() {
        let d = plugin_entry();
        assert!(!d.is_null());
        // SAFETY: a non-NULL descriptor from `plugin_entry` lives for the rest of the process.
        let d = unsafe { &*d };
        assert_eq!(d.magic, calc_sdk::abi::CALC_PLUGIN_MAGIC);
        assert_eq!(d.operation_count, 2);
        // SAFETY: the SDK fills `name` with a NUL-terminated string owned by the descriptor.
        assert_eq!(unsafe { CStr::from_ptr(d.name) }.to_str(), Ok("div"));
    }
}
