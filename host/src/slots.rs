//! Operation slots: for each operation name and infix symbol, the plugins that provide it,
//! best first, with the rollout in force; the live slots that follow reloads ([`LiveSlot`],
//! [`LiveOp`]); and the conflicts they make. The manager fills them; expressions and handles
//! read them.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use calc_sdk::Status;

use std::path::PathBuf;

use crate::config::Settings;
use crate::error::CallError;
use crate::limit::CallLimit;
use crate::loader::OpHandle;
use crate::rcu::{RcuCell, RcuGuard};

/// Two plugins provide the same operation name or infix symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// `"operation add"` or `"operator +"`.
    pub what: String,
    /// The plugin that serves it (with a rollout: the keys the candidate does not get).
    pub winner: String,
    /// The other plugin: a fallback, or the rollout candidate.
    pub shadowed: String,
    /// Whether the settings chose the winner over `shadowed` (a configured provider, a
    /// preferred plugin, or `shadowed` is the rollout candidate); otherwise it was loaded first.
    pub explicit: bool,
    /// The rollout in force on the operation: its candidate and the percent of rollout keys it
    /// serves.
    pub rollout: Option<(String, f64)>,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is provided by both {} and {}; using {}",
            self.what, self.winner, self.shadowed, self.winner
        )?;
        let reason = if self.explicit {
            "configured"
        } else {
            "loaded first"
        };
        match &self.rollout {
            Some((candidate, percent)) if *candidate == self.shadowed => {
                write!(f, ", {candidate} for {percent}% of rollout keys (rollout)")
            }
            Some((candidate, percent)) => write!(
                f,
                " ({reason}), {candidate} for {percent}% of rollout keys (rollout)"
            ),
            None => write!(f, " ({reason})"),
        }
    }
}

/// Provider ranks below this were chosen by the settings (see `Settings::rank`); load order
/// ranks start here.
pub(crate) const LOAD_RANKS: u64 = 1_000_000;

/// The rollout in force on a slot whose providers, best first, are `providers` (plugin,
/// operation name, infix symbol): the candidate's index, the percent of keys it serves, and
/// the operation as the rollout is configured (its name or its symbol), which is hashed with
/// each rollout key: so `2 ^ 10` and `pow(2, 10)` give a key the same implementation.
pub(crate) fn slot_rollout<'s>(
    settings: &'s Settings,
    providers: &[(&str, &str, Option<&str>)],
) -> Option<(usize, f64, &'s str)> {
    let (id, rollout) = providers
        .iter()
        .find_map(|(_, name, symbol)| settings.rollout(name, *symbol))?;
    let candidate = providers
        .iter()
        .position(|(plugin, _, _)| *plugin == rollout.candidate)?;
    Some((candidate, rollout.percent, id))
}

/// Index of the provider that serves the rollout keys the candidate `candidate` does not get.
pub(crate) fn control(candidate: usize, providers: usize) -> usize {
    usize::from(candidate == 0 && providers > 1)
}

/// The conflicts of one slot, `what` (`"operator ^"`), as it stands: its providers, best first
/// (plugin and rank), and its rollout (candidate index and percent). One per provider besides
/// the one serving calls outside the rollout, each naming who actually serves.
pub(crate) fn slot_conflicts(
    what: &str,
    providers: &[(&str, u64)],
    rollout: Option<(usize, f64)>,
) -> Vec<Conflict> {
    if providers.len() < 2 {
        return Vec::new();
    }
    let serving = rollout.map_or(0, |(c, _)| control(c, providers.len()));
    let (winner, rank) = providers[serving];
    providers
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != serving)
        .map(|(i, (shadowed, _))| Conflict {
            what: what.to_string(),
            winner: winner.to_string(),
            shadowed: shadowed.to_string(),
            explicit: rank < LOAD_RANKS || rollout.is_some_and(|(c, _)| c == i),
            rollout: rollout.map(|(c, percent)| (providers[c].0.to_string(), percent)),
        })
        .collect()
}

/// Replaces the conflicts of slot `what` in `list` by `new`, in place (the first one's
/// position), so that the list always describes the slots as they stand.
pub(crate) fn replace_conflicts(list: &mut Vec<Conflict>, what: &str, new: Vec<Conflict>) {
    let at = list.iter().position(|c| c.what == what);
    list.retain(|c| c.what != what);
    let at = at.unwrap_or(list.len()).min(list.len());
    list.splice(at..at, new);
}

