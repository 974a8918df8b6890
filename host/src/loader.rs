//! Loading plugin libraries: the only module that uses `libloading`, reads plugin memory or
//! calls plugin code.
//!
//! Order of operations for one file (nothing in the plugin runs before step 3, and nothing but
//! `plugin_entry` before step 6):
//! 1. resolve the path to an absolute, canonical regular file (never a bare name that `dlopen`
//!    would search for);
//! 2. `dlopen` it with `RTLD_NOW | RTLD_LOCAL` and look up `plugin_entry`;
//! 3. call `plugin_entry`;
//! 4. read the 16-byte header and [`validate::check_header`] it;
//! 5. copy every other field (strings bounded by `CALC_MAX_STRING_LEN`) and
//!    [`validate::check_descriptor`] them;
//! 6. call `init` with the host services table.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_void};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::Arc;

use calc_sdk::abi::{self, calc_operation_t, calc_plugin_entry_fn, calc_plugin_t};
use calc_sdk::Status;

use crate::error::{CallError, LoadError};
use crate::info::{OperationInfo, PluginInfo};
use crate::services::HostServices;
use crate::validate::{self, RawDescriptor, RawHeader, RawOperation, RawStr, Validated};

type ExecuteFn = unsafe extern "C" fn(
    *mut c_void,
    *const f64,
    usize,
    *mut f64,
    *mut c_char,
    usize,
) -> abi::calc_status_t;

/// Size of the error buffer passed to `init` and `execute`.
const ERROR_BUF: usize = abi::CALC_ERROR_BUF_SIZE as usize;

/// A validated, initialised plugin. Dropping it calls `shutdown` and then unloads the library.
pub struct LoadedPlugin {
    info: PluginInfo,
    executes: Vec<ExecuteFn>,
    instance: *mut c_void,
    shutdown: abi::calc_shutdown_fn,
    /// Must outlive the instance: the plugin may keep pointers into it until `shutdown`.
    services: Box<HostServices>,
    /// Declared last so that it is dropped (unloaded) after everything above.
    _library: libloading::Library,
}

// SAFETY: the ABI makes `execute` callable from any thread at once, and `init`/`shutdown` are only
// called by this module from the thread that owns the `LoadedPlugin` (load and drop). The
// instance pointer is only handed back to the plugin.
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
        let _ = &self.services;
    }
}

impl LoadedPlugin {
    /// The plugin's metadata.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }
}

/// Resolves `path` to the canonical absolute path of a regular file.
pub fn resolve(path: &Path) -> Result<PathBuf, LoadError> {
    let canonical = std::fs::canonicalize(path).map_err(|_| LoadError::NotFound {
        path: path.to_path_buf(),
    })?;
    if !canonical.is_file() {
        return Err(LoadError::NotAFile { path: canonical });
    }
    Ok(canonical)
}

#[cfg(unix)]
fn dlopen(path: &Path) -> Result<libloading::Library, libloading::Error> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: loading a library runs its initialisers; that is the inherent risk of native
    // plugins, accepted by whoever put the file in a plugin directory. `path` is absolute, so the
    // dynamic loader does not search for it.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map(Into::into)
}

#[cfg(not(unix))]
fn dlopen(path: &Path) -> Result<libloading::Library, libloading::Error> {
    // SAFETY: as above.
    unsafe { libloading::Library::new(path) }
}

/// Reads a NUL-terminated string of at most `CALC_MAX_STRING_LEN` bytes.
///
/// # Safety
/// `p` must be NULL or point to readable memory up to its NUL terminator or
/// `CALC_MAX_STRING_LEN + 1` bytes, whichever comes first.
unsafe fn read_str(p: *const c_char) -> RawStr {
    if p.is_null() {
        return RawStr::Null;
    }
    let max = abi::CALC_MAX_STRING_LEN as usize;
    for len in 0..=max {
        // SAFETY: per the contract, bytes up to the terminator (or max + 1) are readable.
        if unsafe { *p.add(len) } == 0 {
            // SAFETY: the `len` bytes before the terminator were just read one by one.
            let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) };
            return RawStr::Bytes(bytes.to_vec());
        }
    }
    RawStr::TooLong
}

