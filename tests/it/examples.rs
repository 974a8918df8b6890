//! Every example plugin, C and Rust, loaded by the Rust host; expressions mixing both.

use calc_host::{EvalError, PluginManager};
use calc_sdk::Status;

fn manager() -> PluginManager {
    let mut m = PluginManager::new();
    let loaded = m
        .load_dir(calc_tests::examples_dir())
        .expect("examples dir is readable");
    assert_eq!(loaded, 8, "failures: {:?}", m.failures());
    m
}

#[test]
fn all_examples_load_with_their_metadata() {
    let m = manager();
    let mut names: Vec<&str> = m.plugins().map(|p| p.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["add", "cmath", "cpp_trig", "div", "mul", "pow", "stats", "sub"]
    );
    assert!(m.failures().is_empty());
    assert!(m.conflicts().is_empty(), "{:?}", m.conflicts());
    for p in m.plugins() {
        assert_eq!(p.abi_version, calc_tests::abi(), "{}", p.name);
        assert_eq!(p.version.to_string(), "1.0.0", "{}", p.name);
        assert_eq!(p.author, "calc examples", "{}", p.name);
        assert!(p.path.is_absolute());
        assert!(!p.operations.is_empty());
    }
    let stats = m.plugins().find(|p| p.name == "stats").unwrap();
    let max = stats.operations.iter().find(|o| o.name == "max").unwrap();
    assert_eq!(max.arity(), (1, None), "max is variadic");
}

#[test]
fn expressions_mix_c_and_rust_operators() {
    let m = manager();
    let cases = [
        ("2 * (3 + 4)", 14.0),              // Rust *, C +
        ("2 ^ 10 - max(3, 4) / 2", 1022.0), // C ^ and -, Rust max and /
        ("1 + 2 * 3", 7.0),                 // * binds tighter than +
        ("2 ^ 3 ^ 2", 512.0),               // ^ is right-associative
        ("10 - 3 - 2", 5.0),                // - is left-associative
        ("2 * 3 ^ 2", 18.0),                // ^ binds tighter than *
        ("-2 ^ 2", -4.0),                   // unary minus binds looser than ^
        ("2 * -3", -6.0),
        ("-(1 + 2)", -3.0),
        ("sqrt(16) + abs(-3)", 7.0),
        ("hypot(3, 4)", 5.0),
        ("max(1, 9, 3) - min(4, 2, 8)", 7.0),
        ("avg(1, 2, 3, 4)", 2.5),
        ("clamp(15, 0, 10)", 10.0),
        ("7 % 3", 1.0),
        ("1.5e1 / .5", 30.0),
        ("add(2, 3)", 5.0), // an infix operator called by name
        ("max(2 ^ 3, sum(1, 2, 3))", 8.0),
        ("sin(0) + cos(0) * 3", 3.0), // C++ functions beside Rust *
        ("atan2(0, 1) + sqrt(16) * 2 ^ 2", 16.0), // C++, C and C
    ];
    for (expr, want) in cases {
        assert_eq!(m.eval(expr), Ok(want), "{expr}");
    }
}

#[test]
fn operations_resolve_to_handles_by_name_or_symbol() {
    let m = manager();
    let add = m.operation("add").expect("add is loaded");
    assert_eq!(add.call(&[10.0, 5.0]), Ok(15.0));
    assert_eq!(add.plugin().name, "add");
    let div = m.operation("/").expect("/ resolves by symbol");
    assert_eq!(div.info().name, "div");
    assert_eq!(div.call(&[9.0, 4.0]), Ok(2.25));
    assert!(m.operation("nope").is_none());
}

#[test]
fn division_by_zero_is_an_error_naming_operation_and_plugin() {
    let m = manager();
    let Err(EvalError::Call(e)) = m.eval("1 + 4 / (2 - 2)") else {
        panic!("expected a call error")
    };
    assert_eq!(e.status, Status::DivisionByZero);
    assert_eq!((e.operation.as_str(), e.plugin.as_str()), ("div", "div"));
    assert_eq!(e.to_string(), "div (plugin div): division by zero");
    let Err(EvalError::Call(e)) = m.eval("5 % 0") else {
        panic!()
    };
    assert_eq!(e.status, Status::DivisionByZero);
}

#[test]
fn domain_and_overflow_errors_from_c_plugins() {
    let m = manager();
    let Err(EvalError::Call(e)) = m.eval("sqrt(-1)") else {
        panic!()
    };
    assert_eq!(
        (e.status, e.plugin.as_str()),
        (Status::DomainError, "cmath")
    );
    assert!(e.message.contains("negative"), "{}", e.message);
    let Err(EvalError::Call(e)) = m.eval("10 ^ 400") else {
        panic!()
    };
    assert_eq!(e.status, Status::Overflow);
}

#[test]
fn wrong_operand_count_is_refused_before_the_plugin_runs() {
    let m = manager();
    let e = m.operation("add").unwrap().call(&[1.0]).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    assert_eq!(e.message, "expects 2 operands, got 1");
    let e = m.operation("max").unwrap().call(&[]).unwrap_err();
    assert_eq!(e.message, "expects at least 1 operand, got 0");
    // Around each bound: variadic (min 1), exact (3), and a many-operand variadic call.
    let max = m.operation("max").unwrap();
    assert_eq!(max.call(&[5.0]), Ok(5.0));
    assert_eq!(
        max.call(&(0..100).map(f64::from).collect::<Vec<_>>()),
        Ok(99.0)
    );
    let clamp = m.operation("clamp").unwrap();
    for n in [0, 2, 4, 9] {
        let e = clamp.call(&vec![1.0; n]).unwrap_err();
        assert_eq!(e.message, format!("expects 3 operands, got {n}"), "{n}");
    }
    assert_eq!(clamp.call(&[5.0, 0.0, 1.0]), Ok(1.0));
}

