//! C headers from `#[repr(C)]` Rust definitions, through cbindgen.

use std::path::{Path, PathBuf};

/// Generates a C header from the Rust `sources` (files, parsed as they are: no build, no
/// `cargo metadata`) with the cbindgen configuration `config` (a `cbindgen.toml`), and
/// `after_includes` (text placed after the `#include`s) when given, replacing the
/// configuration's. Types the sources use but do not define (`calc_bytes_fn`) are written by
/// name, for a header the configuration includes (`includes = ["calc_plugin.h"]`).
pub fn header(
    sources: &[PathBuf],
    config: &Path,
    after_includes: Option<String>,
) -> Result<String, String> {
    let mut config =
        cbindgen::Config::from_file(config).map_err(|e| format!("{}: {e}", config.display()))?;
    if after_includes.is_some() {
        config.after_includes = after_includes;
    }
    let mut builder = cbindgen::Builder::new().with_config(config);
    for source in sources {
        if !source.is_file() {
            return Err(format!("{}: no such file", source.display()));
        }
        builder = builder.with_src(source);
    }
    let bindings = builder.generate().map_err(|e| format!("cbindgen: {e}"))?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).map_err(|e| format!("cbindgen wrote non-UTF-8: {e}"))
}

/// What writing `text` to `path` would change: `None` when the file already holds exactly
/// `text`, else a one-line reason.
pub fn drift(path: &Path, text: &str) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(current) if current == text => None,
        Ok(_) => Some(format!("{}: out of date", path.display())),
        Err(e) => Some(format!("{}: {e}", path.display())),
    }
}
