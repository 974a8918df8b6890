//! Listings of plugin directories as `calc plugins list` shows them, from the metadata cache
//! (nothing opened) or from a manager that loaded them.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use crate::cache::{start_fingerprint, MetadataCache, Verdict};
use crate::config::Settings;
use crate::error::LoadError;
use crate::files::is_library_file;
use crate::info::PluginInfo;
use crate::manager::PluginManager;
use crate::slots::{replace_conflicts, slot_conflicts, slot_rollout, Conflict, LOAD_RANKS};

/// A file that failed, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFailure {
    /// The file (or directory).
    pub path: PathBuf,
    /// [`LoadError::kind`].
    pub kind: String,
    /// The one-line reason.
    pub error: String,
    /// The plugin's name, when it described itself before it failed
    /// ([`LoadError::plugin_name`]).
    pub plugin: Option<String>,
}

impl From<&LoadError> for ListedFailure {
    fn from(e: &LoadError) -> Self {
        ListedFailure {
            path: e.path().to_path_buf(),
            kind: e.kind().to_string(),
            error: e.to_string(),
            plugin: e.plugin_name().map(str::to_string),
        }
    }
}

/// The plugins of a set of directories as `calc plugins list` shows them: enabled and disabled
/// plugins, failures, conflicts, and which plugin serves each operation.
#[derive(Debug, Default)]
pub struct Listing {
    /// Enabled plugins, in load order.
    pub plugins: Vec<PluginInfo>,
    /// Valid plugins the settings disable.
    pub disabled: Vec<PluginInfo>,
    /// Files (and directories) that failed, in the order they were tried.
    pub failures: Vec<ListedFailure>,
    /// Operation names and symbols provided by more than one enabled plugin.
    pub conflicts: Vec<Conflict>,
    /// Operation name to the plugin that serves it.
    serving: HashMap<String, String>,
    /// What the listing knows of plugins, for [`Settings::notices`].
    known: crate::config::KnownPlugins,
}

impl Listing {
    /// The listing of what `manager` loaded (plugins initialised, so `init` failures show).
    pub fn from_manager(manager: &PluginManager) -> Listing {
        let plugins: Vec<PluginInfo> = manager.plugins().cloned().collect();
        let serving = plugins
            .iter()
            .flat_map(|p| &p.operations)
            .filter_map(|op| Some((op.name.clone(), manager.serving(&op.name)?)))
            .collect();
        Listing {
            plugins,
            disabled: manager.disabled().to_vec(),
            failures: manager
                .failures()
                .iter()
                .map(|f| ListedFailure {
                    path: f.path.clone(),
                    ..ListedFailure::from(&f.error)
                })
                .collect(),
            conflicts: manager.conflicts().to_vec(),
            serving,
            known: manager.known_plugins(),
        }
    }

    /// What the listing knows of plugins (enabled, disabled, failed, operations and who serves
    /// them), to warn about settings that name none of them ([`Settings::notices`]).
    pub fn known_plugins(&self) -> &crate::config::KnownPlugins {
        &self.known
    }

