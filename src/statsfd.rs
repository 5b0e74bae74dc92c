//! The report channel from sessions to smtpd-supervise (`SMTPD_STATS_FD`,
//! doc/PROTOCOLS.md section 6), both sides: the one-line report format
//! (pure: `SessionReport::encode`, `TlsReport::encode`, `parse`), the
//! sender (`Reporter`, which never blocks) and the supervisor's end
//! (`pair`, `recv`). Counting and exposing the figures is the supervisor's
//! business (src/supervise/stats.rs), not this module's.
//!
//! With `-M` or `-L`, smtpd-supervise gives every child (hand-off worker or
//! classic child) fd n of a Unix datagram socket, named by `SMTPD_STATS_FD=n`.
//! A session program that knows the variable writes one datagram at the end of
//! each session (smtpd-rs) or after each TLS handshake (tls-wrap); one that
//! does not simply never writes. A datagram is one line of ASCII, at most
//! `MAX_REPORT` octets: a record type, then `key=value` words:
//!
//! ```text
//! session end=quit messages=1 recipients=2 bytes=1234 refused_5xx_policy=1 auth_failure=1
//! tls result=ok version=TLSv1.3
//! ```
//!
//! Counters that are zero may be left out; unknown keys are ignored (so a
//! newer session program may add some); the words of the fixed sets
//! (`end`, `result`, `version`, the refusal classes and reasons) are the
//! only label values the supervisor ever exposes, whatever a report says.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{self as sock, sockopt, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType};

/// Variable naming the report socket's fd.
pub const ENV_FD: &str = "SMTPD_STATS_FD";
/// Longest report (a longer datagram is refused whole).
pub const MAX_REPORT: usize = 1024;
/// Most words in a report.
const MAX_WORDS: usize = 64;
/// Most digits in a count: 20 fit any u64; more is refused.
const MAX_DIGITS: usize = 20;

/// How a session ended (smtpd-rs(8), LOG: the words of the `end:` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum End {
    #[default]
    Quit,
    Eof,
    EofInMessage,
    Timeout,
    TooManyErrors,
    Pregreet,
    IoError,
    TlsFailed,
    /// A word this supervisor does not know.
    Other,
}

impl End {
    /// Every value, in the order of `as_str`'s table.
    pub const ALL: [End; 9] = [
        End::Quit,
        End::Eof,
        End::EofInMessage,
        End::Timeout,
        End::TooManyErrors,
        End::Pregreet,
        End::IoError,
        End::TlsFailed,
        End::Other,
    ];

    /// The word in reports and the `end` label.
    pub fn as_str(self) -> &'static str {
        match self {
            End::Quit => "quit",
            End::Eof => "eof",
            End::EofInMessage => "eof_in_message",
            End::Timeout => "timeout",
            End::TooManyErrors => "too_many_errors",
            End::Pregreet => "pregreet",
            End::IoError => "io_error",
            End::TlsFailed => "tls_failed",
            End::Other => "other",
        }
    }

    fn parse(w: &[u8]) -> End {
        End::ALL.into_iter().find(|e| e.as_str().as_bytes() == w).unwrap_or(End::Other)
    }

    /// Index into per-end tables.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Reply classes of refusals: 4xx (temporary) and 5xx (permanent).
pub const CLASSES: [&str; 2] = ["4xx", "5xx"];

/// Why a command or a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Refused by the rules: relaying, unknown mailbox, RCPTCHECK, TLS or
    /// AUTH required first, HELO check, mail loop, recipient limit.
    Policy,
    /// Over the size limit (SIZE at MAIL, or the message itself).
    Size,
    /// Bad syntax or sequence: commands, arguments, addresses, lines, bare
    /// CR or LF in a message.
    Syntax,
    /// The queue program failed or refused the message.
    Queue,
    /// An AUTH exchange that failed (bad credentials, cancelled, temporary).
    Auth,
}

impl Reason {
    pub const ALL: [Reason; 5] = [Reason::Policy, Reason::Size, Reason::Syntax, Reason::Queue, Reason::Auth];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Policy => "policy",
            Reason::Size => "size",
            Reason::Syntax => "syntax",
            Reason::Queue => "queue",
            Reason::Auth => "auth",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// AUTH results.
pub const AUTH_RESULTS: [&str; 3] = ["success", "failure", "tempfail"];

/// What one session did, sent by the session program when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionReport {
    pub end: End,
    /// Messages queued, their recipients and their size in octets.
    pub messages: u64,
    pub recipients: u64,
    pub bytes: u64,
    /// Messages whose data was read and then refused (size, bare LF, loop, queue).
    pub messages_refused: u64,
    /// Refused commands and messages by class (`CLASSES`) and reason (`Reason::index`).
    pub refused: [[u64; 5]; 2],
    /// AUTH checks by result (`AUTH_RESULTS`).
    pub auth: [u64; 3],
}

