//! `calc_iface_t`: a plugin's implementation of an application-defined interface (ABI 1.4),
//! and the interfaces a C application offers its plugins.

use std::ffi::{c_char, c_void, CString};

use calc_sdk::abi::{calc_bytes_write_fn, calc_status_t, CALC_STATUS_INVALID_ARGUMENT};

use super::error::CALC_STATUS_NOT_FOUND;
use super::ffi::{ffi_status, ffi_value, handle, handle_mut, out, slice_arg, str_arg, ApiError};
use super::host::calc_host_t;
use crate::interface::{HostInterface, InterfaceHandle};

/// One plugin's vtable for one interface, pinned to the plugin version it came from: the
/// vtable, the functions it points to and the plugin's instance stay valid until
/// `calc_iface_free`, even after the plugin is unloaded or reloaded, or the host freed.
///
/// Opaque; wraps the Rust `calc_host::InterfaceHandle`. The accessors may run concurrently
/// from any threads; the handle may be moved between threads. Since calc_host 1.3.
pub struct calc_iface_t {
    handle: InterfaceHandle,
    plugin: CString,
}

/// Number of loaded plugins that implement the interface `id` at major `major` (ABI 1.4);
/// 0 for a NULL host or id. `[thread-safe]` Since calc_host 1.3.
///
/// # Safety
/// `host` must be NULL or live; `id` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn calc_host_interface_count(
    host: *const calc_host_t,
    id: *const c_char,
    major: u16,
) -> usize {
    ffi_value(0, || {
        // SAFETY: forwarded contract.
        let (Ok(host), Ok(id)) = (unsafe { handle(host, "host") }, unsafe {
            str_arg(id, "id")
        }) else {
            return 0;
        };
        host.manager().interface_providers(id, major).len()
    })
}

/// Writes to `*out_iface` a new handle to the `index`-th (0-based, best first) loaded plugin
/// that implements the interface `id` at major `major`; free it with `calc_iface_free`. Best
/// first: the provider the settings name for `id`, then the preferred plugins, then load
/// order, as for an operation.
/// Returns `CALC_STATUS_NOT_FOUND` when there is no such plugin; `*out_iface` is then
/// unchanged. `[thread-safe]` Since calc_host 1.3.
///
/// # Safety
/// `host` must be NULL or live; `id` NULL or NUL-terminated; `out_iface` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn calc_iface_new(
    host: *const calc_host_t,
    id: *const c_char,
    major: u16,
    index: usize,
    out_iface: *mut *mut calc_iface_t,
) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let (host, id, out_iface) = unsafe {
            (
                handle(host, "host")?,
                str_arg(id, "id")?,
                out(out_iface, "out_iface")?,
            )
        };
        let mut providers = host.manager().interface_providers(id, major);
        let count = providers.len();
        if index >= count {
            return Err(ApiError::new(
                CALC_STATUS_NOT_FOUND,
                format!(
                    "no provider {index} of interface '{}' major {major} ({count} loaded)",
                    id.escape_debug()
                ),
            ));
        }
        let handle = providers.swap_remove(index);
        let plugin = CString::new(handle.plugin().name.as_str()).expect("plugin names have no NUL");
        out_iface.write(Box::into_raw(Box::new(calc_iface_t { handle, plugin })));
        Ok(())
    })
}

/// The plugin's vtable for the interface: `*out_size` bytes (a field that does not end within
/// them is absent: the plugin was built against an older minor), at the interface version
/// `major.*out_minor`. Either out-pointer may be NULL. Owned by the plugin, valid until
/// `calc_iface_free`. NULL for a NULL handle. `[thread-safe]` Since calc_host 1.3.
///
/// # Safety
/// `iface` must be NULL or live; `out_minor` and `out_size` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn calc_iface_vtable(
    iface: *const calc_iface_t,
    out_minor: *mut u16,
    out_size: *mut u32,
) -> *const c_void {
    ffi_value(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        let Ok(iface) = (unsafe { handle(iface, "iface") }) else {
            return std::ptr::null();
        };
        let info = iface.handle.info();
        // SAFETY: NULL-checked out-pointers, writable per the contract.
        unsafe {
            if !out_minor.is_null() {
                out_minor.write(info.minor);
            }
            if !out_size.is_null() {
                out_size.write(info.vtable_size);
            }
        }
        iface.handle.vtable()
    })
}

