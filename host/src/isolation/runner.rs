//! The plugin runner: the child process an isolated plugin lives in (`calc-plugin-runner`).
//!
//! `calc-plugin-runner PLUGIN [--copy-dir DIR]`, started by the host with a Unix socket as its
//! standard input (it refuses to run otherwise). It loads and validates PLUGIN with the same
//! [`loader`] as in-process loading, answers `Hello` (or `LoadFailed`), runs
//! `init` when told, then serves calls one at a time until `Shutdown` or the end of its input
//! (see `super::protocol`). Each call runs under the cooperative deadline of the request
//! ([`crate::deadline`]), so plugins that poll it stop early here too.
//!
//! It exits when the host goes away: on the end of its input, and, should the plugin be stuck
//! in a call when that happens, a watchdog thread notices that its parent process changed and
//! exits the process. On a normal end the watchdog is stopped and joined first, so the runner
//! exits with no thread of its own left running.
#![forbid(unsafe_code)]

use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use calc_sdk::abi;

use super::protocol::{self, Reply, Request, TrialUnload};
use crate::error::LoadError;
use crate::loader::{self, OpHandle};

/// Exit status for a bad command line or standard input.
const EXIT_USAGE: i32 = 2;
/// Exit status after a refused plugin (reported to the host first).
const EXIT_REFUSED: i32 = 3;
/// Exit status when the connection to the host broke.
const EXIT_IO: i32 = 4;

const USAGE: &str =
    "usage: calc-plugin-runner PLUGIN [--copy-dir DIR] | --vet | --trial-unload PLUGIN\n\
    (started by the calc host for isolated plugins, and with --vet to validate plugin files \
    outside the host; it talks to the host over a socket on standard input)";

/// The runner's `main`: returns the process exit status.
pub fn main() -> i32 {
    let mut args = std::env::args_os().skip(1);
    let mut path = None;
    let mut copy_dir = None;
    let mut vet = false;
    let mut trial = false;
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--copy-dir") => copy_dir = args.next().map(PathBuf::from),
            Some("--vet") => vet = true,
            Some("--trial-unload") => trial = true,
            Some("--help" | "-h") => {
                eprintln!("{USAGE}");
                return 0;
            }
            _ if path.is_none() => path = Some(PathBuf::from(arg)),
            _ => {
                eprintln!("calc-plugin-runner: unexpected argument {arg:?}\n{USAGE}");
                return EXIT_USAGE;
            }
        }
    }
    if vet == path.is_some() || (trial && vet) {
        eprintln!("calc-plugin-runner: give either a plugin or --vet\n{USAGE}");
        return EXIT_USAGE;
    }
    let socket = match std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(UnixStream::from)
    {
        Ok(s) if s.peer_addr().is_ok() => s,
        _ => {
            eprintln!("calc-plugin-runner: standard input is not a socket\n{USAGE}");
            return EXIT_USAGE;
        }
    };
    let watch = ParentWatch::start();
    let served = match &path {
        Some(path) if trial => serve_trial(&socket, path),
        Some(path) => serve(&socket, path, copy_dir.as_deref()),
        None => serve_vet(&socket),
    };
    let code = match served {
        Ok(code) => code,
        Err(e) => {
            tracing::debug!("runner ({path:?}): connection lost: {e}");
            EXIT_IO
        }
    };
    watch.stop();
    // No process the plugin forked outlives this one.
    super::sys::kill_rest_of_group();
    code
}

/// How often [`ParentWatch`] looks at the parent process id.
const PARENT_POLL: Duration = Duration::from_millis(200);

/// A watchdog thread that exits the process when the parent changes (the host died and this
/// process was adopted), even while the plugin is stuck in a call.
///
/// Stopped and joined once serving ends, before the process exits: a thread still running at
/// exit leaves its stack and thread-local storage allocated, which valgrind reports as "possibly
/// lost" (an error under `--leak-check=full`).
struct ParentWatch {
    /// Dropping it wakes the thread, which then returns.
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ParentWatch {
    fn start() -> ParentWatch {
        let parent = std::os::unix::process::parent_id();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("parent-watch".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(PARENT_POLL)
                {
                    if std::os::unix::process::parent_id() != parent {
                        // The host is gone and cannot kill this group: do it here.
                        super::sys::kill_rest_of_group();
                        std::process::exit(EXIT_IO);
                    }
                }
            });
        match thread {
            Ok(thread) => ParentWatch {
                stop: Some(stop),
                thread: Some(thread),
            },
            Err(e) => {
                tracing::warn!(
                    "calc-plugin-runner: no parent watchdog (cannot start a thread: {e})"
                );
                ParentWatch {
                    stop: None,
                    thread: None,
                }
            }
        }
    }

