//! The plugin manager: loads plugin files and directories, applies the settings (enable/disable,
//! version ranges, preferred providers, rollouts), keeps what loaded, remembers what failed and
//! why, and resolves operation names and symbols.
//!
//! Every operation name (and every infix symbol) has a slot listing the plugins that provide it,
//! best first: the provider configured for that operation, then plugins in `prefer` order, then
//! load order. The first serves; a rollout candidate serves a deterministic share of rollout
//! keys; when the serving implementation fails internally (panic or unspecified error) the next
//! one serves that call, and the switch is logged.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use calc_sdk::Status;

use crate::config::Settings;
use crate::error::{CallError, EvalError, LoadError};
use crate::expr;
use crate::info::PluginInfo;
use crate::loader::{self, LoadedPlugin, OpHandle};

/// A file that could not be loaded, and why.
#[derive(Debug)]
pub struct LoadFailure {
    /// The file (or directory).
    pub path: PathBuf,
    /// The reason.
    pub error: LoadError,
}

/// Two plugins provide the same operation name or infix symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// `"operation add"` or `"operator +"`.
    pub what: String,
    /// The plugin that serves it.
    pub winner: String,
    /// The plugin whose implementation is only a fallback.
    pub shadowed: String,
    /// Whether the settings chose the winner; otherwise it was loaded first.
    pub explicit: bool,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is provided by both {} and {}; using {} ({})",
            self.what,
            self.winner,
            self.shadowed,
            self.winner,
            if self.explicit {
                "configured"
            } else {
                "loaded first"
            }
        )
    }
}

/// Call and error counts of one implementation (plugin and operation), counted by the
/// manager's evaluation paths ([`PluginManager::eval`], [`PluginManager::call`]); direct
/// [`OpHandle::call`]s are not counted.
#[derive(Debug, Default)]
pub struct ImplStats {
    calls: AtomicU64,
    errors: AtomicU64,
}

impl ImplStats {
    /// Calls made.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Calls that returned an error.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// One implementation of an operation in a slot.
#[derive(Debug, Clone)]
pub struct Provider {
    handle: OpHandle,
    stats: Arc<ImplStats>,
    rank: u64,
}

impl Provider {
    /// The operation handle.
    pub fn handle(&self) -> &OpHandle {
        &self.handle
    }

    fn call(&self, args: &[f64]) -> Result<f64, CallError> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.handle.call(args);
        if result.is_err() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

/// The providers of one operation name or infix symbol, best first, with its rollout.
#[derive(Debug, Clone)]
pub struct OpSlot {
    key: String,
    providers: Vec<Provider>,
    /// Index of the rollout candidate in `providers`, and the percentage of keys it serves.
    rollout: Option<(usize, f64)>,
}

/// A stable 64-bit FNV-1a hash, for rollout keys (the same key gives the same bucket in every
/// build and on every machine).
pub fn rollout_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Statuses that mean the implementation itself failed, so another provider may serve.
fn is_internal(e: &CallError) -> bool {
    matches!(e.status, Status::Panic | Status::Error)
}

impl OpSlot {
    /// The implementation that serves calls without a rollout.
    pub fn primary(&self) -> &OpHandle {
        &self.providers[0].handle
    }

    /// All providers, best first.
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// Index of the provider that serves rollout key hash `key`.
    fn choose(&self, key: u64) -> usize {
        let Some((candidate, percent)) = self.rollout else {
            return 0;
        };
        let control = usize::from(candidate == 0 && self.providers.len() > 1);
        let mut bytes = key.to_le_bytes().to_vec();
        bytes.extend_from_slice(self.key.as_bytes());
        let bucket = (rollout_hash(&bytes) % 10_000) as f64 / 100.0;
        if bucket < percent {
            candidate
        } else {
            control
        }
    }

