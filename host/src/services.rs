//! The table of host services (`calc_host_api_t`) each plugin receives in `init`.
//!
//! One [`HostServices`] per plugin, boxed so its address is stable: the table's `context` points
//! back at it. It is immutable after creation, so the `[any-thread]` functions need no locking.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use calc_sdk::abi::{self, calc_host_api_t, calc_log_level_t};

use crate::validate::HOST_ABI;

/// Host-owned state behind one plugin's `calc_host_api_t`.
pub(crate) struct HostServices {
    api: calc_host_api_t,
    plugin: String,
    _host_version: CString,
    config: BTreeMap<Vec<u8>, CString>,
    /// State handed over by the previous version, readable during `init` only.
    state: Mutex<Option<Vec<u8>>>,
    /// The interfaces the application offered when the plugin was loaded (`get_interface`).
    interfaces: Offered,
}

// SAFETY: after `new` returns only `state` changes, behind its mutex; the raw pointers point into
// the box itself and into the owned `CString`, which live as long as it does.
unsafe impl Send for HostServices {}
// SAFETY: as above; the extern functions only read.
unsafe impl Sync for HostServices {}

impl HostServices {
    /// Builds the services for `plugin`, with its configuration values (keys and values
    /// containing NUL bytes are dropped with a warning) and no interface offered.
    pub(crate) fn new(plugin: &str, config: &BTreeMap<String, String>) -> Box<HostServices> {
        Self::with_interfaces(plugin, config, Offered::default())
    }

    /// As [`Self::new`], offering the plugin `interfaces` through `get_interface`.
    pub(crate) fn with_interfaces(
        plugin: &str,
        config: &BTreeMap<String, String>,
        interfaces: Offered,
    ) -> Box<HostServices> {
        let host_version = CString::new(calc_sdk::SDK_VERSION).expect("version has no NUL");
        let mut values = BTreeMap::new();
        for (k, v) in config {
            match CString::new(v.as_str()) {
                Ok(c) if !k.contains('\0') => {
                    values.insert(k.as_bytes().to_vec(), c);
                }
                _ => {
                    tracing::warn!(plugin, key = %k, "configuration value with a NUL byte ignored")
                }
            }
        }
        let mut services = Box::new(HostServices {
            api: calc_host_api_t {
                struct_size: std::mem::size_of::<calc_host_api_t>() as u32,
                abi_version: HOST_ABI,
                host_version: host_version.as_ptr(),
                context: std::ptr::null_mut(),
                log: Some(log),
                get_config: Some(get_config),
                get_state: Some(get_state),
                deadline_expired: Some(deadline_expired),
                deadline_remaining_ns: Some(deadline_remaining_ns),
                get_interface: Some(get_interface),
            },
            plugin: plugin.to_string(),
            _host_version: host_version,
            config: values,
            state: Mutex::new(None),
            interfaces,
        });
        let context: *mut HostServices = &mut *services;
        services.api.context = context.cast::<c_void>();
        services
    }

    /// Sets (or, with `None`, clears) the state `get_state` hands to `init`.
    pub(crate) fn set_state(&self, state: Option<Vec<u8>>) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// The table to pass to `init`; valid while `self` lives.
    pub(crate) fn api(&self) -> *const calc_host_api_t {
        &self.api
    }
}

/// `calc_host_api_t.log`.
///
/// # Safety
/// `context` must be the `context` of a live `HostServices` table and `message` NULL or a
/// NUL-terminated string (the `calc_log_fn` contract).
unsafe extern "C" fn log(context: *mut c_void, level: calc_log_level_t, message: *const c_char) {
    if context.is_null() || message.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract, `context` points at a live, immutable `HostServices`.
        let services = unsafe { &*context.cast::<HostServices>() };
        // SAFETY: per the contract, `message` is NUL-terminated and valid for this call.
        let message = unsafe { CStr::from_ptr(message) }.to_string_lossy();
        let plugin = services.plugin.as_str();
        match level {
            abi::CALC_LOG_LEVEL_ERROR => {
                tracing::error!(target: "calc::plugin", plugin, "{message}")
            }
            abi::CALC_LOG_LEVEL_WARN => tracing::warn!(target: "calc::plugin", plugin, "{message}"),
            abi::CALC_LOG_LEVEL_DEBUG => {
                tracing::debug!(target: "calc::plugin", plugin, "{message}")
            }
            abi::CALC_LOG_LEVEL_TRACE => {
                tracing::trace!(target: "calc::plugin", plugin, "{message}")
            }
            _ => tracing::info!(target: "calc::plugin", plugin, "{message}"),
        }
    }));
}

