//! Process isolation: plugins that crash, abort, exit or hang in a runner process cost only the
//! call in progress; the host survives, the runner restarts, the circuit breaker trips and
//! re-enables, and the same files work isolated and in process.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use calc_host::config::Settings;
use calc_host::{LoadError, PluginManager};
use calc_sdk::Status;
use calc_tests::{crashy_dir, library_file_name, runner_binary};

fn crashy_file(name: &str) -> PathBuf {
    crashy_dir().join(library_file_name(name))
}

/// Settings that isolate every plugin, with the test build's runner and short limits.
fn isolated_settings() -> Settings {
    let mut s = Settings::default();
    s.isolation.all = true;
    s.isolation.runner = Some(runner_binary().to_path_buf());
    s.isolation.timeout = Some(Duration::from_millis(300));
    s.isolation.start_timeout = Duration::from_millis(3000);
    s
}

fn manager_with(settings: Settings) -> PluginManager {
    PluginManager::with_settings(settings)
}

/// A manager with `crashy` loaded isolated.
fn crashy_manager(tweak: impl FnOnce(&mut Settings)) -> PluginManager {
    let mut settings = isolated_settings();
    tweak(&mut settings);
    let mut m = manager_with(settings);
    m.load_file(&crashy_file("crashy"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(m.is_isolated("crashy"));
    m
}

fn call(m: &PluginManager, op: &str, args: &[f64]) -> Result<f64, calc_host::CallError> {
    m.operation(op)
        .unwrap_or_else(|| panic!("no operation {op}"))
        .call(args)
}

fn pid(m: &PluginManager) -> u32 {
    call(m, "pid", &[]).expect("pid works") as u32
}

/// Whether process `pid` exists (a zombie counts: it still has a /proc entry).
fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Polls `done` until it holds (true) or `limit` has passed (false).
fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let until = Instant::now() + limit;
    while !done() {
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

fn wait_gone(pid: u32) -> bool {
    wait_until(Duration::from_secs(5), || !process_exists(pid))
}

#[test]
fn each_failure_costs_only_its_call_and_says_what_happened() {
    let m = crashy_manager(|_| {});
    let path = std::fs::canonicalize(crashy_file("crashy")).unwrap();
    let first = pid(&m);
    assert_ne!(
        first,
        std::process::id(),
        "the plugin runs in another process"
    );
    let cases = [
        (
            "segv",
            "plugin process crashed with SIGSEGV during the call; restarted on the next call",
        ),
        (
            "abort",
            "plugin process crashed with SIGABRT during the call; restarted on the next call",
        ),
        (
            "exit",
            "plugin process exited with status 3 during the call; restarted on the next call",
        ),
        (
            "spin",
            "timed out after 300 ms during the call; runner killed; restarted on the next call",
        ),
    ];
    let mut pids = vec![first];
    for (op, message) in cases {
        let started = Instant::now();
        let e = call(&m, op, &[1.0]).unwrap_err();
        assert_eq!(e.status, Status::Error, "{op}: fallback applies to it");
        assert_eq!(e.operation, op);
        assert_eq!(e.plugin, "crashy");
        assert_eq!(e.message, format!("{message} ({})", path.display()), "{op}");
        assert_eq!(
            e.to_string(),
            format!("{op} (plugin crashy): {message} ({})", path.display())
        );
        if op == "spin" {
            let took = started.elapsed();
            assert!(took >= Duration::from_millis(300), "{took:?}");
            assert!(took < Duration::from_secs(3), "{took:?}");
        }
        // The next call works, in a new runner; the dead one was reaped.
        assert_eq!(call(&m, "twice", &[21.0]).unwrap(), 42.0, "after {op}");
        let now = pid(&m);
        assert!(!pids.contains(&now), "{op}: a new runner serves");
        assert!(
            wait_gone(*pids.last().unwrap()),
            "{op}: the old runner is reaped"
        );
        pids.push(now);
    }
    let h = m.health("crashy").unwrap();
    assert!(h.isolated);
    assert_eq!((h.crashes, h.timeouts, h.restarts), (3, 1, 4), "{h:?}");
    // pid, then per case: the failing call, twice, pid.
    assert_eq!(h.calls, 1 + 4 * 3, "{h:?}");
    assert_eq!(h.failures, 4, "{h:?}");
    assert!(
        h.mean_latency.is_some() && h.max_latency >= h.mean_latency,
        "{h:?}"
    );
    assert_eq!(h.disabled, None, "successes in between reset the breaker");
    drop(m);
    assert!(
        wait_gone(*pids.last().unwrap()),
        "dropping the manager stops the runner"
    );
}

#[test]
fn plugin_errors_pass_through_unchanged_and_do_not_count_as_crashes() {
    let m = crashy_manager(|_| {});
    let e = call(&m, "fail", &[1.0]).unwrap_err();
    assert_eq!(e.status, Status::Error);
    assert_eq!(e.message, "fail was asked to fail");
    assert_eq!(call(&m, "count", &[]).unwrap(), 1.0);
    assert_eq!(
        call(&m, "count", &[]).unwrap(),
        2.0,
        "state lives in the runner"
    );
    let h = m.health("crashy").unwrap();
    assert_eq!((h.calls, h.failures, h.crashes, h.restarts), (3, 1, 0, 0));
    // A crash loses the runner's state: the restarted plugin starts over.
    call(&m, "segv", &[0.0]).unwrap_err();
    assert_eq!(call(&m, "count", &[]).unwrap(), 1.0);
}

#[test]
fn the_circuit_breaker_trips_and_can_be_re_enabled() {
    let mut m = crashy_manager(|s| s.isolation.breaker_threshold = 2);
    let path = std::fs::canonicalize(crashy_file("crashy")).unwrap();
    let e = call(&m, "segv", &[1.0]).unwrap_err();
    assert!(e.message.contains("; restarted on the next call ("), "{e}");
    let e = call(&m, "abort", &[1.0]).unwrap_err();
    assert_eq!(
        e.message,
        format!(
            "plugin process crashed with SIGABRT during the call; 2 in a row: disabled by the \
             circuit breaker until it is enabled again ({})",
            path.display()
        )
    );
    // Now every call fails at once, without starting a runner.
    let started = Instant::now();
    let e = call(&m, "twice", &[1.0]).unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(e.status, Status::Error);
    let expected = "disabled by the circuit breaker after 2 crashes or timeouts in a row (last: \
                    plugin process crashed with SIGABRT during the call) until it is enabled \
                    again";
    assert_eq!(e.message, expected);
    let h = m.health("crashy").unwrap();
    assert_eq!(h.disabled.as_deref(), Some(expected));
    assert_eq!(h.restarts, 1, "no restart while disabled: {h:?}");
    m.enable("crashy").unwrap();
    assert_eq!(m.health("crashy").unwrap().disabled, None);
    assert_eq!(call(&m, "twice", &[4.0]).unwrap(), 8.0);
}

#[test]
fn a_crashing_or_hanging_init_is_a_load_error_and_the_host_carries_on() {
    let mut isolation = isolated_settings().isolation;
    isolation.start_timeout = Duration::from_millis(500);
    let mut m = manager_with(Settings::default().with_isolation(isolation));
    let crash = std::fs::canonicalize(crashy_file("crashy_init_crash")).unwrap();
    let hang = std::fs::canonicalize(crashy_file("crashy_init_hang")).unwrap();
    let e = m.load_file(&crash).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: plugin process crashed with SIGSEGV during init",
            crash.display()
        )
    );
    assert_eq!(e.kind(), "isolation");
    let started = Instant::now();
    let e = m.load_file(&hang).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        e.to_string(),
        format!(
            "{}: plugin process did not finish init within 500 ms; runner killed",
            hang.display()
        )
    );
    assert!(matches!(e, LoadError::Isolation { .. }));
    // Everything else still loads and works.
    m.load_file(&crashy_file("crashy")).unwrap();
    assert_eq!(call(&m, "twice", &[2.0]).unwrap(), 4.0);
    assert_eq!(m.plugins().count(), 1);
    assert_eq!(m.failures().len(), 2);
}

