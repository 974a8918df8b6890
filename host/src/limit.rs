//! Per-call limits of in-process plugins: the cooperative deadline, its health figures and the
//! circuit breaker.
//!
//! Native code in the host's process cannot be stopped, so an in-process plugin with a
//! configured limit (`[plugins.NAME] timeout_ms`, `[isolation] timeout_ms`) gets it as the
//! deadline of each call ([`crate::deadline`]), which it may poll (ABI 1.3). A call that fails
//! once its limit has passed counts as a timeout; after `breaker_threshold` timeouts in a row
//! the plugin is disabled: its calls fail at once with the breaker's message (status `ERROR`, so
//! another provider serves when there is one) until [`crate::PluginManager::enable`] resets it.
//! Isolated plugins have the same figures and breaker in their runner client, where a timeout
//! also kills the runner (`docs/ISOLATION.md`). Plugins without a limit do not pay for any of
//! this.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{CallError, CallErrorDetails};
use crate::loader::OpHandle;
use calc_sdk::Status;

/// A circuit breaker: opens after `threshold` failures in a row (never when 0), stays open
/// until [`Breaker::reset`]. Shared by in-process limits and isolated plugins' runner clients.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    consecutive: AtomicU32,
    open: AtomicBool,
    /// What the last counted failure was, for the breaker's message.
    last: Mutex<String>,
}

impl Breaker {
    pub(crate) fn new(threshold: u32) -> Self {
        Breaker {
            threshold,
            consecutive: AtomicU32::new(0),
            open: AtomicBool::new(false),
            last: Mutex::new(String::new()),
        }
    }

    /// Whether it has opened (calls are to fail at once).
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// A call that did not count as a failure: the run of failures is over.
    pub(crate) fn succeeded(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
    }

    /// Counts a failure described by `what`; returns whether this one opened the breaker.
    pub(crate) fn failed(&self, what: String) -> bool {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = what;
        let n = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        self.threshold > 0 && n >= self.threshold && !self.open.swap(true, Ordering::Relaxed)
    }

    /// Closes it; returns whether it was open.
    pub(crate) fn reset(&self) -> bool {
        self.consecutive.store(0, Ordering::Relaxed);
        self.open.swap(false, Ordering::Relaxed)
    }

    /// The threshold as messages state it (at least 1).
    pub(crate) fn threshold(&self) -> u32 {
        self.threshold.max(1)
    }

    /// The description of the last counted failure.
    pub(crate) fn last(&self) -> String {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Mean and maximum latency of answered calls.
#[derive(Debug, Default)]
pub(crate) struct Latency {
    answered: AtomicU64,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Latency {
    /// Records one answered call that took `took`.
    pub(crate) fn record(&self, took: Duration) {
        let ns = took.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.answered.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// Writes the mean and maximum into `health` (left `None` before any answered call).
    pub(crate) fn fill(&self, health: &mut Health) {
        let answered = self.answered.load(Ordering::Relaxed);
        if let Some(mean) = self.sum_ns.load(Ordering::Relaxed).checked_div(answered) {
            health.mean_latency = Some(Duration::from_nanos(mean));
            health.max_latency = Some(Duration::from_nanos(self.max_ns.load(Ordering::Relaxed)));
        }
    }
}

/// The limit, figures and breaker of one in-process plugin (shared by its operations).
#[derive(Debug)]
pub(crate) struct CallLimit {
    plugin: String,
    timeout: Duration,
    timeouts: AtomicU64,
    latency: Latency,
    breaker: Breaker,
}

impl CallLimit {
    /// A limit of `timeout` per call for plugin `plugin`, disabled after `threshold` timeouts in
    /// a row (never when 0).
    pub(crate) fn new(plugin: &str, timeout: Duration, threshold: u32) -> Self {
        CallLimit {
            plugin: plugin.to_string(),
            timeout,
            timeouts: AtomicU64::new(0),
            latency: Latency::default(),
            breaker: Breaker::new(threshold),
        }
    }

    /// Calls `handle` with the deadline set, counting the outcome; fails at once while the
    /// breaker is open.
    pub(crate) fn call(&self, handle: &OpHandle, args: &[f64]) -> Result<f64, CallError> {
        if self.breaker.is_open() {
            return Err(self.refusal(handle));
        }
        let start = Instant::now();
        let result = crate::deadline::with_timeout(Some(self.timeout), || handle.call(args));
        let took = start.elapsed();
        self.latency.record(took);
        match &result {
            Err(e) if took >= self.timeout => self.timed_out(e),
            _ => self.breaker.succeeded(),
        }
        result
    }

    fn timed_out(&self, error: &CallError) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
        let what = format!(
            "{} exceeded its {} ms limit: {}",
            error.operation,
            self.timeout.as_millis(),
            error.message
        );
        if self.breaker.failed(what) {
            tracing::warn!(plugin = %self.plugin, "{}", self.message());
        }
    }

    /// The breaker's message.
    pub(crate) fn message(&self) -> String {
        format!(
            "disabled by the circuit breaker after {} timeouts in a row (last: {}) until it is \
             enabled again",
            self.breaker.threshold(),
            self.breaker.last(),
        )
    }

    #[cold]
    fn refusal(&self, handle: &OpHandle) -> CallError {
        CallError::new(CallErrorDetails {
            operation: handle.info().name.clone(),
            plugin: self.plugin.clone(),
            path: handle.plugin().path.clone(),
            status: Status::Error,
            message: self.message(),
        })
    }

    /// Closes the breaker; returns whether it was open.
    pub(crate) fn reset(&self) -> bool {
        self.breaker.reset()
    }

    /// Adds this limit's figures to `health` (calls and failures are counted by the manager).
    pub(crate) fn fill(&self, health: &mut Health) {
        health.timeouts = self.timeouts.load(Ordering::Relaxed);
        self.latency.fill(health);
        if self.breaker.is_open() {
            health.disabled = Some(self.message());
        }
    }
}

/// Health figures of one plugin (see `PluginManager::health`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Whether the plugin runs in a runner process.
    pub isolated: bool,
    /// Calls made (isolated: every call through its operations; in-process: the calls the
    /// manager's evaluation paths counted).
    pub calls: u64,
    /// Calls that failed (plugin errors, crashes, timeouts, calls refused by the breaker).
    pub failures: u64,
    /// Calls during which the runner crashed or exited.
    pub crashes: u64,
    /// Calls that timed out (isolated: the runner was killed; in process: the call failed after
    /// its cooperative deadline, see `crate::limit`).
    pub timeouts: u64,
    /// Times the runner was started again after a crash or timeout.
    pub restarts: u64,
    /// Mean time of the calls the runner answered, as the caller saw it (isolated plugins, and
    /// in-process plugins with a per-call limit).
    pub mean_latency: Option<Duration>,
    /// Longest such time.
    pub max_latency: Option<Duration>,
    /// The circuit breaker's message when it has disabled the plugin.
    pub disabled: Option<String>,
    /// The runner's process id, when one is running (and not busy with a call).
    pub runner_pid: Option<u32>,
}
