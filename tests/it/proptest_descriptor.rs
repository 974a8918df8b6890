//! Property tests of descriptor validation (`calc_host::loader::validate_descriptor`, the code
//! the loader runs on what `plugin_entry` returns) over arbitrary field values.
//!
//! Descriptors are built in memory, consistent with what they declare: the descriptor really
//! has `struct_size` bytes (the bytes past it are poison), the operation table really holds
//! `operation_count` elements of `operation_size` bytes (each element's bytes past
//! `calc_operation_t` are poison too), strings are NUL-terminated buffers, NULL, or
//! unterminated buffers of `CALC_MAX_STRING_LEN + 1` bytes; descriptor and table may be
//! unaligned. Every field varies: magic, size, ABI version, names, versions, flags, arities,
//! kinds, NULL and non-NULL function pointers.
//!
//! The property: validation never panics, and accepts exactly when a reference predicate
//! written here from docs/ABI.md ("What the host checks, in order") says so. A rejection is one
//! line naming the file and one of the faults the reference found; an acceptance keeps every
//! value as declared, and reads no field past `struct_size` or `operation_size`.
//!
//! Cases: 1000 by default; set `PROPTEST_CASES` for more (see docs/TESTING.md).

use std::mem::{offset_of, size_of};
use std::path::Path;
use std::ptr;

