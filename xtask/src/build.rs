//! Building the example and fixture plugins, for `cargo xtask demo` and the test suite.
//!
//! C plugins are built with one plain compiler command (the same one the README shows); Rust
//! plugins with `cargo build` in the workspace's target directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::workspace_root;

/// The Cargo package that builds `libcalc_host.so` and `libcalc_host.a`.
pub const CAPI_PACKAGE: &str = "calc-host-capi";

/// The package of the `calc` CLI.
pub const CLI_PACKAGE: &str = "calc-cli";

/// The package of `calc-plugin-runner`, the child process of isolated and vetted plugins.
pub const RUNNER_PACKAGE: &str = "calc-plugin-runner";

/// The library name of [`CAPI_PACKAGE`]: `lib<name>.so`, `lib<name>.a`.
pub const CAPI_LIBRARY: &str = "calc_host";

/// The C example plugins: folder names under `examples-c/`, each with a `plugin.c`.
pub const C_EXAMPLES: &[&str] = &["add", "sub", "pow", "cmath"];

/// The C++ example plugins: folder names under `examples-c/`, each with a `plugin.cpp` and a
/// `plugin.map` version script (which keeps inline libstdc++ symbols out of the exports).
pub const CPP_EXAMPLES: &[&str] = &["cpp_trig"];

/// The Rust example plugins: (package, library name).
pub const RUST_EXAMPLES: &[(&str, &str)] = &[
    ("calc-example-mul", "mul"),
    ("calc-example-div", "div"),
    ("calc-example-stats", "stats"),
];

/// The flags every C plugin is built with (before the source file). `-O2` lets the compiler
/// vectorise the examples' batch loops (ABI 1.2 `execute_batch`).
pub const C_PLUGIN_FLAGS: &[&str] = &[
    "-std=c99",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-fPIC",
    "-fvisibility=hidden",
    "-shared",
];

/// The flags every C++ plugin is built with (before the source file).
pub const CPP_PLUGIN_FLAGS: &[&str] = &[
    "-std=c++11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-fPIC",
    "-fvisibility=hidden",
    "-shared",
];

/// The C++ compiler: `$CXX`, or `c++`.
pub fn cxx_compiler() -> String {
    std::env::var("CXX")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "c++".into())
}

/// The C compiler: `$CC`, or `cc`.
pub fn c_compiler() -> String {
    std::env::var("CC")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "cc".into())
}

/// The workspace's target directory: `$CARGO_TARGET_DIR`, or `target/` at the root.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `lib<name>.so` (or the platform's equivalent).
pub fn library_file_name(name: &str) -> String {
    format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Runs `cmd`; an error names the command and carries its output when it cannot run or fails.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Compiles one C plugin source into the shared library `out`, with extra arguments
/// (`-DNAME`, `-O2`, ...) placed before the source.
pub fn build_c_plugin(source: &Path, out: &Path, extra: &[&str]) -> Result<(), String> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let include = workspace_root().join("include");
    run(Command::new(c_compiler())
        .args(C_PLUGIN_FLAGS)
        .arg("-I")
        .arg(&include)
        .args(extra)
        .arg(source)
        .arg("-o")
        .arg(out)
        .arg("-lm"))
}

/// Compiles the C++ plugin in `examples-c/<name>/` (its `plugin.cpp` and `plugin.map`) into the
/// shared library `out`.
pub fn build_cpp_plugin(name: &str, out: &Path) -> Result<(), String> {
    build_cpp_plugin_in(&workspace_root().join("examples-c").join(name), &[], out)
}

/// Compiles the C++ plugin in `dir` (its `plugin.cpp` and `plugin.map`) into the shared
/// library `out`, with `include/` and `includes` as `-I` directories.
pub fn build_cpp_plugin_in(dir: &Path, includes: &[&Path], out: &Path) -> Result<(), String> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let mut cmd = Command::new(cxx_compiler());
    cmd.args(CPP_PLUGIN_FLAGS)
        .arg("-I")
        .arg(workspace_root().join("include"));
    for include in includes {
        cmd.arg("-I").arg(include);
    }
    run(cmd
        .arg(dir.join("plugin.cpp"))
        .arg(format!(
            "-Wl,--version-script={}",
            dir.join("plugin.map").display()
        ))
        .arg("-o")
        .arg(out))
}

/// Compiles the calculator in C (`examples-c/host/main.c`) against the shared `libcalc_host`
/// in `lib_dir`, with an rpath so it runs without `LD_LIBRARY_PATH`.
pub fn build_c_host(lib_dir: &Path, out: &Path) -> Result<(), String> {
    let root = workspace_root();
    run(Command::new(c_compiler())
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(root.join("include"))
        .arg(root.join("examples-c/host/main.c"))
        .arg(format!("-L{}", lib_dir.display()))
        .arg("-lcalc_host")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-o")
        .arg(out))
}

/// Runs `cargo build` for `packages` in the workspace's target directory (debug profile) and
/// returns the directory the artifacts are in.
pub fn cargo_build(packages: &[&str]) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args(["build", "--quiet"]);
    for p in packages {
        cmd.args(["--package", p]);
    }
    run(&mut cmd)?;
    Ok(target_dir().join("debug"))
}

/// Builds every example plugin, C, C++ and Rust, into `dest`. Returns the library paths.
pub fn build_examples(dest: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let root = workspace_root();
    let mut built = Vec::new();
    for name in C_EXAMPLES {
        let out = dest.join(library_file_name(name));
        build_c_plugin(
            &root.join("examples-c").join(name).join("plugin.c"),
            &out,
            &[],
        )?;
        built.push(out);
    }
    for name in CPP_EXAMPLES {
        let out = dest.join(library_file_name(name));
        build_cpp_plugin(name, &out)?;
        built.push(out);
    }
    let packages: Vec<&str> = RUST_EXAMPLES.iter().map(|(p, _)| *p).collect();
    let artifacts = cargo_build(&packages)?;
    for (_, lib) in RUST_EXAMPLES {
        let file = library_file_name(lib);
        let out = dest.join(&file);
        copy_fresh(&artifacts.join(&file), &out)?;
        built.push(out);
    }
    Ok(built)
}

/// Copies a library to `to` through a temporary file and a rename, so that a process which has
/// the old file mapped keeps its copy intact (overwriting a mapped library in place corrupts it).
pub fn copy_fresh(from: &Path, to: &Path) -> Result<(), String> {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp)
        .map_err(|e| format!("copy {} -> {}: {e}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to)
        .map_err(|e| format!("rename {} -> {}: {e}", tmp.display(), to.display()))
}
