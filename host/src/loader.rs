//! Loading plugin libraries: the only module that uses `libloading`, reads plugin memory or
//! calls plugin code.
//!
//! Order of operations for one file (nothing in the plugin runs before step 3, and nothing but
//! `plugin_entry` before step 6):
//! 1. resolve the path to an absolute, canonical regular file (never a bare name that `dlopen`
//!    would search for);
//! 2. `dlopen` it with `RTLD_NOW | RTLD_LOCAL` and look up `plugin_entry`;
//! 3. check that `plugin_entry` lies in an executable segment of the library, and call it;
//! 4. read the 16-byte header and `validate::check_header` it;
//! 5. copy every other field (strings bounded by `CALC_MAX_STRING_LEN`) and
//!    `validate::check_descriptor` them;
//! 6. call `init` with the host services table.
//!
//! Steps 4 and 5 read plugin memory only through the `memory` module's checked reads: a pointer
//! into unmapped memory is a load error, not a crash.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_void};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::Arc;

use calc_sdk::abi::{
    self, calc_interface_t, calc_operation_t, calc_plugin_entry_fn, calc_plugin_t,
};
use calc_sdk::Status;

use crate::error::{CallError, LoadError};
use crate::info::{OperationInfo, PluginInfo};
use crate::memory::{LibraryMap, Reader};
use crate::services::HostServices;
use crate::validate::{self, RawDescriptor, RawHeader, RawInterface, RawOperation};

/// The signature of `calc_operation_t.execute`.
/// What [`validate_descriptor`] gives (hidden with it).
#[doc(hidden)]
pub use crate::validate::Validated;

pub(crate) type ExecuteFn = unsafe extern "C" fn(
    *mut c_void,
    *const f64,
    usize,
    *mut f64,
    *mut c_char,
    usize,
) -> abi::calc_status_t;

/// The signature of `calc_operation_t.execute_batch`.
pub(crate) type ExecuteBatchFn = unsafe extern "C" fn(
    *mut c_void,
    *const *const f64,
    usize,
    usize,
    *mut f64,
    *mut usize,
    *mut c_char,
    usize,
) -> abi::calc_status_t;

/// The signature of a bytes interface's functions (`calc_bytes_fn`).
type BytesFn = unsafe extern "C" fn(
    *mut c_void,
    *const c_void,
    usize,
    abi::calc_bytes_write_fn,
    *mut c_void,
    *mut c_char,
    usize,
) -> abi::calc_status_t;

/// The most bytes one call of a bytes interface may take in or give out: half the runner
/// protocol's largest frame, so that an isolated call's request and reply always fit.
pub const MAX_BYTES: usize = 32 << 20;

/// What a bytes interface's function wrote, and what it did wrong.
#[derive(Default)]
struct ByteSink {
    out: Vec<u8>,
    fault: Option<String>,
}

/// `calc_bytes_write_fn`: appends to the [`ByteSink`] behind `writer`, up to
/// [`MAX_BYTES`]; never unwinds (no allocation failure panics: `try_reserve`).
///
/// # Safety
/// `writer` must be the live `ByteSink` passed with it, `data` NULL or readable for `len`
/// bytes (the `calc_bytes_write_fn` contract).
unsafe extern "C" fn write_bytes(writer: *mut c_void, data: *const c_void, len: usize) {
    if writer.is_null() || len == 0 {
        return;
    }
    // SAFETY: per the contract, the caller's live `ByteSink`, used by nothing else meanwhile.
    let sink = unsafe { &mut *writer.cast::<ByteSink>() };
    if sink.fault.is_some() {
        return;
    }
    if data.is_null() {
        sink.fault = Some(format!("the plugin wrote {len} bytes from NULL"));
        return;
    }
    if sink.out.len().saturating_add(len) > MAX_BYTES || sink.out.try_reserve(len).is_err() {
        sink.fault = Some(format!(
            "the plugin's output is over {} MiB",
            MAX_BYTES >> 20
        ));
        return;
    }
    // SAFETY: per the contract, `data` is readable for `len` bytes; the sink's buffer is ours.
    sink.out
        .extend_from_slice(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) });
}

/// Operands per row that [`OpHandle::call_batch`] handles without allocating: the column
/// pointers it hands to `execute_batch`, or the row it gathers for the scalar fallback.
const STACK_OPERANDS: usize = 16;

/// Size of the error buffer passed to `init` and `execute`.
const ERROR_BUF: usize = abi::CALC_ERROR_BUF_SIZE as usize;

/// A validated, initialised plugin. Dropping it calls `shutdown` and then unloads the library.
pub struct LoadedPlugin {
    info: PluginInfo,
    executes: Vec<ExecuteFn>,
    /// `execute_batch` of each operation (ABI 1.2), `None` when absent.
    batches: Vec<Option<ExecuteBatchFn>>,
    /// The address of each interface's vtable (ABI 1.4), in the order of `info.interfaces`;
    /// empty for a plugin in a runner.
    vtables: Vec<usize>,
    instance: *mut c_void,
    shutdown: abi::calc_shutdown_fn,
    save_state: abi::calc_save_state_fn,
    /// Must outlive the instance: the plugin may keep pointers into it until `shutdown`.
    _services: Box<HostServices>,
    /// Closed explicitly in `Drop`, after `shutdown`.
    library: Option<libloading::Library>,
    /// The private copy the library was loaded from (hot-reload mode), deleted after unloading.
    copy: Option<PrivateCopy>,
    /// Where to report the unload.
    events: Option<std::sync::mpsc::Sender<crate::events::HostEvent>>,
    /// The instance pointer of each operation when they differ from `instance` (an isolated
    /// plugin's proxy states); empty otherwise.
    instances: Vec<*mut c_void>,
    /// Set when the plugin runs in a runner process (see `crate::isolation`): `library` is
    /// then `None` and the operations' functions are the isolation proxies.
    isolation: Option<Box<dyn Remote>>,
}

/// What serves a plugin that runs outside this process (a runner, see `crate::isolation`):
/// the loader keeps it alive as long as the plugin, and asks it for the plugin's state. The
/// isolation layer implements it; this module knows nothing more of it.
pub(crate) trait Remote: Send + Sync + std::any::Any {
    /// Asks the plugin to save its state for its next version: the bytes, or the status and
    /// message of the failure.
    fn save_state(&self) -> Result<Option<Vec<u8>>, (calc_sdk::Status, String)>;
    /// Calls function `slot` of the plugin's bytes interface number `interface` with `input`:
    /// its output, or the status and message of the failure.
    fn call_bytes(
        &self,
        interface: u32,
        slot: u32,
        input: &[u8],
    ) -> Result<Vec<u8>, (calc_sdk::Status, String)>;
    /// Itself, for the layer that made it to look at.
    fn as_any(&self) -> &dyn std::any::Any;
}

