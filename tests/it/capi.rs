//! libcalc_host from C: `tests/c/capi_test.c` linked against the shared library and the static
//! archive, the C calculator of `examples-c/host`, both under valgrind, and the symbols
//! libcalc_host and the C++ example plugin export.
//!
//! The plugin directory holds every example plugin: C (`examples_dir()`), Rust (the same) and
//! the C++ `cpp_trig`, built here with `c++`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use calc_tests::{
    broken_corpus_dir, build_c_plugin, cargo_build, examples_dir, library_file_name, scratch_dir,
    workspace_root, BROKEN_CASES,
};

/// Number of `ok ...` lines `capi_test` prints when given the lifecycle plugin and a reload
/// directory as well.
const CAPI_TEST_CHECKS: usize = 163;

/// Flags of the C programs: as in the build commands of their top comments.
const C_FLAGS: &[&str] = &[
    "-std=c99",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-pthread",
];

/// What `cargo rustc -p calc-host-capi --crate-type staticlib -- --print native-static-libs`
/// prints on Linux: the system libraries the static archive needs.
const NATIVE_STATIC_LIBS: &[&str] = &[
    "-ldl",
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

/// Everything the tests run, built once per process.
struct Fixture {
    /// Every example plugin: C, C++ and Rust.
    plugins: PathBuf,
    /// Only the C and C++ example plugins.
    c_cpp_plugins: PathBuf,
    /// The lifecycle fixture plugin (reads its configuration).
    lifecycle: PathBuf,
    /// `target/debug`, with libcalc_host.so and libcalc_host.a.
    lib_dir: PathBuf,
    /// The C++ example plugin.
    cpp_plugin: PathBuf,
    capi_test: PathBuf,
    capi_test_static: PathBuf,
    calc_c: PathBuf,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

fn run_ok(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Compiles a C program against libcalc_host: the shared library (found through an rpath) or,
/// with `static_archive`, `libcalc_host.a` and its system libraries.
fn build_c_program(source: &Path, out: &Path, lib_dir: &Path, static_archive: bool) {
    let mut cmd = Command::new(xtask::build::c_compiler());
    cmd.args(C_FLAGS)
        .arg("-I")
        .arg(workspace_root().join("include"))
        .arg(source);
    if static_archive {
        cmd.arg(lib_dir.join("libcalc_host.a"))
            .args(NATIVE_STATIC_LIBS);
    } else {
        cmd.arg(format!("-L{}", lib_dir.display()))
            .arg("-lcalc_host")
            .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
            .arg("-lm");
    }
    run_ok(cmd.arg("-o").arg(out));
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let lib_dir = cargo_build(&["calc-host-capi"]).unwrap_or_else(|e| panic!("{e}"));
        let dir = scratch_dir(&format!("capi-{}", std::process::id()));
        let plugins = dir.join("plugins");
        let c_cpp_plugins = dir.join("c-cpp-plugins");
        for d in [&plugins, &c_cpp_plugins] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }
        for entry in std::fs::read_dir(examples_dir()).unwrap() {
            let from = entry.unwrap().path();
            let name = from.file_name().unwrap().to_owned();
            std::fs::copy(&from, plugins.join(&name))
                .unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        }
        // examples_dir() holds every example, the C++ cpp_trig included.
        let cpp_plugin = plugins.join(library_file_name("cpp_trig"));
        for name in ["add", "sub", "pow", "cmath", "cpp_trig"] {
            let file = library_file_name(name);
            std::fs::copy(plugins.join(&file), c_cpp_plugins.join(&file)).unwrap();
        }
        let lifecycle = dir.join(library_file_name("lifecycle"));
        build_c_plugin(
            &workspace_root().join("tests/fixtures/c/lifecycle.c"),
            &lifecycle,
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));

        let root = workspace_root();
        let capi_source = root.join("tests/c/capi_test.c");
        let capi_test = dir.join("capi_test");
        build_c_program(&capi_source, &capi_test, &lib_dir, false);
        let capi_test_static = dir.join("capi_test_static");
        build_c_program(&capi_source, &capi_test_static, &lib_dir, true);
        let calc_c = dir.join("calc-c");
        build_c_program(
            &root.join("examples-c/host/main.c"),
            &calc_c,
            &lib_dir,
            false,
        );
        Fixture {
            plugins,
            c_cpp_plugins,
            lifecycle,
            lib_dir,
            cpp_plugin,
            capi_test,
            capi_test_static,
            calc_c,
        }
    })
}

