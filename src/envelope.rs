//! The qmail-queue envelope (`F<sender>\0T<rcpt>\0...\0`) and the attribute
//! block that carries what the plain envelope cannot (BODY, SMTPUTF8, DSN,
//! client facts). Encoders and bounded decoders; pure, no I/O here.
//!
//! Attribute block: lines `NAME=VALUE\n`; NAME is `[A-Za-z0-9_.-]+`, VALUE is
//! xtext (see `xtext`). Names are listed in queue-inject(8) and smtpd-queue(5).

use crate::xtext;
use std::fmt;

/// qmail-queue's limit on one address (its `ADDR`): longer is exit 11.
pub const MAX_ADDR: usize = 1003;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub sender: Vec<u8>,
    pub recipients: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not `F...\0(T...\0)*\0`: qmail-queue exit 91.
    Format,
    /// An address longer than `MAX_ADDR`: qmail-queue exit 11.
    AddressTooLong,
    /// No recipient at all: qmail-queue takes it, we refuse it as format error.
    NoRecipients,
    /// More recipients than the caller allows.
    TooManyRecipients,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Format => "envelope format error",
            Error::AddressTooLong => "envelope address too long",
            Error::NoRecipients => "envelope has no recipient",
            Error::TooManyRecipients => "envelope has too many recipients",
        })
    }
}

impl std::error::Error for Error {}

impl Envelope {
    /// The envelope as qmail-queue reads it on fd 1.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(
            3 + self.sender.len() + self.recipients.iter().map(|r| r.len() + 2).sum::<usize>(),
        );
        v.push(b'F');
        v.extend_from_slice(&self.sender);
        v.push(0);
        for r in &self.recipients {
            v.push(b'T');
            v.extend_from_slice(r);
            v.push(0);
        }
        v.push(0);
        v
    }

    /// Parse a whole envelope. Trailing bytes after the final `\0` are a
    /// format error. At most `max_rcpt` recipients.
    pub fn parse(buf: &[u8], max_rcpt: usize) -> Result<Envelope, Error> {
        let mut p = Parser::new(max_rcpt);
        for &b in buf {
            p.push(b)?;
        }
        p.finish()
    }
}

/// Incremental envelope reader: feed bytes with `push` (bounded memory:
/// `MAX_ADDR` per address, `max_rcpt` addresses), `finish` at EOF.
#[derive(Debug)]
pub struct Parser {
    env: Envelope,
    cur: Vec<u8>,
    state: PState,
    max_rcpt: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PState {
    Start,
    Sender,
    Next,
    Rcpt,
    Done,
}

impl Parser {
    pub fn new(max_rcpt: usize) -> Parser {
        Parser { env: Envelope::default(), cur: Vec::new(), state: PState::Start, max_rcpt }
    }

    /// Take one byte. `Ok(true)` once the terminating `\0` is seen; a byte
    /// after that is the caller's to judge.
    pub fn push(&mut self, b: u8) -> Result<bool, Error> {
        match (self.state, b) {
            (PState::Start, b'F') => self.state = PState::Sender,
            (PState::Start, _) => return Err(Error::Format),
            (PState::Sender | PState::Rcpt, 0) => {
                let a = std::mem::take(&mut self.cur);
                if self.state == PState::Sender {
                    self.env.sender = a;
                } else {
                    if self.env.recipients.len() >= self.max_rcpt {
                        return Err(Error::TooManyRecipients);
                    }
                    self.env.recipients.push(a);
                }
                self.state = PState::Next;
            }
            (PState::Sender | PState::Rcpt, _) => {
                if self.cur.len() >= MAX_ADDR {
                    return Err(Error::AddressTooLong);
                }
                self.cur.push(b);
            }
            (PState::Next, b'T') => self.state = PState::Rcpt,
            (PState::Next, 0) => {
                self.state = PState::Done;
                return Ok(true);
            }
            (PState::Next, _) | (PState::Done, _) => return Err(Error::Format),
        }
        Ok(false)
    }

    /// The envelope, if the input ended right after its terminating `\0`.
    pub fn finish(self) -> Result<Envelope, Error> {
        if self.state != PState::Done {
            return Err(Error::Format);
        }
        if self.env.recipients.is_empty() {
            return Err(Error::NoRecipients);
        }
        Ok(self.env)
    }
}

/// Extra facts about a message, in order, as `NAME=VALUE` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs(pub Vec<(String, Vec<u8>)>);

impl Attrs {
    pub fn push(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.0.push((name.to_owned(), value.as_ref().to_vec()));
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `NAME=xtext(VALUE)\n` for each pair.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        for (n, v) in &self.0 {
            s.push_str(n);
            s.push('=');
            s.push_str(&xtext::encode(v));
            s.push('\n');
        }
        s
    }

    /// Parse an attribute block; `None` on any malformed line.
    pub fn parse(block: &[u8]) -> Option<Attrs> {
        let mut a = Attrs::default();
        for line in block.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let eq = line.iter().position(|&b| b == b'=')?;
            let (name, value) = (&line[..eq], &line[eq + 1..]);
            if !valid_name(name) {
                return None;
            }
            let name = std::str::from_utf8(name).ok()?.to_owned();
            a.0.push((name, xtext::decode(value)?));
        }
        Some(a)
    }
}

