//! Optional system tools: what a test needs beyond the README's prerequisites (a Rust toolchain,
//! `cc`/`c++` and binutils).
//!
//! A test that needs one starts with `calc_tests::require_tools!(Clang);` (several:
//! `require_tools!(Cmake, PkgConfig)`). When a tool is missing, the test prints one line naming
//! the tool and the Debian/Ubuntu package providing it, e.g.
//! `skipped toolchains::gcc_and_clang: needs clang (apt-get install clang)`, and returns without
//! failing. With `CALC_TEST_REQUIRE_TOOLS=1` in the environment (CI sets it) a missing tool fails
//! the test with that line instead, so nothing is skipped there unnoticed.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

/// The environment variable that turns a skip for a missing tool into a test failure: any value
/// other than empty or `0`.
pub const REQUIRE_TOOLS_ENV: &str = "CALC_TEST_REQUIRE_TOOLS";

/// A system tool some tests need and a fresh machine may lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// The libclang shared library, which bindgen loads at run time.
    Libclang,
    /// The `clang` C compiler.
    Clang,
    /// `cmake` (with `ctest`).
    Cmake,
    /// `valgrind`.
    Valgrind,
    /// `pkg-config`.
    PkgConfig,
    /// The Go toolchain, `go`.
    Go,
    /// `python3`.
    Python3,
    /// numpy, pytest and cffi for `python3` (the Python package's tests).
    PythonTest,
    /// GNU `make`.
    Make,
}

impl Tool {
    /// Every tool.
    pub const ALL: [Tool; 9] = [
        Tool::Clang,
        Tool::Libclang,
        Tool::Cmake,
        Tool::Valgrind,
        Tool::PkgConfig,
        Tool::Make,
        Tool::Go,
        Tool::Python3,
        Tool::PythonTest,
    ];

    /// The tool's name as a skip line prints it.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Libclang => "libclang",
            Tool::Clang => "clang",
            Tool::Cmake => "cmake",
            Tool::Valgrind => "valgrind",
            Tool::PkgConfig => "pkg-config",
            Tool::Go => "go",
            Tool::Python3 => "python3",
            Tool::PythonTest => "numpy, pytest, cffi, wheel, pip and setuptools for python3",
            Tool::Make => "make",
        }
    }

    /// The Debian/Ubuntu packages that provide the tool (space-separated).
    pub fn package(self) -> &'static str {
        match self {
            Tool::Libclang => "libclang-dev",
            Tool::Clang => "clang",
            Tool::Cmake => "cmake",
            Tool::Valgrind => "valgrind",
            Tool::PkgConfig => "pkg-config",
            Tool::Go => "golang-go",
            Tool::Python3 => "python3",
            Tool::PythonTest => {
                "python3-numpy python3-pytest python3-cffi python3-wheel python3-pip python3-setuptools"
            }
            Tool::Make => "make",
        }
    }

    /// The command that proves an executable tool runs (`None` for libclang, a library).
    fn probe_command(self) -> Option<(&'static str, &'static [&'static str])> {
        match self {
            Tool::Libclang => None,
            Tool::Go => Some(("go", &["version"])),
            // setuptools first: imported after pip (which imports distutils) it fails.
            Tool::PythonTest => Some((
                "python3",
                &["-c", "import setuptools, pip, numpy, pytest, cffi, wheel"],
            )),
            tool => Some((tool.name(), &["--version"])),
        }
    }

    /// Whether the tool is usable by this process, probed once per process.
    pub fn is_available(self) -> bool {
        static PROBED: [OnceLock<bool>; Tool::ALL.len()] =
            [const { OnceLock::new() }; Tool::ALL.len()];
        let index = Tool::ALL
            .iter()
            .position(|t| *t == self)
            .expect("Tool::ALL lists every tool");
        *PROBED[index].get_or_init(|| match self.probe_command() {
            Some((program, args)) => command_runs(program, args, None),
            None => libclang_loads(),
        })
    }
}

/// Whether `program args` can be started and exits successfully, looked up in `path` (the
/// `PATH` to search; `None`: this process's). Its output is discarded.
pub fn command_runs(program: &str, args: &[&str], path: Option<&OsStr>) -> bool {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    cmd.status().is_ok_and(|status| status.success())
}

