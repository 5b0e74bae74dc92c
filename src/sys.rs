//! The only module with `unsafe`: thin wrappers over calls that std and nix
//! do not cover. Every block carries a `// SAFETY:` comment.
#![allow(unsafe_code)]

/// Ignore SIGXFSZ, so that a write past RLIMIT_FSIZE fails with EFBIG (a
/// write error the caller reports) instead of killing the process.
pub fn ignore_sigxfsz() -> nix::Result<()> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_IGN installs no handler code, so no async-signal-safety
    // rule can be broken; it only changes how the kernel treats the signal.
    unsafe { signal(Signal::SIGXFSZ, SigHandler::SigIgn) }.map(|_| ())
}
