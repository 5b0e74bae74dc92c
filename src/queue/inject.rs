//! queue-inject's input side: the qmail-queue protocol (message on fd 0 to
//! its end, then the envelope on fd 1), session mode (netstring frames on
//! fd 0, one answer per message on fd 1, doc/PROTOCOLS.md section 2), and the
//! clean-up of leftovers. Every read waits at most a set time (poll first).

use super::{
    Error, Queue, Work, BUF_SIZE, EXIT_ADDR_TOO_LONG, EXIT_CONFIG, EXIT_ENVELOPE, EXIT_READ, EXIT_REFUSED,
    EXIT_TIMEOUT, EXIT_WRITE, LEFTOVER_AGE,
};
use crate::envelope::{self, Attrs, Envelope};
use crate::netstring;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::time::Duration;

/// Name in diagnostics.
const PROG: &str = "queue-inject";
/// Default wait for one read inside a message (`QUEUE_TIMEOUT`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1200);
/// Wait for the next message in session mode (qmail-queue's overall limit).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(86400);
/// Most recipients in one envelope: bounds memory (each address is at most
/// 1003 octets); more is a permanent refusal (31).
pub const MAX_RCPT: usize = 10000;
/// Largest `D` frame payload: the type octet and 65536 octets of message.
pub const MAX_DATA_FRAME: usize = 1 + 65536;
/// Largest `E` or `A` frame payload.
pub const MAX_META_FRAME: usize = 1 << 20;

/// What queue-inject reads from its environment, once.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub attrs: Attrs,
    pub timeout: Duration,
}

impl Config {
    /// `QUEUE_DIR`, `QUEUE_ATTRS` (a bad block is exit 91), `QUEUE_TIMEOUT`
    /// (seconds, 1..=86400; anything else is exit 55).
    pub fn from_vars(
        dir: Option<OsString>,
        attrs: Option<OsString>,
        timeout: Option<OsString>,
    ) -> Result<Config, Error> {
        let dir = dir
            .filter(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from(super::DEFAULT_QUEUE_DIR), PathBuf::from);
        let attrs = match attrs {
            None => Attrs::default(),
            Some(a) => Attrs::parse(a.as_encoded_bytes())
                .ok_or_else(|| Error::new(EXIT_ENVELOPE, "QUEUE_ATTRS is not a valid attribute block"))?,
        };
        let timeout = match timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => t
                .to_str()
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|s| (1..=86400).contains(s))
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    Error::new(EXIT_CONFIG, "QUEUE_TIMEOUT is not a number of seconds from 1 to 86400")
                })?,
        };
        Ok(Config { dir, attrs, timeout })
    }

    pub fn from_env() -> Result<Config, Error> {
        Config::from_vars(
            std::env::var_os("QUEUE_DIR"),
            std::env::var_os("QUEUE_ATTRS"),
            std::env::var_os("QUEUE_TIMEOUT"),
        )
    }
}

/// The qmail-queue protocol: the message from fd 0 to its end, then the
/// envelope from fd 1; returns the queue id once the message is durable.
pub fn per_message(cfg: &Config) -> Result<String, Error> {
    let mut q = Queue::open(&cfg.dir)?;
    let mut input = read_input(cfg.timeout, || q.spool())?;
    let mut work = q.begin(&input.envelope, &cfg.attrs)?;
    if let Some(s) = input.spool.as_mut() {
        work.copy_from(s)?;
    }
    work.write(input.tail())?;
    q.commit(work)
}

/// What the qmail-queue protocol brought: the message (its first part in
/// an anonymous spool file when it is larger than one buffer, the rest in
/// `buf`), then the envelope.
pub struct Input {
    pub spool: Option<File>,
    buf: Vec<u8>,
    n: usize,
    pub envelope: Envelope,
}

impl Input {
    /// The message octets after those in the spool file.
    pub fn tail(&self) -> &[u8] {
        self.buf.get(..self.n).unwrap_or_default()
    }
}

/// Read the message from fd 0 to its end, then the envelope from fd 1
/// (qmail-queue's order). The header comes first in the file but the
/// envelope comes last: a message that fits the buffer stays in memory, a
/// larger one goes to the anonymous file `spool` makes (queue-inject's in
/// tmp/, queue-drop's in maildrop/) and is copied after the header.
pub fn read_input(timeout: Duration, mut spool: impl FnMut() -> Result<File, Error>) -> Result<Input, Error> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut buf = vec![0u8; BUF_SIZE];
    let mut n = 0;
    let mut file: Option<File> = None;
    while let Some(dst) = buf.get_mut(n..) {
        let r = read_timed(stdin.as_fd(), dst, timeout, "message")?;
        if r == 0 {
            break;
        }
        n += r;
        if n == buf.len() {
            let s = match file.as_mut() {
                Some(s) => s,
                None => file.insert(spool()?),
            };
            s.write_all(&buf).map_err(|e| super::write_error(&e))?;
            n = 0;
        }
    }
    let envelope = read_envelope(stdout.as_fd(), timeout)?;
    Ok(Input { spool: file, buf, n, envelope })
}

