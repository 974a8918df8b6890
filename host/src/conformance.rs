//! Conformance checking: exercises every operation of a plugin with edge inputs, from one thread
//! and from several at once, and reports what breaks the ABI contract or makes results
//! unreliable: crashes, hangs, `exit()`, panics, non-determinism and error messages that are
//! empty, unterminated or not UTF-8.
//!
//! A plugin that crashes or hangs must not take the checker down with it, so the exercise runs
//! in a child process, the *worker* ([`worker`], reached through the hidden
//! `calc plugins conformance-worker FILE` command). The worker writes one JSON line per event to
//! its standard output, flushed before every plugin call; the *checker* ([`check`]) reads them,
//! enforces a timeout and, when the worker dies, knows which input it was calling.
//!
//! Inputs: every combination of [`EDGE_VALUES`] for each operand count the operation accepts
//! among its minimum and minimum + 1 (up to 3 operands; larger counts use a few patterns). Each
//! input is called twice and the results compared; then the whole input list runs on
//! [`THREADS`] threads at once and every result is compared with the single-threaded one.
//!
//! Configuration: the plugin is started with the values the host would give it
//! (`[plugins.NAME.config]`, see `docs/CONFIG.md`): [`check_with_config`] writes them as JSON to
//! the worker's standard input (`conformance-worker --config-stdin`), so a plugin whose `init`
//! refuses the configured values fails the check with a `load` finding, as it would fail to
//! load.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use calc_sdk::abi;
use calc_sdk::Status;
use serde::{Deserialize, Serialize};

use crate::loader::{self, OpHandle, RawOutcome};

/// The operand values every operation is exercised with.
pub const EDGE_VALUES: [f64; 12] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    -2.5,
    1e308,
    -1e308,
    5e-324,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
];

/// Threads that call each operation at once in the multi-thread pass.
pub const THREADS: usize = 4;

/// Findings of one kind on one operation that are reported individually; the rest are counted.
pub const MAX_FINDINGS_PER_KIND: u64 = 5;

/// Operand counts up to which every combination of [`EDGE_VALUES`] is tried.
const FULL_PRODUCT_MAX_ARGS: usize = 3;

/// Bytes of the worker's standard error kept for the report when it dies.
const STDERR_TAIL: usize = 2000;

/// Exit status of the worker when the plugin does not load.
const WORKER_LOAD_FAILED: u8 = 3;
/// Exit status of the worker when its standard output is gone (the checker stopped reading).
const WORKER_OUTPUT_FAILED: u8 = 4;

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The call returned `CALC_STATUS_PANIC`.
    Panic,
    /// A failed call left an empty message.
    EmptyMessage,
    /// A failed call left a message that is not UTF-8.
    NonUtf8Message,
    /// A failed call left no NUL-terminated message in the error buffer (or wrote none at all).
    UnterminatedMessage,
    /// Two calls with the same input gave different results.
    Nondeterministic,
    /// A call made while other threads called the operation gave another result than the
    /// same call made alone.
    ThreadMismatch,
    /// The process died of a signal (fatal).
    Crash,
    /// The worker made no progress within the timeout and was killed (fatal).
    Hang,
    /// The process exited before finishing, e.g. the plugin called `exit()` (fatal).
    Exit,
    /// The plugin could not be loaded, or the worker could not be started (fatal).
    Load,
}

impl FindingKind {
    /// The kind's name as in the JSON output, e.g. `"empty_message"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Panic => "panic",
            FindingKind::EmptyMessage => "empty_message",
            FindingKind::NonUtf8Message => "non_utf8_message",
            FindingKind::UnterminatedMessage => "unterminated_message",
            FindingKind::Nondeterministic => "nondeterministic",
            FindingKind::ThreadMismatch => "thread_mismatch",
            FindingKind::Crash => "crash",
            FindingKind::Hang => "hang",
            FindingKind::Exit => "exit",
            FindingKind::Load => "load",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What went wrong.
    pub kind: FindingKind,
    /// The operation being called; `None` when no operation was (load failures, a crash in
    /// `init` or `shutdown`).
    pub op: Option<String>,
    /// The operands, formatted by [`format_arg`] (`"NaN"`, `"inf"`, `"-inf"`, `"1e308"`, ...);
    /// empty for the multi-thread pass, which runs every input.
    pub args: Vec<String>,
    /// Human-readable details: the message, the differing results, the signal.
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(op) = &self.op {
            write!(f, "{op}({}): ", self.args.join(", "))?;
        }
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// The result of exercising one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpReport {
    /// The operation's name.
    pub name: String,
    /// Inputs started in the single-threaded pass.
    pub inputs: u64,
    /// Plugin calls made, both passes (0 when the operation did not complete).
    pub calls: u64,
    /// Whether both passes ran to the end.
    pub completed: bool,
    /// What was found, at most [`MAX_FINDINGS_PER_KIND`] per kind.
    pub findings: Vec<Finding>,
    /// Findings not listed in `findings`, per kind.
    pub omitted: BTreeMap<FindingKind, u64>,
}

