//! The report on stdout, byte for byte as qmail-remote(8) writes it, so that
//! qmail-rspawn or queue-run can read it: one record per recipient (`r`
//! accepted; `h` refused permanently; `s` refused temporarily), then one
//! record for the message (`K` accepted; `Z` temporary failure; `D` permanent
//! failure), each a letter, human text and a NUL. Remote text follows
//! `Remote host said: `. After LMTP every recipient's record is final on
//! its own (`r` then carries the server's reply for it; doc/PROTOCOLS.md 8).
//! Pure: the bytes are built here and written by the main.

use super::reply::Reply;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `K`: the remote host accepted the message.
    Accepted,
    /// `Z`: temporary failure; try again later.
    Temp,
    /// `D`: permanent failure; bounce.
    Perm,
}

impl Kind {
    pub fn letter(self) -> u8 {
        match self {
            Kind::Accepted => b'K',
            Kind::Temp => b'Z',
            Kind::Perm => b'D',
        }
    }
}

/// The message-level outcome: kind, our text (one line, no LF), and the last
/// reply of the remote host if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub kind: Kind,
    pub text: String,
    pub reply: Option<Reply>,
}

impl Outcome {
    pub fn temp(text: impl Into<String>) -> Outcome {
        Outcome { kind: Kind::Temp, text: text.into(), reply: None }
    }
    pub fn perm(text: impl Into<String>) -> Outcome {
        Outcome { kind: Kind::Perm, text: text.into(), reply: None }
    }
    /// `Z` with the remote text, whatever the reply's class.
    pub fn temp_reply(reply: &Reply, text: impl Into<String>) -> Outcome {
        Outcome { kind: Kind::Temp, text: text.into(), reply: Some(reply.clone()) }
    }
    /// `Z`/`D` from a reply's class (qmail: >= 500 permanent, else temporary).
    pub fn from_reply(reply: &Reply, text: impl Into<String>) -> Outcome {
        let kind = if reply.code >= 500 { Kind::Perm } else { Kind::Temp };
        Outcome { kind, text: text.into(), reply: Some(reply.clone()) }
    }
}

/// The per-recipient result of RCPT (and, for LMTP, of the data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptResult {
    /// RCPT accepted: `r`, whose fate the message record decides.
    Accepted,
    Refused(Reply),
    /// Refused here, permanently, before any command (our text, one line).
    Invalid(String),
    /// LMTP (RFC 2033 4.2): the reply after the data for this recipient
    /// was positive: `r` with the reply, and the message record is `K`.
    Delivered(Reply),
    /// LMTP: the reply after the data for this recipient was negative:
    /// `h`/`s` by its class, whatever the message record.
    Failed(Reply),
    /// LMTP: its reply after the data never came (connection lost): `s`
    /// with our text, since it may have been delivered or not.
    Deferred(String),
}

/// The whole report: recipient records (only when the conversation got as
/// far as RCPT, as qmail-remote) and the final record.
pub fn encode(host: &str, rcpts: &[RcptResult], outcome: &Outcome) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rcpts {
        match r {
            RcptResult::Accepted => out.extend_from_slice(b"r"),
            RcptResult::Refused(reply) => {
                out.push(if reply.code >= 500 { b'h' } else { b's' });
                out.extend_from_slice(safe(host).as_bytes());
                out.extend_from_slice(b" does not like recipient.\n");
                said(&mut out, reply);
            }
            RcptResult::Invalid(text) | RcptResult::Deferred(text) => {
                out.push(if matches!(r, RcptResult::Invalid(_)) { b'h' } else { b's' });
                out.extend_from_slice(safe(text).as_bytes());
                out.push(b'\n');
            }
            RcptResult::Delivered(reply) => {
                out.push(b'r');
                said(&mut out, reply);
            }
            RcptResult::Failed(reply) => {
                out.push(if reply.code >= 500 { b'h' } else { b's' });
                out.extend_from_slice(safe(host).as_bytes());
                out.extend_from_slice(b" failed after I sent the message.\n");
                said(&mut out, reply);
            }
        }
        out.push(0);
    }
    out.push(outcome.kind.letter());
    out.extend_from_slice(outcome.text.as_bytes());
    out.push(b'\n');
    if let Some(reply) = &outcome.reply {
        said(&mut out, reply);
    }
    out.push(0);
    out
}

