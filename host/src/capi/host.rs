//! `calc_host_t`: a plugin manager for C callers.

use std::ffi::{c_char, c_int, CString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use calc_sdk::abi::{
    calc_associativity_t, calc_operation_kind_t, calc_status_t, CALC_ARITY_VARIADIC,
    CALC_ASSOCIATIVITY_LEFT, CALC_ASSOCIATIVITY_NONE, CALC_ASSOCIATIVITY_RIGHT,
    CALC_OPERATION_KIND_FUNCTION, CALC_OPERATION_KIND_INFIX,
};

use super::error::{CALC_STATUS_LOAD_FAILED, CALC_STATUS_NOT_FOUND, CALC_STATUS_PARSE_ERROR};
use super::ffi::{ffi_status, ffi_value, handle, handle_mut, out, slice_arg, str_arg, ApiError};
use crate::error::EvalError;
use crate::events::HostEvent;
use crate::info::{OperationKind, PluginInfo};
use crate::manager::PluginManager;
use crate::reload::{apply, Change, DirWatcher};
use calc_sdk::abi::CALC_STATUS_INVALID_ARGUMENT;

/// How long a changed plugin file must be quiet before `calc_host_poll_changes` applies it.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(200);

/// A plugin host: the plugins it loaded, the files that failed, and the operations they provide.
///
/// Opaque; wraps the Rust `calc_host::PluginManager`. Create with `calc_host_new`, destroy with
/// `calc_host_free`, which shuts every plugin down. Thread safety: functions taking
/// `const calc_host_t *` may run concurrently from any threads; functions taking
/// `calc_host_t *` (loading, configuration, reloading, free) need exclusive access. The handle may
/// be moved between threads.
///
/// Hot reload (since calc_host 1.1): after `calc_host_enable_hot_reload`, plugin files can be
/// rebuilt and reloaded (`calc_host_reload_file`, `calc_host_remove_file`), by hand or as the
/// plugin directories change (`calc_host_watch`, `calc_host_poll_changes`).
pub struct calc_host_t {
    manager: PluginManager,
    plugins: Vec<PluginView>,
    /// Views of versions reloaded or removed since: the pointers handed out stay valid until
    /// `calc_host_free`.
    retired: Vec<PluginView>,
    failures: Vec<FailureView>,
    /// Whether plugins are loaded from private copies (`calc_host_enable_hot_reload`).
    hot_reload: bool,
    /// Directories loaded with `calc_host_load_dir`, in order: what `calc_host_watch` watches.
    dirs: Vec<PathBuf>,
    watcher: Option<DirWatcher>,
    /// The manager's events, drained into `events` whenever the views are brought up to date.
    event_rx: std::sync::mpsc::Receiver<HostEvent>,
    events: Vec<EventView>,
}

/// Loaded (`calc_event_t.kind`): a new plugin file was loaded by a reload or a poll.
/// Since calc_host 1.4.
pub const CALC_EVENT_LOADED: c_int = 0;
/// Reloaded: a changed file replaced the running version (`old_version` -> `version`).
/// Since calc_host 1.4.
pub const CALC_EVENT_RELOADED: c_int = 1;
/// Removed: a plugin's file disappeared; its operations are no longer offered.
/// Since calc_host 1.4.
pub const CALC_EVENT_REMOVED: c_int = 2;
/// Failed: a file could not be (re)loaded (`message`); whatever served keeps serving.
/// Since calc_host 1.4.
pub const CALC_EVENT_FAILED: c_int = 3;
/// Unloaded: an old version was shut down and closed after its last call returned.
/// Since calc_host 1.4.
pub const CALC_EVENT_UNLOADED: c_int = 4;
/// Disabled: a plugin file was found but the settings disable that plugin.
/// Since calc_host 1.4.
pub const CALC_EVENT_DISABLED: c_int = 5;

/// One thing that happened to the host's plugins: what `calc host` prints as `calc: reloaded
/// ...`. Owned by the host and valid until `calc_host_free`. Fields may be appended in later
/// versions.
///
/// Since calc_host 1.4.
#[repr(C)]
pub struct calc_event_t {
    /// `CALC_EVENT_LOADED`, `_RELOADED`, `_REMOVED`, `_FAILED`, `_UNLOADED` or `_DISABLED`;
    /// -1 for a kind this header does not know (a later version's): read `message`.
    pub kind: c_int,
    /// The plugin's name; "" for `CALC_EVENT_FAILED`.
    pub plugin: *const c_char,
    /// The version concerned (loaded, serving after a reload, unloaded); "" when none.
    pub version: *const c_char,
    /// The version a reload replaced; "" otherwise.
    pub old_version: *const c_char,
    /// The file; "" for `CALC_EVENT_UNLOADED`.
    pub path: *const c_char,
    /// The whole event in one line, e.g. `"reloaded add 1.0.0 -> 1.1.0 in 0.4 ms"`, the reason
    /// included for a failure.
    pub message: *const c_char,
}

struct EventView {
    event: Box<calc_event_t>,
    _strings: Vec<CString>,
}

// SAFETY: as for `PluginView`: immutable, pointing into the `CString`s it owns.
unsafe impl Send for EventView {}
// SAFETY: as above.
unsafe impl Sync for EventView {}

impl EventView {
    fn new(e: &HostEvent) -> EventView {
        let mut s = Strings::default();
        let (kind, plugin, version, old_version, path) = match e {
            HostEvent::Loaded {
                name,
                version,
                path,
            } => (
                CALC_EVENT_LOADED,
                name.as_str(),
                version.clone(),
                "",
                Some(path),
            ),
            HostEvent::Reloaded {
                name,
                old_version,
                new_version,
                ..
            } => (
                CALC_EVENT_RELOADED,
                name.as_str(),
                new_version.clone(),
                old_version.as_str(),
                None,
            ),
            HostEvent::Removed { name, path } => (
                CALC_EVENT_REMOVED,
                name.as_str(),
                String::new(),
                "",
                Some(path),
            ),
            HostEvent::Failed { path, .. } => {
                (CALC_EVENT_FAILED, "", String::new(), "", Some(path))
            }
            HostEvent::Unloaded { name, version, .. } => (
                CALC_EVENT_UNLOADED,
                name.as_str(),
                version.clone(),
                "",
                None,
            ),
            HostEvent::Disabled { name, path } => (
                CALC_EVENT_DISABLED,
                name.as_str(),
                String::new(),
                "",
                Some(path),
            ),
            // A kind added later: described by its message alone.
            _ => (-1, "", String::new(), "", None),
        };
        let event = Box::new(calc_event_t {
            kind,
            plugin: s.add(plugin),
            version: s.add(&version),
            old_version: s.add(old_version),
            path: s.add(
                &path
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            message: s.add(&e.to_string()),
        });
        EventView {
            event,
            _strings: s.0,
        }
    }
}

/// Metadata of one loaded plugin. Owned by the host and valid until `calc_host_free`.
/// Fields may be appended in later versions; read only the ones your header declares.
///
/// Since calc_host 1.0.
#[repr(C)]
pub struct calc_plugin_info_t {
    /// Plugin name, unique in this host.
    pub name: *const c_char,
    /// The plugin's version (semver).
    pub version: *const c_char,
    /// Author; empty when the plugin declared none.
    pub author: *const c_char,
    /// One line for humans; may be empty.
    pub description: *const c_char,
    /// Absolute path of the library it was loaded from.
    pub path: *const c_char,
    /// The ABI version it was built for, `"major.minor"`.
    pub abi_version: *const c_char,
    /// The SDK version it was built with (semver).
    pub sdk_version: *const c_char,
    /// Its requirement on the host API version (semver requirement).
    pub api_requirement: *const c_char,
    /// Number of operations; read them with `calc_host_operation_info`.
    pub operation_count: usize,
    /// Number of application-defined interfaces it implements (ABI 1.4); read them with
    /// `calc_host_interface_info`. Since calc_host 1.4.
    pub interface_count: usize,
}

/// Declaration of one operation of a loaded plugin. Owned by the host and valid until
/// `calc_host_free`. Fields may be appended in later versions.
///
/// Since calc_host 1.0.
#[repr(C)]
pub struct calc_operation_info_t {
    /// Name, unique within its plugin.
    pub name: *const c_char,
    /// One line for humans; may be empty.
    pub description: *const c_char,
    /// Infix symbol, or NULL for a function.
    pub symbol: *const c_char,
    /// `CALC_OPERATION_KIND_INFIX` or `CALC_OPERATION_KIND_FUNCTION`.
    pub kind: calc_operation_kind_t,
    /// `CALC_ASSOCIATIVITY_LEFT`/`_RIGHT` for infix operators, `_NONE` for functions.
    pub associativity: calc_associativity_t,
    /// Binding strength of an infix operator; 0 for functions.
    pub precedence: i32,
    /// Fewest operands.
    pub min_arity: u32,
    /// Most operands, or `CALC_ARITY_VARIADIC`.
    pub max_arity: u32,
}

/// One application-defined interface a loaded plugin implements (ABI 1.4,
/// docs/INTERFACES.md). Owned by the host and valid until `calc_host_free`. Fields may be
/// appended in later versions.
///
/// Since calc_host 1.4.
#[repr(C)]
pub struct calc_interface_info_t {
    /// The interface id, `"vendor.name"`.
    pub id: *const c_char,
    /// The interface's major version.
    pub major: u16,
    /// The minor the plugin was built against.
    pub minor: u16,
    /// The size of its vtable in bytes.
    pub vtable_size: u32,
    /// Nonzero for a bytes interface (`CALC_INTERFACE_FLAG_BYTES`), which can run isolated.
    pub bytes: c_int,
}

/// A file that failed to load. Owned by the host and valid until `calc_host_free`.
///
/// Since calc_host 1.0.
#[repr(C)]
pub struct calc_load_failure_t {
    /// The file or directory.
    pub path: *const c_char,
    /// One line: the path and the reason, e.g. `"/p/libx.so: not a calc plugin: bad magic ..."`.
    pub message: *const c_char,
}

/// C views of one plugin's metadata and the strings they point into. Boxed and heap-allocated,
/// so that the pointers handed to C stay put when the view moves.
struct PluginView {
    /// What the view shows, to tell whether a plugin changed.
    source: PluginInfo,
    info: Box<calc_plugin_info_t>,
    operations: Vec<calc_operation_info_t>,
    interfaces: Vec<calc_interface_info_t>,
    _strings: Vec<CString>,
}

struct FailureView {
    failure: Box<calc_load_failure_t>,
    _strings: Vec<CString>,
}

// SAFETY: the views are immutable after construction, and their raw pointers point into the
// heap buffers of the `CString`s they own, which do not move when the view moves.
unsafe impl Send for PluginView {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for PluginView {}
// SAFETY: as for `PluginView`.
unsafe impl Send for FailureView {}
// SAFETY: as for `PluginView`.
unsafe impl Sync for FailureView {}

/// Collects `CString`s and hands out pointers to them.
#[derive(Default)]
struct Strings(Vec<CString>);

impl Strings {
    fn add(&mut self, s: &str) -> *const c_char {
        let c = CString::new(s.replace('\0', " ")).unwrap_or_default();
        let p = c.as_ptr();
        self.0.push(c);
        p
    }
}

impl PluginView {
    fn new(p: &PluginInfo) -> Self {
        let mut s = Strings::default();
        let operations = p
            .operations
            .iter()
            .map(|op| {
                let (min_arity, max_arity) = op.arity();
                let (kind, associativity, precedence, symbol) = match &op.kind {
                    OperationKind::Infix {
                        symbol,
                        precedence,
                        right_associative,
                    } => (
                        CALC_OPERATION_KIND_INFIX,
                        if *right_associative {
                            CALC_ASSOCIATIVITY_RIGHT
                        } else {
                            CALC_ASSOCIATIVITY_LEFT
                        },
                        *precedence,
                        s.add(symbol),
                    ),
                    OperationKind::Function { .. } => (
                        CALC_OPERATION_KIND_FUNCTION,
                        CALC_ASSOCIATIVITY_NONE,
                        0,
                        std::ptr::null(),
                    ),
                };
                calc_operation_info_t {
                    name: s.add(&op.name),
                    description: s.add(&op.description),
                    symbol,
                    kind,
                    associativity,
                    precedence,
                    min_arity,
                    max_arity: max_arity.unwrap_or(CALC_ARITY_VARIADIC),
                }
            })
            .collect();
        let info = Box::new(calc_plugin_info_t {
            name: s.add(&p.name),
            version: s.add(&p.version.to_string()),
            author: s.add(&p.author),
            description: s.add(&p.description),
            path: s.add(&p.path.to_string_lossy()),
            abi_version: s.add(&p.abi_version),
            sdk_version: s.add(&p.sdk_version.to_string()),
            api_requirement: s.add(&p.api_requirement.to_string()),
            operation_count: p.operations.len(),
            interface_count: p.interfaces.len(),
        });
        let interfaces = p
            .interfaces
            .iter()
            .map(|i| calc_interface_info_t {
                id: s.add(&i.id),
                major: i.major,
                minor: i.minor,
                vtable_size: i.vtable_size,
                bytes: c_int::from(i.bytes),
            })
            .collect();
        PluginView {
            source: p.clone(),
            info,
            operations,
            interfaces,
            _strings: s.0,
        }
    }
}

impl calc_host_t {
    /// Brings the C views up to date with the manager: a view per loaded plugin, in load order
    /// (a plugin that did not change keeps its view; the views of versions reloaded or removed
    /// are kept until `calc_host_free`), and a view per failure.
    fn sync(&mut self) {
        let unchanged = self.plugins.len() == self.manager.plugins().count()
            && self
                .plugins
                .iter()
                .zip(self.manager.plugins())
                .all(|(view, p)| view.source == *p);
        if !unchanged {
            let mut old = std::mem::take(&mut self.plugins);
            for p in self.manager.plugins() {
                match old.iter().position(|view| view.source == *p) {
                    Some(i) => self.plugins.push(old.remove(i)),
                    None => self.plugins.push(PluginView::new(p)),
                }
            }
            self.retired.extend(old);
        }
        self.events
            .extend(self.event_rx.try_iter().map(|e| EventView::new(&e)));
        for f in self.manager.failures().iter().skip(self.failures.len()) {
            let mut s = Strings::default();
            let failure = Box::new(calc_load_failure_t {
                path: s.add(&f.path.to_string_lossy()),
                message: s.add(&f.error.to_string()),
            });
            self.failures.push(FailureView {
                failure,
                _strings: s.0,
            });
        }
    }

    /// The manager behind this handle, for Rust code embedding the C API.
    pub fn manager(&self) -> &PluginManager {
        &self.manager
    }

    /// The manager, to change.
    pub(crate) fn manager_mut(&mut self) -> &mut PluginManager {
        &mut self.manager
    }
}

fn eval_error(e: EvalError) -> ApiError {
    match e {
        EvalError::Parse { .. } => ApiError::new(CALC_STATUS_PARSE_ERROR, e.to_string()),
        EvalError::Call(c) => ApiError::new(c.status.code(), c.to_string()),
    }
}

/// The version of libcalc_host (semver), e.g. `"1.0.0"`: static, never freed. `[thread-safe]`
#[no_mangle]
pub extern "C" fn calc_host_version() -> *const c_char {
    static VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
    ) {
        Ok(v) => v,
        Err(_) => panic!("version contains a NUL"),
    };
    VERSION.as_ptr()
}

/// Creates an empty host and writes it to `*out_host`.
///
/// Free it with `calc_host_free`. On error `*out_host` is unchanged.
///
/// # Safety
/// `out_host` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn calc_host_new(out_host: *mut *mut calc_host_t) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let out_host = unsafe { out(out_host, "out_host") }?;
        let (tx, event_rx) = std::sync::mpsc::channel();
        let mut manager = PluginManager::new();
        manager.report_events_to(tx);
        let host = Box::new(calc_host_t {
            manager,
            plugins: Vec::new(),
            retired: Vec::new(),
            failures: Vec::new(),
            hot_reload: false,
            dirs: Vec::new(),
            watcher: None,
            event_rx,
            events: Vec::new(),
        });
        out_host.write(Box::into_raw(host));
        Ok(())
    })
}