/// Read the envelope `F...\0T...\0...\0` from `fd`, up to its final `\0`
/// (like qmail-queue, octets after it are not read). Also auth-check's.
pub fn read_envelope(fd: BorrowedFd<'_>, timeout: Duration) -> Result<Envelope, Error> {
    let mut p = envelope::Parser::new(MAX_RCPT);
    let mut buf = [0u8; 4096];
    loop {
        let r = read_timed(fd, &mut buf, timeout, "envelope")?;
        if r == 0 {
            return Err(Error::new(EXIT_READ, "unable to read the envelope: end of input before its end"));
        }
        for &b in buf.get(..r).unwrap_or_default() {
            if p.push(b).map_err(envelope_error)? {
                return p.finish().map_err(envelope_error);
            }
        }
    }
}

fn envelope_error(e: envelope::Error) -> Error {
    match e {
        envelope::Error::AddressTooLong => Error::new(EXIT_ADDR_TOO_LONG, e),
        envelope::Error::TooManyRecipients => Error::new(EXIT_REFUSED, e),
        envelope::Error::Format | envelope::Error::NoRecipients => Error::new(EXIT_ENVELOPE, e),
    }
}

/// One read, after waiting at most `timeout` for input (exit 52 past it).
pub fn read_timed(fd: BorrowedFd<'_>, buf: &mut [u8], timeout: Duration, what: &str) -> Result<usize, Error> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    loop {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)) {
            Ok(0) => return Err(Error::new(EXIT_TIMEOUT, format_args!("timeout reading the {what}"))),
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::new(EXIT_READ, format_args!("unable to read the {what}: {e}"))),
        }
        match nix::unistd::read(fd, buf) {
            Ok(r) => return Ok(r),
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(e) => return Err(Error::new(EXIT_READ, format_args!("unable to read the {what}: {e}"))),
        }
    }
}

/// `queue-inject -c`: open the queue and remove old leftovers in tmp/.
pub fn clean(cfg: &Config) -> Result<usize, Error> {
    Queue::open(&cfg.dir)?.clean(LEFTOVER_AGE)
}

/// How a session ended: the exit code and, when not 0, the reason.
pub type Outcome = Result<(), Error>;

/// Session mode on fd 0 (frames) and fd 1 (answers). Returns at EOF between
/// messages (Ok) or with the error that ends the session. The caller has
/// opened the queue (so that a queue that cannot be used ends the session
/// before any frame is read) and reports each warning.
pub fn session(cfg: &Config, q: &mut Queue) -> Outcome {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut frames = Frames::new();
    let mut state = State::Idle;
    loop {
        let wait = if matches!(state, State::Idle) { IDLE_TIMEOUT } else { cfg.timeout };
        let next = match frames.next(stdin.as_fd(), wait) {
            Ok(n) => n,
            Err(e) => {
                if e.code == EXIT_ENVELOPE {
                    let _ = answer(stdout.as_fd(), &Err(e.clone()));
                }
                return Err(e);
            }
        };
        let Some((kind, range)) = next else {
            return match state {
                State::Idle => Ok(()),
                _ => Err(Error::new(EXIT_READ, "end of input in the middle of a message")),
            };
        };
        let payload = frames.buf.get(range).unwrap_or_default();
        state = match step(cfg, q, state, kind, payload) {
            Step::Next(s) => s,
            Step::Answer(a) => {
                if let Err(e) = &a {
                    crate::die::warn(PROG, format_args!("message not queued: {} {e}", e.code));
                }
                answer(stdout.as_fd(), &a)?;
                State::Idle
            }
            Step::Fatal(e) => {
                // Best effort: the peer may already be gone.
                let _ = answer(stdout.as_fd(), &Err(e.clone()));
                return Err(e);
            }
        };
    }
}

enum State {
    /// Between messages.
    Idle,
    /// After `I`: the id the client proposes for the next message.
    Named(String),
    /// After `E` (and maybe `A`): the work file is created at the next frame.
    Meta(Envelope, Option<Attrs>, Option<String>),
    /// Writing message bytes.
    Body(Work),
    /// The message failed; its frames are read and dropped up to `.`.
    Failed(Error),
}

enum Step {
    Next(State),
    Answer(Result<String, Error>),
    Fatal(Error),
}

