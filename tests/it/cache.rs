//! The plugin metadata cache (`calc_host::cache`) and `calc plugins list` over it: a fresh entry
//! means the file is not opened at all, a changed file is validated again, a corrupt cache file
//! is ignored and rewritten, and the cached listing is the listing without the cache.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use calc_host::cache::{FileStamp, MetadataCache, Verdict};
use calc_tests::{
    broken_corpus_dir, build_c_plugin, calc_binary, examples_dir, library_file_name, scratch_dir,
    workspace_root,
};

/// A scratch directory for one test: `plugins/` and the cache home `cache/`.
fn setup(tag: &str) -> (PathBuf, PathBuf) {
    let root = scratch_dir(&format!("cache-{tag}-{}", std::process::id()));
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    (plugins, root.join("cache"))
}

/// Copies example plugin `name` into `dir`, dated an hour ago (older than the cache's racy
/// window, so that the first validation is trusted).
fn copy_example(dir: &Path, name: &str) -> PathBuf {
    let file = library_file_name(name);
    let to = dir.join(&file);
    std::fs::copy(examples_dir().join(&file), &to).unwrap();
    set_mtime(&to, SystemTime::now() - Duration::from_secs(3600));
    to
}

fn set_mtime(path: &Path, t: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn stamp(path: &Path) -> FileStamp {
    FileStamp::of(&std::fs::metadata(path).unwrap())
}

/// Overwrites `path` in place (same inode) with as many bytes of garbage, and restores its
/// modification time: a file whose cache key did not change but which is no library any more.
fn garble_keeping_the_key(path: &Path) {
    let before = stamp(path);
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    std::fs::write(path, vec![b'x'; before.size as usize]).unwrap();
    set_mtime(path, mtime);
    assert_eq!(stamp(path), before, "same size, mtime and inode");
}

/// `calc -vv <args>` with the cache under `cache_home`.
fn calc(cache_home: &Path, args: &[&str]) -> Output {
    Command::new(calc_binary())
        .arg("-vv")
        .args(args)
        .env("XDG_CACHE_HOME", cache_home)
        .env_remove("CALC_PLUGIN_PATH")
        .env_remove("CALC_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("calc runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The cache statistics line that `calc -vv plugins list` logs.
fn cache_stats(out: &Output) -> String {
    let err = stderr(out);
    err.lines()
        .find_map(|l| l.split_once("plugin cache: ").map(|(_, s)| s.to_string()))
        .unwrap_or_else(|| panic!("no cache statistics in: {err}"))
}

#[test]
fn a_fresh_entry_answers_without_opening_the_file() {
    let (dir, cache_home) = setup("hit");
    let add = copy_example(&dir, "add");
    copy_example(&dir, "sub");
    let d = dir.to_str().unwrap();

    let first = calc(&cache_home, &["--plugin-dir", d, "plugins", "list"]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(
        cache_stats(&first).contains("misses: 2"),
        "{}",
        stderr(&first)
    );
    assert!(cache_home.join("calc/plugins.json").is_file());

    // The file is no library any more, but its key (path, size, mtime, inode) is unchanged:
    // the listing can only still show it if it did not open the file.
    garble_keeping_the_key(&add);
    let cached = calc(&cache_home, &["--plugin-dir", d, "plugins", "list"]);
    assert_eq!(stdout(&cached), stdout(&first));
    assert_eq!(cached.status.code(), Some(0));
    assert!(
        cache_stats(&cached).contains("hits: 2, misses: 0, stale: 0, inspections: 0"),
        "{}",
        stderr(&cached)
    );
    // Proof that the file really is unloadable now.
    let direct = calc(
        &cache_home,
        &["--plugin-dir", d, "plugins", "list", "--no-cache"],
    );
    assert_eq!(direct.status.code(), Some(3));
    assert!(
        stdout(&direct).contains("FAILED ") && stdout(&direct).contains("libadd.so"),
        "{}",
        stdout(&direct)
    );
}

#[test]
fn the_library_api_counts_hits_and_stores_the_verdict() {
    let (dir, cache_home) = setup("api");
    let add = copy_example(&dir, "add");
    let file = cache_home.join("plugins.json");
    let mut cache = MetadataCache::open(&file);
    assert!(cache.is_empty());
    let Verdict::Valid(info) = cache.validate(&add) else {
        panic!("add is valid")
    };
    assert_eq!(info.name, "add");
    assert!(cache.save().unwrap(), "a new entry is written");
    assert!(!cache.save().unwrap(), "nothing changed since");

    let mut cache = MetadataCache::open(&file);
    assert_eq!(cache.len(), 1);
    garble_keeping_the_key(&add);
    assert_eq!(cache.validate(&add), Verdict::Valid(info.clone()));
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.inspections), (1, 0));
    assert!(!cache.is_dirty());

    // A changed mtime makes the entry stale: the file is validated again, and now refused.
    set_mtime(&add, SystemTime::now() - Duration::from_secs(1800));
    let Verdict::Refused(refusal) = cache.validate(&add) else {
        panic!("garbage is refused")
    };
    assert_eq!(refusal.kind, "not_a_library");
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.stale, stats.inspections), (1, 1, 1));
    // Refused from the file's own header (not by the dynamic loader, whose verdict depends on
    // the environment): cached like a valid entry.
    assert_eq!(cache.len(), 1);
}

