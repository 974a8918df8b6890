//! The one symbol every plugin exports, and the constants the host checks first.

use super::plugin::calc_plugin_t;

/// First field of every `calc_plugin_t`: the bytes `"CALCPLG1"` read as a big-endian `u64`.
/// A library whose descriptor does not start with it is not a calc plugin and is rejected before
/// any other field is read.
pub const CALC_PLUGIN_MAGIC: u64 = 0x4341_4C43_504C_4731;

/// Signature of `plugin_entry`, the only symbol a plugin exports (C linkage, default
/// visibility). Declare it with the `CALC_PLUGIN_ENTRY` macro from C.
///
/// Returns the plugin's descriptor, owned by the plugin and valid and unchanged until the
/// library is unloaded; or NULL if the plugin cannot describe itself, which the host reports as
/// a load failure. `plugin_entry` must have no side effects and must not call back into the
/// host: it is the only plugin function the host calls before the descriptor is validated.
/// `[main-thread]`
///
/// Since ABI 1.0.
pub type calc_plugin_entry_fn = Option<unsafe extern "C" fn() -> *const calc_plugin_t>;