// SAFETY: the ABI makes `execute` callable from any thread at once, and `init`/`shutdown` are only
// called by this module from the thread that owns the `LoadedPlugin` (load and drop). The
// instance pointer is only handed back to the plugin; an isolated plugin's instance pointers
// point at its `isolation::Isolated` proxy states, which are `Sync` (a mutex guards the runner).
unsafe impl Send for LoadedPlugin {}
// SAFETY: as above; shared access only calls `execute`.
unsafe impl Sync for LoadedPlugin {}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Drop for LoadedPlugin {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown {
            tracing::debug!(plugin = %self.info.name, "shutdown");
            // SAFETY: `init` succeeded for this instance and this is the only call to `shutdown`;
            // no `OpHandle` is left (they hold an `Arc` to us), so no `execute` is running.
            unsafe { shutdown(self.instance) };
        }
        // The file the library was opened from: its private copy, or the plugin file itself;
        // none for a plugin in a runner.
        let opened_from = self.library.is_some().then(|| {
            self.copy
                .as_ref()
                .map_or_else(|| self.info.path.clone(), |c| c.0.clone())
        });
        drop(self.library.take());
        // Gone when the dynamic loader no longer knows it and, for a private copy (whose name
        // is unique), no mapping of it is left.
        let code = self.executes.first().map(|f| *f as usize);
        let unmapped = opened_from.map(|file| {
            let mapped = self.copy.is_some() && still_mapped(&file) == Some(true);
            !still_loaded(&file, code) && !mapped
        });
        drop(self.copy.take());
        match unmapped {
            Some(false) => tracing::warn!(
                plugin = %self.info.name,
                "{}: library still mapped after dlclose (something pins it: thread-local destructors \
                 registered by the plugin, RTLD_NODELETE, or another open handle)",
                self.info.path.display()
            ),
            _ => tracing::debug!(plugin = %self.info.name, ?unmapped, "unloaded"),
        }
        if let Some(events) = &self.events {
            let _ = events.send(crate::events::HostEvent::Unloaded {
                name: self.info.name.clone(),
                version: self.info.version.to_string(),
                unmapped,
            });
        }
    }
}

/// Whether the dynamic loader still has the library at `file` loaded. With `code`, the
/// address of a function of that library, it asks `dladdr` (no system call): still loaded when
/// an object named `file` holds that address. Without, `dlopen` with `RTLD_NOLOAD` (which opens
/// and `stat`s the file to compare identities) looks it up. Neither loads anything.
pub fn still_loaded(file: &Path, code: Option<usize>) -> bool {
    if let Some(addr) = code {
        return calc_runtime::process::sys::object_name_at(addr)
            .is_some_and(|name| name == file.as_os_str());
    }
    use libloading::os::unix::{Library, RTLD_LAZY};
    // SAFETY: with RTLD_NOLOAD, `dlopen` only looks up an already-loaded library (whose
    // initialisers ran long ago) and adds a reference, released when `found` is dropped.
    let found = unsafe { Library::open(Some(file), RTLD_LAZY | libc::RTLD_NOLOAD) };
    found.is_ok()
}

/// Whether a file is mapped into this process (Linux: `/proc/self/maps`); `None` where that
/// cannot be checked.
pub fn still_mapped(path: &Path) -> Option<bool> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let needle = path.to_string_lossy();
    Some(
        maps.lines()
            .any(|l| l.ends_with(needle.as_ref()) || l.ends_with(&format!("{needle} (deleted)"))),
    )
}

impl LoadedPlugin {
    /// The plugin's metadata.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The address of the vtable of the plugin's interface number `index` (in the order of
    /// `info().interfaces`), when the plugin runs in this process.
    pub(crate) fn vtable_address(&self, index: usize) -> Option<usize> {
        self.vtables.get(index).copied()
    }

    /// The instance `init` produced (NULL without `init`, and for a plugin in a runner).
    pub(crate) fn instance(&self) -> *mut c_void {
        self.instance
    }

    /// Calls function `slot` of the plugin's bytes interface number `interface` (in the order
    /// of `info().interfaces`) with `input`: in this process, or in its runner. Returns the
    /// output, or the status and message of the failure.
    pub(crate) fn call_bytes(
        &self,
        interface: usize,
        slot: usize,
        input: &[u8],
    ) -> Result<Vec<u8>, (Status, String)> {
        let Some(declared) = self.info.interfaces.get(interface) else {
            return Err((
                Status::InvalidArgument,
                format!("no interface #{interface}"),
            ));
        };
        if !declared.bytes {
            return Err((
                Status::InvalidArgument,
                format!("{declared} is not a bytes interface"),
            ));
        }
        let word = std::mem::size_of::<usize>();
        let slots = declared.vtable_size as usize / word;
        if slot >= slots {
            return Err((
                Status::InvalidArgument,
                format!("{declared} has {slots} functions, no function #{slot}"),
            ));
        }
        if let Some(remote) = self.remote() {
            if input.len() > MAX_BYTES {
                return Err((
                    Status::InvalidArgument,
                    format!(
                        "an input of {} bytes, over {} MiB",
                        input.len(),
                        MAX_BYTES >> 20
                    ),
                ));
            }
            return remote.call_bytes(interface as u32, slot as u32, input);
        }
        let vtable = self.vtables.get(interface).copied().ok_or_else(|| {
            (
                Status::Error,
                format!("{declared}: no vtable in this process"),
            )
        })?;
        // SAFETY: the vtable is `vtable_size` readable bytes of the loaded library (validated at
        // load, and `self` keeps the library loaded); `slot` is within it (checked above).
        let address = unsafe { ((vtable + slot * word) as *const usize).read_unaligned() };
        // SAFETY: validation found every field of a bytes interface's vtable to be non-NULL
        // code of the process; the ABI gives it the `calc_bytes_fn` signature.
        let function: BytesFn = unsafe { std::mem::transmute::<usize, BytesFn>(address) };
        let mut sink = ByteSink::default();
        let mut buf = [0u8; ERROR_BUF];
        // SAFETY: the `calc_bytes_fn` contract: the plugin's instance, `input` readable for its
        // length (NULL when empty), our writer with a live `ByteSink`, a writable buffer.
        let status = unsafe {
            function(
                self.instance,
                if input.is_empty() {
                    ptr::null()
                } else {
                    input.as_ptr().cast()
                },
                input.len(),
                Some(write_bytes),
                (&mut sink as *mut ByteSink).cast(),
                buf.as_mut_ptr().cast(),
                ERROR_BUF,
            )
        };
        if status != abi::CALC_STATUS_OK {
            let status = Status::from_code(status).unwrap_or(Status::Error);
            return Err((status, message_from(&buf, status)));
        }
        match sink.fault {
            Some(fault) => Err((Status::Error, fault)),
            None => Ok(sink.out),
        }
    }