#[test]
fn a_changed_file_is_validated_again() {
    let (dir, cache_home) = setup("change");
    let add = copy_example(&dir, "add");
    let d = dir.to_str().unwrap();
    let list = || calc(&cache_home, &["--plugin-dir", d, "plugins", "list"]);
    let warm = list();
    assert!(stdout(&warm).contains("add 1.0.0"), "{}", stdout(&warm));

    // Touched: same content, new mtime.
    set_mtime(&add, SystemTime::now() - Duration::from_secs(1800));
    let touched = list();
    assert_eq!(stdout(&touched), stdout(&warm));
    assert!(
        cache_stats(&touched).contains("stale: 1, inspections: 1"),
        "{}",
        stderr(&touched)
    );
    assert!(cache_stats(&list()).contains("hits: 1"));

    // Rewritten with another plugin (alt_add 2.0.0) under the same file name.
    let tmp = dir.join("alt.tmp");
    build_c_plugin(
        &workspace_root().join("tests/fixtures/c/alt_add.c"),
        &tmp,
        &[],
    )
    .unwrap();
    std::fs::rename(&tmp, &add).unwrap();
    let rewritten = list();
    assert!(
        stdout(&rewritten).contains("alt_add 2.0.0") && !stdout(&rewritten).contains("add 1.0.0"),
        "{}",
        stdout(&rewritten)
    );

    // Deleted: listed no more, and its entry is dropped.
    std::fs::remove_file(&add).unwrap();
    let gone = list();
    assert!(
        stdout(&gone).starts_with("no plugins found"),
        "{}",
        stdout(&gone)
    );
    assert!(MetadataCache::open(cache_home.join("calc/plugins.json")).is_empty());
}

#[test]
fn a_corrupt_cache_file_is_ignored_and_rewritten() {
    let (dir, cache_home) = setup("corrupt");
    copy_example(&dir, "add");
    copy_example(&dir, "pow");
    let d = dir.to_str().unwrap();
    let expected = stdout(&calc(
        &cache_home,
        &["--plugin-dir", d, "plugins", "list", "--no-cache"],
    ));
    let file = cache_home.join("calc/plugins.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    for junk in [
        &b"{\"format\": 1, \"entr"[..],
        b"\x00\xff not json",
        b"[]",
        b"",
    ] {
        std::fs::write(&file, junk).unwrap();
        let out = calc(&cache_home, &["--plugin-dir", d, "plugins", "list"]);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(stdout(&out), expected);
        assert!(
            stderr(&out).contains("ignoring the corrupt plugin cache"),
            "{}",
            stderr(&out)
        );
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap())
            .expect("rewritten as valid JSON");
        assert_eq!(v["entries"].as_object().unwrap().len(), 2);
        let again = calc(&cache_home, &["--plugin-dir", d, "plugins", "list"]);
        assert!(
            cache_stats(&again).contains("hits: 2"),
            "{}",
            stderr(&again)
        );
    }
}

