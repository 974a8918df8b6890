//! The Python package (`python/`) against numpy, measured by its own script
//! `python/benchmarks/batch.py` in one run: 1M pairs through `Expr.eval` of `x + y` and through
//! `Op.batch` of `add` over numpy arrays against `numpy.add(a, b, out=out)`. Uses a release
//! libcalc_host (and release runner, which vets the plugins). Prints one line and skips when
//! python3 with numpy and cffi is missing.
//!
//! `cargo bench -p calc-benches --bench python` (`-- --quick`: a few rounds of 10,000).

use std::process::Command;

use calc_benches::{example_plugins, quick, release_libcalc_host};

fn main() {
    let ready = Command::new("python3")
        .args(["-c", "import numpy, cffi"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        println!("skipped python: needs numpy and cffi for python3 (apt-get install python3-numpy python3-cffi)");
        return;
    }
    let dir = example_plugins();
    let lib_dir = release_libcalc_host();
    let root = xtask::workspace_root();
    let lib = lib_dir.join("libcalc_host.so");
    let mut cmd = Command::new("python3");
    cmd.arg(root.join("python/benchmarks/batch.py"))
        .arg(&dir)
        .env("PYTHONPATH", root.join("python"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("CALC_HOST_LIB", &lib);
    if quick() {
        cmd.arg("--quick");
    }
    let status = cmd.status().expect("python3 runs");
    assert!(status.success(), "python/benchmarks/batch.py failed");
}