    /// The listing of `dirs` (each with whether its absence is reported), as a
    /// [`PluginManager`] with `settings` would load them (file-name order, duplicate names,
    /// version ranges, disabled plugins, provider order and conflicts), but from `cache`: files
    /// with a fresh cache entry are not opened. An enabled plugin is listed as enabled only when
    /// the cache records that this version of its file started with the same settings
    /// ([`start_fingerprint`]); otherwise it is started once, as the manager would (in process
    /// or isolated, with its configuration values), shut down again, and the outcome recorded:
    /// a plugin whose `init` fails is listed as a failure, as by [`Self::from_manager`], and is
    /// started again by the next scan (so a fixed configuration or environment shows at once).
    /// Entries of files deleted from `dirs` are dropped from the cache.
    pub fn scan(dirs: &[(PathBuf, bool)], settings: &Settings, cache: &mut MetadataCache) -> Self {
        let mut scan = Scan {
            settings,
            listing: Listing::default(),
            names: HashMap::new(),
            slots: HashMap::new(),
            loads: 0,
        };
        for (dir, report_missing) in dirs {
            if !report_missing && !dir.is_dir() {
                continue;
            }
            let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
                Ok(entries) => entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| is_library_file(p))
                    .collect(),
                Err(source) => {
                    scan.fail(&LoadError::Directory {
                        path: dir.clone(),
                        source: source.into(),
                    });
                    continue;
                }
            };
            // All in one directory: ordered by file name, compared as bytes.
            files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
            let canonical_dir = std::fs::canonicalize(dir).ok();
            // The trust policy before the cache, which opens files it has no fresh entry for.
            let trusted = match canonical_dir
                .as_deref()
                .map(|d| settings.trust.check_dir(d))
            {
                Some(Err(e)) => {
                    scan.fail(&e);
                    continue;
                }
                Some(Ok(trusted)) => Some(trusted),
                None => None,
            };
            let policies: Vec<Result<(), LoadError>> = files
                .iter()
                .map(|file| match (&trusted, file.file_name()) {
                    (Some(t), Some(name)) => t.check_policy(&t.path().join(name)).map(|_| ()),
                    _ => settings.trust.check_policy(file).map(|_| ()),
                })
                .collect();
            // New files that passed the policy are vetted in one pass (pipelined).
            let admitted: Vec<PathBuf> = files
                .iter()
                .zip(&policies)
                .filter(|(_, policy)| policy.is_ok())
                .map(|(file, _)| file.clone())
                .collect();
            cache.validate_all(&admitted, canonical_dir.as_deref());
            for (file, policy) in files.iter().zip(policies) {
                if let Err(e) = policy {
                    scan.fail(&e);
                    continue;
                }
                match cache.validate_in(file, canonical_dir.as_deref()).0 {
                    Verdict::Valid(info) => scan.admit(info, cache),
                    Verdict::Refused(r) => scan.listing.failures.push(ListedFailure {
                        path: r.path,
                        kind: r.kind,
                        error: r.message,
                        plugin: None,
                    }),
                }
            }
            if let Some(canonical_dir) = &canonical_dir {
                let seen = files
                    .iter()
                    .filter_map(|f| Some(canonical_dir.join(f.file_name()?)))
                    .filter_map(|p| p.to_str().map(str::to_string))
                    .collect();
                cache.prune_dir(canonical_dir, &seen);
            }
        }
        let mut listing = scan.listing;
        let serving: Vec<(bool, String, String)> = scan
            .slots
            .into_iter()
            .filter(|(_, providers)| !providers.is_empty())
            .map(|((is_symbol, key), mut providers)| (is_symbol, key, providers.swap_remove(0).1))
            .collect();
        let names = |plugins: &[PluginInfo]| plugins.iter().map(|p| p.name.clone()).collect();
        listing.known = crate::config::KnownPlugins {
            enabled: names(&listing.plugins),
            disabled: names(&listing.disabled),
            failed: listing
                .failures
                .iter()
                .filter_map(|f| f.plugin.clone())
                .collect(),
            operations: listing
                .plugins
                .iter()
                .chain(&listing.disabled)
                .flat_map(|p| &p.operations)
                .flat_map(|op| {
                    std::iter::once(op.name.clone()).chain(op.symbol().map(str::to_string))
                })
                .collect(),
            serving: serving
                .iter()
                .map(|(_, key, plugin)| (key.clone(), plugin.clone()))
                .collect(),
        };
        listing.serving = serving
            .into_iter()
            .filter(|(is_symbol, _, _)| !is_symbol)
            .map(|(_, key, plugin)| (key, plugin))
            .collect();
        listing
    }

    /// The plugin that serves operation `name`, if an enabled plugin provides it.
    pub fn serving(&self, name: &str) -> Option<&str> {
        self.serving.get(name).map(String::as_str)
    }
}

/// One provider in a slot of [`Scan`]: rank, plugin, operation name and infix symbol.
type Listed = (u64, String, String, Option<String>);

/// State of [`Listing::scan`]: mirrors the manager's admission and provider ranking.
struct Scan<'a> {
    settings: &'a Settings,
    listing: Listing,
    /// Names of admitted (enabled or disabled) plugins, to the file they came from.
    names: HashMap<String, PathBuf>,
    /// (is symbol, key) to its providers, best first.
    slots: HashMap<(bool, String), Vec<Listed>>,
    loads: u64,
}

