//! One SMTP command line (without its CRLF) -> `Command`, and the syntax checks
//! for paths, mailboxes, domains and ESMTP parameters (RFC 5321 4.1.2, RFC 6531).
//! Pure: no I/O and no policy here; the session decides what is allowed.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 5321 4.5.3.1.3: a path is at most 256 octets with its brackets.
pub const MAX_PATH: usize = 254;
/// RFC 5321 4.5.3.1.2: a domain name is at most 255 octets.
pub const MAX_DOMAIN: usize = 255;

/// A parsed command; slices borrow from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    Helo(&'a [u8]),
    Ehlo(&'a [u8]),
    /// `path` is the address inside `<>` with any source route removed
    /// (empty for the null sender); `params` the rest after `>`, trimmed.
    Mail { path: &'a [u8], params: &'a [u8] },
    Rcpt { path: &'a [u8], params: &'a [u8] },
    Data,
    Bdat { size: u64, last: bool },
    Rset,
    Noop,
    Vrfy(&'a [u8]),
    Quit,
    StartTls,
    Auth(&'a [u8]),
    Xclient(&'a [u8]),
    Xforward(&'a [u8]),
    /// HELP, EXPN, TURN, ETRN, SEND, SAML, SOML: known, deliberately not offered.
    Refused(&'static str),
    Unknown,
}

/// Why a line is not a valid command; each maps to one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Arguments where none are allowed, or missing where required (501).
    Args,
    /// MAIL FROM:/RCPT TO: not followed by a bracketed path (501 5.5.4).
    Path,
    /// The address inside the brackets is not a valid mailbox (553 5.1.x).
    Mailbox(AddrError),
    /// Bad ESMTP parameter syntax (555 5.5.4).
    Param,
    /// BDAT size is not a number (501 5.5.4).
    BdatSize,
}

/// Why an address or domain is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrError {
    /// Longer than `MAX_PATH`.
    TooLong,
    /// No `@domain` (and not `postmaster`).
    NoDomain,
    /// Bad local part syntax.
    Local,
    /// Bad domain or address literal syntax.
    Domain,
    /// Non-ASCII octets without SMTPUTF8 (RFC 6531 3.4).
    Utf8,
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddrError::TooLong => "address too long",
            AddrError::NoDomain => "address has no domain",
            AddrError::Local => "bad local part syntax",
            AddrError::Domain => "bad domain syntax",
            AddrError::Utf8 => "non-ASCII address without SMTPUTF8",
        })
    }
}

/// Parse one command line (CRLF already removed). The caller has already
/// refused NUL, bare CR and bare LF and over-long lines.
pub fn parse(line: &[u8]) -> Result<Command<'_>, ParseError> {
    let (verb, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &b""[..]),
    };
    let arg = trim(rest);
    let no_arg = |c: Command<'static>| if arg.is_empty() { Ok(c) } else { Err(ParseError::Args) };
    let v = |name: &str| verb.eq_ignore_ascii_case(name.as_bytes());
    if v("EHLO") || v("HELO") {
        if arg.is_empty() {
            return Err(ParseError::Args);
        }
        return Ok(if v("EHLO") { Command::Ehlo(arg) } else { Command::Helo(arg) });
    }
    if v("MAIL") {
        let (path, params) = parse_path_arg(rest, b"FROM:")?;
        return Ok(Command::Mail { path, params });
    }
    if v("RCPT") {
        let (path, params) = parse_path_arg(rest, b"TO:")?;
        return Ok(Command::Rcpt { path, params });
    }
    if v("DATA") {
        return no_arg(Command::Data);
    }
    if v("BDAT") {
        return parse_bdat(arg);
    }
    if v("RSET") {
        return no_arg(Command::Rset);
    }
    if v("NOOP") {
        return Ok(Command::Noop); // RFC 5321 4.1.1.9: the argument is ignored
    }
    if v("QUIT") {
        return no_arg(Command::Quit);
    }
    if v("VRFY") {
        if arg.is_empty() {
            return Err(ParseError::Args);
        }
        return Ok(Command::Vrfy(arg));
    }
    if v("STARTTLS") {
        return no_arg(Command::StartTls);
    }
    if v("AUTH") {
        return Ok(Command::Auth(arg));
    }
    if v("XCLIENT") {
        return Ok(Command::Xclient(arg));
    }
    if v("XFORWARD") {
        return Ok(Command::Xforward(arg));
    }
    for name in ["HELP", "EXPN", "TURN", "ETRN", "SEND", "SAML", "SOML"] {
        if v(name) {
            return Ok(Command::Refused(name));
        }
    }
    Ok(Command::Unknown)
}

