//! The trust policy: what a plugin file must pass *before* it is opened (`dlopen` runs the
//! library's initialisers, so every check that can refuse a file runs first).
//!
//! In order, for each file (see `docs/TRUST.md` for the policy as users see it):
//! 1. **File type**, from one `lstat`: a symbolic link is refused unless
//!    [`TrustPolicy::allow_symlinks`] (then its target is checked instead); a directory named like
//!    a library, an empty file and anything but a regular file are refused with their own
//!    message.
//! 2. **Permissions**, as OpenSSH's `StrictModes`: the file, its directory and every directory
//!    above it must be owned by the current (effective) user or root and not writable by group or
//!    others. A directory above the plugin directory may be writable by others when its sticky
//!    bit is set (as `/tmp`): others cannot rename or replace what they do not own in it; the
//!    plugin directory itself may not, since anyone could add a library to it. Group-writable is
//!    accepted when the group is the owner's private group (no other members, as Debian's
//!    OpenSSH does), so that a umask of 002 with per-user groups works.
//!    [`TrustPolicy::allow_insecure_permissions`] turns these checks off.
//! 3. **Lock file**: when the plugin directory holds [`LOCK_FILE`] (SHA-256 digests in the format
//!    of `sha256sum`, written by `calc plugins lock`), a file that is missing from it or whose
//!    digest differs is refused.
//! 4. **Signatures**: when [`TrustPolicy::keys`] is not empty, the file needs a detached ed25519
//!    signature `<file>.sig` by one of those keys.
//!
//! Cost: steps 1 and 2 take one `lstat` per file, plus one `stat` per directory and per
//! directory above it once per directory load (per file for single-file loads). Steps 3 and 4
//! read the whole file, and only run when a lock file exists or keys are configured.
//!
//! Time of check and time of use: the digest is computed from a descriptor opened with
//! `O_NOFOLLOW`, whose `fstat` identity (device, inode, size, modification and change times) is
//! compared with the file's again after it was opened ([`Verified::confirm`]); a file replaced
//! or rewritten in between is refused. A change that is undone within that window is not seen,
//! but only the owner of the file and of its directories (the current user or root, by step 2)
//! can make it, and they can as well edit the lock file or the configuration.
//!
//! After a failed `dlopen`, [`diagnose`] reads the file's header to turn the dynamic loader's
//! message into a clear reason (text file, executable, object file, truncated library, other
//! architecture); the successful path never reads it.
#![deny(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use std::mem::size_of;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;
use sha2::{Digest, Sha256};

use crate::error::LoadError;

/// The name of the lock file in a plugin directory.
pub const LOCK_FILE: &str = "calc-plugins.lock";

/// What is appended to a plugin's file name to name its detached signature.
pub const SIGNATURE_SUFFIX: &str = ".sig";

/// What a signature signs: this context string followed by the 32-byte SHA-256 of the file.
pub const SIGNATURE_CONTEXT: &[u8] = b"calc-plugin-signature-v1\0";

/// The first word of a secret key file.
const SECRET_KEY_TAG: &str = "calc-ed25519-secret";

/// How to allow what the permission checks refuse, appended to their messages.
const ALLOW_INSECURE: &str = "allow it with [trust] allow_insecure_permissions = true";

/// A trusted ed25519 public key: written as the base64 of its 32 bytes (the contents of the
/// `.pub` file `calc plugins keygen` writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses the base64 text of a public key (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let text = text.trim();
        if text.starts_with(SECRET_KEY_TAG) {
            return Err("this is a secret key; give the public key (the .pub file)".into());
        }
        let bytes = BASE64
            .decode(text)
            .map_err(|e| format!("not a base64 ed25519 public key: {e}"))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!("not an ed25519 public key: {} bytes, expected 32", b.len())
        })?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| "not a valid ed25519 public key (not a curve point)".into())
    }

    /// Whether `signature` is this key's signature of a file whose SHA-256 is `digest`.
    fn verifies(&self, digest: &[u8; 32], signature: &ed25519_dalek::Signature) -> bool {
        self.0
            .verify_strict(&signed_message(digest), signature)
            .is_ok()
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&BASE64.encode(self.0.as_bytes()))
    }
}

/// A secret signing key, as `calc plugins keygen` writes it: `calc-ed25519-secret <base64 of
/// the 32-byte seed>`.
pub struct SecretKey(SigningKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(public {})", self.public())
    }
}

impl SecretKey {
    /// A new key from 32 bytes of the operating system's randomness (`/dev/urandom`).
    pub fn generate() -> std::io::Result<SecretKey> {
        let mut seed = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// Parses the text of a secret key file.
    pub fn parse(text: &str) -> Result<SecretKey, String> {
        let Some(encoded) = text.trim().strip_prefix(SECRET_KEY_TAG) else {
            return Err(format!(
                "not a calc secret key (it should start with {SECRET_KEY_TAG:?}; a public key?)"
            ));
        };
        let bytes = BASE64
            .decode(encoded.trim())
            .map_err(|e| format!("not a base64 secret key: {e}"))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("secret key is {} bytes, expected 32", b.len()))?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// The text of the secret key file (one line).
    pub fn to_file_text(&self) -> String {
        format!("{SECRET_KEY_TAG} {}\n", BASE64.encode(self.0.to_bytes()))
    }

    /// Its public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The signature file text (base64, one line) for a file whose SHA-256 is `digest`.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> String {
        let signature = self.0.sign(&signed_message(digest));
        format!("{}\n", BASE64.encode(signature.to_bytes()))
    }
}

fn signed_message(digest: &[u8; 32]) -> Vec<u8> {
    let mut message = SIGNATURE_CONTEXT.to_vec();
    message.extend_from_slice(digest);
    message
}

/// The signature file of `file`: `<file>.sig`.
pub fn signature_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(SIGNATURE_SUFFIX);
    PathBuf::from(name)
}