    /// Calls the implementation chosen for rollout key hash `key`, falling back to the next
    /// providers in order when it fails internally.
    pub fn call(&self, args: &[f64], key: u64) -> Result<f64, CallError> {
        let first = self.choose(key);
        let result = self.providers[first].call(args);
        let Err(error) = &result else {
            return result;
        };
        if !is_internal(error) {
            return result;
        }
        let mut last = result;
        let mut failed = &self.providers[first];
        for (i, next) in self.providers.iter().enumerate() {
            if i == first {
                continue;
            }
            if let Err(e) = &last {
                tracing::warn!(
                    "{}: {} failed ({}); falling back to {}",
                    self.key,
                    failed.handle.plugin().name,
                    e.message,
                    next.handle.plugin().name
                );
            }
            last = next.call(args);
            match &last {
                Err(e) if is_internal(e) => failed = next,
                _ => return last,
            }
        }
        last
    }
}

/// Whether `path` has the platform's shared-library file extension.
pub fn is_library_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == std::env::consts::DLL_EXTENSION)
}

/// Loaded plugins and the operations they provide.
///
/// Plugins are shut down in reverse load order when the manager is dropped (handles cloned out
/// of it keep their plugin alive until they are dropped too).
#[derive(Default)]
pub struct PluginManager {
    settings: Settings,
    plugins: Vec<Arc<LoadedPlugin>>,
    disabled: Vec<PluginInfo>,
    failures: Vec<LoadFailure>,
    conflicts: Vec<Conflict>,
    by_name: HashMap<String, Arc<OpSlot>>,
    by_symbol: HashMap<String, Arc<OpSlot>>,
    stats: BTreeMap<(String, String), Arc<ImplStats>>,
    loads: u64,
}

impl std::fmt::Debug for PluginManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginManager")
            .field(
                "plugins",
                &self
                    .plugins
                    .iter()
                    .map(|p| &p.info().name)
                    .collect::<Vec<_>>(),
            )
            .field("failures", &self.failures.len())
            .finish()
    }
}

impl PluginManager {
    /// An empty manager with default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty manager with these settings.
    pub fn with_settings(settings: Settings) -> Self {
        let mut manager = Self::default();
        manager.settings = settings;
        manager
    }

