//! The plugin manager as a long-running application uses it: lifecycle order, configuration
//! (enable/disable, version ranges, preferred providers), gradual rollout, fallback, and the
//! `plugins list` / `plugins check` views of it.

use std::path::{Path, PathBuf};

use calc_host::config::Settings;
use calc_host::{EvalError, LoadError, PluginManager};
use calc_tests::{
    build_c_plugin, examples_dir, library_file_name, run_calc, scratch_dir, workspace_root,
};

fn fixture(source: &str, dir: &Path, file: &str, defines: &[&str]) -> PathBuf {
    let out = dir.join(library_file_name(file));
    build_c_plugin(
        &workspace_root().join("tests/fixtures/c").join(source),
        &out,
        defines,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    out
}

fn copy_example(dir: &Path, name: &str) {
    let file = library_file_name(name);
    std::fs::copy(examples_dir().join(&file), dir.join(&file)).unwrap();
}

/// A directory with the example `add` and `sub` and the fixture `alt_add` (which loads after
/// `add` in file-name order).
fn two_adds(tag: &str, alt_defines: &[&str]) -> PathBuf {
    let dir = scratch_dir(&format!("manager-{tag}-{}", std::process::id()));
    copy_example(&dir, "add");
    copy_example(&dir, "sub");
    fixture("alt_add.c", &dir, "alt_add", alt_defines);
    dir
}

fn settings(toml: &str) -> Settings {
    Settings::parse(toml, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn loaded(dir: &Path, settings: Settings) -> PluginManager {
    let mut m = PluginManager::with_settings(settings);
    m.load_dir(dir).unwrap();
    m
}

#[test]
fn shutdown_runs_once_per_plugin_in_reverse_order_on_unload_and_at_drop() {
    let dir = scratch_dir(&format!("manager-order-{}", std::process::id()));
    let trace = dir.join("trace.txt");
    let mut s = Settings::default();
    for name in ["lc_a", "lc_b", "lc_c"] {
        fixture(
            "lifecycle.c",
            &dir,
            name,
            &[&format!("-DLIFECYCLE_NAME=\"{name}\"")],
        );
        s.plugin_config
            .entry(name.into())
            .or_default()
            .insert("trace_file".into(), trace.to_str().unwrap().into());
    }
    let mut m = loaded(&dir, s);
    let read = || std::fs::read_to_string(&trace).unwrap();
    assert_eq!(read(), "init lc_a -1\ninit lc_b -1\ninit lc_c -1\n");
    assert!(m.unload("lc_b"));
    assert!(!m.unload("lc_b"), "unloading twice is a no-op");
    assert_eq!(
        read(),
        "init lc_a -1\ninit lc_b -1\ninit lc_c -1\nshutdown lc_b -1\n"
    );
    drop(m);
    assert_eq!(
        read(),
        "init lc_a -1\ninit lc_b -1\ninit lc_c -1\nshutdown lc_b -1\nshutdown lc_c -1\nshutdown lc_a -1\n"
    );
}

#[test]
fn the_cli_shuts_plugins_down_even_when_it_fails() {
    let dir = scratch_dir(&format!("manager-cli-exit-{}", std::process::id()));
    copy_example(&dir, "div");
    fixture("lifecycle.c", &dir, "lifecycle", &[]);
    let trace = dir.join("trace.txt");
    let config = dir.join("calc.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins.lifecycle.config]\ntrace_file = {:?}\nvalue = 3\n",
            trace.to_str().unwrap()
        ),
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let out = run_calc(&[
        "--config",
        config.to_str().unwrap(),
        "--plugin-dir",
        d,
        "eval",
        "value() / 0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(&trace).unwrap(),
        "init lifecycle 3\nshutdown lifecycle 3\n"
    );
}

#[test]
fn disabled_plugins_are_listed_not_initialised_and_can_be_enabled() {
    let dir = two_adds("disable", &[]);
    let mut m = loaded(&dir, settings("[plugins.sub]\nenabled = false\n"));
    assert_eq!(
        m.disabled()
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["sub"]
    );
    assert_eq!(
        m.eval("3 - 1"),
        Err(EvalError::Parse {
            message: "unknown operator '-' (plugin sub provides it but is disabled)".into(),
            column: 3
        })
    );
    m.enable("sub").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.eval("3 - 1"), Ok(2.0));
    assert!(m.disable("alt_add"));
    assert_eq!(m.eval("1 + 1"), Ok(2.0));
    assert!(m.disabled().iter().any(|p| p.name == "alt_add"));
}

#[test]
fn without_a_choice_the_first_loaded_provider_serves_and_the_conflict_is_reported() {
    let dir = two_adds("default", &[]);
    let m = loaded(&dir, Settings::default());
    assert_eq!(m.eval("1 + 1"), Ok(2.0));
    let c = &m.conflicts()[0];
    assert_eq!(
        (c.winner.as_str(), c.shadowed.as_str(), c.explicit),
        ("add", "alt_add", false)
    );
    assert_eq!(
        c.to_string(),
        "operation add is provided by both add and alt_add; using add (loaded first)"
    );
    // The CLI warns naming both.
    let out = run_calc(&["--plugin-dir", dir.to_str().unwrap(), "eval", "1 + 1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("calc: warning: operation add is provided by both add and alt_add; using add"),
        "{err}"
    );
}

#[test]
fn the_configured_provider_wins_both_ways() {
    let dir = two_adds("prefer", &[]);
    // alt_add loads second but is chosen.
    let m = loaded(&dir, settings("[operations.add]\nprovider = \"alt_add\"\n"));
    assert_eq!(m.eval("1 + 1"), Ok(1002.0));
    assert!(m
        .conflicts()
        .iter()
        .all(|c| c.explicit && c.winner == "alt_add"));
    drop(m);
    // --prefer on the command line, without a warning.
    let out = run_calc(&[
        "--plugin-dir",
        dir.to_str().unwrap(),
        "--prefer",
        "alt_add",
        "eval",
        "1 + 1",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1002\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    // The other way: alt_add loads first (file name) but add is configured.
    let dir2 = scratch_dir(&format!("manager-prefer2-{}", std::process::id()));
    fixture("alt_add.c", &dir2, "a_alt_add", &[]);
    copy_example(&dir2, "add");
    let m = loaded(&dir2, Settings::default());
    assert_eq!(
        m.eval("1 + 1"),
        Ok(1002.0),
        "without a choice the first loaded wins"
    );
    drop(m);
    let m = loaded(&dir2, settings("prefer = [\"add\"]\n"));
    assert_eq!(m.eval("1 + 1"), Ok(2.0));
}

#[test]
fn a_rollout_splits_keys_deterministically_and_counts_each_implementation() {
    let dir = two_adds("rollout", &[]);
    let m = loaded(
        &dir,
        settings("[operations.add]\nrollout = { candidate = \"alt_add\", percent = 30 }\n"),
    );
    let mut candidate = 0;
    for user in 0..400 {
        let key = format!("user-{user}");
        let first = m.eval_with_key("1 + 1", &key).unwrap();
        assert_eq!(
            m.eval_with_key("1 + 1", &key).unwrap(),
            first,
            "same key, same implementation"
        );
        assert!(first == 2.0 || first == 1002.0);
        candidate += usize::from(first == 1002.0);
    }
    assert!(
        (80..=160).contains(&candidate),
        "30% of 400 keys, got {candidate}"
    );
    let count = |plugin: &str| {
        m.stats()
            .find(|(p, o, _)| *p == plugin && *o == "add")
            .map(|(_, _, s)| (s.calls(), s.errors()))
            .unwrap()
    };
    assert_eq!(count("alt_add"), (2 * candidate as u64, 0));
    assert_eq!(count("add"), (2 * (400 - candidate as u64), 0));
    for (percent, want) in [(0, 2.0), (100, 1002.0)] {
        let m = loaded(
            &dir,
            settings(&format!(
                "[operations.add]\nrollout = {{ candidate = \"alt_add\", percent = {percent} }}\n"
            )),
        );
        assert!(
            (0..50).all(|u| m.eval_with_key("1 + 1", &u.to_string()) == Ok(want)),
            "{percent}%"
        );
    }
}

/// The rollout candidate's share of `keys`: whether `alt_add` answered `1 + 1`, checking that
/// `add(1, 1)` (the same operation by name) gets the same implementation for every key.
fn candidate_keys(m: &PluginManager, keys: &[String]) -> Vec<bool> {
    keys.iter()
        .map(|key| {
            let infix = m.eval_with_key("1 + 1", key).unwrap();
            let by_name = m.eval_with_key("add(1, 1)", key).unwrap();
            assert_eq!(infix, by_name, "key {key}: `1 + 1` and `add(1, 1)` differ");
            assert!(infix == 2.0 || infix == 1002.0, "{infix}");
            infix == 1002.0
        })
        .collect()
}

#[test]
fn a_rollout_gives_a_key_one_implementation_whatever_the_operation_is_called() {
    use calc_host::manager::{rollout_bucket, rollout_hash};
    let dir = two_adds("rollout-spelling", &[]);
    let keys: Vec<String> = (0..1000).map(|u| format!("user-{u}")).collect();
    // Configured by name or by symbol: both spellings of the operation follow it.
    for op in ["add", "\"+\""] {
        let m = loaded(
            &dir,
            settings(&format!(
                "[operations.{op}]\nrollout = {{ candidate = \"alt_add\", percent = 10 }}\n"
            )),
        );
        let got = candidate_keys(&m, &keys);
        let share = got.iter().filter(|&&c| c).count();
        assert!(
            (70..=130).contains(&share),
            "{op}: 10% of 1000 keys, got {share}"
        );
        // The bucket is the documented one: FNV-1a of the key's hash and the operation as
        // configured, in hundredths of a percent.
        let id = op.trim_matches('"');
        for (key, candidate) in keys.iter().zip(&got) {
            let bucket = rollout_bucket(rollout_hash(key.as_bytes()), id);
            assert_eq!(
                *candidate,
                bucket < 1000,
                "{op}: key {key}, bucket {bucket}"
            );
        }
    }
    // The command line: `--rollout-key` decides both spellings alike.
    let config = dir.join("rollout.toml");
    std::fs::write(
        &config,
        "[operations.\"+\"]\nrollout = { candidate = \"alt_add\", percent = 50 }\n",
    )
    .unwrap();
    let mut answers = std::collections::BTreeSet::new();
    for key in keys.iter().take(12) {
        let out = run_calc(&[
            "--config",
            config.to_str().unwrap(),
            "--plugin-dir",
            dir.to_str().unwrap(),
            "--rollout-key",
            key,
            "eval",
            "1 + 1",
            "add(1, 1)",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{stdout}");
        assert_eq!(lines[0], lines[1], "key {key}");
        let want = if rollout_bucket(rollout_hash(key.as_bytes()), "+") < 5000 {
            "1002"
        } else {
            "2"
        };
        assert_eq!(lines[0], want, "key {key}");
        answers.insert(lines[0].to_string());
    }
    assert_eq!(
        answers.len(),
        2,
        "both implementations serve some of 12 keys at 50%"
    );
}

#[test]
fn the_rollout_hash_is_fnv_1a() {
    use calc_host::manager::{rollout_bucket, rollout_hash};
    // The published FNV-1a 64 test vectors.
    assert_eq!(rollout_hash(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(rollout_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(rollout_hash(b"foobar"), 0x8594_4171_f739_67e8);
    for key in ["", "user-1", "ключ"] {
        let h = rollout_hash(key.as_bytes());
        let mut bytes = h.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"pow");
        assert_eq!(rollout_bucket(h, "pow"), rollout_hash(&bytes) % 10_000);
    }
}

/// Calls answered by each plugin (of those that answered any).
fn answered(m: &PluginManager) -> Vec<(String, u64)> {
    let mut calls: Vec<(String, u64)> = m
        .stats()
        .filter(|(_, _, s)| s.calls() > 0)
        .map(|(p, _, s)| (p.to_string(), s.calls()))
        .collect();
    calls.sort();
    calls
}

/// `add`, `alt_add` and `zz_add` (another `+` answering a + b + 1000, loaded last).
fn three_adds(tag: &str) -> PathBuf {
    let dir = two_adds(tag, &[]);
    fixture("alt_add.c", &dir, "zz_add", &["-DALT_NAME=\"zz_add\""]);
    dir
}

#[test]
fn conflicts_name_the_plugin_that_actually_serves() {
    let dir = three_adds("conflict-servers");
    let d = dir.to_str().unwrap();
    let texts = |m: &PluginManager| -> Vec<String> {
        m.conflicts().iter().map(ToString::to_string).collect()
    };
    // No choice: the first loaded serves, and says so.
    let m = loaded(&dir, Settings::default());
    assert_eq!(
        texts(&m),
        [
            "operation add is provided by both add and alt_add; using add (loaded first)",
            "operation add is provided by both add and zz_add; using add (loaded first)",
            "operator + is provided by both add and alt_add; using add (loaded first)",
            "operator + is provided by both add and zz_add; using add (loaded first)",
        ]
    );
    assert_eq!((m.eval("1 + 1"), m.eval("add(1, 1)")), (Ok(2.0), Ok(2.0)));
    assert_eq!(answered(&m), [("add".to_string(), 2)]);
    drop(m);

    // A provider configured for the symbol serves the name too; nothing says "loaded first".
    let m = loaded(
        &dir,
        settings("[operations.\"+\"]\nprovider = \"zz_add\"\n"),
    );
    assert_eq!(
        texts(&m),
        [
            "operation add is provided by both zz_add and add; using zz_add (configured)",
            "operation add is provided by both zz_add and alt_add; using zz_add (configured)",
            "operator + is provided by both zz_add and add; using zz_add (configured)",
            "operator + is provided by both zz_add and alt_add; using zz_add (configured)",
        ]
    );
    assert_eq!(
        (m.eval("1 + 1"), m.eval("add(1, 1)")),
        (Ok(1002.0), Ok(1002.0))
    );
    assert_eq!(answered(&m), [("zz_add".to_string(), 2)]);
    drop(m);

    // A preferred plugin loaded last: the CLI warns about nothing (add and alt_add met first,
    // but neither serves), its listing names zz_add, and zz_add answers.
    let out = run_calc(&[
        "--plugin-dir",
        d,
        "--prefer",
        "zz_add",
        "eval",
        "--stats",
        "1 + 1",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1002\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("warning"), "{err}");
    assert!(err.contains("zz_add") && !err.contains("alt_add"), "{err}");
    for cache in ["--no-cache", "", ""] {
        let args: Vec<&str> = [
            "--plugin-dir",
            d,
            "--prefer",
            "zz_add",
            "plugins",
            "list",
            cache,
        ]
        .into_iter()
        .filter(|a| !a.is_empty())
        .collect();
        let out = run_calc(&args);
        let listed = String::from_utf8_lossy(&out.stdout);
        let conflicts: Vec<&str> = listed
            .lines()
            .filter(|l| l.starts_with("CONFLICT"))
            .collect();
        assert_eq!(
            conflicts,
            [
                "CONFLICT operation add is provided by both zz_add and add; using zz_add (configured)",
                "CONFLICT operation add is provided by both zz_add and alt_add; using zz_add (configured)",
                "CONFLICT operator + is provided by both zz_add and add; using zz_add (configured)",
                "CONFLICT operator + is provided by both zz_add and alt_add; using zz_add (configured)",
            ],
            "plugins list {cache}"
        );
    }

    // A rollout: the split is named, and it is the split that answers.
    let rollout = "[operations.add]\nrollout = { candidate = \"zz_add\", percent = 10 }\n";
    let m = loaded(&dir, settings(rollout));
    assert_eq!(
        texts(&m),
        [
            "operation add is provided by both add and alt_add; using add (loaded first), zz_add for 10% of rollout keys (rollout)",
            "operation add is provided by both add and zz_add; using add, zz_add for 10% of rollout keys (rollout)",
            "operator + is provided by both add and alt_add; using add (loaded first), zz_add for 10% of rollout keys (rollout)",
            "operator + is provided by both add and zz_add; using add, zz_add for 10% of rollout keys (rollout)",
        ]
    );
    for u in 0..200 {
        let key = format!("user-{u}");
        m.eval_with_key("1 + 1", &key).unwrap();
        m.eval_with_key("add(1, 1)", &key).unwrap();
    }
    let calls = answered(&m);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        (calls[0].0.as_str(), calls[1].0.as_str()),
        ("add", "zz_add")
    );
    assert!(
        (10..=70).contains(&calls[1].1),
        "10% of 400 calls: {calls:?}"
    );
    drop(m);
    // The CLI warns only about alt_add, which it chose by load order, and names the split.
    let config = dir.join("rollout.toml");
    std::fs::write(&config, rollout).unwrap();
    let out = run_calc(&[
        "--config",
        config.to_str().unwrap(),
        "--plugin-dir",
        d,
        "eval",
        "1 + 1",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "calc: warning: operation add is provided by both add and alt_add; using add (loaded first), zz_add for 10% of rollout keys (rollout)\n\
         calc: warning: operator + is provided by both add and alt_add; using add (loaded first), zz_add for 10% of rollout keys (rollout)\n"
    );
    // The candidate first in line (also the configured provider): the rest goes to the next.
    let m = loaded(
        &dir,
        settings("[operations.add]\nprovider = \"zz_add\"\nrollout = { candidate = \"zz_add\", percent = 0 }\n"),
    );
    assert_eq!(
        texts(&m)[..2],
        [
            "operation add is provided by both add and zz_add; using add, zz_add for 0% of rollout keys (rollout)",
            "operation add is provided by both add and alt_add; using add (loaded first), zz_add for 0% of rollout keys (rollout)",
        ]
    );
    assert_eq!(m.eval_with_key("add(1, 1)", "anyone"), Ok(2.0));
    assert_eq!(answered(&m), [("add".to_string(), 1)]);
}

#[test]
fn an_internal_error_falls_back_to_the_next_provider() {
    let dir = two_adds("fallback", &["-DALT_FAIL"]);
    let m = loaded(&dir, settings("prefer = [\"alt_add\"]\n"));
    assert_eq!(m.eval("1 + 1"), Ok(2.0), "alt_add fails, add serves");
    let stats: Vec<(String, u64, u64)> = m
        .stats()
        .map(|(p, _, s)| (p.to_string(), s.calls(), s.errors()))
        .filter(|s| s.1 > 0)
        .collect();
    assert_eq!(
        stats,
        [("add".to_string(), 1, 0), ("alt_add".to_string(), 1, 1)]
    );
    // The switch is logged.
    let out = run_calc(&[
        "-v",
        "--plugin-dir",
        dir.to_str().unwrap(),
        "--prefer",
        "alt_add",
        "eval",
        "1 + 1",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("+: alt_add failed (alt_add is broken today); falling back to add"),
        "{err}"
    );
    // A domain error is an answer, not a failure of the implementation: no fallback.
    let m = loaded(&dir, settings("prefer = [\"alt_add\"]\n"));
    assert!(matches!(m.eval("2 - 1"), Ok(1.0)));
}

#[test]
fn a_disabled_or_missing_preferred_provider_is_reported_and_the_next_serves() {
    let dir = two_adds("notices", &[]);
    let m = loaded(
        &dir,
        settings("[operations.add]\nprovider = \"alt_add\"\n[plugins.alt_add]\nenabled = false\n"),
    );
    assert_eq!(m.eval("1 + 1"), Ok(2.0));
    assert_eq!(
        m.notices(),
        ["test.toml: [operations.add] provider: plugin alt_add is disabled; add is served by add"]
    );
}

#[test]
fn a_version_outside_the_configured_range_is_refused_naming_both() {
    let dir = two_adds("versions", &[]);
    let m = loaded(
        &dir,
        settings("[versions]\nalt_add = \">=3, <4\"\nadd = \"^1\"\n"),
    );
    let failure = &m.failures()[0].error;
    assert!(matches!(failure, LoadError::VersionRequirement { .. }));
    assert!(failure.to_string().ends_with(
        "libalt_add.so: plugin alt_add 2.0.0 is outside the configured version range >=3, <4"
    ));
    assert_eq!(
        failure.mismatches(),
        [calc_host::error::Mismatch {
            field: "version".into(),
            expected: ">=3, <4".into(),
            found: "2.0.0".into()
        }]
    );
    assert_eq!(m.eval("1 + 1"), Ok(2.0));
}

#[test]
fn plugins_list_shows_enabled_disabled_failed_and_overridden() {
    let dir = two_adds("list", &[]);
    std::fs::write(dir.join(library_file_name("zz_garbage")), "not a library").unwrap();
    let d = dir.to_str().unwrap();
    let out = run_calc(&[
        "--plugin-dir",
        d,
        "--disable",
        "sub",
        "--prefer",
        "alt_add",
        "plugins",
        "list",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a failure makes the exit status 3"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "add 1.0.0 (ABI {}) by calc examples [overridden]",
            calc_tests::abi()
        )),
        "{text}"
    );
    assert!(text.contains("[overridden by alt_add]"), "{text}");
    assert!(
        text.contains(&format!(
            "alt_add 2.0.0 (ABI {}) by calc tests [enabled]",
            calc_tests::abi()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "sub 1.0.0 (ABI {}) by calc examples [disabled]",
            calc_tests::abi()
        )),
        "{text}"
    );
    assert!(
        text.contains("FAILED ") && text.contains("libzz_garbage.so"),
        "{text}"
    );
    let out = run_calc(&[
        "--plugin-dir",
        d,
        "--disable",
        "sub",
        "--prefer",
        "alt_add",
        "plugins",
        "list",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = |name: &str| {
        v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(
        (status("add"), status("alt_add"), status("sub")),
        ("overridden".into(), "enabled".into(), "disabled".into())
    );
    let add = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "add")
        .unwrap();
    assert_eq!(add["operations"][0]["served_by"], "alt_add");
    assert_eq!(v["failures"][0]["kind"], "not_a_library");
}

#[test]
fn plugins_check_reports_metadata_or_the_exact_refusal() {
    let good = examples_dir().join(library_file_name("add"));
    let out = run_calc(&["plugins", "check", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!(
        "add 1.0.0 (ABI {}) by calc examples [ok]",
        calc_tests::abi()
    )));
    let bad = calc_tests::broken_corpus_dir().join(library_file_name("broken_abi_major_new"));
    let out = run_calc(&[
        "plugins",
        "check",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("REFUSED ") && text.contains("incompatible ABI"),
        "{text}"
    );
    let table: Vec<Vec<&str>> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("field"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(table[1], ["abi_version.major", "1", "2"]);
    let out = run_calc(&["plugins", "check", "--json", bad.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["ok"], false);
    assert_eq!(v[0]["kind"], "abi_version");
    assert_eq!(
        v[0]["mismatches"][0],
        serde_json::json!({"field": "abi_version.major", "expected": "1", "found": "2"})
    );
    // Nothing was initialised: check never calls init.
    let lifecycle_dir = scratch_dir(&format!("manager-check-{}", std::process::id()));
    let lib = fixture("lifecycle.c", &lifecycle_dir, "lifecycle", &[]);
    let out = run_calc(&["-v", "plugins", "check", lib.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("initialised"));
}

#[test]
fn a_bad_config_file_is_a_clear_usage_error() {
    let dir = scratch_dir(&format!("manager-badconf-{}", std::process::id()));
    let config = dir.join("calc.toml");
    std::fs::write(&config, "[plugins.add]\nenabld = false\n").unwrap();
    let out = run_calc(&["--config", config.to_str().unwrap(), "eval", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "calc: error: {}: invalid configuration: ",
            config.display()
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = run_calc(&["--config", "/nonexistent/calc.toml", "eval", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("/nonexistent/calc.toml: cannot read configuration"));
}

#[test]
fn the_c_api_applies_the_same_config_file() {
    use calc_host::capi::*;
    use std::ffi::{CStr, CString};

    let dir = two_adds("capi-config", &[]);
    let config = dir.join("calc.toml");
    std::fs::write(
        &config,
        "[operations.add]\nprovider = \"alt_add\"\n[plugins.sub]\nenabled = false\n",
    )
    .unwrap();
    let c = |s: &str| CString::new(s).unwrap();
    let (config_c, dir_c, bad_c) = (
        c(config.to_str().unwrap()),
        c(dir.to_str().unwrap()),
        c("/nonexistent/calc.toml"),
    );
    let mut host: *mut calc_host_t = std::ptr::null_mut();
    let mut result = 0.0;
    // SAFETY: every pointer passed is a live local or a NUL-terminated CString that outlives the
    // call; `host` comes from `calc_host_new` and is freed once at the end.
    unsafe {
        assert_eq!(calc_host_new(&mut host), 0);
        assert_eq!(
            calc_host_load_config(host, bad_c.as_ptr()),
            calc_sdk::abi::CALC_STATUS_INVALID_ARGUMENT
        );
        let message = CStr::from_ptr(calc_last_error_message())
            .to_string_lossy()
            .into_owned();
        assert!(
            message.starts_with("/nonexistent/calc.toml: cannot read configuration"),
            "{message}"
        );
        assert_eq!(calc_host_load_config(host, config_c.as_ptr()), 0);
        assert_eq!(
            calc_host_load_dir(host, dir_c.as_ptr(), std::ptr::null_mut()),
            0
        );
        assert_eq!(calc_host_eval(host, c("1 + 1").as_ptr(), &mut result), 0);
        assert_eq!(result, 1002.0, "the configured provider serves");
        assert_eq!(
            calc_host_eval(host, c("3 - 1").as_ptr(), &mut result),
            CALC_STATUS_PARSE_ERROR
        );
        let message = CStr::from_ptr(calc_last_error_message())
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            message,
            "unknown operator '-' (plugin sub provides it but is disabled) at column 3"
        );
        calc_host_free(host);
    }
}

#[test]
fn lazily_known_plugins_open_only_when_an_expression_uses_them() {
    let dir = scratch_dir(&format!("manager-lazy-{}", std::process::id()));
    copy_example(&dir, "add");
    copy_example(&dir, "mul");
    let trace = dir.join("trace.txt");
    fixture("lifecycle.c", &dir, "lifecycle", &[]);
    let mut s = Settings::default();
    s.plugin_config
        .entry("lifecycle".into())
        .or_default()
        .insert("trace_file".into(), trace.to_str().unwrap().into());
    let mut m = PluginManager::with_settings(s);
    let mut cache = calc_host::cache::MetadataCache::in_memory();
    assert_eq!(m.load_dir_lazy(&dir, &mut cache).unwrap(), 3);
    assert_eq!(m.plugins().count(), 0, "nothing opened yet");
    assert_eq!(m.open_for("1 + 2"), 1);
    assert_eq!(
        m.plugins().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["add"]
    );
    assert_eq!(m.eval("1 + 2"), Ok(3.0));
    let mut known: Vec<&str> = m.known().map(|p| p.name.as_str()).collect();
    known.sort();
    assert_eq!(known, ["lifecycle", "mul"]);
    drop(m);
    assert!(
        !trace.exists(),
        "a plugin that was never used was never initialised"
    );
}

#[test]
fn lazy_opening_keeps_the_directory_order_for_conflicts() {
    // a_alt_add (first by name) is known from the cache; add is loaded at once because its cache
    // entry is missing; when both open, the first by directory order still wins.
    let dir = scratch_dir(&format!("manager-lazy-order-{}", std::process::id()));
    fixture("alt_add.c", &dir, "a_alt_add", &[]);
    let mut cache = calc_host::cache::MetadataCache::in_memory();
    cache.validate(&dir.join(library_file_name("a_alt_add")));
    copy_example(&dir, "add");
    let mut m = PluginManager::new();
    m.load_dir_lazy(&dir, &mut cache).unwrap();
    m.open_for("1 + 1");
    assert_eq!(
        m.eval("1 + 1"),
        Ok(1002.0),
        "a_alt_add comes first in the directory"
    );
}