/// The arguments of one `capi_test` run: the last is a fresh directory of its own for the
/// hot-reload checks (runs happen in parallel).
fn capi_test_args(f: &Fixture) -> Vec<PathBuf> {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    vec![
        f.plugins.clone(),
        broken_corpus_dir().to_path_buf(),
        f.lifecycle.clone(),
        scratch_dir(&format!("capi-reload-{}-{run}", std::process::id())),
    ]
}

/// Checks the output of a complete `capi_test` run.
fn assert_all_checks_passed(out: &Output) {
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "capi_test failed:\n{stdout}{}",
        text(&out.stderr)
    );
    let ok = stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(ok, CAPI_TEST_CHECKS, "{stdout}");
    assert!(
        stdout.ends_with(&format!("all {CAPI_TEST_CHECKS} checks passed\n")),
        "{stdout}"
    );
    for line in [
        "ok call_add",
        "ok eval_cpp",
        "ok eval_division_by_zero",
        "ok op_outlives_host_rust",
        "ok null_host_eval",
        "ok load_failure_listed",
        "ok plugin_reads_config",
        "ok poll_changes_reloads",
        "ok poll_changes_removes",
        "ok expr_eval_reports_first_failed_row",
        "ok expr_outlives_host",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no {line:?} in:\n{stdout}"
        );
    }
}

#[test]
fn capi_test_passes_with_the_shared_library() {
    let f = fixture();
    assert_all_checks_passed(&run(Command::new(&f.capi_test).args(capi_test_args(f))));
}

#[test]
fn capi_test_passes_with_the_static_archive() {
    let f = fixture();
    // The C API is inside the executable, not in a libcalc_host.so it loads.
    let symbols = text(
        &run_ok(
            Command::new("nm")
                .arg("--defined-only")
                .arg(&f.capi_test_static),
        )
        .stdout,
    );
    assert!(
        symbols.lines().any(|l| l.ends_with(" T calc_host_eval")),
        "calc_host_eval is not defined in the static executable"
    );
    let ldd = text(&run_ok(Command::new("ldd").arg(&f.capi_test_static)).stdout);
    assert!(!ldd.contains("libcalc_host"), "{ldd}");
    assert_all_checks_passed(&run(
        Command::new(&f.capi_test_static).args(capi_test_args(f))
    ));
}

