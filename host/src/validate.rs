//! Validation of plugin descriptors: pure checks over data the loader copied out of the plugin.
//!
//! The loader reads a descriptor in two stages so that it never reads past what the plugin
//! declared: [`check_header`] runs on the first 16 bytes (magic, size, ABI version) before any
//! other field is read; [`check_descriptor`] runs on the copied fields.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::path::Path;

use calc_sdk::abi::{
    self, calc_abi_version_t, calc_execute_batch_fn, calc_execute_fn, calc_init_fn,
    calc_interface_t, calc_operation_t, calc_plugin_t, calc_shutdown_fn,
};

use crate::error::LoadError;
use crate::info::{InterfaceInfo, OperationInfo, OperationKind, PluginInfo};

/// The ABI version this host implements.
pub const HOST_ABI: calc_abi_version_t = calc_abi_version_t {
    major: abi::CALC_ABI_VERSION_MAJOR,
    minor: abi::CALC_ABI_VERSION_MINOR,
};

/// The calc API version of this host (the SDK version it is built with).
pub fn host_api_version() -> semver::Version {
    semver::Version::parse(calc_sdk::SDK_VERSION).expect("the SDK version is valid semver")
}

/// The ABI compatibility rule: majors equal, and the plugin's minor at most the host's; for
/// major 0 the minors must be equal. Returns the rule that failed.
pub fn abi_compatible(
    host: calc_abi_version_t,
    plugin: calc_abi_version_t,
) -> Result<(), &'static str> {
    if plugin.major != host.major {
        return Err(if plugin.major > host.major {
            "plugin's ABI major is newer than the host's"
        } else {
            "plugin's ABI major is older than the host's"
        });
    }
    if host.major == 0 && plugin.minor != host.minor {
        return Err("for ABI 0.x the minor versions must be equal");
    }
    if plugin.minor > host.minor {
        return Err("plugin's ABI minor is newer than the host's");
    }
    Ok(())
}

/// The largest `struct_size` or `operation_size` the host accepts. Later minors only append
/// fields, so real structs stay far below it (`calc_plugin_t` is 112 bytes at ABI 1.3); a larger
/// value is garbage, and as `operation_size` it would send the loader's reads far past the
/// table.
pub const MAX_STRUCT_SIZE: u32 = 4096;

/// The error for a size field over [`MAX_STRUCT_SIZE`].
fn oversized(path: &Path, field: &str, found: u32) -> LoadError {
    LoadError::InvalidField {
        path: path.to_path_buf(),
        field: field.into(),
        reason: format!("{found} bytes, more than the {MAX_STRUCT_SIZE} a calc struct may have"),
    }
}

/// Size of `calc_plugin_t` at ABI `1.minor`: the fields that exist at that minor.
pub fn plugin_struct_size(minor: u16) -> usize {
    match minor {
        0 => std::mem::offset_of!(calc_plugin_t, save_state),
        1..=3 => std::mem::offset_of!(calc_plugin_t, interfaces),
        _ => std::mem::size_of::<calc_plugin_t>(),
    }
}

/// Size of `calc_operation_t` at ABI `1.minor`: the fields that exist at that minor.
pub fn operation_struct_size(minor: u16) -> usize {
    match minor {
        0 | 1 => std::mem::offset_of!(calc_operation_t, execute_batch),
        _ => std::mem::size_of::<calc_operation_t>(),
    }
}

/// Size of `calc_interface_t` at ABI `1.minor` (0 before 1.4, which has no interfaces).
pub fn interface_struct_size(minor: u16) -> usize {
    match minor {
        0..=3 => 0,
        _ => std::mem::size_of::<calc_interface_t>(),
    }
}

/// How many bytes of a `calc_plugin_t` whose `struct_size` is `struct_size` hold whole fields
/// this host knows: the size at the newest minor that fits. A field exists only if it ends
/// within `struct_size`, so a size that ends inside a field (a malformed plugin) leaves that
/// field out rather than reading part of a pointer.
pub fn plugin_fields_within(struct_size: usize) -> usize {
    (0..=abi::CALC_ABI_VERSION_MINOR)
        .map(plugin_struct_size)
        .filter(|&s| s <= struct_size)
        .max()
        .unwrap_or(0)
}

/// As [`plugin_fields_within`], for a `calc_operation_t` of `operation_size` bytes.
pub fn operation_fields_within(operation_size: usize) -> usize {
    (0..=abi::CALC_ABI_VERSION_MINOR)
        .map(operation_struct_size)
        .filter(|&s| s <= operation_size)
        .max()
        .unwrap_or(0)
}