/// Call and error counts of one implementation (plugin and operation), counted by the
/// manager's evaluation paths (`PluginManager::eval`, `PluginManager::call`); direct
/// [`OpHandle::call`]s are not counted.
#[derive(Debug, Default)]
pub struct ImplStats {
    pub(crate) calls: AtomicU64,
    pub(crate) errors: AtomicU64,
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
    pub(crate) handle: OpHandle,
    pub(crate) stats: Arc<ImplStats>,
    pub(crate) rank: u64,
    /// The configured per-call limit of an in-process plugin (`[plugins.NAME] timeout_ms` or
    /// `[isolation] timeout_ms`): the cooperative deadline ([`crate::deadline`]) of every call
    /// made through the slot, with its figures and circuit breaker ([`crate::limit`]); `None`
    /// (the default) costs nothing.
    pub(crate) limit: Option<Arc<CallLimit>>,
}

impl Provider {
    /// The operation handle.
    pub fn handle(&self) -> &OpHandle {
        &self.handle
    }

    fn call(&self, args: &[f64]) -> Result<f64, CallError> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let result = match &self.limit {
            None => self.handle.call(args),
            Some(limit) => limit.call(&self.handle, args),
        };
        if result.is_err() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

/// The providers of one operation name or infix symbol, best first, with its rollout.
#[derive(Debug, Clone)]
pub struct OpSlot {
    /// A copy of the primary provider's handle, first so that the live call path reads it
    /// without following the `providers` vector.
    pub(crate) first: Option<OpHandle>,
    pub(crate) key: String,
    pub(crate) providers: Vec<Provider>,
    /// The rollout in force, if its candidate provides the operation.
    pub(crate) rollout: Option<SlotRollout>,
}

/// A rollout in force on a slot.
#[derive(Debug, Clone)]
pub(crate) struct SlotRollout {
    /// Index of the candidate in the slot's providers.
    pub(crate) candidate: usize,
    /// The percentage of rollout keys it serves.
    pub(crate) percent: f64,
    /// The operation as the rollout is configured (name or symbol): the same for the name's
    /// slot and the symbol's, and hashed with each key, so every spelling gets one bucket.
    pub(crate) id: String,
}

/// A stable 64-bit FNV-1a hash, for rollout keys (the same key gives the same bucket in every
/// build and on every machine).
pub fn rollout_hash(bytes: &[u8]) -> u64 {
    fnv1a(0xcbf2_9ce4_8422_2325, bytes)
}

/// FNV-1a from state `h` over `bytes`.
fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The bucket of rollout key hash `key` for the operation configured as `id`, in hundredths of
/// a percent (0 to 9999): FNV-1a over the key hash's 8 little-endian bytes then `id`'s UTF-8
/// bytes, modulo 10000. The candidate serves the key when `bucket < percent * 100`.
pub fn rollout_bucket(key: u64, id: &str) -> u64 {
    fnv1a(rollout_hash(&key.to_le_bytes()), id.as_bytes()) % 10_000
}

/// Index of the provider, among `providers` best first, that serves rollout key hash `key`
/// under a rollout of the provider at index `candidate` to `percent` of keys, configured under
/// `id`: the candidate for the keys whose bucket is below the percent, else the control.
pub(crate) fn choose(
    candidate: usize,
    percent: f64,
    id: &str,
    providers: usize,
    key: u64,
) -> usize {
    let bucket = rollout_bucket(key, id) as f64 / 100.0;
    if bucket < percent {
        candidate
    } else {
        control(candidate, providers)
    }
}

/// Statuses that mean the implementation itself failed, so another provider may serve.
pub(crate) fn is_internal(e: &CallError) -> bool {
    matches!(e.status, Status::Panic | Status::Error)
}

/// An operation slot that follows reloads: compiled expressions and [`LiveOp`]s hold it, and
/// every load, reload or unload stores a new [`OpSlot`] in it atomically (read-copy-update, see
/// [`crate::rcu`]). A call reads the current slot once, without any atomic read-modify-write;
/// the read guard keeps that version alive until the call returns.
pub type LiveSlot = Arc<RcuCell<OpSlot>>;

impl OpSlot {
    /// The implementation that serves calls without a rollout.
    ///
    /// # Panics
    /// When the slot is empty (its last provider was unloaded); slots reachable through the
    /// manager's maps never are.
    pub fn primary(&self) -> &OpHandle {
        &self.providers[0].handle
    }

    /// Whether no plugin provides this operation any more.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    #[cold]
    #[inline(never)]
    fn gone(&self) -> CallError {
        CallError::new(crate::error::CallErrorDetails {
            operation: self.key.clone(),
            plugin: String::new(),
            path: PathBuf::new(),
            status: Status::Error,
            message: "no plugin provides it any more (unloaded)".into(),
        })
    }

