//! `stats`: an example calc plugin written in Rust with the safe SDK.
//!
//! It provides five functions:
//! - `max(x, ...)` and `min(x, ...)`: the largest and smallest of one or more operands;
//! - `sum(x, ...)`: the sum of one or more operands;
//! - `avg(x, ...)`: the arithmetic mean of one or more operands;
//! - `clamp(x, lo, hi)`: `x` limited to `[lo, hi]`; `lo > hi` is an invalid-argument error.
//!
//! NaN: `max` and `min` return NaN when *any* operand is NaN. This deliberately differs from
//! Rust's `f64::max` and C's `fmax`, which ignore NaN: a NaN means an earlier step went wrong, and
//! picking another operand would hide that. `sum` and `avg` propagate NaN as IEEE 754 does;
//! `clamp` returns NaN for a NaN `x` and rejects a NaN bound as an invalid argument.
//!
//! Build it with `cargo build -p calc-example-stats`; the plugin is `target/debug/libstats.so`
//! (`libstats.dylib` on macOS, `stats.dll` on Windows).

use calc_sdk::{export_plugin, CalcError, Host, Operation, Plugin};

/// The `stats` plugin. It has no state.
#[derive(Debug)]
pub struct Stats;

/// The largest operand, or NaN when any operand is NaN. `xs` is not empty (arity is checked).
fn max(_: &Stats, xs: &[f64]) -> Result<f64, CalcError> {
    if xs.iter().any(|x| x.is_nan()) {
        return Ok(f64::NAN);
    }
    Ok(xs.iter().copied().fold(f64::NEG_INFINITY, f64::max))
}

/// The smallest operand, or NaN when any operand is NaN. `xs` is not empty (arity is checked).
fn min(_: &Stats, xs: &[f64]) -> Result<f64, CalcError> {
    if xs.iter().any(|x| x.is_nan()) {
        return Ok(f64::NAN);
    }
    Ok(xs.iter().copied().fold(f64::INFINITY, f64::min))
}

/// The sum of the operands.
fn sum(_: &Stats, xs: &[f64]) -> Result<f64, CalcError> {
    Ok(xs.iter().sum())
}

/// The arithmetic mean. Falls back to summing `x / n` when the plain sum of finite operands
/// overflows, so `avg(1e308, 1e308)` is `1e308`, not `inf`.
fn avg(_: &Stats, xs: &[f64]) -> Result<f64, CalcError> {
    let n = xs.len() as f64;
    let total: f64 = xs.iter().sum();
    if total.is_infinite() && xs.iter().all(|x| x.is_finite()) {
        return Ok(xs.iter().map(|x| x / n).sum());
    }
    Ok(total / n)
}

/// `x` limited to `[lo, hi]`. Never panics, unlike `f64::clamp` on bad bounds.
fn clamp(_: &Stats, xs: &[f64]) -> Result<f64, CalcError> {
    let &[x, lo, hi] = xs else {
        return Err(CalcError::invalid_argument("clamp takes 3 operands"));
    };
    if lo.is_nan() || hi.is_nan() {
        return Err(CalcError::invalid_argument(
            "clamp: the bounds must not be NaN",
        ));
    }
    if lo > hi {
        return Err(CalcError::invalid_argument(format!(
            "clamp: lower bound {lo} is greater than upper bound {hi}"
        )));
    }
    Ok(x.clamp(lo, hi))
}

impl Plugin for Stats {
    const NAME: &'static str = "stats";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const AUTHOR: &'static str = "calc examples";
    const DESCRIPTION: &'static str = "Aggregate functions: max, min, sum, avg and clamp";
    const OPERATIONS: &'static [Operation<Self>] = &[
        Operation::function(
            "max",
            1,
            None,
            "largest operand; NaN if any operand is NaN",
            max,
        ),
        Operation::function(
            "min",
            1,
            None,
            "smallest operand; NaN if any operand is NaN",
            min,
        ),
        Operation::function("sum", 1, None, "sum of the operands", sum),
        Operation::function("avg", 1, None, "arithmetic mean of the operands", avg),
        Operation::function(
            "clamp",
            3,
            Some(3),
            "clamp(x, lo, hi): x limited to [lo, hi]",
            clamp,
        ),
    ];

    fn init(_host: &Host) -> Result<Self, CalcError> {
        Ok(Stats)
    }
}

export_plugin!(Stats);

#[cfg(test)]
mod tests {
    use super::*;
    use calc_sdk::{OperationKind, Status};
    use std::ffi::CStr;

    fn call(name: &str, args: &[f64]) -> Result<f64, CalcError> {
        let op = <Stats as Plugin>::OPERATIONS
            .iter()
            .find(|op| op.name == name)
            .expect("operation exists");
        op.call(&Stats, args)
    }

