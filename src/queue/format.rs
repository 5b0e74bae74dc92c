//! The queue file's text header (smtpd-queue(5)): encoder and bounded parser,
//! for queue-inject and for every program that reads the queue. Pure, except
//! `read_header`, which reads any `BufRead` the caller opened.
//!
//! ```text
//! smtpd-queue 1
//! id <queue id>
//! time <unix seconds>
//! from <sender, xtext>
//! to <recipient, xtext>          (one per recipient, envelope order)
//! attr <NAME>=<VALUE, xtext>     (the attribute block, in order)
//!                                (empty line)
//! <message, LF line ends>
//! ```

use crate::envelope::{valid_name, Attrs, Envelope};
use crate::xtext;
use std::fmt;
use std::io::{self, BufRead, Read};

/// The first line of every queue file of this format.
pub const VERSION_LINE: &str = "smtpd-queue 1";
/// Longest header line a reader accepts, newline included. A `to` line holds
/// at most 3 x 1003 octets of xtext; attribute values are short.
pub const MAX_LINE: usize = 65536;
/// Longest header, empty line included: the one limit of the writer
/// (queue-inject refuses an envelope whose header would be longer) and of
/// every reader (a longer header is a corrupt file).
pub const MAX_HEADER: usize = 8 << 20;

/// Everything before the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub id: String,
    pub time: u64,
    pub envelope: Envelope,
    pub attrs: Attrs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// The first line is not `smtpd-queue 1`.
    Version,
    /// A line longer than `MAX_LINE`.
    LineTooLong,
    /// A header longer than `MAX_HEADER`.
    TooLong,
    /// The input ended before the empty line that closes the header.
    Truncated,
    /// A required line is missing (`id`, `time`, `from`, `to`).
    Missing(&'static str),
    /// A line that may appear once appears twice (at this line number).
    Duplicate(usize, &'static str),
    /// A value that does not parse (bad xtext, bad number, bad attribute),
    /// at this line number (the first line is 1).
    BadValue(usize, &'static str),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Version => write!(f, "not a queue file (first line is not `{VERSION_LINE}`)"),
            FormatError::LineTooLong => write!(f, "header line longer than {MAX_LINE} octets"),
            FormatError::TooLong => write!(f, "header longer than {MAX_HEADER} octets"),
            FormatError::Truncated => f.write_str("header not ended by an empty line"),
            FormatError::Missing(k) => write!(f, "no `{k}` line in the header"),
            FormatError::Duplicate(n, k) => write!(f, "line {n}: more than one `{k}` line in the header"),
            FormatError::BadValue(n, k) => write!(f, "line {n}: bad {k}"),
        }
    }
}

impl std::error::Error for FormatError {}

/// Error of `read_header`: the reader's, or the format's.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    Format(FormatError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "read error: {e}"),
            ReadError::Format(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReadError {}

/// The header bytes, empty line included; the message follows them.
/// Attribute names that are not `[A-Za-z0-9_.-]+` are left out: they could
/// not be read back.
pub fn encode_header(id: &str, time: u64, env: &Envelope, attrs: &Attrs) -> Vec<u8> {
    let mut s = String::with_capacity(64 + env.sender.len() + env.recipients.len() * 32);
    s.push_str(VERSION_LINE);
    s.push_str("\nid ");
    s.push_str(id);
    s.push_str("\ntime ");
    s.push_str(&time.to_string());
    s.push_str("\nfrom ");
    s.push_str(&xtext::encode(&env.sender));
    s.push('\n');
    for r in &env.recipients {
        s.push_str("to ");
        s.push_str(&xtext::encode(r));
        s.push('\n');
    }
    for (n, v) in &attrs.0 {
        if valid_name(n.as_bytes()) {
            s.push_str("attr ");
            s.push_str(n);
            s.push('=');
            s.push_str(&xtext::encode(v));
            s.push('\n');
        }
    }
    s.push('\n');
    s.into_bytes()
}

/// Parse the header at the front of `buf` (a whole file, or at least its
/// header). Returns the header and the offset of the message's first octet.
pub fn parse_header(buf: &[u8]) -> Result<(Header, usize), FormatError> {
    let mut p = HeaderParser::default();
    let mut off = 0;
    loop {
        let rest = buf.get(off..).unwrap_or_default();
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(if rest.len() >= MAX_LINE {
                FormatError::LineTooLong
            } else {
                FormatError::Truncated
            });
        };
        if nl >= MAX_LINE {
            return Err(FormatError::LineTooLong);
        }
        let line = rest.get(..nl).unwrap_or_default();
        off += nl + 1;
        if off > MAX_HEADER {
            return Err(FormatError::TooLong);
        }
        if p.line(line)? {
            return Ok((p.finish()?, off));
        }
    }
}