/// The cached listing (cold and warm, text and JSON) is the listing of a manager that loads
/// everything: enabled, disabled, overridden, duplicate names, version ranges, configured
/// providers, conflicts, refused files and missing directories.
#[test]
fn the_cached_listing_is_the_listing_without_the_cache() {
    let (dir, cache_home) = setup("same");
    let root = dir.parent().unwrap().to_path_buf();
    for name in ["add", "sub", "pow"] {
        copy_example(&dir, name);
    }
    let alt = workspace_root().join("tests/fixtures/c/alt_add.c");
    build_c_plugin(&alt, &dir.join(library_file_name("alt_add")), &[]).unwrap();
    build_c_plugin(
        &alt,
        &dir.join(library_file_name("alt_add_again")),
        &["-DALT_NAME=\"alt_add\""],
    )
    .unwrap();
    build_c_plugin(
        &alt,
        &dir.join(library_file_name("alt_other")),
        &["-DALT_NAME=\"alt_other\""],
    )
    .unwrap();
    std::fs::write(dir.join(library_file_name("zz_garbage")), "not a library").unwrap();
    let broken = broken_corpus_dir();
    let config = root.join("calc.toml");
    std::fs::write(
        &config,
        "[versions]\npow = \">=2\"\n[operations.add]\nprovider = \"alt_other\"\n",
    )
    .unwrap();
    let (d, b, c) = (
        dir.to_str().unwrap(),
        examples_dir().to_str().unwrap(),
        config.to_str().unwrap(),
    );
    let missing = root.join("missing");
    let m = missing.to_str().unwrap();
    let scenarios: Vec<Vec<&str>> = vec![
        vec!["--plugin-dir", d],
        vec!["--plugin-dir", d, "--disable", "sub", "--prefer", "alt_add"],
        vec!["--plugin-dir", d, "--plugin-dir", b, "--config", c],
        vec!["--plugin-dir", b, "--plugin-dir", d, "--plugin-dir", m],
    ];
    for (i, scenario) in scenarios.iter().enumerate() {
        for json in [false, true] {
            let mut args = scenario.clone();
            args.extend(["plugins", "list"]);
            if json {
                args.push("--json");
            }
            let mut uncached = args.clone();
            uncached.push("--no-cache");
            let reference = calc(&cache_home, &uncached);
            assert!(
                stdout(&reference).to_lowercase().contains("conflict") || i == 3,
                "{}",
                stdout(&reference)
            );
            for _ in 0..2 {
                let out = calc(&cache_home, &args);
                assert_eq!(
                    stdout(&out),
                    stdout(&reference),
                    "{args:?}\n{}",
                    stderr(&out)
                );
                assert_eq!(out.status.code(), reference.status.code());
            }
        }
    }
    // The broken corpus: every refusal reads the same, the failing `init` included (the
    // cached listing starts a plugin it has no record of).
    let args = ["--plugin-dir", broken.to_str().unwrap(), "plugins", "list"];
    let mut uncached_args = args.to_vec();
    uncached_args.push("--no-cache");
    let uncached = calc(&cache_home, &uncached_args);
    let init_fails = library_file_name("broken_init_fails");
    assert!(
        stdout(&uncached).contains(&format!(
            "{init_fails}: plugin broken_init_fails refused to start"
        )),
        "{}",
        stdout(&uncached)
    );
    assert_eq!(
        stdout(&uncached).matches("FAILED ").count(),
        calc_tests::BROKEN_CASES.len() + 1
    );
    for _ in 0..2 {
        let cached = calc(&cache_home, &args);
        assert_eq!(stdout(&cached), stdout(&uncached));
        assert_eq!(cached.status.code(), Some(3));
    }
}

/// A copy of the lifecycle fixture in `dir`, dated an hour ago. Its `init` refuses a `value`
/// that is not a number, and refuses to start while `LIFECYCLE_REFUSE` is set.
fn lifecycle_in(dir: &Path) -> PathBuf {
    let lib = dir.join(library_file_name("lifecycle"));
    build_c_plugin(
        &workspace_root().join("tests/fixtures/c/lifecycle.c"),
        &lib,
        &[],
    )
    .unwrap();
    set_mtime(&lib, SystemTime::now() - Duration::from_secs(3600));
    lib
}