/// `FROM:<path> params` / `TO:<path> params`. One optional space after the
/// colon is tolerated (many clients send it); the brackets are required.
fn parse_path_arg<'a>(rest: &'a [u8], kw: &[u8]) -> Result<(&'a [u8], &'a [u8]), ParseError> {
    if rest.len() < kw.len() || !rest[..kw.len()].eq_ignore_ascii_case(kw) {
        return Err(ParseError::Path);
    }
    let mut s = &rest[kw.len()..];
    if s.first() == Some(&b' ') {
        s = &s[1..];
    }
    if s.first() != Some(&b'<') {
        return Err(ParseError::Path);
    }
    let close = find_close(s).ok_or(ParseError::Path)?;
    let mut path = &s[1..close];
    let after = &s[close + 1..];
    if !after.is_empty() && after[0] != b' ' {
        return Err(ParseError::Path);
    }
    // RFC 5321 4.1.2 / C: an A-d-l source route "@a,@b:" is accepted and ignored.
    if path.first() == Some(&b'@') {
        let colon = path.iter().position(|&b| b == b':').ok_or(ParseError::Path)?;
        let route = &path[..colon];
        for hop in route.split(|&b| b == b',') {
            match hop.split_first() {
                Some((b'@', d)) if check_domain(d, false).is_ok() => {}
                _ => return Err(ParseError::Path),
            }
        }
        path = &path[colon + 1..];
    }
    let params = trim(after);
    for p in params_iter(params) {
        p?;
    }
    Ok((path, params))
}

/// The index of the `>` that closes the path starting at `s[0] == '<'`,
/// skipping quoted strings and quoted pairs.
fn find_close(s: &[u8]) -> Option<usize> {
    let mut quoted = false;
    let mut i = 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_bdat(arg: &[u8]) -> Result<Command<'_>, ParseError> {
    let mut it = arg.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let size = it.next().ok_or(ParseError::BdatSize)?;
    if size.is_empty() || size.len() > 19 || !size.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::BdatSize);
    }
    let size = size.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    let last = match it.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case(b"LAST") => true,
        Some(_) => return Err(ParseError::BdatSize),
    };
    if it.next().is_some() {
        return Err(ParseError::BdatSize);
    }
    Ok(Command::Bdat { size, last })
}

/// One ESMTP parameter: keyword and optional value (RFC 5321 4.1.2
/// esmtp-param; RFC 6531 3.3 lets values carry UTF-8).
pub type Param<'a> = (&'a [u8], Option<&'a [u8]>);

/// Iterate over `keyword[=value]` items separated by spaces; an item with
/// bad syntax yields `Err(ParseError::Param)`.
pub fn params_iter(params: &[u8]) -> impl Iterator<Item = Result<Param<'_>, ParseError>> {
    params.split(|&b| b == b' ').filter(|w| !w.is_empty()).map(|w| {
        let (k, v) = match w.iter().position(|&b| b == b'=') {
            Some(i) => (&w[..i], Some(&w[i + 1..])),
            None => (w, None),
        };
        let kw_ok = k.first().is_some_and(u8::is_ascii_alphanumeric)
            && k.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-');
        let v_ok = v.map_or(true, |v| {
            !v.is_empty() && v.iter().all(|&b| (33..=126).contains(&b) && b != b'=' || b >= 0x80)
        });
        if kw_ok && v_ok {
            Ok((k, v))
        } else {
            Err(ParseError::Param)
        }
    })
}