fn calc_c(args: &[&str]) -> (i32, String, String) {
    let f = fixture();
    let out = run(Command::new(&f.calc_c)
        .arg("--plugin-dir")
        .arg(&f.plugins)
        .args(args));
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn c_calculator_evaluates_with_c_cpp_and_rust_plugins() {
    assert_eq!(
        calc_c(&[
            "2 * (3 + 4)",
            "2 ^ 10 - max(3, 4) / 2",
            "atan2(0, 1) + sqrt(16)",
            "5 / 2",
            "-6",
            "cos(0) * 3 - sin(0)",
            "-2 ^ 2",
        ]),
        (0, "14\n1022\n4\n2.5\n-6\n3\n-4\n".into(), String::new())
    );
}

#[test]
fn c_calculator_reports_errors_like_calc() {
    assert_eq!(
        calc_c(&["1 / 0"]),
        (
            1,
            String::new(),
            "calc-c: error: div (plugin div): division by zero\n".into()
        )
    );
    assert_eq!(
        calc_c(&["2 +* 3"]),
        (
            2,
            String::new(),
            "calc-c: error: expected a number, '(' or a function call, found '*' at column 4\n"
                .into()
        )
    );
    // Results before the failing expression are printed; the ones after are not evaluated.
    let (code, out, err) = calc_c(&["1 + 1", "sqrt(0 - 4)", "2 + 2"]);
    assert_eq!((code, out.as_str()), (1, "2\n"));
    assert_eq!(
        err,
        "calc-c: error: sqrt (plugin cmath): sqrt of a negative number\n"
    );
    let out = run(Command::new(&fixture().calc_c).arg("1 + 1"));
    assert_eq!(
        out.status.code(),
        Some(2),
        "no --plugin-dir is a usage error"
    );
    assert!(text(&out.stderr).starts_with("usage: calc-c"));
}

#[test]
fn c_calculator_lists_plugins_and_skipped_files() {
    let f = fixture();
    let (code, out, err) = calc_c(&["--list"]);
    assert_eq!((code, err.as_str()), (0, ""));
    let cpp_line = format!(
        "cpp_trig 1.0.0 (ABI {}) {}",
        calc_tests::abi(),
        f.cpp_plugin.canonicalize().unwrap().display()
    );
    for line in [
        cpp_line.as_str(),
        "  - atan2: function of 2 - atan2(y, x): the angle of the point (x, y) in radians, in [-pi, pi]",
        "  - pow: infix '^', precedence 40, right-associative - a ^ b: a raised to the power b",
        "  - max: function of at least 1 (variadic) - largest operand; NaN if any operand is NaN",
    ] {
        assert!(out.lines().any(|l| l == line), "no {line:?} in:\n{out}");
    }
    assert_eq!(out.lines().filter(|l| !l.starts_with("  - ")).count(), 8);

    let broken = broken_corpus_dir();
    let out = run(Command::new(&f.calc_c)
        .arg("--plugin-dir")
        .arg(broken)
        .arg("--list"));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stdout.contains(&format!("good_c 1.0.0 (ABI {}) ", calc_tests::abi())),
        "{stdout}"
    );
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("calc-c: skipped "))
            .count(),
        BROKEN_CASES.len() + 1,
        "{stderr}"
    );
    let bad_magic = broken.join(library_file_name("broken_bad_magic"));
    assert!(
        stderr.contains(&format!(
            "calc-c: skipped {}: not a calc plugin: bad magic",
            bad_magic.display()
        )),
        "{stderr}"
    );
}

/// Runs `program args` under `valgrind --leak-check=full --error-exitcode=9` and requires exit
/// status 0: no memory error and no leak of any kind but "still reachable". The caller checks
/// first that valgrind is installed (`require_tools!(Valgrind)`).
fn assert_valgrind_clean(program: &Path, args: &[&Path]) -> Output {
    let mut cmd = calc_tests::valgrind_memcheck(program);
    cmd.args(args);
    let out = run(&mut cmd);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{cmd:?} exited with {}:\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("ERROR SUMMARY: 0 errors"),
        "{cmd:?}:\n{stderr}"
    );
    out
}

#[test]
fn valgrind_capi_test_is_clean() {
    calc_tests::require_tools!(Valgrind);
    let f = fixture();
    let args = capi_test_args(f);
    let args: Vec<&Path> = args.iter().map(PathBuf::as_path).collect();
    let out = assert_valgrind_clean(&f.capi_test, &args);
    assert_all_checks_passed(&out);
}

#[test]
fn valgrind_c_calculator_is_clean_with_every_example() {
    calc_tests::require_tools!(Valgrind);
    let f = fixture();
    let out = assert_valgrind_clean(
        &f.calc_c,
        &[
            Path::new("--plugin-dir"),
            &f.plugins,
            Path::new("2 ^ 10 - max(3, 4) / 2"),
            Path::new("atan2(0, 1) + sqrt(16)"),
        ],
    );
    assert_eq!(text(&out.stdout), "1022\n4\n");
}

#[test]
fn valgrind_c_calculator_is_clean_with_c_and_cpp_plugins() {
    calc_tests::require_tools!(Valgrind);
    let f = fixture();
    let out = assert_valgrind_clean(
        &f.calc_c,
        &[
            Path::new("--plugin-dir"),
            &f.c_cpp_plugins,
            Path::new("--plugin-dir"),
            Path::new("/nonexistent/calc-plugins"),
            Path::new("2 ^ 10 - 2 + cos(0)"),
            Path::new("sin(0 - 0) + sqrt(16)"),
        ],
    );
    assert_eq!(text(&out.stdout), "1023\n4\n");
}

