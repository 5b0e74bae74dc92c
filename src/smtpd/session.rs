//! The SMTP server state machine: one command line in, reply text appended
//! to the caller's output buffer, and an `Action` for the I/O loop. The few
//! things that need the outside world (RCPTCHECK, HELO resolution, the log)
//! go through the `Hooks` trait so that this module stays pure and testable
//! with transcripts. No fd is touched here.

use crate::smtpd::auth::{self, Credentials, Exchange, Mech, Step};
use crate::smtpd::checkpassword::Verdict;
use crate::envelope::{Attrs, Envelope};
use crate::io::ucspitls::{self, TlsInfo};
use crate::smtpd::policy::Decision;
use crate::smtpd::received::{protocol_word, received_header, Trace};
use crate::smtp::command::{self, check_helo, check_mailbox, is_postmaster, params_iter, AddrError, Command, ParseError};
use crate::smtp::data::DataError;
use crate::smtp::reply;
use crate::smtpd::config::{Config, MAX_ERRORS};
use crate::statsfd::{self, Reason};
use crate::xtext;

pub use crate::io::ucspi::Peer;
use std::fmt;

/// The outside world as the session sees it.
pub trait Hooks {
    /// Ask the RCPTCHECK program about `rcpt` (sender `sender`).
    fn rcpt_check(&mut self, sender: &[u8], rcpt: &[u8]) -> RcptCheck;
    /// Does `name` resolve (HELO_CHECK)?
    fn helo_resolves(&mut self, name: &[u8]) -> bool;
    /// One log line (without the program prefix and the newline).
    fn log(&mut self, line: fmt::Arguments<'_>);
    /// Is a UCSPI-TLS server in front of us (SSLCTLFD and its fds)?
    fn tls_available(&self) -> bool {
        false
    }
    /// Run the checkpassword program (smtpd-rs's arguments) on `creds`;
    /// after a rejection the implementation waits before returning.
    fn check_password(&mut self, _creds: &Credentials) -> Verdict {
        Verdict::TempFail
    }
    /// Process id and time for the CRAM-MD5 challenge `<pid.time@host>`.
    fn unique(&mut self) -> (u32, u64) {
        (0, 0)
    }
    /// Start TLS through UCSPI-TLS (`Y` on SSLCTLFD, the facts back, the
    /// TLS pipes moved onto fd 0/1). The `220` has been flushed already.
    fn start_tls(&mut self) -> Result<TlsInfo, String> {
        Err("no UCSPI-TLS server".into())
    }
    /// The session is over: tell the supervisor what it did
    /// (`SMTPD_STATS_FD`, when there is one).
    fn report(&mut self, _r: &statsfd::SessionReport) {}
}

/// The RCPTCHECK program's verdict (notqmail: exit 100 reject, 111 and 120
/// temporary failure, anything else accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptCheck {
    Accept,
    Reject,
    Temp,
}

/// What the I/O loop does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read the next command.
    Continue,
    /// 354 was sent: read the message up to CRLF.CRLF, then `message_done`.
    Data,
    /// Read the `size` octets of a BDAT chunk. `accept`: stream them to the
    /// queue, then call `chunk_done` (or `message_done` when `last`);
    /// otherwise discard them (the reply has been given).
    Bdat { size: u64, last: bool, accept: bool },
    /// Flush the replies and end the session.
    Close,
    /// STARTTLS was accepted: unless input is already buffered behind it
    /// (then `starttls_pipelined`), send `220`, start TLS through UCSPI-TLS,
    /// discard buffered input and call `tls_started`.
    StartTls,
    /// An AUTH exchange waits for the client's next line: read one and
    /// pass it to `auth_line`.
    AuthLine,
}

/// How the I/O loop's attempt to queue a message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The queue took it (exit or status 0) under this id.
    Queued(String),
    /// The message itself was refused (size, bare CR/LF).
    Refused(DataError),
    /// The queue failed: `permanent` selects 554 or 451; `text` is qmail's
    /// reason, ending in `(#x.y.z)` when it names an enhanced code.
    QueueFailed { permanent: bool, text: String },
}

impl From<crate::queue::client::Status> for Outcome {
    fn from(s: crate::queue::client::Status) -> Outcome {
        use crate::queue::client::Status;
        match s {
            Status::Queued(id) => Outcome::Queued(id),
            Status::Failed { permanent, text } => Outcome::QueueFailed { permanent, text },
        }
    }
}


/// Counters for the log line at the end of the session and for its report
/// to the supervisor (`report`, `crate::statsfd`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub messages: u32,
    pub recipients: u32,
    pub refused: u32,
    pub errors: u32,
    pub bytes: u64,
    /// Messages whose data was read and refused.
    pub messages_refused: u32,
    /// Every refusal counted in `refused`, by class (4xx, 5xx) and `Reason`.
    pub refusals: [[u32; 5]; 2],
    /// AUTH checks: success, failure, temporary failure.
    pub auth: [u32; 3],
}

/// One mail transaction (MAIL to the end of the message, or RSET).
#[derive(Debug, Clone, Default)]
struct Tx {
    sender: Vec<u8>,
    rcpts: Vec<Vec<u8>>,
    /// Per recipient index: NOTIFY and ORCPT as received.
    dsn: Vec<(usize, Option<String>, Option<Vec<u8>>)>,
    body: Option<&'static str>,
    smtputf8: bool,
    ret: Option<&'static str>,
    envid: Option<Vec<u8>>,
    /// A BDAT chunk has been taken: DATA and RCPT are no longer allowed.
    bdat: bool,
    /// Sticky refusal of a failed BDAT transaction, repeated to each chunk.
    failed: Option<String>,
    /// Why it failed (for the counters).
    failed_reason: Option<Reason>,
    /// MAIL AUTH= from an authenticated client (RFC 4954 section 5).
    auth_param: Option<auth::MailAuth>,
    /// The id named in the message's Received header.
    received_id: Option<String>,
}

/// XFORWARD attributes (Postfix XFORWARD_README); `None` is [UNAVAILABLE].
#[derive(Debug, Clone, Default)]
struct Forwarded {
    name: Option<String>,
    addr: Option<String>,
    port: Option<String>,
    proto: Option<String>,
    helo: Option<String>,
    ident: Option<String>,
    source: Option<String>,
}

pub struct Session<'c> {
    cfg: &'c Config,
    peer: Peer,
    /// HELO/EHLO name once given.
    helo: Option<Vec<u8>>,
    esmtp: bool,
    /// XCLIENT HELO, PROTO and LOGIN: they outlive later HELO/EHLO commands.
    x_helo: Option<String>,
    x_proto: Option<bool>,
    x_login: Option<String>,
    tx: Option<Tx>,
    fwd: Option<Forwarded>,
    /// XCLIENT replaced the client's facts (in `peer`, `x_helo`).
    xclient: bool,
    /// The session's own ids for its messages (`<id_base>.<n>`), where the
    /// queue does not name one before the message is written.
    id_base: String,
    id_seq: u32,
    pub stats: Stats,
    /// TLS facts once TLS is active (from the start with implicit TLS).
    tls: Option<TlsInfo>,
    /// The user name after a successful AUTH, and the mechanism.
    auth_user: Option<String>,
    auth_mech: Option<Mech>,
    auth_failures: u32,
    /// An AUTH exchange in progress.
    auth_ex: Option<Exchange>,
}

/// Attribute names of XCLIENT and XFORWARD as offered in EHLO.
pub const XCLIENT_ATTRS: &str = "NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT";
pub const XFORWARD_ATTRS: &str = "NAME ADDR PORT PROTO HELO IDENT SOURCE";

impl<'c> Session<'c> {
    /// A fresh session (also for each session a long-lived worker serves).
    pub fn new(cfg: &'c Config, peer: Peer) -> Session<'c> {
        Session {
            cfg,
            peer,
            helo: None,
            esmtp: false,
            x_helo: None,
            x_proto: None,
            x_login: None,
            tx: None,
            fwd: None,
            xclient: false,
            id_base: String::new(),
            id_seq: 0,
            stats: Stats::default(),
            tls: cfg.tls_initial.clone(),
            auth_user: None,
            auth_mech: None,
            auth_failures: 0,
            auth_ex: None,
        }
    }

    /// TLS facts, once TLS is active.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The AUTH user, once authenticated.
    pub fn auth_user(&self) -> Option<&str> {
        self.auth_user.as_deref()
    }

    /// RFC 3207 section 4.2: TLS is up; forget everything the client said
    /// before (it must EHLO again), including any AUTH.
    pub fn tls_started(&mut self, info: TlsInfo, hooks: &mut dyn Hooks) {
        hooks.log(format_args!(
            "starttls: {} {}{}",
            info.protocol,
            info.cipher,
            info.peer_subject.as_deref().map(|p| format!(" peer {p}")).unwrap_or_default()
        ));
        self.tls = Some(info);
        self.helo = None;
        self.esmtp = false;
        self.end_tx();
        self.auth_user = None;
        self.auth_mech = None;
        self.auth_ex = None;
    }

    /// STARTTLS with more input already buffered behind it: refused
    /// (command injection, CVE-2011-0411); the session goes on in plaintext.
    pub fn starttls_pipelined(&mut self, hooks: &mut dyn Hooks, out: &mut Vec<u8>) -> Action {
        self.refuse("STARTTLS", ucspitls::STARTTLS_PIPELINED, hooks, out)
    }

    /// The next line of an AUTH exchange; `None` when the line was refused
    /// as a whole (too long, NUL, bare CR/LF).
    pub fn auth_line(&mut self, line: Option<&[u8]>, hooks: &mut dyn Hooks, out: &mut Vec<u8>) -> Action {
        let Some(mut ex) = self.auth_ex.take() else {
            return self.refuse("AUTH", auth::AUTH_MALFORMED, hooks, out);
        };
        let step = match line {
            Some(l) => ex.respond(l),
            None => Step::Fail(auth::AUTH_LINE_TOO_LONG),
        };
        self.auth_step(ex, step, hooks, out)
    }

    /// Between MAIL and the end of the message (or RSET).
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The 220 greeting (RFC 2034: no enhanced code here).
    pub fn greeting(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("220 {} ESMTP smtpd-rs\r\n", self.cfg.hostname).as_bytes());
    }

    /// A line that is not a command at all (too long, NUL, bare CR or LF):
    /// one of the `reply::*_CMD` / `LINE_TOO_LONG` texts.
    pub fn bad_line(&mut self, why: &'static str, hooks: &mut dyn Hooks, out: &mut Vec<u8>) -> Action {
        self.refuse("line", why, hooks, out)
    }

    /// Parse and act on one command line (without CRLF).
    pub fn handle_line(&mut self, line: &[u8], hooks: &mut dyn Hooks, out: &mut Vec<u8>) -> Action {
        let verb = verb_of(line);
        match command::parse(line) {
            Ok(cmd) => self.handle(cmd, verb, hooks, out),
            Err(e) => {
                let r = match e {
                    ParseError::Args if verb == "HELO" || verb == "EHLO" => reply::BAD_HELO,
                    ParseError::Args => reply::BAD_ARGS,
                    ParseError::Path => reply::BAD_PATH,
                    ParseError::Param => reply::BAD_PARAM,
                    ParseError::BdatSize => reply::BAD_BDAT,
                    ParseError::Mailbox(_) => reply::BAD_RCPT,
                };
                self.refuse(verb, r, hooks, out)
            }
        }
    }

