//! The SMTP session state machine driven by whole transcripts, with an I/O
//! loop like src/io/serve.rs (line rules of src/io/ucspi.rs, the DATA and
//! BDAT decoders) and fake hooks. Checked: no panic; every reply is a
//! well-formed CRLF-terminated reply line; no log line holds CR, LF or NUL;
//! the Received header cannot be used to inject header lines; the envelope
//! and attribute block handed to the queue survive their own round trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::envelope::{Attrs, Envelope};
use smtpd::smtpd::policy::{parse_list, parse_networks, Policy};
use smtpd::smtpd::session::{Action, Hooks, Outcome, Peer, RcptCheck, Session};
use smtpd::smtp::data::{ChunkDecoder, DotDecoder};
use smtpd::smtp::reply;
use smtpd::smtpd::config::{Config, QueueProgram};
use std::fmt;
use std::path::PathBuf;

struct Fake {
    check: RcptCheck,
    resolves: bool,
}

impl Hooks for Fake {
    fn rcpt_check(&mut self, _: &[u8], _: &[u8]) -> RcptCheck {
        self.check
    }
    fn helo_resolves(&mut self, _: &[u8]) -> bool {
        self.resolves
    }
    fn log(&mut self, line: fmt::Arguments<'_>) {
        let l = line.to_string();
        assert!(!l.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0), "log line {l:?}");
    }
}

const MAX_LINE: usize = 512;

fn check_replies(out: &[u8]) {
    let mut rest = out;
    while !rest.is_empty() {
        let end = rest.windows(2).position(|w| w == b"\r\n").expect("reply not CRLF-terminated") + 2;
        let line = &rest[..end];
        let body = &line[..end - 2];
        assert!(!body.contains(&b'\r') && !body.contains(&b'\n') && !body.contains(&0), "reply {line:?}");
        assert!(body.len() >= 3 && body[..3].iter().all(u8::is_ascii_digit), "reply {line:?}");
        assert!(body.len() == 3 || body[3] == b' ' || body[3] == b'-', "reply {line:?}");
        assert!(line.len() <= MAX_LINE, "reply longer than 512 octets");
        rest = &rest[end..];
    }
}

fn check_received(h: &[u8]) {
    assert!(!h.contains(&b'\r') && !h.contains(&0), "Received {h:?}");
    assert!(h.ends_with(b"\n"));
    for (i, l) in h[..h.len() - 1].split(|&b| b == b'\n').enumerate() {
        assert!(i == 0 || l.first().is_some_and(|&b| b == b' ' || b == b'\t'), "Received {h:?}");
    }
}

fn check_request(env: &Envelope, attrs: &Attrs) {
    assert_eq!(&Envelope::parse(&env.encode(), usize::MAX).expect("envelope"), env);
    let block = attrs.encode();
    assert_eq!(&Attrs::parse(block.as_bytes()).expect("attrs"), attrs);
}