/// Check a mailbox (`local@domain`, RFC 5321 4.1.2; `utf8`: RFC 6531 allows
/// UTF-8 in both parts, domains then checked with IDNA's strict rules).
pub fn check_mailbox(addr: &[u8], utf8: bool) -> Result<(), AddrError> {
    if addr.len() > MAX_PATH {
        return Err(AddrError::TooLong);
    }
    if !utf8 && !addr.is_ascii() {
        return Err(AddrError::Utf8);
    }
    let at = last_at(addr).ok_or(AddrError::NoDomain)?;
    let (local, domain) = (&addr[..at], &addr[at + 1..]);
    check_local(local, utf8)?;
    if domain.first() == Some(&b'[') {
        return check_literal(domain);
    }
    check_domain(domain, utf8)
}

/// `postmaster` with no domain is a valid RCPT (RFC 5321 4.1.1.3).
pub fn is_postmaster(addr: &[u8]) -> bool {
    addr.eq_ignore_ascii_case(b"postmaster")
}

/// A HELO/EHLO argument: a domain or an address literal (RFC 5321 4.1.1.1).
pub fn check_helo(name: &[u8]) -> Result<(), AddrError> {
    if name.first() == Some(&b'[') {
        return check_literal(name);
    }
    check_domain(name, false)
}

/// Domain syntax: dot-separated LDH labels of 1 to 63 octets, no leading or
/// trailing hyphen, at most 255 octets; with `utf8`, a U-label domain that
/// `idna::domain_to_ascii_strict` accepts.
pub fn check_domain(d: &[u8], utf8: bool) -> Result<(), AddrError> {
    if d.is_empty() || d.len() > MAX_DOMAIN {
        return Err(AddrError::Domain);
    }
    if !d.is_ascii() {
        if !utf8 {
            return Err(AddrError::Utf8);
        }
        let s = std::str::from_utf8(d).map_err(|_| AddrError::Domain)?;
        let ascii = idna::domain_to_ascii_strict(s).map_err(|_| AddrError::Domain)?;
        return check_domain(ascii.as_bytes(), false);
    }
    for label in d.split(|&b| b == b'.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            && label.first() != Some(&b'-')
            && label.last() != Some(&b'-');
        if !ok {
            return Err(AddrError::Domain);
        }
    }
    Ok(())
}

/// `[1.2.3.4]` or `[IPv6:...]` (RFC 5321 4.1.3); general literals are refused.
pub fn check_literal(d: &[u8]) -> Result<(), AddrError> {
    let inner = d
        .strip_prefix(b"[")
        .and_then(|x| x.strip_suffix(b"]"))
        .ok_or(AddrError::Domain)?;
    let s = std::str::from_utf8(inner).map_err(|_| AddrError::Domain)?;
    if let Some(v6) = s.get(..5).filter(|p| p.eq_ignore_ascii_case("IPv6:")).and_then(|_| s.get(5..)) {
        return v6.parse::<Ipv6Addr>().map(|_| ()).map_err(|_| AddrError::Domain);
    }
    s.parse::<Ipv4Addr>().map(|_| ()).map_err(|_| AddrError::Domain)
}

/// The domain part of an address (after the last `@` outside quotes).
pub fn domain_of(addr: &[u8]) -> Option<&[u8]> {
    last_at(addr).map(|i| &addr[i + 1..])
}

fn last_at(addr: &[u8]) -> Option<usize> {
    let mut quoted = false;
    let mut esc = false;
    let mut at = None;
    for (i, &b) in addr.iter().enumerate() {
        if esc {
            esc = false;
            continue;
        }
        match b {
            b'\\' if quoted => esc = true,
            b'"' => quoted = !quoted,
            b'@' if !quoted => at = Some(i),
            _ => {}
        }
    }
    at
}

