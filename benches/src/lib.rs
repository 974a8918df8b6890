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
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); candidates.len()];
    for _ in 0..rounds {
        for (i, (_, f)) in candidates.iter_mut().enumerate() {
            samples[i].push(ns_per_iter(iters, &mut **f));
        }
    }
    samples.into_iter().map(median).collect()
}

/// Prints one table row: what, the reference, calc's figure, the ratio and the target.
pub fn row(what: &str, reference: (&str, f64), ours: f64, unit: &str, target: Option<f64>) {
    let ratio = ours / reference.1;
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
