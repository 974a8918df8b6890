//! The host side of one isolated plugin: starts its runner, sends it calls, notices when it
//! crashes, exits or hangs, restarts it, counts health figures and trips the circuit breaker.
//!
//! # Threads
//! One connection per plugin, behind a mutex: calls from several threads to one isolated
//! plugin are safe and are served one at a time (the runner is single-threaded). Calls to
//! different isolated plugins run in parallel.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use calc_sdk::abi;
use calc_sdk::Status;

use super::protocol::{self, Reply, Request};
use super::Health;
use crate::info::PluginInfo;
use crate::limit::{Breaker, Latency};

/// How an isolated plugin is run (from the settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerOptions {
    /// The runner executable.
    pub runner: PathBuf,
    /// Hot-reload mode: the runner loads a private copy of the file made in this directory.
    pub copy_dir: Option<PathBuf>,
    /// Limit on each call (`None`: no limit).
    pub call_timeout: Option<Duration>,
    /// Limit on starting: loading, validating and `init` together.
    pub start_timeout: Duration,
    /// Consecutive crashes or timeouts that disable the plugin (0: never).
    pub breaker_threshold: u32,
    /// CPU time each runner may use in all, in whole seconds (`None`: no limit); a runner
    /// that spends it is killed (`SIGXCPU`) and restarted with a fresh allowance.
    pub cpu_limit: Option<Duration>,
    /// Memory each runner may use, in MiB (`None`: no limit; see [`super::memory_limit`]).
    pub memory_limit_mb: Option<u64>,
}

/// A failed call, as the proxy reports it to the caller.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) status: Status,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn internal(message: impl Into<String>) -> Failure {
        Failure {
            status: Status::Error,
            message: message.into(),
        }
    }
}

/// How a runner stopped serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Death {
    /// Killed by a signal (a crash, or `abort()`).
    Signal(i32),
    /// Exited (the plugin called `exit()`).
    Exited(i32),
    /// Did not answer in time; killed.
    TimedOut(Duration),
    /// Sent something that is not a valid reply, or could not be talked to; killed.
    Broken(String),
    /// Killed by its cgroup's memory limit (MiB).
    MemoryLimit(u64),
    /// Killed by a signal while an address-space limit (MiB) was in force: perhaps out of
    /// memory, perhaps not (see [`super::memory_limit`]).
    SignalUnderRlimit(i32, u64),
}

impl Death {
    /// `"crashed with SIGSEGV"`, `"exited with status 3"`, ...: what happened, for messages.
    pub(crate) fn describe(&self, during: &str) -> String {
        match self {
            Death::Signal(libc::SIGXCPU) => {
                format!("plugin process exceeded its CPU time limit (SIGXCPU) {during}")
            }
            Death::Signal(s) => format!(
                "plugin process crashed with {} {during}",
                crate::signals::signal_name(*s)
            ),
            Death::Exited(code) => format!("plugin process exited with status {code} {during}"),
            Death::TimedOut(t) => format!("timed out after {} {during}", millis(*t)),
            Death::Broken(why) => format!("plugin process failed {during}: {why}"),
            Death::MemoryLimit(mb) => {
                format!("memory limit exceeded ({mb} MB): plugin process killed {during}")
            }
            Death::SignalUnderRlimit(s, mb) => format!(
                "plugin process crashed with {} {during} (perhaps out of memory: its address \
                 space is limited to {mb} MB)",
                crate::signals::signal_name(*s)
            ),
        }
    }

    fn is_timeout(&self) -> bool {
        matches!(self, Death::TimedOut(_))
    }
}

