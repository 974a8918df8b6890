//! Safe access to the services table the host passes to `init`.

use std::ffi::{CStr, CString};

use crate::abi::{self, calc_host_api_t};

/// Severity of a log line sent to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// An error the user should see.
    Error,
    /// Something suspicious.
    Warn,
    /// Normal progress.
    Info,
    /// Details for the plugin's developer.
    Debug,
    /// Very verbose details.
    Trace,
}

impl LogLevel {
    /// The wire value (`CALC_LOG_LEVEL_*`).
    pub const fn code(self) -> abi::calc_log_level_t {
        match self {
            LogLevel::Error => abi::CALC_LOG_LEVEL_ERROR,
            LogLevel::Warn => abi::CALC_LOG_LEVEL_WARN,
            LogLevel::Info => abi::CALC_LOG_LEVEL_INFO,
            LogLevel::Debug => abi::CALC_LOG_LEVEL_DEBUG,
            LogLevel::Trace => abi::CALC_LOG_LEVEL_TRACE,
        }
    }
}

/// The host's services, as seen by a Rust plugin.
///
/// A `Host` is valid from `init` until the plugin instance is dropped (the host's `shutdown`), so
/// a plugin may store it in its state and use it from any thread. Do not keep it anywhere that
/// outlives the instance.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    api: *const calc_host_api_t,
}

// SAFETY: the ABI requires the host table and its functions to be usable from any thread for
// as long as the plugin instance lives (`calc_host_api_t` docs).
unsafe impl Send for Host {}
// SAFETY: as above; every function in the table is `[any-thread]`.
unsafe impl Sync for Host {}

impl Host {
    /// Wraps the table the host passed to `init`.
    ///
    /// # Safety
    /// `api` must be non-NULL and point to a `calc_host_api_t` that is valid, with its strings
    /// and functions, for as long as the returned `Host` (or a copy of it) is used.
    pub unsafe fn from_raw(api: *const calc_host_api_t) -> Host {
        Host { api }
    }

    fn api(&self) -> &calc_host_api_t {
        // SAFETY: `from_raw`'s contract keeps `api` valid while `self` is used.
        unsafe { &*self.api }
    }

    /// True when the host's table is large enough to contain the field ending at `end`.
    fn has_field(&self, end: usize) -> bool {
        self.api().struct_size as usize >= end
    }

    /// The host's calc API version (semver), e.g. `"1.0.0"`.
    pub fn version(&self) -> &str {
        let p = self.api().host_version;
        if p.is_null() {
            return "";
        }
        // SAFETY: the host guarantees a NUL-terminated string valid while the table is valid.
        unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("")
    }

    /// The ABI version the host implements.
    pub fn abi_version(&self) -> abi::calc_abi_version_t {
        self.api().abi_version
    }

