//! Process isolation: running a plugin in a child process, the *runner*
//! (`calc-plugin-runner`), so that a plugin that crashes, aborts, exits or hangs costs only the
//! call in progress (see `docs/ISOLATION.md`).
//!
//! - `protocol`: the length-framed messages over the runner's socket.
//! - [`runner`]: the runner's side (the `calc-plugin-runner` binary is a thin `main` on it).
//! - `client`: the host's side of one runner: calls, timeouts, restarts, health, breaker.
//! - `proxy`: the `extern "C"` `execute`/`execute_batch` through which the rest of the host
//!   calls an isolated plugin exactly as an in-process one (so `OpHandle`, fallback, rollout,
//!   expressions, the C API and `calc map` need no change, and in-process calls no branch).
//! - `sys`: the two system calls `std` has no safe form of.
//!
//! The same plugin file works in both modes. An isolated plugin is a normal
//! [`LoadedPlugin`] whose operations' function pointers are the
//! proxies and whose per-operation instance pointers point at the proxy state.

pub(crate) mod client;
pub use calc_runtime::process::memory_limit;
pub(crate) mod protocol;
pub(crate) mod proxy;
/// The runner's side (the `calc-plugin-runner` binary's `main`); not an API.
#[doc(hidden)]
pub mod runner;
use calc_runtime::process::sys;

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use client::{RunnerClient, RunnerOptions};

use crate::error::LoadError;
use crate::info::PluginInfo;
use crate::loader::{self, LoadedPlugin};
use client::{Connection, Death, StartError};

/// File name of the runner executable.
pub const RUNNER_NAME: &str = "calc-plugin-runner";

/// Environment variable naming the runner executable (checked after the settings).
pub const RUNNER_ENV: &str = "CALC_PLUGIN_RUNNER";

pub use crate::config::{DEFAULT_BREAKER_THRESHOLD, DEFAULT_START_TIMEOUT, DEFAULT_TIMEOUT};

/// How long the host waits for a reply, and a runner for its next request, by polling before it
/// blocks (see `sys::spin_until_readable`): a blocked process is slow to wake on an idle
/// machine, so back-to-back calls stay fast; a process idle for longer than this sleeps.
pub(crate) const SPIN: Duration = Duration::from_micros(50);

pub use crate::limit::Health;

impl Health {
    /// The figures as JSON (durations in microseconds), for `calc plugins list --json`.
    pub fn to_json(&self) -> serde_json::Value {
        let us = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e6);
        serde_json::json!({
            "isolated": self.isolated,
            "calls": self.calls,
            "failures": self.failures,
            "crashes": self.crashes,
            "timeouts": self.timeouts,
            "restarts": self.restarts,
            "mean_latency_us": us(self.mean_latency),
            "max_latency_us": us(self.max_latency),
            "disabled": self.disabled,
        })
    }
}

impl std::fmt::Display for Health {
    /// One line: `12 calls, 1 failed, 1 crash, 0 timeouts, 1 restart, latency mean 41 us, max 90 us`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |n: u64| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} call{}, {} failed",
            self.calls,
            s(self.calls),
            self.failures
        )?;
        if self.isolated {
            write!(
                f,
                ", {} crash{}, {} timeout{}, {} restart{}",
                self.crashes,
                if self.crashes == 1 { "" } else { "es" },
                self.timeouts,
                s(self.timeouts),
                self.restarts,
                s(self.restarts)
            )?;
        } else if self.mean_latency.is_some() {
            // An in-process plugin with a per-call limit (cooperative deadline).
            write!(f, ", {} timeout{}", self.timeouts, s(self.timeouts))?;
        }
        if let (Some(mean), Some(max)) = (self.mean_latency, self.max_latency) {
            write!(
                f,
                ", latency mean {:.0} us, max {:.0} us",
                mean.as_secs_f64() * 1e6,
                max.as_secs_f64() * 1e6
            )?;
        }
        Ok(())
    }
}