    /// Replaces the settings. They apply to plugins loaded afterwards; plugins already loaded
    /// keep the configuration they were initialised with.
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Sets a configuration value for the plugin named `plugin`, readable by it through the host
    /// services (`get_config`). Takes effect for plugins loaded afterwards.
    pub fn set_plugin_config(&mut self, plugin: &str, key: &str, value: &str) {
        self.settings
            .plugin_config
            .entry(plugin.to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
    }

    /// Loads one plugin file. A plugin disabled by the settings is validated and listed by
    /// [`Self::disabled`] but not initialised; that is not an error. On failure the error is
    /// also recorded in [`Self::failures`].
    pub fn load_file(&mut self, path: &Path) -> Result<&PluginInfo, &LoadError> {
        match self.try_load(path) {
            Ok(Loaded::Enabled(i)) => Ok(self.plugins[i].info()),
            Ok(Loaded::Disabled(i)) => Ok(&self.disabled[i]),
            Err(error) => Err(self.record(error)),
        }
    }

    fn record(&mut self, error: LoadError) -> &LoadError {
        tracing::warn!("{error}");
        self.failures.push(LoadFailure {
            path: error.path().to_path_buf(),
            error,
        });
        &self.failures.last().expect("just pushed").error
    }

    fn try_load(&mut self, path: &Path) -> Result<Loaded, LoadError> {
        let opened = loader::open(path)?;
        let info = opened.info();
        let other = self
            .plugins
            .iter()
            .map(|p| p.info())
            .chain(&self.disabled)
            .find(|p| p.name == info.name);
        if let Some(other) = other {
            return Err(LoadError::DuplicatePlugin {
                path: info.path.clone(),
                name: info.name.clone(),
                other: other.path.clone(),
            });
        }
        if let Some(requirement) = self.settings.versions.get(&info.name) {
            if !requirement.matches(&info.version) {
                return Err(LoadError::VersionRequirement {
                    path: info.path.clone(),
                    plugin: info.name.clone(),
                    version: info.version.clone(),
                    requirement: requirement.clone(),
                });
            }
        }
        if self.settings.disabled.contains(&info.name) {
            tracing::info!(plugin = %info.name, "disabled by configuration");
            self.disabled.push(info.clone());
            return Ok(Loaded::Disabled(self.disabled.len() - 1));
        }
        let config = self
            .settings
            .plugin_config
            .get(&info.name)
            .cloned()
            .unwrap_or_default();
        let plugin = Arc::new(opened.initialise(&config)?);
        self.loads += 1;
        let load_rank = 1_000_000 + self.loads;
        for index in 0..plugin.info().operations.len() {
            let handle = OpHandle::new(&plugin, index).expect("index is in range");
            self.register(handle, load_rank);
        }
        self.plugins.push(plugin);
        Ok(Loaded::Enabled(self.plugins.len() - 1))
    }

    /// How strongly the settings want `plugin` to serve `key` (lower is stronger).
    fn rank(&self, keys: &[&str], plugin: &str, load_rank: u64) -> (u64, bool) {
        if keys
            .iter()
            .any(|k| self.settings.providers.get(*k).is_some_and(|p| p == plugin))
        {
            return (0, true);
        }
        match self.settings.prefer.iter().position(|p| p == plugin) {
            Some(i) => (1 + i as u64, true),
            None => (load_rank, false),
        }
    }

    fn register(&mut self, handle: OpHandle, load_rank: u64) {
        let info = handle.info().clone();
        let plugin = handle.plugin().name.clone();
        let stats = Arc::clone(
            self.stats
                .entry((plugin.clone(), info.name.clone()))
                .or_default(),
        );
        let mut slots = vec![(false, info.name.clone(), format!("operation {}", info.name))];
        if let Some(symbol) = info.symbol() {
            slots.push((true, symbol.to_string(), format!("operator {symbol}")));
        }
        for (is_symbol, key, what) in slots {
            let keys = [key.as_str(), info.name.as_str()];
            let (rank, explicit) = self.rank(&keys, &plugin, load_rank);
            let provider = Provider {
                handle: handle.clone(),
                stats: Arc::clone(&stats),
                rank,
            };
            let map = if is_symbol {
                &mut self.by_symbol
            } else {
                &mut self.by_name
            };
            let mut slot = map.get(&key).map_or_else(
                || OpSlot {
                    key: key.clone(),
                    providers: Vec::new(),
                    rollout: None,
                },
                |s| OpSlot::clone(s),
            );
            let at = slot.providers.partition_point(|p| p.rank <= rank);
            slot.providers.insert(at, provider);
            if slot.providers.len() > 1 {
                let winner = &slot.providers[0];
                let explicit = explicit || winner.rank < 1_000_000;
                let shadowed = if at == 0 {
                    &slot.providers[1]
                } else {
                    &slot.providers[at]
                };
                let conflict = Conflict {
                    what,
                    winner: winner.handle.plugin().name.clone(),
                    shadowed: shadowed.handle.plugin().name.clone(),
                    explicit,
                };
                if explicit {
                    tracing::info!("{conflict}");
                } else {
                    tracing::warn!("{conflict}");
                }
                self.conflicts.push(conflict);
            }
            let rollout = keys.iter().find_map(|k| self.settings.rollouts.get(*k));
            slot.rollout = rollout.and_then(|r| {
                let candidate = slot
                    .providers
                    .iter()
                    .position(|p| p.handle.plugin().name == r.candidate)?;
                Some((candidate, r.percent))
            });
            let map = if is_symbol {
                &mut self.by_symbol
            } else {
                &mut self.by_name
            };
            map.insert(key, Arc::new(slot));
        }
    }

    /// Loads every shared library directly inside `dir`, in file-name order; other files are
    /// skipped. Returns how many plugins were initialised. Each failure is recorded in
    /// [`Self::failures`] and does not stop the others; an unreadable directory is an error (and
    /// recorded too).
    pub fn load_dir(&mut self, dir: &Path) -> Result<usize, &LoadError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(source) => {
                return Err(self.record(LoadError::Directory {
                    path: dir.to_path_buf(),
                    source,
                }))
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| is_library_file(p))
            .collect();
        files.sort();
        let before = self.plugins.len();
        for f in &files {
            let _ = self.load_file(f);
        }
        Ok(self.plugins.len() - before)
    }

