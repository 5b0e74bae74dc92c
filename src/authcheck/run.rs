//! auth-check's two loops: the qmail-queue protocol (message on fd 0 to its
//! end, envelope on fd 1, the result as an exit code, notqmail's fd 6 for a
//! refusal's text) and session mode (the frames of doc/PROTOCOLS.md 2 on
//! fd 0, one answer per message on fd 1). Each message is read once: its
//! octets go through the header filter into the spool and, as CR LF, into
//! the DKIM verifier; then SPF, DKIM keys and DMARC are looked up, the
//! policy decides, and an accepted message goes to the next program (the
//! same protocol, through `queue::client`) with our field on top and our
//! attribute lines added. Every read waits at most a set time.

use super::check::{self, Action, Checks, Evaluation, Facts};
use super::config::Config;
use super::filter::HeaderFilter;
use super::frames::{Decoder, Event, Sequencer};
use super::psl::Suffixes;
use super::spool::Spool;
use super::DkimReport;
use crate::dkim::canon::LfToCrlf;
use crate::dkim::header::{self, HeaderError, HeaderReader};
use crate::dkim::verify::{LookupError, Verifier, VerifyOptions};
use crate::dns::{self, Lookup};
use crate::envelope::{Attrs, Envelope};
use crate::queue::client::{Answer, QueueClient, QueueProgram, Status};
use crate::queue::{inject, Error, EXIT_ENVELOPE, EXIT_READ, EXIT_SPOOL, EXIT_WRITE};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

const PROG: &str = "auth-check";
/// Wait for the next message in session mode (as queue-inject).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(86400);
/// Message octets read at a time in per-message mode.
const READ_SIZE: usize = 65536;

/// What every message is checked with.
pub struct Checker<'a> {
    pub cfg: &'a Config,
    pub dns: &'a dyn Lookup,
    pub psl: &'a dyn Suffixes,
}

/// The qmail-queue protocol: the message from fd 0 to its end, then the
/// envelope from fd 1; the next program run the same way. Returns the exit
/// code (after writing fd 6 for 82); `fd6` is notqmail's error pipe, if open.
pub fn per_message(c: &Checker<'_>, fd6: Option<File>) -> Result<i32, Error> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let early = Facts::new(&c.cfg.attrs, b"", &|k| c.cfg.ucspi_var(k));
    let mut inbound = Inbound::new(c, check::skip(&early).is_none());
    let mut buf = vec![0u8; READ_SIZE];
    loop {
        let n = inject::read_timed(stdin.as_fd(), &mut buf, c.cfg.timeout, "message")?;
        if n == 0 {
            break;
        }
        inbound.feed(buf.get(..n).unwrap_or_default());
    }
    let env = inject::read_envelope(stdout.as_fd(), c.cfg.timeout)?;
    let mut down = QueueClient::new(&QueueProgram::PerMessage(c.cfg.next.clone()));
    let msg = Message { env: Ok(env), attrs: None, id: None, inbound: Some(inbound) };
    let (code, text) = c.process(msg, &mut down);
    if code != 82 {
        return Ok(code);
    }
    // notqmail: the reason on fd 6, D permanent, Z temporary. Without fd 6
    // (a caller that does not know 82) the closest plain code.
    let written = fd6.is_some_and(|mut f| f.write_all(text.as_bytes()).is_ok());
    Ok(match (written, text.starts_with('D')) {
        (true, _) => 82,
        (false, true) => crate::queue::EXIT_REFUSED,
        (false, false) => 71,
    })
}