    fn handle(&mut self, cmd: Command<'_>, verb: &str, hooks: &mut dyn Hooks, out: &mut Vec<u8>) -> Action {
        match cmd {
            Command::Helo(name) => self.hello(name, false, verb, hooks, out),
            Command::Ehlo(name) => self.hello(name, true, verb, hooks, out),
            Command::Mail { path, params } => self.mail(path, params, hooks, out),
            Command::Rcpt { path, params } => self.rcpt(path, params, hooks, out),
            Command::Data => self.data(hooks, out),
            Command::Bdat { size, last } => self.bdat(size, last, hooks, out),
            Command::Rset => {
                self.end_tx();
                out.extend_from_slice(reply::RSET_OK.as_bytes());
                Action::Continue
            }
            Command::Noop => {
                out.extend_from_slice(reply::OK.as_bytes());
                Action::Continue
            }
            Command::Vrfy(arg) => {
                let addr = strip_brackets(arg);
                if self.cfg.policy.listed(addr) {
                    out.extend_from_slice(b"250 2.1.5 <");
                    out.extend_from_slice(addr);
                    out.extend_from_slice(b">\r\n");
                } else {
                    out.extend_from_slice(reply::VRFY_MAYBE.as_bytes());
                }
                Action::Continue
            }
            Command::Quit => {
                out.extend_from_slice(reply::BYE.as_bytes());
                Action::Close
            }
            Command::Xclient(args) => self.xclient(args, hooks, out),
            Command::Xforward(args) => self.xforward(args, hooks, out),
            Command::StartTls => self.starttls(verb, hooks, out),
            Command::Auth(arg) => self.auth(arg, hooks, out),
            Command::Refused(_) => self.refuse(verb, reply::NOT_OFFERED, hooks, out),
            Command::Unknown => self.refuse(verb, reply::UNKNOWN, hooks, out),
        }
    }

    fn hello(&mut self, name: &[u8], esmtp: bool, verb: &str, hooks: &mut dyn Hooks, out: &mut Vec<u8>) -> Action {
        if check_helo(name).is_err() {
            return self.refuse(verb, reply::BAD_HELO, hooks, out);
        }
        if self.cfg.helo_check && !hooks.helo_resolves(name) {
            return self.refuse(verb, reply::HELO_UNRESOLVED, hooks, out);
        }
        self.tx = None; // RFC 5321 4.1.4: HELO/EHLO also reset the transaction
        self.helo = Some(name.to_vec());
        self.esmtp = esmtp;
        let host = &self.cfg.hostname;
        if !esmtp {
            out.extend_from_slice(format!("250 {host}\r\n").as_bytes());
            return Action::Continue;
        }
        let mut lines: Vec<String> = vec![host.clone(), "PIPELINING".into()];
        lines.push(match self.cfg.databytes {
            0 => "SIZE".into(),
            n => format!("SIZE {n}"),
        });
        for k in ["8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING", "DSN"] {
            lines.push(k.into());
        }
        if self.cfg.xclient {
            lines.push(format!("XCLIENT {XCLIENT_ATTRS}"));
        }
        if self.cfg.xforward {
            lines.push(format!("XFORWARD {XFORWARD_ATTRS}"));
        }
        if self.tls.is_none() && self.cfg.tls_policy.offer && hooks.tls_available() {
            lines.push("STARTTLS".into());
        }
        if let Some(a) = self.cfg.auth {
            if self.auth_user.is_none() && (self.tls.is_some() || self.cfg.auth_plaintext) {
                lines.push(a.ehlo_keyword());
            }
        }
        let n = lines.len();
        for (i, l) in lines.iter().enumerate() {
            out.extend_from_slice(if i + 1 == n { b"250 " } else { b"250-" });
            out.extend_from_slice(l.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Action::Continue
    }

    fn mail(&mut self, path: &[u8], params: &[u8], hooks: &mut dyn Hooks, out: &mut Vec<u8>) -> Action {
        if self.helo.is_none() {
            return self.refuse("MAIL", reply::WANT_HELO, hooks, out);
        }
        if self.tx.is_some() {
            return self.refuse("MAIL", reply::NESTED_MAIL, hooks, out);
        }
        // UCSPITLS=! or @: submission ports want TLS first (530 5.7.0).
        if self.cfg.tls_policy.require && self.tls.is_none() {
            return self.refuse("MAIL", ucspitls::TLS_REQUIRED, hooks, out);
        }
        // SMTPAUTH=!...: AUTH first.
        if self.cfg.auth.is_some_and(|a| a.required) && self.auth_user.is_none() {
            return self.refuse("MAIL", auth::AUTH_REQUIRED, hooks, out);
        }
        let mut tx = Tx::default();
        let mut size: Option<u64> = None;
        let mut seen: u8 = 0;
        let mut seen_auth = false;
        for p in params_iter(params) {
            let Ok((k, v)) = p else { return self.refuse("MAIL", reply::BAD_PARAM, hooks, out) };
            if k.eq_ignore_ascii_case(b"AUTH") && self.cfg.auth.is_some() {
                // RFC 4954 section 5: valid xtext or <>; kept only from an
                // authenticated client (otherwise as if AUTH=<>).
                let parsed = v.and_then(auth::parse_mail_auth);
                if parsed.is_none() {
                    return self.refuse("MAIL", reply::BAD_PARAM, hooks, out);
                }
                if seen_auth {
                    return self.refuse("MAIL", reply::DUP_PARAM, hooks, out);
                }
                seen_auth = true;
                if self.auth_user.is_some() {
                    tx.auth_param = parsed;
                }
                continue;
            }
            let (bit, r) = match_mail_param(k, v, &mut tx, &mut size);
            if let Some(r) = r {
                return self.refuse("MAIL", r, hooks, out);
            }
            if seen & bit != 0 {
                return self.refuse("MAIL", reply::DUP_PARAM, hooks, out);
            }
            seen |= bit;
        }
        if !path.is_empty() {
            if let Err(e) = check_mailbox(path, tx.smtputf8) {
                let r = if e == AddrError::Utf8 { reply::NEED_SMTPUTF8 } else { reply::BAD_SENDER };
                return self.refuse("MAIL", r, hooks, out);
            }
        }
        if self.cfg.databytes > 0 && size.is_some_and(|s| s > self.cfg.databytes) {
            return self.refuse("MAIL", reply::SIZE_EXCEEDED, hooks, out);
        }
        tx.sender = path.to_vec();
        self.tx = Some(tx);
        out.extend_from_slice(reply::MAIL_OK.as_bytes());
        Action::Continue
    }

    fn rcpt(&mut self, path: &[u8], params: &[u8], hooks: &mut dyn Hooks, out: &mut Vec<u8>) -> Action {
        let Some(tx) = &self.tx else {
            let r = if self.helo.is_none() { reply::WANT_HELO } else { reply::WANT_MAIL };
            return self.refuse("RCPT", r, hooks, out);
        };
        if tx.bdat {
            return self.refuse("RCPT", reply::IN_TRANSACTION, hooks, out);
        }
        let mut notify: Option<String> = None;
        let mut orcpt: Option<Vec<u8>> = None;
        for p in params_iter(params) {
            let r = match p {
                Err(_) => Some(reply::BAD_PARAM),
                Ok((k, Some(v))) if k.eq_ignore_ascii_case(b"NOTIFY") => {
                    if notify.is_some() {
                        Some(reply::DUP_PARAM)
                    } else {
                        notify = parse_notify(v);
                        notify.is_none().then_some(reply::BAD_DSN)
                    }
                }
                Ok((k, Some(v))) if k.eq_ignore_ascii_case(b"ORCPT") => {
                    if orcpt.is_some() {
                        Some(reply::DUP_PARAM)
                    } else {
                        orcpt = valid_orcpt(v).then(|| v.to_vec());
                        orcpt.is_none().then_some(reply::BAD_DSN)
                    }
                }
                Ok((k, None)) if k.eq_ignore_ascii_case(b"NOTIFY") || k.eq_ignore_ascii_case(b"ORCPT") => {
                    Some(reply::BAD_DSN)
                }
                Ok(_) => Some(reply::UNKNOWN_PARAM),
            };
            if let Some(r) = r {
                return self.refuse("RCPT", r, hooks, out);
            }
        }
        if !is_postmaster(path) {
            if let Err(e) = check_mailbox(path, tx.smtputf8) {
                let r = if e == AddrError::Utf8 { reply::NEED_SMTPUTF8 } else { reply::BAD_RCPT };
                return self.refuse("RCPT", r, hooks, out);
            }
        }
        if self.cfg.maxrcpt > 0 && tx.rcpts.len() >= self.cfg.maxrcpt {
            return self.refuse("RCPT", reply::TOO_MANY_RCPTS, hooks, out);
        }
        let decision = self.cfg.policy.check_rcpt(path, self.relay_right());
        let addr = match decision {
            Decision::Accept(a) => a,
            Decision::Refuse(r) => return self.refuse("RCPT", r, hooks, out),
            Decision::Ask(a) => match hooks.rcpt_check(&tx.sender, &a) {
                RcptCheck::Accept => a,
                RcptCheck::Reject => return self.refuse("RCPT", reply::NO_MAILBOX, hooks, out),
                RcptCheck::Temp => return self.refuse("RCPT", reply::RCPTCHECK_TEMP, hooks, out),
            },
        };
        if let Some(tx) = &mut self.tx {
            if notify.is_some() || orcpt.is_some() {
                tx.dsn.push((tx.rcpts.len(), notify, orcpt));
            }
            tx.rcpts.push(addr);
        }
        out.extend_from_slice(reply::RCPT_OK.as_bytes());
        Action::Continue
    }

    /// The client's right to relay, as the suffix appended to each
    /// recipient (qmail's RELAYCLIENT value), or `None`. An authenticated
    /// client may relay (AUTH in this session, or the LOGIN a proxy gave in
    /// XCLIENT), as may a client on a RELAYCLIENTS network. The rights of the
    /// connection itself, RELAYCLIENT from the rule that matched the peer and
    /// (UCSPITLS ? or @) the peer's verified certificate, are the proxy's
    /// once XCLIENT has named another client: they no longer apply, so that
    /// a proxy that forwards internet clients does not make each of them a
    /// relay client (Postfix evaluates its restrictions for the forwarded
    /// client likewise).
    fn relay_right(&self) -> Option<&[u8]> {
        if self.auth_user.is_some() || self.x_login.is_some() {
            return Some(b"");
        }
        if !self.xclient {
            if self.cfg.tls_policy.cert_relay && self.tls.as_ref().is_some_and(TlsInfo::client_cert_verified) {
                return Some(b"");
            }
            if let Some(suffix) = &self.cfg.policy.relayclient {
                return Some(suffix);
            }
        }
        self.cfg.policy.relay_net(self.peer.remote_ip.as_deref()).then_some(b"")
    }

    fn data(&mut self, hooks: &mut dyn Hooks, out: &mut Vec<u8>) -> Action {
        let r = match &self.tx {
            _ if self.helo.is_none() => reply::WANT_HELO,
            None => reply::WANT_MAIL,
            Some(tx) if tx.bdat => reply::DATA_AFTER_BDAT,
            Some(tx) if tx.rcpts.is_empty() => reply::NO_VALID_RCPT,
            Some(_) => {
                out.extend_from_slice(reply::GO_AHEAD.as_bytes());
                return Action::Data;
            }
        };
        self.refuse("DATA", r, hooks, out)
    }

    fn bdat(&mut self, size: u64, last: bool, hooks: &mut dyn Hooks, out: &mut Vec<u8>) -> Action {
        let refused = |r: &str, out: &mut Vec<u8>| {
            out.extend_from_slice(r.as_bytes());
            Action::Bdat { size, last, accept: false }
        };
        let r = match &mut self.tx {
            _ if self.helo.is_none() => reply::WANT_HELO,
            None => reply::WANT_MAIL,
            Some(tx) if tx.rcpts.is_empty() => reply::NO_VALID_RCPT,
            Some(tx) => {
                if let Some(f) = tx.failed.clone() {
                    let why = outcome_reason(tx.failed_reason);
                    // RFC 3030 3: the transaction has failed; each chunk gets the refusal.
                    if last {
                        self.end_tx();
                    }
                    self.tally(&f, why);
                    hooks.log(format_args!("refused BDAT: {}", f.trim_end()));
                    return refused(&f, out);
                }
                tx.bdat = true;
                return Action::Bdat { size, last, accept: true };
            }
        };
        self.count_refusal("BDAT", r, hooks);
        if self.stats.errors >= MAX_ERRORS {
            out.extend_from_slice(r.as_bytes());
            out.extend_from_slice(reply::TOO_MANY_ERRORS.as_bytes());
            return Action::Close;
        }
        refused(r, out)
    }

    /// A BDAT chunk that is not the last one has been read. `failed`: the
    /// message failed in it (the queue message has been abandoned).
    pub fn chunk_done(&mut self, size: u64, failed: Option<Outcome>, hooks: &mut dyn Hooks, out: &mut Vec<u8>) {
        match failed {
            None => out.extend_from_slice(format!("250 2.0.0 {size} octets received\r\n").as_bytes()),
            Some(o) => {
                let r = outcome_reply(&o);
                hooks.log(format_args!("refused BDAT: {}", r.trim_end()));
                let why = outcome_cause(&o);
                self.tally(&r, why);
                self.stats.messages_refused += 1;
                out.extend_from_slice(r.as_bytes());
                if let Some(tx) = &mut self.tx {
                    tx.failed = Some(r);
                    tx.failed_reason = Some(why);
                }
            }
        }
    }

    /// The message (DATA, or the last BDAT chunk) has been read and handed
    /// to the queue, or refused: give the one reply and end the transaction.
    pub fn message_done(&mut self, outcome: Outcome, size: u64, hooks: &mut dyn Hooks, out: &mut Vec<u8>) {
        let Some(tx) = self.tx.as_ref() else { return };
        match &outcome {
            Outcome::Queued(id) => {
                self.stats.messages += 1;
                self.stats.recipients += tx.rcpts.len() as u32;
                self.stats.bytes += size;
                // The Received id, where it is not the queue's (a foreign
                // QMAILQUEUE): so that the header leads to this line.
                let rid = match tx.received_id.as_deref() {
                    Some(r) if r != id => format!(" received-id {r}"),
                    _ => String::new(),
                };
                hooks.log(format_args!(
                    "message accepted: id {id} from <{}> rcpts {} size {size}{rid}{}",
                    show(&tx.sender),
                    tx.rcpts.len(),
                    self.forwarded_client().unwrap_or_default()
                ));
                out.extend_from_slice(format!("250 2.0.0 ok: queued as {id}\r\n").as_bytes());
            }
            o => {
                let r = outcome_reply(o);
                hooks.log(format_args!(
                    "message refused: from <{}> rcpts {} size {size}: {}",
                    show(&tx.sender),
                    tx.rcpts.len(),
                    r.trim_end()
                ));
                out.extend_from_slice(r.as_bytes());
                self.tally(&r, outcome_cause(o));
                self.stats.messages_refused += 1;
            }
        }
        self.end_tx();
    }

    /// The envelope and attribute block of the message about to be queued.
    pub fn queue_request(&self) -> (Envelope, Attrs) {
        let mut attrs = Attrs::default();
        let Some(tx) = &self.tx else { return (Envelope::default(), attrs) };
        let env = Envelope { sender: tx.sender.clone(), recipients: tx.rcpts.clone() };
        if let Some(b) = tx.body {
            attrs.push("BODY", b);
        }
        if tx.smtputf8 {
            attrs.push("SMTPUTF8", "1");
        }
        if let Some(e) = &tx.envid {
            attrs.push("ENVID", e);
        }
        if let Some(r) = tx.ret {
            attrs.push("RET", r);
        }
        for (i, notify, orcpt) in &tx.dsn {
            if let Some(n) = notify {
                attrs.push(&format!("RCPT.{i}.NOTIFY"), n);
            }
            if let Some(o) = orcpt {
                attrs.push(&format!("RCPT.{i}.ORCPT"), o);
            }
        }
        let mut client = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                attrs.push(k, v);
            }
        };
        match &self.fwd {
            // XFORWARD_README note 4: never mix forwarded and session facts.
            Some(f) => {
                client("CLIENT_ADDR", f.addr.as_deref());
                client("CLIENT_PORT", f.port.as_deref());
                client("CLIENT_NAME", f.name.as_deref());
                client("CLIENT_HELO", f.helo.as_deref());
                client("CLIENT_PROTO", f.proto.as_deref());
                client("CLIENT_IDENT", f.ident.as_deref());
                client("CLIENT_SOURCE", f.source.as_deref());
            }
            None => {
                let helo = self.helo_name();
                client("CLIENT_ADDR", self.peer.remote_ip.as_deref());
                client("CLIENT_PORT", self.peer.remote_port.as_deref());
                client("CLIENT_NAME", self.peer.remote_host.as_deref());
                client("CLIENT_HELO", Some(&helo));
                client("CLIENT_PROTO", Some(self.proto()));
                client("CLIENT_IDENT", self.peer.remote_info.as_deref());
            }
        }
        if let Some(l) = self.x_login.as_ref().or(self.auth_user.as_ref()) {
            attrs.push("CLIENT_LOGIN", l);
        }
        // RELAYCLIENT describes this connection's peer: it says nothing of
        // a client that XCLIENT or XFORWARD named.
        if self.cfg.policy.relayclient.is_some() && self.fwd.is_none() && !self.xclient {
            attrs.push("CLIENT_RELAY", "1");
        }
        if let Some(t) = &self.tls {
            for (k, v) in t.attrs() {
                attrs.push(k, v);
            }
        }
        (env, attrs)
    }

