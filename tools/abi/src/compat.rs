//! Append-only evolution of C headers: today's header may add structs, fields at the end,
//! constants, typedefs and functions to what a frozen header (the one released) declares, and
//! change nothing of it. Read by clang, so sizes, alignments and offsets are the compiler's.

use std::path::{Path, PathBuf};

use crate::c_header::{headers_in, parse_header_in, Header};

/// The constants whose values may change between releases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Constants that must still exist but may take any value (version strings and numbers).
    pub free: Vec<String>,
    /// Integer constants that may only grow (an interface's minor version).
    pub growing: Vec<String>,
}

impl Rules {
    /// The rules of an interface whose minor version is the constant `minor`: it may only
    /// grow; every other constant is frozen.
    pub fn with_minor(minor: &str) -> Rules {
        Rules {
            free: Vec::new(),
            growing: vec![minor.to_string()],
        }
    }
}

/// Every way `today` is not an append-only extension of `frozen`, one line each; empty when it
/// is. Constants must keep their values, but for those `rules` lets move.
pub fn breaking_changes(frozen: &Header, today: &Header, rules: &Rules) -> Vec<String> {
    let mut out = Vec::new();
    for (name, old) in &frozen.structs {
        let Some(new) = today.structs.get(name) else {
            out.push(format!("struct {name} was removed"));
            continue;
        };
        if let (Some(old_size), Some(new_size)) = (old.size, new.size) {
            if new_size < old_size {
                out.push(format!(
                    "struct {name} shrank from {old_size} to {new_size} bytes"
                ));
            }
        }
        if old.align.is_some() && new.align != old.align {
            out.push(format!(
                "struct {name}: alignment changed from {} to {}",
                number(old.align),
                number(new.align)
            ));
        }
        for f in &old.fields {
            let Some(g) = new.fields.iter().find(|g| g.name == f.name) else {
                out.push(format!("field {name}.{} was removed", f.name));
                continue;
            };
            if g.offset != f.offset {
                out.push(format!(
                    "field {name}.{} moved from offset {} to {}",
                    f.name,
                    number(f.offset),
                    number(g.offset)
                ));
            }
            if g.ty != f.ty {
                out.push(format!(
                    "field {name}.{}: type changed from `{}` to `{}`",
                    f.name, f.ty, g.ty
                ));
            }
        }
        // A new field must start at or after the frozen size: one placed in the old tail
        // padding would look present to a reader checking `struct_size` of an old plugin.
        if let Some(old_size) = old.size {
            for g in &new.fields {
                let is_new = !old.fields.iter().any(|f| f.name == g.name);
                if is_new && g.offset.is_some_and(|o| o < old_size) {
                    out.push(format!(
                        "new field {name}.{} at offset {} is inside the frozen {old_size} bytes",
                        g.name,
                        g.offset.unwrap_or_default()
                    ));
                }
            }
        }
    }
    for (name, old) in &frozen.constants {
        match today.constants.get(name) {
            None => out.push(format!("constant {name} was removed")),
            Some(new) if rules.growing.iter().any(|g| g == name) => {
                match (old.parse::<i128>(), new.parse::<i128>()) {
                    (Ok(o), Ok(n)) if n >= o => {}
                    _ => out.push(format!("constant {name} went from {old} to {new}")),
                }
            }
            Some(_) if rules.free.iter().any(|g| g == name) => {}
            Some(new) if new != old => {
                out.push(format!("constant {name} changed from {old} to {new}"))
            }
            Some(_) => {}
        }
    }
    for (what, old_items, new_items) in [
        ("typedef", &frozen.typedefs, &today.typedefs),
        ("function", &frozen.functions, &today.functions),
    ] {
        for (name, old) in old_items {
            match new_items.get(name) {
                None => out.push(format!("{what} {name} was removed")),
                Some(new) if new != old => {
                    out.push(format!("{what} {name} changed from `{old}` to `{new}`"))
                }
                Some(_) => {}
            }
        }
    }
    out
}

/// A size, alignment or offset clang reported, or "unknown".
fn number(n: Option<usize>) -> String {
    n.map_or_else(|| "unknown".into(), |n| n.to_string())
}

/// Compares every header frozen under `frozen_root` (in release folders `v<MAJOR>.<MINOR>/`)
/// with the header of the same name in `include`: the breaking changes, each line naming the
/// frozen header, and the number of headers compared. `search` holds the folders of the
/// headers they include (`calc_plugin.h`). A frozen header with no counterpart today is a
/// breaking change; a folder without headers is an error.
pub fn check_frozen(
    frozen_root: &Path,
    include: &Path,
    rules: &Rules,
    search: &[PathBuf],
) -> Result<(Vec<String>, usize), String> {
    let mut breaks = Vec::new();
    let mut compared = 0;
    for dir in release_dirs(frozen_root)? {
        let headers = headers_in(&dir)?;
        if headers.is_empty() {
            return Err(format!("{}: no frozen headers in it", dir.display()));
        }
        for frozen in headers {
            let name = frozen.file_name().unwrap_or_default();
            let today = include.join(name);
            if !today.is_file() {
                breaks.push(format!(
                    "{}: released, but {} no longer exists",
                    frozen.display(),
                    today.display()
                ));
                continue;
            }
            let (old, new) = (
                parse_header_in(&frozen, search)?,
                parse_header_in(&today, search)?,
            );
            if old.structs.is_empty() && old.functions.is_empty() && old.constants.is_empty() {
                return Err(format!("{}: clang found nothing in it", frozen.display()));
            }
            breaks.extend(
                breaking_changes(&old, &new, rules)
                    .into_iter()
                    .map(|b| format!("{} -> {}: {b}", frozen.display(), today.display())),
            );
            compared += 1;
        }
    }
    Ok((breaks, compared))
}

/// The release folders `v<MAJOR>.<MINOR>` directly under `root`, sorted by version.
pub fn release_dirs(root: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("{}: {e}", root.display()))?
            .path();
        let version = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix('v'))
            .and_then(|v| v.split_once('.'))
            .and_then(|(major, minor)| {
                Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?))
            });
        if let (true, Some(version)) = (path.is_dir(), version) {
            dirs.push((version, path));
        }
    }
    if dirs.is_empty() {
        return Err(format!(
            "{}: no release folders (v<MAJOR>.<MINOR>) in it",
            root.display()
        ));
    }
    dirs.sort();
    Ok(dirs.into_iter().map(|(_, path)| path).collect())
}
