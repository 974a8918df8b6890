//! Vetting by default (`[isolation] vet`): a `PluginManager` and the C API vet every file in a
//! child before opening it, a whole directory in one pipelined pass; verdicts are remembered
//! per file version; `always` without a runner refuses, `never` opens in process; a plugin
//! isolated by name is never opened in the host.

use std::path::{Path, PathBuf};
use std::time::Duration;

use calc_host::cache::Verdict;
use calc_host::config::{Settings, VetMode};
use calc_host::vet::Vetter;
use calc_host::PluginManager;
use calc_tests::{
    build_c_plugin, library_file_name, load_time_corpus_dir, runner_binary, scratch_dir,
    workspace_root, LOAD_TIME_CASES,
};

/// A runner that appends a line to `log` each time it starts, then runs the real one (same
/// process: `exec`), so a test can count the children a host starts.
fn counting_runner(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let log = dir.join("starts.log");
    let script = dir.join("counting-runner");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho start >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            runner_binary().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, log)
}

fn starts(log: &Path) -> usize {
    std::fs::read_to_string(log).map_or(0, |t| t.lines().count())
}

fn settings_with_runner(runner: &Path) -> Settings {
    let mut settings = Settings::default();
    settings.isolation.runner = Some(runner.to_path_buf());
    settings.isolation.start_timeout = Duration::from_millis(400);
    settings
}

/// The kind each load-time case is refused with.
fn kind_of(file: &Path) -> &'static str {
    let name = file.file_name().unwrap().to_str().unwrap();
    let case = name
        .trim_start_matches("libhostile_")
        .trim_end_matches(".so");
    match case {
        "ctor_crash" | "entry_crash" | "ctor_abort" | "entry_abort" | "ctor_kill"
        | "ctor_stack" | "ctor_forge" => "crashed",
        "ctor_exit" | "ctor_exit3" => "exited",
        "ctor_hang" | "entry_hang" => "timed_out",
        // The vetting child survives these; the descriptor (entry returns NULL) refuses them.
        "ctor_close_stdin" | "ctor_write_stdin" | "ctor_fork" => "entry_returned_null",
        other => panic!("not a load-time case: {other}"),
    }
}

#[test]
fn vet_all_refuses_each_file_that_kills_the_child_and_goes_on_in_a_new_one() {
    let scratch = scratch_dir(&format!("vet-all-{}", std::process::id()));
    let (runner, log) = counting_runner(&scratch);
    let corpus = load_time_corpus_dir();
    let at = |name: &str| std::fs::canonicalize(corpus.join(library_file_name(name))).unwrap();
    let good = at("good_c");
    let paths = vec![
        good.clone(),
        at("hostile_ctor_crash"),
        good.clone(),
        good.clone(),
        at("hostile_entry_hang"),
        at("hostile_ctor_exit"),
        good.clone(),
    ];
    let mut vetter = Vetter::new(&runner, Duration::from_millis(400));
    let mut seen = Vec::new();
    vetter.vet_all(&paths, |i, verdict| seen.push((i, verdict)));
    assert_eq!(
        seen.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        (0..paths.len()).collect::<Vec<_>>(),
        "one verdict per file, in order"
    );
    for (i, verdict) in &seen {
        let path = &paths[*i];
        match verdict {
            Verdict::Valid(info) => {
                assert_eq!(path, &good, "{i}");
                assert_eq!(info.name, "good_c");
            }
            Verdict::Refused(r) => {
                assert_ne!(path, &good, "{i}: {r:?}");
                assert_eq!(&r.path, path);
                assert_eq!(r.kind, kind_of(path), "{i}: {r:?}");
                assert!(r.message.starts_with(&format!("{}: ", path.display())));
            }
        }
    }
    // One child at first, and a new one after each of the three files that killed one.
    assert_eq!(starts(&log), 4);
}

