//! Batch execution (ABI 1.2, `execute_batch`) through `OpHandle::call_batch`: a plugin's batch
//! entry and the host's fallback (one `execute` per row, for plugins built against 1.0 or 1.1)
//! give exactly the scalar results, stop at the first failing row, and refuse bad shapes.

use std::path::PathBuf;

use calc_host::{CallError, OpHandle, PluginManager};
use calc_sdk::Status;
use calc_tests::{
    build_c_plugin_with, c_compiler, examples_dir, library_file_name, scratch_dir, workspace_root,
};

/// Operands covering the edges: signed zeros, infinities, NaN, huge and tiny values, and an odd
/// number of rows (so a vectorised loop also runs its scalar tail).
fn operands(rows: usize, seed: f64) -> Vec<f64> {
    const EDGES: [f64; 9] = [
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        f64::MAX,
        f64::MIN_POSITIVE,
        1e-310,
        -1.5,
    ];
    (0..rows)
        .map(|r| {
            if r % 97 < EDGES.len() {
                EDGES[r % 97]
            } else {
                (r as f64 * 0.731 + seed).sin() * 1e3
            }
        })
        .collect()
}

/// `handle.call` row by row: the reference every batch must equal.
fn scalar(handle: &OpHandle, columns: &[&[f64]]) -> Vec<f64> {
    let rows = columns.first().map_or(0, |c| c.len());
    (0..rows)
        .map(|r| {
            let args: Vec<f64> = columns.iter().map(|c| c[r]).collect();
            handle
                .call(&args)
                .unwrap_or_else(|e| panic!("row {r}: {e}"))
        })
        .collect()
}

fn batch(handle: &OpHandle, columns: &[&[f64]]) -> Result<Vec<f64>, (usize, CallError)> {
    let mut out = vec![f64::NAN; columns.first().map_or(0, |c| c.len())];
    handle.call_batch(columns, &mut out).map(|()| out)
}

/// Bit-for-bit equality (NaN included).
fn assert_same(what: &str, got: &[f64], expected: &[f64]) {
    assert_eq!(got.len(), expected.len(), "{what}");
    for (r, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(
            g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan()),
            "{what}: row {r}: batch {g:?}, scalar {e:?}"
        );
    }
}

fn examples() -> PluginManager {
    let mut m = PluginManager::new();
    m.load_dir(examples_dir()).unwrap_or_else(|e| panic!("{e}"));
    m
}

/// `examples-c/add` built against each frozen header and against today's: the libraries.
fn add_builds() -> Vec<(String, PathBuf)> {
    let out = scratch_dir(&format!("batch-add-{}", std::process::id()));
    let source = workspace_root().join("examples-c/add/plugin.c");
    let mut includes = vec![("today".to_string(), workspace_root().join("include"))];
    for version in ["v1.0", "v1.1", "v1.2"] {
        includes.push((
            version.to_string(),
            workspace_root().join("tests/abi").join(version),
        ));
    }
    includes
        .into_iter()
        .map(|(label, include)| {
            let lib = out.join(library_file_name(&format!(
                "add_{}",
                label.replace('.', "_")
            )));
            build_c_plugin_with(&c_compiler(), &include, &source, &lib)
                .unwrap_or_else(|e| panic!("{e}"));
            (label, lib)
        })
        .collect()
}

#[test]
fn c_add_from_the_v1_0_and_todays_header_batches_like_its_scalar_calls() {
    let rows = 10_001;
    let (a, b) = (operands(rows, 0.0), operands(rows, 2.0));
    for (label, lib) in add_builds() {
        // Every build declares the plugin name "add": one manager each.
        let mut m = PluginManager::new();
        let info = m.load_file(&lib).unwrap_or_else(|e| panic!("{e}")).clone();
        let add = m.operation("add").expect("add");
        let minor: u16 = info
            .abi_version
            .rsplit('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        if label == "v1.0" {
            assert_eq!(info.abi_version, "1.0");
        }
        if label == "today" {
            assert_eq!(minor, calc_sdk::abi::CALC_ABI_VERSION_MINOR);
        }
        // Only a plugin built for 1.2 or later has the batch entry; older ones fall back.
        assert_eq!(
            add.has_batch(),
            minor >= 2,
            "{label}: ABI {}",
            info.abi_version
        );
        let got = batch(&add, &[&a, &b]).unwrap_or_else(|(r, e)| panic!("{label}: row {r}: {e}"));
        assert_same(&label, &got, &scalar(&add, &[&a, &b]));
        assert_eq!(got[100], a[100] + b[100]);
    }
}

