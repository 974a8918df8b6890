//! Property tests of the expression parser and evaluator (`calc_host::expr`), with the example
//! plugins loaded:
//! - any input (arbitrary bytes, arbitrary Unicode, soups of expression fragments) compiles or
//!   fails with a one-line error, and never panics; what compiles evaluates to a value or a
//!   one-line error, and the column evaluator agrees with the scalar one on it;
//! - generated valid expressions (numbers, `+ - * / % ^`, unary minus and plus, parentheses,
//!   the example plugins' functions, variables), printed with the fewest parentheses their
//!   precedence allows, evaluate as a reference evaluator written here says, errors included;
//! - the column evaluator (`Program`, the `calc map` path) agrees row by row with the scalar one;
//! - deep nesting (100 000 parentheses, unary minus, operators, calls) is an error, not a stack
//!   overflow, and nesting up to the limit still works;
//! - the C API's string inputs take arbitrary bytes;
//! - the C API's batch call (`calc_op_call_batch`) agrees row by row with scalar calls of the
//!   same operation (C, C++ and Rust plugins, with and without batch entries), its failing row
//!   and status included, and refuses an operand count outside the arity before any row.
//!
//! Cases per property: a few hundred by default (seconds in debug); set `PROPTEST_CASES` for
//! more, and `PROPTEST_RNG_SEED` to replay a run (see docs/TESTING.md).

use std::cell::Cell;
use std::ffi::{c_char, CString};

use calc_host::expr::{compile, compile_program, compile_with_vars, variables, MAX_DEPTH};
use calc_host::{EvalError, PluginManager};
use calc_sdk::Status;
use calc_tests::examples_dir;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[path = "support/proptest_runner.rs"]
mod proptest_runner;
use proptest_runner::runner;

fn manager() -> PluginManager {
    let mut m = PluginManager::new();
    m.load_dir(examples_dir()).expect("examples load");
    assert!(m.failures().is_empty(), "{:?}", m.failures());
    m
}

/// The same outcome, NaN equal to NaN, -0 different from 0.
fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Equal within floating-point tolerance (NaN equal to NaN).
fn close(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

/// An error as the standards want it: one non-empty line; a parse error's column within the
/// input (or just past its end).
fn check_error(src: &str, e: &EvalError) -> Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(!text.trim().is_empty(), "{src:?}: empty error");
    prop_assert!(
        !text.contains(['\n', '\r']),
        "{src:?}: error on several lines: {text:?}"
    );
    if let EvalError::Parse { column, .. } = e {
        let end = src.chars().count() + 1;
        prop_assert!(
            (1..=end).contains(column),
            "{src:?}: column {column} outside 1..={end}: {text}"
        );
    }
    Ok(())
}

/// Whatever `src` is: compiling and evaluating it gives a value or a one-line error, and the
/// column evaluator (no variables, 3 rows) agrees with the scalar evaluator.
fn any_input(m: &PluginManager, src: &str) -> Result<(), TestCaseError> {
    let _ = variables(m, src);
    let vars = |name: &str| (name == "x").then_some(2.5);
    match compile_with_vars(m, src, &vars) {
        Ok(e) => {
            if let Err(err) = e.eval() {
                check_error(src, &err)?;
            }
        }
        Err(err) => check_error(src, &err)?,
    }
    let scalar = compile(m, src);
    let program = compile_program(m, src, &[]);
    match (&scalar, &program) {
        (Ok(e), Ok(p)) => {
            let mut out = vec![0.0; 3];
            match (e.eval(), p.eval_into(&[], &mut out)) {
                (Ok(v), Ok(())) => {
                    for o in out {
                        prop_assert!(same(v, o), "{src:?}: scalar {v}, column {o}");
                    }
                }
                (Err(a), Err((row, b))) => {
                    check_error(src, &a)?;
                    prop_assert_eq!(row, 0, "{:?}", src);
                    prop_assert_eq!(a, b, "{:?}", src);
                }
                (a, b) => prop_assert!(false, "{src:?}: scalar {a:?}, column {b:?}"),
            }
        }
        (Err(a), Err(b)) => {
            check_error(src, a)?;
            check_error(src, b)?;
        }
        (a, b) => prop_assert!(
            false,
            "{src:?}: compiles as an expression: {}, as a program: {}",
            a.is_ok(),
            b.is_ok()
        ),
    }
    Ok(())
}

