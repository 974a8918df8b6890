//! `mul`: an example calc plugin written in Rust with the safe SDK.
//!
//! It provides one infix operator, `a * b` (operation `mul`, precedence 20, left-associative),
//! with plain IEEE 754 semantics: an overflowing product is `inf`, and NaN operands give NaN.
//!
//! Build it with `cargo build -p calc-example-mul`; the plugin is `target/debug/libmul.so`
//! (`libmul.dylib` on macOS, `mul.dll` on Windows).

use calc_sdk::{export_plugin, Associativity, CalcError, Host, Operation, Plugin};

/// The `mul` plugin. It has no state.
#[derive(Debug)]
pub struct Mul;

impl Plugin for Mul {
    const NAME: &'static str = "mul";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const AUTHOR: &'static str = "calc examples";
    const DESCRIPTION: &'static str = "Multiplication as the infix operator *";
    const OPERATIONS: &'static [Operation<Self>] = &[Operation::infix(
        "mul",
        "*",
        20,
        Associativity::Left,
        "product of two numbers",
        |_, a, b| Ok(a * b),
    )];

    fn init(_host: &Host) -> Result<Self, CalcError> {
        Ok(Mul)
    }
}

export_plugin!(Mul);

#[cfg(test)]
mod tests {
    use super::*;
    use calc_sdk::{OperationKind, Status};
    use std::ffi::CStr;

    fn mul(args: &[f64]) -> Result<f64, CalcError> {
        <Mul as Plugin>::OPERATIONS[0].call(&Mul, args)
    }

    #[test]
    fn multiplies() {
        assert_eq!(mul(&[6.0, 7.0]), Ok(42.0));
        assert_eq!(mul(&[-1.5, 2.0]), Ok(-3.0));
        assert_eq!(mul(&[0.0, 1e300]), Ok(0.0));
    }

    #[test]
    fn follows_ieee_at_the_edges() {
        assert_eq!(mul(&[1e300, 1e300]), Ok(f64::INFINITY));
        assert!(mul(&[f64::NAN, 1.0]).unwrap().is_nan());
    }

    #[test]
    fn rejects_the_wrong_operand_count() {
        let e = mul(&[1.0]).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        assert_eq!(
            mul(&[1.0, 2.0, 3.0]).unwrap_err().status,
            Status::InvalidArgument
        );
    }

    #[test]
    fn declares_an_infix_operator() {
        let op = &<Mul as Plugin>::OPERATIONS[0];
        assert_eq!(op.name, "mul");
        assert_eq!(
            op.kind,
            OperationKind::Infix {
                symbol: "*",
                precedence: 20,
                associativity: Associativity::Left,
            }
        );
    }

    #[test]
    fn plugin_entry_returns_a_descriptor() {
        let d = plugin_entry();
        assert!(!d.is_null());
        // SAFETY: a non-NULL descriptor from `plugin_entry` lives for the rest of the process.
        let d = unsafe { &*d };
        assert_eq!(d.magic, calc_sdk::abi::CALC_PLUGIN_MAGIC);
        assert_eq!(d.operation_count, 1);
        // SAFETY: the SDK fills `name` with a NUL-terminated string owned by the descriptor.
        assert_eq!(unsafe { CStr::from_ptr(d.name) }.to_str(), Ok("mul"));
    }
}
