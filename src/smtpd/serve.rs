//! The session loop of smtpd-rs: greeting, command lines through the
//! session state machine, messages (DATA and BDAT) streamed through the
//! decoders into the queue client, replies flushed only before a blocking
//! read. Also `ProcessHooks`, the real RCPTCHECK / HELO_CHECK / log. The loop
//! takes any connection and a fresh `Session`, so that one process can serve
//! a session on fds it was handed (doc/PROTOCOLS.md section 4).

use crate::smtpd::auth::{self, Credentials};
use crate::smtpd::checkpassword::{self, Verdict};
use crate::die;
use crate::io::ucspi::{Conn, ConnError, IN_BUF, OUT_HIGH};
use crate::io::ucspitls::{TlsInfo, UcspiTls, READY};
use crate::queue::client::QueueClient;
use crate::smtpd::session::{Action, Hooks, Outcome, Peer, RcptCheck, Session};
use crate::smtp::data::{ChunkDecoder, DataError, DotDecoder, HopCounter};
use crate::smtp::reply;
use crate::smtpd::config::{Config, MAX_ERRORS};
use crate::statsfd::{self, Reporter};
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

const PROG: &str = "smtpd-rs";
/// Message bytes are handed to the queue in pieces of this size.
const CHUNK: usize = 16 * 1024;

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// QUIT.
    Quit,
    /// The client closed the connection between commands.
    Eof,
    /// The client closed the connection in the middle of a message.
    EofInMessage,
    Timeout,
    TooManyErrors,
    /// The client talked before the greeting.
    Pregreet,
    /// Reading from or writing to the client failed.
    IoError,
    /// STARTTLS was accepted but TLS did not start.
    TlsFailed,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Quit => "quit",
            End::Eof => "client closed the connection",
            End::EofInMessage => "client closed the connection during a message",
            End::Timeout => "timeout",
            End::TooManyErrors => "too many errors",
            End::Pregreet => "client talked before the greeting",
            End::IoError => "connection error",
            End::TlsFailed => "TLS did not start",
        }
    }

    /// The word for the supervisor's counters (`crate::statsfd`).
    pub fn report_word(self) -> statsfd::End {
        match self {
            End::Quit => statsfd::End::Quit,
            End::Eof => statsfd::End::Eof,
            End::EofInMessage => statsfd::End::EofInMessage,
            End::Timeout => statsfd::End::Timeout,
            End::TooManyErrors => statsfd::End::TooManyErrors,
            End::Pregreet => statsfd::End::Pregreet,
            End::IoError => statsfd::End::IoError,
            End::TlsFailed => statsfd::End::TlsFailed,
        }
    }

    /// 0: a normal end; 1: the session was cut short (see smtpd-rs(8)).
    pub fn exit_code(self) -> i32 {
        match self {
            End::Quit | End::Eof => 0,
            _ => 1,
        }
    }
}

