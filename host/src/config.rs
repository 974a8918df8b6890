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
//!
//! [isolation]                           # see docs/ISOLATION.md
//! all = false                           # run every plugin in a runner process (--isolate)
//! timeout_ms = 1000                     # per-call limit (cooperative deadline in-process)
//!
//! [trust]                               # see docs/TRUST.md
//! keys = ["<base64 ed25519 public key>"]  # plugins must be signed by one of these
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
    #[serde(default)]
    trust: TrustSection,
    #[serde(default)]
    isolation: IsolationSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IsolationSection {
    all: Option<bool>,
    timeout_ms: Option<u64>,
    start_timeout_ms: Option<u64>,
    breaker_threshold: Option<u32>,
    cpu_limit_s: Option<u64>,
    memory_limit_mb: Option<u64>,
    runner: Option<PathBuf>,
    vet: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustSection {
    #[serde(default)]
    allow_insecure_permissions: bool,
    #[serde(default)]
    allow_symlinks: bool,
    #[serde(default)]
    keys: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginSection {
    enabled: Option<bool>,
    isolate: Option<bool>,
    timeout_ms: Option<u64>,
    cpu_limit_s: Option<u64>,
    memory_limit_mb: Option<u64>,
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

/// What a setting does with the name it holds (see [`Mention`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MentionRole {
    /// The plugin is disabled: `--disable NAME`, `[plugins.NAME] enabled = false`.
    Disable,
    /// The plugin wins conflicts: `--prefer NAME`, `prefer = [...]`.
    Prefer,
    /// The plugin gets other settings: a `[plugins.NAME]` section, `[versions] NAME`.
    Configure,
    /// The plugin serves this operation: `[operations.OP] provider`.
    Provider(String),
    /// The plugin is the rollout candidate of this operation: `[operations.OP] rollout`.
    Candidate(String),
    /// The name is an operation name or infix symbol, not a plugin: `[operations.NAME]`.
    Operation,
}

/// A name the settings hold and where it came from, so that a name that matches no plugin
/// (or, for [`MentionRole::Operation`], no operation) is reported naming the place (see
/// [`Settings::notices`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mention {
    /// The plugin (or operation) name.
    pub name: String,
    /// What the setting does with it.
    pub role: MentionRole,
    /// Where it came from, as shown in a warning: `--disable sbu`, or the file and the key,
    /// `calc.toml: [plugins.sbu]`.
    pub place: String,
}

/// What is known of the plugins found, for [`Settings::notices`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KnownPlugins {
    /// Plugins loaded or known (validated, to be started on first use).
    pub enabled: BTreeSet<String>,
    /// Plugins the settings disable.
    pub disabled: BTreeSet<String>,
    /// Plugins that described themselves and then failed (e.g. their `init` refused).
    pub failed: BTreeSet<String>,
    /// Every operation name and infix symbol some enabled or disabled plugin provides, and
    /// every interface id one implements.
    pub operations: BTreeSet<String>,
    /// The plugin serving each operation name or infix symbol.
    pub serving: BTreeMap<String, String>,
}

/// A candidate implementation serving a share of evaluations.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Rollout {
    /// The plugin whose implementation is being rolled out.
    pub candidate: String,
    /// Share of rollout keys it serves, 0 to 100.
    pub percent: f64,
}

/// Per-call limit of isolated plugins when none is configured.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1000);

/// Limit on starting an isolated plugin (loading, validation and `init`) when none is
/// configured.
pub const DEFAULT_START_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(5000);

/// Consecutive crashes or timeouts after which the circuit breaker disables a plugin, when
/// none is configured.
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 3;

/// The host's settings: from a config file, the command line, or code.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
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
    /// What plugin files must pass before they are opened (`[trust]`, see `docs/TRUST.md`).
    pub trust: crate::trust::TrustPolicy,
    /// Which plugins run in a runner process, and their limits (`[isolation]`, see
    /// `docs/ISOLATION.md`).
    pub isolation: IsolationSettings,
    /// Where the names above came from ([`Settings::parse`] and the CLI record them), for
    /// [`Settings::notices`].
    pub mentions: Vec<Mention>,
}

