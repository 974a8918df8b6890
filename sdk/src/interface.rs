//! Application-defined interfaces for Rust plugins (ABI 1.4).
//!
//! An application that defines an interface publishes, besides its C header, a small Rust
//! crate (or module) with three things: the vtable type (`#[repr(C)]`), a safe trait that plugin
//! authors implement, and the glue: one `extern "C"` function per vtable slot, generic over the
//! plugin type, that turns the instance pointer back into the plugin with [`with_plugin`] and
//! calls the trait. The plugin author then writes no `unsafe` at all: implement the trait, and
//! list the interface in [`crate::Plugin::INTERFACES`] with [`Interface::new`].
//!
//! ```
//! use std::ffi::c_void;
//!
//! use calc_sdk::abi::calc_status_t;
//! use calc_sdk::interface::{status_of, with_plugin, Interface};
//! use calc_sdk::{CalcError, Plugin};
//!
//! // --- The application's interface crate: vtable, safe trait, glue. ---
//!
//! /// `acme.shape` 1.0.
//! #[repr(C)]
//! pub struct ShapeVtable {
//!     pub area: unsafe extern "C" fn(*mut c_void, f64, f64, *mut f64) -> calc_status_t,
//! }
//!
//! /// What a plugin implements.
//! pub trait Shape: Plugin {
//!     fn area(&self, w: f64, h: f64) -> Result<f64, CalcError>;
//!
//!     /// The vtable that calls this implementation.
//!     const VTABLE: ShapeVtable = ShapeVtable { area: area::<Self> };
//! }
//!
//! /// The entry for [`Plugin::INTERFACES`].
//! pub const fn shape<P: Shape>() -> Interface {
//!     Interface::new(c"acme.shape", 1, 0, &P::VTABLE)
//! }
//!
//! unsafe extern "C" fn area<P: Shape>(
//!     instance: *mut c_void,
//!     w: f64,
//!     h: f64,
//!     out: *mut f64,
//! ) -> calc_status_t {
//!     // SAFETY: the host passes the instance this plugin's `init` made, and a writable `out`
//!     // (the interface's contract).
//!     status_of(unsafe { with_plugin::<P, _>(instance, "area", |p| p.area(w, h)) }, |v| unsafe {
//!         *out = v
//!     })
//! }
//!
//! // --- A plugin: no unsafe. ---
//!
//! pub struct Squares;
//!
//! impl Shape for Squares {
//!     fn area(&self, w: f64, h: f64) -> Result<f64, CalcError> {
//!         Ok(w * h)
//!     }
//! }
//!
//! impl Plugin for Squares {
//!     const NAME: &'static str = "squares";
//!     const VERSION: &'static str = "1.0.0";
//!     const OPERATIONS: &'static [calc_sdk::Operation<Self>] = &[];
//!     const INTERFACES: &'static [Interface] = &[shape::<Self>()];
//!     fn init(_host: &calc_sdk::Host) -> Result<Self, CalcError> {
//!         Ok(Squares)
//!     }
//! }
//!
//! calc_sdk::export_plugin!(Squares);
//! ```

use std::ffi::{c_void, CStr};

use crate::abi::{self, calc_status_t};
use crate::error::{CalcError, Status};
use crate::plugin::Plugin;

/// One interface a Rust plugin implements: what becomes its `calc_interface_t`.
#[derive(Clone, Copy, Debug)]
pub struct Interface {
    pub(crate) id: &'static CStr,
    pub(crate) major: u16,
    pub(crate) minor: u16,
    pub(crate) vtable: *const c_void,
    pub(crate) size: usize,
    pub(crate) flags: u32,
}

// SAFETY: `vtable` points to a `'static`, `Sync` value (`Interface::new`'s bound).
unsafe impl Sync for Interface {}
// SAFETY: as above.
unsafe impl Send for Interface {}

