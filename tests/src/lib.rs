//! Fixtures shared by the integration tests: plugin libraries built once per test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub mod tools;

pub use xtask::build::{build_c_plugin, cargo_build, library_file_name, target_dir};
pub use xtask::workspace_root;

/// A fresh directory for this test binary's fixtures: `target/calc-tests/<name>`.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = target_dir().join("calc-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// Every example plugin (C and Rust) built into one directory, once per process.
pub fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch_dir(&format!("examples-{}", std::process::id()));
        xtask::build::build_examples(&dir).unwrap_or_else(|e| panic!("building the examples: {e}"));
        dir
    })
}

/// The `calc` executable, built once per process.
pub fn calc_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = cargo_build(&[xtask::build::CLI_PACKAGE, xtask::build::RUNNER_PACKAGE])
            .unwrap_or_else(|e| panic!("building calc: {e}"));
        dir.join(format!("calc{}", std::env::consts::EXE_SUFFIX))
    })
}

/// The plugin runner `calc-plugin-runner` (process isolation), built once per process with the
/// `calc` binary.
pub fn runner_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let calc = calc_binary();
        let dir = calc.parent().expect("calc is in a directory");
        dir.join(format!(
            "calc-plugin-runner{}",
            std::env::consts::EXE_SUFFIX
        ))
    })
}

/// The isolation corpus of `tests/fixtures/c/crashy.c`, built once per process into one
/// directory: `libcrashy.so` (operations that crash, abort, exit, hang on demand),
/// `libcrashy_init_crash.so` (crashes in `init`) and `libcrashy_init_hang.so` (hangs in
/// `init`). Never load these in process: they are meant to run isolated.
pub fn crashy_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch_dir(&format!("crashy-{}", std::process::id()));
        let source = workspace_root().join("tests/fixtures/c/crashy.c");
        for (name, defines) in [
            ("crashy", &[][..]),
            ("crashy_init_crash", &["-DCRASHY_INIT_CRASH"][..]),
            ("crashy_init_hang", &["-DCRASHY_INIT_HANG"][..]),
        ] {
            build_c_plugin(&source, &dir.join(library_file_name(name)), defines)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        dir
    })
}

/// The broken-plugin cases of `tests/broken/broken.c`: the macro suffix of each.
pub const BROKEN_CASES: &[&str] = &[
    "NO_ENTRY",
    "ENTRY_NULL",
    "BAD_MAGIC",
    "ABI_MAJOR_NEW",
    "ABI_MAJOR_OLD",
    "ABI_MINOR_NEW",
    "SIZE_SMALL",
    "NULL_NAME",
    "NON_UTF8_NAME",
    "BAD_VERSION",
    "API_INCOMPATIBLE",
    "NULL_EXECUTE",
    "DUPLICATE_OPS",
    "BAD_KIND",
    "BAD_ARITY",
    "INIT_FAILS",
];

/// The corpus of broken plugins next to valid ones, built once per process into one
/// directory: `libbroken_<case>.so` for each case, `libgood_c.so` (valid C), `librust_panic.so`
/// (valid Rust plugin whose `boom` panics) and `libgarbage.so` (a text file).
pub fn broken_corpus_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch_dir(&format!("broken-{}", std::process::id()));
        build_cases(&dir, "broken", BROKEN_CASES);
        build_good_c(&dir);
        let artifacts = cargo_build(&["calc-fixture-rust-panic"]).unwrap_or_else(|e| panic!("{e}"));
        let panic_lib = library_file_name("rust_panic");
        xtask::build::copy_fresh(&artifacts.join(&panic_lib), &dir.join(&panic_lib))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.join(library_file_name("garbage")),
            "this is not a shared library\n",
        )
        .unwrap();
        dir
    })
}

/// Compiles the hot-reload fixture `tests/fixtures/c/counter.c` into the shared library `out`,
/// with `defines` such as `-DCOUNTER_VERSION=2` or `-DNO_STATE` (and `-pthread`, for its mutex).
pub fn build_counter(out: &Path, defines: &[&str]) -> Result<(), String> {
    let mut extra = vec!["-pthread"];
    extra.extend_from_slice(defines);
    build_c_plugin(
        &workspace_root().join("tests/fixtures/c/counter.c"),
        out,
        &extra,
    )
}

