//! Process isolation: what a call costs when the plugin runs in a runner process
//! (`calc-plugin-runner`, one request and one reply over a Unix socket) next to the same call
//! to the same plugin file loaded in process, measured side by side in the same run; and the
//! same for batches of rows (one request for a batch of up to 64 MiB), small and large.
//!
//! Plugin: the C example `add`. The runner is a release build.

use std::hint::black_box;

use calc_benches::{compare, example_plugins, plugin, quick, release_runner, row};
use calc_host::config::Settings;
use calc_host::{OpHandle, PluginManager};

fn load(settings: Settings, path: &std::path::Path) -> (PluginManager, OpHandle) {
    let mut m = PluginManager::with_settings(settings);
    m.load_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let op = m.operation("add").expect("add");
    (m, op)
}

fn main() {
    let (rounds, iters, rows) = if quick() {
        (3, 200, 1_000)
    } else {
        (15, 5_000, 10_000)
    };
    let file = plugin(&example_plugins(), "add");
    let (_native_m, native) = load(Settings::default(), &file);
    let mut isolated_settings = Settings::default();
    isolated_settings.isolation.all = true;
    isolated_settings.isolation.runner = Some(release_runner());
    let (isolated_m, isolated) = load(isolated_settings, &file);
    assert!(isolated_m.is_isolated("add"));

    let mut native_call = |i: u64| {
        black_box(native.call(black_box(&[i as f64, 2.0])).expect("add"));
    };
    let mut isolated_call = |i: u64| {
        black_box(isolated.call(black_box(&[i as f64, 2.0])).expect("add"));
    };
    let calls = compare(
        rounds,
        iters,
        &mut [
            ("in process", &mut native_call),
            ("isolated", &mut isolated_call),
        ],
    );
    println!(
        "isolation: the C example add, median of {rounds} rounds x {iters} calls, runner in a \
         release build"
    );
    row(
        "isolated OpHandle::call, ns per call",
        ("in-process OpHandle::call", calls[0]),
        calls[1],
        "ns",
        None,
    );
    // A small batch, and a large one whose reply takes many reads of the socket.
    for (rows, batch_iters) in [(rows, (iters / 50).max(5)), (rows * 100, 5)] {
        let a: Vec<f64> = (0..rows).map(|i| i as f64).collect();
        let b = vec![2.0; rows];
        let mut out_native = vec![0.0; rows];
        let mut out_isolated = vec![0.0; rows];
        let mut native_batch = |_| {
            native
                .call_batch(&[black_box(&a), black_box(&b)], &mut out_native)
                .expect("batch");
        };
        let mut isolated_batch = |_| {
            isolated
                .call_batch(&[black_box(&a), black_box(&b)], &mut out_isolated)
                .expect("batch");
        };
        let batches: Vec<f64> = compare(
            rounds,
            batch_iters,
            &mut [
                ("in process", &mut native_batch),
                ("isolated", &mut isolated_batch),
            ],
        )
        .into_iter()
        .map(|ns| ns / rows as f64)
        .collect();
        assert_eq!(out_native, out_isolated);
        row(
            &format!("isolated call_batch of {rows} rows, ns per row"),
            ("in-process call_batch", batches[0]),
            batches[1],
            "ns",
            None,
        );
    }
    let h = isolated_m.health("add").expect("loaded");
    println!("isolated add health: {h}");
}
