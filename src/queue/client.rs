//! The client side of the queue hand-off. Session mode: one `queue-inject -s`
//! per session and the framed channel of doc/PROTOCOLS.md section 2, restarted
//! if it dies. Per-message mode: the plain qmail-queue protocol (message on the
//! child's fd 0 with LF line ends, envelope on its fd 1, notqmail's error pipe
//! on its fd 6, attribute block in `QUEUE_ATTRS`), its exit code mapped as
//! qmail's qmail_close does. Either way the message is streamed while it
//! arrives, and only status 0 means queued.

use crate::envelope::{Attrs, Envelope};
use crate::netstring;
use std::fs::File;
use std::io::{self, Read, Write};
use crate::queue::zygote::Made;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Largest `D` frame payload (doc/PROTOCOLS.md 2).
pub const MAX_FRAME: usize = 65536;
/// Longest status frame accepted from queue-inject.
const MAX_ANSWER: usize = 1024;

/// Which queue program, and how it is driven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueProgram {
    /// One `queue-inject -s` per session, framed channel (doc/PROTOCOLS.md 2).
    Session(PathBuf),
    /// One process per message, plain qmail-queue protocol.
    PerMessage(PathBuf),
}

/// What the queue program said about one message before qmail's mapping
/// to a reply: its exit code (per-message mode) or answer code (session
/// mode), with notqmail's fd 6 text (`D...`/`Z...`) for 82, the queue id
/// for 0 in session mode, the reason otherwise (possibly empty). A
/// program in the middle of the chain (auth-check) passes it on as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: i32,
    pub text: String,
}

impl Answer {
    /// qmail's mapping (`map_exit`).
    pub fn status(&self) -> Status {
        match self.code {
            0 if !self.text.is_empty() => Status::Queued(self.text.clone()),
            82 => map_exit(82, false, self.text.as_bytes()),
            c => map_exit(c, false, b""),
        }
    }
}

/// What the queue did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Durable; the queue id (session mode) or qmail's `<time> qp <pid>`.
    Queued(String),
    /// Not queued: `permanent` selects 554 or 451; `text` is qmail's
    /// reason, ending in `(#x.y.z)` when it names an enhanced code.
    Failed { permanent: bool, text: String },
}

pub enum QueueClient {
    Session(SessionQueue),
    PerMessage(PerMessage),
}

impl QueueClient {
    pub fn new(q: &QueueProgram) -> QueueClient {
        match q {
            QueueProgram::Session(p) => QueueClient::Session(SessionQueue::new(p.clone())),
            QueueProgram::PerMessage(p) => QueueClient::PerMessage(PerMessage::new(p.clone())),
        }
    }

    /// Start the session-mode queue-inject now rather than at the first
    /// message (for a worker waiting for its next connection). Errors are
    /// left for the first message to report.
    pub fn prepare(&mut self) {
        if let QueueClient::Session(q) = self {
            let _ = q.start();
        }
    }

    /// Take a queue-inject made by a zygote as this session's (session mode;
    /// otherwise it is dropped, which ends it).
    pub fn adopt(&mut self, made: Made) {
        if let QueueClient::Session(q) = self {
            q.adopt(made);
        }
    }

    /// Start a message; its queue id if it is known before the message is
    /// written (session mode: smtpd-rs proposes it, doc/PROTOCOLS.md 2), for
    /// the Received header. On failure the message cannot be queued: the
    /// caller reads the rest of it and gives the outcome as the reply.
    pub fn begin(&mut self, env: &Envelope, attrs: &Attrs) -> Result<Option<String>, Status> {
        self.begin_as(env, attrs, None)
    }

    /// `begin`, proposing `id` in session mode's `I` frame instead of an id
    /// of our own (a program in the middle of the chain passes on the one
    /// its caller proposed). Per-message mode has no place for it.
    pub fn begin_as(&mut self, env: &Envelope, attrs: &Attrs, id: Option<&str>) -> Result<Option<String>, Status> {
        match self {
            QueueClient::Session(q) => q.begin(env, attrs, id).map(Some),
            QueueClient::PerMessage(q) => q.begin(env, attrs).map(|()| None),
        }
    }

