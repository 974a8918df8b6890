//! Developer tasks for the calc workspace, shared by the `xtask` binary and the test suite.

pub mod build;
pub mod install;

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Reads `version = "..."` from the `[workspace.package]` table of the root `Cargo.toml`.
pub fn workspace_version(root: &Path) -> Result<String, String> {
    workspace_package_field(root, "version")
}

/// Reads the string `key = "..."` from the `[workspace.package]` table of the root `Cargo.toml`
/// (e.g. `version`, `rust-version`).
pub fn workspace_package_field(root: &Path, key: &str) -> Result<String, String> {
    let text =
        std::fs::read_to_string(root.join("Cargo.toml")).map_err(|e| format!("Cargo.toml: {e}"))?;
    let mut in_package = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[workspace.package]";
        } else if in_package {
            let Some((name, value)) = line.split_once('=') else {
                continue;
            };
            if name.trim() == key {
                return Ok(value.trim().trim_matches('"').to_string());
            }
        }
    }
    Err(format!("no {key} in [workspace.package] of Cargo.toml"))
}

/// Text placed right after the `#include`s of `calc_plugin.h`: the SDK version, defined once in
/// `Cargo.toml`.
fn plugin_header_prelude(version: &str) -> Result<String, String> {
    let mut parts = version.split(['.', '-', '+']);
    let mut next = |what: &str| -> Result<u32, String> {
        parts
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("workspace version {version:?} has no numeric {what}"))
    };
    let (major, minor, patch) = (next("major")?, next("minor")?, next("patch")?);
    Ok(format!(
        r#"
/* The calc SDK version these headers belong to (the workspace version in Cargo.toml). */
#define CALC_SDK_VERSION "{version}"
#define CALC_SDK_VERSION_MAJOR {major}
#define CALC_SDK_VERSION_MINOR {minor}
#define CALC_SDK_VERSION_PATCH {patch}
/* One number for #if comparisons: major * 1000000 + minor * 1000 + patch. */
#define CALC_SDK_VERSION_NUMBER (CALC_SDK_VERSION_MAJOR * 1000000 + CALC_SDK_VERSION_MINOR * 1000 + CALC_SDK_VERSION_PATCH)
/* The host API requirement a plugin built with these headers declares by default. */
#define CALC_API_REQUIREMENT_DEFAULT "^{major}.{minor}""#
    ))
}

const PLUGIN_HEADER_MACROS: &str = r#"
/* Initialiser for a calc_abi_version_t holding the version of these headers. */
#define CALC_ABI_VERSION_INIT { CALC_ABI_VERSION_MAJOR, CALC_ABI_VERSION_MINOR }

/* Marks a symbol as exported from the plugin's shared library. Build plugins with
 * -fvisibility=hidden so that plugin_entry is the only exported symbol. */
#if defined(_WIN32)
#define CALC_PLUGIN_EXPORT __declspec(dllexport)
#else
#define CALC_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
#define CALC_EXTERN_C extern "C"
#else
#define CALC_EXTERN_C
#endif

/* Declares the plugin entry point with C linkage and default visibility:
 *   CALC_PLUGIN_ENTRY { return &my_descriptor; }
 * See calc_plugin_entry_fn for its contract. */
#define CALC_PLUGIN_ENTRY CALC_EXTERN_C CALC_PLUGIN_EXPORT const struct calc_plugin_t *plugin_entry(void)

/* The prototype of the entry point, so plugins build with -Wmissing-prototypes. */
CALC_PLUGIN_ENTRY;
"#;

/// Generates the text of `include/calc_plugin.h` from `sdk/src/abi/` and `sdk/cbindgen.toml`.
pub fn generate_plugin_header(root: &Path) -> Result<String, String> {
    let sdk = root.join("sdk");
    let mut config = cbindgen::Config::from_file(sdk.join("cbindgen.toml"))?;
    config.after_includes =
        Some(plugin_header_prelude(&workspace_version(root)?)? + PLUGIN_HEADER_MACROS);
    let mut builder = cbindgen::Builder::new().with_config(config);
    for module in [
        "version",
        "status",
        "entry",
        "host_api",
        "interface",
        "plugin",
    ] {
        builder = builder.with_src(sdk.join("src/abi").join(format!("{module}.rs")));
    }
    let bindings = builder.generate().map_err(|e| format!("cbindgen: {e}"))?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).map_err(|e| format!("cbindgen wrote non-UTF-8: {e}"))
}