/// The next command line as the I/O loop cuts it: `Ok(line)` or the reply
/// for a refused line; None at the end of the input (the client left).
fn next_line<'a>(input: &mut &'a [u8]) -> Option<Result<&'a [u8], &'static str>> {
    let i = input.iter().position(|&b| b == b'\n')?;
    let raw = &input[..i];
    *input = &input[i + 1..];
    Some(if i + 1 > MAX_LINE {
        Err(reply::LINE_TOO_LONG)
    } else if raw.last() != Some(&b'\r') {
        Err(reply::BARE_LF_CMD)
    } else {
        let body = &raw[..i - 1];
        if body.contains(&b'\r') {
            Err(reply::BARE_CR_CMD)
        } else if body.contains(&0) {
            Err(reply::NUL_CMD)
        } else {
            Ok(body)
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut input)) = data.split_first() else { return };
    // Built through the same reader as the program (so that new settings
    // get their defaults), then the lists set inline.
    let mut vars: Vec<(&str, &str)> = vec![
        ("SMTPD_HOSTNAME", "mx.test"),
        ("DATABYTES", if flags & 1 != 0 { "100" } else { "0" }),
        ("MAXRCPT", if flags & 2 != 0 { "2" } else { "0" }),
        ("SMTPD_TIMEOUT", "5"),
        ("RCPTCHECK_TIMEOUT", "5"),
    ];
    if flags & 4 != 0 {
        vars.push(("HELO_CHECK", ""));
    }
    if flags & 8 != 0 {
        vars.push(("XCLIENT", ""));
    }
    if flags & 16 != 0 {
        vars.push(("XFORWARD", ""));
    }
    let get = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| std::ffi::OsString::from(v));
    let Ok(mut cfg) = Config::from_vars(&get, None) else { return };
    cfg.policy = Policy {
        rcpthosts: Some(parse_list(b"example.com\n.example.net\n")),
        recipients: (flags & 32 != 0).then(|| parse_list(b"a@example.com\n")),
        rcptcheck: (flags & 64 != 0).then(|| PathBuf::from("/bin/true")),
        relayclient: (flags & 128 != 0).then(|| b"".to_vec()),
        // With XCLIENT: a forwarded 192.0.2.x or 203.0.113.x client relays.
        relaynets: (flags & 9 == 9).then(|| parse_networks(b"192.0.2.0/24\n203.0.113.0/24\n").ok()).flatten(),
        postmaster: cfg.policy.postmaster.take(),
    };
    cfg.queue = QueueProgram::Session(PathBuf::from("queue-inject"));
    let mut hooks = Fake {
        check: match flags % 3 {
            0 => RcptCheck::Accept,
            1 => RcptCheck::Reject,
            _ => RcptCheck::Temp,
        },
        resolves: flags & 4 == 0 || flags & 1 == 0,
    };
    let peer = Peer { remote_ip: Some("192.0.2.1".into()), ..Peer::default() };
    let mut s = Session::new(&cfg, peer);
    let mut out = Vec::new();
    s.greeting(&mut out);
    let mut chunks: Option<ChunkDecoder> = None;
    let mut msg = Vec::new();
    loop {
        check_replies(&out);
        out.clear();
        let action = match next_line(&mut input) {
            None => break,
            Some(Ok(line)) => s.handle_line(line, &mut hooks, &mut out),
            Some(Err(why)) => s.bad_line(why, &mut hooks, &mut out),
        };
        if !s.in_transaction() {
            chunks = None;
        }
        match action {
            Action::Continue => {}
            Action::Close => break,
            // The fake offers no TLS (Hooks::tls_available is false), so
            // STARTTLS is refused and this cannot come; end if it does.
            Action::StartTls => break,
            // As io/serve.rs: AUTH answers are read as lines until the
            // exchange is over (not offered in this configuration either).
            Action::AuthLine => {
                let mut a = Action::AuthLine;
                while a == Action::AuthLine {
                    a = match next_line(&mut input) {
                        None => break,
                        Some(Ok(l)) => s.auth_line(Some(l), &mut hooks, &mut out),
                        Some(Err(_)) => s.auth_line(None, &mut hooks, &mut out),
                    };
                }
                if a == Action::AuthLine || a == Action::Close {
                    break;
                }
            }
            Action::Data => {
                let (env, attrs) = s.queue_request();
                check_request(&env, &attrs);
                check_received(&s.received(0, "1.2.3"));
                let mut d = DotDecoder::new(s.size_limit());
                msg.clear();
                let (n, done) = d.feed(input, &mut msg);
                input = &input[n..];
                if !done {
                    break;
                }
                let o = match d.error() {
                    Some(e) => Outcome::Refused(e),
                    None => Outcome::Queued("1".into()),
                };
                s.message_done(o, d.size(), &mut hooks, &mut out);
            }
            Action::Bdat { size, last, accept } => {
                let Ok(n) = usize::try_from(size) else { break };
                if n > input.len() {
                    break;
                }
                let (chunk, rest) = input.split_at(n);
                input = rest;
                if !accept {
                    if last {
                        chunks = None;
                    }
                    continue;
                }
                let d = chunks.get_or_insert_with(|| ChunkDecoder::new(s.size_limit()));
                msg.clear();
                d.feed(chunk, &mut msg);
                if last {
                    d.finish();
                    let (env, attrs) = s.queue_request();
                    check_request(&env, &attrs);
                    check_received(&s.received(0, "1.2.3"));
                    let o = match d.error() {
                        Some(e) => Outcome::Refused(e),
                        None => Outcome::Queued("1".into()),
                    };
                    let size = d.size();
                    chunks = None;
                    s.message_done(o, size, &mut hooks, &mut out);
                } else {
                    let failed = d.error().map(Outcome::Refused);
                    s.chunk_done(size, failed, &mut hooks, &mut out);
                }
            }
        }
    }
    check_replies(&out);
    s.log_end("eof", &mut hooks);
});