/// The result of a conformance check of one plugin file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConformanceReport {
    /// The file checked.
    pub path: PathBuf,
    /// The plugin's name, once it loaded.
    pub plugin: Option<String>,
    /// Every operation, in declaration order.
    pub operations: Vec<OpReport>,
    /// What ended the check early: `crash`, `hang`, `exit` or `load`.
    pub fatal: Option<Finding>,
    /// The end of the worker's standard error, kept when a fatal problem ended it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stderr: String,
}

impl ConformanceReport {
    /// Whether the plugin conforms: no finding and no fatal problem.
    pub fn ok(&self) -> bool {
        self.fatal.is_none()
            && self
                .operations
                .iter()
                .all(|op| op.findings.is_empty() && op.omitted.is_empty())
    }

    /// Every finding, fatal included, counting the omitted ones.
    pub fn finding_count(&self) -> u64 {
        let per_op: u64 = self
            .operations
            .iter()
            .map(|op| op.findings.len() as u64 + op.omitted.values().sum::<u64>())
            .sum();
        per_op + u64::from(self.fatal.is_some())
    }

    fn new(path: &Path) -> ConformanceReport {
        ConformanceReport {
            path: path.to_path_buf(),
            plugin: None,
            operations: Vec::new(),
            fatal: None,
            stderr: String::new(),
        }
    }

    fn op_mut(&mut self, name: &str) -> &mut OpReport {
        if let Some(i) = self.operations.iter().position(|o| o.name == name) {
            return &mut self.operations[i];
        }
        self.operations.push(OpReport {
            name: name.to_string(),
            inputs: 0,
            calls: 0,
            completed: false,
            findings: Vec::new(),
            omitted: BTreeMap::new(),
        });
        self.operations.last_mut().expect("just pushed")
    }
}

impl fmt::Display for ConformanceReport {
    /// A multi-line report: a summary line, then one line per finding
    /// (`  op(args): kind: detail`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match &self.plugin {
            Some(name) => format!("{name} ({})", self.path.display()),
            None => self.path.display().to_string(),
        };
        if self.ok() {
            let calls: u64 = self.operations.iter().map(|o| o.calls).sum();
            return writeln!(
                f,
                "conformance of {who}: ok ({} operations, {calls} calls)",
                self.operations.len()
            );
        }
        let n = self.finding_count();
        let s = if n == 1 { "" } else { "s" };
        writeln!(f, "conformance of {who}: FAILED ({n} finding{s})")?;
        for op in &self.operations {
            for finding in &op.findings {
                writeln!(f, "  {finding}")?;
            }
            for (kind, count) in &op.omitted {
                writeln!(f, "  {}: {count} more {kind} not shown", op.name)?;
            }
        }
        if let Some(fatal) = &self.fatal {
            writeln!(f, "  {fatal}")?;
            let skipped: Vec<&str> = self
                .operations
                .iter()
                .filter(|o| !o.completed && o.inputs == 0)
                .map(|o| o.name.as_str())
                .collect();
            if !skipped.is_empty() {
                writeln!(f, "  not exercised: {}", skipped.join(", "))?;
            }
            if !self.stderr.trim().is_empty() {
                writeln!(f, "  stderr:")?;
                for line in self.stderr.trim_end().lines() {
                    writeln!(f, "    {line}")?;
                }
            }
        }
        Ok(())
    }
}

