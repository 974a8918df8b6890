//! Compiled expressions evaluated over columns (`calc_host::expr::Program`) and `calc map`:
//! batch results equal per-row evaluation, chunk boundaries, the first failing row, and the
//! command line over lines and CSV.

use std::io::Write;
use std::process::{Command, Stdio};

use calc_host::expr::{compile_program, compile_with_vars, Program, CHUNK_ROWS};
use calc_host::{EvalError, PluginManager};
use calc_sdk::Status;
use calc_tests::{calc_binary, examples_dir, scratch_dir};

fn manager() -> PluginManager {
    let mut m = PluginManager::new();
    m.load_dir(examples_dir()).expect("examples load");
    assert!(m.failures().is_empty(), "{:?}", m.failures());
    m
}

/// A deterministic pseudo-random sequence (xorshift), mapped to numbers of every magnitude.
fn inputs(seed: u64, n: usize) -> Vec<f64> {
    const EDGES: &[f64] = &[
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        2.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        f64::MIN_POSITIVE,
        1e-300,
        -1e300,
        3.0,
    ];
    let mut s = seed | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            match s % 4 {
                0 => EDGES[(s >> 8) as usize % EDGES.len()],
                1 => (s >> 11) as f64 / (1u64 << 53) as f64 * 200.0 - 100.0,
                2 => ((s >> 20) % 21) as f64 - 10.0,
                _ => f64::from_bits(s) * if i % 2 == 0 { 1.0 } else { -1.0 },
            }
        })
        .collect()
}

/// The same outcome, NaN equal to NaN, -0 different from 0.
fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// What per-row evaluation gives for each row: the value, or the error.
fn per_row(
    m: &PluginManager,
    src: &str,
    vars: &[&str],
    columns: &[&[f64]],
    rows: usize,
) -> Vec<Result<f64, EvalError>> {
    (0..rows)
        .map(|r| {
            let lookup = |name: &str| vars.iter().position(|v| *v == name).map(|i| columns[i][r]);
            compile_with_vars(m, src, &lookup).expect("compiles").eval()
        })
        .collect()
}

/// Checks `program` against per-row evaluation over `columns`; returns whether a row failed.
fn assert_matches_per_row(m: &PluginManager, src: &str, vars: &[&str], columns: &[&[f64]]) -> bool {
    let program = compile_program(m, src, vars).unwrap_or_else(|e| panic!("{src}: {e}"));
    let rows = columns.first().map_or(0, |c| c.len());
    let expected = per_row(m, src, vars, columns, rows);
    let mut out = vec![42.0; 3];
    let got = program.eval_columns(columns, &mut out);
    match expected.iter().position(Result::is_err) {
        None => {
            assert!(got.is_ok(), "{src}: {got:?}");
            assert_eq!(out.len(), rows);
            for (r, (o, e)) in out.iter().zip(&expected).enumerate() {
                let e = *e.as_ref().unwrap();
                assert!(same(*o, e), "{src}: row {r}: batch {o}, per row {e}");
            }
            false
        }
        Some(first) => {
            let (row, error) = got.expect_err(src);
            assert_eq!(row, first, "{src}: first failing row");
            assert_eq!(&error, expected[first].as_ref().unwrap_err(), "{src}");
            assert_eq!(out.len(), first, "{src}: rows before the failure");
            for (r, (o, e)) in out.iter().zip(&expected).enumerate() {
                let e = *e.as_ref().unwrap();
                assert!(same(*o, e), "{src}: row {r}: batch {o}, per row {e}");
            }
            true
        }
    }
}

/// Moderate finite numbers, zeros of both signs and small integers: no example operation fails
/// on them in the expressions of `batch_results_equal_per_row_evaluation`.
fn tame(seed: u64, n: usize) -> Vec<f64> {
    inputs(seed, n)
        .into_iter()
        .enumerate()
        .map(|(i, x)| match i % 5 {
            0 => -0.0,
            1 => (i % 21) as f64 - 10.0,
            _ if x.is_finite() => x % 10.0,
            _ => 0.25,
        })
        .collect()
}