/// Compiles the C++ hot-reload fixture `tests/fixtures/cpp/counter.cpp` ("cpp_counter") into
/// the shared library `out`, as the C++ examples are built (their flags and version script),
/// with `defines` such as `-DCOUNTER_VERSION=2`.
pub fn build_cpp_counter(out: &Path, defines: &[&str]) -> Result<(), String> {
    let root = workspace_root();
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    xtask::build::run(
        Command::new(xtask::build::cxx_compiler())
            .args(xtask::build::CPP_PLUGIN_FLAGS)
            .arg("-I")
            .arg(root.join("include"))
            .args(defines)
            .arg(root.join("tests/fixtures/cpp/counter.cpp"))
            .arg(format!(
                "-Wl,--version-script={}",
                root.join("examples-c/cpp_trig/plugin.map").display()
            ))
            .arg("-o")
            .arg(out),
    )
}

/// The Rust hot-reload fixture `calc-fixture-rust-counter` in both versions (debug builds),
/// built once per process: the paths of version 1 and of version 2 (feature `v2`).
pub fn rust_counter_builds() -> &'static (PathBuf, PathBuf) {
    static BUILDS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILDS.get_or_init(|| {
        let dir = scratch_dir(&format!("rust-counter-{}", std::process::id()));
        build_rust_counter(&dir, false).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// Builds `calc-fixture-rust-counter` in both versions and copies them to
/// `dest/v1/librust_counter.so` and `dest/v2/librust_counter.so` (returned in that order), with
/// the release profile when `release`. Each variant is built in its own target directory
/// (`target/calc-tests/rust-counter-v1`, `-v2`) so that a concurrent build of the other variant
/// never replaces the artifact before it is copied.
pub fn build_rust_counter(dest: &Path, release: bool) -> Result<(PathBuf, PathBuf), String> {
    let file = library_file_name("rust_counter");
    let mut built = Vec::new();
    for (variant, features) in [("v1", None), ("v2", Some("v2"))] {
        let target = target_dir()
            .join("calc-tests")
            .join(format!("rust-counter-{variant}"));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace_root())
            .args(["build", "--quiet", "--package", "calc-fixture-rust-counter"])
            .arg("--target-dir")
            .arg(&target);
        if let Some(features) = features {
            cmd.args(["--features", features]);
        }
        if release {
            cmd.arg("--release");
        }
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{cmd:?} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let to = dest.join(variant).join(&file);
        let dir = to.parent().expect("has a parent");
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let profile = if release { "release" } else { "debug" };
        xtask::build::copy_fresh(&target.join(profile).join(&file), &to)?;
        built.push(to);
    }
    let v2 = built.pop().expect("two builds");
    let v1 = built.pop().expect("two builds");
    Ok((v1, v2))
}

/// Runs `calc` with `args`, with `CALC_PLUGIN_PATH` removed from the environment and the
/// plugin metadata cache in `target/calc-tests/xdg-cache` (not the user's).
pub fn run_calc(args: &[&str]) -> std::process::Output {
    Command::new(calc_binary())
        .args(args)
        .env("XDG_CACHE_HOME", target_dir().join("calc-tests/xdg-cache"))
        .env_remove("CALC_PLUGIN_PATH")
        .env_remove("RUST_LOG")
        .output()
        .expect("calc runs")
}

/// Compiles one C plugin source into the shared library `out` with `compiler`, the flags of
/// [`xtask::build::C_PLUGIN_FLAGS`] and `include` as the only `-I` directory (so a frozen copy of
/// the headers can stand in for `include/`), linked with `-lm` like `build_c_plugin`.
pub fn build_c_plugin_with(
    compiler: &str,
    include: &Path,
    source: &Path,
    out: &Path,
) -> Result<(), String> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut cmd = Command::new(compiler);
    cmd.args(xtask::build::C_PLUGIN_FLAGS)
        .arg("-I")
        .arg(include)
        .arg(source)
        .arg("-o")
        .arg(out)
        .arg("-lm");
    let shown = format!("{cmd:?}");
    let result = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if result.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown} failed ({}):\n{}{}",
            result.status,
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        ))
    }
}

