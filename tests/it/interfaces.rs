//! Application-defined interfaces (ABI 1.4): a plugin's table of interfaces is validated before
//! any of its code but `plugin_entry` runs, listed in its metadata, and reached through handles
//! that pin the library; broken and hostile tables are refused with one line naming the file,
//! and a plugin built against an older ABI reads as declaring none.

use std::ffi::{c_char, c_void, CString};
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::ptr;

use calc_host::loader::{self, validate_descriptor};
use calc_host::{InterfaceInfo, LoadError, PluginManager};
use calc_sdk::abi::{self, calc_abi_version_t, calc_interface_t, calc_plugin_t, calc_status_t};
use calc_tests::{build_c_plugin, library_file_name, scratch_dir, workspace_root};

/// `calc-tests.shape` as the application defines it (tests/fixtures/c/shapes.c), at 1.0 ...
#[repr(C)]
struct ShapeV1_0 {
    area: Option<unsafe extern "C" fn(*mut c_void, f64, f64, *mut f64) -> calc_status_t>,
}

/// ... and at 1.1, which appended `sides`.
#[repr(C)]
struct ShapeV1_1 {
    area: Option<unsafe extern "C" fn(*mut c_void, f64, f64, *mut f64) -> calc_status_t>,
    sides: Option<unsafe extern "C" fn(*mut c_void) -> i32>,
}

/// `calc-tests.counter` 2.0.
#[repr(C)]
struct CounterV2 {
    next: Option<unsafe extern "C" fn(*mut c_void) -> u64>,
}