/// Serve one SMTP session on `conn`.
pub fn serve(conn: &mut Conn, cfg: &Config, peer: Peer, queue: &mut QueueClient, hooks: &mut dyn Hooks) -> End {
    let mut s = Session::new(cfg, peer);
    // Unique among sessions: a worker serves several in one process.
    static SESSIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let k = SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    s.set_id_base(format!("s{}.{}.{k}", now(), std::process::id()));
    {
        let p = s.peer();
        hooks.log(format_args!(
            "connect: remote {} port {} name {} local {} port {}",
            p.remote_ip.as_deref().unwrap_or("unknown"),
            p.remote_port.as_deref().unwrap_or("unknown"),
            p.remote_host.as_deref().unwrap_or("unknown"),
            p.local_ip.as_deref().unwrap_or("unknown"),
            p.local_port.as_deref().unwrap_or("unknown"),
        ));
    }
    // STARTTLS is off unless UCSPITLS says otherwise, even with a UCSPI-TLS
    // server in front: say so, since the EHLO reply alone does not.
    if cfg.ucspitls_unset && cfg.tls_initial.is_none() && hooks.tls_available() {
        hooks.log(format_args!("STARTTLS not offered: UCSPITLS is unset (a UCSPI-TLS server is in front: set UCSPITLS to offer it)"));
    }
    // A client that talks before the greeting (checked on sockets only: a
    // pipe is a local script that may write its whole conversation at once).
    if conn.is_socket() && conn.readable_within(cfg.pregreet) {
        conn.out.extend_from_slice(reply::PREGREET.as_bytes());
        let _ = conn.flush();
        conn.drain();
        s.log_end(End::Pregreet.as_str(), hooks);
        hooks.report(&s.report(End::Pregreet.report_word()));
        return End::Pregreet;
    }
    s.greeting(&mut conn.out);
    let mut bdat = None;
    let end = run(conn, &mut s, queue, hooks, &mut bdat);
    // However the session ended (QUIT, EOF, timeout, too many errors, TLS
    // failure) with a BDAT message unfinished: abandon it in the queue, so
    // that a worker's next session finds its queue-inject between messages.
    if let Some((m, _)) = bdat.take() {
        m.abandon(queue);
    }
    // After a write timeout replies are still pending: writing more would
    // only wait once again; after a read timeout, say why we close.
    let stuck = end == End::Timeout && !conn.out.is_empty();
    if end == End::Timeout && !stuck {
        conn.out.extend_from_slice(reply::TIMEOUT.as_bytes());
    }
    let end = match if stuck { Ok(()) } else { conn.flush() } {
        Err(_) if end == End::Quit || end == End::TooManyErrors => End::IoError,
        _ => end,
    };
    if end != End::Eof && end != End::EofInMessage {
        conn.drain();
    }
    s.log_end(end.as_str(), hooks);
    hooks.report(&s.report(end.report_word()));
    end
}

/// The command loop. A BDAT message in progress lives in `bdat`, which the
/// caller abandons whatever way this returns.
fn run(
    conn: &mut Conn,
    s: &mut Session<'_>,
    queue: &mut QueueClient,
    hooks: &mut dyn Hooks,
    bdat: &mut Option<(Message, ChunkDecoder)>,
) -> End {
    let mut line = Vec::with_capacity(512);
    loop {
        let action = match conn.next_line(&mut line) {
            Ok(None) => s.handle_line(&line, hooks, &mut conn.out),
            Ok(Some(bad)) => s.bad_line(bad, hooks, &mut conn.out),
            Err(e) => return conn_end(e, false),
        };
        // A transaction ended by RSET, HELO, XCLIENT...: drop its BDAT message.
        if !s.in_transaction() {
            if let Some((m, _)) = bdat.take() {
                m.abandon(queue);
            }
        }
        match action {
            Action::Continue => {}
            Action::StartTls => {
                // RFC 3207 / CVE-2011-0411: nothing may follow STARTTLS in
                // the same flight; such input is refused, not carried over.
                if !conn.buffered().is_empty() {
                    if s.starttls_pipelined(hooks, &mut conn.out) == Action::Close {
                        return End::TooManyErrors;
                    }
                } else {
                    conn.out.extend_from_slice(READY.as_bytes());
                    if let Err(e) = conn.flush() {
                        return conn_end(e, false);
                    }
                    match hooks.start_tls() {
                        Ok(info) => match use_tls_fds(conn) {
                            Ok(()) => s.tls_started(info, hooks),
                            Err(e) => {
                                hooks.log(format_args!("unable to use the TLS fds: {e}"));
                                return End::TlsFailed;
                            }
                        },
                        Err(e) => {
                            hooks.log(format_args!("starttls: {e}"));
                            return End::TlsFailed;
                        }
                    }
                }
            }
            Action::AuthLine => {
                let mut a = Action::AuthLine;
                while a == Action::AuthLine {
                    a = match conn.next_line(&mut line) {
                        Ok(None) => s.auth_line(Some(&line), hooks, &mut conn.out),
                        Ok(Some(_)) => s.auth_line(None, hooks, &mut conn.out),
                        Err(e) => return conn_end(e, false),
                    };
                }
                line.iter_mut().for_each(|b| *b = 0); // the last answer may be a password
                if a == Action::Close {
                    return End::TooManyErrors;
                }
            }
            Action::Close => {
                return if s.stats.errors >= MAX_ERRORS { End::TooManyErrors } else { End::Quit };
            }
            Action::Data => {
                if let Err(e) = receive_data(conn, s, queue, hooks) {
                    return e;
                }
            }
            Action::Bdat { size, last, accept } => {
                let r = if accept {
                    receive_chunk(conn, s, queue, hooks, bdat, size, last)
                } else {
                    if last {
                        if let Some((m, _)) = bdat.take() {
                            m.abandon(queue);
                        }
                    }
                    skip(conn, size)
                };
                if let Err(e) = r {
                    return e;
                }
            }
        }
        if conn.out.len() > OUT_HIGH {
            if let Err(e) = conn.flush() {
                return conn_end(e, false);
            }
        }
    }
}

