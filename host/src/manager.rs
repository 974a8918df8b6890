//! The plugin manager: loads plugin files and directories, keeps what loaded, remembers what
//! failed and why, and resolves operation names and symbols to [`OpHandle`]s.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{EvalError, LoadError};
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

/// Two plugins provide the same operation name or infix symbol; the first loaded serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// `"operation add"` or `"operator +"`.
    pub what: String,
    /// The plugin that serves it.
    pub winner: String,
    /// The plugin whose operation is shadowed.
    pub shadowed: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is provided by both {} and {}; using {} (loaded first)",
            self.what, self.winner, self.shadowed, self.winner
        )
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
    plugins: Vec<Arc<LoadedPlugin>>,
    failures: Vec<LoadFailure>,
    conflicts: Vec<Conflict>,
    by_name: HashMap<String, OpHandle>,
    by_symbol: HashMap<String, OpHandle>,
    config: HashMap<String, BTreeMap<String, String>>,
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
    /// An empty manager.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a configuration value for the plugin named `plugin`, readable by it through the host
    /// services (`get_config`). Takes effect for plugins loaded afterwards.
    pub fn set_plugin_config(&mut self, plugin: &str, key: &str, value: &str) {
        self.config
            .entry(plugin.to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
    }

    /// Loads one plugin file. On failure the error is also recorded in [`Self::failures`].
    pub fn load_file(&mut self, path: &Path) -> Result<&PluginInfo, &LoadError> {
        match self.try_load(path) {
            Ok(i) => Ok(self.plugins[i].info()),
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

    fn try_load(&mut self, path: &Path) -> Result<usize, LoadError> {
        let (plugins, config) = (&self.plugins, &self.config);
        let plugin = loader::load(path, |info| {
            match plugins.iter().find(|p| p.info().name == info.name) {
                Some(other) => Err(LoadError::DuplicatePlugin {
                    path: info.path.clone(),
                    name: info.name.clone(),
                    other: other.info().path.clone(),
                }),
                None => Ok(config.get(&info.name).cloned().unwrap_or_default()),
            }
        })?;
        let plugin = Arc::new(plugin);
        for index in 0..plugin.info().operations.len() {
            let handle = OpHandle::new(&plugin, index).expect("index is in range");
            let op = handle.info();
            Self::register(
                &mut self.by_name,
                &mut self.conflicts,
                format!("operation {}", op.name),
                op.name.clone(),
                &handle,
            );
            if let Some(symbol) = op.symbol() {
                Self::register(
                    &mut self.by_symbol,
                    &mut self.conflicts,
                    format!("operator {symbol}"),
                    symbol.to_string(),
                    &handle,
                );
            }
        }
        self.plugins.push(plugin);
        Ok(self.plugins.len() - 1)
    }

    fn register(
        map: &mut HashMap<String, OpHandle>,
        conflicts: &mut Vec<Conflict>,
        what: String,
        key: String,
        handle: &OpHandle,
    ) {
        match map.get(&key) {
            Some(existing) => {
                let conflict = Conflict {
                    what,
                    winner: existing.plugin().name.clone(),
                    shadowed: handle.plugin().name.clone(),
                };
                tracing::warn!("{conflict}");
                conflicts.push(conflict);
            }
            None => {
                map.insert(key, handle.clone());
            }
        }
    }

    /// Loads every shared library directly inside `dir`, in file-name order; other files are
    /// skipped. Returns how many plugins loaded. Each failure is recorded in
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
        Ok(files.iter().filter(|f| self.load_file(f).is_ok()).count())
    }

    /// Metadata of the loaded plugins, in load order.
    pub fn plugins(&self) -> impl Iterator<Item = &PluginInfo> {
        self.plugins.iter().map(|p| p.info())
    }

    /// The files that failed to load, in the order they were tried.
    pub fn failures(&self) -> &[LoadFailure] {
        &self.failures
    }

    /// Operation names and symbols provided by more than one plugin.
    pub fn conflicts(&self) -> &[Conflict] {
        &self.conflicts
    }

    /// The operation called `name`, or failing that the infix operator with symbol `name`.
    pub fn operation(&self, name: &str) -> Option<&OpHandle> {
        self.by_name.get(name).or_else(|| self.by_symbol.get(name))
    }

    /// The infix operator with this symbol.
    pub fn infix(&self, symbol: &str) -> Option<&OpHandle> {
        self.by_symbol.get(symbol)
    }

    /// The function (not infix operator) called `name`.
    pub fn function(&self, name: &str) -> Option<&OpHandle> {
        self.by_name
            .get(name)
            .filter(|h| h.info().symbol().is_none())
    }

    /// Every infix symbol, for the tokenizer.
    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.by_symbol.keys().map(String::as_str)
    }

    /// Parses and evaluates `expression` with the loaded operations.
    pub fn eval(&self, expression: &str) -> Result<f64, EvalError> {
        expr::compile(self, expression)?.eval()
    }
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