/// Shuts down every plugin of `host` (in reverse load order), unloads them and frees the host
/// with every string and struct it returned. `calc_op_t` handles made from it stay valid and
/// keep their own plugin loaded until they are freed. NULL does nothing. Freeing twice is
/// undefined: set your pointer to NULL afterwards. `[exclusive]`
///
/// # Safety
/// `host` must be NULL or a host from `calc_host_new` that is not used again.
#[no_mangle]
pub unsafe extern "C" fn calc_host_free(host: *mut calc_host_t) {
    if host.is_null() {
        return;
    }
    ffi_value((), || {
        // SAFETY: per the contract this is the unique owner, created by `Box::into_raw`.
        drop(unsafe { Box::from_raw(host) });
    });
}

/// Sets a configuration value the plugin named `plugin` can read through its host services
/// (`get_config`). Applies to plugins loaded afterwards. Strings are copied. `[exclusive]`
///
/// # Safety
/// `host` must be NULL or live; the strings NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn calc_host_set_plugin_config(
    host: *mut calc_host_t,
    plugin: *const c_char,
    key: *const c_char,
    value: *const c_char,
) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let (host, plugin, key, value) = unsafe {
            (
                handle_mut(host, "host")?,
                str_arg(plugin, "plugin")?,
                str_arg(key, "key")?,
                str_arg(value, "value")?,
            )
        };
        host.manager.set_plugin_config(plugin, key, value);
        Ok(())
    })
}

