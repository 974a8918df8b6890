//! Why a plugin file was refused ([`LoadError`]).
//!
//! Every `Display` is one line that names the file (for load errors) and the reason; the
//! structured fields carry the details.

use std::path::PathBuf;
use std::sync::Arc;

use calc_sdk::abi::calc_abi_version_t;
use calc_sdk::Status;

/// Why a plugin file was not loaded. Each variant names the file.
///
/// An owned value the caller may keep, clone or send to another thread: the system errors
/// inside are shared (`Arc`), so that a host can record a failure and return it too.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The path does not exist.
    #[error("{path}: no such file")]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// The path exists but is not a regular file (a directory, a socket, ...).
    #[error("{path}: not a regular file")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// A plugin directory does not exist or cannot be read.
    #[error("{path}: cannot read plugin directory: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: Arc<std::io::Error>,
    },
    /// The dynamic loader refused the file (not a shared library, wrong architecture, missing
    /// dependency).
    #[error("{path}: cannot be loaded as a shared library: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The loader's error, with the OS message.
        source: Arc<libloading::Error>,
    },
    /// The library does not export `plugin_entry`.
    #[error("{path}: not a calc plugin: no `plugin_entry` symbol")]
    MissingEntry {
        /// The file.
        path: PathBuf,
        /// The loader's error.
        source: Arc<libloading::Error>,
    },
    /// `plugin_entry` returned NULL.
    #[error("{path}: plugin_entry returned NULL (the plugin could not describe itself)")]
    EntryReturnedNull {
        /// The file.
        path: PathBuf,
    },
    /// `plugin_entry` is not code: the symbol does not lie in an executable segment of the
    /// library (a data object exported under that name), so it was never called.
    #[error("{path}: not a calc plugin: `plugin_entry` at {address:#x} is not in an executable segment of the library")]
    EntryNotCode {
        /// The file.
        path: PathBuf,
        /// Where the symbol is.
        address: usize,
    },
    /// Part of what `plugin_entry` returned lies in memory that is not mapped or not readable:
    /// the host read none of it, and did not fault (docs/ABI.md, "Reading the descriptor").
    #[error("{path}: {what} at {address:#x} is not readable memory")]
    UnreadableMemory {
        /// The file.
        path: PathBuf,
        /// What the host tried to read: `"descriptor"`, `"operations[2]"`, ...
        what: String,
        /// Its address.
        address: usize,
    },
    /// The descriptor does not start with `CALC_PLUGIN_MAGIC`.
    #[error("{path}: not a calc plugin: bad magic {found:#018x} (expected {expected:#018x})")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// `CALC_PLUGIN_MAGIC`.
        expected: u64,
        /// What the descriptor holds.
        found: u64,
    },
    /// The ABI versions are incompatible.
    #[error("{path}: incompatible ABI: plugin built for ABI {plugin}, host implements {host} ({reason})")]
    AbiVersion {
        /// The file.
        path: PathBuf,
        /// The plugin's ABI version.
        plugin: calc_abi_version_t,
        /// The host's ABI version.
        host: calc_abi_version_t,
        /// Which rule failed.
        reason: &'static str,
    },
    /// A struct or array element is smaller than its declared ABI version requires.
    #[error(
        "{path}: {what} is {found} bytes, smaller than the {expected} bytes ABI {abi} requires"
    )]
    StructSize {
        /// The file.
        path: PathBuf,
        /// Which size field (`calc_plugin_t.struct_size`, `operation_size`).
        what: &'static str,
        /// Required size.
        expected: usize,
        /// Declared size.
        found: u32,
        /// The plugin's declared ABI version.
        abi: calc_abi_version_t,
    },
    /// A field has an invalid value (NULL or over-long string, non-UTF-8, bad characters,
    /// reserved bits set, ...).
    #[error("{path}: invalid {field}: {reason}")]
    InvalidField {
        /// The file.
        path: PathBuf,
        /// The field, e.g. `name` or `operations[1].name`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A version string does not parse as semver.
    #[error("{path}: invalid {field} {value:?}: {source}")]
    Semver {
        /// The file.
        path: PathBuf,
        /// `version`, `sdk_version` or `api_requirement`.
        field: &'static str,
        /// The string.
        value: String,
        /// The parser's error.
        source: Arc<semver::Error>,
    },
    /// The plugin's host API requirement excludes this host.
    #[error("{path}: plugin requires host API {requirement}, this host is {host_version}")]
    ApiRequirement {
        /// The file.
        path: PathBuf,
        /// The plugin's requirement.
        requirement: String,
        /// The host's API version.
        host_version: String,
    },
    /// `init` returned an error (or panicked, for a Rust plugin).
    #[error("{path}: plugin {plugin} refused to start: {message} ({status})")]
    InitFailed {
        /// The file.
        path: PathBuf,
        /// The plugin's name.
        plugin: String,
        /// The status `init` returned.
        status: Status,
        /// The message it wrote.
        message: String,
    },
    /// The plugin's version is outside the range the settings require for it.
    #[error(
        "{path}: plugin {plugin} {version} is outside the configured version range {requirement}"
    )]
    VersionRequirement {
        /// The file.
        path: PathBuf,
        /// The plugin's name.
        plugin: String,
        /// The version it declares.
        version: semver::Version,
        /// The configured requirement.
        requirement: semver::VersionReq,
    },
    /// Another loaded plugin already has this name.
    #[error("{path}: a plugin named {name:?} is already loaded from {other}")]
    DuplicatePlugin {
        /// The file.
        path: PathBuf,
        /// The plugin name.
        name: String,
        /// The file the first one came from.
        other: PathBuf,
    },
    /// An isolated plugin could not be started in its runner process: the runner is missing,
    /// crashed, exited or hung while loading or in `init`, or refused the plugin (then `kind`
    /// is the refusal's kind, e.g. `bad_magic`, and the message is the same as in-process).
    #[error("{path}: {reason}")]
    Isolation {
        /// The file.
        path: PathBuf,
        /// `"isolation"`, or the kind of the refusal the runner reported.
        kind: &'static str,
        /// What happened.
        reason: String,
    },
    /// Vetting the file in a child process (`calc_host::vet`) refused it: `message` is the
    /// refusal the child reported (as loading in process would word it), or how the child
    /// died while loading the file (`kind` `crashed`, `exited`, `timed_out`, `vetting`).
    #[error("{message}")]
    Vetted {
        /// The file.
        path: PathBuf,
        /// The refusal's kind (`bad_magic`, ...), or how the vetting child died.
        kind: &'static str,
        /// One line naming the file.
        message: String,
        /// The fields that did not match, as [`LoadError::mismatches`] gives them.
        mismatches: Vec<Mismatch>,
    },
    /// The path is a symbolic link, which the trust policy refuses unless allowed.
    #[error("{path}: is a symbolic link to {target}; plugins must be regular files (allow links with [trust] allow_symlinks = true)")]
    Symlink {
        /// The link.
        path: PathBuf,
        /// What it points to, as written in the link.
        target: PathBuf,
    },
    /// The file is not a loadable shared library: empty, a directory named like one, a text
    /// file, an executable or object file, truncated, or built for another architecture.
    #[error("{path}: {reason}")]
    NotALibrary {
        /// The file.
        path: PathBuf,
        /// What it is instead, e.g. `is a text file, not a shared library`.
        reason: String,
    },
    /// The file, its directory or a directory above it can be written by other users, or is
    /// owned by another user (trust policy, as OpenSSH's `StrictModes`).
    #[error("{path}: insecure {what}: {reason}")]
    InsecurePermissions {
        /// The file or directory at fault.
        path: PathBuf,
        /// `plugin file`, `plugin directory`, `directory above the plugins` or `lock file`.
        what: &'static str,
        /// What is wrong and how to allow it.
        reason: String,
        /// Its permission bits.
        mode: u32,
        /// Its owner's uid.
        owner: u32,
    },
    /// The plugin directory has a lock file that does not list this file.
    #[error("{path}: not in {lock} (add its digest to the lock once you trust it)")]
    NotInLock {
        /// The file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The file's SHA-256 differs from the one in its directory's lock file.
    #[error("{path}: digest mismatch: expected {expected}, found {found} ({lock})")]
    DigestMismatch {
        /// The file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The digest in the lock file (hex).
        expected: String,
        /// The file's digest (hex).
        found: String,
    },
    /// The plugin directory's lock file cannot be read or parsed: none of its plugins load.
    #[error("{path}: invalid lock file: {}{reason}", if *line > 0 { format!("line {line}: ") } else { String::new() })]
    InvalidLock {
        /// The lock file.
        path: PathBuf,
        /// The 1-based line at fault, 0 for the whole file.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Trusted keys are configured and the file has no signature.
    #[error(
        "{path}: unsigned: no {signature}, and [trust] keys requires a signature by a trusted key"
    )]
    Unsigned {
        /// The file.
        path: PathBuf,
        /// The signature file that was looked for.
        signature: PathBuf,
    },
    /// The file's signature is malformed or not by a trusted key.
    #[error("{path}: bad signature {signature}: {reason}")]
    BadSignature {
        /// The file.
        path: PathBuf,
        /// The signature file.
        signature: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file could not be read to compute its digest.
    #[error("{path}: cannot read: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: Arc<std::io::Error>,
    },
    /// The file changed between the check of its digest and its opening.
    #[error("{path}: changed while it was being loaded (after its digest was checked); refused")]
    Changed {
        /// The file.
        path: PathBuf,
    },
}

