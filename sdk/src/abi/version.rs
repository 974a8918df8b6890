//! ABI version numbers and the version header every top-level struct carries.

/// Major version of the calc plugin ABI. A host accepts only plugins with the same major.
pub const CALC_ABI_VERSION_MAJOR: u16 = 1;

/// Minor version of the calc plugin ABI. A host accepts plugins whose minor is not newer than
/// its own; a newer minor only appends fields to the end of structs.
pub const CALC_ABI_VERSION_MINOR: u16 = 4;

/// An ABI version: `major.minor`. Compatibility: majors equal and the plugin's minor at most
/// the host's (see `docs/ABI.md`).
///
/// Since ABI 1.0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct calc_abi_version_t {
    /// Incompatible layout changes bump the major. Since ABI 1.0.
    pub major: u16,
    /// Appended fields bump the minor. Since ABI 1.0.
    pub minor: u16,
}
