//! Application-defined interfaces (ABI 1.4): handles to the vtable a loaded plugin declared for
//! an interface, which keep its library loaded while they live.
//!
//! The host knows an interface only by its id, version and vtable size (`calc_interface_t`);
//! what the vtable holds is the application's to define (`docs/INTERFACES.md`). A
//! [`InterfaceHandle`] pins one loaded version of one plugin: the vtable pointer and the
//! plugin's instance stay valid for as long as the handle lives, whatever reloads happen
//! meanwhile.

use std::ffi::c_void;
use std::sync::Arc;

use crate::info::{InterfaceInfo, PluginInfo};
use crate::loader::LoadedPlugin;
pub use crate::services::{HostInterface, InterfaceError};

/// One plugin's implementation of one interface, pinned to the loaded version it came from.
///
/// Holds the plugin's library (through an `Arc` of it) so that the vtable, the functions it
/// points to and the plugin's instance stay valid while the handle lives. Cheap to clone.
#[derive(Clone)]
pub struct InterfaceHandle {
    plugin: Arc<LoadedPlugin>,
    index: usize,
    // Copied out of the plugin, so that a call through the handle reads nothing behind the
    // `Arc` (figures: `cargo bench -p calc-benches --bench interfaces`).
    vtable: usize,
    vtable_size: usize,
    instance: usize,
}

impl std::fmt::Debug for InterfaceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterfaceHandle")
            .field("plugin", &self.plugin.info().name)
            .field("interface", self.info())
            .finish_non_exhaustive()
    }
}

impl InterfaceHandle {
    /// The handle to the interface `id` of major `major` that `plugin` declares, if it declares
    /// one and runs in this process, or it is a bytes interface (an isolated plugin's vtable
    /// is in its runner, which [`Self::call_bytes`] reaches).
    pub fn new(plugin: &Arc<LoadedPlugin>, id: &str, major: u16) -> Option<InterfaceHandle> {
        let index = plugin
            .info()
            .interfaces
            .iter()
            .position(|i| i.id == id && i.major == major)?;
        // A plugin in a runner has no vtable here; its bytes interfaces are called through it.
        let vtable = match plugin.vtable_address(index) {
            Some(vtable) => vtable,
            None if plugin.is_isolated() && plugin.info().interfaces[index].bytes => 0,
            None => return None,
        };
        Some(InterfaceHandle {
            plugin: Arc::clone(plugin),
            index,
            vtable,
            vtable_size: plugin.info().interfaces[index].vtable_size as usize,
            instance: plugin.instance() as usize,
        })
    }

    /// The interface as the plugin declared it: id, version, vtable size.
    pub fn info(&self) -> &InterfaceInfo {
        &self.plugin.info().interfaces[self.index]
    }

    /// The plugin that implements it.
    pub fn plugin(&self) -> &PluginInfo {
        self.plugin.info()
    }

    /// The vtable's address: `vtable_size` readable bytes, valid while this handle lives. What
    /// they hold is the interface's definition. NULL for a plugin in a runner process.
    #[inline]
    pub fn vtable(&self) -> *const c_void {
        self.vtable as *const c_void
    }

    /// The vtable's size as the plugin was compiled: a field that does not end within it does
    /// not exist (the plugin was built against an older minor of the interface).
    #[inline]
    pub fn vtable_size(&self) -> usize {
        self.vtable_size
    }

    /// Whether the vtable holds `end` bytes: use it before reading a field added in a later
    /// minor of the interface, with `end` the field's offset plus its size.
    #[inline]
    pub fn covers(&self, end: usize) -> bool {
        end <= self.vtable_size()
    }

    /// The plugin's instance, what its `init` produced: the first argument of the vtable's
    /// functions by convention. Valid while this handle lives.
    #[inline]
    pub fn instance(&self) -> *mut c_void {
        self.instance as *mut c_void
    }

    /// Whether the plugin runs in a runner process: only [`Self::call_bytes`] reaches it.
    pub fn is_isolated(&self) -> bool {
        self.vtable == 0
    }