#[test]
fn parse_errors_report_the_column() {
    let m = manager();
    let cases = [
        (
            "2 +* 3",
            "expected a number, '(' or a function call, found '*'",
            4,
        ),
        ("(1 + 2", "expected ')', found end of expression", 7),
        (
            "2 @ 3",
            "unknown operator '@' (no loaded plugin provides it)",
            3,
        ),
        (
            "1 + foo(2)",
            "unknown function 'foo' (no loaded plugin provides it)",
            5,
        ),
        ("max()", "max expects at least 1 argument, got 0", 1),
        ("clamp(1, 2)", "clamp expects 3 arguments, got 2", 1),
        ("1 2", "unexpected number 2", 3),
        ("", "unexpected end of expression", 1),
        ("sqrt 4", "expected '(' after function name 'sqrt'", 5),
        (
            "2 # 3",
            "unknown operator '#' (no loaded plugin provides it)",
            3,
        ),
    ];
    for (expr, message, column) in cases {
        assert_eq!(
            m.eval(expr),
            Err(EvalError::Parse {
                message: message.into(),
                column
            }),
            "{expr:?}"
        );
    }
}

#[test]
fn handles_are_callable_from_many_threads() {
    let m = manager();
    let add = m.operation("add").unwrap().clone();
    let mul = m.operation("mul").unwrap().clone();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (add, mul) = (add.clone(), mul.clone());
            s.spawn(move || {
                for i in 0..10_000 {
                    let x = f64::from(i + t);
                    assert_eq!(add.call(&[x, 1.0]), Ok(x + 1.0));
                    assert_eq!(mul.call(&[x, 2.0]), Ok(x * 2.0));
                }
            });
        }
    });
}

#[test]
fn a_handle_keeps_its_plugin_loaded_after_the_manager_is_gone() {
    let add = manager().operation("add").unwrap().clone();
    assert_eq!(add.call(&[2.0, 2.0]), Ok(4.0));
}

#[test]
fn variables_are_substituted_at_compile_time() {
    let m = manager();
    let vars = |name: &str| match name {
        "x" => Some(3.0),
        "max" => Some(100.0), // a variable may share a function's name: `max(` is still the call
        _ => None,
    };
    let e = calc_host::expr::compile_with_vars(&m, "x ^ 2 + max(x, 1) + max", &vars).unwrap();
    assert_eq!(e.eval(), Ok(9.0 + 3.0 + 100.0));
    assert_eq!(
        calc_host::expr::compile_with_vars(&m, "y + 1", &vars).unwrap_err(),
        EvalError::Parse {
            message: "unknown variable 'y'".into(),
            column: 1
        }
    );
}

#[test]
fn binary_handles_check_the_arity_once() {
    let m = manager();
    let add = m
        .operation("add")
        .unwrap()
        .binary()
        .expect("an infix operator takes two");
    assert_eq!(add.call(2.0, 3.0), Ok(5.0));
    assert!(
        m.operation("max").unwrap().binary().is_some(),
        "variadic from 1 accepts two"
    );
    assert!(m.operation("hypot").unwrap().binary().is_some());
    assert!(
        m.operation("sqrt").unwrap().binary().is_none(),
        "exactly one"
    );
    assert!(
        m.operation("clamp").unwrap().binary().is_none(),
        "exactly three"
    );
    let div = m.operation("/").unwrap().binary().unwrap();
    assert_eq!(
        div.call(1.0, 0.0).unwrap_err().status,
        Status::DivisionByZero
    );
}

/// Every operand count from none to 130 is accepted exactly when the declared arity allows it,
/// for fixed, bounded and variadic operations, by scalar and batch calls alike (the handle
/// checks both bounds with one wrapping comparison).
#[test]
fn every_operand_count_is_checked_against_the_declared_arity() {
    let m = manager();
    for name in ["sqrt", "clamp", "hypot", "+", "max"] {
        let op = m.operation(name).unwrap();
        let (min, max) = op.info().arity();
        for n in 0..=130usize {
            let allowed = n >= min as usize && !matches!(max, Some(m) if n > m as usize);
            // clamp(x, lo, hi) needs lo <= hi; ones satisfy every operation here.
            let args = vec![1.0; n];
            let scalar = op.call(&args);
            let column = [1.0];
            let columns = vec![&column[..]; n];
            let mut out = [0.0];
            let batch = op.call_batch(&columns, &mut out);
            if allowed {
                assert!(scalar.is_ok(), "{name} with {n}: {scalar:?}");
                assert!(batch.is_ok(), "{name} with {n} (batch): {batch:?}");
                assert_eq!(Ok(out[0]), scalar, "{name} with {n}");
            } else {
                let e = scalar.unwrap_err();
                assert_eq!(e.status, Status::InvalidArgument, "{name} with {n}");
                assert!(e.to_string().contains(&format!("got {n}")), "{e}");
                let (row, e) = batch.unwrap_err();
                assert_eq!((row, e.status), (0, Status::InvalidArgument), "{name} {n}");
            }
        }
    }
}