fn protocol(msg: &str) -> Step {
    Step::Fatal(Error::new(EXIT_ENVELOPE, format_args!("protocol error: {msg}")))
}

/// The session's state machine: one frame in, the next state out.
fn step(cfg: &Config, q: &mut Queue, state: State, kind: u8, payload: &[u8]) -> Step {
    if kind == b'D' && payload.len() + 1 > MAX_DATA_FRAME {
        return protocol("D frame longer than 65536 octets");
    }
    match (state, kind) {
        (State::Idle, b'I') => match std::str::from_utf8(payload) {
            Ok(id) if id.len() <= 200 => Step::Next(State::Named(id.to_owned())),
            _ => protocol("bad I frame"),
        },
        (State::Idle, b'E') => start(payload, None),
        (State::Named(id), b'E') => start(payload, Some(id)),
        (State::Named(_), _) => protocol("I frame not followed by E"),
        (State::Idle, _) => protocol("frame outside a message"),
        (State::Meta(env, None, id), b'A') => match Attrs::parse(payload) {
            Some(a) => Step::Next(State::Meta(env, Some(a), id)),
            None => protocol("bad attribute block"),
        },
        (State::Meta(..), b'R') => Step::Next(State::Idle),
        (State::Meta(env, attrs, id), b'D' | b'.') => {
            let attrs = attrs.as_ref().unwrap_or(&cfg.attrs);
            match q.begin_as(&env, attrs, id.as_deref()) {
                Ok(w) => step(cfg, q, State::Body(w), kind, payload),
                Err(e) => step(cfg, q, State::Failed(e), kind, payload),
            }
        }
        (State::Body(mut w), b'D') => match w.write(payload) {
            Ok(()) => Step::Next(State::Body(w)),
            Err(e) => Step::Next(State::Failed(e)),
        },
        (State::Body(w), b'.') => Step::Answer(q.commit(w)),
        (State::Failed(e), b'.') => Step::Answer(Err(e)),
        (State::Failed(e), b'D' | b'A') => Step::Next(State::Failed(e)),
        (State::Body(_) | State::Failed(_), b'R') => Step::Next(State::Idle),
        (State::Meta(..) | State::Body(_) | State::Failed(_), _) => protocol("unexpected frame in a message"),
    }
}

/// Write one answer: `0 <id>` or `<code> <reason>`.
fn answer(fd: BorrowedFd<'_>, a: &Result<String, Error>) -> Result<(), Error> {
    match a {
        Ok(id) => write_answer(fd, 0, id),
        Err(e) => write_answer(fd, e.code, &e.msg),
    }
}

/// One answer frame of the session protocol, `<code> <text>` (doc/PROTOCOLS.md
/// section 2): queue-inject's, and auth-check's, which speaks it in front.
pub fn write_answer(fd: BorrowedFd<'_>, code: i32, text: &str) -> Result<(), Error> {
    let out = netstring::encode(format!("{code} {text}").as_bytes());
    let mut rest: &[u8] = &out;
    while !rest.is_empty() {
        match nix::unistd::write(fd, rest) {
            Ok(n) => rest = rest.get(n..).unwrap_or_default(),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::new(EXIT_WRITE, format_args!("unable to write the answer: {e}"))),
        }
    }
    Ok(())
}

/// Netstring frames from fd 0 through one buffer: a few KiB, enough for a
/// small message's frames in one read, grown to 64 KiB and a little for
/// long `D` frames, and beyond that only while an `E` or `A` frame larger
/// than that is read. (Zeroing 64 KiB at every start cost a session's
/// queue-inject a tenth of its CPU.)
struct Frames {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

const FRAME_BUF: usize = MAX_DATA_FRAME + 16;
/// The buffer's size at the start.
const FIRST_BUF: usize = 8192;

impl Frames {
    fn new() -> Frames {
        Frames { buf: vec![0; FIRST_BUF], start: 0, end: 0 }
    }

