//! The cooperative deadline (ABI 1.3): a plugin call made under `calc_host::deadline::
//! with_deadline` sees the deadline through the host services `deadline_expired` and
//! `deadline_remaining_ns`, and a long-running operation that polls them stops early.
//!
//! Fixtures: `tests/fixtures/c/slow.c` (C, through `CALC_DEADLINE_EXPIRED` / `CALC_HOST_HAS`) and
//! `calc-fixture-rust-slow` (Rust, through `Host::deadline_expired`). Both have `spin(ms)`, which
//! busy-works for `ms` milliseconds unless the deadline passes first ("deadline exceeded"), and
//! `remaining()`, the milliseconds left before the deadline (-1 without one).

use std::ffi::{c_char, c_void};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use calc_host::deadline::with_deadline;
use calc_host::PluginManager;
use calc_sdk::abi::{self, calc_host_api_t, calc_operation_t, calc_plugin_t};
use calc_sdk::Status;
use calc_tests::{
    build_c_plugin, build_c_plugin_with, c_compiler, cargo_build, library_file_name, scratch_dir,
    workspace_root,
};

/// How long `spin` runs when nothing stops it: long enough that stopping at a 50 ms deadline is
/// unmistakable, short enough not to slow the suite when something is wrong.
const NATURAL_MS: f64 = 4000.0;

fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| scratch_dir(&format!("deadline-{}", std::process::id())))
}

fn slow_c_source() -> PathBuf {
    workspace_root().join("tests/fixtures/c/slow.c")
}

/// `slow.c` built against today's headers (ABI 1.3).
fn c_plugin() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let lib = dir().join(library_file_name("slow"));
        build_c_plugin(&slow_c_source(), &lib, &[]).unwrap_or_else(|e| panic!("{e}"));
        lib
    })
}

/// The Rust fixture, built by cargo.
fn rust_plugin() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let artifacts = cargo_build(&["calc-fixture-rust-slow"]).unwrap_or_else(|e| panic!("{e}"));
        let file = library_file_name("rust_slow");
        let lib = dir().join(&file);
        xtask::build::copy_fresh(&artifacts.join(&file), &lib).unwrap_or_else(|e| panic!("{e}"));
        lib
    })
}

/// Both fixtures: (label, library).
fn fixtures() -> [(&'static str, &'static Path); 2] {
    [("C", c_plugin()), ("Rust", rust_plugin())]
}

fn load(lib: &Path) -> PluginManager {
    let mut m = PluginManager::new();
    m.load_file(lib).unwrap_or_else(|e| panic!("{e}"));
    m
}

#[test]
fn spin_stops_at_the_deadline_well_before_its_natural_end() {
    for (label, lib) in fixtures() {
        let m = load(lib);
        let spin = m.operation("spin").expect("spin");
        let start = Instant::now();
        let result = with_deadline(Some(start + Duration::from_millis(50)), || {
            spin.call(&[NATURAL_MS])
        });
        let took = start.elapsed();
        let err = result.expect_err(label);
        assert_eq!(err.status, Status::Error, "{label}: {err}");
        assert_eq!(err.message, "deadline exceeded", "{label}: {err}");
        // It stops only once the deadline has passed, and long before its own end.
        assert!(took >= Duration::from_millis(50), "{label}: {took:?}");
        assert!(
            took.as_secs_f64() * 1e3 < NATURAL_MS / 4.0,
            "{label}: stopped after {took:?}"
        );
        // The deadline is gone after `with_deadline`: the plugin keeps working.
        assert_eq!(spin.call(&[1.0]), Ok(1.0), "{label}");
    }
}

#[test]
fn spin_without_a_deadline_runs_to_its_end() {
    for (label, lib) in fixtures() {
        let m = load(lib);
        let start = Instant::now();
        assert_eq!(
            m.operation("spin").unwrap().call(&[120.0]),
            Ok(120.0),
            "{label}"
        );
        assert!(start.elapsed() >= Duration::from_millis(120), "{label}");
        // A deadline far enough away does not stop it either.
        let far = Instant::now() + Duration::from_secs(3600);
        let r = with_deadline(Some(far), || m.operation("spin").unwrap().call(&[20.0]));
        assert_eq!(r, Ok(20.0), "{label}");
    }
}