/// Formats an operand for reports and JSON: `"NaN"`, `"inf"`, `"-inf"`, `"-0"`, plain decimals
/// for ordinary magnitudes and exponent notation (`"1e308"`, `"5e-324"`) for extreme ones.
pub fn format_arg(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else if x != 0.0 && !(1e-6..1e16).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// One line of the worker's output.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event {
    /// The plugin loaded; its operations follow in this order.
    Plugin {
        name: String,
        operations: Vec<String>,
    },
    /// The plugin did not load.
    Load { detail: String },
    /// About to call `op` with `args` (twice).
    Call { op: String, args: Vec<String> },
    /// About to run the multi-thread pass of `op`.
    Threads { op: String, threads: usize },
    /// A problem.
    Finding {
        op: String,
        args: Vec<String>,
        kind: FindingKind,
        detail: String,
    },
    /// `op` is done.
    Done {
        op: String,
        calls: u64,
        omitted: BTreeMap<FindingKind, u64>,
    },
    /// Every operation is done (the plugin is shut down).
    Finished,
}

/// Writes events as flushed JSON lines to standard output.
struct Emitter {
    out: std::io::StdoutLock<'static>,
}

impl Emitter {
    fn emit(&mut self, event: &Event) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
        self.out.flush()
    }
}

/// Counts findings per kind for one operation and emits the first few of each.
struct Tally {
    op: String,
    counts: BTreeMap<FindingKind, u64>,
}

impl Tally {
    fn report(
        &mut self,
        out: &mut Emitter,
        kind: FindingKind,
        args: &[f64],
        detail: impl FnOnce() -> String,
    ) -> std::io::Result<()> {
        let count = self.counts.entry(kind).or_insert(0);
        *count += 1;
        if *count > MAX_FINDINGS_PER_KIND {
            return Ok(());
        }
        out.emit(&Event::Finding {
            op: self.op.clone(),
            args: args.iter().copied().map(format_arg).collect(),
            kind,
            detail: detail(),
        })
    }

    fn omitted(&self) -> BTreeMap<FindingKind, u64> {
        self.counts
            .iter()
            .filter(|(_, &n)| n > MAX_FINDINGS_PER_KIND)
            .map(|(&k, &n)| (k, n - MAX_FINDINGS_PER_KIND))
            .collect()
    }
}

/// The inputs for an operation of arity `min..=max` (`max` `None`: variadic).
pub fn inputs(min: u32, max: Option<u32>) -> Vec<Vec<f64>> {
    let min = min as usize;
    let mut counts = vec![min];
    if max.is_none_or(|m| m as usize > min) {
        counts.push(min + 1);
    }
    let mut inputs = Vec::new();
    for count in counts {
        if count <= FULL_PRODUCT_MAX_ARGS {
            let mut product: Vec<Vec<f64>> = vec![Vec::new()];
            for _ in 0..count {
                product = product
                    .into_iter()
                    .flat_map(|prefix| {
                        EDGE_VALUES.iter().map(move |&v| {
                            let mut next = prefix.clone();
                            next.push(v);
                            next
                        })
                    })
                    .collect();
            }
            inputs.extend(product);
        } else {
            // All equal, then alternating neighbours of the value list.
            for (i, &a) in EDGE_VALUES.iter().enumerate() {
                inputs.push(vec![a; count]);
                let b = EDGE_VALUES[(i + 1) % EDGE_VALUES.len()];
                inputs.push((0..count).map(|j| if j % 2 == 0 { a } else { b }).collect());
            }
        }
    }
    inputs
}

/// Whether two outcomes are the same result: same status and, on success, the same value bit
/// for bit (any NaN equals any NaN). Messages are not compared.
fn same_result(a: &RawOutcome, b: &RawOutcome) -> bool {
    a.status == b.status
        && (a.status != abi::CALC_STATUS_OK
            || a.value.to_bits() == b.value.to_bits()
            || (a.value.is_nan() && b.value.is_nan()))
}

fn describe_status(status: abi::calc_status_t) -> String {
    match Status::from_code(status) {
        None => format!("status {status} (ok)"),
        Some(s) if s.code() == status => format!("status {status} ({s})"),
        Some(_) => format!("status {status} (unknown)"),
    }
}

fn describe(outcome: &RawOutcome) -> String {
    if outcome.status == abi::CALC_STATUS_OK {
        format!("ok {}", format_arg(outcome.value))
    } else {
        let message = match &outcome.message {
            Some(m) => format!(" {:?}", String::from_utf8_lossy(m)),
            None => String::new(),
        };
        format!("{}{message}", describe_status(outcome.status))
    }
}