/// As [`plugin_fields_within`], for a `calc_interface_t` of `interface_size` bytes.
pub fn interface_fields_within(interface_size: usize) -> usize {
    (0..=abi::CALC_ABI_VERSION_MINOR)
        .map(interface_struct_size)
        .filter(|&s| s <= interface_size)
        .max()
        .unwrap_or(0)
}

/// The first fields of a descriptor, read before anything else.
#[derive(Debug, Clone, Copy)]
pub struct RawHeader {
    /// `magic`.
    pub magic: u64,
    /// `struct_size`.
    pub struct_size: u32,
    /// `abi_version`.
    pub abi_version: calc_abi_version_t,
}

/// Checks magic, ABI version and struct size. Only after this succeeds may the loader read the
/// rest of the descriptor (`plugin_struct_size(minor)` bytes of it).
pub fn check_header(path: &Path, header: &RawHeader) -> Result<(), LoadError> {
    if header.magic != abi::CALC_PLUGIN_MAGIC {
        return Err(LoadError::BadMagic {
            path: path.to_path_buf(),
            expected: abi::CALC_PLUGIN_MAGIC,
            found: header.magic,
        });
    }
    abi_compatible(HOST_ABI, header.abi_version).map_err(|reason| LoadError::AbiVersion {
        path: path.to_path_buf(),
        plugin: header.abi_version,
        host: HOST_ABI,
        reason,
    })?;
    if header.struct_size > MAX_STRUCT_SIZE {
        return Err(oversized(
            path,
            "calc_plugin_t.struct_size",
            header.struct_size,
        ));
    }
    let expected = plugin_struct_size(header.abi_version.minor);
    if (header.struct_size as usize) < expected {
        return Err(LoadError::StructSize {
            path: path.to_path_buf(),
            what: "calc_plugin_t.struct_size",
            expected,
            found: header.struct_size,
            abi: header.abi_version,
        });
    }
    Ok(())
}

pub use calc_runtime::memory::RawStr;

/// One operation as copied from the plugin.
#[derive(Debug, Clone)]
pub struct RawOperation {
    /// `name`.
    pub name: RawStr,
    /// `description`.
    pub description: RawStr,
    /// `symbol`.
    pub symbol: RawStr,
    /// `execute`.
    pub execute: calc_execute_fn,
    /// `kind`.
    pub kind: i32,
    /// `associativity`.
    pub associativity: i32,
    /// `precedence`.
    pub precedence: i32,
    /// `min_arity`.
    pub min_arity: u32,
    /// `max_arity`.
    pub max_arity: u32,
    /// `execute_batch` (ABI 1.2; `None` when absent).
    pub execute_batch: calc_execute_batch_fn,
}

/// One interface entry as copied from the plugin.
#[derive(Debug, Clone)]
pub struct RawInterface {
    /// `id`.
    pub id: RawStr,
    /// `version`.
    pub version: calc_abi_version_t,
    /// `vtable_size`.
    pub vtable_size: u32,
    /// `vtable`, as an address.
    pub vtable: usize,
    /// How many bytes of the vtable are readable (a prefix); only measured when `vtable` is not
    /// NULL and `vtable_size` is within [`abi::CALC_MAX_VTABLE_SIZE`], else 0.
    pub vtable_readable: usize,
    /// `flags`.
    pub flags: u32,
    /// For a bytes interface whose whole vtable was readable: the first field that is not a
    /// function of the process's code (its index and value), if any.
    pub slot_not_code: Option<(usize, usize)>,
}

/// The descriptor's fields after the header, as copied from the plugin.
#[derive(Debug, Clone)]
pub struct RawDescriptor {
    /// The already-checked header.
    pub header: RawHeader,
    /// `name`.
    pub name: RawStr,
    /// `version`.
    pub version: RawStr,
    /// `author`.
    pub author: RawStr,
    /// `description`.
    pub description: RawStr,
    /// `sdk_version`.
    pub sdk_version: RawStr,
    /// `api_requirement`.
    pub api_requirement: RawStr,
    /// `flags`.
    pub flags: u64,
    /// `init`.
    pub init: calc_init_fn,
    /// `shutdown`.
    pub shutdown: calc_shutdown_fn,
    /// `save_state` (ABI 1.1; `None` when absent).
    pub save_state: calc_sdk::abi::calc_save_state_fn,
    /// The operations (read only when the table itself passed [`check_operation_table`]).
    pub operations: Vec<RawOperation>,
    /// The interfaces (ABI 1.4; read only when the table passed [`check_interface_table`]).
    pub interfaces: Vec<RawInterface>,
}