#[test]
fn a_manager_vets_a_directory_by_default_and_remembers_the_verdicts() {
    let scratch = scratch_dir(&format!("vet-default-{}", std::process::id()));
    let (runner, log) = counting_runner(&scratch);
    let dir = calc_tests::dated_load_time_corpus("vet-default-corpus");
    let mut manager = PluginManager::with_settings(settings_with_runner(&runner));
    let loaded = manager.load_dir(&dir).expect("readable");
    assert_eq!(loaded, 1);
    assert_eq!(manager.eval("twice(21)").unwrap(), 42.0);
    let failures: Vec<(String, &'static str)> = manager
        .failures()
        .iter()
        .map(|f| (f.path.display().to_string(), f.error.kind()))
        .collect();
    assert_eq!(failures.len(), LOAD_TIME_CASES.len(), "{failures:?}");
    for (path, kind) in &failures {
        assert_eq!(*kind, kind_of(Path::new(path)), "{path}");
    }
    let vetted = starts(&log);
    assert!(vetted >= 1, "no vetting child was started");
    // A second manager in this process: the verdicts on these versions of the files are
    // known, so no child is started and no hang is waited for again.
    let mut again = PluginManager::with_settings(settings_with_runner(&runner));
    assert_eq!(again.load_dir(&dir).expect("readable"), 1);
    assert_eq!(again.failures().len(), LOAD_TIME_CASES.len());
    assert_eq!(starts(&log), vetted, "vetted again");
    // A changed file is vetted again.
    let good = dir.join(library_file_name("good_c"));
    let bytes = std::fs::read(&good).unwrap();
    std::fs::remove_file(&good).unwrap();
    std::fs::write(&good, bytes).unwrap();
    let mut third = PluginManager::with_settings(settings_with_runner(&runner));
    assert!(third.load_file(&good).is_ok());
    assert_eq!(starts(&log), vetted + 1, "a new version was not vetted");
}

#[test]
fn always_without_a_runner_refuses_every_file_and_never_opens_in_process() {
    let mut settings = settings_with_runner(Path::new("/nonexistent/calc-plugin-runner"));
    settings.isolation.vet = VetMode::Always;
    let mut manager = PluginManager::with_settings(settings);
    // The hostile files are safe to try: nothing is opened without vetting.
    let loaded = manager.load_dir(load_time_corpus_dir()).expect("readable");
    assert_eq!(loaded, 0);
    assert_eq!(manager.failures().len(), LOAD_TIME_CASES.len() + 1);
    for failure in manager.failures() {
        let message = failure.error.to_string();
        assert_eq!(failure.error.kind(), "vetting", "{message}");
        assert!(
            message.starts_with(&format!("{}: not vetted", failure.path.display())),
            "{message}"
        );
        assert!(
            message.contains("/nonexistent/calc-plugin-runner"),
            "{message}"
        );
    }

    // `never` opens in process: no child at all (good files only, of course).
    let scratch = scratch_dir(&format!("vet-never-{}", std::process::id()));
    let (runner, log) = counting_runner(&scratch);
    let good_only = scratch.join("plugins");
    std::fs::create_dir_all(&good_only).unwrap();
    std::fs::copy(
        load_time_corpus_dir().join(library_file_name("good_c")),
        good_only.join(library_file_name("good_c")),
    )
    .unwrap();
    let mut settings = settings_with_runner(&runner);
    settings.isolation.vet = VetMode::Never;
    let mut manager = PluginManager::with_settings(settings);
    assert_eq!(manager.load_dir(&good_only).expect("readable"), 1);
    assert_eq!(starts(&log), 0);
}

/// Builds `broken.c`'s valid plugin as `name`, recording the pid of every process that opens
/// it in `log`.
fn recorded_plugin(dir: &Path, name: &str, log: &Path) -> PathBuf {
    let out = dir.join(library_file_name(name));
    build_c_plugin(
        &workspace_root().join("tests/broken/broken.c"),
        &out,
        &[
            &format!("-DPLUGIN_NAME=\"{name}\""),
            &format!("-DRECORD_OPENS=\"{}\"", log.display()),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    out
}

fn opened_by(log: &Path) -> Vec<u32> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

#[test]
fn a_plugin_isolated_by_name_is_never_opened_in_the_host() {
    let here = std::process::id();
    for mode in [VetMode::Auto, VetMode::Never] {
        let scratch = scratch_dir(&format!("vet-mixed-{mode:?}-{here}"));
        let plugins = scratch.join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        let log = scratch.join("opens.log");
        let _ = std::fs::remove_file(&log);
        recorded_plugin(&plugins, "recorded", &log);
        let mut settings = settings_with_runner(runner_binary());
        settings.isolation.vet = mode;
        settings.isolation.plugins.insert("recorded".into(), true);
        let mut manager = PluginManager::with_settings(settings);
        assert_eq!(manager.load_dir(&plugins).expect("readable"), 1);
        assert!(manager.is_isolated("recorded"));
        assert_eq!(manager.eval("twice(4)").unwrap(), 8.0);
        let pids = opened_by(&log);
        match mode {
            // Vetting names the plugin: the vetting child and its runner open it, not the host.
            VetMode::Auto => {
                assert!(!pids.contains(&here), "opened in the host: {pids:?}");
                assert_eq!(pids.len(), 2, "{pids:?}");
            }
            // Without vetting, the host opens it to learn its name (the documented cost).
            _ => assert!(pids.contains(&here), "{pids:?}"),
        }
    }
}

#[test]
fn the_c_api_vets_by_default_and_survives_the_load_time_corpus() {
    use calc_host::capi::*;
    use std::ffi::{CStr, CString};
    let scratch = scratch_dir(&format!("vet-capi-{}", std::process::id()));
    let config = scratch.join("calc.toml");
    std::fs::write(
        &config,
        format!(
            "[isolation]\nrunner = \"{}\"\nstart_timeout_ms = 400\n",
            runner_binary().display()
        ),
    )
    .unwrap();
    let config = CString::new(config.to_str().unwrap()).unwrap();
    let dir = CString::new(load_time_corpus_dir().to_str().unwrap()).unwrap();
    let mut host = std::ptr::null_mut();
    // SAFETY: the C API's contract: out-pointers are writable, strings NUL-terminated, `host`
    // live until `calc_host_free`; failure records are read before the host is freed.
    unsafe {
        assert_eq!(calc_host_new(&mut host), 0);
        assert_eq!(calc_host_load_config(host, config.as_ptr()), 0);
        let mut loaded = 0usize;
        assert_eq!(calc_host_load_dir(host, dir.as_ptr(), &mut loaded), 0);
        assert_eq!(loaded, 1);
        assert_eq!(calc_host_failure_count(host), LOAD_TIME_CASES.len());
        for i in 0..LOAD_TIME_CASES.len() {
            let failure = &*calc_host_failure(host, i);
            let message = CStr::from_ptr(failure.message).to_string_lossy();
            let path = CStr::from_ptr(failure.path).to_string_lossy();
            assert!(path.contains("libhostile_"), "{path}");
            assert!(message.starts_with(&format!("{path}: ")), "{message}");
        }
        let mut result = 0.0;
        let name = CString::new("twice").unwrap();
        assert_eq!(
            calc_host_call(host, name.as_ptr(), [5.0].as_ptr(), 1, &mut result),
            0
        );
        assert_eq!(result, 10.0);
        calc_host_free(host);
    }
}

#[test]
fn vet_all_blames_only_the_file_that_killed_the_child_however_replies_and_deaths_race() {
    // The child answers the good file and dies on the next one while the host may still be
    // sending requests: the good file's reply, already on the socket, must be read as such.
    let corpus = load_time_corpus_dir();
    let at = |name: &str| std::fs::canonicalize(corpus.join(library_file_name(name))).unwrap();
    let (good, abort) = (at("good_c"), at("hostile_ctor_abort"));
    let mut paths = vec![good.clone(), abort.clone()];
    paths.extend(std::iter::repeat_n(good.clone(), 40));
    for round in 0..25 {
        let mut vetter = Vetter::new(runner_binary(), Duration::from_millis(2000));
        vetter.vet_all(&paths, |i, verdict| match (paths[i] == abort, verdict) {
            (false, Verdict::Valid(_)) => {}
            (true, Verdict::Refused(r)) => assert_eq!(r.kind, "crashed", "round {round}: {r:?}"),
            (_, other) => panic!("round {round}, file {i}: {other:?}"),
        });
    }
}