/// Reads a calc configuration file (TOML, see docs/CONFIG.md: disabled plugins, version
/// ranges, plugin configuration values, preferred providers, rollouts) and makes it the host's
/// settings, replacing earlier ones (values set with `calc_host_set_plugin_config` included).
/// Applies to plugins loaded afterwards. On error returns `CALC_STATUS_INVALID_ARGUMENT` with
/// the file and the reason in `calc_last_error_message()`; the settings are unchanged.
/// `[exclusive]`
///
/// # Safety
/// `host` must be NULL or live; `path` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn calc_host_load_config(
    host: *mut calc_host_t,
    path: *const c_char,
) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let (host, path) = unsafe { (handle_mut(host, "host")?, str_arg(path, "path")?) };
        let settings = crate::config::Settings::load(Path::new(path)).map_err(|e| {
            ApiError::new(calc_sdk::abi::CALC_STATUS_INVALID_ARGUMENT, e.to_string())
        })?;
        host.manager.set_settings(settings);
        Ok(())
    })
}

/// Loads, validates and initialises the plugin library at `path`.
///
/// On failure returns `CALC_STATUS_LOAD_FAILED` (`CALC_STATUS_UNTRUSTED` when the trust policy
/// refused the file before opening it, since calc_host 1.2) with the file and the reason in
/// `calc_last_error_message()`; the failure is also listed by `calc_host_failure`, and the host
/// stays usable. `[exclusive]`
///
/// # Safety
/// `host` must be NULL or live; `path` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn calc_host_load_file(
    host: *mut calc_host_t,
    path: *const c_char,
) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let (host, path) = unsafe { (handle_mut(host, "host")?, str_arg(path, "path")?) };
        let result = host
            .manager
            .load_file(Path::new(path))
            .map(|_| ())
            .map_err(|e| ApiError::new(super::error::load_status(&e), e.to_string()));
        host.sync();
        result
    })
}