/// The plugin's instance (what its `init` produced, NULL for a plugin without `init`): the
/// first argument of the vtable's functions by convention. Valid until `calc_iface_free`.
/// NULL for a NULL handle. `[thread-safe]` Since calc_host 1.3.
///
/// # Safety
/// `iface` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn calc_iface_instance(iface: *const calc_iface_t) -> *mut c_void {
    ffi_value(std::ptr::null_mut(), || {
        // SAFETY: forwarded contract.
        unsafe { handle(iface, "iface") }.map_or(std::ptr::null_mut(), |i| i.handle.instance())
    })
}

/// The name of the plugin that implements it; owned by the handle, valid until
/// `calc_iface_free`. NULL for a NULL handle. `[thread-safe]` Since calc_host 1.3.
///
/// # Safety
/// `iface` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn calc_iface_plugin_name(iface: *const calc_iface_t) -> *const c_char {
    ffi_value(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        unsafe { handle(iface, "iface") }.map_or(std::ptr::null(), |i| i.plugin.as_ptr())
    })
}

/// Calls function number `slot` (0-based, in vtable order) of a bytes interface
/// (`CALC_INTERFACE_FLAG_BYTES`) with the `input_len` bytes at `input`, in this process or in
/// the plugin's runner process, and hands the output to `write(writer, data, len)` (called
/// once, with the whole output, when it is not empty; `data` is the library's, valid during
/// that call only). On failure returns the plugin's status (or `CALC_STATUS_INVALID_ARGUMENT`
/// for a slot out of range or an interface that is not a bytes interface, `CALC_STATUS_ERROR`
/// for a runner that crashed or timed out) with the message in `calc_last_error_message`, and
/// `write` is not called. `[thread-safe]` Since calc_host 1.3.
///
/// # Safety
/// `iface` must be NULL or live; `input` valid for `input_len` bytes (may be NULL when 0);
/// `write` NULL or a function that may be called with `writer` during this call.
#[no_mangle]
pub unsafe extern "C" fn calc_iface_call_bytes(
    iface: *const calc_iface_t,
    slot: usize,
    input: *const c_void,
    input_len: usize,
    write: calc_bytes_write_fn,
    writer: *mut c_void,
) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let (iface, input) = unsafe {
            (
                handle(iface, "iface")?,
                slice_arg(input.cast::<u8>(), input_len, "input")?,
            )
        };
        let write = write.ok_or_else(|| ApiError::null("write"))?;
        let output = iface.handle.call_bytes(slot, input);
        // SAFETY: forwarded contract: `write` may be called with `writer` during this call.
        unsafe { hand_over(output, write, writer) }
    })
}

/// Calls function number `slot` of the bytes interface `id` at major `major` (see
/// `calc_iface_call_bytes`) on the provider that serves the rollout key `key` (`key_len`
/// bytes: a user id, a file name; an empty key is a key like any other), and when that
/// provider fails internally (`CALC_STATUS_ERROR`: a crash, a hang, a limit;
/// `CALC_STATUS_PANIC`) on the next providers, best first, as an operation falls back (each
/// fallback logged). The providers are those serving at the time of the call, ranked as
/// `calc_iface_new` ranks them, with the rollout the settings configure for `id`. Output and
/// errors as for `calc_iface_call_bytes`; `CALC_STATUS_NOT_FOUND` when no loaded plugin
/// implements the interface. `[thread-safe]` Since calc_host 1.3.
///
/// # Safety
/// `host` must be NULL or live; `id` NULL or NUL-terminated; `key` valid for `key_len` bytes
/// and `input` for `input_len` bytes (either may be NULL when its length is 0); `write` NULL
/// or a function that may be called with `writer` during this call.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn calc_host_interface_call_bytes(
    host: *const calc_host_t,
    id: *const c_char,
    major: u16,
    slot: usize,
    key: *const c_void,
    key_len: usize,
    input: *const c_void,
    input_len: usize,
    write: calc_bytes_write_fn,
    writer: *mut c_void,
) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let (host, id, key, input) = unsafe {
            (
                handle(host, "host")?,
                str_arg(id, "id")?,
                slice_arg(key.cast::<u8>(), key_len, "key")?,
                slice_arg(input.cast::<u8>(), input_len, "input")?,
            )
        };
        let write = write.ok_or_else(|| ApiError::null("write"))?;
        let not_found = || {
            ApiError::new(
                CALC_STATUS_NOT_FOUND,
                format!(
                    "no loaded plugin implements interface '{}' major {major}",
                    id.escape_debug()
                ),
            )
        };
        let live = host
            .manager()
            .live_interface(id, major)
            .ok_or_else(not_found)?;
        let providers = live.pin();
        if providers.providers().is_empty() {
            return Err(not_found());
        }
        let output = providers
            .call_bytes(slot, input, crate::manager::rollout_hash(key))
            .map(|(output, _)| output);
        // SAFETY: forwarded contract: `write` may be called with `writer` during this call.
        unsafe { hand_over(output, write, writer) }
    })
}