    /// Message bytes (LF line ends).
    pub fn write(&mut self, data: &[u8]) -> Result<(), Status> {
        match self {
            QueueClient::Session(q) => q.write(data),
            QueueClient::PerMessage(q) => q.write(data),
        }
    }

    /// End the message and learn what the queue did with it.
    pub fn finish(&mut self) -> Status {
        match self.finish_answer() {
            Ok(a) => a.status(),
            Err(s) => s,
        }
    }

    /// `finish`, with the queue program's own code and text; Err when it
    /// gave none (it crashed, died, or could not be written to).
    pub fn finish_answer(&mut self) -> Result<Answer, Status> {
        match self {
            QueueClient::Session(q) => q.finish(),
            QueueClient::PerMessage(q) => q.finish(),
        }
    }

    /// Abandon the message in progress: it must not be queued.
    pub fn abort(&mut self) {
        match self {
            QueueClient::Session(q) => q.abort(),
            QueueClient::PerMessage(q) => q.abort(),
        }
    }

    /// End of the session: let the queue program go.
    pub fn close(&mut self) {
        match self {
            QueueClient::Session(q) => q.close(),
            QueueClient::PerMessage(q) => q.abort(),
        }
    }
}

/// qmail's qmail_close table: exit code (and for notqmail's 82, the text
/// read from fd 6) -> outcome. `write_failed`: the message could not be
/// written completely (qmail's flagerr), which turns an exit 0 into 54.
pub fn map_exit(code: i32, write_failed: bool, fd6: &[u8]) -> Status {
    let (perm, text) = match code {
        0 if !write_failed => return Status::Queued(String::new()),
        11 | 115 => (true, "envelope address too long for qq (#5.1.3)"),
        31 => (true, "mail server permanently rejected message (#5.3.0)"),
        51 => (false, "qq out of memory (#4.3.0)"),
        52 => (false, "qq timeout (#4.3.0)"),
        53 => (false, "qq write error or disk full (#4.3.0)"),
        0 | 54 => (false, "qq read error (#4.3.0)"),
        55 => (false, "qq unable to read configuration (#4.3.0)"),
        56 => (false, "qq trouble making network connection (#4.3.0)"),
        61 => (false, "qq trouble in home directory (#4.3.0)"),
        62..=66 => (false, "qq trouble creating files in queue (#4.3.0)"),
        71 => (false, "mail server temporarily rejected message (#4.3.0)"),
        72 => (false, "connection to mail server timed out (#4.4.1)"),
        73 => (false, "connection to mail server rejected (#4.4.1)"),
        74 => (false, "communication with mail server failed (#4.4.2)"),
        81 | 91 => (false, "qq internal bug (#4.3.0)"),
        120 => (false, "unable to exec qq (#4.3.0)"),
        82 if fd6.len() > 2 => {
            let text: String = String::from_utf8_lossy(&fd6[1..fd6.len().min(255)])
                .chars()
                .filter(|c| !c.is_control())
                .collect();
            return Status::Failed { permanent: fd6[0] == b'D', text };
        }
        11..=40 => (true, "qq permanent problem (#5.3.0)"),
        _ => (false, "qq temporary problem (#4.3.0)"),
    };
    Status::Failed { permanent: perm, text: text.into() }
}

fn crashed() -> Status {
    Status::Failed { permanent: false, text: "qq crashed (#4.3.0)".into() }
}

fn unable_to_exec() -> Status {
    map_exit(120, false, b"")
}

/// One `queue-inject -s` for the whole session. Frames are collected and
/// written in one piece when 64 KiB have piled up or the message ends, so a
/// small message costs one write and one read.
pub struct SessionQueue {
    prog: PathBuf,
    child: Option<Inject>,
    frames: Vec<u8>,
    answer: Vec<u8>,
    /// The current message could not be sent completely.
    broken: bool,
    /// Some frames of the current message have been written.
    sent: bool,
    /// Messages begun with the running queue-inject (its sequence numbers).
    seq: u64,
}

