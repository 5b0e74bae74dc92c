//! Delivery status notifications (RFC 3464 multipart/report, RFC 3461
//! semantics; RFC 6533 global form when an address is not ASCII).
//! Builds the message text (LF line ends, as the queue stores messages).
//! Pure: the caller supplies the clock, the names and the original message.
//! Addresses and envelope facts are written with their control characters
//! escaped (`queue::printable_address`): none can end a field line.

use crate::queue::printable_address;

/// What happened to one recipient, as a DSN `Action:` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    /// Handed to a next hop that may not send DSNs itself (RFC 3464 2.3.3).
    Relayed,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Relayed => "relayed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptReport {
    pub address: Vec<u8>,
    /// ORCPT as received (`addr-type;xtext`), if any.
    pub orcpt: Option<Vec<u8>>,
    pub action: Action,
    /// The last result text (remote reply or local reason).
    pub text: String,
    /// Failed because queue-run gave up after the queue lifetime: `text` is
    /// the last temporary result.
    pub expired: bool,
    /// Unix seconds of the last attempt, 0 if none.
    pub last_attempt: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<'a> {
    /// This host's name (Reporting-MTA, From: MAILER-DAEMON@...).
    pub host: &'a str,
    /// The envelope sender being notified (To: header).
    pub to: &'a [u8],
    pub queue_id: &'a str,
    pub envid: Option<&'a [u8]>,
    pub arrival: u64,
    pub now: u64,
    /// For delayed recipients: when queue-run gives up.
    pub retry_until: Option<u64>,
    pub rcpts: Vec<RcptReport>,
    /// The original message (LF line ends), and whether to return it whole
    /// (RET=FULL within the size limit) or only its header.
    pub original: &'a [u8],
    pub full: bool,
}

/// The DSN's text, and whether it needs 8BITMIME / SMTPUTF8 to travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub text: Vec<u8>,
    pub eight_bit: bool,
    pub utf8: bool,
}

/// Longest diagnostic text put in a field (keeps lines under 998 octets).
const MAX_DIAG: usize = 900;

/// No boundary could be found that the parts do not contain (only a broken
/// source of candidates gets here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoBoundary;

impl std::fmt::Display for NoBoundary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no usable MIME boundary (is the random source broken?)")
    }
}

/// Candidates tried before giving up.
const BOUNDARY_TRIES: usize = 16;

