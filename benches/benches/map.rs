//! Compiled expressions over arrays: `x^2 + 3*x - 1` over 1M rows through
//! `calc_host::expr::Program` (operation by operation, in batches of `CHUNK_ROWS` rows) against
//! the same expression hand-written as a Rust loop, measured in the same run.
//!
//! `^` is the C `pow` plugin, which calls libm's `pow`, so the fair reference is
//! `x.powf(e) + 3.0 * x - 1.0` with `e` = 2.0 hidden from the optimiser (a literal `powf(2.0)`
//! is compiled to `x * x`); `x * x + 3.0 * x - 1.0` is printed too. The Rust plugin `mul` (`*`)
//! is built with the release profile, like the benchmark; `+`, `-` and `^` are C plugins built
//! with `-O2`.

use std::hint::black_box;
use std::path::PathBuf;

use calc_benches::{compare, example_plugins, plugin, quick, row};
use calc_host::expr::{compile_program, CHUNK_ROWS};

/// The example plugins the expression needs, `mul` from a release build, in their own
/// directory.
fn plugins() -> PathBuf {
    let examples = example_plugins();
    let dir = xtask::build::target_dir().join("calc-bench/map-plugins");
    std::fs::create_dir_all(&dir).expect("plugin directory");
    for name in ["add", "sub", "pow"] {
        xtask::build::copy_fresh(&plugin(&examples, name), &plugin(&dir, name)).expect("copy");
    }
    let mul = calc_benches::release_rust_plugin("calc-example-mul", "mul");
    xtask::build::copy_fresh(&mul, &plugin(&dir, "mul")).expect("copy");
    dir
}

fn main() {
    let (rounds, rows) = if quick() {
        (3, 100_000)
    } else {
        (21, 1_000_000)
    };
    let mut manager = calc_host::PluginManager::new();
    manager.load_dir(&plugins()).expect("plugins load");
    assert!(manager.failures().is_empty(), "{:?}", manager.failures());
    let batch = |op: &str| {
        let handle = manager.operation(op).expect("loaded");
        if handle.has_batch() {
            "execute_batch"
        } else {
            "execute per row"
        }
    };
    let program = compile_program(&manager, "x^2 + 3*x - 1", &["x"]).expect("compiles");
    let xs: Vec<f64> = (0..rows).map(|i| i as f64 * 1e-3 - 300.0).collect();
    let mut out = vec![0.0; rows];

    let mut hand_mul = |_: u64| {
        let xs = black_box(&xs[..]);
        for (o, &x) in out.iter_mut().zip(xs) {
            *o = x * x + 3.0 * x - 1.0;
        }
        black_box(&mut out);
    };
    let mut reference = vec![0.0; rows];
    let e = black_box(2.0f64);
    let mut hand_powf = |_: u64| {
        let xs = black_box(&xs[..]);
        for (o, &x) in reference.iter_mut().zip(xs) {
            *o = x.powf(e) + 3.0 * x - 1.0;
        }
        black_box(&mut reference);
    };
    let mut batched = vec![0.0; rows];
    let mut calc = |_: u64| {
        program
            .eval_into(&[black_box(&xs[..])], &mut batched)
            .expect("no row fails");
        black_box(&mut batched);
    };
    let t = compare(
        rounds,
        1,
        &mut [
            ("x*x", &mut hand_mul),
            ("powf", &mut hand_powf),
            ("program", &mut calc),
        ],
    );
    assert!(
        reference.iter().zip(&batched).all(|(a, b)| a == b),
        "the program's results differ from the Rust loop's"
    );
    let per_row = |ns: f64| ns / rows as f64;
    println!(
        "`x^2 + 3*x - 1` over {rows} rows ({CHUNK_ROWS}-row chunks), median of {rounds} rounds; \
         ^ pow: {}, * mul: {}, + add: {}, - sub: {}",
        batch("pow"),
        batch("mul"),
        batch("add"),
        batch("sub")
    );
    row(
        "Program::eval_into (ns per row)",
        ("Rust loop x.powf(2.0) + 3x - 1", per_row(t[1])),
        per_row(t[2]),
        "ns",
        Some(2.0),
    );
    row(
        "Program::eval_into (ns per row)",
        ("Rust loop x*x + 3.0*x - 1.0", per_row(t[0])),
        per_row(t[2]),
        "ns",
        None,
    );
}