    /// Calls function number `slot` (0-based, in vtable order) of a bytes interface
    /// (`CALC_INTERFACE_FLAG_BYTES`) with `input`, in this process or in the plugin's runner,
    /// and returns its output: the same call either way, with a runner's crashes, hangs and
    /// limits reported as for operations (`docs/ISOLATION.md`). Input and output are bounded
    /// at [`crate::loader::MAX_BYTES`].
    pub fn call_bytes(&self, slot: usize, input: &[u8]) -> Result<Vec<u8>, crate::CallError> {
        self.plugin
            .call_bytes(self.index, slot, input)
            .map_err(|(status, message)| {
                let plugin = self.plugin.info();
                crate::CallError::new(crate::CallErrorDetails {
                    operation: format!("{}[{slot}]", self.info().id),
                    plugin: plugin.name.clone(),
                    path: plugin.path.clone(),
                    status,
                    message,
                })
            })
    }

    /// The vtable as the application's type `T`, when the plugin's vtable holds all of `T`
    /// (`vtable_size >= size_of::<T>()`), is in this process, and its address suits `T`'s
    /// alignment.
    ///
    /// # Safety
    /// `T` must be the `#[repr(C)]` vtable type of this interface's id and major, at a minor no
    /// newer than the part of it the plugin's vtable holds (which the size check proves), and
    /// every bit pattern the plugin may have left in it must be a valid `T` (function pointers
    /// as `Option<unsafe extern "C" fn ...>`, so that NULL is `None`). The functions in it may
    /// only be called as the interface's definition says, with [`Self::instance`].
    #[inline]
    pub unsafe fn vtable_as<T>(&self) -> Option<&T> {
        if self.vtable == 0
            || self.vtable_size() < std::mem::size_of::<T>()
            || !self.vtable.is_multiple_of(std::mem::align_of::<T>())
        {
            return None;
        }
        // SAFETY: the vtable is `vtable_size >= size_of::<T>()` bytes of readable memory of the
        // plugin's library (validated at load), aligned for `T` (checked above), valid while
        // `self.plugin` keeps the library loaded, which outlives the returned borrow of `self`;
        // the caller vouches that the bytes are a valid `T`.
        Some(unsafe { &*(self.vtable as *const T) })
    }
}

/// The providers of one interface (an id and a major) at one moment, best first (ranked as an
/// operation's providers are: the provider the settings name for the interface id, then
/// `prefer`, then load order), with the rollout the settings configure for the interface id.
#[derive(Debug, Default)]
pub struct InterfaceSlot {
    pub(crate) id: String,
    pub(crate) providers: Vec<InterfaceHandle>,
    /// The rollout in force: the candidate's index in `providers` and the percent of rollout
    /// keys it serves (`[operations."ID"] rollout`); only when the candidate provides it.
    pub(crate) rollout: Option<(usize, f64)>,
}

impl InterfaceSlot {
    /// Every provider, best first.
    pub fn providers(&self) -> &[InterfaceHandle] {
        &self.providers
    }

    /// The best provider, the one an application that wants one uses when it has no rollout
    /// key (a rollout in force does not change it; see [`Self::serving`]).
    #[inline]
    pub fn first(&self) -> Option<&InterfaceHandle> {
        self.providers.first()
    }

    /// The rollout in force: the candidate plugin and the percent of rollout keys it serves.
    pub fn rollout(&self) -> Option<(&str, f64)> {
        self.rollout
            .map(|(candidate, percent)| (self.providers[candidate].plugin().name.as_str(), percent))
    }

    fn choose(&self, key: u64) -> usize {
        self.rollout.map_or(0, |(candidate, percent)| {
            crate::slots::choose(candidate, percent, &self.id, self.providers.len(), key)
        })
    }