#[test]
fn arbitrary_bytes_compile_or_give_a_one_line_error() {
    let m = manager();
    runner(512)
        .run(&proptest::collection::vec(any::<u8>(), 0..80), |bytes| {
            any_input(&m, &String::from_utf8_lossy(&bytes))
        })
        .unwrap();
}

#[test]
fn arbitrary_unicode_compiles_or_gives_a_one_line_error() {
    let m = manager();
    runner(512)
        .run(&proptest::collection::vec(any::<char>(), 0..60), |chars| {
            any_input(&m, &chars.into_iter().collect::<String>())
        })
        .unwrap();
}

/// Fragments of expressions, valid and not, glued at random: reaches far deeper into the parser
/// than random characters do.
const FRAGMENTS: &[&str] = &[
    "(", "(", ")", ")", ",", "+", "-", "-", "*", "/", "%", "^", "**", "--", "+-", "<", "!", "~",
    "1", "2.5", "0", ".5", "1e3", "1e", "1e-400", "1e400", "1.2.3", "007", "x", "y", "max", "min",
    "sum", "avg", "clamp", "sqrt", "abs", "floor", "hypot", "sin", "atan2", "pow", "add", "mul",
    "nosuch", "_", "é", "ß", "∑", "½", "٣", " ", " ", "\t", "\n", "\u{0}", "\u{1b}", "\u{7f}",
    "\u{200b}", "\u{2028}", "\u{feff}", "\u{fffd}", "🦀",
];

#[test]
fn fragment_soups_compile_or_give_a_one_line_error() {
    let m = manager();
    let soup = proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..40);
    runner(1024)
        .run(&soup, |parts| any_input(&m, &parts.concat()))
        .unwrap();
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

impl Bin {
    const ALL: [Bin; 6] = [Bin::Add, Bin::Sub, Bin::Mul, Bin::Div, Bin::Mod, Bin::Pow];

    fn symbol(self) -> &'static str {
        match self {
            Bin::Add => "+",
            Bin::Sub => "-",
            Bin::Mul => "*",
            Bin::Div => "/",
            Bin::Mod => "%",
            Bin::Pow => "^",
        }
    }

    /// As the example plugins declare them.
    fn precedence(self) -> i32 {
        match self {
            Bin::Add | Bin::Sub => 10,
            Bin::Mul | Bin::Div | Bin::Mod => 20,
            Bin::Pow => 40,
        }
    }

    fn right_associative(self) -> bool {
        self == Bin::Pow
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Sqrt,
    Abs,
    Floor,
    Ceil,
    Hypot,
    Sin,
    Cos,
    Atan2,
    Max,
    Min,
    Sum,
    Avg,
    Clamp,
}

impl Func {
    const ALL: [Func; 13] = [
        Func::Sqrt,
        Func::Abs,
        Func::Floor,
        Func::Ceil,
        Func::Hypot,
        Func::Sin,
        Func::Cos,
        Func::Atan2,
        Func::Max,
        Func::Min,
        Func::Sum,
        Func::Avg,
        Func::Clamp,
    ];

    fn name(self) -> &'static str {
        match self {
            Func::Sqrt => "sqrt",
            Func::Abs => "abs",
            Func::Floor => "floor",
            Func::Ceil => "ceil",
            Func::Hypot => "hypot",
            Func::Sin => "sin",
            Func::Cos => "cos",
            Func::Atan2 => "atan2",
            Func::Max => "max",
            Func::Min => "min",
            Func::Sum => "sum",
            Func::Avg => "avg",
            Func::Clamp => "clamp",
        }
    }

    /// The operand counts generated: the declared arity (1 to 4 for the variadic ones).
    fn arity(self) -> (usize, usize) {
        match self {
            Func::Sqrt | Func::Abs | Func::Floor | Func::Ceil | Func::Sin | Func::Cos => (1, 1),
            Func::Hypot | Func::Atan2 => (2, 2),
            Func::Clamp => (3, 3),
            Func::Max | Func::Min | Func::Sum | Func::Avg => (1, 4),
        }
    }
}