impl Interface {
    /// The interface `id` (`"vendor.name"`) at version `major.minor`, implemented by `vtable`:
    /// a `'static` value of the interface's `#[repr(C)]` vtable type. The host checks the id
    /// and the size when it loads the plugin.
    pub const fn new<V: Sync>(
        id: &'static CStr,
        major: u16,
        minor: u16,
        vtable: &'static V,
    ) -> Interface {
        Interface {
            id,
            major,
            minor,
            vtable: vtable as *const V as *const c_void,
            size: std::mem::size_of::<V>(),
            flags: 0,
        }
    }

    /// As [`Interface::new`], for a bytes interface (`CALC_INTERFACE_FLAG_BYTES`): `V` holds
    /// nothing but `calc_bytes_fn`s, none of them `None`, so hosts may call it by slot and
    /// carry it to a runner process.
    pub const fn bytes<V: Sync>(
        id: &'static CStr,
        major: u16,
        minor: u16,
        vtable: &'static V,
    ) -> Interface {
        let mut interface = Interface::new(id, major, minor, vtable);
        interface.flags = abi::CALC_INTERFACE_FLAG_BYTES;
        interface
    }

    /// The interface's id.
    pub fn id(&self) -> &'static CStr {
        self.id
    }

    /// Its major and minor version.
    pub fn version(&self) -> (u16, u16) {
        (self.major, self.minor)
    }
}

/// Runs `f` on the plugin behind `instance`, for the glue of an interface's vtable: a NULL
/// instance is an `InvalidArgument` error, and a panic in `f` becomes a [`Status::Panic`]
/// error naming `what`, so nothing unwinds into the host.
///
/// # Safety
/// `instance` must be NULL or the instance the host received from this plugin's `init` (the
/// SDK's `init` makes it a `P`), valid for the call: what the host passes as the first
/// argument of an interface function.
pub unsafe fn with_plugin<P: Plugin, R>(
    instance: *mut c_void,
    what: &str,
    f: impl FnOnce(&P) -> Result<R, CalcError>,
) -> Result<R, CalcError> {
    crate::export::ffi_boundary(what, || {
        if instance.is_null() {
            return Err(CalcError::new(
                Status::InvalidArgument,
                format!("{what}: NULL instance"),
            ));
        }
        // SAFETY: per the contract, a live `P` made by `init_trampoline::<P>`.
        f(unsafe { &*instance.cast::<P>() })
    })
}

/// The body of one function of a bytes interface (`calc_bytes_fn`), for an interface crate's
/// glue: runs `f` on the plugin behind `instance` with the input, writes its output through
/// the host's writer, and on failure writes the message into the host's buffer and returns the
/// status. Panics are caught (they become [`Status::Panic`]).
///
/// ```
/// use std::ffi::{c_char, c_void};
///
/// use calc_sdk::abi::{calc_bytes_write_fn, calc_status_t};
/// use calc_sdk::interface::bytes_call;
/// use calc_sdk::Plugin;
///
/// pub trait Upper: Plugin {
///     fn upper(&self, text: &[u8]) -> Vec<u8>;
/// }
///
/// /// Slot 0 of a bytes interface whose plugins implement `Upper`.
/// pub unsafe extern "C" fn upper<P: Upper>(
///     instance: *mut c_void,
///     input: *const c_void,
///     input_len: usize,
///     write: calc_bytes_write_fn,
///     writer: *mut c_void,
///     error_buf: *mut c_char,
///     error_buf_size: usize,
/// ) -> calc_status_t {
///     // SAFETY: the host calls it under the `calc_bytes_fn` contract.
///     unsafe {
///         bytes_call::<P>(
///             instance, input, input_len, write, writer, error_buf, error_buf_size, "upper",
///             |p, text| Ok(p.upper(text)),
///         )
///     }
/// }
/// ```
///
/// # Safety
/// The `calc_bytes_fn` contract: `instance` NULL or this plugin's instance (a `P`), `input`
/// readable for `input_len` bytes (or NULL when 0), `write` with `writer` callable during the
/// call, `error_buf` NULL or writable for `error_buf_size` bytes.
#[allow(clippy::too_many_arguments)] // the ABI's signature, plus the name and the body
pub unsafe fn bytes_call<P: Plugin>(
    instance: *mut c_void,
    input: *const c_void,
    input_len: usize,
    write: abi::calc_bytes_write_fn,
    writer: *mut c_void,
    error_buf: *mut std::ffi::c_char,
    error_buf_size: usize,
    what: &str,
    f: impl FnOnce(&P, &[u8]) -> Result<Vec<u8>, CalcError>,
) -> calc_status_t {
    let input = if input_len == 0 || input.is_null() {
        &[][..]
    } else {
        // SAFETY: per the contract, readable for `input_len` bytes during the call.
        unsafe { std::slice::from_raw_parts(input.cast::<u8>(), input_len) }
    };
    // SAFETY: forwarded contract on `instance`.
    let result = unsafe { with_plugin::<P, _>(instance, what, |p| f(p, input)) };
    match result {
        Ok(output) => {
            if let Some(write) = write.filter(|_| !output.is_empty()) {
                // SAFETY: the host's writer, called during the call with a live buffer.
                unsafe { write(writer, output.as_ptr().cast(), output.len()) };
            }
            abi::CALC_STATUS_OK
        }
        Err(e) => {
            // SAFETY: per the contract, NULL or writable for `error_buf_size` bytes.
            unsafe { crate::export::write_message(error_buf, error_buf_size, &e.message) };
            e.status.code()
        }
    }
}

