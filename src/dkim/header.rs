//! The header section of a message as DKIM sees it (RFC 5322 2.2, 3.6):
//! found at the front of a stream (`HeaderReader`, bounded), split into
//! fields with their folding (`split_fields`), the RFC 5322.From domain that
//! DMARC aligns on (`from_domain`), and what a signer must know before it
//! signs: lines over 998 octets, 8-bit octets. Pure: no I/O here.
//!
//! Lines end in CR LF (the message as transmitted); a bare CR or LF is an
//! ordinary octet of its line.

use std::fmt;

/// The most header octets kept; a longer header section is refused.
pub const MAX_HEADER_BYTES: usize = 256 * 1024;
/// The most fields in a header section.
pub const MAX_FIELDS: usize = 1000;
/// RFC 5322 2.1.1: a line is at most 998 octets, CR LF excluded.
pub const MAX_LINE: usize = 998;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// More than MAX_HEADER_BYTES before the empty line.
    TooLarge,
    /// More than MAX_FIELDS fields.
    TooManyFields,
    /// Line `line` (from 1) is neither a field (`name:`) nor a continuation
    /// of one (starting with WSP): an mbox `From ` line, a missing empty line
    /// before the body, a continuation with nothing before it.
    NotAField { line: usize },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::TooLarge => write!(f, "header section over {MAX_HEADER_BYTES} octets"),
            HeaderError::TooManyFields => write!(f, "more than {MAX_FIELDS} header fields"),
            HeaderError::NotAField { line } => write!(f, "header line {line} is not a header field"),
        }
    }
}

/// One header field: its raw octets (name, colon, value with folding, and the
/// CR LF that ends it; the last field of a section cut short may lack it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub raw: &'a [u8],
    name_end: usize,
    colon: usize,
}

impl<'a> Field<'a> {
    /// The field name as written (white space before the colon excluded).
    pub fn name(&self) -> &'a [u8] {
        self.raw.get(..self.name_end).unwrap_or_default()
    }

    /// Is this field named `name` (ASCII case-insensitive, RFC 5322 1.2.2)?
    pub fn is(&self, name: &str) -> bool {
        self.name().eq_ignore_ascii_case(name.as_bytes())
    }

    /// The value: everything after the colon, folding included, without the
    /// final CR LF.
    pub fn value(&self) -> &'a [u8] {
        let v = self.raw.get(self.colon + 1..).unwrap_or_default();
        v.strip_suffix(b"\r\n").unwrap_or(v)
    }

    /// Where `value()` starts in `raw`.
    pub fn value_offset(&self) -> usize {
        self.colon + 1
    }
}

/// Split a header section (as `HeaderReader::header` returns it, without the
/// empty line) into fields, top to bottom.
pub fn split_fields(block: &[u8]) -> Result<Vec<Field<'_>>, HeaderError> {
    if block.len() > MAX_HEADER_BYTES {
        return Err(HeaderError::TooLarge);
    }
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut start = 0; // of the current line
    let mut line_no = 0;
    // (start of the current field, end of its name, its colon)
    let mut cur: Option<(usize, usize, usize)> = None;
    while start < block.len() {
        line_no += 1;
        let rest = block.get(start..).unwrap_or_default();
        let end = start + find_crlf(rest).map_or(rest.len(), |n| n + 2);
        let line = block.get(start..end).unwrap_or_default();
        match line.first() {
            Some(b' ' | b'\t') if cur.is_some() => {}
            _ => {
                if let Some((s, n, c)) = cur.take() {
                    push_field(&mut fields, block, s, start, n, c)?;
                }
                let (name_end, colon) = parse_name(line).ok_or(HeaderError::NotAField { line: line_no })?;
                cur = Some((start, name_end, colon));
            }
        }
        start = end;
    }
    if let Some((s, n, c)) = cur {
        push_field(&mut fields, block, s, block.len(), n, c)?;
    }
    Ok(fields)
}

fn push_field<'a>(
    fields: &mut Vec<Field<'a>>,
    block: &'a [u8],
    start: usize,
    end: usize,
    name_end: usize,
    colon: usize,
) -> Result<(), HeaderError> {
    if fields.len() == MAX_FIELDS {
        return Err(HeaderError::TooManyFields);
    }
    fields.push(Field { raw: block.get(start..end).unwrap_or_default(), name_end, colon });
    Ok(())
}