fn said(out: &mut Vec<u8>, reply: &Reply) {
    let t = reply.report_text();
    if !t.is_empty() {
        out.extend_from_slice(b"Remote host said: ");
        out.extend_from_slice(&t);
    }
}

/// Printable ASCII and space only, others as `?` (qmail-remote's outsafe,
/// which also keeps our one-line texts one line).
pub fn safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmail_remote_format() {
        let ok = Reply::new(250, "ok 123 qp 4");
        let bad = Reply::new(550, "no such user");
        let later = Reply::new(450, "try later");
        let rc = [RcptResult::Accepted, RcptResult::Refused(bad), RcptResult::Refused(later)];
        let inv = [RcptResult::Invalid("Sorry, bad\r\n. (#5.1.3)".into()), RcptResult::Accepted];
        assert_eq!(encode("", &inv, &Outcome::temp("later")), b"hSorry, bad??. (#5.1.3)\n\0r\0Zlater\n\0");
        let o = Outcome { kind: Kind::Accepted, text: "127.0.0.1 accepted message.".into(), reply: Some(ok) };
        assert_eq!(
            encode("127.0.0.1", &rc, &o),
            b"r\0h127.0.0.1 does not like recipient.\nRemote host said: 550 no such user\n\0\
s127.0.0.1 does not like recipient.\nRemote host said: 450 try later\n\0\
K127.0.0.1 accepted message.\nRemote host said: 250 ok 123 qp 4\n\0"
        );
        let z = Outcome::temp("Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)");
        assert_eq!(encode("", &[], &z), b"ZSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n\0");
        let d = Outcome::from_reply(&Reply::new(554, "no"), "Connected to 192.0.2.1 but sender was rejected.");
        assert_eq!(encode("", &[], &d), b"DConnected to 192.0.2.1 but sender was rejected.\nRemote host said: 554 no\n\0");
        assert_eq!(safe("a b\u{e9}\n"), "a b??");
    }

    #[test]
    fn lmtp_records() {
        // RFC 2033 4.2: one result per recipient after the data, each its own.
        let rc = [
            RcptResult::Delivered(Reply::new(250, "2.0.0 <a@x> Saved")),
            RcptResult::Failed(Reply::new(452, "4.2.2 <b@x> Mailbox is full")),
            RcptResult::Failed(Reply::new(552, "5.2.2 <c@x> Quota exceeded")),
            RcptResult::Refused(Reply::new(550, "5.1.1 <d@x> User doesn't exist")),
            RcptResult::Deferred("Connected to /run/lmtp but connection died. Possible duplicate! (#4.4.2)".into()),
        ];
        let o = Outcome { kind: Kind::Accepted, text: "/run/lmtp accepted the message for 1 of 5 recipients.".into(), reply: None };
        assert_eq!(
            encode("/run/lmtp", &rc, &o),
            &b"rRemote host said: 250 2.0.0 <a@x> Saved\n\0\
s/run/lmtp failed after I sent the message.\nRemote host said: 452 4.2.2 <b@x> Mailbox is full\n\0\
h/run/lmtp failed after I sent the message.\nRemote host said: 552 5.2.2 <c@x> Quota exceeded\n\0\
h/run/lmtp does not like recipient.\nRemote host said: 550 5.1.1 <d@x> User doesn't exist\n\0\
sConnected to /run/lmtp but connection died. Possible duplicate! (#4.4.2)\n\0\
K/run/lmtp accepted the message for 1 of 5 recipients.\n\0"[..]
        );
    }
}