fn build_shapes(dir: &Path, name: &str, defines: &[&str]) -> PathBuf {
    let out = dir.join(library_file_name(name));
    build_c_plugin(
        &workspace_root().join("tests/fixtures/c/shapes.c"),
        &out,
        defines,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::canonicalize(&out).unwrap()
}

/// Calls `area` through a handle's vtable.
fn area(handle: &calc_host::InterfaceHandle, w: f64, h: f64) -> (calc_status_t, f64) {
    // SAFETY: `ShapeV1_0` is the vtable type of calc-tests.shape major 1, whose first field
    // every minor has; the fixture's functions take the instance the handle gives.
    let vtable = unsafe { handle.vtable_as::<ShapeV1_0>() }.expect("1.0 part present");
    let mut out = f64::NAN;
    // SAFETY: as above; `out` is writable.
    let status = unsafe { vtable.area.unwrap()(handle.instance(), w, h, &mut out) };
    (status, out)
}

#[test]
fn a_plugin_lists_its_interfaces_and_handles_call_its_vtables_with_its_instance() {
    let dir = scratch_dir(&format!("interfaces-{}", std::process::id()));
    let lib = build_shapes(&dir, "shapes", &[]);
    let mut m = PluginManager::new();
    let info = m.load_file(&lib).unwrap_or_else(|e| panic!("{e}")).clone();
    assert_eq!(info.abi_version, "1.4");
    assert!(info.operations.is_empty());
    assert_eq!(
        info.interfaces,
        [
            InterfaceInfo {
                id: "calc-tests.shape".into(),
                major: 1,
                minor: 1,
                vtable_size: size_of::<ShapeV1_1>() as u32,
                bytes: false,
            },
            InterfaceInfo {
                id: "calc-tests.counter".into(),
                major: 2,
                minor: 0,
                vtable_size: size_of::<CounterV2>() as u32,
                bytes: false,
            },
            InterfaceInfo {
                id: "calc-tests.text".into(),
                major: 1,
                minor: 0,
                vtable_size: 5 * size_of::<usize>() as u32,
                bytes: true,
            },
        ]
    );
    assert_eq!(info.interfaces[0].to_string(), "calc-tests.shape 1.1");

    let shapes = m.interface_providers("calc-tests.shape", 1);
    assert_eq!(shapes.len(), 1);
    let shape = &shapes[0];
    assert_eq!(shape.plugin().name, "shapes");
    assert!(shape.covers(size_of::<ShapeV1_1>()));
    assert!(!shape.covers(size_of::<ShapeV1_1>() + 1));
    assert_eq!(area(shape, 2.0, 3.5), (abi::CALC_STATUS_OK, 7.0));
    assert_eq!(area(shape, -1.0, 3.0).0, abi::CALC_STATUS_DOMAIN_ERROR);
    // SAFETY: as in `area`, at minor 1, which this plugin's vtable holds (checked by the call).
    let v11 = unsafe { shape.vtable_as::<ShapeV1_1>() }.expect("1.1 vtable");
    // SAFETY: the fixture's `sides` takes the instance.
    assert_eq!(unsafe { v11.sides.unwrap()(shape.instance()) }, 4);
    // The plugin's functions check the instance: another pointer is refused.
    let mut out = 0.0;
    let mut other = 0u64;
    // SAFETY: the fixture reads a u64 through the pointer it is given before refusing it.
    let status = unsafe { v11.area.unwrap()((&mut other as *mut u64).cast(), 1.0, 1.0, &mut out) };
    assert_eq!(status, abi::CALC_STATUS_INVALID_ARGUMENT);

    // The instance is the plugin's, shared by its interfaces.
    let counters = m.interface_providers("calc-tests.counter", 2);
    assert_eq!(counters.len(), 1);
    assert_eq!(counters[0].instance(), shape.instance());
    // SAFETY: `CounterV2` is calc-tests.counter 2.0, which the plugin declares in full.
    let counter = unsafe { counters[0].vtable_as::<CounterV2>() }.unwrap();
    // SAFETY: the fixture's `next` takes the instance.
    let counts: Vec<u64> = (0..3)
        .map(|_| unsafe { counter.next.unwrap()(counters[0].instance()) })
        .collect();
    assert_eq!(counts, [1, 2, 3]);

    // Other majors and unknown ids have no provider.
    assert!(m.interface_providers("calc-tests.shape", 2).is_empty());
    assert!(m.interface_providers("calc-tests.counter", 1).is_empty());
    assert!(m.interface_providers("calc-tests.nothing", 1).is_empty());
}

#[test]
fn a_handle_keeps_its_library_loaded_after_the_plugin_is_unloaded() {
    let dir = scratch_dir(&format!("interfaces-pin-{}", std::process::id()));
    let lib = build_shapes(&dir, "shapes_pinned", &["-DSHAPES_SCALE=3"]);
    let mut m = PluginManager::new();
    m.load_file(&lib).unwrap_or_else(|e| panic!("{e}"));
    let handle = m
        .interface_providers("calc-tests.shape", 1)
        .pop()
        .expect("one provider");
    assert!(m.unload("shapes"));
    assert!(m.interface_providers("calc-tests.shape", 1).is_empty());
    assert_eq!(loader::still_mapped(&lib), Some(true), "the handle pins it");
    assert_eq!(area(&handle, 2.0, 2.0), (abi::CALC_STATUS_OK, 12.0));
    drop(handle);
    assert_eq!(
        loader::still_mapped(&lib),
        Some(false),
        "unloaded with the last handle"
    );
}

#[test]
fn a_vtable_built_against_an_older_interface_minor_is_only_read_as_far_as_it_goes() {
    let dir = scratch_dir(&format!("interfaces-minor-{}", std::process::id()));
    let lib = build_shapes(&dir, "shapes_minor0", &["-DSHAPE_MINOR0"]);
    let mut m = PluginManager::new();
    let info = m.load_file(&lib).unwrap_or_else(|e| panic!("{e}")).clone();
    assert_eq!((info.interfaces[0].major, info.interfaces[0].minor), (1, 0));
    let handle = m.interface_providers("calc-tests.shape", 1).pop().unwrap();
    assert_eq!(handle.vtable_size(), offset_of!(ShapeV1_1, sides));
    assert!(!handle.covers(offset_of!(ShapeV1_1, sides) + size_of::<usize>()));
    // SAFETY: the types are calc-tests.shape's; the size check refuses the newer one.
    assert!(unsafe { handle.vtable_as::<ShapeV1_1>() }.is_none());
    assert_eq!(area(&handle, 2.0, 3.0), (abi::CALC_STATUS_OK, 6.0));
}

#[test]
fn a_plugin_built_against_abi_1_3_declares_no_interfaces() {
    let dir = scratch_dir(&format!("interfaces-old-{}", std::process::id()));
    let out = dir.join(library_file_name("add_v13"));
    calc_tests::build_c_plugin_with(
        &calc_tests::c_compiler(),
        &workspace_root().join("tests/abi/v1.3"),
        &workspace_root().join("examples-c/add/plugin.c"),
        &out,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut m = PluginManager::new();
    let info = m.load_file(&out).unwrap_or_else(|e| panic!("{e}")).clone();
    assert_eq!(info.abi_version, "1.3");
    assert!(info.interfaces.is_empty());
    assert_eq!(m.eval("2 + 3"), Ok(5.0));
}

// ---------------------------------------------------------------------------------------------
// Broken and hostile tables, validated in memory (`validate_descriptor`, what the loader runs on
// the descriptor `plugin_entry` returns).

const PATH: &str = "/plugins/libiface.so";

/// Never called: validation must not call anything in a vtable.
unsafe extern "C" fn never(_: *mut c_void) -> u64 {
    unreachable!("validation called a vtable function")
}

static VTABLE_A: CounterV2 = CounterV2 { next: Some(never) };
static VTABLE_B: [u64; 4] = [1, 2, 3, 4];

/// One entry: id (None: NULL), version, vtable size, vtable address.
struct Entry(Option<&'static str>, (u16, u16), u32, usize);

fn ok_entry(id: &'static str, major: u16) -> Entry {
    Entry(
        Some(id),
        (major, 3),
        size_of::<CounterV2>() as u32,
        &VTABLE_A as *const CounterV2 as usize,
    )
}

/// A valid 1.4 descriptor with `entries`, where `table`, `count` and `size` override the
/// table's pointer, count and element size when given.
struct Table {
    entries: Vec<Entry>,
    table: Option<usize>,
    count: Option<u32>,
    size: Option<u32>,
    /// The `flags` of every entry.
    flags: u32,
}

impl Table {
    fn of(entries: Vec<Entry>) -> Table {
        Table {
            entries,
            table: None,
            count: None,
            size: None,
            flags: 0,
        }
    }

    fn validate(&self) -> Result<calc_host::loader::Validated, LoadError> {
        let text = |s: &str| CString::new(s).unwrap();
        let strings: Vec<CString> = ["iface", "1.0.0", calc_sdk::SDK_VERSION, "^1"]
            .iter()
            .map(|s| text(s))
            .collect();
        let ids: Vec<Option<CString>> = self.entries.iter().map(|e| e.0.map(text)).collect();
        let table: Vec<calc_interface_t> = self
            .entries
            .iter()
            .zip(&ids)
            .map(|(e, id)| calc_interface_t {
                id: id.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
                version: calc_abi_version_t {
                    major: e.1 .0,
                    minor: e.1 .1,
                },
                vtable_size: e.2,
                vtable: e.3 as *const c_void,
                flags: self.flags,
            })
            .collect();
        let desc = calc_plugin_t {
            magic: abi::CALC_PLUGIN_MAGIC,
            struct_size: size_of::<calc_plugin_t>() as u32,
            abi_version: calc_abi_version_t {
                major: abi::CALC_ABI_VERSION_MAJOR,
                minor: 4,
            },
            name: strings[0].as_ptr(),
            version: strings[1].as_ptr(),
            author: ptr::null(),
            description: ptr::null(),
            sdk_version: strings[2].as_ptr(),
            api_requirement: strings[3].as_ptr(),
            flags: 0,
            init: None,
            shutdown: None,
            operations: ptr::null(),
            operation_count: 0,
            operation_size: 0,
            save_state: None,
            interfaces: self
                .table
                .map_or(table.as_ptr(), |t| t as *const calc_interface_t),
            interface_count: self.count.unwrap_or(table.len() as u32),
            interface_size: self.size.unwrap_or(size_of::<calc_interface_t>() as u32),
        };
        validate_descriptor(Path::new(PATH), &desc)
    }
}

/// Validation refuses `table` with an error of kind `kind` whose line contains `part`.
fn refused(table: Table, kind: &str, part: &str) {
    let error = table.validate().map(|v| v.info).expect_err(part);
    let line = error.to_string();
    assert_eq!(error.kind(), kind, "{line}");
    assert!(line.starts_with(PATH), "{line}");
    assert!(line.contains(part), "{line:?} lacks {part:?}");
    assert!(!line.contains('\n'), "{line:?}");
}

#[test]
fn a_valid_table_is_kept_as_declared_and_no_vtable_function_is_called() {
    let mut b = ok_entry("acme.lint", 1);
    b.2 = 32;
    b.3 = VTABLE_B.as_ptr() as usize;
    let v = Table::of(vec![ok_entry("acme.fmt", 1), ok_entry("acme.fmt", 2), b])
        .validate()
        .unwrap_or_else(|e| panic!("{e}"));
    let listed: Vec<String> = v.info.interfaces.iter().map(|i| i.to_string()).collect();
    assert_eq!(listed, ["acme.fmt 1.3", "acme.fmt 2.3", "acme.lint 1.3"]);
    assert_eq!(
        v.vtables,
        [
            &VTABLE_A as *const CounterV2 as usize,
            &VTABLE_A as *const CounterV2 as usize,
            VTABLE_B.as_ptr() as usize
        ]
    );
    // No interfaces at all is valid too, with a NULL table.
    let none = Table {
        table: Some(0),
        ..Table::of(vec![])
    };
    assert!(none.validate().unwrap().info.interfaces.is_empty());
}

#[test]
fn broken_tables_are_refused_with_one_line_naming_the_file_and_the_field() {
    let max = abi::CALC_MAX_INTERFACES;
    refused(
        Table {
            count: Some(max + 1),
            ..Table::of(vec![ok_entry("a.b", 1)])
        },
        "invalid_field",
        &format!(
            "invalid interfaces: {} interfaces, more than the {max} allowed",
            max + 1
        ),
    );
    refused(
        Table {
            table: Some(0),
            count: Some(1),
            ..Table::of(vec![])
        },
        "invalid_field",
        "invalid interfaces: NULL table with interface_count 1",
    );
    refused(
        Table {
            size: Some(8),
            ..Table::of(vec![ok_entry("a.b", 1)])
        },
        "struct_size",
        "calc_plugin_t.interface_size is 8 bytes, smaller than the 32 bytes ABI 1.4 requires",
    );
    refused(
        Table {
            size: Some(0x4000_0000),
            ..Table::of(vec![ok_entry("a.b", 1)])
        },
        "invalid_field",
        "invalid calc_plugin_t.interface_size: 1073741824 bytes, more than the 4096",
    );
    refused(
        Table {
            table: Some(0x3000),
            count: Some(2),
            ..Table::of(vec![])
        },
        "unreadable_memory",
        "interfaces[0] at 0x3000 is not readable memory",
    );
    refused(
        Table::of(vec![Entry(None, (1, 0), 8, VTABLE_B.as_ptr() as usize)]),
        "invalid_field",
        "invalid interfaces[0].id: NULL",
    );
    for bad in [
        "formatter",
        "Acme.fmt",
        "acme..fmt",
        "acme.fmt.",
        "acme fmt.x",
    ] {
        refused(
            Table::of(vec![ok_entry(bad, 1)]),
            "invalid_field",
            &format!("invalid interfaces[0].id: {bad:?} is not an interface id"),
        );
    }
    let long: &'static str = Box::leak(format!("a.{}", "b".repeat(127)).into_boxed_str());
    refused(
        Table::of(vec![ok_entry(long, 1)]),
        "invalid_field",
        "is not an interface id",
    );
    refused(
        Table::of(vec![
            ok_entry("a.b", 1),
            ok_entry("a.c", 1),
            ok_entry("a.b", 1),
        ]),
        "invalid_field",
        "invalid interfaces[2] (a.b).id: declared twice for major 1 in this plugin",
    );
    let vtable = VTABLE_B.as_ptr() as usize;
    for size in [0, abi::CALC_MAX_VTABLE_SIZE + 1, u32::MAX] {
        refused(
            Table::of(vec![Entry(Some("a.b"), (1, 0), size, vtable)]),
            "invalid_field",
            &format!("invalid interfaces[0] (a.b).vtable_size: {size} bytes, not 1 to 4096"),
        );
    }
    refused(
        Table::of(vec![Entry(Some("a.b"), (1, 0), 8, 0)]),
        "invalid_field",
        "invalid interfaces[0] (a.b).vtable: NULL",
    );
    refused(
        Table::of(vec![Entry(Some("a.b"), (1, 0), 16, 0x3000)]),
        "invalid_field",
        "invalid interfaces[0] (a.b).vtable: 16 bytes at 0x3000, of which only 0 are readable",
    );
    refused(
        Table {
            flags: 6,
            ..Table::of(vec![ok_entry("a.b", 1)])
        },
        "invalid_field",
        "invalid interfaces[0] (a.b).flags: 0x6 has bits no ABI 1.4 flag defines",
    );
    // A bytes interface: whole functions, all of them code.
    static HALF_SET: [Option<unsafe extern "C" fn(*mut c_void) -> u64>; 2] = [Some(never), None];
    let data = VTABLE_B.as_ptr() as usize;
    for (size, vtable, part) in [
        (
            12,
            data,
            "vtable_size: 12 bytes, not a whole number of functions",
        ),
        (16, data, "vtable[0]: 0x1 is not code"),
        (16, HALF_SET.as_ptr() as usize, "vtable[1]: 0x0 is not code"),
    ] {
        refused(
            Table {
                flags: abi::CALC_INTERFACE_FLAG_BYTES,
                ..Table::of(vec![Entry(Some("a.b"), (1, 0), size, vtable)])
            },
            "invalid_field",
            &format!("invalid interfaces[0] (a.b).{part}"),
        );
    }
    // The same vtable of functions is a valid bytes interface.
    let v = Table {
        flags: abi::CALC_INTERFACE_FLAG_BYTES,
        ..Table::of(vec![ok_entry("a.b", 1)])
    }
    .validate()
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(v.info.interfaces[0].bytes);
    assert_eq!(v.info.interfaces[0].to_string(), "a.b 1.3 (bytes)");
}

#[test]
fn an_older_descriptor_declares_no_interfaces_whatever_follows_it() {
    // A 1.3 descriptor is 112 bytes: whatever lies after it (here a table that would be
    // refused) is not part of it.
    let text = |s: &str| CString::new(s).unwrap();
    let strings = [text("old"), text("1.0.0"), text("1.0.0"), text("^1")];
    let p = |i: usize| strings[i].as_ptr() as *const c_char;
    let desc = calc_plugin_t {
        magic: abi::CALC_PLUGIN_MAGIC,
        struct_size: offset_of!(calc_plugin_t, interfaces) as u32,
        abi_version: calc_abi_version_t {
            major: abi::CALC_ABI_VERSION_MAJOR,
            minor: 3,
        },
        name: p(0),
        version: p(1),
        author: ptr::null(),
        description: ptr::null(),
        sdk_version: p(2),
        api_requirement: p(3),
        flags: 0,
        init: None,
        shutdown: None,
        operations: ptr::null(),
        operation_count: 0,
        operation_size: 0,
        save_state: None,
        interfaces: 0x3000 as *const calc_interface_t,
        interface_count: u32::MAX,
        interface_size: u32::MAX,
    };
    let v = validate_descriptor(Path::new(PATH), &desc).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.info.abi_version, "1.3");
    assert!(v.info.interfaces.is_empty());
    assert!(v.vtables.is_empty());
}

#[test]
fn plugins_check_lists_the_interfaces_vetted_in_a_child() {
    let dir = scratch_dir(&format!("interfaces-cli-{}", std::process::id()));
    let lib = build_shapes(&dir, "shapes_cli", &[]);
    let out = calc_tests::run_calc(&["plugins", "check", lib.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("shapes 1.0.0 (ABI 1.4)")
            && text.contains("\n  - interface calc-tests.shape 1.1\n")
            && text.contains("\n  - interface calc-tests.counter 2.0\n")
            && text.contains("\n  - interface calc-tests.text 1.0 (bytes)\n"),
        "{text}"
    );
    // A directory listing shows them too, from the metadata cache as well as without it.
    for cache in [&[][..], &["--no-cache"][..]] {
        let mut args = vec!["--plugin-dir", dir.to_str().unwrap(), "plugins", "list"];
        args.extend_from_slice(cache);
        let out = calc_tests::run_calc(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("shapes 1.0.0 (ABI 1.4)"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("\n  - interface calc-tests.counter 2.0\n"),
            "{args:?}: {text}"
        );
    }
    let out = calc_tests::run_calc(&["plugins", "check", "--json", lib.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json[0]["plugin"]["interfaces"],
        serde_json::json!([
            {"id": "calc-tests.shape", "major": 1, "minor": 1, "vtable_size": 16, "bytes": false},
            {"id": "calc-tests.counter", "major": 2, "minor": 0, "vtable_size": 8, "bytes": false},
            {"id": "calc-tests.text", "major": 1, "minor": 0, "vtable_size": 40, "bytes": true},
        ])
    );
}

/// `calc-tests.host` 1.0, the interface this test's host offers (tests/fixtures/c/shapes.c).
#[repr(C)]
struct TestHostV1 {
    step: unsafe extern "C" fn() -> u64,
}

unsafe extern "C" fn step_by_ten() -> u64 {
    10
}

static TEST_HOST: TestHostV1 = TestHostV1 { step: step_by_ten };

/// Three calls of the shapes plugin's counter, through the manager's provider.
fn three_counts(m: &PluginManager) -> Vec<u64> {
    let counter = m
        .interface_providers("calc-tests.counter", 2)
        .pop()
        .unwrap();
    // SAFETY: `CounterV2` is calc-tests.counter 2.0, which the plugin declares in full.
    let vtable = unsafe { counter.vtable_as::<CounterV2>() }.unwrap();
    (0..3)
        .map(|_| {
            // SAFETY: the fixture's `next` takes the instance the handle gives.
            unsafe { vtable.next.unwrap()(counter.instance()) }
        })
        .collect()
}

#[test]
fn a_plugin_finds_the_interface_the_application_offers() {
    let dir = scratch_dir(&format!("interfaces-host-{}", std::process::id()));
    let lib = build_shapes(&dir, "shapes_host", &[]);
    let offer = calc_host::HostInterface::new("calc-tests.host", 1, 0, &TEST_HOST).unwrap();
    assert_eq!(offer.to_string(), "calc-tests.host 1.0");

    // Not offered: the plugin steps by its own 1.
    let mut m = PluginManager::new();
    m.load_file(&lib).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(three_counts(&m), [1, 2, 3]);

    // Offered before the load: the plugin's init found it and steps by the host's 10.
    let mut m = PluginManager::new();
    m.offer_interface(offer.clone()).unwrap();
    m.load_file(&lib).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(three_counts(&m), [10, 20, 30]);
    assert_eq!(m.offered_interfaces().len(), 1);

    // Another major of the same id is another interface: the plugin asks for 1 only.
    let mut m = PluginManager::new();
    m.offer_interface(calc_host::HostInterface::new("calc-tests.host", 2, 0, &TEST_HOST).unwrap())
        .unwrap();
    m.load_file(&lib).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(three_counts(&m), [1, 2, 3]);

    // The same id and major twice, and malformed offers, are refused.
    let error = m
        .offer_interface(
            calc_host::HostInterface::new("calc-tests.host", 2, 1, &TEST_HOST).unwrap(),
        )
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "interface \"calc-tests.host\": major 2 is already offered"
    );
    let error = calc_host::HostInterface::new("host", 1, 0, &TEST_HOST).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("interface \"host\": not an interface id"),
        "{error}"
    );
    static HUGE: [u8; 4097] = [0; 4097];
    let error = calc_host::HostInterface::new("a.b", 1, 0, &HUGE).unwrap_err();
    assert_eq!(
        error.to_string(),
        "interface \"a.b\": a vtable of 4097 bytes, not 1 to 4096"
    );
}

/// The Rust fixture (`tests/fixtures/rust-shapes`), built once per process.
fn rust_shapes() -> PathBuf {
    let dir =
        calc_tests::cargo_build(&["calc-fixture-rust-shapes"]).unwrap_or_else(|e| panic!("{e}"));
    dir.join(library_file_name("rust_shapes"))
}

#[test]
fn a_rust_plugin_implements_interfaces_through_safe_traits() {
    let source =
        std::fs::read_to_string(workspace_root().join("tests/fixtures/rust-shapes/src/lib.rs"))
            .unwrap();
    let code: Vec<&str> = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    assert!(
        code.iter().all(|l| !l.contains("unsafe")),
        "the plugin itself needs no unsafe"
    );
    let lib = rust_shapes();
    for offer in [false, true] {
        let mut m = PluginManager::new();
        if offer {
            m.offer_interface(
                calc_host::HostInterface::new("calc-tests.host", 1, 0, &TEST_HOST).unwrap(),
            )
            .unwrap();
        }
        let info = m.load_file(&lib).unwrap_or_else(|e| panic!("{e}")).clone();
        let listed: Vec<String> = info.interfaces.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            listed,
            [
                "calc-tests.shape 1.1",
                "calc-tests.counter 2.0",
                "calc-tests.rust-text 1.0 (bytes)"
            ]
        );
        let text = m
            .interface_providers("calc-tests.rust-text", 1)
            .pop()
            .unwrap();
        assert_eq!(text.call_bytes(0, b"rust").unwrap(), b"RUST");
        let error = text.call_bytes(1, b"no").unwrap_err();
        assert_eq!(
            (error.status, error.message.as_str()),
            (calc_sdk::Status::DomainError, "refused: no")
        );
        assert_eq!(
            info.interfaces[0].vtable_size as usize,
            size_of::<ShapeV1_1>()
        );

        let shape = m.interface_providers("calc-tests.shape", 1).pop().unwrap();
        assert_eq!(area(&shape, 2.5, 4.0), (abi::CALC_STATUS_OK, 10.0));
        assert_eq!(area(&shape, -1.0, 4.0).0, abi::CALC_STATUS_DOMAIN_ERROR);
        // SAFETY: `ShapeV1_1` is calc-tests.shape 1.1, which the plugin declares in full.
        let v11 = unsafe { shape.vtable_as::<ShapeV1_1>() }.unwrap();
        // SAFETY: the glue takes the instance; a NULL one is refused, not dereferenced.
        unsafe {
            assert_eq!(v11.sides.unwrap()(shape.instance()), 4);
            assert_eq!(v11.sides.unwrap()(ptr::null_mut()), -1);
            let mut out = 0.0;
            assert_eq!(
                v11.area.unwrap()(ptr::null_mut(), 1.0, 1.0, &mut out),
                abi::CALC_STATUS_INVALID_ARGUMENT
            );
        }
        let expected: [u64; 3] = if offer { [10, 20, 30] } else { [1, 2, 3] };
        assert_eq!(three_counts(&m), expected, "offered: {offer}");
    }
}

#[test]
fn a_plugin_with_interfaces_is_refused_for_isolation_with_one_line() {
    let dir = scratch_dir(&format!("interfaces-iso-{}", std::process::id()));
    let lib = build_shapes(&dir, "shapes_iso", &[]);
    let mut settings = calc_host::config::Settings::default();
    settings.isolation.all = true;
    settings.isolation.runner = Some(calc_tests::runner_binary().to_path_buf());
    let mut m = PluginManager::with_settings(settings);
    let error = m.load_file(&lib).expect_err("refused isolated");
    let line = error.to_string();
    assert_eq!(error.kind(), "isolation", "{line}");
    assert_eq!(
        line,
        format!(
            "{}: plugin shapes implements interfaces that cannot run in a runner process \
             (calc-tests.shape 1.1, calc-tests.counter 2.0: not bytes interfaces); load it in \
             process (not isolated)",
            lib.display()
        )
    );
    assert!(m.interface_providers("calc-tests.shape", 1).is_empty());
    // The same file in process.
    let mut m = PluginManager::new();
    m.load_file(&lib).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.interface_providers("calc-tests.shape", 1).len(), 1);
}

/// A manager in hot-reload mode (private copies in `dir/copies`) and the plugin file
/// `dir/plugins/libshapes.so`, installed from the fixture's v1 build (areas as they are), not yet
/// loaded; and the v2 build (areas times 3) to install over it.
fn hot_reload_shapes(dir: &Path) -> (PluginManager, PathBuf, PathBuf) {
    let v1 = build_shapes(&dir.join("v1"), "shapes", &[]);
    let v2 = build_shapes(&dir.join("v2"), "shapes", &["-DSHAPES_SCALE=3"]);
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let path = plugins.join(library_file_name("shapes"));
    xtask::build::copy_fresh(&v1, &path).unwrap_or_else(|e| panic!("{e}"));
    let mut m = PluginManager::new();
    m.enable_hot_reload(dir.join("copies"));
    (m, path, v2)
}

#[test]
fn a_reloaded_plugin_serves_new_lookups_while_old_handles_keep_their_version() {
    let dir = scratch_dir(&format!("interfaces-reload-{}", std::process::id()));
    let (mut m, path, v2) = hot_reload_shapes(&dir);
    m.load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let old = m.interface_providers("calc-tests.shape", 1).pop().unwrap();
    assert_eq!(area(&old, 2.0, 2.0), (abi::CALC_STATUS_OK, 4.0));

    xtask::build::copy_fresh(&v2, &path).unwrap_or_else(|e| panic!("{e}"));
    m.reload_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let new = m.interface_providers("calc-tests.shape", 1);
    assert_eq!(new.len(), 1, "one provider after the reload");
    assert_eq!(
        area(&new[0], 2.0, 2.0),
        (abi::CALC_STATUS_OK, 12.0),
        "v2 serves"
    );
    assert_eq!(
        area(&old, 2.0, 2.0),
        (abi::CALC_STATUS_OK, 4.0),
        "the pinned v1 still"
    );
    assert_ne!(old.instance(), new[0].instance());
}

#[test]
fn a_live_interface_follows_reloads_unloads_and_returns() {
    let dir = scratch_dir(&format!("interfaces-live-{}", std::process::id()));
    let (mut m, path, v2) = hot_reload_shapes(&dir);
    assert!(
        m.live_interface("calc-tests.shape", 1).is_none(),
        "never provided"
    );
    m.load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let live = m.live_interface("calc-tests.shape", 1).expect("provided");
    let area_now = |live: &calc_host::LiveInterface| {
        let pinned = live.pin();
        pinned.first().map(|h| area(h, 2.0, 2.0).1)
    };
    assert_eq!(area_now(&live), Some(4.0));
    assert_eq!(live.pin().providers().len(), 1);

    xtask::build::copy_fresh(&v2, &path).unwrap_or_else(|e| panic!("{e}"));
    m.reload_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(area_now(&live), Some(12.0), "follows the reload");

    let copies = dir.join("copies");
    let mapped = || {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .contains(copies.to_str().unwrap())
    };
    assert!(mapped(), "v2 is loaded from a private copy");
    assert!(m.unload("shapes"));
    assert_eq!(area_now(&live), None, "no provider after the unload");
    assert!(
        !mapped(),
        "a live handle pins nothing: the copy is unmapped"
    );

    m.load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        area_now(&live),
        Some(12.0),
        "a provider that comes back is seen"
    );
    // Other interfaces of the same plugin have their own live handles.
    let counter = m.live_interface("calc-tests.counter", 2).unwrap();
    assert_eq!(counter.pin().providers()[0].plugin().name, "shapes");
}

