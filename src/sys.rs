//! The only module with `unsafe`: thin wrappers over calls that std and nix
//! do not cover. Every block carries a `// SAFETY:` comment.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Take ownership of an inherited descriptor (fd 0 or 1 of a UCSPI program)
/// as a `File`, after checking that it is open.
pub fn take_fd(fd: RawFd) -> io::Result<File> {
    // SAFETY: F_GETFD only queries the descriptor table; no memory is touched.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and nothing else in this
    // process owns it: the caller takes each inherited fd once, at startup.
    Ok(unsafe { File::from_raw_fd(fd) })
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