/// One field of a refused plugin next to what the host expected (as PostgreSQL's magic-block
/// report does).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mismatch {
    /// The field, e.g. `abi_version.major`.
    pub field: String,
    /// What the host accepts.
    pub expected: String,
    /// What the plugin declared.
    pub found: String,
}

impl LoadError {
    /// The variant's name in snake case, a stable identifier for tools (`"abi_version"`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            LoadError::NotFound { .. } => "not_found",
            LoadError::NotAFile { .. } => "not_a_file",
            LoadError::Directory { .. } => "directory",
            LoadError::Open { .. } => "open",
            LoadError::MissingEntry { .. } => "missing_entry",
            LoadError::EntryReturnedNull { .. } => "entry_returned_null",
            LoadError::EntryNotCode { .. } => "entry_not_code",
            LoadError::UnreadableMemory { .. } => "unreadable_memory",
            LoadError::BadMagic { .. } => "bad_magic",
            LoadError::AbiVersion { .. } => "abi_version",
            LoadError::StructSize { .. } => "struct_size",
            LoadError::InvalidField { .. } => "invalid_field",
            LoadError::Semver { .. } => "semver",
            LoadError::ApiRequirement { .. } => "api_requirement",
            LoadError::InitFailed { .. } => "init_failed",
            LoadError::VersionRequirement { .. } => "version_requirement",
            LoadError::DuplicatePlugin { .. } => "duplicate_plugin",
            LoadError::Isolation { kind, .. } | LoadError::Vetted { kind, .. } => kind,
            LoadError::Symlink { .. } => "symlink",
            LoadError::NotALibrary { .. } => "not_a_library",
            LoadError::InsecurePermissions { .. } => "insecure_permissions",
            LoadError::NotInLock { .. } => "not_in_lock",
            LoadError::DigestMismatch { .. } => "digest_mismatch",
            LoadError::InvalidLock { .. } => "invalid_lock",
            LoadError::Unsigned { .. } => "unsigned",
            LoadError::BadSignature { .. } => "bad_signature",
            LoadError::Unreadable { .. } => "unreadable",
            LoadError::Changed { .. } => "changed",
        }
    }

    /// The name of the plugin the error is about, when the plugin described itself before it
    /// failed (`init` refused, version outside the configured range, duplicate name).
    pub fn plugin_name(&self) -> Option<&str> {
        match self {
            LoadError::InitFailed { plugin, .. } | LoadError::VersionRequirement { plugin, .. } => {
                Some(plugin)
            }
            LoadError::DuplicatePlugin { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Whether the trust policy refused the file (permissions, symbolic link, lock file,
    /// signature), as opposed to the file being broken or missing.
    pub fn is_untrusted(&self) -> bool {
        matches!(
            self,
            LoadError::Symlink { .. }
                | LoadError::InsecurePermissions { .. }
                | LoadError::NotInLock { .. }
                | LoadError::DigestMismatch { .. }
                | LoadError::InvalidLock { .. }
                | LoadError::Unsigned { .. }
                | LoadError::BadSignature { .. }
                | LoadError::Changed { .. }
        )
    }

    /// For version and layout refusals, each field the host expected next to what the plugin
    /// declared; empty for other errors.
    pub fn mismatches(&self) -> Vec<Mismatch> {
        let m = |field: &str, expected: String, found: String| Mismatch {
            field: field.to_string(),
            expected,
            found,
        };
        match self {
            LoadError::BadMagic {
                expected, found, ..
            } => {
                vec![m(
                    "magic",
                    format!("{expected:#018x} (\"CALCPLG1\")"),
                    format!("{found:#018x}"),
                )]
            }
            LoadError::AbiVersion { plugin, host, .. } => vec![
                m(
                    "abi_version.major",
                    host.major.to_string(),
                    plugin.major.to_string(),
                ),
                m(
                    "abi_version.minor",
                    if host.major == 0 {
                        host.minor.to_string()
                    } else {
                        format!("<= {}", host.minor)
                    },
                    plugin.minor.to_string(),
                ),
            ],
            LoadError::StructSize {
                what,
                expected,
                found,
                abi,
                ..
            } => vec![m(
                what,
                format!(">= {expected} (ABI {abi})"),
                found.to_string(),
            )],
            LoadError::Semver { field, value, .. } => vec![m(
                field,
                "a semver version or requirement".into(),
                format!("{value:?}"),
            )],
            LoadError::ApiRequirement {
                requirement,
                host_version,
                ..
            } => vec![m(
                "api_requirement",
                format!("a requirement matching host API {host_version}"),
                requirement.clone(),
            )],
            LoadError::VersionRequirement {
                version,
                requirement,
                ..
            } => {
                vec![m("version", requirement.to_string(), version.to_string())]
            }
            LoadError::DigestMismatch {
                expected, found, ..
            } => vec![m("sha256", expected.clone(), found.clone())],
            LoadError::Vetted { mismatches, .. } => mismatches.clone(),
            _ => Vec::new(),
        }
    }

    /// The file (or directory) the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            LoadError::NotFound { path }
            | LoadError::NotAFile { path }
            | LoadError::Directory { path, .. }
            | LoadError::Open { path, .. }
            | LoadError::MissingEntry { path, .. }
            | LoadError::EntryReturnedNull { path }
            | LoadError::EntryNotCode { path, .. }
            | LoadError::UnreadableMemory { path, .. }
            | LoadError::BadMagic { path, .. }
            | LoadError::AbiVersion { path, .. }
            | LoadError::StructSize { path, .. }
            | LoadError::InvalidField { path, .. }
            | LoadError::Semver { path, .. }
            | LoadError::ApiRequirement { path, .. }
            | LoadError::InitFailed { path, .. }
            | LoadError::VersionRequirement { path, .. }
            | LoadError::DuplicatePlugin { path, .. }
            | LoadError::Isolation { path, .. }
            | LoadError::Vetted { path, .. }
            | LoadError::Symlink { path, .. }
            | LoadError::NotALibrary { path, .. }
            | LoadError::InsecurePermissions { path, .. }
            | LoadError::NotInLock { path, .. }
            | LoadError::DigestMismatch { path, .. }
            | LoadError::InvalidLock { path, .. }
            | LoadError::Unsigned { path, .. }
            | LoadError::BadSignature { path, .. }
            | LoadError::Unreadable { path, .. }
            | LoadError::Changed { path } => path,
        }
    }
}

/// The kinds `LoadError::kind` can return, so that a refusal reported by a runner keeps its
/// kind; an unknown one is `"isolation"`.
pub fn static_kind(kind: &str) -> &'static str {
    const KINDS: &[&str] = &[
        "entry_not_code",
        "unreadable_memory",
        "crashed",
        "exited",
        "timed_out",
        "protocol",
        "memory_limit",
        "vetting",
        "not_found",
        "not_a_file",
        "directory",
        "open",
        "missing_entry",
        "entry_returned_null",
        "bad_magic",
        "abi_version",
        "struct_size",
        "invalid_field",
        "semver",
        "api_requirement",
        "init_failed",
        "version_requirement",
        "duplicate_plugin",
        "not_a_library",
        "unreadable",
        "changed",
    ];
    KINDS
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("isolation")
}