fn conn_end(e: ConnError, in_message: bool) -> End {
    match e {
        ConnError::Eof if in_message => End::EofInMessage,
        ConnError::Eof => End::Eof,
        ConnError::Timeout => End::Timeout,
        ConnError::Io(_) => End::IoError,
    }
}

/// A message on its way to the queue.
struct Message {
    buf: Vec<u8>,
    /// The queue client holds an open message.
    active: bool,
    /// Why the message cannot be queued, if the queue already failed.
    failed: Option<Outcome>,
    /// The trace fields of the message's header (MAXHOPS); ours, already
    /// in `buf` when counting starts, is not among them.
    hops: HopCounter,
}

impl Message {
    /// Start the queue message and put the Received header first.
    fn start(s: &mut Session<'_>, queue: &mut QueueClient) -> Message {
        let (env, attrs) = s.queue_request();
        // Room for a piece, one input buffer's worth of decoded bytes and the
        // Received header: the buffer never grows.
        let mut m = Message {
            buf: Vec::with_capacity(CHUNK + IN_BUF + 4096),
            active: false,
            failed: None,
            hops: HopCounter::new(s.hop_limit()),
        };
        match queue.begin(&env, &attrs) {
            Ok(id) => {
                m.active = true;
                let id = id.unwrap_or_else(|| s.own_message_id());
                m.buf.extend_from_slice(&s.received(now(), &id));
            }
            Err(o) => m.failed = Some(o.into()),
        }
        m
    }

    /// Hand buffered bytes to the queue (all of them if `all`); once the
    /// decoder has failed the message, abandon it in the queue.
    fn pump(&mut self, queue: &mut QueueClient, err: Option<DataError>, all: bool) {
        if err.is_some() && self.active {
            queue.abort();
            self.active = false;
        }
        if !self.active {
            self.buf.clear();
            return;
        }
        if all || self.buf.len() >= CHUNK {
            if let Err(o) = queue.write(&self.buf) {
                self.failed = Some(o.into());
                queue.abort();
                self.active = false;
            }
            self.buf.clear();
        }
    }

    /// The whole message has been read: the outcome for the reply.
    fn finish(mut self, queue: &mut QueueClient, err: Option<DataError>) -> Outcome {
        self.pump(queue, err, true);
        if let Some(e) = err {
            return Outcome::Refused(e);
        }
        if let Some(o) = self.failed.take() {
            return o;
        }
        queue.finish().into()
    }

    /// Count the trace fields of what the decoder appended to `buf` from
    /// `from` on; the message's error: the decoder's, else a loop.
    fn decoded(&mut self, from: usize, dec: Option<DataError>) -> Option<DataError> {
        self.hops.feed(self.buf.get(from..).unwrap_or_default());
        dec.or(self.hops.error())
    }

    fn abandon(self, queue: &mut QueueClient) {
        if self.active {
            queue.abort();
        }
    }
}

/// After 354: read up to CRLF.CRLF, streaming into the queue.
fn receive_data(conn: &mut Conn, s: &mut Session<'_>, queue: &mut QueueClient, hooks: &mut dyn Hooks) -> Result<(), End> {
    let mut dec = DotDecoder::new(s.size_limit());
    let mut m = Message::start(s, queue);
    loop {
        if conn.buffered().is_empty() {
            if let Err(e) = conn.fill() {
                m.abandon(queue);
                return Err(conn_end(e, true));
            }
        }
        let from = m.buf.len();
        let (n, done) = dec.feed(conn.buffered(), &mut m.buf);
        conn.consume(n);
        let err = m.decoded(from, dec.error());
        if done {
            let outcome = m.finish(queue, err);
            s.message_done(outcome, dec.size(), hooks, &mut conn.out);
            return Ok(());
        }
        m.pump(queue, err, false);
    }
}

