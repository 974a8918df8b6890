//! The trust policy (docs/TRUST.md): permissions and owners, the lock file of digests, detached
//! ed25519 signatures, all checked before `dlopen`. "Before" is proved with a plugin whose
//! constructor (run by `dlopen`, before any calc code) creates a marker file.
//!
//! The tests run as root (as the suite does), so they can give files to another user.

use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use calc_host::config::Settings;
use calc_host::trust::{self, PublicKey, TrustPolicy};
use calc_host::PluginManager;
use calc_tests::{build_c_plugin, calc_binary, library_file_name, scratch_dir, target_dir};

/// A valid plugin `marked` (function `marked(x) = x + 1`) whose constructor creates `marker`
/// when the dynamic loader maps it.
const MARKER_SOURCE: &str = r#"
#include <stdio.h>
#include "calc_plugin.h"

__attribute__((constructor)) static void mark(void) {
    FILE *f = fopen(MARKER, "w");
    if (f) fclose(f);
}

static calc_status_t inc(void *instance, const double *args, size_t n, double *out, char *err,
                         size_t err_size) {
    (void)instance; (void)n; (void)err; (void)err_size;
    *out = args[0] + 1;
    return CALC_STATUS_OK;
}

static const calc_operation_t ops[] = {{
    .name = "marked", .description = "x + 1", .execute = inc,
    .kind = CALC_OPERATION_KIND_FUNCTION, .min_arity = 1, .max_arity = 1,
}};

static const calc_plugin_t descriptor = {
    .magic = CALC_PLUGIN_MAGIC, .struct_size = sizeof(calc_plugin_t),
    .abi_version = CALC_ABI_VERSION_INIT,
    .name = "marked", .version = "1.0.0", .author = "calc tests", .description = "marker",
    .sdk_version = CALC_SDK_VERSION, .api_requirement = CALC_API_REQUIREMENT_DEFAULT,
    .operations = ops, .operation_count = 1, .operation_size = sizeof(calc_operation_t),
};

CALC_PLUGIN_ENTRY { return &descriptor; }
"#;

/// A scratch plugin directory holding the marker plugin: (directory, plugin file, marker).
struct Fixture {
    dir: PathBuf,
    plugin: PathBuf,
    marker: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let root = scratch_dir(&format!("trust-{name}-{}", std::process::id()));
        let dir = root.join("plugins");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let marker = root.join("marker");
        let source = root.join("marked.c");
        std::fs::write(&source, MARKER_SOURCE).unwrap();
        let plugin = dir.join(library_file_name("marked"));
        build_c_plugin(
            &source,
            &plugin,
            &[&format!("-DMARKER=\"{}\"", marker.display())],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Fixture {
            dir: std::fs::canonicalize(&dir).unwrap(),
            plugin: std::fs::canonicalize(&plugin).unwrap(),
            marker,
        }
    }

    /// Whether the plugin was ever mapped (its constructor ran); resets the marker.
    fn was_opened(&self) -> bool {
        std::fs::remove_file(&self.marker).is_ok()
    }

