//! Vetting: validating plugin files in a child process, so that no code of a file the host has
//! not validated before runs in the host.
//!
//! Opening a library runs its initialisers, and validating it calls `plugin_entry` and reads its
//! descriptor: a hostile or broken file can crash, hang or `exit()` the process that does it. A
//! [`Vetter`] does all of that in a child, the plugin runner started with `--vet`, as
//! GStreamer's plugin scanner does: one child vets many files in turn (one request each); a file
//! that kills or hangs it is refused with one line naming the file and what happened (signal,
//! exit status, time limit), and the next file gets a new child.
//!
//! `calc plugins check` vets every file it checks this way.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::{Arc, Mutex, PoisonError};

use crate::isolation::client::{Connection, Death};
use crate::isolation::protocol::{Reply, Request};
use crate::verdict::{FileStamp, Refusal, Verdict};

/// How many vetting requests [`Vetter::vet_all`] keeps in flight: enough that the child never
/// waits for the host, few enough that the requests fit in the socket's buffer.
pub const PIPELINE: usize = 32;

/// Validates plugin files in a child process (see the module docs). Dropping it stops the
/// child.
pub struct Vetter {
    runner: PathBuf,
    limit: Duration,
    child: Option<Connection>,
    /// Why this vetter refuses every file without trying (see [`Vetter::refusing`]).
    refusing: Option<String>,
}

impl std::fmt::Debug for Vetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vetter")
            .field("runner", &self.runner)
            .field("limit", &self.limit)
            .field("running", &self.child.is_some())
            .field("refusing", &self.refusing)
            .finish()
    }
}

impl Vetter {
    /// A vetter that runs `runner` (`calc-plugin-runner`, see
    /// [`crate::isolation::find_runner`]) and gives each file `limit` to load and validate
    /// (the CLI uses `[isolation] start_timeout_ms`, 5 s by default).
    pub fn new(runner: impl Into<PathBuf>, limit: Duration) -> Vetter {
        Vetter {
            runner: runner.into(),
            limit,
            child: None,
            refusing: None,
        }
    }

    /// A vetter that refuses every file (kind `vetting`) because files cannot be vetted here:
    /// `why` follows the file's name (for `[isolation] vet = "always"` without a runner).
    pub fn refusing(why: impl Into<String>) -> Vetter {
        Vetter {
            runner: PathBuf::new(),
            limit: Duration::ZERO,
            child: None,
            refusing: Some(why.into()),
        }
    }

    /// A vetter with the same runner and limit, and no child yet.
    pub fn fresh(&self) -> Vetter {
        let mut fresh = Vetter::new(&self.runner, self.limit);
        fresh.refusing.clone_from(&self.refusing);
        fresh
    }

    /// What validating the library at `path` gives, found in the vetting child: the plugin's
    /// metadata, the refusal the loader reports (as loading in process would word it), or,
    /// when the child died or hung on this file, a refusal saying so (kind `crashed`,
    /// `exited`, `timed_out`, or `vetting` when the child could not be run or talked to).
    pub fn vet(&mut self, path: &Path) -> Verdict {
        use std::os::unix::ffi::OsStrExt;
        if let Some(why) = &self.refusing {
            return refused(path, "vetting", why.clone());
        }
        let deadline = Instant::now() + self.limit;
        let child = match self.child.take() {
            Some(child) => child,
            None => match self.start(deadline) {
                Ok(child) => child,
                Err(why) => return refused(path, "vetting", why),
            },
        };
        let child = self.child.insert(child);
        let request = Request::Vet {
            path: path.as_os_str().as_bytes().to_vec(),
        };
        let reply = child.exchange(&request, Some(deadline));
        self.verdict_of(path, reply)
    }

