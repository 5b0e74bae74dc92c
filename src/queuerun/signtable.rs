//! queue-run's DKIM signing table (`DKIM_SIGN`, queue-run(8) DKIM SIGNING):
//! the parser of its lines, the lookup of an author domain, the
//! `DKIM_UNSIGNABLE` policy, and the `dkim` line of a state file that keeps
//! the signature fields made for a message. Pure: no I/O here (sign.rs reads
//! the table and the keys, and signs).
//!
//! ```text
//! # domain       selector  key file       options
//! example.com    ed2026    ed2026.pem
//! example.com    rsa2026   rsa2026.pem    c=relaxed/relaxed x=1209600
//! .example.com   ed2026    ed2026.pem     h=from:to:subject:date o=from:subject
//! ```
//! A leading `.` covers every name below the domain (not the domain itself),
//! as in qmail's rcpthosts; d= is then the domain without the dot, so that
//! DMARC's relaxed alignment holds. Several lines for one domain make several
//! signatures (an RSA and an Ed25519 key: two).

use std::fmt;

use crate::dkim::canon::Canon;
use crate::dkim::header;
use crate::xtext;

/// The largest table read.
pub const MAX_TABLE: usize = 1 << 20;
/// Most lines for one domain (and so signatures on one message).
pub const MAX_PER_DOMAIN: usize = 8;
/// Most names in `h=` or `o=`, and the longest name: they bound the size
/// of a signature's h= and so of the PREPEND attribute.
pub const MAX_NAMES: usize = 64;
pub const MAX_NAME: usize = 64;
/// The largest `x=`: ten years.
pub const MAX_EXPIRY: u64 = 10 * 366 * 86400;
/// The smallest `x=`: an hour (a signature must outlive its delivery).
pub const MIN_EXPIRY: u64 = 3600;

/// What to do with a message whose header gives no author domain to sign
/// for (no From, several, unparseable) or cannot be signed at all
/// (`DKIM_UNSIGNABLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsignable {
    /// Sign for the envelope sender's domain if the table lists it (the
    /// default); a header that cannot be signed at all goes unsigned.
    Envelope,
    /// Send it unsigned.
    Unsigned,
    /// Defer it (temporary failure, retried until the queue lifetime ends).
    Defer,
}

impl Unsignable {
    pub fn parse(s: &str) -> Option<Unsignable> {
        match s {
            "envelope" => Some(Unsignable::Envelope),
            "unsigned" => Some(Unsignable::Unsigned),
            "defer" => Some(Unsignable::Defer),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Unsignable::Envelope => "envelope",
            Unsignable::Unsigned => "unsigned",
            Unsignable::Defer => "defer",
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Line number, from 1.
    pub line: usize,
    /// d=: lowercase A-labels, at least two labels, no dot at either end.
    pub domain: String,
    /// Written with a leading dot: covers the names below `domain`.
    pub subdomains: bool,
    /// s=, lowercase.
    pub selector: String,
    /// The key file as written (relative: to the table's folder).
    pub keyfile: String,
    pub header_canon: Canon,
    pub body_canon: Canon,
    /// `x=`: seconds from t= to x=.
    pub expire: Option<u64>,
    /// `h=`: the field names to sign when present (None: RFC 6376 5.4.1's).
    pub headers: Option<Vec<String>>,
    /// `o=`: the names signed once more than they occur (None: From only).
    pub oversign: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableError {
    /// Line number, from 1 (0: the file as a whole).
    pub line: usize,
    pub what: String,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.what)
        } else {
            write!(f, "line {}: {}", self.line, self.what)
        }
    }
}