    /// What serves the plugin when it runs outside this process.
    pub(crate) fn remote(&self) -> Option<&dyn Remote> {
        self.isolation.as_deref()
    }

    /// Whether the plugin runs in a runner process (`docs/ISOLATION.md`).
    pub fn is_isolated(&self) -> bool {
        self.isolation.is_some()
    }

    /// A plugin served by a runner process: every operation's `execute` is `execute` (and
    /// `execute_batch` is `batch`) called with its own instance pointer from `instances`, which
    /// point into `isolated`.
    pub(crate) fn from_runner(
        info: PluginInfo,
        execute: ExecuteFn,
        batch: ExecuteBatchFn,
        instances: Vec<*mut c_void>,
        isolated: Box<dyn Remote>,
    ) -> LoadedPlugin {
        let n = info.operations.len();
        debug_assert_eq!(instances.len(), n);
        LoadedPlugin {
            _services: HostServices::new(&info.name, &BTreeMap::new()),
            info,
            executes: vec![execute; n],
            batches: vec![Some(batch); n],
            vtables: Vec::new(),
            instance: ptr::null_mut(),
            shutdown: None,
            save_state: None,
            library: None,
            copy: None,
            events: None,
            instances,
            isolation: Some(isolated),
        }
    }

    /// Reports this plugin's unload (and whether it was really unmapped) to `events`.
    pub fn report_unload_to(&mut self, events: std::sync::mpsc::Sender<crate::events::HostEvent>) {
        self.events = Some(events);
    }

    /// Whether the plugin can hand state to its next version (ABI 1.1 `save_state`).
    /// An isolated plugin is always asked: its runner answers `None` when it has no
    /// `save_state`.
    pub fn saves_state(&self) -> bool {
        self.save_state.is_some() || self.isolation.is_some()
    }

    /// Asks the plugin to save its state for the next version (hot reload). `Ok(None)` when it
    /// has no `save_state` or saved nothing.
    pub fn save_state(&self) -> Result<Option<Vec<u8>>, CallError> {
        if let Some(isolated) = &self.isolation {
            return isolated.save_state().map_err(|(status, message)| {
                CallError::new(crate::error::CallErrorDetails {
                    operation: "save_state".into(),
                    plugin: self.info.name.clone(),
                    path: self.info.path.clone(),
                    status,
                    message,
                })
            });
        }
        let Some(save) = self.save_state else {
            return Ok(None);
        };
        let mut state: Vec<u8> = Vec::new();
        let mut buf = [0u8; ERROR_BUF];
        // SAFETY: `init` succeeded and the instance is alive; `write_state` appends to the live
        // `state` Vec passed as the writer; the error buffer is ERROR_BUF writable bytes.
        let status = unsafe {
            save(
                self.instance,
                Some(write_state),
                (&mut state as *mut Vec<u8>).cast(),
                buf.as_mut_ptr().cast(),
                ERROR_BUF,
            )
        };
        if status != abi::CALC_STATUS_OK {
            let status = Status::from_code(status).unwrap_or(Status::Error);
            return Err(CallError::new(crate::error::CallErrorDetails {
                operation: "save_state".into(),
                plugin: self.info.name.clone(),
                path: self.info.path.clone(),
                status,
                message: message_from(&buf, status),
            }));
        }
        Ok((!state.is_empty()).then_some(state))
    }
}

/// The `calc_state_write_fn` the host passes to `save_state`: appends to a `Vec<u8>`.
///
/// # Safety
/// `writer` must be the `*mut Vec<u8>` passed to `save_state`; `data` readable for `len` bytes
/// (or `len` 0).
unsafe extern "C" fn write_state(writer: *mut c_void, data: *const c_void, len: usize) {
    if writer.is_null() || data.is_null() || len == 0 {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: per the contract, `writer` is our live Vec and `data` has `len` bytes.
        let (state, bytes) = unsafe {
            (
                &mut *writer.cast::<Vec<u8>>(),
                std::slice::from_raw_parts(data.cast::<u8>(), len),
            )
        };
        state.extend_from_slice(bytes);
    }));
}

/// Resolves `path` to the canonical absolute path of a regular file whose header is that of a
/// loadable shared library ([`crate::trust::check_header`]). The trust policy,
/// [`crate::trust`], runs before this in the manager; this only rejects what `dlopen` cannot
/// load anyway (or would crash on), with a clearer message.
pub fn resolve(path: &Path) -> Result<PathBuf, LoadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let not_found = || LoadError::NotFound {
        path: path.to_path_buf(),
    };
    // One open serves every check: the descriptor gives the file type and size, the header,
    // and the canonical path, for a fraction of what `realpath` (one system call per path
    // component), a `stat` and a second open cost. Usually the path is already canonical, and
    // the open itself proves it (`openat2`); otherwise the kernel names the opened file (on
    // Linux). `O_NONBLOCK`: a FIFO does not block.
    let (file, canonical) = match crate::trust::open_canonical(path) {
        Some(opened) => opened,
        None => {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(path)
                .map_err(|source| match source.kind() {
                    std::io::ErrorKind::PermissionDenied => LoadError::Unreadable {
                        path: path.to_path_buf(),
                        source: source.into(),
                    },
                    _ => not_found(),
                })?;
            let canonical = canonical_path(path, &file).ok_or_else(not_found)?;
            (file, canonical)
        }
    };
    let meta = file.metadata().map_err(|_| not_found())?;
    // A directory (named like a library or not), anything else that is not a regular file, an
    // empty file.
    crate::trust::check_type(&canonical, &meta)?;
    // Truncated (which would crash `dlopen` with SIGBUS), not a library at all.
    crate::trust::check_header(&canonical, &file, meta.len())?;
    Ok(canonical)
}