/// One accepted BDAT chunk of `size` octets.
fn receive_chunk(
    conn: &mut Conn,
    s: &mut Session<'_>,
    queue: &mut QueueClient,
    hooks: &mut dyn Hooks,
    bdat: &mut Option<(Message, ChunkDecoder)>,
    size: u64,
    last: bool,
) -> Result<(), End> {
    let (m, dec) = bdat.get_or_insert_with(|| (Message::start(s, queue), ChunkDecoder::new(s.size_limit())));
    let mut left = size;
    while left > 0 {
        if conn.buffered().is_empty() {
            conn.fill().map_err(|e| conn_end(e, true))?;
        }
        let b = conn.buffered();
        let n = b.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let from = m.buf.len();
        dec.feed(&b[..n], &mut m.buf);
        conn.consume(n);
        left -= n as u64;
        let err = m.decoded(from, dec.error());
        m.pump(queue, err, false);
    }
    if last {
        dec.finish();
        let Some((mut m, dec)) = bdat.take() else { return Ok(()) };
        let err = m.decoded(m.buf.len(), dec.error());
        let outcome = m.finish(queue, err);
        s.message_done(outcome, dec.size(), hooks, &mut conn.out);
        return Ok(());
    }
    let err = m.decoded(m.buf.len(), dec.error());
    let failed = match (err, m.failed.clone()) {
        (Some(e), _) => Some(Outcome::Refused(e)),
        (None, Some(o)) => Some(o),
        (None, None) => None,
    };
    if failed.is_some() {
        if let Some((m, _)) = bdat.take() {
            m.abandon(queue);
        }
    }
    s.chunk_done(size, failed, hooks, &mut conn.out);
    Ok(())
}

/// Read and drop `size` octets (a refused BDAT chunk).
fn skip(conn: &mut Conn, size: u64) -> Result<(), End> {
    let mut left = size;
    while left > 0 {
        if conn.buffered().is_empty() {
            conn.fill().map_err(|e| conn_end(e, true))?;
        }
        let n = conn.buffered().len().min(usize::try_from(left).unwrap_or(usize::MAX));
        conn.consume(n);
        left -= n as u64;
    }
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// Wait for `child`, the leader of its own process group, at most `limit`;
/// past it, kill the whole group (what the checker started too) and report
/// a timeout. Polls with a growing sleep (1 ms up to 50 ms): a checker
/// usually answers within a few ms, and this keeps the common case fast
/// without a pidfd.
fn wait_bounded(mut child: std::process::Child, limit: std::time::Duration) -> std::io::Result<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    let mut nap = std::time::Duration::from_millis(1);
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        if start.elapsed() >= limit {
            checkpassword::kill_group(&child);
            let _ = child.wait();
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(std::time::Duration::from_millis(50));
    }
}

/// The real hooks: RCPTCHECK as a child process, HELO_CHECK through the
/// suite's resolver, log lines on stderr.
pub struct ProcessHooks<'c> {
    cfg: &'c Config,
    pid: u32,
    /// The UCSPI-TLS fds, while TLS has not been started.
    tls: Option<UcspiTls>,
    /// The supervisor's report socket (`SMTPD_STATS_FD`), if any.
    reporter: Option<&'c Reporter>,
}

impl<'c> ProcessHooks<'c> {
    pub fn new(cfg: &'c Config, reporter: Option<&'c Reporter>) -> ProcessHooks<'c> {
        let tls = match UcspiTls::from_env(&|k| std::env::var(k).ok()) {
            Ok(t) => t,
            Err(e) => {
                die::warn(PROG, format_args!("UCSPI-TLS: {e}; STARTTLS not offered"));
                None
            }
        };
        ProcessHooks { cfg, pid: std::process::id(), tls, reporter }
    }
}