impl SessionQueue {
    pub fn new(prog: PathBuf) -> SessionQueue {
        SessionQueue {
            prog,
            child: None,
            frames: Vec::with_capacity(MAX_FRAME + 64),
            answer: Vec::new(),
            broken: false,
            sent: false,
            seq: 0,
        }
    }

    /// Take a queue-inject -s made by a zygote (`queue::zygote`) as this
    /// session's, in place of one started here.
    pub fn adopt(&mut self, made: Made) {
        self.drop_child();
        self.child = Some(Inject { proc: Proc::Adopted(made.pid), to: made.to, from: made.from });
        self.seq = 0;
    }

    /// Start queue-inject unless one is running; replace one that died
    /// since the last message.
    fn start(&mut self) -> io::Result<()> {
        if let Some(r) = &mut self.child {
            if r.alive() {
                return Ok(());
            }
            self.drop_child();
        }
        let mut c = Command::new(&self.prog).arg("-s").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let (Some(i), Some(o)) = (c.stdin.take(), c.stdout.take()) else {
            let _ = c.kill();
            let _ = c.wait();
            return Err(io::ErrorKind::BrokenPipe.into());
        };
        self.child = Some(Inject { proc: Proc::Ours(c), to: File::from(OwnedFd::from(i)), from: File::from(OwnedFd::from(o)) });
        self.seq = 0;
        Ok(())
    }