/// `name [WSP] ":"` at the front of a line: (end of name, index of colon).
/// RFC 5322 3.6.8: ftext is printable US-ASCII except colon; obs-hdr (4.5.8)
/// allows WSP before the colon.
fn parse_name(line: &[u8]) -> Option<(usize, usize)> {
    let name_end = line.iter().position(|&b| !(33..=126).contains(&b) || b == b':')?;
    let colon = name_end + line.get(name_end..)?.iter().position(|&b| b != b' ' && b != b'\t')?;
    (name_end > 0 && line.get(colon) == Some(&b':')).then_some((name_end, colon))
}

fn find_crlf(s: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(n) = s.get(from..)?.iter().position(|&b| b == b'\r') {
        let at = from + n;
        if s.get(at + 1) == Some(&b'\n') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Collects the header section from the front of a message fed in chunks,
/// up to the empty line (RFC 5322 2.1), keeping at most MAX_HEADER_BYTES.
#[derive(Debug, Clone, Default)]
pub struct HeaderReader {
    buf: Vec<u8>,
    /// Octets of the current line so far.
    line_len: usize,
    prev_cr: bool,
    done: bool,
}

impl HeaderReader {
    pub fn new() -> HeaderReader {
        HeaderReader::default()
    }

    /// Take header octets from the front of `chunk`. `Some(n)`: the header
    /// section ended within it, and `chunk[n..]` is the start of the body
    /// (the empty line is in neither). `None`: all of `chunk` was header.
    /// Once the header is complete every call returns `Some(0)`.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Option<usize>, HeaderError> {
        if self.done {
            return Ok(Some(0));
        }
        for (i, &b) in chunk.iter().enumerate() {
            if b == b'\n' && self.prev_cr {
                if self.line_len == 1 {
                    // "\r\n" alone: the empty line. Its CR is not header.
                    self.buf.pop();
                    self.done = true;
                    return Ok(Some(i + 1));
                }
                self.line_len = 0;
            } else {
                self.line_len += 1;
            }
            if self.buf.len() == MAX_HEADER_BYTES {
                return Err(HeaderError::TooLarge);
            }
            self.buf.push(b);
            self.prev_cr = b == b'\r';
        }
        Ok(None)
    }

    /// The end of the message came first: all of it was header, the body is empty.
    pub fn finish(&mut self) {
        self.done = true;
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The header section so far: every field with its CR LF, no empty line.
    pub fn header(&self) -> &[u8] {
        &self.buf
    }
}

/// Split a whole message (CR LF form) into header section and body.
pub fn split_message(msg: &[u8]) -> Result<(&[u8], &[u8]), HeaderError> {
    let mut r = HeaderReader::new();
    match r.push(msg)? {
        Some(n) => {
            let body = msg.get(n..).unwrap_or_default();
            // The header is the front of msg minus the empty line's CR LF.
            let hlen = r.header().len();
            Ok((msg.get(..hlen).unwrap_or_default(), body))
        }
        None => Ok((msg, &[])),
    }
}

/// A line longer than 998 octets (CR LF excluded) in `block` (RFC 5322 2.1.1):
/// it cannot pass every relay unchanged, and a signature over it may break.
pub fn has_long_line(block: &[u8]) -> bool {
    let mut len = 0usize;
    let mut prev_cr = false;
    for &b in block {
        if b == b'\n' && prev_cr {
            len = 0;
        } else {
            len += 1;
            // The CR of a CR LF was counted; it is not part of the line.
            if len > MAX_LINE + 1 || (len == MAX_LINE + 1 && b != b'\r') {
                return true;
            }
        }
        prev_cr = b == b'\r';
    }
    len > MAX_LINE
}

/// An octet >= 0x80 in `block` (RFC 6532 UTF-8 headers, or raw 8-bit that
/// a relay may re-encode, breaking a signature).
pub fn has_eight_bit(block: &[u8]) -> bool {
    block.iter().any(|&b| b >= 0x80)
}

/// Why no single author domain comes out of the From field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromError {
    /// No From field.
    Missing,
    /// More than one From field (RFC 5322 3.6 allows exactly one).
    Several(usize),
    /// The value is not an address list (RFC 5322 3.4, RFC 6854 groups).
    Syntax,
    /// No mailbox in it (empty, or an empty group).
    NoMailbox,
    /// A mailbox's domain is a literal (`[192.0.2.1]`): no DNS name to align on.
    DomainLiteral,
    /// Several mailboxes with different domains: no one author domain.
    MixedDomains,
}

impl fmt::Display for FromError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FromError::Missing => write!(f, "no From field"),
            FromError::Several(n) => write!(f, "{n} From fields"),
            FromError::Syntax => write!(f, "From field does not parse"),
            FromError::NoMailbox => write!(f, "From field has no address"),
            FromError::DomainLiteral => write!(f, "From address has a domain literal"),
            FromError::MixedDomains => write!(f, "From addresses have different domains"),
        }
    }
}

