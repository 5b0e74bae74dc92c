//! SMTP reply parser (RFC 5321 4.2): lines in, one reply out. Pure and
//! bounded: an over-long line, a line without a valid code, a code that
//! changes between lines, or a reply with endless continuation lines is an
//! error, never unbounded memory. No I/O here.

use std::fmt;

/// The longest reply line accepted (RFC 5321 4.5.3.1.5 says 512 octets; real
/// servers write longer ones, so allow some slack).
pub const MAX_LINE: usize = 4096;
/// The most lines one reply may have (an EHLO reply has a few dozen at most).
pub const MAX_LINES: usize = 200;
/// The reply text kept for the report (qmail-remote keeps 5000 bytes).
pub const MAX_TEXT: usize = 5000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// 200..=599.
    pub code: u16,
    /// Each line without its CR LF, code included, as received.
    pub lines: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A line longer than `MAX_LINE`.
    LineTooLong,
    /// A line that does not start with three digits and a space or hyphen.
    NoCode,
    /// A continuation line with another code than the first.
    CodeChanged,
    /// More than `MAX_LINES` lines.
    TooManyLines,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::LineTooLong => "reply line too long",
            Error::NoCode => "reply without a valid code",
            Error::CodeChanged => "reply code changed between lines",
            Error::TooManyLines => "reply with too many lines",
        })
    }
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    pub fn is_temp(&self) -> bool {
        (400..500).contains(&self.code)
    }
    pub fn is_perm(&self) -> bool {
        self.code >= 500
    }

    /// The text after the code of each line (the EHLO keywords).
    pub fn texts(&self) -> impl Iterator<Item = &[u8]> {
        self.lines.iter().map(|l| l.get(4..).unwrap_or_default())
    }

    /// Lines joined by LF, each ending in LF, NUL turned into `?`, at most
    /// `MAX_TEXT` bytes: what qmail-remote prints after "Remote host said: ".
    pub fn report_text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for l in &self.lines {
            for &b in l.iter().chain(b"\n") {
                if out.len() >= MAX_TEXT {
                    return out;
                }
                out.push(if b == 0 { b'?' } else { b });
            }
        }
        out
    }

    /// A reply made up locally (for tests and for pseudo replies).
    pub fn new(code: u16, text: &str) -> Reply {
        Reply { code, lines: vec![format!("{code} {text}").into_bytes()] }
    }
}

/// Feed lines (without CR LF) one by one; `Ok(Some(reply))` after the last.
#[derive(Debug, Default)]
pub struct Parser {
    code: u16,
    lines: Vec<Vec<u8>>,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    pub fn push(&mut self, line: &[u8]) -> Result<Option<Reply>, Error> {
        if line.len() > MAX_LINE {
            return Err(Error::LineTooLong);
        }
        let (code, last) = parse_line(line)?;
        if self.lines.is_empty() {
            self.code = code;
        } else if code != self.code {
            return Err(Error::CodeChanged);
        }
        if self.lines.len() >= MAX_LINES {
            return Err(Error::TooManyLines);
        }
        self.lines.push(line.to_vec());
        if last {
            let lines = std::mem::take(&mut self.lines);
            return Ok(Some(Reply { code: self.code, lines }));
        }
        Ok(None)
    }
}

/// The code and whether this is the last line (`xyz ` or bare `xyz`).
pub fn parse_line(line: &[u8]) -> Result<(u16, bool), Error> {
    let (d, rest) = match line {
        [a, b, c, rest @ ..] => ([*a, *b, *c], rest),
        _ => return Err(Error::NoCode),
    };
    // RFC 5321 4.2: first digit 2..5, second 0..5, third 0..9.
    let ok = (b'2'..=b'5').contains(&d[0]) && (b'0'..=b'5').contains(&d[1]) && d[2].is_ascii_digit();
    if !ok {
        return Err(Error::NoCode);
    }
    let code = d.iter().fold(0u16, |n, &x| n * 10 + u16::from(x - b'0'));
    match rest.first() {
        None | Some(b' ') => Ok((code, true)),
        Some(b'-') => Ok((code, false)),
        Some(_) => Err(Error::NoCode),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&[u8]]) -> Result<Option<Reply>, Error> {
        let mut p = Parser::new();
        let mut last = None;
        for l in lines {
            last = p.push(l)?;
        }
        Ok(last)
    }

    type Case<'a> = (&'a [u8], Result<(u16, bool), Error>);

    #[test]
    fn line_table() {
        let t: &[Case] = &[
            (b"250 ok", Ok((250, true))),
            (b"250", Ok((250, true))),
            (b"250-PIPELINING", Ok((250, false))),
            (b"554 5.7.1 no", Ok((554, true))),
            (b"25", Err(Error::NoCode)),
            (b"", Err(Error::NoCode)),
            (b"abc ok", Err(Error::NoCode)),
            (b"650 x", Err(Error::NoCode)),
            (b"160 x", Err(Error::NoCode)),
            (b"2500 x", Err(Error::NoCode)),
            (b"250x", Err(Error::NoCode)),
            (b"hello world", Err(Error::NoCode)),
        ];
        for (l, want) in t {
            assert_eq!(&parse_line(l), want, "{:?}", String::from_utf8_lossy(l));
        }
    }

    #[test]
    fn replies() {
        let r = parse(&[b"250-a.example", b"250-SIZE 100", b"250 8BITMIME"]).unwrap().unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.texts().collect::<Vec<_>>(), vec![&b"a.example"[..], b"SIZE 100", b"8BITMIME"]);
        assert_eq!(r.report_text(), b"250-a.example\n250-SIZE 100\n250 8BITMIME\n");
        assert_eq!(parse(&[b"250-a", b"251 b"]), Err(Error::CodeChanged));
        assert_eq!(parse(&[b"250-a"]), Ok(None));
        let long = vec![b'x'; MAX_LINE + 1];
        assert_eq!(parse(&[&long]), Err(Error::LineTooLong));
        let many = vec![&b"250-x"[..]; MAX_LINES + 1];
        assert_eq!(parse(&many), Err(Error::TooManyLines));
        let r = parse(&[b"550 a\0b"]).unwrap().unwrap();
        assert_eq!(r.report_text(), b"550 a?b\n");
        assert!(r.is_perm() && !r.is_temp() && !r.is_positive());
    }

    #[test]
    fn report_text_is_bounded() {
        let line = [b"250-".to_vec(), vec![b'y'; 4000]].concat();
        let mut p = Parser::new();
        for _ in 0..10 {
            p.push(&line).unwrap();
        }
        let r = p.push(b"250 end").unwrap().unwrap();
        assert_eq!(r.report_text().len(), MAX_TEXT);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn never_panics_and_stays_bounded(lines in proptest::collection::vec("(250-|250 |451 |2x5|)[^\n]{0,40}", 0..250)) {
            let mut p = Parser::new();
            for l in &lines {
                match p.push(l.as_bytes()) {
                    Ok(Some(r)) => {
                        proptest::prop_assert!((200..600).contains(&r.code));
                        proptest::prop_assert!(r.lines.len() <= MAX_LINES);
                        proptest::prop_assert!(r.report_text().len() <= MAX_TEXT);
                    }
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        }
    }
}
