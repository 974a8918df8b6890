//! The plugin descriptor and its table of operations.

use core::ffi::{c_char, c_void};

use super::host_api::calc_host_api_t;
use super::interface::calc_interface_t;
use super::status::{calc_associativity_t, calc_operation_kind_t, calc_status_t};
use super::version::calc_abi_version_t;

/// `max_arity` value meaning "any number of operands, at least `min_arity`".
pub const CALC_ARITY_VARIADIC: u32 = 0xFFFF_FFFF;

/// The size of the error buffer the host passes to `init` and `execute`, in bytes, including the
/// terminating NUL. A plugin must still honour the `error_buf_size` it is given.
pub const CALC_ERROR_BUF_SIZE: u32 = 256;

/// The longest string the host reads from a descriptor, in bytes without the terminating NUL.
/// Longer strings are rejected at load time.
pub const CALC_MAX_STRING_LEN: u32 = 1024;

/// The most operations one plugin may declare.
pub const CALC_MAX_OPERATIONS: u32 = 1024;

/// Creates the plugin's instance state.
///
/// Called once, after the descriptor has been validated and before any `execute`. `host` is owned
/// by the host and valid until `shutdown` returns. On success, write the instance pointer (any
/// value, NULL included) to `*out_instance` and return `CALC_STATUS_OK`; the host passes it to
/// every `execute` and to `shutdown`. On failure return another status and write a NUL-terminated
/// UTF-8 message (at most `error_buf_size` bytes including the NUL) into `error_buf`, which is
/// owned by the host; the plugin is then rejected and `shutdown` is not called. `[main-thread]`
///
/// Since ABI 1.0.
pub type calc_init_fn = Option<
    unsafe extern "C" fn(
        host: *const calc_host_api_t,
        out_instance: *mut *mut c_void,
        error_buf: *mut c_char,
        error_buf_size: usize,
    ) -> calc_status_t,
>;

/// Destroys the instance state created by `init`.
///
/// Called exactly once for every successful `init` (for a plugin without `init`, once with a
/// NULL instance), after the last `execute` has returned and before the library is unloaded.
/// Never called after a failed `init`. Must not fail. With hot reload it runs on whichever host
/// thread finished the old version's last call, but never concurrently with any other call
/// into the same instance. `[any-thread, exclusive]`
///
/// Since ABI 1.0.
pub type calc_shutdown_fn = Option<unsafe extern "C" fn(instance: *mut c_void)>;

/// Receives one chunk of the state a plugin saves (see `calc_save_state_fn`). The host copies
/// `len` bytes from `data` before returning; `data` stays owned by the plugin. Call it as often
/// as needed, only during `save_state`, on the thread that called `save_state`.
///
/// Since ABI 1.1.
pub type calc_state_write_fn =
    Option<unsafe extern "C" fn(writer: *mut c_void, data: *const c_void, len: usize)>;

/// Saves the instance's state so that the next version of this plugin can take over (hot
/// reload): write the bytes with `write(writer, data, len)`, in any number of chunks, and return
/// `CALC_STATUS_OK`. The new version reads them in its `init` through the host service
/// `get_state`. The format is the plugin's own: version it. Called once per reload, after the new
/// version was validated and before it is initialised; `execute` calls may still be running on
/// other threads, so read shared state under the plugin's own synchronisation. On failure write a
/// message into `error_buf` and return another status: the reload goes on without state.
/// `[main-thread]`
///
/// Since ABI 1.1.
pub type calc_save_state_fn = Option<
    unsafe extern "C" fn(
        instance: *mut c_void,
        write: calc_state_write_fn,
        writer: *mut c_void,
        error_buf: *mut c_char,
        error_buf_size: usize,
    ) -> calc_status_t,
>;

/// Runs one operation.
///
/// `instance` is the value `init` produced (NULL when the plugin has no `init`). `args` points to
/// `arg_count` operands owned by the host, valid for the duration of the call; the host
/// guarantees `arg_count` is within the operation's arity (exactly 2 for infix operators). On
/// success, write the result to `*out_result` and return `CALC_STATUS_OK`. On failure return
/// another status and write a NUL-terminated UTF-8 message (at most `error_buf_size` bytes
/// including the NUL) into `error_buf`, owned by the host; `*out_result` is then ignored.
/// Must not unwind, longjmp or exit. `[any-thread]`: the host may call it from several threads at
/// once, so shared instance state needs synchronisation.
///
/// Since ABI 1.0.
pub type calc_execute_fn = Option<
    unsafe extern "C" fn(
        instance: *mut c_void,
        args: *const f64,
        arg_count: usize,
        out_result: *mut f64,
        error_buf: *mut c_char,
        error_buf_size: usize,
    ) -> calc_status_t,