/// The four functions of `calc-tests.text` 1.0 (tests/fixtures/c/shapes.c).
const UPPER: usize = 0;
const REFUSE: usize = 1;
const CRASH: usize = 2;
const NULL_WRITE: usize = 3;
const FLOOD: usize = 4;

/// The checks every bytes call must pass, in process or isolated.
fn bytes_calls_behave(text: &calc_host::InterfaceHandle) {
    let long: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    assert_eq!(
        text.call_bytes(UPPER, &long).unwrap(),
        long.to_ascii_uppercase(),
        "output in pieces is kept whole"
    );
    assert_eq!(text.call_bytes(UPPER, b"").unwrap(), b"");
    let error = text.call_bytes(REFUSE, b"no").unwrap_err();
    assert_eq!(error.status, calc_sdk::Status::DomainError);
    assert_eq!(error.message, "refused: no");
    assert_eq!(
        error.to_string(),
        format!(
            "calc-tests.text[1] (plugin {}): refused: no",
            text.plugin().name
        )
    );
    assert_eq!(text.call_bytes(CRASH, b"fine").unwrap(), b"fine");
    let error = text.call_bytes(NULL_WRITE, b"").unwrap_err();
    assert_eq!(error.message, "the plugin wrote 5 bytes from NULL");
    // Output is kept up to 32 MiB: a plugin that writes more fails its call, nothing else.
    assert_eq!(text.call_bytes(FLOOD, &[0; 512]).unwrap().len(), 32 << 20);
    let error = text.call_bytes(FLOOD, &[0; 513]).unwrap_err();
    assert_eq!(error.status, calc_sdk::Status::Error, "{error}");
    assert_eq!(error.message, "the plugin's output is over 32 MiB");
    let error = text.call_bytes(5, b"").unwrap_err();
    assert_eq!(error.status, calc_sdk::Status::InvalidArgument);
    assert_eq!(
        error.message,
        "calc-tests.text 1.0 (bytes) has 5 functions, no function #5"
    );
}