    /// Vets every file of `paths` in order and hands each verdict to `each` (with the file's
    /// index) as soon as it arrives, as [`Self::vet`] would give it. Up to [`PIPELINE`]
    /// requests are in flight, so the child is already vetting the next files while `each`
    /// runs (the manager opens a vetted file there): vetting many files costs one child and
    /// about one `dlopen` each, not a round trip each. A file that kills or hangs the child is
    /// refused, and the files after it go to a new child.
    pub fn vet_all(&mut self, paths: &[PathBuf], mut each: impl FnMut(usize, Verdict)) {
        use std::os::unix::ffi::OsStrExt;
        if let Some(why) = &self.refusing {
            for (i, path) in paths.iter().enumerate() {
                each(i, refused(path, "vetting", why.clone()));
            }
            return;
        }
        let (mut sent, mut done) = (0usize, 0usize);
        // Whether the current child stopped taking requests (it died with some in flight).
        let mut closed = false;
        // Children that died before the file they were sent (at most one retry per file).
        let mut lost_before = 0usize;
        while done < paths.len() {
            if self.child.is_none() {
                // Nothing is in flight without a child.
                sent = done;
                closed = false;
                match self.start(Instant::now() + self.limit) {
                    Ok(child) => self.child = Some(child),
                    Err(why) => {
                        // No child can be started: every remaining file is unvetted.
                        for (i, path) in paths.iter().enumerate().skip(done) {
                            each(i, refused(path, "vetting", why.clone()));
                        }
                        return;
                    }
                }
            }
            let child = self.child.as_mut().expect("started above");
            while !closed && sent < paths.len() && sent - done < PIPELINE {
                let request = Request::Vet {
                    path: paths[sent].as_os_str().as_bytes().to_vec(),
                };
                if child.send_only(&request).is_err() {
                    // The child died: on a file in flight, whose reply never comes, after the
                    // replies it did send, which are read below first.
                    closed = true;
                    break;
                }
                sent += 1;
            }
            if sent == done {
                // Nothing in flight, and the child takes no request: it died between files
                // (a thread of an earlier one). The next file goes to a new child, once.
                self.stop();
                lost_before += 1;
                if lost_before > 1 {
                    let why = "the vetting process died before it was sent the file".to_string();
                    each(done, refused(&paths[done], "vetting", why));
                    done += 1;
                    lost_before = 0;
                }
                continue;
            }
            lost_before = 0;
            let path = &paths[done];
            // The child started on this file at the latest when it answered the one before,
            // which is no later than now: the limit runs from here.
            let result = child.receive(Some(Instant::now() + self.limit));
            let verdict = self.verdict_of(path, result);
            each(done, verdict);
            done += 1;
        }
    }

    /// The verdict on `path` that the child's reply (or death) gives; stops or forgets the
    /// child when it cannot go on.
    fn verdict_of(&mut self, path: &Path, reply: Result<Reply, Death>) -> Verdict {
        match reply {
            Ok(Reply::Vetted { verdict }) => verdict,
            Ok(other) => {
                self.stop();
                refused(path, "vetting", format!("unexpected answer {other:?}"))
            }
            Err(death) => {
                // The child is gone (reaped); the next file gets a new one.
                self.child = None;
                let (kind, what) = match death {
                    Death::Signal(_) | Death::SignalUnderRlimit(..) => {
                        ("crashed", death.describe("while loading it"))
                    }
                    Death::MemoryLimit(_) => ("memory_limit", death.describe("while loading it")),
                    Death::Exited(_) => ("exited", death.describe("while loading it")),
                    Death::TimedOut(_) => (
                        "timed_out",
                        format!(
                            "did not finish loading within {} (its initialisers or plugin_entry hang)",
                            crate::isolation::client::millis(self.limit)
                        ),
                    ),
                    // The file's code broke the child's side of the connection (wrote to it,
                    // closed it): the file's doing, as a crash would be.
                    Death::Broken(why) => (
                        "protocol",
                        format!("the vetting process broke its connection while loading it: {why}"),
                    ),
                };
                refused(path, kind, format!("refused by vetting: {what}"))
            }
        }
    }

    fn start(&self, deadline: Instant) -> Result<Connection, String> {
        let mut child = Connection::spawn(
            &self.runner,
            &[std::ffi::OsStr::new("--vet")],
            Stdio::null(),
            None,
        )
        .map_err(|e| format!("cannot start {}: {e}", self.runner.display()))?;
        child
            .hello(deadline)
            .map_err(|death| death.describe("while starting the vetter"))?;
        Ok(child)
    }

    /// Stops the child, if one runs.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.shutdown();
        }
    }
}

impl Drop for Vetter {
    fn drop(&mut self) {
        self.stop();
    }
}

pub use crate::isolation::protocol::TrialUnload;

/// Loads the plugin at `path` in a child (`runner --trial-unload`), runs its `init` and
/// `shutdown` there in a thread of its own, closes it, and reports whether it was unloaded
/// (see [`TrialUnload`]). The plugin's code runs only in the child, which gets `limit`.
pub fn trial_unload(runner: &Path, path: &Path, limit: Duration) -> Result<TrialUnload, String> {
    let deadline = Instant::now() + limit;
    let mut child = Connection::spawn(
        runner,
        &[std::ffi::OsStr::new("--trial-unload"), path.as_os_str()],
        Stdio::null(),
        None,
    )
    .map_err(|e| format!("cannot start {}: {e}", runner.display()))?;
    match child.receive(Some(deadline)) {
        Ok(Reply::Trial { report }) => {
            child.shutdown();
            Ok(report)
        }
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(death) => Err(death.describe("during the trial load")),
    }
}

