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

/// Is `fd` an open Unix-domain datagram socket? (`SMTPD_STATS_FD` is
/// believed only then: a stray number must never make a program write its
/// report into a file or the client's connection.)
pub fn is_unix_dgram(fd: RawFd) -> bool {
    let get = |opt: libc::c_int| -> Option<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `v`, a c_int of
        // that size; on a closed fd or a non-socket it fails with EBADF or
        // ENOTSOCK and writes nothing.
        let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&mut v as *mut libc::c_int).cast(), &mut len) };
        (r == 0).then_some(v)
    };
    fd >= 0 && get(libc::SO_TYPE) == Some(libc::SOCK_DGRAM) && get(libc::SO_DOMAIN) == Some(libc::AF_UNIX)
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

/// Mark every descriptor from `first` up close-on-exec (smtpd-supervise at
/// start): whatever this process inherited then reaches no program it runs,
/// which get only the fds passed on by name. Nothing is closed: the
/// process's own use of them (systemd's sockets) is unchanged.
/// close_range(2) with CLOSE_RANGE_CLOEXEC (Linux 5.11); on an older kernel,
/// each fd listed in /proc/self/fd.
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    let first = libc::c_uint::try_from(first).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets the
    // close-on-exec flag of the fds in the range; it frees no memory and
    // closes nothing, whatever refers to those fds stays valid.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return Ok(());
    }
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd: &RawFd| fd >= first as RawFd)
        .collect();
    for fd in fds {
        // SAFETY: F_GETFD and F_SETFD only read and set the fd's flags; an
        // fd that was closed meanwhile (read_dir's own) gives EBADF, ignored.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFD);
            if fl != -1 {
                libc::fcntl(fd, libc::F_SETFD, fl | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
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

// ---- inotify (queue-run): nix 0.32's inotify module is not among the
// enabled features, and two raw calls are all queue-run needs.

/// Event bit: a name was created in the watched folder (link(2) included).
pub const IN_CREATE: u32 = libc::IN_CREATE;
/// Event bit: a name was moved into the watched folder.
pub const IN_MOVED_TO: u32 = libc::IN_MOVED_TO;
/// Event bit: the kernel's event queue overflowed; events were lost.
pub const IN_Q_OVERFLOW: u32 = libc::IN_Q_OVERFLOW;

/// An inotify fd (close-on-exec) watching `dir` for names created or moved in.
pub fn inotify_watch_dir(dir: &std::path::Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: inotify_init1 takes only flags and returns a new fd or -1.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by inotify_init1 and nothing else owns it.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: c is a valid NUL-terminated path that outlives the call; fd is open.
    let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_CREATE | libc::IN_MOVED_TO) };
    if wd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(owned)
}

/// Split what one read(2) of an inotify fd returned into (mask, name) pairs
/// (struct inotify_event: wd, mask, cookie, len, then len bytes of
/// NUL-padded name). Safe, bounded: a malformed tail is ignored.
pub fn inotify_events(buf: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let mut v = Vec::new();
    let mut i = 0;
    let word = |at: usize| -> Option<u32> { Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?)) };
    while let (Some(mask), Some(len)) = (word(i + 4), word(i + 12)) {
        let start = i + 16;
        let Some(name) = buf.get(start..start + len as usize) else { break };
        let name = name.split(|&b| b == 0).next().unwrap_or_default().to_vec();
        v.push((mask, name));
        i = start + len as usize;
    }
    v
}

// ---- spawning without waiting for the exec (smtpd-supervise)

/// A program ready to be exec'd: everything `execve` needs, built before the
/// fork so that the child allocates nothing.
pub struct Exec {
    path: std::ffi::CString,
    argv: Vec<std::ffi::CString>,
    envp: Vec<std::ffi::CString>,
    /// Written to fd 2 by a child whose execve failed (then the errno).
    fail: Vec<u8>,
}