/// The attribute that carries header fields for the delivery program to
/// send on top of the message: queue-run's DKIM signatures (doc/PROTOCOLS.md
/// section 1). queue-run sets it for each run and never passes on one from a
/// queue file, so nothing queued can add header fields.
pub const PREPEND: &str = "PREPEND";
/// The longest PREPEND value. Its xtext, at most three times as long, keeps
/// the attribute block well inside Linux's limit on one environment string
/// (MAX_ARG_STRLEN, 128 KiB).
pub const MAX_PREPEND: usize = 16 * 1024;

/// Is `v` a PREPEND value: whole header fields in LF form, each line a field
/// (`name:`, RFC 5322 3.6.8's printable name) or a continuation starting with
/// SP or TAB, every line ended by LF, printable ASCII and TAB only, no empty
/// line (it would end the header section), at most MAX_PREPEND octets? An
/// empty value is one: nothing to add.
pub fn valid_prepend(v: &[u8]) -> bool {
    if v.is_empty() {
        return true;
    }
    let Some(body) = v.strip_suffix(b"\n") else { return false };
    v.len() <= MAX_PREPEND
        && body.split(|&b| b == b'\n').enumerate().all(|(i, line)| {
            let printable = line.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
            let field = match line.iter().position(|&b| b == b':') {
                Some(n) => n > 0 && line.get(..n).is_some_and(|name| name.iter().all(|&b| (b'!'..=b'~').contains(&b))),
                None => false,
            };
            let continuation = i > 0 && matches!(line.first(), Some(b' ' | b'\t'));
            printable && (field || continuation)
        })
}

/// `[A-Za-z0-9_.-]+`
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip() {
        let e = Envelope { sender: b"a@b".to_vec(), recipients: vec![b"c@d".to_vec(), b"e@f".to_vec()] };
        assert_eq!(e.encode(), b"Fa@b\0Tc@d\0Te@f\0\0");
        assert_eq!(Envelope::parse(&e.encode(), 10), Ok(e));
    }

    #[test]
    fn envelope_table() {
        let ok = |b: &[u8]| Envelope::parse(b, 2);
        assert_eq!(ok(b"F\0Tx\0\0").unwrap().sender, b"");
        assert_eq!(ok(b""), Err(Error::Format));
        assert_eq!(ok(b"X\0"), Err(Error::Format));
        assert_eq!(ok(b"Fa\0Tb\0"), Err(Error::Format));
        assert_eq!(ok(b"Fa\0Tb\0\0\0"), Err(Error::Format));
        assert_eq!(ok(b"Fa\0Xb\0\0"), Err(Error::Format));
        assert_eq!(ok(b"Fa\0\0"), Err(Error::NoRecipients));
        assert_eq!(ok(b"Fa\0Tb\0Tc\0Td\0\0"), Err(Error::TooManyRecipients));
        let long = [&b"F"[..], &vec![b'x'; MAX_ADDR + 1], b"\0Tb\0\0"].concat();
        assert_eq!(ok(&long), Err(Error::AddressTooLong));
        let max = [&b"F"[..], &vec![b'x'; MAX_ADDR], b"\0Tb\0\0"].concat();
        assert!(ok(&max).is_ok());
    }

    #[test]
    fn attrs_round_trip() {
        let mut a = Attrs::default();
        a.push("BODY", "8BITMIME");
        a.push("RCPT.0.ORCPT", "rfc822;a+2Bb@c");
        a.push("CLIENT_HELO", "evil\nname = x");
        let s = a.encode();
        assert_eq!(s.lines().count(), 3);
        assert_eq!(Attrs::parse(s.as_bytes()), Some(a.clone()));
        assert_eq!(a.get("BODY"), Some(&b"8BITMIME"[..]));
        assert_eq!(Attrs::parse(b"bad name=x\n"), None);
        assert_eq!(Attrs::parse(b"NOEQUALS\n"), None);
    }

    #[test]
    fn prepend_values() {
        let ok: &[&[u8]] = &[
            b"",
            b"DKIM-Signature: v=1; a=ed25519-sha256;\n\tb=abc\n",
            b"A: 1\nB:2\n c\n",
            b"X:\n",
        ];
        for v in ok {
            assert!(valid_prepend(v), "{:?}", String::from_utf8_lossy(v));
        }
        let long = [&b"X: "[..], &vec![b'x'; MAX_PREPEND], b"\n"].concat();
        let bad: &[&[u8]] = &[
            b"A: 1",                   // no final LF
            b"A: 1\n\nbody\n",        // an empty line ends the header
            b"\n",                     // an empty line
            b" folded first\n",        // a continuation of nothing
            b"no colon\n",
            b": no name\n",
            b"A: 1\r\n",               // CR
            b"A: \xc3\xa9\n",           // not ASCII
            b"A: \0\n",
            b"Bad Name: x\n",
            &long,
        ];
        for v in bad {
            assert!(!valid_prepend(v), "{:?}", String::from_utf8_lossy(v));
        }
    }
}
