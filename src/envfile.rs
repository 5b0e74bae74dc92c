//! KEY=VALUE environment files, read as systemd's `EnvironmentFile=` reads them
//! (systemd.exec(5)): blank lines and lines starting with `#` or `;` are ignored,
//! whitespace around the key and around an unquoted value is dropped, values may be
//! single-quoted (literal) or double-quoted (`\"`, `\\`, `\$`, `` \` `` and
//! backslash-newline escapes), and a backslash at the end of a line joins the next.
//! Pure: bytes in, pairs out; no I/O here.
//!
//! One difference, on purpose: systemd skips a line whose key is not a valid
//! variable name with a warning; here it is an error, so that a typo is seen when
//! the supervisor starts or reloads (and the old environment is kept).

use std::fmt;

/// One assignment: (name, value), as bytes.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Largest file accepted, so that a wrong path (a log, a device) cannot eat memory.
pub const MAX_FILE: usize = 1 << 20;

/// Why an environment file was refused; `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Bigger than [`MAX_FILE`].
    TooBig,
    /// A line with no `=`.
    NoEquals { line: usize },
    /// A key that is not `[A-Za-z_][A-Za-z0-9_]*`.
    BadKey { line: usize },
    /// A quote opened and never closed.
    Unterminated { line: usize },
    /// A NUL byte, which no environment can hold.
    Nul { line: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooBig => write!(f, "file larger than {MAX_FILE} bytes"),
            Error::NoEquals { line } => write!(f, "line {line}: no '=' in assignment"),
            Error::BadKey { line } => write!(f, "line {line}: invalid variable name"),
            Error::Unterminated { line } => write!(f, "line {line}: unterminated quote"),
            Error::Nul { line } => write!(f, "line {line}: NUL byte"),
        }
    }
}

impl std::error::Error for Error {}

