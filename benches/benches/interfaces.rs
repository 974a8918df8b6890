//! A call through an application-defined interface (ABI 1.4): calc's pinned handle against a
//! call of the same vtable slot straight from the dlopen'ed plugin's descriptor, in the same run.
//!
//! Plugin: the test fixture `tests/fixtures/c/shapes.c` (interface `calc-tests.shape` 1.1,
//! whose `area(instance, w, h, &out)` checks its instance and multiplies), built with the flags
//! of every C plugin.

use std::ffi::c_void;
use std::hint::black_box;
use std::ptr;

use calc_benches::{compare_loops, quick, raw_descriptor, row_paired, timed_loop};
use calc_sdk::abi::{self, calc_interface_t, calc_status_t};

type AreaFn = unsafe extern "C" fn(*mut c_void, f64, f64, *mut f64) -> calc_status_t;

/// `calc-tests.shape` 1.0, the part of the vtable the benchmark calls.
#[repr(C)]
struct Shape {
    area: Option<AreaFn>,
}

fn main() {
    let dir = xtask::build::target_dir().join("calc-bench/interfaces");
    let path = dir.join(xtask::build::library_file_name("shapes"));
    xtask::build::build_c_plugin(
        &xtask::workspace_root().join("tests/fixtures/c/shapes.c"),
        &path,
        &[],
    )
    .unwrap_or_else(|e| panic!("building the shapes fixture: {e}"));
    let (rounds, iters) = if quick() {
        (3, 100_000)
    } else {
        (101, 500_000)
    };

    // Reference: the vtable slot read from the descriptor of the dlopen'ed library, called with
    // an instance from the plugin's own `init`.
    // The descriptor stays valid while `_lib` lives (to the end of `main`).
    let (_lib, desc) = raw_descriptor(&path);
    // SAFETY: the fixture declares two interfaces, the shape first.
    let shape: &calc_interface_t = unsafe { &*desc.interfaces };
    // SAFETY: its vtable is a `calc-tests.shape` 1.1 vtable, which starts with `area`.
    let raw_area: AreaFn = unsafe { (*shape.vtable.cast::<Shape>()).area }.expect("area");
    let mut raw_instance: *mut c_void = ptr::null_mut();
    let host = calc_host_table();
    // SAFETY: the fixture's `init` accepts any valid host table and writes its instance.
    let status = unsafe { desc.init.unwrap()(&host, &mut raw_instance, ptr::null_mut(), 0) };
    assert_eq!(status, abi::CALC_STATUS_OK);
    let mut raw = timed_loop(|i: u64| {
        let mut out = 0.0;
        // SAFETY: the fixture's contract: its instance, a writable out.
        let status = unsafe { raw_area(raw_instance, i as f64, 2.0, &mut out) };
        black_box((status == abi::CALC_STATUS_OK).then_some(out));
    });

    // calc: a manager with hot reload on, the provider's handle pinned to the loaded version.
    let mut manager = calc_host::PluginManager::new();
    manager.enable_hot_reload(calc_host::PluginManager::default_copy_dir());
    manager.load_file(&path).expect("load");
    let handle = manager
        .interface_providers("calc-tests.shape", 1)
        .pop()
        .expect("one provider");
    // SAFETY: `Shape` is calc-tests.shape 1.0, the first field of every 1.x vtable.
    let viewed = unsafe { handle.vtable_as::<Shape>() }.expect("vtable");
    let area = viewed.area.expect("area");
    let instance = handle.instance();
    let mut pinned = timed_loop(|i: u64| {
        let mut out = 0.0;
        // SAFETY: as the raw call; the handle keeps the library loaded.
        let status = unsafe { area(instance, i as f64, 2.0, &mut out) };
        black_box((status == abi::CALC_STATUS_OK).then_some(out));
    });
    // The same, viewing the vtable and reading the instance on every call, as a generic
    // wrapper would (size and alignment checks, the handle's plugin behind its `Arc`).
    let mut per_call = timed_loop(|i: u64| {
        let mut out = 0.0;
        // SAFETY: as above.
        let status = unsafe {
            let vtable = black_box(&handle).vtable_as::<Shape>().unwrap_unchecked();
            (vtable.area.unwrap_unchecked())(handle.instance(), i as f64, 2.0, &mut out)
        };
        black_box((status == abi::CALC_STATUS_OK).then_some(out));
    });

    // A handle that follows hot reloads: pin the providers serving now, call the first.
    let live = manager
        .live_interface("calc-tests.shape", 1)
        .expect("live interface");
    let mut live_call = timed_loop(
        #[inline(always)]
        |i: u64| {
            let mut out = 0.0;
            let pinned = live.pin();
            let handle = pinned.first();
            // SAFETY: as above; the pin keeps the provider's version loaded during the call.
            let status = unsafe {
                let handle = handle.unwrap_unchecked();
                let vtable = handle.vtable_as::<Shape>().unwrap_unchecked();
                (vtable.area.unwrap_unchecked())(handle.instance(), i as f64, 2.0, &mut out)
            };
            black_box((status == abi::CALC_STATUS_OK).then_some(out));
        },
    );

    let (t, r) = compare_loops(
        rounds,
        iters,
        &mut [
            ("raw", &mut raw),
            ("pinned", &mut pinned),
            ("per call", &mut per_call),
            ("live", &mut live_call),
        ],
    );
    println!(
        "interface call `area` (C plugin, calc-tests.shape 1.1), median of {rounds} rounds x \
         {iters} calls; ratio = median over rounds of the two figures of the same round"
    );
    row_paired(
        "InterfaceHandle, vtable viewed once",
        ("raw vtable slot", t[0]),
        t[1],
        r[1],
        "ns",
        Some(1.05),
    );
    row_paired(
        "InterfaceHandle, vtable_as + instance per call",
        ("raw vtable slot", t[0]),
        t[2],
        r[2],
        "ns",
        Some(1.05),
    );
    row_paired(
        "LiveInterface::pin + first + call (follows reloads)",
        ("raw vtable slot", t[0]),
        t[3],
        r[3],
        "ns",
        Some(1.5),
    );
    // SAFETY: the raw instance came from this library's `init`; no call is running.
    unsafe { desc.shutdown.unwrap()(raw_instance) };
}

/// A host table for the raw `init`: no service (the fixture checks `get_interface` with
/// `CALC_HOST_HAS`, which a table that ends before it fails).
fn calc_host_table() -> abi::calc_host_api_t {
    abi::calc_host_api_t {
        struct_size: std::mem::offset_of!(abi::calc_host_api_t, get_interface) as u32,
        abi_version: abi::calc_abi_version_t { major: 1, minor: 3 },
        host_version: c"1.0.0".as_ptr(),
        context: ptr::null_mut(),
        log: None,
        get_config: None,
        get_state: None,
        deadline_expired: None,
        deadline_remaining_ns: None,
        get_interface: None,
    }
}