fn defined_dynamic_symbols(library: &Path) -> Vec<String> {
    let out = run_ok(
        Command::new("nm")
            .args(["-D", "--defined-only"])
            .arg(library),
    );
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

/// The functions `include/calc_host.h` declares.
fn header_functions() -> BTreeSet<String> {
    let header = std::fs::read_to_string(workspace_root().join("include/calc_host.h")).unwrap();
    let mut names = BTreeSet::new();
    for line in header.lines() {
        let code = line.trim_start();
        if code.starts_with("//") || code.starts_with("/*") || code.starts_with('*') {
            continue;
        }
        let mut rest = code;
        while let Some(start) = rest.find("calc_") {
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            if tail[end..].starts_with('(') && (start == 0 || !rest[..start].ends_with('_')) {
                names.insert(tail[..end].to_string());
            }
            rest = &tail[end..];
        }
    }
    names
}

#[test]
fn libcalc_host_exports_exactly_the_c_api() {
    let f = fixture();
    let symbols = defined_dynamic_symbols(&f.lib_dir.join(library_file_name("calc_host")));
    let stray: Vec<&String> = symbols.iter().filter(|s| !s.starts_with("calc_")).collect();
    assert!(
        stray.is_empty(),
        "exported symbols outside the C API: {stray:?}"
    );
    let exported: BTreeSet<String> = symbols.into_iter().collect();
    let declared = header_functions();
    assert_eq!(declared.len(), 65, "{declared:?}");
    assert_eq!(exported, declared);
}

#[test]
fn cpp_plugin_exports_only_plugin_entry() {
    assert_eq!(
        defined_dynamic_symbols(&fixture().cpp_plugin),
        vec!["plugin_entry".to_string()]
    );
}

/// `tests/c/capi_err_test.c`: every kind of failure handed over as a `calc_error_t` by the
/// `_err` functions, from two threads at once too, against the shared library, normally and
/// under valgrind (when installed): no error object leaks.
#[test]
fn capi_err_test_passes_and_is_valgrind_clean() {
    let f = fixture();
    let dir = scratch_dir(&format!("capi-err-{}", std::process::id()));
    let program = dir.join("capi_err_test");
    build_c_program(
        &workspace_root().join("tests/c/capi_err_test.c"),
        &program,
        &f.lib_dir,
        false,
    );
    let check = |out: &Output| {
        let stdout = text(&out.stdout);
        assert!(
            stdout.ends_with("all error-object checks passed\n") && !stdout.contains("FAILED"),
            "{stdout}{}",
            text(&out.stderr)
        );
        assert_eq!(stdout.matches("\nok ").count() + 1, 18, "{stdout}");
    };
    check(&run(Command::new(&program).arg(&f.plugins)));
    calc_tests::require_tools!(Valgrind);
    check(&assert_valgrind_clean(&program, &[f.plugins.as_path()]));
}

/// `tests/c/capi_iface_test.c`: interfaces (ABI 1.4) through the C API, against the shared
/// library, normally and under valgrind (when installed).
#[test]
fn capi_iface_test_passes_and_is_valgrind_clean() {
    let f = fixture();
    let dir = scratch_dir(&format!("capi-iface-{}", std::process::id()));
    let plugins = dir.join("plugins");
    build_c_plugin(
        &workspace_root().join("tests/fixtures/c/shapes.c"),
        &plugins.join(library_file_name("shapes")),
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let program = dir.join("capi_iface_test");
    build_c_program(
        &workspace_root().join("tests/c/capi_iface_test.c"),
        &program,
        &f.lib_dir,
        false,
    );
    let check = |out: &Output| {
        let stdout = text(&out.stdout);
        assert!(
            stdout.ends_with("all interface checks passed\n") && !stdout.contains("FAILED"),
            "{stdout}{}",
            text(&out.stderr)
        );
        assert_eq!(stdout.matches("\nok ").count() + 1, 39, "{stdout}");
    };
    check(&run(Command::new(&program).arg(&plugins)));
    calc_tests::require_tools!(Valgrind);
    check(&assert_valgrind_clean(&program, &[plugins.as_path()]));
}