/// Checks the signature file `signature` of a file whose SHA-256 is `digest` against `keys`:
/// the key that signed it, or why it is refused (`LoadError::Unsigned` or
/// `LoadError::BadSignature`, naming `path`).
pub fn verify_signature(
    path: &Path,
    digest: &[u8; 32],
    signature: &Path,
    keys: &[PublicKey],
) -> Result<PublicKey, LoadError> {
    let bad = |reason: String| LoadError::BadSignature {
        path: path.to_path_buf(),
        signature: signature.to_path_buf(),
        reason,
    };
    let text = match std::fs::read_to_string(signature) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LoadError::Unsigned {
                path: path.to_path_buf(),
                signature: signature.to_path_buf(),
            })
        }
        Err(e) => return Err(bad(format!("cannot read it: {e}"))),
    };
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|e| bad(format!("not a base64 ed25519 signature: {e}")))?;
    let bytes: [u8; 64] = bytes.try_into().map_err(|b: Vec<u8>| {
        bad(format!(
            "not an ed25519 signature: {} bytes, expected 64",
            b.len()
        ))
    })?;
    let sig = ed25519_dalek::Signature::from_bytes(&bytes);
    keys.iter()
        .find(|k| k.verifies(digest, &sig))
        .copied()
        .ok_or_else(|| {
            bad(format!(
                "does not verify with {} (the file changed after it was signed, or another key signed it)",
                match keys.len() {
                    1 => "the trusted key".to_string(),
                    n => format!("any of the {n} trusted keys"),
                }
            ))
        })
}

/// What the host requires of a plugin file before opening it (see the [module docs](self)).
/// The default checks permissions and file types, uses a lock file where one exists, and
/// requires no signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrustPolicy {
    /// Accept files and directories that are writable by group or others, or owned by another
    /// user (`[trust] allow_insecure_permissions`, `--allow-insecure`).
    pub allow_insecure_permissions: bool,
    /// Accept symbolic links to plugin files; their targets are checked instead
    /// (`[trust] allow_symlinks`, `--allow-symlinks`).
    pub allow_symlinks: bool,
    /// When not empty, every plugin needs a valid `<file>.sig` by one of these keys
    /// (`[trust] keys`).
    pub keys: Vec<PublicKey>,
}

/// A lock file: plugin file names to their SHA-256 digests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    /// The lock file.
    pub path: PathBuf,
    /// File name (in the lock file's directory) to digest.
    pub digests: HashMap<String, [u8; 32]>,
}

impl Lock {
    /// Parses lock file text in `sha256sum` format: `<64 hex digits>  <file name>` per line
    /// (`*<name>` for binary mode is accepted too); blank lines and lines starting with `#` are
    /// ignored. `path` names the lock file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Lock, LoadError> {
        let invalid = |line: usize, reason: &str| LoadError::InvalidLock {
            path: path.to_path_buf(),
            line,
            reason: reason.to_string(),
        };
        let mut digests = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('\\') {
                return Err(invalid(i + 1, "escaped file names are not supported"));
            }
            let (hex, rest) = line
                .split_once(' ')
                .ok_or_else(|| invalid(i + 1, "expected \"<sha256 hex>  <file name>\""))?;
            let digest = parse_hex(hex)
                .ok_or_else(|| invalid(i + 1, "not a 64-digit SHA-256 hex digest"))?;
            let name = rest
                .strip_prefix(' ')
                .or_else(|| rest.strip_prefix('*'))
                .ok_or_else(|| invalid(i + 1, "expected two spaces between digest and name"))?;
            if name.is_empty() || name.contains('/') {
                return Err(invalid(i + 1, "expected a file name in this directory"));
            }
            if digests.insert(name.to_string(), digest).is_some() {
                return Err(invalid(i + 1, &format!("{name} is listed twice")));
            }
        }
        Ok(Lock {
            path: path.to_path_buf(),
            digests,
        })
    }

    /// Reads the lock file of canonical directory `dir`, if it has one. Unless `insecure_ok`, a
    /// lock file others can write is refused as a plugin file would be.
    fn read(dir: &Path, insecure_ok: bool, uid: u32) -> Result<Option<Lock>, LoadError> {
        let path = dir.join(LOCK_FILE);
        let mut file = match open_nofollow(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                let reason = if is_symlink_error(&e) {
                    "is a symbolic link; the lock file must be a regular file".to_string()
                } else {
                    format!("cannot read it: {e}")
                };
                return Err(LoadError::InvalidLock {
                    path,
                    line: 0,
                    reason,
                });
            }
        };
        let meta = file.metadata().map_err(|source| LoadError::Unreadable {
            path: path.clone(),
            source: source.into(),
        })?;
        if !insecure_ok {
            check_owner_and_mode(&path, &meta, "lock file", uid, false)?;
        }
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| LoadError::InvalidLock {
                path: path.clone(),
                line: 0,
                reason: format!("cannot read it: {e}"),
            })?;
        Lock::parse(&text, &path).map(Some)
    }
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex of a digest.
pub fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of everything `reader` yields.
pub fn sha256(mut reader: impl Read) -> std::io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.finalize().into())
}

/// The SHA-256 of the file at `path`.
pub fn sha256_file(path: &Path) -> std::io::Result<[u8; 32]> {
    sha256(std::fs::File::open(path)?)
}

/// Writes the lock file of `dir`: the digest of every shared library directly in it (by file
/// name order, following symbolic links; directories named like libraries are skipped), to a
/// temporary file renamed over [`LOCK_FILE`]. Returns the lock file and the names locked.
pub fn write_lock(dir: &Path) -> Result<(PathBuf, Vec<String>), String> {
    let files = crate::files::library_files(dir)
        .map_err(|e| format!("{}: cannot read plugin directory: {e}", dir.display()))?;
    let mut text = String::new();
    let mut names = Vec::new();
    for file in files.iter().filter(|f| f.is_file()) {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.contains(['\n', '\\']))
            .ok_or_else(|| {
                format!(
                    "{}: file name cannot be written to a lock file (not UTF-8, or holds a newline or backslash)",
                    file.display()
                )
            })?;
        let digest = sha256_file(file).map_err(|e| format!("{}: {e}", file.display()))?;
        text.push_str(&format!("{}  {name}\n", hex(&digest)));
        names.push(name.to_string());
    }
    let lock = dir.join(LOCK_FILE);
    let tmp = dir.join(format!(".{LOCK_FILE}.{}.tmp", std::process::id()));
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &lock));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{}: cannot write: {e}", lock.display()));
    }
    Ok((lock, names))
}

