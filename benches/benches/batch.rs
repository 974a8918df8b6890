//! Batch execution (ABI 1.2 `execute_batch`): `OpHandle::call_batch` over arrays of operand
//! pairs, against a Rust loop doing the same arithmetic inline, and against calling
//! `OpHandle::call` once per pair, measured side by side in the same run.
//!
//! Plugins: the C example `add` (a plain C loop as its batch entry, built with the examples'
//! flags), the same source built against the frozen ABI 1.0 header (no batch entry: the host
//! falls back to one `execute` per row), and the Rust example `mul` (the SDK's generated batch
//! trampoline) in a release build.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;

use calc_benches::{compare, example_plugins, plugin, quick, row};
use calc_host::{OpHandle, PluginManager};

/// `examples-c/add` built against the frozen ABI 1.0 header: no `execute_batch`.
fn add_v1_0(dir: &Path) -> PathBuf {
    let root = xtask::workspace_root();
    let out = dir.join(xtask::build::library_file_name("add_v1_0"));
    let status = Command::new(xtask::build::c_compiler())
        .args(xtask::build::C_PLUGIN_FLAGS)
        .arg("-I")
        .arg(root.join("tests/abi/v1.0"))
        .arg(root.join("examples-c/add/plugin.c"))
        .arg("-o")
        .arg(&out)
        .status()
        .expect("the C compiler runs");
    assert!(status.success(), "building {}", out.display());
    out
}

/// One manager per library, so that plugins with the same name can coexist.
fn load(path: &Path, operation: &str) -> (PluginManager, OpHandle) {
    let mut m = PluginManager::new();
    m.load_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let op = m.operation(operation).expect("operation");
    (m, op)
}

/// Every row of the batch through `call_batch`.
fn batched<'a>(op: &'a OpHandle, a: &'a [f64], b: &'a [f64]) -> impl FnMut(u64) + 'a {
    let mut out = vec![0.0; a.len()];
    move |_| {
        let (a, b) = black_box((a, b));
        op.call_batch(&[a, b], &mut out).expect("batch");
        black_box(&mut out);
    }
}

/// Every row through `OpHandle::call`, one call per row.
fn per_call<'a>(op: &'a OpHandle, a: &'a [f64], b: &'a [f64]) -> impl FnMut(u64) + 'a {
    let mut out = vec![0.0; a.len()];
    move |_| {
        let (a, b) = black_box((a, b));
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = op.call(&[x, y]).expect("call");
        }
        black_box(&mut out);
    }
}

/// The reference: the arithmetic inline in a Rust loop.
fn inline<'a>(
    a: &'a [f64],
    b: &'a [f64],
    f: impl Fn(f64, f64) -> f64 + 'a,
) -> impl FnMut(u64) + 'a {
    let mut out = vec![0.0; a.len()];
    move |_| {
        let (a, b) = black_box((a, b));
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = f(x, y);
        }
        black_box(&mut out);
    }
}

fn main() {
    let (rows, rounds, iters) = if quick() {
        (100_000, 3, 5)
    } else {
        (1_000_000, 21, 10)
    };
    let dir = example_plugins();
    let (_m_add, add) = load(&plugin(&dir, "add"), "add");
    let (_m_add10, add10) = load(&add_v1_0(&dir), "add");
    let (_m_mul, mul) = load(
        &calc_benches::release_rust_plugin("calc-example-mul", "mul"),
        "mul",
    );
    assert!(add.has_batch() && mul.has_batch() && !add10.has_batch());

    let a: Vec<f64> = (0..rows).map(|i| i as f64 * 0.5).collect();
    let b: Vec<f64> = (0..rows).map(|i| (i % 1000) as f64 + 1.0).collect();

    let mut inline_add = inline(&a, &b, |x, y| x + y);
    let mut inline_mul = inline(&a, &b, |x, y| x * y);
    let mut batch_add = batched(&add, &a, &b);
    let mut batch_mul = batched(&mul, &a, &b);
    let mut batch_add10 = batched(&add10, &a, &b);
    let mut call_add = per_call(&add, &a, &b);
    let mut call_mul = per_call(&mul, &a, &b);
    let t: Vec<f64> = compare(
        rounds,
        iters,
        &mut [
            ("inline add", &mut inline_add),
            ("inline mul", &mut inline_mul),
            ("batch add", &mut batch_add),
            ("batch mul", &mut batch_mul),
            ("batch add v1.0", &mut batch_add10),
            ("call add", &mut call_add),
            ("call mul", &mut call_mul),
        ],
    )
    .into_iter()
    .map(|ns_per_batch| ns_per_batch / rows as f64)
    .collect();

    println!(
        "batches of {rows} pairs, median of {rounds} rounds x {iters} batches, ns per element \
         (add: C example plugin, mul: Rust example plugin, release build)"
    );
    let inline_add = ("Rust inline loop a + b", t[0]);
    let inline_mul = ("Rust inline loop a * b", t[1]);
    row(
        "call_batch add (C execute_batch)",
        inline_add,
        t[2],
        "ns",
        Some(1.2),
    );
    row(
        "call_batch mul (Rust SDK execute_batch)",
        inline_mul,
        t[3],
        "ns",
        Some(1.2),
    );
    row(
        "call_batch add, ABI 1.0 build (per-row)",
        inline_add,
        t[4],
        "ns",
        None,
    );
    row("OpHandle::call per row, add", inline_add, t[5], "ns", None);
    row("OpHandle::call per row, mul", inline_mul, t[6], "ns", None);
    row(
        "call_batch add vs OpHandle::call per row",
        ("OpHandle::call per row, add", t[5]),
        t[2],
        "ns",
        None,
    );
    row(
        "call_batch mul vs OpHandle::call per row",
        ("OpHandle::call per row, mul", t[6]),
        t[3],
        "ns",
        None,
    );
    row(
        "ABI 1.0 fallback vs OpHandle::call per row",
        ("OpHandle::call per row, add", t[5]),
        t[4],
        "ns",
        None,
    );
}
