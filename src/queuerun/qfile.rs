//! The header of a queue file (smtpd-queue(5), doc/PROTOCOLS.md section 3):
//! `smtpd-queue 1`, `id`, `time`, `from`, `to`..., `attr`..., an empty line,
//! then the message. Parser and encoder; pure, bounded: no I/O here.

use crate::envelope::Attrs;
use crate::xtext;
use std::fmt;

/// The first line of every queue file.
pub const MAGIC: &[u8] = b"smtpd-queue 1";
/// Largest header accepted (the envelope of a message with many recipients
/// fits many times over); a longer one is a corrupt file.
pub const MAX_HEADER: usize = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub id: String,
    /// Arrival, unix seconds.
    pub time: u64,
    pub sender: Vec<u8>,
    pub recipients: Vec<Vec<u8>>,
    pub attrs: Attrs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// No empty line within `MAX_HEADER` bytes, or the file ended first.
    Truncated,
    BadMagic,
    /// Line number (1-based) and what is wrong.
    Line(usize, &'static str),
    Missing(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("header not terminated by an empty line"),
            Error::BadMagic => f.write_str("not a smtpd-queue 1 file"),
            Error::Line(n, what) => write!(f, "line {n}: {what}"),
            Error::Missing(what) => write!(f, "no {what} line"),
        }
    }
}

impl std::error::Error for Error {}

/// Where the header ends: the offset of the first byte of the message (just
/// after the empty line), if `buf` holds the whole header.
pub fn header_end(buf: &[u8]) -> Option<usize> {
    if buf.starts_with(b"\n") {
        return Some(1);
    }
    buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2)
}

/// Parse a header (`buf` up to and including the empty line, or more).
/// Returns the header and the message's offset in the file.
pub fn parse(buf: &[u8]) -> Result<(Header, usize), Error> {
    let end = header_end(&buf[..buf.len().min(MAX_HEADER)]).ok_or(Error::Truncated)?;
    let mut lines = buf.get(..end.saturating_sub(2)).unwrap_or_default().split(|&b| b == b'\n');
    if lines.next() != Some(MAGIC) {
        return Err(Error::BadMagic);
    }
    let (mut id, mut time, mut sender) = (None, None, None);
    let mut recipients = Vec::new();
    let mut attr_block = Vec::new();
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        let sp = line.iter().position(|&b| b == b' ').ok_or(Error::Line(n, "no keyword"))?;
        let (key, val) = (&line[..sp], &line[sp + 1..]);
        match key {
            b"id" => {
                let s = std::str::from_utf8(val).ok().filter(|s| valid_id(s)).ok_or(Error::Line(n, "bad id"))?;
                id = Some(s.to_owned());
            }
            b"time" => {
                let t = std::str::from_utf8(val).ok().and_then(|s| s.parse().ok());
                time = Some(t.ok_or(Error::Line(n, "bad time"))?);
            }
            b"from" => sender = Some(xtext::decode(val).ok_or(Error::Line(n, "bad sender"))?),
            b"to" => recipients.push(xtext::decode(val).ok_or(Error::Line(n, "bad recipient"))?),
            b"attr" => {
                attr_block.extend_from_slice(val);
                attr_block.push(b'\n');
            }
            // Unknown keywords: a later version's; kept out, not fatal.
            k if !k.is_empty() && k.iter().all(|b| b.is_ascii_lowercase() || *b == b'-') => {}
            _ => return Err(Error::Line(n, "bad keyword")),
        }
    }
    let attrs = Attrs::parse(&attr_block).ok_or(Error::Line(0, "bad attr line"))?;
    let header = Header {
        id: id.ok_or(Error::Missing("id"))?,
        time: time.ok_or(Error::Missing("time"))?,
        sender: sender.ok_or(Error::Missing("from"))?,
        recipients,
        attrs,
    };
    if header.recipients.is_empty() {
        return Err(Error::Missing("to"));
    }
    Ok((header, end))
}

/// The header as queue-inject writes it (for tests and tools).
pub fn encode(h: &Header) -> Vec<u8> {
    let mut s = format!("smtpd-queue 1\nid {}\ntime {}\nfrom {}\n", h.id, h.time, xtext::encode(&h.sender));
    for r in &h.recipients {
        s.push_str(&format!("to {}\n", xtext::encode(r)));
    }
    for line in h.attrs.encode().lines() {
        s.push_str(&format!("attr {line}\n"));
    }
    s.push('\n');
    s.into_bytes()
}

/// A queue id as a file name: `[A-Za-z0-9._-]`, not starting with `.`, at
/// most 200 octets (queue-inject's are `<secs>.<pid>.<seq>`).
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        let mut attrs = Attrs::default();
        attrs.push("RET", "HDRS");
        attrs.push("RCPT.1.NOTIFY", "SUCCESS,FAILURE");
        Header {
            id: "1700000000.42.1".into(),
            time: 1700000000,
            sender: b"a b@x".to_vec(),
            recipients: vec![b"c@d".to_vec(), b"e+f@g".to_vec()],
            attrs,
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let mut file = encode(&h);
        let off = file.len();
        file.extend_from_slice(b"Subject: x\n\nbody\n\nmore\n");
        assert_eq!(parse(&file), Ok((h, off)));
    }

    #[test]
    fn bad_files() {
        let t = |s: &[u8]| parse(s).err();
        assert_eq!(t(b"smtpd-queue 1\nid 1\ntime 1\nfrom \nto a@b\n"), Some(Error::Truncated));
        assert_eq!(t(b"smtpd-queue 2\n\n"), Some(Error::BadMagic));
        assert_eq!(t(b"garbage\n\n"), Some(Error::BadMagic));
        assert_eq!(t(b"\n\n"), Some(Error::BadMagic));
        assert_eq!(t(b"smtpd-queue 1\nid 1\ntime x\n\n"), Some(Error::Line(3, "bad time")));
        assert_eq!(t(b"smtpd-queue 1\nid ../x\n\n"), Some(Error::Line(2, "bad id")));
        assert_eq!(t(b"smtpd-queue 1\nid 1\ntime 1\nfrom a\n\n"), Some(Error::Missing("to")));
        assert_eq!(t(b"smtpd-queue 1\nid 1\ntime 1\nto a\n\n"), Some(Error::Missing("from")));
        assert_eq!(t(b"smtpd-queue 1\nid 1\ntime 1\nfrom a b\nto a\n\n"), Some(Error::Line(4, "bad sender")));
        assert_eq!(t(b"smtpd-queue 1\nid 1\ntime 1\nfrom \nto a\nattr x y\n\n"), Some(Error::Line(0, "bad attr line")));
        assert_eq!(t(b"smtpd-queue 1\nid 1\ntime 1\nfrom \nto a\nnoval\n\n"), Some(Error::Line(6, "no keyword")));
        // Unknown keyword from a later version: ignored.
        assert!(parse(b"smtpd-queue 1\nid 1\ntime 1\nfrom \nto a\nfuture-thing 3\n\n").is_ok());
    }

    #[test]
    fn ids() {
        assert!(valid_id("1700000000.123.4"));
        for bad in ["", ".x", "a/b", "a b", "..", &"x".repeat(201)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse(&b);
        }

        #[test]
        fn round_trip_any_addresses(sender in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
                                    rcpts in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 1..5),
                                    time in 0u64..u64::MAX) {
            let h = Header { id: "1.2.3".into(), time, sender, recipients: rcpts, attrs: Attrs::default() };
            let enc = encode(&h);
            proptest::prop_assert_eq!(parse(&enc), Ok((h, enc.len())));
        }
    }
}
