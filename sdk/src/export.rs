//! What [`export_plugin!`](crate::export_plugin) expands to: the descriptor builder and the
//! `extern "C"` trampolines. Not a stable API; use the macro.
//!
//! Every function here that C can call runs its body through [`ffi_boundary`], so a panic in
//! plugin code becomes `CALC_STATUS_PANIC` with a message instead of unwinding into the host.
//! This requires the plugin to be built with `panic = "unwind"` (Cargo's default).

use std::any::Any;
use std::ffi::{c_char, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Once;

use crate::abi::{
    self, calc_execute_batch_fn, calc_execute_fn, calc_operation_t, calc_plugin_t, calc_status_t,
};
use crate::error::{CalcError, Status};
use crate::host::{Host, LogLevel};
use crate::plugin::{OperationKind, Plugin};

/// The most operations a Rust plugin may declare (each gets its own monomorphised trampoline).
pub const MAX_OPERATIONS: usize = 64;

/// Runs `f`, turning a panic into a [`Status::Panic`] error that carries the panic message.
pub fn ffi_boundary<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, CalcError>,
) -> Result<T, CalcError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(CalcError::new(
            Status::Panic,
            format!("{what} panicked: {}", panic_message(&*payload)),
        )),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

/// The host table panics are reported to; set by `init`, cleared by `shutdown`.
static PANIC_LOG: AtomicPtr<abi::calc_host_api_t> = AtomicPtr::new(ptr::null_mut());

/// Routes this plugin's panic messages (with their location) to the host's log at debug level
/// instead of the host's stderr. A cdylib links its own copy of `std`, so the hook is private to
/// this plugin and does not touch the host's or another plugin's. Installed on the first `init`.
fn install_panic_hook(host: *const abi::calc_host_api_t) {
    PANIC_LOG.store(host.cast_mut(), Ordering::SeqCst);
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let api = PANIC_LOG.load(Ordering::SeqCst);
            if api.is_null() {
                eprintln!("calc plugin: {info}");
                return;
            }
            // SAFETY: `api` was stored by `init` and is cleared by `shutdown` before the host's
            // table goes away; panics can only happen in calls made between the two.
            let host = unsafe { Host::from_raw(api) };
            host.log(LogLevel::Debug, &info.to_string());
        }));
    });
}