/// A valid expression.
#[derive(Debug, Clone)]
enum Ast {
    /// A literal (not negative), written in exponent form when the flag is set.
    Num(f64, bool),
    /// Variable `x`, `y` or `z`.
    Var(usize),
    Neg(Box<Ast>),
    /// Unary plus.
    Plus(Box<Ast>),
    /// Parentheses the precedence does not need.
    Paren(Box<Ast>),
    Bin(Bin, Box<Ast>, Box<Ast>),
    Call(Func, Vec<Ast>),
}

const VARIABLES: [&str; 3] = ["x", "y", "z"];

/// Binding strength of unary minus and plus (`calc_host::expr::UNARY_MINUS_PRECEDENCE`).
const UNARY: i32 = calc_host::expr::UNARY_MINUS_PRECEDENCE;

impl Ast {
    /// How tightly the printed form binds, for deciding on parentheses.
    fn precedence(&self) -> i32 {
        match self {
            Ast::Bin(op, ..) => op.precedence(),
            Ast::Neg(_) | Ast::Plus(_) => UNARY,
            _ => i32::MAX,
        }
    }

    /// Prints with the fewest parentheses the precedence rules allow (plus the `Paren` ones),
    /// with a space between tokens when `spaced`.
    fn print(&self, out: &mut String, spaced: bool) {
        let sp = if spaced { " " } else { "" };
        let wrapped = |out: &mut String, a: &Ast, parens: bool| {
            if parens {
                out.push('(');
                a.print(out, spaced);
                out.push(')');
            } else {
                a.print(out, spaced);
            }
        };
        match self {
            Ast::Num(v, false) => out.push_str(&format!("{v}")),
            Ast::Num(v, true) => out.push_str(&format!("{v:e}")),
            Ast::Var(i) => out.push_str(VARIABLES[*i]),
            Ast::Neg(a) | Ast::Plus(a) => {
                out.push(if matches!(self, Ast::Neg(_)) {
                    '-'
                } else {
                    '+'
                });
                // The operand is parsed at the unary precedence: it takes `^` but not `*`.
                wrapped(out, a, a.precedence() < UNARY);
            }
            Ast::Paren(a) => wrapped(out, a, true),
            Ast::Bin(op, l, r) => {
                let p = op.precedence();
                let lp = l.precedence();
                wrapped(out, l, lp < p || (lp == p && op.right_associative()));
                out.push_str(sp);
                out.push_str(op.symbol());
                out.push_str(sp);
                // A unary operand on the right needs no parentheses: `2 ^ -3`, `2 * -3`.
                let rp = if matches!(**r, Ast::Neg(_) | Ast::Plus(_)) {
                    i32::MAX
                } else {
                    r.precedence()
                };
                wrapped(out, r, rp < p || (rp == p && !op.right_associative()));
            }
            Ast::Call(f, args) => {
                out.push_str(f.name());
                out.push('(');
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                        out.push_str(sp);
                    }
                    a.print(out, spaced);
                }
                out.push(')');
            }
        }
    }

    fn source(&self, spaced: bool) -> String {
        let mut s = String::new();
        self.print(&mut s, spaced);
        s
    }
}

