//! What keeps a plugin library from unloading: `plugins check` warns about it before anything
//! is loaded (from the file: `DF_1_NODELETE`, `STB_GNU_UNIQUE` symbols), and the unload event
//! of such a plugin says that it is still loaded.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;

use calc_host::events::HostEvent;
use calc_host::PluginManager;
use calc_tests::{library_file_name, run_calc, scratch_dir, workspace_root};

/// `libplain.so` (nothing pins it), `libpinned.so` (`-z nodelete`) and `libunique.so` (a C++
/// plugin with an `STB_GNU_UNIQUE` symbol), built once per process into one directory (the
/// tests run in parallel: none may rebuild a file another is loading).
fn corpus() -> (PathBuf, PathBuf, PathBuf) {
    static BUILT: std::sync::OnceLock<(PathBuf, PathBuf, PathBuf)> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_corpus).clone()
}

fn build_corpus() -> (PathBuf, PathBuf, PathBuf) {
    let dir = scratch_dir(&format!("unloading-{}", std::process::id()));
    let (plain, pinned) = calc_tests::build_plain_and_pinned(&dir);
    let unique = dir.join(library_file_name("unique"));
    // Default visibility on purpose: that is what makes g++ emit the unique symbol.
    let built = Command::new(xtask::build::cxx_compiler())
        .args([
            "-std=c++11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fPIC",
            "-shared",
            "-I",
        ])
        .arg(workspace_root().join("include"))
        .arg(workspace_root().join("tests/fixtures/cpp/unique.cpp"))
        .arg("-o")
        .arg(&unique)
        .output()
        .expect("the C++ compiler runs");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    (plain, pinned, unique)
}

fn warnings_for(out: &str, file: &Path) -> Vec<String> {
    let prefix = format!("  warning: {}: ", file.display());
    out.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn plugins_check_warns_about_what_keeps_a_library_loaded() {
    let (plain, pinned, unique) = corpus();
    let files = [&plain, &pinned, &unique].map(|p| p.to_str().unwrap().to_string());
    let out = run_calc(&["plugins", "check", &files[0], &files[1], &files[2]]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(warnings_for(&text, &plain), Vec::<String>::new(), "{text}");
    let pinned_warnings = warnings_for(&text, &pinned);
    assert_eq!(pinned_warnings.len(), 1, "{text}");
    assert!(
        pinned_warnings[0].starts_with("DF_1_NODELETE is set"),
        "{text}"
    );
    let unique_warnings = warnings_for(&text, &unique);
    assert_eq!(unique_warnings.len(), 1, "{text}");
    assert!(
        unique_warnings[0].starts_with("1 STB_GNU_UNIQUE symbol (e.g. _ZZ14shared_countervE1n;"),
        "{text}"
    );

    let out = run_calc(&[
        "plugins", "check", "--json", &files[0], &files[1], &files[2],
    ]);
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds = |i: usize| -> Vec<String> {
        reports[i]["unload_blockers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(kinds(0), Vec::<String>::new());
    assert_eq!(kinds(1), ["no_delete"]);
    assert_eq!(kinds(2), ["unique_symbols"]);
    assert_eq!(reports[2]["unload_blockers"][0]["count"], 1);
}

#[test]
fn a_library_that_cannot_unload_is_reported_still_loaded() {
    let (plain, _, unique) = corpus();
    let (tx, rx) = mpsc::channel();
    let mut m = PluginManager::new();
    m.report_events_to(tx);
    m.load_file(&plain).unwrap_or_else(|e| panic!("{e}"));
    m.load_file(&unique).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.eval("bump()").unwrap(), 1.0);
    assert_eq!(m.eval("twice(bump())").unwrap(), 4.0);
    assert!(m.unload("plain") && m.unload("unique"));
    let gone: Vec<(String, Option<bool>)> = rx
        .try_iter()
        .filter_map(|e| match e {
            HostEvent::Unloaded { name, unmapped, .. } => Some((name, unmapped)),
            _ => None,
        })
        .collect();
    assert_eq!(
        gone,
        [
            ("plain".to_string(), Some(true)),
            ("unique".to_string(), Some(false))
        ]
    );
}

#[test]
fn still_loaded_agrees_by_address_and_by_name() {
    let (plain, pinned, _) = corpus();
    for (file, pinned_for_good) in [(plain, false), (pinned, true)] {
        let file = std::fs::canonicalize(&file).unwrap();
        // SAFETY: the test's own valid plugins; loading runs no initialiser of theirs.
        let lib = unsafe { libloading::Library::new(&file) }.unwrap();
        // SAFETY: `plugin_entry` has this type by the ABI.
        let entry =
            unsafe { lib.get::<unsafe extern "C" fn() -> *const u8>(b"plugin_entry\0") }.unwrap();
        let code = *entry as usize;
        assert!(calc_host::loader::still_loaded(&file, Some(code)));
        assert!(calc_host::loader::still_loaded(&file, None));
        drop(lib);
        assert_eq!(
            calc_host::loader::still_loaded(&file, Some(code)),
            pinned_for_good,
            "{}",
            file.display()
        );
        assert_eq!(
            calc_host::loader::still_loaded(&file, None),
            pinned_for_good
        );
    }
}

#[test]
fn plugins_check_warns_about_thread_local_destructors_after_a_trial_load() {
    let dir = scratch_dir(&format!("unloading-tls-{}", std::process::id()));
    let tls = dir.join(library_file_name("tls"));
    calc_tests::build_c_plugin(
        &workspace_root().join("tests/broken/broken.c"),
        &tls,
        &["-DTLS_DTOR", "-DPLUGIN_NAME=\"tls\""],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (plain, _, _) = corpus();
    let files = [&tls, &plain].map(|p| p.to_str().unwrap().to_string());
    let out = run_calc(&["plugins", "check", &files[0], &files[1]]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let warnings = warnings_for(&text, &tls);
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].starts_with("thread-local destructors registered by its code"),
        "{text}"
    );
    // The same file without the destructor: nothing keeps it, no warning.
    assert_eq!(warnings_for(&text, &plain), Vec::<String>::new(), "{text}");
    let out = run_calc(&["plugins", "check", "--json", &files[0], &files[1]]);
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        reports[0]["unload_blockers"],
        serde_json::json!([{ "kind": "thread_local_destructors" }])
    );
    assert_eq!(reports[1]["unload_blockers"], serde_json::json!([]));
}

#[test]
fn plugins_check_does_not_read_a_huge_file_into_memory() {
    let dir = scratch_dir(&format!("unloading-huge-{}", std::process::id()));
    let (plain, _, _) = corpus();
    let huge = dir.join(library_file_name("huge"));
    std::fs::copy(&plain, &huge).unwrap();
    // A sparse GiB: the plugin's bytes, then a hole.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&huge)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let out = run_calc(&["plugins", "check", "--json", huge.to_str().unwrap()]);
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        reports[0]["unload_blockers"][0],
        serde_json::json!({ "kind": "not_scanned", "size": 1u64 << 30 }),
        "{reports}"
    );
}