#[test]
fn a_missing_runner_is_a_clear_load_error() {
    let mut settings = isolated_settings();
    settings.isolation.runner = Some(PathBuf::from("/nonexistent/calc-plugin-runner"));
    let mut m = manager_with(settings);
    let path = std::fs::canonicalize(crashy_file("crashy")).unwrap();
    let e = m.load_file(&path).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: cannot isolate the plugin: no calc-plugin-runner at \
             /nonexistent/calc-plugin-runner (set [isolation] runner or CALC_PLUGIN_RUNNER)",
            path.display()
        )
    );
}

#[test]
fn refusals_read_the_same_in_process_and_isolated() {
    let dir = calc_tests::broken_corpus_dir();
    let mut native = PluginManager::new();
    let _ = native.load_dir(dir);
    let mut isolated = manager_with(isolated_settings());
    let _ = isolated.load_dir(dir);
    let listing = |m: &PluginManager| {
        let mut v: Vec<(PathBuf, String, String)> = m
            .failures()
            .iter()
            .map(|f| {
                (
                    f.path.clone(),
                    f.error.kind().to_string(),
                    f.error.to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(listing(&native), listing(&isolated));
    assert!(!listing(&native).is_empty());
    let names = |m: &PluginManager| {
        let mut v: Vec<String> = m.plugins().map(|p| p.name.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&native), names(&isolated));
    assert!(isolated.plugins().all(|p| isolated.is_isolated(&p.name)));
}

#[test]
fn the_same_files_give_the_same_answers_isolated() {
    let dir = calc_tests::examples_dir();
    let mut native = PluginManager::new();
    native.load_dir(dir).unwrap();
    let mut isolated = manager_with(isolated_settings());
    isolated.load_dir(dir).unwrap();
    assert!(isolated.failures().is_empty(), "{:?}", isolated.failures());
    for expression in [
        "2 ^ 10 - max(3, 4) / 2",
        "sqrt(16) + hypot(3, 4) * -2",
        "avg(1, 2, 3, 4) % 2",
        "atan2(1, 1) * 4",
        "2 * (3 + 4)",
    ] {
        assert_eq!(
            native.eval(expression).unwrap().to_bits(),
            isolated.eval(expression).unwrap().to_bits(),
            "{expression}"
        );
    }
    let (a, b) = (
        native.eval("1 / 0").unwrap_err().to_string(),
        isolated.eval("1 / 0").unwrap_err().to_string(),
    );
    assert_eq!(a, b);
    // The crashy plugin's harmless operations run in this very process when not isolated.
    let mut m = PluginManager::new();
    m.load_file(&crashy_file("crashy")).unwrap();
    assert!(!m.is_isolated("crashy"));
    assert_eq!(pid(&m), std::process::id());
}

#[test]
fn batches_cross_to_the_runner_in_one_request() {
    let m = crashy_manager(|_| {});
    let twice = m.operation("twice").unwrap();
    assert!(twice.has_batch());
    let xs: Vec<f64> = (0..1000).map(f64::from).filter(|x| *x != 13.0).collect();
    let mut out = vec![0.0; xs.len()];
    twice.call_batch(&[&xs], &mut out).unwrap();
    assert!(out.iter().zip(&xs).all(|(o, x)| *o == 2.0 * x));
    // A crash inside a batch fails the batch, and the next one works.
    let (row, e) = twice
        .call_batch(&[&[1.0, 13.0]], &mut [0.0, 0.0])
        .unwrap_err();
    assert_eq!(row, 0);
    assert!(
        e.message.starts_with("plugin process crashed with SIGSEGV"),
        "{e}"
    );
    let mut two = [0.0; 2];
    twice.call_batch(&[&[1.0, 2.0]], &mut two).unwrap();
    assert_eq!(two, [2.0, 4.0]);
}

#[test]
fn a_batch_over_one_frame_goes_in_several_and_names_its_failing_row() {
    let mut settings = isolated_settings();
    // About 70 MB each way per frame, through a debug runner on a loaded machine.
    settings.isolation.timeout = Some(Duration::from_secs(10));
    let mut m = manager_with(settings);
    m.load_file(&calc_tests::examples_dir().join(library_file_name("div")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(m.is_isolated("div"));
    let div = m.operation("div").unwrap();
    // One frame carries at most 64 MiB: 4,128,768 rows of two operands.
    let rows = 4_500_000usize;
    let a: Vec<f64> = (0..rows).map(|i| i as f64).collect();
    let mut b = vec![2.0; rows];
    let mut out = vec![f64::NAN; rows];
    div.call_batch(&[&a, &b], &mut out).unwrap();
    assert!(out.iter().enumerate().all(|(i, o)| *o == i as f64 / 2.0));
    // A row of the second frame fails: named from the start of the batch, the rows before it
    // done.
    b[4_200_000] = 0.0;
    out.fill(f64::NAN);
    let (row, e) = div.call_batch(&[&a, &b], &mut out).unwrap_err();
    assert_eq!((row, e.status), (4_200_000, Status::DivisionByZero), "{e}");
    assert!(out[..row]
        .iter()
        .enumerate()
        .all(|(i, o)| *o == i as f64 / 2.0));
    let health = m.health("div").unwrap();
    assert_eq!((health.crashes, health.restarts), (0, 0));
}

#[test]
fn calls_from_many_threads_are_safe() {
    let m = crashy_manager(|_| {});
    let twice = m.operation("twice").unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let twice = twice.clone();
            s.spawn(move || {
                for i in 0..100 {
                    let x = f64::from(t * 1000 + i + 20);
                    assert_eq!(twice.call(&[x]).unwrap(), 2.0 * x);
                }
            });
        }
    });
    assert_eq!(m.health("crashy").unwrap().calls, 400);
}

#[test]
fn another_provider_serves_when_the_isolated_one_crashes() {
    // crashy (isolated, preferred) and good_c (in process) both provide `twice`.
    let mut settings = isolated_settings();
    settings.isolation.all = false;
    settings.isolation.plugins.insert("crashy".into(), true);
    settings.prefer = vec!["crashy".into()];
    let mut m = manager_with(settings);
    m.load_file(&crashy_file("crashy")).unwrap();
    m.load_file(&calc_tests::broken_corpus_dir().join(library_file_name("good_c")))
        .unwrap();
    assert!(m.is_isolated("crashy") && !m.is_isolated("good_c"));
    assert_eq!(m.call("twice", &[13.0], "k").unwrap().unwrap(), 26.0);
    assert_eq!(m.health("crashy").unwrap().crashes, 1);
    assert_eq!(m.call("twice", &[2.0], "k").unwrap().unwrap(), 4.0);
    assert_eq!(m.serving("twice").as_deref(), Some("crashy"));
}

#[test]
fn hot_reload_swaps_an_isolated_plugin() {
    let dir = calc_tests::scratch_dir(&format!("isolation-reload-{}", std::process::id()));
    let file = dir.join(library_file_name("crashy"));
    let source = calc_tests::workspace_root().join("tests/fixtures/c/crashy.c");
    calc_tests::build_c_plugin(&source, &file, &[]).unwrap();
    let mut m = manager_with(isolated_settings());
    m.enable_hot_reload(dir.join("copies"));
    m.load_file(&file).unwrap();
    let live = m.live_operation("pid").unwrap();
    let old = live.call(&[]).unwrap() as u32;
    calc_tests::build_c_plugin(&source, &file, &["-DCRASHY_VERSION=\"2.0.0\""]).unwrap();
    match m.reload_file(&file) {
        Ok(calc_host::events::HostEvent::Reloaded {
            old_version,
            new_version,
            ..
        }) => assert_eq!(
            (old_version.as_str(), new_version.as_str()),
            ("1.0.0", "2.0.0")
        ),
        other => panic!("{other:?}"),
    }
    assert!(m.is_isolated("crashy"));
    let new = live.call(&[]).unwrap() as u32;
    assert_ne!(old, new, "the new version runs in a new runner");
    assert!(wait_gone(old), "the old version's runner stopped");
    drop(live);
    drop(m);
    assert!(wait_gone(new));
    let left: Vec<_> = std::fs::read_dir(dir.join("copies"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "private copies removed: {left:?}");
}

#[test]
fn a_crashed_runners_private_copy_is_deleted_in_hot_reload_mode() {
    let dir = calc_tests::scratch_dir(&format!("isolation-copies-{}", std::process::id()));
    let copies = dir.join("copies");
    let files = || -> Vec<PathBuf> {
        std::fs::read_dir(&copies)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    let mut m = manager_with(isolated_settings());
    m.enable_hot_reload(copies.clone());
    m.load_file(&crashy_file("crashy")).unwrap();
    assert_eq!(files().len(), 1, "the runner's private copy");
    let before = pid(&m);
    let crash = call(&m, "segv", &[1.0]).unwrap_err();
    assert!(crash.message.contains("SIGSEGV"), "{crash}");
    assert!(
        files().is_empty(),
        "the dead runner's copy is gone: {:?}",
        files()
    );
    assert_eq!(call(&m, "twice", &[2.0]), Ok(4.0), "restarted");
    assert_ne!(pid(&m), before);
    assert_eq!(
        files().len(),
        1,
        "only the new runner's copy: {:?}",
        files()
    );
    drop(m);
    assert!(files().is_empty(), "{:?}", files());
}

#[test]
fn timeouts_are_cooperative_deadlines_in_process_and_isolated() {
    // Isolated: the plugin polls the deadline and stops by itself before the runner is killed.
    let m = crashy_manager(|s| s.isolation.timeout = Some(Duration::from_millis(200)));
    let e = call(&m, "poll", &[5000.0]).unwrap_err();
    assert!(
        e.message.starts_with("stopped at the deadline after 2"),
        "{e}"
    );
    assert_eq!(m.health("crashy").unwrap().timeouts, 0);
    assert_eq!(call(&m, "poll", &[1.0]).unwrap(), 1.0);
    // In process, through the manager's call path, with a configured per-plugin timeout.
    let mut settings = Settings::default();
    settings
        .isolation
        .plugin_timeouts
        .insert("crashy".into(), Duration::from_millis(100));
    let mut m = manager_with(settings);
    m.load_file(&crashy_file("crashy")).unwrap();
    let started = Instant::now();
    let e = m.call("poll", &[5000.0], "k").unwrap().unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        e.message.starts_with("stopped at the deadline after 1"),
        "{e}"
    );
    // Pinned handles are not the manager's call path: no deadline there.
    assert_eq!(call(&m, "poll", &[20.0]).unwrap(), 20.0);
}

#[test]
fn repeated_in_process_timeouts_trip_the_breaker_which_enable_resets() {
    let mut settings = Settings::default();
    settings
        .isolation
        .plugin_timeouts
        .insert("crashy".into(), Duration::from_millis(50));
    settings.isolation.breaker_threshold = 2;
    let mut m = manager_with(settings);
    m.load_file(&crashy_file("crashy")).unwrap();
    assert!(!m.is_isolated("crashy"));
    let poll = |m: &PluginManager, ms: f64| m.call("poll", &[ms], "k").unwrap();

    assert_eq!(poll(&m, 1.0), Ok(1.0), "a call within its limit");
    for _ in 0..2 {
        let e = poll(&m, 5000.0).unwrap_err();
        assert!(e.message.starts_with("stopped at the deadline"), "{e}");
    }
    let health = m.health("crashy").unwrap();
    assert_eq!((health.calls, health.failures, health.timeouts), (3, 2, 2));
    assert!(health.mean_latency.is_some() && health.max_latency.is_some());
    let why = health.disabled.expect("two timeouts in a row trip it");
    assert!(
        why.starts_with("disabled by the circuit breaker after 2 timeouts in a row (last: poll exceeded its 50 ms limit: stopped at the deadline"),
        "{why}"
    );

    // Refused at once, without calling the plugin, naming the breaker.
    let started = Instant::now();
    let e = poll(&m, 1.0).unwrap_err();
    assert_eq!(e.status, Status::Error);
    assert_eq!(e.message, why);
    assert!(started.elapsed() < Duration::from_millis(50));

    m.enable("crashy").unwrap();
    assert_eq!(m.health("crashy").unwrap().disabled, None);
    assert_eq!(poll(&m, 1.0), Ok(1.0));
}

#[test]
fn cli_isolate_gives_the_same_answers() {
    let dir = calc_tests::examples_dir().to_str().unwrap().to_string();
    let exprs = [
        "2 ^ 10 - max(3, 4) / 2",
        "sqrt(16) + hypot(3, 4) * -2",
        "1 / 0",
    ];
    let mut args = vec!["--plugin-dir", &dir, "eval"];
    args.extend(exprs);
    let native = calc_tests::run_calc(&args);
    let mut iso_args = vec!["--isolate"];
    iso_args.extend(&args);
    let isolated = calc_tests::run_calc(&iso_args);
    assert_eq!(
        String::from_utf8_lossy(&native.stdout),
        String::from_utf8_lossy(&isolated.stdout)
    );
    assert_eq!(String::from_utf8_lossy(&isolated.stdout), "1022\n-6\n");
    assert_eq!(
        String::from_utf8_lossy(&native.stderr),
        String::from_utf8_lossy(&isolated.stderr)
    );
    assert_eq!(native.status.code(), isolated.status.code());
}

#[test]
fn cli_reports_a_crash_and_carries_on() {
    // Only `crashy`: the corpus directory also holds plugins that crash or hang in `init`.
    let scratch = calc_tests::scratch_dir(&format!("isolation-cli-{}", std::process::id()));
    std::fs::copy(
        crashy_file("crashy"),
        scratch.join(library_file_name("crashy")),
    )
    .unwrap();
    let dir = scratch.to_str().unwrap().to_string();
    let out = calc_tests::run_calc(&[
        "--isolate",
        "--plugin-dir",
        &dir,
        "eval",
        "segv(1)",
        "twice(4)",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let path = std::fs::canonicalize(scratch.join(library_file_name("crashy"))).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "8\n", "{stderr}");
    assert!(
        stderr.contains(&format!(
            "calc: error: segv (plugin crashy): plugin process crashed with SIGSEGV during the \
             call; restarted on the next call ({})\n",
            path.display()
        )),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn cli_plugins_list_shows_isolation_and_health() {
    let dir = calc_tests::examples_dir().to_str().unwrap().to_string();
    let out = calc_tests::run_calc(&["--isolate", "--plugin-dir", &dir, "plugins", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("  isolated (runner process, timeout 1000 ms)\n"),
        "{text}"
    );
    let out = calc_tests::run_calc(&[
        "--isolate",
        "--plugin-dir",
        &dir,
        "plugins",
        "list",
        "--no-cache",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plugins = v["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 8);
    for p in plugins {
        assert_eq!(p["isolated"], true, "{p}");
        assert_eq!(p["timeout_ms"], 1000, "{p}");
        assert_eq!(p["health"]["calls"], 0, "{p}");
        assert_eq!(p["health"]["disabled"], serde_json::Value::Null, "{p}");
    }
    // Without --isolate: in process, and no extra line.
    let out = calc_tests::run_calc(&["--plugin-dir", &dir, "plugins", "list"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("isolated"));
}

#[test]
fn repl_shows_health_and_re_enables_after_the_breaker() {
    use std::io::Write;
    let scratch = calc_tests::scratch_dir(&format!("isolation-repl-{}", std::process::id()));
    std::fs::copy(
        crashy_file("crashy"),
        scratch.join(library_file_name("crashy")),
    )
    .unwrap();
    let config = scratch.join("calc.toml");
    std::fs::write(&config, "[isolation]\nbreaker_threshold = 2\n").unwrap();
    let mut child = std::process::Command::new(calc_tests::calc_binary())
        .arg("--isolate")
        .arg("--config")
        .arg(&config)
        .arg("--plugin-dir")
        .arg(&scratch)
        .arg("repl")
        .env_remove("CALC_PLUGIN_PATH")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"segv(1)\nexit(1)\ntwice(2)\n:health\n:enable crashy\ntwice(3)\n:health\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("twice (plugin crashy): disabled by the circuit breaker after 2 crashes"),
        "{stderr}"
    );
    assert!(
        stdout.contains("crashy (isolated): 3 calls, 3 failed, 2 crashes, 0 timeouts, 1 restart"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  disabled by the circuit breaker after 2 crashes or timeouts in a row"),
        "{stdout}"
    );
    // The library's message names no command; the REPL adds its own.
    assert!(
        stderr.contains("calc: hint: `:enable crashy` enables it again"),
        "{stderr}"
    );
    assert!(!stderr.contains("PluginManager"), "{stderr}");
    assert!(stdout.contains("crashy 1.0.0 enabled\n6\n"), "{stdout}");
    assert!(
        stdout.contains("crashy (isolated): 4 calls, 3 failed, 2 crashes, 0 timeouts, 2 restarts"),
        "{stdout}"
    );
}

#[test]
fn the_c_api_isolates_through_its_config_file() {
    use calc_host::capi::{
        calc_host_eval, calc_host_free, calc_host_load_config, calc_host_load_dir, calc_host_new,
    };
    use calc_sdk::abi::CALC_STATUS_OK;
    use std::ffi::CString;
    let scratch = calc_tests::scratch_dir(&format!("isolation-capi-{}", std::process::id()));
    std::fs::copy(
        crashy_file("crashy"),
        scratch.join(library_file_name("crashy")),
    )
    .unwrap();
    let config = scratch.join("calc.toml");
    std::fs::write(
        &config,
        format!(
            "[isolation]\nall = true\nrunner = \"{}\"\n",
            runner_binary().display()
        ),
    )
    .unwrap();
    let c = |s: &str| CString::new(s).unwrap();
    let (config, dir) = (c(config.to_str().unwrap()), c(scratch.to_str().unwrap()));
    let mut host = std::ptr::null_mut();
    let mut result = 0.0;
    // SAFETY: each call gets the live host created here and NUL-terminated strings that
    // outlive it; `result` is writable; the host is freed once, last.
    unsafe {
        assert_eq!(calc_host_new(&mut host), CALC_STATUS_OK);
        assert_eq!(calc_host_load_config(host, config.as_ptr()), CALC_STATUS_OK);
        assert_eq!(
            calc_host_load_dir(host, dir.as_ptr(), std::ptr::null_mut()),
            CALC_STATUS_OK
        );
        // In process this would kill the test; isolated it is an error status.
        assert_ne!(
            calc_host_eval(host, c("segv(1)").as_ptr(), &mut result),
            CALC_STATUS_OK
        );
        assert_eq!(
            calc_host_eval(host, c("twice(2)").as_ptr(), &mut result),
            CALC_STATUS_OK
        );
        assert_eq!(result, 4.0);
        assert_eq!(
            calc_host_eval(host, c("pid()").as_ptr(), &mut result),
            CALC_STATUS_OK
        );
        assert_ne!(result as u32, std::process::id());
        calc_host_free(host);
    }
}

/// The children of process `pid` (Linux: `/proc/PID/task/*/children`).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Whether `pid` is gone or a zombie (dead, waiting for whoever adopted it to reap it).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[test]
fn runners_exit_when_the_host_is_killed_mid_call() {
    let scratch = calc_tests::scratch_dir(&format!("isolation-orphan-{}", std::process::id()));
    std::fs::copy(
        crashy_file("crashy"),
        scratch.join(library_file_name("crashy")),
    )
    .unwrap();
    let config = scratch.join("calc.toml");
    // No call limit: the runner spins until something stops it.
    std::fs::write(&config, "[isolation]\ntimeout_ms = 0\n").unwrap();
    let mut calc = std::process::Command::new(calc_tests::calc_binary())
        .arg("--isolate")
        .arg("--config")
        .arg(&config)
        .arg("--plugin-dir")
        .arg(&scratch)
        .args(["eval", "spin(1)"])
        .env_remove("CALC_PLUGIN_PATH")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let runner = loop {
        if let Some(&pid) = children_of(calc.id()).first() {
            break pid;
        }
        assert!(Instant::now() < until, "no runner started");
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(Duration::from_millis(100)); // let it get into the call
    calc.kill().unwrap(); // SIGKILL: the host cannot clean up
    calc.wait().unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while !dead(runner) {
        assert!(
            Instant::now() < until,
            "runner {runner} outlived its killed host"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills process `pid` when dropped, so that a failing test leaves no process behind holding
/// the test harness's output pipes.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !dead(self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &self.0.to_string()])
                .status();
        }
    }
}

/// Waits (up to 10 s) until `pid` is dead or a zombie.
fn wait_dead(pid: u32) -> bool {
    wait_until(Duration::from_secs(10), || dead(pid))
}

#[test]
fn exit_zero_is_reported_as_an_exit_not_a_closed_connection() {
    let m = crashy_manager(|_| {});
    let path = std::fs::canonicalize(crashy_file("crashy")).unwrap();
    let e = call(&m, "quit", &[]).unwrap_err();
    assert_eq!(
        e.message,
        format!(
            "plugin process exited with status 0 during the call; restarted on the next call ({})",
            path.display()
        )
    );
    assert_eq!(call(&m, "twice", &[2.0]).unwrap(), 4.0);
    assert_eq!(m.health("crashy").unwrap().crashes, 1);
}

#[test]
fn a_crash_in_a_plugin_thread_between_calls_is_not_blamed_on_the_next_call() {
    let m = crashy_manager(|_| {});
    let runner = pid(&m);
    let trigger = calc_tests::scratch_dir(&format!("isolation-trigger-{}", std::process::id()))
        .join("trigger");
    let made = std::process::Command::new("mkfifo")
        .arg(&trigger)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    // The runner inherits the environment of the process that starts it: the test's.
    let _ = call(&m, "count", &[]); // the runner is up before the variable matters
                                    // SAFETY (edition 2021: not unsafe): no other test of this binary reads CRASHY_TRIGGER.
    std::env::set_var("CRASHY_TRIGGER", &trigger);
    // The variable is read by `arm` in the runner, which was started before it was set:
    // restart the runner so that it sees it.
    let e = call(&m, "segv", &[1.0]).unwrap_err();
    assert!(e.message.contains("SIGSEGV during the call"), "{e}");
    let runner2 = pid(&m);
    assert_ne!(runner, runner2);
    assert_eq!(call(&m, "arm", &[]).unwrap(), 0.0);
    // The plugin's own thread crashes the runner now, between calls.
    std::fs::write(&trigger, b"x").unwrap();
    assert!(wait_dead(runner2), "the armed runner did not crash");
    // The next call is served by a restarted runner, and the crash is counted against the
    // plugin, not reported as this call's failure.
    assert_eq!(call(&m, "twice", &[21.0]).unwrap(), 42.0);
    assert_ne!(pid(&m), runner2);
    let h = m.health("crashy").unwrap();
    assert_eq!((h.crashes, h.failures), (2, 1), "{h:?}");
}

#[test]
fn a_killed_or_crashed_runner_takes_its_descendants_with_it() {
    let m = crashy_manager(|_| {});
    // A child forked by the plugin, then the runner crashes.
    let child = call(&m, "spawn", &[]).unwrap() as u32;
    let _guard = KillOnDrop(child);
    assert!(!dead(child));
    let e = call(&m, "segv", &[1.0]).unwrap_err();
    assert!(e.message.contains("SIGSEGV"), "{e}");
    assert!(
        wait_dead(child),
        "child {child} outlived its crashed runner"
    );
    // A child forked by the plugin, then the runner times out and is killed.
    let child = call(&m, "spawn", &[]).unwrap() as u32;
    let _guard = KillOnDrop(child);
    let e = call(&m, "spin", &[1.0]).unwrap_err();
    assert!(e.message.contains("timed out"), "{e}");
    assert!(wait_dead(child), "child {child} outlived its killed runner");
    // A child forked by the plugin, then the host shuts the runner down.
    let child = call(&m, "spawn", &[]).unwrap() as u32;
    let _guard = KillOnDrop(child);
    drop(m);
    assert!(
        wait_dead(child),
        "child {child} outlived its runner's shutdown"
    );
}

#[test]
fn a_pipeline_ends_when_calc_does_even_if_a_plugin_forked() {
    let scratch = calc_tests::scratch_dir(&format!("isolation-pipe-{}", std::process::id()));
    std::fs::copy(
        crashy_file("crashy"),
        scratch.join(library_file_name("crashy")),
    )
    .unwrap();
    let calc = std::process::Command::new(calc_tests::calc_binary())
        .args(["--isolate", "--plugin-dir"])
        .arg(&scratch)
        .args(["eval", "spawn()"])
        .env_remove("CALC_PLUGIN_PATH")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Reading stdout to its end only finishes when every holder of the pipe is gone: calc,
    // its runner and the runner's forked child.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(calc.wait_with_output());
    });
    let out = finished
        .recv_timeout(Duration::from_secs(30))
        .expect("the pipe stayed open after calc exited: the plugin's child outlived it")
        .unwrap();
    assert!(out.status.success());
    let child: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(wait_dead(child));
}

#[test]
fn a_runner_that_spends_its_cpu_limit_is_killed_and_reported_as_such() {
    let m = crashy_manager(|s| {
        // A per-call limit far above the CPU limit, so that a missing CPU limit fails the test
        // (as a timeout) instead of hanging it.
        s.isolation.timeout = Some(Duration::from_secs(8));
        s.isolation.cpu_limit = Some(Duration::from_secs(1));
    });
    let path = std::fs::canonicalize(crashy_file("crashy")).unwrap();
    let started = Instant::now();
    let e = call(&m, "spin", &[1.0]).unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        e.message,
        format!(
            "plugin process exceeded its CPU time limit (SIGXCPU) during the call; restarted on \
             the next call ({})",
            path.display()
        )
    );
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    // The breaker counts it; the next call gets a new runner with a fresh allowance.
    assert_eq!(call(&m, "twice", &[4.0]).unwrap(), 8.0);
    let h = m.health("crashy").unwrap();
    assert_eq!((h.crashes, h.timeouts), (1, 0), "{h:?}");
}

#[test]
fn cpu_limits_are_read_from_the_config_per_plugin() {
    let s = Settings::parse(
        "[isolation]\ncpu_limit_s = 30\n[plugins.crashy]\ncpu_limit_s = 2\n",
        Path::new("calc.toml"),
    )
    .unwrap();
    assert_eq!(
        s.isolation.cpu_limit("crashy"),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        s.isolation.cpu_limit("other"),
        Some(Duration::from_secs(30))
    );
    let none = Settings::parse("[isolation]\ncpu_limit_s = 0\n", Path::new("calc.toml")).unwrap();
    assert_eq!(none.isolation.cpu_limit("crashy"), None);
}

/// The `calc-runner-*` cgroups that exist now.
fn runner_cgroups() -> Vec<std::path::PathBuf> {
    calc_host::isolation::memory_limit::cgroup_dirs()
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("calc-runner-"))
        })
        .collect()
}

#[test]
fn a_runner_over_its_memory_limit_is_killed_and_reported_as_such() {
    use calc_host::isolation::memory_limit::{mechanism, Mechanism};
    let path = std::fs::canonicalize(crashy_file("crashy")).unwrap();
    let m = crashy_manager(|s| {
        s.isolation.memory_limit_mb = Some(256);
        // Touching 400 MB can take longer than the other tests' 300 ms call limit on a loaded
        // machine (seen in CI: the timeout fired first); this test is about the memory limit.
        s.isolation.timeout = Some(Duration::from_secs(10));
    });
    let runner = pid(&m);
    // Within the limit: fine.
    assert_eq!(call(&m, "hog", &[64.0]).unwrap(), 64.0);
    let cgroups = matches!(mechanism(), Mechanism::CgroupV1 | Mechanism::CgroupV2);
    if cgroups {
        assert!(
            runner_cgroups()
                .iter()
                .any(|g| g.ends_with(format!("calc-runner-{runner}"))),
            "the runner has no cgroup of its own"
        );
    }
    // Past it: the runner is killed (cgroup) or its allocation fails (address-space limit).
    let e = call(&m, "hog", &[400.0]).unwrap_err();
    match cgroups {
        true => {
            assert_eq!(
                e.message,
                format!(
                    "memory limit exceeded (256 MB): plugin process killed during the call; \
                     restarted on the next call ({})",
                    path.display()
                )
            );
            let h = m.health("crashy").unwrap();
            assert_eq!((h.crashes, h.timeouts), (1, 0), "{h:?}");
        }
        false => assert_eq!(e.message, "hog: out of memory"),
    }
    // The host survives, and the plugin answers again (in a new runner with a new allowance,
    // where it was killed).
    assert_eq!(call(&m, "twice", &[4.0]).unwrap(), 8.0);
    assert_eq!(call(&m, "hog", &[64.0]).unwrap() % 64.0, 0.0);
    let last = pid(&m);
    drop(m);
    // No cgroup is left behind by either runner.
    let left: Vec<_> = runner_cgroups()
        .into_iter()
        .filter(|g| {
            g.ends_with(format!("calc-runner-{runner}"))
                || g.ends_with(format!("calc-runner-{last}"))
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn an_address_space_limit_makes_allocations_fail_where_cgroups_are_not_used() {
    // The CLI with CALC_MEMORY_LIMIT=rlimit (the fallback where no memory cgroup may be made).
    let dir = crashy_dir();
    let config =
        calc_tests::scratch_dir(&format!("memlimit-{}", std::process::id())).join("calc.toml");
    // Calls get 10 s: touching 400 MB can outrun the default 1000 ms limit on a loaded
    // machine (seen in a full test run), and this test is about the memory limit.
    std::fs::write(
        &config,
        "[isolation]\nmemory_limit_mb = 256\ntimeout_ms = 10000\n",
    )
    .unwrap();
    // `hog(400)` in an isolated runner, with `CALC_MEMORY_LIMIT` set to `forced` if given.
    let hog = |forced: Option<&str>| {
        let mut calc = std::process::Command::new(calc_tests::calc_binary());
        calc.args(["--isolate", "--config", config.to_str().unwrap()])
            .args(["--plugin-dir", dir.to_str().unwrap(), "eval", "hog(400)"])
            .env(
                "XDG_CACHE_HOME",
                calc_tests::target_dir().join("calc-tests/xdg-cache"),
            )
            .env_remove("CALC_PLUGIN_PATH");
        if let Some(mechanism) = forced {
            calc.env("CALC_MEMORY_LIMIT", mechanism);
        }
        calc.output().unwrap()
    };
    let out = hog(Some("rlimit"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("hog: out of memory"), "{err}");
    // Without the limit the same call succeeds: the limit, not the machine, refused it.
    std::fs::write(&config, "[isolation]\ntimeout_ms = 10000\n").unwrap();
    let out = hog(None);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "400\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn memory_limits_are_read_from_the_config_per_plugin() {
    let s = Settings::parse(
        "[isolation]\nmemory_limit_mb = 512\n[plugins.crashy]\nmemory_limit_mb = 64\n",
        Path::new("calc.toml"),
    )
    .unwrap();
    assert_eq!(s.isolation.memory_limit_mb("crashy"), Some(64));
    assert_eq!(s.isolation.memory_limit_mb("other"), Some(512));
    let none =
        Settings::parse("[isolation]\nmemory_limit_mb = 0\n", Path::new("calc.toml")).unwrap();
    assert_eq!(none.isolation.memory_limit_mb("crashy"), None);
}

#[test]
fn plugins_list_shows_the_limits_and_the_memory_mechanism_in_force() {
    // Only `crashy`: the listing starts (in process, unless isolated) the plugins it has no
    // recorded start of, and the others of the crashy directory crash or hang in `init`.
    let scratch = calc_tests::scratch_dir(&format!("limits-list-{}", std::process::id()));
    let dir = scratch.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(crashy_file("crashy"), dir.join(library_file_name("crashy"))).unwrap();
    let config = scratch.join("calc.toml");
    std::fs::write(
        &config,
        "[plugins.crashy]\nisolate = true\nmemory_limit_mb = 64\ncpu_limit_s = 5\n",
    )
    .unwrap();
    let out = calc_tests::run_calc(&[
        "--config",
        config.to_str().unwrap(),
        "--plugin-dir",
        dir.to_str().unwrap(),
        "plugins",
        "list",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mechanism = calc_host::isolation::memory_limit::mechanism();
    assert!(
        text.contains(&format!("CPU limit 5 s, memory limit 64 MB ({mechanism})")),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