#[test]
fn the_plugin_sees_the_time_left_and_no_deadline_outside_with_deadline() {
    for (label, lib) in fixtures() {
        let m = load(lib);
        let remaining = m.operation("remaining").unwrap();
        assert_eq!(remaining.call(&[]), Ok(-1.0), "{label}");
        let left = with_deadline(Some(Instant::now() + Duration::from_secs(10)), || {
            remaining.call(&[]).unwrap()
        });
        assert!(left > 9000.0 && left <= 10000.0, "{label}: {left} ms");
        let past = with_deadline(Some(Instant::now()), || remaining.call(&[]).unwrap());
        assert_eq!(past, 0.0, "{label}");
        assert_eq!(remaining.call(&[]), Ok(-1.0), "{label}");
    }
}

#[test]
fn a_deadline_belongs_to_the_thread_that_set_it() {
    for (label, lib) in fixtures() {
        let m = load(lib);
        let spin = m.operation("spin").unwrap();
        with_deadline(Some(Instant::now()), || {
            // Expired on this thread; a call on another thread has no deadline.
            let other = std::thread::scope(|s| s.spawn(|| spin.call(&[30.0])).join().unwrap());
            assert_eq!(other, Ok(30.0), "{label}");
            assert!(spin.call(&[30.0]).is_err(), "{label}");
        });
    }
}

/// A plugin built from the frozen 1.0, 1.1 and 1.2 headers loads in the 1.3 host and works; it
/// cannot see the deadline, so it runs to its end under one (the cooperative deadline does not
/// interrupt anything).
#[test]
fn plugins_built_against_older_headers_load_and_ignore_the_deadline() {
    for version in ["v1.0", "v1.1", "v1.2"] {
        let include = workspace_root().join("tests/abi").join(version);
        let lib = dir().join(version).join(library_file_name("slow"));
        build_c_plugin_with(&c_compiler(), &include, &slow_c_source(), &lib)
            .unwrap_or_else(|e| panic!("{version}: {e}"));
        let mut m = PluginManager::new();
        let info = m
            .load_file(&lib)
            .unwrap_or_else(|e| panic!("{version}: {e}"));
        assert_eq!(format!("v{}", info.abi_version), version);
        let spin = m.operation("spin").unwrap();
        let start = Instant::now();
        let r = with_deadline(Some(start + Duration::from_millis(20)), || {
            spin.call(&[150.0])
        });
        assert_eq!(r, Ok(150.0), "{version}");
        assert!(start.elapsed() >= Duration::from_millis(150), "{version}");
        let remaining = m.operation("remaining").unwrap();
        let left = with_deadline(Some(Instant::now() + Duration::from_secs(10)), || {
            remaining.call(&[])
        });
        assert_eq!(left, Ok(-1.0), "{version}");
    }
}

/// A plugin built against the 1.3 headers but declaring ABI 1.2 (so that 1.2 hosts load it too)
/// still uses the deadline in a 1.3 host: C with `SLOW_ABI_MINOR=2`, the Rust fixture with
/// `Plugin::ABI_MINOR = 2`.
#[test]
fn a_plugin_declaring_1_2_uses_the_deadline_when_the_host_has_it() {
    let lib = dir().join("requires-1.2").join(library_file_name("slow"));
    build_c_plugin(&slow_c_source(), &lib, &["-DSLOW_ABI_MINOR=2"])
        .unwrap_or_else(|e| panic!("{e}"));
    for (label, lib) in [("C", lib.as_path()), ("Rust", rust_plugin())] {
        let mut m = PluginManager::new();
        let info = m.load_file(lib).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(info.abi_version, "1.2", "{label}");
        let start = Instant::now();
        let r = with_deadline(Some(start + Duration::from_millis(50)), || {
            m.operation("spin").unwrap().call(&[NATURAL_MS])
        });
        assert_eq!(
            r.map_err(|e| e.message.clone()),
            Err("deadline exceeded".into()),
            "{label}"
        );
        assert!(
            start.elapsed().as_secs_f64() * 1e3 < NATURAL_MS / 4.0,
            "{label}"
        );
    }
}

/// Calls of the fake deadline services below, to tell "skipped" from "called".
static FAKE_CALLS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn fake_expired(_context: *mut c_void) -> i32 {
    FAKE_CALLS.fetch_add(1, Ordering::SeqCst);
    1
}

extern "C" fn fake_remaining(_context: *mut c_void) -> u64 {
    FAKE_CALLS.fetch_add(1, Ordering::SeqCst);
    7_000_000
}

extern "C" fn fake_log(_context: *mut c_void, _level: i32, _message: *const c_char) {}

extern "C" fn fake_config(_context: *mut c_void, _key: *const c_char) -> *const c_char {
    std::ptr::null()
}