/// Loads every shared library in directory `dir`, in file-name order.
///
/// Returns `CALC_STATUS_OK` when the directory could be read, even if some plugins in it failed
/// (list them with `calc_host_failure`); `CALC_STATUS_LOAD_FAILED` when it could not
/// (`CALC_STATUS_UNTRUSTED` when the trust policy refused the directory). Writes the
/// number of plugins loaded to `*out_loaded` unless it is NULL. `[exclusive]`
///
/// # Safety
/// `host` must be NULL or live; `dir` NULL or NUL-terminated; `out_loaded` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn calc_host_load_dir(
    host: *mut calc_host_t,
    dir: *const c_char,
    out_loaded: *mut usize,
) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let (host, dir) = unsafe { (handle_mut(host, "host")?, str_arg(dir, "dir")?) };
        let result = host
            .manager
            .load_dir(Path::new(dir))
            .map_err(|e| ApiError::new(super::error::load_status(&e), e.to_string()));
        host.sync();
        let loaded = result?;
        let dir = PathBuf::from(dir);
        if !host.dirs.contains(&dir) {
            host.dirs.push(dir);
        }
        if !out_loaded.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { out_loaded.write(loaded) };
        }
        Ok(())
    })
}

/// Number of loaded plugins; 0 for a NULL host. `[thread-safe]`
///
/// # Safety
/// `host` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn calc_host_plugin_count(host: *const calc_host_t) -> usize {
    ffi_value(0, || {
        // SAFETY: forwarded contract.
        unsafe { handle(host, "host") }.map_or(0, |h| h.plugins.len())
    })
}