/// `"200 ms"`, or `"1.5 s"` for longer durations.
pub(crate) fn millis(d: Duration) -> String {
    if d >= Duration::from_secs(10) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Why a runner of protocol `version` is refused.
fn other_protocol(version: u32) -> String {
    format!(
        "the runner speaks protocol {version}, this host {}",
        protocol::PROTOCOL_VERSION
    )
}

/// Why starting a runner failed.
#[derive(Debug)]
pub(crate) enum StartError {
    /// The runner executable could not be started.
    Spawn(std::io::Error),
    /// The runner refused the plugin (validation failed): `LoadError::kind()` and its message.
    Refused { kind: String, message: String },
    /// `init` returned an error.
    InitFailed { status: Status, message: String },
    /// The runner died or hung while starting.
    Died(Death),
}

/// A running runner: the child process and the host's end of its socket.
pub(crate) struct Connection {
    child: Child,
    socket: UnixStream,
    /// Reused for every request and reply.
    buf: Vec<u8>,
    /// The read timeout last set on `socket`, so that an unchanged one is not set again.
    read_timeout: Option<Duration>,
    /// Whether the child has been waited for (so that dropping does not stop it again).
    reaped: bool,
    /// Readable when the runner exits (a pidfd), where the kernel offers one: a plugin's forked
    /// child may hold the socket open after the runner died.
    process: Option<std::os::fd::OwnedFd>,
    /// Where the runner makes its private copy of the plugin (hot-reload mode): a runner that
    /// dies cannot delete it, so the host does.
    copy_dir: Option<PathBuf>,
    /// The runner's memory limit, when it has one (its cgroup is removed with it).
    memory: Option<super::memory_limit::MemoryLimit>,
    /// Read no byte past the reply being read: set while several requests are in flight
    /// (pipelined vetting), whose replies follow each other on the socket.
    exact_reads: bool,
}

impl Drop for Connection {
    /// Stops the runner (see [`Connection::shutdown`]) unless it is gone already: no runner
    /// outlives its connection, and none is left a zombie.
    fn drop(&mut self) {
        if !self.reaped {
            self.shutdown();
        }
    }
}

impl Connection {
    /// Starts `runner` with `args` in a process group of its own, talking over a socket on
    /// its standard input; its standard output goes to `stdout`.
    pub(crate) fn spawn(
        runner: &Path,
        args: &[&std::ffi::OsStr],
        stdout: Stdio,
        copy_dir: Option<PathBuf>,
    ) -> std::io::Result<Connection> {
        let (host_end, child_end) = UnixStream::pair()?;
        let child = {
            let mut command = Command::new(runner);
            command.args(args);
            // Its own process group: a Ctrl-C at the terminal interrupts the host, which then
            // stops its runners, rather than killing every runner mid-call; and the whole group
            // is killed when the runner stops.
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
            command
                .stdin(Stdio::from(std::os::fd::OwnedFd::from(child_end)))
                .stdout(stdout)
                .stderr(Stdio::inherit());
            command.spawn()?
            // `command`, and with it the child's end of the socket, is dropped here: only the
            // runner holds it, so its death is an end of file on ours.
        };
        tracing::debug!(?args, pid = child.id(), "runner started");
        let process = super::sys::pidfd(child.id());
        Ok(Connection {
            child,
            socket: host_end,
            buf: Vec::with_capacity(256),
            read_timeout: None,
            reaped: false,
            process,
            copy_dir,
            memory: None,
            exact_reads: false,
        })
    }

    /// Starts `options.runner` on the plugin at `path` and waits for its `Hello`.
    pub(crate) fn start(
        path: &Path,
        options: &RunnerOptions,
        deadline: Instant,
    ) -> Result<(Connection, PluginInfo), StartError> {
        let mut args = vec![path.as_os_str()];
        if let Some(dir) = &options.copy_dir {
            args.extend([std::ffi::OsStr::new("--copy-dir"), dir.as_os_str()]);
        }
        // A plugin's standard output goes to the host's standard error: what it prints must
        // not mix with the host's results (a pipeline reading `calc map`, say).
        let stdout = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_or_else(|_| Stdio::null(), Stdio::from);
        let mut conn = Connection::spawn(&options.runner, &args, stdout, options.copy_dir.clone())
            .map_err(StartError::Spawn)?;
        if let Some(limit) = options.cpu_limit {
            conn.limit_cpu(limit).map_err(StartError::Spawn)?;
        }
        if let Some(mb) = options.memory_limit_mb {
            conn.limit_memory(mb).map_err(StartError::Spawn)?;
        }
        match conn.receive(Some(deadline)) {
            Ok(Reply::Hello {
                protocol: protocol::PROTOCOL_VERSION,
                info: Some(info),
            }) => Ok((conn, info)),
            Ok(Reply::Hello { protocol, .. }) if protocol != protocol::PROTOCOL_VERSION => Err(
                StartError::Died(conn.kill(Death::Broken(other_protocol(protocol)))),
            ),
            Ok(Reply::LoadFailed { kind, message }) => {
                conn.reap();
                Err(StartError::Refused { kind, message })
            }
            Ok(other) => Err(StartError::Died(
                conn.kill(Death::Broken(format!("unexpected {other:?}"))),
            )),
            Err(death) => Err(StartError::Died(death)),
        }
    }

    /// Limits the CPU time the runner may use in all to `limit`, rounded up to whole seconds.
    pub(crate) fn limit_cpu(&self, limit: Duration) -> std::io::Result<()> {
        let seconds = limit.as_secs() + u64::from(limit.subsec_nanos() > 0);
        super::sys::limit_cpu(self.child.id(), seconds.max(1))
    }

    /// Limits the memory the runner (and what it forks) may use to `mb` MiB (see
    /// [`super::memory_limit`]).
    pub(crate) fn limit_memory(&mut self, mb: u64) -> std::io::Result<()> {
        self.memory = Some(super::memory_limit::MemoryLimit::apply(
            self.child.id(),
            mb,
        )?);
        Ok(())
    }

    /// Waits for a `Hello` in this host's protocol; anything else kills the runner.
    pub(crate) fn hello(&mut self, deadline: Instant) -> Result<(), Death> {
        match self.receive(Some(deadline))? {
            Reply::Hello {
                protocol: protocol::PROTOCOL_VERSION,
                ..
            } => Ok(()),
            Reply::Hello { protocol, .. } => {
                Err(self.kill(Death::Broken(other_protocol(protocol))))
            }
            other => Err(self.kill(Death::Broken(format!("unexpected {other:?}")))),
        }
    }

    /// Sends `request` and reads the reply. On any failure the runner is gone (reaped, or
    /// killed and reaped) and how is returned.
    pub(crate) fn exchange(
        &mut self,
        request: &Request,
        deadline: Option<Instant>,
    ) -> Result<Reply, Death> {
        self.buf.clear();
        request.encode(&mut self.buf);
        self.transact(deadline)
    }

    /// Sends `request` without waiting for its reply, for a runner that answers requests in
    /// order (the vetting child): several may be in flight, their replies read one by one
    /// with [`Self::receive`]. On failure the runner is gone (reaped) and how is returned.
    /// A failure leaves the connection as it is: the replies the runner sent before it died
    /// can still be read, and reading past them reports how it died.
    pub(crate) fn send_only(&mut self, request: &Request) -> std::io::Result<()> {
        self.exact_reads = true;
        self.buf.clear();
        request.encode(&mut self.buf);
        super::sys::send_all(&self.socket, &self.buf)
    }

    /// Sends `Init` and waits for the plugin to be ready.
    pub(crate) fn init(
        &mut self,
        config: &BTreeMap<String, String>,
        state: Option<Vec<u8>>,
        deadline: Instant,
    ) -> Result<(), StartError> {
        let request = Request::Init {
            config: config.clone(),
            state,
        };
        self.buf.clear();
        request.encode(&mut self.buf);
        match self.transact(Some(deadline)) {
            Ok(Reply::Ready) => Ok(()),
            Ok(Reply::InitFailed { status, message }) => {
                self.shutdown();
                Err(StartError::InitFailed {
                    status: Status::from_code(status).unwrap_or(Status::Error),
                    message,
                })
            }
            Ok(other) => Err(StartError::Died(
                self.kill(Death::Broken(format!("unexpected {other:?}"))),
            )),
            Err(death) => Err(StartError::Died(death)),
        }
    }

    /// The runner's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the request in `buf` and reads the reply. On any failure the runner is gone
    /// (reaped, or killed and reaped) and the reason is returned.
    fn transact(&mut self, deadline: Option<Instant>) -> Result<Reply, Death> {
        self.send()?;
        self.receive(deadline)
    }

    /// Sends the request in `buf`. A failure means the runner was dead before the request
    /// (`EPIPE` or `ECONNRESET`): it is reaped and how it died returned.
    fn send(&mut self) -> Result<(), Death> {
        super::sys::send_all(&self.socket, &self.buf)
            .map_err(|e| self.reap_or(Death::Broken(format!("cannot send: {e}"))))
    }

    /// Reads one reply frame into `buf` and decodes it.
    pub(crate) fn receive(&mut self, deadline: Option<Instant>) -> Result<Reply, Death> {
        self.buf.clear();
        let mut filled = 0usize;
        let mut need = 4usize;
        let mut have_len = false;
        loop {
            while filled < need {
                // Room up to the end of the frame (before its length is known, a little more:
                // a small reply comes in one read). The buffer only grows, so each byte of it
                // is zeroed once however many reads a large frame takes.
                let want = if self.exact_reads {
                    need
                } else {
                    need.max(filled + 64)
                };
                if self.buf.len() < want {
                    self.buf.resize(want, 0);
                }
                filled += self.read_some(deadline, filled, want)?;
            }
            if have_len {
                break;
            }
            let prefix = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
            match protocol::frame_len(prefix) {
                Ok(n) => {
                    need = 4 + n;
                    have_len = true;
                }
                Err(e) => return Err(self.kill(Death::Broken(e.to_string()))),
            }
        }
        self.buf.truncate(filled);
        if filled != need {
            return Err(self.kill(Death::Broken("more data than one reply".into())));
        }
        let reply = Reply::decode(&self.buf[4..]).map_err(|e| {
            // A runner of another version says so in its `Hello`, even where the rest of it
            // does not decode.
            let why = match protocol::hello_protocol(&self.buf[4..]) {
                Some(v) if v != protocol::PROTOCOL_VERSION => other_protocol(v),
                _ => e.to_string(),
            };
            self.kill(Death::Broken(why))
        });
        // A large batch or bytes call leaves no large buffer behind for the runner's lifetime.
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::new();
        }
        reply
    }

    /// One `read` into `buf[start..want]`: the number of bytes read, 0 when the wait ended
    /// early and the caller should read again.
    fn read_some(
        &mut self,
        deadline: Option<Instant>,
        start: usize,
        want: usize,
    ) -> Result<usize, Death> {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Err(self.timed_out());
                }
                // Rounded up to whole milliseconds so that a timeout that barely changes is
                // not set again on every call.
                let left = d - now;
                Some(Duration::from_millis(left.as_millis() as u64 + 1))
            }
        };
        if timeout != self.read_timeout {
            if let Err(e) = self.socket.set_read_timeout(timeout) {
                return Err(self.kill(Death::Broken(format!("cannot set a timeout: {e}"))));
            }
            self.read_timeout = timeout;
        }
        if !super::sys::spin_until_readable(&self.socket, super::SPIN) {
            if let Some(process) = &self.process {
                match super::sys::wait_readable_or_exit(&self.socket, process, timeout) {
                    super::sys::Wait::Readable => {}
                    super::sys::Wait::Exited => {
                        return Err(self.reap_or(Death::Broken("closed its connection".into())))
                    }
                    super::sys::Wait::TimedOut if deadline.is_some_and(|d| Instant::now() < d) => {
                        return Ok(0); // woke a little early; wait again
                    }
                    super::sys::Wait::TimedOut => return Err(self.timed_out()),
                }
            }
        }
        let result = self.socket.read(&mut self.buf[start..want]);
        match result {
            Ok(0) => Err(self.reap_or(Death::Broken("closed its connection".into()))),
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if deadline.is_some_and(|d| Instant::now() < d) {
                    return Ok(0); // woke a little early; read again
                }
                Err(self.timed_out())
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(self.reap_or(Death::Broken(format!("cannot read: {e}")))),
        }
    }

    /// `death` with the memory limit's share in it: a signal the runner's cgroup limit sent
    /// becomes [`Death::MemoryLimit`]; a signal under an address-space limit says so.
    fn attributed(&self, death: Death) -> Death {
        use super::memory_limit::Mechanism;
        match (&self.memory, death) {
            (Some(limit), Death::Signal(_)) if limit.killed() => Death::MemoryLimit(limit.mb),
            (Some(limit), Death::Signal(s)) if limit.mechanism == Mechanism::Rlimit => {
                Death::SignalUnderRlimit(s, limit.mb)
            }
            (_, death) => death,
        }
    }

    /// Kills a runner that did not answer in time. The caller knows which limit that was.
    fn timed_out(&mut self) -> Death {
        self.kill(Death::TimedOut(Duration::ZERO))
    }

    /// After an end of file or a broken pipe: waits (briefly) for the runner to exit and
    /// reports how it did; kills it if it does not exit.
    fn reap_or(&mut self, otherwise: Death) -> Death {
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            match self.wait_if_exited() {
                Some(Ok(status)) => {
                    self.remove_copies();
                    return self.attributed(death_of(status));
                }
                None if Instant::now() < until => std::thread::sleep(Duration::from_millis(1)),
                _ => return self.kill(otherwise),
            }
        }
    }

    /// When the runner has exited: kills what is left of its process group (descendants of
    /// the plugin's), then reaps it and returns its status; `None` while it runs. Killing the
    /// group before reaping its leader keeps the group id from being reused meanwhile.
    fn wait_if_exited(&mut self) -> Option<std::io::Result<ExitStatus>> {
        if !super::sys::has_exited(self.child.id()) {
            return None;
        }
        super::sys::kill_group(self.child.id());
        let status = self.child.wait();
        self.reaped = true;
        Some(status)
    }

    /// Deletes the private copies the runner made in the copy directory (`loader::open_copy`
    /// names them `<stem>.<pid>.<generation>.<extension>`, with the runner's pid). A runner
    /// that exits normally has deleted its own already; one that crashed or was killed could
    /// not. A file that is still mapped elsewhere stays valid there (unlinking does not unmap).
    fn remove_copies(&self) {
        let Some(dir) = &self.copy_dir else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let marker = format!(".{}.", self.child.id());
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours = name
                .rsplitn(3, '.')
                .nth(2)
                .is_some_and(|stem_and_pid| format!("{stem_and_pid}.").ends_with(&marker));
            if ours && crate::files::is_library_file(&entry.path()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Waits for a runner that is exiting by itself (after `LoadFailed`).
    fn reap(&mut self) {
        let _ = self.reap_or(Death::Broken(String::new()));
    }

    /// Kills and reaps the runner; returns `why`.
    pub(crate) fn kill(&mut self, why: Death) -> Death {
        // The runner leads its own process group: the plugin's descendants die with it.
        super::sys::kill_group(self.child.id());
        let _ = self.child.kill();
        // Before the wait: until it is reaped, no other process can have its pid.
        self.remove_copies();
        let _ = self.child.wait();
        self.reaped = true;
        tracing::debug!(pid = self.child.id(), "runner killed: {why:?}");
        why
    }

    /// Asks the runner to shut the plugin down and exit; kills it if it has not exited within
    /// a second.
    pub(crate) fn shutdown(&mut self) {
        self.buf.clear();
        Request::Shutdown.encode(&mut self.buf);
        let _ = super::sys::send_all(&self.socket, &self.buf);
        let _ = self.socket.shutdown(std::net::Shutdown::Write);
        let until = Instant::now() + Duration::from_secs(1);
        loop {
            match self.wait_if_exited() {
                Some(Ok(_)) => return,
                None if Instant::now() < until => std::thread::sleep(Duration::from_millis(1)),
                _ => {
                    self.kill(Death::Broken("did not exit after shutdown".into()));
                    return;
                }
            }
        }
    }
}

/// The death an exit status describes: a runner that stopped serving by itself exited or was
/// killed by a signal, even with status 0 (a plugin that called `exit(0)`).
fn death_of(status: ExitStatus) -> Death {
    use std::os::unix::process::ExitStatusExt;
    match (status.signal(), status.code()) {
        (Some(s), _) => Death::Signal(s),
        (None, code) => Death::Exited(code.unwrap_or(0)),
    }
}

/// Health counters of one isolated plugin.
#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    failures: AtomicU64,
    crashes: AtomicU64,
    timeouts: AtomicU64,
    restarts: AtomicU64,
    /// Latency of the calls the runner answered.
    latency: Latency,
}