    /// Sends a log line to the host. Interior NUL bytes are replaced by spaces.
    pub fn log(&self, level: LogLevel, message: &str) {
        let end =
            std::mem::offset_of!(calc_host_api_t, log) + std::mem::size_of::<abi::calc_log_fn>();
        let Some(log) = self.api().log.filter(|_| self.has_field(end)) else {
            return;
        };
        let message = CString::new(message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: `log` comes from a valid host table; the context is the table's own and the
        // message is a NUL-terminated string that outlives the call.
        unsafe { log(self.api().context, level.code(), message.as_ptr()) }
    }

    /// The state the previous version of this plugin saved before a hot reload, or `None` on a
    /// first load, when the old version saved nothing, or in a host older than ABI 1.1. Only
    /// meaningful during [`crate::Plugin::init`].
    pub fn handover_state(&self) -> Option<Vec<u8>> {
        let end = std::mem::offset_of!(calc_host_api_t, get_state)
            + std::mem::size_of::<abi::calc_get_state_fn>();
        let get = self.api().get_state.filter(|_| self.has_field(end))?;
        let mut data: *const std::ffi::c_void = std::ptr::null();
        let mut len = 0usize;
        // SAFETY: valid host table; the out-pointers are live locals.
        let present = unsafe { get(self.api().context, &mut data, &mut len) };
        if present == 0 || data.is_null() {
            return None;
        }
        // SAFETY: the host guarantees `len` readable bytes at `data` during `init`; we copy them.
        Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }.to_vec())
    }

    /// True when the host call in progress on this thread (the `execute` running this code) has
    /// passed its deadline: stop and return an error, by convention
    /// `CalcError::new(Status::Error, "deadline exceeded")`.
    ///
    /// The deadline is cooperative (ABI 1.3): the host never interrupts a call, it only answers
    /// this poll, so a long loop should ask every few microseconds of work. Cheap: a thread-local
    /// read in the host without a deadline, plus one clock read with one. Always false when
    /// the call has no deadline, on a thread the plugin started itself, and in a host older than
    /// ABI 1.3 (whose table has no deadline service).
    pub fn deadline_expired(&self) -> bool {
        let end = std::mem::offset_of!(calc_host_api_t, deadline_expired)
            + std::mem::size_of::<abi::calc_deadline_expired_fn>();
        let Some(expired) = self.api().deadline_expired.filter(|_| self.has_field(end)) else {
            return false;
        };
        // SAFETY: valid host table; the context is the table's own.
        unsafe { expired(self.api().context) != 0 }
    }

    /// Time left before the deadline of the host call in progress on this thread: `None` when it
    /// has none (or on a thread the plugin started itself, or in a host older than ABI 1.3), zero
    /// once it has passed. Use it to size work, or to give threads you start a deadline of their
    /// own (they see none through the host).
    pub fn deadline_remaining(&self) -> Option<std::time::Duration> {
        let end = std::mem::offset_of!(calc_host_api_t, deadline_remaining_ns)
            + std::mem::size_of::<abi::calc_deadline_remaining_fn>();
        let remaining = self
            .api()
            .deadline_remaining_ns
            .filter(|_| self.has_field(end))?;
        // SAFETY: valid host table; the context is the table's own.
        let ns = unsafe { remaining(self.api().context) };
        (ns != abi::CALC_DEADLINE_NONE).then(|| std::time::Duration::from_nanos(ns))
    }

    /// The vtable of the interface `id` at major `major` that the application offers plugins
    /// (ABI 1.4), or `None` when it offers none, the id holds a NUL byte, or the host is older
    /// than ABI 1.4. The vtable's memory is the host's, valid until the plugin's shutdown.
    pub fn interface(&self, id: &str, major: u16) -> Option<OfferedInterface> {
        let end = std::mem::offset_of!(calc_host_api_t, get_interface)
            + std::mem::size_of::<abi::calc_get_interface_fn>();
        let get = self.api().get_interface.filter(|_| self.has_field(end))?;
        let id = CString::new(id).ok()?;
        let (mut minor, mut size) = (0u16, 0u32);
        // SAFETY: valid host table; `id` is NUL-terminated and outlives the call; the
        // out-pointers are live locals.
        let vtable = unsafe {
            get(
                self.api().context,
                id.as_ptr(),
                major,
                &mut minor,
                &mut size,
            )
        };
        (!vtable.is_null()).then_some(OfferedInterface {
            vtable,
            minor,
            size: size as usize,
        })
    }

    /// Reads a configuration value the host holds for this plugin, or `None` when it is not set
    /// (or is not UTF-8, or the key contains a NUL byte).
    pub fn config(&self, key: &str) -> Option<String> {
        let end = std::mem::offset_of!(calc_host_api_t, get_config)
            + std::mem::size_of::<abi::calc_get_config_fn>();
        let get = self.api().get_config.filter(|_| self.has_field(end))?;
        let key = CString::new(key).ok()?;
        // SAFETY: valid host table; `key` is NUL-terminated and outlives the call.
        let value = unsafe { get(self.api().context, key.as_ptr()) };
        if value.is_null() {
            return None;
        }
        // SAFETY: the host returns a NUL-terminated string valid until shutdown; we copy it now.
        let value = unsafe { CStr::from_ptr(value) };
        value.to_str().ok().map(str::to_owned)
    }
}

/// An interface the application offers plugins, found with [`Host::interface`].
#[derive(Clone, Copy, Debug)]
pub struct OfferedInterface {
    vtable: *const std::ffi::c_void,
    minor: u16,
    size: usize,
}

// SAFETY: the host's vtable is `[any-thread]` and lives until the plugin's shutdown, like the
// host table itself.
unsafe impl Send for OfferedInterface {}
// SAFETY: as above.
unsafe impl Sync for OfferedInterface {}

impl OfferedInterface {
    /// The interface's minor version as the host offers it.
    pub fn minor(&self) -> u16 {
        self.minor
    }

    /// The size of the host's vtable in bytes: a field that does not end within it is absent.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The vtable's address.
    pub fn vtable(&self) -> *const std::ffi::c_void {
        self.vtable
    }

