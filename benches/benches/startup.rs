//! Whole-process timings over many runs (medians, all candidates interleaved run by run), with
//! the release binaries: `calc eval "1 + 2"` with the example plugins against a process that
//! only opens the same plugins and calls their `plugin_entry` (`dlopen_only`), `calc --version`
//! as the floor (a process that does nothing), and `calc plugins list` over 1000 plugins with a
//! warm metadata cache, against the same command with `--no-cache`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use calc_benches::{example_plugins, many_plugins, median, quick};

/// Builds the release binaries (`calc` and `dlopen_only`) and returns their directory.
fn release_binaries() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for args in [
        &[
            "build",
            "--release",
            "--quiet",
            "-p",
            xtask::build::CLI_PACKAGE,
            "-p",
            xtask::build::RUNNER_PACKAGE,
        ][..],
        &[
            "build",
            "--release",
            "--quiet",
            "-p",
            "calc-benches",
            "--bin",
            "dlopen_only",
        ],
    ] {
        let status = Command::new(&cargo)
            .current_dir(xtask::workspace_root())
            .args(args)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo {args:?} failed");
    }
    xtask::build::target_dir().join("release")
}

/// A command with a clean environment: no plugin path, config or log settings from the caller,
/// the metadata cache and config home in the benchmark's scratch directory.
fn command(program: &Path, args: &[&str], scratch: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("CALC_PLUGIN_PATH")
        .env_remove("CALC_CONFIG")
        .env_remove("RUST_LOG")
        .env("XDG_CACHE_HOME", scratch.join("cache"))
        .env("XDG_CONFIG_HOME", scratch.join("config"))
        .stdin(Stdio::null());
    cmd
}

fn run_once(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `calc -vv plugins list` until the cache answers every file (entries of files modified
/// just before they were validated are not trusted at first: see `calc_host::cache`).
fn warm_cache(calc: &Path, dir: &str, scratch: &Path) {
    for attempt in 0..3 {
        let out = run_once(&mut command(
            calc,
            &["-vv", "--plugin-dir", dir, "plugins", "list"],
            scratch,
        ));
        let log = String::from_utf8_lossy(&out.stderr);
        if log.contains("hits: 1000, misses: 0, stale: 0, inspections: 0") {
            return;
        }
        assert!(attempt < 2, "the cache stays cold: {log}");
        std::thread::sleep(calc_host::cache::RACY_WINDOW + Duration::from_millis(100));
    }
}

/// The example plugins (and nothing else another benchmark may have put next to them in
/// [`example_plugins`]), copied to `target/calc-bench/startup/examples`.
fn just_the_examples() -> PathBuf {
    use xtask::build::{library_file_name, CPP_EXAMPLES, C_EXAMPLES, RUST_EXAMPLES};
    let from = example_plugins();
    let dir = xtask::build::target_dir().join("calc-bench/startup/examples");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("examples directory");
    let names = C_EXAMPLES
        .iter()
        .chain(CPP_EXAMPLES)
        .chain(RUST_EXAMPLES.iter().map(|(_, lib)| lib));
    for name in names {
        let file = library_file_name(name);
        std::fs::copy(from.join(&file), dir.join(&file)).expect("copy an example");
    }
    dir
}

fn main() {
    let runs = if quick() { 20 } else { 200 };
    let examples = just_the_examples();
    let many = many_plugins(1000);
    let bin = release_binaries();
    let calc = bin.join(format!("calc{}", std::env::consts::EXE_SUFFIX));
    let dlopen_only = bin.join(format!("dlopen_only{}", std::env::consts::EXE_SUFFIX));
    let scratch = xtask::build::target_dir().join("calc-bench/startup");
    std::fs::create_dir_all(scratch.join("config")).expect("scratch directory");
    std::fs::create_dir_all(scratch.join("empty")).expect("scratch directory");
    let empty = scratch.join("empty");
    let (ex, many, empty) = (
        examples.to_str().unwrap(),
        many.to_str().unwrap(),
        empty.to_str().unwrap(),
    );

    let mut candidates: Vec<(&str, Command)> = vec![
        ("version", command(&calc, &["--version"], &scratch)),
        (
            "eval",
            command(&calc, &["--plugin-dir", ex, "eval", "1 + 2"], &scratch),
        ),
        ("dlopen_only", command(&dlopen_only, &[ex], &scratch)),
        (
            "list",
            command(&calc, &["--plugin-dir", many, "plugins", "list"], &scratch),
        ),
        (
            "list_no_cache",
            command(
                &calc,
                &["--plugin-dir", many, "plugins", "list", "--no-cache"],
                &scratch,
            ),
        ),
        // Where the difference comes from: each process without any plugin.
        (
            "eval_no_plugins",
            command(&calc, &["--plugin-dir", empty, "eval", "1"], &scratch),
        ),
        (
            "dlopen_only_no_plugins",
            command(&dlopen_only, &[], &scratch),
        ),
    ];
    // Check what each prints once, then time them with their output discarded.
    let mut out = |i: usize| String::from_utf8(run_once(&mut candidates[i].1).stdout).unwrap();
    assert_eq!(out(1), "3\n");
    assert_eq!(out(2), "8\n");
    warm_cache(&calc, many, &scratch);
    let listed = out(3);
    assert_eq!(listed.matches(" [enabled]").count(), 1000);
    assert_eq!(listed, out(4), "--no-cache lists the same");
    assert_eq!((out(5), out(6)), ("1\n".to_string(), "0\n".to_string()));
    for (_, cmd) in &mut candidates {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }

    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); candidates.len()];
    for run in 0..runs {
        // Rotate the order, so that no candidate always follows the same one.
        for k in 0..candidates.len() {
            let i = (run + k) % candidates.len();
            let start = Instant::now();
            let status = candidates[i].1.status().expect("runs");
            samples[i].push(start.elapsed().as_secs_f64() * 1e3);
            assert!(status.success(), "{}: {status}", candidates[i].0);
        }
    }
    let t: Vec<f64> = samples.into_iter().map(median).collect();
    let (version, eval, reference, list, list_no_cache) = (t[0], t[1], t[2], t[3], t[4]);
    let (eval_bare, reference_bare) = (t[5], t[6]);
    let verdict = |ok: bool| if ok { "ok" } else { "OVER" };
    println!("whole processes (release build), median of {runs} runs each, interleaved");
    println!("{:<52} {version:>8.2} ms   (the floor)", "calc --version");
    println!(
        "{:<52} {eval:>8.2} ms   vs {:<34} {reference:>8.2} ms: adds {:+.2} ms  {} (target <= +0.3 ms)",
        "calc eval \"1 + 2\" (the 8 example plugins)",
        "dlopen_only (the same plugins)",
        eval - reference,
        verdict(eval - reference <= 0.3)
    );
    println!(
        "  of which the processes without plugins: calc eval \"1\" {eval_bare:.2} ms, dlopen_only {reference_bare:.2} ms ({:+.2} ms); loading the 8 plugins: calc {:.2} ms, dlopen_only {:.2} ms ({:+.2} ms)",
        eval_bare - reference_bare,
        eval - eval_bare,
        reference - reference_bare,
        (eval - eval_bare) - (reference - reference_bare)
    );
    println!(
        "{:<52} {list:>8.2} ms   {} (target < 10 ms); references: --no-cache {list_no_cache:.2} ms, calc --version {version:.2} ms",
        "calc plugins list (1000 plugins, warm cache)",
        verdict(list < 10.0)
    );
}
