//! A small benchmark harness: each measurement runs its reference and calc's path in
//! interleaved rounds in the same process, and reports medians and the ratio, because machines
//! here are shared and noisy and only ratios measured side by side mean anything.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Whether `--quick` was passed (CI: run everything once, briefly).
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
}

/// Median of a sample.
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Times `f` called `iters` times, in nanoseconds per call.
pub fn ns_per_iter(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    for i in 0..iters {
        f(black_box(i));
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// Runs each candidate for `rounds` interleaved rounds of `iters` calls and returns the median
/// nanoseconds per call of each.
pub fn compare(
    rounds: usize,
    iters: u64,
    candidates: &mut [(&str, &mut dyn FnMut(u64))],
) -> Vec<f64> {
    compare_paired(rounds, iters, candidates).0
}

/// Like [`compare`], but also pairs each round's figures: returns the median nanoseconds per
/// call of each candidate, and the median over rounds of each candidate's time divided by the
/// first candidate's time *in the same round*. On a shared machine a burst of load hits both
/// figures of a round alike, so the paired ratio is steadier than a ratio of medians.
///
/// Each iteration calls its candidate through `dyn FnMut`, an indirect call that every
/// candidate pays alike; for figures of a few nanoseconds, where that call is a third of the
/// total, use [`compare_loops`].
pub fn compare_paired(
    rounds: usize,
    iters: u64,
    candidates: &mut [(&str, &mut dyn FnMut(u64))],
) -> (Vec<f64>, Vec<f64>) {
    paired_rounds(rounds, candidates.len(), |i| {
        ns_per_iter(iters, &mut *candidates[i].1)
    })
}

/// A candidate for [`compare_loops`]: `f` called `iters` times in loops compiled for `f` alone
/// (inlined, no indirect call per iteration), timed, in nanoseconds per call.
///
/// **Code layout.** A call of a few cycles costs one cycle more or less depending on where its
/// loop falls relative to the CPU's 32- and 64-byte fetch and micro-op cache windows: an
/// unrelated change anywhere in the binary moves a loop and every figure with it (by up to
/// 50% here). So `f` is compiled into [`LAYOUTS`] loops, each placed at a different offset from
/// a 64-byte boundary, and runs `iters / LAYOUTS` calls in each: the figure is their mean, as
/// if layouts were drawn at random (the idea of Stabilizer, Curtsinger and Berger, ASPLOS 2013),
/// and no candidate is favoured or punished by the one layout a build happens to give it.
///
/// Unlike [`ns_per_iter`], the loop does not pass the counter through [`black_box`]: that
/// stores it to the stack and reloads it on every iteration, and the compiler may give that
/// stack slot to the candidate's own locals (the error buffer of a call), whose stores then
/// collide with it and skew figures of a few cycles by a fraction of a cycle. The candidates'
/// bodies must keep the compiler from removing work themselves (an opaque call, `black_box` on
/// the result).
pub fn timed_loop(mut f: impl FnMut(u64)) -> impl FnMut(u64) -> f64 {
    move |iters| {
        let per_layout = (iters / LAYOUTS as u64).max(1);
        let figures = layout_figures(&mut f, per_layout);
        if std::env::var_os("CALC_BENCH_LAYOUTS").is_some() {
            eprintln!("{figures:.2?}");
        }
        figures.iter().sum::<f64>() / LAYOUTS as f64
    }
}

/// How many code placements [`timed_loop`] measures each candidate in.
pub const LAYOUTS: usize = 4;

/// Nanoseconds per call of `f` in each of the [`LAYOUTS`] loop placements, `iters` calls each.
fn layout_figures(f: &mut impl FnMut(u64), iters: u64) -> [f64; LAYOUTS] {
    [
        loop_at_0(f, iters),
        loop_at_16(f, iters),
        loop_at_32(f, iters),
        loop_at_48(f, iters),
    ]
}

/// Defines a timed loop over `f` whose code starts `$skip` bytes after a 64-byte boundary (on
/// x86-64; elsewhere wherever the compiler puts it). The compiler aligns loop heads to 16
/// bytes, so skips of 0, 16, 32 and 48 give the four placements a 64-byte window allows.
macro_rules! shifted_loop {
    ($name:ident, $skip:literal) => {
        #[inline(never)]
        fn $name(f: &mut impl FnMut(u64), iters: u64) -> f64 {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: assembler directives only: padding with no-op instructions, which run
            // once on entry; no register, memory or flag is touched.
            unsafe {
                std::arch::asm!(
                    ".p2align 6",
                    concat!(".skip ", $skip, ", 0x90"),
                    options(nomem, nostack, preserves_flags)
                );
            }
            let start = Instant::now();
            for i in 0..iters {
                f(i);
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        }
    };
}
shifted_loop!(loop_at_0, 0);
shifted_loop!(loop_at_16, 16);
shifted_loop!(loop_at_32, 32);
shifted_loop!(loop_at_48, 48);

/// As [`compare_paired`], for candidates made with [`timed_loop`]: each round runs each
/// candidate's own loop once, so the figures hold nothing but the candidate's body and the loop
/// around it.
pub fn compare_loops(
    rounds: usize,
    iters: u64,
    candidates: &mut [(&str, &mut dyn FnMut(u64) -> f64)],
) -> (Vec<f64>, Vec<f64>) {
    paired_rounds(rounds, candidates.len(), |i| (candidates[i].1)(iters))
}

/// Runs `time(i)` for each of `n` candidates in turn, `rounds` times, and returns each
/// candidate's median and its median paired ratio to candidate 0 (see [`compare_paired`]).
fn paired_rounds(rounds: usize, n: usize, time: impl FnMut(usize) -> f64) -> (Vec<f64>, Vec<f64>) {
    let rounds = Rounds::run(rounds, n, time);
    let ratios = (0..n).map(|i| rounds.ratio(i, 0)).collect();
    ((0..n).map(|i| rounds.median(i)).collect(), ratios)
}

/// Every round's figure of every candidate, for ratios to any of them.
pub struct Rounds(Vec<Vec<f64>>);

impl Rounds {
    /// Runs `time(i)` for each of `n` candidates in turn, `rounds` times.
    pub fn run(rounds: usize, n: usize, mut time: impl FnMut(usize) -> f64) -> Rounds {
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n];
        for _ in 0..rounds {
            for (i, s) in samples.iter_mut().enumerate() {
                s.push(time(i));
            }
        }
        Rounds(samples)
    }

    /// Candidate `i`'s median figure.
    pub fn median(&self, i: usize) -> f64 {
        median(self.0[i].clone())
    }

    /// The median over rounds of candidate `i`'s figure over candidate `reference`'s in the
    /// same round.
    pub fn ratio(&self, i: usize, reference: usize) -> f64 {
        median(
            self.0[i]
                .iter()
                .zip(&self.0[reference])
                .map(|(t, r)| t / r)
                .collect(),
        )
    }
}

/// As [`compare_loops`], returning every round's figures (see [`Rounds`]).
pub fn compare_loops_rounds(
    rounds: usize,
    iters: u64,
    candidates: &mut [(&str, &mut dyn FnMut(u64) -> f64)],
) -> Rounds {
    Rounds::run(rounds, candidates.len(), |i| (candidates[i].1)(iters))
}

/// Prints one table row with a paired ratio (see [`compare_paired`]).
pub fn row_paired(
    what: &str,
    reference: (&str, f64),
    ours: f64,
    ratio: f64,
    unit: &str,
    target: Option<f64>,
) {
    let verdict = match target {
        Some(t) if ratio <= t => format!("ok (target <= {t:.2}x)"),
        Some(t) => format!("OVER (target <= {t:.2}x)"),
        None => String::new(),
    };
    println!(
        "{what:<44} {ours:>10.2} {unit:<3} vs {:<28} {:>10.2} {unit:<3} ratio {ratio:>5.2}x  {verdict}",
        reference.0, reference.1
    );
}

/// Prints one table row: what, the reference, calc's figure, the ratio and the target.
pub fn row(what: &str, reference: (&str, f64), ours: f64, unit: &str, target: Option<f64>) {
    row_paired(what, reference, ours, ours / reference.1, unit, target);
}

/// The example plugins, built once into `target/calc-bench/plugins`.
pub fn example_plugins() -> PathBuf {
    let dir = xtask::build::target_dir().join("calc-bench/plugins");
    xtask::build::build_examples(&dir).unwrap_or_else(|e| panic!("building the examples: {e}"));
    dir
}

/// `lib<name>.so` in `dir`.
pub fn plugin(dir: &Path, name: &str) -> PathBuf {
    dir.join(xtask::build::library_file_name(name))
}

/// The fixed-width name in `benches/c/tiny.c` that each copy gets its own value of.
const TINY_MARKER: &[u8] = b"calcbench_00000";

/// `n` distinct copies of the small C plugin `benches/c/tiny.c` in
/// `target/calc-bench/many-<n>/`: `libcalcbench_NNNNN.so`, each a plugin (with one function) named
/// `calcbench_NNNNN`. The plugin is compiled once and the name patched into each copy (compiling
/// 1000 variants would take minutes); the copies are kept for the next run while the compiled
/// plugin is unchanged, so their modification times stay old.
pub fn many_plugins(n: usize) -> PathBuf {
    assert!(n <= 100_000, "five digits");
    let root = xtask::build::target_dir().join("calc-bench");
    let template = root
        .join("tiny")
        .join(xtask::build::library_file_name("tiny"));
    xtask::build::build_c_plugin(
        &xtask::workspace_root().join("benches/c/tiny.c"),
        &template,
        &[],
    )
    .unwrap_or_else(|e| panic!("building the small plugin: {e}"));
    let bytes = std::fs::read(&template).expect("read the small plugin");
    let at: Vec<usize> = (0..bytes.len().saturating_sub(TINY_MARKER.len()))
        .filter(|&i| bytes[i..].starts_with(TINY_MARKER))
        .collect();
    assert!(!at.is_empty(), "the marker is in the compiled plugin");
    let dir = root.join(format!("many-{n}"));
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let stamp = format!("{n} copies of {hash:016x}\n");
    let stamp_file = dir.join(".generated");
    if std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str()) {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut copy = bytes.clone();
    for i in 0..n {
        let name = format!("calcbench_{i:05}");
        for &p in &at {
            copy[p..p + TINY_MARKER.len()].copy_from_slice(name.as_bytes());
        }
        let file = dir.join(xtask::build::library_file_name(&name));
        std::fs::write(&file, &copy).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    std::fs::write(&stamp_file, stamp).expect("write the stamp");
    dir
}

/// The resident set size of this process in bytes (Linux: `VmRSS` of `/proc/self/status`).
pub fn vm_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The mappings of file `path` in this process (Linux: `/proc/self/smaps`): how many, their
/// total size and their total resident size, in bytes.
pub fn mappings_of(path: &Path) -> Option<(usize, u64, u64)> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let name = path.to_str()?;
    let (mut count, mut size, mut rss) = (0, 0, 0);
    let mut inside = false;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            inside = line.ends_with(name);
            if inside {
                let start = u64::from_str_radix(start, 16).ok()?;
                let end = u64::from_str_radix(end, 16).ok()?;
                count += 1;
                size += end - start;
            }
        } else if inside && first == "Rss:" {
            rss += fields.next()?.parse::<u64>().ok()? * 1024;
        }
    }
    Some((count, size, rss))
}