/// Build the DSN. `boundary` gives candidate MIME boundaries (the runner's
/// are random: `=_dsn_` and 32 hex digits from the OS); the first one that
/// occurs in none of the three parts is used (RFC 2046 5.1.1: the delimiter
/// must not appear inside an encapsulated part), so that nothing in the
/// returned message, whoever wrote it, can end a part or the multipart.
pub fn build(r: &Report<'_>, boundary: &mut dyn FnMut() -> String) -> Result<Built, NoBoundary> {
    let utf8 = !r.to.is_ascii() || r.rcpts.iter().any(|x| !x.address.is_ascii());
    let worst = if r.rcpts.iter().any(|x| x.action == Action::Failed) {
        "Failure"
    } else if r.rcpts.iter().any(|x| x.action == Action::Delayed) {
        "Delay"
    } else {
        "Success"
    };

    // 1. For people.
    let mut human = String::new();
    human.push_str(&format!("This is the mail system at host {}.\n\n", r.host));
    human.push_str(match worst {
        "Failure" => "Your message could not be delivered to one or more recipients.\nIt is attached below.\n\n",
        "Delay" => "Your message has not been delivered yet to one or more recipients.\nThe mail system will keep trying; you need not send it again.\n\n",
        _ => "Your message was delivered (or relayed) to the recipients below,\nas you asked.\n\n",
    });
    let lifetime = r.retry_until.map(|u| u.saturating_sub(r.arrival));
    for x in &r.rcpts {
        human.push_str(&format!("<{}>: {}\n    {}\n", printable_address(&x.address), x.action.word(), cut(&x.text)));
        if x.expired {
            match lifetime {
                Some(l) => human.push_str(&format!("    (giving up: in the queue longer than {l} s)\n")),
                None => human.push_str("    (giving up: in the queue too long)\n"),
            }
        }
        human.push('\n');
    }

    // 2. For programs: RFC 3464 section 2.
    let mut st = String::new();
    st.push_str(&format!("Reporting-MTA: dns; {}\n", r.host));
    st.push_str(&format!("X-Queue-ID: {}\n", r.queue_id));
    if let Some(e) = r.envid {
        st.push_str(&format!("Original-Envelope-Id: {}\n", printable_address(e)));
    }
    st.push_str(&format!("Arrival-Date: {}\n", date(r.arrival)));
    for x in &r.rcpts {
        st.push('\n');
        let ty = if x.address.is_ascii() { "rfc822" } else { "utf-8" };
        st.push_str(&format!("Final-Recipient: {ty}; {}\n", printable_address(&x.address)));
        if let Some(o) = &x.orcpt {
            // ORCPT is `addr-type;xtext`; RFC 3464 2.3.1 wants `addr-type; xtext`.
            let o = printable_address(o);
            match o.split_once(';') {
                Some((t, a)) => st.push_str(&format!("Original-Recipient: {t}; {a}\n")),
                None => st.push_str(&format!("Original-Recipient: rfc822; {o}\n")),
            }
        }
        st.push_str(&format!("Action: {}\n", x.action.word()));
        st.push_str(&format!("Status: {}\n", status(&x.text, x.action, x.expired)));
        // RFC 3464 2.3.6: the remote's SMTP reply as it came; text of our
        // own (smtp-remote's or queue-run's reasons) as X-Local.
        match smtp_reply(&x.text) {
            Some(reply) => st.push_str(&format!("Diagnostic-Code: smtp; {}\n", cut(&reply))),
            None if !x.text.is_empty() => st.push_str(&format!("Diagnostic-Code: X-Local; {}\n", cut(&x.text))),
            None => {}
        }
        if x.last_attempt > 0 {
            st.push_str(&format!("Last-Attempt-Date: {}\n", date(x.last_attempt)));
        }
        if let (Action::Delayed, Some(u)) = (x.action, r.retry_until) {
            st.push_str(&format!("Will-Retry-Until: {}\n", date(u)));
        }
    }

    // 3. The message, or its header.
    let (ty, body) = if r.full {
        (if utf8 { "message/global" } else { "message/rfc822" }, r.original)
    } else {
        let end = message_header_end(r.original);
        (if utf8 { "message/global-headers" } else { "text/rfc822-headers" }, r.original.get(..end).unwrap_or_default())
    };

    let boundary = (0..BOUNDARY_TRIES)
        .map(|_| boundary())
        .find(|b| usable_boundary(b) && ![human.as_bytes(), st.as_bytes(), body].iter().any(|p| contains(p, b.as_bytes())))
        .ok_or(NoBoundary)?;

    let mut m = Vec::new();
    let mut put = |s: &str| m.extend_from_slice(s.as_bytes());
    put(&format!("From: Mail Delivery System <MAILER-DAEMON@{}>\n", r.host));
    put("To: <");
    put(&printable_address(r.to));
    put(">\n");
    put(&format!("Subject: Delivery Status Notification ({worst})\n"));
    put(&format!("Date: {}\n", date(r.now)));
    put(&format!("Message-ID: <dsn.{}.{}@{}>\n", r.queue_id, r.now, r.host));
    put("Auto-Submitted: auto-replied\n");
    put("MIME-Version: 1.0\n");
    put(&format!(
        "Content-Type: multipart/report; report-type={}delivery-status;\n\tboundary=\"{boundary}\"\n\n",
        if utf8 { "global-" } else { "" }
    ));
    put("This is a MIME-encapsulated message.\n\n");
    put(&format!("--{boundary}\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"));
    put(&human);
    put(&format!("--{boundary}\nContent-Type: message/{}delivery-status\n\n", if utf8 { "global-" } else { "" }));
    put(&st);
    put(&format!("\n--{boundary}\nContent-Type: {ty}\n"));
    if !body.is_ascii() {
        put("Content-Transfer-Encoding: 8bit\n");
    }
    put("\n");
    m.extend_from_slice(body);
    if !body.ends_with(b"\n") {
        m.push(b'\n');
    }
    m.extend_from_slice(format!("\n--{boundary}--\n").as_bytes());
    // The human part is UTF-8 text of our own; only the reply texts or the
    // original can make it 8-bit.
    let eight_bit = !m.is_ascii();
    Ok(Built { text: m, eight_bit, utf8 })
}