    /// Stops the thread and waits for it (it wakes at once).
    fn stop(mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Io<'a> {
    input: BufReader<&'a UnixStream>,
    output: BufWriter<&'a UnixStream>,
    frame: Vec<u8>,
}

impl<'a> Io<'a> {
    /// Buffered reading and writing of frames on `socket`.
    fn new(socket: &'a UnixStream) -> Io<'a> {
        Io {
            input: BufReader::new(socket),
            output: BufWriter::new(socket),
            frame: Vec::new(),
        }
    }

    /// The next request; `None` at the end of the input.
    fn read(&mut self) -> std::io::Result<Option<Request>> {
        let mut prefix = [0u8; 4];
        if self.input.buffer().is_empty() {
            super::sys::spin_until_readable(self.input.get_ref(), super::SPIN);
        }
        match self.input.read_exact(&mut prefix) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let n = protocol::frame_len(prefix)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        self.frame.resize(n, 0);
        self.input.read_exact(&mut self.frame)?;
        Request::decode(&self.frame)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    fn send(&mut self, reply: &Reply) -> std::io::Result<()> {
        self.frame.clear();
        reply.encode(&mut self.frame);
        self.output.write_all(&self.frame)?;
        self.output.flush()
    }
}

fn timeout(us: u64) -> Option<Duration> {
    (us > 0).then(|| Duration::from_micros(us))
}

/// A trial load for `calc plugins check` (`--trial-unload PLUGIN`): in a thread of its own,
/// loads the plugin, runs its `init` (empty configuration) and `shutdown` and closes the
/// library; then says, in a [`TrialUnload`] (`Trial`), whether the
/// library was unloaded at once, and if not, whether it was once that thread had exited. A
/// library that stays loaded only while the thread lives is held by thread-local destructors
/// its code registered (glibc keeps a library with pending ones: `__cxa_thread_atexit_impl`).
fn serve_trial(socket: &UnixStream, path: &std::path::Path) -> std::io::Result<i32> {
    let mut io = Io::new(socket);
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let (exit_tx, exit_rx) = std::sync::mpsc::channel::<()>();
    let trial = {
        let path = path.clone();
        std::thread::Builder::new()
            .name("trial".into())
            .spawn(move || {
                let result = loader::open(&path)
                    .and_then(|opened| opened.initialise(&std::collections::BTreeMap::new()))
                    .map(drop)
                    .map_err(|e| e.to_string());
                let _ = done_tx.send(result);
                let _ = exit_rx.recv();
            })?
    };
    let outcome = match done_rx.recv() {
        Ok(Ok(())) => {
            let while_thread_lives = loader::still_loaded(&path, None);
            let _ = exit_tx.send(());
            let _ = trial.join();
            // Closing any library makes the loader collect the ones nothing holds any more:
            // the look-up below opens (RTLD_NOLOAD) and closes this one; the second tells.
            let after_thread_exit = while_thread_lives && {
                let _ = loader::still_loaded(&path, None);
                loader::still_loaded(&path, None)
            };
            TrialUnload {
                error: None,
                unloaded: !while_thread_lives,
                unloaded_after_thread_exit: while_thread_lives && !after_thread_exit,
            }
        }
        Ok(Err(e)) => {
            let _ = exit_tx.send(());
            let _ = trial.join();
            TrialUnload {
                error: Some(e),
                unloaded: false,
                unloaded_after_thread_exit: false,
            }
        }
        Err(_) => TrialUnload {
            error: Some("the trial thread ended without a word".into()),
            unloaded: false,
            unloaded_after_thread_exit: false,
        },
    };
    io.send(&Reply::Trial { report: outcome })?;
    Ok(0)
}

/// The vetter: validates each file the host sends (`Vet`) in this process, one at a time, and
/// answers with the verdict (see `crate::vet`). A file whose loading crashes, hangs or
/// exits takes this process down, not the host, which names the file it was vetting.
fn serve_vet(socket: &UnixStream) -> std::io::Result<i32> {
    use std::os::unix::ffi::OsStrExt;
    let mut io = Io::new(socket);
    io.send(&Reply::Hello {
        protocol: protocol::PROTOCOL_VERSION,
        info: None,
    })?;
    loop {
        match io.read()? {
            None | Some(Request::Shutdown) => return Ok(0),
            Some(Request::Vet { path }) => {
                super::sys::reset_for_next_file();
                let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&path));
                let verdict = crate::verdict::Verdict::of(loader::inspect(path));
                io.send(&Reply::Vetted { verdict })?;
            }
            Some(other) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("expected Vet, got {other:?}"),
                ))
            }
        }
    }
}