/// The effective user id of this process.
#[allow(unsafe_code)]
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

fn open_nofollow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// The flags of [`open_nonblocking`] and [`open_nonblocking_at`] besides read-only and
/// close-on-exec: no link followed, no blocking on a FIFO, no controlling terminal.
const NONBLOCKING_NOFOLLOW: libc::c_int = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;

/// As [`open_nofollow`], and without blocking on a FIFO or becoming a controlling terminal.
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(NONBLOCKING_NOFOLLOW)
        .open(path)
}

/// As [`open_nonblocking`], the entry `name` of the directory open as `dir`: the kernel looks up
/// one name instead of walking the whole path.
#[allow(unsafe_code)]
fn open_nonblocking_at(dir: &std::os::fd::OwnedFd, name: &OsStr) -> std::io::Result<std::fs::File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    let c_name = std::ffi::CString::new(name.as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let flags = libc::O_RDONLY | libc::O_CLOEXEC | NONBLOCKING_NOFOLLOW;
    // SAFETY: `dir` is an open descriptor we own, alive for the call, and `c_name` a
    // NUL-terminated string alive for the call; the kernel only reads it.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c_name.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a file descriptor the kernel just opened for us and nothing else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// The canonical absolute path of an open file as the kernel names it (symbolic links
/// resolved; what `realpath` computes, in one system call); `None` where unknown (not Linux, or a
/// file deleted since it was opened).
pub fn kernel_path(file: &std::fs::File) -> Option<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        match std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
            Ok(p) if p.is_absolute() && !p.to_string_lossy().ends_with(" (deleted)") => Some(p),
            _ => None,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        None
    }
}

/// Opens `path` for reading (without blocking on a FIFO or becoming a controlling terminal) and
/// returns it with its canonical form, when `path` can be proved canonical for the cost of the
/// open alone: it is absolute, has no `.` or `..` component, and the kernel resolved it without
/// following any symbolic link (`openat2` with `RESOLVE_NO_SYMLINKS`, Linux 5.6). That replaces
/// asking the kernel for the open file's name ([`kernel_path`]: a `/proc` lookup, which costs
/// more than the open itself).
///
/// `None` when that cannot be proved (a relative path, a link on the way, an older kernel, a
/// seccomp filter, any error): the caller then takes its general path, which also reports why a
/// file cannot be opened.
pub fn open_canonical(path: &Path) -> Option<(std::fs::File, PathBuf)> {
    use std::path::Component;
    let mut canonical = PathBuf::with_capacity(path.as_os_str().len());
    for component in path.components() {
        match component {
            Component::RootDir | Component::Normal(_) => canonical.push(component),
            Component::Prefix(_) | Component::CurDir | Component::ParentDir => return None,
        }
    }
    if !canonical.is_absolute() {
        return None;
    }
    let file = open_no_symlinks(&canonical)?;
    Some((file, canonical))
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn open_no_symlinks(path: &Path) -> Option<std::fs::File> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    /// Set once `openat2` turned out unavailable (ENOSYS, or refused by a seccomp filter).
    static UNAVAILABLE: AtomicBool = AtomicBool::new(false);
    if UNAVAILABLE.load(Ordering::Relaxed) {
        return None;
    }
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `open_how` is a plain C struct of integers; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: `c_path` is a NUL-terminated string and `how` a valid `open_how` of the size
    // passed, both alive for the call; the kernel reads them and writes nothing of ours.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c_path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        let errno = std::io::Error::last_os_error().raw_os_error();
        if matches!(errno, Some(libc::ENOSYS | libc::EPERM | libc::E2BIG)) {
            UNAVAILABLE.store(true, Ordering::Relaxed);
        }
        return None;
    }
    // SAFETY: `fd` is a file descriptor the kernel just opened for us and nothing else owns.
    Some(unsafe { std::fs::File::from_raw_fd(fd as std::os::fd::RawFd) })
}

#[cfg(not(target_os = "linux"))]
fn open_no_symlinks(_path: &Path) -> Option<std::fs::File> {
    None
}

fn is_symlink_error(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// Directories (and, implicitly, everything above them) that passed the owner and mode checks
/// for a user in this process. Sound to remember: a directory owned by that user or root and
/// not writable by others can only be changed, or replaced in its parent, by those same trusted
/// owners. The plugin directory itself and every file are still checked on every load.
///
/// The process-wide caches here are B-trees rather than hash tables: they live until exit, and a
/// hash table's only pointer to its storage points into the middle of it (at the control
/// bytes), which leak checkers such as valgrind report as "possibly lost" (an error under
/// `--leak-check=full`); a B-tree's pointers are to the start of each node, so what remains at
/// exit is reported as still reachable, as it is.
static SECURE_ANCESTORS: OnceLock<Mutex<BTreeSet<(PathBuf, u32)>>> = OnceLock::new();

fn secure_ancestors_known(dir: &Path, uid: u32) -> bool {
    SECURE_ANCESTORS
        .get()
        .and_then(|set| set.lock().ok())
        .is_some_and(|set| set.contains(&(dir.to_path_buf(), uid)))
}

fn remember_secure_ancestors(dir: &Path, uid: u32) {
    let set = SECURE_ANCESTORS.get_or_init(Default::default);
    if let Ok(mut set) = set.lock() {
        // Bounded: a process that scans many directories keeps at most this many verdicts.
        if set.len() >= 4096 {
            set.clear();
        }
        set.insert((dir.to_path_buf(), uid));
    }
}

/// Plugin directories seen without a lock file, with their identity and timestamps then. Creating,
/// renaming or linking a file into a directory updates its modification and change times, so
/// while those are unchanged the lock file is still absent and single-file loads skip looking
/// for it. A directory modified within [`RACY_WINDOW`] of the look is not remembered: a second
/// change within the same timestamp tick would leave the times as they were (Git treats "racily
/// clean" index entries the same way).
/// A B-tree, as [`SECURE_ANCESTORS`].
static LOCK_ABSENT: OnceLock<Mutex<BTreeMap<PathBuf, Stamp>>> = OnceLock::new();

/// How old a directory's last change must be for [`LOCK_ABSENT`] to remember it.
const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

fn lock_known_absent(dir: &Path, stamp: &Stamp) -> bool {
    LOCK_ABSENT
        .get()
        .and_then(|map| map.lock().ok())
        .is_some_and(|map| map.get(dir) == Some(stamp))
}

fn remember_lock_absent(dir: &Path, stamp: &Stamp) {
    let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) else {
        return;
    };
    let settled = |(secs, nanos): (i64, i64)| {
        let (Ok(secs), Ok(nanos)) = (u64::try_from(secs), u32::try_from(nanos)) else {
            return false;
        };
        std::time::Duration::new(secs, nanos) + RACY_WINDOW <= now
    };
    if !(settled(stamp.mtime) && settled(stamp.ctime)) {
        return;
    }
    let map = LOCK_ABSENT.get_or_init(Default::default);
    if let Ok(mut map) = map.lock() {
        // Bounded, as the verdicts above.
        if map.len() >= 4096 {
            map.clear();
        }
        map.insert(dir.to_path_buf(), *stamp);
    }
}