/// Metadata of plugin `index` (0-based, load order), or NULL when `host` is NULL or `index` is
/// out of range. Owned by the host, valid until `calc_host_free`. `[thread-safe]`
///
/// Hot reload changes the list: a removed plugin leaves it (the ones after it move up), a
/// reloaded one has new metadata at its index. Metadata returned earlier stays valid: it
/// describes the version it was read from.
///
/// # Safety
/// `host` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn calc_host_plugin_info(
    host: *const calc_host_t,
    index: usize,
) -> *const calc_plugin_info_t {
    ffi_value(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        let Ok(host) = (unsafe { handle(host, "host") }) else {
            return std::ptr::null();
        };
        host.plugins
            .get(index)
            .map_or(std::ptr::null(), |p| &*p.info)
    })
}

/// Declaration of operation `op_index` of plugin `plugin_index`, or NULL when out of range or
/// `host` is NULL. Owned by the host, valid until `calc_host_free`. `[thread-safe]`
///
/// # Safety
/// `host` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn calc_host_operation_info(
    host: *const calc_host_t,
    plugin_index: usize,
    op_index: usize,
) -> *const calc_operation_info_t {
    ffi_value(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        let Ok(host) = (unsafe { handle(host, "host") }) else {
            return std::ptr::null();
        };
        host.plugins
            .get(plugin_index)
            .and_then(|p| p.operations.get(op_index))
            .map_or(std::ptr::null(), |o| o)
    })
}