/// The canonical absolute path of the open `file`, opened as `path`.
fn canonical_path(path: &Path, file: &std::fs::File) -> Option<PathBuf> {
    crate::trust::kernel_path(file).or_else(|| std::fs::canonicalize(path).ok())
}

/// The error for a file `dlopen` refused (`file` is what was opened: `path` or its private
/// copy): a clear reason from the file's header when it is not a loadable library, else the
/// loader's own message.
#[cold]
fn not_loadable(path: &Path, file: &Path, source: libloading::Error) -> LoadError {
    match crate::trust::diagnose(file, &source.to_string()) {
        Some(reason) => LoadError::NotALibrary {
            path: path.to_path_buf(),
            reason,
        },
        None => LoadError::Open {
            path: path.to_path_buf(),
            source: source.into(),
        },
    }
}

/// Opens the library at `path` and maps its loaded segments ([`LibraryMap::of`]).
fn dlopen(path: &Path) -> Result<(libloading::Library, LibraryMap), libloading::Error> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: loading a library runs its initialisers; that is the inherent risk of native
    // plugins, accepted by whoever put the file in a plugin directory. `path` is absolute, so the
    // dynamic loader does not search for it.
    let library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }?;
    let handle = library.into_raw();
    // SAFETY: `handle` was just returned by `dlopen` and is not closed until the `Library`
    // rebuilt from it below is dropped.
    let map = unsafe { LibraryMap::of(handle) };
    // SAFETY: `handle` came from `into_raw` above and is owned by nothing else.
    let library = unsafe { Library::from_raw(handle) };
    Ok((library.into(), map))
}

/// A plugin library that is open and whose descriptor passed validation, but whose `init` has
/// not run: nothing in it but `plugin_entry` has been called. Dropping it closes the library.
pub struct OpenedPlugin {
    validated: Validated,
    library: libloading::Library,
    /// After `library`, so that it is deleted after the library is closed.
    copy: Option<PrivateCopy>,
}

/// A private copy of a plugin file, deleted when dropped (after its library was closed).
struct PrivateCopy(PathBuf);

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl std::fmt::Debug for OpenedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedPlugin")
            .field("info", &self.validated.info)
            .finish_non_exhaustive()
    }
}

/// Loads, validates and initialises the plugin at `path`.
///
/// `admit` sees the validated metadata before `init` runs: it may refuse the plugin (for
/// example because another plugin has the same name), or return the configuration values the
/// plugin can read through the host services.
pub(crate) fn load(
    path: &Path,
    admit: impl FnOnce(&PluginInfo) -> Result<BTreeMap<String, String>, LoadError>,
) -> Result<LoadedPlugin, LoadError> {
    let opened = open(path)?;
    let config = admit(opened.info())?;
    opened.initialise(&config)
}

/// Validates the plugin at `path` without initialising it, and closes it again: what
/// `calc plugins check` does. Returns its metadata or the reason it would be refused.
pub fn inspect(path: &Path) -> Result<PluginInfo, LoadError> {
    open(path).map(|o| o.validated.info)
}

/// Opens the library at `path` and validates its descriptor (steps 1 to 5 of the module docs).
pub fn open(path: &Path) -> Result<OpenedPlugin, LoadError> {
    open_from(&resolve(path)?, None)
}

/// As [`open`], for a path that is already the canonical absolute path of a regular file (as
/// `PluginManager::load_dir` produces from one canonical directory and its entries): skips the
/// per-file `realpath`, which costs one system call per path component.
pub(crate) fn open_resolved(path: &Path) -> Result<OpenedPlugin, LoadError> {
    debug_assert!(path.is_absolute(), "open_resolved needs an absolute path");
    open_from(path, None)
}

/// As [`open`], but loads a private copy of the file made in `copy_dir` under a unique name, as
/// hot reload needs: the dynamic loader caches libraries by path and inode, so reopening a
/// rebuilt file at the same path could return the old library, and a file overwritten in place
/// while mapped corrupts the running code. The copy is deleted when the plugin is unloaded (or
/// at once if loading fails). The metadata keeps the original path.
pub(crate) fn open_copy(path: &Path, copy_dir: &Path) -> Result<OpenedPlugin, LoadError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static GENERATION: AtomicU64 = AtomicU64::new(0);
    let path = resolve(path)?;
    let io = |source: std::io::Error| LoadError::Directory {
        path: copy_dir.to_path_buf(),
        source: source.into(),
    };
    std::fs::create_dir_all(copy_dir).map_err(io)?;
    let stem = path
        .file_stem()
        .map_or_else(|| "plugin".into(), |s| s.to_string_lossy().into_owned());
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
    let copy = copy_dir.join(format!(
        "{stem}.{}.{generation}.{}",
        std::process::id(),
        std::env::consts::DLL_EXTENSION
    ));
    std::fs::copy(&path, &copy).map_err(io)?;
    open_from(&path, Some(PrivateCopy(copy)))
}

/// Opens `copy` (or `path` itself) and validates it; the metadata names `path`.
fn open_from(path: &Path, copy: Option<PrivateCopy>) -> Result<OpenedPlugin, LoadError> {
    let path = path.to_path_buf();
    let file = copy.as_ref().map_or(path.as_path(), |c| c.0.as_path());
    let (library, map) = dlopen(file).map_err(|source| not_loadable(&path, file, source))?;
    // SAFETY: looking a symbol up runs no plugin code; whether it is a function is checked
    // below before it is called.
    let entry =
        unsafe { library.get::<calc_plugin_entry_fn>(b"plugin_entry\0") }.map_err(|source| {
            LoadError::MissingEntry {
                path: path.clone(),
                source: source.into(),
            }
        })?;
    let entry = (*entry).ok_or_else(|| LoadError::EntryReturnedNull { path: path.clone() })?;
    let address = entry as usize;
    if !map.is_executable(address) && !crate::memory::is_executable_mapping(address) {
        return Err(LoadError::EntryNotCode { path, address });
    }
    // SAFETY: `plugin_entry` lies in executable code of the library (checked above) and has the
    // `calc_plugin_entry_fn` signature by the ABI contract; calling it is the one call the ABI
    // allows before validation.
    let desc: *const calc_plugin_t = unsafe { entry() };
    let is_code = |f: usize| map.is_executable(f) || crate::memory::is_executable_mapping(f);
    let validated = validate_with(&path, desc, Reader::new(&map), &is_code)?;
    Ok(OpenedPlugin {
        validated,
        library,
        copy,
    })
}