/// The message findings of one outcome.
fn message_findings(outcome: &RawOutcome) -> Vec<(FindingKind, String)> {
    let mut found = Vec::new();
    if outcome.status == abi::CALC_STATUS_OK {
        return found;
    }
    let status = describe_status(outcome.status);
    if outcome.status == abi::CALC_STATUS_PANIC {
        let message = outcome
            .message
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        found.push((FindingKind::Panic, message.trim().to_string()));
    }
    match &outcome.message {
        None => found.push((
            FindingKind::UnterminatedMessage,
            format!(
                "{status}: no NUL-terminated message in the {}-byte error buffer",
                abi::CALC_ERROR_BUF_SIZE
            ),
        )),
        Some(m) if m.is_empty() => {
            found.push((
                FindingKind::EmptyMessage,
                format!("{status} with an empty message"),
            ));
        }
        Some(m) if std::str::from_utf8(m).is_err() => found.push((
            FindingKind::NonUtf8Message,
            format!("{status} with message \"{}\"", m.escape_ascii()),
        )),
        Some(_) => {}
    }
    found
}

/// Exercises one operation: the single-threaded pass, then the multi-thread pass.
fn exercise(op: &OpHandle, out: &mut Emitter) -> std::io::Result<()> {
    let name = op.info().name.clone();
    let (min, max) = op.info().arity();
    let inputs = inputs(min, max);
    let mut tally = Tally {
        op: name.clone(),
        counts: BTreeMap::new(),
    };
    let mut calls = 0u64;
    let mut reference = Vec::with_capacity(inputs.len());
    let mut deterministic = Vec::with_capacity(inputs.len());
    for args in &inputs {
        out.emit(&Event::Call {
            op: name.clone(),
            args: args.iter().copied().map(format_arg).collect(),
        })?;
        let first = op.call_raw(args);
        let second = op.call_raw(args);
        calls += 2;
        let same = same_result(&first, &second);
        if !same {
            tally.report(out, FindingKind::Nondeterministic, args, || {
                format!(
                    "first call: {}, second call: {}",
                    describe(&first),
                    describe(&second)
                )
            })?;
        }
        for (kind, detail) in message_findings(&first) {
            tally.report(out, kind, args, || detail)?;
        }
        reference.push(first);
        deterministic.push(same);
    }

    out.emit(&Event::Threads {
        op: name.clone(),
        threads: THREADS,
    })?;
    let n = inputs.len();
    let mut mismatches: Vec<(usize, RawOutcome)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (inputs, reference, deterministic) = (&inputs, &reference, &deterministic);
                scope.spawn(move || {
                    let mut found = Vec::new();
                    // Each thread starts at another offset, so that different inputs run at once.
                    for k in 0..n {
                        let i = (k + t * n / THREADS) % n;
                        let outcome = op.call_raw(&inputs[i]);
                        if deterministic[i] && !same_result(&outcome, &reference[i]) {
                            found.push((i, outcome));
                        }
                    }
                    found
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("conformance thread does not panic"))
            .collect()
    });
    calls += (THREADS * n) as u64;
    mismatches.sort_by_key(|(i, _)| *i);
    for (i, outcome) in mismatches {
        tally.report(out, FindingKind::ThreadMismatch, &inputs[i], || {
            format!(
                "alone: {}, with {THREADS} threads: {}",
                describe(&reference[i]),
                describe(&outcome)
            )
        })?;
    }
    out.emit(&Event::Done {
        op: name,
        calls,
        omitted: tally.omitted(),
    })
}

/// Configuration values by plugin name, then key: what [`crate::config::Settings::plugin_config`]
/// holds.
pub type PluginConfig = BTreeMap<String, BTreeMap<String, String>>;

/// The conformance worker (`calc plugins conformance-worker FILE`): loads the plugin with an
/// empty configuration, exercises every operation and writes JSON lines to standard output.
/// Returns the process exit status: 0 when done, 3 when the plugin did not load.
pub fn worker(path: &Path) -> u8 {
    worker_with_config(path, &PluginConfig::new())
}