/// Hands a bytes call's output to the caller's writer (once, when not empty), or its failure
/// to the caller as a status and message.
///
/// # Safety
/// `write` must be callable with `writer` now.
unsafe fn hand_over(
    output: Result<Vec<u8>, crate::CallError>,
    write: unsafe extern "C" fn(*mut c_void, *const c_void, usize),
    writer: *mut c_void,
) -> Result<(), ApiError> {
    let output = output.map_err(|e| ApiError::new(e.status.code(), e.to_string()))?;
    if !output.is_empty() {
        // SAFETY: the caller's writer, called during this call with our live buffer.
        unsafe { write(writer, output.as_ptr().cast(), output.len()) };
    }
    Ok(())
}

/// Frees a handle from `calc_iface_new` (unloading its plugin's library if nothing else uses
/// it). NULL does nothing; freeing twice is undefined. `[exclusive]` Since calc_host 1.3.
///
/// # Safety
/// `iface` must be NULL or a handle from `calc_iface_new` that is not used again.
#[no_mangle]
pub unsafe extern "C" fn calc_iface_free(iface: *mut calc_iface_t) {
    if iface.is_null() {
        return;
    }
    ffi_value((), || {
        // SAFETY: the unique owner per the contract, created by `Box::into_raw`.
        drop(unsafe { Box::from_raw(iface) });
    });
}

/// Offers plugins loaded from now on the application's interface `id` at version
/// `major.minor`, whose vtable is `vtable_size` bytes at `vtable`: plugins find it with the
/// host service `get_interface` (ABI 1.4). Offer before loading the plugins that use it;
/// plugins already loaded see it once reloaded. Returns `CALC_STATUS_INVALID_ARGUMENT` for an
/// id that is not `"vendor.name"`, a NULL vtable, a size of 0 or over `CALC_MAX_VTABLE_SIZE`,
/// or an id and major already offered. `[exclusive]` Since calc_host 1.3.
///
/// # Safety
/// `host` must be NULL or live and not used by another thread during the call; `id` NULL or
/// NUL-terminated (it is copied); `vtable` valid for `vtable_size` bytes, unchanged and
/// callable from any thread until the host is freed and every plugin loaded from it is gone
/// (in practice: static data of the application).
#[no_mangle]
pub unsafe extern "C" fn calc_host_offer_interface(
    host: *mut calc_host_t,
    id: *const c_char,
    major: u16,
    minor: u16,
    vtable: *const c_void,
    vtable_size: usize,
) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let (host, id) = unsafe { (handle_mut(host, "host")?, str_arg(id, "id")?) };
        let invalid =
            |e: crate::InterfaceError| ApiError::new(CALC_STATUS_INVALID_ARGUMENT, e.to_string());
        // SAFETY: the vtable's lifetime and thread safety are the caller's promise, forwarded.
        let offer = unsafe { HostInterface::from_raw(id, major, minor, vtable, vtable_size) }
            .map_err(invalid)?;
        host.manager_mut().offer_interface(offer).map_err(invalid)
    })
}