fn serve(
    socket: &UnixStream,
    path: &std::path::Path,
    copy_dir: Option<&std::path::Path>,
) -> std::io::Result<i32> {
    let mut io = Io::new(socket);
    let opened = match copy_dir {
        Some(dir) => loader::open_copy(path, dir),
        None => loader::open(path),
    };
    let opened = match opened {
        Ok(o) => o,
        Err(e) => {
            io.send(&Reply::LoadFailed {
                kind: e.kind().into(),
                message: e.to_string(),
            })?;
            return Ok(EXIT_REFUSED);
        }
    };
    io.send(&Reply::Hello {
        protocol: protocol::PROTOCOL_VERSION,
        info: Some(opened.info().clone()),
    })?;
    let (config, state) = match io.read()? {
        Some(Request::Init { config, state }) => (config, state),
        Some(Request::Shutdown) | None => return Ok(0),
        Some(other) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("expected Init, got {other:?}"),
            ))
        }
    };
    let plugin = match opened.initialise_with_state(&config, state) {
        Ok(p) => std::sync::Arc::new(p),
        Err(LoadError::InitFailed {
            status, message, ..
        }) => {
            io.send(&Reply::InitFailed {
                status: status.code(),
                message,
            })?;
            return Ok(EXIT_REFUSED);
        }
        Err(e) => {
            io.send(&Reply::InitFailed {
                status: abi::CALC_STATUS_ERROR,
                message: e.to_string(),
            })?;
            return Ok(EXIT_REFUSED);
        }
    };
    io.send(&Reply::Ready)?;
    let handles: Vec<OpHandle> = (0..plugin.info().operations.len())
        .filter_map(|i| OpHandle::new(&plugin, i))
        .collect();
    let unknown = |op: u32| -> String { format!("no operation #{op} in this plugin") };
    let mut out = Vec::new();
    loop {
        let reply = match io.read()? {
            None | Some(Request::Shutdown) => break,
            Some(Request::Call {
                op,
                timeout_us,
                args,
            }) => match handles.get(op as usize) {
                None => Reply::Value {
                    status: abi::CALC_STATUS_INVALID_ARGUMENT,
                    value: 0.0,
                    message: unknown(op),
                },
                Some(h) => {
                    match crate::deadline::with_timeout(timeout(timeout_us), || h.call(&args)) {
                        Ok(value) => Reply::Value {
                            status: abi::CALC_STATUS_OK,
                            value,
                            message: String::new(),
                        },
                        Err(e) => Reply::Value {
                            status: e.status.code(),
                            value: 0.0,
                            message: e.message.clone(),
                        },
                    }
                }
            },
            Some(Request::Batch {
                op,
                timeout_us,
                rows,
                columns,
            }) => match handles.get(op as usize) {
                None => Reply::Batch {
                    status: abi::CALC_STATUS_INVALID_ARGUMENT,
                    failed_row: 0,
                    values: Vec::new(),
                    message: unknown(op),
                },
                Some(h) => {
                    out.clear();
                    out.resize(rows as usize, 0.0);
                    let cols: Vec<&[f64]> = columns.iter().map(Vec::as_slice).collect();
                    let result = crate::deadline::with_timeout(timeout(timeout_us), || {
                        h.call_batch(&cols, &mut out)
                    });
                    match result {
                        Ok(()) => Reply::Batch {
                            status: abi::CALC_STATUS_OK,
                            failed_row: 0,
                            values: std::mem::take(&mut out),
                            message: String::new(),
                        },
                        Err((row, e)) => Reply::Batch {
                            status: e.status.code(),
                            failed_row: row as u32,
                            values: out[..row].to_vec(),
                            message: e.message.clone(),
                        },
                    }
                }
            },
            Some(Request::CallBytes {
                interface,
                slot,
                timeout_us,
                input,
            }) => {
                let result = crate::deadline::with_timeout(timeout(timeout_us), || {
                    plugin.call_bytes(interface as usize, slot as usize, &input)
                });
                match result {
                    Ok(output) => Reply::Bytes {
                        status: abi::CALC_STATUS_OK,
                        output,
                        message: String::new(),
                    },
                    Err((status, message)) => Reply::Bytes {
                        status: status.code(),
                        output: Vec::new(),
                        message,
                    },
                }
            }
            Some(Request::SaveState) => match plugin.save_state() {
                Ok(state) => Reply::State {
                    status: abi::CALC_STATUS_OK,
                    state,
                    message: String::new(),
                },
                Err(e) => Reply::State {
                    status: e.status.code(),
                    state: None,
                    message: e.message.clone(),
                },
            },
            Some(Request::Init { .. }) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "Init sent twice",
                ))
            }
            Some(Request::Vet { .. }) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "Vet sent to a plugin's runner",
                ))
            }
        };
        io.send(&reply)?;
    }
    drop(handles);
    // Shuts the plugin down (its `shutdown` runs here) and unloads it.
    drop(plugin);
    Ok(0)
}