/// Session mode: frames on fd 0, answers on fd 1, one `<next> -s` kept for
/// the session. Returns at EOF between messages, or with the error that
/// ends the session (a protocol error is answered `91 ...` first).
pub fn session(c: &Checker<'_>) -> Result<(), Error> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut down = QueueClient::new(&QueueProgram::Session(c.cfg.next.clone()));
    // Start the next program now, while the client is still talking.
    down.prepare();
    let mut dec = Decoder::new();
    let mut order = Sequencer::new();
    let mut proposed: Option<String> = None;
    let mut msg: Option<Message> = None;
    let fatal = |e: String| {
        let err = Error::new(EXIT_ENVELOPE, e);
        let _ = inject::write_answer(stdout.as_fd(), EXIT_ENVELOPE, &err.msg);
        err
    };
    loop {
        let next = dec.next_frame().map_err(|e| fatal(e.to_string()))?;
        let Some((kind, range)) = next else {
            let wait = if order.is_idle() { IDLE_TIMEOUT } else { c.cfg.timeout };
            let space = dec.space().map_err(|e| fatal(e.to_string()))?;
            let n = inject::read_timed(stdin.as_fd(), space, wait, "session input")?;
            if n == 0 {
                if order.is_idle() && !dec.has_partial() {
                    down.close();
                    return Ok(());
                }
                return Err(Error::new(EXIT_READ, "end of input in the middle of a message"));
            }
            dec.filled(n);
            continue;
        };
        let payload = dec.payload(range);
        match order.step(kind, payload).map_err(|e| fatal(e.to_string()))? {
            Event::Id(id) => proposed = Some(id),
            Event::Begin(env) => msg = Some(Message { env, attrs: None, id: proposed.take(), inbound: None }),
            Event::Attrs(a) => {
                if let Some(m) = &mut msg {
                    m.attrs = Some(a);
                }
            }
            Event::Data => {
                if let Some(m) = &mut msg {
                    m.inbound(c).feed(payload);
                }
            }
            Event::Reset => msg = None,
            Event::End => {
                if let Some(m) = msg.take() {
                    let (code, text) = c.process(m, &mut down);
                    inject::write_answer(stdout.as_fd(), code, &text)?;
                }
            }
        }
    }
}

/// A message being received.
struct Message {
    /// Err: refused already (code, reason), answered at its end.
    env: Result<Envelope, (i32, String)>,
    /// The `A` frame's block; None: `QUEUE_ATTRS`.
    attrs: Option<Attrs>,
    /// The `I` frame's id, passed on.
    id: Option<String>,
    /// Made at the first octet, once the attributes are known.
    inbound: Option<Inbound>,
}

impl Message {
    fn attrs<'a>(&'a self, c: &'a Checker<'_>) -> &'a Attrs {
        self.attrs.as_ref().unwrap_or(&c.cfg.attrs)
    }

    fn inbound(&mut self, c: &Checker<'_>) -> &mut Inbound {
        let on = self.inbound.is_none() && check::skip(&Facts::new(self.attrs(c), b"", &|k| c.cfg.ucspi_var(k))).is_none();
        self.inbound.get_or_insert_with(|| Inbound::new(c, on))
    }
}

/// A message's octets on their way in: filtered into the spool, and
/// converted to CR LF for DKIM (unless the message is not checked).
struct Inbound {
    filter: HeaderFilter,
    spool: Spool,
    crlf: LfToCrlf,
    /// The CR LF form of the current piece; the filter's output.
    scratch: Vec<u8>,
    out: Vec<u8>,
    header: HeaderReader,
    dkim: Dkim,
    opts: VerifyOptions,
    failed: Option<Error>,
}

enum Dkim {
    /// Not checked (an authenticated or relay client).
    Off,
    /// Reading the header section.
    Header,
    Body(Box<Verifier>),
    /// The header section cannot be split into fields.
    Unreadable(HeaderError),
}