/// The valgrind options the project promises a clean run under: a program loading plugins
/// exits 0 under exactly `valgrind --leak-check=full --error-exitcode=9`, any leak ("possibly
/// lost" included) or memory error making it exit 9. No suppression file.
pub const VALGRIND_MEMCHECK: &[&str] = &["--leak-check=full", "--error-exitcode=9"];

/// `valgrind --leak-check=full --error-exitcode=9 PROGRAM` ([`VALGRIND_MEMCHECK`]), to which the
/// caller adds the program's arguments. Check first that valgrind is installed
/// (`require_tools!(Valgrind)`).
pub fn valgrind_memcheck(program: &Path) -> Command {
    let mut cmd = Command::new("valgrind");
    cmd.args(VALGRIND_MEMCHECK).arg(program);
    cmd
}

/// The C compiler the test suite builds plugins with: `$CC`, or `cc`.
pub fn c_compiler() -> String {
    xtask::build::c_compiler()
}

/// The ABI version of this build as `calc plugins list` prints it, e.g. `"1.1"`.
pub fn abi() -> String {
    format!(
        "{}.{}",
        calc_sdk::abi::CALC_ABI_VERSION_MAJOR,
        calc_sdk::abi::CALC_ABI_VERSION_MINOR
    )
}

/// Builds `tests/broken/<kind>.c` once per case into `dir/lib<kind>_<case>.so`, with
/// `-D<KIND>_<CASE>` (the corpus sources' convention).
fn build_cases(dir: &Path, kind: &str, cases: &[&str]) {
    let source = workspace_root().join(format!("tests/broken/{kind}.c"));
    let pid_file = format!(
        "-DHOSTILE_PID_FILE=\"{}\"",
        dir.join("forked.pids").display()
    );
    for case in cases {
        let out = dir.join(library_file_name(&format!(
            "{kind}_{}",
            case.to_lowercase()
        )));
        let define = format!("-D{}_{case}", kind.to_uppercase());
        build_c_plugin(&source, &out, &[&define, &pid_file]).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Builds the valid plugin of `tests/broken/broken.c` ("good_c") into `dir/libgood_c.so`.
fn build_good_c(dir: &Path) {
    let source = workspace_root().join("tests/broken/broken.c");
    build_c_plugin(&source, &dir.join(library_file_name("good_c")), &[])
        .unwrap_or_else(|e| panic!("{e}"));
}

/// `libplain.so` (nothing keeps it loaded) and `libpinned.so` (linked with `-z nodelete`:
/// `DF_1_NODELETE`, never unloaded), both `tests/broken/broken.c`'s valid plugin under those
/// names, built into `dir`; returned in that order.
pub fn build_plain_and_pinned(dir: &Path) -> (PathBuf, PathBuf) {
    let source = workspace_root().join("tests/broken/broken.c");
    let plain = dir.join(library_file_name("plain"));
    let pinned = dir.join(library_file_name("pinned"));
    build_c_plugin(&source, &plain, &["-DPLUGIN_NAME=\"plain\""]).unwrap_or_else(|e| panic!("{e}"));
    build_c_plugin(
        &source,
        &pinned,
        &["-DPLUGIN_NAME=\"pinned\"", "-Wl,-z,nodelete"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (plain, pinned)
}

/// The hostile-plugin cases of `tests/broken/hostile.c`: the macro suffix of each.
pub const HOSTILE_CASES: &[&str] = &[
    "ENTRY_IS_DATA",
    "ENTRY_WILD",
    "DESC_RUNS_OFF",
    "NAME_WILD",
    "NAME_RUNS_OFF",
    "DESCRIPTION_RUNS_OFF",
    "OPS_WILD",
    "OPS_RUN_OFF",
    "OP_SIZE_HUGE",
    "STRUCT_SIZE_HUGE",
    "OP_COUNT_HUGE",
    "ENTRY_MISALIGNED",
    "IFACES_WILD",
    "IFACE_COUNT_HUGE",
    "IFACE_ID_RUNS_OFF",
    "VTABLE_RUNS_OFF",
    "BYTES_SLOT_DATA",
    "IFACE_FLAGS_UNKNOWN",
];

/// The load-time cases of `tests/broken/hostile.c`: files whose initialisers or `plugin_entry`
/// crash, exit or hang the process that opens them. Only a vetting child may open these.
pub const LOAD_TIME_CASES: &[&str] = &[
    "CTOR_CRASH",
    "CTOR_EXIT",
    "CTOR_HANG",
    "ENTRY_CRASH",
    "ENTRY_HANG",
    "CTOR_ABORT",
    "CTOR_KILL",
    "CTOR_EXIT3",
    "CTOR_STACK",
    "CTOR_CLOSE_STDIN",
    "CTOR_WRITE_STDIN",
    "CTOR_FORK",
    "ENTRY_ABORT",
    "CTOR_FORGE",
];

/// A private copy of the load-time corpus (the valid `libgood_c.so` and one file per
/// [`LOAD_TIME_CASES`]) in a new scratch directory named after `name`, its libraries dated a
/// minute back: verdicts and cache entries on files changed within 2 s of their validation are
/// not trusted (`RACY_WINDOW`). Returns the canonical directory.
pub fn dated_load_time_corpus(name: &str) -> PathBuf {
    let dir = scratch_dir(&format!("{name}-{}", std::process::id()));
    for entry in std::fs::read_dir(load_time_corpus_dir()).unwrap() {
        let from = entry.unwrap().path();
        std::fs::copy(&from, dir.join(from.file_name().unwrap())).unwrap();
    }
    let dated = Command::new("sh")
        .arg("-c")
        .arg("touch -m -d '1 minute ago' \"$0\"/*.so")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(dated.success(), "touch");
    std::fs::canonicalize(&dir).unwrap()
}

/// The file in which `libhostile_ctor_fork.so` of [`load_time_corpus_dir`] records the pid of
/// each child its constructor forks (one line each): no such child may outlive the host run
/// that opened the file.
pub fn forked_pids_file() -> PathBuf {
    load_time_corpus_dir().join("forked.pids")
}

/// The load-time corpus (`libhostile_<case>.so` for each of [`LOAD_TIME_CASES`]) next to the
/// valid `libgood_c.so`, built once per process into one directory.
pub fn load_time_corpus_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch_dir(&format!("load-time-{}", std::process::id()));
        build_cases(&dir, "hostile", LOAD_TIME_CASES);
        build_good_c(&dir);
        dir
    })
}

/// The corpus of hostile plugins (`libhostile_<case>.so` for each of [`HOSTILE_CASES`]) next to
/// the valid `libgood_c.so` of `tests/broken/broken.c`, built once per process into one
/// directory.
pub fn hostile_corpus_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch_dir(&format!("hostile-{}", std::process::id()));
        build_cases(&dir, "hostile", HOSTILE_CASES);
        build_good_c(&dir);
        dir
    })
}