/// Parse a signing table: lines `domain selector keyfile [option...]`,
/// separated by white space; blank lines and lines starting with `#` are
/// skipped. Options: `c=header/body` (`simple` or `relaxed`; one name is
/// the header's, the body's is then simple, as in c= of RFC 6376 3.5;
/// default relaxed/relaxed), `x=seconds`, `h=name:name...` (must name From),
/// `o=name:name...` (empty: none). The first bad line is the error.
pub fn parse_table(text: &[u8]) -> Result<Vec<Entry>, TableError> {
    if text.len() > MAX_TABLE {
        return Err(TableError { line: 0, what: format!("larger than {MAX_TABLE} octets") });
    }
    let mut out: Vec<Entry> = Vec::new();
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let err = |what: String| TableError { line, what };
        let s = std::str::from_utf8(raw).map_err(|_| err("not UTF-8".into()))?;
        let s = s.trim();
        if s.is_empty() || s.starts_with('#') {
            continue;
        }
        let e = parse_line(line, s).map_err(err)?;
        let same: Vec<&Entry> = out.iter().filter(|o| o.domain == e.domain && o.subdomains == e.subdomains).collect();
        if same.len() >= MAX_PER_DOMAIN {
            return Err(err(format!("more than {MAX_PER_DOMAIN} lines for {}", e.written_domain())));
        }
        if same.iter().any(|o| o.selector == e.selector) {
            return Err(err(format!("selector {} of {} is on an earlier line", e.selector, e.written_domain())));
        }
        // One DNS name (s._domainkey.d) can publish one key.
        if let Some(o) = out.iter().find(|o| o.domain == e.domain && o.selector == e.selector && o.keyfile != e.keyfile) {
            return Err(err(format!(
                "selector {} of {} names key file {}, line {} names {}: one DNS record cannot publish both",
                e.selector, e.domain, e.keyfile, o.line, o.keyfile
            )));
        }
        out.push(e);
    }
    Ok(out)
}

impl Entry {
    /// The domain as the table writes it (with its dot for subdomains).
    pub fn written_domain(&self) -> String {
        if self.subdomains {
            format!(".{}", self.domain)
        } else {
            self.domain.clone()
        }
    }
}

fn parse_line(line: usize, s: &str) -> Result<Entry, String> {
    let mut words = s.split_whitespace();
    let (Some(dom), Some(sel), Some(keyfile)) = (words.next(), words.next(), words.next()) else {
        return Err("want: domain selector keyfile [options]".into());
    };
    let (subdomains, dom) = match dom.strip_prefix('.') {
        Some(d) => (true, d),
        None => (false, dom),
    };
    let domain = ascii_domain(dom)
        .filter(|d| d.contains('.'))
        .ok_or_else(|| format!("{dom}: not a domain name of two labels or more"))?;
    let selector = header::parse_domain(sel.as_bytes())
        .filter(|s| s.is_ascii() && !sel.ends_with('.'))
        .ok_or_else(|| format!("{sel}: not a selector (labels of letters, digits, - and _)"))?;
    let mut e = Entry {
        line,
        domain,
        subdomains,
        selector,
        keyfile: keyfile.to_owned(),
        header_canon: Canon::Relaxed,
        body_canon: Canon::Relaxed,
        expire: None,
        headers: None,
        oversign: None,
    };
    let mut seen: Vec<&str> = Vec::new();
    for opt in words {
        let (name, value) = opt.split_once('=').ok_or_else(|| format!("{opt}: an option is name=value"))?;
        if seen.contains(&name) {
            return Err(format!("option {name}= twice"));
        }
        seen.push(name);
        match name {
            "c" => {
                let (h, b) = value.split_once('/').unwrap_or((value, "simple"));
                let canon = |c: &str| Canon::parse(c.as_bytes()).ok_or_else(|| format!("c={value}: simple or relaxed, as header/body"));
                e.header_canon = canon(h)?;
                e.body_canon = canon(b)?;
            }
            "x" => {
                let x = value.parse::<u64>().ok().filter(|x| (MIN_EXPIRY..=MAX_EXPIRY).contains(x));
                e.expire = Some(x.ok_or_else(|| format!("x={value}: seconds from {MIN_EXPIRY} to {MAX_EXPIRY}"))?);
            }
            "h" => {
                let names = name_list(value)?;
                if !names.iter().any(|n| n == "from") {
                    return Err(format!("h={value}: the signed fields must include From (RFC 6376 5.4)"));
                }
                e.headers = Some(names);
            }
            "o" => e.oversign = Some(name_list(value)?),
            _ => return Err(format!("{name}=: unknown option (c, x, h, o)")),
        }
    }
    Ok(e)
}

