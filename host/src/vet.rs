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

use crate::cache::{Refusal, Verdict};
use crate::isolation::client::{Connection, Death};
use crate::isolation::protocol::{Reply, Request};

/// Validates plugin files in a child process (see the module docs). Dropping it stops the
/// child.
pub struct Vetter {
    runner: PathBuf,
    limit: Duration,
    child: Option<Connection>,
}

impl std::fmt::Debug for Vetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vetter")
            .field("runner", &self.runner)
            .field("limit", &self.limit)
            .field("running", &self.child.is_some())
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
        }
    }

    /// What validating the library at `path` gives, found in the vetting child: the plugin's
    /// metadata, the refusal the loader reports (as loading in process would word it), or,
    /// when the child died or hung on this file, a refusal saying so (kind `crashed`,
    /// `exited`, `timed_out`, or `vetting` when the child could not be run or talked to).
    pub fn vet(&mut self, path: &Path) -> Verdict {
        use std::os::unix::ffi::OsStrExt;
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
        match child.exchange(&request, Some(deadline)) {
            Ok(Reply::Vetted { verdict }) => match serde_json::from_str::<Verdict>(&verdict) {
                Ok(verdict) => verdict,
                Err(e) => {
                    self.stop();
                    refused(
                        path,
                        "vetting",
                        format!("malformed answer from the vetter: {e}"),
                    )
                }
            },
            Ok(other) => {
                self.stop();
                refused(path, "vetting", format!("unexpected answer {other:?}"))
            }
            Err(death) => {
                // The child is gone (reaped); the next file gets a new one.
                self.child = None;
                let (kind, what) = match death {
                    Death::Signal(_) => ("crashed", death.describe("while loading it")),
                    Death::Exited(_) => ("exited", death.describe("while loading it")),
                    Death::TimedOut(_) => (
                        "timed_out",
                        format!(
                            "did not finish loading within {} (its initialisers or plugin_entry hang)",
                            crate::isolation::client::millis(self.limit)
                        ),
                    ),
                    Death::Broken(why) => ("vetting", format!("vetting failed: {why}")),
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

/// A refusal of `path` of kind `kind`; `why` follows the file's name.
fn refused(path: &Path, kind: &str, why: String) -> Verdict {
    Verdict::Refused(Refusal {
        path: path.to_path_buf(),
        kind: kind.into(),
        message: format!("{}: {why}", path.display()),
        mismatches: Vec::new(),
    })
}

impl Verdict {
    /// The verdict of [`crate::loader::inspect`]'s result.
    pub fn of(result: Result<crate::info::PluginInfo, crate::error::LoadError>) -> Verdict {
        match result {
            Ok(info) => Verdict::Valid(info),
            Err(e) => Verdict::Refused(Refusal::from(&e)),
        }
    }

    /// The verdict as the JSON a vetting child sends.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("JSON of plain data")
    }
}
