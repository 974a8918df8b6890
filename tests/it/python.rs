//! The Python package (`python/`, `calc_host`, cffi in ABI mode): installed with pip from the
//! repository into a scratch folder, then its pytest tests run against that installed copy,
//! this build's libcalc_host and the example plugins. Needs python3 with numpy, pytest, wheel,
//! pip, setuptools and cffi (`require_tools!(PythonTest)`, which probes python3 itself).

use std::process::Command;

use calc_tests::{
    build_c_plugin, cargo_build, examples_dir, library_file_name, scratch_dir, workspace_root,
};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_python_package_installs_with_pip_and_passes_its_tests() {
    calc_tests::require_tools!(PythonTest);
    let lib_dir = cargo_build(&["calc-host-capi"]).unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir(&format!("python-{}", std::process::id()));
    let shapes = dir.join(library_file_name("shapes"));
    build_c_plugin(
        &workspace_root().join("tests/fixtures/c/shapes.c"),
        &shapes,
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // `pip install` from the repository (no index: the build needs only setuptools), from a
    // copy, as setuptools writes its build files beside the sources.
    let source = dir.join("source");
    copy_tree(&workspace_root().join("python"), &source);
    let site = dir.join("site");
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
        ])
        .arg("--target")
        .arg(&site)
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pip install:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(site.join("calc_host/__init__.py").is_file());

    let out = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .arg(workspace_root().join("python/tests"))
        .env("PYTHONPATH", &site)
        .env("CALC_INSTALLED_AT", &site)
        .env(
            "CALC_HOST_LIB",
            lib_dir.join(library_file_name("calc_host")),
        )
        .env("CALC_PLUGIN_DIR", examples_dir())
        .env("CALC_SHAPES_PLUGIN", &shapes)
        .env("CALC_RUNNER", calc_tests::runner_binary())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "pytest:\n{stdout}{}",
        text(&out.stderr)
    );
    // Every test ran: none skipped for a missing variable.
    assert!(!stdout.contains("SKIPPED"), "{stdout}");
    assert!(stdout.contains(" passed"), "{stdout}");

    // The example calculator, with the installed package.
    let mut child = Command::new("python3")
        .arg(workspace_root().join("python/examples/calculator.py"))
        .arg(examples_dir())
        .env("PYTHONPATH", &site)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env(
            "CALC_HOST_LIB",
            lib_dir.join(library_file_name("calc_host")),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"1 + 2 * 3 - cos(0)\n2 ^ 10 - max(3, 4) / 2\n1 / 0\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("operators: ") && lines[0].contains("cos (cpp_trig"),
        "{stdout}"
    );
    assert_eq!(
        lines[1..],
        ["6", "1022", "error: div (plugin div): division by zero"]
    );
}

/// Copies the files of `from` into `to`, recursively, leaving caches out.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "__pycache__" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}