/// Read the header from `r`, leaving `r` at the message's first octet.
/// Returns the header and its length in octets (the message's offset).
pub fn read_header<R: BufRead>(r: &mut R) -> Result<(Header, u64), ReadError> {
    let mut p = HeaderParser::default();
    let mut line = Vec::new();
    let mut total = 0usize;
    loop {
        line.clear();
        let n = r.by_ref().take(MAX_LINE as u64).read_until(b'\n', &mut line).map_err(ReadError::Io)?;
        if line.last() != Some(&b'\n') {
            return Err(ReadError::Format(if n >= MAX_LINE {
                FormatError::LineTooLong
            } else {
                FormatError::Truncated
            }));
        }
        total += n;
        if total > MAX_HEADER {
            return Err(ReadError::Format(FormatError::TooLong));
        }
        line.pop();
        if p.line(&line).map_err(ReadError::Format)? {
            return p.finish().map(|h| (h, total as u64)).map_err(ReadError::Format);
        }
    }
}

/// A queue id as a file name: `[A-Za-z0-9._-]`, not starting with `.`, at
/// most 200 octets (queue-inject's are `<secs>.<pid>.<seq>`).
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Line-at-a-time header parser. Unknown keywords are skipped, so that a
/// later writer may add lines without breaking readers of version 1.
#[derive(Debug, Default)]
struct HeaderParser {
    lines: usize,
    id: Option<String>,
    time: Option<u64>,
    sender: Option<Vec<u8>>,
    recipients: Vec<Vec<u8>>,
    attrs: Attrs,
}