/// Validates the descriptor `plugin_entry` returned (steps 4 and 5 of the module docs): reads
/// its header, checks it, copies every other field the header says exists and checks them. No
/// function pointer in it is called. `path` is only used in the errors and the metadata.
///
/// Every read is checked (`process_vm_readv`), so any pointer is safe to pass: memory that is
/// not mapped or not readable is refused as [`LoadError::UnreadableMemory`] or an invalid
/// string field, never dereferenced. No alignment is required.
///
/// Public for the descriptor's property tests only (hidden from the docs, outside the semver
/// promise): hosts load files through [`open`] or the manager.
#[doc(hidden)]
pub fn validate_descriptor(
    path: &Path,
    desc: *const calc_plugin_t,
) -> Result<Validated, LoadError> {
    validate_with(
        path,
        desc,
        Reader::checked(),
        &crate::memory::is_executable_mapping,
    )
}

/// [`validate_descriptor`] with a reader that may copy directly from the library's segments.
fn validate_with(
    path: &Path,
    desc: *const calc_plugin_t,
    reader: Reader<'_>,
    is_code: &dyn Fn(usize) -> bool,
) -> Result<Validated, LoadError> {
    if desc.is_null() {
        return Err(LoadError::EntryReturnedNull {
            path: path.to_path_buf(),
        });
    }
    let unreadable = |what: String, address: usize| LoadError::UnreadableMemory {
        path: path.to_path_buf(),
        what,
        address,
    };
    // Every descriptor, of any ABI version, starts with these three fields (16 bytes).
    let head_size = std::mem::offset_of!(calc_plugin_t, name);
    // SAFETY: `calc_plugin_t` holds integers, raw pointers and optional function pointers only:
    // any bytes are a valid value, and none of its function pointers is called before
    // validation.
    let head: calc_plugin_t = unsafe { reader.read_prefix(desc, head_size) }
        .ok_or_else(|| unreadable("descriptor".into(), desc as usize))?;
    let header = RawHeader {
        magic: head.magic,
        struct_size: head.struct_size,
        abi_version: head.abi_version,
    };
    validate::check_header(path, &header)?;

    // `check_header` verified that the plugin's struct is at least as large as the
    // `calc_plugin_t` of its declared minor, and at most `MAX_STRUCT_SIZE`; `read_prefix` reads
    // the whole fields within `struct_size` bytes, and leaves the others (newer minors, or one
    // `struct_size` cuts) zeroed (NULL).
    // SAFETY: as above, any bytes are a valid `calc_plugin_t`.
    let d: calc_plugin_t = unsafe {
        reader.read_prefix(
            desc,
            validate::plugin_fields_within(header.struct_size as usize),
        )
    }
    .ok_or_else(|| unreadable("descriptor".into(), desc as usize))?;
    validate::check_operation_table(
        path,
        header.abi_version,
        d.operations.is_null(),
        d.operation_count,
        d.operation_size,
    )?;
    // SAFETY: `calc_operation_t` holds pointers, integers and optional function pointers;
    // the table passed `check_operation_table`.
    let table: Vec<calc_operation_t> = unsafe {
        read_table(
            &reader,
            d.operations as usize,
            d.operation_count,
            d.operation_size,
            validate::operation_fields_within(d.operation_size as usize),
            "operations",
            &unreadable,
        )
    }?;
    let mut operations = Vec::with_capacity(table.len());
    for op in table {
        operations.push(RawOperation {
            name: reader.read_str(op.name),
            description: reader.read_str(op.description),
            symbol: reader.read_str(op.symbol),
            execute: op.execute,
            kind: op.kind,
            associativity: op.associativity,
            precedence: op.precedence,
            min_arity: op.min_arity,
            max_arity: op.max_arity,
            execute_batch: op.execute_batch,
        });
    }
    validate::check_interface_table(
        path,
        header.abi_version,
        d.interfaces.is_null(),
        d.interface_count,
        d.interface_size,
    )?;
    // SAFETY: `calc_interface_t` holds pointers and integers; the table passed
    // `check_interface_table`.
    let table: Vec<calc_interface_t> = unsafe {
        read_table(
            &reader,
            d.interfaces as usize,
            d.interface_count,
            d.interface_size,
            validate::interface_fields_within(d.interface_size as usize),
            "interfaces",
            &unreadable,
        )
    }?;
    let mut interfaces = Vec::with_capacity(table.len());
    for entry in table {
        let vtable = entry.vtable as usize;
        let size = entry.vtable_size as usize;
        // Only a size within the bound is measured, so a garbage size costs nothing.
        let vtable_readable = if vtable != 0 && entry.vtable_size <= abi::CALC_MAX_VTABLE_SIZE {
            reader.readable(vtable, size)
        } else {
            0
        };
        // A bytes interface's fields are all functions: each must be code of the process.
        let word = std::mem::size_of::<usize>();
        let slot_not_code = if entry.flags & abi::CALC_INTERFACE_FLAG_BYTES != 0
            && vtable_readable == size
            && size.is_multiple_of(word)
        {
            let mut words = vec![0u8; size];
            reader.read(vtable, &mut words);
            words
                .chunks_exact(word)
                .map(|w| usize::from_ne_bytes(w.try_into().expect("a whole word")))
                .enumerate()
                .find(|&(_, f)| f == 0 || !is_code(f))
        } else {
            None
        };
        interfaces.push(RawInterface {
            id: reader.read_str(entry.id),
            version: entry.version,
            vtable_size: entry.vtable_size,
            vtable,
            vtable_readable,
            flags: entry.flags,
            slot_not_code,
        });
    }
    let raw = RawDescriptor {
        header,
        name: reader.read_str(d.name),
        version: reader.read_str(d.version),
        author: reader.read_str(d.author),
        description: reader.read_str(d.description),
        sdk_version: reader.read_str(d.sdk_version),
        api_requirement: reader.read_str(d.api_requirement),
        flags: d.flags,
        init: d.init,
        shutdown: d.shutdown,
        save_state: d.save_state,
        operations,
        interfaces,
    };
    validate::check_descriptor(path, &raw)
}

