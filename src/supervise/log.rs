//! The supervisor's log lines: `smtpd-supervise: ...` on stderr, one write per
//! line, or (-s) datagrams to syslog's `/dev/log` with facility mail, the way
//! syslog(3) would send them. Children's stderr lines are forwarded the same way.

use std::io::Write;
use std::os::unix::net::UnixDatagram;

const FACILITY_MAIL: u8 = 2;
/// Longest line sent, so that one datagram holds it.
pub const MAX_LINE: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Fatal,
    Warning,
    Info,
}

impl Level {
    fn severity(self) -> u8 {
        match self {
            Level::Fatal => 2,   // LOG_CRIT
            Level::Warning => 4, // LOG_WARNING
            Level::Info => 6,    // LOG_INFO
        }
    }
}

/// Where lines go.
pub struct Log {
    prog: &'static str,
    syslog: Option<UnixDatagram>,
    pid: u32,
}

impl Log {
    pub fn stderr(prog: &'static str) -> Log {
        Log { prog, syslog: None, pid: std::process::id() }
    }

    /// Connect to /dev/log now (before privileges are dropped or a chroot).
    pub fn syslog(prog: &'static str) -> std::io::Result<Log> {
        Self::syslog_at(prog, std::path::Path::new("/dev/log"))
    }

    /// As [`Log::syslog`], to another socket (tests).
    pub fn syslog_at(prog: &'static str, path: &std::path::Path) -> std::io::Result<Log> {
        let s = UnixDatagram::unbound()?;
        s.connect(path)?;
        Ok(Log { prog, syslog: Some(s), pid: std::process::id() })
    }

    /// One line of ours: `msg` already carries its `warning:`/`fatal:` word
    /// where tcpserver's lines would.
    pub fn line(&self, level: Level, msg: &str) {
        self.send(self.prog, self.pid, level, msg.as_bytes());
    }

    /// A line a child wrote on its stderr (only with -s; otherwise children
    /// write to our stderr directly).
    pub fn child_line(&self, tag: &str, line: &[u8]) {
        self.send(tag, 0, Level::Info, line);
    }

    fn send(&self, tag: &str, pid: u32, level: Level, msg: &[u8]) {
        let msg = &msg[..msg.len().min(MAX_LINE)];
        if let Some(s) = &self.syslog {
            let pri = FACILITY_MAIL * 8 + level.severity();
            let mut d = if pid != 0 {
                format!("<{pri}>{tag}[{pid}]: ").into_bytes()
            } else {
                format!("<{pri}>{tag}: ").into_bytes()
            };
            d.extend_from_slice(msg);
            if s.send(&d).is_ok() {
                return;
            }
        }
        let mut d = Vec::with_capacity(msg.len() + tag.len() + 3);
        if pid != 0 {
            d.extend_from_slice(tag.as_bytes());
            d.extend_from_slice(b": ");
        }
        d.extend_from_slice(msg);
        d.push(b'\n');
        let _ = std::io::stderr().lock().write_all(&d);
    }
}

/// Splits a byte stream (children's stderr) into lines, bounded.
#[derive(Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Feed bytes; `emit` gets every complete line (without its newline), and
    /// over-long lines in pieces of [`MAX_LINE`].
    pub fn feed(&mut self, data: &[u8], mut emit: impl FnMut(&[u8])) {
        for &c in data {
            if c == b'\n' {
                emit(&self.buf);
                self.buf.clear();
            } else {
                self.buf.push(c);
                if self.buf.len() >= MAX_LINE {
                    emit(&self.buf);
                    self.buf.clear();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_datagrams_use_facility_mail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let rx = UnixDatagram::bind(&path).unwrap();
        let log = Log::syslog_at("smtpd-supervise", &path).unwrap();
        log.line(Level::Info, "status: 0/40");
        log.line(Level::Warning, "warning: x");
        log.child_line("smtpd-rs", b"smtpd-rs: info: hello");
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..3 {
            let n = rx.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let pid = std::process::id();
        assert_eq!(got[0], format!("<22>smtpd-supervise[{pid}]: status: 0/40"));
        assert_eq!(got[1], format!("<20>smtpd-supervise[{pid}]: warning: x"));
        assert_eq!(got[2], "<22>smtpd-rs: smtpd-rs: info: hello");
    }

    #[test]
    fn splitter() {
        let mut s = LineSplitter::default();
        let mut got: Vec<Vec<u8>> = Vec::new();
        s.feed(b"a\nbc", |l| got.push(l.to_vec()));
        s.feed(b"d\n\n", |l| got.push(l.to_vec()));
        assert_eq!(got, vec![b"a".to_vec(), b"bcd".to_vec(), b"".to_vec()]);
        let mut n = 0;
        s.feed(&vec![b'x'; MAX_LINE * 2 + 1], |_| n += 1);
        assert_eq!(n, 2);
    }
}
