//! Host configuration: which plugins are enabled, which versions are acceptable, which
//! implementation serves an operation, gradual rollouts, and the values each plugin can read.
//!
//! Read from a TOML file (see `docs/CONFIG.md` for the full reference):
//!
//! ```toml
//! plugin_dirs = ["/opt/calc/plugins"]   # searched after --plugin-dir and CALC_PLUGIN_PATH
//! prefer = ["fastpow"]                  # wins every conflict, in this order
//!
//! [plugins.sub]
//! enabled = false                       # validated and listed, never initialised
//!
//! [plugins.pow.config]                  # values the plugin reads through get_config
//! precision = "3"
//!
//! [versions]                            # semver requirements on plugin versions
//! pow = ">=2, <3"
//!
//! [operations.pow]
//! provider = "fastpow"                  # this plugin serves `pow`; the others are fallbacks
//! rollout = { candidate = "pow_v2", percent = 10 }
//! ```
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration file was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: cannot read configuration: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("{path}: invalid configuration: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is out of range or does not parse.
    #[error("{path}: invalid configuration: {field}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, e.g. `versions.pow`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    plugin_dirs: Vec<PathBuf>,
    #[serde(default)]
    prefer: Vec<String>,
    #[serde(default)]
    plugins: BTreeMap<String, PluginSection>,
    #[serde(default)]
    versions: BTreeMap<String, String>,
    #[serde(default)]
    operations: BTreeMap<String, OperationSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginSection {
    enabled: Option<bool>,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperationSection {
    provider: Option<String>,
    rollout: Option<RolloutSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutSection {
    candidate: String,
    percent: f64,
}

/// A candidate implementation serving a share of evaluations.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// The plugin whose implementation is being rolled out.
    pub candidate: String,
    /// Share of rollout keys it serves, 0 to 100.
    pub percent: f64,
}

/// The host's settings: from a config file, the command line, or code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// Extra plugin directories.
    pub plugin_dirs: Vec<PathBuf>,
    /// Plugins that are not initialised (still validated and listed).
    pub disabled: BTreeSet<String>,
    /// Plugins that win conflicts, highest priority first.
    pub prefer: Vec<String>,
    /// Required version ranges, by plugin name.
    pub versions: BTreeMap<String, semver::VersionReq>,
    /// Configuration values, by plugin name then key.
    pub plugin_config: BTreeMap<String, BTreeMap<String, String>>,
    /// The plugin that serves an operation, by operation name (or infix symbol).
    pub providers: BTreeMap<String, String>,
    /// Gradual rollouts, by operation name (or infix symbol).
    pub rollouts: BTreeMap<String, Rollout>,
}

impl Settings {
    /// Parses configuration text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Settings, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let invalid = |field: String, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            reason,
        };
        let mut settings = Settings {
            plugin_dirs: file.plugin_dirs,
            prefer: file.prefer,
            ..Settings::default()
        };
        for (name, section) in file.plugins {
            if section.enabled == Some(false) {
                settings.disabled.insert(name.clone());
            }
            let values = section
                .config
                .into_iter()
                .map(|(k, v)| {
                    let text = match v {
                        toml::Value::String(s) => s,
                        toml::Value::Integer(_)
                        | toml::Value::Float(_)
                        | toml::Value::Boolean(_) => v.to_string(),
                        other => {
                            return Err(invalid(
                                format!("plugins.{name}.config.{k}"),
                                format!(
                                    "must be a string, number or boolean, not {}",
                                    other.type_str()
                                ),
                            ))
                        }
                    };
                    Ok((k, text))
                })
                .collect::<Result<BTreeMap<_, _>, _>>()?;
            if !values.is_empty() {
                settings.plugin_config.insert(name, values);
            }
        }
        for (name, req) in file.versions {
            let parsed = semver::VersionReq::parse(&req).map_err(|e| {
                invalid(
                    format!("versions.{name}"),
                    format!("{req:?} is not a semver requirement: {e}"),
                )
            })?;
            settings.versions.insert(name, parsed);
        }
        for (op, section) in file.operations {
            if let Some(provider) = section.provider {
                settings.providers.insert(op.clone(), provider);
            }
            if let Some(r) = section.rollout {
                if !(0.0..=100.0).contains(&r.percent) {
                    return Err(invalid(
                        format!("operations.{op}.rollout.percent"),
                        format!("{} is not between 0 and 100", r.percent),
                    ));
                }
                settings.rollouts.insert(
                    op,
                    Rollout {
                        candidate: r.candidate,
                        percent: r.percent,
                    },
                );
            }
        }
        Ok(settings)
    }

    /// How strongly these settings want `plugin` to serve an operation known by `keys` (its
    /// name and, for an operator, its symbol): 0 for the configured provider, `1 + i` for the
    /// `i`-th preferred plugin, else `load_rank` (its place in load order). Lower is stronger;
    /// the flag says whether the settings decided it. The manager and the cached listing both
    /// rank with this, so they always agree.
    pub fn rank(&self, keys: &[&str], plugin: &str, load_rank: u64) -> (u64, bool) {
        if keys
            .iter()
            .any(|k| self.providers.get(*k).is_some_and(|p| p == plugin))
        {
            return (0, true);
        }
        match self.prefer.iter().position(|p| p == plugin) {
            Some(i) => (1 + i as u64, true),
            None => (load_rank, false),
        }
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The default configuration file: `$XDG_CONFIG_HOME/calc/config.toml`, or
    /// `~/.config/calc/config.toml`.
    pub fn default_path() -> Option<PathBuf> {
        std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
            .map(|d| d.join("calc/config.toml"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::parse(text, Path::new("calc.toml"))
    }

    #[test]
    fn full_example_parses() {
        let s = parse(
            r#"
            plugin_dirs = ["/opt/p"]
            prefer = ["fastpow"]
            [plugins.sub]
            enabled = false
            [plugins.pow.config]
            precision = "3"
            scale = 2
            [versions]
            pow = ">=2, <3"
            [operations.pow]
            provider = "fastpow"
            rollout = { candidate = "pow_v2", percent = 12.5 }
            "#,
        )
        .unwrap();
        assert_eq!(s.plugin_dirs, [PathBuf::from("/opt/p")]);
        assert_eq!(s.prefer, ["fastpow"]);
        assert!(s.disabled.contains("sub"));
        assert_eq!(s.plugin_config["pow"]["precision"], "3");
        assert_eq!(s.plugin_config["pow"]["scale"], "2");
        assert!(s.versions["pow"].matches(&semver::Version::new(2, 5, 0)));
        assert!(!s.versions["pow"].matches(&semver::Version::new(3, 0, 0)));
        assert_eq!(s.providers["pow"], "fastpow");
        assert_eq!(
            s.rollouts["pow"],
            Rollout {
                candidate: "pow_v2".into(),
                percent: 12.5
            }
        );
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let e = parse("[plugins.x]\nenabld = false\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("calc.toml: invalid configuration: "), "{e}");
        assert!(e.contains("enabld"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        let e = parse("[versions]\npow = \"two\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("calc.toml: invalid configuration: versions.pow: \"two\" is not a semver requirement"), "{e}");
        let e = parse("[operations.pow]\nrollout = { candidate = \"b\", percent = 150 }\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "calc.toml: invalid configuration: operations.pow.rollout.percent: 150 is not between 0 and 100");
        let e = parse("[plugins.p.config]\nx = [1]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("plugins.p.config.x: must be a string, number or boolean, not array"),
            "{e}"
        );
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(parse("").unwrap(), Settings::default());
    }
}