/// `a:b:c` to lowercase field names (RFC 5322 3.6.8), at most MAX_NAMES of
/// at most MAX_NAME octets each; an empty value is an empty list.
fn name_list(v: &str) -> Result<Vec<String>, String> {
    if v.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = v.split(':').collect();
    if names.len() > MAX_NAMES {
        return Err(format!("more than {MAX_NAMES} field names"));
    }
    names
        .iter()
        .map(|n| {
            let ok = !n.is_empty() && n.len() <= MAX_NAME && n.bytes().all(|b| (33..=126).contains(&b) && b != b':' && b != b';');
            ok.then(|| n.to_ascii_lowercase()).ok_or_else(|| format!("{n:?}: not a header field name"))
        })
        .collect()
}

/// A domain in lowercase A-labels, without a final dot; `None` if it is not
/// a DNS name (a U-label domain is converted by IDNA, strict form).
pub fn ascii_domain(d: &str) -> Option<String> {
    let d = d.strip_suffix('.').unwrap_or(d);
    let d = if d.is_ascii() { d.to_ascii_lowercase() } else { idna::domain_to_ascii_strict(d).ok()? };
    header::parse_domain(d.as_bytes()).filter(|x| x.is_ascii() && !x.starts_with('.'))
}

/// The lines that sign for author domain `domain` (as `ascii_domain` gives
/// it): the domain's own lines if it has any, else those of its nearest
/// parent written with a dot. Indexes into `entries`, in table order.
pub fn lookup(entries: &[Entry], domain: &str) -> Vec<usize> {
    let pick = |sub: bool, d: &str| -> Vec<usize> {
        entries.iter().enumerate().filter(|(_, e)| e.subdomains == sub && e.domain == d).map(|(i, _)| i).collect()
    };
    let own = pick(false, domain);
    if !own.is_empty() {
        return own;
    }
    let mut rest = domain;
    while let Some((_, parent)) = rest.split_once('.') {
        let v = pick(true, parent);
        if !v.is_empty() {
            return v;
        }
        rest = parent;
    }
    Vec::new()
}

/// The envelope sender's domain as `ascii_domain` gives it; `None` for the
/// null sender, `#@[]` or an address literal.
pub fn envelope_domain(sender: &[u8]) -> Option<String> {
    let at = sender.iter().rposition(|&b| b == b'@')?;
    let d = std::str::from_utf8(sender.get(at + 1..)?).ok()?;
    ascii_domain(d)
}

/// The signature fields made for one message, as its state file keeps them
/// (`dkim <signed at> <expires> <xtext>`): made at `time`, good until
/// `expires` (0: no x=), `fields` the `DKIM-Signature:` fields in LF form
/// (empty: the message was looked at and is sent unsigned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub time: u64,
    pub expires: u64,
    pub fields: Vec<u8>,
}

impl Stored {
    /// The value of the state file's `dkim` line.
    pub fn encode(&self) -> String {
        format!("{} {} {}", self.time, self.expires, xtext::encode(&self.fields))
    }

    /// Parse a `dkim` line's value; `None` if malformed or if the fields are
    /// not whole header fields (`envelope::valid_prepend`).
    pub fn parse(v: &str) -> Option<Stored> {
        let mut w = v.splitn(3, ' ');
        let time = w.next()?.parse().ok()?;
        let expires = w.next()?.parse().ok()?;
        let x = w.next()?;
        if x.len() > 3 * crate::envelope::MAX_PREPEND {
            return None;
        }
        let fields = xtext::decode(x.as_bytes())?;
        crate::envelope::valid_prepend(&fields).then_some(Stored { time, expires, fields })
    }