    /// The vtable as the interface's type `T`, when the host's vtable holds all of it and is
    /// aligned for it.
    ///
    /// # Safety
    /// `T` must be the `#[repr(C)]` vtable type of this interface's id and major (at a minor
    /// the size check proves present), valid for any bytes the host may have put there
    /// (function pointers as `Option<...>`), and the reference must not be used after the
    /// plugin's shutdown.
    pub unsafe fn vtable_as<T>(&self) -> Option<&T> {
        if self.size < std::mem::size_of::<T>()
            || !(self.vtable as usize).is_multiple_of(std::mem::align_of::<T>())
        {
            return None;
        }
        // SAFETY: the host guarantees `size >= size_of::<T>()` readable bytes (checked), aligned
        // (checked), valid until shutdown; the caller vouches for the type.
        Some(unsafe { &*self.vtable.cast::<T>() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::c_void;
    use std::time::Duration;

    /// A deadline service that always says "expired" with 5 ms left, to tell a call from a skip.
    extern "C" fn expired(_context: *mut c_void) -> i32 {
        1
    }

    extern "C" fn remaining(_context: *mut c_void) -> u64 {
        5_000_000
    }

    extern "C" fn no_deadline(_context: *mut c_void) -> u64 {
        abi::CALC_DEADLINE_NONE
    }

    fn table(struct_size: usize) -> calc_host_api_t {
        calc_host_api_t {
            struct_size: struct_size as u32,
            abi_version: abi::calc_abi_version_t { major: 1, minor: 3 },
            host_version: c"1.0.0".as_ptr(),
            context: std::ptr::null_mut(),
            log: None,
            get_config: None,
            get_state: None,
            deadline_expired: Some(expired),
            deadline_remaining_ns: Some(remaining),
            get_interface: None,
        }
    }

    static OFFERED: [u64; 2] = [7, 8];

    unsafe extern "C" fn get_interface(
        _context: *mut c_void,
        id: *const std::ffi::c_char,
        major: u16,
        out_minor: *mut u16,
        out_size: *mut u32,
    ) -> *const c_void {
        // SAFETY: the SDK passes a NUL-terminated id and live out-pointers.
        unsafe {
            if CStr::from_ptr(id) != c"acme.host" || major != 1 {
                return std::ptr::null();
            }
            *out_minor = 2;
            *out_size = 16;
        }
        OFFERED.as_ptr().cast()
    }

    #[test]
    fn interfaces_are_looked_up_only_in_a_host_table_that_has_the_service() {
        let api = calc_host_api_t {
            get_interface: Some(get_interface),
            ..table(std::mem::size_of::<calc_host_api_t>())
        };
        // SAFETY: `api` outlives `host`.
        let host = unsafe { Host::from_raw(&api) };
        let found = host.interface("acme.host", 1).expect("offered");
        assert_eq!((found.minor(), found.size()), (2, 16));
        // SAFETY: `[u64; 2]` is the test interface's vtable type.
        assert_eq!(unsafe { found.vtable_as::<[u64; 2]>() }, Some(&[7, 8]));
        // SAFETY: as above; a larger type is refused by the size check.
        assert!(unsafe { found.vtable_as::<[u64; 3]>() }.is_none());
        assert!(host.interface("acme.host", 2).is_none());
        assert!(host.interface("acme.other", 1).is_none());
        assert!(host.interface("acme\0host", 1).is_none());

        // A 1.3 host's table ends before `get_interface`: not called.
        let old = calc_host_api_t {
            get_interface: Some(get_interface),
            ..table(std::mem::offset_of!(calc_host_api_t, get_interface))
        };
        // SAFETY: `old` outlives `host`.
        let host = unsafe { Host::from_raw(&old) };
        assert!(host.interface("acme.host", 1).is_none());
    }

    #[test]
    fn deadline_services_are_used_when_the_host_table_has_them() {
        let api = table(std::mem::size_of::<calc_host_api_t>());
        // SAFETY: `api` outlives `host`.
        let host = unsafe { Host::from_raw(&api) };
        assert!(host.deadline_expired());
        assert_eq!(host.deadline_remaining(), Some(Duration::from_millis(5)));

        let api = calc_host_api_t {
            deadline_remaining_ns: Some(no_deadline),
            ..table(std::mem::size_of::<calc_host_api_t>())
        };
        // SAFETY: `api` outlives `host`.
        let host = unsafe { Host::from_raw(&api) };
        assert_eq!(host.deadline_remaining(), None);
    }

    #[test]
    fn a_host_table_older_than_1_3_has_no_deadline() {
        // A 1.2 host's table ends where `deadline_expired` begins: the fields beyond
        // `struct_size` (garbage in a real older host, a live function here) must not be read.
        let api = table(std::mem::offset_of!(calc_host_api_t, deadline_expired));
        // SAFETY: `api` outlives `host`.
        let host = unsafe { Host::from_raw(&api) };
        assert!(!host.deadline_expired());
        assert_eq!(host.deadline_remaining(), None);

        // A table that covers `deadline_expired` but not `deadline_remaining_ns`.
        let api = table(std::mem::offset_of!(calc_host_api_t, deadline_remaining_ns));
        // SAFETY: `api` outlives `host`.
        let host = unsafe { Host::from_raw(&api) };
        assert!(host.deadline_expired());
        assert_eq!(host.deadline_remaining(), None);
    }

    #[test]
    fn null_deadline_services_read_as_absent() {
        let api = calc_host_api_t {
            deadline_expired: None,
            deadline_remaining_ns: None,
            ..table(std::mem::size_of::<calc_host_api_t>())
        };
        // SAFETY: `api` outlives `host`.
        let host = unsafe { Host::from_raw(&api) };
        assert!(!host.deadline_expired());
        assert_eq!(host.deadline_remaining(), None);
    }
}