/// Interface `index` of plugin `plugin_index` (see `calc_plugin_info_t.interface_count`), or
/// NULL when out of range or `host` is NULL. Owned by the host, valid until `calc_host_free`.
/// `[thread-safe]` Since calc_host 1.4.
///
/// # Safety
/// `host` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn calc_host_interface_info(
    host: *const calc_host_t,
    plugin_index: usize,
    index: usize,
) -> *const calc_interface_info_t {
    ffi_value(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        let Ok(host) = (unsafe { handle(host, "host") }) else {
            return std::ptr::null();
        };
        host.plugins
            .get(plugin_index)
            .and_then(|p| p.interfaces.get(index))
            .map_or(std::ptr::null(), |i| i)
    })
}

/// Number of events so far: what reloads, removals and polls did (loads, reloads, removals,
/// failures, unloads of old versions), oldest first; 0 for a NULL host. The list grows during
/// the `[exclusive]` calls only (an unload that happens later, when an old version's last call
/// returns, is listed by the next one), so a program that remembers how many it has seen reads
/// the new ones after each reload or poll. `[thread-safe]` Since calc_host 1.4.
///
/// # Safety
/// `host` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn calc_host_event_count(host: *const calc_host_t) -> usize {
    ffi_value(0, || {
        // SAFETY: forwarded contract.
        unsafe { handle(host, "host") }.map_or(0, |h| h.events.len())
    })
}

/// Event `index` (0-based, oldest first), or NULL when out of range or `host` is NULL. Owned
/// by the host, valid until `calc_host_free`. `[thread-safe]` Since calc_host 1.4.
///
/// # Safety
/// `host` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn calc_host_event(
    host: *const calc_host_t,
    index: usize,
) -> *const calc_event_t {
    ffi_value(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        let Ok(host) = (unsafe { handle(host, "host") }) else {
            return std::ptr::null();
        };
        host.events
            .get(index)
            .map_or(std::ptr::null(), |e| &*e.event)
    })
}

/// Number of files that failed to load so far; 0 for a NULL host. `[thread-safe]`
///
/// # Safety
/// `host` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn calc_host_failure_count(host: *const calc_host_t) -> usize {
    ffi_value(0, || {
        // SAFETY: forwarded contract.
        unsafe { handle(host, "host") }.map_or(0, |h| h.failures.len())
    })
}

/// Failure `index` (0-based, in the order files were tried), or NULL when out of range or `host`
/// is NULL. Owned by the host, valid until `calc_host_free`. `[thread-safe]`
///
/// # Safety
/// `host` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn calc_host_failure(
    host: *const calc_host_t,
    index: usize,
) -> *const calc_load_failure_t {
    ffi_value(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        let Ok(host) = (unsafe { handle(host, "host") }) else {
            return std::ptr::null();
        };
        host.failures
            .get(index)
            .map_or(std::ptr::null(), |f| &*f.failure)
    })
}

/// Calls the operation named `operation` (or the infix operator with that symbol) with
/// `arg_count` operands and writes the result to `*out_result`.
///
/// Returns `CALC_STATUS_NOT_FOUND` when no plugin provides it, `CALC_STATUS_INVALID_ARGUMENT`
/// for a wrong operand count, or the status the operation reported (e.g.
/// `CALC_STATUS_DIVISION_BY_ZERO`), with a message naming the operation and plugin. For repeated
/// calls, resolve the name once with `calc_op_new`. `[thread-safe]`
///
/// # Safety
/// `host` must be NULL or live; `operation` NULL or NUL-terminated; `args` valid for
/// `arg_count` values (may be NULL when 0); `out_result` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn calc_host_call(
    host: *const calc_host_t,
    operation: *const c_char,
    args: *const f64,
    arg_count: usize,
    out_result: *mut f64,
) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let (host, name, args, out_result) = unsafe {
            (
                handle(host, "host")?,
                str_arg(operation, "operation")?,
                slice_arg(args, arg_count, "args")?,
                out(out_result, "out_result")?,
            )
        };
        let op = host.manager.operation(name).ok_or_else(|| {
            ApiError::new(
                CALC_STATUS_NOT_FOUND,
                format!("unknown operation '{name}' (no loaded plugin provides it)"),
            )
        })?;
        let value = op
            .call(args)
            .map_err(|e| ApiError::new(e.status.code(), e.to_string()))?;
        out_result.write(value);
        Ok(())
    })
}

/// Parses and evaluates `expression` (infix operators, parentheses, unary minus, function
/// calls, all from the loaded plugins) and writes the result to `*out_result`.
///
/// Returns `CALC_STATUS_PARSE_ERROR` for a malformed expression or an unknown operator or
/// function (the message gives the column), or the status of the operation that failed.
/// `[thread-safe]`
///
/// # Safety
/// `host` must be NULL or live; `expression` NULL or NUL-terminated; `out_result` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn calc_host_eval(
    host: *const calc_host_t,
    expression: *const c_char,
    out_result: *mut f64,
) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let (host, expression, out_result) = unsafe {
            (
                handle(host, "host")?,
                str_arg(expression, "expression")?,
                out(out_result, "out_result")?,
            )
        };
        let value = host.manager.eval(expression).map_err(eval_error)?;
        out_result.write(value);
        Ok(())
    })
}