/// `calc plugins list` tells the truth about a plugin whose `init` fails: listed as failed (not
/// enabled), exit 3, text and JSON, from the cache as without it; and a plugin that starts
/// under one configuration and not under another is started again when the configuration
/// changes, though its file did not.
#[test]
fn a_plugin_whose_init_fails_is_listed_as_failed_with_and_without_the_cache() {
    let (dir, cache_home) = setup("init");
    copy_example(&dir, "add");
    let lib = lifecycle_in(&dir);
    let root = dir.parent().unwrap();
    let (bad, good) = (root.join("bad.toml"), root.join("good.toml"));
    std::fs::write(&bad, "[plugins.lifecycle.config]\nvalue = \"abc\"\n").unwrap();
    std::fs::write(&good, "[plugins.lifecycle.config]\nvalue = \"4\"\n").unwrap();
    let d = dir.to_str().unwrap();
    let list = |config: &Path, extra: &[&str]| {
        let mut args = vec!["--plugin-dir", d, "--config", config.to_str().unwrap()];
        args.extend(["plugins", "list"]);
        args.extend(extra);
        calc(&cache_home, &args)
    };
    let reason = format!(
        "FAILED {}: plugin lifecycle refused to start: value: 'abc' is not a number",
        lib.display()
    );

    let uncached = list(&bad, &["--no-cache"]);
    let first = list(&bad, &[]);
    // Nothing recorded yet: both plugins are started.
    assert!(
        cache_stats(&first).contains("starts: 2"),
        "{}",
        stderr(&first)
    );
    for out in [&uncached, &first, &list(&bad, &[])] {
        assert_eq!(out.status.code(), Some(3), "{}", stderr(out));
        assert!(stdout(out).contains(&reason), "{}", stdout(out));
        assert!(!stdout(out).contains("lifecycle 1.0.0"), "{}", stdout(out));
        assert!(stdout(out).contains("add 1.0.0"), "{}", stdout(out));
        assert_eq!(stdout(out), stdout(&uncached));
    }
    for extra in [&["--json"][..], &["--json", "--no-cache"]] {
        let out = list(&bad, extra);
        assert_eq!(out.status.code(), Some(3), "{extra:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let names: Vec<&str> = v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["add"], "{extra:?}");
        let failure = &v["failures"][0];
        assert_eq!(
            (
                &failure["status"],
                &failure["plugin"],
                &failure["kind"],
                failure["path"].as_str()
            ),
            (
                &"failed".into(),
                &"lifecycle".into(),
                &"init_failed".into(),
                lib.to_str()
            ),
            "{extra:?}"
        );
    }

    // Another configuration: started once, then listed from the record without opening it.
    let fixed = list(&good, &[]);
    assert_eq!(fixed.status.code(), Some(0), "{}", stdout(&fixed));
    assert!(
        stdout(&fixed).contains("lifecycle 1.0.0 (ABI "),
        "{}",
        stdout(&fixed)
    );
    assert!(
        cache_stats(&fixed).contains("starts: 1"),
        "{}",
        stderr(&fixed)
    );
    let warm = list(&good, &[]);
    assert_eq!(stdout(&warm), stdout(&fixed));
    assert!(
        cache_stats(&warm).contains("hits: 2, misses: 0, stale: 0, inspections: 0, starts: 0"),
        "{}",
        stderr(&warm)
    );
    // Back to the refused value: the record was made with other settings, so it starts again.
    let again = list(&bad, &[]);
    assert_eq!(again.status.code(), Some(3));
    assert!(stdout(&again).contains(&reason), "{}", stdout(&again));
}

/// A plugin recorded as started fails when `eval` starts it (its `init` depends on the
/// environment): `eval` records that, so the next listing starts it again instead of trusting
/// the old record.
#[test]
fn a_failed_start_in_eval_is_not_listed_as_enabled() {
    let (dir, cache_home) = setup("init-eval");
    let lib = lifecycle_in(&dir);
    let d = dir.to_str().unwrap();
    let run = |args: &[&str], refuse: bool| {
        let mut cmd = Command::new(calc_binary());
        cmd.arg("-vv")
            .args(["--plugin-dir", d])
            .args(args)
            .env("XDG_CACHE_HOME", &cache_home)
            .env_remove("CALC_PLUGIN_PATH")
            .env_remove("CALC_CONFIG")
            .env_remove("RUST_LOG");
        if refuse {
            cmd.env("LIFECYCLE_REFUSE", "no licence");
        } else {
            cmd.env_remove("LIFECYCLE_REFUSE");
        }
        cmd.output().expect("calc runs")
    };
    let listed = run(&["plugins", "list"], false);
    assert_eq!(listed.status.code(), Some(0), "{}", stdout(&listed));
    assert!(stdout(&listed).contains("lifecycle 1.0.0 (ABI "));
    assert!(cache_stats(&run(&["plugins", "list"], true)).contains("starts: 0"));

    let eval = run(&["eval", "value()"], true);
    assert_eq!(eval.status.code(), Some(2));
    let reason = format!(
        "{}: plugin lifecycle refused to start: LIFECYCLE_REFUSE is set: no licence",
        lib.display()
    );
    assert!(stderr(&eval).contains(&reason), "{}", stderr(&eval));

    let refused = run(&["plugins", "list"], true);
    assert_eq!(refused.status.code(), Some(3), "{}", stdout(&refused));
    assert!(
        stdout(&refused).contains(&format!("FAILED {reason}")),
        "{}",
        stdout(&refused)
    );
    // Recorded refusals are retried: fixed, it is listed as enabled again.
    let fixed = run(&["plugins", "list"], false);
    assert_eq!(fixed.status.code(), Some(0));
    assert_eq!(stdout(&fixed), stdout(&listed));
}