/// `calc_host_api_t.get_interface`.
///
/// # Safety
/// `context` must be the `context` of a live `HostServices` table, `id` NULL or a
/// NUL-terminated string, the out-pointers NULL or writable (the `calc_get_interface_fn`
/// contract).
unsafe extern "C" fn get_interface(
    context: *mut c_void,
    id: *const c_char,
    major: u16,
    out_minor: *mut u16,
    out_size: *mut u32,
) -> *const c_void {
    if context.is_null() || id.is_null() {
        return std::ptr::null();
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract, `context` points at a live, immutable `HostServices`.
        let services = unsafe { &*context.cast::<HostServices>() };
        // SAFETY: per the contract, `id` is NUL-terminated and valid for this call.
        let id = unsafe { CStr::from_ptr(id) };
        let Some(found) = services
            .interfaces
            .iter()
            .find(|i| i.major() == major && i.c_id() == id)
        else {
            return std::ptr::null();
        };
        // SAFETY: NULL-checked out-pointers, writable per the contract.
        unsafe {
            if !out_minor.is_null() {
                *out_minor = found.minor();
            }
            if !out_size.is_null() {
                *out_size = found.size();
            }
        }
        found.vtable()
    }))
    .unwrap_or(std::ptr::null())
}

/// `calc_host_api_t.get_state`.
///
/// # Safety
/// `context` must be the `context` of a live `HostServices` table; the out-pointers NULL or
/// writable.
unsafe extern "C" fn get_state(
    context: *mut c_void,
    out_data: *mut *const c_void,
    out_len: *mut usize,
) -> i32 {
    catch_unwind(AssertUnwindSafe(|| {
        let (data, len) = if context.is_null() {
            (std::ptr::null(), 0)
        } else {
            // SAFETY: per the contract, `context` points at a live `HostServices`.
            let services = unsafe { &*context.cast::<HostServices>() };
            let state = services.state.lock().unwrap_or_else(|e| e.into_inner());
            // The Vec is only replaced after `init` returns, so the pointer stays valid for the
            // plugin's use during `init`.
            state.as_ref().map_or((std::ptr::null(), 0), |s| {
                (s.as_ptr().cast::<c_void>(), s.len())
            })
        };
        // SAFETY: NULL-checked out-pointers, writable per the contract.
        unsafe {
            if !out_data.is_null() {
                *out_data = data;
            }
            if !out_len.is_null() {
                *out_len = len;
            }
        }
        i32::from(!data.is_null())
    }))
    .unwrap_or(0)
}

/// `calc_host_api_t.deadline_expired` (ABI 1.3): [`crate::deadline::expired`] for the calling
/// thread. Ignores `context`, so it is safe with any value; cannot panic (a thread-local read and
/// a clock read), so it needs no `catch_unwind`, which keeps the poll cheap.
extern "C" fn deadline_expired(_context: *mut c_void) -> i32 {
    i32::from(crate::deadline::expired())
}

/// `calc_host_api_t.deadline_remaining_ns` (ABI 1.3): [`crate::deadline::remaining`] in
/// nanoseconds, saturated below `CALC_DEADLINE_NONE`, which means "no deadline".
extern "C" fn deadline_remaining_ns(_context: *mut c_void) -> u64 {
    match crate::deadline::remaining() {
        None => abi::CALC_DEADLINE_NONE,
        Some(left) => u64::try_from(left.as_nanos()).map_or(abi::CALC_DEADLINE_NONE - 1, |ns| {
            ns.min(abi::CALC_DEADLINE_NONE - 1)
        }),
    }
}

/// `calc_host_api_t.get_config`.
///
/// # Safety
/// As [`log`], with `key` NULL or NUL-terminated.
unsafe extern "C" fn get_config(context: *mut c_void, key: *const c_char) -> *const c_char {
    if context.is_null() || key.is_null() {
        return std::ptr::null();
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per the contract, `context` points at a live, immutable `HostServices`.
        let services = unsafe { &*context.cast::<HostServices>() };
        // SAFETY: per the contract, `key` is NUL-terminated and valid for this call.
        let key = unsafe { CStr::from_ptr(key) }.to_bytes();
        services
            .config
            .get(key)
            .map_or(std::ptr::null(), |v| v.as_ptr())
    }))
    .unwrap_or(std::ptr::null())
}