/// The vetter `settings` ask for (`[isolation] vet`, see [`crate::config::VetMode`]): one on
/// the runner when it is found; `None` for `never`, and for `auto` without a runner (files
/// are then validated in process; one warning says so); for `always` without a runner, a
/// vetter that refuses every file, saying why. Without `[isolation] runner`, the runner is
/// looked for once per process (see [`crate::isolation::find_runner`]).
pub fn for_settings(settings: &crate::config::Settings) -> Option<Vetter> {
    use crate::config::VetMode;
    let iso = &settings.isolation;
    if iso.vet == VetMode::Never {
        return None;
    }
    // Where no runner is configured, the search (a few `stat`s) is done once per process.
    static FOUND: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    let search = || crate::isolation::find_runner(None, Path::new("")).map_err(|e| unavailable(&e));
    let found = match &iso.runner {
        Some(configured) => crate::isolation::find_runner(Some(configured), Path::new(""))
            .map_err(|e| unavailable(&e)),
        None => FOUND.get_or_init(search).clone(),
    };
    match found {
        Ok(runner) => Some(Vetter::new(runner, iso.start_timeout)),
        Err(why) => match iso.vet {
            VetMode::Always => Some(Vetter::refusing(format!(
                "not vetted ([isolation] vet = \"always\"): {why}"
            ))),
            _ => {
                warn_unvetted(&why);
                None
            }
        },
    }
}

/// Why files cannot be vetted, from [`crate::isolation::find_runner`]'s error.
pub(crate) fn unavailable(e: &crate::error::LoadError) -> String {
    let why = match e {
        crate::error::LoadError::Isolation { reason, .. } => reason.clone(),
        other => other.to_string(),
    };
    why.replace("cannot isolate the plugin", "cannot vet plugin files")
}

/// Warns, once per process, that files are validated in process for want of a runner.
pub(crate) fn warn_unvetted(why: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!("plugin files are validated in this process, not vetted in a child: {why}");
    });
}

/// What vetting found about each file this process vetted, by canonical path: an unchanged
/// file is not vetted twice, whichever manager opens it. Verdicts depend only on the file and
/// this host's validation rules.
struct Remembered {
    stamp: FileStamp,
    /// Shared, so that a lookup costs no copy of the plugin's metadata.
    verdict: Arc<Verdict>,
    /// When the file was vetted (ns since the epoch).
    checked_ns: i64,
    /// Vetted ahead of the open it is for ([`Vetter::vet_all`]): usable once even when racy.
    pending: bool,
}

/// Keyed by the path's bytes: a lookup compares byte strings (`memcmp`) rather than `Path`s,
/// whose ordering walks them component by component (a warm `load_dir` looks up every file).
/// A `BTreeMap` rather than a `HashMap`: a hash table's only pointer to its allocation points
/// into the middle of it, so memory checkers (valgrind) report everything it holds as possibly
/// lost at exit, and the C API's memcheck test would fail on this process-wide memory.
static VERDICTS: Mutex<BTreeMap<OsString, Remembered>> = Mutex::new(BTreeMap::new());

/// Most verdicts this process keeps (it forgets them all when it has this many).
const MAX_VERDICTS: usize = 1 << 16;

/// The verdict this process found for the version `stamp` of the file at `path`, if any. A
/// file changed within [`crate::verdict::RACY_WINDOW`] of its vetting could have changed again
/// with the same stamp, so such a verdict serves only the open it was found for.
pub(crate) fn recall(path: &Path, stamp: FileStamp) -> Option<Arc<Verdict>> {
    let mut verdicts = VERDICTS.lock().unwrap_or_else(PoisonError::into_inner);
    let known = verdicts
        .get(path.as_os_str())
        .filter(|r| r.stamp == stamp)?;
    if !stamp.racy_at(known.checked_ns) {
        return Some(Arc::clone(&known.verdict));
    }
    if known.pending {
        return verdicts.remove(path.as_os_str()).map(|r| r.verdict);
    }
    None
}

/// Keeps `verdict` on the version `stamp` of the file at `path` (see [`recall`]); `pending`
/// when an open of the file follows. A refusal that says only that the vetter could not run
/// is not kept.
pub(crate) fn remember(path: &Path, stamp: FileStamp, verdict: &Verdict, pending: bool) {
    if matches!(verdict, Verdict::Refused(r) if r.kind == "vetting") {
        return;
    }
    let checked_ns = calc_runtime::files::ns_since_epoch(std::time::SystemTime::now());
    let mut verdicts = VERDICTS.lock().unwrap_or_else(PoisonError::into_inner);
    if verdicts.len() >= MAX_VERDICTS {
        verdicts.clear();
    }
    verdicts.insert(
        path.as_os_str().to_os_string(),
        Remembered {
            stamp,
            verdict: Arc::new(verdict.clone()),
            checked_ns,
            pending,
        },
    );
}

/// A refusal of `path` of kind `kind`; `why` follows the file's name.
fn refused(path: &Path, kind: &str, why: String) -> Verdict {
    Verdict::Refused(Refusal {
        path: path.to_path_buf(),
        kind: kind.into(),
        message: format!("{}: {why}", path.display()),
        mismatches: Vec::new(),
    })
}