    /// Usable for another run at `now`: no x=, or less than half of the time
    /// from t= to x= gone (then a fresh signature is made, so that none
    /// expires on its way).
    pub fn fresh(&self, now: u64) -> bool {
        self.expires == 0 || now < self.time + self.expires.saturating_sub(self.time) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<Entry, TableError> {
        parse_table(line.as_bytes()).map(|mut v| v.remove(0))
    }

    #[test]
    fn lines_and_options() {
        let e = one("example.com sel k.pem").unwrap();
        assert_eq!(
            e,
            Entry {
                line: 1,
                domain: "example.com".into(),
                subdomains: false,
                selector: "sel".into(),
                keyfile: "k.pem".into(),
                header_canon: Canon::Relaxed,
                body_canon: Canon::Relaxed,
                expire: None,
                headers: None,
                oversign: None
            }
        );
        let e = one("  .Example.COM.  Sel_2026 /etc/dkim/k.pem\tc=simple/relaxed x=86400 h=From:To:subject o=\t").unwrap();
        assert_eq!((e.domain.as_str(), e.subdomains, e.selector.as_str()), ("example.com", true, "sel_2026"));
        assert_eq!((e.header_canon, e.body_canon, e.expire), (Canon::Simple, Canon::Relaxed, Some(86400)));
        assert_eq!(e.headers, Some(vec!["from".into(), "to".into(), "subject".into()]));
        assert_eq!(e.oversign, Some(vec![]));
        // One canonicalization named: the header's; the body's is simple (RFC 6376 3.5).
        assert_eq!(one("a.example s k c=relaxed").map(|e| (e.header_canon, e.body_canon)), Ok((Canon::Relaxed, Canon::Simple)));
        assert_eq!(one("a.example s k o=from:subject").unwrap().oversign, Some(vec!["from".into(), "subject".into()]));
        // IDN: A-labels.
        assert_eq!(one("bücher.example s k").unwrap().domain, "xn--bcher-kva.example");
        // Comments, blank lines, line numbers.
        let t = parse_table(b"# table\n\n  # indented comment\nb.example s k\r\n\nc.example s k\n").unwrap();
        assert_eq!(t.iter().map(|e| e.line).collect::<Vec<_>>(), [4, 6]);
        assert_eq!(parse_table(b"").unwrap(), vec![]);
    }

    #[test]
    fn bad_lines() {
        let t: &[(&str, &str)] = &[
            ("example.com sel", "want: domain selector keyfile"),
            ("example.com", "want:"),
            ("localhost sel k", "localhost: not a domain name of two labels"),
            (".com sel k", "com: not a domain name"),
            ("a..b sel k", "not a domain name"),
            ("[192.0.2.1] sel k", "not a domain name"),
            ("a.example s;x k", "not a selector"),
            ("a.example sel. k", "not a selector"),
            ("a.example s k c=fancy", "c=fancy"),
            ("a.example s k c=relaxed/", "c=relaxed/"),
            ("a.example s k x=60", "x=60: seconds from 3600"),
            ("a.example s k x=soon", "x=soon"),
            ("a.example s k h=to:subject", "must include From"),
            ("a.example s k h=from:a;b", "not a header field name"),
            ("a.example s k h=from::to", "not a header field name"),
            ("a.example s k l=100", "l=: unknown option"),
            ("a.example s k c=simple c=simple", "option c= twice"),
            ("a.example s k nonsense", "nonsense: an option is name=value"),
        ];
        for (line, want) in t {
            let e = one(line).unwrap_err();
            assert_eq!(e.line, 1, "{line}");
            assert!(e.to_string().contains(want), "{line}: {e}");
            assert!(e.to_string().starts_with("line 1: "), "{e}");
        }
        let many = format!("a.example s k h=from{}", ":x".repeat(MAX_NAMES));
        assert!(one(&many).unwrap_err().what.contains("more than 64"));
        let long = format!("a.example s k h=from:{}", "x".repeat(MAX_NAME + 1));
        assert!(one(&long).is_err());
        // The error names the first bad line.
        assert_eq!(parse_table(b"a.example s k\n# ok\nbad\n").unwrap_err().line, 3);
        assert_eq!(parse_table(b"a.example s k\n\xff\n").unwrap_err().what, "not UTF-8");
        assert_eq!(parse_table(&vec![b'#'; MAX_TABLE + 1]).unwrap_err().line, 0);
        // Two lines for the same selector of a domain; two keys for one DNS name.
        let e = parse_table(b"a.example s k1\na.example s k1\n").unwrap_err();
        assert_eq!((e.line, e.what.as_str()), (2, "selector s of a.example is on an earlier line"));
        let e = parse_table(b"a.example s k1\n.a.example s k2\n").unwrap_err();
        assert!(e.what.contains("one DNS record cannot publish both"), "{e}");
        assert!(parse_table(b"a.example s k1\n.a.example s k1\n").is_ok());
        let lots: String = (0..=MAX_PER_DOMAIN).map(|i| format!("a.example s{i} k\n")).collect();
        assert_eq!(parse_table(lots.as_bytes()).unwrap_err().line, MAX_PER_DOMAIN + 1);
    }

    /// The example in conf-examples/dkim/ parses, and covers the subdomains.
    #[test]
    fn the_example_table() {
        let t = parse_table(include_bytes!("../../conf-examples/dkim/signing")).unwrap();
        let sel = |d: &str| lookup(&t, d).iter().map(|&i| (t[i].domain.as_str(), t[i].selector.as_str())).collect::<Vec<_>>();
        assert_eq!(sel("example.com"), [("example.com", "ed2026"), ("example.com", "rsa2026")]);
        assert_eq!(sel("mail.example.com"), [("example.com", "ed2026"), ("example.com", "rsa2026")]);
    }

    #[test]
    fn lookups() {
        let t = parse_table(
            b"example.com ed k1\nexample.com rsa k2\n.example.com sub k3\n.deep.example.com deep k4\nother.example o k5\n",
        )
        .unwrap();
        let sel = |d: &str| lookup(&t, d).iter().map(|&i| t[i].selector.clone()).collect::<Vec<_>>();
        assert_eq!(sel("example.com"), ["ed", "rsa"]);
        assert_eq!(sel("a.example.com"), ["sub"]);
        assert_eq!(sel("a.b.example.com"), ["sub"]);
        assert_eq!(sel("deep.example.com"), ["sub"]);
        assert_eq!(sel("x.deep.example.com"), ["deep"]);
        assert_eq!(sel("other.example"), ["o"]);
        assert!(sel("sub.other.example").is_empty());
        assert!(sel("notexample.com").is_empty());
        assert!(sel("com").is_empty());
        assert_eq!(ascii_domain("Bücher.Example."), Some("xn--bcher-kva.example".into()));
        assert_eq!(ascii_domain("a b"), None);
        assert_eq!(envelope_domain(b"user@Mail.Example.COM"), Some("mail.example.com".into()));
        assert_eq!(envelope_domain(b"\"a@b\"@c.example"), Some("c.example".into()));
        assert_eq!(envelope_domain(b""), None);
        assert_eq!(envelope_domain(b"#@[]"), None);
        assert_eq!(envelope_domain(b"a@[192.0.2.1]"), None);
        assert_eq!(Unsignable::parse("defer"), Some(Unsignable::Defer));
        assert_eq!(Unsignable::parse("Defer"), None);
        assert_eq!(Unsignable::Envelope.name(), "envelope");
    }

    #[test]
    fn stored_line() {
        let s = Stored { time: 1000, expires: 0, fields: b"DKIM-Signature: v=1; a=ed25519-sha256;\n\tb=AB+c/d=\n".to_vec() };
        let enc = s.encode();
        assert!(!enc.contains('\n') && enc.starts_with("1000 0 DKIM-Signature:+20v+3D1;"), "{enc}");
        assert_eq!(Stored::parse(&enc), Some(s.clone()));
        assert!(s.fresh(u64::MAX));
        let none = Stored { time: 5, expires: 0, fields: Vec::new() };
        assert_eq!(none.encode(), "5 0 ");
        assert_eq!(Stored::parse("5 0 "), Some(none));
        // x= half gone: sign again.
        let x = Stored { time: 1000, expires: 2000, ..s.clone() };
        assert!(x.fresh(1499) && !x.fresh(1500));
        for bad in ["", "1", "1 2", "x 0 ", "1 0 +ZZ", "1 0 no+20colon+0A", "1 0 A:+201+0A+0AB:+202+0A", "1 0 A:+201"] {
            assert_eq!(Stored::parse(bad), None, "{bad:?}");
        }
    }
}