/// An interface the application offers plugins (ABI 1.4): its vtable under an id and version,
/// which plugins look up through the host service `get_interface` during and after `init`.
///
/// Offer it with [`crate::PluginManager::offer_interface`] before loading the plugins that
/// use it. The vtable is `'static` and `Sync`, so any thread of any plugin may use it for as
/// long as the process lives.
#[derive(Clone)]
pub struct HostInterface {
    id: std::ffi::CString,
    major: u16,
    minor: u16,
    size: u32,
    vtable: usize,
}

impl std::fmt::Debug for HostInterface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostInterface({self})")
    }
}

impl std::fmt::Display for HostInterface {
    /// `id major.minor`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}.{}",
            self.id.to_string_lossy(),
            self.major,
            self.minor
        )
    }
}

/// Why [`HostInterface::new`] or [`crate::PluginManager::offer_interface`] refused an interface.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("interface {id:?}: {reason}")]
pub struct InterfaceError {
    /// The interface's id, as given.
    pub id: String,
    /// What is wrong.
    pub reason: String,
}

impl HostInterface {
    /// The interface `id` at version `major.minor`, whose vtable is `vtable`: a `#[repr(C)]`
    /// struct the interface's definition describes (its C twin is what plugins see).
    ///
    /// Refused when `id` is not an interface id (`"vendor.name"`, as plugins' ids) or `T` is
    /// empty or larger than `CALC_MAX_VTABLE_SIZE`.
    pub fn new<T: Sync + 'static>(
        id: &str,
        major: u16,
        minor: u16,
        vtable: &'static T,
    ) -> Result<HostInterface, InterfaceError> {
        let address = vtable as *const T as *const c_void;
        // SAFETY: a `'static` reference to a `Sync` value: valid, unchanged (no interior
        // mutability is reachable without `Sync` synchronisation) and shareable across threads
        // for the rest of the process.
        unsafe { Self::from_raw(id, major, minor, address, std::mem::size_of::<T>()) }
    }

    /// As [`Self::new`], for a vtable given by address and size (the C API's offers).
    ///
    /// # Safety
    /// `vtable` must point to `size` bytes that stay valid and unchanged, and whose functions
    /// may be called from any thread, for as long as any plugin of any manager it is offered
    /// to may use them (until the host and every plugin loaded with the offer are gone).
    pub(crate) unsafe fn from_raw(
        id: &str,
        major: u16,
        minor: u16,
        vtable: *const c_void,
        size: usize,
    ) -> Result<HostInterface, InterfaceError> {
        let refused = |reason: String| InterfaceError {
            id: id.to_string(),
            reason,
        };
        if !crate::validate::is_interface_id(id) {
            return Err(refused(
                "not an interface id (\"vendor.name\": dot-separated parts of [a-z0-9_-])".into(),
            ));
        }
        let max = calc_sdk::abi::CALC_MAX_VTABLE_SIZE as usize;
        if size == 0 || size > max {
            return Err(refused(format!("a vtable of {size} bytes, not 1 to {max}")));
        }
        if vtable.is_null() {
            return Err(refused("a NULL vtable".into()));
        }
        Ok(HostInterface {
            id: std::ffi::CString::new(id).expect("an interface id has no NUL"),
            major,
            minor,
            size: size as u32,
            vtable: vtable as usize,
        })
    }

    /// The interface's id.
    pub fn id(&self) -> &str {
        self.id.to_str().expect("an interface id is ASCII")
    }

    /// Its major version.
    pub fn major(&self) -> u16 {
        self.major
    }

    /// Its minor version.
    pub fn minor(&self) -> u16 {
        self.minor
    }

    /// The id as the C string the service compares.
    pub(crate) fn c_id(&self) -> &std::ffi::CStr {
        &self.id
    }

    /// The vtable's size in bytes.
    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    /// The vtable's address (a `'static` value).
    pub(crate) fn vtable(&self) -> *const c_void {
        self.vtable as *const c_void
    }
}