/// Whether bindgen will find and load libclang.
///
/// bindgen (with its default `runtime` feature) calls `clang_sys::load()` on first use and panics
/// with "Unable to find libclang" when it fails. `clang_sys::load_manually()` is the function
/// behind `load()`: the same search (`LIBCLANG_PATH`, `llvm-config`, the usual library
/// directories, `ldconfig -p`, `libclang.so*` and `libclang-*.so*`, libclang-cpp excluded) and
/// the same `dlopen`, from the same clang-sys crate (one version in the lock file), so this
/// answers yes exactly when bindgen's load succeeds. Probing for files by hand would drift from
/// clang-sys's rules. The loaded library is kept for the life of the process (as bindgen keeps
/// its own), since unloading LLVM's libraries is not reliably safe.
fn libclang_loads() -> bool {
    static LIBCLANG: OnceLock<Option<Arc<clang_sys::SharedLibrary>>> = OnceLock::new();
    LIBCLANG
        .get_or_init(|| clang_sys::load_manually().ok().map(Arc::new))
        .is_some()
}

/// Whether a value of [`REQUIRE_TOOLS_ENV`] makes a missing tool a failure: set and neither
/// empty nor `0`.
pub fn requires_tools(value: Option<&OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0")
}

/// The one line reported for `missing` tools in the test `test` (`None` when unknown), e.g.
/// `skipped cli::x: needs cmake, pkg-config (apt-get install cmake pkg-config)`.
pub fn skip_line(test: Option<&str>, missing: &[Tool]) -> String {
    let names: Vec<&str> = missing.iter().map(|t| t.name()).collect();
    let packages: Vec<&str> = missing.iter().map(|t| t.package()).collect();
    let who = test.map(|t| format!(" {t}")).unwrap_or_default();
    format!(
        "skipped{who}: needs {} (apt-get install {})",
        names.join(", "),
        packages.join(" ")
    )
}

/// The name of the running test: libtest names each test's thread after the test (except with
/// `--test-threads=1`, where tests run on `main`).
fn current_test() -> Option<String> {
    let thread = std::thread::current();
    thread
        .name()
        .filter(|name| *name != "main")
        .map(str::to_string)
}

/// Checks that every tool in `tools` is available. When one is not: with
/// [`REQUIRE_TOOLS_ENV`] set, panics with the skip line (a test failure); otherwise prints the
/// skip line to standard error and returns `false` (the test should return). Used through
/// [`require_tools!`](crate::require_tools).
pub fn available(tools: &[Tool]) -> bool {
    let missing: Vec<Tool> = tools
        .iter()
        .copied()
        .filter(|t| !t.is_available())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let line = skip_line(current_test().as_deref(), &missing);
    let require: Option<OsString> = std::env::var_os(REQUIRE_TOOLS_ENV);
    if requires_tools(require.as_deref()) {
        panic!("{line}; {REQUIRE_TOOLS_ENV}=1 makes a missing tool a failure");
    }
    // Straight to the process's standard error: libtest captures `eprintln!` of passing tests,
    // and a skip must be visible in `cargo test`'s output.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
    false
}

/// Returns from the calling test (after one line naming the tool and its package) unless every
/// listed [`Tool`] is available; a failure instead with `CALC_TEST_REQUIRE_TOOLS=1`. E.g.
/// `calc_tests::require_tools!(Cmake, PkgConfig);`.
#[macro_export]
macro_rules! require_tools {
    ($($tool:ident),+ $(,)?) => {
        if !$crate::tools::available(&[$($crate::tools::Tool::$tool),+]) {
            return;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_skip_line_names_each_tool_and_its_package() {
        assert_eq!(
            skip_line(Some("toolchains::t"), &[Tool::Clang]),
            "skipped toolchains::t: needs clang (apt-get install clang)"
        );
        assert_eq!(
            skip_line(None, &[Tool::Cmake, Tool::PkgConfig, Tool::Libclang]),
            "skipped: needs cmake, pkg-config, libclang \
             (apt-get install cmake pkg-config libclang-dev)"
        );
    }

    #[test]
    fn only_a_set_non_zero_value_requires_the_tools() {
        assert!(!requires_tools(None));
        assert!(!requires_tools(Some(OsStr::new(""))));
        assert!(!requires_tools(Some(OsStr::new("0"))));
        assert!(requires_tools(Some(OsStr::new("1"))));
        assert!(requires_tools(Some(OsStr::new("yes"))));
    }

    fn script(dir: &Path, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_command_is_available_when_it_is_on_the_path_and_succeeds() {
        let dir = crate::scratch_dir(&format!("tools-probe-{}", std::process::id()));
        script(&dir, "works", "exit 0");
        script(&dir, "broken", "exit 1");
        let path = Some(dir.as_os_str());
        assert!(command_runs("works", &["--version"], path));
        assert!(!command_runs("broken", &["--version"], path));
        assert!(!command_runs("absent", &["--version"], path));
    }
}