/// RFC 2046 5.1.1: 1 to 70 characters of `bcharsnospace` (a quoted
/// parameter, so the few specials allowed are fine; no space here).
fn usable_boundary(b: &str) -> bool {
    (1..=70).contains(&b.len()) && b.bytes().all(|c| c.is_ascii_alphanumeric() || b"'()+_,-./:=?".contains(&c))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The `Status:` of a recipient (RFC 3464 2.3.4, RFC 3463 codes): the
/// enhanced code of the remote's reply (or, failing that, the first one in
/// the text, such as smtp-remote's `(#5.1.2)`) when its class fits the
/// action: 2 for relayed, 4 for delayed, 5 for failed, and 4 or 5 for a
/// recipient queue-run gave up on after the queue lifetime (RFC 3463 class
/// 4 with a failure report: the condition was transient, sending later may
/// work; Postfix does the same). Else the class of the reply's basic code
/// with `.0.0`, else `2.0.0`, `4.0.0`, `5.0.0`, or `4.4.7` (delivery time
/// expired) for a recipient given up on.
pub fn status(text: &str, action: Action, expired: bool) -> String {
    let fits = |c: u8| match action {
        Action::Relayed => c == b'2',
        Action::Delayed => c == b'4',
        Action::Failed if expired => c == b'4' || c == b'5',
        Action::Failed => c == b'5',
    };
    let reply = smtp_reply(text);
    let from_reply = reply.as_deref().and_then(|r| r.get(4..)).and_then(enhanced_at_start);
    if let Some(code) = from_reply.filter(|c| fits(c.as_bytes()[0])).or_else(|| first_enhanced(text, &fits)) {
        return code;
    }
    if let Some(c) = reply.as_ref().map(|r| r.as_bytes()[0]).filter(|&c| fits(c)) {
        return format!("{}.0.0", c as char);
    }
    match action {
        Action::Relayed => "2.0.0".into(),
        Action::Delayed => "4.0.0".into(),
        Action::Failed if expired => "4.4.7".into(),
        Action::Failed => "5.0.0".into(),
    }
}

/// The remote's SMTP reply in a result text, if there is one: what follows
/// the last `Remote host said: ` (smtp-remote's and qmail-remote's way of
/// quoting it), else the last `/`-separated piece that starts with a reply
/// code, with what follows it. The lines of a multi-line reply, which the
/// report joined with `/`, are joined with spaces.
pub fn smtp_reply(text: &str) -> Option<String> {
    const SAID: &str = "Remote host said: ";
    let start = match text.rfind(SAID) {
        Some(i) => i + SAID.len(),
        None => {
            let mut at = None;
            let mut pos = 0;
            for piece in text.split('/') {
                if starts_with_code(piece) {
                    at = Some(pos);
                }
                pos += piece.len() + 1;
            }
            at?
        }
    };
    let rest = text.get(start..)?;
    if !starts_with_code(rest) {
        return None;
    }
    let code = rest.get(..3)?;
    let mut out = String::new();
    for (i, piece) in rest.split('/').enumerate() {
        if i > 0 {
            out.push(if piece.starts_with(code) && starts_with_code(piece) { ' ' } else { '/' });
        }
        out.push_str(piece);
    }
    Some(out)
}

/// `[2-5]dd` then a space, a hyphen or the end.
fn starts_with_code(s: &str) -> bool {
    let b = s.as_bytes();
    matches!(b.first(), Some(b'2'..=b'5'))
        && b.get(1).is_some_and(u8::is_ascii_digit)
        && b.get(2).is_some_and(u8::is_ascii_digit)
        && matches!(b.get(3), None | Some(b' ' | b'-'))
}

/// An enhanced status code `c.sss.ddd` at the start of `s` (RFC 3463: class
/// 2, 4 or 5, subject and detail of 1 to 3 digits), followed by no digit
/// or dot.
fn enhanced_at_start(s: &str) -> Option<String> {
    let code: String = s.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let code = code.trim_end_matches('.').to_owned();
    let parts: Vec<&str> = code.split('.').collect();
    let ok = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..].iter().all(|p| (1..=3).contains(&p.len()));
    ok.then_some(code)
}