/// The host side of one isolated plugin (see the module docs).
pub struct RunnerClient {
    info: PluginInfo,
    options: RunnerOptions,
    config: BTreeMap<String, String>,
    conn: Mutex<Option<Connection>>,
    counters: Counters,
    /// Counts crashes and timeouts since the last call that got an answer.
    breaker: Breaker,
}

impl std::fmt::Debug for RunnerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerClient")
            .field("plugin", &self.info.name)
            .field("runner", &self.options.runner)
            .finish_non_exhaustive()
    }
}

impl RunnerClient {
    pub(crate) fn new(
        info: PluginInfo,
        options: RunnerOptions,
        config: BTreeMap<String, String>,
        conn: Connection,
    ) -> RunnerClient {
        RunnerClient {
            info,
            config,
            conn: Mutex::new(Some(conn)),
            counters: Counters::default(),
            breaker: Breaker::new(options.breaker_threshold),
            options,
        }
    }

    /// The plugin's metadata, as loaded.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The options it runs with.
    pub fn options(&self) -> &RunnerOptions {
        &self.options
    }

    fn lock(&self) -> MutexGuard<'_, Option<Connection>> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the circuit breaker has disabled the plugin.
    pub fn tripped(&self) -> bool {
        self.breaker.is_open()
    }

    /// Re-enables a plugin the circuit breaker disabled (the runner starts on the next call).
    /// Returns whether it was disabled.
    pub fn reset_breaker(&self) -> bool {
        self.breaker.reset()
    }

