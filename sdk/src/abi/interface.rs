//! Interfaces: tables of functions an application defines, which plugins implement (and which
//! a host may offer plugins in return), each under a string id and a version of its own.
//!
//! calc's own interface is the table of operations (`calc_operation_t`); an interface lets any
//! application define another. The application writes the vtable type (a `#[repr(C)]` struct of
//! function pointers, or its C twin), gives it an id (`"vendor.name"`) and a version, and evolves
//! it under the same rules as calc's ABI: fields are appended within a major, and a reader
//! checks `vtable_size` before it touches a field (`docs/INTERFACES.md`).

use core::ffi::{c_char, c_void};

use super::status::calc_status_t;
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

/// `calc_interface_t.flags`: every field of the vtable is a `calc_bytes_fn` (so `vtable_size`
/// is a multiple of the pointer size, and no field is NULL). The host knows how to carry such
/// an interface to a runner process: its plugins may run isolated, and hosts call its functions
/// by slot number (`InterfaceHandle::call_bytes` in Rust).
///
/// Since ABI 1.4.
pub const CALC_INTERFACE_FLAG_BYTES: u32 = 1;

/// Receives bytes a `calc_bytes_fn` produces: the host copies `len` bytes from `data` before
/// returning (`data` stays the caller's; it may be NULL only when `len` is 0). Call it any
/// number of times, only during the call it was passed to, on that call's thread. The host
/// bounds what it keeps (32 MiB in all): past that, the call fails.
///
/// Since ABI 1.4.
pub type calc_bytes_write_fn =
    Option<unsafe extern "C" fn(writer: *mut c_void, data: *const c_void, len: usize)>;

/// The one function shape of a bytes interface (`CALC_INTERFACE_FLAG_BYTES`): bytes in, bytes
/// out, a status and a message.
///
/// `instance` is the plugin's instance. `input` points to `input_len` bytes owned by the host,
/// valid during the call (NULL when `input_len` is 0). The result goes out through
/// `write(writer, data, len)`, in any number of pieces; nothing is allocated on one side and
/// freed on the other. On success return `CALC_STATUS_OK`; on failure another status, with a
/// NUL-terminated UTF-8 message of at most `error_buf_size` bytes in `error_buf` (owned by the
/// host); what was written is then dropped. Must not unwind, longjmp or exit. `[any-thread]`
///
/// Since ABI 1.4.
pub type calc_bytes_fn = Option<
    unsafe extern "C" fn(
        instance: *mut c_void,
        input: *const c_void,
        input_len: usize,
        write: calc_bytes_write_fn,
        writer: *mut c_void,
        error_buf: *mut c_char,
        error_buf_size: usize,
    ) -> calc_status_t,
>;

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
    /// `CALC_INTERFACE_FLAG_*` bits: `CALC_INTERFACE_FLAG_BYTES`, or 0. Other bits are
    /// refused. Since ABI 1.4.
    pub flags: u32,
}