/// # Safety
/// The out-pointers must be writable (the `calc_get_state_fn` contract).
unsafe extern "C" fn fake_state(
    _context: *mut c_void,
    out_data: *mut *const c_void,
    out_len: *mut usize,
) -> i32 {
    // SAFETY: the plugin passes writable out-pointers (calc_get_state_fn contract).
    unsafe {
        *out_data = std::ptr::null();
        *out_len = 0;
    }
    0
}

/// Plays an older host by hand: loads `lib`, calls `init` with a host table whose `struct_size`
/// is `struct_size` (every service present in memory, deadline services that always say
/// "expired, 7 ms left"), and returns what `spin(30)` and `remaining()` give, with the number of
/// deadline-service calls they made.
fn run_with_table(lib: &Path, struct_size: usize) -> (Result<f64, String>, f64, usize) {
    let api = calc_host_api_t {
        struct_size: struct_size as u32,
        abi_version: abi::calc_abi_version_t {
            major: 1,
            minor: if struct_size >= std::mem::offset_of!(calc_host_api_t, deadline_expired) {
                3
            } else {
                2
            },
        },
        host_version: c"1.0.0".as_ptr(),
        context: std::ptr::null_mut(),
        log: Some(fake_log),
        get_config: Some(fake_config),
        get_state: Some(fake_state),
        deadline_expired: Some(fake_expired),
        deadline_remaining_ns: Some(fake_remaining),
        get_interface: None,
    };
    FAKE_CALLS.store(0, Ordering::SeqCst);
    // SAFETY: `lib` is one of this test's fixtures, a valid calc plugin built for ABI 1.3: its
    // descriptor and operations have the 1.3 layout, `init` accepts a host table valid until
    // `shutdown`, and `execute` accepts the instance `init` returned with in-range arguments.
    unsafe {
        let library = libloading::Library::new(lib).expect("dlopen");
        let entry: libloading::Symbol<abi::calc_plugin_entry_fn> =
            library.get(b"plugin_entry\0").expect("plugin_entry");
        let d: &calc_plugin_t = &*(entry.expect("non-NULL entry"))();
        let ops = std::slice::from_raw_parts(d.operations, d.operation_count as usize);
        let op = |name: &str| {
            ops.iter()
                .find(|o| std::ffi::CStr::from_ptr(o.name).to_str() == Ok(name))
                .and_then(|o: &calc_operation_t| o.execute)
                .expect(name)
        };
        let mut instance: *mut c_void = std::ptr::null_mut();
        let mut err = [0 as c_char; abi::CALC_ERROR_BUF_SIZE as usize];
        let status = d.init.expect("init")(&api, &mut instance, err.as_mut_ptr(), err.len());
        assert_eq!(status, abi::CALC_STATUS_OK);
        let mut out = 0.0;
        let status = op("spin")(
            instance,
            [30.0].as_ptr(),
            1,
            &mut out,
            err.as_mut_ptr(),
            err.len(),
        );
        let spin = if status == abi::CALC_STATUS_OK {
            Ok(out)
        } else {
            Err(std::ffi::CStr::from_ptr(err.as_ptr())
                .to_string_lossy()
                .into_owned())
        };
        let mut left = 0.0;
        let status = op("remaining")(
            instance,
            std::ptr::null(),
            0,
            &mut left,
            err.as_mut_ptr(),
            err.len(),
        );
        assert_eq!(status, abi::CALC_STATUS_OK);
        if let Some(shutdown) = d.shutdown {
            shutdown(instance);
        }
        // `api` outlives the instance: shutdown has returned.
        (spin, left, FAKE_CALLS.load(Ordering::SeqCst))
    }
}

/// A plugin using the 1.3 services in a host whose table is shorter (a 1.2 host: `struct_size`
/// ends before `deadline_expired`; such a host loads the Rust fixture, which declares 1.2) never
/// calls the deadline services and behaves as without a deadline; given the full table, it uses
/// them.
#[test]
fn a_1_3_plugin_checks_struct_size_before_using_the_deadline_services() {
    let short = std::mem::offset_of!(calc_host_api_t, deadline_expired);
    let full = std::mem::size_of::<calc_host_api_t>();
    for (label, lib) in fixtures() {
        let (spin, left, calls) = run_with_table(lib, short);
        assert_eq!(spin, Ok(30.0), "{label}");
        assert_eq!(left, -1.0, "{label}");
        assert_eq!(calls, 0, "{label}: a service beyond struct_size was called");

        let (spin, left, calls) = run_with_table(lib, full);
        assert_eq!(spin, Err("deadline exceeded".to_string()), "{label}");
        assert_eq!(left, 7.0, "{label}");
        assert!(calls >= 2, "{label}: {calls} calls");
    }
}