/// Whether group `gid` is the private group of user `uid` (same name, that user's primary
/// group, no other members), as the system's name services answer (`getpwuid_r` and
/// `getgrgid_r` through the `nix` crate, so LDAP or SSSD users count as well as the ones in
/// `/etc/passwd`). Cached per process; a user or group no name service knows counts as not
/// private. (A B-tree, as [`SECURE_ANCESTORS`].)
fn is_private_group(uid: u32, gid: u32) -> bool {
    use nix::unistd::{Gid, Group, Uid, User};
    static CACHE: OnceLock<Mutex<BTreeMap<(u32, u32), bool>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(known) = cache.lock().ok().and_then(|c| c.get(&(uid, gid)).copied()) {
        return known;
    }
    let answer = (|| {
        let user = User::from_uid(Uid::from_raw(uid)).ok()??;
        let group = Group::from_gid(Gid::from_raw(gid)).ok()??;
        Some(
            user.gid == group.gid
                && group.name == user.name
                && group.mem.iter().all(|m| m.is_empty() || *m == user.name),
        )
    })()
    .unwrap_or(false);
    if let Ok(mut c) = cache.lock() {
        c.insert((uid, gid), answer);
    }
    answer
}

/// The permission check of one file or directory: owner `uid` or root, and not writable by
/// others (`sticky_ok`: unless the sticky bit is set) or by a group other than the owner's
/// private group.
fn check_owner_and_mode(
    path: &Path,
    meta: &Metadata,
    what: &'static str,
    uid: u32,
    sticky_ok: bool,
) -> Result<(), LoadError> {
    let mode = meta.mode() & 0o7777;
    let owner = meta.uid();
    let refuse = |reason: String| LoadError::InsecurePermissions {
        path: path.to_path_buf(),
        what,
        reason,
        mode,
        owner,
    };
    if owner != uid && owner != 0 {
        return Err(refuse(format!(
            "owned by uid {owner}, not by the current user (uid {uid}) or root; chown it, or {ALLOW_INSECURE}"
        )));
    }
    let sticky = mode & 0o1000 != 0;
    let others = mode & 0o002 != 0 && !(sticky_ok && sticky);
    let group = mode & 0o020 != 0 && !(sticky_ok && sticky) && !is_private_group(owner, meta.gid());
    if others || group {
        let who = match (group, others) {
            (true, true) => "group and others",
            (true, false) => "group",
            _ => "others",
        };
        let sticky_note = if sticky && !sticky_ok {
            "; the sticky bit does not stop others adding plugins"
        } else {
            ""
        };
        return Err(refuse(format!(
            "writable by {who} (mode {mode:04o}{sticky_note}); chmod go-w it, or {ALLOW_INSECURE}"
        )));
    }
    Ok(())
}

/// The identity of one version of a file, compared before and after it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// A plugin file that passed the trust policy, ready to be opened.
#[derive(Debug, Clone)]
pub struct Verified {
    path: PathBuf,
    /// The file's identity when its digest was computed (only when one was).
    stamp: Option<Stamp>,
    /// The file's metadata, as the checks saw it.
    meta: Metadata,
}

impl Verified {
    /// The canonical path of the regular file to open (for an allowed symbolic link, its
    /// target).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's metadata, as the checks saw it (size, modification time, inode: the version
    /// of the file that passed).
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// After the file was opened: refuses it if it is no longer the file whose digest was
    /// checked (replaced or rewritten in between). Free when no digest was computed.
    pub fn confirm(&self) -> Result<(), LoadError> {
        let Some(stamp) = self.stamp else {
            return Ok(());
        };
        match std::fs::metadata(&self.path) {
            Ok(meta) if Stamp::of(&meta) == stamp => Ok(()),
            _ => Err(LoadError::Changed {
                path: self.path.clone(),
            }),
        }
    }
}

/// A plugin directory that passed the permission checks, with its lock file (see
/// [`TrustPolicy::check_dir`]).
#[derive(Debug, Clone)]
pub struct TrustedDir {
    dir: PathBuf,
    /// The directory's (device, inode) when its permissions were checked.
    checked: Option<(u64, u64)>,
    /// The directory, held open by [`Self::hold_open`] to open its files relative to it.
    fd: Option<Arc<std::os::fd::OwnedFd>>,
    lock: Option<Lock>,
    policy: TrustPolicy,
    uid: u32,
}