/// After STARTTLS the TLS pipes are fds 0 and 1: give the connection its
/// own copies of them (dropping its buffered input), and keep fds 0 and 1
/// open on them (the connection may have owned the old ones), so that no
/// later pipe lands on fd 0 or 1.
fn use_tls_fds(conn: &mut Conn) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let dup = || -> std::io::Result<(std::fs::File, std::fs::File)> {
        let r = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
        let w = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
        Ok((r, w))
    };
    let (r, w) = dup()?;
    let (keep_r, keep_w) = dup()?;
    conn.replace_fds(r, w);
    nix::unistd::dup2_stdin(&keep_r)?;
    nix::unistd::dup2_stdout(&keep_w)?;
    Ok(())
}

impl Hooks for ProcessHooks<'_> {
    /// notqmail's RCPTCHECK: the program runs with `SENDER` and `RECIPIENT`
    /// in its environment; exit 100 refuses, 111 and 120 are temporary
    /// failures, any other exit accepts. Its stdin and stdout are /dev/null
    /// (never the client's connection).
    fn rcpt_check(&mut self, sender: &[u8], rcpt: &[u8]) -> RcptCheck {
        let Some(prog) = &self.cfg.policy.rcptcheck else { return RcptCheck::Accept };
        // Its own process group, so that a timeout kills what it started too.
        let child = Command::new(prog)
            .env("SENDER", OsStr::from_bytes(sender))
            .env("RECIPIENT", OsStr::from_bytes(rcpt))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn();
        let status = child.and_then(|c| wait_bounded(c, self.cfg.rcptcheck_timeout));
        match status.map(|s| s.code()) {
            Ok(Some(100)) => RcptCheck::Reject,
            Ok(Some(111 | 120)) | Ok(None) => RcptCheck::Temp,
            Ok(Some(_)) => RcptCheck::Accept,
            Err(e) => {
                die::warn(PROG, format_args!("unable to run RCPTCHECK {}: {e}", prog.display()));
                RcptCheck::Temp
            }
        }
    }

    /// HELO_CHECK: the name has an address (A or AAAA) or an MX, asked of
    /// the suite's own resolver (`crate::dns`: /etc/resolv.conf, or
    /// `DNS_SERVER`), not of getaddrinfo, which in a static binary may load
    /// NSS modules. A DNS failure counts as unresolved: the reply is a
    /// temporary 450, so a client retries after an outage.
    fn helo_resolves(&mut self, name: &[u8]) -> bool {
        if name.first() == Some(&b'[') {
            return true; // an address literal needs no lookup
        }
        let Ok(name) = std::str::from_utf8(name) else { return false };
        let dns = crate::dns::Resolver::from_env();
        dns.addrs(name).is_ok_and(|a| !a.records.is_empty()) || dns.mx(name).is_ok_and(|m| !m.records.is_empty())
    }

    fn log(&mut self, line: fmt::Arguments<'_>) {
        die::info(PROG, format_args!("{} {}", self.pid, line));
    }

    fn tls_available(&self) -> bool {
        self.tls.is_some()
    }

    fn start_tls(&mut self) -> Result<TlsInfo, String> {
        let t = self.tls.take().ok_or("no UCSPI-TLS server")?;
        match t.start(true, self.cfg.timeout) {
            Ok(Some(info)) => Ok(info),
            Ok(None) => Ok(TlsInfo::default()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The checkpassword program, with the AUTH patch's pause after a
    /// rejection (against password guessing).
    fn check_password(&mut self, creds: &Credentials) -> Verdict {
        match checkpassword::check(&self.cfg.checkpassword, creds, checkpassword::DEFAULT_TIMEOUT) {
            Ok(Verdict::Rejected) => {
                std::thread::sleep(std::time::Duration::from_secs(auth::FAILURE_DELAY_SECS));
                Verdict::Rejected
            }
            Ok(v) => v,
            Err(e) => {
                let prog = self.cfg.checkpassword.first().map(|p| Path::new(p).display().to_string()).unwrap_or_default();
                die::warn(PROG, format_args!("unable to run checkpassword {prog}: {e}"));
                Verdict::TempFail
            }
        }
    }

    /// One datagram on `SMTPD_STATS_FD` (smtpd-rs(8), REPORTS); never blocks.
    fn report(&mut self, r: &statsfd::SessionReport) {
        if let Some(rep) = self.reporter {
            rep.send(&r.encode());
        }
    }

    fn unique(&mut self) -> (u32, u64) {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        (self.pid, t)
    }
}
