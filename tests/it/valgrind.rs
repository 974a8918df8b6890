//! `calc eval`, in process and isolated (with its runners), under exactly
//! `valgrind --leak-check=full --error-exitcode=9`: no memory error and no leak but "still
//! reachable" blocks, so the process-wide caches and the runner's watchdog thread leave nothing
//! valgrind counts as lost. (The C API's programs: `capi.rs`.)

use std::path::Path;
use std::process::Output;

use calc_tests::{calc_binary, examples_dir, require_tools, scratch_dir, VALGRIND_MEMCHECK};

/// Expressions served by C, C++ and Rust plugins.
const EXPRESSIONS: [&str; 2] = ["2 ^ 10 - max(3, 4) / 2", "atan2(0, 1) + sqrt(16)"];

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `valgrind --leak-check=full --error-exitcode=9 valgrind_options... calc args... eval EXPRESSIONS` with its own metadata cache `cache` and
/// no plugin path or logging from the environment.
fn calc_under_valgrind(valgrind_options: &[&str], args: &[&str], cache: &Path) -> Output {
    let mut cmd = std::process::Command::new("valgrind");
    cmd.args(VALGRIND_MEMCHECK)
        .args(valgrind_options)
        .arg(calc_binary())
        .arg("--plugin-dir")
        .arg(examples_dir())
        .args(args)
        .arg("eval")
        .args(EXPRESSIONS)
        .env("XDG_CACHE_HOME", cache)
        .env_remove("CALC_PLUGIN_PATH")
        .env_remove("CALC_CONFIG")
        .env_remove("RUST_LOG");
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn assert_exit_0(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what} under valgrind exited with {}:\n{}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "1022\n4\n", "{what}");
}

#[test]
fn calc_eval_is_clean_under_valgrind() {
    require_tools!(Valgrind);
    let cache = scratch_dir(&format!("valgrind-eval-{}", std::process::id()));
    // First with an empty metadata cache (it is written), then with it filled (it is read).
    for run in ["cold cache", "warm cache"] {
        let out = calc_under_valgrind(&[], &[], &cache);
        assert_exit_0(&out, &format!("calc eval ({run})"));
    }
}

#[test]
fn isolated_calc_eval_and_its_runners_are_clean_under_valgrind() {
    require_tools!(Valgrind);
    let dir = scratch_dir(&format!("valgrind-isolated-{}", std::process::id()));
    // Limits far above what valgrind's slowdown needs, so a slow start is not a timeout.
    let config = dir.join("calc.toml");
    std::fs::write(
        &config,
        "[isolation]\ntimeout_ms = 60000\nstart_timeout_ms = 120000\n",
    )
    .unwrap();
    let config = config.to_str().expect("UTF-8 path");
    let out = calc_under_valgrind(
        &["--trace-children=yes"],
        &["--isolate", "--config", config],
        &dir.join("cache"),
    );
    assert_exit_0(&out, "calc --isolate eval");

    // The host does not pass on a runner's exit status (valgrind's 9 included), so each
    // process's own report is read: every one says 0 errors, and every plugin had its runner
    // traced.
    let stderr = text(&out.stderr);
    let summaries: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ERROR SUMMARY:"))
        .collect();
    let runners: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Command: ") && l.contains("calc-plugin-runner"))
        .collect();
    let plugins: Vec<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(std::env::consts::DLL_SUFFIX))
        .collect();
    assert!(plugins.len() >= 8, "{plugins:?}");
    for plugin in &plugins {
        assert!(
            runners.iter().any(|r| r.ends_with(plugin.as_str())),
            "no runner traced for {plugin}:\n{stderr}"
        );
    }
    assert_eq!(summaries.len(), 1 + runners.len(), "{stderr}");
    for summary in summaries {
        assert!(
            summary.contains("ERROR SUMMARY: 0 errors"),
            "{summary}\n{stderr}"
        );
    }
}