    fn chmod(&self, path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Loads the directory with `policy`: (plugins loaded, the failures' messages).
    fn load_dir(&self, policy: &TrustPolicy) -> (usize, Vec<String>) {
        let mut m = PluginManager::with_settings(Settings::default().with_trust(policy.clone()));
        let loaded = m.load_dir(&self.dir).unwrap_or(0);
        if loaded == 1 {
            assert_eq!(m.eval("marked(41)"), Ok(42.0));
        }
        (
            loaded,
            m.failures().iter().map(|f| f.error.to_string()).collect(),
        )
    }

    /// Loads the plugin file alone with `policy`: the error's kind and message on failure.
    fn load_file(&self, policy: &TrustPolicy) -> Result<(), Refusal> {
        let mut m = PluginManager::with_settings(Settings::default().with_trust(policy.clone()));
        m.load_file(&self.plugin).map(|_| ()).map_err(|e| Refusal {
            kind: e.kind(),
            message: e.to_string(),
        })
    }
}

/// A load error, by kind and message.
#[derive(Debug)]
struct Refusal {
    kind: &'static str,
    message: String,
}

fn allow_insecure() -> TrustPolicy {
    let mut policy = TrustPolicy::default();
    policy.allow_insecure_permissions = true;
    policy
}

const HOW: &str = "allow it with [trust] allow_insecure_permissions = true";

#[test]
fn a_plugin_file_others_can_write_is_refused_before_dlopen_unless_allowed() {
    let f = Fixture::new("writable");
    assert_eq!(f.load_dir(&TrustPolicy::default()).0, 1, "0644 loads");
    assert!(f.was_opened(), "the marker works");

    f.chmod(&f.plugin, 0o646);
    let (loaded, failures) = f.load_dir(&TrustPolicy::default());
    assert_eq!(loaded, 0);
    assert_eq!(
        failures,
        [format!(
            "{}: insecure plugin file: writable by others (mode 0646); chmod go-w it, or {HOW}",
            f.plugin.display()
        )]
    );
    assert!(!f.was_opened(), "refused before dlopen");
    let e = f.load_file(&TrustPolicy::default()).unwrap_err();
    assert_eq!(e.kind, "insecure_permissions");
    assert_eq!(e.message, failures[0]);
    assert!(!f.was_opened());

    // Group-writable, with a group that is not the owner's private group.
    f.chmod(&f.plugin, 0o664);
    chown(&f.plugin, Some(0), Some(54_321)).unwrap();
    let (loaded, failures) = f.load_dir(&TrustPolicy::default());
    assert_eq!(loaded, 0);
    assert!(
        failures[0].contains("insecure plugin file: writable by group (mode 0664)"),
        "{failures:?}"
    );
    assert!(!f.was_opened());

    assert_eq!(f.load_dir(&allow_insecure()), (1, vec![]));
    assert!(f.was_opened());
}

#[test]
fn a_plugin_owned_by_another_user_is_refused_unless_allowed() {
    let f = Fixture::new("owner");
    chown(&f.plugin, Some(4242), None).unwrap();
    let uid = trust::effective_uid();
    let (loaded, failures) = f.load_dir(&TrustPolicy::default());
    assert_eq!(loaded, 0);
    assert_eq!(
        failures,
        [format!(
            "{}: insecure plugin file: owned by uid 4242, not by the current user (uid {uid}) or root; chown it, or {HOW}",
            f.plugin.display()
        )]
    );
    assert!(!f.was_opened());
    assert_eq!(f.load_dir(&allow_insecure()).0, 1);
    assert!(f.was_opened());

    // The directory's owner counts too.
    chown(&f.plugin, Some(uid), None).unwrap();
    chown(&f.dir, Some(4242), None).unwrap();
    let (loaded, failures) = f.load_dir(&TrustPolicy::default());
    assert_eq!(loaded, 0);
    assert!(
        failures[0].starts_with(&format!(
            "{}: insecure plugin directory: owned by uid 4242",
            f.dir.display()
        )),
        "{failures:?}"
    );
    assert!(!f.was_opened());
}

#[test]
fn a_plugin_directory_others_can_write_is_refused_even_when_sticky() {
    let f = Fixture::new("sticky");
    f.chmod(&f.dir, 0o1777);
    let mut m = PluginManager::new();
    let e = m.load_dir(&f.dir).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: insecure plugin directory: writable by others (mode 1777; the sticky bit does not stop others adding plugins); chmod go-w it, or {HOW}",
            f.dir.display()
        )
    );
    assert!(!f.was_opened());
    // A single file from that directory, too.
    assert!(f.load_file(&TrustPolicy::default()).is_err());
    assert!(!f.was_opened());
    assert_eq!(f.load_dir(&allow_insecure()).0, 1);
    assert!(f.was_opened());
}

#[test]
fn directories_above_the_plugins_are_checked_and_may_be_sticky() {
    let f = Fixture::new("ancestors");
    let parent = f.dir.parent().unwrap().to_path_buf();
    f.chmod(&parent, 0o1777);
    assert_eq!(f.load_dir(&TrustPolicy::default()).0, 1, "sticky like /tmp");
    assert!(f.was_opened());
    f.chmod(&parent, 0o755);

    // Another tree, whose parent is insecure from the start. (Verdicts on directories above the
    // plugins are remembered per process once they pass: only their trusted owners could change
    // them afterwards, and the plugin directory and files are still checked on every load.)
    let f = Fixture::new("ancestors-insecure");
    let parent = f.dir.parent().unwrap().to_path_buf();
    f.chmod(&parent, 0o777);
    // A group that is not the owner's private group.
    chown(&parent, None, Some(54_321)).unwrap();
    let (loaded, failures) = f.load_dir(&TrustPolicy::default());
    assert_eq!(loaded, 0);
    assert_eq!(
        failures,
        [format!(
            "{}: insecure directory above the plugins: writable by group and others (mode 0777); chmod go-w it, or {HOW}",
            parent.display()
        )]
    );
    assert!(!f.was_opened());
    f.chmod(&parent, 0o755);
}