/// The Rust snippets of README.md and docs/*.md, compiled as doc tests
/// (`cargo test -p calc-tests --doc`): every ```` ```rust ```` block is a complete example. The
/// only ones marked `rust,ignore` are quotes of the `calc new-plugin` template (marked
/// `<!-- scaffold:rust -->`), which `tests/it/scaffold.rs` builds as a whole;
/// `tests/it/docs.rs` checks both rules and that every docs/*.md is listed here.
#[cfg(doctest)]
pub mod docs {
    #[doc = include_str!("../../README.md")]
    pub mod readme {}
    #[doc = include_str!("../../docs/ABI.md")]
    pub mod abi {}
    #[doc = include_str!("../../docs/ARCHITECTURE.md")]
    pub mod architecture {}
    #[doc = include_str!("../../docs/CONFIG.md")]
    pub mod config {}
    #[doc = include_str!("../../docs/INTERFACES.md")]
    pub mod interfaces {}
    #[doc = include_str!("../../docs/ISOLATION.md")]
    pub mod isolation {}
    #[doc = include_str!("../../docs/PERFORMANCE.md")]
    pub mod performance {}
    #[doc = include_str!("../../docs/PLUGIN_GUIDE.md")]
    pub mod plugin_guide {}
    #[doc = include_str!("../../docs/RELOAD.md")]
    pub mod reload {}
    #[doc = include_str!("../../docs/TESTING.md")]
    pub mod testing {}
    #[doc = include_str!("../../docs/TRUST.md")]
    pub mod trust {}
}