#[test]
fn batch_results_equal_per_row_evaluation() {
    let m = manager();
    let exprs = [
        "x",
        "-x",
        "- -x",
        "7",
        "-7",
        "x^2 + 3*x - 1",
        "x * x + 3 * x - 1 + 0 * y * z",
        "x * y + z",
        "x - y - z",
        "2 ^ 3 ^ (x / 50)",
        "-x ^ 2",
        "max(x, y, z) - min(x, 1, -y)",
        "clamp(x, -1, 1) * sum(x, y, z, 2, x)",
        "avg(x) + hypot(x, y)",
        "x % 7 + floor(y) - ceil(z) + abs(x)",
        "atan2(y, x) + sin(x) * cos(y) - tan(0)",
        "sqrt(abs(x)) + -(y * -z)",
        "(x + 1) * (y + 2) * (z + 3) * (x + 4) * (y + 5)",
    ];
    // Every row succeeds: the whole columns are compared.
    let (xs, ys, zs) = (tame(1, 3000), tame(2, 3000), tame(3, 3000));
    for src in exprs {
        let failed = assert_matches_per_row(&m, src, &["x", "y", "z"], &[&xs, &ys, &zs]);
        assert!(!failed, "{src} failed on tame inputs");
    }
    // Edge values (NaN, infinities, huge and tiny numbers): the rows up to the first failure,
    // and the failure, are the same.
    let (xs, ys, zs) = (inputs(1, 3000), inputs(2, 3000), inputs(3, 3000));
    for src in exprs {
        assert_matches_per_row(&m, src, &["x", "y", "z"], &[&xs, &ys, &zs]);
    }
}

#[test]
fn failures_report_the_first_failing_row_like_per_row_evaluation() {
    let m = manager();
    // Rows where y is 0 divide by zero; rows where x is negative fail in sqrt; pow overflows
    // for large |x|.
    let xs = inputs(4, 5000);
    let ys = inputs(5, 5000);
    for src in [
        "x / y",
        "sqrt(x) + x / y",
        "x / y + sqrt(x)",
        "10 ^ x",
        "sin(x) + 1 / (y - y)",
    ] {
        assert!(
            assert_matches_per_row(&m, src, &["x", "y"], &[&xs, &ys]),
            "{src} did not fail"
        );
    }
}

#[test]
fn chunk_boundaries() {
    let m = manager();
    let program = compile_program(&m, "x^2 + 3*x - 1", &["x"]).unwrap();
    assert_eq!(CHUNK_ROWS, 4096);
    for rows in [0, 1, 4095, 4096, 4097, 10000] {
        let xs: Vec<f64> = (0..rows).map(|i| i as f64 * 0.25 - 100.0).collect();
        let mut out = Vec::new();
        program.eval_columns(&[&xs], &mut out).unwrap();
        assert_eq!(out.len(), rows);
        for (x, o) in xs.iter().zip(&out) {
            assert_eq!(*o, x.powf(2.0) + 3.0 * x - 1.0, "x = {x}");
        }
        assert!(!assert_matches_per_row(&m, "x^2 + 3*x - 1", &["x"], &[&xs]));
    }
}

#[test]
fn division_by_zero_at_row_k_is_reported_at_row_k() {
    let m = manager();
    let program = compile_program(&m, "1 / x + y", &["x", "y"]).unwrap();
    for (rows, k) in [
        (1, 0),
        (10, 9),
        (4096, 4095),
        (4097, 4096),
        (10000, 8193),
        (10000, 0),
    ] {
        let mut xs = vec![2.0; rows];
        xs[k] = 0.0;
        if k + 1 < rows {
            xs[rows - 1] = 0.0; // a later failure does not matter
        }
        let ys = vec![1.0; rows];
        let mut out = Vec::new();
        let (row, e) = program.eval_columns(&[&xs, &ys], &mut out).unwrap_err();
        assert_eq!(row, k);
        let EvalError::Call(call) = e else {
            panic!("{e:?}")
        };
        assert_eq!(call.status, Status::DivisionByZero);
        assert_eq!(call.to_string(), "div (plugin div): division by zero");
        assert_eq!(out, vec![1.5; k]);
    }
}

