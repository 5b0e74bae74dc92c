//! Run the checkpassword program (djb's interface, as the fehcom AUTH patch
//! drives it): `prog args...` from smtpd-rs's own arguments, with
//! `user\0secret\0challenge\0` on its fd 3, SMTPAUTHMETHOD in its
//! environment, stdin and stdout on /dev/null, stderr shared (its log).
//! Exit 0: accepted (a real checkpassword has exec'd its subprogram, e.g.
//! `true`); 1: rejected; 2: misuse; 111: temporary failure. Any other exit
//! is a rejection (as the patch treats it); a crash or a timeout is a
//! temporary failure.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::fcntl::OFlag;

use crate::smtpd::auth::{self, Credentials};

/// What checkpassword said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Rejected,
    Misuse,
    TempFail,
}

impl Verdict {
    /// The SMTP reply for it (the session adds the delay before a 535).
    pub fn reply(self) -> &'static str {
        match self {
            Verdict::Accepted => auth::AUTH_OK,
            Verdict::Rejected => auth::AUTH_FAILED,
            Verdict::Misuse | Verdict::TempFail => auth::AUTH_TEMP,
        }
    }
}

/// Longest a checkpassword program may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The meaning of checkpassword's exit status.
pub fn classify(code: Option<i32>) -> Verdict {
    match code {
        Some(0) => Verdict::Accepted,
        Some(2) => Verdict::Misuse,
        Some(111) => Verdict::TempFail,
        Some(_) => Verdict::Rejected,
        None => Verdict::TempFail, // killed by a signal
    }
}

/// Run `argv` with `creds` on fd 3 and wait (at most `timeout`) for its
/// verdict. Err only when it could not be started at all.
pub fn check(argv: &[OsString], creds: &Credentials, timeout: Duration) -> io::Result<Verdict> {
    let Some((prog, args)) = argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no checkpassword program given"));
    };
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env("SMTPAUTHMETHOD", creds.mech.lower_name())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    crate::sys::child_fd(&mut cmd, r.as_raw_fd(), 3);
    let mut child = cmd.spawn()?;
    drop(r);
    let mut input = creds.encode();
    // At most a few KiB: the pipe takes it whole even if the child never
    // reads. A child that exits first gives EPIPE, which changes nothing.
    let _ = std::fs::File::from(w).write_all(&input);
    input.iter_mut().for_each(|b| *b = 0);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel::<io::Result<ExitStatus>>();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(s) => s,
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = rx.recv();
            let _ = waiter.join();
            return Ok(Verdict::TempFail);
        }
    };
    let _ = waiter.join();
    Ok(classify(status?.code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(classify(Some(0)), Verdict::Accepted);
        assert_eq!(classify(Some(1)), Verdict::Rejected);
        assert_eq!(classify(Some(2)), Verdict::Misuse);
        assert_eq!(classify(Some(111)), Verdict::TempFail);
        assert_eq!(classify(Some(100)), Verdict::Rejected);
        assert_eq!(classify(None), Verdict::TempFail);
        assert!(Verdict::Rejected.reply().starts_with("535 5.7.8"));
        assert!(Verdict::TempFail.reply().starts_with("454 4.7.0"));
    }
}