fn calc(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(calc_binary())
        .args(args)
        .current_dir(dir)
        .env("XDG_CACHE_HOME", target_dir().join("calc-tests/xdg-cache"))
        .env("XDG_CONFIG_HOME", dir.join("no-config"))
        .env_remove("CALC_PLUGIN_PATH")
        .env_remove("CALC_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("calc runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_lock_file_refuses_changed_and_unlisted_plugins_before_dlopen() {
    let f = Fixture::new("lock");
    // `calc plugins lock` with no argument locks the current directory.
    let out = calc(&f.dir, &["plugins", "lock"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lock = f.dir.join(trust::LOCK_FILE);
    let digest = trust::hex(&trust::sha256_file(&f.plugin).unwrap());
    let name = library_file_name("marked");
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap(),
        format!("{digest}  {name}\n")
    );
    // The format is sha256sum's.
    if let Ok(check) = Command::new("sha256sum")
        .args(["-c", trust::LOCK_FILE])
        .current_dir(&f.dir)
        .output()
    {
        assert!(check.status.success(), "{}", text(&check.stderr));
        assert_eq!(text(&check.stdout), format!("{name}: OK\n"));
    }
    assert_eq!(f.load_dir(&TrustPolicy::default()).0, 1);
    assert!(f.was_opened());

    // Tampered: one byte appended (still a loadable library).
    let mut bytes = std::fs::read(&f.plugin).unwrap();
    bytes.push(0);
    std::fs::write(&f.plugin, &bytes).unwrap();
    let found = trust::hex(&trust::sha256_file(&f.plugin).unwrap());
    let (loaded, failures) = f.load_dir(&TrustPolicy::default());
    assert_eq!(loaded, 0);
    assert_eq!(
        failures,
        [format!(
            "{}: digest mismatch: expected {digest}, found {found} ({})",
            f.plugin.display(),
            lock.display()
        )]
    );
    assert!(!f.was_opened(), "refused before dlopen");
    let err = f.load_file(&TrustPolicy::default()).unwrap_err();
    assert_eq!(err.kind, "digest_mismatch", "{err:?}");
    assert!(!f.was_opened());
    let out = calc(
        &f.dir,
        &["plugins", "check", f.plugin.to_str().unwrap(), "--json"],
    );
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["kind"], "digest_mismatch");
    assert_eq!(v[0]["mismatches"][0]["expected"], digest.as_str());
    assert!(!f.was_opened());

    // Locked again, it loads; a new file that is not in the lock is refused.
    let out = calc(&f.dir, &["plugins", "lock", f.dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let extra = f.dir.join(library_file_name("extra"));
    std::fs::copy(&f.plugin, &extra).unwrap();
    let (loaded, failures) = f.load_dir(&TrustPolicy::default());
    assert_eq!(loaded, 1);
    assert!(f.was_opened());
    assert_eq!(
        failures,
        [format!(
            "{}: not in {} (add its digest to the lock once you trust it)",
            extra.display(),
            lock.display()
        )]
    );
    // Lazy loading (the CLI's eval) and the listing refuse it too, before any dlopen.
    std::fs::remove_file(&f.plugin).unwrap();
    let out = calc(&f.dir, &["--plugin-dir", ".", "eval", "marked(1)"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(&format!("{}: not in", extra.display())),
        "{}",
        text(&out.stderr)
    );
    // The library's message names no command; the CLI adds the one that fixes it.
    let dir = std::fs::canonicalize(&f.dir).unwrap();
    assert!(
        text(&out.stderr).contains(&format!(
            "once you trust it); `calc plugins lock {}` adds it",
            dir.display()
        )),
        "{}",
        text(&out.stderr)
    );
    let out = calc(&f.dir, &["--plugin-dir", ".", "plugins", "list"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stdout).contains("not in"),
        "{}",
        text(&out.stdout)
    );
    assert!(!f.was_opened());
}

/// Single-file loads remember a directory seen without a lock file, by its identity and
/// timestamps: a lock file that appears later is still found at once.
#[test]
fn a_lock_file_added_after_loads_that_found_none_is_enforced_at_once() {
    let f = Fixture::new("latelock");
    // Only a directory that has not changed for 2 s is remembered; wait for that.
    let changed = std::fs::metadata(&f.dir).unwrap().modified().unwrap();
    let settled = changed + std::time::Duration::from_millis(2100);
    if let Ok(wait) = settled.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(wait);
    }
    for _ in 0..2 {
        f.load_file(&TrustPolicy::default()).unwrap();
        assert!(f.was_opened());
    }
    let lock = f.dir.join(trust::LOCK_FILE);
    let name = library_file_name("marked");
    std::fs::write(&lock, format!("{}  {name}\n", "0".repeat(64))).unwrap();
    let err = f.load_file(&TrustPolicy::default()).unwrap_err();
    assert_eq!(err.kind, "digest_mismatch", "{err:?}");
    assert!(!f.was_opened(), "refused before dlopen");
    // And gone again, the plugin loads.
    std::fs::remove_file(&lock).unwrap();
    f.load_file(&TrustPolicy::default()).unwrap();
    assert!(f.was_opened());
}

/// A directory held open (as `load_dir` holds the one it loads) checks its files relative to
/// it, with the same verdicts as by path: a link in it is refused, not followed.
#[test]
fn a_directory_held_open_checks_its_files_as_by_path() {
    let f = Fixture::new("held");
    let link = f.dir.join(library_file_name("link"));
    std::os::unix::fs::symlink(&f.plugin, &link).unwrap();
    let missing = f.dir.join(library_file_name("missing"));
    for held in [false, true] {
        let dir = TrustPolicy::default().check_dir(&f.dir).unwrap();
        let dir = if held { dir.hold_open() } else { dir };
        let verified = dir.check_file(&f.plugin).unwrap();
        assert_eq!(verified.path(), f.plugin);
        let kind = |path: &Path| dir.check_file(path).map(|_| ()).map_err(|e| e.kind());
        assert_eq!(kind(&link), Err("symlink"), "held open: {held}");
        assert_eq!(kind(&missing), Err("not_found"), "held open: {held}");
        f.chmod(&f.plugin, 0o666);
        assert_eq!(
            kind(&f.plugin),
            Err("insecure_permissions"),
            "held open: {held}"
        );
        f.chmod(&f.plugin, 0o755);
    }
    assert!(!f.was_opened(), "checking opens no library");
}

#[test]
fn a_malformed_lock_file_refuses_its_whole_directory() {
    let f = Fixture::new("badlock");
    let lock = f.dir.join(trust::LOCK_FILE);
    std::fs::write(&lock, "not a digest\n").unwrap();
    let mut m = PluginManager::new();
    let e = m.load_dir(&f.dir).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: invalid lock file: line 1: not a 64-digit SHA-256 hex digest",
            lock.display()
        )
    );
    assert!(!f.was_opened());
}

/// `calc plugins keygen --out <dir>/<name>`: the secret and public key files.
fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let out = calc(dir, &["plugins", "keygen", "--out", name]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (secret, public) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        text(&out.stdout).contains(&std::fs::read_to_string(&public).unwrap().trim().to_string())
    );
    (secret, public)
}

fn signed_by(keys: &[&Path]) -> TrustPolicy {
    let mut policy = TrustPolicy::default();
    policy.keys = keys
        .iter()
        .map(|k| PublicKey::parse(&std::fs::read_to_string(k).unwrap()).unwrap())
        .collect();
    policy
}

#[test]
fn signatures_round_trip_and_unsigned_wrong_or_tampered_plugins_are_refused() {
    let f = Fixture::new("sign");
    let keys = f.dir.parent().unwrap().to_path_buf();
    let (secret, public) = keygen(&keys, "author");
    let (_, other_public) = keygen(&keys, "other");
    // keygen does not overwrite.
    let again = calc(&keys, &["plugins", "keygen", "--out", "author"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );

    let plugin = f.plugin.to_str().unwrap();
    let sig = trust::signature_path(&f.plugin);
    let policy = signed_by(&[&public]);

    // Unsigned.
    let e = f.load_file(&policy).unwrap_err();
    assert_eq!(e.kind, "unsigned");
    assert_eq!(
        e.message,
        format!(
            "{}: unsigned: no {}, and [trust] keys requires a signature by a trusted key",
            f.plugin.display(),
            sig.display()
        )
    );
    assert!(!f.was_opened());

    // Signed: verify passes, the plugin loads.
    let out = calc(
        &keys,
        &["plugins", "sign", "--key", secret.to_str().unwrap(), plugin],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(sig.is_file());
    let out = calc(
        &keys,
        &[
            "plugins",
            "verify",
            "--key",
            public.to_str().unwrap(),
            plugin,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).starts_with(&format!("{plugin}: good signature by ")));
    assert_eq!(f.load_dir(&policy), (1, vec![]));
    assert!(f.was_opened());
    // Any of several trusted keys will do.
    assert_eq!(f.load_dir(&signed_by(&[&other_public, &public])).0, 1);
    assert!(f.was_opened());

    // Another key.
    let out = calc(
        &keys,
        &[
            "plugins",
            "verify",
            "--key",
            other_public.to_str().unwrap(),
            plugin,
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        text(&out.stdout),
        format!(
            "BAD {plugin}: bad signature {}: does not verify with the trusted key (the file changed after it was signed, or another key signed it)\n",
            sig.display()
        )
    );
    let e = f.load_file(&signed_by(&[&other_public])).unwrap_err();
    assert_eq!(e.kind, "bad_signature", "{e:?}");
    assert!(!f.was_opened());

    // Tampered after signing.
    let mut bytes = std::fs::read(&f.plugin).unwrap();
    bytes.push(0);
    std::fs::write(&f.plugin, &bytes).unwrap();
    let e = f.load_file(&policy).unwrap_err();
    assert_eq!(e.kind, "bad_signature", "{e:?}");
    assert!(!f.was_opened());
    let out = calc(
        &keys,
        &[
            "plugins",
            "verify",
            "--key",
            public.to_str().unwrap(),
            plugin,
        ],
    );
    assert_eq!(out.status.code(), Some(3));

    // A garbled signature file, and keys from the configuration through the CLI.
    std::fs::write(&sig, "!!!\n").unwrap();
    let config = keys.join("calc.toml");
    let key_text = std::fs::read_to_string(&public).unwrap();
    std::fs::write(
        &config,
        format!("[trust]\nkeys = [\"{}\"]\n", key_text.trim()),
    )
    .unwrap();
    let out = calc(
        &keys,
        &[
            "--config",
            config.to_str().unwrap(),
            "plugins",
            "verify",
            plugin,
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stdout).contains("not a base64 ed25519 signature"),
        "{}",
        text(&out.stdout)
    );
    let out = calc(
        &keys,
        &[
            "--config",
            config.to_str().unwrap(),
            "--plugin-dir",
            f.dir.to_str().unwrap(),
            "eval",
            "marked(1)",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("bad signature"),
        "{}",
        text(&out.stderr)
    );
    assert!(!f.was_opened());

    // Usage errors exit 2: a secret key where a public one belongs, a missing key file.
    let out = calc(
        &keys,
        &[
            "plugins",
            "verify",
            "--key",
            secret.to_str().unwrap(),
            plugin,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("this is a secret key"),
        "{}",
        text(&out.stderr)
    );
    let out = calc(&keys, &["plugins", "sign", "--key", "missing.key", plugin]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_cli_refuses_insecure_plugins_and_allow_insecure_overrides() {
    let f = Fixture::new("cli");
    f.chmod(&f.plugin, 0o666);
    let plugin = f.plugin.to_str().unwrap();
    let out = calc(&f.dir, &["plugins", "check", plugin]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stdout).starts_with(&format!("REFUSED {plugin}: insecure plugin file")),
        "{}",
        text(&out.stdout)
    );
    assert!(!f.was_opened());
    let out = calc(&f.dir, &["--allow-insecure", "plugins", "check", plugin]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(f.was_opened());
    let out = calc(
        &f.dir,
        &["--allow-insecure", "--plugin-dir", ".", "eval", "marked(1)"],
    );
    assert_eq!(text(&out.stdout), "2\n", "{}", text(&out.stderr));
}

#[test]
fn the_c_api_reports_a_refusal_by_the_trust_policy_with_its_own_status() {
    use calc_host::capi::*;
    let f = Fixture::new("capi");
    f.chmod(&f.plugin, 0o666);
    let path = std::ffi::CString::new(f.plugin.to_str().unwrap()).unwrap();
    let mut host = std::ptr::null_mut();
    // SAFETY: the C API's contracts: a valid out-pointer, a live host, NUL-terminated paths.
    unsafe {
        assert_eq!(calc_host_new(&mut host), 0);
        assert_eq!(
            calc_host_load_file(host, path.as_ptr()),
            CALC_STATUS_UNTRUSTED
        );
        let message = std::ffi::CStr::from_ptr(calc_last_error_message());
        assert!(
            message.to_str().unwrap().contains("insecure plugin file"),
            "{message:?}"
        );
        calc_host_free(host);
    }
    assert!(!f.was_opened());
}