/// Process isolation settings (`[isolation]`, and `isolate`/`timeout_ms` in `[plugins.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IsolationSettings {
    /// Isolate every plugin (`all`, CLI `--isolate`).
    pub all: bool,
    /// Per-plugin choice, overriding `all` (`[plugins.NAME] isolate`).
    pub plugins: BTreeMap<String, bool>,
    /// Per-call limit for every plugin (`timeout_ms`; zero: none): enforced by killing the
    /// runner for isolated plugins, a cooperative deadline in-process. When unset, isolated
    /// calls get [`DEFAULT_TIMEOUT`] and in-process calls none.
    pub timeout: Option<std::time::Duration>,
    /// Per-plugin limits, overriding `timeout` (`[plugins.NAME] timeout_ms`).
    pub plugin_timeouts: BTreeMap<String, std::time::Duration>,
    /// Limit on starting an isolated plugin: loading, validation and `init` (`start_timeout_ms`).
    pub start_timeout: std::time::Duration,
    /// Consecutive crashes or timeouts that disable an isolated plugin (`breaker_threshold`;
    /// zero: never).
    pub breaker_threshold: u32,
    /// The runner executable (`runner`); by default found as `crate::isolation::find_runner`
    /// describes.
    pub runner: Option<PathBuf>,
    /// CPU time, in whole seconds, that each isolated plugin's runner may use in all
    /// (`cpu_limit_s`; `None` or zero: no limit). A runner that spends it is killed and the
    /// failure reported as "exceeded its CPU time limit"; the next call gets a new runner.
    pub cpu_limit: Option<std::time::Duration>,
    /// Per-plugin CPU limits, overriding `cpu_limit` (`[plugins.NAME] cpu_limit_s`).
    pub plugin_cpu_limits: BTreeMap<String, std::time::Duration>,
    /// Memory, in MiB, that each isolated plugin's runner (and what it forks) may use
    /// (`memory_limit_mb`; `None` or zero: no limit). A runner its cgroup's limit kills is
    /// reported as "memory limit exceeded"; see [`crate::isolation::memory_limit`] for the
    /// mechanisms.
    pub memory_limit_mb: Option<u64>,
    /// Per-plugin memory limits, overriding `memory_limit_mb`
    /// (`[plugins.NAME] memory_limit_mb`).
    pub plugin_memory_limits: BTreeMap<String, u64>,
    /// Whether plugin files are vetted in a child process before they are opened in this one
    /// (`vet`; see [`crate::vet`]).
    pub vet: VetMode,
}

/// When plugin files are vetted in a child process before this process opens them
/// (`[isolation] vet`): a file's initialisers and `plugin_entry` run, and its descriptor is
/// read, in the vetting child first, so that a file that crashes, exits or hangs there is
/// refused instead of taking the host down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VetMode {
    /// Vet when the runner is installed; without one, load in process as before vetting, with
    /// one warning (`"auto"`, the default).
    #[default]
    Auto,
    /// Vet every file; without a runner, refuse every file that is not vetted (`"always"`).
    Always,
    /// Never vet: validate files in this process (`"never"`).
    Never,
}

impl VetMode {
    /// The mode a setting's value names (`"auto"`, `"always"`, `"never"`).
    pub fn parse(value: &str) -> Option<VetMode> {
        match value {
            "auto" => Some(VetMode::Auto),
            "always" => Some(VetMode::Always),
            "never" => Some(VetMode::Never),
            _ => None,
        }
    }
}

impl Default for IsolationSettings {
    fn default() -> Self {
        IsolationSettings {
            all: false,
            plugins: BTreeMap::new(),
            timeout: None,
            plugin_timeouts: BTreeMap::new(),
            start_timeout: DEFAULT_START_TIMEOUT,
            breaker_threshold: DEFAULT_BREAKER_THRESHOLD,
            runner: None,
            cpu_limit: None,
            plugin_cpu_limits: BTreeMap::new(),
            memory_limit_mb: None,
            plugin_memory_limits: BTreeMap::new(),
            vet: VetMode::Auto,
        }
    }
}

impl IsolationSettings {
    /// Whether the plugin called `name` runs in a runner process.
    pub fn isolates(&self, name: &str) -> bool {
        self.plugins.get(name).copied().unwrap_or(self.all)
    }

    /// Whether any plugin may be isolated.
    pub fn any(&self) -> bool {
        self.all || self.plugins.values().any(|&on| on)
    }

    /// The memory limit of isolated plugin `name`, in MiB (`None`: no limit).
    pub fn memory_limit_mb(&self, name: &str) -> Option<u64> {
        self.plugin_memory_limits
            .get(name)
            .or(self.memory_limit_mb.as_ref())
            .filter(|mb| **mb > 0)
            .copied()
    }

    /// The CPU limit of isolated plugin `name` (`None`: no limit).
    pub fn cpu_limit(&self, name: &str) -> Option<std::time::Duration> {
        self.plugin_cpu_limits
            .get(name)
            .or(self.cpu_limit.as_ref())
            .filter(|t| !t.is_zero())
            .copied()
    }