/// As [`worker`], the plugin started with its values in `config` (none when `config` has no
/// entry for its name).
pub fn worker_with_config(path: &Path, config: &PluginConfig) -> u8 {
    let mut out = Emitter {
        out: std::io::stdout().lock(),
    };
    let plugin = match loader::load(path, |info| {
        Ok(config.get(&info.name).cloned().unwrap_or_default())
    }) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            let _ = out.emit(&Event::Load {
                detail: e.to_string(),
            });
            return WORKER_LOAD_FAILED;
        }
    };
    let info = plugin.info().clone();
    let run = |out: &mut Emitter| -> std::io::Result<()> {
        out.emit(&Event::Plugin {
            name: info.name.clone(),
            operations: info.operations.iter().map(|o| o.name.clone()).collect(),
        })?;
        for index in 0..info.operations.len() {
            let op = OpHandle::new(&plugin, index).expect("index within the operations");
            exercise(&op, out)?;
        }
        Ok(())
    };
    if run(&mut out).is_err() {
        return WORKER_OUTPUT_FAILED;
    }
    // Shut the plugin down before reporting the end, so that a crash in `shutdown` is seen.
    drop(plugin);
    match out.emit(&Event::Finished) {
        Ok(()) => 0,
        Err(_) => WORKER_OUTPUT_FAILED,
    }
}

pub use crate::signals::signal_name;