/// Where the runner executable is looked for, in order: `configured` (the settings'
/// `[isolation] runner`), `$CALC_PLUGIN_RUNNER`, next to the current executable and in
/// `../libexec/` from it, next to the file this code is in (`libcalc_host.so`, for a C host)
/// and in `../libexec/` from it.
pub fn runner_candidates(configured: Option<&Path>) -> Vec<PathBuf> {
    if let Some(path) = configured {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    if let Some(env) = std::env::var_os(RUNNER_ENV).filter(|v| !v.is_empty()) {
        return vec![PathBuf::from(env)];
    }
    let name = format!("{RUNNER_NAME}{}", std::env::consts::EXE_SUFFIX);
    let mut near = |file: Option<PathBuf>| {
        if let Some(dir) = file.as_deref().and_then(Path::parent) {
            for candidate in [dir.join(&name), dir.join("../libexec").join(&name)] {
                if !out.contains(&candidate) {
                    out.push(candidate);
                }
            }
        }
    };
    near(std::env::current_exe().ok());
    near(sys::this_object_file());
    out
}

/// The runner executable (see [`runner_candidates`]), or an error naming the plugin file and
/// every place looked at.
pub fn find_runner(configured: Option<&Path>, plugin: &Path) -> Result<PathBuf, LoadError> {
    let candidates = runner_candidates(configured);
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| LoadError::Isolation {
            path: plugin.to_path_buf(),
            kind: "isolation",
            reason: format!(
                "cannot isolate the plugin: no {RUNNER_NAME} at {} (set [isolation] runner or \
                 {RUNNER_ENV})",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// A plugin opened for the manager: in this process (validated, `init` not run yet), or in a
/// runner that has validated it and waits for `Init`.
pub(crate) enum Opened {
    /// Loaded in this process.
    Native(loader::OpenedPlugin),
    /// Loaded in a runner.
    Isolated(Pending),
}

impl Opened {
    /// The validated metadata.
    pub(crate) fn info(&self) -> &PluginInfo {
        match self {
            Opened::Native(o) => o.info(),
            Opened::Isolated(p) => &p.info,
        }
    }
}

/// A runner that loaded and validated a plugin and waits for `Init`.
pub(crate) struct Pending {
    conn: Connection,
    info: PluginInfo,
    options: RunnerOptions,
    started: Instant,
}

pub(crate) use calc_runtime::error::static_kind;

/// The load error for a runner that failed to start the plugin at `path`.
fn start_error(
    path: &Path,
    options: &RunnerOptions,
    plugin: Option<&str>,
    e: StartError,
) -> LoadError {
    let isolation = |reason: String| LoadError::Isolation {
        path: path.to_path_buf(),
        kind: "isolation",
        reason,
    };
    match e {
        StartError::Spawn(e) => isolation(format!(
            "cannot start the plugin runner {}: {e}",
            options.runner.display()
        )),
        StartError::Refused { kind, message } => {
            // The runner's message names the file first, as every load error does.
            let prefix = format!("{}: ", path.display());
            LoadError::Isolation {
                path: path.to_path_buf(),
                kind: static_kind(&kind),
                reason: message
                    .strip_prefix(&prefix)
                    .map_or_else(|| message.clone(), str::to_string),
            }
        }
        StartError::InitFailed { status, message } => LoadError::InitFailed {
            path: path.to_path_buf(),
            plugin: plugin.unwrap_or_default().to_string(),
            status,
            message,
        },
        StartError::Died(Death::TimedOut(_)) => isolation(format!(
            "plugin process did not {} within {}; runner killed",
            if plugin.is_some() {
                "finish init"
            } else {
                "load the plugin"
            },
            client::millis(options.start_timeout)
        )),
        StartError::Died(death) => isolation(death.describe(if plugin.is_some() {
            "during init"
        } else {
            "while loading the plugin"
        })),
    }
}

/// Starts a runner on the plugin at `path` and waits until it has loaded and validated it.
/// `options.call_timeout` and `options.breaker_threshold` may still change before
/// [`Pending::initialise`] (they depend on the plugin's name).
pub(crate) fn open(path: &Path, options: RunnerOptions) -> Result<Pending, LoadError> {
    let path = loader::resolve(path)?;
    let started = Instant::now();
    let deadline = started + options.start_timeout;
    match Connection::start(&path, &options, deadline) {
        Ok((conn, info)) => Ok(Pending {
            conn,
            info,
            options,
            started,
        }),
        Err(e) => Err(start_error(&path, &options, None, e)),
    }
}

/// The backing of an isolated `LoadedPlugin`: its runner client and the proxy state each
/// operation's instance pointer points at.
pub(crate) struct Isolated {
    client: Arc<RunnerClient>,
    /// Never resized after creation, so the elements stay where the instance pointers point
    /// however this struct moves (moving a `Vec` does not move its buffer).
    ops: Vec<proxy::ProxyOp>,
}

impl Isolated {
    /// The runner client.
    pub(crate) fn client(&self) -> &Arc<RunnerClient> {
        &self.client
    }
}

impl loader::Remote for Isolated {
    fn save_state(&self) -> Result<Option<Vec<u8>>, (calc_sdk::Status, String)> {
        self.client.save_state().map_err(|f| (f.status, f.message))
    }

    fn call_bytes(
        &self,
        interface: u32,
        slot: u32,
        input: &[u8],
    ) -> Result<Vec<u8>, (calc_sdk::Status, String)> {
        self.client
            .call_bytes(interface, slot, input)
            .map_err(|f| (f.status, f.message))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The runner client of `plugin` when it runs in a runner process.
pub(crate) fn runner_of(plugin: &LoadedPlugin) -> Option<&Arc<RunnerClient>> {
    plugin
        .remote()?
        .as_any()
        .downcast_ref::<Isolated>()
        .map(Isolated::client)
}

impl Pending {
    /// The validated metadata.
    pub(crate) fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Sets the per-call limit, breaker threshold, CPU and memory limits (settings for the
    /// plugin's name); the CPU and memory limits apply to the running runner at once.
    pub(crate) fn configure(
        &mut self,
        call_timeout: Option<Duration>,
        breaker_threshold: u32,
        cpu_limit: Option<Duration>,
        memory_limit_mb: Option<u64>,
    ) -> Result<(), LoadError> {
        self.options.call_timeout = call_timeout;
        self.options.breaker_threshold = breaker_threshold;
        self.options.cpu_limit = cpu_limit;
        self.options.memory_limit_mb = memory_limit_mb;
        let path = &self.info.path;
        let failed = |what: &str, e: std::io::Error| LoadError::Isolation {
            path: path.clone(),
            kind: "isolation",
            reason: format!("cannot limit the runner's {what}: {e}"),
        };
        if let Some(mb) = memory_limit_mb {
            self.conn
                .limit_memory(mb)
                .map_err(|e| failed("memory", e))?;
        }
        if let Some(limit) = cpu_limit {
            self.conn
                .limit_cpu(limit)
                .map_err(|e| failed("CPU time", e))?;
        }
        Ok(())
    }

    /// Runs `init` in the runner with `config` and `state`, and returns the plugin, whose
    /// operations call the runner.
    pub(crate) fn initialise(
        self,
        config: &BTreeMap<String, String>,
        state: Option<Vec<u8>>,
    ) -> Result<LoadedPlugin, LoadError> {
        let Pending {
            mut conn,
            info,
            options,
            started,
        } = self;
        let deadline = started + options.start_timeout;
        if let Err(e) = conn.init(config, state, deadline) {
            return Err(start_error(&info.path, &options, Some(&info.name), e));
        }
        tracing::debug!(plugin = %info.name, pid = conn.pid(), "isolated plugin ready");
        let n = info.operations.len();
        let client = Arc::new(RunnerClient::new(
            info.clone(),
            options,
            config.clone(),
            conn,
        ));
        let ops: Vec<proxy::ProxyOp> = (0..n)
            .map(|index| proxy::ProxyOp {
                client: Arc::clone(&client),
                index: index as u32,
            })
            .collect();
        let instances: Vec<*mut c_void> = ops
            .iter()
            .map(|op| (op as *const proxy::ProxyOp).cast_mut().cast::<c_void>())
            .collect();
        Ok(LoadedPlugin::from_runner(
            info,
            proxy::execute,
            proxy::execute_batch,
            instances,
            Box::new(Isolated { client, ops }),
        ))
    }
}

impl std::fmt::Debug for Isolated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Isolated")
            .field("client", &self.client)
            .field("operations", &self.ops.len())
            .finish()
    }
}