    /// Shuts down and unloads the plugin called `name` (once no handle to it is left), and stops
    /// offering its operations. Returns whether it was loaded.
    pub fn unload(&mut self, name: &str) -> bool {
        let Some(i) = self.plugins.iter().position(|p| p.info().name == name) else {
            return false;
        };
        let plugin = self.plugins.remove(i);
        for map in [&mut self.by_name, &mut self.by_symbol] {
            map.retain(|_, slot| {
                if slot
                    .providers
                    .iter()
                    .all(|p| p.handle.plugin().name != name)
                {
                    return true;
                }
                let mut s = OpSlot::clone(slot);
                s.providers.retain(|p| p.handle.plugin().name != name);
                let candidate = s
                    .rollout
                    .and_then(|(c, _)| slot.providers.get(c))
                    .map(|p| p.handle.plugin().name.clone());
                s.rollout = s.rollout.and_then(|(_, pct)| {
                    let c = s
                        .providers
                        .iter()
                        .position(|p| Some(&p.handle.plugin().name) == candidate.as_ref())?;
                    Some((c, pct))
                });
                let keep = !s.providers.is_empty();
                *slot = Arc::new(s);
                keep
            });
        }
        tracing::info!(plugin = name, "unloading");
        drop(plugin);
        true
    }

    /// Unloads `name` (if loaded) and lists it as disabled; it is not loaded again by this
    /// manager until [`Self::enable`]. Returns whether it was loaded.
    pub fn disable(&mut self, name: &str) -> bool {
        let info = self
            .plugins
            .iter()
            .find(|p| p.info().name == name)
            .map(|p| p.info().clone());
        self.settings.disabled.insert(name.to_string());
        match info {
            Some(info) => {
                self.unload(name);
                self.disabled.push(info);
                true
            }
            None => false,
        }
    }

    /// Loads a plugin that was disabled, from the file it was found in.
    pub fn enable(&mut self, name: &str) -> Result<&PluginInfo, &LoadError> {
        self.settings.disabled.remove(name);
        match self.disabled.iter().position(|p| p.name == name) {
            Some(i) => {
                let info = self.disabled.remove(i);
                self.load_file(&info.path)
            }
            None => Err(self.record(LoadError::NotFound {
                path: PathBuf::from(name),
            })),
        }
    }

    /// Metadata of the loaded (enabled) plugins, in load order.
    pub fn plugins(&self) -> impl Iterator<Item = &PluginInfo> {
        self.plugins.iter().map(|p| p.info())
    }

    /// Plugins found and validated but not initialised because the settings disable them.
    pub fn disabled(&self) -> &[PluginInfo] {
        &self.disabled
    }

    /// The disabled plugin that would provide operation or infix symbol `name`, if any.
    pub fn disabled_provider(&self, name: &str) -> Option<&str> {
        self.disabled
            .iter()
            .find(|p| {
                p.operations
                    .iter()
                    .any(|o| o.name == name || o.symbol() == Some(name))
            })
            .map(|p| p.name.as_str())
    }

    /// The files that failed to load, in the order they were tried.
    pub fn failures(&self) -> &[LoadFailure] {
        &self.failures
    }

    /// Operation names and symbols provided by more than one plugin, and who serves them.
    pub fn conflicts(&self) -> &[Conflict] {
        &self.conflicts
    }

    /// Call and error counts per implementation: `(plugin, operation)` to counts.
    pub fn stats(&self) -> impl Iterator<Item = (&str, &str, &ImplStats)> {
        self.stats
            .iter()
            .map(|((p, o), s)| (p.as_str(), o.as_str(), s.as_ref()))
    }