/// The reference semantics of the example plugins, errors included (operands left to right,
/// the first failure wins).
fn reference(a: &Ast, vars: &[f64; 3]) -> Result<f64, Status> {
    Ok(match a {
        Ast::Num(v, _) => *v,
        Ast::Var(i) => vars[*i],
        Ast::Neg(a) => -reference(a, vars)?,
        Ast::Plus(a) | Ast::Paren(a) => reference(a, vars)?,
        Ast::Bin(op, l, r) => {
            let (a, b) = (reference(l, vars)?, reference(r, vars)?);
            match op {
                Bin::Add => a + b,
                Bin::Sub => a - b,
                Bin::Mul => a * b,
                Bin::Div | Bin::Mod if b == 0.0 => return Err(Status::DivisionByZero),
                Bin::Div => a / b,
                Bin::Mod => a % b,
                Bin::Pow => libm_checked(&[a, b], a.powf(b))?,
            }
        }
        Ast::Call(f, args) => {
            let xs = args
                .iter()
                .map(|a| reference(a, vars))
                .collect::<Result<Vec<f64>, Status>>()?;
            match f {
                Func::Sqrt if xs[0] < 0.0 => return Err(Status::DomainError),
                Func::Sqrt => xs[0].sqrt(),
                Func::Abs => xs[0].abs(),
                Func::Floor => xs[0].floor(),
                Func::Ceil => xs[0].ceil(),
                Func::Hypot => {
                    let r = xs[0].hypot(xs[1]);
                    if r.is_infinite() && xs.iter().all(|x| x.is_finite()) {
                        return Err(Status::Overflow);
                    }
                    r
                }
                Func::Sin => libm_checked(&xs, xs[0].sin())?,
                Func::Cos => libm_checked(&xs, xs[0].cos())?,
                Func::Atan2 => libm_checked(&xs, xs[0].atan2(xs[1]))?,
                Func::Max | Func::Min if xs.iter().any(|x| x.is_nan()) => f64::NAN,
                Func::Max => xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                Func::Min => xs.iter().copied().fold(f64::INFINITY, f64::min),
                Func::Sum => xs.iter().sum(),
                Func::Avg => {
                    let n = xs.len() as f64;
                    let total: f64 = xs.iter().sum();
                    if total.is_infinite() && xs.iter().all(|x| x.is_finite()) {
                        xs.iter().map(|x| x / n).sum()
                    } else {
                        total / n
                    }
                }
                Func::Clamp => {
                    let (x, lo, hi) = (xs[0], xs[1], xs[2]);
                    if lo.is_nan() || hi.is_nan() || lo > hi {
                        return Err(Status::InvalidArgument);
                    }
                    x.clamp(lo, hi)
                }
            }
        }
    })
}

/// The C and C++ examples' rule: NaN from operands that are not NaN is a domain error, an
/// infinity from finite operands an overflow.
fn libm_checked(args: &[f64], r: f64) -> Result<f64, Status> {
    if r.is_nan() && !args.iter().any(|x| x.is_nan()) {
        Err(Status::DomainError)
    } else if r.is_infinite() && args.iter().all(|x| x.is_finite()) {
        Err(Status::Overflow)
    } else {
        Ok(r)
    }
}

fn literal() -> impl Strategy<Value = Ast> {
    let value = prop_oneof![
        4 => (0u32..=10).prop_map(f64::from),
        3 => 0.0..100.0f64,
        1 => Just(0.5),
        1 => Just(1e300),
        1 => Just(1e-300),
        1 => 0.0..1.0f64,
    ];
    (value, any::<bool>()).prop_map(|(v, exp)| Ast::Num(v, exp))
}

fn expression() -> impl Strategy<Value = Ast> {
    let leaf = prop_oneof![3 => literal(), 1 => (0..3usize).prop_map(Ast::Var)];
    leaf.prop_recursive(6, 48, 4, |inner| {
        let operand = inner.clone();
        let call = proptest::sample::select(&Func::ALL[..]).prop_flat_map(move |f| {
            let (lo, hi) = f.arity();
            proptest::collection::vec(operand.clone(), lo..=hi)
                .prop_map(move |args| Ast::Call(f, args))
        });
        prop_oneof![
            6 => (proptest::sample::select(&Bin::ALL[..]), inner.clone(), inner.clone())
                .prop_map(|(op, l, r)| Ast::Bin(op, Box::new(l), Box::new(r))),
            2 => inner.clone().prop_map(|a| Ast::Neg(Box::new(a))),
            1 => inner.clone().prop_map(|a| Ast::Plus(Box::new(a))),
            1 => inner.prop_map(|a| Ast::Paren(Box::new(a))),
            3 => call,
        ]
    })
}

