//! The only module with `unsafe`: thin wrappers over calls that std and nix
//! do not cover. Every block carries a `// SAFETY:` comment.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Take ownership of an fd inherited by number (`HANDOFF_FD`, systemd's
/// `LISTEN_FDS`), after checking with `F_GETFD` that it is open. `None` if not.
/// The caller must not take the same number twice.
pub fn take_inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    if fd < 0 {
        return None;
    }
    // SAFETY: fcntl(F_GETFD) only reads the descriptor flags; any int is allowed.
    let r = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if r == -1 {
        return None;
    }
    // SAFETY: the fd is open (checked above) and, by the documented contract of
    // the variable that named it, was handed to this process to own; nothing
    // else in the process refers to it by number.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Own an fd that the kernel has just installed in this process from an
/// SCM_RIGHTS control message (nix's `recvmsg` hands it over as a raw number).
pub fn adopt_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: recvmsg returned this number as a new descriptor in SCM_RIGHTS
    // ancillary data: it is open and referenced by nothing else in the process.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

use std::sync::atomic::{AtomicI32, Ordering};

/// Write end of the self-pipe that [`signal_pipe`]'s handler writes to.
static SIGNAL_PIPE_WR: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE_WR.load(Ordering::Relaxed);
    let b = sig as u8;
    // SAFETY: only async-signal-safe calls here: errno is saved and restored
    // around write(2) on a non-blocking pipe; a full pipe already holds a wake-up.
    unsafe {
        let errno = *libc::__errno_location();
        libc::write(fd, (&b as *const u8).cast(), 1);
        *libc::__errno_location() = errno;
    }
}

/// Deliver `signals` as bytes (the signal number) on the returned pipe, the
/// self-pipe trick. Unlike a signalfd, which needs the signals blocked, this
/// leaves the signal mask alone, so children start with an empty mask (std's
/// `Command` does not reset it) and with default handlers after exec.
/// Call once per process.
pub fn signal_pipe(signals: &[libc::c_int]) -> std::io::Result<OwnedFd> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both fds are new and owned by nobody else. The
    // write end is kept open for the life of the process (the handler uses it).
    let rd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    SIGNAL_PIPE_WR.store(fds[1], Ordering::Relaxed);
    for &sig in signals {
        // SAFETY: a zeroed sigaction is valid; the handler is an extern "C" fn
        // doing only async-signal-safe work; SA_RESTART restarts most calls.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) == -1 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(rd)
}

/// Take ownership of an inherited descriptor (fd 0 or 1 of a UCSPI program)
/// as a `File`, after checking that it is open.
pub fn take_fd(fd: RawFd) -> io::Result<File> {
    take_inherited_fd(fd).map(File::from).ok_or_else(io::Error::last_os_error)
}

/// Make the child started by `cmd` find the descriptor `from` as `to`
/// (e.g. notqmail's error pipe on fd 6). The caller keeps `from` open until
/// the spawn has returned.
pub fn child_fd(cmd: &mut Command, from: RawFd, to: RawFd) {
    // SAFETY: the closure runs between fork and exec and calls only dup2 and
    // fcntl, which are async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if from == to {
                let flags = libc::fcntl(to, libc::F_GETFD);
                if flags == -1 || libc::fcntl(to, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(from, to) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Restore the default SIGCHLD disposition. A parent that set it to SIG_IGN
/// (swaks --pipe does) would make the kernel reap our children itself, and
/// waiting for the queue program's exit code would fail.
pub fn default_sigchld() {
    // SAFETY: installing SIG_DFL runs no handler code; no memory is shared.
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
}

/// Ignore SIGXFSZ, so that a write past RLIMIT_FSIZE fails with EFBIG (a
/// write error the caller reports) instead of killing the process.
pub fn ignore_sigxfsz() -> nix::Result<()> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_IGN installs no handler code, so no async-signal-safety
    // rule can be broken; it only changes how the kernel treats the signal.
    unsafe { signal(Signal::SIGXFSZ, SigHandler::SigIgn) }.map(|_| ())
}