/// A table of the descriptor, as [`check_table`] checks it.
struct Table {
    /// The pointer field, e.g. `operations`.
    field: &'static str,
    /// The count field, e.g. `operation_count`.
    count_field: &'static str,
    /// The element size field, e.g. `calc_plugin_t.operation_size`.
    size_field: &'static str,
    /// The most elements allowed.
    max: u32,
    /// The element size the declared ABI minor requires.
    expected: usize,
}

/// Checks a table's shape before the loader reads it: count bounded, element size large enough
/// and bounded, pointer present when the count is not zero.
fn check_table(
    path: &Path,
    abi_version: calc_abi_version_t,
    is_null: bool,
    count: u32,
    element_size: u32,
    table: Table,
) -> Result<(), LoadError> {
    let invalid = |reason: String| LoadError::InvalidField {
        path: path.to_path_buf(),
        field: table.field.into(),
        reason,
    };
    if count > table.max {
        return Err(invalid(format!(
            "{count} {}, more than the {} allowed",
            table.field, table.max
        )));
    }
    if count > 0 && is_null {
        return Err(invalid(format!(
            "NULL table with {} {count}",
            table.count_field
        )));
    }
    if count > 0 && element_size > MAX_STRUCT_SIZE {
        return Err(oversized(path, table.size_field, element_size));
    }
    if count > 0 && (element_size as usize) < table.expected {
        return Err(LoadError::StructSize {
            path: path.to_path_buf(),
            what: table.size_field,
            expected: table.expected,
            found: element_size,
            abi: abi_version,
        });
    }
    Ok(())
}

/// Checks the operation table's shape before the loader reads it (see [`check_table`]).
pub fn check_operation_table(
    path: &Path,
    abi_version: calc_abi_version_t,
    is_null: bool,
    count: u32,
    element_size: u32,
) -> Result<(), LoadError> {
    let table = Table {
        field: "operations",
        count_field: "operation_count",
        size_field: "calc_plugin_t.operation_size",
        max: abi::CALC_MAX_OPERATIONS,
        expected: operation_struct_size(abi_version.minor),
    };
    check_table(path, abi_version, is_null, count, element_size, table)
}

/// Checks the interface table's shape before the loader reads it (ABI 1.4, see
/// [`check_table`]).
pub fn check_interface_table(
    path: &Path,
    abi_version: calc_abi_version_t,
    is_null: bool,
    count: u32,
    element_size: u32,
) -> Result<(), LoadError> {
    let table = Table {
        field: "interfaces",
        count_field: "interface_count",
        size_field: "calc_plugin_t.interface_size",
        max: abi::CALC_MAX_INTERFACES,
        expected: interface_struct_size(abi_version.minor),
    };
    check_table(path, abi_version, is_null, count, element_size, table)
}

/// An interface id: `"vendor.name"`, two or more dot-separated parts of `[a-z0-9_-]` each
/// starting with a letter or digit, at most [`abi::CALC_MAX_INTERFACE_ID_LEN`] bytes.
pub fn is_interface_id(s: &str) -> bool {
    s.len() <= abi::CALC_MAX_INTERFACE_ID_LEN as usize
        && s.split('.').count() >= 2
        && s.split('.').all(|part| {
            part.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        })
}

/// A descriptor that passed every check: metadata plus the function pointers to call.
#[derive(Debug, Clone)]
pub struct Validated {
    /// Metadata, all strings copied.
    pub info: PluginInfo,
    /// `init`, may be `None`.
    pub init: calc_init_fn,
    /// `shutdown`, may be `None`.
    pub shutdown: calc_shutdown_fn,
    /// `save_state`, may be `None`.
    pub save_state: calc_sdk::abi::calc_save_state_fn,
    /// The `execute_batch` of each operation (ABI 1.2; `None` when absent), in the order of
    /// `info.operations`.
    pub batches: Vec<calc_execute_batch_fn>,
    /// The address of each interface's vtable, in the order of `info.interfaces`: readable
    /// for `vtable_size` bytes while the library is loaded.
    pub vtables: Vec<usize>,
    /// The `execute` of each operation, in the order of `info.operations`.
    pub executes: Vec<
        unsafe extern "C" fn(
            *mut std::ffi::c_void,
            *const f64,
            usize,
            *mut f64,
            *mut std::ffi::c_char,
            usize,
        ) -> abi::calc_status_t,
    >,
}

