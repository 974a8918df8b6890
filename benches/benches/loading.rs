//! Loading cost: calc's loader and manager against raw `dlopen` + `dlsym("plugin_entry")` + a
//! call of the entry point on the same files, measured in the same run (interleaved rounds,
//! medians); and the memory each loaded plugin costs against the library's own size.
//!
//! Every iteration really loads: each path unloads its library (`dlclose`) before the next
//! iteration, and the benchmark checks beforehand that each one leaves the file unmapped (the
//! dynamic loader would otherwise hand back the library still open).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use calc_benches::{
    example_plugins, many_plugins, mappings_of, median, plugin, quick, release_runner,
};
use calc_host::PluginManager;
use calc_sdk::abi::{calc_plugin_entry_fn, calc_plugin_t};

/// Opens `path` as calc's loader does (`RTLD_NOW | RTLD_LOCAL`), looks up `plugin_entry` and
/// calls it; nothing else.
fn raw_open(path: &Path) -> libloading::Library {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: the benchmark's own plugins; loading runs their (empty) initialisers.
    let lib: libloading::Library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
        .expect("dlopen")
        .into();
    {
        // SAFETY: `plugin_entry` has this type by the ABI.
        let entry = unsafe { lib.get::<calc_plugin_entry_fn>(b"plugin_entry\0") }.expect("dlsym");
        let entry = (*entry).expect("plugin_entry is not NULL");
        // SAFETY: calling a valid plugin's entry point, the one call allowed before validation.
        let desc: *const calc_plugin_t = unsafe { entry() };
        black_box(desc);
    }
    lib
}

/// The library files of `dir`, in file-name order (as `PluginManager::load_dir` lists them).
fn library_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| calc_host::manager::is_library_file(p))
        .collect();
    files.sort();
    files
}

/// One row of a difference target: calc's figure, the reference, and what calc adds.
fn extra_row(what: &str, reference: (&str, f64), ours: f64, unit: &str, max_extra: f64) {
    let extra = ours - reference.1;
    let verdict = if extra <= max_extra { "ok" } else { "OVER" };
    println!(
        "{what:<44} {ours:>10.2} {unit:<3} vs {:<28} {:>10.2} {unit:<3} adds {extra:>+7.2} {unit}  {verdict} (target <= +{max_extra} {unit})",
        reference.0, reference.1
    );
}

/// Runs the candidates one call each in turn, `iters` times, timing every call, and returns
/// each one's median in nanoseconds. Interleaving call by call (not in blocks) spreads the noise
/// of a shared machine evenly over the candidates.
fn interleaved(iters: usize, candidates: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(iters); candidates.len()];
    for _ in 0..iters {
        for (f, s) in candidates.iter_mut().zip(&mut samples) {
            let start = Instant::now();
            f();
            s.push(start.elapsed().as_nanos() as f64);
        }
    }
    samples.into_iter().map(median).collect()
}

fn per_plugin(iters: usize) {
    let path = std::fs::canonicalize(plugin(&example_plugins(), "add")).expect("add");
    // The examples were just rebuilt into this directory. A deployed plugin directory has not
    // changed for a while, and the trust policy then remembers that it has no lock file instead
    // of looking again on every load (not within 2 s of a change: `calc_host::trust`); measure
    // that steady state.
    let dir = path.parent().expect("a directory");
    let changed = std::fs::metadata(dir)
        .and_then(|m| m.modified())
        .expect("mtime");
    let settled = changed + std::time::Duration::from_millis(2100);
    if let Ok(wait) = settled.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(wait);
    }
    let mut raw = || drop(raw_open(&path));
    let mut inspect = || {
        black_box(calc_host::loader::inspect(&path).expect("valid"));
    };
    // Vetting on, as where the runner is installed: the file is vetted once (the warm-up
    // call below), and each timed load finds the verdict on this version of the file.
    let settings = vetting_settings();
    let mut load_file = || {
        let mut m = PluginManager::with_settings(settings.clone());
        m.load_file(&path).expect("loads");
        drop(m);
    };
    let mut resolve = || {
        black_box(calc_host::loader::resolve(&path).expect("a file"));
    };
    for (name, f) in [
        ("raw", &mut raw as &mut dyn FnMut()),
        ("inspect", &mut inspect),
        ("load_file", &mut load_file),
    ] {
        f();
        assert_eq!(
            calc_host::loader::still_mapped(&path),
            Some(false),
            "{name} leaves the library mapped: iterations would not really load"
        );
    }
    let t = interleaved(
        iters,
        &mut [&mut raw, &mut inspect, &mut load_file, &mut resolve],
    );
    let us = |ns: f64| ns / 1000.0;
    println!(
        "one small C plugin (example `add`, {} bytes), load + unload, median of {iters} calls each, interleaved call by call",
        std::fs::metadata(&path).map_or(0, |m| m.len())
    );
    let reference = ("raw dlopen+dlsym+entry+dlclose", us(t[0]));
    extra_row(
        "loader::inspect (validate, no init)",
        reference,
        us(t[1]),
        "us",
        10.0,
    );
    extra_row(
        "PluginManager::load_file + drop (init, shutdown)",
        reference,
        us(t[2]),
        "us",
        10.0,
    );
    println!(
        "  of which loader::resolve (canonical path, regular file?) alone: {:.2} us",
        us(t[3])
    );
}

