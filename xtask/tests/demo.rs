//! `cargo xtask demo` builds what the README's set-up section says: the `calc` CLI, the host's
//! C library (`libcalc_host.so` and `.a`) and the example plugins, and runs the calculator.

use std::process::Command;

use xtask::build::{library_file_name, target_dir, CAPI_LIBRARY};

#[test]
fn demo_builds_the_cli_the_c_library_and_the_plugins() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(xtask::workspace_root())
        .args(["xtask", "demo"])
        .env_remove("CALC_PLUGIN_PATH")
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo xtask demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let debug = target_dir().join("debug");
    let shared = debug.join(library_file_name(CAPI_LIBRARY));
    let archive = debug.join(format!("lib{CAPI_LIBRARY}.a"));
    for file in [&shared, &archive] {
        assert!(file.is_file(), "{} missing after the demo", file.display());
        assert!(
            stdout.contains(&file.display().to_string()),
            "the demo names {}:\n{stdout}",
            file.display()
        );
    }
    assert!(debug
        .join("plugins")
        .join(library_file_name("add"))
        .is_file());
    // The shared library exports the C API.
    let nm = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&shared)
        .output()
        .expect("nm runs");
    assert!(
        String::from_utf8_lossy(&nm.stdout).contains(" T calc_host_new"),
        "{} does not export calc_host_new",
        shared.display()
    );
    // The calculator ran on the plugins: the README's expression, C and Rust operators mixed.
    assert!(
        stdout.contains("$ calc eval \"2 ^ 10 - max(3, 4) / 2\"\n1022\n"),
        "{stdout}"
    );
}