#[test]
fn a_bytes_interface_is_called_by_slot_in_process() {
    let dir = scratch_dir(&format!("interfaces-bytes-{}", std::process::id()));
    let lib = build_shapes(&dir, "shapes_bytes", &[]);
    let mut m = PluginManager::new();
    m.load_file(&lib).unwrap_or_else(|e| panic!("{e}"));
    let text = m.interface_providers("calc-tests.text", 1).pop().unwrap();
    assert!(!text.is_isolated());
    assert!(!text.vtable().is_null());
    bytes_calls_behave(&text);
    // An interface that is not a bytes interface is not called by slot.
    let shape = m.interface_providers("calc-tests.shape", 1).pop().unwrap();
    let error = shape.call_bytes(0, b"").unwrap_err();
    assert_eq!(
        error.message,
        "calc-tests.shape 1.1 is not a bytes interface"
    );
}

#[test]
fn a_plugin_with_only_bytes_interfaces_runs_isolated_and_survives_its_crash() {
    let dir = scratch_dir(&format!("interfaces-bytes-iso-{}", std::process::id()));
    let lib = build_shapes(&dir, "text", &["-DTEXT_ONLY"]);
    let mut settings = calc_host::config::Settings::default();
    // 32 MiB each way through a debug runner on a loaded machine: more than the default 1 s.
    settings.isolation.timeout = Some(std::time::Duration::from_secs(10));
    settings.isolation.all = true;
    settings.isolation.runner = Some(calc_tests::runner_binary().to_path_buf());
    let mut m = PluginManager::with_settings(settings);
    m.load_file(&lib).unwrap_or_else(|e| panic!("{e}"));
    assert!(m.is_isolated("text"));
    let text = m.interface_providers("calc-tests.text", 1).pop().unwrap();
    assert!(text.is_isolated());
    assert!(text.vtable().is_null());
    // SAFETY: no vtable in this process: refused before any read.
    assert!(unsafe { text.vtable_as::<[usize; 4]>() }.is_none());
    bytes_calls_behave(&text);

    // The plugin crashes: the runner dies, the host reports it and goes on.
    let error = text.call_bytes(CRASH, b"crash").unwrap_err();
    assert_eq!(error.status, calc_sdk::Status::Error, "{error}");
    assert!(
        error.message.contains("crashed") && error.message.contains("SIGSEGV"),
        "{error}"
    );
    assert_eq!(m.health("text").unwrap().crashes, 1);
    // The next call goes to a restarted runner.
    assert_eq!(text.call_bytes(UPPER, b"again").unwrap(), b"AGAIN");
    let restarts = m.health("text").unwrap().restarts;

    // An input over 32 MiB is refused before it goes to the runner, which lives on.
    let error = text
        .call_bytes(UPPER, &vec![b'a'; (32 << 20) + 1])
        .unwrap_err();
    assert_eq!(error.status, calc_sdk::Status::InvalidArgument, "{error}");
    assert_eq!(error.message, "an input of 33554433 bytes, over 32 MiB");
    assert_eq!(
        text.call_bytes(UPPER, &vec![b'a'; 32 << 20]).unwrap().len(),
        32 << 20
    );
    let health = m.health("text").unwrap();
    assert_eq!(
        (health.crashes, health.restarts),
        (1, restarts),
        "no crash counted, no restart"
    );
}