#[test]
fn a_later_step_failing_earlier_wins() {
    let m = manager();
    // `1 / x` runs first over the chunk and fails at row 7; `sqrt(y)` would fail at row 3, and
    // per-row evaluation reaches row 3 first.
    let program = compile_program(&m, "1 / x + sqrt(y)", &["x", "y"]).unwrap();
    let mut xs = vec![1.0; 20];
    let mut ys = vec![4.0; 20];
    xs[7] = 0.0;
    ys[3] = -1.0;
    let mut out = Vec::new();
    let (row, e) = program.eval_columns(&[&xs, &ys], &mut out).unwrap_err();
    assert_eq!(row, 3);
    assert!(e.to_string().starts_with("sqrt (plugin cmath)"), "{e}");
    assert_eq!(out, vec![3.0; 3]);
}

#[test]
fn programs_without_variables_and_into_slices() {
    let m = manager();
    let program = compile_program(&m, "2 ^ 10 - max(3, 4) / 2", &[]).unwrap();
    assert!(program.variables().is_empty());
    let mut out = vec![0.0; 5000];
    program.eval_into(&[], &mut out).unwrap();
    assert!(out.iter().all(|&x| x == 1022.0));
    let program: Program = compile_program(&m, "b - a", &["a", "b", "unused"]).unwrap();
    assert_eq!(program.variables(), ["a", "b", "unused"]);
    let mut out = vec![0.0; 2];
    program
        .eval_into(&[&[1.0, 2.0], &[10.0, 20.0], &[0.0, 0.0]], &mut out)
        .unwrap();
    assert_eq!(out, [9.0, 18.0]);
}

