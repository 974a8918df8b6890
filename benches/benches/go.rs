//! The Go package (`go/`) against its references, measured by its own program `go/bench` in
//! one run: a scalar call through `Op.Call` against a bare cgo call of the same C function
//! (the `add` plugin's execute), and 1M pairs through `Expr.Eval` and `Op.CallBatch` against a
//! Go loop. Linked with a release libcalc_host (and release runner, which vets the plugins).
//! Prints one line and skips when Go is missing.
//!
//! `cargo bench -p calc-benches --bench go` (`-- --quick`: a few rounds of 10,000).

use std::process::Command;

use calc_benches::{example_plugins, quick, release_libcalc_host};

fn main() {
    if !go_available() {
        println!("skipped go: needs go (apt-get install golang-go)");
        return;
    }
    let dir = example_plugins();
    let lib = release_libcalc_host();
    let mut cmd = Command::new("go");
    cmd.current_dir(xtask::workspace_root().join("go"))
        .args(["run", "./bench"])
        .arg(&dir)
        .env(
            "CGO_LDFLAGS",
            format!("-L{0} -Wl,-rpath,{0}", lib.display()),
        );
    if quick() {
        cmd.arg("-quick");
    }
    let status = cmd.status().expect("go runs");
    assert!(status.success(), "go/bench failed");
}

/// Whether `go version` runs.
fn go_available() -> bool {
    Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}
