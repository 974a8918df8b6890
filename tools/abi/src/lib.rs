//! ABI tooling for calc plugin interfaces, for calc's own headers and for any application that
//! defines a plugin interface of its own (docs/INTERFACES.md):
//!
//! - [`generate`]: the interface's C header from its `#[repr(C)]` Rust definition, through
//!   cbindgen, so that the Rust and C sides are one definition;
//! - [`compat`]: proof that today's headers only append to the headers frozen at each release
//!   (no field moved, retyped or removed, no struct shrunk, no constant changed), read by clang
//!   through bindgen;
//! - the `calc-abi` command does both from the command line (`calc-abi --help`).
//!
//! Reading C headers needs libclang at run time (Debian/Ubuntu: `libclang-dev`); generating
//! them needs nothing but this crate.

pub mod c_header;
pub mod compat;
pub mod generate;
