//! Hand one message to a qmail-queue-protocol program (queue-inject, or
//! `QMAILQUEUE`): message on its fd 0, then the envelope on its fd 1, the
//! attribute block in `QUEUE_ATTRS`; its exit code says whether the message
//! is durable (0), refused for good (11 to 40) or refused for now (others).
//! Used by queue-run for DSNs and by sendmail.

use nix::fcntl::OFlag;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::process::{Child, ChildStdin, Command, Stdio};

/// Why the queue program did not take the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Exit 11 to 40 (qmail-queue's permanent codes).
    Permanent(i32, String),
    /// Any other failure: try again later.
    Temporary(i32, String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Permanent(c, t) | Refused::Temporary(c, t) => write!(f, "{t} (exit {c})"),
        }
    }
}

/// qmail-queue's exit codes, as qmail-smtpd and qmail-inject read them.
pub fn classify(code: i32) -> Result<(), Refused> {
    let text = match code {
        0 => return Ok(()),
        11 => "address too long",
        31 => "message refused",
        51 => "out of memory",
        52 => "timeout",
        53 => "write error or disk full",
        54 => "unable to read the message or envelope",
        55 => "unable to read a configuration file",
        56 => "problem making a network connection",
        61 => "problem with the queue directory",
        62..=66 => "trouble with the queue",
        81 => "internal bug",
        82 => "refused by a filter",
        91 => "envelope format error",
        _ => "queue program failed",
    };
    if (11..=40).contains(&code) {
        Err(Refused::Permanent(code, text.into()))
    } else {
        Err(Refused::Temporary(code, text.into()))
    }
}

/// A running queue program waiting for the message, then the envelope.
pub struct Injection {
    child: Child,
    stdin: Option<ChildStdin>,
    envelope: Option<File>,
}

impl Injection {
    /// Start `prog` with `vars` added to its environment and `QUEUE_ATTRS`
    /// set to `attrs` (if any).
    pub fn start(prog: &OsStr, attrs: Option<&str>, vars: &[(OsString, OsString)]) -> io::Result<Injection> {
        // The envelope pipe: close-on-exec in this process, so that no other
        // child (a delivery started meanwhile) keeps its write end open.
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        let mut cmd = Command::new(prog);
        cmd.stdin(Stdio::piped()).stdout(Stdio::from(r)).stderr(Stdio::inherit());
        cmd.envs(vars.iter().map(|(k, v)| (k, v)));
        match attrs {
            Some(a) => cmd.env("QUEUE_ATTRS", a),
            None => cmd.env_remove("QUEUE_ATTRS"),
        };
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        Ok(Injection { child, stdin, envelope: Some(File::from(w)) })
    }

    /// End the message, send the envelope, wait for the verdict.
    pub fn finish(mut self, envelope: &[u8]) -> Result<(), Refused> {
        drop(self.stdin.take());
        if let Some(mut e) = self.envelope.take() {
            // A write error (the program exited early) shows in its exit code.
            let _ = e.write_all(envelope);
        }
        match self.child.wait() {
            Ok(st) => match st.code() {
                Some(c) => classify(c),
                None => Err(Refused::Temporary(-1, "queue program crashed".into())),
            },
            Err(e) => Err(Refused::Temporary(-1, format!("unable to wait for the queue program: {e}"))),
        }
    }
}

/// The message goes here (LF line ends), before `finish`.
impl Write for Injection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.stdin.as_mut() {
            Some(s) => s.write(buf),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.stdin.as_mut() {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(classify(0), Ok(()));
        assert!(matches!(classify(11), Err(Refused::Permanent(11, _))));
        assert!(matches!(classify(31), Err(Refused::Permanent(31, _))));
        assert!(matches!(classify(53), Err(Refused::Temporary(53, _))));
        assert!(matches!(classify(82), Err(Refused::Temporary(82, _))));
        assert!(matches!(classify(100), Err(Refused::Temporary(100, _))));
    }
}
