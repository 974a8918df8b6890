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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Settings;
use crate::error::{CallError, EvalError, LoadError};
use crate::events::HostEvent;
use crate::expr;
use crate::info::PluginInfo;
use crate::isolation::{self, Health, Opened};
use crate::limit::CallLimit;
use crate::loader::{self, LoadedPlugin, OpHandle};
use crate::rcu::RcuCell;

/// A file that could not be loaded, and why.
#[derive(Debug)]
pub struct LoadFailure {
    /// The file (or directory).
    pub path: PathBuf,
    /// The reason.
    pub error: LoadError,
}

pub use crate::files::{is_library_file, library_files};
use crate::slots::SlotRollout;
pub(crate) use crate::slots::{replace_conflicts, slot_conflicts, slot_rollout, LOAD_RANKS};
pub use crate::slots::{
    rollout_bucket, rollout_hash, Conflict, ImplStats, LiveOp, LiveSlot, OpSlot, PinnedLiveOp,
    Provider,
};

/// Loaded plugins and the operations they provide.
///
/// Plugins are shut down in reverse load order when the manager is dropped (handles cloned out
/// of it keep their plugin alive until they are dropped too).
#[derive(Default)]
pub struct PluginManager {
    settings: Settings,
    plugins: Vec<Entry>,
    disabled: Vec<PluginInfo>,
    failures: Vec<LoadFailure>,
    conflicts: Vec<Conflict>,
    by_name: HashMap<String, LiveSlot>,
    by_symbol: HashMap<String, LiveSlot>,
    /// Live slots that became empty (their last provider was unloaded), by (is symbol, key):
    /// a plugin that provides the key again revives them, so handles to them follow it.
    orphans: HashMap<(bool, String), std::sync::Weak<RcuCell<OpSlot>>>,
    stats: BTreeMap<(String, String), Arc<ImplStats>>,
    loads: u64,
    /// Plugins known from the metadata cache but not opened yet (lazy loading), each with the
    /// rank it reserved in directory order.
    lazy: Vec<(PluginInfo, u64, Option<crate::cache::FileStamp>)>,
    /// Every name [`Self::admit`] let in: a superset of the names in `plugins`, `disabled` and
    /// `lazy` (entries leave those without leaving this). A name not in it has no duplicate,
    /// so `admit` scans the lists only for names in it, not for every plugin of a directory.
    admitted: HashSet<String>,
    /// Rank the next `try_load` uses instead of a fresh one (set when opening a lazy plugin).
    next_rank: Option<u64>,
    /// Hot-reload mode: the directory of private copies.
    copy_dir: Option<PathBuf>,
    /// The directory [`Self::load_dir`] is loading, once it passed the trust policy: its files
    /// are checked against it (and its lock file) without checking the directory again.
    scanning: Option<crate::trust::TrustedDir>,
    /// Per-call limits of in-process plugins with a configured timeout, by plugin name.
    limits: BTreeMap<String, Arc<CallLimit>>,
    events: Option<Sender<HostEvent>>,
    /// How many events [`Self::emit`] sent (see [`Self::events_sent`]).
    events_sent: std::sync::atomic::AtomicU64,
    /// Validates each file in a child before it is opened here (`[isolation] vet`,
    /// [`Self::vet_with`]), and remembers the verdicts.
    vetting: std::sync::Mutex<Vetting>,
    /// The interfaces the application offers plugins (ABI 1.4, [`Self::offer_interface`]).
    offered: crate::services::Offered,
    /// The live providers of every interface (id, major) a loaded plugin ever implemented.
    by_interface: HashMap<(String, u16), crate::interface::LiveInterfaceSlot>,
}

/// The manager's vetting child and what it found.
#[derive(Debug, Default)]
struct Vetting {
    /// The vetter, once started (or given by [`PluginManager::vet_with`]).
    vetter: Option<crate::vet::Vetter>,
    /// Set by [`PluginManager::vet_with`]: vet whatever `[isolation] vet` says.
    forced: bool,
    /// Set once the settings were found to give no vetter (`never`, or `auto` without a
    /// runner).
    unavailable: bool,
}

/// A loaded plugin and its place in the provider order.
struct Entry {
    plugin: Arc<LoadedPlugin>,
    /// Rank of its operations when nothing in the settings ranks them (load order).
    load_rank: u64,
}