/// Dot-string of atext atoms, or a quoted string (RFC 5321 4.1.2).
fn check_local(l: &[u8], utf8: bool) -> Result<(), AddrError> {
    if l.is_empty() {
        return Err(AddrError::Local);
    }
    if l[0] == b'"' {
        if l.len() < 2 || l[l.len() - 1] != b'"' {
            return Err(AddrError::Local);
        }
        let mut esc = false;
        for &b in &l[1..l.len() - 1] {
            if esc {
                if !(32..=126).contains(&b) {
                    return Err(AddrError::Local);
                }
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if !((32..=126).contains(&b) && b != b'"' || (utf8 && b >= 0x80)) {
                return Err(AddrError::Local);
            }
        }
        return if esc { Err(AddrError::Local) } else { Ok(()) };
    }
    for atom in l.split(|&b| b == b'.') {
        if atom.is_empty() || !atom.iter().all(|&b| is_atext(b) || (utf8 && b >= 0x80)) {
            return Err(AddrError::Local);
        }
    }
    Ok(())
}

/// RFC 5322 3.2.3 atext.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(s.len());
    let end = s.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |i| i + 1);
    &s[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn verbs() {
        let t: &[(&[u8], Result<Command, ParseError>)] = &[
            (b"EHLO a.b", Ok(Command::Ehlo(b"a.b"))),
            (b"helo  a.b ", Ok(Command::Helo(b"a.b"))),
            (b"EHLO", Err(ParseError::Args)),
            (b"MAIL FROM:<a@b.c>", Ok(Command::Mail { path: b"a@b.c", params: b"" })),
            (b"mail from: <a@b.c> SIZE=10", Ok(Command::Mail { path: b"a@b.c", params: b"SIZE=10" })),
            (b"MAIL FROM:<>", Ok(Command::Mail { path: b"", params: b"" })),
            (b"MAIL FROM:a@b.c", Err(ParseError::Path)),
            (b"MAIL FROM:<a@b.c", Err(ParseError::Path)),
            (b"MAIL FROM:<a@b.c>x", Err(ParseError::Path)),
            (b"MAIL TO:<a@b.c>", Err(ParseError::Path)),
            (b"MAIL FROM:<a@b.c> =x", Err(ParseError::Param)),
            (b"MAIL FROM:<a@b.c> SIZE=", Err(ParseError::Param)),
            (b"RCPT TO:<@r1.x,@r2.y:u@d.e>", Ok(Command::Rcpt { path: b"u@d.e", params: b"" })),
            (b"RCPT TO:<@bad_:u@d.e>", Err(ParseError::Path)),
            (b"RCPT TO:<\"a>b\"@c.d>", Ok(Command::Rcpt { path: b"\"a>b\"@c.d", params: b"" })),
            (b"RCPT TO:<Postmaster>", Ok(Command::Rcpt { path: b"Postmaster", params: b"" })),
            (b"DATA", Ok(Command::Data)),
            (b"DATA x", Err(ParseError::Args)),
            (b"BDAT 10", Ok(Command::Bdat { size: 10, last: false })),
            (b"BDAT 0 LAST", Ok(Command::Bdat { size: 0, last: true })),
            (b"BDAT 0 last", Ok(Command::Bdat { size: 0, last: true })),
            (b"BDAT", Err(ParseError::BdatSize)),
            (b"BDAT -1", Err(ParseError::BdatSize)),
            (b"BDAT 99999999999999999999", Err(ParseError::BdatSize)),
            (b"BDAT 1 FIRST", Err(ParseError::BdatSize)),
            (b"BDAT 1 LAST x", Err(ParseError::BdatSize)),
            (b"RSET", Ok(Command::Rset)),
            (b"NOOP whatever", Ok(Command::Noop)),
            (b"QUIT", Ok(Command::Quit)),
            (b"VRFY x", Ok(Command::Vrfy(b"x"))),
            (b"VRFY", Err(ParseError::Args)),
            (b"STARTTLS", Ok(Command::StartTls)),
            (b"AUTH PLAIN", Ok(Command::Auth(b"PLAIN"))),
            (b"XCLIENT ADDR=1.2.3.4", Ok(Command::Xclient(b"ADDR=1.2.3.4"))),
            (b"XFORWARD NAME=x", Ok(Command::Xforward(b"NAME=x"))),
            (b"EXPN list", Ok(Command::Refused("EXPN"))),
            (b"help", Ok(Command::Refused("HELP"))),
            (b"ETRN x", Ok(Command::Refused("ETRN"))),
            (b"FOO", Ok(Command::Unknown)),
            (b"", Ok(Command::Unknown)),
        ];
        for (line, want) in t {
            assert_eq!(&parse(line), want, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn mailboxes() {
        let ok: &[(&[u8], bool)] = &[
            (b"a@b.c", false),
            (b"a.b+c@d-e.f", false),
            (b"\"a b\"@c.d", false),
            (b"\"a\\\"b\"@c.d", false),
            (b"a@[1.2.3.4]", false),
            (b"a@[IPv6:::1]", false),
            ("jöe@例え.jp".as_bytes(), true),
            ("a@bücher.de".as_bytes(), true),
        ];
        for (a, u) in ok {
            assert_eq!(check_mailbox(a, *u), Ok(()), "{}", String::from_utf8_lossy(a));
        }
        let bad: &[(&[u8], bool, AddrError)] = &[
            (b"ab.c", false, AddrError::NoDomain),
            (b"@b.c", false, AddrError::Local),
            (b"a..b@c.d", false, AddrError::Local),
            (b"a b@c.d", false, AddrError::Local),
            (b"a@b..c", false, AddrError::Domain),
            (b"a@-b.c", false, AddrError::Domain),
            (b"a@b_c.d", false, AddrError::Domain),
            (b"a@[1.2.3]", false, AddrError::Domain),
            (b"a@[x:y]", false, AddrError::Domain),
            ("jöe@x.jp".as_bytes(), false, AddrError::Utf8),
            ("a@ex\u{FF20}mple.com".as_bytes(), true, AddrError::Domain),
            (b"a@b.c\xff", true, AddrError::Domain),
            ("a@[abcd\u{e9}]".as_bytes(), true, AddrError::Domain),
            ("a@[IPv\u{e9}:1]".as_bytes(), true, AddrError::Domain),
        ];
        for (a, u, e) in bad {
            assert_eq!(check_mailbox(a, *u), Err(*e), "{}", String::from_utf8_lossy(a));
        }
        let long = [vec![b'a'; 250], b"@b.cd".to_vec()].concat();
        assert_eq!(check_mailbox(&long, false), Err(AddrError::TooLong));
        assert!(check_helo(b"mx.example.com").is_ok());
        assert!(check_helo(b"[127.0.0.1]").is_ok());
        assert!(check_helo(b"bad name").is_err());
        assert!(check_helo(b"a..b").is_err());
        assert_eq!(domain_of(b"\"x@y\"@z.w"), Some(&b"z.w"[..]));
    }

    #[test]
    fn params() {
        let p: Vec<_> = params_iter(b"SIZE=10  BODY=8BITMIME SMTPUTF8").collect();
        assert_eq!(
            p,
            vec![Ok((&b"SIZE"[..], Some(&b"10"[..]))), Ok((&b"BODY"[..], Some(&b"8BITMIME"[..]))), Ok((&b"SMTPUTF8"[..], None))]
        );
        assert_eq!(params_iter(b"-X=1").next(), Some(Err(ParseError::Param)));
        assert_eq!(params_iter(b"X=a=b").next(), Some(Err(ParseError::Param)));
    }

    proptest! {
        #[test]
        fn parse_never_panics(line in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&line);
            let _ = check_mailbox(&line, true);
            let _ = check_helo(&line);
        }

        #[test]
        fn utf8_literals_never_panic(inner in "\\PC{0,12}") {
            let _ = check_mailbox(format!("a@[{inner}]").as_bytes(), true);
            let _ = check_helo(format!("[{inner}]").as_bytes());
        }

        #[test]
        fn slices_stay_inside_the_line(addr in "[a-z.\"@<> :,]{0,40}", tail in "[A-Z=0-9 ]{0,20}") {
            let line = format!("MAIL FROM:<{addr}> {tail}");
            if let Ok(Command::Mail { path, params }) = parse(line.as_bytes()) {
                prop_assert!(path.len() <= line.len() && params.len() <= line.len());
            }
        }
    }
}