/// Rules for every function of `calc_host.h`, placed after its `#include`s.
const HOST_HEADER_PRELUDE: &str = r#"
/*
 * libcalc_host: the calc plugin host for C and C++ programs. Link with -lcalc_host.
 *
 * Conventions:
 * - Every fallible function returns a calc_status_t: CALC_STATUS_OK (0); a status an operation
 *   reported (1-99, see calc_plugin.h); or a host status (100-199, CALC_STATUS_NULL_ARGUMENT and
 *   the ones below). Out-parameters (out_*) are written only on success.
 * - After each such call, calc_last_error_message() describes it on that thread (empty on
 *   success): the file and reason of a failed load, the column of a parse error, the operation
 *   and plugin of a failed call. Each such function NAME also has NAME_err, which takes one
 *   more argument, calc_error_t **out_error, and hands a failure to the caller as an error
 *   object it frees (calc_error_status, calc_error_message, calc_error_free): for callers whose
 *   consecutive calls may run on different threads, such as Go's goroutines. Since calc_host 1.4.
 * - Handles are opaque and come in _new/_free pairs. _free(NULL) does nothing. Freeing twice is
 *   undefined: set the pointer to NULL after freeing; any function given a NULL handle returns
 *   CALC_STATUS_NULL_ARGUMENT (or NULL / 0) instead of crashing.
 * - Thread tags: [thread-safe] functions may run concurrently with each other on the same handle;
 *   [exclusive] ones need the handle to themselves.
 * - Strings in and out are NUL-terminated UTF-8. Returned strings and structs are owned by the
 *   library; each function says until when they are valid. No panic or exception crosses the API.
 */"#;

/// Generates the text of `include/calc_host.h` from `host/src/capi/` and `host/cbindgen.toml`.
pub fn generate_host_header(root: &Path) -> Result<String, String> {
    let host = root.join("host");
    let mut config = cbindgen::Config::from_file(host.join("cbindgen.toml"))?;
    config.after_includes = Some(HOST_HEADER_PRELUDE.to_string());
    let mut builder = cbindgen::Builder::new().with_config(config);
    for module in ["error", "host", "op", "expr", "iface", "err"] {
        builder = builder.with_src(host.join("src/capi").join(format!("{module}.rs")));
    }
    let bindings = builder.generate().map_err(|e| format!("cbindgen: {e}"))?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).map_err(|e| format!("cbindgen wrote non-UTF-8: {e}"))
}

/// textlint's plugin interface header (the second application's, apps/textlint).
pub const TEXTLINT_HEADER: &str = "apps/textlint/include/textlint.h";

/// Generates textlint's header from `apps/textlint/interface/src/abi.rs` and its
/// `cbindgen.toml`, as an application does with `calc-abi header` (docs/INTERFACES.md).
pub fn generate_textlint_header(root: &Path) -> Result<String, String> {
    let crate_dir = root.join("apps/textlint/interface");
    calc_abi::generate::header(
        &[crate_dir.join("src/abi.rs")],
        &crate_dir.join("cbindgen.toml"),
        None,
    )
}

/// Every generated header: its path relative to the workspace root, and its expected text.
pub fn generated_headers(root: &Path) -> Result<Vec<(PathBuf, String)>, String> {
    Ok(vec![
        (
            PathBuf::from("include/calc_plugin.h"),
            generate_plugin_header(root)?,
        ),
        (
            PathBuf::from("include/calc_host.h"),
            generate_host_header(root)?,
        ),
        (
            PathBuf::from(TEXTLINT_HEADER),
            generate_textlint_header(root)?,
        ),
    ])
}
