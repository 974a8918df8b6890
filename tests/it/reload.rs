//! Hot reload with real unloading (see `docs/RELOAD.md`): swaps under concurrent calls, state
//! hand-over, failed reloads, deleted plugins, Rust plugins that really unmap, and the memory
//! bounds of many reload cycles.
//!
//! The tests of this file run one at a time (they share the process's memory map and RSS, which
//! some of them measure).

#[path = "support/reload_measure.rs"]
mod reload_measure;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use calc_host::events::HostEvent;
use calc_host::{EvalError, PluginManager};
use calc_tests::{
    build_c_plugin, build_counter, examples_dir, library_file_name, rust_counter_builds,
    scratch_dir, workspace_root,
};
use xtask::build::copy_fresh;

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The two versions of the C counter (with `defines` added), built into `dir`.
fn c_counter(dir: &Path, defines: &[&str]) -> (PathBuf, PathBuf) {
    let file = library_file_name("counter");
    let v1 = dir.join("build-v1").join(&file);
    let v2 = dir.join("build-v2").join(&file);
    for (out, version) in [(&v1, "-DCOUNTER_VERSION=1"), (&v2, "-DCOUNTER_VERSION=2")] {
        let mut all = vec![version];
        all.extend_from_slice(defines);
        build_counter(out, &all).unwrap_or_else(|e| panic!("{e}"));
    }
    (v1, v2)
}

/// A manager in hot-reload mode with private copies in `dir/copies`, reporting its events.
fn hot_manager(dir: &Path) -> (PluginManager, Receiver<HostEvent>, PathBuf) {
    let copies = dir.join("copies");
    let (tx, rx) = mpsc::channel();
    let mut m = PluginManager::new();
    m.enable_hot_reload(copies.clone());
    m.report_events_to(tx);
    (m, rx, copies)
}

/// Installs `build` as `dir/plugins/<its file name>` (copy to a temporary name, then rename) and
/// returns that path.
fn install(build: &Path, dir: &Path) -> PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let to = plugins.join(build.file_name().unwrap());
    copy_fresh(build, &to).unwrap_or_else(|e| panic!("{e}"));
    to
}

/// The `unmapped` field of each `Unloaded` event of plugin `plugin`, with its version.
fn unloads(events: &[HostEvent], plugin: &str) -> Vec<(String, Option<bool>)> {
    events
        .iter()
        .filter_map(|e| match e {
            HostEvent::Unloaded {
                name,
                version,
                unmapped,
            } if name == plugin => Some((version.clone(), *unmapped)),
            _ => None,
        })
        .collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).map_or_else(
        |_| Vec::new(),
        |d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        },
    )
}

#[derive(Default, Debug)]
struct Tally {
    ones: u64,
    twos: u64,
    tens: u64,
    twenties: u64,
    failures: Vec<String>,
}

