//! The table of services the host hands to a plugin's `init`.

use core::ffi::{c_char, c_void};

use super::status::calc_log_level_t;
use super::version::calc_abi_version_t;

/// Sends one log line to the host, which routes it into its own logging (`tracing`) tagged with
/// the plugin's name.
///
/// `context` must be the `context` field of the table the function came from. `message` is a
/// NUL-terminated UTF-8 string owned by the caller; the host copies it before returning (invalid
/// UTF-8 is replaced, not rejected). Unknown levels are logged as `INFO`. `[any-thread]`
///
/// Since ABI 1.0.
pub type calc_log_fn = Option<
    unsafe extern "C" fn(context: *mut c_void, level: calc_log_level_t, message: *const c_char),
>;

/// Reads one configuration value the host holds for this plugin.
///
/// `key` is a NUL-terminated string owned by the caller. Returns a NUL-terminated UTF-8 string
/// owned by the host and valid until the plugin's `shutdown` returns, or NULL when the key is not
/// set. `[any-thread]`
///
/// Since ABI 1.0.
pub type calc_get_config_fn =
    Option<unsafe extern "C" fn(context: *mut c_void, key: *const c_char) -> *const c_char>;

/// Gives `init` the state the previous version of this plugin saved with `save_state` (hot
/// reload). Returns 1 and writes the bytes' address and length when there is state; returns 0
/// (and writes NULL and 0) when there is none: first load, or the old version saved nothing.
/// The bytes are owned by the host and valid until `init` returns: copy what you keep. Call it
/// only during `init`. `[main-thread]`
///
/// Since ABI 1.1.
pub type calc_get_state_fn = Option<
    unsafe extern "C" fn(
        context: *mut c_void,
        out_data: *mut *const c_void,
        out_len: *mut usize,
    ) -> i32,
>;

/// Services the host offers to a plugin, passed to `init`.
///
/// The table and everything it points to are owned by the host and stay valid from the call to
/// `init` until `shutdown` returns, so a plugin may keep the pointer in its instance state and use
/// it from any thread. A plugin built against a newer minor must check `struct_size` (and NULL)
/// before using a field that this version does not have.
///
/// Since ABI 1.0.
#[repr(C)]
pub struct calc_host_api_t {
    /// `sizeof(calc_host_api_t)` as compiled into the host: fields beyond it do not exist.
    /// Since ABI 1.0.
    pub struct_size: u32,
    /// The ABI version the host implements. Since ABI 1.0.
    pub abi_version: calc_abi_version_t,
    /// The host's calc API version as a semver string, e.g. `"1.0.0"`; NUL-terminated, owned by
    /// the host. Since ABI 1.0.
    pub host_version: *const c_char,
    /// Opaque host data for this plugin; pass it unchanged as the first argument of every
    /// function in this table. Since ABI 1.0.
    pub context: *mut c_void,
    /// Logging; never NULL. Since ABI 1.0.
    pub log: calc_log_fn,
    /// Configuration lookup; never NULL. Since ABI 1.0.
    pub get_config: calc_get_config_fn,
    /* Since ABI 1.1 */
    /// Hot-reload state of the previous version; never NULL in a 1.1 host. A plugin built for
    /// 1.1 running in a 1.0 host finds `struct_size` too small for this field. Since ABI 1.1.
    pub get_state: calc_get_state_fn,
}