/// The RFC 5322.From domain (lowercase, no trailing dot) of a header section:
/// exactly one From field whose mailboxes all have the same domain.
pub fn from_domain(fields: &[Field<'_>]) -> Result<String, FromError> {
    let mut from = fields.iter().filter(|f| f.is("from"));
    let field = from.next().ok_or(FromError::Missing)?;
    let more = from.count();
    if more > 0 {
        return Err(FromError::Several(more + 1));
    }
    let domains = address_domains(field.value())?;
    let first = domains.first().ok_or(FromError::NoMailbox)?;
    if domains.iter().any(|d| d != first) {
        return Err(FromError::MixedDomains);
    }
    Ok(first.clone())
}

/// The domain of every mailbox in an address list (RFC 5322 3.4 with the
/// obsolete forms of 4.4: empty list elements, routes; RFC 6854 groups;
/// RFC 6532 UTF-8), lowercase, in order. Comments, quoted strings and
/// display names are skipped.
pub fn address_domains(value: &[u8]) -> Result<Vec<String>, FromError> {
    let toks = tokenize(value)?;
    let mut p = Parser { toks: &toks, i: 0, out: Vec::new() };
    p.list(false)?;
    if p.i != toks.len() {
        return Err(FromError::Syntax);
    }
    Ok(p.out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    /// An atom or dot-atom (atext and dots).
    Word(&'a [u8]),
    Quoted,
    Literal,
    Special(u8),
}

fn tokenize(v: &[u8]) -> Result<Vec<Tok<'_>>, FromError> {
    let mut toks = Vec::new();
    let mut i = 0;
    while let Some(&b) = v.get(i) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => {
                let mut depth = 0usize;
                loop {
                    match v.get(i) {
                        None => return Err(FromError::Syntax),
                        Some(b'\\') => i += 1,
                        Some(b'(') => depth += 1,
                        Some(b')') => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'"' | b'[' => {
                let close = if b == b'"' { b'"' } else { b']' };
                i += 1;
                loop {
                    match v.get(i) {
                        None => return Err(FromError::Syntax),
                        Some(b'\\') => i += 2,
                        Some(&c) if c == close => {
                            i += 1;
                            break;
                        }
                        Some(b'[') if close == b']' => return Err(FromError::Syntax),
                        _ => i += 1,
                    }
                }
                toks.push(if b == b'"' { Tok::Quoted } else { Tok::Literal });
            }
            b'<' | b'>' | b'@' | b',' | b':' | b';' => {
                toks.push(Tok::Special(b));
                i += 1;
            }
            _ if is_atext(b) => {
                let n = v.get(i..).unwrap_or_default().iter().position(|&c| !is_atext(c)).unwrap_or(v.len() - i);
                toks.push(Tok::Word(v.get(i..i + n).unwrap_or_default()));
                i += n;
            }
            _ => return Err(FromError::Syntax),
        }
    }
    Ok(toks)
}

/// RFC 5322 3.2.3 atext, with the dot of dot-atom and RFC 6532's UTF-8.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b) || b >= 0x80
}

struct Parser<'t, 'a> {
    toks: &'t [Tok<'a>],
    i: usize,
    out: Vec<String>,
}

impl Parser<'_, '_> {
    fn peek(&self) -> Option<Tok<'_>> {
        self.toks.get(self.i).copied()
    }

    /// address-list (or, inside a group, mailbox-list up to the `;`).
    fn list(&mut self, in_group: bool) -> Result<(), FromError> {
        loop {
            self.address(in_group)?;
            match self.peek() {
                Some(Tok::Special(b',')) => self.i += 1,
                _ => return Ok(()),
            }
        }
    }

    fn address(&mut self, in_group: bool) -> Result<(), FromError> {
        let phrase_start = self.i;
        while matches!(self.peek(), Some(Tok::Word(_) | Tok::Quoted)) {
            self.i += 1;
        }
        let phrase = self.i - phrase_start;
        match self.peek() {
            Some(Tok::Special(b'<')) => {
                self.i += 1;
                // obs-route: "@a,@b:" before the address.
                if matches!(self.peek(), Some(Tok::Special(b'@' | b','))) {
                    while !matches!(self.peek(), Some(Tok::Special(b':'))) {
                        if self.peek().is_none() {
                            return Err(FromError::Syntax);
                        }
                        self.i += 1;
                    }
                    self.i += 1;
                }
                self.addr_spec()?;
                if self.peek() != Some(Tok::Special(b'>')) {
                    return Err(FromError::Syntax);
                }
                self.i += 1;
                Ok(())
            }
            Some(Tok::Special(b':')) if phrase > 0 && !in_group => {
                self.i += 1;
                if self.peek() != Some(Tok::Special(b';')) {
                    self.list(true)?;
                }
                if self.peek() != Some(Tok::Special(b';')) {
                    return Err(FromError::Syntax);
                }
                self.i += 1;
                Ok(())
            }
            Some(Tok::Special(b'@')) if phrase > 0 => {
                self.i = phrase_start;
                self.addr_spec()
            }
            // An empty list element (obs-mbox-list allows them).
            None | Some(Tok::Special(b',' | b';')) if phrase == 0 => Ok(()),
            _ => Err(FromError::Syntax),
        }
    }

    /// local-part "@" domain.
    fn addr_spec(&mut self) -> Result<(), FromError> {
        let start = self.i;
        while matches!(self.peek(), Some(Tok::Word(_) | Tok::Quoted)) {
            self.i += 1;
        }
        if self.i == start || self.peek() != Some(Tok::Special(b'@')) {
            return Err(FromError::Syntax);
        }
        self.i += 1;
        let d = match self.peek() {
            Some(Tok::Word(d)) => normalize_domain(d)?,
            Some(Tok::Literal) => {
                self.i += 1;
                return Err(FromError::DomainLiteral);
            }
            _ => return Err(FromError::Syntax),
        };
        self.i += 1;
        self.out.push(d);
        Ok(())
    }
}