#[cfg(unix)]
fn signal_of(status: ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

#[cfg(not(unix))]
fn signal_of(_status: ExitStatus) -> Option<i32> {
    None
}

/// The event in one output line. The JSON object may be preceded by whatever the plugin
/// printed without a newline; other lines are ignored.
fn parse_line(line: &[u8]) -> Option<Event> {
    const START: &[u8] = b"{\"event\":";
    let at = line.windows(START.len()).position(|w| w == START)?;
    serde_json::from_slice(&line[at..]).ok()
}

/// Waits for `child` until `deadline` (`None`: no deadline); `None` when it is still running
/// then.
fn wait_until(child: &mut Child, deadline: Option<Instant>) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if deadline.is_none_or(|d| Instant::now() < d) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Checks the plugin at `file`, started with no configuration values: see
/// [`check_with_config`].
pub fn check(exe: &Path, file: &Path, timeout: Duration) -> ConformanceReport {
    check_with_config(exe, file, timeout, &PluginConfig::new())
}

/// Checks the plugin at `file` by running `exe plugins conformance-worker --config-stdin FILE`
/// (`exe` is the `calc` executable) and reading its report. The worker starts the plugin with
/// its values in `config` (by plugin name, as the host would), which it reads from its standard
/// input.
///
/// `timeout` bounds the time the worker may go without progress (between two inputs, or for
/// the whole multi-thread pass of one operation): past it the worker is killed and the input it
/// was calling reported as a `hang`. A worker killed by a signal is reported as a `crash` with
/// the input it was calling, one that exits before finishing as an `exit`.
pub fn check_with_config(
    exe: &Path,
    file: &Path,
    timeout: Duration,
    config: &PluginConfig,
) -> ConformanceReport {
    let mut report = ConformanceReport::new(file);
    let spawned = Command::new(exe)
        .args(["plugins", "conformance-worker", "--config-stdin", "--"])
        .arg(file)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            report.fatal = Some(Finding {
                kind: FindingKind::Load,
                op: None,
                args: Vec::new(),
                detail: format!("cannot run the conformance worker {}: {e}", exe.display()),
            });
            return report;
        }
    };

    // The worker reads all of its input before it loads the plugin. Should it be gone already,
    // its exit is what the report shows.
    if let Some(mut stdin) = child.stdin.take() {
        let json = serde_json::to_vec(config).expect("JSON of plain data");
        let _ = stdin.write_all(&json);
    }
    let stdout = child.stdout.take().expect("stdout is piped");
    let (lines_tx, lines) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut chunk) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&chunk[..n]);
            if tail.len() > 2 * STDERR_TAIL {
                tail.drain(..tail.len() - STDERR_TAIL);
            }
        }
        tail
    });

    // The operation (and its operands) being called; `None` operands: the multi-thread pass.
    let mut current: Option<(String, Option<Vec<String>>)> = None;
    let mut finished = false;
    let mut load_error = None;
    let mut timed_out = false;
    loop {
        let line = match lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match parse_line(&line) {
            Some(Event::Plugin { name, operations }) => {
                report.plugin = Some(name);
                for op in operations {
                    report.op_mut(&op);
                }
            }
            Some(Event::Load { detail }) => load_error = Some(detail),
            Some(Event::Call { op, args }) => {
                report.op_mut(&op).inputs += 1;
                current = Some((op, Some(args)));
            }
            Some(Event::Threads { op, .. }) => current = Some((op, None)),
            Some(Event::Finding {
                op,
                args,
                kind,
                detail,
            }) => report.op_mut(&op).findings.push(Finding {
                kind,
                op: Some(op),
                args,
                detail,
            }),
            Some(Event::Done { op, calls, omitted }) => {
                let r = report.op_mut(&op);
                r.calls = calls;
                r.omitted = omitted;
                r.completed = true;
                current = None;
            }
            Some(Event::Finished) => {
                finished = true;
                current = None;
            }
            None => {}
        }
    }
    let status = if timed_out {
        None
    } else {
        // Standard output is closed; the process should be exiting.
        let deadline = Instant::now().checked_add(timeout);
        wait_until(&mut child, deadline)
    };
    let status = match status {
        Some(status) => Some(status),
        None => {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    };
    let stderr_tail = stderr_reader.join().unwrap_or_default();

    let (op, args, during) = match current {
        Some((op, Some(args))) => (Some(op), args, String::new()),
        Some((op, None)) => (
            Some(op),
            Vec::new(),
            format!(" during the {THREADS}-thread pass"),
        ),
        None => (None, Vec::new(), String::new()),
    };
    let fatal = |kind, detail| Finding {
        kind,
        op,
        args,
        detail,
    };
    report.fatal = if timed_out {
        Some(fatal(
            FindingKind::Hang,
            format!(
                "no progress for {:.1} s{during}; killed",
                timeout.as_secs_f64()
            ),
        ))
    } else if let Some(detail) = load_error {
        Some(fatal(FindingKind::Load, detail))
    } else if let Some(signal) = status.and_then(signal_of) {
        Some(fatal(
            FindingKind::Crash,
            format!("killed by {}{during}", signal_name(signal)),
        ))
    } else if !finished || status.is_some_and(|s| !s.success()) {
        let code = status
            .and_then(|s| s.code())
            .map_or_else(|| "?".to_string(), |c| c.to_string());
        Some(fatal(
            FindingKind::Exit,
            format!("the process exited with status {code} before finishing{during}"),
        ))
    } else {
        None
    };
    if matches!(
        report.fatal,
        Some(Finding {
            kind: FindingKind::Crash | FindingKind::Hang | FindingKind::Exit,
            ..
        })
    ) {
        let start = stderr_tail.len().saturating_sub(STDERR_TAIL);
        report.stderr = String::from_utf8_lossy(&stderr_tail[start..]).into_owned();
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_are_formatted_for_json() {
        let formatted: Vec<String> = EDGE_VALUES.iter().copied().map(format_arg).collect();
        assert_eq!(
            formatted,
            [
                "0", "-0", "1", "-1", "0.5", "-2.5", "1e308", "-1e308", "5e-324", "NaN", "inf",
                "-inf"
            ]
        );
    }

    #[test]
    fn inputs_cover_the_arity() {
        assert_eq!(inputs(1, Some(1)).len(), 12);
        assert_eq!(inputs(2, Some(2)).len(), 144);
        assert_eq!(inputs(1, None).len(), 12 + 144);
        assert_eq!(inputs(0, Some(0)), vec![Vec::<f64>::new()]);
        let big = inputs(3, None);
        assert_eq!(big.len(), 1728 + 24);
        assert!(big[1728..].iter().all(|i| i.len() == 4));
    }

    #[test]
    fn kinds_serialise_as_snake_case() {
        assert_eq!(
            serde_json::to_string(&FindingKind::NonUtf8Message).unwrap(),
            "\"non_utf8_message\""
        );
        let map: BTreeMap<FindingKind, u64> = [(FindingKind::EmptyMessage, 3)].into();
        assert_eq!(
            serde_json::to_string(&map).unwrap(),
            "{\"empty_message\":3}"
        );
    }

    #[test]
    fn results_compare_nan_as_equal() {
        let ok = |value| RawOutcome {
            status: 0,
            value,
            message: None,
        };
        assert!(same_result(&ok(f64::NAN), &ok(-f64::NAN)));
        assert!(!same_result(&ok(0.0), &ok(-0.0)));
        let err = |message: &[u8]| RawOutcome {
            status: 1,
            value: 0.0,
            message: Some(message.to_vec()),
        };
        assert!(same_result(&err(b"a"), &err(b"b")));
    }

    #[test]
    fn lines_may_follow_plugin_output() {
        assert!(matches!(
            parse_line(b"junk{\"event\":\"finished\"}"),
            Some(Event::Finished)
        ));
        assert!(parse_line(b"hello").is_none());
    }
}