/// The `count` elements of a descriptor table at `base`, `size` bytes apart, each copied as far
/// as its first `available` bytes into a zeroed `T` (fields of later minors read as zero); an
/// element that is not readable is refused as `field[i]`.
///
/// # Safety
/// As [`Reader::read_prefix`]: `T` is an ABI struct for which any bytes are a valid value. The
/// table must have passed its shape check: `count` at most the table's maximum and `size` at
/// most `MAX_STRUCT_SIZE`, so that no address computation overflows.
unsafe fn read_table<T>(
    reader: &Reader<'_>,
    base: usize,
    count: u32,
    size: u32,
    available: usize,
    field: &str,
    unreadable: &dyn Fn(String, usize) -> LoadError,
) -> Result<Vec<T>, LoadError> {
    (0..count as usize)
        .map(|i| {
            let at = base.wrapping_add(i * size as usize);
            // SAFETY: forwarded contract; the read is checked, so any address is safe.
            unsafe { reader.read_prefix(at as *const T, available) }
                .ok_or_else(|| unreadable(format!("{field}[{i}]"), at))
        })
        .collect()
}

impl OpenedPlugin {
    /// The validated metadata.
    pub fn info(&self) -> &PluginInfo {
        &self.validated.info
    }

    /// Runs the plugin's `init` with host services carrying `config` (step 6). On failure the
    /// library is closed and `shutdown` is not called.
    pub fn initialise(self, config: &BTreeMap<String, String>) -> Result<LoadedPlugin, LoadError> {
        self.initialise_with_state(config, None)
    }

    /// As [`Self::initialise`], handing `state` (saved by the previous version of this plugin)
    /// to `init` through the `get_state` host service.
    pub fn initialise_with_state(
        self,
        config: &BTreeMap<String, String>,
        state: Option<Vec<u8>>,
    ) -> Result<LoadedPlugin, LoadError> {
        self.initialise_offering(config, state, Default::default())
    }

    /// As [`Self::initialise_with_state`], offering the plugin the application's `interfaces`
    /// through the `get_interface` host service.
    pub(crate) fn initialise_offering(
        self,
        config: &BTreeMap<String, String>,
        state: Option<Vec<u8>>,
        interfaces: crate::services::Offered,
    ) -> Result<LoadedPlugin, LoadError> {
        let OpenedPlugin {
            validated,
            library,
            copy,
        } = self;
        let path = validated.info.path.clone();
        let services = HostServices::with_interfaces(&validated.info.name, config, interfaces);
        services.set_state(state);
        let mut instance: *mut c_void = ptr::null_mut();
        if let Some(init) = validated.init {
            let mut buf = [0u8; ERROR_BUF];
            // SAFETY: the descriptor passed validation; `services` outlives the instance (it is
            // stored in the `LoadedPlugin` that owns the instance); `buf` is writable for ERROR_BUF.
            let status = unsafe {
                init(
                    services.api(),
                    &mut instance,
                    buf.as_mut_ptr().cast(),
                    ERROR_BUF,
                )
            };
            if status != abi::CALC_STATUS_OK {
                let status = Status::from_code(status).unwrap_or(Status::Error);
                drop(library);
                drop(copy);
                return Err(LoadError::InitFailed {
                    path,
                    plugin: validated.info.name,
                    status,
                    message: message_from(&buf, status),
                });
            }
        }
        services.set_state(None);
        tracing::debug!(plugin = %validated.info.name, path = %path.display(), "loaded");
        Ok(LoadedPlugin {
            info: validated.info,
            executes: validated.executes,
            batches: validated.batches,
            vtables: validated.vtables,
            instance,
            shutdown: validated.shutdown,
            save_state: validated.save_state,
            _services: services,
            library: Some(library),
            copy,
            events: None,
            instances: Vec::new(),
            isolation: None,
        })
    }
}

/// The message in an error buffer: the bytes before the first NUL, lossily decoded; the status
/// description when empty.
fn message_from(buf: &[u8], status: Status) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let text = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    if text.is_empty() {
        status.describe().to_string()
    } else {
        text
    }
}

/// A resolved operation: call it with [`OpHandle::call`]. Cheap to clone; keeps its plugin loaded.
///
/// The call path does no lock, allocation, name lookup or reference counting: it checks the
/// operand count, calls the plugin's function pointer and, only on failure, builds the error.
#[derive(Clone)]
pub struct OpHandle {
    execute: ExecuteFn,
    execute_batch: Option<ExecuteBatchFn>,
    instance: *mut c_void,
    min_arity: usize,
    /// `max_arity - min_arity` (`usize::MAX - min_arity` when variadic): one unsigned
    /// comparison, `len - min <= span` (wrapping), checks both bounds.
    arity_span: usize,
    /// Bit `n` set when `n` operands (`n < 64`) are within the arity: with the count known
    /// where the call is inlined (`&[a, b]`), the check is one bit test of this word.
    accepts: u64,
    index: usize,
    plugin: Arc<LoadedPlugin>,
}

// SAFETY: `execute` is `[any-thread]` by the ABI contract; the instance pointer is only passed
// back to the plugin, which synchronises its own state.
unsafe impl Send for OpHandle {}
// SAFETY: as above.
unsafe impl Sync for OpHandle {}

impl std::fmt::Debug for OpHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpHandle")
            .field("plugin", &self.plugin.info.name)
            .field("operation", &self.info().name)
            .finish()
    }
}

impl OpHandle {
    /// The handle for operation `index` of `plugin`; `None` when out of range.
    pub fn new(plugin: &Arc<LoadedPlugin>, index: usize) -> Option<OpHandle> {
        let op = plugin.info.operations.get(index)?;
        let (min, max) = op.arity();
        Some(OpHandle {
            execute: *plugin.executes.get(index)?,
            execute_batch: plugin.batches.get(index).copied().flatten(),
            instance: plugin
                .instances
                .get(index)
                .copied()
                .unwrap_or(plugin.instance),
            min_arity: min as usize,
            // Variadic: `usize::MAX - min`, so that a count below `min`, which wraps to at least
            // `usize::MAX - min + 1`, is still refused.
            arity_span: max.map_or(usize::MAX - min as usize, |m| (m - min) as usize),
            accepts: (0..64u32)
                .filter(|&n| n >= min && max.is_none_or(|m| n <= m))
                .fold(0, |bits, n| bits | 1 << n),
            index,
            plugin: Arc::clone(plugin),
        })
    }

    /// The operation's declaration.
    pub fn info(&self) -> &OperationInfo {
        &self.plugin.info.operations[self.index]
    }

    /// The providing plugin's metadata.
    pub fn plugin(&self) -> &PluginInfo {
        &self.plugin.info
    }

    /// Whether the providing plugin runs in a runner process (`docs/ISOLATION.md`).
    pub fn is_isolated(&self) -> bool {
        self.plugin.is_isolated()
    }