fn variable_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -10.0..10.0f64,
        3 => (-5i32..=5).prop_map(f64::from),
        1 => Just(0.0),
        1 => Just(-0.0),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(1e300),
    ]
}

fn row() -> impl Strategy<Value = [f64; 3]> {
    [variable_value(), variable_value(), variable_value()]
}

#[test]
fn valid_expressions_agree_with_the_reference_evaluator() {
    let m = manager();
    let (oks, errs) = (Cell::new(0), Cell::new(0));
    runner(512)
        .run(
            &(expression(), row(), any::<bool>()),
            |(ast, vars, spaced)| {
                let src = ast.source(spaced);
                let lookup =
                    |name: &str| VARIABLES.iter().position(|v| *v == name).map(|i| vars[i]);
                let compiled = compile_with_vars(&m, &src, &lookup);
                let e = match compiled {
                    Ok(e) => e,
                    Err(e) => return Err(TestCaseError::fail(format!("{src:?}: {e}"))),
                };
                let want = reference(&ast, &vars);
                match (e.eval(), want) {
                    (Ok(got), Ok(want)) => {
                        oks.set(oks.get() + 1);
                        prop_assert!(
                            close(got, want),
                            "{src:?} with {vars:?}: host {got}, reference {want}"
                        );
                    }
                    (Err(EvalError::Call(got)), Err(want)) => {
                        errs.set(errs.get() + 1);
                        check_error(&src, &EvalError::Call(got.clone()))?;
                        prop_assert_eq!(got.status, want, "{:?} with {:?}: {}", src, vars, got);
                    }
                    (got, want) => prop_assert!(
                        false,
                        "{src:?} with {vars:?}: host {got:?}, reference {want:?}"
                    ),
                }
                Ok(())
            },
        )
        .unwrap();
    // The generator is useful only if it exercises both outcomes.
    let (oks, errs) = (oks.get(), errs.get());
    assert!(oks > 0 && errs > 0, "{oks} values, {errs} errors");
}

#[test]
fn column_evaluation_agrees_with_scalar_evaluation_row_by_row() {
    let m = manager();
    let rows = proptest::collection::vec(row(), 1..12);
    runner(256)
        .run(&(expression(), rows), |(ast, rows)| {
            let src = ast.source(true);
            let program = compile_program(&m, &src, &VARIABLES)
                .map_err(|e| TestCaseError::fail(format!("{src:?}: {e}")))?;
            let columns: Vec<Vec<f64>> = (0..3)
                .map(|k| rows.iter().map(|r| r[k]).collect())
                .collect();
            let columns: Vec<&[f64]> = columns.iter().map(|c| c.as_slice()).collect();
            let scalar: Vec<Result<f64, EvalError>> = rows
                .iter()
                .map(|r| {
                    let lookup =
                        |name: &str| VARIABLES.iter().position(|v| *v == name).map(|i| r[i]);
                    compile_with_vars(&m, &src, &lookup)
                        .expect("compiles")
                        .eval()
                })
                .collect();
            let mut out = Vec::new();
            let got = program.eval_columns(&columns, &mut out);
            let first_failure = scalar.iter().position(Result::is_err);
            match (got, first_failure) {
                (Ok(()), None) => prop_assert_eq!(out.len(), rows.len()),
                (Err((row, e)), Some(first)) => {
                    prop_assert_eq!(row, first, "{:?}: first failing row", src);
                    prop_assert_eq!(&e, scalar[first].as_ref().unwrap_err(), "{:?}", src);
                    prop_assert_eq!(out.len(), first);
                }
                (got, first) => prop_assert!(
                    false,
                    "{src:?} over {rows:?}: columns {got:?}, scalar fails first at {first:?}"
                ),
            }
            for (r, (o, s)) in out.iter().zip(&scalar).enumerate() {
                let s = *s.as_ref().unwrap();
                prop_assert!(same(*o, s), "{src:?} row {r}: column {o}, scalar {s}");
            }
            Ok(())
        })
        .unwrap();
}

