//! The only module with `unsafe`: thin wrappers over calls that std and nix
//! do not cover. Every block carries a `// SAFETY:` comment.
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

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