    /// The prefix of the session's own message ids: something unique to this
    /// session among all (smtpd-rs uses `s<start time>.<pid>.<session number>`).
    pub fn set_id_base(&mut self, base: String) {
        self.id_base = base;
    }

    /// A session-unique id for the message about to be queued, for a queue
    /// that names its id only once the message is in (a foreign QMAILQUEUE).
    pub fn own_message_id(&mut self) -> String {
        self.id_seq += 1;
        format!("{}.{}", self.id_base, self.id_seq)
    }

    /// The client that XCLIENT or XFORWARD named, for the log line of a
    /// message (as Postfix logs `orig_client=`): ` orig_client=NAME[ADDR]:PORT
    /// orig_helo=HELO`, or None for a session without them.
    pub fn forwarded_client(&self) -> Option<String> {
        let (name, addr, port, helo) = match &self.fwd {
            Some(f) => (f.name.as_deref(), f.addr.as_deref(), f.port.as_deref(), f.helo.as_deref()),
            None if self.xclient => (
                self.peer.remote_host.as_deref(),
                self.peer.remote_ip.as_deref(),
                self.peer.remote_port.as_deref(),
                self.x_helo.as_deref(),
            ),
            None => return None,
        };
        let v = |x: Option<&str>| show(x.unwrap_or("unknown").as_bytes()).replace(' ', "_");
        Some(format!(" orig_client={}[{}]:{} orig_helo={}", v(name), v(addr), v(port), v(helo)))
    }

    /// The Received header for the message about to be queued, naming `id`
    /// (the queue id when known ahead, else the session's own id for it).
    pub fn received(&mut self, now: i64, id: &str) -> Vec<u8> {
        if let Some(tx) = &mut self.tx {
            tx.received_id = Some(id.to_owned());
        }
        let helo = self.helo_name();
        let tls_comment = self.tls.as_ref().map(TlsInfo::received_comment);
        let rcpt = self.tx.as_ref().filter(|t| t.rcpts.len() == 1).and_then(|t| t.rcpts.first());
        received_header(&Trace {
            helo: helo.as_bytes(),
            remote_name: self.peer.remote_host.as_deref(),
            remote_ip: self.peer.remote_ip.as_deref(),
            hostname: &self.cfg.hostname,
            proto: self.proto(),
            tls: tls_comment.as_deref(),
            rcpt: rcpt.map(Vec::as_slice),
            auth_user: self.auth_user.as_deref().filter(|_| self.cfg.received_auth),
            id: Some(id),
            now,
        })
    }

    /// The DATABYTES limit for the decoders.
    pub fn size_limit(&self) -> u64 {
        self.cfg.databytes
    }

    /// The MAXHOPS limit for the hop counter.
    pub fn hop_limit(&self) -> u32 {
        self.cfg.maxhops
    }

    /// Count one refusal with reply `r`, by its class and `why`.
    fn tally(&mut self, r: &str, why: Reason) {
        self.stats.refused += 1;
        let class = match r.as_bytes().first() {
            Some(b'4') => 0,
            Some(b'5') => 1,
            _ => return,
        };
        if let Some(n) = self.stats.refusals.get_mut(class).and_then(|c| c.get_mut(why.index())) {
            *n += 1;
        }
    }

    /// What the session did, for the supervisor (smtpd-rs(8), REPORTS).
    pub fn report(&self, end: statsfd::End) -> statsfd::SessionReport {
        let s = &self.stats;
        let mut r = statsfd::SessionReport {
            end,
            messages: s.messages.into(),
            recipients: s.recipients.into(),
            bytes: s.bytes,
            messages_refused: s.messages_refused.into(),
            ..Default::default()
        };
        for (c, row) in s.refusals.iter().enumerate() {
            for (i, n) in row.iter().enumerate() {
                r.refused[c][i] = (*n).into();
            }
        }
        for (i, n) in s.auth.iter().enumerate() {
            r.auth[i] = (*n).into();
        }
        r
    }

    /// The log line at the end of the session.
    pub fn log_end(&self, how: &str, hooks: &mut dyn Hooks) {
        let s = &self.stats;
        hooks.log(format_args!(
            "end: {how}: messages {} recipients {} bytes {} refused {} errors {}",
            s.messages, s.recipients, s.bytes, s.refused, s.errors
        ));
    }

    fn helo_name(&self) -> String {
        match (&self.x_helo, &self.helo) {
            (Some(h), _) => h.clone(),
            (None, Some(h)) => String::from_utf8_lossy(h).into_owned(),
            (None, None) => "unknown".into(),
        }
    }

