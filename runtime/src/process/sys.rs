//! The system calls isolation needs that `std` does not offer safely: writing to the runner
//! socket without `SIGPIPE`, finding the file this code was loaded from (`dladdr`), and killing
//! a runner's whole process group once it has exited but before it is reaped.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// Writes all of `bytes` to `socket` with `MSG_NOSIGNAL`, so that a dead runner is an `EPIPE`
/// error rather than a `SIGPIPE` that would kill a host which has not ignored it (a C program
/// using `libcalc_host`, for instance).
pub fn send_all(socket: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    const FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
    #[cfg(not(target_os = "linux"))]
    const FLAGS: libc::c_int = 0;
    while !bytes.is_empty() {
        // SAFETY: `socket` is an open socket for the duration of the call and `bytes` is a
        // live slice readable for `bytes.len()` bytes; `send` only reads it.
        let n = unsafe {
            libc::send(
                socket.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                FLAGS,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// The file (executable or shared library, e.g. `libcalc_host.so`) this function's code was
/// loaded from, as the dynamic loader reports it; `None` when it cannot tell.
pub fn this_object_file() -> Option<PathBuf> {
    let addr = this_object_file as fn() -> Option<PathBuf> as usize;
    let path = PathBuf::from(object_name_at(addr)?);
    std::fs::canonicalize(&path).ok().or(Some(path))
}

/// The name under which the dynamic loader loaded the object (executable or library) that
/// holds `addr`, as `dladdr` reports it; `None` when no loaded object holds it. The address is
/// only looked up in the loader's list of objects, never dereferenced, so any value is safe.
pub fn object_name_at(addr: usize) -> Option<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: `dladdr` only looks `addr` up in the loader's list of objects (it never
    // dereferences it); `info` is writable storage for one `Dl_info`, which it fills in when it
    // returns non-zero.
    let found = unsafe { libc::dladdr(addr as *const libc::c_void, info.as_mut_ptr()) };
    if found == 0 {
        return None;
    }
    // SAFETY: `dladdr` succeeded, so it initialised `info` (zeroed before, so any field it
    // left alone is NULL/0, valid for these plain C types).
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: `dli_fname` is the NUL-terminated name of a loaded object, owned by the dynamic
    // loader and valid while that object stays loaded; it is copied at once, on this thread.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    Some(std::ffi::OsStr::from_bytes(name.to_bytes()).to_os_string())
}

/// Waits up to `spin` for `socket` to have data to read, polling without blocking, and returns
/// whether it has. Calls to a runner answer in a few microseconds when both processes are
/// running, but a process that blocks in `read` is descheduled and, on an idle machine, takes
/// tens of microseconds to wake; polling briefly first keeps back-to-back calls on the fast
/// path. Each poll is a `recv(MSG_PEEK | MSG_DONTWAIT)`, a system call, so a single core is
/// shared rather than monopolised.
pub fn spin_until_readable(socket: &UnixStream, spin: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    let mut byte = 0u8;
    loop {
        // SAFETY: `socket` is an open socket for the duration of the call; `byte` is one
        // writable byte; with MSG_PEEK nothing is consumed.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                std::ptr::addr_of_mut!(byte).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        // Data, or an end of file / error that the blocking read will report.
        if n != -1 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock {
            return true;
        }
        if start.elapsed() >= spin {
            return false;
        }
        std::hint::spin_loop();
    }
}

/// Sends `SIGKILL` to every process in the process group `pgid`. A runner is started as the
/// leader of a group of its own, so this kills it and every descendant that stayed in its group
/// (a plugin's forked children); nothing left (`ESRCH`) is not an error.
pub fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return; // never the caller's own group or every process
    }
    // SAFETY: plain system call on a process group id; no memory is passed.
    unsafe { libc::killpg(pgid, libc::SIGKILL) };
}

/// Undoes what the last file a vetting child loaded may have changed that would make it
/// judge the next file differently, and keeps the next file's code away from the connection
/// to the host: the default action is restored for the signals that report a crash (a
/// constructor could install a handler that hides the next file's crash), and descriptor 0,
/// where the host put the connection (the runner uses a copy of it), is `/dev/null` (a
/// constructor writing to standard input must not be able to forge a verdict there).
pub fn reset_for_next_file() {
    for signal in [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGABRT,
        libc::SIGSYS,
        libc::SIGTRAP,
        libc::SIGXCPU,
    ] {
        // SAFETY: SIG_DFL is a valid disposition for every one of these signals; no memory is
        // passed.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    if let Ok(null) = std::fs::File::open("/dev/null") {
        // SAFETY: dup2 on two descriptor numbers; `null` stays open until after the call.
        unsafe { libc::dup2(null.as_raw_fd(), 0) };
    }
}

/// Limits the address space of process `pid` to `bytes` (`RLIMIT_AS`).
pub fn limit_address_space(pid: u32, bytes: u64) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: `limit` is a valid `rlimit` read by the call; no old value is asked for (NULL).
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_AS, &limit, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Kills (SIGKILL) every other process of this process's group, when this process leads it
/// (as a runner does: the host starts it in a group of its own). A runner calls this as it
/// exits, so that no process a plugin forked outlives it even when the runner stops by
/// itself (the host gone, or a normal shutdown). The members are found in `/proc`.
pub fn kill_rest_of_group() {
    let me = std::process::id();
    // SAFETY: getpgrp has no arguments and cannot fail.
    let group = unsafe { libc::getpgrp() };
    if u32::try_from(group).ok() != Some(me) {
        return;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Field 5 of /proc/PID/stat is the process group; the command name (field 2) is in
        // parentheses and may hold spaces, so fields are counted after its closing one.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let pgrp = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|f| f.parse::<u32>().ok());
        if pgrp == Some(me) {
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: plain system call on a pid; no memory is passed.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Whether the child `pid` has terminated, without reaping it (`waitid` with `WNOWAIT`): its
/// pid, and so the id of the process group it leads, stays reserved until the caller reaps it,
/// so that [`kill_group`] cannot reach an unrelated group that reused the number.
pub fn has_exited(pid: u32) -> bool {
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
    // SAFETY: `info` is writable storage for one `siginfo_t`; `waitid` only writes it.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            libc::id_t::from(pid),
            info.as_mut_ptr(),
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: zero-initialised above, and `waitid` fills it in when it returns 0; a pid of 0
    // means the child has not changed state.
    rc == 0 && unsafe { info.assume_init().si_pid() } != 0
}

/// A file descriptor that becomes readable when process `pid` (a child of ours, not yet
/// reaped) terminates (`pidfd_open(2)`, Linux 5.3); `None` where the kernel has none.
pub fn pidfd(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: plain system call with integer arguments; it returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = libc::c_int::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: `fd` was just returned by pidfd_open and is owned by nothing else.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// What [`wait_readable_or_exit`] saw first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The socket has data, an end of file or an error to read.
    Readable,
    /// The process exited (and the socket has nothing to read).
    Exited,
    /// Neither, within the time given.
    TimedOut,
}

/// Waits until `socket` is readable or the process behind `process` (a pidfd) exits, for at
/// most `timeout` (`None`: no limit). A runner whose plugin forked keeps its socket open in the
/// fork after the runner itself died, so an end of file alone does not tell that it died.
pub fn wait_readable_or_exit(
    socket: &UnixStream,
    process: &std::os::fd::OwnedFd,
    timeout: Option<std::time::Duration>,
) -> Wait {
    use std::os::fd::AsRawFd as _;
    let ms = timeout.map_or(-1, |t| {
        libc::c_int::try_from(t.as_millis().saturating_add(1)).unwrap_or(libc::c_int::MAX)
    });
    let mut fds = [
        libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: process.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is an array of two initialised `pollfd`s on open descriptors, writable for
    // `poll` to set `revents`.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    match n {
        0 => Wait::TimedOut,
        // An interrupted or failed poll: let the caller's read (with its own timeout) decide.
        n if n < 0 => Wait::Readable,
        _ if fds[0].revents != 0 => Wait::Readable,
        _ => Wait::Exited,
    }
}

/// Limits the CPU time process `pid` may use in all to `seconds` (`RLIMIT_CPU` through
/// `prlimit(2)`): the kernel sends `SIGXCPU` when it is spent, and `SIGKILL` a second later if
/// the process survives that.
pub fn limit_cpu(pid: u32, seconds: u64) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let limit = libc::rlimit {
        rlim_cur: seconds,
        rlim_max: seconds.saturating_add(1),
    };
    // SAFETY: `limit` is a valid `rlimit` read by the call; no old value is asked for (NULL).
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_CPU, &limit, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
