//! Vetting: files are opened and validated in a child process, so that a file whose
//! initialisers or `plugin_entry` crash, exit or hang costs that child, not the host. Tried on
//! the load-time corpus of `tests/broken/hostile.c` through `calc plugins check` and the
//! `Vetter` API.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use calc_host::cache::Verdict;
use calc_host::vet::Vetter;
use calc_tests::{
    library_file_name, load_time_corpus_dir, run_calc, runner_binary, scratch_dir, LOAD_TIME_CASES,
};

fn file(name: &str) -> PathBuf {
    let path = load_time_corpus_dir().join(library_file_name(name));
    std::fs::canonicalize(&path).unwrap_or(path)
}

/// Each case's kind and the end of its message.
fn expected(case: &str) -> (&'static str, &'static str) {
    match case {
        "ctor_crash" | "entry_crash" | "ctor_forge" => (
            "crashed",
            "refused by vetting: plugin process crashed with SIGSEGV while loading it",
        ),
        "ctor_exit" => (
            "exited",
            "refused by vetting: plugin process exited with status 0 while loading it",
        ),
        "ctor_hang" | "entry_hang" => (
            "timed_out",
            "refused by vetting: did not finish loading within 400 ms (its initialisers or \
             plugin_entry hang)",
        ),
        "ctor_abort" | "entry_abort" => (
            "crashed",
            "refused by vetting: plugin process crashed with SIGABRT while loading it",
        ),
        "ctor_stack" => (
            "crashed",
            "refused by vetting: plugin process crashed with SIGSEGV while loading it",
        ),
        "ctor_kill" => (
            "crashed",
            "refused by vetting: plugin process crashed with SIGKILL while loading it",
        ),
        "ctor_exit3" => (
            "exited",
            "refused by vetting: plugin process exited with status 3 while loading it",
        ),
        // The vetting child survives these constructors (its connection is not on standard
        // input while a file loads); the descriptor refuses the file.
        "ctor_close_stdin" | "ctor_write_stdin" | "ctor_fork" => (
            "entry_returned_null",
            "plugin_entry returned NULL (the plugin could not describe itself)",
        ),
        other => panic!("no expectation for {other}"),
    }
}

#[test]
fn plugins_check_survives_every_load_time_fault_and_names_each_file() {
    let config = scratch_dir(&format!("vetting-check-{}", std::process::id())).join("calc.toml");
    std::fs::write(&config, "[isolation]\nstart_timeout_ms = 400\n").unwrap();
    let mut args: Vec<String> = vec!["--config".into(), config.to_str().unwrap().into()];
    args.extend(["plugins".into(), "check".into(), "--json".into()]);
    let mut files: Vec<(String, PathBuf)> = LOAD_TIME_CASES
        .iter()
        .map(|c| {
            let case = c.to_lowercase();
            let path = file(&format!("hostile_{case}"));
            (case, path)
        })
        .collect();
    // A good file after every bad one: each bad file costs only its own child.
    files.push(("good".into(), file("good_c")));
    args.extend(files.iter().map(|(_, p)| p.to_str().unwrap().to_string()));
    let started = Instant::now();
    let out = run_calc(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let took = started.elapsed();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), None, "calc was killed");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two hangs of 400 ms each, and no more.
    assert!(took < Duration::from_secs(15), "{took:?}");
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), files.len());
    for ((case, path), report) in files.iter().zip(reports) {
        if case == "good" {
            assert_eq!(report["ok"], true, "{report}");
            assert_eq!(report["plugin"]["name"], "good_c");
            continue;
        }
        let (kind, ending) = expected(case);
        assert_eq!(report["ok"], false, "{case}: {report}");
        assert_eq!(report["kind"], kind, "{case}: {report}");
        assert_eq!(
            report["error"],
            format!("{}: {ending}", path.display()),
            "{case}"
        );
    }
}

#[test]
fn a_vetter_replaces_a_child_that_a_file_killed() {
    let mut vetter = Vetter::new(runner_binary(), Duration::from_millis(400));
    let good = file("good_c");
    let crash = file("hostile_ctor_crash");
    let exit = file("hostile_ctor_exit");
    for path in [&good, &crash, &good, &exit, &good] {
        let verdict = vetter.vet(path);
        match verdict {
            Verdict::Valid(info) => {
                assert_eq!(path, &good);
                assert_eq!(info.name, "good_c");
                assert_eq!(info.path, good);
            }
            Verdict::Refused(r) => {
                assert_ne!(path, &good, "{r:?}");
                assert_eq!(&r.path, path);
                assert!(r.kind == "crashed" || r.kind == "exited", "{r:?}");
            }
        }
    }
    // A refusal by the loader keeps its kind and its fields, as in process.
    let broken = calc_tests::broken_corpus_dir().join(library_file_name("broken_bad_magic"));
    let Verdict::Refused(r) = vetter.vet(&broken) else {
        panic!("bad magic accepted");
    };
    assert_eq!(r.kind, "bad_magic");
    assert_eq!(r.mismatches.len(), 1, "{r:?}");
    assert_eq!(r.mismatches[0].field, "magic");
}

