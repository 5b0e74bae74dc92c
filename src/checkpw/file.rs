//! The password file of smtpd-checkpassword (smtpd-checkpassword(8), FILE
//! FORMAT): one line per user, `user:hash` or `user:hash:{CRAM-MD5}hex`;
//! `#` comment lines and blank lines. Parsing is strict and names the line
//! of any fault (the checker then fails temporarily rather than guess);
//! comments and blank lines are kept as they are, so smtpd-passwd can
//! rewrite the file with one entry changed. Pure: no I/O here.

use std::fmt;

use super::cram::CramSecret;
use super::hash::{parse_hash, Hash, HashError};

/// Largest file read (about 7000 entries of argon2id and CRAM-MD5).
pub const MAX_FILE: usize = 1 << 20;
/// Longest line, without its LF.
pub const MAX_LINE: usize = 1024;
/// Longest user name (fd 3 carries at most 512 bytes in all).
pub const MAX_USER: usize = 255;

/// One user's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub user: Vec<u8>,
    pub hash: Hash,
    /// The third field: what CRAM-MD5 needs, when kept.
    pub cram: Option<CramSecret>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// A comment or a blank line, as it was (without its LF).
    Text(Vec<u8>),
    User(Entry),
}

/// The whole file, line by line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PasswdFile {
    lines: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    TooBig,
    /// Line number (from 1) and what is wrong with it.
    Line(usize, LineError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    TooLong,
    BadUser,
    NoHash,
    Hash(HashError),
    BadCram,
    TooManyFields,
    Duplicate(usize),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooBig => write!(f, "file larger than {MAX_FILE} bytes"),
            ParseError::Line(n, e) => write!(f, "line {n}: {e}"),
        }
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::TooLong => write!(f, "longer than {MAX_LINE} bytes"),
            LineError::BadUser => write!(
                f,
                "bad user name (1 to {MAX_USER} bytes, no colon, space or control character, not starting with #)"
            ),
            LineError::NoHash => f.write_str("no hash (want user:hash[:{CRAM-MD5}hex])"),
            LineError::Hash(e) => e.fmt(f),
            LineError::BadCram => f.write_str("third field is not {CRAM-MD5} and 64 hex digits"),
            LineError::TooManyFields => f.write_str("more than three fields"),
            LineError::Duplicate(first) => write!(f, "user already on line {first}"),
        }
    }
}

/// Whether `user` can be a name in the file: 1 to MAX_USER bytes, none a
/// colon (the separator), a space or a control character, not starting
/// with `#` (a comment). Bytes above 0x7f (UTF-8) are allowed.
pub fn valid_user(user: &[u8]) -> bool {
    !user.is_empty()
        && user.len() <= MAX_USER
        && user.first() != Some(&b'#')
        && user.iter().all(|&b| b > b' ' && b != b':' && b != 0x7f)
}

impl PasswdFile {
    /// Parse the whole text; the first fault ends it.
    pub fn parse(text: &[u8]) -> Result<PasswdFile, ParseError> {
        if text.len() > MAX_FILE {
            return Err(ParseError::TooBig);
        }
        let mut lines = Vec::new();
        let body = text.strip_suffix(b"\n").unwrap_or(text);
        if text.is_empty() {
            return Ok(PasswdFile { lines });
        }
        for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
            let n = i + 1;
            let line = parse_line(raw).map_err(|e| ParseError::Line(n, e))?;
            if let Line::User(e) = &line {
                if let Some((first, _)) = find_in(&lines, &e.user) {
                    return Err(ParseError::Line(n, LineError::Duplicate(first)));
                }
            }
            lines.push(line);
        }
        Ok(PasswdFile { lines })
    }

    /// `user`'s entry and its line number (from 1).
    pub fn find(&self, user: &[u8]) -> Option<(usize, &Entry)> {
        find_in(&self.lines, user)
    }

    /// The entries, in file order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.lines.iter().filter_map(|l| match l {
            Line::User(e) => Some(e),
            Line::Text(_) => None,
        })
    }

    /// Replace `entry.user`'s line in place, or add it at the end. True if
    /// it replaced one.
    pub fn set(&mut self, entry: Entry) -> bool {
        for l in self.lines.iter_mut() {
            if let Line::User(e) = l {
                if e.user == entry.user {
                    *e = entry;
                    return true;
                }
            }
        }
        self.lines.push(Line::User(entry));
        false
    }

    /// Remove `user`'s line. True if there was one.
    pub fn remove(&mut self, user: &[u8]) -> bool {
        let before = self.lines.len();
        self.lines.retain(|l| !matches!(l, Line::User(e) if e.user == user));
        self.lines.len() != before
    }

    /// The file's text: every line ends in LF.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for l in &self.lines {
            match l {
                Line::Text(t) => out.extend_from_slice(t),
                Line::User(e) => out.extend_from_slice(&encode_entry(e)),
            }
            out.push(b'\n');
        }
        out
    }
}

