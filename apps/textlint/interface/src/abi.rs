//! textlint's plugin interface as C sees it: the one definition from which
//! `apps/textlint/include/textlint.h` is generated (`cargo xtask headers`, by `calc-abi
//! header`), and against which that header's released versions in `apps/textlint/abi/` are
//! checked (`calc-abi check`). Append only within a major: a new function goes at the end of
//! [`LintVtable`], with its "Since" and a bump of [`MINOR`].

use std::ffi::CStr;

use calc_sdk::abi::calc_bytes_fn;

/// The one spelling of the id, for [`ID`] and [`ID_C`] (and the header's configuration, which a
/// test compares with it: cbindgen writes no string constants).
macro_rules! lint_id {
    () => {
        "calc-apps.lint"
    };
}

/// The interface's id.
pub const ID: &str = lint_id!();
/// The interface's id as a C string, for `calc_interface_t.id`.
pub const ID_C: &CStr = match CStr::from_bytes_with_nul(concat!(lint_id!(), "\0").as_bytes()) {
    Ok(id) => id,
    Err(_) => panic!("an interface id has no NUL inside"),
};
/// The interface's major version.
pub const MAJOR: u16 = 1;
/// The interface's minor version: what this definition holds.
pub const MINOR: u16 = 0;

/// The vtable of `calc-apps.lint` 1.x, a bytes interface (`CALC_INTERFACE_FLAG_BYTES`): every
/// function has the `calc_bytes_fn` shape (bytes in, bytes out through the host's writer, a
/// status and a message in the host's buffer), so nothing is allocated on one side and freed
/// on the other, and textlint can run a plugin in a runner process (`textlint --isolate`).
/// Every function is [any-thread].
#[repr(C)]
pub struct LintVtable {
    /// The file extensions the plugin checks, without dots, comma-separated ("c,h"), or "*"
    /// for every file. The input is empty. Since 1.0.
    pub extensions: calc_bytes_fn,
    /// Checks one file: the input is the file's bytes (owned by the host, valid during the
    /// call). Writes one finding per line, "LINE:COLUMN: message\n" (1-based), nothing when
    /// the file is clean. A status other than CALC_STATUS_OK (with a message) means the plugin
    /// could not check the file; what it wrote is then dropped. Since 1.0.
    pub check: calc_bytes_fn,
}