#[test]
fn providers_of_an_interface_are_ranked_as_operations_are() {
    let dir = scratch_dir(&format!("interfaces-rank-{}", std::process::id()));
    let c = build_shapes(&dir, "shapes_rank", &[]);
    let rust = rust_shapes();
    let names = |handles: Vec<calc_host::InterfaceHandle>| -> Vec<String> {
        handles.iter().map(|h| h.plugin().name.clone()).collect()
    };
    let load = |settings: calc_host::config::Settings| {
        let mut m = PluginManager::with_settings(settings);
        m.load_file(&c).unwrap_or_else(|e| panic!("{e}"));
        m.load_file(&rust).unwrap_or_else(|e| panic!("{e}"));
        m
    };
    // Load order.
    let m = load(calc_host::config::Settings::default());
    assert_eq!(
        names(m.interface_providers("calc-tests.shape", 1)),
        ["shapes", "rust_shapes"]
    );
    // `prefer` wins over load order, for every interface, live handles too.
    let mut settings = calc_host::config::Settings::default();
    settings.prefer = vec!["rust_shapes".into()];
    let m = load(settings.clone());
    for (id, major) in [("calc-tests.shape", 1), ("calc-tests.counter", 2)] {
        assert_eq!(
            names(m.interface_providers(id, major)),
            ["rust_shapes", "shapes"]
        );
        let live = m.live_interface(id, major).unwrap();
        assert_eq!(live.pin().first().unwrap().plugin().name, "rust_shapes");
    }
    // A provider named for an interface id wins over `prefer`, for that interface only.
    settings
        .providers
        .insert("calc-tests.shape".into(), "shapes".into());
    let m = load(settings);
    assert_eq!(
        names(m.interface_providers("calc-tests.shape", 1)),
        ["shapes", "rust_shapes"]
    );
    assert_eq!(
        names(m.interface_providers("calc-tests.counter", 2)),
        ["rust_shapes", "shapes"]
    );
    let live = m.live_interface("calc-tests.shape", 1).unwrap();
    assert_eq!(live.pin().first().unwrap().plugin().name, "shapes");
    // Naming an interface's provider is not warned about as an unknown operation.
    assert_eq!(m.notices(), Vec::<String>::new());
}