impl TrustPolicy {
    /// Checks the canonical directory `dir` (its permissions and those of every directory
    /// above it) and reads its lock file, for checking its files with
    /// [`TrustedDir::check_file`].
    pub fn check_dir(&self, dir: &Path) -> Result<TrustedDir, LoadError> {
        let uid = effective_uid();
        let mut stamp = None;
        if !self.allow_insecure_permissions {
            let meta = std::fs::metadata(dir).map_err(|source| LoadError::Directory {
                path: dir.to_path_buf(),
                source: source.into(),
            })?;
            stamp = Some(Stamp::of(&meta));
            check_owner_and_mode(dir, &meta, "plugin directory", uid, false)?;
            // Once every directory above a trusted one passed, only their owners (this user or
            // root) can change them, so the verdict is remembered: single-file loads then cost
            // one `stat` of the plugin directory instead of one per path component.
            let known = |d: &Path| secure_ancestors_known(d, uid);
            for ancestor in dir.ancestors().skip(1) {
                if known(dir) || known(ancestor) {
                    break;
                }
                // An unreadable ancestor (no search permission would have failed earlier) is
                // not ours to judge.
                if let Ok(meta) = std::fs::metadata(ancestor) {
                    check_owner_and_mode(
                        ancestor,
                        &meta,
                        "directory above the plugins",
                        uid,
                        true,
                    )?;
                }
            }
            remember_secure_ancestors(dir, uid);
        }
        let lock = match stamp {
            Some(stamp) if lock_known_absent(dir, &stamp) => None,
            _ => {
                let lock = Lock::read(dir, self.allow_insecure_permissions, uid)?;
                if let (None, Some(stamp)) = (&lock, &stamp) {
                    remember_lock_absent(dir, stamp);
                }
                lock
            }
        };
        Ok(TrustedDir {
            dir: dir.to_path_buf(),
            checked: stamp.map(|s| (s.dev, s.ino)),
            fd: None,
            lock,
            policy: self.clone(),
            uid,
        })
    }

    /// Checks the plugin file at `path` (any path: its directory is resolved and checked too),
    /// as [`TrustedDir::check_file`].
    pub fn check_file(&self, path: &Path) -> Result<Verified, LoadError> {
        // Fast path: open the file itself (not following a link) and know its canonical path
        // from that one open: as written when the kernel resolved it without following any
        // link (`open_canonical`), else as the kernel names the open file. No `realpath` on
        // the directory, no second open.
        let opened = open_canonical(path).or_else(|| {
            let file = open_nonblocking(path).ok()?;
            let real = kernel_path(&file)?;
            Some((file, real))
        });
        if let Some((file, real)) = opened {
            if let Ok(meta) = file.metadata() {
                if let (true, Some(dir)) = (meta.is_file(), real.parent()) {
                    let dir = self.check_dir(dir)?;
                    return dir.check_open(&real, real.clone(), &meta, file, true);
                }
            }
        }
        let (dir, file) = self.dir_of(path)?;
        dir.check_file(&file)
    }

    /// As [`Self::check_file`] without reading the ELF header ([`TrustedDir::check_policy`]).
    pub fn check_policy(&self, path: &Path) -> Result<Verified, LoadError> {
        let (dir, file) = self.dir_of(path)?;
        dir.check_policy(&file)
    }

    /// The checked directory of `path`, and `path` in its canonical form.
    fn dir_of(&self, path: &Path) -> Result<(TrustedDir, PathBuf), LoadError> {
        let not_found = || LoadError::NotFound {
            path: path.to_path_buf(),
        };
        let name = path.file_name().ok_or_else(not_found)?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = std::fs::canonicalize(parent).map_err(|_| not_found())?;
        let file = dir.join(name);
        Ok((self.check_dir(&dir)?, file))
    }
}

impl TrustedDir {
    /// The canonical directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The lock file in force, if the directory has one.
    pub fn lock(&self) -> Option<&Lock> {
        self.lock.as_ref()
    }

