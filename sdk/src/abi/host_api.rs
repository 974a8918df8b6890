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

/// Asks whether the host call in progress on the calling thread (`execute`, `execute_batch`) has
/// passed its deadline: nonzero when it has, 0 when it has not or when the call has no deadline.
/// A long-running operation polls it and, once it is nonzero, stops and returns an error (by
/// convention `CALC_STATUS_ERROR` with the message `"deadline exceeded"`).
///
/// The deadline is cooperative: the host never interrupts an in-process call, so a plugin that
/// does not poll simply runs to its end. It belongs to the thread the host called the plugin on;
/// on any other thread (one the plugin started itself) this returns 0, so poll on the calling
/// thread and tell your own workers, or hand them the time from `deadline_remaining_ns`.
///
/// Cheap enough for a tight loop: a thread-local read when the call has no deadline, plus one
/// monotonic clock read when it has (`docs/PLUGIN_GUIDE.md` gives measured figures). Takes no
/// pointer besides `context`, owns nothing, cannot fail. `[any-thread]`
///
/// Since ABI 1.3.
pub type calc_deadline_expired_fn = Option<unsafe extern "C" fn(context: *mut c_void) -> i32>;

/// Returned by `deadline_remaining_ns` when the call in progress has no deadline.
pub const CALC_DEADLINE_NONE: u64 = u64::MAX;

/// Time left before the deadline of the host call in progress on the calling thread, in
/// nanoseconds: 0 once it has passed, `CALC_DEADLINE_NONE` (`UINT64_MAX`) when the call has no
/// deadline. Useful to size a chunk of work, or to give threads the plugin starts itself a
/// deadline of their own (they see none through the host, see `calc_deadline_expired_fn`).
/// Costs about as much as `deadline_expired`. Owns nothing, cannot fail. `[any-thread]`
///
/// Since ABI 1.3.
pub type calc_deadline_remaining_fn = Option<unsafe extern "C" fn(context: *mut c_void) -> u64>;

/// Looks up an interface the host (the application) offers plugins: its own table of
/// functions under an id and version, as `calc_interface_t` is for a plugin's.
///
/// `id` is the interface's id (`"vendor.name"`), a NUL-terminated string owned by the caller;
/// `major` the major version the plugin speaks. Returns the host's vtable for that interface
/// and major, or NULL when the host offers none (also for a NULL `id`). When it returns a
/// vtable it writes the interface's minor to `*out_minor` and the vtable's size in bytes to
/// `*out_size` (each may be NULL): use a field only when it ends within that size, as the
/// host does with a plugin's vtable. The vtable is owned by the host and valid until the
/// plugin's `shutdown` returns; its functions' contract (first argument, threads, ownership)
/// is the interface's definition. Only in-process plugins are offered interfaces: a plugin in
/// a runner process gets NULL. `[any-thread]`
///
/// Since ABI 1.4.
pub type calc_get_interface_fn = Option<
    unsafe extern "C" fn(
        context: *mut c_void,
        id: *const c_char,
        major: u16,
        out_minor: *mut u16,
        out_size: *mut u32,
    ) -> *const c_void,
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
    /* Since ABI 1.3 */
    /// Cooperative deadline poll for the call in progress on the calling thread; never NULL in a
    /// 1.3 host. A plugin built for 1.3 running in an older host finds `struct_size` too small
    /// for this field (check with `CALC_HOST_HAS(host, deadline_expired)`, or use
    /// `CALC_DEADLINE_EXPIRED(host)`, which is 0 in an older host). Since ABI 1.3.
    pub deadline_expired: calc_deadline_expired_fn,
    /// Time left before that deadline, in nanoseconds; never NULL in a 1.3 host, and absent in an
    /// older one as `deadline_expired`. Since ABI 1.3.
    pub deadline_remaining_ns: calc_deadline_remaining_fn,
    /* Since ABI 1.4 */
    /// The interfaces the application offers plugins; never NULL in a 1.4 host, and absent in
    /// an older one (check with `CALC_HOST_HAS(host, get_interface)`). Since ABI 1.4.
    pub get_interface: calc_get_interface_fn,
}