    #[test]
    fn max_and_min() {
        assert_eq!(call("max", &[1.0, 7.0, -3.0]), Ok(7.0));
        assert_eq!(call("min", &[1.0, 7.0, -3.0]), Ok(-3.0));
        assert_eq!(call("max", &[4.0]), Ok(4.0));
        assert_eq!(call("min", &[4.0]), Ok(4.0));
        assert_eq!(call("max", &[f64::NEG_INFINITY]), Ok(f64::NEG_INFINITY));
        assert_eq!(call("min", &[f64::INFINITY, 2.0]), Ok(2.0));
    }

    #[test]
    fn max_and_min_propagate_nan() {
        for name in ["max", "min"] {
            assert!(call(name, &[f64::NAN]).unwrap().is_nan(), "{name}(NaN)");
            assert!(
                call(name, &[1.0, f64::NAN, 3.0]).unwrap().is_nan(),
                "{name}(1, NaN, 3)"
            );
            assert!(
                call(name, &[f64::NAN, 1.0]).unwrap().is_nan(),
                "{name}(NaN, 1)"
            );
            assert!(
                call(name, &[1.0, f64::NAN]).unwrap().is_nan(),
                "{name}(1, NaN)"
            );
        }
    }

    #[test]
    fn sum_and_avg() {
        assert_eq!(call("sum", &[1.0, 2.0, 3.5]), Ok(6.5));
        assert_eq!(call("sum", &[-2.0]), Ok(-2.0));
        assert_eq!(call("avg", &[1.0, 2.0, 3.0, 4.0]), Ok(2.5));
        assert_eq!(call("avg", &[5.0]), Ok(5.0));
        assert!(call("sum", &[1.0, f64::NAN]).unwrap().is_nan());
        assert!(call("avg", &[f64::NAN, 1.0]).unwrap().is_nan());
    }

    #[test]
    fn avg_does_not_overflow_when_the_mean_is_finite() {
        assert_eq!(call("avg", &[1e308, 1e308]), Ok(1e308));
        assert_eq!(call("avg", &[f64::INFINITY, 1.0]), Ok(f64::INFINITY));
    }

    #[test]
    fn variadic_functions_need_at_least_one_operand() {
        for name in ["max", "min", "sum", "avg"] {
            let e = call(name, &[]).unwrap_err();
            assert_eq!(e.status, Status::InvalidArgument, "{name}()");
        }
        let many: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(call("sum", &many), Ok(5050.0));
        assert_eq!(call("max", &many), Ok(100.0));
    }

    #[test]
    fn clamp_limits_to_the_range() {
        assert_eq!(call("clamp", &[5.0, 0.0, 10.0]), Ok(5.0));
        assert_eq!(call("clamp", &[-5.0, 0.0, 10.0]), Ok(0.0));
        assert_eq!(call("clamp", &[15.0, 0.0, 10.0]), Ok(10.0));
        assert_eq!(call("clamp", &[15.0, 3.0, 3.0]), Ok(3.0));
        assert!(call("clamp", &[f64::NAN, 0.0, 1.0]).unwrap().is_nan());
    }

    #[test]
    fn clamp_rejects_bad_bounds_without_panicking() {
        let e = call("clamp", &[5.0, 10.0, 0.0]).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        assert_eq!(
            e.message,
            "clamp: lower bound 10 is greater than upper bound 0"
        );
        let e = call("clamp", &[5.0, f64::NAN, 1.0]).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        assert_eq!(
            call("clamp", &[5.0, 0.0, f64::NAN]).unwrap_err().status,
            Status::InvalidArgument
        );
    }

    #[test]
    fn clamp_takes_exactly_three_operands() {
        assert_eq!(
            call("clamp", &[1.0, 2.0]).unwrap_err().status,
            Status::InvalidArgument
        );
        assert_eq!(
            call("clamp", &[1.0, 2.0, 3.0, 4.0]).unwrap_err().status,
            Status::InvalidArgument
        );
    }

    #[test]
    fn declares_functions_with_their_arity() {
        let arity = |name: &str| {
            let op = <Stats as Plugin>::OPERATIONS
                .iter()
                .find(|op| op.name == name)
                .unwrap();
            match op.kind {
                OperationKind::Function {
                    min_arity,
                    max_arity,
                } => (min_arity, max_arity),
                OperationKind::Infix { .. } => panic!("{name} is not a function"),
            }
        };
        for name in ["max", "min", "sum", "avg"] {
            assert_eq!(arity(name), (1, None), "{name}");
        }
        assert_eq!(arity("clamp"), (3, Some(3)));
    }

    #[test]
    fn plugin_entry_returns_a_descriptor() {
        let d = plugin_entry();
        assert!(!d.is_null());
        // SAFETY: a non-NULL descriptor from `plugin_entry` lives for the rest of the process.
        let d = unsafe { &*d };
        assert_eq!(d.magic, calc_sdk::abi::CALC_PLUGIN_MAGIC);
        assert_eq!(d.operation_count, 5);
        assert_eq!(
            d.operation_size as usize,
            size_of::<calc_sdk::abi::calc_operation_t>()
        );
        // SAFETY: the SDK fills `name` with a NUL-terminated string owned by the descriptor.
        assert_eq!(unsafe { CStr::from_ptr(d.name) }.to_str(), Ok("stats"));
    }
}