    /// Holds the directory open, so that checking one of its files looks up the file's name
    /// in it instead of walking the file's whole path: for checking many of its files. When it
    /// cannot be opened (or is no longer the directory that was checked), files are opened by
    /// path as before.
    pub fn hold_open(mut self) -> Self {
        use std::os::unix::fs::OpenOptionsExt;
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&self.dir);
        if let Ok(dir) = opened {
            let same = match (self.checked, dir.metadata()) {
                (Some(checked), Ok(meta)) => checked == (meta.dev(), meta.ino()),
                (None, Ok(_)) => true,
                (_, Err(_)) => false,
            };
            if same {
                self.fd = Some(Arc::new(dir.into()));
            }
        }
        self
    }

    /// Checks the file at `path`, directly in this directory: everything of the [module
    /// docs](self), and its ELF header ([`check_header`]).
    pub fn check_file(&self, path: &Path) -> Result<Verified, LoadError> {
        self.check(path, true)
    }

    /// As [`Self::check_file`] but without reading the ELF header (nor anything else, unless a
    /// lock file or keys require the digest): for callers that answer from the metadata cache
    /// when they can, and whose cache misses go through `calc_host::loader::inspect`, which
    /// checks the header itself.
    pub fn check_policy(&self, path: &Path) -> Result<Verified, LoadError> {
        self.check(path, false)
    }

    fn check(&self, path: &Path, header: bool) -> Result<Verified, LoadError> {
        let digest_needed = self.lock.is_some() || !self.policy.keys.is_empty();
        // Fast path: when the file is to be read anyway, open it first (`O_NOFOLLOW`, so a
        // link fails with ELOOP; `O_NONBLOCK`, so a FIFO does not block) and `fstat` the
        // descriptor: one path lookup instead of two.
        if header || digest_needed {
            let opened = match (&self.fd, path.file_name()) {
                (Some(dir), Some(name)) if path.parent() == Some(self.dir.as_path()) => {
                    open_nonblocking_at(dir, name)
                }
                _ => open_nonblocking(path),
            };
            match opened {
                Ok(file) => {
                    let meta = file.metadata().map_err(|source| LoadError::Unreadable {
                        path: path.to_path_buf(),
                        source: source.into(),
                    })?;
                    if meta.is_file() {
                        return self.check_open(path, path.to_path_buf(), &meta, file, header);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(LoadError::NotFound {
                        path: path.to_path_buf(),
                    })
                }
                Err(_) => {} // a link (ELOOP), or unreadable: the slow path says which
            }
        }
        let meta = std::fs::symlink_metadata(path).map_err(|_| LoadError::NotFound {
            path: path.to_path_buf(),
        })?;
        let mut real = path.to_path_buf();
        let meta = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(path).unwrap_or_default();
            if !self.policy.allow_symlinks {
                return Err(LoadError::Symlink {
                    path: path.to_path_buf(),
                    target,
                });
            }
            real = std::fs::canonicalize(path).map_err(|_| LoadError::NotFound {
                path: path.to_path_buf(),
            })?;
            // The target's directory must pass too (its lock file does not apply: the lock of
            // the directory the plugin was found in does).
            let parent = real.parent().unwrap_or(Path::new("/"));
            if parent != self.dir {
                self.policy.check_dir(parent)?;
            }
            std::fs::metadata(&real).map_err(|_| LoadError::NotFound { path: real.clone() })?
        } else {
            meta
        };
        check_type(&real, &meta)?;
        if !self.policy.allow_insecure_permissions {
            check_owner_and_mode(&real, &meta, "plugin file", self.uid, false)?;
        }
        if !header && !digest_needed {
            return Ok(Verified {
                path: real,
                stamp: None,
                meta,
            });
        }
        let file = open_nofollow(&real).map_err(|source| LoadError::Unreadable {
            path: real.clone(),
            source: source.into(),
        })?;
        if (file.metadata().map(|m| (m.dev(), m.ino())).ok()) != Some((meta.dev(), meta.ino())) {
            return Err(LoadError::Changed { path: real });
        }
        self.check_open(path, real, &meta, file, header)
    }

    /// The checks that need the open regular file `file` at `real` (`path` itself, or the
    /// target of the allowed link `path`), whose metadata is `meta`.
    fn check_open(
        &self,
        path: &Path,
        real: PathBuf,
        meta: &Metadata,
        file: std::fs::File,
        header: bool,
    ) -> Result<Verified, LoadError> {
        check_type(&real, meta)?;
        if !self.policy.allow_insecure_permissions {
            check_owner_and_mode(&real, meta, "plugin file", self.uid, false)?;
        }
        if header {
            check_header(&real, &file, meta.len())?;
        }
        if self.lock.is_none() && self.policy.keys.is_empty() {
            return Ok(Verified {
                path: real,
                stamp: None,
                meta: meta.clone(),
            });
        }
        let digest = sha256(&file).map_err(|source| LoadError::Unreadable {
            path: real.clone(),
            source: source.into(),
        })?;
        if let Some(lock) = &self.lock {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            match lock.digests.get(name) {
                None => {
                    return Err(LoadError::NotInLock {
                        path: path.to_path_buf(),
                        lock: lock.path.clone(),
                    })
                }
                Some(expected) if *expected != digest => {
                    return Err(LoadError::DigestMismatch {
                        path: path.to_path_buf(),
                        lock: lock.path.clone(),
                        expected: hex(expected),
                        found: hex(&digest),
                    })
                }
                Some(_) => {}
            }
        }
        if !self.policy.keys.is_empty() {
            verify_signature(&real, &digest, &signature_path(&real), &self.policy.keys)?;
        }
        Ok(Verified {
            path: real,
            stamp: Some(Stamp::of(meta)),
            meta: meta.clone(),
        })
    }
}