/// A domain name as d= or a selector as s= carries it (RFC 6376 3.1, 3.5):
/// dot-separated labels of letters, digits, `-`, `_` (or UTF-8 U-labels,
/// RFC 8616), at most 253 octets; lowercase, without a trailing dot.
pub fn parse_domain(d: &[u8]) -> Option<String> {
    normalize_domain(d).ok()
}

/// A domain as DNS wants it: labels of letters, digits, `-`, `_` (or UTF-8
/// U-labels), lowercase, without a trailing dot.
fn normalize_domain(d: &[u8]) -> Result<String, FromError> {
    let d = d.strip_suffix(b".").unwrap_or(d);
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split(|&b| b == b'.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b >= 0x80)
        });
    if !ok {
        return Err(FromError::Syntax);
    }
    let s = std::str::from_utf8(d).map_err(|_| FromError::Syntax)?;
    Ok(s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(block: &[u8]) -> Vec<String> {
        split_fields(block).unwrap().iter().map(|f| String::from_utf8_lossy(f.name()).into_owned()).collect()
    }

    #[test]
    fn split_table() {
        let block = b"From: a@b.c\r\nSubject: one\r\n two\r\n\tthree\r\nX-Empty:\r\nObs : x\r\n";
        let f = split_fields(block).unwrap();
        assert_eq!(names(block), ["From", "Subject", "X-Empty", "Obs"]);
        assert_eq!(f[1].raw, b"Subject: one\r\n two\r\n\tthree\r\n");
        assert_eq!(f[1].value(), b" one\r\n two\r\n\tthree");
        assert_eq!(f[2].value(), b"");
        assert_eq!(f[3].value(), b" x");
        assert!(f[3].is("OBS"));
        assert_eq!(f.iter().map(|f| f.raw.len()).sum::<usize>(), block.len());
        // Unterminated last field, bare CR and LF inside a field.
        let f = split_fields(b"A: 1\r\nB: x\ry\nz").unwrap();
        assert_eq!(f[1].raw, b"B: x\ry\nz");
        assert_eq!(f[1].value(), b" x\ry\nz");
        assert_eq!(split_fields(b"").unwrap(), vec![]);
        // Not fields.
        assert_eq!(split_fields(b" folded: first\r\n"), Err(HeaderError::NotAField { line: 1 }));
        assert_eq!(split_fields(b"From someone Fri Apr 06\r\nA: b\r\n"), Err(HeaderError::NotAField { line: 1 }));
        assert_eq!(split_fields(b"A: b\r\nno colon here\r\n"), Err(HeaderError::NotAField { line: 2 }));
        assert_eq!(split_fields(b"A: b\r\n\r\n"), Err(HeaderError::NotAField { line: 2 }));
        assert_eq!(split_fields(b": no name\r\n"), Err(HeaderError::NotAField { line: 1 }));
        assert_eq!(split_fields(b"N\xc3\xa4me: x\r\n"), Err(HeaderError::NotAField { line: 1 }));
        let many = b"A: b\r\n".repeat(MAX_FIELDS + 1);
        assert_eq!(split_fields(&many), Err(HeaderError::TooManyFields));
        assert!(split_fields(&many[6..]).is_ok());
    }

    #[test]
    fn reader_table() {
        // (message, header, body)
        let t: &[(&[u8], &[u8], &[u8])] = &[
            (b"A: b\r\n\r\nbody\r\n", b"A: b\r\n", b"body\r\n"),
            (b"\r\nbody", b"", b"body"),
            (b"A: b\r\n", b"A: b\r\n", b""),
            (b"A: b\r\n\r\n", b"A: b\r\n", b""),
            (b"A: b\r\n\r\n\r\n", b"A: b\r\n", b"\r\n"),
            // A CR alone at the start of a line is no empty line.
            (b"A: b\r\n\rC: d\r\n\r\nx", b"A: b\r\n\rC: d\r\n", b"x"),
            (b"A: b\r\r\n\r\nx", b"A: b\r\r\n", b"x"),
            // An LF alone is no line end.
            (b"A: b\n\nx", b"A: b\n\nx", b""),
        ];
        for (m, h, b) in t {
            assert_eq!(split_message(m), Ok((*h, *b)), "{:?}", String::from_utf8_lossy(m));
            for cut in 0..=m.len() {
                let mut r = HeaderReader::new();
                let mut body = Vec::new();
                for part in [&m[..cut], &m[cut..]] {
                    if r.is_done() {
                        body.extend_from_slice(part);
                    } else if let Some(n) = r.push(part).unwrap() {
                        body.extend_from_slice(&part[n..]);
                    }
                }
                r.finish();
                assert_eq!((r.header(), &body[..]), (*h, *b), "cut {cut} of {:?}", String::from_utf8_lossy(m));
            }
        }
        let mut r = HeaderReader::new();
        assert_eq!(r.push(&vec![b'x'; MAX_HEADER_BYTES]), Ok(None));
        assert_eq!(r.push(b"y"), Err(HeaderError::TooLarge));
    }

    #[test]
    fn long_lines_and_eight_bit() {
        let line = |n: usize| {
            let mut v = b"X: ".to_vec();
            v.resize(n, b'a');
            v
        };
        let ok = [line(998), b"\r\n".to_vec()].concat();
        assert!(!has_long_line(&ok));
        assert!(!has_long_line(&[ok.clone(), ok.clone()].concat()));
        assert!(!has_long_line(&line(998)));
        assert!(has_long_line(&line(999)));
        assert!(has_long_line(&[line(999), b"\r\n".to_vec()].concat()));
        assert!(has_long_line(&[ok.clone(), line(999), b"\r\n".to_vec()].concat()));
        // 997 octets and a bare CR are 998; a CR after 998 octets is a 999th.
        assert!(!has_long_line(&[line(997), b"\r\r\n".to_vec()].concat()));
        assert!(has_long_line(&[line(998), b"\r\r\n".to_vec()].concat()));
        assert!(!has_eight_bit(b"Subject: plain\r\n"));
        assert!(has_eight_bit("Subject: café\r\n".as_bytes()));
    }

    fn from_of(block: &[u8]) -> Result<String, FromError> {
        from_domain(&split_fields(block).unwrap())
    }

    #[test]
    fn from_table() {
        let ok: &[(&str, &str)] = &[
            ("a@example.com", "example.com"),
            ("A@Example.COM.", "example.com"),
            ("John Doe <john@example.org>", "example.org"),
            ("\"Doe, John\" <john@example.org>", "example.org"),
            ("\"quoted local\"@example.org", "example.org"),
            ("john@example.org (John (the) Doe)", "example.org"),
            ("(c) John <john@ex-ample.org> (c)", "ex-ample.org"),
            ("=?utf-8?q?J=C3=B6rg?= <j@example.net>", "example.net"),
            ("Jörg <jörg@bücher.example>", "bücher.example"),
            ("a@example.com, b@EXAMPLE.com", "example.com"),
            ("Friends: a@x.example, B <b@x.example>;", "x.example"),
            ("Friends: a@x.example;, c@x.example", "x.example"),
            ("<@route.example,@r2.example:a@x.example>", "x.example"),
            (", a@x.example,,", "x.example"),
            ("a\r\n @x.example", "x.example"),
            ("first.last@sub.x.example", "sub.x.example"),
            ("\"a\\\"b\"@x.example", "x.example"),
        ];
        for (v, d) in ok {
            let block = format!("From: {v}\r\n");
            assert_eq!(from_of(block.as_bytes()), Ok(d.to_string()), "{v}");
        }
        let bad: &[(&str, FromError)] = &[
            ("", FromError::NoMailbox),
            ("Undisclosed:;", FromError::NoMailbox),
            ("John Doe", FromError::Syntax),
            ("john", FromError::Syntax),
            ("john@", FromError::Syntax),
            ("@example.com", FromError::Syntax),
            ("<john@example.com", FromError::Syntax),
            ("John <john@example.com> extra", FromError::Syntax),
            ("(unclosed comment a@b.c", FromError::Syntax),
            ("\"unclosed a@b.c", FromError::Syntax),
            ("a@b..c", FromError::Syntax),
            ("a@b_c!d", FromError::Syntax),
            ("a@[192.0.2.1]", FromError::DomainLiteral),
            ("a@x.example, b@y.example", FromError::MixedDomains),
            ("G: H: a@x.example;;", FromError::Syntax),
            ("a@x.example\x01", FromError::Syntax),
        ];
        for (v, e) in bad {
            let block = format!("From: {v}\r\n");
            assert_eq!(from_of(block.as_bytes()), Err(*e), "{v}");
        }
        assert_eq!(from_of(b"To: a@b.c\r\n"), Err(FromError::Missing));
        assert_eq!(from_of(b"From: a@b.c\r\nfrom: a@b.c\r\n"), Err(FromError::Several(2)));
        assert_eq!(from_of(b"Subject: x\r\nFROM : a@b.c\r\n"), Ok("b.c".into()));
    }

    proptest! {
        #[test]
        fn never_panics(block in proptest::collection::vec(prop::sample::select(b"\r\n \t:;<>@,\"()[]\\aZ.\x80-".to_vec()), 0..120)) {
            if let Ok(fields) = split_fields(&block) {
                let _ = from_domain(&fields);
                prop_assert_eq!(fields.iter().map(|f| f.raw.len()).sum::<usize>(), block.len());
            }
            let _ = address_domains(&block);
            let _ = has_long_line(&block);
        }
    }
}
