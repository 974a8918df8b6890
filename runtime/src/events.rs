//! What the host reports as plugins come and go: loads, reloads, failures, removals, and
//! whether an old library was really unmapped.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

/// One change in the set of loaded plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostEvent {
    /// A new plugin file was loaded.
    Loaded {
        /// Plugin name.
        name: String,
        /// Its version.
        version: String,
        /// The file.
        path: PathBuf,
    },
    /// A plugin file was found (or changed) but the settings disable that plugin: it is listed,
    /// not loaded.
    Disabled {
        /// Plugin name.
        name: String,
        /// The file.
        path: PathBuf,
    },
    /// A changed plugin file replaced the running version; calls already in flight finish on the
    /// old one.
    Reloaded {
        /// Plugin name.
        name: String,
        /// The version that was serving.
        old_version: String,
        /// The version serving now.
        new_version: String,
        /// Bytes of state the old version handed over (`None`: it handed none).
        state_bytes: Option<usize>,
        /// From opening the new file to the swap.
        elapsed: Duration,
    },
    /// A file could not be (re)loaded; whatever was serving keeps serving.
    Failed {
        /// The file.
        path: PathBuf,
        /// One line: the reason.
        error: String,
    },
    /// A plugin file disappeared: its operations are no longer offered.
    Removed {
        /// Plugin name.
        name: String,
        /// The file.
        path: PathBuf,
    },
    /// An old version was shut down and closed after its last call returned.
    Unloaded {
        /// Plugin name.
        name: String,
        /// The version that was unloaded.
        version: String,
        /// Whether its library is gone from the process: `dlopen` with `RTLD_NOLOAD` no longer
        /// finds it and, for a private copy (hot-reload mode), no mapping of the file is left.
        /// `None` for a plugin that ran in a runner process (the runner exits).
        unmapped: Option<bool>,
    },
}

impl std::fmt::Display for HostEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostEvent::Loaded { name, version, path } => write!(f, "loaded {name} {version} from {}", path.display()),
            HostEvent::Reloaded {
                name,
                old_version,
                new_version,
                state_bytes,
                elapsed,
            } => {
                write!(f, "reloaded {name} {old_version} -> {new_version} in {:.1} ms", elapsed.as_secs_f64() * 1e3)?;
                match state_bytes {
                    Some(1) => write!(f, " (1 byte of state handed over)"),
                    Some(n) => write!(f, " ({n} bytes of state handed over)"),
                    None => Ok(()),
                }
            }
            HostEvent::Disabled { name, path } => {
                write!(f, "skipped {name} from {}: disabled by the settings", path.display())
            }
            HostEvent::Failed { path, error } => write!(f, "could not load {}: {error}", path.display()),
            HostEvent::Removed { name, path } => write!(f, "removed {name} ({} deleted)", path.display()),
            HostEvent::Unloaded { name, version, unmapped } => match unmapped {
                Some(true) => write!(f, "unloaded {name} {version}: code unmapped"),
                Some(false) => write!(f, "unloaded {name} {version}, but its library is STILL MAPPED (see docs/RELOAD.md)"),
                None => write!(f, "unloaded {name} {version}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_says_how_much_state_was_handed_over_in_words_that_agree() {
        let reloaded = |state_bytes| HostEvent::Reloaded {
            name: "tabs".into(),
            old_version: "1.0.0".into(),
            new_version: "2.0.0".into(),
            state_bytes,
            elapsed: Duration::from_micros(1500),
        };
        let base = "reloaded tabs 1.0.0 -> 2.0.0 in 1.5 ms";
        assert_eq!(reloaded(None).to_string(), base);
        assert_eq!(
            reloaded(Some(1)).to_string(),
            format!("{base} (1 byte of state handed over)")
        );
        assert_eq!(
            reloaded(Some(0)).to_string(),
            format!("{base} (0 bytes of state handed over)")
        );
        assert_eq!(
            reloaded(Some(24)).to_string(),
            format!("{base} (24 bytes of state handed over)")
        );
    }
}