/// The file-type checks `lstat` can answer: a regular, non-empty file.
pub fn check_type(path: &Path, meta: &Metadata) -> Result<(), LoadError> {
    if meta.is_dir() && crate::files::is_library_file(path) {
        return Err(LoadError::NotALibrary {
            path: path.to_path_buf(),
            reason: "is a directory named like a shared library".into(),
        });
    }
    if !meta.is_file() {
        return Err(LoadError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if meta.len() == 0 {
        return Err(LoadError::NotALibrary {
            path: path.to_path_buf(),
            reason: EMPTY.into(),
        });
    }
    Ok(())
}

const EMPTY: &str = "is empty (0 bytes), not a shared library";

/// This host's ELF file header and program header, as `object` reads them (any byte order).
#[cfg(target_pointer_width = "64")]
type Ehdr = elf::FileHeader64<Endianness>;
#[cfg(target_pointer_width = "64")]
type Phdr = elf::ProgramHeader64<Endianness>;
#[cfg(not(target_pointer_width = "64"))]
type Ehdr = elf::FileHeader32<Endianness>;
#[cfg(not(target_pointer_width = "64"))]
type Phdr = elf::ProgramHeader32<Endianness>;

/// How much of a file [`check_header`] reads: the ELF header and, in any ordinary library, the
/// program headers.
const HEADER_BYTES: usize = 4096;

/// Refuses the open file `file` (at `path`, `size` bytes) when its header shows it is not a
/// loadable shared library (see [`diagnose`]), before `dlopen` sees it: a truncated library
/// would not make `dlopen` fail but crash the process (`SIGBUS` when the loader touches a
/// mapped page past the end of the file). One `pread` of up to 4 KiB.
pub fn check_header(path: &Path, file: &std::fs::File, size: u64) -> Result<(), LoadError> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; HEADER_BYTES];
    let want = usize::try_from(size).map_or(HEADER_BYTES, |s| s.min(HEADER_BYTES));
    let mut len = 0;
    // Usually one `pread`: no second one to see the end of a file shorter than 4 KiB.
    while len < want {
        match file.read_at(&mut head[len..want], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(LoadError::Unreadable {
                    path: path.to_path_buf(),
                    source: source.into(),
                })
            }
        }
    }
    let problem = diagnose_bytes(&head[..len], size, None, |offset, len| {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset).ok().map(|()| buf)
    });
    match problem {
        Some(reason) => Err(LoadError::NotALibrary {
            path: path.to_path_buf(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Why the file at `path`, which the dynamic loader refused with `message`, is not a loadable
/// shared library, from its header: empty, text, not ELF, another ELF type or architecture,
/// truncated. `None` when the header looks like a good library (the loader's message, e.g. a
/// missing dependency, is then the reason).
#[cold]
pub fn diagnose(path: &Path, message: &str) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let size = file.metadata().ok()?.len();
    let mut head = Vec::with_capacity(HEADER_BYTES);
    file.by_ref()
        .take(HEADER_BYTES as u64)
        .read_to_end(&mut head)
        .ok()?;
    diagnose_bytes(&head, size, Some(message), |offset, len| {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset).ok().map(|()| buf)
    })
}

/// [`diagnose`] on the first bytes `head` of a file of `size` bytes; `read_at(offset, len)`
/// reads more of it (the program headers). `message` is the dynamic loader's, after it refused
/// the file; `None` before it was tried.
///
/// The first six bytes (magic, class, byte order) are looked at by hand, to tell a text file,
/// a non-ELF file and a file of the other class apart with a message for each; the headers
/// of a file of this host's class are then read with `object`'s ELF types.
// The headers' words are `u32` on a 32-bit host: their `.into()` is not useless there.
#[allow(clippy::useless_conversion)]
fn diagnose_bytes(
    head: &[u8],
    size: u64,
    message: Option<&str>,
    read_at: impl Fn(u64, usize) -> Option<Vec<u8>>,
) -> Option<String> {
    if size == 0 {
        return Some(EMPTY.into());
    }
    if !head.starts_with(b"\x7fELF") {
        let sample = &head[..head.len().min(512)];
        let text = !sample.contains(&0)
            && match std::str::from_utf8(sample) {
                Ok(_) => true,
                Err(e) => e.error_len().is_none(), // a character cut at the end of the sample
            };
        return Some(if text {
            "is a text file, not a shared library".into()
        } else {
            let magic: Vec<String> = head.iter().take(4).map(|b| format!("{b:02x}")).collect();
            format!(
                "is not a shared library (not an ELF file: starts with {})",
                magic.join(" ")
            )
        });
    }
    let truncated = |needed: u64| {
        format!("is a truncated shared library: {size} bytes, but its ELF headers need {needed}")
    };
    let (wide, little) = match (head.get(4), head.get(5)) {
        (Some(1), Some(1)) => (false, true),
        (Some(2), Some(1)) => (true, true),
        (Some(1), Some(2)) => (false, false),
        (Some(2), Some(2)) => (true, false),
        (Some(_), Some(_)) => {
            return Some("is not a valid ELF file (bad class or byte order)".into())
        }
        _ => return Some(truncated(64)),
    };
    let host_wide = cfg!(target_pointer_width = "64");
    if wide != host_wide {
        let header_size: u64 = if wide { 64 } else { 52 };
        if (head.len() as u64) < header_size {
            return Some(truncated(header_size));
        }
        return Some(format!(
            "is a {}-bit ELF file; this host is {}-bit",
            if wide { 64 } else { 32 },
            if host_wide { 64 } else { 32 }
        ));
    }
    // From here the file has this host's class: its headers are read with `object`'s types.
    let endian = if little {
        Endianness::Little
    } else {
        Endianness::Big
    };
    let Ok((ehdr, _)) = object::pod::from_bytes::<Ehdr>(head) else {
        return Some(truncated(size_of::<Ehdr>() as u64));
    };
    match ehdr.e_type(endian) {
        elf::ET_REL => {
            return Some(
                "is an ELF relocatable object (.o), not a shared library (link it with -shared)"
                    .into(),
            )
        }
        elf::ET_EXEC => {
            return Some(
                "is an ELF executable, not a shared library (build it with -shared)".into(),
            )
        }
        elf::ET_DYN => {}
        elf::ET_CORE => return Some("is a core dump, not a shared library".into()),
        other => {
            return Some(format!(
                "is an ELF file of unknown type {other}, not a shared library"
            ))
        }
    }
    let machine = ehdr.e_machine(endian);
    let host_machine = if cfg!(target_arch = "x86_64") {
        Some(elf::EM_X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(elf::EM_AARCH64)
    } else if cfg!(target_arch = "x86") {
        Some(elf::EM_386)
    } else if cfg!(target_arch = "arm") {
        Some(elf::EM_ARM)
    } else if cfg!(target_arch = "riscv64") {
        Some(elf::EM_RISCV)
    } else {
        None
    };
    if host_machine.is_some_and(|m| m != machine) {
        return Some(format!(
            "is built for another architecture (ELF machine {machine}, this host is {})",
            host_machine.unwrap_or_default()
        ));
    }
    let phoff: u64 = ehdr.e_phoff(endian).into();
    let shoff: u64 = ehdr.e_shoff(endian).into();
    let phentsize = u64::from(ehdr.e_phentsize(endian));
    let phnum = u64::from(ehdr.e_phnum(endian));
    let shentsize = u64::from(ehdr.e_shentsize(endian));
    let shnum = u64::from(ehdr.e_shnum(endian));
    let end = |off: u64, n: u64, each: u64| off.saturating_add(n.saturating_mul(each));
    let mut needed = end(phoff, phnum, phentsize).max(end(shoff, shnum, shentsize));
    let mut interpreter = false;
    if phentsize >= size_of::<Phdr>() as u64 && end(phoff, phnum, phentsize) <= size {
        let table_len = usize::try_from(phnum * phentsize).ok()?;
        let start = usize::try_from(phoff).ok()?;
        let table = match head.get(start..start.saturating_add(table_len)) {
            Some(inside) => Some(inside.to_vec()),
            None => read_at(phoff, table_len),
        };
        if let Some(table) = table {
            for entry in table.chunks_exact(phentsize as usize) {
                let Ok((ph, _)) = object::pod::from_bytes::<Phdr>(&entry[..size_of::<Phdr>()])
                else {
                    continue;
                };
                interpreter |= ph.p_type(endian) == elf::PT_INTERP;
                if ph.p_type(endian) == elf::PT_LOAD {
                    let offset: u64 = ph.p_offset(endian).into();
                    let reach = offset.saturating_add(ph.p_filesz(endian).into());
                    needed = needed.max(reach);
                }
            }
        }
    }
    if size < needed {
        return Some(truncated(needed));
    }
    // Only after `dlopen` failed, and not for a missing dependency: a library may have an
    // interpreter too (as libc.so.6 does).
    if interpreter && message.is_some_and(|m| !m.contains("shared object file")) {
        return Some(
            "is a position-independent executable, not a shared library (build it with -shared)"
                .into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {

    #[test]
    fn private_groups_come_from_the_name_services() {
        // Root's primary group is root, with no other members, on every Unix we build on; the
        // answer comes from getpwuid_r/getgrgid_r, so it must agree with what they say.
        let root = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(0))
            .unwrap()
            .expect("the name services know root");
        let group = nix::unistd::Group::from_gid(root.gid).unwrap().unwrap();
        let expected = group.name == root.name && group.mem.iter().all(|m| *m == root.name);
        assert_eq!(is_private_group(0, root.gid.as_raw()), expected);
        // A group that is not root's primary group is not its private group.
        assert!(!is_private_group(0, root.gid.as_raw() + 1));
        // Users no name service knows have no private group.
        assert!(!is_private_group(3_999_999_999, 3_999_999_999));
    }
    use super::*;

    #[test]
    fn lock_files_parse_in_sha256sum_format() {
        let a = "a".repeat(64);
        let b = "0123456789abcdef".repeat(4);
        let text = format!("# comment\n{a}  liba.so\n\n{b} *libb.so\n");
        let lock = Lock::parse(&text, Path::new("/p/calc-plugins.lock")).unwrap();
        assert_eq!(lock.digests.len(), 2);
        assert_eq!(hex(&lock.digests["liba.so"]), a);
        assert_eq!(hex(&lock.digests["libb.so"]), b);
        for (bad, reason) in [
            (format!("{a} liba.so"), "line 1: expected two spaces"),
            ("xyz  liba.so".to_string(), "line 1: not a 64-digit SHA-256"),
            (
                format!("{a}  liba.so\n{a}  liba.so"),
                "line 2: liba.so is listed twice",
            ),
            (format!("{a}  sub/liba.so"), "line 1: expected a file name"),
            (format!("\\{a}  lib\\\\a.so"), "line 1: escaped file names"),
        ] {
            let e = Lock::parse(&bad, Path::new("/p/calc-plugins.lock"))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!(
                    "/p/calc-plugins.lock: invalid lock file: {reason}"
                )),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn keys_round_trip_and_signatures_verify_only_for_their_digest() {
        let secret = SecretKey::generate().unwrap();
        let again = SecretKey::parse(&secret.to_file_text()).unwrap();
        assert_eq!(again.public(), secret.public());
        let public = PublicKey::parse(&secret.public().to_string()).unwrap();
        assert_eq!(public, secret.public());
        assert!(PublicKey::parse(&secret.to_file_text())
            .unwrap_err()
            .contains("secret key"));
        assert!(SecretKey::parse(&public.to_string())
            .unwrap_err()
            .contains("not a calc secret key"));
        assert!(PublicKey::parse("AAAA")
            .unwrap_err()
            .contains("3 bytes, expected 32"));

        let dir = std::env::temp_dir().join(format!("calc-trust-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sig = dir.join("x.so.sig");
        let digest = [7u8; 32];
        std::fs::write(&sig, secret.sign_digest(&digest)).unwrap();
        let path = Path::new("x.so");
        assert_eq!(
            verify_signature(path, &digest, &sig, &[public]).unwrap(),
            public
        );
        let other = SecretKey::generate().unwrap().public();
        let e = verify_signature(path, &digest, &sig, &[other]).unwrap_err();
        assert!(matches!(e, LoadError::BadSignature { .. }), "{e}");
        let e = verify_signature(path, &[8u8; 32], &sig, &[other, public]).unwrap_err();
        assert!(e.to_string().contains("any of the 2 trusted keys"), "{e}");
        let e = verify_signature(path, &digest, &dir.join("none.sig"), &[public]).unwrap_err();
        assert!(matches!(e, LoadError::Unsigned { .. }), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn elf(wide: bool, kind: u16, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = if wide { 2 } else { 1 };
        h[5] = 1;
        h[16..18].copy_from_slice(&kind.to_le_bytes());
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    #[test]
    fn headers_are_classified() {
        let none = |_: u64, _: usize| None;
        let d = |head: &[u8], size: u64| diagnose_bytes(head, size, None, none);
        assert_eq!(d(b"", 0).unwrap(), EMPTY);
        assert_eq!(
            d(b"hello\nworld\n", 12).unwrap(),
            "is a text file, not a shared library"
        );
        assert_eq!(
            d(b"MZ\x90\x00\x03", 5).unwrap(),
            "is not a shared library (not an ELF file: starts with 4d 5a 90 00)"
        );
        assert!(d(b"\x7fELF\x02", 5).unwrap().starts_with("is a truncated"));
        if cfg!(all(target_arch = "x86_64", target_pointer_width = "64")) {
            assert!(d(&elf(true, 1, 62), 64)
                .unwrap()
                .contains("relocatable object"));
            assert!(d(&elf(true, 2, 62), 64).unwrap().contains("ELF executable"));
            assert!(d(&elf(true, 3, 183), 64)
                .unwrap()
                .contains("another architecture (ELF machine 183, this host is 62)"));
            assert_eq!(
                d(&elf(false, 3, 3), 64).unwrap(),
                "is a 32-bit ELF file; this host is 64-bit"
            );
            let mut lib = elf(true, 3, 62);
            lib[40..48].copy_from_slice(&10_000u64.to_le_bytes()); // e_shoff
            lib[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
            lib[60..62].copy_from_slice(&10u16.to_le_bytes()); // e_shnum
            assert_eq!(
                d(&lib, 5000).unwrap(),
                "is a truncated shared library: 5000 bytes, but its ELF headers need 10640"
            );
            assert_eq!(
                d(&lib, 10_640),
                None,
                "complete: the loader's message stands"
            );
        }
    }
}