    /// Calls the operation. An operand count outside its arity is refused without calling the
    /// plugin.
    #[inline]
    pub fn call(&self, args: &[f64]) -> Result<f64, CallError> {
        let n = args.len();
        let accepted = if n < 64 {
            self.accepts >> n & 1 != 0
        } else {
            n.wrapping_sub(self.min_arity) <= self.arity_span
        };
        if !accepted {
            return Err(self.arity_error(n));
        }
        // SAFETY: the operand count was just checked against the operation's arity.
        unsafe { self.call_checked(args) }
    }

    /// A handle for calling this operation with exactly two operands, when its arity allows
    /// that (every infix operator, and functions accepting two): the check is made once here,
    /// so [`BinaryOp::call`] does none per call. `None` otherwise.
    pub fn binary(&self) -> Option<BinaryOp> {
        (2usize.wrapping_sub(self.min_arity) <= self.arity_span).then(|| BinaryOp(self.clone()))
    }

    /// Calls the operation without checking the operand count.
    ///
    /// # Safety
    /// `args.len()` must be within the operation's arity (the ABI promises plugins that).
    #[inline(always)]
    unsafe fn call_checked(&self, args: &[f64]) -> Result<f64, CallError> {
        let mut out = 0.0f64;
        let mut buf = std::mem::MaybeUninit::<[u8; ERROR_BUF]>::uninit();
        let buf_ptr = buf.as_mut_ptr().cast::<u8>();
        // SAFETY: the buffer is ERROR_BUF bytes; writing its first byte keeps an untouched buffer
        // an empty message.
        unsafe { buf_ptr.write(0) };
        // SAFETY: the descriptor was validated, `init` succeeded, and `self.plugin` keeps the
        // library and instance alive; `args` holds `args.len()` values within the arity; `out`
        // and the buffer are writable for the call.
        let status = unsafe {
            (self.execute)(
                self.instance,
                args.as_ptr(),
                args.len(),
                &mut out,
                buf_ptr.cast(),
                ERROR_BUF,
            )
        };
        if status == abi::CALC_STATUS_OK {
            return Ok(out);
        }
        // SAFETY: on failure the plugin wrote a NUL-terminated message within the buffer (ABI
        // contract), or nothing, in which case byte 0 is still the NUL written above.
        Err(unsafe { self.failed_call(status, buf_ptr) })
    }

    /// The error for a call that returned `status`, with the message from its error buffer.
    /// Out of line and cold, so that the success path keeps no registers alive for it.
    ///
    /// # Safety
    /// `buf` points to the `ERROR_BUF`-byte buffer of the call, whose bytes up to the first NUL
    /// (or all of them) are initialised.
    #[cold]
    #[inline(never)]
    unsafe fn failed_call(&self, status: abi::calc_status_t, buf: *const u8) -> CallError {
        // SAFETY: per this function's contract; `bounded_message` never reads past ERROR_BUF.
        let message = unsafe { bounded_message(buf) };
        self.call_error(Status::from_code(status).unwrap_or(Status::Error), message)
    }

    /// Whether the plugin implements this operation's batch entry (`execute_batch`, ABI 1.2).
    /// Without it, [`Self::call_batch`] calls `execute` once per row.
    pub fn has_batch(&self) -> bool {
        self.execute_batch.is_some()
    }

    /// Calls the operation on every row of a batch: `columns[k][r]` is operand `k` of row `r`
    /// and the result of row `r` goes to `out[r]`. Every column must have `out.len()` values
    /// and the number of columns must be within the operation's arity; otherwise nothing is
    /// called and the error names row 0.
    ///
    /// Uses the plugin's `execute_batch` when it has one (a 1.2 plugin), else calls `execute`
    /// once per row (1.0 and 1.1 plugins, or a NULL `execute_batch`): the results are the same.
    /// Stops at the first failing row and returns its index with the error; `out` holds the
    /// results of the rows before it, the rest is unspecified. No lock and no allocation for up
    /// to 16 operands per row.
    pub fn call_batch(
        &self,
        columns: &[&[f64]],
        out: &mut [f64],
    ) -> Result<(), (usize, CallError)> {
        let n = columns.len();
        if n.wrapping_sub(self.min_arity) > self.arity_span {
            return Err((0, self.arity_error(n)));
        }
        if let Some(k) = columns.iter().position(|c| c.len() != out.len()) {
            return Err((0, self.length_error(k, columns[k].len(), out.len())));
        }
        if out.is_empty() {
            return Ok(());
        }
        match self.execute_batch {
            Some(batch) => self.batch_rows(batch, columns, out),
            None => self.scalar_rows(columns, out),
        }
    }

    /// One `execute_batch` call over the whole batch.
    fn batch_rows(
        &self,
        batch: ExecuteBatchFn,
        columns: &[&[f64]],
        out: &mut [f64],
    ) -> Result<(), (usize, CallError)> {
        let mut stack = [ptr::null::<f64>(); STACK_OPERANDS];
        let heap: Vec<*const f64>;
        let pointers: &[*const f64] = if columns.len() <= STACK_OPERANDS {
            for (p, c) in stack.iter_mut().zip(columns) {
                *p = c.as_ptr();
            }
            &stack[..columns.len()]
        } else {
            heap = columns.iter().map(|c| c.as_ptr()).collect();
            &heap
        };
        let mut failed_row = 0usize;
        let mut buf = std::mem::MaybeUninit::<[u8; ERROR_BUF]>::uninit();
        let buf_ptr = buf.as_mut_ptr().cast::<u8>();
        // SAFETY: the buffer is ERROR_BUF bytes; writing its first byte keeps an untouched buffer
        // an empty message.
        unsafe { buf_ptr.write(0) };
        // SAFETY: the descriptor was validated, `init` succeeded, and `self.plugin` keeps the
        // library and instance alive; `pointers` holds `columns.len()` (within the arity)
        // pointers to `out.len()` values each; `out` is writable for `out.len()` values and,
        // being a `&mut`, overlaps no column; `failed_row` and the buffer are writable.
        let status = unsafe {
            batch(
                self.instance,
                pointers.as_ptr(),
                pointers.len(),
                out.len(),
                out.as_mut_ptr(),
                &mut failed_row,
                buf_ptr.cast(),
                ERROR_BUF,
            )
        };
        if status == abi::CALC_STATUS_OK {
            return Ok(());
        }
        // A row outside the batch is a plugin bug: claim no row succeeded.
        let row = if failed_row < out.len() {
            failed_row
        } else {
            0
        };
        // SAFETY: as in `call`.
        Err((row, unsafe { self.failure(status, buf_ptr) }))
    }

