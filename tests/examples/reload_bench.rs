//! Hot-reload measurements (see `docs/RELOAD.md`): reloads the C `counter`, the C++
//! `cpp_counter` and the Rust `rust_counter` fixtures many times, alternating two builds of
//! each, and prints RSS before and after, what the old versions left mapped, and the reload
//! latency next to a raw `dlopen` + `dlsym` + `plugin_entry` + `dlclose` of the same file.
//!
//! ```text
//! cargo run --release -p calc-tests --example reload_bench            # 1000 cycles
//! cargo run --release -p calc-tests --example reload_bench -- --quick # 50 cycles
//! cargo run --release -p calc-tests --example reload_bench -- --cycles 200
//! ```

#[path = "../it/support/reload_measure.rs"]
mod reload_measure;

use calc_tests::{
    build_counter, build_cpp_counter, build_rust_counter, library_file_name, scratch_dir,
};
use reload_measure::{measure, table, Subject};

/// Reload cycles run before the first RSS reading.
const WARMUP: usize = 20;

fn main() {
    let mut cycles = 1000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => cycles = 50,
            "--cycles" => {
                cycles = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| usage("--cycles needs a number"));
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let dir = scratch_dir(&format!("reload-bench-{}", std::process::id()));
    let counter = library_file_name("counter");
    let c = Subject {
        label: "C counter".into(),
        plugin: "counter".into(),
        v1: dir.join("c-v1").join(&counter),
        v2: dir.join("c-v2").join(&counter),
    };
    build_counter(&c.v1, &["-DCOUNTER_VERSION=1", "-O2"]).unwrap_or_else(|e| panic!("{e}"));
    build_counter(&c.v2, &["-DCOUNTER_VERSION=2", "-O2"]).unwrap_or_else(|e| panic!("{e}"));
    let cpp_counter = library_file_name("cpp_counter");
    let cpp = Subject {
        label: "C++ counter".into(),
        plugin: "cpp_counter".into(),
        v1: dir.join("cpp-v1").join(&cpp_counter),
        v2: dir.join("cpp-v2").join(&cpp_counter),
    };
    build_cpp_counter(&cpp.v1, &["-DCOUNTER_VERSION=1"]).unwrap_or_else(|e| panic!("{e}"));
    build_cpp_counter(&cpp.v2, &["-DCOUNTER_VERSION=2"]).unwrap_or_else(|e| panic!("{e}"));
    let mut subjects = vec![c, cpp];
    for (release, label) in [
        (false, "Rust counter (debug)"),
        (true, "Rust counter (release)"),
    ] {
        let dest = dir.join(if release {
            "rust-release"
        } else {
            "rust-debug"
        });
        let (v1, v2) = build_rust_counter(&dest, release).unwrap_or_else(|e| panic!("{e}"));
        subjects.push(Subject {
            label: label.into(),
            plugin: "rust_counter".into(),
            v1,
            v2,
        });
    }
    println!(
        "{cycles} reload cycles per plugin after {WARMUP} warm-up cycles (pid {})",
        std::process::id()
    );
    let reports: Vec<_> = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| measure(s, &dir.join(format!("run-{i}")), cycles, WARMUP))
        .collect();
    print!("{}", table(&reports));
    let _ = std::fs::remove_dir_all(&dir);
}

fn usage(problem: &str) -> ! {
    eprintln!("reload_bench: {problem}\nusage: reload_bench [--quick | --cycles N]");
    std::process::exit(2);
}
