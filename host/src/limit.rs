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

/// The limit, figures and breaker of one in-process plugin (shared by its operations).
#[derive(Debug)]
pub(crate) struct CallLimit {
    plugin: String,
    timeout: Duration,
    threshold: u32,
    timeouts: AtomicU64,
    answered: AtomicU64,
    latency_sum_ns: AtomicU64,
    latency_max_ns: AtomicU64,
    consecutive: AtomicU32,
    tripped: AtomicBool,
    last: Mutex<String>,
}

impl CallLimit {
    /// A limit of `timeout` per call for plugin `plugin`, disabled after `threshold` timeouts in
    /// a row (never when 0).
    pub(crate) fn new(plugin: &str, timeout: Duration, threshold: u32) -> Self {
        CallLimit {
            plugin: plugin.to_string(),
            timeout,
            threshold,
            timeouts: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            latency_sum_ns: AtomicU64::new(0),
            latency_max_ns: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            tripped: AtomicBool::new(false),
            last: Mutex::new(String::new()),
        }
    }

    /// Calls `handle` with the deadline set, counting the outcome; fails at once while the
    /// breaker is open.
    pub(crate) fn call(&self, handle: &OpHandle, args: &[f64]) -> Result<f64, CallError> {
        if self.tripped.load(Ordering::Relaxed) {
            return Err(self.refusal(handle));
        }
        let start = Instant::now();
        let result = crate::deadline::with_timeout(Some(self.timeout), || handle.call(args));
        let took = start.elapsed();
        let ns = took.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.answered.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.latency_max_ns.fetch_max(ns, Ordering::Relaxed);
        match &result {
            Err(e) if took >= self.timeout => self.timed_out(e),
            _ => self.consecutive.store(0, Ordering::Relaxed),
        }
        result
    }

    fn timed_out(&self, error: &CallError) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = format!(
            "{} exceeded its {} ms limit: {}",
            error.operation,
            self.timeout.as_millis(),
            error.message
        );
        let n = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if self.threshold > 0 && n >= self.threshold && !self.tripped.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(plugin = %self.plugin, "{}", self.message());
        }
    }

    /// The breaker's message.
    pub(crate) fn message(&self) -> String {
        format!(
            "disabled by the circuit breaker after {} timeouts in a row (last: {}); re-enable with \
             :enable {} in the REPL or PluginManager::enable",
            self.threshold.max(1),
            self.last.lock().unwrap_or_else(|e| e.into_inner()),
            self.plugin
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
        self.consecutive.store(0, Ordering::Relaxed);
        self.tripped.swap(false, Ordering::Relaxed)
    }

    /// Adds this limit's figures to `health` (calls and failures are counted by the manager).
    pub(crate) fn fill(&self, health: &mut crate::isolation::Health) {
        health.timeouts = self.timeouts.load(Ordering::Relaxed);
        let answered = self.answered.load(Ordering::Relaxed);
        if let Some(mean) = self
            .latency_sum_ns
            .load(Ordering::Relaxed)
            .checked_div(answered)
        {
            health.mean_latency = Some(Duration::from_nanos(mean));
            health.max_latency = Some(Duration::from_nanos(
                self.latency_max_ns.load(Ordering::Relaxed),
            ));
        }
        if self.tripped.load(Ordering::Relaxed) {
            health.disabled = Some(self.message());
        }
    }
}