    /// All providers, best first.
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// Index of the provider that serves rollout key hash `key`.
    fn choose(&self, key: u64) -> usize {
        self.rollout.as_ref().map_or(0, |r| {
            choose(r.candidate, r.percent, &r.id, self.providers.len(), key)
        })
    }

    /// The plugin that serves rollout key hash `key` (before any fallback), if any.
    pub fn serving(&self, key: u64) -> Option<&str> {
        self.providers
            .get(self.choose(key))
            .map(|p| p.handle.plugin().name.as_str())
    }

    /// Calls the implementation chosen for rollout key hash `key`, falling back to the next
    /// providers in order when it fails internally.
    pub fn call(&self, args: &[f64], key: u64) -> Result<f64, CallError> {
        if self.providers.is_empty() {
            return Err(self.gone());
        }
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

/// A handle to an operation that follows hot reloads (see `PluginManager::live_operation`).
/// Cheap to clone; usable from any thread; keeps working after the manager is dropped (with the
/// versions loaded at that time).
#[derive(Clone)]
pub struct LiveOp {
    pub(crate) slot: LiveSlot,
}

impl std::fmt::Debug for LiveOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveOp")
            .field("operation", &self.slot.load().key)
            .finish()
    }
}

impl LiveOp {
    /// Calls the version serving now (its primary implementation). A call in flight keeps its
    /// version loaded until it returns.
    #[inline(always)]
    pub fn call(&self, args: &[f64]) -> Result<f64, CallError> {
        self.slot.read(|slot| match &slot.first {
            Some(handle) => handle.call(args),
            None => Err(slot.gone()),
        })
    }

    /// Calls the version serving now over whole columns (see [`OpHandle::call_batch`]): one
    /// read of the live slot for the whole batch, so reload safety costs nothing per row. The
    /// version stays loaded until the batch returns.
    pub fn call_batch(
        &self,
        columns: &[&[f64]],
        out: &mut [f64],
    ) -> Result<(), (usize, CallError)> {
        let slot = self.slot.load();
        match &slot.first {
            Some(handle) => handle.call_batch(columns, out),
            None => Err((0, slot.gone())),
        }
    }

    /// Pins the version serving now for a run of calls: calls through the returned guard cost
    /// exactly a pinned [`OpHandle::call`], with no per-call read-side mark. A reload that
    /// happens meanwhile swaps the slot at once but waits (up to [`crate::rcu::GRACE_WAIT`],
    /// then in the background) for the guard to drop before the old version is unloaded, so
    /// keep guards short: pin again every few thousand calls or every millisecond to follow
    /// reloads. Not `Send`: a guard stays on the thread that made it.
    #[inline]
    pub fn pin(&self) -> PinnedLiveOp<'_> {
        PinnedLiveOp {
            slot: self.slot.load(),
        }
    }

    /// The plugin serving now, if any.
    pub fn serving(&self) -> Option<String> {
        self.slot
            .load()
            .providers
            .first()
            .map(|p| p.handle.plugin().name.clone())
    }
}

/// A [`LiveOp`] pinned to the version that served when [`LiveOp::pin`] was called.
pub struct PinnedLiveOp<'a> {
    pub(crate) slot: RcuGuard<'a, OpSlot>,
}

impl std::fmt::Debug for PinnedLiveOp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedLiveOp")
            .field("operation", &self.slot.key)
            .finish()
    }
}

impl PinnedLiveOp<'_> {
    /// Calls the pinned version (its primary implementation), as [`LiveOp::call`] does.
    #[inline]
    pub fn call(&self, args: &[f64]) -> Result<f64, CallError> {
        match &self.slot.first {
            Some(handle) => handle.call(args),
            None => Err(self.slot.gone()),
        }
    }

    /// The pinned version's handle; `None` when no plugin provided the operation at pin time.
    pub fn handle(&self) -> Option<&OpHandle> {
        self.slot.first.as_ref()
    }
}

/// Resolves operation names and infix symbols to their live slots: what an expression needs of
/// the plugins ([`crate::expr::compile`]). `PluginManager` is one.
pub trait Resolve {
    /// The live slot of the operation called `name` (a function's or an operation's name, else
    /// an infix symbol), if a loaded plugin provides it.
    fn live_slot(&self, name: &str) -> Option<&LiveSlot>;
    /// The live slot of the infix operator `symbol`, if a loaded plugin provides it.
    fn infix_slot(&self, symbol: &str) -> Option<&LiveSlot>;
    /// The plugin that provides `name` but is disabled by the settings, if one is (for
    /// messages).
    fn disabled_provider(&self, name: &str) -> Option<&str>;
}
