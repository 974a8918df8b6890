//! The two system calls isolation needs that `std` does not offer safely: writing to the runner
//! socket without `SIGPIPE`, and finding the file this code was loaded from (`dladdr`).

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// Writes all of `bytes` to `socket` with `MSG_NOSIGNAL`, so that a dead runner is an `EPIPE`
/// error rather than a `SIGPIPE` that would kill a host which has not ignored it (a C program
/// using `libcalc_host`, for instance).
pub(crate) fn send_all(socket: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
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
pub(crate) fn this_object_file() -> Option<PathBuf> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    let addr = this_object_file as fn() -> Option<PathBuf> as *const libc::c_void;
    // SAFETY: `addr` is an address inside this object's code; `info` is writable storage for
    // one `Dl_info`, which `dladdr` fills in when it returns non-zero.
    let found = unsafe { libc::dladdr(addr, info.as_mut_ptr()) };
    if found == 0 {
        return None;
    }
    // SAFETY: `dladdr` succeeded, so it initialised `info` (zeroed before, so any field it
    // left alone is NULL/0, valid for these plain C types).
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: `dli_fname` is a NUL-terminated path owned by the dynamic loader, valid while the
    // object stays loaded, which it does while this code runs; it is copied at once.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    use std::os::unix::ffi::OsStrExt;
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes()));
    std::fs::canonicalize(&path).ok().or(Some(path))
}

/// Waits up to `spin` for `socket` to have data to read, polling without blocking, and returns
/// whether it has. Calls to a runner answer in a few microseconds when both processes are
/// running, but a process that blocks in `read` is descheduled and, on an idle machine, takes
/// tens of microseconds to wake; polling briefly first keeps back-to-back calls on the fast
/// path. Each poll is a `recv(MSG_PEEK | MSG_DONTWAIT)`, a system call, so a single core is
/// shared rather than monopolised.
pub(crate) fn spin_until_readable(socket: &UnixStream, spin: std::time::Duration) -> bool {
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