    /// The per-call limit of plugin `name` (`None`: no limit) when it runs `isolated` or not.
    pub fn call_timeout(&self, name: &str, isolated: bool) -> Option<std::time::Duration> {
        let configured = self.plugin_timeouts.get(name).or(self.timeout.as_ref());
        match configured {
            Some(t) if t.is_zero() => None,
            Some(t) => Some(*t),
            None if isolated => Some(DEFAULT_TIMEOUT),
            None => None,
        }
    }
}

impl Settings {
    /// These settings with `trust` as the trust policy (a builder step: `Settings` is
    /// `#[non_exhaustive]`, so code outside this crate starts from [`Settings::default`] or
    /// [`Settings::parse`] and changes what it needs).
    pub fn with_trust(mut self, trust: crate::trust::TrustPolicy) -> Settings {
        self.trust = trust;
        self
    }

    /// These settings with `isolation` as the isolation settings (see [`Self::with_trust`]).
    pub fn with_isolation(mut self, isolation: IsolationSettings) -> Settings {
        self.isolation = isolation;
        self
    }

    /// These settings with `dir` added to the plugin directories (see [`Self::with_trust`]).
    pub fn with_plugin_dir(mut self, dir: impl Into<PathBuf>) -> Settings {
        self.plugin_dirs.push(dir.into());
        self
    }

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
        let at = path.display();
        let mut settings = Settings {
            plugin_dirs: file.plugin_dirs,
            prefer: file.prefer,
            ..Settings::default()
        };
        for name in settings.prefer.clone() {
            settings.mention(&name, MentionRole::Prefer, format!("{at}: prefer"));
        }
        settings.trust.allow_insecure_permissions = file.trust.allow_insecure_permissions;
        settings.trust.allow_symlinks = file.trust.allow_symlinks;
        for (i, key) in file.trust.keys.iter().enumerate() {
            let key = crate::trust::PublicKey::parse(key)
                .map_err(|reason| invalid(format!("trust.keys[{i}]"), reason))?;
            settings.trust.keys.push(key);
        }
        let iso = file.isolation;
        settings.isolation.all = iso.all.unwrap_or(false);
        settings.isolation.timeout = iso.timeout_ms.map(std::time::Duration::from_millis);
        if let Some(ms) = iso.start_timeout_ms {
            if ms == 0 {
                return Err(invalid(
                    "isolation.start_timeout_ms".into(),
                    "must be more than 0".into(),
                ));
            }
            settings.isolation.start_timeout = std::time::Duration::from_millis(ms);
        }
        if let Some(n) = iso.breaker_threshold {
            settings.isolation.breaker_threshold = n;
        }
        settings.isolation.runner = iso.runner;
        if let Some(mode) = iso.vet {
            settings.isolation.vet = VetMode::parse(&mode).ok_or_else(|| {
                invalid(
                    "isolation.vet".into(),
                    format!("{mode:?} is not one of \"auto\", \"always\", \"never\""),
                )
            })?;
        }
        settings.isolation.cpu_limit = iso.cpu_limit_s.map(std::time::Duration::from_secs);
        settings.isolation.memory_limit_mb = iso.memory_limit_mb;
        for (name, section) in file.plugins {
            let role = if section.enabled == Some(false) {
                settings.disabled.insert(name.clone());
                MentionRole::Disable
            } else {
                MentionRole::Configure
            };
            settings.mention(&name, role, format!("{at}: [plugins.{name}]"));
            if let Some(on) = section.isolate {
                settings.isolation.plugins.insert(name.clone(), on);
            }
            if let Some(ms) = section.timeout_ms {
                settings
                    .isolation
                    .plugin_timeouts
                    .insert(name.clone(), std::time::Duration::from_millis(ms));
            }
            if let Some(mb) = section.memory_limit_mb {
                settings
                    .isolation
                    .plugin_memory_limits
                    .insert(name.clone(), mb);
            }
            if let Some(secs) = section.cpu_limit_s {
                settings
                    .isolation
                    .plugin_cpu_limits
                    .insert(name.clone(), std::time::Duration::from_secs(secs));
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
            let place = format!("{at}: [versions] {name}");
            settings.mention(&name, MentionRole::Configure, place);
            settings.versions.insert(name, parsed);
        }
        for (op, section) in file.operations {
            settings.mention(
                &op,
                MentionRole::Operation,
                format!("{at}: [operations.{op}]"),
            );
            if let Some(provider) = section.provider {
                let place = format!("{at}: [operations.{op}] provider");
                settings.mention(&provider, MentionRole::Provider(op.clone()), place);
                settings.providers.insert(op.clone(), provider);
            }
            if let Some(r) = section.rollout {
                if !(0.0..=100.0).contains(&r.percent) {
                    return Err(invalid(
                        format!("operations.{op}.rollout.percent"),
                        format!("{} is not between 0 and 100", r.percent),
                    ));
                }
                let place = format!("{at}: [operations.{op}] rollout candidate");
                settings.mention(&r.candidate, MentionRole::Candidate(op.clone()), place);
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

    /// Records where a name came from (see [`Mention`]); the CLI records its flags this way.
    pub fn mention(&mut self, name: &str, role: MentionRole, place: String) {
        self.mentions.push(Mention {
            name: name.to_string(),
            role,
            place,
        });
    }

    /// Every name the settings hold, with where it came from: the recorded [`Mention`]s, and
    /// for names set in code without one, the field they are in (`settings: prefer`).
    pub fn all_mentions(&self) -> Vec<Mention> {
        let mut all = self.mentions.clone();
        let mut add = |name: &str, role: MentionRole, place: String| {
            if !all.iter().any(|m| m.name == name && m.role == role) {
                all.push(Mention {
                    name: name.to_string(),
                    role,
                    place,
                });
            }
        };
        for name in &self.prefer {
            add(name, MentionRole::Prefer, "settings: prefer".into());
        }
        for name in &self.disabled {
            add(name, MentionRole::Disable, "settings: disabled".into());
        }
        for (op, name) in &self.providers {
            let place = format!("settings: provider of {op}");
            add(name, MentionRole::Provider(op.clone()), place);
        }
        for (op, r) in &self.rollouts {
            let place = format!("settings: rollout candidate of {op}");
            add(&r.candidate, MentionRole::Candidate(op.clone()), place);
        }
        all
    }

    /// One warning per name in the settings that matches no plugin (or operation) in `known`,
    /// naming the name and where it came from, e.g. `--disable sbu: no plugin named sbu (did
    /// you mean sub?)`; and per preferred plugin, provider or rollout candidate that is
    /// disabled or failed, saying who serves instead. A disabled or failed plugin named by
    /// another setting is not warned about (its state is reported already).
    pub fn notices(&self, known: &KnownPlugins) -> Vec<String> {
        // Who serves instead; unsaid for a plugin known but not started yet (lazy loading).
        let serving = |op: &str| match known.serving.get(op) {
            Some(p) => format!("; {op} is served by {p}"),
            None if known.operations.contains(op) => String::new(),
            None => format!("; no plugin provides {op}"),
        };
        let mut out: Vec<String> = Vec::new();
        for m in self.all_mentions() {
            let name = &m.name;
            let line = if m.role == MentionRole::Operation {
                if known.operations.contains(name) {
                    continue;
                }
                format!("{}: no plugin provides an operation named {name}", m.place)
            } else {
                let (why, missing) = if known.enabled.contains(name) {
                    continue;
                } else if known.disabled.contains(name) {
                    (format!("plugin {name} is disabled"), false)
                } else if known.failed.contains(name) {
                    (format!("plugin {name} failed to load"), false)
                } else {
                    (
                        format!("no plugin named {name}{}", did_you_mean(name, known)),
                        true,
                    )
                };
                match &m.role {
                    MentionRole::Provider(op) | MentionRole::Candidate(op) => {
                        format!("{}: {why}{}", m.place, serving(op))
                    }
                    MentionRole::Prefer => format!("{}: {why}", m.place),
                    _ if missing => format!("{}: {why}", m.place),
                    _ => continue,
                }
            };
            if !out.contains(&line) {
                out.push(line);
            }
        }
        out
    }

    /// How strongly these settings want `plugin` to serve an operation known by `keys` (its
    /// name and, for an operator, its symbol, for the name's slot and the symbol's alike): 0
    /// for the configured provider, `1 + i` for the `i`-th preferred plugin, else `load_rank`
    /// (its place in load order). Lower is stronger; the flag says whether the settings decided
    /// it. The manager and the cached listing both rank with this, so they always agree.
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

    /// The rollout configured for the operation called `name` (with infix `symbol`, if it is
    /// an operator), and the key it is configured under: the name's entry, else the symbol's.
    /// The name and the symbol are one operation: calls spelled either way find the same
    /// rollout, and the key (with the rollout key) decides each bucket.
    pub fn rollout(&self, name: &str, symbol: Option<&str>) -> Option<(&str, &Rollout)> {
        self.rollouts
            .get_key_value(name)
            .or_else(|| symbol.and_then(|s| self.rollouts.get_key_value(s)))
            .map(|(k, r)| (k.as_str(), r))
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

/// ` (did you mean NAME?)` for the known plugin closest to `name`, when one is close.
fn did_you_mean(name: &str, known: &KnownPlugins) -> String {
    known
        .enabled
        .iter()
        .chain(&known.disabled)
        .chain(&known.failed)
        .map(|k| (strsim::damerau_levenshtein(name, k), k))
        .filter(|(edits, _)| *edits <= (name.chars().count() / 3).max(1))
        .min_by_key(|(edits, _)| *edits)
        .map(|(_, k)| format!(" (did you mean {k}?)"))
        .unwrap_or_default()
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
    fn trust_section_parses_and_names_a_bad_key() {
        let key = crate::trust::SecretKey::generate().unwrap().public();
        let s = parse(&format!(
            "[trust]\nallow_insecure_permissions = true\nallow_symlinks = true\nkeys = [\"{key}\"]\n"
        ))
        .unwrap();
        assert!(s.trust.allow_insecure_permissions && s.trust.allow_symlinks);
        assert_eq!(s.trust.keys, [key]);
        let e = parse(&format!("[trust]\nkeys = [\"{key}\", \"AAAA\"]\n"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "calc.toml: invalid configuration: trust.keys[1]: not an ed25519 public key: 3 bytes, expected 32"
        );
    }

    #[test]
    fn vetting_mode_parses_and_names_a_bad_value() {
        assert_eq!(parse("").unwrap().isolation.vet, VetMode::Auto);
        for (text, mode) in [
            ("auto", VetMode::Auto),
            ("always", VetMode::Always),
            ("never", VetMode::Never),
        ] {
            let s = parse(&format!("[isolation]\nvet = \"{text}\"\n")).unwrap();
            assert_eq!(s.isolation.vet, mode);
        }
        let e = parse("[isolation]\nvet = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "calc.toml: invalid configuration: isolation.vet: \"sometimes\" is not one of \"auto\", \"always\", \"never\""
        );
    }

    #[test]
    fn isolation_settings_parse_and_resolve_per_plugin() {
        let s = parse(
            "[isolation]\nall = true\ntimeout_ms = 300\nbreaker_threshold = 5\n\
             start_timeout_ms = 2000\nrunner = \"/opt/calc/libexec/calc-plugin-runner\"\n\
             [plugins.fast]\nisolate = false\n[plugins.slow]\ntimeout_ms = 0\n",
        )
        .unwrap();
        let iso = &s.isolation;
        assert!(iso.isolates("any") && !iso.isolates("fast"));
        assert_eq!(
            iso.call_timeout("any", true),
            Some(std::time::Duration::from_millis(300))
        );
        assert_eq!(iso.call_timeout("slow", true), None);
        assert_eq!(iso.breaker_threshold, 5);
        assert_eq!(iso.start_timeout, std::time::Duration::from_secs(2));
        assert_eq!(
            iso.runner.as_deref(),
            Some(Path::new("/opt/calc/libexec/calc-plugin-runner"))
        );
        let d = parse("[plugins.p]\nisolate = true\n").unwrap().isolation;
        assert!(d.any() && d.isolates("p") && !d.isolates("q"));
        assert_eq!(d.call_timeout("p", true), Some(DEFAULT_TIMEOUT));
        assert_eq!(d.call_timeout("q", false), None);
        let e = parse("[isolation]\nstart_timeout_ms = 0\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "calc.toml: invalid configuration: isolation.start_timeout_ms: must be more than 0"
        );
    }

    #[test]
    fn names_that_match_no_plugin_are_reported_with_their_place() {
        let s = parse(
            "prefer = [\"pwo\"]\n[plugins.sbu]\n[versions]\nsub = \"^1\"\n\
             [operations.pow]\nprovider = \"off\"\n",
        )
        .unwrap();
        let known = KnownPlugins {
            enabled: ["sub".to_string(), "pow".to_string()].into(),
            disabled: ["off".to_string()].into(),
            operations: ["pow".to_string()].into(),
            serving: [("pow".to_string(), "pow".to_string())].into(),
            ..KnownPlugins::default()
        };
        assert_eq!(
            s.notices(&known),
            [
                "calc.toml: prefer: no plugin named pwo (did you mean pow?)",
                "calc.toml: [plugins.sbu]: no plugin named sbu (did you mean sub?)",
                "calc.toml: [operations.pow] provider: plugin off is disabled; pow is served by pow",
            ]
        );
        // Names set in code name their field.
        let s = Settings {
            prefer: vec!["zzz".into()],
            ..Settings::default()
        };
        assert_eq!(s.notices(&known), ["settings: prefer: no plugin named zzz"]);
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(parse("").unwrap(), Settings::default());
    }
}