    /// The fallback without `execute_batch`: one `execute` call per row.
    fn scalar_rows(&self, columns: &[&[f64]], out: &mut [f64]) -> Result<(), (usize, CallError)> {
        let mut buf = std::mem::MaybeUninit::<[u8; ERROR_BUF]>::uninit();
        let buf_ptr = buf.as_mut_ptr().cast::<u8>();
        let call = |args: &[f64], out: &mut f64| {
            // SAFETY: the buffer is ERROR_BUF bytes; a NUL first byte makes a buffer the plugin
            // leaves untouched an empty message.
            unsafe { buf_ptr.write(0) };
            // SAFETY: as in `call`: `args` holds `args.len()` values within the arity, `out`
            // and the buffer are writable.
            unsafe {
                (self.execute)(
                    self.instance,
                    args.as_ptr(),
                    args.len(),
                    out,
                    buf_ptr.cast(),
                    ERROR_BUF,
                )
            }
        };
        let fail = |row: usize, status| {
            // SAFETY: as in `call`.
            Err((row, unsafe { self.failure(status, buf_ptr) }))
        };
        if let [a, b] = columns {
            for (r, ((o, &x), &y)) in out.iter_mut().zip(*a).zip(*b).enumerate() {
                let status = call(&[x, y], o);
                if status != abi::CALC_STATUS_OK {
                    return fail(r, status);
                }
            }
            return Ok(());
        }
        let mut stack = [0.0f64; STACK_OPERANDS];
        let mut heap: Vec<f64>;
        let args: &mut [f64] = if columns.len() <= STACK_OPERANDS {
            &mut stack[..columns.len()]
        } else {
            heap = vec![0.0; columns.len()];
            &mut heap
        };
        for (r, o) in out.iter_mut().enumerate() {
            for (arg, column) in args.iter_mut().zip(columns) {
                *arg = column[r];
            }
            let status = call(args, o);
            if status != abi::CALC_STATUS_OK {
                return fail(r, status);
            }
        }
        Ok(())
    }

    /// The error of a failed call, from its status and the message in its error buffer.
    ///
    /// # Safety
    /// As [`bounded_message`].
    #[cold]
    unsafe fn failure(&self, status: abi::calc_status_t, buf: *const u8) -> CallError {
        // SAFETY: forwarded contract.
        let message = unsafe { bounded_message(buf) };
        self.call_error(Status::from_code(status).unwrap_or(Status::Error), message)
    }

    #[cold]
    fn length_error(&self, column: usize, len: usize, rows: usize) -> CallError {
        self.call_error(
            Status::InvalidArgument,
            format!("column {column} has {len} values, the batch has {rows} rows"),
        )
    }

    /// Calls the operation and returns exactly what the plugin produced, for conformance
    /// checking: the raw status, the output value (meaningful only on success) and the raw
    /// message bytes up to the first NUL (`None` when the plugin left no NUL-terminated message
    /// in the buffer). The operand count is not checked: callers may probe the plugin's own
    /// checks, within the declared arity.
    pub(crate) fn call_raw(&self, args: &[f64]) -> RawOutcome {
        let mut out = 0.0f64;
        // Pre-filled with a non-zero byte so that a message without terminator is detectable.
        let mut buf = [0xFFu8; ERROR_BUF];
        // SAFETY: as in `call`; the buffer is fully initialised, so any byte may be read back.
        let status = unsafe {
            (self.execute)(
                self.instance,
                args.as_ptr(),
                args.len(),
                &mut out,
                buf.as_mut_ptr().cast(),
                ERROR_BUF,
            )
        };
        let message = buf
            .iter()
            .position(|&b| b == 0)
            .map(|end| buf[..end].to_vec());
        RawOutcome {
            status,
            value: out,
            message,
        }
    }

    #[cold]
    fn arity_error(&self, got: usize) -> CallError {
        let expected = self.info().arity_text("operand");
        self.call_error(
            Status::InvalidArgument,
            format!("expects {expected}, got {got}"),
        )
    }

    #[cold]
    fn call_error(&self, status: Status, message: String) -> CallError {
        CallError::new(crate::error::CallErrorDetails {
            operation: self.info().name.clone(),
            plugin: self.plugin.info.name.clone(),
            path: self.plugin.info.path.clone(),
            status,
            message: if message.is_empty() {
                status.describe().to_string()
            } else {
                message
            },
        })
    }
}

/// An operation known to accept two operands, resolved once (see [`OpHandle::binary`]): the
/// fastest scalar call, with no per-call arity check. Pinned to the version it was made from.
#[derive(Clone, Debug)]
pub struct BinaryOp(OpHandle);

impl BinaryOp {
    /// Calls the operation on `a` and `b`.
    #[inline]
    pub fn call(&self, a: f64, b: f64) -> Result<f64, CallError> {
        // SAFETY: `OpHandle::binary` checked that the operation accepts two operands.
        unsafe { self.0.call_checked(&[a, b]) }
    }

    /// The underlying handle.
    pub fn handle(&self) -> &OpHandle {
        &self.0
    }
}

/// What one raw call produced (see [`OpHandle::call_raw`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawOutcome {
    /// The status code exactly as returned.
    pub status: abi::calc_status_t,
    /// The value written to `out_result` (0.0 if none was written).
    pub value: f64,
    /// The message bytes before the first NUL of the error buffer; `None` when the buffer holds
    /// no NUL (the plugin wrote an unterminated message). On success the buffer is untouched,
    /// so this is `None` too.
    pub message: Option<Vec<u8>>,
}

/// Reads the message the plugin wrote into an error buffer.
///
/// # Safety
/// `buf` points to `ERROR_BUF` bytes whose prefix up to the first NUL (or the whole buffer when
/// there is none) is initialised.
#[cold]
unsafe fn bounded_message(buf: *const u8) -> String {
    let mut len = 0;
    // SAFETY: reads stay below ERROR_BUF and stop at the first NUL, within the initialised prefix.
    while len < ERROR_BUF && unsafe { *buf.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: the `len` bytes were just read.
    let bytes = unsafe { std::slice::from_raw_parts(buf, len) };
    String::from_utf8_lossy(bytes).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_from_stops_at_nul_and_falls_back_to_status() {
        assert_eq!(message_from(b"hi\0junk", Status::Error), "hi");
        assert_eq!(
            message_from(b"\0", Status::DivisionByZero),
            "division by zero"
        );
        assert_eq!(
            message_from(b"no terminator", Status::Error),
            "no terminator"
        );
    }
}