/// `user:hash[:{CRAM-MD5}hex]`, without LF.
pub fn encode_entry(e: &Entry) -> Vec<u8> {
    let mut v = e.user.clone();
    v.push(b':');
    v.extend_from_slice(e.hash.as_str().as_bytes());
    if let Some(c) = &e.cram {
        v.push(b':');
        v.extend_from_slice(c.encode().as_bytes());
    }
    v
}

fn find_in<'a>(lines: &'a [Line], user: &[u8]) -> Option<(usize, &'a Entry)> {
    lines.iter().enumerate().find_map(|(i, l)| match l {
        Line::User(e) if e.user == user => Some((i + 1, e)),
        _ => None,
    })
}

fn parse_line(raw: &[u8]) -> Result<Line, LineError> {
    if raw.len() > MAX_LINE {
        return Err(LineError::TooLong);
    }
    if raw.first() == Some(&b'#') || raw.iter().all(|&b| b == b' ' || b == b'\t') {
        return Ok(Line::Text(raw.to_vec()));
    }
    let mut fields = raw.split(|&b| b == b':');
    let user = fields.next().unwrap_or_default();
    if !valid_user(user) {
        return Err(LineError::BadUser);
    }
    let hash = fields.next().ok_or(LineError::NoHash)?;
    let hash = std::str::from_utf8(hash).map_err(|_| LineError::Hash(HashError::UnknownScheme(String::from_utf8_lossy(hash).into_owned())))?;
    let hash = parse_hash(hash).map_err(|e| if e == HashError::Empty { LineError::NoHash } else { LineError::Hash(e) })?;
    let cram = match fields.next() {
        None | Some(b"") => None,
        Some(c) => Some(std::str::from_utf8(c).ok().and_then(CramSecret::parse).ok_or(LineError::BadCram)?),
    };
    if fields.next().is_some() {
        return Err(LineError::TooManyFields);
    }
    Ok(Line::User(Entry { user: user.to_vec(), hash, cram }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARGON: &str = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$d5d5wrrtHcPPxIwJfINQ2uUINJB5BwkpxOiG8viqrmw";
    const SHA: &str =
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";
    const CRAM: &str = "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b";

    fn file(lines: &[&str]) -> Vec<u8> {
        lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes()
    }

    #[test]
    fn good_files() {
        let text = file(&[
            "# smtpd-checkpassword users",
            "",
            &format!("alice:{ARGON}"),
            &format!("tim@example.com:{SHA}:{CRAM}"),
            "   ",
            &format!("bob:{SHA}:"),
            "locked:!",
            &format!("\u{e9}mile:{ARGON}"),
        ]);
        let f = PasswdFile::parse(&text).unwrap();
        assert_eq!(f.entries().count(), 5);
        let (n, a) = f.find(b"alice").unwrap();
        assert_eq!((n, a.cram.is_none()), (3, true));
        let (n, t) = f.find(b"tim@example.com").unwrap();
        assert_eq!(n, 4);
        assert!(t.cram.is_some());
        assert!(f.find(b"bob").unwrap().1.cram.is_none());
        assert!(matches!(f.find(b"locked").unwrap().1.hash, Hash::Locked(_)));
        assert!(f.find("\u{e9}mile".as_bytes()).is_some());
        // Names are exact: no case folding, no prefix match.
        for absent in [&b"Alice"[..], b"alic", b"alice ", b"", b"#", b"tim"] {
            assert!(f.find(absent).is_none(), "{absent:?}");
        }
        // The same text back, but for the empty third field that had no use.
        let back = String::from_utf8(f.encode()).unwrap();
        assert_eq!(back, String::from_utf8(text.clone()).unwrap().replace(&format!("bob:{SHA}:"), &format!("bob:{SHA}")));
        assert_eq!(PasswdFile::parse(back.as_bytes()).unwrap(), f);
        // No final LF, or an empty file: fine.
        assert_eq!(PasswdFile::parse(format!("alice:{ARGON}").as_bytes()).unwrap().entries().count(), 1);
        assert_eq!(PasswdFile::parse(b"").unwrap().entries().count(), 0);
        assert_eq!(PasswdFile::parse(b"\n").unwrap().encode(), b"\n");
    }

    #[test]
    fn faults_name_their_line() {
        let cases: Vec<(Vec<u8>, ParseError)> = vec![
            (file(&["# x", "alice"]), ParseError::Line(2, LineError::NoHash)),
            (file(&["alice:"]), ParseError::Line(1, LineError::NoHash)),
            (file(&[&format!(":{ARGON}")]), ParseError::Line(1, LineError::BadUser)),
            (file(&[&format!("al ice:{ARGON}")]), ParseError::Line(1, LineError::BadUser)),
            (file(&[&format!(" alice:{ARGON}")]), ParseError::Line(1, LineError::BadUser)),
            (file(&[&format!("alice\r:{ARGON}")]), ParseError::Line(1, LineError::BadUser)),
            (file(&[&format!("{}:{ARGON}", "a".repeat(MAX_USER + 1))]), ParseError::Line(1, LineError::BadUser)),
            (file(&["alice:secret"]), ParseError::Line(1, LineError::Hash(HashError::UnknownScheme("secret".into())))),
            (file(&[&format!("alice:{ARGON}:{{PLAIN}}x")]), ParseError::Line(1, LineError::BadCram)),
            (file(&[&format!("alice:{SHA}:{CRAM}:extra")]), ParseError::Line(1, LineError::TooManyFields)),
            (file(&[&format!("alice:{ARGON}"), "", &format!("alice:{SHA}")]), ParseError::Line(3, LineError::Duplicate(1))),
            (file(&[&format!("alice:{ARGON}"), &format!("bob:{ARGON}{}", "x".repeat(MAX_LINE))]), ParseError::Line(2, LineError::TooLong)),
        ];
        for (text, want) in cases {
            assert_eq!(PasswdFile::parse(&text), Err(want.clone()), "{}", String::from_utf8_lossy(&text));
        }
        // CRLF line ends are a fault (the CR would end up in a hash).
        assert!(matches!(PasswdFile::parse(format!("alice:{ARGON}\r\n").as_bytes()), Err(ParseError::Line(1, LineError::Hash(_)))));
        assert!(matches!(PasswdFile::parse(&vec![b'#'; MAX_FILE + 1]), Err(ParseError::TooBig)));
        assert_eq!(ParseError::Line(3, LineError::Duplicate(1)).to_string(), "line 3: user already on line 1");
    }

    #[test]
    fn edits_keep_the_rest() {
        let text = file(&["# head", &format!("alice:{ARGON}"), "# between", &format!("bob:{SHA}"), "# tail"]);
        let mut f = PasswdFile::parse(&text).unwrap();
        let new_alice = Entry { user: b"alice".to_vec(), hash: parse_hash(SHA).unwrap(), cram: CramSecret::parse(CRAM) };
        assert!(f.set(new_alice.clone()));
        assert!(!f.set(Entry { user: b"carol".to_vec(), hash: parse_hash(ARGON).unwrap(), cram: None }));
        assert!(f.remove(b"bob"));
        assert!(!f.remove(b"bob"));
        let want = file(&["# head", &format!("alice:{SHA}:{CRAM}"), "# between", "# tail", &format!("carol:{ARGON}")]);
        assert_eq!(String::from_utf8(f.encode()).unwrap(), String::from_utf8(want).unwrap());
        assert_eq!(f.find(b"alice").map(|(_, e)| e), Some(&new_alice));
    }

    #[test]
    fn user_names() {
        for good in [&b"a"[..], b"alice@example.com", b"a#b", b"x".repeat(MAX_USER).as_slice(), "\u{e9}".as_bytes()] {
            assert!(valid_user(good), "{good:?}");
        }
        for bad in [&b""[..], b"#a", b"a b", b"a:b", b"a\0b", b"a\x7fb", b"a\tb", b"x".repeat(MAX_USER + 1).as_slice()] {
            assert!(!valid_user(bad), "{bad:?}");
        }
    }
}
