//! Helpers on the ABI version type (kept out of `abi/`, which holds only C-visible items).

use crate::abi::{calc_abi_version_t, CALC_ABI_VERSION_MAJOR, CALC_ABI_VERSION_MINOR};

impl calc_abi_version_t {
    /// The ABI version this copy of the SDK was built with.
    pub const CURRENT: calc_abi_version_t = calc_abi_version_t {
        major: CALC_ABI_VERSION_MAJOR,
        minor: CALC_ABI_VERSION_MINOR,
    };
}

impl std::fmt::Display for calc_abi_version_t {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}