/// Stack of the threads [`on_small_stack`] starts: 2 MiB in debug builds (the default of a
/// spawned Rust thread, test threads included), 512 KiB in optimised ones.
const SMALL_STACK: usize = if cfg!(debug_assertions) {
    2 << 20
} else {
    512 << 10
};

/// Runs `f` on a thread with a [`SMALL_STACK`]: a parser or evaluator that recursed without
/// bound would overflow it (and abort the test process).
fn on_small_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(SMALL_STACK)
            .spawn_scoped(s, f)
            .expect("thread starts")
            .join()
            .expect("no panic")
    })
}

/// Deeply nested inputs, each `n` levels deep (or just over, for "mixed" when `n` is over
/// the limit).
fn nested(n: usize) -> Vec<(&'static str, String)> {
    let k = if n > MAX_DEPTH { n.div_ceil(3) } else { n / 3 };
    vec![
        (
            "parentheses",
            format!("{}1{}", "(".repeat(n), ")".repeat(n)),
        ),
        ("unclosed parentheses", "(".repeat(n)),
        ("unary minus", format!("{}1", "-".repeat(n))),
        ("unary minus, spaced", format!("{}1", "- ".repeat(n))),
        ("unary plus", format!("{}1", "+".repeat(n))),
        ("a left-associative chain", format!("1{}", "+1".repeat(n))),
        ("a right-associative chain", format!("1{}", "^1".repeat(n))),
        (
            "nested calls",
            format!("{}1{}", "abs(".repeat(n), ")".repeat(n)),
        ),
        (
            "nested variadic calls",
            format!("{}1{}", "max(1,".repeat(n), ")".repeat(n)),
        ),
        // Three levels per repetition: a sign, parentheses and an operator.
        ("mixed", format!("{}x{}", "-(1+".repeat(k), ")".repeat(k))),
    ]
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let m = manager();
    on_small_stack(|| {
        for n in [MAX_DEPTH + 1, 100_000] {
            for (what, src) in nested(n) {
                let e = compile(&m, &src).expect_err(what);
                let text = e.to_string();
                assert!(
                    matches!(e, EvalError::Parse { .. }) && text.contains("nested too deeply"),
                    "{what} ({n} levels): {text}"
                );
                assert!(!text.contains('\n'), "{what}: {text}");
                let x = |name: &str| (name == "x").then_some(1.0);
                assert!(compile_with_vars(&m, &src, &x).is_err(), "{what}");
                assert!(compile_program(&m, &src, &["x"]).is_err(), "{what}");
            }
        }
    });
}

#[test]
fn nesting_up_to_the_limit_still_works() {
    let m = manager();
    on_small_stack(|| {
        for (what, src) in nested(MAX_DEPTH) {
            if what == "unclosed parentheses" {
                continue;
            }
            let x = |name: &str| (name == "x").then_some(1.0);
            let e = compile_with_vars(&m, &src, &x)
                .unwrap_or_else(|e| panic!("{what} ({MAX_DEPTH} levels): {e}"));
            let value = e.eval().unwrap_or_else(|e| panic!("{what}: {e}"));
            let program = compile_program(&m, &src, &["x"]).unwrap_or_else(|e| panic!("{e}"));
            let mut out = Vec::new();
            program
                .eval_columns(&[&[1.0, 1.0]], &mut out)
                .unwrap_or_else(|(_, e)| panic!("{what}: {e}"));
            assert!(out.iter().all(|o| same(*o, value)), "{what}: {out:?}");
            let expected = match what {
                "a left-associative chain" => MAX_DEPTH as f64 + 1.0,
                "unary minus" | "unary minus, spaced" if MAX_DEPTH % 2 == 1 => -1.0,
                "mixed" => value, // checked against the program only
                _ => 1.0,
            };
            assert_eq!(value, expected, "{what}");
        }
    });
}