/// Parse a whole file. Later assignments of the same key replace earlier ones
/// (the pair keeps the position of its first assignment).
pub fn parse_envfile(input: &[u8]) -> Result<Vec<Pair>, Error> {
    if input.len() > MAX_FILE {
        return Err(Error::TooBig);
    }
    let mut out: Vec<Pair> = Vec::new();
    let mut p = Parser { s: input, i: 0, line: 1 };
    while let Some((k, v)) = p.next_assignment()? {
        match out.iter_mut().find(|(ok, _)| *ok == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    Ok(out)
}

/// True for `[A-Za-z_][A-Za-z0-9_]*`, the names systemd accepts.
pub fn is_valid_name(k: &[u8]) -> bool {
    match k.split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        }
        None => false,
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    line: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        if c == b'\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r')) {
            self.i += 1;
        }
    }

    /// Skip a comment to its end. As systemd does, a backslash escapes the next
    /// byte, so a comment ending in a backslash swallows the following line too.
    fn skip_comment(&mut self) {
        while let Some(c) = self.bump() {
            match c {
                b'\\' => {
                    self.bump();
                }
                b'\n' => return,
                _ => {}
            }
        }
    }

    fn next_assignment(&mut self) -> Result<Option<Pair>, Error> {
        loop {
            // Leading whitespace and empty lines.
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
                self.bump();
            }
            match self.peek() {
                None => return Ok(None),
                Some(b'#' | b';') => self.skip_comment(),
                Some(_) => break,
            }
        }
        let line = self.line;
        // Key: up to '='; a newline first is an error.
        let mut key = Vec::new();
        loop {
            match self.bump() {
                None | Some(b'\n') => return Err(Error::NoEquals { line }),
                Some(b'=') => break,
                Some(0) => return Err(Error::Nul { line }),
                Some(c) => key.push(c),
            }
        }
        while matches!(key.last(), Some(b' ' | b'\t' | b'\r')) {
            key.pop();
        }
        if !is_valid_name(&key) {
            return Err(Error::BadKey { line });
        }
        self.skip_blanks();
        let value = self.value(line)?;
        Ok(Some((key, value)))
    }

    /// The value, to the end of its (possibly continued) line.
    fn value(&mut self, line: usize) -> Result<Vec<u8>, Error> {
        let mut v = Vec::new();
        // Bytes of `v` up to this length came from quotes or escapes and are
        // kept when trailing whitespace is trimmed.
        let mut keep = 0;
        loop {
            match self.bump() {
                None | Some(b'\n') => break,
                Some(0) => return Err(Error::Nul { line }),
                Some(b'\\') => match self.bump() {
                    None => break,
                    Some(b'\n') => {} // continuation
                    Some(0) => return Err(Error::Nul { line }),
                    Some(c) => {
                        v.push(c);
                        keep = v.len();
                    }
                },
                Some(b'\'') => {
                    loop {
                        match self.bump() {
                            None => return Err(Error::Unterminated { line }),
                            Some(b'\'') => break,
                            Some(0) => return Err(Error::Nul { line }),
                            Some(c) => v.push(c),
                        }
                    }
                    keep = v.len();
                }
                Some(b'"') => {
                    loop {
                        match self.bump() {
                            None => return Err(Error::Unterminated { line }),
                            Some(b'"') => break,
                            Some(0) => return Err(Error::Nul { line }),
                            Some(b'\\') => match self.bump() {
                                None => return Err(Error::Unterminated { line }),
                                Some(b'\n') => {}
                                Some(c @ (b'"' | b'\\' | b'$' | b'`')) => v.push(c),
                                Some(0) => return Err(Error::Nul { line }),
                                Some(c) => {
                                    v.push(b'\\');
                                    v.push(c);
                                }
                            },
                            Some(c) => v.push(c),
                        }
                    }
                    keep = v.len();
                }
                Some(c) => v.push(c),
            }
        }
        while v.len() > keep && matches!(v.last(), Some(b' ' | b'\t' | b'\r')) {
            v.pop();
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Vec<(String, String)> {
        parse_envfile(s.as_bytes())
            .unwrap()
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn table() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("\n\n  \n", &[]),
            ("A=1\n", &[("A", "1")]),
            ("A=1", &[("A", "1")]),
            ("  A = 1  \n", &[("A", "1")]),
            ("# c\n; c\nA=1\n", &[("A", "1")]),
            ("A=\n", &[("A", "")]),
            ("A='  x  '\n", &[("A", "  x  ")]),
            ("A=\"a \\\"b\\\" \\\\ \\$ \\n\"\n", &[("A", "a \"b\" \\ $ \\n")]),
            ("A=\"multi\nline\"\nB=2\n", &[("A", "multi\nline"), ("B", "2")]),
            ("A=one \\\ntwo\n", &[("A", "one two")]),
            ("A=a#b\n", &[("A", "a#b")]),
            ("A=1\nA=2\n", &[("A", "2")]),
            ("A=1\r\nB=2\r\n", &[("A", "1"), ("B", "2")]),
            ("# comment \\\nA=1\nB=2\n", &[("B", "2")]),
            ("QUEUE_DIR=/var/queue\nXCLIENT=\n", &[("QUEUE_DIR", "/var/queue"), ("XCLIENT", "")]),
        ];
        for (input, want) in cases {
            assert_eq!(ok(input), pairs(want), "input {input:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_envfile(&data);
        }

        #[test]
        fn simple_pairs_round_trip(k in "[A-Z_][A-Z0-9_]{0,10}", v in "[a-z0-9/.@-]{0,20}") {
            let got = parse_envfile(format!("{k}={v}\n").as_bytes()).unwrap();
            proptest::prop_assert_eq!(got, vec![(k.into_bytes(), v.into_bytes())]);
        }
    }

    #[test]
    fn errors() {
        assert_eq!(parse_envfile(b"A\n"), Err(Error::NoEquals { line: 1 }));
        assert_eq!(parse_envfile(b"\n\n1A=2\n"), Err(Error::BadKey { line: 3 }));
        assert_eq!(parse_envfile(b"A-B=2\n"), Err(Error::BadKey { line: 1 }));
        assert_eq!(parse_envfile(b"=2\n"), Err(Error::BadKey { line: 1 }));
        assert_eq!(parse_envfile(b"A='x\n"), Err(Error::Unterminated { line: 1 }));
        assert_eq!(parse_envfile(b"A=\"x\n"), Err(Error::Unterminated { line: 1 }));
        assert_eq!(parse_envfile(b"A=x\0y\n"), Err(Error::Nul { line: 1 }));
        assert_eq!(parse_envfile(&vec![b'#'; MAX_FILE + 1]), Err(Error::TooBig));
    }
}