/// TLS protocol versions, as the label `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V12,
    V13,
    /// Not negotiated (a handshake that failed early) or not known.
    Unknown,
}

impl TlsVersion {
    pub const ALL: [TlsVersion; 3] = [TlsVersion::V12, TlsVersion::V13, TlsVersion::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::V12 => "TLSv1.2",
            TlsVersion::V13 => "TLSv1.3",
            TlsVersion::Unknown => "unknown",
        }
    }

    /// From a protocol name as UCSPI-TLS's `SSL_PROTOCOL` spells it.
    pub fn from_name(s: &str) -> TlsVersion {
        TlsVersion::ALL.into_iter().find(|v| v.as_str() == s).unwrap_or(TlsVersion::Unknown)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// One TLS handshake, sent by tls-wrap once it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsReport {
    pub ok: bool,
    pub version: TlsVersion,
}

/// A parsed report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Session(SessionReport),
    Tls(TlsReport),
}

/// Why a datagram is not a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    TooLong,
    NotText,
    UnknownType,
    TooManyWords,
    BadWord,
    BadNumber,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::TooLong => "report too long",
            ParseError::NotText => "report is not printable ASCII",
            ParseError::UnknownType => "unknown record type",
            ParseError::TooManyWords => "too many words",
            ParseError::BadWord => "a word is not key=value",
            ParseError::BadNumber => "a count is not a number",
        })
    }
}

impl SessionReport {
    /// The report line (with its LF); zero counters are left out.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!("session end={}", self.end.as_str());
        let mut put = |k: &str, v: u64| {
            if v > 0 {
                s.push_str(&format!(" {k}={v}"));
            }
        };
        put("messages", self.messages);
        put("recipients", self.recipients);
        put("bytes", self.bytes);
        put("messages_refused", self.messages_refused);
        for (c, class) in CLASSES.iter().enumerate() {
            for r in Reason::ALL {
                put(&format!("refused_{class}_{}", r.as_str()), self.refused[c][r.index()]);
            }
        }
        for (i, a) in AUTH_RESULTS.iter().enumerate() {
            put(&format!("auth_{a}"), self.auth[i]);
        }
        s.push('\n');
        s.into_bytes()
    }
}

impl TlsReport {
    pub fn encode(&self) -> Vec<u8> {
        format!("tls result={} version={}\n", if self.ok { "ok" } else { "failed" }, self.version.as_str()).into_bytes()
    }
}

/// Parse one datagram. Bounded: at most `MAX_REPORT` octets and
/// `MAX_WORDS` words; every count fits a u64 or the report is refused.
pub fn parse(b: &[u8]) -> Result<Report, ParseError> {
    if b.len() > MAX_REPORT {
        return Err(ParseError::TooLong);
    }
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    if !b.iter().all(|&c| (0x20..0x7f).contains(&c)) {
        return Err(ParseError::NotText);
    }
    let mut words = b.split(|&c| c == b' ').filter(|w| !w.is_empty());
    let kind = words.next().ok_or(ParseError::UnknownType)?;
    let mut pairs = Vec::new();
    for w in words {
        if pairs.len() >= MAX_WORDS {
            return Err(ParseError::TooManyWords);
        }
        let eq = w.iter().position(|&c| c == b'=').ok_or(ParseError::BadWord)?;
        pairs.push((&w[..eq], &w[eq + 1..]));
    }
    match kind {
        b"session" => {
            let mut r = SessionReport::default();
            for (k, v) in pairs {
                if k == b"end" {
                    r.end = End::parse(v);
                    continue;
                }
                let n = number(v)?;
                let slot = match k {
                    b"messages" => &mut r.messages,
                    b"recipients" => &mut r.recipients,
                    b"bytes" => &mut r.bytes,
                    b"messages_refused" => &mut r.messages_refused,
                    _ => match refusal_slot(k).or_else(|| auth_slot(k)) {
                        Some(Slot::Refused(c, i)) => &mut r.refused[c][i],
                        Some(Slot::Auth(i)) => &mut r.auth[i],
                        None => continue,
                    },
                };
                *slot = slot.saturating_add(n);
            }
            Ok(Report::Session(r))
        }
        b"tls" => {
            let mut r = TlsReport { ok: false, version: TlsVersion::Unknown };
            for (k, v) in pairs {
                match k {
                    b"result" => r.ok = v == b"ok",
                    b"version" => r.version = std::str::from_utf8(v).map_or(TlsVersion::Unknown, TlsVersion::from_name),
                    _ => {}
                }
            }
            Ok(Report::Tls(r))
        }
        _ => Err(ParseError::UnknownType),
    }
}

