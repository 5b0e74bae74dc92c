//! Run the checkpassword program (djb's interface, as the fehcom AUTH patch
//! drives it): `prog args...` from smtpd-rs's own arguments, with
//! `user\0secret\0challenge\0` on its fd 3, SMTPAUTHMETHOD in its
//! environment, stdin and stdout on /dev/null, stderr shared (its log).
//! Exit 0: accepted (a real checkpassword has exec'd its subprogram, e.g.
//! `true`); 1: rejected; 2: misuse; 111: temporary failure. Any other exit
//! is a rejection (as the patch treats it); a crash or a timeout is a
//! temporary failure. It runs in a process group of its own, which a
//! timeout kills whole: nothing it started outlives it.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
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
        .stdout(Stdio::null())
        .process_group(0);
    crate::sys::child_fd(&mut cmd, r.as_raw_fd(), 3);
    let mut child = cmd.spawn()?;
    drop(r);
    let mut input = creds.encode();
    // At most a few KiB: the pipe takes it whole even if the child never
    // reads. A child that exits first gives EPIPE, which changes nothing.
    let _ = std::fs::File::from(w).write_all(&input);
    input.iter_mut().for_each(|b| *b = 0);
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel::<io::Result<ExitStatus>>();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(s) => s,
        Err(_) => {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = rx.recv();
            let _ = waiter.join();
            return Ok(Verdict::TempFail);
        }
    };
    let _ = waiter.join();
    Ok(classify(status?.code()))
}

/// SIGKILL the process group that `child` leads (started with
/// `process_group(0)`): the child and whatever it started that stayed in it.
pub fn kill_group(child: &Child) {
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
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

    /// Processes whose command line holds `marker`.
    fn running(marker: &str) -> Vec<i32> {
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if cmd.split(|&b| b == 0).any(|a| a == marker.as_bytes()) {
                v.push(pid);
            }
        }
        v
    }

    #[test]
    fn a_hung_checker_is_killed_with_what_it_started() {
        let d = tempfile::tempdir().unwrap();
        let marker = format!("40.{}", std::process::id());
        let script = d.path().join("checkpassword");
        // Run by /bin/sh, not executed itself: a file just written here may
        // still be open in a child another test thread forked (ETXTBSY).
        std::fs::write(&script, format!("sleep {marker} &\nsleep {marker} &\nsleep {marker}\n")).unwrap();
        let creds = Credentials { mech: auth::Mech::Plain, user: b"u".to_vec(), secret: b"p".to_vec(), challenge: Vec::new() };
        let t = std::time::Instant::now();
        let v = check(&["/bin/sh".into(), script.into_os_string()], &creds, Duration::from_secs(1)).unwrap();
        assert_eq!(v, Verdict::TempFail);
        assert!(t.elapsed() < Duration::from_secs(10));
        let mut left = running(&marker);
        for _ in 0..50 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            left = running(&marker);
        }
        for &pid in &left {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        assert!(left.is_empty(), "left running: {left:?}");
    }
}
