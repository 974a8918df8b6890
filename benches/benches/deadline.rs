//! The cost of polling the cooperative deadline (ABI 1.3), next to a monotonic clock read
//! measured the same way in the same run.
//!
//! - From a C plugin (`benches/c/deadline_poll.c`): `CALC_DEADLINE_EXPIRED(host)` in a loop (the
//!   struct_size check, an indirect call into the host, its thread-local read and, with a
//!   deadline set, its clock read) against `clock_gettime(CLOCK_MONOTONIC)` in the same kind of
//!   loop; each call of the operation runs the loop `POLLS` times, so the call itself is noise.
//! - In the host: `calc_host::deadline::expired()` against `Instant::now()`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use calc_benches::{compare, quick, row};
use calc_host::deadline::{self, with_deadline};
use calc_host::PluginManager;

/// Polls per call of the plugin's loop operations.
const POLLS: f64 = 10_000.0;

fn main() {
    let (rounds, iters) = if quick() { (3, 5) } else { (21, 50) };
    let dir = xtask::build::target_dir().join("calc-bench/deadline");
    let lib = dir.join(xtask::build::library_file_name("deadline_poll"));
    xtask::build::build_c_plugin(
        &xtask::workspace_root().join("benches/c/deadline_poll.c"),
        &lib,
        &[],
    )
    .unwrap_or_else(|e| panic!("building the deadline plugin: {e}"));
    let mut m = PluginManager::new();
    m.load_file(&lib).unwrap_or_else(|e| panic!("{e}"));
    let polls = m.operation("polls").expect("polls");
    let clocks = m.operation("clocks").expect("clocks");

    // The poll must really see the deadline: every poll says "expired" under a past one.
    let expired = with_deadline(Some(Instant::now()), || polls.call(&[POLLS]));
    assert_eq!(expired, Ok(POLLS));
    assert_eq!(polls.call(&[POLLS]), Ok(0.0));

    let far = Instant::now() + Duration::from_secs(3600);
    let mut c_clock = |_| {
        black_box(clocks.call(&[POLLS]).expect("clocks"));
    };
    let mut c_poll_none = |_| {
        black_box(polls.call(&[POLLS]).expect("polls"));
    };
    let mut c_poll_set = |_| {
        with_deadline(Some(far), || {
            black_box(polls.call(&[POLLS]).expect("polls"))
        });
    };
    let n = POLLS as u64;
    let mut rust_now = |_| {
        for _ in 0..n {
            black_box(Instant::now());
        }
    };
    let mut rust_none = |_| {
        for _ in 0..n {
            black_box(deadline::expired());
        }
    };
    let mut rust_set = |_| {
        with_deadline(Some(far), || {
            for _ in 0..n {
                black_box(deadline::expired());
            }
        })
    };
    let t: Vec<f64> = compare(
        rounds,
        iters,
        &mut [
            ("C clock_gettime", &mut c_clock),
            ("C poll, no deadline", &mut c_poll_none),
            ("C poll, deadline set", &mut c_poll_set),
            ("Instant::now", &mut rust_now),
            ("expired, no deadline", &mut rust_none),
            ("expired, deadline set", &mut rust_set),
        ],
    )
    .into_iter()
    .map(|ns| ns / POLLS)
    .collect();

    println!(
        "deadline polls, median of {rounds} rounds x {iters} loops of {POLLS} polls, ns per poll"
    );
    let clock = ("C clock_gettime(MONOTONIC)", t[0]);
    row(
        "C CALC_DEADLINE_EXPIRED, no deadline",
        clock,
        t[1],
        "ns",
        None,
    );
    row(
        "C CALC_DEADLINE_EXPIRED, deadline set",
        clock,
        t[2],
        "ns",
        None,
    );
    let now = ("Rust Instant::now()", t[3]);
    row(
        "host deadline::expired(), no deadline",
        now,
        t[4],
        "ns",
        None,
    );
    row(
        "host deadline::expired(), deadline set",
        now,
        t[5],
        "ns",
        None,
    );
}