enum Slot {
    Refused(usize, usize),
    Auth(usize),
}

/// `refused_<class>_<reason>`.
fn refusal_slot(k: &[u8]) -> Option<Slot> {
    let rest = k.strip_prefix(b"refused_")?;
    let c = CLASSES.iter().position(|c| rest.starts_with(c.as_bytes()) && rest.get(c.len()) == Some(&b'_'))?;
    let reason = rest.get(CLASSES[c].len() + 1..)?;
    let r = Reason::ALL.iter().find(|r| r.as_str().as_bytes() == reason)?;
    Some(Slot::Refused(c, r.index()))
}

fn auth_slot(k: &[u8]) -> Option<Slot> {
    let rest = k.strip_prefix(b"auth_")?;
    AUTH_RESULTS.iter().position(|a| a.as_bytes() == rest).map(Slot::Auth)
}

fn number(v: &[u8]) -> Result<u64, ParseError> {
    if v.is_empty() || v.len() > MAX_DIGITS || !v.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::BadNumber);
    }
    v.iter().try_fold(0u64, |a, &d| a.checked_mul(10)?.checked_add(u64::from(d - b'0'))).ok_or(ParseError::BadNumber)
}

// ---------------------------------------------------------------------------
// Supervisor side

/// A new report channel: (the supervisor's end: non-blocking, close-on-exec,
/// with SO_PASSCRED so that each datagram names its sender's pid; the
/// children's end, close-on-exec in the supervisor, to be dup'd into each
/// child by number and named in `SMTPD_STATS_FD`). Every child shares the one
/// sending end; a datagram goes only to the supervisor's end, so no session
/// can read another's report.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (ours, theirs) =
        sock::socketpair(AddressFamily::Unix, SockType::Datagram, None, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK)?;
    sock::setsockopt(&ours, sockopt::PassCred, &true)?;
    // The sending end blocks no one either way (senders use MSG_DONTWAIT),
    // but a child that uses it with plain write(2) must not hang: keep it
    // non-blocking as well.
    Ok((ours, theirs))
}

/// One datagram from the channel, if any: its length in `buf` (cut to
/// `buf`'s size: a longer one shows as `MAX_REPORT + 1` octets and fails
/// `parse`), and the sender's pid when the kernel says it.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<(usize, Option<i32>)>> {
    let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
    loop {
        let mut iov = [io::IoSliceMut::new(buf)];
        match sock::recvmsg::<()>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT) {
            Ok(msg) => {
                let mut pid = None;
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmCredentials(cred) = c {
                            pid = Some(cred.pid());
                        }
                    }
                }
                let n = if msg.flags.contains(MsgFlags::MSG_TRUNC) { MAX_REPORT + 1 } else { msg.bytes };
                return Ok(Some((n, pid)));
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

// ---------------------------------------------------------------------------
// Session side

/// The sending end, taken from `SMTPD_STATS_FD`.
#[derive(Debug)]
pub struct Reporter {
    fd: OwnedFd,
}