impl Scan<'_> {
    fn fail(&mut self, e: &LoadError) {
        self.listing.failures.push(ListedFailure::from(e));
    }

    /// Whether the enabled plugin `info` starts: from the start `cache` recorded, else by
    /// starting it now (see [`Listing::scan`]). On failure, the failure is listed.
    fn starts(&mut self, info: &PluginInfo, cache: &mut MetadataCache) -> bool {
        let fingerprint = start_fingerprint(self.settings, &info.name);
        let refusal = match cache.last_start(&info.path, fingerprint) {
            Some(Ok(())) => return true,
            // A recorded refusal is not trusted: `init` may depend on more than the file and
            // the settings, and failures are rare, so it runs again.
            Some(Err(_)) | None => {
                cache.stats.starts += 1;
                let mut manager = PluginManager::with_settings(self.settings.clone());
                let started = manager.load_file(&info.path).map(|_| ());
                cache.record_start(&info.path, fingerprint, started.as_ref().map(|_| ()));
                match started {
                    Ok(()) => return true,
                    Err(e) => ListedFailure::from(&e),
                }
            }
        };
        self.listing.failures.push(ListedFailure {
            plugin: Some(info.name.clone()),
            ..refusal
        });
        false
    }

    /// What `PluginManager::admit` and `try_load` do with a validated plugin, starting it if
    /// `cache` has no record that it starts.
    fn admit(&mut self, info: PluginInfo, cache: &mut MetadataCache) {
        if let Some(other) = self.names.get(&info.name) {
            let e = LoadError::DuplicatePlugin {
                path: info.path.clone(),
                name: info.name.clone(),
                other: other.clone(),
            };
            return self.fail(&e);
        }
        if let Some(requirement) = self.settings.versions.get(&info.name) {
            if !requirement.matches(&info.version) {
                let e = LoadError::VersionRequirement {
                    path: info.path.clone(),
                    plugin: info.name.clone(),
                    version: info.version.clone(),
                    requirement: requirement.clone(),
                };
                return self.fail(&e);
            }
        }
        if self.settings.disabled.contains(&info.name) {
            self.names.insert(info.name.clone(), info.path.clone());
            self.listing.disabled.push(info);
            return;
        }
        // A plugin that fails to start takes no name and no place in the load order, as in
        // the manager.
        if !self.starts(&info, cache) {
            return;
        }
        self.names.insert(info.name.clone(), info.path.clone());
        self.loads += 1;
        let load_rank = LOAD_RANKS + self.loads;
        for op in &info.operations {
            let mut keys = vec![(false, op.name.clone(), format!("operation {}", op.name))];
            if let Some(symbol) = op.symbol() {
                keys.push((true, symbol.to_string(), format!("operator {symbol}")));
            }
            let names: Vec<&str> = std::iter::once(op.name.as_str())
                .chain(op.symbol())
                .collect();
            for (is_symbol, key, what) in keys {
                let (rank, _) = self.settings.rank(&names, &info.name, load_rank);
                let slot = self.slots.entry((is_symbol, key)).or_default();
                let at = slot.partition_point(|(r, ..)| *r <= rank);
                let symbol = op.symbol().map(str::to_string);
                slot.insert(at, (rank, info.name.clone(), op.name.clone(), symbol));
                let ops: Vec<(&str, &str, Option<&str>)> = slot
                    .iter()
                    .map(|(_, plugin, name, symbol)| {
                        (plugin.as_str(), name.as_str(), symbol.as_deref())
                    })
                    .collect();
                let rollout = slot_rollout(self.settings, &ops).map(|(c, percent, _)| (c, percent));
                let ranked: Vec<(&str, u64)> = slot
                    .iter()
                    .map(|(rank, plugin, ..)| (plugin.as_str(), *rank))
                    .collect();
                let conflicts = slot_conflicts(&what, &ranked, rollout);
                replace_conflicts(&mut self.listing.conflicts, &what, conflicts);
            }
        }
        self.listing.plugins.push(info);
    }
}

impl MetadataCache {
    /// Records the starts `manager` made (it loaded the plugins of directories this cache
    /// lists): each loaded plugin started, each `init` that failed (see
    /// [`Self::record_start`]).
    pub fn record_starts(&mut self, manager: &PluginManager) {
        let settings = manager.settings();
        for p in manager.plugins() {
            self.record_start(&p.path, start_fingerprint(settings, &p.name), Ok(()));
        }
        for f in manager.failures() {
            if let Some(name) = f.error.plugin_name() {
                let fingerprint = start_fingerprint(settings, name);
                self.record_start(&f.path, fingerprint, Err(&f.error));
            }
        }
    }
}