impl Exec {
    /// `path` (already resolved: it contains a '/'), `argv` (argv[0] first),
    /// `env` as KEY=VALUE items; `fail` prefixes the child's message when the
    /// exec fails. Fails on a NUL inside any of them.
    pub fn new<P, A, E>(path: P, argv: &[A], env: &[E], fail: &str) -> io::Result<Exec>
    where
        P: AsRef<[u8]>,
        A: AsRef<[u8]>,
        E: AsRef<[u8]>,
    {
        let c = |b: &[u8]| std::ffi::CString::new(b).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
        Ok(Exec {
            path: c(path.as_ref())?,
            argv: argv.iter().map(|a| c(a.as_ref())).collect::<io::Result<_>>()?,
            envp: env.iter().map(|e| c(e.as_ref())).collect::<io::Result<_>>()?,
            fail: fail.as_bytes().to_vec(),
        })
    }
}

/// Start a child that execs `exec`: in the child, its own process group if
/// `pgroup`, default dispositions for `caught` (the signals the parent
/// handles), each `(from, to)` of `fds` dup2'd in order (from == to clears
/// close-on-exec; a `from` must not be another pair's `to`), and execve. An
/// exec failure is written by the child on its fd 2, and it exits 127.
///
/// The child shares this process's memory until its execve (clone with
/// CLONE_VM and CLONE_VFORK, as posix_spawn does), so nothing is copied: no
/// page tables for the fork, no copy-on-write faults in this process
/// afterwards (about 100 us and 25 faults per session for smtpd-supervise
/// with fork(2)), no copied address space for the exec to tear down. This
/// returns when the child's execve has replaced its memory (or it exited),
/// which is early in the exec, not when the program runs: a busy machine
/// cannot stall the caller for the whole exec, as std's `Command::spawn`
/// (which waits on a pipe until the exec is over) did.
pub fn fork_exec(exec: &Exec, fds: &[(RawFd, RawFd)], pgroup: bool, caught: &[libc::c_int]) -> io::Result<i32> {
    let mut argv: Vec<*const libc::c_char> = exec.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = exec.envp.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // The child's stack: it makes system calls only (no allocation, no
    // unwinding); 64 KiB is far more than that needs. Only the pages it
    // touches are ever faulted in.
    let mut stack: Vec<u8> = Vec::with_capacity(CHILD_STACK);
    // SAFETY: sigset_t is plain data; sigfillset/pthread_sigmask only write
    // the sets they are given. All signals are blocked across the clone so
    // that none runs the parent's handler in the child (on its stack, with
    // the parent's memory) before its reset below.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let args = ChildArgs { path: exec.path.as_ptr(), argv: argv.as_ptr(), envp: envp.as_ptr(), fds, pgroup, caught, old, fail: &exec.fail };
    // The stack grows down from the end of the allocation, 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
    // SAFETY: CLONE_VM|CLONE_VFORK: this thread is suspended until the
    // child has exec'd or exited, so `args`, the pointer arrays and `exec`
    // (all alive until after this call returns) are read by the child
    // while nothing changes them; the child runs `exec_child` on its own
    // stack (allocated above, unused by anyone else) and makes only
    // async-signal-safe calls there; it does not share the signal handler
    // table (no CLONE_SIGHAND), so its resets do not reach this process.
    let pid = unsafe {
        libc::clone(
            exec_child,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &args as *const ChildArgs<'_> as *mut libc::c_void,
        )
    };
    let err = io::Error::last_os_error();
    // SAFETY: restores the mask saved above; `old` is a valid set.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
    drop(stack);
    if pid < 0 {
        return Err(err);
    }
    Ok(pid)
}

/// The stack of a child of `fork_exec` until its execve.
const CHILD_STACK: usize = 64 * 1024;

/// What `exec_child` needs, prepared by the parent.
struct ChildArgs<'a> {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    fds: &'a [(RawFd, RawFd)],
    pgroup: bool,
    caught: &'a [libc::c_int],
    old: libc::sigset_t,
    fail: &'a [u8],
}