    /// The provider that serves rollout key hash `key` (from [`crate::manager::rollout_hash`] of a user
    /// id, a file name, a request's key): the rollout's candidate for its share of keys, else
    /// the best provider (or the next one, when the candidate is the best). The same key gets
    /// the same provider in every process and on every machine, as for operations.
    #[inline]
    pub fn serving(&self, key: u64) -> Option<&InterfaceHandle> {
        self.providers.get(self.choose(key))
    }

    /// The providers in the order to try them for rollout key hash `key`: the one that
    /// [`Self::serving`] names, then the others best first. An application whose interface
    /// is not a bytes interface falls back along this order itself when a call fails.
    pub fn in_order(&self, key: u64) -> impl Iterator<Item = &InterfaceHandle> {
        let first = self.choose(key);
        let rest = self
            .providers
            .iter()
            .enumerate()
            .filter(move |&(i, _)| i != first)
            .map(|(_, p)| p);
        self.providers.get(first).into_iter().chain(rest)
    }

    /// Calls function number `slot` of a bytes interface (see [`InterfaceHandle::call_bytes`])
    /// on the provider that serves rollout key hash `key`, and when it fails internally
    /// (`CALC_STATUS_ERROR` or `CALC_STATUS_PANIC`: a crash, a hang, a limit, a caught panic)
    /// on the next providers in [`Self::in_order`] order, each fallback logged as a warning.
    /// Other failures (a domain error, an invalid argument) are the answer and are returned
    /// as they are. Returns the output and the provider that produced it, or the last
    /// failure; with no provider, an error naming the interface.
    pub fn call_bytes(
        &self,
        slot: usize,
        input: &[u8],
        key: u64,
    ) -> Result<(Vec<u8>, &InterfaceHandle), crate::CallError> {
        let mut last = None;
        for provider in self.in_order(key) {
            if let Some(e) = &last {
                let e: &crate::CallError = e;
                tracing::warn!(
                    "{}[{slot}]: {} failed ({}); falling back to {}",
                    self.id,
                    e.plugin,
                    e.message,
                    provider.plugin().name
                );
            }
            match provider.call_bytes(slot, input) {
                Ok(output) => return Ok((output, provider)),
                Err(e) if crate::slots::is_internal(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            crate::CallError::new(crate::CallErrorDetails {
                operation: format!("{}[{slot}]", self.id),
                plugin: String::new(),
                path: std::path::PathBuf::new(),
                status: calc_sdk::Status::Error,
                message: "no plugin provides the interface".into(),
            })
        }))
    }
}

/// The live providers of one interface: published anew by the manager whenever a plugin is
/// loaded, unloaded or reloaded.
pub(crate) type LiveInterfaceSlot = Arc<crate::rcu::RcuCell<InterfaceSlot>>;

/// The providers of an interface as they are when used: follows loads, unloads and hot reloads
/// (from [`crate::PluginManager::live_interface`]). Cheap to clone; `Send` and `Sync`.
#[derive(Clone)]
pub struct LiveInterface {
    pub(crate) slot: LiveInterfaceSlot,
}

impl std::fmt::Debug for LiveInterface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveInterface")
            .field("providers", &self.slot.load().providers)
            .finish()
    }
}

impl LiveInterface {
    /// The providers serving now, held for as long as the guard lives: a reload meanwhile does
    /// not unload them (keep the guard for a run of calls, not for long: an old version is
    /// freed only after every guard that saw it is gone). Costs one read-side mark of the RCU
    /// (`docs/PERFORMANCE.md`).
    #[inline]
    pub fn pin(&self) -> PinnedInterface<'_> {
        PinnedInterface {
            slot: self.slot.load(),
        }
    }
}

/// The providers of an interface at the moment [`LiveInterface::pin`] was called.
pub struct PinnedInterface<'a> {
    slot: crate::rcu::RcuGuard<'a, InterfaceSlot>,
}

impl std::ops::Deref for PinnedInterface<'_> {
    type Target = InterfaceSlot;

    #[inline]
    fn deref(&self) -> &InterfaceSlot {
        &self.slot
    }
}