#[test]
fn every_example_operation_batches_like_its_scalar_calls() {
    let m = examples();
    let rows = 1_001;
    let columns: Vec<Vec<f64>> = (0..20).map(|k| operands(rows, k as f64)).collect();
    let cols: Vec<&[f64]> = columns.iter().map(Vec::as_slice).collect();
    // (operation, operand count, has a batch entry): the Rust SDK gives every operation one,
    // the C examples add and sub have one, the others do not.
    let cases = [
        ("add", 2, true),
        ("sub", 2, true),
        ("mul", 2, true),
        ("pow", 2, false),
        ("hypot", 2, false),
        ("sqrt", 1, false),
        ("abs", 1, false),
        ("sin", 1, false),
        ("clamp", 3, true),
        ("max", 1, true),
        ("sum", 3, true),
        ("sum", 9, true),
        ("avg", 20, true),
    ];
    for (name, arity, has_batch) in cases {
        let op = m.operation(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(op.has_batch(), has_batch, "{name}");
        // sqrt of a negative number and overflowing pow fail: use non-negative, small operands.
        let mut safe: Vec<Vec<f64>> = cols[..arity]
            .iter()
            .map(|c| c.iter().map(|x| (x.abs() % 7.0).max(0.0)).collect())
            .collect();
        if name == "clamp" {
            // The bounds must be ordered.
            safe[1] = vec![1.0; rows];
            safe[2] = vec![5.0; rows];
        }
        let safe: Vec<&[f64]> = safe.iter().map(Vec::as_slice).collect();
        let got = batch(&op, &safe).unwrap_or_else(|(r, e)| panic!("{name}: row {r}: {e}"));
        assert_same(&format!("{name}/{arity}"), &got, &scalar(&op, &safe));
    }
}

#[test]
fn rust_mul_batches_through_the_sdk_trampoline() {
    let m = examples();
    let mul = m.operation("mul").expect("mul");
    assert!(mul.has_batch());
    let rows = 100_003;
    let (a, b) = (operands(rows, 1.0), operands(rows, 3.0));
    let got = batch(&mul, &[&a, &b]).unwrap_or_else(|(r, e)| panic!("row {r}: {e}"));
    assert_same("mul", &got, &scalar(&mul, &[&a, &b]));
    assert_eq!(got[rows - 1], a[rows - 1] * b[rows - 1]);
}

#[test]
fn the_first_failing_row_is_reported_with_its_error() {
    let m = examples();
    let a: Vec<f64> = (1..=1000).map(f64::from).collect();
    for k in [0, 1, 517, 999] {
        let mut b = vec![2.0; 1000];
        b[k] = 0.0;
        b[(k + 3).min(999)] = 0.0; // a later zero must not be the one reported
        for name in ["div", "mod"] {
            let op = m.operation(name).unwrap_or_else(|| panic!("{name}"));
            assert!(op.has_batch(), "{name}");
            let mut out = vec![f64::NAN; 1000];
            let (row, e) = op.call_batch(&[&a, &b], &mut out).unwrap_err();
            assert_eq!(
                (row, e.status),
                (k, Status::DivisionByZero),
                "{name} k={k}: {e}"
            );
            assert_eq!(e.operation, name);
            assert_eq!(e.plugin, "div");
            assert_eq!(e.message, "division by zero");
            assert_same(name, &out[..k], &scalar(&op, &[&a[..k], &b[..k]]));
        }
    }
    // The host's per-row fallback (pow has no batch entry) reports the row the same way.
    let pow = m.operation("pow").expect("pow");
    assert!(!pow.has_batch());
    let base = [2.0, 3.0, 10.0, 4.0];
    let exponent = [2.0, 2.0, 400.0, 0.5];
    let mut out = [0.0; 4];
    let (row, e) = pow.call_batch(&[&base, &exponent], &mut out).unwrap_err();
    assert_eq!((row, e.status), (2, Status::Overflow), "{e}");
    assert_eq!(&out[..2], [4.0, 9.0]);
}

#[test]
fn wrong_arity_or_lengths_are_refused_before_calling_the_plugin() {
    let m = examples();
    let add = m.operation("add").expect("add");
    let (a, b, c) = ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]);
    let mut out = [-1.0; 3];
    for columns in [&[&a[..]][..], &[&a, &b, &c], &[]] {
        let (row, e) = add.call_batch(columns, &mut out).unwrap_err();
        assert_eq!((row, e.status), (0, Status::InvalidArgument), "{e}");
        assert_eq!(
            e.message,
            format!("expects 2 operands, got {}", columns.len())
        );
    }
    let (row, e) = add.call_batch(&[&a, &b[..2]], &mut out).unwrap_err();
    assert_eq!((row, e.status), (0, Status::InvalidArgument));
    assert_eq!(e.message, "column 1 has 2 values, the batch has 3 rows");
    let (row, e) = add.call_batch(&[&a, &b], &mut out[..2]).unwrap_err();
    assert_eq!((row, e.status), (0, Status::InvalidArgument), "{e}");
    assert_eq!(out, [-1.0; 3], "nothing was called");
    // A variadic function takes any count within its arity, the same for every row.
    let sum = m.operation("sum").expect("sum");
    let (row, e) = sum.call_batch(&[], &mut out).unwrap_err();
    assert_eq!((row, e.status), (0, Status::InvalidArgument), "{e}");
    // No rows at all is an empty success, with or without a batch entry.
    for name in ["add", "mul", "pow", "sum"] {
        let op = m.operation(name).expect(name);
        let empty: &[f64] = &[];
        assert!(op.call_batch(&[empty, empty], &mut []).is_ok(), "{name}");
    }
}

#[test]
fn a_live_operation_batches_through_the_version_serving_now() {
    let dir = calc_tests::scratch_dir(&format!("batch-live-{}", std::process::id()));
    let file = calc_tests::library_file_name("add");
    std::fs::copy(calc_tests::examples_dir().join(&file), dir.join(&file)).unwrap();
    let mut m = PluginManager::new();
    m.enable_hot_reload(dir.join("copies"));
    m.load_dir(&dir).unwrap();
    let live = m.live_operation("add").unwrap();
    let (a, b) = (operands(5000, 1.0), operands(5000, 2.0));
    let mut out = vec![0.0; 5000];
    live.call_batch(&[&a, &b], &mut out).unwrap();
    let pinned = m.operation("add").unwrap();
    assert_same("live add", &out, &scalar(&pinned, &[&a, &b]));
    // Once the plugin is gone, the live batch reports it instead of calling freed code.
    assert!(m.unload("add"));
    let (row, error) = live.call_batch(&[&a, &b], &mut out).unwrap_err();
    assert_eq!(row, 0);
    assert_eq!(
        error.to_string(),
        "add: no plugin provides it any more (unloaded)"
    );
}