/// The child of `fork_exec`, on its own stack, in the parent's memory.
extern "C" fn exec_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` that `fork_exec` passed to clone; its
    // caller is suspended (CLONE_VFORK) while this runs, so it is valid and
    // unchanged. Only async-signal-safe calls follow (setpgid, sigaction,
    // pthread_sigmask, dup2, fcntl, execve, write, _exit) on memory prepared
    // before the clone; nothing is allocated or unwound.
    unsafe {
        let a = &*(arg as *const ChildArgs<'_>);
        if a.pgroup {
            libc::setpgid(0, 0);
        }
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for &sig in a.caught {
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &a.old, std::ptr::null_mut());
        let mut ok = true;
        for &(from, to) in a.fds {
            ok &= if from == to {
                let fl = libc::fcntl(to, libc::F_GETFD);
                fl != -1 && libc::fcntl(to, libc::F_SETFD, fl & !libc::FD_CLOEXEC) != -1
            } else {
                libc::dup2(from, to) != -1
            };
        }
        if ok {
            libc::execve(a.path, a.argv, a.envp);
        }
        let errno = *libc::__errno_location();
        let mut num = [0u8; 12];
        let text = errno_digits(errno, &mut num);
        libc::write(2, a.fail.as_ptr().cast(), a.fail.len());
        libc::write(2, text.as_ptr().cast(), text.len());
        libc::_exit(127)
    }
}

/// fork(2), for a caller that has only one thread (smtpd-rs's hand-off
/// template, which starts none): the child goes on running ordinary code,
/// which is only sound when no other thread could have held a lock (the
/// allocator's, say) at the fork. Returns 0 in the child, the child's pid in
/// the parent.
pub fn fork_single_threaded() -> io::Result<i32> {
    // SAFETY: the caller's contract above: one thread, so every lock is free
    // in the child and its copy of the process is consistent.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// _exit(2): end the process now, without the runtime's tear-down or
/// atexit handlers (`die::quick_exit` flushes stdout first).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes no pointers and never returns; what it skips
    // (atexit handlers, the runtime's clean-up) frees nothing the kernel
    // does not free at exit.
    unsafe { libc::_exit(code) }
}

/// "errno N\n" into `buf`, without allocating (for a forked child).
fn errno_digits(errno: i32, buf: &mut [u8; 12]) -> &[u8] {
    let mut n = errno.unsigned_abs();
    let mut i = buf.len();
    i -= 1;
    buf[i] = b'\n';
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 7 {
            break;
        }
    }
    i -= 6;
    buf[i..i + 6].copy_from_slice(b"errno ");
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_digits_formats_without_allocating() {
        let mut b = [0u8; 12];
        assert_eq!(errno_digits(2, &mut b), b"errno 2\n");
        assert_eq!(errno_digits(123, &mut b), b"errno 123\n");
        assert_eq!(errno_digits(0, &mut b), b"errno 0\n");
    }

    #[test]
    fn fork_exec_runs_the_program_with_its_env_and_fds() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let f = File::create(&out).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        let exec = Exec::new("/bin/sh", &["sh", "-c", "echo \"$X\"; exit 3"], &["X=hello"], "test: exec: ").unwrap();
        let pid = fork_exec(&exec, &[(fd, 1)], true, &[]).unwrap();
        let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        assert_eq!(st, nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 3));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "hello\n");
    }

    #[test]
    fn cloexec_from_marks_inherited_fds() {
        use std::os::fd::AsRawFd;
        let f = File::open("/dev/null").unwrap();
        // A high number, so that no other test's fds are touched; dup2
        // leaves it without the flag, as an inherited fd.
        let fd = 900;
        // SAFETY (test): fd 900 is unused in the test process; it is closed below.
        assert_eq!(unsafe { libc::dup2(f.as_raw_fd(), fd) }, fd);
        cloexec_from(fd).unwrap();
        // SAFETY (test): reads the flags of the fd dup'd above, then closes it.
        let fl = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        unsafe { libc::close(fd) };
        assert_eq!(fl & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }

    #[test]
    fn fork_exec_failure_is_exit_127() {
        let exec = Exec::new("/nonexistent/prog", &["prog"], &[] as &[&str], "test: exec: ").unwrap();
        let pid = fork_exec(&exec, &[], false, &[]).unwrap();
        let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        assert_eq!(st, nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 127));
    }
}