/// Arbitrary bytes (without NUL) as a C string.
fn c_string(bytes: &[u8]) -> CString {
    CString::new(
        bytes
            .iter()
            .map(|&b| if b == 0 { b'(' } else { b })
            .collect::<Vec<u8>>(),
    )
    .expect("no NUL")
}

#[test]
fn c_api_string_inputs_take_arbitrary_bytes() {
    use calc_host::capi::*;
    let dir = CString::new(examples_dir().to_str().expect("UTF-8 path")).unwrap();
    let mut host = std::ptr::null_mut();
    // SAFETY: `host` is writable; `dir` is a NUL-terminated string.
    unsafe {
        assert_eq!(calc_host_new(&mut host), 0);
        assert_eq!(
            calc_host_load_dir(host, dir.as_ptr(), std::ptr::null_mut()),
            0
        );
    }
    let message = || {
        // SAFETY: the message is NUL-terminated and valid until the next call on this thread.
        unsafe { std::ffi::CStr::from_ptr(calc_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    };
    let bytes = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..60),
        proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..30)
            .prop_map(|parts| parts.concat().into_bytes()),
    ];
    runner(512)
        .run(&bytes, |bytes| {
            let s = c_string(&bytes);
            let var = c_string(&bytes[..bytes.len().min(3)]);
            let names: [*const c_char; 2] = [c"x".as_ptr(), var.as_ptr()];
            let mut value = 0.0;
            let mut expr = std::ptr::null_mut();
            let mut op = std::ptr::null_mut();
            // SAFETY: live host, NUL-terminated strings, writable outputs; the handles created
            // are freed below.
            let statuses = unsafe {
                let a = calc_host_eval(host, s.as_ptr(), &mut value);
                let a_msg = message();
                let b = calc_expr_new(host, s.as_ptr(), names.as_ptr(), 2, &mut expr);
                let b_msg = message();
                let c = calc_op_new(host, s.as_ptr(), &mut op);
                let c_msg = message();
                let mut iface = std::ptr::null_mut();
                let d = calc_iface_new(host, s.as_ptr(), 1, 0, &mut iface);
                let d_msg = message();
                // Static, as an offer's vtable must be: a valid id is accepted and kept.
                static VTABLE: [u64; 1] = [0];
                let e =
                    calc_host_offer_interface(host, s.as_ptr(), 1, 0, VTABLE.as_ptr().cast(), 8);
                let e_msg = message();
                let _ = calc_host_interface_count(host, s.as_ptr(), 1);
                unsafe extern "C" fn sink(
                    _: *mut std::ffi::c_void,
                    _: *const std::ffi::c_void,
                    _: usize,
                ) {
                }
                let f = calc_host_interface_call_bytes(
                    host,
                    s.as_ptr(),
                    1,
                    0,
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    Some(sink),
                    std::ptr::null_mut(),
                );
                let f_msg = message();
                calc_expr_free(expr);
                calc_op_free(op);
                calc_iface_free(iface);
                [
                    (a, a_msg),
                    (b, b_msg),
                    (c, c_msg),
                    (d, d_msg),
                    (e, e_msg),
                    (f, f_msg),
                ]
            };
            for (status, msg) in statuses {
                prop_assert_ne!(status, CALC_STATUS_INTERNAL, "{:?}: {}", s, msg);
                if status != 0 {
                    prop_assert!(!msg.is_empty(), "{s:?}: status {status}, no message");
                    prop_assert!(
                        !msg.contains(['\n', '\r']),
                        "{s:?}: status {status}, message {msg:?}"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    // SAFETY: created above, freed once.
    unsafe { calc_host_free(host) };
}

/// Operations of the example plugins with the operand counts a batch of them may take, each
/// implemented in C, C++ or Rust, with and without a batch entry of its own.
/// `None`: any number from the least.
const BATCH_OPS: &[(&str, usize, Option<usize>)] = &[
    ("+", 2, Some(2)),
    ("-", 2, Some(2)),
    ("*", 2, Some(2)),
    ("/", 2, Some(2)),
    ("^", 2, Some(2)),
    ("sqrt", 1, Some(1)),
    ("atan2", 2, Some(2)),
    ("max", 1, None),
    ("avg", 1, None),
];

#[test]
fn c_api_batches_agree_with_scalar_calls_row_by_row() {
    use calc_host::capi::*;
    let dir = CString::new(examples_dir().to_str().expect("UTF-8 path")).unwrap();
    let mut host = std::ptr::null_mut();
    // SAFETY: `host` is writable; `dir` is a NUL-terminated string.
    unsafe {
        assert_eq!(calc_host_new(&mut host), 0);
        assert_eq!(
            calc_host_load_dir(host, dir.as_ptr(), std::ptr::null_mut()),
            0
        );
    }
    let ops: Vec<*mut calc_op_t> = BATCH_OPS
        .iter()
        .map(|(name, _, _)| {
            let name = CString::new(*name).unwrap();
            let mut op = std::ptr::null_mut();
            // SAFETY: live host, NUL-terminated name, writable output.
            let status = unsafe { calc_op_new(host, name.as_ptr(), &mut op) };
            assert_eq!(status, 0, "{name:?}");
            op
        })
        .collect();
    let case = (0..BATCH_OPS.len()).prop_flat_map(|i| {
        let (_, min, max) = BATCH_OPS[i];
        // One more or fewer operand than the operation takes, now and then.
        let most = max.unwrap_or(5) + 1;
        (min.saturating_sub(1)..=most, 0usize..40).prop_flat_map(move |(columns, rows)| {
            (
                Just(i),
                proptest::collection::vec(
                    proptest::collection::vec(variable_value(), rows),
                    columns,
                ),
                Just(rows),
            )
        })
    });
    runner(256)
        .run(&case, |(i, columns, rows)| {
            let (name, min, max) = BATCH_OPS[i];
            let op = ops[i];
            let pointers: Vec<*const f64> = columns.iter().map(|c| c.as_ptr()).collect();
            let mut out = vec![f64::NAN; rows];
            let mut failed = usize::MAX;
            // SAFETY: live handle; `pointers` holds one pointer per column of `rows` values;
            // `out` holds `rows` values; `failed` is writable.
            let status = unsafe {
                calc_op_call_batch(
                    op,
                    pointers.as_ptr(),
                    pointers.len(),
                    rows,
                    out.as_mut_ptr(),
                    &mut failed,
                )
            };
            if columns.len() < min || max.is_some_and(|m| columns.len() > m) {
                prop_assert_eq!(
                    status,
                    calc_sdk::abi::CALC_STATUS_INVALID_ARGUMENT,
                    "{}",
                    name
                );
                prop_assert_eq!(failed, usize::MAX, "{}: an arity error names no row", name);
                return Ok(());
            }
            let end = if status == 0 { rows } else { failed };
            prop_assert!(end <= rows, "{}: failed row {} of {}", name, failed, rows);
            for r in 0..rows.min(end + 1) {
                let args: Vec<f64> = columns.iter().map(|c| c[r]).collect();
                let mut value = f64::NAN;
                // SAFETY: live handle; `args` holds `args.len()` values; `value` is writable.
                let scalar = unsafe { calc_op_call(op, args.as_ptr(), args.len(), &mut value) };
                if r < end {
                    prop_assert_eq!(
                        scalar,
                        0,
                        "{} row {} {:?}: the batch succeeded",
                        name,
                        r,
                        args
                    );
                    prop_assert!(
                        same(value, out[r]),
                        "{name} row {r} {args:?}: batch {} scalar {value}",
                        out[r]
                    );
                } else {
                    prop_assert_eq!(
                        scalar,
                        status,
                        "{} row {} {:?}: the batch failed",
                        name,
                        r,
                        args
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    for op in ops {
        // SAFETY: each created above, freed once.
        unsafe { calc_op_free(op) };
    }
    // SAFETY: created above, freed once.
    unsafe { calc_host_free(host) };
}
