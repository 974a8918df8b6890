//! init receives the host services, instance state reaches every call, shutdown runs exactly
//! once, and a refused plugin never runs init.

use std::path::{Path, PathBuf};

use calc_host::{LoadError, PluginManager};
use calc_tests::{build_c_plugin, library_file_name, scratch_dir, workspace_root};

fn build(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(library_file_name(name));
    build_c_plugin(
        &workspace_root().join("tests/fixtures/c/lifecycle.c"),
        &out,
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    out
}

fn configured(trace: &Path) -> PluginManager {
    let mut m = PluginManager::new();
    m.set_plugin_config("lifecycle", "trace_file", trace.to_str().unwrap());
    m.set_plugin_config("lifecycle", "value", "7.5");
    m
}

#[test]
fn init_reads_config_and_shutdown_runs_once_on_drop() {
    let dir = scratch_dir(&format!("lifecycle-{}", std::process::id()));
    let lib = build(&dir, "lifecycle");
    let trace = dir.join("trace.txt");
    let mut m = configured(&trace);
    m.load_file(&lib).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        std::fs::read_to_string(&trace).unwrap(),
        "init lifecycle 7.5\n"
    );
    assert_eq!(m.eval("value()"), Ok(7.5), "instance state reaches execute");
    drop(m);
    assert_eq!(
        std::fs::read_to_string(&trace).unwrap(),
        "init lifecycle 7.5\nshutdown lifecycle 7.5\n"
    );
}

#[test]
fn a_plugin_refused_as_a_duplicate_never_runs_init() {
    let dir = scratch_dir(&format!("lifecycle-dup-{}", std::process::id()));
    build(&dir, "lifecycle_a");
    build(&dir, "lifecycle_b");
    let trace = dir.join("trace.txt");
    let mut m = configured(&trace);
    assert_eq!(m.load_dir(&dir).unwrap(), 1);
    assert!(matches!(
        m.failures()[0].error,
        LoadError::DuplicatePlugin { .. }
    ));
    drop(m);
    assert_eq!(
        std::fs::read_to_string(&trace).unwrap(),
        "init lifecycle 7.5\nshutdown lifecycle 7.5\n"
    );
}

#[test]
fn without_config_the_plugin_sees_no_values() {
    let dir = scratch_dir(&format!("lifecycle-noconf-{}", std::process::id()));
    let lib = build(&dir, "lifecycle");
    let mut m = PluginManager::new();
    m.load_file(&lib).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.eval("value()"), Ok(-1.0));
}

#[test]
fn plugin_log_lines_reach_the_host_log_only_when_asked() {
    let dir = scratch_dir(&format!("lifecycle-log-{}", std::process::id()));
    build(&dir, "lifecycle");
    let d = dir.to_str().unwrap();
    let quiet = calc_tests::run_calc(&["--plugin-dir", d, "eval", "value()"]);
    assert_eq!(String::from_utf8_lossy(&quiet.stdout), "-1\n");
    assert_eq!(
        String::from_utf8_lossy(&quiet.stderr),
        "",
        "quiet by default"
    );
    let verbose = calc_tests::run_calc(&["-v", "--plugin-dir", d, "eval", "value()"]);
    let err = String::from_utf8_lossy(&verbose.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("lifecycle plugin initialised"))
        .unwrap_or_else(|| panic!("plugin log line missing from: {err}"));
    assert!(
        line.contains("INFO") && line.contains("lifecycle"),
        "{line}"
    );
}