#[test]
fn compile_errors() {
    let m = manager();
    let e = compile_program(&m, "x + y", &["x"]).unwrap_err();
    assert_eq!(e.to_string(), "unknown variable 'y' at column 5");
    let e = compile_program(&m, "x +* 2", &["x"]).unwrap_err();
    assert!(e.to_string().ends_with("at column 4"), "{e}");
    // A function name without '(' is still a call missing its parenthesis.
    let e = compile_program(&m, "sqrt + x", &["x"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "expected '(' after function name 'sqrt' at column 5"
    );
    assert_eq!(
        calc_host::expr::variables(&m, "max(a, b) * c + a - sqrt(d)").unwrap(),
        ["a", "b", "c", "d"]
    );
}

/// Runs `calc --plugin-dir <examples> map ARGS...` with `stdin`.
fn calc_map(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(calc_binary())
        .arg("--plugin-dir")
        .arg(examples_dir())
        .arg("map")
        .args(args)
        .env_remove("CALC_PLUGIN_PATH")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("calc runs");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_map_one_number_per_line() {
    assert_eq!(
        calc_map(&["x^2 + 3*x - 1"], "1\n2\n\n  -3 \n0.5\r\n-0\n1e3\n"),
        (0, "3\n9\n-1\n0.75\n-1\n1002999\n".into(), String::new())
    );
    // The variable may have any name; a header line naming it is allowed.
    assert_eq!(
        calc_map(&["-value / 2"], "value\n1\n-0\n"),
        (0, "-0.5\n0\n".into(), String::new())
    );
    assert_eq!(calc_map(&["x"], ""), (0, String::new(), String::new()));
    assert_eq!(calc_map(&["x"], "\n\n"), (0, String::new(), String::new()));
}

#[test]
fn cli_map_csv_file() {
    let dir = scratch_dir(&format!("map-{}", std::process::id()));
    let file = dir.join("data.csv");
    std::fs::write(
        &file,
        "name,b, a ,c,\"unused\"\nfirst,2,1,3,x\n\nsecond,5,4,6,y\nthird,\"0.5\",-2,0,z\n",
    )
    .unwrap();
    assert_eq!(
        calc_map(&["a * b + c", file.to_str().unwrap()], ""),
        (0, "5\n26\n-1\n".into(), String::new())
    );
    // '-' is standard input.
    assert_eq!(
        calc_map(&["max(a, b)", "-"], "a,b\n1,2\n4,3\n"),
        (0, "2\n4\n".into(), String::new())
    );
}

#[test]
fn cli_map_streams_many_rows() {
    let rows = 3 * CHUNK_ROWS * 4 + 17; // several of the CLI's batches
    let input: String = (0..rows).map(|i| format!("{}\n", i as f64 * 0.5)).collect();
    let expected: String = (0..rows)
        .map(|i| {
            let x = i as f64 * 0.5;
            let y = x.powf(2.0) + 3.0 * x - 1.0;
            format!("{y}\n")
        })
        .collect();
    let (code, out, err) = calc_map(&["x^2 + 3*x - 1"], &input);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(out == expected, "outputs differ");
}

#[test]
fn cli_map_errors() {
    // A malformed number: exit 2 naming line and column, after the rows before it.
    assert_eq!(
        calc_map(&["x + 1"], "1\n\n2\nx3\n4\n"),
        (
            2,
            "2\n3\n".into(),
            "calc: error: line 4, column 1: invalid number 'x3'\n".into()
        )
    );
    assert_eq!(
        calc_map(&["a + b"], "a,b\n1,2\n3,\n"),
        (
            2,
            "3\n".into(),
            "calc: error: line 3, column 2 (b): invalid number ''\n".into()
        )
    );
    assert_eq!(
        calc_map(&["a + b"], "a,b\n1,2\n3\n"),
        (
            2,
            "3\n".into(),
            "calc: error: line 3: 1 column where the header has 2\n".into()
        )
    );
    // A missing column names it.
    assert_eq!(
        calc_map(&["a * b + d"], "a,b,c\n1,2,3\n"),
        (
            2,
            String::new(),
            "calc: error: line 1: the header has no column 'd' (columns: a, b, c)\n".into()
        )
    );
    assert_eq!(
        calc_map(&["a * b"], "\n1,2\n"),
        (
            2,
            String::new(),
            "calc: error: line 2: the input needs a header row naming its columns (a, b), found '1,2'\n"
                .into()
        )
    );
    // An operation error: exit 1 naming the line, after the results of the rows before it.
    assert_eq!(
        calc_map(&["1 / x"], "1\n2\n\n0\n4\n"),
        (
            1,
            "1\n0.5\n".into(),
            "calc: error: line 4: div (plugin div): division by zero\n".into()
        )
    );
    let (code, out, err) = calc_map(&["x +* 2"], "1\n");
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(
        err.starts_with(
            "calc: error: expected a number, '(' or a function call, found '*' at column 4\n"
        ),
        "{err}"
    );
    let (code, _, err) = calc_map(&["2 + 3"], "1\n");
    assert_eq!(code, 2);
    assert!(err.contains("uses no variable"), "{err}");
    let (code, _, err) = calc_map(&["x", "/nonexistent/data.csv"], "");
    assert_eq!(code, 2);
    assert!(
        err.starts_with("calc: error: /nonexistent/data.csv: "),
        "{err}"
    );
}

#[test]
fn cli_map_csv_reads_rfc_4180() {
    // Quoted commas, escaped quotes and a quoted line end in an ignored column; CRLF line ends;
    // an empty line (CRLF) between rows.
    let input = "note,a,b,c\r\n\"hello, world\",1,2,3\r\n\"say \"\"hi\"\",\nthen go\",2,3,4\r\n\r\nplain,-1,0.5,\"10\"\r\n";
    assert_eq!(
        calc_map(&["a * b + c"], input),
        (0, "5\n10\n9.5\n".into(), String::new())
    );
    // The same with LF line ends and no line end after the last row.
    let input = input.replace("\r\n", "\n");
    let input = input.trim_end();
    assert_eq!(
        calc_map(&["a * b + c"], input),
        (0, "5\n10\n9.5\n".into(), String::new())
    );
    // A quoted header, and a quoted comma in a used column: one field, not a number.
    assert_eq!(
        calc_map(&["a + b"], "\"a\",b\r\n1,2\r\n\"1,5\",2\r\n"),
        (
            2,
            "3\n".into(),
            "calc: error: line 3, column 1 (a): invalid number '1,5'\n".into()
        )
    );
    // Lines are counted as the file has them: a quoted line end (CRLF inside quotes too), empty
    // lines, CR line ends.
    assert_eq!(
        calc_map(&["a"], "n,a\n\"x\r\ny\nz\",1\r\n\r\n\nbad,q\n"),
        (
            2,
            "1\n".into(),
            "calc: error: line 7, column 2 (a): invalid number 'q'\n".into()
        )
    );
    assert_eq!(
        calc_map(&["a"], "n,a\r\"x\",1\r\r\nbad,q\r"),
        (
            2,
            "1\n".into(),
            "calc: error: line 4, column 2 (a): invalid number 'q'\n".into()
        )
    );
    // A one-column CSV: an empty quoted field is a missing number, not a blank line.
    assert_eq!(
        calc_map(&["x + 1"], "x\n1\n\n\"\"\n3\n"),
        (
            2,
            "2\n".into(),
            "calc: error: line 4, column 1 (x): invalid number ''\n".into()
        )
    );
}

#[test]
fn cli_map_refuses_rows_whose_field_count_differs_from_the_header() {
    // The issue's command: the decimal comma in `1,5` (c = 1.5) makes six fields under five
    // names; this used to read c = 5 and print -639.2 with exit 0.
    assert_eq!(
        calc_map(
            &["a * b + c / 2 - max(a, c)"],
            "id,a,b,c,note\n1,-636.7,1,5,966486.02,row\n"
        ),
        (
            2,
            String::new(),
            "calc: error: line 2: 6 columns where the header has 5\n".into()
        )
    );
    // With the comma quoted the row is whole; the rows before a refused one come first.
    assert_eq!(
        calc_map(
            &["a * b + c / 2 - max(a, c)"],
            "id,a,b,c,note\n1,-636.7,1,5,\"a, b\"\n2,1,2,3,x,y\n3,1,1,1,z\n"
        ),
        (
            2,
            "-639.2\n".into(),
            "calc: error: line 3: 6 columns where the header has 5\n".into()
        )
    );
    // Too few fields, even when every used column is present.
    assert_eq!(
        calc_map(&["a + b"], "a,b,note\n1,2,x\r\n3,4\r\n"),
        (
            2,
            "3\n".into(),
            "calc: error: line 3: 2 columns where the header has 3\n".into()
        )
    );
    // One number per line: a decimal comma is not a number.
    assert_eq!(
        calc_map(&["x + 1"], "1\n1,5\n"),
        (
            2,
            "2\n".into(),
            "calc: error: line 2, column 1: invalid number '1,5'\n".into()
        )
    );
}

#[test]
fn cli_map_a_quote_left_open_stops_at_a_bounded_record() {
    // The open quote would take the rest of the input into one field: the record is refused
    // once it passes 8 MiB, naming the line it starts on, after the rows before it.
    let mut input = String::from("note,a\nfine,1\n\"open,2\n");
    let row = "more text,3\n";
    input.push_str(&row.repeat((9 << 20) / row.len()));
    assert_eq!(
        calc_map(&["a"], &input),
        (
            2,
            "1\n".into(),
            "calc: error: line 3: a record longer than 8 MiB (a quote left open?)\n".into()
        )
    );
}