    fn proto(&self) -> &'static str {
        let utf8 = self.tx.as_ref().is_some_and(|t| t.smtputf8);
        let auth = self.x_login.is_some() || self.auth_user.is_some();
        protocol_word(self.x_proto.unwrap_or(self.esmtp), self.tls.is_some(), auth, utf8)
    }

    fn end_tx(&mut self) {
        self.tx = None;
        // XFORWARD_README: attributes are reset at the end of the transaction.
        self.fwd = None;
    }

    fn xclient(&mut self, args: &[u8], hooks: &mut dyn Hooks, out: &mut Vec<u8>) -> Action {
        let items = match self.xattrs(self.cfg.xclient, reply::XCLIENT_DENIED, args, &XCLIENT_NAMES) {
            Ok(items) => items,
            Err(r) => return self.refuse("XCLIENT", r, hooks, out),
        };
        // Check first, then act: every value is valid at this point.
        for (name, value) in items {
            match name {
                "NAME" => self.peer.remote_host = value,
                "ADDR" => self.peer.remote_ip = value.map(|a| strip_ipv6_tag(&a)),
                "PORT" => self.peer.remote_port = value,
                "PROTO" => self.x_proto = value.map(|p| p.eq_ignore_ascii_case("ESMTP")),
                "HELO" => self.x_helo = value,
                "LOGIN" => self.x_login = value,
                "DESTADDR" => self.peer.local_ip = value.map(|a| strip_ipv6_tag(&a)),
                "DESTPORT" => self.peer.local_port = value,
                _ => {}
            }
        }
        self.xclient = true;
        hooks.log(format_args!(
            "xclient: remote {} [{}] port {}",
            self.peer.remote_host.as_deref().unwrap_or("unknown"),
            self.peer.remote_ip.as_deref().unwrap_or("unknown"),
            self.peer.remote_port.as_deref().unwrap_or("unknown")
        ));
        // XCLIENT_README: back to the initial greeting stage, answered with 220.
        // An AUTH the proxy did was for itself, not for the client it names.
        self.helo = None;
        self.esmtp = false;
        self.end_tx();
        self.auth_user = None;
        self.auth_mech = None;
        self.auth_ex = None;
        self.greeting(out);
        Action::Continue
    }

    fn xforward(&mut self, args: &[u8], hooks: &mut dyn Hooks, out: &mut Vec<u8>) -> Action {
        let items = match self.xattrs(self.cfg.xforward, reply::XFORWARD_DENIED, args, &XFORWARD_NAMES) {
            Ok(items) => items,
            Err(r) => return self.refuse("XFORWARD", r, hooks, out),
        };
        let f = self.fwd.get_or_insert_with(Forwarded::default);
        for (name, value) in items {
            match name {
                "NAME" => f.name = value,
                "ADDR" => f.addr = value.map(|a| strip_ipv6_tag(&a)),
                "PORT" => f.port = value,
                "PROTO" => f.proto = value,
                "HELO" => f.helo = value,
                "IDENT" => f.ident = value,
                "SOURCE" => f.source = value,
                _ => {}
            }
        }
        out.extend_from_slice(reply::OK.as_bytes());
        Action::Continue
    }

    /// XCLIENT's and XFORWARD's checks, before either acts: the command is
    /// allowed (`allowed`, else `denied`), no transaction is open, and every
    /// attribute is known and well-formed. The refusal is the `Err`.
    fn xattrs(&self, allowed: bool, denied: &'static str, args: &[u8], names: &[&'static str]) -> XattrsResult {
        if !allowed {
            return Err(denied);
        }
        if self.tx.is_some() {
            return Err(reply::IN_TRANSACTION);
        }
        parse_xattrs(args, names).ok_or(reply::BAD_XATTR)
    }

    /// Give a refusal, log it, count it; protocol errors (5.5.x: 500-504,
    /// 555) count toward the limit that ends the session with 421.
    fn starttls(&mut self, verb: &str, hooks: &mut dyn Hooks, out: &mut Vec<u8>) -> Action {
        if self.tls.is_some() {
            return self.refuse(verb, ucspitls::STARTTLS_AGAIN, hooks, out);
        }
        if !(self.cfg.tls_policy.offer && hooks.tls_available()) {
            return self.refuse(verb, reply::STARTTLS_UNAVAILABLE, hooks, out);
        }
        Action::StartTls
    }

    fn auth(&mut self, arg: &[u8], hooks: &mut dyn Hooks, out: &mut Vec<u8>) -> Action {
        let Some(policy) = self.cfg.auth else { return self.refuse("AUTH", reply::AUTH_UNAVAILABLE, hooks, out) };
        let r = if self.helo.is_none() {
            Some(reply::WANT_HELO)
        } else if self.auth_user.is_some() {
            Some(auth::AUTH_ALREADY)
        } else if self.tx.is_some() {
            Some(auth::AUTH_IN_TRANSACTION)
        } else if self.tls.is_none() && !self.cfg.auth_plaintext {
            Some(auth::AUTH_NEEDS_TLS)
        } else {
            None
        };
        if let Some(r) = r {
            return self.refuse("AUTH", r, hooks, out);
        }
        let (mech, initial) = match auth::parse_auth_args(arg) {
            Ok(x) => x,
            Err(r) => return self.refuse("AUTH", r, hooks, out),
        };
        if !policy.allows(mech) {
            return self.refuse("AUTH", auth::AUTH_UNKNOWN_MECH, hooks, out);
        }
        let challenge = if mech == Mech::CramMd5 {
            let (pid, t) = hooks.unique();
            auth::cram_challenge(pid, t, &self.cfg.hostname)
        } else {
            Vec::new()
        };
        let (ex, step) = auth::start(mech, initial, challenge);
        self.auth_step(ex, step, hooks, out)
    }

    fn auth_step(&mut self, ex: Exchange, step: Step, hooks: &mut dyn Hooks, out: &mut Vec<u8>) -> Action {
        let mech = ex.mech();
        match step {
            Step::Ask(text) => {
                out.extend_from_slice(text.as_bytes());
                self.auth_ex = Some(ex);
                Action::AuthLine
            }
            Step::Fail(r) => self.refuse("AUTH", r, hooks, out),
            Step::Check(creds) => {
                let user = String::from_utf8_lossy(&creds.user).into_owned();
                let verdict = hooks.check_password(&creds);
                let shown: String = user.chars().filter(|c| !c.is_control()).take(100).collect();
                match verdict {
                    Verdict::Accepted => {
                        self.stats.auth[0] += 1;
                        hooks.log(format_args!("auth: success type={} user=<{shown}>", mech.lower_name()));
                        self.auth_user = Some(user);
                        self.auth_mech = Some(mech);
                        out.extend_from_slice(auth::AUTH_OK.as_bytes());
                        Action::Continue
                    }
                    Verdict::Rejected => {
                        self.stats.auth[1] += 1;
                        self.auth_failures += 1;
                        hooks.log(format_args!("auth: failed type={} user=<{shown}>", mech.lower_name()));
                        if self.auth_failures >= auth::MAX_FAILURES {
                            self.tally(auth::AUTH_FAILED, Reason::Auth);
                            out.extend_from_slice(auth::AUTH_FAILED.as_bytes());
                            out.extend_from_slice(auth::AUTH_TOO_MANY.as_bytes());
                            hooks.log(format_args!("too many authentication failures"));
                            return Action::Close;
                        }
                        self.refuse("AUTH", auth::AUTH_FAILED, hooks, out)
                    }
                    Verdict::TempFail | Verdict::Misuse => {
                        self.stats.auth[2] += 1;
                        hooks.log(format_args!("auth: checkpassword {verdict:?} type={} user=<{shown}>", mech.lower_name()));
                        self.refuse("AUTH", auth::AUTH_TEMP, hooks, out)
                    }
                }
            }
        }
    }

    fn refuse(&mut self, verb: &str, r: &str, hooks: &mut dyn Hooks, out: &mut Vec<u8>) -> Action {
        out.extend_from_slice(r.as_bytes());
        self.count_refusal(verb, r, hooks);
        if self.stats.errors >= MAX_ERRORS {
            out.extend_from_slice(reply::TOO_MANY_ERRORS.as_bytes());
            hooks.log(format_args!("too many errors"));
            return Action::Close;
        }
        Action::Continue
    }

    fn count_refusal(&mut self, verb: &str, r: &str, hooks: &mut dyn Hooks) {
        self.tally(r, refusal_reason(verb, r));
        if r.starts_with("50") || r.starts_with("555") {
            self.stats.errors += 1;
        }
        hooks.log(format_args!("refused {verb}: {}", r.trim_end()));
    }
}

/// One MAIL parameter (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8,
/// RFC 3461 RET/ENVID): its bit for duplicate detection and a refusal.
fn match_mail_param(k: &[u8], v: Option<&[u8]>, tx: &mut Tx, size: &mut Option<u64>) -> (u8, Option<&'static str>) {
    let is = |n: &str| k.eq_ignore_ascii_case(n.as_bytes());
    if is("SIZE") {
        let n = v.filter(|v| v.len() <= 20 && v.iter().all(u8::is_ascii_digit));
        let Some(n) = n else { return (1, Some(reply::BAD_SIZE)) };
        *size = Some(n.iter().fold(0u64, |a, &d| a.saturating_mul(10).saturating_add(u64::from(d - b'0'))));
        (1, None)
    } else if is("BODY") {
        let Some(b) = keyword(v, &["7BIT", "8BITMIME"]) else { return (2, Some(reply::BAD_BODY)) };
        tx.body = Some(b);
        (2, None)
    } else if is("SMTPUTF8") {
        tx.smtputf8 = true;
        (4, v.is_some().then_some(reply::BAD_PARAM))
    } else if is("RET") {
        let Some(r) = keyword(v, &["FULL", "HDRS"]) else { return (8, Some(reply::BAD_DSN)) };
        tx.ret = Some(r);
        (8, None)
    } else if is("ENVID") {
        // RFC 3461 4.4: xtext, at most 100 characters, printable once decoded.
        let ok = v.filter(|v| v.len() <= 100).and_then(xtext::decode).is_some_and(|d| {
            d.iter().all(|&b| (0x20..0x7f).contains(&b))
        });
        if !ok {
            return (16, Some(reply::BAD_DSN));
        }
        tx.envid = v.map(<[u8]>::to_vec);
        (16, None)
    } else {
        (0, Some(reply::UNKNOWN_PARAM))
    }
}