use calc_host::loader::validate_descriptor;
use calc_host::loader::Validated;
use calc_host::{LoadError, OperationKind};
use calc_sdk::abi::{
    self, calc_abi_version_t, calc_host_api_t, calc_operation_t, calc_plugin_t,
    calc_state_write_fn, calc_status_t,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[path = "support/proptest_runner.rs"]
mod proptest_runner;
use proptest_runner::runner;

const PATH: &str = "/plugins/libproptest.so";
const MAX_STRING: usize = abi::CALC_MAX_STRING_LEN as usize;
/// Filler of every byte a plugin did not declare: read as a pointer, it is neither NULL nor
/// any of the functions below, so reading it is seen.
const POISON: u8 = 0xA5;

// The functions a descriptor points to. Validation must never call them.

unsafe extern "C" fn execute(
    _: *mut std::ffi::c_void,
    _: *const f64,
    _: usize,
    _: *mut f64,
    _: *mut std::ffi::c_char,
    _: usize,
) -> calc_status_t {
    abi::CALC_STATUS_ERROR
}

#[allow(clippy::too_many_arguments)] // the ABI's signature
unsafe extern "C" fn execute_batch(
    _: *mut std::ffi::c_void,
    _: *const *const f64,
    _: usize,
    _: usize,
    _: *mut f64,
    _: *mut usize,
    _: *mut std::ffi::c_char,
    _: usize,
) -> calc_status_t {
    abi::CALC_STATUS_DOMAIN_ERROR
}

unsafe extern "C" fn init(
    _: *const calc_host_api_t,
    _: *mut *mut std::ffi::c_void,
    _: *mut std::ffi::c_char,
    _: usize,
) -> calc_status_t {
    abi::CALC_STATUS_OVERFLOW
}

unsafe extern "C" fn shutdown(_: *mut std::ffi::c_void) {}

unsafe extern "C" fn save_state(
    _: *mut std::ffi::c_void,
    _: calc_state_write_fn,
    _: *mut std::ffi::c_void,
    _: *mut std::ffi::c_char,
    _: usize,
) -> calc_status_t {
    abi::CALC_STATUS_INVALID_ARGUMENT
}

/// A string field.
#[derive(Debug, Clone, PartialEq)]
enum S {
    Null,
    /// These bytes (no NUL among them) and a NUL.
    Bytes(Vec<u8>),
    /// `CALC_MAX_STRING_LEN + 1` bytes and no NUL.
    Unterminated,
}

impl S {
    fn text(s: &str) -> S {
        S::Bytes(s.as_bytes().to_vec())
    }

    /// The string, when it is a terminated, valid UTF-8 string.
    fn as_str(&self) -> Option<&str> {
        match self {
            S::Bytes(b) if b.len() <= MAX_STRING => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

/// A size field, relative to the size of the struct at the declared minor.
#[derive(Debug, Clone, Copy)]
enum Size {
    /// The size at the declared minor.
    AtMinor,
    /// The size of the struct this test is built with.
    Full,
    /// That many bytes more than `Full` (poison).
    Larger(u32),
    /// Any size up to `Full + 64`.
    Any(u32),
}

#[derive(Debug, Clone)]
struct OpSpec {
    name: S,
    description: S,
    symbol: S,
    execute: bool,
    kind: i32,
    associativity: i32,
    precedence: i32,
    min_arity: u32,
    max_arity: u32,
    execute_batch: bool,
}

/// How many elements the table declares.
#[derive(Debug, Clone, Copy)]
enum Count {
    /// `ops.len()`.
    Ops,
    /// That many copies of `ops[0]` (renamed `f0`, `f1`, ...), around `CALC_MAX_OPERATIONS`.
    Many(u32),
    /// A count too large to allocate, with a small table: the host must refuse it before
    /// reading any element.
    Huge(u32),
}

#[derive(Debug, Clone)]
struct Spec {
    magic: u64,
    struct_size: Size,
    version: calc_abi_version_t,
    name: S,
    plugin_version: S,
    author: S,
    description: S,
    sdk_version: S,
    api_requirement: S,
    flags: u64,
    init: bool,
    shutdown: bool,
    save_state: bool,
    ops: Vec<OpSpec>,
    count: Count,
    table_null: bool,
    operation_size: Size,
    /// Byte offsets of the descriptor and of the table in their buffers (alignment).
    desc_offset: usize,
    table_offset: usize,
}

// ---------------------------------------------------------------------------------------------
// The reference: docs/ABI.md, "What the host checks, in order" and "How sizes keep old plugins
// loading", written independently of host/src/validate.rs.

/// `calc_plugin_t` at ABI 1.`minor`: `save_state` arrived in 1.1, the interface table in 1.4.
fn plugin_size_at(minor: u16) -> usize {
    match minor {
        0 => offset_of!(calc_plugin_t, save_state),
        1..=3 => offset_of!(calc_plugin_t, interfaces),
        _ => size_of::<calc_plugin_t>(),
    }
}

/// `calc_operation_t` at ABI 1.`minor`: `execute_batch` arrived in 1.2.
fn operation_size_at(minor: u16) -> usize {
    if minor < 2 {
        offset_of!(calc_operation_t, execute_batch)
    } else {
        size_of::<calc_operation_t>()
    }
}

fn resolve(size: Size, at_minor: usize, full: usize) -> u32 {
    match size {
        Size::AtMinor => at_minor as u32,
        Size::Full => full as u32,
        Size::Larger(n) => (full as u32).saturating_add(n),
        Size::Any(n) => n % (full as u32 + 65),
    }
}

impl Spec {
    fn struct_size(&self) -> u32 {
        resolve(
            self.struct_size,
            plugin_size_at(self.version.minor),
            size_of::<calc_plugin_t>(),
        )
    }

    fn operation_size(&self) -> u32 {
        resolve(
            self.operation_size,
            operation_size_at(self.version.minor),
            size_of::<calc_operation_t>(),
        )
    }

    fn operation_count(&self) -> u32 {
        match self.count {
            Count::Ops => self.ops.len() as u32,
            Count::Many(n) | Count::Huge(n) => n,
        }
    }

    /// The operations as the table holds them (for `Count::Huge`, only those allocated).
    fn table(&self) -> Vec<OpSpec> {
        match self.count {
            Count::Ops | Count::Huge(_) => self.ops.clone(),
            Count::Many(n) => (0..n)
                .map(|i| OpSpec {
                    name: S::Bytes(format!("f{i}").into_bytes()),
                    ..self.ops[0].clone()
                })
                .collect(),
        }
    }
}

/// One fault the reference finds: the error must be about one of them.
#[derive(Debug, Clone, PartialEq)]
enum Fault {
    Magic,
    Abi,
    StructSize,
    /// The table's count or pointer (`InvalidField` "operations").
    Table,
    OperationSize,
    /// A field: `name`, `operations[2].symbol`, ...
    Field(String),
}

const SYMBOL_CHARS: &str = "+-*/%^&|<>=!~@#$?";

fn host_abi() -> calc_abi_version_t {
    calc_abi_version_t {
        major: abi::CALC_ABI_VERSION_MAJOR,
        minor: abi::CALC_ABI_VERSION_MINOR,
    }
}

/// Empty when the descriptor must be accepted; otherwise every fault the host may report
/// (it stops at the first, in an order the reference does not fix).
fn reference(spec: &Spec) -> Vec<Fault> {
    let host = host_abi();
    if spec.magic != abi::CALC_PLUGIN_MAGIC {
        return vec![Fault::Magic];
    }
    let v = spec.version;
    if v.major != host.major || (v.major == 0 && v.minor != host.minor) || v.minor > host.minor {
        return vec![Fault::Abi];
    }
    if (spec.struct_size() as usize) < plugin_size_at(v.minor) {
        return vec![Fault::StructSize];
    }
    let mut faults = Vec::new();
    let count = spec.operation_count();
    if count > abi::CALC_MAX_OPERATIONS || (count > 0 && spec.table_null) {
        faults.push(Fault::Table);
    }
    if count > 0 && (spec.operation_size() as usize) < operation_size_at(v.minor) {
        faults.push(Fault::OperationSize);
    }
    let field = |f: &str| Fault::Field(f.to_string());
    let string_ok = |s: &S, required: bool| match s {
        S::Null => !required,
        other => other.as_str().is_some(),
    };
    match spec.name.as_str() {
        Some(n)
            if (1..=64).contains(&n.len())
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) => {}
        _ => faults.push(field("name")),
    }
    for (f, s) in [
        ("version", &spec.plugin_version),
        ("sdk_version", &spec.sdk_version),
    ] {
        if s.as_str()
            .and_then(|s| semver::Version::parse(s).ok())
            .is_none()
        {
            faults.push(field(f));
        }
    }
    for (f, s) in [("author", &spec.author), ("description", &spec.description)] {
        if !string_ok(s, false) {
            faults.push(field(f));
        }
    }
    let host_api = semver::Version::parse(calc_sdk::SDK_VERSION).unwrap();
    match spec
        .api_requirement
        .as_str()
        .and_then(|s| semver::VersionReq::parse(s).ok())
    {
        Some(req) if req.matches(&host_api) => {}
        _ => faults.push(field("api_requirement")),
    }
    if spec.flags != 0 {
        faults.push(field("flags"));
    }
    if faults.contains(&Fault::Table) || faults.contains(&Fault::OperationSize) {
        return faults; // the elements are never read
    }
    let mut seen = Vec::new();
    for (i, op) in spec.table().iter().enumerate() {
        let f = |name: &str| Fault::Field(format!("operations[{i}].{name}"));
        let identifier = op.name.as_str().filter(|n| {
            let mut c = n.chars();
            matches!(c.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        match identifier {
            None => faults.push(f("name")),
            Some(n) if seen.contains(&n) => faults.push(f("name")),
            Some(n) => seen.push(n),
        }
        if !op.execute {
            faults.push(f("execute"));
        }
        match op.kind {
            abi::CALC_OPERATION_KIND_INFIX => {
                let symbol_ok = op.symbol.as_str().is_some_and(|s| {
                    (1..=3).contains(&s.chars().count())
                        && s.chars().all(|c| SYMBOL_CHARS.contains(c))
                });
                if !symbol_ok {
                    faults.push(f("symbol"));
                }
                if op.min_arity != 2 || op.max_arity != 2 {
                    faults.push(f("arity"));
                }
                if ![abi::CALC_ASSOCIATIVITY_LEFT, abi::CALC_ASSOCIATIVITY_RIGHT]
                    .contains(&op.associativity)
                {
                    faults.push(f("associativity"));
                }
            }
            abi::CALC_OPERATION_KIND_FUNCTION => {
                if op.max_arity != abi::CALC_ARITY_VARIADIC && op.max_arity < op.min_arity {
                    faults.push(f("arity"));
                }
            }
            _ => faults.push(f("kind")),
        }
        if !string_ok(&op.description, false) {
            faults.push(f("description"));
        }
    }
    faults
}

/// Whether `e` reports `fault`.
fn reports(e: &LoadError, fault: &Fault) -> bool {
    match (e, fault) {
        (LoadError::BadMagic { .. }, Fault::Magic) => true,
        (LoadError::AbiVersion { .. }, Fault::Abi) => true,
        (LoadError::StructSize { what, .. }, Fault::StructSize) => what.contains("struct_size"),
        (LoadError::StructSize { what, .. }, Fault::OperationSize) => {
            what.contains("operation_size")
        }
        (LoadError::InvalidField { field, .. }, Fault::Table) => field == "operations",
        (LoadError::InvalidField { field: got, .. }, Fault::Field(want)) => same_field(got, want),
        (LoadError::Semver { field, .. }, Fault::Field(want)) => field == want,
        (LoadError::ApiRequirement { .. }, Fault::Field(want)) => want == "api_requirement",
        _ => false,
    }
}

/// `operations[2] (mul).arity` is the field `operations[2].arity`.
fn same_field(got: &str, want: &str) -> bool {
    if got == want {
        return true;
    }
    match (got.split_once(' '), want.split_once('.')) {
        (Some((index, rest)), Some((want_index, want_name))) => {
            index == want_index && rest.ends_with(&format!(").{want_name}"))
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Building the descriptor in memory.

/// A descriptor and everything it points to.
struct Built {
    /// Holds the descriptor at `desc_offset`.
    desc_buf: Vec<u8>,
    desc_offset: usize,
    /// Kept alive: the strings and the table the descriptor points to.
    _strings: Vec<Vec<u8>>,
    _table: Vec<u8>,
}

impl Built {
    fn desc(&self) -> *const calc_plugin_t {
        self.desc_buf[self.desc_offset..].as_ptr().cast()
    }
}

fn string(s: &S, keep: &mut Vec<Vec<u8>>) -> *const std::ffi::c_char {
    let buf = match s {
        S::Null => return ptr::null(),
        S::Bytes(b) => b.iter().copied().chain([0]).collect(),
        S::Unterminated => vec![b'a'; MAX_STRING + 1],
    };
    keep.push(buf);
    keep.last().expect("just pushed").as_ptr().cast()
}

/// The first `n` bytes of `value` written at `dst`.
fn write_prefix<T>(dst: &mut [u8], value: &T, n: usize) {
    let n = n.min(size_of::<T>()).min(dst.len());
    // SAFETY: `value` is a live `T` of `size_of::<T>() >= n` bytes, all initialised (the ABI
    // structs have no padding on the targets the layout pins cover: integers, pointers and
    // function pointers only); `dst` has at least `n` bytes; the regions are distinct.
    unsafe { ptr::copy_nonoverlapping((value as *const T).cast::<u8>(), dst.as_mut_ptr(), n) };
}

fn build(spec: &Spec) -> Built {
    let mut strings = Vec::new();
    let op_size = spec.operation_size() as usize;
    let ops = spec.table();
    let table = if spec.table_null {
        Vec::new()
    } else {
        let mut table = vec![POISON; spec.table_offset + ops.len() * op_size];
        for (i, op) in ops.iter().enumerate() {
            let element = calc_operation_t {
                name: string(&op.name, &mut strings),
                description: string(&op.description, &mut strings),
                symbol: string(&op.symbol, &mut strings),
                execute: op.execute.then_some(execute as _),
                kind: op.kind,
                associativity: op.associativity,
                precedence: op.precedence,
                min_arity: op.min_arity,
                max_arity: op.max_arity,
                execute_batch: op.execute_batch.then_some(execute_batch as _),
            };
            let start = spec.table_offset + i * op_size;
            write_prefix(&mut table[start..start + op_size], &element, op_size);
        }
        table
    };
    let descriptor = calc_plugin_t {
        magic: spec.magic,
        struct_size: spec.struct_size(),
        abi_version: spec.version,
        name: string(&spec.name, &mut strings),
        version: string(&spec.plugin_version, &mut strings),
        author: string(&spec.author, &mut strings),
        description: string(&spec.description, &mut strings),
        sdk_version: string(&spec.sdk_version, &mut strings),
        api_requirement: string(&spec.api_requirement, &mut strings),
        flags: spec.flags,
        init: spec.init.then_some(init as _),
        shutdown: spec.shutdown.then_some(shutdown as _),
        operations: if spec.table_null {
            ptr::null()
        } else {
            table[spec.table_offset..].as_ptr().cast()
        },
        operation_count: spec.operation_count(),
        operation_size: spec.operation_size(),
        save_state: spec.save_state.then_some(save_state as _),
        // No interfaces: their validation has its own tests (tests/it/interfaces.rs).
        interfaces: ptr::null(),
        interface_count: 0,
        interface_size: size_of::<abi::calc_interface_t>() as u32,
    };
    // The header always (the host reads 16 bytes first), then the bytes the plugin declared.
    // The buffer is as large as the descriptor says (up to `Full + 64`), and never smaller than
    // the struct this test knows.
    let claimed = (spec.struct_size() as usize).min(size_of::<calc_plugin_t>() + 64);
    let mut desc_buf = vec![POISON; spec.desc_offset + claimed.max(size_of::<calc_plugin_t>())];
    let declared = (spec.struct_size() as usize).max(16);
    write_prefix(&mut desc_buf[spec.desc_offset..], &descriptor, declared);
    Built {
        desc_buf,
        desc_offset: spec.desc_offset,
        _strings: strings,
        _table: table,
    }
}

// ---------------------------------------------------------------------------------------------
// Generators: mostly valid values, each field sometimes replaced by a wrong or odd one.

fn weird_string() -> impl Strategy<Value = S> {
    prop_oneof![
        2 => Just(S::Null),
        2 => Just(S::Unterminated),
        1 => Just(S::Bytes(vec![b'x'; MAX_STRING])), // the longest accepted
        1 => Just(S::Bytes(vec![0xff, 0xfe])),
        1 => Just(S::Bytes(b"ok\xc3".to_vec())), // truncated UTF-8
        1 => Just(S::text("")),
        1 => Just(S::text("two\nlines")),
        4 => proptest::collection::vec(1u8.., 0..24).prop_map(S::Bytes),
        2 => "\\PC{0,12}".prop_map(|s| S::text(&s.replace('\0', ""))),
    ]
}

fn pick(valid: &'static [&'static str], invalid: &'static [&'static str]) -> BoxedStrategy<S> {
    let valid = proptest::sample::select(valid).prop_map(S::text);
    let invalid = proptest::sample::select(invalid).prop_map(S::text);
    prop_oneof![20 => valid, 1 => invalid, 1 => weird_string()].boxed()
}

fn optional_text() -> BoxedStrategy<S> {
    prop_oneof![
        10 => "[ -~]{0,20}".prop_map(|s| S::text(&s)),
        3 => "\\PC{0,12}".prop_map(|s| S::text(&s.replace('\0', ""))),
        2 => Just(S::Null),
        1 => weird_string(),
    ]
    .boxed()
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        12 => Just(Size::AtMinor),
        6 => Just(Size::Full),
        1 => (0u32..64).prop_map(Size::Larger),
        1 => any::<u32>().prop_map(Size::Any),
    ]
}

fn arity() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 0u32..4,
        1 => Just(abi::CALC_ARITY_VARIADIC),
        1 => any::<u32>(),
    ]
}

fn operation() -> impl Strategy<Value = OpSpec> {
    let names = pick(
        &["f", "g", "add", "_x1", "max", "Mul_2"],
        &["1x", "a-b", "", "é", "a b", "add("],
    );
    let symbols = pick(
        &["+", "-", "**", "<=>", "?", "@#$"],
        &["", "++++", "a", "é", "+é", "( )"],
    );
    let infix = (symbols, 0..3i32, any::<i32>()).prop_map(|(symbol, assoc, precedence)| {
        (
            abi::CALC_OPERATION_KIND_INFIX,
            symbol,
            assoc,
            precedence,
            2,
            2,
        )
    });
    let function = (arity(), arity()).prop_map(|(a, b)| {
        let (min, max) = if a <= b { (a, b) } else { (b, a) };
        (abi::CALC_OPERATION_KIND_FUNCTION, S::Null, 0, 0, min, max)
    });
    let shape = prop_oneof![
        8 => infix,
        8 => function,
        // Anything: any kind, symbol, associativity, precedence and arities.
        1 => (any::<i32>(), weird_string(), any::<i32>(), any::<i32>(), arity(), arity()),
    ];
    (
        names,
        optional_text(),
        shape,
        prop_oneof![20 => Just(true), 1 => Just(false)],
        any::<bool>(),
    )
        .prop_map(
            |(
                name,
                description,
                (kind, symbol, associativity, precedence, min_arity, max_arity),
                execute,
                execute_batch,
            )| OpSpec {
                name,
                description,
                symbol,
                execute,
                kind,
                associativity,
                precedence,
                min_arity,
                max_arity,
                execute_batch,
            },
        )
}

fn abi_version() -> impl Strategy<Value = calc_abi_version_t> {
    let host = host_abi();
    let major = prop_oneof![
        20 => Just(host.major),
        1 => Just(host.major + 1),
        1 => Just(host.major.wrapping_sub(1)),
        1 => any::<u16>(),
    ];
    let minor = prop_oneof![
        20 => 0..=host.minor,
        1 => Just(host.minor + 1),
        1 => any::<u16>(),
    ];
    (major, minor).prop_map(|(major, minor)| calc_abi_version_t { major, minor })
}

fn spec() -> impl Strategy<Value = Spec> {
    let magic = prop_oneof![
        30 => Just(abi::CALC_PLUGIN_MAGIC),
        1 => any::<u64>(),
        1 => Just(abi::CALC_PLUGIN_MAGIC.swap_bytes()),
    ];
    let header = (magic, size(), abi_version());
    let strings = (
        pick(
            &["add", "calc-example.mul_2", "a", "x_y-z.0"],
            &["", "a b", "é", "x/y", "name\n"],
        ),
        pick(
            &["1.0.0", "0.1.2-alpha.1+build.5", "10.20.30"],
            &["1.0", "v1.0.0", "1.0.0.0", " 1.0.0"],
        ),
        optional_text(),
        optional_text(),
        pick(&[calc_sdk::SDK_VERSION, "1.0.0", "2.3.4"], &["1", "one"]),
        pick(
            &[calc_sdk::API_REQUIREMENT_DEFAULT, "*", ">=1.0.0", "^1"],
            &[
                "^2",
                ">=99",
                "=0.1.0",
                "~>1",
                "",
                "abc",
                ">=1.0.0,\n<99",
                "\t^1",
                ">=99,\n<100",
                "^2\r",
            ],
        ),
    );
    let flags =
        prop_oneof![20 => Just(0u64), 1 => any::<u64>(), 1 => (0..64u32).prop_map(|b| 1u64 << b)];
    let count = prop_oneof![
        30 => Just(Count::Ops),
        1 => prop_oneof![
            Just(abi::CALC_MAX_OPERATIONS - 1),
            Just(abi::CALC_MAX_OPERATIONS),
            Just(abi::CALC_MAX_OPERATIONS + 1),
        ].prop_map(Count::Many),
        1 => prop_oneof![Just(u32::MAX), abi::CALC_MAX_OPERATIONS + 1..u32::MAX].prop_map(Count::Huge),
    ];
    let table = (
        proptest::collection::vec(operation(), 0..5),
        count,
        prop_oneof![30 => Just(false), 1 => Just(true)],
        size(),
    );
    let rest = (
        flags,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0..8usize,
        0..8usize,
    );
    (header, strings, table, rest).prop_map(
        |(
            (magic, struct_size, version),
            (name, plugin_version, author, description, sdk_version, api_requirement),
            (ops, count, table_null, operation_size),
            (flags, init, shutdown, save_state, desc_offset, table_offset),
        )| {
            // `Many` copies the first operation; with none, it declares the plain count.
            let count = match count {
                Count::Many(_) if ops.is_empty() => Count::Ops,
                c => c,
            };
            Spec {
                magic,
                struct_size,
                version,
                name,
                plugin_version,
                author,
                description,
                sdk_version,
                api_requirement,
                flags,
                init,
                shutdown,
                save_state,
                ops,
                count,
                table_null,
                operation_size,
                desc_offset,
                table_offset,
            }
        },
    )
}

// ---------------------------------------------------------------------------------------------
// The property.

/// Checks an accepted descriptor against what it declared.
fn check_accepted(spec: &Spec, v: &Validated) -> Result<(), TestCaseError> {
    let info = &v.info;
    let text = |s: &S| s.as_str().unwrap_or("").to_string();
    prop_assert_eq!(&info.path, Path::new(PATH));
    prop_assert_eq!(&info.name, &text(&spec.name));
    prop_assert_eq!(
        info.version.to_string(),
        semver::Version::parse(&text(&spec.plugin_version))
            .unwrap()
            .to_string()
    );
    prop_assert_eq!(&info.author, &text(&spec.author));
    prop_assert_eq!(&info.description, &text(&spec.description));
    prop_assert_eq!(
        info.sdk_version.to_string(),
        semver::Version::parse(&text(&spec.sdk_version))
            .unwrap()
            .to_string()
    );
    prop_assert_eq!(
        &info.abi_version,
        &format!("{}.{}", spec.version.major, spec.version.minor)
    );
    prop_assert_eq!(
        v.init.map(|f| f as usize),
        spec.init.then_some(init as *const () as usize)
    );
    prop_assert_eq!(
        v.shutdown.map(|f| f as usize),
        spec.shutdown.then_some(shutdown as *const () as usize)
    );
    // A field exists only if it ends within `struct_size`.
    let has_save_state = spec.struct_size() as usize >= offset_of!(calc_plugin_t, interfaces);
    prop_assert_eq!(
        v.save_state.map(|f| f as usize),
        (spec.save_state && has_save_state).then_some(save_state as *const () as usize),
        "struct_size {}",
        spec.struct_size()
    );
    let ops = spec.table();
    prop_assert_eq!(info.operations.len(), ops.len());
    prop_assert_eq!(v.executes.len(), ops.len());
    prop_assert_eq!(v.batches.len(), ops.len());
    let has_batch = spec.operation_size() as usize >= size_of::<calc_operation_t>();
    for (i, (op, got)) in ops.iter().zip(&info.operations).enumerate() {
        prop_assert_eq!(&got.name, &text(&op.name), "operation {}", i);
        prop_assert_eq!(&got.description, &text(&op.description), "operation {}", i);
        prop_assert_eq!(v.executes[i] as usize, execute as *const () as usize);
        prop_assert_eq!(
            v.batches[i].map(|f| f as usize),
            (op.execute_batch && has_batch).then_some(execute_batch as *const () as usize),
            "operation {} of size {}",
            i,
            spec.operation_size()
        );
        match &got.kind {
            OperationKind::Infix {
                symbol,
                precedence,
                right_associative,
            } => {
                prop_assert_eq!(op.kind, abi::CALC_OPERATION_KIND_INFIX);
                prop_assert_eq!(symbol, &text(&op.symbol));
                prop_assert_eq!(*precedence, op.precedence);
                prop_assert_eq!(
                    *right_associative,
                    op.associativity == abi::CALC_ASSOCIATIVITY_RIGHT
                );
            }
            OperationKind::Function {
                min_arity,
                max_arity,
            } => {
                prop_assert_eq!(op.kind, abi::CALC_OPERATION_KIND_FUNCTION);
                prop_assert_eq!(*min_arity, op.min_arity);
                prop_assert_eq!(
                    *max_arity,
                    (op.max_arity != abi::CALC_ARITY_VARIADIC).then_some(op.max_arity)
                );
            }
            #[allow(unreachable_patterns)] // OperationKind may grow
            other => prop_assert!(false, "unexpected kind {other:?}"),
        }
    }
    Ok(())
}

fn validate(spec: &Spec) -> Result<(), TestCaseError> {
    let built = build(spec);
    // `build` makes the descriptor, its table and its strings exactly as large as they declare
    // (see the module docs), and `built` keeps them alive during the call.
    let result = validate_descriptor(Path::new(PATH), built.desc());
    let faults = reference(spec);
    match result {
        Ok(v) => {
            prop_assert!(
                faults.is_empty(),
                "accepted, but the reference finds {faults:?}"
            );
            check_accepted(spec, &v)
        }
        Err(e) => {
            let text = e.to_string();
            prop_assert!(
                !faults.is_empty(),
                "refused, but the reference accepts: {text}"
            );
            prop_assert!(!text.contains(['\n', '\r']), "not one line: {text:?}");
            prop_assert!(
                text.starts_with(&format!("{PATH}: ")),
                "names no file: {text}"
            );
            prop_assert!(
                faults.iter().any(|f| reports(&e, f)),
                "{text}: not one of the faults the reference finds: {faults:?} ({e:?})"
            );
            Ok(())
        }
    }
}

#[test]
fn validation_accepts_exactly_what_the_abi_rules_allow() {
    use std::cell::Cell;
    let (accepted, refused) = (Cell::new(0u32), Cell::new(0u32));
    runner(1000)
        .run(&spec(), |spec| {
            let outcome = validate(&spec);
            if reference(&spec).is_empty() {
                accepted.set(accepted.get() + 1);
            } else {
                refused.set(refused.get() + 1);
            }
            outcome
        })
        .unwrap();
    // The generator is useful only if it reaches both outcomes often.
    let (accepted, refused) = (accepted.get(), refused.get());
    let total = accepted + refused;
    assert!(
        accepted * 10 >= total && refused * 10 >= total,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn a_null_descriptor_is_refused() {
    let e = validate_descriptor(Path::new(PATH), ptr::null()).unwrap_err();
    assert!(matches!(e, LoadError::EntryReturnedNull { .. }), "{e}");
}

/// A valid descriptor with one operation, to vary in the tests below.
fn valid() -> Spec {
    Spec {
        magic: abi::CALC_PLUGIN_MAGIC,
        struct_size: Size::Full,
        version: host_abi(),
        name: S::text("p"),
        plugin_version: S::text("1.0.0"),
        author: S::Null,
        description: S::Null,
        sdk_version: S::text(calc_sdk::SDK_VERSION),
        api_requirement: S::text(calc_sdk::API_REQUIREMENT_DEFAULT),
        flags: 0,
        init: true,
        shutdown: true,
        save_state: true,
        ops: vec![OpSpec {
            name: S::text("f"),
            description: S::Null,
            symbol: S::Null,
            execute: true,
            kind: abi::CALC_OPERATION_KIND_FUNCTION,
            associativity: 0,
            precedence: 0,
            min_arity: 1,
            max_arity: abi::CALC_ARITY_VARIADIC,
            execute_batch: true,
        }],
        count: Count::Ops,
        table_null: false,
        operation_size: Size::Full,
        desc_offset: 0,
        table_offset: 0,
    }
}

#[test]
fn boundaries_the_generator_may_miss() {
    let cases: Vec<(&str, Spec, bool)> = vec![
        ("valid", valid(), true),
        (
            "a string of CALC_MAX_STRING_LEN bytes",
            Spec {
                description: S::Bytes(vec![b'd'; MAX_STRING]),
                ..valid()
            },
            true,
        ),
        (
            "an unterminated string",
            Spec {
                description: S::Unterminated,
                ..valid()
            },
            false,
        ),
        (
            "a 64-character name",
            Spec {
                name: S::Bytes(vec![b'n'; 64]),
                ..valid()
            },
            true,
        ),
        (
            "a 65-character name",
            Spec {
                name: S::Bytes(vec![b'n'; 65]),
                ..valid()
            },
            false,
        ),
        (
            "CALC_MAX_OPERATIONS operations",
            Spec {
                count: Count::Many(abi::CALC_MAX_OPERATIONS),
                ..valid()
            },
            true,
        ),
        (
            "one more",
            Spec {
                count: Count::Many(abi::CALC_MAX_OPERATIONS + 1),
                ..valid()
            },
            false,
        ),
        (
            "an ABI 1.0 descriptor, unaligned, with 1.0 sizes",
            Spec {
                version: calc_abi_version_t {
                    major: abi::CALC_ABI_VERSION_MAJOR,
                    minor: 0,
                },
                struct_size: Size::AtMinor,
                operation_size: Size::AtMinor,
                desc_offset: 3,
                table_offset: 5,
                ..valid()
            },
            true,
        ),
        (
            // Found by this suite at 100,000 cases: the host copied one byte of `save_state`,
            // making a garbage function pointer of it.
            "an ABI 1.0 descriptor whose struct_size ends inside save_state",
            Spec {
                version: calc_abi_version_t {
                    major: abi::CALC_ABI_VERSION_MAJOR,
                    minor: 0,
                },
                struct_size: Size::Any(plugin_size_at(0) as u32 + 1),
                save_state: true,
                ..valid()
            },
            true,
        ),
        (
            "an ABI 1.0 operation whose operation_size ends inside execute_batch",
            Spec {
                version: calc_abi_version_t {
                    major: abi::CALC_ABI_VERSION_MAJOR,
                    minor: 0,
                },
                operation_size: Size::Any(operation_size_at(0) as u32 + 3),
                ..valid()
            },
            true,
        ),
        (
            "a descriptor one byte short of its minor",
            Spec {
                struct_size: Size::Any(plugin_size_at(host_abi().minor) as u32 - 1),
                ..valid()
            },
            false,
        ),
        (
            "an operation one byte short of its minor",
            Spec {
                operation_size: Size::Any(operation_size_at(host_abi().minor) as u32 - 1),
                ..valid()
            },
            false,
        ),
        (
            "no operations, NULL table, any element size",
            Spec {
                ops: Vec::new(),
                table_null: true,
                operation_size: Size::Any(0),
                ..valid()
            },
            true,
        ),
        (
            "a count too large to allocate",
            Spec {
                count: Count::Huge(u32::MAX),
                ..valid()
            },
            false,
        ),
    ];
    for (what, spec, accepted) in cases {
        assert_eq!(reference(&spec).is_empty(), accepted, "reference: {what}");
        validate(&spec).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}