/// Defines one function of a bytes interface for an interface crate: an `unsafe extern "C"`
/// function with the `calc_bytes_fn` signature, generic over the plugin type, whose body gets
/// the plugin and the input and returns the output or a [`CalcError`](crate::CalcError)
/// (through [`bytes_call`]: panics caught, the message written for the host).
///
/// ```
/// use calc_sdk::abi::calc_bytes_fn;
/// use calc_sdk::{bytes_fn, Plugin};
///
/// pub trait Upper: Plugin {
///     fn upper(&self, text: &[u8]) -> Vec<u8>;
/// }
///
/// bytes_fn!(
///     /// Slot 0: the input in upper case.
///     pub fn upper<P: Upper>(plugin, text) {
///         Ok(plugin.upper(text))
///     }
/// );
///
/// /// A vtable of that interface for plugin `P`.
/// pub fn vtable<P: Upper>() -> [calc_bytes_fn; 1] {
///     [Some(upper::<P>)]
/// }
/// ```
#[macro_export]
macro_rules! bytes_fn {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident<$p:ident: $bound:path>($plugin:ident, $input:ident) $body:block
    ) => {
        $(#[$attr])*
        ///
        /// # Safety
        /// The `calc_bytes_fn` contract: called by the host with this plugin's instance.
        $vis unsafe extern "C" fn $name<$p: $bound>(
            instance: *mut ::core::ffi::c_void,
            input: *const ::core::ffi::c_void,
            input_len: usize,
            write: $crate::abi::calc_bytes_write_fn,
            writer: *mut ::core::ffi::c_void,
            error_buf: *mut ::core::ffi::c_char,
            error_buf_size: usize,
        ) -> $crate::abi::calc_status_t {
            // SAFETY: the host calls it under the `calc_bytes_fn` contract, which is what
            // `bytes_call` requires.
            unsafe {
                $crate::interface::bytes_call::<$p>(
                    instance,
                    input,
                    input_len,
                    write,
                    writer,
                    error_buf,
                    error_buf_size,
                    ::core::stringify!($name),
                    |$plugin: &$p, $input: &[u8]| $body,
                )
            }
        }
    };
}

/// The status for a result of [`with_plugin`]: `CALC_STATUS_OK` after handing the value to
/// `write` (which stores it where the interface says), else the error's status.
pub fn status_of<R>(result: Result<R, CalcError>, write: impl FnOnce(R)) -> calc_status_t {
    match result {
        Ok(value) => {
            write(value);
            abi::CALC_STATUS_OK
        }
        Err(e) => e.status.code(),
    }
}