/// `v` if it is one of `words` (case does not matter), spelt as in `words`.
fn keyword(v: Option<&[u8]>, words: &[&'static str]) -> Option<&'static str> {
    let v = v?;
    words.iter().copied().find(|w| v.eq_ignore_ascii_case(w.as_bytes()))
}

/// RFC 3461 4.1: NEVER, or a comma list of SUCCESS, FAILURE, DELAY.
fn parse_notify(v: &[u8]) -> Option<String> {
    let mut seen = [false; 3];
    let mut never = false;
    let mut n = 0;
    for w in v.split(|&b| b == b',') {
        n += 1;
        match w.to_ascii_uppercase().as_slice() {
            b"NEVER" => never = true,
            b"SUCCESS" if !seen[0] => seen[0] = true,
            b"FAILURE" if !seen[1] => seen[1] = true,
            b"DELAY" if !seen[2] => seen[2] = true,
            _ => return None,
        }
    }
    if never {
        return (n == 1).then(|| "NEVER".into());
    }
    let names = ["SUCCESS", "FAILURE", "DELAY"];
    Some(names.iter().zip(seen).filter(|(_, s)| *s).map(|(n, _)| *n).collect::<Vec<_>>().join(","))
}

/// RFC 3461 4.2: `addr-type ";" xtext`, at most 500 characters.
fn valid_orcpt(v: &[u8]) -> bool {
    let Some(semi) = v.iter().position(|&b| b == b';') else { return false };
    let (t, a) = (&v[..semi], &v[semi + 1..]);
    v.len() <= 500
        && !t.is_empty()
        && t.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        && !a.is_empty()
        && (xtext::decode(a).is_some() || (t.eq_ignore_ascii_case(b"utf-8") && std::str::from_utf8(a).is_ok()))
}

const XCLIENT_NAMES: [&str; 8] = ["NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR", "DESTPORT"];
const XFORWARD_NAMES: [&str; 7] = ["NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"];

/// The checked attributes of an XCLIENT or XFORWARD, or the refusal.
type XattrsResult = Result<Vec<(&'static str, Option<String>)>, &'static str>;

/// `NAME=xtext ...` (Postfix XCLIENT/XFORWARD): names case-insensitive,
/// values xtext-decoded, at most 255 octets, printable ASCII without
/// spaces; `[UNAVAILABLE]` and `[TEMPUNAVAIL]` become `None`. Each value is
/// checked for its attribute (addresses, ports, PROTO, SOURCE). `None` if
/// anything is wrong, so that nothing is applied.
fn parse_xattrs(args: &[u8], names: &[&'static str]) -> Option<Vec<(&'static str, Option<String>)>> {
    let mut items = Vec::new();
    for w in args.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
        let eq = w.iter().position(|&b| b == b'=')?;
        let name = *names.iter().find(|n| n.as_bytes().eq_ignore_ascii_case(&w[..eq]))?;
        let raw = xtext::decode(&w[eq + 1..])?;
        if raw.is_empty() || raw.len() > 255 || !raw.iter().all(u8::is_ascii_graphic) {
            return None;
        }
        let v = String::from_utf8(raw).ok()?;
        let unavailable = v.eq_ignore_ascii_case("[UNAVAILABLE]") || v.eq_ignore_ascii_case("[TEMPUNAVAIL]");
        if unavailable {
            items.push((name, None));
            continue;
        }
        let forward = names.len() == XFORWARD_NAMES.len();
        let ok = match name {
            "ADDR" | "DESTADDR" if !forward => parse_ip(&v),
            "PORT" | "DESTPORT" => v.parse::<u16>().is_ok(),
            "PROTO" if !forward => v.eq_ignore_ascii_case("SMTP") || v.eq_ignore_ascii_case("ESMTP"),
            "PROTO" => v.len() <= 64,
            "SOURCE" => v.eq_ignore_ascii_case("LOCAL") || v.eq_ignore_ascii_case("REMOTE"),
            "NAME" | "HELO" => !v.bytes().any(|b| b"()[]<>;\"\\".contains(&b)) || v.starts_with('['),
            _ => true,
        };
        if !ok {
            return None;
        }
        items.push((name, Some(v)));
    }
    (!items.is_empty()).then_some(items)
}

/// XCLIENT ADDR: IPv4, or IPv6 with the `IPV6:` prefix (any case).
fn parse_ip(v: &str) -> bool {
    match v.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("IPV6:") => v[5..].parse::<std::net::Ipv6Addr>().is_ok(),
        _ => v.parse::<std::net::Ipv4Addr>().is_ok(),
    }
}

fn strip_ipv6_tag(v: &str) -> String {
    match v.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("IPV6:") => v[5..].to_owned(),
        _ => v.to_owned(),
    }
}

/// The reply for a failed message.
fn outcome_reply(o: &Outcome) -> String {
    match o {
        Outcome::Queued(id) => format!("250 2.0.0 ok: queued as {id}\r\n"),
        Outcome::Refused(DataError::TooBig) => reply::TOO_BIG.into(),
        Outcome::Refused(DataError::TooManyHops) => reply::TOO_MANY_HOPS.into(),
        Outcome::Refused(_) => reply::BARE_LF_DATA.into(),
        Outcome::QueueFailed { permanent, text } => {
            // A queue program's own reply (notqmail's 82 text, e.g. from
            // auth-check: "550 5.7.23 ..."): sent as it is, when its code is
            // of the class the outcome says.
            if let Some(r) = full_reply(text, *permanent) {
                return r;
            }
            // qmail's texts end in "(#4.3.0)": reuse that code as the enhanced one.
            let code = text
                .rfind("(#")
                .and_then(|i| text.get(i + 2..).and_then(|t| t.strip_suffix(')')))
                .filter(|c| {
                    c.len() <= 9
                        && c.starts_with(if *permanent { '5' } else { '4' })
                        && c.split('.').count() == 3
                        && c.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                });
            let code = code.unwrap_or(if *permanent { "5.3.0" } else { "4.3.0" });
            let text: String = text.chars().filter(|c| !c.is_control()).take(400).collect();
            format!("{} {code} {text}\r\n", if *permanent { 554 } else { 451 })
        }
    }
}

/// `5xy x.y.z text` (or `4xy ...` when not permanent) at the front of a
/// queue program's text: that reply, cleaned of control characters.
fn full_reply(text: &str, permanent: bool) -> Option<String> {
    let (code, rest) = text.split_once(' ')?;
    let (enh, words) = rest.split_once(' ').unwrap_or((rest, ""));
    let class = if permanent { b'5' } else { b'4' };
    let code_ok = code.len() == 3 && code.as_bytes().first() == Some(&class) && code.bytes().all(|b| b.is_ascii_digit());
    let mut parts = enh.split('.');
    let enh_ok = parts.next() == Some(if permanent { "5" } else { "4" })
        && parts.by_ref().take(2).filter(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())).count() == 2
        && parts.next().is_none();
    if !code_ok || !enh_ok {
        return None;
    }
    let words: String = words.chars().filter(|c| !c.is_control()).take(400).collect();
    Some(format!("{code} {enh} {words}\r\n"))
}

/// Why a command was refused with reply `r` (for the counters), from who
/// refused it and the reply's enhanced status code (RFC 3463): X.1.3 and
/// X.1.7 (address syntax), X.5.x (protocol) and X.6.x (content) are
/// syntax, X.2.3 and X.3.4 size, other X.3.x the queue or the system, an
/// AUTH exchange's refusals auth; the rest (X.1.1 no mailbox, X.7.x
/// security or policy, X.4.x, the recipient limit X.5.3, RCPTCHECK's
/// temporary failure) policy.
pub fn refusal_reason(verb: &str, r: &str) -> Reason {
    if verb == "AUTH" {
        return Reason::Auth;
    }
    if r == reply::RCPTCHECK_TEMP || r == reply::TOO_MANY_RCPTS {
        return Reason::Policy;
    }
    let code = r.split(' ').nth(1).unwrap_or("");
    let mut parts = code.split('.').skip(1);
    match (parts.next(), parts.next()) {
        (Some("1"), Some("3" | "7")) | (Some("5" | "6"), _) => Reason::Syntax,
        (Some("2"), Some("3")) | (Some("3"), Some("4")) => Reason::Size,
        (Some("3"), _) => Reason::Queue,
        _ => Reason::Policy,
    }
}

/// Why a message was refused once read: its `Outcome`'s cause.
fn outcome_cause(o: &Outcome) -> Reason {
    match o {
        Outcome::Refused(DataError::TooBig) => Reason::Size,
        Outcome::Refused(DataError::TooManyHops) => Reason::Policy,
        Outcome::Refused(_) => Reason::Syntax,
        Outcome::QueueFailed { .. } | Outcome::Queued(_) => Reason::Queue,
    }
}

fn outcome_reason(r: Option<Reason>) -> Reason {
    r.unwrap_or(Reason::Queue)
}

/// `<addr>` -> `addr`; anything else as it is.
fn strip_brackets(a: &[u8]) -> &[u8] {
    match (a.iter().position(|&b| b == b'<'), a.iter().rposition(|&b| b == b'>')) {
        (Some(s), Some(e)) if s < e => &a[s + 1..e],
        _ => a,
    }
}

/// The command word in upper case, for log lines (`?` if unrecognized).
fn verb_of(line: &[u8]) -> &'static str {
    const VERBS: [&str; 21] = [
        "EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "VRFY", "QUIT", "STARTTLS", "AUTH",
        "XCLIENT", "XFORWARD", "HELP", "EXPN", "TURN", "ETRN", "SEND", "SAML", "SOML",
    ];
    let w = line.split(|&b| b == b' ').next().unwrap_or_default();
    VERBS.iter().find(|v| v.as_bytes().eq_ignore_ascii_case(w)).copied().unwrap_or("unknown command")
}