    /// Health figures so far.
    pub fn health(&self) -> Health {
        let c = &self.counters;
        let mut health = Health {
            isolated: true,
            calls: c.calls.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            crashes: c.crashes.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            restarts: c.restarts.load(Ordering::Relaxed),
            mean_latency: None,
            max_latency: None,
            disabled: self.tripped().then(|| self.breaker_message()),
            runner_pid: self
                .conn
                .try_lock()
                .ok()
                .and_then(|g| g.as_ref().map(|c| c.pid())),
        };
        c.latency.fill(&mut health);
        health
    }

    fn breaker_message(&self) -> String {
        format!(
            "disabled by the circuit breaker after {} crashes or timeouts in a row (last: {}) \
             until it is enabled again",
            self.breaker.threshold(),
            self.breaker.last(),
        )
    }

    /// The connection, (re)starting the runner when there is none.
    fn connect<'g>(
        &self,
        guard: &'g mut MutexGuard<'_, Option<Connection>>,
    ) -> Result<&'g mut Connection, Failure> {
        if guard.is_none() {
            let started = Instant::now();
            let deadline = started + self.options.start_timeout;
            let result = Connection::start(&self.info.path, &self.options, deadline).and_then(
                |(mut conn, info)| {
                    if info.name != self.info.name
                        || info.version != self.info.version
                        || info.operations != self.info.operations
                    {
                        conn.shutdown();
                        return Err(StartError::Refused {
                            kind: "isolation".into(),
                            message: format!(
                                "the file now holds {} {}, not the {} {} that was loaded; \
                                 reload it",
                                info.name, info.version, self.info.name, self.info.version
                            ),
                        });
                    }
                    conn.init(&self.config, None, deadline)?;
                    Ok(conn)
                },
            );
            match result {
                Ok(conn) => {
                    self.counters.restarts.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(plugin = %self.info.name, pid = conn.pid(), "runner restarted");
                    **guard = Some(conn);
                }
                Err(e) => {
                    let why = match e {
                        StartError::Spawn(e) => format!(
                            "cannot start the plugin runner {}: {e}",
                            self.options.runner.display()
                        ),
                        StartError::Refused { message, .. } => message,
                        StartError::InitFailed { status, message } => {
                            format!("init failed: {message} ({status})")
                        }
                        StartError::Died(Death::TimedOut(_)) => format!(
                            "did not start within {}",
                            millis(self.options.start_timeout)
                        ),
                        StartError::Died(death) => death.describe("while starting"),
                    };
                    let message = format!("plugin process could not be restarted: {why}");
                    self.count_death(&message);
                    return Err(self.failure_with_path(message));
                }
            }
        }
        Ok(guard.as_mut().expect("connected just above"))
    }

    /// `message` followed by the plugin's file, as every isolation failure names it.
    fn failure_with_path(&self, message: String) -> Failure {
        Failure::internal(format!("{message} ({})", self.info.path.display()))
    }

    /// Counts a crash, timeout or failed restart towards the breaker; trips it at the
    /// threshold. Returns whether it tripped now.
    fn count_death(&self, what: &str) -> bool {
        let tripped = self.breaker.failed(what.to_string());
        if tripped {
            tracing::warn!(plugin = %self.info.name, "{}", self.breaker_message());
        }
        tripped
    }

    /// Turns a runner's death during a call into the caller's error, and counts it.
    fn died(&self, death: Death) -> Failure {
        if death.is_timeout() {
            self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.crashes.fetch_add(1, Ordering::Relaxed);
        }
        let death = match death {
            Death::TimedOut(_) => {
                Death::TimedOut(self.options.call_timeout.unwrap_or(Duration::ZERO))
            }
            other => other,
        };
        let what = death.describe("during the call");
        let tripped = self.count_death(&what);
        let after = if death.is_timeout() {
            "runner killed; restarted on the next call"
        } else {
            "restarted on the next call"
        };
        let message = if tripped {
            format!(
                "{what}; {} in a row: disabled by the circuit breaker until it is enabled again",
                self.breaker.threshold(),
            )
        } else {
            format!("{what}; {after}")
        };
        tracing::warn!(plugin = %self.info.name, "{message}");
        self.failure_with_path(message)
    }

    fn fail_fast(&self) -> Failure {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        Failure::internal(self.breaker_message())
    }

    fn answered(&self, started: Instant, ok: bool) {
        self.counters.latency.record(started.elapsed());
        if !ok {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.breaker.succeeded();
    }

    /// For a call starting now: the cooperative deadline to send (microseconds left, 0 for
    /// none), the hard deadline after which the runner is killed, and the start time.
    ///
    /// The cooperative deadline is the call limit, or the calling thread's own deadline
    /// ([`crate::deadline`]) when that is earlier. The hard one is the call limit plus a grace
    /// of a tenth of it (10 ms to 250 ms), so that a plugin that polls the deadline has time to
    /// return cleanly before the runner is killed.
    fn deadlines(&self) -> (u64, Option<Instant>, Instant) {
        let started = Instant::now();
        let limit = self.options.call_timeout;
        let cooperative = match (limit, crate::deadline::remaining()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let us = cooperative.map_or(0, |t| {
            (t.as_micros().min(u128::from(u64::MAX)) as u64).max(1)
        });
        let hard = limit.map(|t| {
            let grace = (t / 10).clamp(Duration::from_millis(10), Duration::from_millis(250));
            started + t + grace
        });
        (us, hard, started)
    }

    /// Encodes a request with `encode` and sends it, (re)starting the runner when there is
    /// none. When the send finds the runner dead, it died since the last call (a crash in a
    /// thread of the plugin's own, between calls): that death is counted and reported against
    /// the plugin, not this call, and the request goes to a restarted runner.
    fn send_request<'g>(
        &self,
        guard: &'g mut MutexGuard<'_, Option<Connection>>,
        encode: impl Fn(&mut Vec<u8>),
    ) -> Result<&'g mut Connection, Failure> {
        let conn = self.connect(guard)?;
        conn.buf.clear();
        encode(&mut conn.buf);
        if let Err(death) = conn.send() {
            **guard = None;
            if self.died_between_calls(death) {
                return Err(Failure::internal(self.breaker_message()));
            }
            let conn = self.connect(guard)?;
            conn.buf.clear();
            encode(&mut conn.buf);
            if let Err(death) = conn.send() {
                **guard = None;
                return Err(self.died(death));
            }
        }
        Ok(guard.as_mut().expect("connected just above"))
    }

    /// Counts and reports a runner found dead before a request; returns whether that tripped
    /// the breaker.
    fn died_between_calls(&self, death: Death) -> bool {
        self.counters.crashes.fetch_add(1, Ordering::Relaxed);
        let what = death.describe("between calls");
        let tripped = self.count_death(&what);
        tracing::warn!(
            plugin = %self.info.name,
            "{what} (in a thread of its own); restarted ({})",
            self.info.path.display()
        );
        tripped
    }

    /// One request and its reply, for a call: counted, timed and limited as every call is.
    /// `encode` writes the request (given the call's time limit in microseconds); `answer`
    /// takes the reply the request expects apart into its status, value and message, or says
    /// what else came (which kills the runner as broken).
    fn call_with<T>(
        &self,
        encode: impl Fn(&mut Vec<u8>, u64),
        answer: impl FnOnce(Reply) -> Result<(i32, T, String), String>,
    ) -> Result<T, Failure> {
        if self.tripped() {
            return Err(self.fail_fast());
        }
        let mut guard = self.lock();
        // Started before the call's time limit runs.
        self.connect(&mut guard).inspect_err(|_| {
            self.counters.calls.fetch_add(1, Ordering::Relaxed);
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
        })?;
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let (timeout_us, deadline, started) = self.deadlines();
        let conn = self
            .send_request(&mut guard, |buf| encode(buf, timeout_us))
            .inspect_err(|_| {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
            })?;
        let death = match conn.receive(deadline).map(answer) {
            Ok(Ok((status, value, message))) => {
                self.answered(started, status == abi::CALC_STATUS_OK);
                return if status == abi::CALC_STATUS_OK {
                    Ok(value)
                } else {
                    Err(Failure {
                        status: Status::from_code(status).unwrap_or(Status::Error),
                        message,
                    })
                };
            }
            Ok(Err(unexpected)) => conn.kill(Death::Broken(unexpected)),
            Err(death) => death,
        };
        *guard = None;
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        Err(self.died(death))
    }

    /// Calls operation `op` in the runner.
    pub(crate) fn call(&self, op: u32, args: &[f64]) -> Result<f64, Failure> {
        self.call_with(
            |buf, timeout_us| protocol::encode_call(buf, op, timeout_us, args),
            |reply| match reply {
                Reply::Value {
                    status,
                    value,
                    message,
                } => Ok((status, value, message)),
                other => Err(format!("unexpected {other:?}")),
            },
        )
    }

    /// Calls operation `op` in the runner over columns; on failure, the failing row.
    pub(crate) fn call_batch(
        &self,
        op: u32,
        columns: &[&[f64]],
        out: &mut [f64],
    ) -> Result<(), (usize, Failure)> {
        let per_frame = protocol::batch_rows_per_frame(columns.len());
        in_frames(columns, out, per_frame, |columns, out| {
            self.call_batch_frame(op, columns, out)
        })
    }

    /// One `Batch` request of at most [`protocol::batch_rows_per_frame`] rows.
    fn call_batch_frame(
        &self,
        op: u32,
        columns: &[&[f64]],
        out: &mut [f64],
    ) -> Result<(), (usize, Failure)> {
        if self.tripped() {
            return Err((0, self.fail_fast()));
        }
        let mut guard = self.lock();
        // Started before the call's time limit runs.
        self.connect(&mut guard).map_err(|f| {
            self.counters.calls.fetch_add(1, Ordering::Relaxed);
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
            (0, f)
        })?;
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let (timeout_us, deadline, started) = self.deadlines();
        let rows = out.len() as u32;
        let conn = self
            .send_request(&mut guard, |buf| {
                protocol::encode_batch(buf, op, timeout_us, rows, columns)
            })
            .map_err(|f| {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                (0, f)
            })?;
        match conn.receive(deadline) {
            Ok(Reply::Batch {
                status,
                failed_row,
                values,
                message,
            }) if values.len() <= out.len() => {
                self.answered(started, status == abi::CALC_STATUS_OK);
                out[..values.len()].copy_from_slice(&values);
                if status == abi::CALC_STATUS_OK && values.len() == out.len() {
                    Ok(())
                } else {
                    Err((
                        (failed_row as usize).min(out.len().saturating_sub(1)),
                        Failure {
                            status: Status::from_code(status).unwrap_or(Status::Error),
                            message,
                        },
                    ))
                }
            }
            Ok(other) => {
                let death = conn.kill(Death::Broken(format!("unexpected {other:?}")));
                *guard = None;
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                Err((0, self.died(death)))
            }
            Err(death) => {
                *guard = None;
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                Err((0, self.died(death)))
            }
        }
    }

    /// Calls function `slot` of the plugin's bytes interface number `interface` in the runner.
    pub(crate) fn call_bytes(
        &self,
        interface: u32,
        slot: u32,
        input: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        self.call_with(
            |buf, timeout_us| protocol::encode_call_bytes(buf, interface, slot, timeout_us, input),
            |reply| match reply {
                Reply::Bytes {
                    status,
                    output,
                    message,
                } => Ok((status, output, message)),
                other => Err(format!("unexpected {other:?}")),
            },
        )
    }

    /// Asks the plugin to save its state (hot reload). `Ok(None)`: nothing saved.
    pub(crate) fn save_state(&self) -> Result<Option<Vec<u8>>, Failure> {
        let mut guard = self.lock();
        let Some(conn) = guard.as_mut() else {
            // A runner restarted lazily has no state worth saving yet.
            return Ok(None);
        };
        conn.buf.clear();
        Request::SaveState.encode(&mut conn.buf);
        let deadline = Some(Instant::now() + self.options.start_timeout);
        match conn.transact(deadline) {
            Ok(Reply::State {
                status: abi::CALC_STATUS_OK,
                state,
                ..
            }) => Ok(state),
            Ok(Reply::State {
                status, message, ..
            }) => Err(Failure {
                status: Status::from_code(status).unwrap_or(Status::Error),
                message,
            }),
            Ok(other) => {
                conn.kill(Death::Broken(format!("unexpected {other:?}")));
                *guard = None;
                Err(Failure::internal(
                    "plugin process failed while saving state",
                ))
            }
            Err(death) => {
                *guard = None;
                Err(Failure::internal(death.describe("while saving state")))
            }
        }
    }
}