#[test]
fn a_rollout_splits_an_interface_by_key_and_a_failing_provider_falls_back_to_the_next() {
    use calc_host::manager::{rollout_bucket, rollout_hash};
    let dir = scratch_dir(&format!("interfaces-rollout-{}", std::process::id()));
    let a = build_shapes(&dir, "text_a", &["-DTEXT_ONLY", "-DTEXT_NAME=\"text_a\""]);
    let b = build_shapes(&dir, "text_b", &["-DTEXT_ONLY", "-DTEXT_NAME=\"text_b\""]);
    // Configured as an operation's rollout is, under the interface id.
    let mut settings = calc_host::config::Settings::parse(
        "[operations.\"calc-tests.text\"]\nrollout = { candidate = \"text_b\", percent = 30 }\n",
        Path::new("test.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    settings.isolation.all = true;
    settings.isolation.runner = Some(calc_tests::runner_binary().to_path_buf());
    let mut m = PluginManager::with_settings(settings);
    m.load_file(&a).unwrap_or_else(|e| panic!("{e}"));
    m.load_file(&b).unwrap_or_else(|e| panic!("{e}"));
    let text = m.interface("calc-tests.text", 1);
    assert_eq!(text.rollout(), Some(("text_b", 30.0)));
    assert_eq!(text.first().unwrap().plugin().name, "text_a");
    // A rollout under an interface id is not warned about as one of an unknown operation.
    assert_eq!(m.notices(), Vec::<String>::new());

    // Each key goes where its bucket says, as an operation's keys do.
    let mut to_b = 0;
    for i in 0..2000 {
        let key = rollout_hash(format!("user-{i}").as_bytes());
        let want = if rollout_bucket(key, "calc-tests.text") < 3000 {
            "text_b"
        } else {
            "text_a"
        };
        assert_eq!(text.serving(key).unwrap().plugin().name, want);
        let order: Vec<_> = text
            .in_order(key)
            .map(|p| p.plugin().name.clone())
            .collect();
        let other = if want == "text_a" { "text_b" } else { "text_a" };
        assert_eq!(order, [want, other]);
        to_b += usize::from(want == "text_b");
    }
    assert!((500..700).contains(&to_b), "{to_b} of 2000 keys to text_b");
    let key_a = (0..)
        .map(|i| rollout_hash(format!("user-{i}").as_bytes()))
        .find(|&k| text.serving(k).unwrap().plugin().name == "text_a")
        .unwrap();
    let key_b = (0..)
        .map(|i| rollout_hash(format!("user-{i}").as_bytes()))
        .find(|&k| text.serving(k).unwrap().plugin().name == "text_b")
        .unwrap();
    let (out, by) = text.call_bytes(UPPER, b"hi", key_b).unwrap();
    assert_eq!(
        (out.as_slice(), by.plugin().name.as_str()),
        (&b"HI"[..], "text_b")
    );

    // text_a crashes on this input: the call falls back to text_b, which answers.
    let (out, by) = text.call_bytes(CRASH, b"crash text_a", key_a).unwrap();
    assert_eq!(out, b"crash text_a");
    assert_eq!(by.plugin().name, "text_b");
    assert_eq!(m.health("text_a").unwrap().crashes, 1);
    assert_eq!(m.health("text_b").unwrap().crashes, 0);
    // Every provider fails internally: the last failure is the answer.
    let error = text.call_bytes(CRASH, b"crash", key_b).unwrap_err();
    assert_eq!(
        (error.plugin.as_str(), error.status),
        ("text_a", calc_sdk::Status::Error)
    );
    assert_eq!(m.health("text_b").unwrap().crashes, 1);
    // A domain error is the provider's answer, not a failure: no fallback.
    let error = text.call_bytes(REFUSE, b"no", key_a).unwrap_err();
    assert_eq!(
        (error.plugin.as_str(), error.message.as_str()),
        ("text_a", "refused: no")
    );

    // Live handles see the same rollout.
    let live = m.live_interface("calc-tests.text", 1).unwrap();
    assert_eq!(live.pin().serving(key_b).unwrap().plugin().name, "text_b");
    // A rollout whose candidate does not provide the interface is not in force.
    let mut settings = m.settings().clone();
    settings
        .rollouts
        .get_mut("calc-tests.text")
        .unwrap()
        .candidate = "nobody".into();
    m.set_settings(settings);
    let text = m.interface("calc-tests.text", 1);
    assert_eq!(text.rollout(), None);
    assert_eq!(text.serving(key_b).unwrap().plugin().name, "text_a");
    // No provider: the slot is empty and a call says so.
    let none = m.interface("calc-tests.nothing", 1);
    assert!(none.serving(key_a).is_none());
    let error = none.call_bytes(UPPER, b"", key_a).unwrap_err();
    assert_eq!(
        error.to_string(),
        "calc-tests.nothing[0]: no plugin provides the interface"
    );
}
