//! The Go package (`go/`, package `calc` of module `calchost`) on libcalc_host: `go vet` and
//! `go test` against this build's library and example plugins, and its example, the
//! calculator whose operators are plugins, reloading and unloading them while it runs.
//! Needs Go (`require_tools!(Go)`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use calc_tests::{
    build_c_plugin, cargo_build, examples_dir, library_file_name, scratch_dir, workspace_root,
};

/// `go` in `go/`, linked with this build's libcalc_host (the package's default, the
/// workspace's `target/debug`, unless the build went elsewhere).
fn go(args: &[&str]) -> Command {
    let lib_dir = cargo_build(&["calc-host-capi"]).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new("go");
    cmd.current_dir(workspace_root().join("go")).args(args);
    if lib_dir != workspace_root().join("target/debug") {
        let d = lib_dir.display();
        cmd.env("CGO_LDFLAGS", format!("-L{d} -Wl,-rpath,{d}"));
    }
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_go_package_passes_go_vet_and_go_test() {
    calc_tests::require_tools!(Go);
    let dir = scratch_dir(&format!("go-test-{}", std::process::id()));
    let shapes = dir.join(library_file_name("shapes"));
    build_c_plugin(
        &workspace_root().join("tests/fixtures/c/shapes.c"),
        &shapes,
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = go(&["vet", "./..."]).output().unwrap();
    assert!(out.status.success(), "go vet:\n{}", text(&out.stderr));
    let out = go(&["test", "-count=1", "-v", "./..."])
        .env("CALC_PLUGIN_DIR", examples_dir())
        .env("CALC_SHAPES_PLUGIN", &shapes)
        .env("CALC_RUNNER", calc_tests::runner_binary())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "go test:\n{stdout}{}",
        text(&out.stderr)
    );
    // Every test ran, none skipped.
    assert!(!stdout.contains("--- SKIP"), "{stdout}");
    assert!(stdout.matches("--- PASS").count() >= 8, "{stdout}");
}

/// The example calculator, running on a copy of the example plugins, with its standard input
/// and output.
struct Calculator {
    child: std::process::Child,
    /// Dropped (closed) to end it.
    stdin: Option<std::process::ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Calculator {
    /// The next line it prints that starts with `prefix`, within 20 s (the lines before it
    /// are kept in `seen`).
    fn wait_for(&mut self, prefix: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line starting {prefix:?}; printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn ask(&mut self, expression: &str) -> String {
        let stdin = self.stdin.as_mut().expect("still running");
        writeln!(stdin, "{expression}").unwrap();
        stdin.flush().unwrap();
        loop {
            let line = self.wait_for("");
            if !line.starts_with("event: ") {
                return line;
            }
        }
    }
}

impl Drop for Calculator {
    /// A failed test leaves no process behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies `from` to `to` as a rebuild would: written beside it, then renamed into place.
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[test]
fn the_go_example_calculator_reloads_and_unloads_its_plugins_while_it_runs() {
    calc_tests::require_tools!(Go);
    let dir = scratch_dir(&format!("go-calculator-{}", std::process::id()));
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let lib = |name: &str| -> (PathBuf, PathBuf) {
        let file = library_file_name(name);
        (examples_dir().join(&file), plugins.join(&file))
    };
    // + - from C, * / from Rust, trigonometry from C++.
    for name in ["add", "sub", "mul", "div", "cpp_trig"] {
        let (from, to) = lib(name);
        install(&from, &to);
    }
    let bin = dir.join("calculator");
    let out = go(&["build", "-o", bin.to_str().unwrap(), "./example/calculator"])
        .output()
        .unwrap();
    assert!(out.status.success(), "go build:\n{}", text(&out.stderr));
    let mut child = Command::new(&bin)
        .arg(&plugins)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut calc = Calculator {
        child,
        stdin: Some(stdin),
        lines,
        seen: Vec::new(),
    };
    let ops = calc.wait_for("operators: ");
    for op in ["+ (add", "* (mul", "cos (cpp_trig"] {
        assert!(ops.contains(op), "{ops}");
    }
    assert_eq!(calc.ask("1 + 2 * 3 - cos(0)"), "6");

    // Deleted: unloaded between two lines, and * is gone.
    let (mul_built, mul) = lib("mul");
    std::fs::remove_file(&mul).unwrap();
    let removed = calc.wait_for("event: removed mul");
    assert!(removed.contains("deleted"), "{removed}");
    let answer = calc.ask("2 * 3");
    assert!(
        answer.starts_with("error: ") && answer.contains('*'),
        "{answer}"
    );
    // Put back: loaded again.
    install(&mul_built, &mul);
    calc.wait_for("event: loaded mul");
    assert_eq!(calc.ask("2 * 3"), "6");
    // Rebuilt in place: reloaded, the old version unloaded after its last call.
    let (add_built, add) = lib("add");
    install(&add_built, &add);
    calc.wait_for("event: reloaded add 1.0.0 -> 1.0.0");
    calc.wait_for("event: unloaded add 1.0.0");
    assert_eq!(calc.ask("40 + 2"), "42");

    calc.stdin = None;
    let status = calc.child.wait().unwrap();
    assert!(status.success(), "{status}");
}