#[test]
fn a_missing_runner_refuses_with_a_clear_line() {
    let mut vetter = Vetter::new("/nonexistent/calc-plugin-runner", Duration::from_secs(1));
    let good = file("good_c");
    let Verdict::Refused(r) = vetter.vet(&good) else {
        panic!("vetted without a runner");
    };
    assert_eq!(r.kind, "vetting");
    assert!(
        r.message.starts_with(&format!(
            "{}: cannot start /nonexistent/calc-plugin-runner: ",
            good.display()
        )),
        "{}",
        r.message
    );
}

/// `calc --isolate` with a config that gives each runner `start_ms` to start.
fn isolated_eval(dir: &std::path::Path, expr: &str, start_ms: u64) -> std::process::Output {
    let config = scratch_dir(&format!(
        "vetting-isolate-{}-{start_ms}",
        std::process::id()
    ))
    .join("calc.toml");
    std::fs::write(
        &config,
        format!("[isolation]\nstart_timeout_ms = {start_ms}\n"),
    )
    .unwrap();
    run_calc(&[
        "--isolate",
        "--config",
        config.to_str().unwrap(),
        "--plugin-dir",
        dir.to_str().unwrap(),
        "eval",
        expr,
    ])
}

#[test]
fn isolated_eval_refuses_every_hostile_file_and_the_good_plugin_answers() {
    use std::os::unix::process::ExitStatusExt;
    for (dir, cases) in [
        (calc_tests::hostile_corpus_dir(), calc_tests::HOSTILE_CASES),
        (load_time_corpus_dir(), LOAD_TIME_CASES),
    ] {
        let out = isolated_eval(dir, "twice(twice(3))", 400);
        assert_eq!(out.status.signal(), None);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "12\n");
        let err = String::from_utf8_lossy(&out.stderr);
        for case in cases {
            let path = std::fs::canonicalize(dir.join(library_file_name(&format!(
                "hostile_{}",
                case.to_lowercase()
            ))))
            .unwrap();
            let lines = err
                .lines()
                .filter(|l| l.starts_with(&format!("calc: skipped {}: ", path.display())))
                .count();
            assert_eq!(lines, 1, "{case}: {err}");
        }
    }
}

#[test]
fn plugins_check_conformance_survives_the_whole_corpus() {
    use std::os::unix::process::ExitStatusExt;
    let config =
        scratch_dir(&format!("vetting-conformance-{}", std::process::id())).join("calc.toml");
    std::fs::write(&config, "[isolation]\nstart_timeout_ms = 400\n").unwrap();
    let mut args: Vec<String> = vec![
        "--config".into(),
        config.to_str().unwrap().into(),
        "plugins".into(),
        "check".into(),
        "--json".into(),
        "--conformance".into(),
    ];
    let mut expected_refusals = 0;
    for (dir, cases) in [
        (calc_tests::hostile_corpus_dir(), calc_tests::HOSTILE_CASES),
        (load_time_corpus_dir(), LOAD_TIME_CASES),
    ] {
        for case in cases {
            let path = dir.join(library_file_name(&format!(
                "hostile_{}",
                case.to_lowercase()
            )));
            args.push(path.to_str().unwrap().into());
            expected_refusals += 1;
        }
    }
    args.push(file("good_c").to_str().unwrap().into());
    let out = run_calc(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.signal(), None, "calc was killed");
    assert_eq!(out.status.code(), Some(3));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), expected_refusals + 1);
    let refused = reports.iter().filter(|r| r["ok"] == false).count();
    assert_eq!(refused, expected_refusals, "{reports:?}");
    let good = reports.last().unwrap();
    assert_eq!(good["ok"], true, "{good}");
    assert_eq!(good["plugin"]["name"], "good_c");
}

/// Runs `calc` with a config that gives each file 400 ms to load, and returns its output.
fn calc_with_short_vetting(args: &[&str]) -> std::process::Output {
    let config = scratch_dir(&format!("vetting-default-{}", std::process::id())).join("calc.toml");
    std::fs::write(&config, "[isolation]\nstart_timeout_ms = 400\n").unwrap();
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    run_calc(&all)
}