impl HeaderParser {
    /// Take one line (without its `\n`). `Ok(true)`: that was the empty
    /// line ending the header.
    fn line(&mut self, line: &[u8]) -> Result<bool, FormatError> {
        self.lines += 1;
        if self.lines == 1 {
            return if line == VERSION_LINE.as_bytes() { Ok(false) } else { Err(FormatError::Version) };
        }
        if line.is_empty() {
            return Ok(true);
        }
        let (key, value) = match line.iter().position(|&b| b == b' ') {
            Some(sp) => (line.get(..sp).unwrap_or_default(), line.get(sp + 1..).unwrap_or_default()),
            None => (line, &b""[..]),
        };
        match key {
            b"id" => {
                if self.id.is_some() {
                    return Err(FormatError::Duplicate(self.lines, "id"));
                }
                if !std::str::from_utf8(value).is_ok_and(valid_id) {
                    return Err(FormatError::BadValue(self.lines, "id"));
                }
                self.id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"time" => {
                if self.time.is_some() {
                    return Err(FormatError::Duplicate(self.lines, "time"));
                }
                let t = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
                self.time = Some(t.ok_or(FormatError::BadValue(self.lines, "time"))?);
            }
            b"from" => {
                if self.sender.is_some() {
                    return Err(FormatError::Duplicate(self.lines, "from"));
                }
                self.sender = Some(xtext::decode(value).ok_or(FormatError::BadValue(self.lines, "from"))?);
            }
            b"to" => self.recipients.push(xtext::decode(value).ok_or(FormatError::BadValue(self.lines, "to"))?),
            b"attr" => {
                let a = Attrs::parse(value).ok_or(FormatError::BadValue(self.lines, "attr"))?;
                if a.0.len() != 1 {
                    return Err(FormatError::BadValue(self.lines, "attr"));
                }
                self.attrs.0.extend(a.0);
            }
            _ => {}
        }
        Ok(false)
    }

    fn finish(self) -> Result<Header, FormatError> {
        let id = self.id.ok_or(FormatError::Missing("id"))?;
        let time = self.time.ok_or(FormatError::Missing("time"))?;
        let sender = self.sender.ok_or(FormatError::Missing("from"))?;
        if self.recipients.is_empty() {
            return Err(FormatError::Missing("to"));
        }
        Ok(Header { id, time, envelope: Envelope { sender, recipients: self.recipients }, attrs: self.attrs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Envelope, Attrs) {
        let env = Envelope {
            sender: b"".to_vec(),
            recipients: vec![
                b"a@b.example".to_vec(),
                "jöe+x=y @例え.jp".as_bytes().to_vec(),
                b"\n\0".to_vec(),
            ],
        };
        let mut attrs = Attrs::default();
        attrs.push("BODY", "8BITMIME");
        attrs.push("CLIENT_HELO", "evil\nname = x");
        (env, attrs)
    }

    #[test]
    fn round_trip() {
        let (env, attrs) = sample();
        let mut file = encode_header("1.2.3", 1_700_000_000, &env, &attrs);
        let hlen = file.len();
        file.extend_from_slice(b"Subject: x\n\nbody\n");
        let (h, off) = parse_header(&file).unwrap();
        assert_eq!(off, hlen);
        assert_eq!(h, Header { id: "1.2.3".into(), time: 1_700_000_000, envelope: env, attrs });
        let mut r = io::Cursor::new(&file);
        assert_eq!(read_header(&mut r).unwrap(), (h, hlen as u64));
        let mut body = Vec::new();
        r.read_to_end(&mut body).unwrap();
        assert_eq!(body, b"Subject: x\n\nbody\n");
    }

    #[test]
    fn exact_text() {
        let env = Envelope { sender: b"s@x".to_vec(), recipients: vec![b"r 1@y".to_vec()] };
        let mut a = Attrs::default();
        a.push("RET", "HDRS");
        a.push("bad name", "dropped");
        assert_eq!(
            encode_header("9.8.7", 5, &env, &a),
            b"smtpd-queue 1\nid 9.8.7\ntime 5\nfrom s@x\nto r+201@y\nattr RET=HDRS\n\n"
        );
    }

    #[test]
    fn bad_headers() {
        let p = |b: &[u8]| parse_header(b).map(|(h, o)| (h.id, o));
        let ok = b"smtpd-queue 1\nid 1.2.3\ntime 5\nfrom \nto x\n\n";
        assert_eq!(p(ok), Ok(("1.2.3".into(), ok.len())));
        assert_eq!(p(b""), Err(FormatError::Truncated));
        assert_eq!(p(b"smtpd-queue 2\n\n"), Err(FormatError::Version));
        assert_eq!(p(b"smtpd-queue 1\nid 1\ntime 5\nfrom \nto x\n"), Err(FormatError::Truncated));
        assert_eq!(p(b"smtpd-queue 1\nid 1\ntime 5\nfrom \n\n"), Err(FormatError::Missing("to")));
        assert_eq!(p(b"smtpd-queue 1\nid 1\nfrom \nto x\n\n"), Err(FormatError::Missing("time")));
        assert_eq!(p(b"smtpd-queue 1\nid 1\ntime x\n"), Err(FormatError::BadValue(3, "time")));
        assert_eq!(p(b"smtpd-queue 1\nid 1\nid 2\n"), Err(FormatError::Duplicate(3, "id")));
        assert_eq!(p(b"smtpd-queue 1\nid a/b\n"), Err(FormatError::BadValue(2, "id")));
        assert_eq!(p(b"smtpd-queue 1\nid .hidden\n"), Err(FormatError::BadValue(2, "id")));
        assert_eq!(p(b"smtpd-queue 1\nto a b\n"), Err(FormatError::BadValue(2, "to")));
        assert_eq!(p(b"smtpd-queue 1\nattr x\n"), Err(FormatError::BadValue(2, "attr")));
        // Unknown keywords are skipped.
        assert!(p(b"smtpd-queue 1\nid 1\nsize 9\ntime 5\nfrom \nto x\n\n").is_ok());
        let long = [&b"smtpd-queue 1\nto "[..], &vec![b'x'; MAX_LINE], b"\n\n"].concat();
        assert_eq!(p(&long), Err(FormatError::LineTooLong));
        assert!(matches!(
            read_header(&mut io::Cursor::new(&long)),
            Err(ReadError::Format(FormatError::LineTooLong))
        ));
    }

    use proptest::prelude::*;

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    proptest! {
        #[test]
        fn any_envelope_attrs_and_body_round_trip(
            sender in bytes(40),
            recipients in proptest::collection::vec(bytes(40), 1..5),
            attrs in proptest::collection::vec(("[A-Za-z0-9_.-]{1,12}", bytes(30)), 0..4),
            body in bytes(200),
            time in any::<u64>(),
        ) {
            let env = Envelope { sender, recipients };
            let attrs = Attrs(attrs);
            let mut file = encode_header("1.2.3", time, &env, &attrs);
            let hlen = file.len();
            file.extend_from_slice(&body);
            let (h, off) = parse_header(&file).unwrap();
            prop_assert_eq!(off, hlen);
            prop_assert_eq!(&file[off..], &body[..]);
            prop_assert_eq!(h, Header { id: "1.2.3".into(), time, envelope: env, attrs });
        }

        #[test]
        fn parser_never_panics(junk in bytes(300)) {
            let mut input = b"smtpd-queue 1\n".to_vec();
            input.extend_from_slice(&junk);
            let _ = parse_header(&input);
            let _ = parse_header(&junk);
            let _ = read_header(&mut io::Cursor::new(&input));
        }
    }
}