/// The most buffer capacity a connection keeps between calls.
const KEEP_BUFFER: usize = 1 << 20;

/// Runs `call` over a batch in consecutive slices of at most `per_frame` rows (the whole batch
/// at once when it fits), each slice a request of its own and so each under the call's time
/// limit; stops at the first failure, its row counted from the start of the batch.
fn in_frames<E>(
    columns: &[&[f64]],
    out: &mut [f64],
    per_frame: usize,
    mut call: impl FnMut(&[&[f64]], &mut [f64]) -> Result<(), (usize, E)>,
) -> Result<(), (usize, E)> {
    if out.len() <= per_frame {
        return call(columns, out);
    }
    let mut slice = Vec::with_capacity(columns.len());
    for (n, out) in out.chunks_mut(per_frame.max(1)).enumerate() {
        let start = n * per_frame;
        slice.clear();
        slice.extend(columns.iter().map(|c| &c[start..start + out.len()]));
        call(&slice, out).map_err(|(row, e)| (start + row, e))?;
    }
    Ok(())
}

impl Drop for RunnerClient {
    fn drop(&mut self) {
        if let Some(conn) = self.lock().take() {
            tracing::debug!(plugin = %self.info.name, pid = conn.pid(), "stopping runner");
            drop(conn); // shuts the runner down
        }
    }
}