#[test]
fn default_mode_eval_and_list_vet_new_files_and_remember_the_refusals() {
    use std::os::unix::process::ExitStatusExt;
    // A private copy of the corpus, its files dated a minute back: the metadata cache does not
    // trust an entry for a file modified within 2 s of its validation (RACY_WINDOW).
    let private = calc_tests::dated_load_time_corpus("vetting-default-dir");
    let dir = private.to_str().unwrap();
    let in_private = |name: &str| private.join(library_file_name(name));
    let refusal_lines = |err: &str| -> Vec<String> {
        err.lines()
            .filter(|l| l.contains("libhostile_"))
            .map(str::to_string)
            .collect()
    };
    // First sight: each file is vetted in a child; the ones that crash, exit or hang are
    // refused, naming the file, and the good plugin answers, in the calc process.
    // `-vv` logs each vetting child it starts ("runner started args=[\"--vet\"]").
    let cold = calc_with_short_vetting(&["-vv", "--plugin-dir", dir, "eval", "twice(twice(3))"]);
    assert_eq!(cold.status.signal(), None, "calc was killed");
    let cold_err = String::from_utf8_lossy(&cold.stderr).into_owned();
    assert_eq!(cold.status.code(), Some(0), "{cold_err}");
    assert_eq!(String::from_utf8_lossy(&cold.stdout), "12\n");
    assert!(
        cold_err.contains("runner started args=[\"--vet\"]"),
        "{cold_err}"
    );
    let refused: Vec<String> = refusal_lines(&cold_err)
        .into_iter()
        .filter(|l| l.starts_with("calc: skipped "))
        .collect();
    assert_eq!(refused.len(), LOAD_TIME_CASES.len(), "{cold_err}");
    for case in LOAD_TIME_CASES {
        let path = in_private(&format!("hostile_{}", case.to_lowercase()));
        let (_, ending) = expected(&case.to_lowercase());
        assert!(
            refused.contains(&format!("calc: skipped {}: {ending}", path.display())),
            "{case}: {cold_err}"
        );
    }
    // Second run: the refusals come from the cache, until the files change: the same lines,
    // and no hang is waited for again.
    let warm = calc_with_short_vetting(&["-vv", "--plugin-dir", dir, "eval", "twice(twice(3))"]);
    let warm_err = String::from_utf8_lossy(&warm.stderr).into_owned();
    assert_eq!(warm.status.code(), Some(0), "{warm_err}");
    assert!(!warm_err.contains("--vet"), "vetted again: {warm_err}");
    assert_eq!(
        refusal_lines(&warm_err)
            .into_iter()
            .filter(|l| l.starts_with("calc: skipped "))
            .collect::<Vec<_>>(),
        refused
    );
    // The listing vets the same way (its cache is another file).
    let list = calc_with_short_vetting(&["--plugin-dir", dir, "plugins", "list"]);
    assert_eq!(list.status.signal(), None, "calc was killed");
    assert_eq!(list.status.code(), Some(3));
    let text =
        String::from_utf8_lossy(&list.stdout).into_owned() + &String::from_utf8_lossy(&list.stderr);
    assert_eq!(
        text.matches("refused by vetting: ").count(),
        killers(),
        "{text}"
    );
}

/// How many of [`LOAD_TIME_CASES`] kill or hang the process that loads them (the others are
/// refused by validation once loaded).
fn killers() -> usize {
    LOAD_TIME_CASES
        .iter()
        .filter(|c| {
            expected(&c.to_lowercase())
                .1
                .starts_with("refused by vetting: ")
        })
        .count()
}

#[test]
fn a_manager_that_vets_refuses_load_time_faults_on_load_and_on_reload() {
    use calc_host::PluginManager;
    let mut m = PluginManager::new();
    m.vet_with(Vetter::new(runner_binary(), Duration::from_millis(400)));
    // Loading: every load-time fault is refused, naming the file; the good plugin loads.
    let loaded = m.load_dir(load_time_corpus_dir()).unwrap();
    assert_eq!(loaded, 1);
    assert_eq!(m.failures().len(), LOAD_TIME_CASES.len());
    for f in m.failures() {
        assert!(
            [
                "crashed",
                "exited",
                "timed_out",
                "protocol",
                "entry_returned_null"
            ]
            .contains(&f.error.kind()),
            "{}",
            f.error
        );
        assert!(
            f.error
                .to_string()
                .starts_with(&f.path.display().to_string()),
            "{}",
            f.error
        );
    }
    assert_eq!(m.eval("twice(21)").unwrap(), 42.0);

    // Hot reload: a new build whose constructor crashes is refused before it is opened here,
    // and the old version keeps serving.
    let dir = scratch_dir(&format!("vetting-reload-{}", std::process::id()));
    let mut hot = PluginManager::new();
    hot.enable_hot_reload(dir.join("copies"));
    hot.vet_with(Vetter::new(runner_binary(), Duration::from_millis(400)));
    let installed = dir.join(library_file_name("good_c"));
    std::fs::copy(file("good_c"), &installed).unwrap();
    hot.load_file(&installed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hot.eval("twice(2)").unwrap(), 4.0);
    let crashing = dir.join("crashing.so");
    std::fs::copy(file("hostile_ctor_crash"), &crashing).unwrap();
    std::fs::rename(&crashing, &installed).unwrap();
    let e = hot
        .reload_file(&installed)
        .expect_err("a crashing build must not load");
    assert_eq!(e.kind(), "crashed", "{e}");
    assert_eq!(
        hot.eval("twice(2)").unwrap(),
        4.0,
        "the old version still serves"
    );
}

#[test]
fn calc_without_the_cache_vets_every_file_too() {
    use std::os::unix::process::ExitStatusExt;
    let dir = load_time_corpus_dir().to_str().unwrap();
    let out = calc_with_short_vetting(&["--plugin-dir", dir, "plugins", "list", "--no-cache"]);
    assert_eq!(out.status.signal(), None, "calc was killed");
    assert_eq!(out.status.code(), Some(3));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        text.matches("refused by vetting: ").count(),
        killers(),
        "{text}"
    );
    assert!(text.contains("good_c"), "{text}");
}