struct Checker<'a> {
    path: &'a Path,
}

impl Checker<'_> {
    fn invalid(&self, field: impl Into<String>, reason: impl Into<String>) -> LoadError {
        LoadError::InvalidField {
            path: self.path.to_path_buf(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A string that may be NULL (then empty).
    fn optional(&self, field: &str, raw: &RawStr) -> Result<String, LoadError> {
        match raw {
            RawStr::Null => Ok(String::new()),
            other => self.required(field, other),
        }
    }

    fn required(&self, field: &str, raw: &RawStr) -> Result<String, LoadError> {
        match raw {
            RawStr::Null => Err(self.invalid(field, "NULL")),
            RawStr::TooLong => Err(self.invalid(
                field,
                format!(
                    "not NUL-terminated within {} bytes",
                    abi::CALC_MAX_STRING_LEN
                ),
            )),
            RawStr::Unreadable { address, readable } => Err(self.invalid(
                field,
                format!(
                    "string at {address:#x} runs into unreadable memory after {readable} bytes, \
                     before its NUL"
                ),
            )),
            RawStr::Bytes(b) => String::from_utf8(b.clone()).map_err(|e| {
                self.invalid(
                    field,
                    format!(
                        "not valid UTF-8 (byte {} of {:?})",
                        e.utf8_error().valid_up_to(),
                        String::from_utf8_lossy(b)
                    ),
                )
            }),
        }
    }

    fn semver_field(
        &self,
        field: &'static str,
        raw: &RawStr,
    ) -> Result<semver::Version, LoadError> {
        let s = self.required(field, raw)?;
        semver::Version::parse(&s).map_err(|source| LoadError::Semver {
            path: self.path.to_path_buf(),
            field,
            value: s,
            source: source.into(),
        })
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_plugin_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Characters an infix symbol may be made of.
pub const SYMBOL_CHARS: &str = "+-*/%^&|<>=!~@#$?";

fn is_symbol(s: &str) -> bool {
    (1..=3).contains(&s.chars().count()) && s.chars().all(|c| SYMBOL_CHARS.contains(c))
}

/// Checks every field after the header and builds the plugin's metadata.
pub fn check_descriptor(path: &Path, raw: &RawDescriptor) -> Result<Validated, LoadError> {
    let c = Checker { path };
    let name = c.required("name", &raw.name)?;
    if !is_plugin_name(&name) {
        return Err(c.invalid(
            "name",
            format!("{name:?} is not 1 to 64 characters of [A-Za-z0-9_.-]"),
        ));
    }
    let version = c.semver_field("version", &raw.version)?;
    let author = c.optional("author", &raw.author)?;
    let description = c.optional("description", &raw.description)?;
    let sdk_version = c.semver_field("sdk_version", &raw.sdk_version)?;
    let requirement = c.required("api_requirement", &raw.api_requirement)?;
    let api_requirement =
        semver::VersionReq::parse(&requirement).map_err(|source| LoadError::Semver {
            path: path.to_path_buf(),
            field: "api_requirement",
            value: requirement.clone(),
            source: source.into(),
        })?;
    let host_version = host_api_version();
    if !api_requirement.matches(&host_version) {
        return Err(LoadError::ApiRequirement {
            path: path.to_path_buf(),
            requirement,
            host_version: host_version.to_string(),
        });
    }
    if raw.flags != 0 {
        return Err(c.invalid(
            "flags",
            format!("{:#x} has bits no ABI 1.0 flag defines", raw.flags),
        ));
    }

    let mut operations = Vec::with_capacity(raw.operations.len());
    let mut executes = Vec::with_capacity(raw.operations.len());
    let mut batches = Vec::with_capacity(raw.operations.len());
    let mut seen = HashSet::new();
    for (i, op) in raw.operations.iter().enumerate() {
        let field = |f: &str| format!("operations[{i}].{f}");
        let op_name = c.required(&field("name"), &op.name)?;
        if !is_identifier(&op_name) {
            return Err(c.invalid(field("name"), format!("{op_name:?} is not an identifier")));
        }
        let field = |f: &str| format!("operations[{i}] ({op_name}).{f}");
        if !seen.insert(op_name.clone()) {
            return Err(c.invalid(field("name"), "duplicate operation name in this plugin"));
        }
        let execute = op
            .execute
            .ok_or_else(|| c.invalid(field("execute"), "NULL function pointer"))?;
        let kind = match op.kind {
            abi::CALC_OPERATION_KIND_INFIX => {
                let symbol = c.required(&field("symbol"), &op.symbol)?;
                if !is_symbol(&symbol) {
                    return Err(c.invalid(
                        field("symbol"),
                        format!("{symbol:?} is not 1 to 3 characters of {SYMBOL_CHARS}"),
                    ));
                }
                if op.min_arity != 2 || op.max_arity != 2 {
                    return Err(c.invalid(
                        field("arity"),
                        format!(
                            "an infix operator takes 2 operands, declared {}..{}",
                            op.min_arity, op.max_arity
                        ),
                    ));
                }
                let right_associative = match op.associativity {
                    abi::CALC_ASSOCIATIVITY_LEFT => false,
                    abi::CALC_ASSOCIATIVITY_RIGHT => true,
                    other => {
                        return Err(c.invalid(
                            field("associativity"),
                            format!("{other} is neither LEFT nor RIGHT"),
                        ))
                    }
                };
                OperationKind::Infix {
                    symbol,
                    precedence: op.precedence,
                    right_associative,
                }
            }
            abi::CALC_OPERATION_KIND_FUNCTION => {
                let max_arity = (op.max_arity != abi::CALC_ARITY_VARIADIC).then_some(op.max_arity);
                if max_arity.is_some_and(|max| max < op.min_arity) {
                    return Err(c.invalid(
                        field("arity"),
                        format!(
                            "min_arity {} is greater than max_arity {}",
                            op.min_arity, op.max_arity
                        ),
                    ));
                }
                OperationKind::Function {
                    min_arity: op.min_arity,
                    max_arity,
                }
            }
            other => {
                return Err(c.invalid(field("kind"), format!("unknown operation kind {other}")))
            }
        };
        let description = c.optional(&field("description"), &op.description)?;
        operations.push(OperationInfo {
            name: op_name,
            description,
            kind,
        });
        executes.push(execute);
        batches.push(op.execute_batch);
    }

    let mut interfaces = Vec::with_capacity(raw.interfaces.len());
    let mut vtables = Vec::with_capacity(raw.interfaces.len());
    for (i, iface) in raw.interfaces.iter().enumerate() {
        let field = |f: &str| format!("interfaces[{i}].{f}");
        let id = c.required(&field("id"), &iface.id)?;
        if !is_interface_id(&id) {
            return Err(c.invalid(
                field("id"),
                format!(
                    "{id:?} is not an interface id (\"vendor.name\": dot-separated parts of \
                     [a-z0-9_-], at most {} bytes)",
                    abi::CALC_MAX_INTERFACE_ID_LEN
                ),
            ));
        }
        let field = |f: &str| format!("interfaces[{i}] ({id}).{f}");
        let (major, minor) = (iface.version.major, iface.version.minor);
        if interfaces
            .iter()
            .any(|known: &InterfaceInfo| known.id == id && known.major == major)
        {
            return Err(c.invalid(
                field("id"),
                format!("declared twice for major {major} in this plugin"),
            ));
        }
        if iface.vtable_size == 0 || iface.vtable_size > abi::CALC_MAX_VTABLE_SIZE {
            return Err(c.invalid(
                field("vtable_size"),
                format!(
                    "{} bytes, not 1 to {}",
                    iface.vtable_size,
                    abi::CALC_MAX_VTABLE_SIZE
                ),
            ));
        }
        if iface.vtable == 0 {
            return Err(c.invalid(field("vtable"), "NULL"));
        }
        if iface.vtable_readable < iface.vtable_size as usize {
            return Err(c.invalid(
                field("vtable"),
                format!(
                    "{} bytes at {:#x}, of which only {} are readable memory",
                    iface.vtable_size, iface.vtable, iface.vtable_readable
                ),
            ));
        }
        if iface.flags & !abi::CALC_INTERFACE_FLAG_BYTES != 0 {
            return Err(c.invalid(
                field("flags"),
                format!("{:#x} has bits no ABI 1.4 flag defines", iface.flags),
            ));
        }
        let bytes = iface.flags & abi::CALC_INTERFACE_FLAG_BYTES != 0;
        if bytes && !(iface.vtable_size as usize).is_multiple_of(std::mem::size_of::<usize>()) {
            return Err(c.invalid(
                field("vtable_size"),
                format!(
                    "{} bytes, not a whole number of functions (a bytes interface)",
                    iface.vtable_size
                ),
            ));
        }
        if let Some((slot, value)) = iface.slot_not_code.filter(|_| bytes) {
            return Err(c.invalid(
                field(&format!("vtable[{slot}]")),
                format!("{value:#x} is not code (every function of a bytes interface is set)"),
            ));
        }
        interfaces.push(InterfaceInfo {
            id,
            major,
            minor,
            vtable_size: iface.vtable_size,
            bytes,
        });
        vtables.push(iface.vtable);
    }

    Ok(Validated {
        info: PluginInfo {
            name,
            version,
            author,
            description,
            path: path.to_path_buf(),
            abi_version: raw.header.abi_version.to_string(),
            sdk_version,
            api_requirement,
            operations,
            interfaces,
        },
        init: raw.init,
        shutdown: raw.shutdown,
        save_state: raw.save_state,
        batches,
        vtables,
        executes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u16, minor: u16) -> calc_abi_version_t {
        calc_abi_version_t { major, minor }
    }

    #[test]
    fn abi_compatibility_table() {
        let cases = [
            // (host, plugin, compatible)
            (v(1, 0), v(1, 0), true),
            (v(1, 2), v(1, 0), true),
            (v(1, 2), v(1, 2), true),
            (v(1, 2), v(1, 3), false),
            (v(1, 2), v(2, 0), false),
            (v(2, 0), v(1, 9), false),
            (v(1, 0), v(0, 9), false),
            (v(0, 3), v(0, 3), true),
            (v(0, 3), v(0, 2), false),
            (v(0, 3), v(0, 4), false),
        ];
        for (host, plugin, ok) in cases {
            assert_eq!(
                abi_compatible(host, plugin).is_ok(),
                ok,
                "host {host} plugin {plugin}"
            );
        }
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn struct_sizes_per_minor_end_before_the_fields_of_later_minors() {
        assert_eq!(plugin_struct_size(0), 104);
        assert_eq!(plugin_struct_size(1), 112);
        assert_eq!(plugin_struct_size(2), 112);
        assert_eq!(operation_struct_size(0), 56);
        assert_eq!(operation_struct_size(1), 56);
        assert_eq!(operation_struct_size(2), 64);
        // ABI 1.3 only appended to the host table.
        assert_eq!(plugin_struct_size(3), 112);
        assert_eq!(operation_struct_size(3), 64);
        // ABI 1.4 appended the interface table.
        assert_eq!(plugin_struct_size(4), 128);
        assert_eq!(operation_struct_size(4), 64);
        assert_eq!(interface_struct_size(3), 0);
        assert_eq!(interface_struct_size(4), 32);
        assert_eq!(
            plugin_struct_size(HOST_ABI.minor),
            std::mem::size_of::<calc_plugin_t>()
        );
        assert_eq!(
            operation_struct_size(HOST_ABI.minor),
            std::mem::size_of::<calc_operation_t>()
        );
    }

    #[test]
    fn identifiers_symbols_and_names() {
        assert!(
            is_identifier("max")
                && is_identifier("_x1")
                && !is_identifier("1x")
                && !is_identifier("")
        );
        assert!(!is_identifier("a-b"));
        assert!(
            is_symbol("+")
                && is_symbol("**")
                && !is_symbol("")
                && !is_symbol("++++")
                && !is_symbol("a")
        );
        assert!(
            is_plugin_name("calc-example.mul_2") && !is_plugin_name("a b") && !is_plugin_name("")
        );
        for good in ["acme.formatter", "org.example.text-lint_2", "a.b", "9x.y"] {
            assert!(is_interface_id(good), "{good}");
        }
        let long = format!(
            "a.{}",
            "b".repeat(abi::CALC_MAX_INTERFACE_ID_LEN as usize - 2)
        );
        assert!(is_interface_id(&long));
        let too_long = format!("{long}b");
        for bad in [
            "formatter",
            "",
            ".a",
            "a.",
            "a..b",
            "Acme.fmt",
            "acme.-fmt",
            "acme._fmt",
            "acme fmt.x",
            "acme/fmt.x",
            &too_long,
        ] {
            assert!(!is_interface_id(bad), "{bad}");
        }
    }
}