impl Inbound {
    fn new(c: &Checker<'_>, check: bool) -> Inbound {
        Inbound {
            filter: HeaderFilter::new(&c.cfg.authserv_id),
            spool: Spool::new(c.cfg.spool_dir.clone()),
            crlf: LfToCrlf::new(),
            scratch: Vec::new(),
            out: Vec::new(),
            header: HeaderReader::new(),
            dkim: if check { Dkim::Header } else { Dkim::Off },
            opts: VerifyOptions { max_signatures: c.cfg.dkim_max, ..VerifyOptions::default() },
            failed: None,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.out.clear();
        self.filter.feed(data, &mut self.out);
        self.keep();
        if !matches!(self.dkim, Dkim::Off | Dkim::Unreadable(_)) {
            self.scratch.clear();
            self.crlf.convert(data, &mut self.scratch);
            self.verify();
        }
    }

    /// The end of the message.
    fn finish(&mut self) {
        if self.failed.is_some() {
            return;
        }
        self.out.clear();
        self.filter.finish(&mut self.out);
        self.keep();
        if matches!(self.dkim, Dkim::Off | Dkim::Unreadable(_)) {
            return;
        }
        self.scratch.clear();
        self.crlf.finish(&mut self.scratch);
        self.verify();
        if matches!(self.dkim, Dkim::Header) {
            // The message ended inside its header: all of it is header.
            self.header.finish();
            self.start_body(&[]);
        }
    }

    fn keep(&mut self) {
        if let Err(e) = self.spool.write(&self.out) {
            self.failed = Some(Error::new(if self.spool.on_disk() { EXIT_WRITE } else { EXIT_SPOOL }, e));
        }
    }

    /// `scratch` (CR LF) to the header reader, then the verifier.
    fn verify(&mut self) {
        match &mut self.dkim {
            Dkim::Header => match self.header.push(&self.scratch) {
                Ok(None) => {}
                Ok(Some(n)) => {
                    let body = std::mem::take(&mut self.scratch);
                    self.start_body(body.get(n..).unwrap_or_default());
                    self.scratch = body;
                }
                Err(e) => self.dkim = Dkim::Unreadable(e),
            },
            Dkim::Body(v) => v.body(&self.scratch),
            Dkim::Off | Dkim::Unreadable(_) => {}
        }
    }

    fn start_body(&mut self, first: &[u8]) {
        self.dkim = match Verifier::new(self.header.header(), &self.opts) {
            Ok(mut v) => {
                v.body(first);
                Dkim::Body(Box::new(v))
            }
            Err(e) => Dkim::Unreadable(e),
        };
    }

    /// The DKIM reports (keys looked up now) and the From domains.
    fn results(&mut self, dns: &dyn Lookup, now: u64) -> (Vec<DkimReport>, Result<Vec<String>, String>) {
        match std::mem::replace(&mut self.dkim, Dkim::Off) {
            Dkim::Body(v) => {
                let mut lookup = |name: &str| match dns.txt(name) {
                    Ok(v) => v.into_iter().next().ok_or(LookupError::NotFound),
                    Err(dns::Error::NoName) => Err(LookupError::NotFound),
                    Err(dns::Error::Temp(_)) => Err(LookupError::Temporary),
                };
                let reports = check::dkim_reports(&v.finish(now, &mut lookup));
                let from = header::split_fields(self.header.header())
                    .map_err(|e| format!("header: {e}"))
                    .and_then(|f| check::from_domains(&f));
                (reports, from)
            }
            Dkim::Unreadable(e) => (check::unreadable_header(self.header.header(), &e), Err(format!("header: {e}"))),
            Dkim::Off | Dkim::Header => (Vec::new(), Err("not checked".into())),
        }
    }
}

impl Checker<'_> {
    /// Decide about a complete message and, if it is accepted, hand it on.
    /// The answer for the program before us: a qmail-queue code and its
    /// text (`D...`/`Z...` for 82, the queue id for 0).
    fn process(&self, mut msg: Message, down: &mut QueueClient) -> (i32, String) {
        let env = match std::mem::replace(&mut msg.env, Err((0, String::new()))) {
            Ok(e) => e,
            Err((code, why)) => {
                crate::die::warn(PROG, format_args!("message refused: {code} {why}"));
                return (code, why);
            }
        };
        msg.inbound(self).finish();
        let attrs = msg.attrs(self).clone();
        let Some(mut inbound) = msg.inbound.take() else { return (crate::queue::EXIT_BUG, "no message state".into()) };
        if let Some(e) = inbound.failed.take() {
            crate::die::warn(PROG, format_args!("message not passed on: {} {e}", e.code));
            return (e.code, e.msg);
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let facts = Facts::new(&attrs, &env.sender, &|k| self.cfg.ucspi_var(k));
        let (dkim, from) = if check::skip(&facts).is_some() { (Vec::new(), Err(String::new())) } else { inbound.results(self.dns, now) };
        let checks = Checks {
            dns: self.dns,
            psl: self.psl,
            authserv_id: &self.cfg.authserv_id,
            policy: &self.cfg.policy,
            now,
            sample: super::random_sample(),
        };
        let e = check::evaluate(&checks, &facts, dkim, from);
        let (code, text) = match &e.action {
            Action::Reject(t) => (82, format!("D{t}")),
            Action::Defer(t) => (82, format!("Z{t}")),
            Action::Accept => {
                let mut pass = Attrs(attrs.0.into_iter().filter(|(n, _)| !n.starts_with("AUTH_")).collect());
                for (k, v) in check::attributes(&e) {
                    pass.push(k, v);
                }
                let field = check::field(&e, &self.cfg.authserv_id);
                match hand_on(down, &env, &pass, msg.id.as_deref(), field.as_deref(), &mut inbound.spool) {
                    Ok(a) => (a.code, a.text),
                    Err(Status::Failed { permanent, text }) => (82, format!("{}{text}", if permanent { 'D' } else { 'Z' })),
                    Err(Status::Queued(id)) => (0, id),
                }
            }
        };
        self.log(&e, &facts, inbound.filter.removed(), code, &text);
        (code, text)
    }

    /// One line per message: what became of it, then the results.
    fn log(&self, e: &Evaluation, f: &Facts, removed: usize, code: i32, text: &str) {
        let what = match (&e.action, code) {
            (Action::Reject(t), _) => format!("refused: {t}"),
            (Action::Defer(t), _) => format!("deferred: {t}"),
            (Action::Accept, 0) => format!("accepted id {}", show(text)),
            (Action::Accept, c) => format!("not queued: {c} {}", show(text)),
        };
        let ip = f.ip.map_or_else(|| "-".to_string(), |i| i.to_string());
        let forged = if removed > 0 { format!(" removed_forged_ar={removed}") } else { String::new() };
        crate::die::info(PROG, format_args!("{what}: from <{}> client {ip} {}{forged}", show(&f.mail_from), check::summary(e)));
    }
}

/// The message to the next program: our field, then the filtered message.
fn hand_on(
    down: &mut QueueClient,
    env: &Envelope,
    attrs: &Attrs,
    id: Option<&str>,
    field: Option<&str>,
    spool: &mut Spool,
) -> Result<Answer, Status> {
    down.begin_as(env, attrs, id)?;
    let mut failed: Option<Status> = None;
    if let Some(f) = field {
        if let Err(s) = down.write(f.as_bytes()) {
            failed = Some(s);
        }
    }
    if failed.is_none() {
        let r = spool.replay(&mut |chunk| {
            down.write(chunk).map_err(|s| {
                failed = Some(s);
                std::io::Error::other("queue program failed")
            })
        });
        if let (Err(e), None) = (r, &failed) {
            failed = Some(Status::Failed { permanent: false, text: format!("unable to read the spool: {e} (#4.3.0)") });
        }
    }
    if let Some(s) = failed {
        down.abort();
        return Err(s);
    }
    down.finish_answer()
}

/// Printable ASCII (and spaces) for the log line.
fn show(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).take(300).collect()
}
