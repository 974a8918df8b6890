//! Toolchain independence. Go plugins must be built with the exact toolchain and package
//! versions of the host; calc plugins must not: the same C plugin built by gcc and by clang, and
//! a Rust plugin built in the other cargo profile than this test's host, all load and work.

use std::path::Path;
use std::process::Command;

use calc_host::PluginManager;
use calc_tests::{build_c_plugin_with, library_file_name, scratch_dir, target_dir, workspace_root};

/// The first line of `compiler --version`.
fn compiler_version(compiler: &str) -> String {
    let out = Command::new(compiler).arg("--version").output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        Ok(out) => panic!(
            "`{compiler} --version` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("{compiler} cannot be run: {e}"),
    }
}

/// The strings of the library's `.comment` section, where each compiler that contributed
/// code leaves its name and version.
fn comment_section(lib: &Path) -> String {
    let out = Command::new("readelf")
        .args(["-p", ".comment"])
        .arg(lib)
        .output()
        .unwrap_or_else(|e| panic!("readelf (binutils) cannot be run: {e}"));
    assert!(
        out.status.success(),
        "readelf -p .comment {}: {}",
        lib.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn eval_in_own_manager(lib: &Path, name: &str, expression: &str) -> f64 {
    let mut m = PluginManager::new();
    let info = m
        .load_file(lib)
        .unwrap_or_else(|e| panic!("{}: {e}", lib.display()));
    assert_eq!(info.name, name, "{}", lib.display());
    m.eval(expression)
        .unwrap_or_else(|e| panic!("{expression} with {}: {e}", lib.display()))
}

#[test]
fn the_same_c_plugin_built_by_gcc_and_by_clang_loads_and_works() {
    calc_tests::require_tools!(Clang);
    let dir = scratch_dir(&format!("toolchains-c-{}", std::process::id()));
    let source = workspace_root().join("examples-c/pow/plugin.c");
    let include = workspace_root().join("include");
    // (compiler, what its `.comment` entry contains, what it must not contain)
    let compilers = [
        ("gcc", "GCC:", Some("clang version")),
        // clang links gcc's crt objects, so "GCC:" may appear too; "clang version" must.
        ("clang", "clang version", None),
    ];
    for (compiler, mark, absent) in compilers {
        let version = compiler_version(compiler);
        let lib = dir.join(library_file_name(&format!("pow_{compiler}")));
        build_c_plugin_with(compiler, &include, &source, &lib).unwrap_or_else(|e| panic!("{e}"));
        let comment = comment_section(&lib);
        assert!(
            comment.contains(mark),
            "{compiler} ({version}): no {mark:?} in .comment of {}:\n{comment}",
            lib.display()
        );
        if let Some(absent) = absent {
            assert!(
                !comment.contains(absent),
                "{compiler} ({version}): {absent:?} in .comment of {}:\n{comment}",
                lib.display()
            );
        }
        // Both libraries are the plugin "pow": one manager each.
        assert_eq!(
            eval_in_own_manager(&lib, "pow", "2 ^ 10"),
            1024.0,
            "{compiler}"
        );
    }
}

#[test]
fn a_rust_plugin_built_in_the_other_cargo_profile_loads_and_works() {
    // The host under test is this test binary: normally a debug build, so the plugin is built
    // with --release (and the other way round under `cargo test --release`).
    let (args, profile_dir): (&[&str], &str) = if cfg!(debug_assertions) {
        (&["--release"], "release")
    } else {
        (&[], "debug")
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--quiet", "--package", "calc-example-mul"])
        .args(args);
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = library_file_name("mul");
    let built = target_dir().join(profile_dir).join(&file);
    let dir = scratch_dir(&format!("toolchains-rust-{}", std::process::id()));
    let lib = dir.join(&file);
    xtask::build::copy_fresh(&built, &lib).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(eval_in_own_manager(&lib, "mul", "6 * 7"), 42.0);
}