    /// The next frame's type and the range of the rest of its payload in
    /// `self.buf`; `None` at EOF on a frame boundary.
    fn next(
        &mut self,
        fd: BorrowedFd<'_>,
        wait: Duration,
    ) -> Result<Option<(u8, std::ops::Range<usize>)>, Error> {
        loop {
            let pending = self.buf.get(self.start..self.end).unwrap_or_default();
            match netstring::parse(pending, MAX_META_FRAME) {
                Ok(Some((r, used))) => {
                    let (s, e) = (self.start + r.start, self.start + r.end);
                    self.start += used;
                    let Some(&kind) = self.buf.get(s) else {
                        return Err(Error::new(EXIT_ENVELOPE, "protocol error: empty frame"));
                    };
                    return Ok(Some((kind, s + 1..e)));
                }
                Ok(None) => {}
                Err(e) => return Err(Error::new(EXIT_ENVELOPE, format_args!("protocol error: {e}"))),
            }
            // Need more input: make room, then read.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                let grown = (self.buf.len() * 2).clamp(FRAME_BUF, MAX_META_FRAME + 16);
                if grown <= self.buf.len() {
                    return Err(Error::new(EXIT_ENVELOPE, "protocol error: frame too long"));
                }
                self.buf.resize(grown, 0);
            } else if self.buf.len() > FRAME_BUF && self.end <= FRAME_BUF {
                self.buf.truncate(FRAME_BUF);
                self.buf.shrink_to_fit();
            }
            let dst = self.buf.get_mut(self.end..).unwrap_or_default();
            let r = read_timed(fd, dst, wait, "session input")?;
            if r == 0 {
                return if self.start == self.end {
                    Ok(None)
                } else {
                    Err(Error::new(EXIT_READ, "end of input in the middle of a frame"))
                };
            }
            self.end += r;
        }
    }
}

/// An `E` frame: the envelope of the next message, with the id an `I`
/// frame proposed for it.
fn start(payload: &[u8], proposed: Option<String>) -> Step {
    match Envelope::parse(payload, MAX_RCPT) {
        Ok(env) => Step::Next(State::Meta(env, None, proposed)),
        Err(e @ (envelope::Error::AddressTooLong | envelope::Error::TooManyRecipients)) => {
            Step::Next(State::Failed(envelope_error(e)))
        }
        Err(e) => Step::Fatal(envelope_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_table() {
        let c = Config::from_vars(None, None, None).unwrap();
        assert_eq!(c.dir, PathBuf::from(crate::queue::DEFAULT_QUEUE_DIR));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        let c =
            Config::from_vars(Some("q".into()), Some("BODY=8BITMIME\n".into()), Some("5".into())).unwrap();
        assert_eq!(c.attrs.get("BODY"), Some(&b"8BITMIME"[..]));
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(Config::from_vars(None, Some("bad name=x".into()), None).unwrap_err().code, EXIT_ENVELOPE);
        assert_eq!(Config::from_vars(None, None, Some("0".into())).unwrap_err().code, EXIT_CONFIG);
        assert_eq!(Config::from_vars(None, None, Some("x".into())).unwrap_err().code, EXIT_CONFIG);
    }

    #[test]
    fn step_table() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config::from_vars(Some(d.path().into()), None, None).unwrap();
        let mut q = Queue::open(d.path()).unwrap();
        let env = b"Fa@b\0Tc@d\0\0";
        // Drive a list of frames; return the answers (Fatal as "fatal <code>").
        let mut run = |frames: &[&[u8]]| {
            let mut st = State::Idle;
            let mut out = Vec::new();
            for f in frames {
                let (k, p) = f.split_first().unwrap();
                match step(&cfg, &mut q, st, *k, p) {
                    Step::Next(s) => st = s,
                    Step::Answer(Ok(_)) => {
                        out.push("0".to_string());
                        st = State::Idle
                    }
                    Step::Answer(Err(e)) => {
                        out.push(e.code.to_string());
                        st = State::Idle
                    }
                    Step::Fatal(e) => {
                        out.push(format!("fatal {}", e.code));
                        break;
                    }
                }
            }
            out
        };
        let e = [&b"E"[..], env].concat();
        assert_eq!(run(&[&e, b"Dhi\n", b"."]), ["0"]);
        assert_eq!(run(&[&e, b"ABODY=7BIT\n", b"Dhi\n", b".", &e, b"."]), ["0", "0"]);
        assert_eq!(run(&[&e, b"Dx", b"R", &e, b"."]), ["0"]);
        assert_eq!(run(&[&e, b"R", &e, b"R"]), Vec::<String>::new());
        assert_eq!(run(&[b"Dx"]), ["fatal 91"]);
        assert_eq!(run(&[b"."]), ["fatal 91"]);
        assert_eq!(run(&[b"Ebad"]), ["fatal 91"]);
        assert_eq!(run(&[&e, b"Abad line"]), ["fatal 91"]);
        assert_eq!(run(&[&e, b"A", b"A"]), ["fatal 91"]);
        assert_eq!(run(&[&e, b"Dx", &e]), ["fatal 91"]);
        assert_eq!(run(&[&e, b"X"]), ["fatal 91"]);
        let long = [&b"EF"[..], &vec![b'x'; 1004], b"\0Tc\0\0"].concat();
        assert_eq!(run(&[&long, b"Dx", b".", &e, b"."]), ["11", "0"]);
        let big = [&b"D"[..], &vec![b'x'; 65537]].concat();
        assert_eq!(run(&[&e, &big]), ["fatal 91"]);
    }
}