#[test]
fn two_hundred_swaps_under_four_calling_threads_fail_no_call_and_unload_every_old_version() {
    let _serial = serial();
    let dir = scratch_dir(&format!("reload-swaps-{}", std::process::id()));
    let (v1, v2) = c_counter(&dir, &[]);
    let p = install(&v1, &dir);
    let mul = install(&examples_dir().join(library_file_name("mul")), &dir);
    let (mut m, events, copies) = hot_manager(&dir);
    m.load_file(&p).unwrap_or_else(|e| panic!("{e}"));
    m.load_file(&mul).unwrap_or_else(|e| panic!("{e}"));

    let op = m.live_operation("version").expect("version() is offered");
    let expr = calc_host::expr::compile(&m, "version() * 10").unwrap_or_else(|e| panic!("{e}"));
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (op, expr) = (op.clone(), expr.clone());
            let (stop, calls) = (Arc::clone(&stop), Arc::clone(&calls));
            std::thread::spawn(move || {
                let mut t = Tally::default();
                while !stop.load(Ordering::Relaxed) {
                    match op.call(&[]) {
                        Ok(1.0) => t.ones += 1,
                        Ok(2.0) => t.twos += 1,
                        Ok(v) => t.failures.push(format!("version() = {v}")),
                        Err(e) => t.failures.push(e.to_string()),
                    }
                    match expr.eval() {
                        Ok(10.0) => t.tens += 1,
                        Ok(20.0) => t.twenties += 1,
                        Ok(v) => t.failures.push(format!("version() * 10 = {v}")),
                        Err(e) => t.failures.push(e.to_string()),
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
                t
            })
        })
        .collect();

    for i in 0..200 {
        copy_fresh(if i % 2 == 0 { &v2 } else { &v1 }, &p).unwrap_or_else(|e| panic!("{e}"));
        let before = calls.load(Ordering::Relaxed);
        match m.reload_file(&p) {
            Ok(HostEvent::Reloaded { .. }) => {}
            Ok(other) => panic!("swap {i}: expected a reload, got {other}"),
            Err(e) => panic!("swap {i}: {e}"),
        }
        // Let the callers make some calls on each version before the next swap.
        let deadline = Instant::now() + Duration::from_secs(10);
        while calls.load(Ordering::Relaxed) < before + 8 {
            assert!(Instant::now() < deadline, "the calling threads stalled");
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for w in workers {
        let t = w.join().expect("a calling thread panicked");
        total.ones += t.ones;
        total.twos += t.twos;
        total.tens += t.tens;
        total.twenties += t.twenties;
        total.failures.extend(t.failures);
    }
    assert!(
        total.failures.is_empty(),
        "{} failed calls, first: {:?}",
        total.failures.len(),
        total.failures.first()
    );
    assert!(
        total.ones > 0 && total.twos > 0 && total.tens > 0 && total.twenties > 0,
        "both versions must have answered both ways: {total:?}"
    );
    drop((op, expr));

    // Every replaced version is gone once its last call returned: 200 unloads, all unmapped.
    let seen: Vec<HostEvent> = events.try_iter().collect();
    let old = unloads(&seen, "counter");
    assert_eq!(old.len(), 200, "unloads of old versions: {old:?}");
    assert!(
        old.iter().all(|(_, unmapped)| *unmapped == Some(true)),
        "an old version stayed mapped: {old:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|e| matches!(e, HostEvent::Reloaded { .. }))
            .count(),
        200
    );
    // The manager counts what it sent itself: everything but the libraries' own unloads
    // (the 200 reloads; `load_file` reports nothing).
    assert_eq!(
        m.events_sent(),
        seen.iter()
            .filter(|e| !matches!(e, HostEvent::Unloaded { .. }))
            .count() as u64
    );
    assert_eq!(m.events_sent(), 200);
    assert_eq!(files_in(&copies).len(), 2, "only the serving copies remain");

    drop(m);
    let last: Vec<HostEvent> = events.try_iter().collect();
    assert_eq!(unloads(&last, "counter"), [("1.0.0".into(), Some(true))]);
    assert_eq!(unloads(&last, "mul"), [("1.0.0".into(), Some(true))]);
    assert!(!copies.exists(), "left behind: {:?}", files_in(&copies));
}

/// Three `next()` on v1, a reload to v2, then the next `next()` and the `Reloaded` event.
fn next_after_reload(dir: &Path, v1: &Path, v2: &Path, plugin: &str) -> (f64, HostEvent) {
    let p = install(v1, dir);
    let (mut m, events, _) = hot_manager(dir);
    m.load_file(&p).unwrap_or_else(|e| panic!("{e}"));
    let next = m.live_operation("next").expect("next() is offered");
    for want in [1.0, 2.0, 3.0] {
        assert_eq!(next.call(&[]), Ok(want));
    }
    copy_fresh(v2, &p).unwrap_or_else(|e| panic!("{e}"));
    let event = m.reload_file(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.eval("version()"), Ok(2.0), "v2 serves");
    let after = next.call(&[]).unwrap_or_else(|e| panic!("{e}"));
    let seen: Vec<HostEvent> = events.try_iter().collect();
    assert_eq!(unloads(&seen, plugin), [("1.0.0".into(), Some(true))]);
    (after, event)
}

fn reloaded(name: &str, state_bytes: Option<usize>) -> impl Fn(&HostEvent) -> bool + '_ {
    move |e| {
        matches!(e, HostEvent::Reloaded { name: n, old_version, new_version, state_bytes: s, .. }
            if n == name && old_version == "1.0.0" && new_version == "2.0.0" && *s == state_bytes)
    }
}

#[test]
fn the_counter_survives_a_reload_through_save_state_in_c_and_rust() {
    let _serial = serial();
    let dir = scratch_dir(&format!("reload-state-c-{}", std::process::id()));
    let (v1, v2) = c_counter(&dir, &[]);
    let (after, event) = next_after_reload(&dir, &v1, &v2, "counter");
    assert_eq!(after, 4.0, "the count continues");
    assert!(reloaded("counter", Some(12))(&event), "{event:?}");

    let dir = scratch_dir(&format!("reload-state-rust-{}", std::process::id()));
    let (v1, v2) = rust_counter_builds();
    let (after, event) = next_after_reload(&dir, v1, v2, "rust_counter");
    assert_eq!(after, 4.0, "the count continues");
    assert!(reloaded("rust_counter", Some(12))(&event), "{event:?}");
}

#[test]
fn a_plugin_without_state_hooks_reloads_and_starts_afresh() {
    let _serial = serial();
    let dir = scratch_dir(&format!("reload-no-state-{}", std::process::id()));
    let (v1, v2) = c_counter(&dir, &["-DNO_STATE"]);
    let (after, event) = next_after_reload(&dir, &v1, &v2, "counter");
    assert_eq!(after, 1.0, "the count restarts");
    assert!(reloaded("counter", None)(&event), "{event:?}");
}

#[test]
fn the_state_goes_back_and_forth_across_several_reloads() {
    let _serial = serial();
    let dir = scratch_dir(&format!("reload-state-many-{}", std::process::id()));
    let (v1, v2) = c_counter(&dir, &[]);
    let p = install(&v1, &dir);
    let (mut m, _events, _) = hot_manager(&dir);
    m.load_file(&p).unwrap_or_else(|e| panic!("{e}"));
    let next = m.live_operation("next").unwrap();
    let version = m.live_operation("version").unwrap();
    for round in 0..6u32 {
        assert_eq!(next.call(&[]), Ok(f64::from(round + 1)));
        copy_fresh(if round % 2 == 0 { &v2 } else { &v1 }, &p).unwrap();
        m.reload_file(&p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            version.call(&[]),
            Ok(if round % 2 == 0 { 2.0 } else { 1.0 })
        );
    }
}

#[test]
fn a_failed_reload_keeps_the_old_version_serving() {
    let _serial = serial();
    let dir = scratch_dir(&format!("reload-failed-{}", std::process::id()));
    let (v1, v2) = c_counter(&dir, &[]);
    let broken = dir.join("broken").join(library_file_name("counter"));
    build_c_plugin(
        &workspace_root().join("tests/broken/broken.c"),
        &broken,
        &["-DBROKEN_ABI_MAJOR_NEW"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let text = dir.join("text").join(library_file_name("counter"));
    std::fs::create_dir_all(text.parent().unwrap()).unwrap();
    std::fs::write(&text, "not a library\n").unwrap();
    // Hostile builds: an operation table in unmapped memory, a `plugin_entry` that is data.
    let hostile = |case: &str| {
        let out = dir.join(case).join(library_file_name("counter"));
        build_c_plugin(
            &workspace_root().join("tests/broken/hostile.c"),
            &out,
            &[&format!("-DHOSTILE_{}", case.to_uppercase())],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        out
    };
    let (ops_wild, entry_is_data) = (hostile("ops_wild"), hostile("entry_is_data"));

    let p = install(&v1, &dir);
    let canonical = std::fs::canonicalize(&p).unwrap();
    let (mut m, events, copies) = hot_manager(&dir);
    m.load_file(&p).unwrap_or_else(|e| panic!("{e}"));
    let next = m.live_operation("next").unwrap();
    assert_eq!(next.call(&[]), Ok(1.0));
    let _ = events.try_iter().count();

    let bad_builds = [
        (&broken, "ABI"),
        (&text, ""),
        (&ops_wild, "operations[0] at 0x2000 is not readable memory"),
        (&entry_is_data, "is not in an executable segment"),
    ];
    for (bad, why) in bad_builds {
        copy_fresh(bad, &p).unwrap();
        let error = m
            .reload_file(&p)
            .expect_err("a broken file must not load")
            .to_string();
        assert!(
            error.contains(&p.display().to_string())
                || error.contains(&canonical.display().to_string()),
            "the error names the file: {error}"
        );
        assert!(error.contains(why), "{error}");
        assert_eq!(m.eval("version()"), Ok(1.0), "v1 still serves");
        let seen: Vec<HostEvent> = events.try_iter().collect();
        assert!(
            matches!(seen.as_slice(), [HostEvent::Failed { path, error: e }]
                if *path == canonical && *e == error),
            "{seen:?}"
        );
        assert_eq!(files_in(&copies).len(), 1, "the failed copy is deleted");
    }
    assert_eq!(next.call(&[]), Ok(2.0), "the old instance kept its state");
    assert_eq!(m.failures().len(), bad_builds.len());

    // Fixing the file fixes the plugin, with the state of the version that kept serving.
    copy_fresh(&v2, &p).unwrap();
    m.reload_file(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.eval("version()"), Ok(2.0));
    assert_eq!(next.call(&[]), Ok(3.0));
}

#[test]
fn a_deleted_plugin_stops_being_offered_and_leaves_nothing_behind() {
    let _serial = serial();
    let dir = scratch_dir(&format!("reload-removed-{}", std::process::id()));
    let (v1, _) = c_counter(&dir, &[]);
    let p = install(&v1, &dir);
    let (mut m, events, copies) = hot_manager(&dir);
    m.load_file(&p).unwrap_or_else(|e| panic!("{e}"));
    let op = m.live_operation("version").unwrap();
    let expr = calc_host::expr::compile(&m, "version()").unwrap();
    assert_eq!(op.call(&[]), Ok(1.0));
    assert_eq!(expr.eval(), Ok(1.0));
    let _ = events.try_iter().count();

    std::fs::remove_file(&p).unwrap();
    let event = m.remove_file(&p).expect("the plugin was loaded from p");
    assert!(
        matches!(&event, HostEvent::Removed { name, .. } if name == "counter"),
        "{event:?}"
    );
    let seen: Vec<HostEvent> = events.try_iter().collect();
    assert!(seen.contains(&event), "{seen:?}");
    assert_eq!(unloads(&seen, "counter"), [("1.0.0".into(), Some(true))]);

    let gone = op
        .call(&[])
        .expect_err("nothing provides version() any more");
    assert!(
        gone.message.contains("no plugin provides it any more"),
        "{gone}"
    );
    let gone = expr
        .eval()
        .expect_err("nothing provides version() any more");
    assert!(
        gone.to_string().contains("no plugin provides it any more"),
        "{gone}"
    );
    match m.eval("version()") {
        Err(EvalError::Parse { message, .. }) => {
            assert!(message.contains("unknown function 'version'"), "{message}")
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    assert!(m.live_operation("version").is_none());
    assert!(files_in(&copies).is_empty(), "{:?}", files_in(&copies));
    drop((op, expr, m));
    assert!(!copies.exists(), "{:?}", files_in(&copies));
}

#[test]
fn rust_plugins_really_unmap_even_while_the_calling_threads_live_on() {
    let _serial = serial();
    let dir = scratch_dir(&format!("reload-rust-unmap-{}", std::process::id()));
    let (v1, v2) = rust_counter_builds();
    let p = install(v1, &dir);
    let mul = install(&examples_dir().join(library_file_name("mul")), &dir);
    let (mut m, events, copies) = hot_manager(&dir);
    m.load_file(&p).unwrap_or_else(|e| panic!("{e}"));
    m.load_file(&mul).unwrap_or_else(|e| panic!("{e}"));

    // Calls from this thread and from one that is still alive when the libraries are closed: a
    // thread-local destructor registered by the plugin during such a call would pin the library
    // until that thread exits (STILL MAPPED), and a pthread-key destructor (what
    // `std::thread::current()` registers) would crash that thread when it exits after the unload.
    assert_eq!(m.eval("next() * 2"), Ok(2.0));
    let expr = calc_host::expr::compile(&m, "next() * version()").unwrap();
    let (called, release) = (mpsc::channel(), mpsc::channel::<()>());
    let (called_tx, release_rx) = (called.0, release.1);
    let caller = std::thread::spawn(move || {
        let result = expr.eval();
        drop(expr);
        called_tx.send(result).unwrap();
        release_rx.recv().ok();
    });
    assert_eq!(called.1.recv().unwrap(), Ok(2.0));

    copy_fresh(v2, &p).unwrap();
    m.reload_file(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.eval("next() * version()"), Ok(6.0));
    assert!(m.unload("mul"));
    let seen: Vec<HostEvent> = events.try_iter().collect();
    assert_eq!(
        unloads(&seen, "rust_counter"),
        [("1.0.0".into(), Some(true))]
    );
    assert_eq!(unloads(&seen, "mul"), [("1.0.0".into(), Some(true))]);

    drop(m);
    let seen: Vec<HostEvent> = events.try_iter().collect();
    assert_eq!(
        unloads(&seen, "rust_counter"),
        [("2.0.0".into(), Some(true))]
    );
    assert_eq!(reload_measure::mappings_under(&copies), 0);
    release.0.send(()).unwrap();
    caller.join().unwrap();
}

#[test]
fn every_example_plugin_and_a_panicking_rust_plugin_unmap() {
    let _serial = serial();
    let dir = scratch_dir(&format!("reload-examples-{}", std::process::id()));
    let (mut m, events, copies) = hot_manager(&dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    let artifacts = calc_tests::cargo_build(&["calc-fixture-rust-panic"]).unwrap();
    files.push(artifacts.join(library_file_name("rust_panic")));
    for file in &files {
        let p = install(file, &dir);
        m.load_file(&p).unwrap_or_else(|e| panic!("{e}"));
        m.reload_file(&p).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(m.eval("sin(0) + 2 * 3 - 1 / 2 ^ 2 + fine(1)").is_ok());
    let boom = m.eval("boom(1)").expect_err("boom panics");
    assert!(boom.to_string().contains("deliberate panic"), "{boom}");
    drop(m);
    let seen: Vec<HostEvent> = events.try_iter().collect();
    let unloaded: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            HostEvent::Unloaded { name, unmapped, .. } => Some((name.as_str(), *unmapped)),
            _ => None,
        })
        .collect();
    assert_eq!(unloaded.len(), 2 * files.len(), "{unloaded:?}");
    assert!(
        unloaded.iter().all(|(_, u)| *u == Some(true)),
        "{unloaded:?}"
    );
    assert_eq!(reload_measure::mappings_under(&copies), 0);
}

#[test]
fn many_reload_cycles_stay_within_the_memory_bound_and_leave_no_mapping() {
    let _serial = serial();
    let dir = scratch_dir(&format!("reload-cycles-{}", std::process::id()));
    let (v1, v2) = c_counter(&dir, &[]);
    let (rust_v1, rust_v2) = rust_counter_builds();
    let cpp = |version: &str| {
        let out = dir
            .join(format!("cpp-v{version}"))
            .join(library_file_name("cpp_counter"));
        calc_tests::build_cpp_counter(&out, &[&format!("-DCOUNTER_VERSION={version}")])
            .unwrap_or_else(|e| panic!("{e}"));
        out
    };
    let subjects = [
        reload_measure::Subject {
            label: "C counter".into(),
            plugin: "counter".into(),
            v1,
            v2,
        },
        reload_measure::Subject {
            label: "C++ counter".into(),
            plugin: "cpp_counter".into(),
            v1: cpp("1"),
            v2: cpp("2"),
        },
        reload_measure::Subject {
            label: "Rust counter (debug)".into(),
            plugin: "rust_counter".into(),
            v1: rust_v1.clone(),
            v2: rust_v2.clone(),
        },
    ];
    let reports: Vec<_> = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| reload_measure::measure(s, &dir.join(format!("run-{i}")), 50, 20))
        .collect();
    println!("{}", reload_measure::table(&reports));
    for r in &reports {
        assert!(
            r.rss_growth_kib() < 1024,
            "{}: RSS grew by {} KiB over {} reloads",
            r.label,
            r.rss_growth_kib(),
            r.cycles
        );
        assert_eq!(r.unloads, 71, "{}: 70 old versions and the last", r.label);
        assert_eq!(r.not_unmapped, 0, "{}: versions left mapped", r.label);
        assert_eq!(r.leftover_mappings, 0, "{}: mappings left", r.label);
        assert_eq!(r.leftover_files, 0, "{}: private copies left", r.label);
    }
}

#[test]
fn a_different_plugin_that_fails_to_start_does_not_replace_the_old_one() {
    let _serial = serial();
    let dir = scratch_dir(&format!("reload-other-{}", std::process::id()));
    let (v1, _) = c_counter(&dir, &[]);
    // Another plugin (broken_init_fails), in a file with the counter's name, whose init fails.
    let other = dir.join("other").join(library_file_name("counter"));
    build_c_plugin(
        &workspace_root().join("tests/broken/broken.c"),
        &other,
        &["-DBROKEN_INIT_FAILS"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let p = install(&v1, &dir);
    let (mut m, _events, _copies) = hot_manager(&dir);
    m.load_file(&p).unwrap_or_else(|e| panic!("{e}"));
    let version = m.live_operation("version").unwrap();
    copy_fresh(&other, &p).unwrap();
    let error = m.reload_file(&p).expect_err("its init fails").to_string();
    assert!(error.contains("init refused: missing licence"), "{error}");
    assert_eq!(version.call(&[]), Ok(1.0), "the counter keeps serving");
    assert_eq!(
        m.plugins().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["counter"]
    );
}

#[test]
fn a_pinned_live_op_keeps_its_version_until_dropped_then_the_old_version_unloads() {
    let _serial = serial();
    let dir = scratch_dir(&format!("reload-pinned-{}", std::process::id()));
    let (v1, v2) = c_counter(&dir, &[]);
    let p = install(&v1, &dir);
    let (mut m, events, copies) = hot_manager(&dir);
    m.load_file(&p).unwrap_or_else(|e| panic!("{e}"));
    let version = m.live_operation("version").expect("version() is offered");

    let pinned = version.pin();
    assert_eq!(pinned.call(&[]), Ok(1.0));
    copy_fresh(&v2, &p).unwrap();
    m.reload_file(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pinned.call(&[]), Ok(1.0), "the pin keeps serving v1");
    assert_eq!(
        version.call(&[]),
        Ok(2.0),
        "an unpinned call sees v2 at once"
    );
    let seen: Vec<HostEvent> = events.try_iter().collect();
    assert_eq!(
        unloads(&seen, "counter"),
        [],
        "v1 stays loaded while pinned"
    );

    drop(pinned);
    // The reload handed v1 to the background reclaimer: it unloads once the pin is gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut unloaded = Vec::new();
    while unloaded.is_empty() && std::time::Instant::now() < deadline {
        if let Ok(e) = events.recv_timeout(std::time::Duration::from_millis(50)) {
            unloaded = unloads(&[e], "counter");
        }
    }
    assert_eq!(unloaded, [("1.0.0".into(), Some(true))]);
    assert_eq!(version.pin().call(&[]), Ok(2.0));
    drop(version);
    drop(m);
    assert_eq!(reload_measure::mappings_under(&copies), 0);
}

#[test]
fn every_unload_says_whether_the_library_is_really_gone() {
    let _serial = serial();
    let dir = scratch_dir(&format!("reload-gone-{}", std::process::id()));
    let (plain, pinned) = calc_tests::build_plain_and_pinned(&dir);
    // Loaded in place (no hot reload, so no private copies) and in hot-reload mode.
    for hot in [false, true] {
        let (tx, rx) = mpsc::channel();
        let mut m = PluginManager::new();
        if hot {
            m.enable_hot_reload(dir.join("copies"));
        }
        m.report_events_to(tx);
        m.load_file(&plain).unwrap_or_else(|e| panic!("{e}"));
        m.load_file(&pinned).unwrap_or_else(|e| panic!("{e}"));
        assert!(m.unload("plain") && m.unload("pinned"));
        let events: Vec<HostEvent> = rx.try_iter().collect();
        assert_eq!(
            unloads(&events, "plain"),
            [("1.0.0".to_string(), Some(true))],
            "hot reload {hot}"
        );
        assert_eq!(
            unloads(&events, "pinned"),
            [("1.0.0".to_string(), Some(false))],
            "hot reload {hot}"
        );
    }
}
