//! Plugin files: which files of a directory are shared libraries, in load order. The bottom
//! layer: it imports nothing of the host.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// The shared libraries directly inside `dir`, sorted by path (the load order).
pub fn library_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_library_file(p))
        .collect();
    files.sort();
    Ok(files)
}

/// Whether `path` has the platform's shared-library file extension.
pub fn is_library_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == std::env::consts::DLL_EXTENSION)
}
