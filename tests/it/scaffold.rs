//! `calc new-plugin` projects, C and Rust: generated into an empty folder, built exactly as their
//! READMEs say, loaded by the host, reading their configuration and evaluating to the documented
//! result; the Rust project's own unit tests pass.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use calc_cli::scaffold::{scaffold, Lang, Scaffold};
use calc_host::{LoadError, PluginManager};
use calc_sdk::Status;
use calc_tests::{library_file_name, scratch_dir, target_dir, workspace_root};

/// Generates a project for `name` in a fresh folder and returns the folder.
fn generate(lang: Lang, name: &str) -> PathBuf {
    let dir = scratch_dir(&format!("scaffold-{name}-{}", std::process::id())).join(name);
    let files = scaffold(&Scaffold {
        lang,
        name: name.to_string(),
        dir: dir.clone(),
        sdk_root: workspace_root(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(files.len(), 3, "{files:?}");
    for file in &files {
        assert!(
            file.starts_with(&dir) && file.is_file(),
            "{}",
            file.display()
        );
    }
    dir
}

fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Cargo in a target folder shared by the scaffold tests (compiled `calc-sdk` is reused and
/// nothing is written into the repository).
fn cargo(args: &[&str], manifest: &Path) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .args(args)
        .arg("--manifest-path")
        .arg(manifest)
        .env("CARGO_TARGET_DIR", target_dir().join("scaffold-target"))
        .output()
        .expect("cargo runs")
}

/// The documented behaviour of a generated plugin: `NAME(21)` is 42 by default, 63 with
/// `factor = "3"` in its configuration, and a factor that is not a number makes init fail with
/// the plugin's own message.
fn assert_documented_behaviour(lib: &Path, name: &str) {
    let expr = format!("{name}(21)");

    let mut m = PluginManager::new();
    let info = m.load_file(lib).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.name, name);
    assert_eq!(info.version.to_string(), "0.1.0");
    assert_eq!(m.eval(&expr), Ok(42.0), "{expr} with the default factor");
    assert_eq!(m.eval(&format!("{name}({name}(0.5))")), Ok(2.0));
    drop(m);

    let mut m = PluginManager::new();
    m.set_plugin_config(name, "factor", "3");
    m.load_file(lib).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.eval(&expr), Ok(63.0), "{expr} with factor = 3");
    assert!(
        m.eval(&format!("{name}(1e308)")).is_err(),
        "overflow is an error"
    );
    drop(m);

    let mut m = PluginManager::new();
    m.set_plugin_config(name, "factor", "lots");
    match m.load_file(lib) {
        Err(LoadError::InitFailed {
            plugin,
            status,
            message,
            ..
        }) => {
            assert_eq!(plugin, name);
            assert_eq!(status, Status::InvalidArgument);
            assert!(
                message.starts_with(&format!("{name}: config value factor = \"lots\"")),
                "{message}"
            );
        }
        other => panic!("expected InitFailed, got {other:?}"),
    }
}

#[test]
fn c_project_builds_with_make_and_loads() {
    calc_tests::require_tools!(Make);
    let name = "scaffold_c";
    let dir = generate(Lang::C, name);
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("\nmake\n"), "{readme}");
    assert!(readme.contains(&format!("calc --plugin-dir . eval \"{name}(21)\"     # 42")));

    let out = Command::new("make")
        .arg("-C")
        .arg(&dir)
        .output()
        .expect("make runs");
    check("make", &out);
    let lib = dir.join(format!("lib{name}.so"));
    assert!(lib.is_file(), "make built {}", lib.display());
    assert_documented_behaviour(&lib, name);

    let out = Command::new("make")
        .arg("-C")
        .arg(&dir)
        .arg("clean")
        .output()
        .expect("make runs");
    check("make clean", &out);
    assert!(!lib.exists(), "make clean removes the library");
}

#[test]
fn rust_project_builds_with_cargo_loads_and_passes_its_own_tests() {
    let name = "scaffold_rust";
    let dir = generate(Lang::Rust, name);
    let manifest = dir.join("Cargo.toml");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("\ncargo build\n"), "{readme}");
    assert!(readme.contains(&format!(
        "calc --plugin-dir target/debug eval \"{name}(21)\"     # 42"
    )));

    let out = cargo(&["build"], &manifest);
    check("cargo build", &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.lines().any(|l| l.starts_with("warning")),
        "the generated crate builds without warnings:\n{stderr}"
    );
    let lib = target_dir()
        .join("scaffold-target/debug")
        .join(library_file_name(name));
    assert!(lib.is_file(), "cargo built {}", lib.display());
    assert_documented_behaviour(&lib, name);

    let out = cargo(&["test"], &manifest);
    check("cargo test", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("test result: ok. 3 passed"),
        "the generated unit tests ran:\n{stdout}"
    );
}

/// `calc new-plugin` of an installed prefix (`cargo xtask install`) generates projects that use
/// that prefix: the C Makefile its `include/`, the Rust crate its `share/calc/sdk/`, and both
/// build (the Rust one offline: the installed SDK has no dependencies) and load.
#[test]
fn an_installed_calc_scaffolds_projects_against_its_prefix() {
    let root = scratch_dir(&format!("scaffold-prefix-{}", std::process::id()));
    let prefix = root.join("prefix");
    // A debug build, for speed; the layout is the same as the default release install.
    xtask::install::install(&prefix, false).unwrap_or_else(|e| panic!("install: {e}"));
    let prefix = std::fs::canonicalize(&prefix).unwrap();
    let calc = prefix.join("bin/calc");
    assert!(calc.is_file(), "{} is installed", calc.display());

    let new_plugin = |lang: &str, name: &str| -> PathBuf {
        let dir = root.join(name);
        let out = Command::new(&calc)
            .args(["new-plugin", "--lang", lang, name, "--dir"])
            .arg(&dir)
            .env_remove("CALC_SDK_ROOT")
            .output()
            .expect("the installed calc runs");
        check(
            &format!("{} new-plugin --lang {lang}", calc.display()),
            &out,
        );
        dir
    };

    let c = new_plugin("c", "prefix_c");
    let makefile = std::fs::read_to_string(c.join("Makefile")).unwrap();
    assert!(
        makefile.contains(&format!(
            "CALC_INCLUDE ?= {}\n",
            prefix.join("include").display()
        )),
        "the Makefile uses the prefix's headers:\n{makefile}"
    );
    let out = Command::new("make")
        .arg("-C")
        .arg(&c)
        .output()
        .expect("make runs");
    check("make", &out);
    assert_documented_behaviour(&c.join(library_file_name("prefix_c")), "prefix_c");

    let rust = new_plugin("rust", "prefix_rust");
    let manifest = rust.join("Cargo.toml");
    let cargo_toml = std::fs::read_to_string(&manifest).unwrap();
    let sdk = prefix.join("share/calc/sdk");
    assert!(
        cargo_toml.contains(&format!("path = \"{}\"", sdk.display())),
        "the crate uses the prefix's SDK:\n{cargo_toml}"
    );
    let out = cargo(&["build", "--offline"], &manifest);
    check("cargo build --offline", &out);
    let lib = target_dir()
        .join("scaffold-target/debug")
        .join(library_file_name("prefix_rust"));
    assert_documented_behaviour(&lib, "prefix_rust");
    let readme = std::fs::read_to_string(rust.join("README.md")).unwrap();
    let guide = prefix.join("share/doc/calc/PLUGIN_GUIDE.md");
    assert!(readme.contains(&guide.display().to_string()), "{readme}");
    assert!(guide.is_file(), "{} is installed", guide.display());
}