>;

/// Runs one operation over many rows of operands at once (batch execution): optional, may be
/// NULL, in which case the host calls `execute` once per row.
///
/// The operands are column-major: `columns` points to `arg_count` pointers, and `columns[k]`
/// to `rows` values, so `columns[k][r]` is operand `k` of row `r`. Every row has the same
/// `arg_count`, which the host guarantees is within the operation's arity (exactly 2 for infix
/// operators; variadic functions get batches too). `columns` may be NULL when `arg_count` is 0.
/// Write the result of row `r` to `out[r]` for every row, in any order; `out` holds `rows`
/// values and never overlaps a column, so implementations may treat the pointers as
/// `restrict`. `rows` may be 0 (return `CALC_STATUS_OK` and write nothing). The results must
/// be exactly what `execute` returns for each row: the host may use either.
///
/// On success return `CALC_STATUS_OK`; `*out_failed_row` is then ignored. On failure stop at
/// the first failing row `r`: write `r` to `*out_failed_row`, return that row's status and
/// write its message into `error_buf` as `execute` does (NUL-terminated UTF-8, at most
/// `error_buf_size` bytes including the NUL). `out[0..r]` must then hold the results of the
/// rows before it; `out[r..]` is unspecified.
///
/// Ownership: `columns`, the columns, `out`, `out_failed_row` and `error_buf` are owned by the
/// host and valid only for the duration of the call; the plugin keeps no pointer into them.
/// Must not unwind, longjmp or exit. `[any-thread]`: like `execute`, the host may call it from
/// several threads at once, concurrently with `execute`, so shared instance state needs
/// synchronisation.
///
/// Since ABI 1.2.
pub type calc_execute_batch_fn = Option<
    unsafe extern "C" fn(
        instance: *mut c_void,
        columns: *const *const f64,
        arg_count: usize,
        rows: usize,
        out: *mut f64,
        out_failed_row: *mut usize,
        error_buf: *mut c_char,
        error_buf_size: usize,
    ) -> calc_status_t,
>;

/// One operation a plugin provides: an infix operator or a function.
///
/// Owned by the plugin, valid and unchanged while the library is loaded. The host steps through
/// the table by `calc_plugin_t.operation_size`, so later minor versions may append fields here.
///
/// Since ABI 1.0.
#[repr(C)]
pub struct calc_operation_t {
    /// Name used to call it (`calc run NAME`) and, for functions, in expressions: an identifier
    /// (`[A-Za-z_][A-Za-z0-9_]*`), unique within the plugin. NUL-terminated UTF-8, never NULL.
    /// Since ABI 1.0.
    pub name: *const c_char,
    /// One line for humans; NUL-terminated UTF-8, may be NULL. Since ABI 1.0.
    pub description: *const c_char,
    /// Infix operators: the symbol in expressions, 1 to 3 characters from
    /// `+ - * / % ^ & | < > = ! ~ @ # $ ?`. Functions: NULL. Since ABI 1.0.
    pub symbol: *const c_char,
    /// The implementation; never NULL. Since ABI 1.0.
    pub execute: calc_execute_fn,
    /// A `CALC_OPERATION_KIND_*` value. Since ABI 1.0.
    pub kind: calc_operation_kind_t,
    /// Infix operators: `CALC_ASSOCIATIVITY_LEFT` or `_RIGHT`. Functions: `_NONE`.
    /// Since ABI 1.0.
    pub associativity: calc_associativity_t,
    /// Infix operators: binding strength, higher binds tighter. Convention: 10 additive,
    /// 20 multiplicative, 40 power; the host's unary minus sits at 30. Functions: 0.
    /// Since ABI 1.0.
    pub precedence: i32,
    /// Fewest operands accepted (infix: 2). Since ABI 1.0.
    pub min_arity: u32,
    /// Most operands accepted, or `CALC_ARITY_VARIADIC` (infix: 2). Since ABI 1.0.
    pub max_arity: u32,
    /* Since ABI 1.2 */
    /// The same operation over many rows at once; may be NULL (the host then calls `execute`
    /// once per row). A plugin built against 1.0 or 1.1 has no such field: the host reads it as
    /// NULL. Since ABI 1.2.
    pub execute_batch: calc_execute_batch_fn,
}