/// A Rust example plugin built in release mode (the examples directory holds debug builds):
/// builds `package` with cargo and returns the path of its library `lib<name>.so`.
pub fn release_rust_plugin(package: &str, name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(xtask::workspace_root())
        .args(["build", "--quiet", "--release", "--package", package])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build --release -p {package}");
    xtask::build::target_dir()
        .join("release")
        .join(xtask::build::library_file_name(name))
}

/// Builds `args` (a package and what of it) in release mode.
fn cargo_release(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(xtask::workspace_root())
        .args(["build", "--quiet", "--release"])
        .args(args)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {args:?}");
}

/// `calc-plugin-runner` in a release build (isolated plugins and vetting), built once.
pub fn release_runner() -> PathBuf {
    static RUNNER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    RUNNER
        .get_or_init(|| {
            cargo_release(&[
                "--package",
                xtask::build::RUNNER_PACKAGE,
                "--bin",
                "calc-plugin-runner",
            ]);
            xtask::build::target_dir().join("release").join(format!(
                "calc-plugin-runner{}",
                std::env::consts::EXE_SUFFIX
            ))
        })
        .clone()
}

/// The directory of a release `libcalc_host` (with the release runner that vets plugins
/// beside it), for the Go and Python hosts' benchmarks.
pub fn release_libcalc_host() -> PathBuf {
    release_runner();
    cargo_release(&["--package", "calc-host-capi"]);
    xtask::build::target_dir().join("release")
}

/// A trusted plugin opened with plain `dlopen` and its descriptor, as the raw references of the
/// benchmarks read it: `plugin_entry` called once, nothing validated. The descriptor is valid
/// while the returned library is loaded (the `'static` is the caller's to keep true: keep the
/// library alive as long as the descriptor is used).
pub fn raw_descriptor(path: &Path) -> (libloading::Library, &'static calc_sdk::abi::calc_plugin_t) {
    // SAFETY: the benchmark's own plugins, whose initialisers are trusted.
    let lib = unsafe { libloading::Library::new(path) }.expect("dlopen");
    // SAFETY: `plugin_entry` has this signature by the ABI.
    let entry = unsafe { lib.get::<calc_sdk::abi::calc_plugin_entry_fn>(b"plugin_entry\0") }
        .expect("dlsym");
    let entry = (*entry).expect("plugin_entry is not NULL");
    // SAFETY: calling a valid plugin's entry point; its descriptor lives as long as the library
    // (the caller keeps the library).
    let desc = unsafe { &*entry() };
    (lib, desc)
}