impl Reporter {
    /// `Ok(None)` when `SMTPD_STATS_FD` is unset. The fd must be open and a
    /// Unix datagram socket (so that a stray variable can never make a
    /// program write its report into, say, the client's connection); else
    /// `Err`, and the fd is left alone. `pass_on`: keep the fd inheritable
    /// and the variable set, for a program that runs the next program of
    /// the chain (tls-wrap runs smtpd-rs); otherwise the fd becomes
    /// close-on-exec and the variable is removed, so that nothing this
    /// program starts (queue-inject, checkpassword) sees either.
    pub fn from_env(pass_on: bool) -> Result<Option<Reporter>, &'static str> {
        let Some(v) = std::env::var_os(ENV_FD) else { return Ok(None) };
        if !pass_on {
            std::env::remove_var(ENV_FD);
        }
        let fd: i32 = v.to_str().and_then(|s| s.parse().ok()).ok_or("SMTPD_STATS_FD is not a number")?;
        if fd < 3 {
            return Err("SMTPD_STATS_FD below 3");
        }
        if !crate::sys::is_unix_dgram(fd) {
            return Err("SMTPD_STATS_FD is not a Unix datagram socket");
        }
        let fd = crate::sys::take_inherited_fd(fd).ok_or("SMTPD_STATS_FD names a closed fd")?;
        if !pass_on {
            fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|_| "SMTPD_STATS_FD: fcntl failed")?;
        }
        Ok(Some(Reporter { fd }))
    }

    /// Wrap a socket already owned (tests).
    pub fn from_fd(fd: OwnedFd) -> Reporter {
        Reporter { fd }
    }

    /// Send one report. Never blocks and never fails the caller: a full
    /// queue or a supervisor that is gone loses the report, nothing else.
    pub fn send(&self, line: &[u8]) {
        let _ = sock::send(self.fd.as_raw_fd(), line, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn session_round_trip() {
        let mut r = SessionReport { end: End::TooManyErrors, messages: 2, recipients: 3, bytes: 4567, ..Default::default() };
        r.refused[1][Reason::Policy.index()] = 5;
        r.refused[0][Reason::Queue.index()] = 1;
        r.auth[1] = 1;
        let line = r.encode();
        assert_eq!(
            String::from_utf8_lossy(&line),
            "session end=too_many_errors messages=2 recipients=3 bytes=4567 refused_4xx_queue=1 refused_5xx_policy=5 auth_failure=1\n"
        );
        assert_eq!(parse(&line), Ok(Report::Session(r)));
        let t = TlsReport { ok: true, version: TlsVersion::V13 };
        assert_eq!(t.encode(), b"tls result=ok version=TLSv1.3\n");
        assert_eq!(parse(&t.encode()), Ok(Report::Tls(t)));
    }

    #[test]
    fn hostile_reports() {
        assert_eq!(parse(&[b'x'; MAX_REPORT + 1]), Err(ParseError::TooLong));
        assert_eq!(parse(b"session end=quit\x00"), Err(ParseError::NotText));
        assert_eq!(parse(b"session end=quit\nmessages=1"), Err(ParseError::NotText));
        assert_eq!(parse(b"bogus x=1"), Err(ParseError::UnknownType));
        assert_eq!(parse(b""), Err(ParseError::UnknownType));
        assert_eq!(parse(b"session messages"), Err(ParseError::BadWord));
        assert_eq!(parse(b"session messages=-1"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"session messages=18446744073709551616"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"session messages=1e3"), Err(ParseError::BadNumber));
        let many = format!("session{}", " a=1".repeat(MAX_WORDS + 1));
        assert_eq!(parse(many.as_bytes()), Err(ParseError::TooManyWords));
        // Unknown words are label values nobody exposes: they map to the fixed sets.
        let Ok(Report::Session(r)) = parse(b"session end=<script> refused_5xx_evil=9 refused_6xx_policy=9 auth_x=1 future=7 messages=18446744073709551615")
        else {
            panic!("a session report");
        };
        assert_eq!(r.end, End::Other);
        assert_eq!(r.refused, [[0; 5]; 2]);
        assert_eq!(r.auth, [0; 3]);
        assert_eq!(r.messages, u64::MAX);
        assert_eq!(parse(b"tls result=ok version=SSLv3"), Ok(Report::Tls(TlsReport { ok: true, version: TlsVersion::Unknown })));
        assert_eq!(parse(b"tls result=maybe"), Ok(Report::Tls(TlsReport { ok: false, version: TlsVersion::Unknown })));
    }

    #[test]
    fn a_report_crosses_the_channel_with_its_pid() {
        let (ours, theirs) = pair().unwrap();
        let r = Reporter::from_fd(theirs);
        let mut buf = [0u8; MAX_REPORT + 1];
        assert_eq!(recv(ours.as_fd(), &mut buf).unwrap(), None);
        r.send(b"tls result=ok version=TLSv1.2\n");
        let (n, pid) = recv(ours.as_fd(), &mut buf).unwrap().unwrap();
        assert_eq!(&buf[..n], b"tls result=ok version=TLSv1.2\n");
        assert_eq!(pid, Some(std::process::id() as i32));
        // Too long: seen as too long, never cut into a valid shorter one.
        r.send(&vec![b'a'; MAX_REPORT + 100]);
        let (n, _) = recv(ours.as_fd(), &mut buf).unwrap().unwrap();
        assert_eq!(parse(&buf[..n]), Err(ParseError::TooLong));
    }

    #[test]
    fn a_full_channel_never_blocks_the_sender() {
        let (_ours, theirs) = pair().unwrap();
        let r = Reporter::from_fd(theirs);
        let t = std::time::Instant::now();
        for _ in 0..5000 {
            r.send(b"session end=quit\n");
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }
}
