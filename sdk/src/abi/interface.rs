//! Interfaces: tables of functions an application defines, which plugins implement (and which
//! a host may offer plugins in return), each under a string id and a version of its own.
//!
//! calc's own interface is the table of operations (`calc_operation_t`); an interface lets any
//! application define another. The application writes the vtable type (a `#[repr(C)]` struct of
//! function pointers, or its C twin), gives it an id (`"vendor.name"`) and a version, and evolves
//! it under the same rules as calc's ABI: fields are appended within a major, and a reader
//! checks `vtable_size` before it touches a field (`docs/INTERFACES.md`).

use core::ffi::{c_char, c_void};

use super::version::calc_abi_version_t;

/// The most interfaces one plugin may declare.
///
/// Since ABI 1.4.
pub const CALC_MAX_INTERFACES: u32 = 64;

/// The largest vtable the host accepts, in bytes (512 function pointers on a 64-bit target).
/// A larger `vtable_size` is refused: it is garbage, or a table no reader should walk.
///
/// Since ABI 1.4.
pub const CALC_MAX_VTABLE_SIZE: u32 = 4096;

/// The longest interface id, in bytes without the terminating NUL.
///
/// Since ABI 1.4.
pub const CALC_MAX_INTERFACE_ID_LEN: u32 = 128;

/// One interface a plugin implements: its id, its version, and the plugin's vtable for it.
///
/// Owned by the plugin, valid and unchanged while the library is loaded, like the descriptor.
/// The host steps through the table by `calc_plugin_t.interface_size`, so later minors may
/// append fields here. The host validates every entry (id, version, size, and that the whole
/// vtable is readable memory of the process) before any plugin code but `plugin_entry` runs;
/// the function pointers inside the vtable are the application's to check, since only it knows
/// which fields are functions.
///
/// Since ABI 1.4.
#[repr(C)]
pub struct calc_interface_t {
    /// The interface's id: `"vendor.name"`, two or more dot-separated parts of
    /// `[a-z0-9_-]`, each starting with a letter or digit, at most `CALC_MAX_INTERFACE_ID_LEN`
    /// bytes. Unique within the plugin for a given major. NUL-terminated, never NULL.
    /// Since ABI 1.4.
    pub id: *const c_char,
    /// The version of the interface the vtable was compiled against (the interface's own
    /// version, not calc's ABI version). Since ABI 1.4.
    pub version: calc_abi_version_t,
    /// `sizeof` the vtable as compiled into the plugin: 1 to `CALC_MAX_VTABLE_SIZE`. A host
    /// reads no field that does not end within it. Since ABI 1.4.
    pub vtable_size: u32,
    /// The vtable: the interface's struct of function pointers (and whatever else the interface
    /// defines), `vtable_size` bytes, owned by the plugin. Its functions take the plugin's
    /// instance (what `init` produced) as their first argument by convention. Never NULL.
    /// Since ABI 1.4.
    pub vtable: *const c_void,
}