impl std::fmt::Debug for PluginManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginManager")
            .field(
                "plugins",
                &self
                    .plugins
                    .iter()
                    .map(|e| &e.plugin.info().name)
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

    /// Vets with `vetter` from now on, whatever `[isolation] vet` says.
    ///
    /// Without this call a manager vets as `[isolation] vet` says (by default whenever the
    /// runner is installed, see [`crate::config::VetMode`]): every file is validated in a child
    /// process (see [`crate::vet`]) before it is opened in this one, so that a file whose
    /// initialisers or `plugin_entry` crash, exit or hang is refused (kind `crashed`,
    /// `exited`, `timed_out`) instead of taking this process down. That applies to
    /// [`Self::load_file`], [`Self::load_dir`] (one child for the whole directory, with many
    /// files in flight) and hot reloads. Plugins that run in a runner anyway
    /// (`[isolation] all`) are not vetted twice, and a file is vetted again only when it
    /// changed; the CLI's metadata cache also remembers verdicts across runs
    /// ([`crate::cache::MetadataCache::vet_with`]).
    pub fn vet_with(&mut self, vetter: crate::vet::Vetter) {
        let vetting = self
            .vetting
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        vetting.vetter = Some(vetter);
        vetting.forced = true;
    }

    /// Turns on hot-reload mode for plugins loaded from now on: each library is loaded from a
    /// private copy (under `copy_dir`, created if needed), so that the file can be rebuilt and
    /// reloaded with [`Self::reload_file`], and its old version really unloaded.
    pub fn enable_hot_reload(&mut self, copy_dir: PathBuf) {
        self.copy_dir = Some(copy_dir);
    }

    /// The default directory for private copies: `$TMPDIR/calc-plugins-<pid>`.
    pub fn default_copy_dir() -> PathBuf {
        std::env::temp_dir().join(format!("calc-plugins-{}", std::process::id()))
    }

    /// Sends every [`HostEvent`] (loads, reloads, failures, removals, unloads) to `events`.
    pub fn report_events_to(&mut self, events: Sender<HostEvent>) {
        self.events = Some(events);
    }

    fn emit(&self, event: HostEvent) {
        tracing::info!("{event}");
        if let Some(tx) = &self.events {
            if tx.send(event).is_ok() {
                self.events_sent
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// How many events this manager has sent to the channel of [`Self::report_events_to`] so
    /// far, unloads aside (an old version's library reports its own unload when it goes, maybe
    /// later, from another thread). A consumer that counts what it received can wait for it
    /// to reach this figure, to print a command's events before the command's own summary.
    pub fn events_sent(&self) -> u64 {
        self.events_sent.load(std::sync::atomic::Ordering::Relaxed)
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
    pub fn load_file(&mut self, path: &Path) -> Result<&PluginInfo, LoadError> {
        self.load_one(path, false)
    }

    fn load_one(&mut self, path: &Path, resolved: bool) -> Result<&PluginInfo, LoadError> {
        match self.try_load(path, resolved) {
            Ok(Loaded::Enabled(i)) => Ok(self.plugins[i].plugin.info()),
            Ok(Loaded::Disabled(i)) => Ok(&self.disabled[i]),
            Err(error) => Err(self.record(error)),
        }
    }

    /// Records `error` in [`Self::failures`] and gives it back, for the caller to return.
    fn record(&mut self, error: LoadError) -> LoadError {
        tracing::warn!("{error}");
        self.failures.push(LoadFailure {
            path: error.path().to_path_buf(),
            error: error.clone(),
        });
        error
    }

    /// The trust policy's verdict on the file at `path` (see [`crate::trust`]): every way of
    /// loading a plugin (in process or, later, isolated) calls this before anything opens the
    /// file, and [`crate::trust::Verified::confirm`] once it is open.
    fn vet(&self, path: &Path, resolved: bool) -> Result<crate::trust::Verified, LoadError> {
        match &self.scanning {
            Some(dir) if resolved && path.parent() == Some(dir.path()) => dir.check_file(path),
            _ => self.settings.trust.check_file(path),
        }
    }

    /// Vets `path` (see [`Self::vet`]), then opens it; `resolved` says it is already canonical
    /// (see [`loader::open_resolved`]).
    ///
    /// Isolation: with `[isolation] all`, the file is opened by a runner process only (nothing
    /// of the plugin runs here). With per-plugin `isolate`, the name decides: vetting tells it,
    /// and a plugin to isolate is then handed to a runner without being opened here. With
    /// vetting off (`[isolation] vet = "never"`, or no runner), the file is opened here first
    /// to learn the name (its initialisers and `plugin_entry` run, not `init`) and, if it is
    /// to be isolated, closed again and handed to a runner.
    fn open(&self, path: &Path, resolved: bool) -> Result<Opened, LoadError> {
        let verified = self.vet(path, resolved)?;
        let isolation = &self.settings.isolation;
        if isolation.all {
            let pending = isolation::open(verified.path(), self.runner_options(verified.path())?)?;
            verified.confirm()?;
            if isolation.isolates(&pending.info().name) {
                return Ok(Opened::Isolated(pending));
            }
            drop(pending); // `isolate = false` for this one: in process after all.
        }
        // Nothing of the file runs here before a child opened it without harm.
        let vetted = self.vet_in_child(verified.path(), verified.metadata())?;
        if let Some(name) = vetted.filter(|_| !isolation.all && isolation.any()) {
            // Vetting named the plugin: one to isolate is never opened here.
            if isolation.isolates(&name) {
                let path = verified.path();
                let pending = isolation::open(path, self.runner_options(path)?)?;
                verified.confirm()?;
                return Ok(Opened::Isolated(pending));
            }
        }
        // `vet` resolved the path: the file to open is canonical.
        let opened = match &self.copy_dir {
            Some(dir) => loader::open_copy(verified.path(), dir),
            None => loader::open_resolved(verified.path()),
        }?;
        verified.confirm()?;
        if !isolation.all && isolation.any() && isolation.isolates(&opened.info().name) {
            drop(opened);
            let path = verified.path();
            return isolation::open(path, self.runner_options(path)?).map(Opened::Isolated);
        }
        Ok(Opened::Native(opened))
    }

    /// Vets `path` in the vetting child, or finds the verdict of an earlier vetting of the
    /// same file (see [`Self::vet_with`]). `Ok` when the file may be opened here, with the
    /// plugin's name when it was vetted (`None`: vetting is off).
    fn vet_in_child(
        &self,
        path: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<Option<String>, LoadError> {
        // The version of the file the trust policy passed (no second `stat`).
        let stamp = crate::cache::FileStamp::of(meta);
        let verdict = match crate::vet::recall(path, stamp) {
            Some(verdict) => verdict,
            None => {
                let mut vetting = self
                    .vetting
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if !self.vetting_on(&mut vetting) {
                    return Ok(None);
                }
                let verdict = vetting.vetter.as_mut().expect("vetting is on").vet(path);
                crate::vet::remember(path, stamp, &verdict, false);
                std::sync::Arc::new(verdict)
            }
        };
        match &*verdict {
            crate::cache::Verdict::Valid(info) => Ok(Some(info.name.clone())),
            crate::cache::Verdict::Refused(refusal) => Err(refusal.clone().into()),
        }
    }

    /// Whether files are vetted (setting up the vetter if needed, see
    /// [`crate::vet::for_settings`]): `false` when `[isolation] vet` is `never`, or `auto`
    /// without a runner. With `always` and no runner, the vetter refuses every file.
    fn vetting_on(&self, vetting: &mut Vetting) -> bool {
        if vetting.vetter.is_some() {
            return vetting.forced || self.settings.isolation.vet != crate::config::VetMode::Never;
        }
        if vetting.forced || vetting.unavailable {
            return false;
        }
        vetting.vetter = crate::vet::for_settings(&self.settings);
        vetting.unavailable = vetting.vetter.is_none();
        vetting.vetter.is_some()
    }

    /// How plugin `path` runs isolated (the per-plugin limits are set once its name is known).
    fn runner_options(&self, path: &Path) -> Result<isolation::RunnerOptions, LoadError> {
        let settings = &self.settings.isolation;
        Ok(isolation::RunnerOptions {
            runner: isolation::find_runner(settings.runner.as_deref(), path)?,
            copy_dir: self.copy_dir.clone(),
            call_timeout: None,
            start_timeout: settings.start_timeout,
            breaker_threshold: settings.breaker_threshold,
            cpu_limit: None,
            memory_limit_mb: None,
        })
    }

    /// Every plugin with a place in this manager: loaded, disabled, or known and not opened.
    fn listed(&self) -> impl Iterator<Item = &PluginInfo> {
        self.plugins
            .iter()
            .map(|e| e.plugin.info())
            .chain(&self.disabled)
            .chain(self.lazy.iter().map(|(p, _, _)| p))
    }

    /// Settings-based admission of a validated plugin: duplicate names (ignoring `replacing`),
    /// version ranges. Returns whether the settings disable it.
    fn admit(&mut self, info: &PluginInfo, replacing: Option<&str>) -> Result<bool, LoadError> {
        if self.admitted.contains(&info.name) {
            let other = self
                .listed()
                .filter(|p| Some(p.name.as_str()) != replacing)
                .find(|p| p.name == info.name);
            if let Some(other) = other {
                return Err(LoadError::DuplicatePlugin {
                    path: info.path.clone(),
                    name: info.name.clone(),
                    other: other.path.clone(),
                });
            }
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
        // Names that left the lists stay in the index; when they outnumber those on the lists,
        // it is rebuilt from the lists, so that it stays in proportion to them.
        let listed = self.plugins.len() + self.disabled.len() + self.lazy.len();
        if self.admitted.len() > 2 * listed + 64 {
            self.admitted = self.listed().map(|p| p.name.clone()).collect();
        }
        if !self.admitted.contains(&info.name) {
            self.admitted.insert(info.name.clone());
        }
        Ok(self.settings.disabled.contains(&info.name))
    }

    fn initialise(
        &self,
        opened: Opened,
        state: Option<Vec<u8>>,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        let config = self
            .settings
            .plugin_config
            .get(&opened.info().name)
            .cloned()
            .unwrap_or_default();
        let mut plugin = match opened {
            Opened::Native(opened) => {
                opened.initialise_offering(&config, state, Arc::clone(&self.offered))?
            }
            Opened::Isolated(mut pending) => {
                let info = pending.info();
                let in_process_only: Vec<String> = info
                    .interfaces
                    .iter()
                    .filter(|i| !i.bytes)
                    .map(|i| i.to_string())
                    .collect();
                if !in_process_only.is_empty() {
                    // The application calls such an interface's functions in its own process:
                    // a vtable in a runner cannot be called from here. Bytes interfaces can.
                    return Err(LoadError::Isolation {
                        path: info.path.clone(),
                        kind: "isolation",
                        reason: format!(
                            "plugin {} implements interfaces that cannot run in a runner \
                             process ({}: not bytes interfaces); load it in process (not \
                             isolated)",
                            info.name,
                            in_process_only.join(", ")
                        ),
                    });
                }
                let isolation = &self.settings.isolation;
                let name = &pending.info().name;
                let timeout = isolation.call_timeout(name, true);
                let cpu_limit = isolation.cpu_limit(name);
                let memory_limit = isolation.memory_limit_mb(name);
                pending.configure(
                    timeout,
                    isolation.breaker_threshold,
                    cpu_limit,
                    memory_limit,
                )?;
                pending.initialise(&config, state)?
            }
        };
        if let Some(tx) = &self.events {
            plugin.report_unload_to(tx.clone());
        }
        Ok(Arc::new(plugin))
    }

    fn try_load(&mut self, path: &Path, resolved: bool) -> Result<Loaded, LoadError> {
        let opened = self.open(path, resolved)?;
        if self.admit(opened.info(), None)? {
            tracing::info!(plugin = %opened.info().name, "disabled by configuration");
            self.disabled.push(opened.info().clone());
            return Ok(Loaded::Disabled(self.disabled.len() - 1));
        }
        let plugin = self.initialise(opened, None)?;
        let load_rank = self.next_rank.take().unwrap_or_else(|| {
            self.loads += 1;
            LOAD_RANKS + self.loads
        });
        for index in 0..plugin.info().operations.len() {
            let handle = OpHandle::new(&plugin, index).expect("index is in range");
            self.register(handle, load_rank);
        }
        let has_interfaces = !plugin.info().interfaces.is_empty();
        self.plugins.push(Entry { plugin, load_rank });
        if has_interfaces {
            let mut retired = Vec::new();
            self.rebuild_interfaces(&mut retired);
            crate::rcu::retire_all(retired);
        }
        Ok(Loaded::Enabled(self.plugins.len() - 1))
    }

    /// Publishes the providers of every interface anew, from the loaded plugins, ranked as
    /// [`Self::interface_providers`] ranks them; the old slot contents go to `retired`. An
    /// interface no plugin implements any more keeps its (empty) slot, so live handles to it
    /// see a provider that comes back.
    fn rebuild_interfaces(&mut self, retired: &mut Vec<crate::rcu::Retired>) {
        let keys: HashSet<(String, u16)> = self
            .plugins
            .iter()
            .flat_map(|e| &e.plugin.info().interfaces)
            .map(|i| (i.id.clone(), i.major))
            .collect();
        let mut fresh: HashMap<(String, u16), crate::InterfaceSlot> = keys
            .into_iter()
            .map(|(id, major)| {
                let slot = self.interface(&id, major);
                ((id, major), slot)
            })
            .collect();
        for ((id, major), live) in &self.by_interface {
            let slot = fresh
                .remove(&(id.clone(), *major))
                .unwrap_or_else(|| self.interface(id, *major));
            retired.push(live.swap(Arc::new(slot)));
        }
        for (key, slot) in fresh {
            let slot = crate::rcu::RcuCell::from_pointee(slot);
            self.by_interface.insert(key, Arc::new(slot));
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
        let limit = match self.settings.isolation.call_timeout(&plugin, false) {
            Some(timeout) if !handle.is_isolated() => {
                let threshold = self.settings.isolation.breaker_threshold;
                Some(Arc::clone(
                    self.limits
                        .entry(plugin.clone())
                        .or_insert_with(|| Arc::new(CallLimit::new(&plugin, timeout, threshold))),
                ))
            }
            _ => None,
        };
        let mut slots = vec![(false, info.name.clone(), format!("operation {}", info.name))];
        if let Some(symbol) = info.symbol() {
            slots.push((true, symbol.to_string(), format!("operator {symbol}")));
        }
        // The name and the symbol are one operation: settings for either apply to both slots.
        let keys: Vec<&str> = std::iter::once(info.name.as_str())
            .chain(info.symbol())
            .collect();
        for (is_symbol, key, what) in slots {
            let (rank, _) = self.settings.rank(&keys, &plugin, load_rank);
            let provider = Provider {
                handle: handle.clone(),
                stats: Arc::clone(&stats),
                rank,
                limit: limit.clone(),
            };
            let map = if is_symbol {
                &self.by_symbol
            } else {
                &self.by_name
            };
            let mut slot = map.get(&key).map_or_else(
                || OpSlot {
                    first: None,
                    key: key.clone(),
                    providers: Vec::new(),
                    rollout: None,
                },
                |s| OpSlot::clone(&s.load()),
            );
            let at = slot.providers.partition_point(|p| p.rank <= rank);
            slot.providers.insert(at, provider);
            let ops: Vec<(&str, &str, Option<&str>)> = slot
                .providers
                .iter()
                .map(|p| {
                    let op = p.handle.info();
                    (
                        p.handle.plugin().name.as_str(),
                        op.name.as_str(),
                        op.symbol(),
                    )
                })
                .collect();
            slot.rollout =
                slot_rollout(&self.settings, &ops).map(|(candidate, percent, id)| SlotRollout {
                    candidate,
                    percent,
                    id: id.to_string(),
                });
            let ranked: Vec<(&str, u64)> = slot
                .providers
                .iter()
                .map(|p| (p.handle.plugin().name.as_str(), p.rank))
                .collect();
            let conflicts = slot_conflicts(
                &what,
                &ranked,
                slot.rollout.as_ref().map(|r| (r.candidate, r.percent)),
            );
            // The slot may change again as more plugins load: `conflicts()` and the CLI's
            // warnings describe where it ends; this is where it stands now.
            for conflict in &conflicts {
                tracing::debug!("{conflict}");
            }
            replace_conflicts(&mut self.conflicts, &what, conflicts);
            slot.first = slot.providers.first().map(|p| p.handle.clone());
            let map = if is_symbol {
                &mut self.by_symbol
            } else {
                &mut self.by_name
            };
            match map.get(&key) {
                Some(live) => live.store(Arc::new(slot)),
                None => {
                    let orphan = self.orphans.remove(&(is_symbol, key.clone()));
                    let live = match orphan.and_then(|o| o.upgrade()) {
                        Some(live) => {
                            live.store(Arc::new(slot));
                            live
                        }
                        None => Arc::new(RcuCell::from_pointee(slot)),
                    };
                    map.insert(key, live);
                }
            }
        }
    }

    /// Recomputes every slot from the loaded plugins (after a reload or an unload) and stores
    /// the new contents into the existing live slots; a slot no plugin provides any more becomes
    /// empty (calls through it fail) and leaves the maps.
    fn rebuild_slots(&mut self) {
        // Old slot contents, dropped after one shared grace period at the end.
        let mut retired = Vec::new();
        self.orphans.retain(|_, live| live.strong_count() > 0);
        let old_names = std::mem::take(&mut self.by_name);
        let old_symbols = std::mem::take(&mut self.by_symbol);
        self.conflicts.clear();
        let handles: Vec<(OpHandle, u64)> = self
            .plugins
            .iter()
            .flat_map(|e| {
                (0..e.plugin.info().operations.len()).map(move |i| {
                    (
                        OpHandle::new(&e.plugin, i).expect("index is in range"),
                        e.load_rank,
                    )
                })
            })
            .collect();
        for (handle, rank) in handles {
            self.register(handle, rank);
        }
        for (is_symbol, old, new) in [
            (false, old_names, &mut self.by_name),
            (true, old_symbols, &mut self.by_symbol),
        ] {
            for (key, live) in old {
                match new.get(&key) {
                    Some(fresh) => {
                        retired.push(live.swap(fresh.load_full()));
                        new.insert(key, live);
                    }
                    None => {
                        let mut empty = OpSlot::clone(&live.load());
                        empty.providers.clear();
                        empty.rollout = None;
                        empty.first = None;
                        retired.push(live.swap(Arc::new(empty)));
                        self.orphans.insert((is_symbol, key), Arc::downgrade(&live));
                    }
                }
            }
        }
        if !self.by_interface.is_empty()
            || self
                .plugins
                .iter()
                .any(|e| !e.plugin.info().interfaces.is_empty())
        {
            self.rebuild_interfaces(&mut retired);
        }
        crate::rcu::retire_all(retired);
    }

    /// Loads every shared library directly inside `dir`, in file-name order; other files are
    /// skipped. Returns how many plugins were initialised. Each failure is recorded in
    /// [`Self::failures`] and does not stop the others; an unreadable directory is an error (and
    /// recorded too).
    pub fn load_dir(&mut self, dir: &Path) -> Result<usize, LoadError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(source) => {
                return Err(self.record(LoadError::Directory {
                    path: dir.to_path_buf(),
                    source: source.into(),
                }))
            }
        };
        // Resolve the directory once and join the entries' names: a regular file directly in a
        // canonical directory is canonical already (only symlinks need `realpath`).
        let canonical_dir = std::fs::canonicalize(dir).ok();
        // The trust policy's directory checks, once for all its files.
        let trusted = match canonical_dir
            .as_deref()
            .map(|d| self.settings.trust.check_dir(d))
        {
            Some(Err(e)) => return Err(self.record(e)),
            Some(Ok(trusted)) => Some(trusted.hold_open()),
            None => None,
        };
        let mut files: Vec<(PathBuf, bool)> = entries
            .filter_map(Result::ok)
            .filter(|e| is_library_file(&e.path()))
            .map(|e| {
                let is_file = e.file_type().is_ok_and(|t| t.is_file());
                match (&canonical_dir, is_file) {
                    (Some(d), true) => (d.join(e.file_name()), true),
                    _ => (e.path(), false),
                }
            })
            .collect();
        // All in one directory: their file names give the order (compared as bytes, not path
        // component by component).
        files.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
        let before = self.plugins.len();
        self.scanning = trusted;
        let loaded = self.vet_and_load(&files);
        for (f, resolved) in &files[loaded..] {
            let _ = self.load_one(f, *resolved);
        }
        self.scanning = None;
        Ok(self.plugins.len().saturating_sub(before))
    }

    /// Loads the first files of `files` (a directory's, in order) while the vetting child vets
    /// the next ones: the new files that pass the trust policy are vetted in one pass with
    /// many in flight ([`crate::vet::Vetter::vet_all`]), and each is opened here as soon as
    /// its verdict arrives. Returns how many of `files` it loaded (from the first on); the
    /// caller loads the rest. Loads none when vetting is off or there is little to vet.
    fn vet_and_load(&mut self, files: &[(PathBuf, bool)]) -> usize {
        if self.settings.isolation.all {
            return 0; // runners open the files; nothing of them runs here
        }
        let on = {
            let mut vetting = self
                .vetting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.vetting_on(&mut vetting)
        };
        if !on {
            return 0; // no trust check twice for files that are not vetted
        }
        // The files to vet: canonical, trusted, and without a verdict on this version.
        let mut todo: Vec<(usize, crate::cache::FileStamp)> = Vec::new();
        for (i, (path, resolved)) in files.iter().enumerate() {
            if !resolved {
                continue; // loading it resolves it, and vets it alone
            }
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            let stamp = crate::cache::FileStamp::of(&meta);
            // Only files the trust policy admits are vetted; loading the others says why.
            if crate::vet::recall(path, stamp).is_none() && self.vet(path, true).is_ok() {
                todo.push((i, stamp));
            }
        }
        if todo.len() < 2 {
            return 0;
        }
        let vetter = {
            let mut vetting = self
                .vetting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if self.vetting_on(&mut vetting) {
                // A vetter with no child stands in, for files that are opened meanwhile
                // without a verdict from this pass (it starts a child only if one is).
                let spare = vetting.vetter.as_ref().map(crate::vet::Vetter::fresh);
                std::mem::replace(&mut vetting.vetter, spare)
            } else {
                None
            }
        };
        let Some(mut vetter) = vetter else {
            return 0;
        };
        let paths: Vec<PathBuf> = todo.iter().map(|&(i, _)| files[i].0.clone()).collect();
        let mut next = 0;
        vetter.vet_all(&paths, |k, verdict| {
            let (i, stamp) = todo[k];
            crate::vet::remember(&files[i].0, stamp, &verdict, true);
            // Every file up to this one has its verdict (or needs none): load them while the
            // child goes on with the next.
            while next <= i {
                let (f, resolved) = &files[next];
                let _ = self.load_one(f, *resolved);
                next += 1;
            }
        });
        let mut vetting = self
            .vetting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        vetting.vetter = Some(vetter);
        next
    }

    /// Discovers the plugins of `dir` without opening those the metadata cache already
    /// validated: they become *known* (see [`Self::known`]) and are opened, validated and
    /// initialised on first use ([`Self::open_for`], [`Self::open_all`]). Files the cache has no
    /// fresh entry for, and refused files, are loaded at once, so their failures are reported
    /// as with [`Self::load_dir`]. Every plugin keeps the provider rank of its place in
    /// directory order, whenever it is opened. Returns how many plugins are loaded or known.
    pub fn load_dir_lazy(
        &mut self,
        dir: &Path,
        cache: &mut crate::cache::MetadataCache,
    ) -> Result<usize, LoadError> {
        let files = match library_files(dir) {
            Ok(files) => files,
            Err(source) => {
                return Err(self.record(LoadError::Directory {
                    path: dir.to_path_buf(),
                    source: source.into(),
                }))
            }
        };
        let before = self.plugins.len() + self.lazy.len();
        // The trust policy first: the cache may open files it has no fresh entry for.
        let trusted = match std::fs::canonicalize(dir) {
            Ok(canonical) => self.settings.trust.check_dir(&canonical),
            Err(source) => Err(LoadError::Directory {
                path: dir.to_path_buf(),
                source: source.into(),
            }),
        };
        let trusted = match trusted {
            Ok(trusted) => trusted,
            Err(e) => return Err(self.record(e)),
        };
        // The trust policy, then every new file vetted in one pass (pipelined), then each file
        // in directory order, from the cache.
        let checked: Vec<(PathBuf, Result<(), LoadError>)> = files
            .into_iter()
            .map(|path| {
                let canonical = path
                    .file_name()
                    .map_or_else(|| path.clone(), |name| trusted.path().join(name));
                let policy = trusted.check_policy(&canonical).map(|_| ());
                (path, policy)
            })
            .collect();
        let admitted: Vec<PathBuf> = checked
            .iter()
            .filter(|(_, policy)| policy.is_ok())
            .map(|(path, _)| path.clone())
            .collect();
        cache.validate_all(&admitted, Some(trusted.path()));
        for (path, policy) in checked {
            self.loads += 1;
            let rank = LOAD_RANKS + self.loads;
            if let Err(e) = policy {
                self.record(e);
                continue;
            }
            let (verdict, stamp) = cache.validate_in(&path, Some(trusted.path()));
            match verdict {
                crate::cache::Verdict::Valid(info) => match self.admit(&info, None) {
                    Ok(true) => self.disabled.push(info),
                    Ok(false) => self.lazy.push((info, rank, stamp)),
                    Err(error) => {
                        self.record(error);
                    }
                },
                // Recorded as validation gave it: the file is not opened again here, so a file
                // that a vetting child found to crash or hang never runs in this process.
                crate::cache::Verdict::Refused(refusal) => {
                    self.record(refusal.into());
                }
            }
        }
        Ok((self.plugins.len() + self.lazy.len()).saturating_sub(before))
    }

    /// Plugins known from the metadata cache and not opened yet.
    pub fn known(&self) -> impl Iterator<Item = &PluginInfo> {
        self.lazy.iter().map(|(p, _, _)| p)
    }

    /// Opens the known plugins that provide an operation `text` may use: a function or
    /// operation named by one of its identifiers, or an infix symbol that occurs in it. Opened
    /// in directory order, with their directory-order ranks. Returns how many were opened.
    pub fn open_for(&mut self, text: &str) -> usize {
        let identifiers: std::collections::HashSet<&str> = text
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        let wanted = |p: &PluginInfo| {
            p.operations.iter().any(|op| {
                identifiers.contains(op.name.as_str())
                    || op.symbol().is_some_and(|s| text.contains(s))
            })
        };
        self.open_lazy(wanted)
    }

    /// Opens every known plugin (see [`Self::load_dir_lazy`]). Returns how many were opened.
    pub fn open_all(&mut self) -> usize {
        self.open_lazy(|_| true)
    }

    fn open_lazy(&mut self, wanted: impl Fn(&PluginInfo) -> bool) -> usize {
        let (open, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.lazy)
            .into_iter()
            .partition(|(p, _, _)| wanted(p));
        self.lazy = keep;
        let mut opened = 0;
        for (info, rank, stamp) in open {
            // The cache validated this version of the file (vetted, as `[isolation] vet`
            // says): it is not vetted again.
            if let Some(stamp) = stamp {
                let verdict = crate::cache::Verdict::Valid(info.clone());
                crate::vet::remember(&info.path, stamp, &verdict, true);
            }
            self.next_rank = Some(rank);
            if self.load_one(&info.path, true).is_ok() {
                opened += 1;
            }
            self.next_rank = None;
        }
        opened
    }

    /// Shuts down and unloads the plugin called `name` (once no call or handle uses it any
    /// more), and stops offering its operations. Returns whether it was loaded.
    pub fn unload(&mut self, name: &str) -> bool {
        let Some(i) = self
            .plugins
            .iter()
            .position(|e| e.plugin.info().name == name)
        else {
            return false;
        };
        let entry = self.plugins.remove(i);
        self.rebuild_slots();
        tracing::info!(plugin = name, "unloading");
        drop(entry);
        true
    }

    /// Applies a change of the plugin file at `path` (hot reload): a new file is loaded; a
    /// changed file is validated and initialised as the new version, handed the old version's
    /// state (ABI 1.1 `save_state`), and swapped in atomically, while calls in flight finish on
    /// the old version, which is shut down and unloaded after its last call. If the new version
    /// fails (bad ABI, refused version, failed `init`), the old one keeps serving and the
    /// failure is recorded and returned.
    pub fn reload_file(&mut self, path: &Path) -> Result<HostEvent, LoadError> {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let Some(i) = self
            .plugins
            .iter()
            .position(|e| e.plugin.info().path == canonical)
        else {
            // Not loaded: a new file, or the file of a disabled plugin (whose listing is
            // refreshed from the new file).
            self.disabled.retain(|p| p.path != canonical);
            let loaded = self.load_file(path).map(|info| {
                (
                    info.name.clone(),
                    info.path.clone(),
                    info.version.to_string(),
                )
            });
            return match loaded {
                Ok((name, path, version)) => {
                    let event = if self.disabled.iter().any(|p| p.name == name) {
                        HostEvent::Disabled { name, path }
                    } else {
                        HostEvent::Loaded {
                            name,
                            version,
                            path,
                        }
                    };
                    self.emit(event.clone());
                    Ok(event)
                }
                Err(_) => Err(self.report_last_failure()),
            };
        };
        let started = Instant::now();
        // Held until the reload is reported, so that the old version's `Unloaded` comes after it.
        let old = Arc::clone(&self.plugins[i].plugin);
        match self.swap_in(i, path) {
            Ok((old_version, new_version, name, state_bytes)) => {
                let event = HostEvent::Reloaded {
                    name,
                    old_version,
                    new_version,
                    state_bytes,
                    elapsed: started.elapsed(),
                };
                self.emit(event.clone());
                drop(old);
                Ok(event)
            }
            Err(error) => {
                self.record(error);
                Err(self.report_last_failure())
            }
        }
    }

    fn report_last_failure(&self) -> LoadError {
        let failure = self.failures.last().expect("a failure was just recorded");
        self.emit(HostEvent::Failed {
            path: failure.path.clone(),
            error: failure.error.to_string(),
        });
        failure.error.clone()
    }

    /// Opens, validates and initialises the new version of plugin `i` from `path`, then swaps
    /// it in. Returns (old version, new version, name, state bytes handed over).
    fn swap_in(
        &mut self,
        i: usize,
        path: &Path,
    ) -> Result<(String, String, String, Option<usize>), LoadError> {
        let old = Arc::clone(&self.plugins[i].plugin);
        let old_name = old.info().name.clone();
        let opened = self.open(path, false)?;
        if opened.info().name != old_name {
            // A different plugin now lives in this file. Start it first: if it fails, the old
            // one keeps serving. Then the old one goes.
            if self.admit(opened.info(), Some(&old_name))? {
                return Err(LoadError::InvalidField {
                    path: path.to_path_buf(),
                    field: "enabled".into(),
                    reason: format!("plugin {} is disabled by the settings", opened.info().name),
                });
            }
            let plugin = self.initialise(opened, None)?;
            let versions = (
                old.info().version.to_string(),
                plugin.info().version.to_string(),
                plugin.info().name.clone(),
                None,
            );
            drop(old);
            self.unload(&old_name);
            self.loads += 1;
            self.plugins.push(Entry {
                plugin,
                load_rank: LOAD_RANKS + self.loads,
            });
            self.rebuild_slots();
            return Ok(versions);
        }
        if self.admit(opened.info(), Some(&old_name))? {
            // Disabled by the settings since it was loaded: take it out.
            self.disabled.push(opened.info().clone());
            drop(old);
            self.unload(&old_name);
            return Err(LoadError::InvalidField {
                path: path.to_path_buf(),
                field: "enabled".into(),
                reason: format!("plugin {old_name} is disabled by the settings; unloaded"),
            });
        }
        let state = match old.save_state() {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!("{old_name}: {e}; the new version starts without state");
                None
            }
        };
        let state_bytes = state.as_ref().map(Vec::len);
        let plugin = self.initialise(opened, state)?;
        let result = (
            old.info().version.to_string(),
            plugin.info().version.to_string(),
            old_name,
            state_bytes,
        );
        self.plugins[i].plugin = plugin;
        self.rebuild_slots();
        // `old` drops here, or later with the last call still running on it.
        Ok(result)
    }

    /// Applies the removal of the plugin file at `path`: its plugin is unloaded and its
    /// operations are no longer offered. Returns the event, or `None` when no loaded plugin came
    /// from that file.
    pub fn remove_file(&mut self, path: &Path) -> Option<HostEvent> {
        let canonical = path
            .parent()
            .and_then(|d| std::fs::canonicalize(d).ok())
            .map(|d| d.join(path.file_name().unwrap_or_default()));
        let name = self
            .plugins
            .iter()
            .find(|e| {
                Some(&e.plugin.info().path) == canonical.as_ref() || e.plugin.info().path == path
            })
            .map(|e| e.plugin.info().name.clone())?;
        let event = HostEvent::Removed {
            name: name.clone(),
            path: path.to_path_buf(),
        };
        self.emit(event.clone());
        self.unload(&name);
        Some(event)
    }

    /// Unloads `name` (if loaded) and lists it as disabled; it is not loaded again by this
    /// manager until [`Self::enable`]. Returns whether it was loaded.
    pub fn disable(&mut self, name: &str) -> bool {
        let info = self
            .plugins
            .iter()
            .find(|e| e.plugin.info().name == name)
            .map(|e| e.plugin.info().clone());
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

    /// Loads a plugin that was disabled, from the file it was found in; or re-enables an
    /// isolated plugin the circuit breaker disabled (its runner starts again on the next call).
    pub fn enable(&mut self, name: &str) -> Result<&PluginInfo, LoadError> {
        if let Some(i) = self
            .plugins
            .iter()
            .position(|e| e.plugin.info().name == name)
        {
            let reset = match isolation::runner_of(&self.plugins[i].plugin) {
                Some(runner) => runner.reset_breaker(),
                None => self.limits.get(name).is_some_and(|l| l.reset()),
            };
            if reset {
                tracing::info!(plugin = name, "re-enabled after the circuit breaker");
            }
            return Ok(self.plugins[i].plugin.info());
        }
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

    /// Health figures of the loaded plugin `name` (`None` when it is not loaded): for an
    /// isolated plugin every call through its operations, with crashes, timeouts, restarts,
    /// latency and the circuit breaker's state; for an in-process plugin the calls and errors
    /// the manager's evaluation paths counted (as [`Self::stats`]).
    pub fn health(&self, name: &str) -> Option<Health> {
        let entry = self.plugins.iter().find(|e| e.plugin.info().name == name)?;
        if let Some(runner) = isolation::runner_of(&entry.plugin) {
            return Some(runner.health());
        }
        let (calls, failures) = self
            .stats()
            .filter(|(p, _, _)| *p == name)
            .fold((0, 0), |(c, f), (_, _, s)| (c + s.calls(), f + s.errors()));
        let mut health = Health {
            calls,
            failures,
            ..Health::default()
        };
        if let Some(limit) = self.limits.get(name) {
            limit.fill(&mut health);
        }
        Some(health)
    }

    /// Whether the loaded plugin `name` runs in a runner process.
    pub fn is_isolated(&self, name: &str) -> bool {
        self.plugins
            .iter()
            .any(|e| e.plugin.info().name == name && e.plugin.is_isolated())
    }

    /// The isolation settings, to change which plugins loaded from now on run in a runner
    /// process and their limits (see [`crate::config::IsolationSettings`]).
    pub fn isolation_mut(&mut self) -> &mut crate::config::IsolationSettings {
        &mut self.settings.isolation
    }

    /// Metadata of the loaded (enabled) plugins, in load order.
    pub fn plugins(&self) -> impl Iterator<Item = &PluginInfo> {
        self.plugins.iter().map(|e| e.plugin.info())
    }

    /// Offers plugins loaded from now on the application's `interface` through the host
    /// service `get_interface` (ABI 1.4, `docs/INTERFACES.md`). Plugins already loaded keep
    /// what was offered when they were loaded (a reload sees the new offer), and a plugin in a
    /// runner process is offered nothing. Refused when an interface of the same id and major is
    /// already offered.
    pub fn offer_interface(
        &mut self,
        interface: crate::HostInterface,
    ) -> Result<(), crate::InterfaceError> {
        if self
            .offered
            .iter()
            .any(|i| i.id() == interface.id() && i.major() == interface.major())
        {
            return Err(crate::InterfaceError {
                id: interface.id().to_string(),
                reason: format!("major {} is already offered", interface.major()),
            });
        }
        self.offered = self.offered.iter().cloned().chain([interface]).collect();
        Ok(())
    }

    /// The interfaces offered to plugins, in the order they were offered.
    pub fn offered_interfaces(&self) -> &[crate::HostInterface] {
        &self.offered
    }

    /// The providers of the interface `id` at major `major` as they are whenever used: a handle
    /// that follows loads, unloads and hot reloads (`docs/INTERFACES.md`). `None` when no
    /// plugin loaded by this manager ever implemented it.
    pub fn live_interface(&self, id: &str, major: u16) -> Option<crate::interface::LiveInterface> {
        self.by_interface.get(&(id.to_string(), major)).map(|slot| {
            crate::interface::LiveInterface {
                slot: Arc::clone(slot),
            }
        })
    }

    /// Every loaded (enabled) plugin that implements the interface `id` at major `major`, best
    /// first: the provider the settings name for `id` (`[providers]`), then the plugins in
    /// `prefer` order, then load order, as for an operation. Each handle pins the plugin's
    /// current version (ABI 1.4, `docs/INTERFACES.md`). A plugin in a runner process is among
    /// them only for a bytes interface.
    pub fn interface_providers(&self, id: &str, major: u16) -> Vec<crate::InterfaceHandle> {
        self.interface(id, major).providers
    }

    /// The providers of the interface `id` at major `major` now, best first as
    /// [`Self::interface_providers`] ranks them, with the rollout the settings configure for
    /// `id` (`[operations."ID"] rollout`) when its candidate is among them: choose one by
    /// rollout key and fall back to the next with [`crate::InterfaceSlot`]. Each handle pins
    /// the plugin's current version; with no provider, the slot is empty.
    pub fn interface(&self, id: &str, major: u16) -> crate::InterfaceSlot {
        let mut ranked: Vec<(u64, crate::InterfaceHandle)> = self
            .plugins
            .iter()
            .filter_map(|e| {
                let handle = crate::InterfaceHandle::new(&e.plugin, id, major)?;
                let name = &e.plugin.info().name;
                Some((self.settings.rank(&[id], name, e.load_rank).0, handle))
            })
            .collect();
        // Stable: equal ranks keep load order.
        ranked.sort_by_key(|(rank, _)| *rank);
        let providers: Vec<_> = ranked.into_iter().map(|(_, handle)| handle).collect();
        let rollout = self.settings.rollout(id, None).and_then(|(_, r)| {
            let candidate = providers
                .iter()
                .position(|p| p.plugin().name == r.candidate)?;
            Some((candidate, r.percent))
        });
        crate::InterfaceSlot {
            id: id.to_string(),
            providers,
            rollout,
        }
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
    pub fn serving(&self, name: &str) -> Option<String> {
        self.by_name
            .get(name)
            .map(|s| s.load().primary().plugin().name.clone())
    }

    /// Warnings about names in the settings: each one that matches no plugin (from a flag or
    /// the config file, named in the warning), and each configured provider, preferred plugin
    /// or rollout candidate that is disabled or failed (see [`Settings::notices`]).
    pub fn notices(&self) -> Vec<String> {
        self.settings.notices(&self.known_plugins())
    }

    /// What this manager knows of plugins, for [`Settings::notices`].
    pub fn known_plugins(&self) -> crate::config::KnownPlugins {
        let names = |it: &mut dyn Iterator<Item = &PluginInfo>| {
            it.map(|p| p.name.clone())
                .collect::<std::collections::BTreeSet<_>>()
        };
        // Interface ids too: `[providers]` may name the provider of an interface.
        let operations = self
            .listed()
            .flat_map(|p| &p.operations)
            .flat_map(|op| std::iter::once(op.name.clone()).chain(op.symbol().map(str::to_string)))
            .chain(
                self.listed()
                    .flat_map(|p| &p.interfaces)
                    .map(|i| i.id.clone()),
            )
            .collect();
        let serving = self
            .by_name
            .iter()
            .chain(&self.by_symbol)
            .filter_map(|(key, slot)| {
                let slot = slot.load();
                let first = slot.providers().first()?;
                Some((key.clone(), first.handle().plugin().name.clone()))
            })
            .collect();
        crate::config::KnownPlugins {
            enabled: names(&mut self.plugins().chain(self.known())),
            disabled: names(&mut self.disabled.iter()),
            failed: self
                .failures
                .iter()
                .filter_map(|f| f.error.plugin_name().map(str::to_string))
                .collect(),
            operations,
            serving,
        }
    }

    /// The primary implementation of operation `name`, or failing that of the infix operator
    /// with symbol `name`, pinned to the version loaded now: the fastest path, with no
    /// rollout, fallback, counting or reload (see [`Self::live_operation`]).
    pub fn operation(&self, name: &str) -> Option<OpHandle> {
        self.live_slot(name).map(|s| s.load().primary().clone())
    }

    /// A handle to operation `name` (or infix symbol) that follows hot reloads: each call goes
    /// to the version serving at that moment.
    pub fn live_operation(&self, name: &str) -> Option<LiveOp> {
        self.live_slot(name).map(|s| LiveOp {
            slot: Arc::clone(s),
        })
    }

    /// The live slot of operation `name`, or of the infix operator with symbol `name`.
    pub fn live_slot(&self, name: &str) -> Option<&LiveSlot> {
        self.by_name.get(name).or_else(|| self.by_symbol.get(name))
    }

    /// The current contents of the slot of operation `name` (or infix symbol `name`).
    pub fn slot(&self, name: &str) -> Option<Arc<OpSlot>> {
        self.live_slot(name).map(|s| s.load_full())
    }

    /// The live slot of the infix operator with this symbol.
    pub fn infix_slot(&self, symbol: &str) -> Option<&LiveSlot> {
        self.by_symbol.get(symbol)
    }

    /// The primary implementation of the infix operator with this symbol (pinned).
    pub fn infix(&self, symbol: &str) -> Option<OpHandle> {
        self.infix_slot(symbol).map(|s| s.load().primary().clone())
    }

    /// The primary implementation of the function (not infix operator) called `name` (pinned).
    pub fn function(&self, name: &str) -> Option<OpHandle> {
        self.by_name
            .get(name)
            .map(|s| s.load().primary().clone())
            .filter(|h| h.info().symbol().is_none())
    }

    /// Calls operation `name` (or the operator with that symbol) through its slot: rollout by
    /// `key`, fallback and counting, as in [`Self::eval`]. `None` when no plugin provides it.
    pub fn call(&self, name: &str, args: &[f64], key: &str) -> Option<Result<f64, CallError>> {
        self.live_slot(name)
            .map(|s| s.load().call(args, rollout_hash(key.as_bytes())))
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
        while let Some(entry) = self.plugins.pop() {
            drop(entry);
        }
        // Private copies are deleted as their versions unload; remove the directory if that
        // left it empty (handles still held elsewhere keep theirs until they are dropped).
        if let Some(dir) = &self.copy_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl crate::slots::Resolve for PluginManager {
    fn live_slot(&self, name: &str) -> Option<&LiveSlot> {
        PluginManager::live_slot(self, name)
    }
    fn infix_slot(&self, symbol: &str) -> Option<&LiveSlot> {
        PluginManager::infix_slot(self, symbol)
    }
    fn disabled_provider(&self, name: &str) -> Option<&str> {
        PluginManager::disabled_provider(self, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str) -> PluginInfo {
        PluginInfo {
            name: name.to_string(),
            version: semver::Version::new(1, 0, 0),
            author: String::new(),
            description: String::new(),
            path: PathBuf::from(format!("/plugins/{name}.so")),
            abi_version: "1.3".into(),
            sdk_version: semver::Version::new(1, 0, 0),
            api_requirement: semver::VersionReq::STAR,
            operations: Vec::new(),
            interfaces: Vec::new(),
        }
    }

    #[test]
    fn the_name_index_forgets_departed_names_but_never_a_listed_one() {
        let mut m = PluginManager::new();
        assert_eq!(m.admit(&info("kept"), None).ok(), Some(false));
        m.disabled.push(info("kept"));
        // Many plugins come and go (as unloads and reloads do): the index is rebuilt from the
        // lists along the way.
        for i in 0..500 {
            let passing = info(&format!("passing_{i}"));
            assert_eq!(m.admit(&passing, None).ok(), Some(false));
            m.lazy.push((passing, 0, None));
            m.lazy.clear();
        }
        assert!(m.admitted.len() <= 2 + 64 + 1, "{} names", m.admitted.len());
        match m.admit(&info("kept"), None) {
            Err(LoadError::DuplicatePlugin { name, other, .. }) => {
                assert_eq!((name.as_str(), other), ("kept", info("kept").path));
            }
            other => panic!("a second \"kept\" was not refused: {other:?}"),
        }
        assert_eq!(m.admit(&info("kept"), Some("kept")).ok(), Some(false));
        // A name that left may come back.
        assert_eq!(m.admit(&info("passing_3"), None).ok(), Some(false));
    }
}