/// The first enhanced code in `text` whose class `fits`, standing alone (not
/// inside a longer number or word).
fn first_enhanced(text: &str, fits: &dyn Fn(u8) -> bool) -> Option<String> {
    let b = text.as_bytes();
    (0..b.len()).find_map(|i| {
        let before_ok = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.');
        if before_ok && fits(b[i]) {
            text.get(i..).and_then(enhanced_at_start)
        } else {
            None
        }
    })
}

fn cut(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if out.len() + c.len_utf8() > MAX_DIAG {
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// RFC 5322 date-time in UTC: `Wed, 25 Nov 2026 16:30:07 +0000`
/// (the one formatter of the suite, `date`).
pub fn date(unix: u64) -> String {
    crate::date::rfc5322(i64::try_from(unix).unwrap_or(i64::MAX))
}

/// Where the returned message's own header ends: just after its empty line
/// (RET=HDRS returns that much), or the whole text if it has none.
fn message_header_end(msg: &[u8]) -> usize {
    if msg.starts_with(b"\n") {
        return 1;
    }
    msg.windows(2).position(|w| w == b"\n\n").map_or(msg.len(), |p| p + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(date(951782400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(date(1795624207), "Wed, 25 Nov 2026 16:30:07 +0000");
    }

    #[test]
    fn status_codes() {
        use Action::*;
        let t = |text: &str, a: Action, expired: bool| status(text, a, expired);
        // The reply's own code, when its class fits.
        assert_eq!(t("127.0.0.1 does not like recipient./Remote host said: 550 5.1.1 <x@y>: no such user", Failed, false), "5.1.1");
        assert_eq!(t("Remote host said: 450 4.3.0 busy", Delayed, false), "4.3.0");
        assert_eq!(t("451 4.7.1 greylisted", Delayed, false), "4.7.1");
        // Given up after the lifetime: the remote's 4.x.y stands.
        assert_eq!(t("Remote host said: 450 4.3.0 busy", Failed, true), "4.3.0");
        assert_eq!(t("Remote host said: 450 4.3.0 busy", Failed, false), "5.0.0", "a permanent failure is 5");
        assert_eq!(t("Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)", Failed, true), "4.4.1");
        assert_eq!(t("connection died", Failed, true), "4.4.7");
        assert_eq!(t("Remote host said: 421 try later", Failed, true), "4.0.0");
        // smtp-remote's and queue-run's own codes.
        assert_eq!(t("Sorry, I couldn't find any host named x. (#5.1.2)", Failed, false), "5.1.2");
        assert_eq!(t("Recipient address has no domain. (#5.1.3)", Failed, false), "5.1.3");
        assert_eq!(t("550 no code", Failed, false), "5.0.0");
        assert_eq!(t("version 5.10.2.3 here", Failed, false), "5.0.0");
        assert_eq!(t("", Relayed, false), "2.0.0");
        assert_eq!(t("Remote host said: 250 2.1.5 ok/127.0.0.1 accepted message./Remote host said: 250 2.0.0 queued", Relayed, false), "2.0.0");
        assert_eq!(t("Remote host said: 550 5.1.1. gone", Failed, false), "5.1.1");
    }

    #[test]
    fn smtp_replies() {
        let r = |s: &str| smtp_reply(s);
        assert_eq!(r("127.0.0.1 does not like recipient./Remote host said: 550 5.1.1 no such user").as_deref(), Some("550 5.1.1 no such user"));
        assert_eq!(
            r("Remote host said: 250 2.1.5 ok/127.0.0.1 accepted message./Remote host said: 250 2.0.0 queued").as_deref(),
            Some("250 2.0.0 queued")
        );
        assert_eq!(r("Remote host said: 550-5.7.1 first/550 5.7.1 second").as_deref(), Some("550-5.7.1 first 550 5.7.1 second"));
        assert_eq!(r("421 4.3.2 service not available").as_deref(), Some("421 4.3.2 service not available"));
        assert_eq!(r("Connected to 192.0.2.1 but sender was rejected./554 no").as_deref(), Some("554 no"));
        assert_eq!(r("Sorry, I couldn't find any host named x. (#5.1.2)"), None);
        assert_eq!(r("Remote host said: not a reply"), None);
        assert_eq!(r("smtp-remote crashed (signal 9) (#4.3.0)"), None);
        assert_eq!(r("Remote host said: 250 a/b/250 c").as_deref(), Some("250 a/b 250 c"));
    }

    const B: &str = "=_dsn_0123456789abcdef0123456789abcdef";

    fn report(original: &[u8], full: bool, action: Action) -> Built {
        report_with(original, full, action, &mut || B.to_string()).unwrap()
    }

    fn report_with(original: &[u8], full: bool, action: Action, b: &mut dyn FnMut() -> String) -> Result<Built, NoBoundary> {
        build(&Report {
            host: "mx.example",
            to: b"alice@example.org",
            queue_id: "1700000000.1.1",
            envid: Some(b"ENV+2B1"),
            arrival: 1700000000,
            now: 1700000100,
            retry_until: Some(1700604800),
            rcpts: vec![RcptReport {
                address: b"bob@example.net".to_vec(),
                orcpt: Some(b"rfc822;bob@example.net".to_vec()),
                action,
                text: "Remote host said: 550 5.1.1 no such user".into(),
                expired: false,
                last_attempt: 1700000090,
            }],
            original,
            full,
        }, b)
    }

    #[test]
    fn failure_report() {
        let b = report(b"Subject: hi\nFrom: a@b\n\nbody line\n", true, Action::Failed);
        let t = String::from_utf8(b.text).unwrap();
        assert!(!b.eight_bit && !b.utf8);
        for want in [
            "To: <alice@example.org>\n",
            "Subject: Delivery Status Notification (Failure)\n",
            "Content-Type: multipart/report; report-type=delivery-status;",
            "Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n",
            "Original-Envelope-Id: ENV+2B1\n",
            "Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\n",
            "Final-Recipient: rfc822; bob@example.net\nOriginal-Recipient: rfc822; bob@example.net\nAction: failed\nStatus: 5.1.1\n",
            "Diagnostic-Code: smtp; 550 5.1.1 no such user\n",
            "Content-Type: message/rfc822\n\nSubject: hi\nFrom: a@b\n\nbody line\n",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        let boundary = B;
        assert!(t.ends_with(&format!("\n--{boundary}--\n")));
        assert_eq!(t.matches(&format!("--{boundary}\n")).count(), 3);
        assert!(!t.contains("Will-Retry-Until"));
    }

    #[test]
    fn headers_only_delay_and_8bit() {
        let b = report("Subject: h\u{e9}\n\nsecret body\n".as_bytes(), false, Action::Delayed);
        let t = String::from_utf8(b.text).unwrap();
        assert!(t.contains("Content-Type: text/rfc822-headers\nContent-Transfer-Encoding: 8bit\n\nSubject: h\u{e9}\n\n"));
        assert!(!t.contains("secret body"));
        assert!(t.contains("Action: delayed\nStatus: 4.0.0\n"));
        assert!(t.contains("Will-Retry-Until: "));
        assert!(t.contains("(Delay)"));
        assert!(b.eight_bit);
        let s = report(b"S: x\n\nb\n", false, Action::Relayed);
        assert!(String::from_utf8(s.text).unwrap().contains("Action: relayed\nStatus: 2.0.0\n"));
    }

    #[test]
    fn boundary_found_in_a_part_is_not_used() {
        // The forced first candidate occurs in the original (as a line that
        // would close the multipart): it is detected and the next one is used.
        let original = format!("Subject: x\n\n--{B}--\n");
        let mut cands = vec![B.to_string(), "=_dsn_second".to_string()].into_iter();
        let b = report_with(original.as_bytes(), true, Action::Failed, &mut || cands.next().unwrap_or_default()).unwrap();
        let t = String::from_utf8(b.text).unwrap();
        assert!(t.contains("boundary=\"=_dsn_second\""), "{t}");
        assert!(t.ends_with("\n--=_dsn_second--\n"));
        assert_eq!(t.matches("\n--=_dsn_second\n").count(), 3);
        // Also when it occurs in the status part (a remote's reply text), or
        // a candidate is unusable; and a source that only collides gives up.
        let mut cands = vec!["", "bad boundary", "5.1.1", "=_ok"].into_iter().map(String::from);
        let b = report_with(b"S: x\n\nbody\n", true, Action::Failed, &mut || cands.next().unwrap_or_default()).unwrap();
        assert!(String::from_utf8(b.text).unwrap().contains("boundary=\"=_ok\""));
        assert_eq!(report_with(original.as_bytes(), true, Action::Failed, &mut || B.to_string()), Err(NoBoundary));
    }
}