/// What `plugin_entry` returns: who the plugin is, what it needs and what it provides.
///
/// Owned by the plugin, valid and unchanged until the library is unloaded. The host copies every
/// string it keeps. Fill it with `CALC_PLUGIN_MAGIC`, `sizeof(calc_plugin_t)` and
/// `CALC_ABI_VERSION_INIT`; the host reads only the fields that exist at the declared minor
/// version and `struct_size`.
///
/// Since ABI 1.0.
#[repr(C)]
pub struct calc_plugin_t {
    /// Always `CALC_PLUGIN_MAGIC`. Since ABI 1.0.
    pub magic: u64,
    /// `sizeof(calc_plugin_t)` as compiled into the plugin. Since ABI 1.0.
    pub struct_size: u32,
    /// The ABI version the plugin was compiled against (`CALC_ABI_VERSION_INIT`).
    /// Since ABI 1.0.
    pub abi_version: calc_abi_version_t,
    /// Plugin name, unique among loaded plugins: 1 to 64 characters of `[A-Za-z0-9_.-]`.
    /// NUL-terminated, never NULL. Since ABI 1.0.
    pub name: *const c_char,
    /// The plugin's own version, a semver string such as `"1.2.0"`. Never NULL. Since ABI 1.0.
    pub version: *const c_char,
    /// Who wrote it; NUL-terminated UTF-8, may be NULL. Since ABI 1.0.
    pub author: *const c_char,
    /// One line for humans; NUL-terminated UTF-8, may be NULL. Since ABI 1.0.
    pub description: *const c_char,
    /// Version of the calc SDK headers the plugin was built with (`CALC_SDK_VERSION`), semver.
    /// Never NULL. Since ABI 1.0.
    pub sdk_version: *const c_char,
    /// Semver requirement on the host's API version, e.g. `"^1.0"`
    /// (`CALC_API_REQUIREMENT_DEFAULT`). The host refuses the plugin when its own version does not
    /// match. Never NULL. Since ABI 1.0.
    pub api_requirement: *const c_char,
    /// Reserved for `CALC_PLUGIN_FLAG_*` bits; must be 0 in ABI 1.0. Since ABI 1.0.
    pub flags: u64,
    /// Creates the instance state; may be NULL (the instance is then NULL). Since ABI 1.0.
    pub init: calc_init_fn,
    /// Destroys the instance state; may be NULL. Since ABI 1.0.
    pub shutdown: calc_shutdown_fn,
    /// The operations, `operation_count` elements of `operation_size` bytes each. Owned by the
    /// plugin. May be NULL only when `operation_count` is 0. Since ABI 1.0.
    pub operations: *const calc_operation_t,
    /// Number of elements in `operations`, at most `CALC_MAX_OPERATIONS`. Since ABI 1.0.
    pub operation_count: u32,
    /// `sizeof(calc_operation_t)` as compiled into the plugin. Since ABI 1.0.
    pub operation_size: u32,
    /* Since ABI 1.1 */
    /// Hands the instance's state to the next version on hot reload; may be NULL (the new
    /// version then starts fresh). Since ABI 1.1.
    pub save_state: calc_save_state_fn,
    /* Since ABI 1.4 */
    /// The interfaces the plugin implements beyond its operations, `interface_count` elements
    /// of `interface_size` bytes each. Owned by the plugin. May be NULL only when
    /// `interface_count` is 0. A plugin built against 1.0 to 1.3 has no such fields: the host
    /// reads it as declaring none. Since ABI 1.4.
    pub interfaces: *const calc_interface_t,
    /// Number of elements in `interfaces`, at most `CALC_MAX_INTERFACES`. Since ABI 1.4.
    pub interface_count: u32,
    /// `sizeof(calc_interface_t)` as compiled into the plugin. Since ABI 1.4.
    pub interface_size: u32,
}

// Layout pins for 64-bit targets: a failing assertion is an ABI break, which needs a major bump.
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(core::mem::size_of::<calc_plugin_t>() == 128);
    assert!(core::mem::offset_of!(calc_plugin_t, save_state) == 104); // the 1.0 size
    assert!(core::mem::offset_of!(calc_plugin_t, interfaces) == 112); // the 1.1-1.3 size
    assert!(core::mem::size_of::<calc_interface_t>() == 32);
    assert!(core::mem::size_of::<calc_operation_t>() == 64);
    assert!(core::mem::offset_of!(calc_operation_t, execute_batch) == 56); // the 1.0/1.1 size
    assert!(core::mem::size_of::<calc_host_api_t>() == 72);
    assert!(core::mem::offset_of!(calc_host_api_t, get_interface) == 64); // the 1.3 size
    assert!(core::mem::offset_of!(calc_host_api_t, get_state) == 40); // the 1.0 size
    assert!(core::mem::offset_of!(calc_host_api_t, deadline_expired) == 48); // the 1.1/1.2 size
};
