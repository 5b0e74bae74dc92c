//! sendmail for local programs (cron, scripts): builds the envelope, adds
//! the header fields a local submission lacks (Date, Message-ID, From) and
//! hands the message to the queue program over the qmail-queue protocol:
//! `QMAILQUEUE`, else queue-drop (setgid, into the queue's drop folder, for
//! every local user; queue-run picks it up). sendmail itself is not
//! privileged. The message is streamed: only its header is held in memory
//! (at most `mailmsg::MAX_HEADER`).

use super::inject::{Injection, Refused};
use super::mailmsg::{self, Filter, EX_DATAERR, EX_IOERR, EX_OSERR, EX_TEMPFAIL, EX_USAGE};
use super::runner::{hostname, program, unix_now};
use crate::die;
use crate::envelope::{Attrs, Envelope};
use crate::queue::{control_char, printable_address};
use crate::xtext;
use std::ffi::OsString;
use std::io::{Read, Write};

const PROG: &str = "sendmail";

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// The local user's name: `MAILUSER`, `USER`, `LOGNAME`, else the real
/// uid's name in /etc/passwd, else the uid's number.
fn user() -> String {
    let uid = nix::unistd::getuid().as_raw();
    env("MAILUSER")
        .or_else(|| env("USER"))
        .or_else(|| env("LOGNAME"))
        .or_else(|| crate::passwd::user_by_uid(uid).ok().flatten().map(|e| e.name))
        .unwrap_or_else(|| uid.to_string())
}

/// Run sendmail with `args` (without argv[0]) on `input`. Returns the exit code.
pub fn run(args: &[OsString], mut input: impl Read) -> i32 {
    let o = match mailmsg::parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            die::warn(PROG, format_args!("{e}; usage: sendmail [-t] [-i] [-f sender] [-F name] [recipient...]"));
            return EX_USAGE;
        }
    };
    let host = env("MAILHOST").unwrap_or_else(hostname);
    let user = user();
    let sender = match &o.sender {
        Some(s) => mailmsg::qualify(s, &host),
        None => format!("{user}@{host}").into_bytes(),
    };
    // No control character in an envelope address (CR LF would smuggle SMTP
    // commands to the next hop): a bad argument is a usage error.
    for a in std::iter::once(&sender).chain(&o.recipients) {
        if control_char(a).is_some() {
            die::warn(PROG, format_args!("address contains a control character: <{}>", printable_address(a)));
            return EX_USAGE;
        }
    }

    // The header first: enough to know what to add and, for -t, whom to send to.
    let mut filter = Filter::new(o.ignore_dots);
    let mut head = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut eof = false;
    while !filter.ended && !eof && head.len() <= mailmsg::MAX_HEADER && !has_blank_line(&head) {
        match input.read(&mut chunk) {
            Ok(0) => {
                eof = true;
                filter.finish(&mut head);
            }
            Ok(n) => filter.push(&chunk[..n], &mut head),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                die::warn(PROG, format_args!("unable to read the message: {e}"));
                return EX_IOERR;
            }
        }
    }
    let scan = mailmsg::scan_header(&head);

    let mut rcpts: Vec<Vec<u8>> = Vec::new();
    let extra = if o.from_headers { scan.rcpts.clone() } else { Vec::new() };
    // Addresses read from the header (-t): bad input data.
    if let Some(a) = extra.iter().find(|a| control_char(a).is_some()) {
        die::warn(PROG, format_args!("header address contains a control character: <{}>", printable_address(a)));
        return EX_DATAERR;
    }
    for r in o.recipients.iter().chain(extra.iter()) {
        let r = mailmsg::qualify(r, &host);
        if !rcpts.contains(&r) {
            rcpts.push(r);
        }
    }
    if rcpts.is_empty() {
        die::warn(PROG, "no recipients");
        return EX_USAGE;
    }

    let now = unix_now();
    let mut added = String::new();
    if !scan.has_from {
        match o.name.clone().or_else(|| env("MAILNAME")).or_else(|| env("NAME")) {
            Some(n) => added.push_str(&format!("From: {} <{user}@{host}>\n", quote_phrase(&n))),
            None => added.push_str(&format!("From: {user}@{host}\n")),
        }
    }
    if !scan.has_date {
        added.push_str(&format!("Date: {}\n", super::dsn::date(now)));
    }
    if !scan.has_message_id {
        added.push_str(&format!("Message-ID: <{now}.{}.{}@{host}>\n", std::process::id(), nonce()));
    }

    let mut attrs = Attrs::default();
    if let Some(b) = &o.body {
        attrs.push("BODY", b);
    }
    if !sender.is_ascii() || rcpts.iter().any(|r| !r.is_ascii()) {
        attrs.push("SMTPUTF8", "1");
    }
    if let Some(e) = &o.envid {
        attrs.push("ENVID", xtext::encode(e.as_bytes()));
    }
    if let Some(r) = &o.ret {
        attrs.push("RET", r);
    }
    if let Some(n) = &o.notify {
        for i in 0..rcpts.len() {
            attrs.push(&format!("RCPT.{i}.NOTIFY"), n);
        }
    }

    let prog = program(env("QMAILQUEUE").map(OsString::from).as_ref(), "queue-drop");
    let block = attrs.encode();
    let mut inj = match Injection::start(&prog, if attrs.is_empty() { None } else { Some(&block) }, &[]) {
        Ok(i) => i,
        Err(e) => {
            die::warn(PROG, format_args!("unable to run {}: {e}", prog.to_string_lossy()));
            return EX_OSERR;
        }
    };
    // Write errors (the queue program gave up early) show in its exit code.
    let _ = inj.write_all(added.as_bytes());
    let _ = inj.write_all(&scan.kept);
    let _ = inj.write_all(b"\n");
    let _ = inj.write_all(head.get(scan.body_start..).unwrap_or_default());
    let mut out = Vec::with_capacity(chunk.len());
    while !filter.ended && !eof {
        match input.read(&mut chunk) {
            Ok(0) => {
                eof = true;
                filter.finish(&mut out);
            }
            Ok(n) => filter.push(&chunk[..n], &mut out),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Not finished: the queue program sees no envelope and stores nothing.
                die::warn(PROG, format_args!("unable to read the message: {e}"));
                drop(inj);
                return EX_IOERR;
            }
        }
        let _ = inj.write_all(&out);
        out.clear();
    }
    let env = Envelope { sender, recipients: rcpts };
    match inj.finish(&env.encode()) {
        Ok(()) => 0,
        Err(e @ Refused::Permanent(..)) => {
            die::warn(PROG, format_args!("message refused: {e}"));
            EX_DATAERR
        }
        Err(e) => {
            die::warn(PROG, format_args!("message not queued, try again later: {e}"));
            EX_TEMPFAIL
        }
    }
}

fn has_blank_line(b: &[u8]) -> bool {
    b.starts_with(b"\n") || b.windows(2).any(|w| w == b"\n\n")
}

/// A display name as an RFC 5322 phrase: quoted unless plain atoms.
fn quote_phrase(n: &str) -> String {
    if n.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ' || "!#$%&'*+-/=?^_`{|}~".contains(c)) {
        n.to_owned()
    } else {
        format!("\"{}\"", n.replace('\\', "\\\\").replace('"', "\\\"").replace(['\r', '\n'], " "))
    }
}

/// A few bytes of entropy for Message-ID (no RNG dependency: clock nanos and
/// the address of a stack variable).
fn nonce() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let x = 0u8;
    format!("{:x}{:x}", t, (&x as *const u8 as usize) & 0xffff)
}