/// The interfaces a host offers, shared by the host services of every plugin loaded after they
/// were offered.
pub(crate) type Offered = Arc<[HostInterface]>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_deadline_services_read_the_calling_threads_deadline() {
        let services = HostServices::new("p", &BTreeMap::new());
        // SAFETY: `api()` is valid while `services` lives.
        let api = unsafe { &*services.api() };
        assert_eq!(
            api.struct_size as usize,
            std::mem::size_of::<calc_host_api_t>()
        );
        let (expired, remaining) = (
            api.deadline_expired.unwrap(),
            api.deadline_remaining_ns.unwrap(),
        );
        let poll = || {
            // SAFETY: the context is the table's own (the functions ignore it anyway).
            unsafe { (expired(api.context), remaining(api.context)) }
        };
        assert_eq!(poll(), (0, abi::CALC_DEADLINE_NONE));
        crate::deadline::with_deadline(Some(Instant::now()), || {
            assert_eq!(poll(), (1, 0));
        });
        let hour = Duration::from_secs(3600);
        crate::deadline::with_deadline(Some(Instant::now() + hour), || {
            let (e, ns) = poll();
            assert_eq!(e, 0);
            assert!(
                ns > 3500 * 1_000_000_000 && ns <= 3600 * 1_000_000_000,
                "{ns}"
            );
        });
        assert_eq!(poll(), (0, abi::CALC_DEADLINE_NONE));
    }

    #[test]
    fn get_config_returns_values_and_null_for_missing_keys() {
        let config = BTreeMap::from([("precision".to_string(), "3".to_string())]);
        let services = HostServices::new("p", &config);
        // SAFETY: `api()` is valid while `services` lives.
        let api = unsafe { &*services.api() };
        let get = api.get_config.unwrap();
        // SAFETY: the context is the table's own; keys are NUL-terminated literals.
        let (hit, miss) = unsafe {
            (
                get(api.context, c"precision".as_ptr()),
                get(api.context, c"nope".as_ptr()),
            )
        };
        assert!(miss.is_null());
        // SAFETY: a non-NULL result is a NUL-terminated string owned by `services`.
        assert_eq!(unsafe { CStr::from_ptr(hit) }.to_str(), Ok("3"));
        // SAFETY: the host version pointer is owned by `services`.
        let version = unsafe { CStr::from_ptr(api.host_version) };
        assert_eq!(version.to_str(), Ok(calc_sdk::SDK_VERSION));
    }

    #[test]
    fn get_interface_finds_an_offer_by_id_and_major_only() {
        static V1: [u64; 3] = [1, 2, 3];
        static V2: [u64; 1] = [9];
        let offered: Offered = [
            HostInterface::new("acme.store", 1, 4, &V1).unwrap(),
            HostInterface::new("acme.store", 2, 0, &V2).unwrap(),
        ]
        .into_iter()
        .collect();
        let services = HostServices::with_interfaces("p", &BTreeMap::new(), offered);
        // SAFETY: `api()` is valid while `services` lives.
        let api = unsafe { &*services.api() };
        let get = api.get_interface.unwrap();
        let lookup = |id: *const c_char, major: u16| {
            let (mut minor, mut size) = (u16::MAX, u32::MAX);
            // SAFETY: the context is the table's own; `id` is NULL or a C string literal; the
            // out-pointers are locals.
            let vtable = unsafe { get(api.context, id, major, &mut minor, &mut size) };
            (vtable as usize, minor, size)
        };
        assert_eq!(
            lookup(c"acme.store".as_ptr(), 1),
            (V1.as_ptr() as usize, 4, 24)
        );
        assert_eq!(
            lookup(c"acme.store".as_ptr(), 2),
            (V2.as_ptr() as usize, 0, 8)
        );
        // Not found: NULL, and the out-values untouched.
        assert_eq!(lookup(c"acme.store".as_ptr(), 3), (0, u16::MAX, u32::MAX));
        assert_eq!(lookup(c"acme.stor".as_ptr(), 1), (0, u16::MAX, u32::MAX));
        assert_eq!(lookup(c"acme.store.x".as_ptr(), 1), (0, u16::MAX, u32::MAX));
        assert_eq!(lookup(std::ptr::null(), 1), (0, u16::MAX, u32::MAX));
        // NULL out-pointers are allowed, and a NULL context finds nothing.
        // SAFETY: as above, with NULL out-pointers (allowed by the contract).
        let vtable = unsafe {
            get(
                api.context,
                c"acme.store".as_ptr(),
                1,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(vtable as usize, V1.as_ptr() as usize);
        // SAFETY: a NULL context is refused before anything is read.
        let none = unsafe {
            get(
                std::ptr::null_mut(),
                c"acme.store".as_ptr(),
                1,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        assert!(none.is_null());
        // A table without offers finds nothing.
        let bare = HostServices::new("p", &BTreeMap::new());
        // SAFETY: as above.
        let bare_api = unsafe { &*bare.api() };
        // SAFETY: as above.
        let found = unsafe {
            get(
                bare_api.context,
                c"acme.store".as_ptr(),
                1,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        assert!(found.is_null());
    }
}