fn not_hot(what: &str) -> ApiError {
    ApiError::new(
        CALC_STATUS_INVALID_ARGUMENT,
        format!("{what} needs hot reload: call calc_host_enable_hot_reload before loading plugins"),
    )
}

/// Turns on hot-reload mode: from now on every plugin library is loaded from a private copy
/// (in `$TMPDIR/calc-plugins-<pid>`, deleted as versions unload), so that the file can be
/// rebuilt in place and reloaded with `calc_host_reload_file` or `calc_host_poll_changes`, and
/// the old version really unloaded. Must be called before loading: returns
/// `CALC_STATUS_INVALID_ARGUMENT` when plugins are already loaded. Calling it again is harmless.
/// `[exclusive]` Since calc_host 1.1.
///
/// # Safety
/// `host` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn calc_host_enable_hot_reload(host: *mut calc_host_t) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let host = unsafe { handle_mut(host, "host") }?;
        if host.hot_reload {
            return Ok(());
        }
        if host.manager.plugins().next().is_some() || !host.manager.disabled().is_empty() {
            return Err(ApiError::new(
                CALC_STATUS_INVALID_ARGUMENT,
                "plugins are already loaded: enable hot reload before loading any",
            ));
        }
        host.manager
            .enable_hot_reload(PluginManager::default_copy_dir());
        host.hot_reload = true;
        Ok(())
    })
}

/// Applies a change of the plugin library at `path`: a file no plugin came from is loaded; the
/// file of a loaded plugin is loaded as its new version, handed the old version's state (ABI
/// 1.1 `save_state`) and swapped in, while calls in flight finish on the old version, which is
/// unloaded after its last call. A plugin disabled by the settings stays disabled.
///
/// Returns `CALC_STATUS_LOAD_FAILED` with the file and the reason when the new version is
/// refused or fails to initialise: the old version keeps serving, and the failure is listed by
/// `calc_host_failure`. `CALC_STATUS_INVALID_ARGUMENT` without `calc_host_enable_hot_reload`.
/// Metadata indices change (see `calc_host_plugin_info`); `calc_op_t` handles follow the new
/// version. `[exclusive]` Since calc_host 1.1.
///
/// # Safety
/// `host` must be NULL or live; `path` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn calc_host_reload_file(
    host: *mut calc_host_t,
    path: *const c_char,
) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let (host, path) = unsafe { (handle_mut(host, "host")?, str_arg(path, "path")?) };
        if !host.hot_reload {
            return Err(not_hot("calc_host_reload_file"));
        }
        let event = apply(&mut host.manager, &Change::Upserted(PathBuf::from(path)));
        host.sync();
        match event {
            Some(HostEvent::Failed { error, .. }) => {
                Err(ApiError::new(CALC_STATUS_LOAD_FAILED, error))
            }
            _ => Ok(()),
        }
    })
}

/// Applies the removal of the plugin library at `path`: the plugin loaded from it is unloaded
/// (after the last call in flight on it returns) and its operations are no longer offered;
/// `calc_op_t` handles to them return `CALC_STATUS_ERROR` ("unloaded"). Returns
/// `CALC_STATUS_NOT_FOUND` when no loaded plugin came from that file. Works with or without hot
/// reload. `[exclusive]` Since calc_host 1.1.
///
/// # Safety
/// `host` must be NULL or live; `path` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn calc_host_remove_file(
    host: *mut calc_host_t,
    path: *const c_char,
) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let (host, path) = unsafe { (handle_mut(host, "host")?, str_arg(path, "path")?) };
        let removed = host.manager.remove_file(Path::new(path));
        host.sync();
        removed.map(|_| ()).ok_or_else(|| {
            ApiError::new(
                CALC_STATUS_NOT_FOUND,
                format!("{path}: no loaded plugin came from this file"),
            )
        })
    })
}

