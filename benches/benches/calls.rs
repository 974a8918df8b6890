//! Scalar call overhead: calc's call paths against a raw function-pointer call into the same
//! dlopen'ed plugin, measured in the same run.

use std::ffi::{c_char, c_void};
use std::hint::black_box;

use calc_benches::{
    compare_loops_rounds, example_plugins, plugin, quick, raw_descriptor, row_paired, timed_loop,
};
use calc_sdk::abi::calc_execute_fn;

#[inline(never)]
fn rust_add(a: f64, b: f64) -> f64 {
    a + b
}

fn main() {
    let dir = example_plugins();
    let path = plugin(&dir, "add");
    let (rounds, iters) = if quick() {
        (3, 100_000)
    } else {
        (101, 500_000)
    };

    // Reference: the plugin's execute pointer straight from its vtable.
    // The descriptor stays valid while `_lib` lives (to the end of `main`).
    let (_lib, desc) = raw_descriptor(&path);
    // SAFETY: the example `add` has one operation.
    let execute: calc_execute_fn = unsafe { (*desc.operations).execute };
    let execute = execute.expect("execute");
    let mut buf = [0 as c_char; 256];
    let mut raw = timed_loop(|i: u64| {
        let args = [i as f64, 1.0];
        let mut out = 0.0;
        // SAFETY: the ABI contract of `execute`: 2 operands, writable out and buffer.
        let status = unsafe {
            execute(
                std::ptr::null_mut::<c_void>(),
                args.as_ptr(),
                2,
                &mut out,
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        black_box((status, out));
    });
    let mut direct = timed_loop(|i: u64| {
        black_box(rust_add(i as f64, 1.0));
    });
    // The least a caller that reports failures must do around the same raw call: a fresh error
    // buffer whose first byte is NUL (a plugin may fail without writing a message), and a test
    // of the status, giving a value only on success. Printed as a second reference: the floor
    // of any safe wrapper.
    let mut raw_checked = timed_loop(|i: u64| {
        let args = [i as f64, 1.0];
        let mut out = 0.0;
        let mut err = std::mem::MaybeUninit::<[c_char; 256]>::uninit();
        let err = err.as_mut_ptr().cast::<c_char>();
        // SAFETY: `err` points to 256 writable bytes; only the first is initialised, as a C
        // caller would (`char err[256]; err[0] = 0;`), and the plugin writes a terminated
        // message within them on failure (ABI contract).
        let status = unsafe {
            err.write(0);
            execute(
                std::ptr::null_mut::<c_void>(),
                args.as_ptr(),
                2,
                &mut out,
                err,
                256,
            )
        };
        black_box((status == 0).then_some(out));
    });

    // Every calc path below comes from a manager with hot reload on (the target's condition):
    // the plugin is loaded from a private copy, and a reload would swap the live slot.
    let mut reload_manager = calc_host::PluginManager::new();
    reload_manager.enable_hot_reload(calc_host::PluginManager::default_copy_dir());
    reload_manager.load_file(&path).expect("load");

    // Resolved once, pinned to the version loaded then (a reload does not unload it while the
    // handle lives; new lookups and live handles get the new one).
    let pinned = reload_manager.operation("add").expect("add");
    let mut op_handle = timed_loop(|i: u64| {
        black_box(pinned.call(&[i as f64, 1.0]).ok());
    });

    let binary = pinned.binary().expect("add is binary");
    let mut binary_op = timed_loop(|i: u64| {
        black_box(binary.call(i as f64, 1.0).ok());
    });

    let live = reload_manager.live_operation("add").expect("add");
    // (Forced inline: the compiler keeps this larger body out of line, which would add a call
    // per iteration that no user loop pays.)
    let mut live_op = timed_loop(
        #[inline(always)]
        |i: u64| {
            black_box(live.call(&[i as f64, 1.0]).ok());
        },
    );

    // A hot loop that follows reloads as a user would write it: pin, make 1024 calls (about
    // 2 µs), drop the pin, pin again. Timed per block of 1024 calls, in the same shifted loops
    // as the other candidates.
    let mut pinned_blocks = timed_loop(
        #[inline(always)]
        |block: u64| {
            let pinned = live.pin();
            let first = block * 1024;
            for i in first..first + 1024 {
                black_box(pinned.call(&[i as f64, 1.0]).ok());
            }
        },
    );
    let mut live_pinned = |iters: u64| pinned_blocks(iters.div_ceil(1024)) / 1024.0;

    let rounds_run = compare_loops_rounds(
        rounds,
        iters,
        &mut [
            ("raw", &mut raw),
            ("direct", &mut direct),
            ("OpHandle", &mut op_handle),
            ("LiveOp", &mut live_op),
            ("BinaryOp", &mut binary_op),
            ("LiveOp::pin", &mut live_pinned),
            ("raw, checked", &mut raw_checked),
        ],
    );
    let t: Vec<f64> = (0..7).map(|i| rounds_run.median(i)).collect();
    println!(
        "scalar call of `add` (C plugin), median of {rounds} rounds x {iters} calls; \
         ratio = median over rounds of the two figures of the same round; \
         each candidate runs in its own loop"
    );
    let raw = ("raw plugin fn pointer", t[0]);
    let checked = ("raw call + status test", t[6]);
    row_paired(
        "raw call + status test + fresh error buffer",
        raw,
        t[6],
        rounds_run.ratio(6, 0),
        "ns",
        None,
    );
    row_paired(
        "Rust #[inline(never)] call",
        raw,
        t[1],
        rounds_run.ratio(1, 0),
        "ns",
        None,
    );
    // The bounds are against the raw call with its status test: what any caller that
    // reports failures pays (docs/PERFORMANCE.md); the ratios to the bare call follow.
    for (label, i, target) in [
        ("OpHandle::call (hot reload on, pinned version)", 2, 1.05),
        ("BinaryOp::call (same, arity checked once)", 4, 1.05),
        ("LiveOp::call (hot reload on, follows reloads)", 3, 1.5),
        ("LiveOp::pin + call (re-pinned every 1024 calls)", 5, 1.05),
    ] {
        row_paired(
            label,
            checked,
            t[i],
            rounds_run.ratio(i, 6),
            "ns",
            Some(target),
        );
    }
    for (label, i) in [
        ("OpHandle::call", 2),
        ("BinaryOp::call", 4),
        ("LiveOp::call", 3),
        ("LiveOp::pin + call", 5),
    ] {
        row_paired(label, raw, t[i], rounds_run.ratio(i, 0), "ns", None);
    }
}