fn directory(rounds: usize, sizes: &[usize]) {
    let dirs: Vec<(usize, PathBuf)> = sizes.iter().map(|&n| (n, many_plugins(n))).collect();
    let mut raw: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    let mut calc: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    let mut open: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    // One untimed round first: the first pass over freshly written files pays page-cache and
    // loader warm-up that later ones do not.
    for round in 0..=rounds {
        for (i, (n, dir)) in dirs.iter().enumerate() {
            let run_raw = || {
                let start = Instant::now();
                let libs: Vec<libloading::Library> =
                    library_files(dir).iter().map(|f| raw_open(f)).collect();
                let elapsed = start.elapsed().as_secs_f64();
                assert_eq!(libs.len(), *n);
                drop(libs);
                elapsed
            };
            let run_calc = || {
                // Vetting on (the default when the runner is found): the untimed first round
                // vets every file; the timed ones load files this process has vetted.
                let mut m = PluginManager::with_settings(vetting_settings());
                let start = Instant::now();
                let loaded = m.load_dir(dir).expect("readable");
                let elapsed = start.elapsed().as_secs_f64();
                assert_eq!((loaded, m.failures().len()), (*n, 0));
                drop(m);
                elapsed
            };
            // The loader alone (validated and kept open, no manager, no init): where the
            // manager's share of the difference starts.
            let run_open = || {
                let start = Instant::now();
                let opened: Vec<calc_host::loader::OpenedPlugin> = library_files(dir)
                    .iter()
                    .map(|f| calc_host::loader::open(f).expect("valid"))
                    .collect();
                let elapsed = start.elapsed().as_secs_f64();
                assert_eq!(opened.len(), *n);
                drop(opened);
                elapsed
            };
            if round == 0 {
                run_raw();
                run_calc();
                run_open();
                continue;
            }
            // Alternate which goes first, so that neither always runs on a warmer machine.
            if round % 2 == 0 {
                raw[i].push(run_raw());
                calc[i].push(run_calc());
                open[i].push(run_open());
            } else {
                open[i].push(run_open());
                calc[i].push(run_calc());
                raw[i].push(run_raw());
            }
        }
    }
    println!("a directory of N small C plugins (distinct copies), median of {rounds} rounds");
    for (i, n) in sizes.iter().enumerate() {
        let (r, c) = (median(raw[i].clone()), median(calc[i].clone()));
        calc_benches::row(
            &format!("load_dir, N = {n} ({:.1} us/plugin)", c * 1e6 / *n as f64),
            (
                &format!("raw dlopen+entry ({:.1} us/plugin)", r * 1e6 / *n as f64),
                r * 1e3,
            ),
            c * 1e3,
            "ms",
            Some(1.2),
        );
    }
    for (i, n) in sizes.iter().enumerate() {
        let (r, o) = (median(raw[i].clone()), median(open[i].clone()));
        calc_benches::row(
            &format!(
                "  of which loader::open, N = {n} ({:.1} us/plugin)",
                o * 1e6 / *n as f64
            ),
            ("raw dlopen+entry", r * 1e3),
            o * 1e3,
            "ms",
            None,
        );
    }
}

/// Settings that find the (release) runner, so that the manager vets as it does by default
/// where the runner is installed.
fn vetting_settings() -> calc_host::config::Settings {
    let mut settings = calc_host::config::Settings::default();
    settings.isolation.runner = Some(release_runner());
    settings
}

/// Fresh copies of the files of `from` in a new directory under `root`: files no process has
/// opened or vetted (new inodes), whose bytes are in the page cache as a just-installed
/// plugin's are.
fn fresh_copies(from: &Path, root: &Path, tag: &str) -> PathBuf {
    let dir = root.join(tag);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    for file in library_files(from) {
        std::fs::copy(&file, dir.join(file.file_name().expect("a file name"))).expect("copy");
    }
    dir
}

