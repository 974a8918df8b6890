//! The RCU's loom model checks (`runtime/src/rcu.rs`, `loom_tests`) pass. They need a build with
//! `--cfg loom`, so this runs it as a subprocess in its own target directory (`target/loom`,
//! which leaves the normal build's artifacts alone):
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p calc-runtime --lib rcu::loom_tests
//! ```
//!
//! The debug profile, because it is the quicker one from a cold target directory (about 1.5
//! minutes on 2 cores, building included, against 2.2 for `--release`, whose model checks run
//! in 5 s rather than 25 s: use it when widening the search with `LOOM_MAX_PREEMPTIONS`).

use std::process::Command;

#[test]
fn rcu_loom_model_checks_pass() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustflags = match std::env::var("RUSTFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} --cfg loom"),
        _ => "--cfg loom".to_string(),
    };
    let out = Command::new(cargo)
        .current_dir(xtask::workspace_root())
        .args([
            "test",
            "--locked",
            "-p",
            "calc-runtime",
            "--lib",
            "rcu::loom_tests",
        ])
        // Takes precedence over RUSTFLAGS when set; the flags above include the caller's.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", rustflags)
        .env("CARGO_TARGET_DIR", xtask::build::target_dir().join("loom"))
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the loom model checks failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // A renamed module or a wrong filter would pass with no test run at all.
    let passed = stdout
        .lines()
        .filter(|l| l.starts_with("test rcu::loom_tests::") && l.ends_with(" ... ok"))
        .count();
    assert!(
        passed >= 5,
        "expected the 5 loom model checks to run and pass, saw {passed}:\n{stdout}\n{stderr}"
    );
}