/// Starts (`enable` non-zero) or stops (`enable` 0) watching the directories loaded so far with
/// `calc_host_load_dir` for changes of their plugin libraries: added, rebuilt (also written
/// under a temporary name and renamed into place), deleted or renamed away. Watching only
/// collects changes, in a background thread of the library; they are applied when you call
/// `calc_host_poll_changes`, once a file has been quiet for 200 ms. Calling it again with
/// `enable` non-zero watches the directories loaded since, too.
///
/// Returns `CALC_STATUS_INVALID_ARGUMENT` without `calc_host_enable_hot_reload` or when no
/// directory was loaded, `CALC_STATUS_LOAD_FAILED` naming the directory when one cannot be
/// watched. `[exclusive]` Since calc_host 1.1.
///
/// # Safety
/// `host` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn calc_host_watch(host: *mut calc_host_t, enable: c_int) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let host = unsafe { handle_mut(host, "host") }?;
        if enable == 0 {
            host.watcher = None;
            return Ok(());
        }
        if !host.hot_reload {
            return Err(not_hot("calc_host_watch"));
        }
        if host.dirs.is_empty() {
            return Err(ApiError::new(
                CALC_STATUS_INVALID_ARGUMENT,
                "no plugin directory to watch: load one with calc_host_load_dir first",
            ));
        }
        let watching = host.watcher.as_ref().is_some_and(|w| {
            w.dirs().len() == host.dirs.len()
                && host
                    .dirs
                    .iter()
                    .all(|d| std::fs::canonicalize(d).is_ok_and(|c| w.dirs().contains(&c)))
        });
        if !watching {
            host.watcher = None;
            let watcher = new_watcher_off_caller_thread(&host.dirs)?
                .map_err(|e| ApiError::new(CALC_STATUS_LOAD_FAILED, e.to_string()))?;
            host.watcher = Some(watcher);
        }
        Ok(())
    })
}

/// Creates the watcher of `dirs` on a short-lived thread of the library rather than on the
/// caller's.
///
/// Setting up an inotify watch blocks on a std channel, and a thread that blocks on one gets a
/// std thread handle, allocated on first use and kept in thread-local storage until the thread
/// exits. The caller's thread is often the program's main thread, which never exits before the
/// process does, so that handle would outlive every other allocation of the library, referenced
/// only through an interior pointer: valgrind reports it as "possibly lost", an error under
/// `--leak-check=full`. A thread of our own ends here, and its handle with it.
fn new_watcher_off_caller_thread(
    dirs: &[std::path::PathBuf],
) -> Result<Result<DirWatcher, crate::reload::WatchError>, ApiError> {
    // Not `std::thread::scope`: it takes a handle of the calling thread (to be woken), the very
    // allocation avoided here. Joining a plain thread does not.
    let dirs = dirs.to_vec();
    let setup = std::thread::Builder::new()
        .name("calc-watch-setup".into())
        .spawn(move || DirWatcher::new(&dirs, WATCH_DEBOUNCE))
        .map_err(|e| {
            ApiError::new(
                CALC_STATUS_LOAD_FAILED,
                format!("cannot start a thread to set up the watch: {e}"),
            )
        })?;
    // A panic in the setup goes on to `ffi_status`, which turns it into a status.
    Ok(setup
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
}

/// Applies the changes the watcher (`calc_host_watch`) has collected and that are ready (each
/// file quiet for 200 ms), without waiting, as `calc_host_reload_file` and
/// `calc_host_remove_file` would; writes the number of changes that took effect (plugins
/// loaded, reloaded or removed) to `*out_applied` unless it is NULL. A file that fails to
/// (re)load does not make the call fail: it is listed by `calc_host_failure`, and its old
/// version, if any, keeps serving. Returns `CALC_STATUS_INVALID_ARGUMENT` when not watching.
///
/// Applying is explicit: the host changes only during this call (and the other `[exclusive]`
/// calls), so call it where your program can afford it, e.g. once per main-loop iteration.
/// Meanwhile `calc_op_t` handles keep working from other threads: each call goes to the version
/// serving at that moment, a call in flight finishes on the version it started on, and an old
/// version is unloaded after its last call returns. `[exclusive]` Since calc_host 1.1.
///
/// # Safety
/// `host` must be NULL or live; `out_applied` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn calc_host_poll_changes(
    host: *mut calc_host_t,
    out_applied: *mut usize,
) -> calc_status_t {
    ffi_status(|| {
        // SAFETY: forwarded contract.
        let host = unsafe { handle_mut(host, "host") }?;
        let Some(watcher) = &host.watcher else {
            return Err(ApiError::new(
                CALC_STATUS_INVALID_ARGUMENT,
                "not watching: call calc_host_watch first",
            ));
        };
        let mut applied = 0;
        for change in watcher.try_changes() {
            match apply(&mut host.manager, &change) {
                Some(HostEvent::Failed { .. }) | None => {}
                Some(_) => applied += 1,
            }
        }
        host.sync();
        if !out_applied.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { out_applied.write(applied) };
        }
        Ok(())
    })
}