/// A plugin library that is open and whose descriptor passed validation, but whose `init` has
/// not run: nothing in it but `plugin_entry` has been called. Dropping it closes the library.
pub struct OpenedPlugin {
    validated: Validated,
    library: libloading::Library,
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
pub fn load(
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
    let path = resolve(path)?;
    let library = dlopen(&path).map_err(|source| LoadError::Open {
        path: path.clone(),
        source,
    })?;
    // SAFETY: `plugin_entry` has the `calc_plugin_entry_fn` signature by the ABI contract; a
    // library that exports the name with another type is a broken plugin we cannot detect.
    let entry =
        unsafe { library.get::<calc_plugin_entry_fn>(b"plugin_entry\0") }.map_err(|source| {
            LoadError::MissingEntry {
                path: path.clone(),
                source,
            }
        })?;
    let entry = (*entry).ok_or_else(|| LoadError::EntryReturnedNull { path: path.clone() })?;
    // SAFETY: calling the entry point is the one call the ABI allows before validation.
    let desc: *const calc_plugin_t = unsafe { entry() };
    if desc.is_null() {
        return Err(LoadError::EntryReturnedNull { path });
    }

    // SAFETY: every descriptor, of any ABI version, starts with these three fields (16 bytes);
    // `plugin_entry` returned a non-NULL pointer to a descriptor owned by the loaded library.
    let header = unsafe {
        RawHeader {
            magic: ptr::read_unaligned(ptr::addr_of!((*desc).magic)),
            struct_size: ptr::read_unaligned(ptr::addr_of!((*desc).struct_size)),
            abi_version: ptr::read_unaligned(ptr::addr_of!((*desc).abi_version)),
        }
    };
    validate::check_header(&path, &header)?;

    // SAFETY: `check_header` verified that the plugin's struct is at least as large as the
    // `calc_plugin_t` of its declared minor, which is this host's (minors newer than the host's
    // are refused), so the whole struct is readable.
    let d: calc_plugin_t = unsafe { ptr::read_unaligned(desc) };
    validate::check_operation_table(
        &path,
        header.abi_version,
        d.operations.is_null(),
        d.operation_count,
        d.operation_size,
    )?;
    let mut operations = Vec::with_capacity(d.operation_count as usize);
    for i in 0..d.operation_count as usize {
        // SAFETY: the table holds `operation_count` elements of `operation_size` bytes, and
        // `operation_size` is at least `size_of::<calc_operation_t>()` (checked above).
        let op: calc_operation_t = unsafe {
            ptr::read_unaligned(
                d.operations
                    .cast::<u8>()
                    .add(i * d.operation_size as usize)
                    .cast(),
            )
        };
        // SAFETY: the descriptor's strings are NULL or NUL-terminated (ABI contract); `read_str`
        // stops at the bound if they are not.
        operations.push(unsafe {
            RawOperation {
                name: read_str(op.name),
                description: read_str(op.description),
                symbol: read_str(op.symbol),
                execute: op.execute,
                kind: op.kind,
                associativity: op.associativity,
                precedence: op.precedence,
                min_arity: op.min_arity,
                max_arity: op.max_arity,
            }
        });
    }
    // SAFETY: as above for the descriptor's own strings.
    let raw = unsafe {
        RawDescriptor {
            header,
            name: read_str(d.name),
            version: read_str(d.version),
            author: read_str(d.author),
            description: read_str(d.description),
            sdk_version: read_str(d.sdk_version),
            api_requirement: read_str(d.api_requirement),
            flags: d.flags,
            init: d.init,
            shutdown: d.shutdown,
            operations,
        }
    };
    let validated = validate::check_descriptor(&path, &raw)?;
    Ok(OpenedPlugin { validated, library })
}

impl OpenedPlugin {
    /// The validated metadata.
    pub fn info(&self) -> &PluginInfo {
        &self.validated.info
    }

    /// Runs the plugin's `init` with host services carrying `config` (step 6). On failure the
    /// library is closed and `shutdown` is not called.
    pub fn initialise(self, config: &BTreeMap<String, String>) -> Result<LoadedPlugin, LoadError> {
        let OpenedPlugin { validated, library } = self;
        let path = validated.info.path.clone();
        let services = HostServices::new(&validated.info.name, config);
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
                return Err(LoadError::InitFailed {
                    path,
                    plugin: validated.info.name,
                    status,
                    message: message_from(&buf, status),
                });
            }
        }
        tracing::debug!(plugin = %validated.info.name, path = %path.display(), "loaded");
        Ok(LoadedPlugin {
            info: validated.info,
            executes: validated.executes,
            instance,
            shutdown: validated.shutdown,
            services,
            _library: library,
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
    instance: *mut c_void,
    min_arity: usize,
    max_arity: usize,
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
            instance: plugin.instance,
            min_arity: min as usize,
            max_arity: max.map_or(usize::MAX, |m| m as usize),
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

    /// Calls the operation. An operand count outside its arity is refused without calling the
    /// plugin.
    #[inline]
    pub fn call(&self, args: &[f64]) -> Result<f64, CallError> {
        if args.len() < self.min_arity || args.len() > self.max_arity {
            return Err(self.arity_error(args.len()));
        }
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
        // contract), or nothing, in which case byte 0 is still the NUL written above; the bytes
        // up to the terminator are therefore initialised. `bounded` never reads past ERROR_BUF.
        let message = unsafe { bounded_message(buf_ptr) };
        Err(self.call_error(Status::from_code(status).unwrap_or(Status::Error), message))
    }

    /// Calls the operation and returns exactly what the plugin produced, for conformance
    /// checking: the raw status, the output value (meaningful only on success) and the raw
    /// message bytes up to the first NUL (`None` when the plugin left no NUL-terminated message
    /// in the buffer). The operand count is not checked: callers may probe the plugin's own
    /// checks, within the declared arity.
    pub fn call_raw(&self, args: &[f64]) -> RawOutcome {
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
        CallError {
            operation: self.info().name.clone(),
            plugin: self.plugin.info.name.clone(),
            path: self.plugin.info.path.clone(),
            status,
            message: if message.is_empty() {
                status.describe().to_string()
            } else {
                message
            },
        }
    }
}

/// What one raw call produced (see [`OpHandle::call_raw`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RawOutcome {
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