#[cfg(test)]
mod tests {
    use super::in_frames;

    /// What one frame's call gives: its failing row and why.
    type Frame = Result<(), (usize, &'static str)>;

    /// `a + b` per row, failing at the first row whose `b` is 0, and the slices it was given.
    fn add_rows(calls: &mut Vec<usize>) -> impl FnMut(&[&[f64]], &mut [f64]) -> Frame + '_ {
        |columns, out| {
            calls.push(out.len());
            for (r, o) in out.iter_mut().enumerate() {
                if columns[1][r] == 0.0 {
                    return Err((r, "zero"));
                }
                *o = columns[0][r] + columns[1][r];
            }
            Ok(())
        }
    }

    #[test]
    fn a_batch_that_fits_goes_whole_and_a_larger_one_in_slices_of_rows() {
        let a: Vec<f64> = (0..10).map(f64::from).collect();
        let b = vec![0.5; 10];
        let mut out = vec![0.0; 10];
        let mut calls = Vec::new();
        in_frames(&[&a, &b], &mut out, 10, add_rows(&mut calls)).unwrap();
        assert_eq!(calls, [10]);
        let mut calls = Vec::new();
        out.fill(0.0);
        in_frames(&[&a, &b], &mut out, 4, add_rows(&mut calls)).unwrap();
        assert_eq!(calls, [4, 4, 2]);
        assert_eq!(out, a.iter().map(|x| x + 0.5).collect::<Vec<_>>());
    }

    #[test]
    fn a_failing_row_in_a_later_slice_is_counted_from_the_start() {
        let a: Vec<f64> = (0..10).map(f64::from).collect();
        let mut b = vec![1.0; 10];
        b[6] = 0.0;
        let mut out = vec![f64::NAN; 10];
        let mut calls = Vec::new();
        let error = in_frames(&[&a, &b], &mut out, 4, add_rows(&mut calls)).unwrap_err();
        assert_eq!(error, (6, "zero"));
        assert_eq!(calls, [4, 4], "stops at the failing slice");
        assert_eq!(&out[..6], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn an_empty_batch_and_a_batch_without_columns_are_one_call() {
        let mut calls = Vec::new();
        let mut out: [f64; 0] = [];
        let mut call = |_: &[&[f64]], out: &mut [f64]| -> Result<(), (usize, ())> {
            calls.push(out.len());
            Ok(())
        };
        in_frames(&[], &mut out, 4, &mut call).unwrap();
        let mut out = [0.0; 9];
        in_frames(&[], &mut out, 4, &mut call).unwrap();
        assert_eq!(calls, [0, 4, 4, 1]);
    }
}