/// Bytes for a log line: printable ASCII and UTF-8 kept, the rest escaped.
pub fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            o.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            o.push(c);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtpd::policy::{parse_list, Policy};
    use crate::smtpd::config::QueueProgram;
    use std::path::PathBuf;
    use std::time::Duration;

    struct Fake {
        check: RcptCheck,
        resolves: bool,
        log: Vec<String>,
        asked: Vec<(Vec<u8>, Vec<u8>)>,
    }

    impl Hooks for Fake {
        fn rcpt_check(&mut self, sender: &[u8], rcpt: &[u8]) -> RcptCheck {
            self.asked.push((sender.to_vec(), rcpt.to_vec()));
            self.check
        }
        fn helo_resolves(&mut self, _: &[u8]) -> bool {
            self.resolves
        }
        fn log(&mut self, line: fmt::Arguments<'_>) {
            self.log.push(line.to_string());
        }
    }

    fn fake() -> Fake {
        Fake { check: RcptCheck::Accept, resolves: true, log: vec![], asked: vec![] }
    }

    fn config() -> Config {
        Config {
            hostname: "mx.test".into(),
            databytes: 1000,
            maxrcpt: 3,
            maxhops: 100,
            timeout: Duration::from_secs(5),
            pregreet: Duration::ZERO,
            helo_check: false,
            rcptcheck_timeout: Duration::from_secs(60),
            received_auth: false,
            xclient: false,
            xforward: false,
            policy: Policy { rcpthosts: Some(parse_list(b"example.com\n")), ..Policy::default() },
            queue: QueueProgram::Session(PathBuf::from("queue-inject")),
            tls_policy: Default::default(),
            ucspitls_unset: false,
            tls_initial: None,
            auth: None,
            auth_plaintext: false,
            checkpassword: Vec::new(),
        }
    }

    /// Run `lines`, return the first reply line (code and text) of each.
    fn transcript(cfg: &Config, hooks: &mut Fake, lines: &[&str]) -> (Vec<String>, Session<'static>) {
        let cfg: &'static Config = Box::leak(Box::new(cfg.clone()));
        let mut s = Session::new(cfg, Peer { remote_ip: Some("192.0.2.1".into()), ..Peer::default() });
        let mut got = vec![];
        for l in lines {
            let mut out = Vec::new();
            let a = s.handle_line(l.as_bytes(), hooks, &mut out);
            let text = String::from_utf8(out).unwrap();
            let last = text.lines().last().unwrap_or("").to_string();
            got.push(match a {
                Action::Data => format!("{last} [data]"),
                Action::Close => format!("{last} [close]"),
                Action::Bdat { accept, .. } => format!("{last}[bdat {accept}]"),
                Action::Continue => last,
                Action::StartTls => format!("{last} [starttls]"),
                Action::AuthLine => format!("{last} [authline]"),
            });
        }
        (got, s)
    }

    fn codes(got: &[String]) -> Vec<&str> {
        got.iter().map(|g| g.get(..3).unwrap_or(g)).collect()
    }

    #[test]
    fn refusals_are_counted_by_class_and_reason() {
        let cfg = config();
        let mut h = fake();
        let (_, mut s) = transcript(
            &cfg,
            &mut h,
            &[
                "FOO",                              // 500 5.5.1: syntax
                "EHLO client.test",
                "MAIL FROM:<a@b.c> SIZE=5000",      // 552 5.3.4: size
                "MAIL FROM:<a b>",                  // 553 5.1.7: syntax
                "MAIL FROM:<a@b.c>",
                "RCPT TO:<u@elsewhere.test>",       // 553 5.7.1: policy
                "RCPT TO:<u@elsewhere.test>",       // policy
                "RCPT TO:<u@example.com>",
                "RCPT TO:<v@example.com>",
                "RCPT TO:<w@example.com>",
                "RCPT TO:<x@example.com>",          // 452 4.5.3: policy (limit), temporary
            ],
        );
        let mut out = Vec::new();
        s.message_done(Outcome::QueueFailed { permanent: false, text: "disk full (#4.3.0)".into() }, 10, &mut h, &mut out);
        assert!(out.starts_with(b"451 4.3.0"));
        let r = s.report(statsfd::End::Quit);
        let (t, p) = (0, 1);
        assert_eq!(r.refused[p][Reason::Syntax.index()], 2);
        assert_eq!(r.refused[p][Reason::Size.index()], 1);
        assert_eq!(r.refused[p][Reason::Policy.index()], 2);
        assert_eq!(r.refused[t][Reason::Policy.index()], 1);
        assert_eq!(r.refused[t][Reason::Queue.index()], 1);
        assert_eq!(r.messages_refused, 1);
        assert_eq!(r.refused.iter().flatten().sum::<u64>(), u64::from(s.stats.refused));
        assert_eq!(r.messages, 0);
    }

    #[test]
    fn reasons_from_enhanced_codes() {
        for (verb, r, want) in [
            ("RCPT", reply::NOT_RCPTHOST, Reason::Policy),
            ("RCPT", reply::NO_MAILBOX, Reason::Policy),
            ("RCPT", reply::RCPTCHECK_TEMP, Reason::Policy),
            ("RCPT", reply::BAD_RCPT, Reason::Syntax),
            ("RCPT", reply::NEED_SMTPUTF8, Reason::Syntax),
            ("MAIL", reply::SIZE_EXCEEDED, Reason::Size),
            ("MAIL", crate::io::ucspitls::TLS_REQUIRED, Reason::Policy),
            ("MAIL", auth::AUTH_REQUIRED, Reason::Policy),
            ("DATA", reply::NO_VALID_RCPT, Reason::Syntax),
            ("EHLO", reply::HELO_UNRESOLVED, Reason::Policy),
            ("AUTH", auth::AUTH_FAILED, Reason::Auth),
            ("AUTH", auth::AUTH_BAD_BASE64, Reason::Auth),
            ("line", reply::LINE_TOO_LONG, Reason::Syntax),
            ("DATA", reply::QUEUE_UNAVAILABLE, Reason::Queue),
        ] {
            assert_eq!(refusal_reason(verb, r), want, "{verb} {r}");
        }
        assert_eq!(outcome_cause(&Outcome::Refused(DataError::TooBig)), Reason::Size);
        assert_eq!(outcome_cause(&Outcome::Refused(DataError::TooManyHops)), Reason::Policy);
    }

    #[test]
    fn sequence() {
        let cfg = config();
        let (got, _) = transcript(
            &cfg,
            &mut fake(),
            &[
                "MAIL FROM:<a@b.c>",
                "RCPT TO:<u@example.com>",
                "DATA",
                "EHLO client.test",
                "RCPT TO:<u@example.com>",
                "DATA",
                "MAIL FROM:<a@b.c>",
                "MAIL FROM:<a@b.c>",
                "DATA",
                "RCPT TO:<u@example.com>",
                "RSET",
                "RCPT TO:<u@example.com>",
                "MAIL FROM:<>",
                "RCPT TO:<u@example.com>",
                "DATA",
            ],
        );
        assert_eq!(
            codes(&got),
            ["503", "503", "503", "250", "503", "503", "250", "503", "554", "250", "250", "503", "250", "250", "354"]
        );
        assert!(got[14].ends_with("[data]"));
    }

    #[test]
    fn ehlo_keywords() {
        let mut cfg = config();
        cfg.xclient = true;
        let cfg: &'static Config = Box::leak(Box::new(cfg));
        let mut s = Session::new(cfg, Peer::default());
        let mut out = Vec::new();
        s.handle_line(b"EHLO x.y", &mut fake(), &mut out);
        let t = String::from_utf8(out).unwrap();
        for k in ["250-mx.test", "PIPELINING", "SIZE 1000", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING", "DSN"] {
            assert!(t.contains(k), "{k} in {t}");
        }
        assert!(t.contains("XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT"));
        assert!(!t.contains("XFORWARD") && !t.contains("STARTTLS") && !t.contains("AUTH"));
        assert!(t.lines().last().unwrap().starts_with("250 "));
    }

    #[test]
    fn refusals() {
        let cfg = config();
        let (got, s) = transcript(
            &cfg,
            &mut fake(),
            &[
                "EHLO bad name!",
                "HELO -bad.",
                "EHLO ok.test",
                "HELP",
                "EXPN x",
                "TURN",
                "ETRN x",
                "SEND",
                "SAML",
                "SOML",
                "STARTTLS",
                "AUTH PLAIN",
                "FOO",
                "XCLIENT ADDR=1.2.3.4",
                "XFORWARD ADDR=1.2.3.4",
                "VRFY <a@example.com>",
                "NOOP",
                "MAIL FROM:<a@b.c> FOO=1",
                "MAIL FROM:<a@b.c> SIZE=1001",
                "MAIL FROM:<a@b.c> BODY=BINARYMIME",
                "MAIL FROM:<a@b.c> SIZE=1 SIZE=1",
                "MAIL FROM:<jöe@b.c>",
                "MAIL FROM:<a@b..c>",
                "MAIL FROM:<a@b.c> SIZE=1000 BODY=8BITMIME RET=HDRS ENVID=x+2By",
                "RCPT TO:<u@evil.com>",
                "RCPT TO:<u@example.com> NOTIFY=NEVER,SUCCESS",
                "RCPT TO:<u@example.com> ORCPT=bad",
                "RCPT TO:<u@example.com> FOO",
                "RCPT TO:<Postmaster>",
            ],
        );
        assert_eq!(
            codes(&got),
            [
                "501", "501", "250", "502", "502", "502", "502", "502", "502", "502", "502", "502", "500", "550",
                "550", "252", "250", "555", "552", "501", "501", "553", "553", "250", "553", "501", "501", "555",
                "250"
            ]
        );
        assert!(got[21].contains("5.6.7"), "{}", got[21]);
        assert_eq!(s.stats.refused, 24);
    }

    #[test]
    fn policy_and_limits() {
        let mut cfg = config();
        cfg.policy = Policy { rcptcheck: Some("/x".into()), ..Policy::default() };
        let mut h = fake();
        h.check = RcptCheck::Reject;
        let (got, _) =
            transcript(&cfg, &mut h, &["HELO a.b", "MAIL FROM:<s@b.c>", "RCPT TO:<u@x.y>", "RCPT TO:<postmaster>"]);
        assert_eq!(codes(&got), ["250", "250", "550", "550"]);
        assert_eq!(h.asked[0], (b"s@b.c".to_vec(), b"u@x.y".to_vec()));
        let mut h = fake();
        h.check = RcptCheck::Temp;
        let (got, _) = transcript(&cfg, &mut h, &["HELO a.b", "MAIL FROM:<s@b.c>", "RCPT TO:<u@x.y>"]);
        assert_eq!(codes(&got), ["250", "250", "451"]);

        let mut cfg = config();
        cfg.policy = Policy::default();
        let (got, _) = transcript(&cfg, &mut fake(), &["HELO a.b", "MAIL FROM:<s@b.c>", "RCPT TO:<u@example.com>"]);
        assert_eq!(codes(&got), ["250", "250", "553"]);
        assert!(got[2].contains("5.7.1"));

        let cfg = config();
        let (got, _) = transcript(
            &cfg,
            &mut fake(),
            &[
                "HELO a.b",
                "MAIL FROM:<s@b.c>",
                "RCPT TO:<a@example.com>",
                "RCPT TO:<b@example.com>",
                "RCPT TO:<c@example.com>",
                "RCPT TO:<d@example.com>",
            ],
        );
        assert_eq!(codes(&got), ["250", "250", "250", "250", "250", "452"]);
        assert!(got[5].contains("4.5.3"));

        let mut cfg = config();
        cfg.helo_check = true;
        let mut h = fake();
        h.resolves = false;
        let (got, _) = transcript(&cfg, &mut h, &["HELO nowhere.invalid"]);
        assert_eq!(codes(&got), ["450"]);
    }

    #[test]
    fn relayclient_appends() {
        let mut cfg = config();
        cfg.policy.relayclient = Some(b"".to_vec());
        let (got, s) = transcript(&cfg, &mut fake(), &["HELO a.b", "MAIL FROM:<s@b.c>", "RCPT TO:<u@anywhere.net>"]);
        assert_eq!(codes(&got), ["250", "250", "250"]);
        assert_eq!(s.queue_request().0.recipients, vec![b"u@anywhere.net".to_vec()]);
        // The relay client is named to the queue (auth-check skips its
        // checks), but not a client that XFORWARD names.
        assert_eq!(s.queue_request().1.get("CLIENT_RELAY"), Some(&b"1"[..]));
        cfg.xforward = true;
        let (got, s) = transcript(&cfg, &mut fake(), &["EHLO a.b", "XFORWARD ADDR=192.0.2.9", "MAIL FROM:<s@b.c>", "RCPT TO:<u@example.com>"]);
        assert_eq!(codes(&got), ["250", "250", "250", "250"]);
        assert_eq!(s.queue_request().1.get("CLIENT_RELAY"), None);
        assert_eq!(transcript(&config(), &mut fake(), &["HELO a.b", "MAIL FROM:<s@b.c>"]).1.queue_request().1.get("CLIENT_RELAY"), None);
    }

    #[test]
    fn too_many_errors_close() {
        let cfg = config();
        let lines: Vec<&str> = std::iter::repeat_n("FOO", 20).collect();
        let (got, s) = transcript(&cfg, &mut fake(), &lines);
        assert!(got[18].starts_with("500"));
        assert!(got[19].starts_with("421 4.7.0") && got[19].ends_with("[close]"), "{}", got[19]);
        assert_eq!(s.stats.errors, 20);
    }

    #[test]
    fn message_and_attrs() {
        let cfg = config();
        let mut h = fake();
        let (_, mut s) = transcript(
            &cfg,
            &mut h,
            &[
                "EHLO c.test",
                "MAIL FROM:<s@b.c> BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=abc",
                "RCPT TO:<jöe@example.com> NOTIFY=failure,delay ORCPT=rfc822;x+40y",
            ],
        );
        let (env, attrs) = s.queue_request();
        assert_eq!(env.sender, b"s@b.c");
        assert_eq!(env.recipients, vec!["jöe@example.com".as_bytes().to_vec()]);
        for (k, v) in [
            ("BODY", "8BITMIME"),
            ("SMTPUTF8", "1"),
            ("RET", "FULL"),
            ("ENVID", "abc"),
            ("RCPT.0.NOTIFY", "FAILURE,DELAY"),
            ("RCPT.0.ORCPT", "rfc822;x+40y"),
            ("CLIENT_ADDR", "192.0.2.1"),
            ("CLIENT_HELO", "c.test"),
            ("CLIENT_PROTO", "UTF8SMTP"),
        ] {
            assert_eq!(attrs.get(k), Some(v.as_bytes()), "{k}");
        }
        let r = String::from_utf8(s.received(0, "1.2.3")).unwrap();
        assert!(r.starts_with("Received: from c.test ([192.0.2.1])\n\tby mx.test (smtpd-rs) with UTF8SMTP\n\tid <1.2.3@mx.test>\n\tfor <jöe@example.com>;"), "{r}");
        let mut out = Vec::new();
        s.message_done(Outcome::Queued("1.2.3".into()), 10, &mut h, &mut out);
        assert_eq!(out, b"250 2.0.0 ok: queued as 1.2.3\r\n");
        assert!(h.log.iter().any(|l| l == "message accepted: id 1.2.3 from <s@b.c> rcpts 1 size 10"), "{:?}", h.log);
        let mut out = Vec::new();
        s.handle_line(b"RCPT TO:<a@example.com>", &mut h, &mut out);
        assert!(out.starts_with(b"503"), "transaction ended");
    }

    #[test]
    fn queue_failures_map_to_replies() {
        let t = |permanent: bool, text: &str| outcome_reply(&Outcome::QueueFailed { permanent, text: text.into() });
        assert_eq!(t(true, "envelope address too long for qq (#5.1.3)"), "554 5.1.3 envelope address too long for qq (#5.1.3)\r\n");
        assert_eq!(t(false, "qq write error or disk full (#4.3.0)"), "451 4.3.0 qq write error or disk full (#4.3.0)\r\n");
        assert_eq!(t(false, "connection to mail server timed out (#4.4.1)"), "451 4.4.1 connection to mail server timed out (#4.4.1)\r\n");
        assert_eq!(t(true, "virus found"), "554 5.3.0 virus found\r\n");
        assert_eq!(t(false, "odd (#5.1.1)"), "451 4.3.0 odd (#5.1.1)\r\n");
        // A whole reply from the queue program (notqmail's 82 text, as
        // auth-check writes it) reaches the client as it is.
        assert_eq!(t(true, "550 5.7.23 SPF: example.org does not allow 192.0.2.1"), "550 5.7.23 SPF: example.org does not allow 192.0.2.1\r\n");
        assert_eq!(t(true, "550 5.7.1 DMARC p=reject\r\nX"), "550 5.7.1 DMARC p=rejectX\r\n");
        assert_eq!(t(false, "451 4.4.3 SPF: temporary DNS failure"), "451 4.4.3 SPF: temporary DNS failure\r\n");
        // Only of the outcome's class, and only a well-formed code.
        assert_eq!(t(true, "451 4.4.3 try later"), "554 5.3.0 451 4.4.3 try later\r\n");
        assert_eq!(t(false, "550 5.7.1 no"), "451 4.3.0 550 5.7.1 no\r\n");
        assert_eq!(t(true, "550 5.7 x"), "554 5.3.0 550 5.7 x\r\n");
        assert_eq!(t(true, "5500 5.7.1 x"), "554 5.3.0 5500 5.7.1 x\r\n");
        assert_eq!(t(true, "550 5.7.1234 x"), "554 5.3.0 550 5.7.1234 x\r\n");
        assert_eq!(t(true, "550 4.7.1 x"), "554 5.3.0 550 4.7.1 x\r\n");
        assert_eq!(outcome_reply(&Outcome::Refused(DataError::BareLf)), reply::BARE_LF_DATA);
        assert_eq!(outcome_reply(&Outcome::Refused(DataError::TooBig)), reply::TOO_BIG);
        assert_eq!(outcome_reply(&Outcome::Refused(DataError::TooManyHops)), reply::TOO_MANY_HOPS);
    }

    #[test]
    fn bdat_sequence() {
        let cfg = config();
        let (got, _) = transcript(
            &cfg,
            &mut fake(),
            &["BDAT 3", "EHLO a.b", "BDAT 3 LAST", "MAIL FROM:<s@b.c>", "BDAT 3", "RCPT TO:<u@example.com>", "BDAT 3"],
        );
        assert_eq!(got[0], "503 5.5.1 send EHLO or HELO first[bdat false]");
        assert!(got[2].ends_with("[bdat false]") && got[4].ends_with("[bdat false]"));
        assert!(got[6].ends_with("[bdat true]"));
        let (got, _) = transcript(
            &cfg,
            &mut fake(),
            &["EHLO a.b", "MAIL FROM:<s@b.c>", "RCPT TO:<u@example.com>", "BDAT 3", "DATA", "RCPT TO:<v@example.com>"],
        );
        assert_eq!(codes(&got)[4..], ["503", "503"]);
    }

    #[test]
    fn bdat_failure_is_sticky() {
        let cfg: &'static Config = Box::leak(Box::new(config()));
        let mut h = fake();
        let mut s = Session::new(cfg, Peer::default());
        let mut out = Vec::new();
        for l in ["EHLO a.b", "MAIL FROM:<s@b.c>", "RCPT TO:<u@example.com>", "BDAT 3"] {
            s.handle_line(l.as_bytes(), &mut h, &mut out);
        }
        out.clear();
        s.chunk_done(3, Some(Outcome::Refused(DataError::BareLf)), &mut h, &mut out);
        assert!(out.starts_with(b"554 5.6.0"));
        out.clear();
        assert_eq!(s.handle_line(b"BDAT 2 LAST", &mut h, &mut out), Action::Bdat { size: 2, last: true, accept: false });
        assert!(out.starts_with(b"554 5.6.0"));
        out.clear();
        s.handle_line(b"MAIL FROM:<s@b.c>", &mut h, &mut out);
        assert!(out.starts_with(b"250"), "transaction ended after LAST");
    }

    #[test]
    fn xclient_and_xforward() {
        let mut cfg = config();
        cfg.xclient = true;
        cfg.xforward = true;
        let (got, s) = transcript(
            &cfg,
            &mut fake(),
            &[
                "EHLO a.b",
                "XCLIENT ADDR=bad",
                "XCLIENT NAME=spike.example ADDR=IPV6:2001:db8::1 PORT=25 PROTO=ESMTP HELO=[UNAVAILABLE] LOGIN=joe",
                "MAIL FROM:<s@b.c>",
                "EHLO c.d",
                "MAIL FROM:<s@b.c>",
                "XCLIENT NAME=x",
                "XFORWARD NAME=up.example",
                "RCPT TO:<u@example.com>",
            ],
        );
        assert_eq!(codes(&got), ["250", "501", "220", "503", "250", "250", "503", "503", "250"]);
        let (_, attrs) = s.queue_request();
        assert_eq!(attrs.get("CLIENT_ADDR"), Some(&b"2001:db8::1"[..]));
        assert_eq!(attrs.get("CLIENT_NAME"), Some(&b"spike.example"[..]));
        assert_eq!(attrs.get("CLIENT_PROTO"), Some(&b"ESMTPA"[..]));
        assert_eq!(attrs.get("CLIENT_LOGIN"), Some(&b"joe"[..]));
        let (got, s) = transcript(
            &cfg,
            &mut fake(),
            &[
                "EHLO a.b",
                "XFORWARD NAME=up.example ADDR=10.0.0.1 PROTO=ESMTP",
                "XFORWARD HELO=up+2Ehelo SOURCE=REMOTE IDENT=[UNAVAILABLE]",
                "XFORWARD SOURCE=ELSEWHERE",
                "MAIL FROM:<s@b.c>",
                "RCPT TO:<u@example.com>",
            ],
        );
        assert_eq!(codes(&got), ["250", "250", "250", "501", "250", "250"]);
        let (_, attrs) = s.queue_request();
        assert_eq!(attrs.get("CLIENT_NAME"), Some(&b"up.example"[..]));
        assert_eq!(attrs.get("CLIENT_ADDR"), Some(&b"10.0.0.1"[..]));
        assert_eq!(attrs.get("CLIENT_HELO"), Some(&b"up.helo"[..]));
        assert_eq!(attrs.get("CLIENT_SOURCE"), Some(&b"REMOTE"[..]));
        assert_eq!(attrs.get("CLIENT_PORT"), None);
    }

    #[test]
    fn xclient_takes_the_connection_relay_rights_away() {
        // The shipped rule for 127.0.0.1 gives both RELAYCLIENT and XCLIENT;
        // a proxy that forwards an internet client must not make it a relay.
        let mut cfg = config();
        cfg.xclient = true;
        cfg.policy.relayclient = Some(b"".to_vec());
        let xclient = "XCLIENT ADDR=203.0.113.66 NAME=spammer.example";
        let run = |cfg: &Config, x: &str| {
            transcript(
                cfg,
                &mut fake(),
                &["EHLO proxy", x, "EHLO spammer.example", "MAIL FROM:<spam@spammer.example>", "RCPT TO:<victim@gmail.test>", "RCPT TO:<u@example.com>"],
            )
            .0
        };
        // The proxy itself relays; the client it names does not.
        let (got, _) = transcript(&cfg, &mut fake(), &["EHLO proxy", "MAIL FROM:<a@b.c>", "RCPT TO:<victim@gmail.test>"]);
        assert_eq!(codes(&got), ["250", "250", "250"]);
        let got = run(&cfg, xclient);
        assert_eq!(codes(&got), ["250", "220", "250", "250", "553", "250"], "{got:?}");
        // A proxy that authenticated the client says so with LOGIN.
        let got = run(&cfg, &format!("{xclient} LOGIN=alice"));
        assert_eq!(codes(&got)[4], "250", "{got:?}");
        // A forwarded client on a RELAYCLIENTS network.
        let mut nets = cfg.clone();
        nets.policy.relaynets = Some(crate::smtpd::policy::parse_networks(b"203.0.113.0/24\n").unwrap());
        assert_eq!(codes(&run(&nets, xclient))[4], "250");
        assert_eq!(codes(&run(&nets, "XCLIENT ADDR=198.51.100.1"))[4], "553");
        // RELAYCLIENTS without XCLIENT: the connection's own address.
        let mut direct = config();
        direct.policy.relaynets = Some(crate::smtpd::policy::parse_networks(b"192.0.2.0/24\n").unwrap());
        let (got, _) = transcript(&direct, &mut fake(), &["EHLO a.b", "MAIL FROM:<a@b.c>", "RCPT TO:<x@far.test>"]);
        assert_eq!(codes(&got), ["250", "250", "250"]);
    }

    #[test]
    fn xclient_forgets_the_proxys_auth() {
        let mut cfg = config();
        cfg.xclient = true;
        cfg.auth = auth::parse_smtpauth(Some(""));
        cfg.auth_plaintext = true;
        let cfg: &'static Config = Box::leak(Box::new(cfg));
        let mut h = tls_fake();
        let mut s = Session::new(cfg, Peer::default());
        run(&mut s, &mut h, "EHLO proxy");
        assert!(run(&mut s, &mut h, &format!("AUTH PLAIN {}", b64(b"\0alice\0s3cret"))).0.starts_with("235"));
        for l in ["XCLIENT ADDR=203.0.113.66", "EHLO x.y", "MAIL FROM:<a@b.c>"] {
            run(&mut s, &mut h, l);
        }
        assert!(s.auth_user().is_none());
        assert!(run(&mut s, &mut h, "RCPT TO:<victim@gmail.test>").0.starts_with("553 5.7.1"));
        // The forwarded session may authenticate itself.
        run(&mut s, &mut h, "RSET");
        assert!(run(&mut s, &mut h, &format!("AUTH PLAIN {}", b64(b"\0alice\0s3cret"))).0.starts_with("235"));
        run(&mut s, &mut h, "MAIL FROM:<a@b.c>");
        assert!(run(&mut s, &mut h, "RCPT TO:<victim@gmail.test>").0.starts_with("250"));
    }

    proptest::proptest! {
        #[test]
        fn any_line_gets_one_well_formed_reply(lines in proptest::collection::vec(
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80), 1..30)) {
            let mut cfg = config();
            cfg.xclient = true;
            cfg.xforward = true;
            let cfg: &'static Config = Box::leak(Box::new(cfg));
            let mut s = Session::new(cfg, Peer::default());
            let mut h = fake();
            let prefixes: [&[u8]; 6] = [b"MAIL FROM:<", b"RCPT TO:<", b"EHLO ", b"XCLIENT ", b"XFORWARD ", b"BDAT "];
            for (i, l) in lines.iter().enumerate() {
                let line = [prefixes[i % prefixes.len()], l.as_slice()].concat();
                let mut out = Vec::new();
                let a = s.handle_line(&line, &mut h, &mut out);
                let bdat_taken = matches!(a, Action::Bdat { accept: true, .. });
                proptest::prop_assert!(out.ends_with(b"\r\n") || bdat_taken);
                proptest::prop_assert!(out.len() < 2000);
                if a == Action::Close {
                    break;
                }
            }
        }
    }

    /// Hooks with a UCSPI-TLS server in front and a checkpassword that
    /// knows alice/s3cret.
    struct TlsFake {
        inner: Fake,
        tls: bool,
        checked: u32,
    }

    impl Hooks for TlsFake {
        fn rcpt_check(&mut self, sender: &[u8], rcpt: &[u8]) -> RcptCheck {
            self.inner.rcpt_check(sender, rcpt)
        }
        fn helo_resolves(&mut self, name: &[u8]) -> bool {
            self.inner.helo_resolves(name)
        }
        fn log(&mut self, line: fmt::Arguments<'_>) {
            self.inner.log(line)
        }
        fn tls_available(&self) -> bool {
            self.tls
        }
        fn check_password(&mut self, c: &Credentials) -> Verdict {
            self.checked += 1;
            if c.user == b"alice" && c.secret == b"s3cret" {
                Verdict::Accepted
            } else if c.user == b"tempfail" {
                Verdict::TempFail
            } else {
                Verdict::Rejected
            }
        }
    }

    fn tls_fake() -> TlsFake {
        TlsFake { inner: fake(), tls: true, checked: 0 }
    }

    fn tls_info() -> TlsInfo {
        TlsInfo { protocol: "TLSv1.3".into(), cipher: "TLS_AES_128_GCM_SHA256".into(), ..Default::default() }
    }

    fn b64(s: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn run(s: &mut Session<'_>, h: &mut dyn Hooks, line: &str) -> (String, Action) {
        let mut out = Vec::new();
        let a = s.handle_line(line.as_bytes(), h, &mut out);
        (String::from_utf8(out).unwrap(), a)
    }

    fn tls_config(ucspitls: Option<&str>, smtpauth: Option<&str>) -> &'static Config {
        let mut c = config();
        c.tls_policy = crate::io::ucspitls::parse_ucspitls(ucspitls);
        c.auth = auth::parse_smtpauth(smtpauth);
        Box::leak(Box::new(c))
    }

    #[test]
    fn starttls_offered_and_state_reset() {
        let cfg = tls_config(Some(""), Some(""));
        let mut h = tls_fake();
        let mut s = Session::new(cfg, Peer::default());
        let (t, _) = run(&mut s, &mut h, "EHLO c.test");
        assert!(t.contains("250-STARTTLS\r\n") || t.contains("250 STARTTLS\r\n"), "{t}");
        assert!(!t.contains("AUTH"), "AUTH before TLS: {t}");
        run(&mut s, &mut h, "MAIL FROM:<a@b.c>");
        assert_eq!(run(&mut s, &mut h, "STARTTLS").1, Action::StartTls);
        s.tls_started(tls_info(), &mut h);
        // RFC 3207 4.2: back to the start; the transaction is gone.
        assert!(run(&mut s, &mut h, "MAIL FROM:<a@b.c>").0.starts_with("503 5.5.1"));
        let (t, _) = run(&mut s, &mut h, "EHLO c.test");
        assert!(!t.contains("STARTTLS") && t.contains("AUTH LOGIN PLAIN"), "{t}");
        assert!(run(&mut s, &mut h, "STARTTLS").0.starts_with("503 5.5.1"));
        run(&mut s, &mut h, "MAIL FROM:<a@b.c>");
        run(&mut s, &mut h, "RCPT TO:<u@example.com>");
        let r = String::from_utf8(s.received(0, "1.2.3")).unwrap();
        assert!(r.contains("with ESMTPS (using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256)"), "{r}");
        let (_, attrs) = s.queue_request();
        assert_eq!(attrs.get("TLS_PROTOCOL"), Some(&b"TLSv1.3"[..]));
    }

    #[test]
    fn starttls_not_offered_without_server_or_policy() {
        for (ucspitls, tls) in [(None, true), (Some("-"), true), (Some(""), false)] {
            let cfg = tls_config(ucspitls, None);
            let mut h = TlsFake { tls, ..tls_fake() };
            let mut s = Session::new(cfg, Peer::default());
            assert!(!run(&mut s, &mut h, "EHLO c.test").0.contains("STARTTLS"));
            assert!(run(&mut s, &mut h, "STARTTLS").0.starts_with("502 5.5.1"), "{ucspitls:?} {tls}");
        }
        let cfg = tls_config(Some(""), None);
        let mut h = tls_fake();
        let mut s = Session::new(cfg, Peer::default());
        assert!(run(&mut s, &mut h, "STARTTLS x").0.starts_with("501"));
        assert!(s.starttls_pipelined(&mut h, &mut Vec::new()) == Action::Continue);
    }

    #[test]
    fn ucspitls_require_and_cert_relay() {
        let cfg = tls_config(Some("!"), None);
        let mut h = tls_fake();
        let mut s = Session::new(cfg, Peer::default());
        run(&mut s, &mut h, "EHLO c.test");
        assert!(run(&mut s, &mut h, "MAIL FROM:<a@b.c>").0.starts_with("530 5.7.0"));
        s.tls_started(tls_info(), &mut h);
        run(&mut s, &mut h, "EHLO c.test");
        assert!(run(&mut s, &mut h, "MAIL FROM:<a@b.c>").0.starts_with("250"));
        // Relaying is not granted by TLS alone...
        assert!(run(&mut s, &mut h, "RCPT TO:<x@elsewhere.org>").0.starts_with("553"));
        // ...but by a verified client certificate under ? or @.
        for pol in ["?", "@"] {
            let cfg = tls_config(Some(pol), None);
            let mut s = Session::new(cfg, Peer::default());
            let mut info = tls_info();
            info.peer_subject = Some("/CN=client".into());
            s.tls_started(info, &mut h);
            run(&mut s, &mut h, "EHLO c.test");
            run(&mut s, &mut h, "MAIL FROM:<a@b.c>");
            assert!(run(&mut s, &mut h, "RCPT TO:<x@elsewhere.org>").0.starts_with("250"), "{pol}");
        }
    }

    #[test]
    fn auth_only_over_tls_unless_allowed() {
        let cfg = tls_config(Some(""), Some(""));
        let mut h = tls_fake();
        let mut s = Session::new(cfg, Peer::default());
        run(&mut s, &mut h, "EHLO c.test");
        assert!(run(&mut s, &mut h, "AUTH PLAIN").0.starts_with("538 5.7.11"));
        let mut c = config();
        c.auth = auth::parse_smtpauth(Some(""));
        c.auth_plaintext = true;
        let cfg: &'static Config = Box::leak(Box::new(c));
        let mut s = Session::new(cfg, Peer::default());
        assert!(run(&mut s, &mut h, "EHLO c.test").0.contains("AUTH LOGIN PLAIN"));
        let (t, a) = run(&mut s, &mut h, &format!("AUTH PLAIN {}", b64(b"\0alice\0s3cret")));
        assert_eq!((t.as_str(), a), ("235 2.7.0 authentication successful\r\n", Action::Continue));
    }

    fn authed_session(smtpauth: &str) -> (Session<'static>, TlsFake) {
        let cfg = tls_config(Some(""), Some(smtpauth));
        let mut h = tls_fake();
        let mut s = Session::new(cfg, Peer::default());
        s.tls_started(tls_info(), &mut h);
        run(&mut s, &mut h, "EHLO c.test");
        (s, h)
    }

    #[test]
    fn auth_mechanisms() {
        // PLAIN in two steps.
        let (mut s, mut h) = authed_session("");
        assert_eq!(run(&mut s, &mut h, "AUTH PLAIN"), ("334 \r\n".into(), Action::AuthLine));
        let mut out = Vec::new();
        assert_eq!(s.auth_line(Some(b64(b"\0alice\0s3cret").as_bytes()), &mut h, &mut out), Action::Continue);
        assert!(out.starts_with(b"235 "));
        assert!(run(&mut s, &mut h, "AUTH PLAIN").0.starts_with("503 5.5.1"));
        run(&mut s, &mut h, "MAIL FROM:<alice@b.c> AUTH=alice+40b.c");
        assert!(run(&mut s, &mut h, "RCPT TO:<x@elsewhere.org>").0.starts_with("250"), "authenticated relay");
        let r = String::from_utf8(s.received(0, "1.2.3")).unwrap();
        assert!(r.contains("with ESMTPSA"), "{r}");
        assert_eq!(s.queue_request().1.get("CLIENT_LOGIN"), Some(&b"alice"[..]));
        // LOGIN.
        let (mut s, mut h) = authed_session("");
        assert_eq!(run(&mut s, &mut h, "AUTH LOGIN").1, Action::AuthLine);
        let mut out = Vec::new();
        assert_eq!(s.auth_line(Some(b64(b"alice").as_bytes()), &mut h, &mut out), Action::AuthLine);
        assert_eq!(s.auth_line(Some(b64(b"s3cret").as_bytes()), &mut h, &mut out), Action::Continue);
        assert!(String::from_utf8(out).unwrap().ends_with("235 2.7.0 authentication successful\r\n"));
        // CRAM-MD5 only when allowed.
        let (mut s, mut h) = authed_session("");
        assert!(run(&mut s, &mut h, "AUTH CRAM-MD5").0.starts_with("504 5.5.4"));
        let (mut s, mut h) = authed_session("+cram");
        let (t, a) = run(&mut s, &mut h, "AUTH CRAM-MD5");
        assert!(t.starts_with("334 ") && a == Action::AuthLine, "{t}");
        // "*" cancels; the session goes on.
        let mut out = Vec::new();
        assert_eq!(s.auth_line(Some(b"*"), &mut h, &mut out), Action::Continue);
        assert!(out.starts_with(b"501 5.7.0"));
        // Bad base64, over-long line.
        run(&mut s, &mut h, "AUTH LOGIN");
        let mut out = Vec::new();
        s.auth_line(Some(b"%%%"), &mut h, &mut out);
        assert!(out.starts_with(b"501 5.5.2"));
        run(&mut s, &mut h, "AUTH LOGIN");
        let mut out = Vec::new();
        s.auth_line(None, &mut h, &mut out);
        assert!(out.starts_with(b"500 5.5.6"));
    }

    #[test]
    fn auth_failures_close_the_session() {
        let (mut s, mut h) = authed_session("");
        for i in 1..=3 {
            let (t, a) = run(&mut s, &mut h, &format!("AUTH PLAIN {}", b64(b"\0alice\0wrong")));
            assert!(t.starts_with("535 5.7.8"), "{t}");
            assert_eq!(a, if i < 3 { Action::Continue } else { Action::Close }, "{i}");
        }
        let (mut s, mut h) = authed_session("");
        let (t, _) = run(&mut s, &mut h, &format!("AUTH PLAIN {}", b64(b"\0tempfail\0x")));
        assert!(t.starts_with("454 4.7.0"), "{t}");
    }

    #[test]
    fn smtpauth_required_and_off() {
        let (mut s, mut h) = authed_session("!");
        assert!(run(&mut s, &mut h, "MAIL FROM:<a@b.c>").0.starts_with("530 5.7.0"));
        run(&mut s, &mut h, &format!("AUTH PLAIN {}", b64(b"\0alice\0s3cret")));
        assert!(run(&mut s, &mut h, "MAIL FROM:<a@b.c>").0.starts_with("250"));
        let cfg = tls_config(Some(""), Some("-"));
        let mut h = tls_fake();
        let mut s = Session::new(cfg, Peer::default());
        s.tls_started(tls_info(), &mut h);
        assert!(!run(&mut s, &mut h, "EHLO c.test").0.contains("AUTH"));
        assert!(run(&mut s, &mut h, "AUTH PLAIN").0.starts_with("502"));
        assert_eq!(h.checked, 0);
        // MAIL AUTH= with bad xtext is refused.
        let (mut s, mut h) = authed_session("");
        assert!(run(&mut s, &mut h, "MAIL FROM:<a@b.c> AUTH=bad+4").0.starts_with("555"));
    }
}