    /// Reap a dead or misbehaving queue-inject; the next message starts
    /// another. One made by a zygote is not ours to kill or reap: closing
    /// its pipes ends it (EOF on its fd 0).
    fn drop_child(&mut self) {
        if let Some(Inject { proc, to, from }) = self.child.take() {
            drop(to);
            drop(from);
            if let Proc::Ours(mut c) = proc {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Queue one frame for writing.
    fn push(&mut self, kind: u8, payload: &[u8]) {
        self.frames.extend_from_slice((payload.len() + 1).to_string().as_bytes());
        self.frames.push(b':');
        self.frames.push(kind);
        self.frames.extend_from_slice(payload);
        self.frames.push(b',');
    }

    /// Write the collected frames.
    fn flush(&mut self) -> io::Result<()> {
        self.sent = true;
        let r = match &mut self.child {
            Some(c) => c.to.write_all(&self.frames),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        };
        self.frames.clear();
        r
    }

    /// Start a message under the id queue-inject would give it itself,
    /// `<secs>.<its pid>.<n>` (doc/PROTOCOLS.md 2, the `I` frame), or under
    /// `proposed`.
    fn begin(&mut self, env: &Envelope, attrs: &Attrs, proposed: Option<&str>) -> Result<String, Status> {
        self.broken = false;
        self.sent = false;
        self.frames.clear();
        if self.start().is_err() {
            return Err(unable_to_exec());
        }
        let pid = self.child.as_ref().map_or(0, Inject::pid);
        self.seq += 1;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let id = proposed.map_or_else(|| format!("{now}.{pid}.{}", self.seq), str::to_owned);
        self.push(b'I', id.as_bytes());
        self.push(b'E', &env.encode());
        if !attrs.is_empty() {
            self.push(b'A', attrs.encode().as_bytes());
        }
        Ok(id)
    }

    fn write(&mut self, data: &[u8]) -> Result<(), Status> {
        for piece in data.chunks(MAX_FRAME - 1) {
            // Write what is collected before it would outgrow its buffer.
            if !self.frames.is_empty() && self.frames.len() + piece.len() + 16 > MAX_FRAME && self.flush().is_err() {
                self.broken = true;
                self.drop_child();
                return Err(crashed());
            }
            self.push(b'D', piece);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<Answer, Status> {
        self.push(b'.', b"");
        if self.broken || self.flush().is_err() {
            self.drop_child();
            return Err(crashed());
        }
        match self.read_answer() {
            Some((code, text)) => {
                if code == 91 {
                    self.drop_child(); // protocol error: it exits
                }
                match code {
                    0 if text.is_empty() => Err(crashed()),
                    code => Ok(Answer { code, text }),
                }
            }
            None => {
                self.drop_child();
                Err(crashed())
            }
        }
    }

    /// One status frame: `<code> <text>`.
    fn read_answer(&mut self) -> Option<(i32, String)> {
        let out = &mut self.child.as_mut()?.from;
        self.answer.clear();
        let mut chunk = [0u8; 256];
        loop {
            match netstring::parse(&self.answer, MAX_ANSWER) {
                Ok(Some((r, used))) => {
                    let payload = self.answer.get(r)?;
                    let s = String::from_utf8_lossy(payload).into_owned();
                    let extra = self.answer.len() > used;
                    let (code, text) = s.split_once(' ').unwrap_or((&s, ""));
                    let code = code.parse().ok()?;
                    // An answer nobody asked for is a protocol error.
                    return (!extra).then(|| (code, text.chars().filter(|c| !c.is_control()).collect()));
                }
                Ok(None) => {}
                Err(_) => return None,
            }
            match out.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.answer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn abort(&mut self) {
        if self.broken || !self.sent {
            // Nothing of this message reached queue-inject: nothing to undo.
            self.frames.clear();
            return;
        }
        self.push(b'R', b"");
        if self.flush().is_err() {
            self.drop_child();
        }
    }

    fn close(&mut self) {
        if let Some(Inject { proc, to, from }) = self.child.take() {
            drop(to); // EOF between messages: queue-inject exits 0
            drop(from);
            if let Proc::Ours(mut c) = proc {
                let _ = c.wait();
            }
        }
    }
}

/// The session's running queue-inject and its pipes.
struct Inject {
    proc: Proc,
    to: File,
    from: File,
}

enum Proc {
    /// Started here: ours to wait for.
    Ours(Child),
    /// Made by a zygote: its pid only.
    Adopted(u32),
}

impl Inject {
    fn pid(&self) -> u32 {
        match &self.proc {
            Proc::Ours(c) => c.id(),
            Proc::Adopted(p) => *p,
        }
    }

    /// Still running and silent, as between messages. One not ours is
    /// judged by its answer pipe: readable (end of file, or an answer
    /// nobody asked for) means it is gone or broken.
    fn alive(&mut self) -> bool {
        match &mut self.proc {
            Proc::Ours(c) => matches!(c.try_wait(), Ok(None)),
            Proc::Adopted(_) => {
                use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
                let mut p = [PollFd::new(self.from.as_fd(), PollFlags::POLLIN)];
                matches!(poll(&mut p, PollTimeout::ZERO), Ok(0))
            }
        }
    }
}

/// One qmail-queue process per message.
pub struct PerMessage {
    prog: PathBuf,
    cur: Option<Running>,
}

struct Running {
    child: Child,
    msg: Option<File>,
    env: Option<File>,
    err: File,
    envelope: Vec<u8>,
    write_failed: bool,
}

impl PerMessage {
    pub fn new(prog: PathBuf) -> PerMessage {
        PerMessage { prog, cur: None }
    }

    fn begin(&mut self, env: &Envelope, attrs: &Attrs) -> Result<(), Status> {
        self.abort();
        let spawn = || -> io::Result<Running> {
            let (msg_r, msg_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let (env_r, env_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let mut cmd = Command::new(&self.prog);
            cmd.stdin(Stdio::from(msg_r)).stdout(Stdio::from(env_r));
            if attrs.is_empty() {
                cmd.env_remove("QUEUE_ATTRS");
            } else {
                cmd.env("QUEUE_ATTRS", attrs.encode());
            }
            // The AUTH patch's variables, which qmail-queue inherits from
            // qmail-smtpd after a successful AUTH.
            if let Some(user) = attrs.get("CLIENT_LOGIN") {
                use std::os::unix::ffi::OsStrExt;
                let user = std::ffi::OsStr::from_bytes(user);
                cmd.env("TCPREMOTEINFO", user).env("SMTPAUTHUSER", user).env("SMTP_AUTH_USER", user);
            }
            crate::sys::child_fd(&mut cmd, err_w.as_raw_fd(), 6);
            let child = cmd.spawn()?;
            drop(err_w);
            Ok(Running {
                child,
                msg: Some(File::from(msg_w)),
                env: Some(File::from(env_w)),
                err: File::from(err_r),
                envelope: env.encode(),
                write_failed: false,
            })
        };
        match spawn() {
            Ok(r) => {
                self.cur = Some(r);
                Ok(())
            }
            Err(_) => Err(unable_to_exec()),
        }
    }

    fn write(&mut self, data: &[u8]) -> Result<(), Status> {
        let Some(r) = &mut self.cur else { return Err(crashed()) };
        if !r.write_failed {
            if let Some(m) = &mut r.msg {
                if m.write_all(data).is_err() {
                    // qmail's flagerr: keep going, the exit code decides.
                    r.write_failed = true;
                    r.msg = None;
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<Answer, Status> {
        let Some(mut r) = self.cur.take() else { return Err(crashed()) };
        r.msg = None; // EOF on the message
        if let Some(mut e) = r.env.take() {
            if e.write_all(&r.envelope).is_err() {
                r.write_failed = true;
            }
        }
        let mut fd6 = Vec::new();
        let _ = (&mut r.err).take(255).read_to_end(&mut fd6);
        let status = match r.child.wait() {
            Ok(s) => s,
            Err(_) => return Err(Status::Failed { permanent: false, text: "qq waitpid surprise (#4.3.0)".into() }),
        };
        match status.code() {
            None => Err(crashed()),
            Some(0) if !r.write_failed => {
                // qmail-smtpd's "ok <time> qp <pid>": the protocol returns no id.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                Ok(Answer { code: 0, text: format!("{now} qp {}", r.child.id()) })
            }
            // qmail's flagerr: a message not written whole is a read error.
            Some(0) => Ok(Answer { code: 54, text: String::new() }),
            Some(82) => Ok(Answer {
                code: 82,
                text: String::from_utf8_lossy(fd6.get(..fd6.len().min(255)).unwrap_or_default()).into_owned(),
            }),
            Some(c) => Ok(Answer { code: c, text: String::new() }),
        }
    }

    fn abort(&mut self) {
        if let Some(mut r) = self.cur.take() {
            // Without its envelope the queue program cannot queue the message.
            drop(r.msg.take());
            drop(r.env.take());
            let _ = r.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_table() {
        let t = |c: i32| match map_exit(c, false, b"") {
            Status::Failed { permanent, text } => (permanent, text),
            Status::Queued(_) => (false, "queued".into()),
        };
        assert_eq!(t(0).1, "queued");
        assert_eq!(t(11), (true, "envelope address too long for qq (#5.1.3)".into()));
        assert_eq!(t(31), (true, "mail server permanently rejected message (#5.3.0)".into()));
        assert_eq!(t(25), (true, "qq permanent problem (#5.3.0)".into()));
        assert_eq!(t(53), (false, "qq write error or disk full (#4.3.0)".into()));
        assert_eq!(t(64), (false, "qq trouble creating files in queue (#4.3.0)".into()));
        assert_eq!(t(74), (false, "communication with mail server failed (#4.4.2)".into()));
        assert_eq!(t(81), (false, "qq internal bug (#4.3.0)".into()));
        assert_eq!(t(91), (false, "qq internal bug (#4.3.0)".into()));
        assert_eq!(t(100), (false, "qq temporary problem (#4.3.0)".into()));
        assert_eq!(t(82), (false, "qq temporary problem (#4.3.0)".into()));
        assert_eq!(
            map_exit(0, true, b""),
            Status::Failed { permanent: false, text: "qq read error (#4.3.0)".into() }
        );
        assert_eq!(
            map_exit(82, false, b"Dvirus found (#5.7.1)"),
            Status::Failed { permanent: true, text: "virus found (#5.7.1)".into() }
        );
        assert_eq!(
            map_exit(82, false, b"Zgreylisted\n"),
            Status::Failed { permanent: false, text: "greylisted".into() }
        );
    }
}
