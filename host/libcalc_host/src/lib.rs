//! libcalc_host: the artifact crate that ships the C API of `calc_host` (see
//! `include/calc_host.h`) as `libcalc_host.so` and `libcalc_host.a`. It contains no code of its
//! own, so the host stays an ordinary Rust library that tests and the `calc` binary link
//! directly.

pub use calc_host::capi::*;
