//! Layout verification by a second compiler front end: clang (through bindgen) reads every
//! published header in `include/`, and the size, alignment and field offsets it computes for each
//! struct must equal the Rust definitions. `c_headers.rs` checks the same with the system C
//! compiler; this one also catches a field that exists in C but not in the Rust list.

use calc_abi::c_header;

use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};

use calc_tests::workspace_root;

/// Layouts of the Rust definitions, in the keys of [`c_header::Header::layout_map`].
#[derive(Default)]
struct RustLayouts(BTreeMap<String, usize>);

/// Adds `size of T`, `align of T` and `offset of T.f` for each listed field.
macro_rules! layout {
    ($m:expr, $t:ty: $($f:ident),* $(,)?) => {{
        let name = stringify!($t);
        $m.0.insert(format!("size of {name}"), size_of::<$t>());
        $m.0.insert(format!("align of {name}"), align_of::<$t>());
        $($m.0.insert(format!("offset of {name}.{}", stringify!($f)), offset_of!($t, $f));)*
    }};
}

/// The structs of `calc_plugin.h`, defined in `calc_sdk::abi`.
fn sdk_layouts() -> RustLayouts {
    use calc_sdk::abi::*;
    let mut m = RustLayouts::default();
    layout!(m, calc_abi_version_t: major, minor);
    layout!(m, calc_host_api_t: struct_size, abi_version, host_version, context, log, get_config, get_state,
        deadline_expired, deadline_remaining_ns, get_interface);
    layout!(m, calc_operation_t: name, description, symbol, execute, kind, associativity,
        precedence, min_arity, max_arity, execute_batch);
    layout!(m, calc_plugin_t: magic, struct_size, abi_version, name, version, author, description,
        sdk_version, api_requirement, flags, init, shutdown, operations, operation_count,
        operation_size, save_state, interfaces, interface_count, interface_size);
    layout!(m, calc_interface_t: id, version, vtable_size, vtable, flags);
    m
}

/// The Rust definitions behind each header, by file name; `None` for a header whose structs
/// are not checked yet (it must still parse).
fn rust_layouts_for(header: &str) -> Option<RustLayouts> {
    match header {
        "calc_plugin.h" => Some(sdk_layouts()),
        "calc_host.h" => Some(host_layouts()),
        _ => None,
    }
}

/// The structs of `calc_host.h`, defined in `calc_host::capi` (the opaque handles have no
/// layout to compare).
fn host_layouts() -> RustLayouts {
    use calc_host::capi::*;
    let mut m = RustLayouts::default();
    layout!(m, calc_plugin_info_t: name, version, author, description, path, abi_version,
        sdk_version, api_requirement, operation_count, interface_count);
    layout!(m, calc_operation_info_t: name, description, symbol, kind, associativity, precedence,
        min_arity, max_arity);
    layout!(m, calc_load_failure_t: path, message);
    layout!(m, calc_interface_info_t: id, major, minor, vtable_size, bytes);
    layout!(m, calc_event_t: kind, plugin, version, old_version, path, message);
    m
}

#[test]
fn clang_layout_of_every_header_equals_the_rust_definitions() {
    calc_tests::require_tools!(Libclang);
    let headers =
        c_header::headers_in(&workspace_root().join("include")).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = headers
        .iter()
        .map(|h| h.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n == "calc_plugin.h"),
        "include/ has no calc_plugin.h: {names:?}"
    );
    for (path, name) in headers.iter().zip(&names) {
        let header = c_header::parse_header(path).unwrap_or_else(|e| panic!("{e}"));
        let clang = header.layout_map();
        match rust_layouts_for(name) {
            Some(rust) => assert_eq!(
                clang, rust.0,
                "{name}: clang's layout (left) differs from the Rust definitions (right)"
            ),
            None => eprintln!(
                "{name}: parsed; layouts not compared with Rust yet: {:?}",
                header.structs.keys().collect::<Vec<_>>()
            ),
        }
    }
}

#[test]
fn bindgen_sees_every_struct_and_field_of_calc_plugin_h() {
    calc_tests::require_tools!(Libclang);
    // Guards the parsing itself: an empty or partial model would make the comparison above
    // vacuous.
    let header = c_header::parse_header(&workspace_root().join("include/calc_plugin.h"))
        .unwrap_or_else(|e| panic!("{e}"));
    let structs: Vec<&str> = header.structs.keys().map(String::as_str).collect();
    assert_eq!(
        structs,
        [
            "calc_abi_version_t",
            "calc_host_api_t",
            "calc_interface_t",
            "calc_operation_t",
            "calc_plugin_t"
        ]
    );
    let plugin = &header.structs["calc_plugin_t"];
    assert_eq!(
        (plugin.size, plugin.align),
        (
            Some(size_of::<calc_sdk::abi::calc_plugin_t>()),
            Some(align_of::<calc_sdk::abi::calc_plugin_t>())
        )
    );
    assert_eq!(plugin.fields.len(), 19);
    assert!(plugin.fields.iter().all(|f| f.offset.is_some()));
    assert_eq!(
        header
            .constants
            .get("CALC_PLUGIN_MAGIC")
            .map(String::as_str),
        Some(calc_sdk::abi::CALC_PLUGIN_MAGIC.to_string().as_str())
    );
    assert!(header.functions.contains_key("plugin_entry"));
    assert!(header.typedefs.contains_key("calc_execute_fn"));
    assert!(header.typedefs.contains_key("calc_execute_batch_fn"));
    assert!(header.typedefs.contains_key("calc_deadline_expired_fn"));
    assert!(header.typedefs.contains_key("calc_deadline_remaining_fn"));
    let host = &header.structs["calc_host_api_t"];
    assert_eq!(host.fields.len(), 10);
    assert_eq!(
        host.fields.last().map(|f| f.name.as_str()),
        Some("get_interface")
    );
    let operation = &header.structs["calc_operation_t"];
    assert_eq!(operation.fields.len(), 10);
    assert_eq!(
        operation.fields.last().map(|f| f.name.as_str()),
        Some("execute_batch")
    );
}