/// Copies `message` into a caller-owned C buffer, truncating at a UTF-8 boundary and always
/// NUL-terminating. Does nothing when `buf` is NULL or `size` is 0.
///
/// # Safety
/// `buf` must be NULL or valid for writes of `size` bytes.
pub unsafe fn write_message(buf: *mut c_char, size: usize, message: &str) {
    if buf.is_null() || size == 0 {
        return;
    }
    let mut n = message.len().min(size - 1);
    while !message.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: `buf` is valid for `size` bytes and `n < size`; the source is a live &str and the
    // regions cannot overlap (the buffer belongs to the host).
    unsafe {
        ptr::copy_nonoverlapping(message.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
}

/// Reports `result` through the C calling convention: the status code, and the message in the
/// error buffer.
///
/// # Safety
/// As [`write_message`].
unsafe fn report(result: Result<(), CalcError>, buf: *mut c_char, size: usize) -> calc_status_t {
    match result {
        Ok(()) => abi::CALC_STATUS_OK,
        Err(e) => {
            // SAFETY: forwarded contract.
            unsafe { write_message(buf, size, &e.to_string()) };
            e.status.code()
        }
    }
}

/// The `execute` trampoline for operation `I` of plugin `P`.
///
/// # Safety
/// Called by the host under the `calc_execute_fn` contract: `instance` comes from
/// [`init_trampoline::<P>`], `args` holds `arg_count` values, `out_result` is writable and the
/// error buffer is valid for `error_buf_size` bytes.
pub unsafe extern "C" fn execute_trampoline<P: Plugin, const I: usize>(
    instance: *mut c_void,
    args: *const f64,
    arg_count: usize,
    out_result: *mut f64,
    error_buf: *mut c_char,
    error_buf_size: usize,
) -> calc_status_t {
    let Some(op) = P::OPERATIONS.get(I) else {
        // SAFETY: host contract on the error buffer.
        return unsafe {
            report(
                Err(CalcError::other("no such operation")),
                error_buf,
                error_buf_size,
            )
        };
    };
    let result = ffi_boundary(op.name, || {
        if instance.is_null() || out_result.is_null() || (args.is_null() && arg_count > 0) {
            return Err(CalcError::invalid_argument(
                "NULL pointer passed to execute",
            ));
        }
        // SAFETY: `instance` is the `Box<P>` made by `init_trampoline::<P>`, alive until shutdown.
        let plugin = unsafe { &*instance.cast::<P>() };
        let args = if arg_count == 0 {
            &[][..]
        } else {
            // SAFETY: the host passes `arg_count` initialised values at `args` for this call.
            unsafe { std::slice::from_raw_parts(args, arg_count) }
        };
        let value = op.call(plugin, args)?;
        // SAFETY: `out_result` is non-NULL and writable per the contract.
        unsafe { *out_result = value };
        Ok(())
    });
    // SAFETY: host contract on the error buffer.
    unsafe { report(result, error_buf, error_buf_size) }
}

/// Columns the batch trampoline passes to the row loop from the stack; wider calls (variadic
/// functions only) collect them into one heap buffer per batch.
const STACK_COLUMNS: usize = 8;

/// The `execute_batch` trampoline (ABI 1.2) for operation `I` of plugin `P`: runs the
/// operation's body over every row in one tight loop (`out[r] = f(a[r], b[r])` for an infix
/// operator, with the body inlined, so that the compiler can vectorise a simple one), stops at
/// the first error and reports its row. A panic is caught once around the whole loop and
/// reported as `CALC_STATUS_PANIC` at the row that panicked.
///
/// # Safety
/// Called by the host under the `calc_execute_batch_fn` contract: `instance` comes from
/// [`init_trampoline::<P>`], `columns` holds `arg_count` pointers to `rows` values each, `out`
/// is writable for `rows` values and overlaps no column, `out_failed_row` is writable and the
/// error buffer is valid for `error_buf_size` bytes.
#[allow(clippy::too_many_arguments)] // the C signature
pub unsafe extern "C" fn execute_batch_trampoline<P: Plugin, const I: usize>(
    instance: *mut c_void,
    columns: *const *const f64,
    arg_count: usize,
    rows: usize,
    out: *mut f64,
    out_failed_row: *mut usize,
    error_buf: *mut c_char,
    error_buf_size: usize,
) -> calc_status_t {
    let mut row = 0usize;
    let result = match P::OPERATIONS.get(I) {
        None => Err(CalcError::other("no such operation")),
        Some(op) => ffi_boundary(op.name, || {
            if instance.is_null()
                || (out.is_null() && rows > 0)
                || (columns.is_null() && arg_count > 0)
            {
                return Err(CalcError::invalid_argument(
                    "NULL pointer passed to execute_batch",
                ));
            }
            op.check_arity(arg_count)?;
            // SAFETY: `instance` is the `Box<P>` made by `init_trampoline::<P>`, alive until
            // shutdown.
            let plugin = unsafe { &*instance.cast::<P>() };
            let out: &mut [f64] = if rows == 0 {
                &mut []
            } else {
                // SAFETY: `out` is non-NULL and writable for `rows` values, and no column
                // overlaps it (contract), so this is the only live reference to that memory.
                unsafe { std::slice::from_raw_parts_mut(out, rows) }
            };
            let column = |k: usize| -> Result<&[f64], CalcError> {
                if rows == 0 {
                    return Ok(&[]);
                }
                // SAFETY: `columns` holds `arg_count` pointers and `k < arg_count`.
                let c = unsafe { *columns.add(k) };
                if c.is_null() {
                    return Err(CalcError::invalid_argument(
                        "NULL column passed to execute_batch",
                    ));
                }
                // SAFETY: each column holds `rows` values, valid for the call (contract).
                Ok(unsafe { std::slice::from_raw_parts(c, rows) })
            };
            if arg_count <= STACK_COLUMNS {
                let mut cols: [&[f64]; STACK_COLUMNS] = [&[]; STACK_COLUMNS];
                for (k, c) in cols.iter_mut().take(arg_count).enumerate() {
                    *c = column(k)?;
                }
                op.run_rows(plugin, &cols[..arg_count], out, &mut row)
            } else {
                let cols = (0..arg_count).map(column).collect::<Result<Vec<_>, _>>()?;
                op.run_rows(plugin, &cols, out, &mut row)
            }
        }),
    };
    if result.is_err() && !out_failed_row.is_null() {
        // SAFETY: `out_failed_row` is non-NULL and writable per the contract.
        unsafe { *out_failed_row = row };
    }
    // SAFETY: host contract on the error buffer.
    unsafe { report(result, error_buf, error_buf_size) }
}

/// The `init` trampoline: runs [`Plugin::init`] and boxes the instance.
///
/// # Safety
/// Called by the host under the `calc_init_fn` contract.
pub unsafe extern "C" fn init_trampoline<P: Plugin>(
    host: *const abi::calc_host_api_t,
    out_instance: *mut *mut c_void,
    error_buf: *mut c_char,
    error_buf_size: usize,
) -> calc_status_t {
    let result = ffi_boundary("init", || {
        if host.is_null() || out_instance.is_null() {
            return Err(CalcError::invalid_argument("NULL pointer passed to init"));
        }
        install_panic_hook(host);
        // SAFETY: the host table stays valid until shutdown, which drops the instance.
        let host = unsafe { Host::from_raw(host) };
        let instance = Box::into_raw(Box::new(P::init(&host)?));
        // SAFETY: `out_instance` is non-NULL and writable per the contract.
        unsafe { *out_instance = instance.cast::<c_void>() };
        Ok(())
    });
    // SAFETY: host contract on the error buffer.
    unsafe { report(result, error_buf, error_buf_size) }
}

/// The `save_state` trampoline: runs [`Plugin::save_state`] and writes the bytes through the
/// host's writer. An empty state writes nothing.
///
/// # Safety
/// Called by the host under the `calc_save_state_fn` contract: `instance` from
/// [`init_trampoline::<P>`], `write` valid with `writer`, the error buffer valid.
pub unsafe extern "C" fn save_state_trampoline<P: Plugin>(
    instance: *mut c_void,
    write: abi::calc_state_write_fn,
    writer: *mut c_void,
    error_buf: *mut c_char,
    error_buf_size: usize,
) -> calc_status_t {
    let result = ffi_boundary("save_state", || {
        let Some(write) = write.filter(|_| !instance.is_null()) else {
            return Err(CalcError::invalid_argument(
                "NULL pointer passed to save_state",
            ));
        };
        // SAFETY: `instance` is the live `Box<P>` made by `init_trampoline::<P>`.
        let plugin = unsafe { &*instance.cast::<P>() };
        let state = plugin.save_state()?;
        if !state.is_empty() {
            // SAFETY: the host's writer copies `state.len()` bytes from a live buffer.
            unsafe { write(writer, state.as_ptr().cast(), state.len()) };
        }
        Ok(())
    });
    // SAFETY: host contract on the error buffer.
    unsafe { report(result, error_buf, error_buf_size) }
}

/// The `shutdown` trampoline: drops the instance. A panic in `Drop` is caught and swallowed.
///
/// # Safety
/// `instance` must come from [`init_trampoline::<P>`] and not be used afterwards.
pub unsafe extern "C" fn shutdown_trampoline<P: Plugin>(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    let _ = ffi_boundary("shutdown", || {
        // SAFETY: per contract, `instance` is the unique owner of a `Box<P>`.
        drop(unsafe { Box::from_raw(instance.cast::<P>()) });
        Ok(())
    });
    PANIC_LOG.store(ptr::null_mut(), Ordering::SeqCst);
}

type RawExecute = unsafe extern "C" fn(
    *mut c_void,
    *const f64,
    usize,
    *mut f64,
    *mut c_char,
    usize,
) -> calc_status_t;

type RawExecuteBatch = unsafe extern "C" fn(
    *mut c_void,
    *const *const f64,
    usize,
    usize,
    *mut f64,
    *mut usize,
    *mut c_char,
    usize,
) -> calc_status_t;

macro_rules! trampoline_table {
    ($f:ident as $t:ty; $p:ty; $($i:literal)*) => {
        [$($f::<$p, $i> as $t),*]
    };
}

fn trampoline<P: Plugin>(index: usize) -> calc_execute_fn {
    let table: [RawExecute; MAX_OPERATIONS] = trampoline_table!(execute_trampoline as RawExecute; P;
        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
        32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61
        62 63);
    table.get(index).copied()
}

fn batch_trampoline<P: Plugin>(index: usize) -> calc_execute_batch_fn {
    let table: [RawExecuteBatch; MAX_OPERATIONS] = trampoline_table!(
        execute_batch_trampoline as RawExecuteBatch; P;
        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
        32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61
        62 63);
    table.get(index).copied()
}

/// The descriptor of one plugin and the memory its pointers point into.
struct Built {
    descriptor: calc_plugin_t,
    _operations: Vec<calc_operation_t>,
    _interfaces: Vec<abi::calc_interface_t>,
    _strings: Vec<CString>,
}

// SAFETY: `Built` is immutable after construction; its raw pointers point into heap memory it
// owns (the CStrings' and the Vec's buffers, which do not move when `Built` moves).
unsafe impl Send for Built {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for Built {}

/// Lazily built storage for a plugin's descriptor, freed when the library is unloaded.
///
/// The descriptor is built on the first `plugin_entry` call (it needs heap memory: C strings and
/// the operation table). `export_plugin!` registers a finaliser (ELF `.fini_array`, Mach-O
/// `__mod_term_func`) that calls [`DescriptorCell::release`] when the dynamic loader unloads the
/// library or the process exits, so loading and unloading a Rust plugin repeatedly leaks
/// nothing.
pub struct DescriptorCell(AtomicPtr<Built>);

impl DescriptorCell {
    /// An empty cell, for a `static`.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        DescriptorCell(AtomicPtr::new(ptr::null_mut()))
    }

    /// Returns the descriptor of `P`, building it on first use; NULL when the plugin's metadata
    /// cannot be expressed as C strings (an interior NUL byte) or the build panicked.
    pub fn get_or_build<P: Plugin>(&'static self) -> *const calc_plugin_t {
        let mut current = self.0.load(Ordering::Acquire);
        if current.is_null() {
            let Ok(built) = ffi_boundary("plugin_entry", || build::<P>()) else {
                return ptr::null();
            };
            let fresh = Box::into_raw(Box::new(built));
            current = match self.0.compare_exchange(
                ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => fresh,
                Err(existing) => {
                    // Another thread won the race: keep its descriptor, free ours.
                    // SAFETY: `fresh` came from `Box::into_raw` above and was never shared.
                    drop(unsafe { Box::from_raw(fresh) });
                    existing
                }
            };
        }
        // SAFETY: a non-NULL pointer in the cell is a live `Built` until `release`.
        unsafe { &(*current).descriptor }
    }

    /// Frees the descriptor, if it was built.
    ///
    /// # Safety
    /// Nothing may use a pointer previously returned by [`Self::get_or_build`] afterwards: call
    /// it only from the library's finaliser (the dynamic loader is unloading it, or the process
    /// is exiting), as `export_plugin!` does.
    pub unsafe fn release(&self) {
        let built = self.0.swap(ptr::null_mut(), Ordering::AcqRel);
        if !built.is_null() {
            // SAFETY: it came from `Box::into_raw` in `get_or_build`, and the swap made this the
            // only owner.
            drop(unsafe { Box::from_raw(built) });
        }
    }
}

fn build<P: Plugin>() -> Result<Built, CalcError> {
    if P::OPERATIONS.len() > MAX_OPERATIONS {
        return Err(CalcError::invalid_argument("too many operations"));
    }
    let mut strings = Vec::new();
    let mut c = |s: &str| -> Result<*const c_char, CalcError> {
        let s = CString::new(s).map_err(|_| CalcError::invalid_argument("NUL byte in a string"))?;
        let p = s.as_ptr();
        strings.push(s);
        Ok(p)
    };
    let mut operations = Vec::with_capacity(P::OPERATIONS.len());
    for (i, op) in P::OPERATIONS.iter().enumerate() {
        let (symbol, associativity, precedence, min_arity, max_arity) = match op.kind {
            OperationKind::Infix {
                symbol,
                precedence,
                associativity,
            } => (c(symbol)?, associativity.code(), precedence, 2, 2),
            OperationKind::Function {
                min_arity,
                max_arity,
            } => (
                ptr::null(),
                abi::CALC_ASSOCIATIVITY_NONE,
                0,
                min_arity,
                max_arity.unwrap_or(abi::CALC_ARITY_VARIADIC),
            ),
        };
        operations.push(calc_operation_t {
            name: c(op.name)?,
            description: c(op.description)?,
            symbol,
            execute: trampoline::<P>(i),
            kind: match op.kind {
                OperationKind::Infix { .. } => abi::CALC_OPERATION_KIND_INFIX,
                OperationKind::Function { .. } => abi::CALC_OPERATION_KIND_FUNCTION,
            },
            associativity,
            precedence,
            min_arity,
            max_arity,
            execute_batch: batch_trampoline::<P>(i),
        });
    }
    if P::INTERFACES.len() > abi::CALC_MAX_INTERFACES as usize {
        return Err(CalcError::invalid_argument("too many interfaces"));
    }
    let interfaces: Vec<abi::calc_interface_t> = P::INTERFACES
        .iter()
        .map(|i| abi::calc_interface_t {
            // A `&'static CStr`: lives as long as the library.
            id: i.id.as_ptr(),
            version: abi::calc_abi_version_t {
                major: i.major,
                minor: i.minor,
            },
            // An oversized vtable is refused by the host, which reads the size first.
            vtable_size: u32::try_from(i.size).unwrap_or(u32::MAX),
            vtable: i.vtable,
            flags: i.flags,
        })
        .collect();
    let descriptor = calc_plugin_t {
        magic: abi::CALC_PLUGIN_MAGIC,
        struct_size: std::mem::size_of::<calc_plugin_t>() as u32,
        abi_version: abi::calc_abi_version_t {
            major: abi::CALC_ABI_VERSION_MAJOR,
            minor: P::ABI_MINOR.min(abi::CALC_ABI_VERSION_MINOR),
        },
        name: c(P::NAME)?,
        version: c(P::VERSION)?,
        author: c(P::AUTHOR)?,
        description: c(P::DESCRIPTION)?,
        sdk_version: c(crate::SDK_VERSION)?,
        api_requirement: c(P::API_REQUIREMENT)?,
        flags: 0,
        init: Some(init_trampoline::<P>),
        shutdown: Some(shutdown_trampoline::<P>),
        operations: operations.as_ptr(),
        operation_count: operations.len() as u32,
        operation_size: std::mem::size_of::<calc_operation_t>() as u32,
        save_state: Some(save_state_trampoline::<P>),
        interfaces: interfaces.as_ptr(),
        interface_count: interfaces.len() as u32,
        interface_size: std::mem::size_of::<abi::calc_interface_t>() as u32,
    };
    Ok(Built {
        descriptor,
        _operations: operations,
        _interfaces: interfaces,
        _strings: strings,
    })
}

/// Exports a [`Plugin`] implementation as a calc plugin: defines `plugin_entry` with C linkage,
/// and a finaliser that frees the descriptor when the library is unloaded.
///
/// Use it once per cdylib crate, at the crate root:
/// `calc_sdk::export_plugin!(MyPlugin);`
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = assert!(
            <$plugin as $crate::Plugin>::OPERATIONS.len() <= $crate::export::MAX_OPERATIONS,
            "a Rust calc plugin may declare at most 64 operations"
        );
        const _: () = assert!(
            <$plugin as $crate::Plugin>::ABI_MINOR <= $crate::abi::CALC_ABI_VERSION_MINOR,
            "Plugin::ABI_MINOR is newer than the ABI of this calc-sdk"
        );

        #[doc(hidden)]
        static __CALC_SDK_DESCRIPTOR: $crate::export::DescriptorCell =
            $crate::export::DescriptorCell::new();

        /// The calc plugin entry point: returns this plugin's descriptor (see `calc_plugin.h`).
        #[no_mangle]
        pub extern "C" fn plugin_entry() -> *const $crate::abi::calc_plugin_t {
            __CALC_SDK_DESCRIPTOR.get_or_build::<$plugin>()
        }

        const _: () = {
            extern "C" fn calc_release_descriptor() {
                // SAFETY: runs from the library's finaliser, when the loader unloads it or the
                // process exits; the host copied what it needed at load time.
                unsafe { __CALC_SDK_DESCRIPTOR.release() }
            }

            // Registered with the dynamic loader as a finaliser of this library.
            #[used]
            #[cfg_attr(
                any(
                    target_os = "linux",
                    target_os = "android",
                    target_os = "freebsd",
                    target_os = "netbsd",
                    target_os = "openbsd"
                ),
                link_section = ".fini_array"
            )]
            #[cfg_attr(
                target_vendor = "apple",
                link_section = "__DATA,__mod_term_func,mod_term_funcs"
            )]
            static CALC_RELEASE_DESCRIPTOR: extern "C" fn() = calc_release_descriptor;
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_message_truncates_on_a_char_boundary_and_terminates() {
        let mut buf = [0x7f as c_char; 6];
        // SAFETY: the buffer is 6 bytes long.
        unsafe { write_message(buf.as_mut_ptr(), buf.len(), "ab\u{e9}\u{e9}cd") };
        let bytes: Vec<u8> = buf.iter().map(|&b| b as u8).collect();
        // "ab" + "é" (2 bytes) fits in 5 bytes; the second "é" would straddle the end.
        assert_eq!(bytes, [b'a', b'b', 0xc3, 0xa9, 0, 0x7f]);
    }

    /// A plugin exercising every body shape through the batch trampolines.
    struct Batchy;

    impl Plugin for Batchy {
        const NAME: &'static str = "batchy";
        const VERSION: &'static str = "1.0.0";
        const OPERATIONS: &'static [crate::Operation<Self>] = &[
            crate::Operation::infix("mul", "*", 20, crate::Associativity::Left, "", |_, a, b| {
                Ok(a * b)
            }),
            crate::Operation::infix("div", "/", 20, crate::Associativity::Left, "", |_, a, b| {
                if b == 0.0 {
                    Err(CalcError::division_by_zero())
                } else {
                    Ok(a / b)
                }
            }),
            crate::Operation::unary("neg", "", |_, a| {
                assert!(a != 13.0, "unlucky {a}");
                Ok(-a)
            }),
            crate::Operation::function("sum", 0, None, "", |_, xs| Ok(xs.iter().sum())),
        ];
        fn init(_host: &Host) -> Result<Self, CalcError> {
            Ok(Batchy)
        }
    }

    /// What one `execute_batch` call through the descriptor produced.
    #[derive(Debug, PartialEq)]
    struct Batch {
        status: calc_status_t,
        out: Vec<f64>,
        failed_row: usize,
        message: String,
    }

    /// Calls operation `index` of `Batchy`'s descriptor through its `execute_batch` pointer,
    /// as the host does.
    fn batch(index: usize, columns: &[&[f64]], rows: usize) -> Batch {
        let built = build::<Batchy>().expect("descriptor");
        let d = &built.descriptor;
        assert_eq!(d.abi_version.minor, abi::CALC_ABI_VERSION_MINOR); // at least 1.2: has batches
        assert!(index < d.operation_count as usize);
        // SAFETY: the table has `operation_count` elements of `operation_size` bytes.
        let op = unsafe {
            &*d.operations
                .cast::<u8>()
                .add(index * d.operation_size as usize)
                .cast::<calc_operation_t>()
        };
        let execute_batch = op.execute_batch.expect("the SDK fills execute_batch");
        let instance = Box::into_raw(Box::new(Batchy));
        let pointers: Vec<*const f64> = columns.iter().map(|c| c.as_ptr()).collect();
        let mut out = vec![f64::NAN; rows];
        let mut failed_row = usize::MAX;
        let mut buf = [0 as c_char; 64];
        // SAFETY: the `calc_execute_batch_fn` contract: a live instance, `columns.len()`
        // columns of `rows` values, `rows` writable outputs, a writable row and buffer.
        let status = unsafe {
            execute_batch(
                instance.cast(),
                pointers.as_ptr(),
                pointers.len(),
                rows,
                out.as_mut_ptr(),
                &mut failed_row,
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        // SAFETY: the instance came from `Box::into_raw` above and is no longer used.
        unsafe { shutdown_trampoline::<Batchy>(instance.cast()) };
        // SAFETY: the buffer is zeroed, so it is NUL-terminated whatever was written.
        let message = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Batch {
            status,
            out,
            failed_row,
            message,
        }
    }

    #[test]
    fn batch_trampoline_computes_every_row_through_the_c_abi() {
        let a: Vec<f64> = (0..1000).map(f64::from).collect();
        let b: Vec<f64> = (0..1000).map(|i| f64::from(i) * 0.5 + 1.0).collect();
        let r = batch(0, &[&a, &b], a.len());
        assert_eq!((r.status, r.failed_row), (abi::CALC_STATUS_OK, usize::MAX));
        let expected: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
        assert_eq!(r.out, expected);
        // Unary and variadic bodies, the latter with more columns than the stack holds.
        assert_eq!(batch(2, &[&[1.0, -2.0]], 2).out, [-1.0, 2.0]);
        let ones = [1.0, 2.0, 3.0];
        let cols: Vec<&[f64]> = vec![&ones; STACK_COLUMNS + 3];
        let r = batch(3, &cols, 3);
        let n = (STACK_COLUMNS + 3) as f64;
        assert_eq!(r.out, [n, 2.0 * n, 3.0 * n]);
        // No operand at all (sum takes 0 or more), and no row at all.
        assert_eq!(batch(3, &[], 0).status, abi::CALC_STATUS_OK);
        assert_eq!(batch(0, &[&[], &[]], 0).out, Vec::<f64>::new());
    }

    #[test]
    fn batch_trampoline_stops_at_the_first_failing_row() {
        let r = batch(1, &[&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 0.0, 0.0]], 4);
        assert_eq!(r.status, abi::CALC_STATUS_DIVISION_BY_ZERO);
        assert_eq!(r.failed_row, 2);
        assert_eq!(r.message, "division by zero");
        assert_eq!(&r.out[..2], [1.0, 1.0]);
        assert!(r.out[2].is_nan() && r.out[3].is_nan(), "{:?}", r.out);
    }

    #[test]
    fn batch_trampoline_reports_the_row_that_panicked() {
        let r = batch(2, &[&[1.0, 2.0, 13.0, 4.0]], 4);
        assert_eq!((r.status, r.failed_row), (abi::CALC_STATUS_PANIC, 2));
        assert_eq!(r.message, "neg panicked: unlucky 13");
        assert_eq!(&r.out[..2], [-1.0, -2.0]);
    }

    #[test]
    fn batch_trampoline_refuses_a_wrong_arity_at_row_0() {
        let r = batch(0, &[&[1.0]], 1);
        assert_eq!(
            (r.status, r.failed_row),
            (abi::CALC_STATUS_INVALID_ARGUMENT, 0)
        );
        assert_eq!(r.message, "mul takes 2 operands, got 1");
    }

    #[test]
    fn call_batch_matches_call_row_by_row() {
        let op = &Batchy::OPERATIONS[1];
        let (a, b) = ([6.0, 1.0, 5.0], [3.0, 4.0, 0.0]);
        let mut out = [0.0; 3];
        let (row, e) = op.call_batch(&Batchy, &[&a, &b], &mut out).unwrap_err();
        assert_eq!((row, e.status), (2, Status::DivisionByZero));
        assert_eq!(&out[..2], [op.call(&Batchy, &[6.0, 3.0]).unwrap(), 0.25]);
        let (row, e) = op
            .call_batch(&Batchy, &[&a, &b[..2]], &mut out)
            .unwrap_err();
        assert_eq!((row, e.status), (0, Status::InvalidArgument));
    }

    #[test]
    fn ffi_boundary_turns_a_panic_into_a_panic_status() {
        let e = ffi_boundary::<()>("op", || panic!("boom {}", 7)).unwrap_err();
        assert_eq!(e.status, Status::Panic);
        assert_eq!(e.message, "op panicked: boom 7");
    }
}