    /// The plugin that serves operation `name` (without rollout), if any.
    pub fn serving(&self, name: &str) -> Option<&str> {
        self.by_name
            .get(name)
            .map(|s| s.primary().plugin().name.as_str())
    }

    /// Warnings about settings that name plugins which are not loaded: a configured provider,
    /// preferred plugin or rollout candidate that is disabled, failed or missing.
    pub fn notices(&self) -> Vec<String> {
        let state = |plugin: &str| -> Option<&'static str> {
            if self.plugins().any(|p| p.name == plugin) {
                None
            } else if self.disabled.iter().any(|p| p.name == plugin) {
                Some("is disabled")
            } else {
                Some("is not loaded (missing or failed)")
            }
        };
        let serving = |op: &str| match self.by_name.get(op).or_else(|| self.by_symbol.get(op)) {
            Some(s) => format!("{op} is served by {}", s.primary().plugin().name),
            None => format!("no plugin provides {op}"),
        };
        let mut out = Vec::new();
        for (op, plugin) in &self.settings.providers {
            if let Some(why) = state(plugin) {
                out.push(format!(
                    "configured provider {plugin} of {op} {why}; {}",
                    serving(op)
                ));
            }
        }
        for (op, r) in &self.settings.rollouts {
            if let Some(why) = state(&r.candidate) {
                out.push(format!(
                    "rollout candidate {} of {op} {why}; {}",
                    r.candidate,
                    serving(op)
                ));
            }
        }
        for plugin in &self.settings.prefer {
            if let Some(why) = state(plugin) {
                out.push(format!("preferred plugin {plugin} {why}"));
            }
        }
        out
    }

    /// The primary implementation of operation `name`, or failing that of the infix operator
    /// with symbol `name`: the fast path, with no rollout, fallback or counting.
    pub fn operation(&self, name: &str) -> Option<&OpHandle> {
        self.slot(name).map(|s| s.primary())
    }

    /// The slot of operation `name`, or of the infix operator with symbol `name`.
    pub fn slot(&self, name: &str) -> Option<&Arc<OpSlot>> {
        self.by_name.get(name).or_else(|| self.by_symbol.get(name))
    }

    /// The slot of the infix operator with this symbol.
    pub fn infix_slot(&self, symbol: &str) -> Option<&Arc<OpSlot>> {
        self.by_symbol.get(symbol)
    }

    /// The primary implementation of the infix operator with this symbol.
    pub fn infix(&self, symbol: &str) -> Option<&OpHandle> {
        self.infix_slot(symbol).map(|s| s.primary())
    }

    /// The primary implementation of the function (not infix operator) called `name`.
    pub fn function(&self, name: &str) -> Option<&OpHandle> {
        self.by_name
            .get(name)
            .map(|s| s.primary())
            .filter(|h| h.info().symbol().is_none())
    }

    /// Calls operation `name` (or the operator with that symbol) through its slot: rollout by
    /// `key`, fallback and counting, as in [`Self::eval`]. `None` when no plugin provides it.
    pub fn call(&self, name: &str, args: &[f64], key: &str) -> Option<Result<f64, CallError>> {
        self.slot(name)
            .map(|s| s.call(args, rollout_hash(key.as_bytes())))
    }

    /// Parses and evaluates `expression`; the expression text is the rollout key.
    pub fn eval(&self, expression: &str) -> Result<f64, EvalError> {
        self.eval_with_key(expression, expression)
    }

    /// Parses and evaluates `expression`, choosing rollout implementations by `key` (e.g. a user
    /// id): the same key always gets the same implementations.
    pub fn eval_with_key(&self, expression: &str, key: &str) -> Result<f64, EvalError> {
        expr::compile(self, expression)?.eval_with_key(rollout_hash(key.as_bytes()))
    }
}

enum Loaded {
    Enabled(usize),
    Disabled(usize),
}

impl Drop for PluginManager {
    fn drop(&mut self) {
        self.by_name.clear();
        self.by_symbol.clear();
        while let Some(plugin) = self.plugins.pop() {
            drop(plugin);
        }
    }
}