/// First sight of N new plugins: `load_dir` of files this process has never seen, vetting
/// included (one vetting child for the directory, many files in flight, each file opened
/// here as soon as its verdict arrives), against raw dlopen+dlsym+entry of another fresh copy
/// of the same files, in the same round.
fn cold_directory(rounds: usize, n: usize) {
    let source = many_plugins(n);
    let root = xtask::build::target_dir().join("calc-bench/cold");
    let settings = vetting_settings();
    let (mut raw, mut calc) = (Vec::new(), Vec::new());
    for round in 0..=rounds {
        let raw_dir = fresh_copies(&source, &root, &format!("raw-{round}"));
        let calc_dir = fresh_copies(&source, &root, &format!("calc-{round}"));
        let run_raw = || {
            let start = Instant::now();
            let libs: Vec<libloading::Library> = library_files(&raw_dir)
                .iter()
                .map(|f| raw_open(f))
                .collect();
            let elapsed = start.elapsed().as_secs_f64();
            assert_eq!(libs.len(), n);
            drop(libs);
            elapsed
        };
        let run_calc = || {
            let mut m = PluginManager::with_settings(settings.clone());
            let start = Instant::now();
            let loaded = m.load_dir(&calc_dir).expect("readable");
            let elapsed = start.elapsed().as_secs_f64();
            assert_eq!((loaded, m.failures().len()), (n, 0));
            drop(m);
            elapsed
        };
        let (r, c) = if round % 2 == 0 {
            let r = run_raw();
            (r, run_calc())
        } else {
            let c = run_calc();
            (run_raw(), c)
        };
        // The first round warms the runner's executable and the dynamic loader.
        if round > 0 {
            raw.push(r);
            calc.push(c);
        }
        let _ = std::fs::remove_dir_all(&raw_dir);
        let _ = std::fs::remove_dir_all(&calc_dir);
    }
    let (r, c) = (median(raw), median(calc));
    println!("first sight of N new plugins (fresh copies each round), median of {rounds} rounds");
    calc_benches::row(
        &format!(
            "cold load_dir + vetting, N = {n} ({:.1} us/plugin)",
            c * 1e6 / n as f64
        ),
        (
            &format!("raw dlopen+entry ({:.1} us/plugin)", r * 1e6 / n as f64),
            r * 1e3,
        ),
        c * 1e3,
        "ms",
        Some(2.0),
    );
}

/// Memory: loads `dir` in a child process of this benchmark (a fresh heap), raw or through the
/// manager, and reports its resident set growth and one plugin's mappings.
fn memory(dir: &Path) {
    let measure = |mode: &str| -> Vec<u64> {
        let out = std::process::Command::new(std::env::current_exe().expect("own path"))
            .env("CALC_BENCH_MEMORY", mode)
            .env("CALC_BENCH_MEMORY_DIR", dir)
            .output()
            .expect("the memory child runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(|x| x.parse().expect("a number"))
            .collect()
    };
    let n = library_files(dir).len() as f64;
    let (raw, calc) = (measure("raw"), measure("calc"));
    let kb = |b: f64| b / 1024.0;
    let file_size = std::fs::metadata(&library_files(dir)[0]).map_or(0, |m| m.len());
    println!("memory per loaded plugin, {n} small C plugins loaded in a fresh process (VmRSS after - before) / N");
    println!(
        "  the library itself: file {:.1} KB; {} mappings of {:.1} KB, {:.1} KB of them resident",
        kb(file_size as f64),
        calc[2],
        kb(calc[3] as f64),
        kb(calc[4] as f64)
    );
    let per = |v: &[u64]| kb(v[1].saturating_sub(v[0]) as f64 / n);
    println!(
        "  raw dlopen+entry:          {:>6.1} KB per plugin",
        per(&raw)
    );
    println!(
        "  PluginManager::load_dir:   {:>6.1} KB per plugin ({:+.1} KB over raw; {:.2}x the library's mappings)",
        per(&calc),
        per(&calc) - per(&raw),
        per(&calc) * 1024.0 / calc[3] as f64
    );
}

/// The child of [`memory`]: prints `rss_before rss_after mappings mapped_bytes mapped_rss`.
fn memory_child(mode: &str, dir: &Path) -> ! {
    let files = library_files(dir);
    let first = std::fs::canonicalize(&files[0]).expect("first plugin");
    let before = calc_benches::vm_rss().expect("VmRSS");
    let mut libs = Vec::new();
    let mut manager = PluginManager::new();
    match mode {
        "raw" => libs = files.iter().map(|f| raw_open(f)).collect(),
        _ => {
            let loaded = manager.load_dir(dir).expect("readable");
            assert_eq!(loaded, files.len());
        }
    }
    let after = calc_benches::vm_rss().expect("VmRSS");
    let (count, size, rss) = mappings_of(&first).expect("smaps");
    println!("{before} {after} {count} {size} {rss}");
    black_box((&libs, &manager));
    // Exit without unloading: only the loading is measured.
    std::process::exit(0)
}

fn main() {
    if let (Some(mode), Some(dir)) = (
        std::env::var_os("CALC_BENCH_MEMORY"),
        std::env::var_os("CALC_BENCH_MEMORY_DIR"),
    ) {
        memory_child(&mode.to_string_lossy(), Path::new(&dir));
    }
    let quick = quick();
    if quick {
        per_plugin(200);
        directory(3, &[250, 500, 1000]);
        cold_directory(2, 1000);
    } else {
        per_plugin(5000);
        directory(15, &[250, 500, 1000]);
        cold_directory(9, 1000);
    }
    memory(&many_plugins(1000));
}
