//! SPF (RFC 7208): record selection, the record parser, macro expansion and
//! check_host() with its limits, over a `dns::Lookup`. No I/O here but the
//! questions put to that trait; no Received-SPF header (the checker reports
//! in Authentication-Results, authres.rs) and no policy (the caller decides
//! what a fail means).

use crate::dns::{self, Lookup};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// RFC 7208 4.6.4: at most 10 terms that query DNS (include, a, mx, ptr,
/// exists, redirect) per check_host() evaluation, recursion included.
pub const MAX_DNS_TERMS: u32 = 10;
/// RFC 7208 4.6.4: at most 2 lookups that answer NXDOMAIN or nothing.
pub const MAX_VOID_LOOKUPS: u32 = 2;
/// RFC 7208 4.6.4: at most 10 MX names per mx mechanism (more: permerror)
/// and 10 PTR names per ptr mechanism or %{p} (the rest are ignored).
pub const MAX_NAMES: usize = 10;
/// RFC 7208 7.3 / RFC 1035: a domain name is at most 253 characters.
const MAX_DOMAIN: usize = 253;
/// A record longer than this is not parsed. DNS itself bounds a TXT answer
/// to 64 KiB, and parsing is linear, so this only states the bound (RFC
/// 7208 3.4 asks publishers to stay under 450 bytes).
const MAX_RECORD: usize = 65536;
/// Macro expansion cap: transformers may not make a value grow without end.
const MAX_EXPANSION: usize = 4096;

/// The seven results of RFC 7208 2.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpfResult {
    None,
    Neutral,
    Pass,
    Fail,
    SoftFail,
    TempError,
    PermError,
}

impl SpfResult {
    /// The result keyword of RFC 7208 2.6 and RFC 8601 2.7.2 (lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            SpfResult::None => "none",
            SpfResult::Neutral => "neutral",
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }
}

impl fmt::Display for SpfResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What check_host() concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub result: SpfResult,
    /// The domain whose policy was evaluated (the identity's domain).
    pub domain: String,
    /// For `Fail` only: the text of the exp= modifier (RFC 7208 6.2), when
    /// the record had one that could be fetched and expanded; otherwise the
    /// caller uses its own default explanation.
    pub explanation: Option<String>,
    /// A short, ASCII note of why (the mechanism that matched, or the error),
    /// for a log line or an Authentication-Results reason.
    pub reason: String,
}

/// The SMTP facts a check needs besides the identity.
#[derive(Debug, Clone)]
pub struct Client<'a> {
    /// The client's address; an IPv4-mapped IPv6 address counts as IPv4.
    pub ip: IpAddr,
    /// The HELO/EHLO argument (%{h}).
    pub helo: &'a str,
    /// Our own host name (%{r} in exp= text).
    pub receiver: &'a str,
    /// Seconds since the epoch (%{t} in exp= text).
    pub now: u64,
}

/// RFC 7208 2.4: the MAIL FROM identity. An empty reverse path is checked as
/// postmaster@<HELO name> (RFC 7208 2.4, 4.3).
pub fn check_mail_from(dns: &dyn Lookup, client: &Client<'_>, mail_from: &str) -> Outcome {
    if mail_from.is_empty() {
        return check_helo(dns, client);
    }
    let (local, domain) = match mail_from.rsplit_once('@') {
        Some((l, d)) => (l, d),
        None => ("", mail_from),
    };
    check_host(dns, client, domain, local)
}

/// RFC 7208 2.3: the HELO identity, sender postmaster@<HELO name>.
pub fn check_helo(dns: &dyn Lookup, client: &Client<'_>) -> Outcome {
    check_host(dns, client, client.helo, "postmaster")
}

/// RFC 7208 4: check_host(<ip>, <domain>, <sender>) with the sender
/// `local@domain`; an empty local part becomes "postmaster" (4.3).
pub fn check_host(dns: &dyn Lookup, client: &Client<'_>, domain: &str, local: &str) -> Outcome {
    let local = if local.is_empty() { "postmaster" } else { local };
    let domain_out = domain.trim_end_matches('.').to_string();
    // RFC 7208 4.3: a malformed or single-label domain gives "none".
    if !is_valid_identity_domain(domain) {
        return Outcome {
            result: SpfResult::None,
            domain: domain_out,
            explanation: None,
            reason: "not a valid domain name".into(),
        };
    }
    let mut e = Eval {
        dns,
        ip: canonical_ip(client.ip),
        sender: format!("{local}@{domain}"),
        local: local.to_string(),
        sender_domain: domain.to_string(),
        helo: client.helo.to_string(),
        receiver: client.receiver.to_string(),
        now: client.now,
        dns_terms: 0,
        voids: 0,
    };
    let r = e.check(domain, false);
    Outcome { result: r.result, domain: domain_out, explanation: r.explanation, reason: r.reason }
}

// ---------------------------------------------------------------------------
// The record.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

impl Qualifier {
    fn result(self) -> SpfResult {
        match self {
            Qualifier::Pass => SpfResult::Pass,
            Qualifier::Fail => SpfResult::Fail,
            Qualifier::SoftFail => SpfResult::SoftFail,
            Qualifier::Neutral => SpfResult::Neutral,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    All,
    Include(MacroString),
    /// Target (None: the current domain), IPv4 and IPv6 prefix lengths.
    A(Option<MacroString>, u8, u8),
    Mx(Option<MacroString>, u8, u8),
    Ptr(Option<MacroString>),
    Ip4(Ipv4Addr, u8),
    Ip6(Ipv6Addr, u8),
    Exists(MacroString),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub qualifier: Qualifier,
    pub mechanism: Mechanism,
}

/// A parsed SPF record: its directives in order and the two modifiers the
/// RFC defines (unknown modifiers are checked for syntax and dropped, 6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub directives: Vec<Directive>,
    pub redirect: Option<MacroString>,
    pub exp: Option<MacroString>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    NotSpf,
    TooLong,
    NotAscii,
    /// A term that is neither a known mechanism nor a modifier.
    UnknownMechanism(String),
    BadTerm(String),
    BadCidr(String),
    BadAddress(String),
    BadDomainSpec(String),
    BadMacro(String),
    DuplicateModifier(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotSpf => f.write_str("not an SPF record"),
            ParseError::TooLong => f.write_str("record too long"),
            ParseError::NotAscii => f.write_str("record not 7-bit ASCII"),
            ParseError::UnknownMechanism(t) => write!(f, "unknown mechanism {t:?}"),
            ParseError::BadTerm(t) => write!(f, "bad term {t:?}"),
            ParseError::BadCidr(t) => write!(f, "bad CIDR length in {t:?}"),
            ParseError::BadAddress(t) => write!(f, "bad address in {t:?}"),
            ParseError::BadDomainSpec(t) => write!(f, "bad domain-spec {t:?}"),
            ParseError::BadMacro(t) => write!(f, "bad macro in {t:?}"),
            ParseError::DuplicateModifier(m) => write!(f, "{m}= given twice"),
        }
    }
}

/// RFC 7208 4.5: is this TXT record an SPF record? "v=spf1" (ABNF strings
/// are case-insensitive) followed by a space or the end.
pub fn is_spf_record(txt: &[u8]) -> bool {
    txt.len() >= 6
        && txt.get(..6).is_some_and(|v| v.eq_ignore_ascii_case(b"v=spf1"))
        && matches!(txt.get(6), None | Some(b' '))
}

/// Parses a whole SPF record (RFC 7208 4.6, 12 ABNF). Any syntax error
/// anywhere is an error (4.6: permerror before anything is evaluated).
pub fn parse_record(txt: &[u8]) -> Result<Record, ParseError> {
    if txt.len() > MAX_RECORD {
        return Err(ParseError::TooLong);
    }
    if !is_spf_record(txt) {
        return Err(ParseError::NotSpf);
    }
    // RFC 7208 3.1: records are 7-bit ASCII.
    if !txt.is_ascii() {
        return Err(ParseError::NotAscii);
    }
    let text = std::str::from_utf8(txt).map_err(|_| ParseError::NotAscii)?;
    let mut rec = Record::default();
    // 4.6.1: terms are separated by one or more SP, and only by SP.
    for term in text.get(6..).unwrap_or("").split(' ').filter(|t| !t.is_empty()) {
        if let Some((name, value)) = split_modifier(term) {
            let value_ms = || parse_macro_string(value, false).map_err(|_| ParseError::BadMacro(term.into()));
            if name.eq_ignore_ascii_case("redirect") {
                if rec.redirect.is_some() {
                    return Err(ParseError::DuplicateModifier("redirect"));
                }
                rec.redirect = Some(parse_domain_spec(value, term)?);
            } else if name.eq_ignore_ascii_case("exp") {
                if rec.exp.is_some() {
                    return Err(ParseError::DuplicateModifier("exp"));
                }
                rec.exp = Some(parse_domain_spec(value, term)?);
            } else {
                // RFC 7208 6: unknown modifiers are ignored, but their
                // values must still be valid macro strings (12).
                value_ms()?;
            }
            continue;
        }
        rec.directives.push(parse_directive(term)?);
    }
    Ok(rec)
}

/// `name "=" value` where name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ).
fn split_modifier(term: &str) -> Option<(&str, &str)> {
    let (name, value) = term.split_once('=')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic() || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return None;
    }
    Some((name, value))
}

fn parse_directive(term: &str) -> Result<Directive, ParseError> {
    let (qualifier, rest) = match term.as_bytes().first() {
        Some(b'+') => (Qualifier::Pass, term.get(1..).unwrap_or("")),
        Some(b'-') => (Qualifier::Fail, term.get(1..).unwrap_or("")),
        Some(b'~') => (Qualifier::SoftFail, term.get(1..).unwrap_or("")),
        Some(b'?') => (Qualifier::Neutral, term.get(1..).unwrap_or("")),
        _ => (Qualifier::Pass, term),
    };
    let cut = rest.find([':', '/']).unwrap_or(rest.len());
    let (name, arg) = rest.split_at(cut);
    let unknown = || ParseError::UnknownMechanism(term.to_string());
    let mechanism = match name.to_ascii_lowercase().as_str() {
        "all" if arg.is_empty() => Mechanism::All,
        "include" => Mechanism::Include(parse_domain_spec(colon_arg(arg, term)?, term)?),
        "exists" => Mechanism::Exists(parse_domain_spec(colon_arg(arg, term)?, term)?),
        "ptr" => match arg {
            "" => Mechanism::Ptr(None),
            _ => Mechanism::Ptr(Some(parse_domain_spec(colon_arg(arg, term)?, term)?)),
        },
        "a" | "mx" => {
            let (spec, v4, v6) = split_dual_cidr(arg, term)?;
            let target = match spec {
                "" => None,
                s => Some(parse_domain_spec(colon_arg(s, term)?, term)?),
            };
            if name.eq_ignore_ascii_case("a") {
                Mechanism::A(target, v4, v6)
            } else {
                Mechanism::Mx(target, v4, v6)
            }
        }
        "ip4" => {
            let arg = colon_arg(arg, term)?;
            let (addr, len) = match arg.split_once('/') {
                Some((a, l)) => (a, cidr_len(l, 32, term)?),
                None => (arg, 32),
            };
            let ip = addr.parse::<Ipv4Addr>().map_err(|_| ParseError::BadAddress(term.into()))?;
            Mechanism::Ip4(ip, len)
        }
        "ip6" => {
            let arg = colon_arg(arg, term)?;
            let (addr, len) = match arg.split_once('/') {
                Some((a, l)) => (a, cidr_len(l, 128, term)?),
                None => (arg, 128),
            };
            let ip = addr.parse::<Ipv6Addr>().map_err(|_| ParseError::BadAddress(term.into()))?;
            Mechanism::Ip6(ip, len)
        }
        _ => return Err(unknown()),
    };
    Ok(Directive { qualifier, mechanism })
}

/// The part after the ':' of `mech:arg`; the ':' and a value are required.
fn colon_arg<'a>(arg: &'a str, term: &str) -> Result<&'a str, ParseError> {
    match arg.strip_prefix(':') {
        Some(a) if !a.is_empty() => Ok(a),
        _ => Err(ParseError::BadTerm(term.to_string())),
    }
}

/// Splits `[:domain-spec][/n][//m]` of a and mx (RFC 7208 5.6 dual-cidr).
fn split_dual_cidr<'a>(arg: &'a str, term: &str) -> Result<(&'a str, u8, u8), ParseError> {
    let mut rest = arg;
    let mut v6 = 128;
    if let Some(i) = rest.rfind("//") {
        let digits = rest.get(i + 2..).unwrap_or("");
        v6 = cidr_len(digits, 128, term)?;
        rest = rest.get(..i).unwrap_or("");
    }
    let mut v4 = 32;
    if let Some(i) = rest.rfind('/') {
        let digits = rest.get(i + 1..).unwrap_or("");
        // A slash inside a macro-string domain-spec is legal (macro-literal):
        // only a trailing /digits is a prefix length.
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) || rest.get(..i).is_some_and(|s| s.is_empty()) {
            v4 = cidr_len(digits, 32, term)?;
            rest = rest.get(..i).unwrap_or("");
        }
    }
    Ok((rest, v4, v6))
}

/// A prefix length: "0" or 1-3 digits without a leading zero, at most `max`.
fn cidr_len(s: &str, max: u8, term: &str) -> Result<u8, ParseError> {
    let bad = || ParseError::BadCidr(term.to_string());
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return Err(bad());
    }
    let n: u8 = s.parse().map_err(|_| bad())?;
    if n > max {
        return Err(bad());
    }
    Ok(n)
}

/// domain-spec = macro-string domain-end; domain-end = ( "." toplabel ["."] )
/// / macro-expand (RFC 7208 7.1).
fn parse_domain_spec(s: &str, term: &str) -> Result<MacroString, ParseError> {
    let ms = parse_macro_string(s, false).map_err(|_| ParseError::BadMacro(term.to_string()))?;
    let ok = match ms.0.last() {
        None => false,
        Some(Piece::Macro { .. }) | Some(Piece::Escape(_)) => true,
        Some(Piece::Lit(_)) => {
            // The literal tail (after the last expansion).
            let tail = s.rsplit('}').next().unwrap_or(s);
            let tail = tail.strip_suffix('.').unwrap_or(tail);
            match tail.rsplit_once('.') {
                Some((_, top)) => is_toplabel(top),
                None => false,
            }
        }
    };
    if ok {
        Ok(ms)
    } else {
        Err(ParseError::BadDomainSpec(term.to_string()))
    }
}

/// toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum /
/// "-" ) alphanum ): not all digits, no leading or trailing hyphen.
fn is_toplabel(s: &str) -> bool {
    let b = s.as_bytes();
    let (Some(first), Some(last)) = (b.first(), b.last()) else { return false };
    b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && (b.iter().any(u8::is_ascii_alphabetic) || b.contains(&b'-'))
}

// ---------------------------------------------------------------------------
// Macros (RFC 7208 7).

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    /// %% %_ %- (counted as macro-expand by the domain-end rule).
    Escape(&'static str),
    Macro { letter: u8, upper: bool, digits: Option<usize>, reverse: bool, delims: Vec<u8> },
}

/// A parsed macro-string (RFC 7208 7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroString(Vec<Piece>);

impl MacroString {
    fn uses(&self, letter: u8) -> bool {
        self.0.iter().any(|p| matches!(p, Piece::Macro { letter: l, .. } if *l == letter))
    }
}

/// Parses a macro-string; `exp` allows what explain-string allows on top
/// (SP, and the c, r and t letters: RFC 7208 7.1, 7.2).
pub fn parse_macro_string(s: &str, exp: bool) -> Result<MacroString, ParseError> {
    let bad = || ParseError::BadMacro(s.to_string());
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c != b'%' {
            let ok = matches!(c, 0x21..=0x24 | 0x26..=0x7e) || (exp && c == b' ');
            if !ok {
                return Err(bad());
            }
            lit.push(char::from(c));
            i += 1;
            continue;
        }
        let esc = match b.get(i + 1) {
            Some(b'%') => Some("%"),
            Some(b'_') => Some(" "),
            Some(b'-') => Some("%20"),
            Some(b'{') => None,
            _ => return Err(bad()),
        };
        if !lit.is_empty() {
            out.push(Piece::Lit(std::mem::take(&mut lit)));
        }
        if let Some(e) = esc {
            out.push(Piece::Escape(e));
            i += 2;
            continue;
        }
        // "%{" macro-letter transformers *delimiter "}"
        let mut j = i + 2;
        let l = *b.get(j).ok_or_else(bad)?;
        let letter = l.to_ascii_lowercase();
        let allowed: &[u8] = if exp { b"slodiphcrtv" } else { b"slodiphv" };
        if !allowed.contains(&letter) {
            return Err(bad());
        }
        j += 1;
        let start = j;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        let digits = match s.get(start..j).unwrap_or("") {
            "" => None,
            d => {
                // RFC 7208 7.3: at least one; a huge count means "all".
                let n = d.trim_start_matches('0');
                if n.is_empty() {
                    return Err(bad());
                }
                Some(n.parse::<usize>().unwrap_or(usize::MAX))
            }
        };
        let reverse = matches!(b.get(j), Some(b'r' | b'R'));
        if reverse {
            j += 1;
        }
        let mut delims = Vec::new();
        while let Some(&d) = b.get(j) {
            if !b".-+,/_=".contains(&d) {
                break;
            }
            delims.push(d);
            j += 1;
        }
        if b.get(j) != Some(&b'}') {
            return Err(bad());
        }
        out.push(Piece::Macro { letter, upper: l.is_ascii_uppercase(), digits, reverse, delims });
        i = j + 1;
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    Ok(MacroString(out))
}

/// The values the macro letters stand for (RFC 7208 7.2).
#[derive(Debug, Clone, Default)]
pub struct MacroVars {
    pub sender: String,
    pub local: String,
    pub sender_domain: String,
    pub domain: String,
    pub ip: Option<IpAddr>,
    /// %{p}: the validated name, "unknown" when there is none.
    pub ptr: String,
    pub helo: String,
    pub receiver: String,
    pub now: u64,
}

/// Expands a macro-string (RFC 7208 7.3, 7.4); the result is at most
/// MAX_EXPANSION bytes (longer: cut, which the caller's checks then catch).
pub fn expand(ms: &MacroString, v: &MacroVars) -> String {
    let mut out = String::new();
    for p in &ms.0 {
        match p {
            Piece::Lit(s) => out.push_str(s),
            Piece::Escape(e) => out.push_str(e),
            Piece::Macro { letter, upper, digits, reverse, delims } => {
                let value = letter_value(*letter, v);
                let delims: &[u8] = if delims.is_empty() { b"." } else { delims };
                let mut parts: Vec<&str> = value.split(|c: char| c.is_ascii() && delims.contains(&(c as u8))).collect();
                if *reverse {
                    parts.reverse();
                }
                if let Some(n) = digits {
                    let skip = parts.len().saturating_sub(*n);
                    parts.drain(..skip);
                }
                let joined = parts.join(".");
                if *upper {
                    url_escape(&joined, &mut out);
                } else {
                    out.push_str(&joined);
                }
            }
        }
        if out.len() > MAX_EXPANSION {
            let mut cut = MAX_EXPANSION;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            break;
        }
    }
    out
}

fn letter_value(letter: u8, v: &MacroVars) -> String {
    match letter {
        b's' => v.sender.clone(),
        b'l' => v.local.clone(),
        b'o' => v.sender_domain.clone(),
        b'd' => v.domain.clone(),
        b'i' => match v.ip {
            Some(IpAddr::V4(a)) => a.to_string(),
            // 7.3: IPv6 as dot-separated nibbles. Upper-case hex, as the
            // RFC 7208 test suite expects in exp= text (7.1/6); DNS names
            // are case-insensitive, so queries are the same either way.
            Some(IpAddr::V6(a)) => nibbles(&a).join(".").to_ascii_uppercase(),
            None => String::new(),
        },
        b'p' => v.ptr.clone(),
        b'v' => match v.ip {
            Some(IpAddr::V6(_)) => "ip6".into(),
            _ => "in-addr".into(),
        },
        b'h' => v.helo.clone(),
        b'c' => v.ip.map(|a| a.to_string()).unwrap_or_default(),
        b'r' => {
            if v.receiver.is_empty() {
                "unknown".into()
            } else {
                v.receiver.clone()
            }
        }
        b't' => v.now.to_string(),
        _ => String::new(),
    }
}

fn nibbles(a: &Ipv6Addr) -> Vec<String> {
    a.octets().iter().flat_map(|o| [format!("{:x}", o >> 4), format!("{:x}", o & 15)]).collect()
}

/// RFC 7208 7.3: upper-case letters URL-escape (RFC 3986) all but unreserved.
fn url_escape(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The reverse-lookup name of an address (in-addr.arpa / ip6.arpa).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut n = nibbles(&a);
            n.reverse();
            format!("{}.ip6.arpa", n.join("."))
        }
    }
}

/// RFC 7208 7.3: a domain name longer than 253 characters loses labels on
/// the left until it fits.
fn truncate_domain(mut s: &str) -> &str {
    while s.len() > MAX_DOMAIN {
        match s.split_once('.') {
            Some((_, rest)) => s = rest,
            None => return "",
        }
    }
    s
}

/// RFC 7208 4.3: a usable identity domain: ASCII, two labels or more, none
/// empty or over 63, at most 253 in all; no domain literal.
fn is_valid_identity_domain(d: &str) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d);
    if d.is_empty() || d.len() > MAX_DOMAIN || !d.is_ascii() || d.starts_with('[') {
        return false;
    }
    let mut n = 0;
    for label in d.split('.') {
        if label.is_empty() || label.len() > 63 || label.bytes().any(|b| b <= b' ' || b == b'\\' || b == 0x7f) {
            return false;
        }
        n += 1;
    }
    n >= 2
}

/// An expanded target name fit to ask DNS about: no empty label but a
/// trailing one, labels of 63 at most, printable ASCII (a space is a legal
/// label byte, and %_ makes one: 7.3). None when it is not.
fn target_name(s: &str) -> Option<&str> {
    let s = truncate_domain(s);
    let d = s.strip_suffix('.').unwrap_or(s);
    if d.is_empty() || d.split('.').any(|l| l.is_empty() || l.len() > 63) || d.bytes().any(|b| !(b' '..0x7f).contains(&b) || b == b'\\') {
        return None;
    }
    Some(d)
}

// ---------------------------------------------------------------------------
// Evaluation (RFC 7208 4.6, 5, 6).

/// A result inside the evaluation, with its explanation and reason.
struct Step {
    result: SpfResult,
    explanation: Option<String>,
    reason: String,
}

fn step(result: SpfResult, reason: impl Into<String>) -> Step {
    Step { result, explanation: None, reason: reason.into() }
}

/// An early end of a mechanism's evaluation: the whole check ends with it.
type Abort = Step;

struct Eval<'a> {
    dns: &'a dyn Lookup,
    ip: IpAddr,
    sender: String,
    local: String,
    sender_domain: String,
    helo: String,
    receiver: String,
    now: u64,
    dns_terms: u32,
    voids: u32,
}

impl Eval<'_> {
    /// check_host() for `domain`; `in_include` suppresses exp= (6.2).
    fn check(&mut self, domain: &str, in_include: bool) -> Step {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        let txts = match self.dns.txt(domain) {
            Ok(t) => t,
            Err(dns::Error::NoName) => return step(SpfResult::None, format!("no SPF record at {domain}")),
            Err(dns::Error::Temp(e)) => return step(SpfResult::TempError, format!("SPF record of {domain}: {e}")),
        };
        // 4.5: exactly one record starting "v=spf1".
        let mut spf = txts.iter().filter(|t| is_spf_record(t));
        let rec = match (spf.next(), spf.next()) {
            (None, _) => return step(SpfResult::None, format!("no SPF record at {domain}")),
            (Some(_), Some(_)) => return step(SpfResult::PermError, format!("more than one SPF record at {domain}")),
            (Some(r), None) => r,
        };
        let rec = match parse_record(rec) {
            Ok(r) => r,
            Err(e) => return step(SpfResult::PermError, format!("SPF record of {domain}: {e}")),
        };
        for d in &rec.directives {
            match self.matches(&d.mechanism, domain) {
                Err(abort) => return abort,
                Ok(false) => {}
                Ok(true) => {
                    let result = d.qualifier.result();
                    let mut s = step(result, format!("{domain}: {} matched", describe(d)));
                    if result == SpfResult::Fail && !in_include {
                        s.explanation = rec.exp.as_ref().and_then(|e| self.explain(e, domain));
                    }
                    return s;
                }
            }
        }
        // 6.1: redirect applies when nothing matched (with "all" in the
        // record something always matches, so it is never reached then).
        if let Some(r) = &rec.redirect {
            if let Err(a) = self.count_dns_term() {
                return a;
            }
            let target = match self.expand_target(r, domain) {
                Ok(t) => t,
                Err(a) => return a,
            };
            let Some(target) = target_name(&target).map(str::to_string) else {
                return step(SpfResult::PermError, format!("{domain}: redirect to an invalid name"));
            };
            let s = self.check(&target, in_include);
            if s.result == SpfResult::None {
                return step(SpfResult::PermError, format!("{domain}: redirect to {target}, which has no SPF record"));
            }
            return s;
        }
        step(SpfResult::Neutral, format!("{domain}: no mechanism matched"))
    }

    fn count_dns_term(&mut self) -> Result<(), Abort> {
        self.dns_terms += 1;
        if self.dns_terms > MAX_DNS_TERMS {
            return Err(step(SpfResult::PermError, "more than 10 DNS lookups"));
        }
        Ok(())
    }

    fn void(&mut self) -> Result<(), Abort> {
        self.voids += 1;
        if self.voids > MAX_VOID_LOOKUPS {
            return Err(step(SpfResult::PermError, "more than 2 void lookups"));
        }
        Ok(())
    }

    fn vars(&self, domain: &str) -> MacroVars {
        MacroVars {
            sender: self.sender.clone(),
            local: self.local.clone(),
            sender_domain: self.sender_domain.clone(),
            domain: domain.to_string(),
            ip: Some(self.ip),
            ptr: String::new(),
            helo: self.helo.clone(),
            receiver: self.receiver.clone(),
            now: self.now,
        }
    }

    fn expand_target(&mut self, ms: &MacroString, domain: &str) -> Result<String, Abort> {
        let mut v = self.vars(domain);
        if ms.uses(b'p') {
            v.ptr = self.validated_ptr(domain)?;
        }
        Ok(expand(ms, &v))
    }

    /// The target of a mechanism: its domain-spec expanded, or the current
    /// domain. Ok(None): the expansion is no usable name (no match).
    fn target(&mut self, spec: Option<&MacroString>, domain: &str) -> Result<Option<String>, Abort> {
        match spec {
            None => Ok(Some(domain.to_string())),
            Some(ms) => {
                let t = self.expand_target(ms, domain)?;
                Ok(target_name(&t).map(str::to_string))
            }
        }
    }

    fn matches(&mut self, m: &Mechanism, domain: &str) -> Result<bool, Abort> {
        match m {
            Mechanism::All => Ok(true),
            Mechanism::Ip4(net, len) => Ok(match self.ip {
                IpAddr::V4(a) => in_net4(a, *net, *len),
                IpAddr::V6(_) => false,
            }),
            Mechanism::Ip6(net, len) => Ok(match self.ip {
                IpAddr::V6(a) => in_net6(a, *net, *len),
                IpAddr::V4(_) => false,
            }),
            Mechanism::Include(spec) => {
                self.count_dns_term()?;
                let Some(target) = self.target(Some(spec), domain)? else {
                    return Err(step(SpfResult::PermError, format!("{domain}: include of an invalid name")));
                };
                // 5.2: only pass matches; errors and "none" end the check.
                let s = self.check(&target, true);
                match s.result {
                    SpfResult::Pass => Ok(true),
                    SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => Ok(false),
                    SpfResult::TempError => Err(s),
                    SpfResult::PermError => Err(s),
                    SpfResult::None => {
                        Err(step(SpfResult::PermError, format!("{domain}: include:{target} has no SPF record")))
                    }
                }
            }
            Mechanism::A(spec, v4, v6) => {
                self.count_dns_term()?;
                let Some(target) = self.target(spec.as_ref(), domain)? else { return Ok(false) };
                let addrs = self.addrs(&target, true)?;
                Ok(addrs.iter().any(|a| self.in_cidr(*a, *v4, *v6)))
            }
            Mechanism::Mx(spec, v4, v6) => {
                self.count_dns_term()?;
                let Some(target) = self.target(spec.as_ref(), domain)? else { return Ok(false) };
                let mxs = match self.dns.mx(&target) {
                    Ok(m) if m.is_empty() => {
                        self.void()?;
                        return Ok(false);
                    }
                    Ok(m) => m,
                    Err(dns::Error::NoName) => {
                        self.void()?;
                        return Ok(false);
                    }
                    Err(dns::Error::Temp(e)) => return Err(step(SpfResult::TempError, format!("MX of {target}: {e}"))),
                };
                // 4.6.4: more than 10 MX names is a permerror.
                if mxs.len() > MAX_NAMES {
                    return Err(step(SpfResult::PermError, format!("{target}: more than 10 MX names")));
                }
                for (_, host) in &mxs {
                    let host = host.trim_end_matches('.');
                    if host.is_empty() {
                        continue; // RFC 7505 null MX
                    }
                    let addrs = self.addrs(host, false)?;
                    if addrs.iter().any(|a| self.in_cidr(*a, *v4, *v6)) {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr(spec) => {
                self.count_dns_term()?;
                let Some(target) = self.target(spec.as_ref(), domain)? else { return Ok(false) };
                let names = self.validated_names(true)?;
                let t = target.to_ascii_lowercase();
                Ok(names.iter().any(|n| is_same_or_sub(n, &t)))
            }
            Mechanism::Exists(spec) => {
                self.count_dns_term()?;
                let Some(target) = self.target(Some(spec), domain)? else { return Ok(false) };
                // 5.7: always an A query, whatever the client's family.
                match self.dns.a(&target) {
                    Ok(a) if !a.is_empty() => Ok(true),
                    Ok(_) | Err(dns::Error::NoName) => {
                        self.void()?;
                        Ok(false)
                    }
                    Err(dns::Error::Temp(e)) => Err(step(SpfResult::TempError, format!("A of {target}: {e}"))),
                }
            }
        }
    }

    /// Addresses of `name` in the client's family (5.3: A for IPv4, AAAA for
    /// IPv6); `count_void` for the mechanism's own lookup.
    fn addrs(&mut self, name: &str, count_void: bool) -> Result<Vec<IpAddr>, Abort> {
        let r = match self.ip {
            IpAddr::V4(_) => self.dns.a(name).map(|v| v.into_iter().map(IpAddr::V4).collect::<Vec<_>>()),
            IpAddr::V6(_) => self.dns.aaaa(name).map(|v| v.into_iter().map(IpAddr::V6).collect::<Vec<_>>()),
        };
        match r {
            Ok(v) if !v.is_empty() => Ok(v),
            Ok(_) | Err(dns::Error::NoName) => {
                if count_void {
                    self.void()?;
                }
                Ok(Vec::new())
            }
            Err(dns::Error::Temp(e)) => Err(step(SpfResult::TempError, format!("address of {name}: {e}"))),
        }
    }

    fn in_cidr(&self, a: IpAddr, v4: u8, v6: u8) -> bool {
        match (self.ip, a) {
            (IpAddr::V4(c), IpAddr::V4(n)) => in_net4(c, n, v4),
            (IpAddr::V6(c), IpAddr::V6(n)) => in_net6(c, n, v6),
            _ => false,
        }
    }

    /// 5.5: the client's validated host names: PTR names (the first 10)
    /// whose addresses include the client. A DNS error in the PTR query
    /// means no names; an error on one name skips that name.
    fn validated_names(&mut self, count_void: bool) -> Result<Vec<String>, Abort> {
        let names = match self.dns.ptr(&reverse_name(self.ip)) {
            Ok(n) if !n.is_empty() => n,
            Ok(_) | Err(dns::Error::NoName) => {
                if count_void {
                    self.void()?;
                }
                return Ok(Vec::new());
            }
            Err(dns::Error::Temp(_)) => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        for n in names.iter().take(MAX_NAMES) {
            let n = n.trim_end_matches('.');
            let ok = match self.ip {
                IpAddr::V4(c) => self.dns.a(n).is_ok_and(|v| v.contains(&c)),
                IpAddr::V6(c) => self.dns.aaaa(n).is_ok_and(|v| v.contains(&c)),
            };
            if ok {
                out.push(n.to_ascii_lowercase());
            }
        }
        Ok(out)
    }

    /// %{p} (7.3): the domain itself if validated, else a validated
    /// subdomain of it, else any validated name, else "unknown".
    fn validated_ptr(&mut self, domain: &str) -> Result<String, Abort> {
        let names = self.validated_names(false)?;
        let d = domain.to_ascii_lowercase();
        let pick = names
            .iter()
            .find(|n| **n == d)
            .or_else(|| names.iter().find(|n| is_same_or_sub(n, &d)))
            .or_else(|| names.first());
        Ok(pick.cloned().unwrap_or_else(|| "unknown".into()))
    }

    /// 6.2: the explanation of a fail, or None (then the caller's default).
    fn explain(&mut self, exp: &MacroString, domain: &str) -> Option<String> {
        let target = self.expand_target(exp, domain).ok()?;
        let target = target_name(&target)?.to_string();
        let txts = self.dns.txt(&target).ok()?;
        let [txt] = txts.as_slice() else { return None };
        if !txt.is_ascii() {
            return None;
        }
        let text = std::str::from_utf8(txt).ok()?;
        let ms = parse_macro_string(text, true).ok()?;
        let mut v = self.vars(domain);
        if ms.uses(b'p') {
            v.ptr = self.validated_ptr(domain).ok()?;
        }
        Some(expand(&ms, &v))
    }
}

fn describe(d: &Directive) -> String {
    let q = match d.qualifier {
        Qualifier::Pass => "",
        Qualifier::Fail => "-",
        Qualifier::SoftFail => "~",
        Qualifier::Neutral => "?",
    };
    let m = match &d.mechanism {
        Mechanism::All => "all".to_string(),
        Mechanism::Include(_) => "include".into(),
        Mechanism::A(..) => "a".into(),
        Mechanism::Mx(..) => "mx".into(),
        Mechanism::Ptr(_) => "ptr".into(),
        Mechanism::Ip4(a, l) => format!("ip4:{a}/{l}"),
        Mechanism::Ip6(a, l) => format!("ip6:{a}/{l}"),
        Mechanism::Exists(_) => "exists".into(),
    };
    format!("{q}{m}")
}

fn is_same_or_sub(name: &str, domain: &str) -> bool {
    name == domain || name.strip_suffix(domain).is_some_and(|p| p.ends_with('.'))
}

/// An IPv4-mapped IPv6 address is its IPv4 address (RFC 7208 5: the
/// client's family decides which mechanisms apply; ::ffff:a.b.c.d is IPv4).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

fn in_net4(a: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
    u32::from(a) & mask == u32::from(net) & mask
}

fn in_net6(a: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0);
    u128::from(a) & mask == u128::from(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authcheck::testzone::Zone;

    fn client(ip: &str) -> Client<'static> {
        Client { ip: ip.parse().unwrap(), helo: "mx.example.org", receiver: "rx.example.net", now: 1_700_000_000 }
    }

    #[test]
    fn record_selection() {
        assert!(is_spf_record(b"v=spf1"));
        assert!(is_spf_record(b"V=SPF1 -all"));
        assert!(!is_spf_record(b"v=spf10 -all"));
        assert!(!is_spf_record(b"v=spf1\t-all"));
        assert!(!is_spf_record(b"spf1"));
    }

    #[test]
    fn parser_table() {
        let ok = [
            "v=spf1",
            "v=spf1 -all ",
            "v=spf1  a  mx/24 ptr ~all",
            "v=spf1 a:example.com/24//64 mx:%{d}//0 ?exists:%{ir}.%{v}._spf.%{d}",
            "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 include:_spf.example.com -all",
            "v=spf1 redirect=_spf.example.com",
            "v=spf1 -all exp=explain._spf.%{d} moo.cow-far_out=man:dog/cat",
            "v=spf1 a:foo.example.com. ip4:0.0.0.0/0",
            "v=spf1 a:foo-bar.example.c0m a:%{d}.com",
        ];
        for r in ok {
            assert!(parse_record(r.as_bytes()).is_ok(), "{r}: {:?}", parse_record(r.as_bytes()));
        }
        let bad = [
            "v=spf1 all:foo",
            "v=spf1 a:example.com/33",
            "v=spf1 a//129",
            "v=spf1 a/024",
            "v=spf1 ip4:1.2.3.4/33",
            "v=spf1 ip4:1.2.3",
            "v=spf1 ip4",
            "v=spf1 ip6:1.2.3.4",
            "v=spf1 include",
            "v=spf1 include:",
            "v=spf1 a:com",
            "v=spf1 a:example.123",
            "v=spf1 a:example.-com",
            "v=spf1 exists:%{x}.example.com",
            "v=spf1 exists:%{d0}.example.com",
            "v=spf1 exists:%{c}.example.com",
            "v=spf1 exists:%.example.com",
            "v=spf1 a:%",
            "v=spf1 redirect=a.example.com redirect=b.example.com",
            "v=spf1 exp=a.example.com exp=b.example.com",
            "v=spf1 1foo=bar",
            "v=spf1 foo=%",
            "v=spf1 -redirect=x.example.com",
            "v=spf1 a\r-all",
            "v=spf1 ip4:192.0.2.5\n",
            "v=spf1 a:é.example.com",
            "v=spf1 frobnicate",
        ];
        for r in bad {
            assert!(parse_record(r.as_bytes()).is_err(), "{r} parsed");
        }
        let r = parse_record(b"v=spf1 -a:x.example.com/24//64 ~mx ip6:::1").unwrap();
        assert_eq!(r.directives.len(), 3);
        assert!(matches!(r.directives[0], Directive { qualifier: Qualifier::Fail, mechanism: Mechanism::A(Some(_), 24, 64) }));
        assert!(matches!(r.directives[1], Directive { qualifier: Qualifier::SoftFail, mechanism: Mechanism::Mx(None, 32, 128) }));
    }

    #[test]
    fn macro_expansion_rfc7208_section_7_4() {
        // The examples of RFC 7208 7.4.
        let mut v = MacroVars {
            sender: "strong-bad@email.example.com".into(),
            local: "strong-bad".into(),
            sender_domain: "email.example.com".into(),
            domain: "email.example.com".into(),
            ip: Some("192.0.2.3".parse().unwrap()),
            ptr: "unknown".into(),
            helo: "mx.example.org".into(),
            receiver: "".into(),
            now: 1,
        };
        let x = |s: &str, v: &MacroVars| expand(&parse_macro_string(s, true).unwrap(), v);
        assert_eq!(x("%{s}", &v), "strong-bad@email.example.com");
        assert_eq!(x("%{o}", &v), "email.example.com");
        assert_eq!(x("%{d}", &v), "email.example.com");
        assert_eq!(x("%{d4}", &v), "email.example.com");
        assert_eq!(x("%{d3}", &v), "email.example.com");
        assert_eq!(x("%{d2}", &v), "example.com");
        assert_eq!(x("%{d1}", &v), "com");
        assert_eq!(x("%{dr}", &v), "com.example.email");
        assert_eq!(x("%{d2r}", &v), "example.email");
        assert_eq!(x("%{l}", &v), "strong-bad");
        assert_eq!(x("%{l-}", &v), "strong.bad");
        assert_eq!(x("%{lr}", &v), "strong-bad");
        assert_eq!(x("%{lr-}", &v), "bad.strong");
        assert_eq!(x("%{l1r-}", &v), "strong");
        assert_eq!(x("%{ir}.%{v}._spf.%{d2}", &v), "3.2.0.192.in-addr._spf.example.com");
        assert_eq!(x("%{lr-}.lp._spf.%{d2}", &v), "bad.strong.lp._spf.example.com");
        assert_eq!(x("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", &v), "bad.strong.lp.3.2.0.192.in-addr._spf.example.com");
        assert_eq!(x("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", &v), "3.2.0.192.in-addr.strong.lp._spf.example.com");
        assert_eq!(x("%{d2}.trusted-domains.example.net", &v), "example.com.trusted-domains.example.net");
        assert_eq!(x("%% %_ %-", &v), "%   %20");
        assert_eq!(x("%{r} %{t} %{c}", &v), "unknown 1 192.0.2.3");
        v.ip = Some("2001:db8::cb01".parse().unwrap());
        assert_eq!(
            x("%{ir}.%{v}._spf.%{d2}", &v),
            "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com"
        );
        assert_eq!(x("%{c}", &v), "2001:db8::cb01");
        v.local = "jack&jill=up".into();
        assert_eq!(x("%{L}", &v), "jack%26jill%3Dup");
        assert_eq!(x("%{d99999999999999999999}", &v), "email.example.com");
        assert!(parse_macro_string("%{s", false).is_err());
        assert!(parse_macro_string("%{sx}", false).is_err());
        assert!(parse_macro_string("a b", false).is_err());
        assert!(parse_macro_string("a b", true).is_ok());
    }

    #[test]
    fn truncation_and_cidr() {
        let long = format!("{}.example.com", vec!["a".repeat(60); 5].join("."));
        let t = truncate_domain(&long);
        assert!(t.len() <= 253 && t.ends_with(".example.com"));
        assert!(in_net4("192.0.2.200".parse().unwrap(), "192.0.2.0".parse().unwrap(), 24));
        assert!(!in_net4("192.0.3.1".parse().unwrap(), "192.0.2.0".parse().unwrap(), 24));
        assert!(in_net4("10.0.0.1".parse().unwrap(), "192.0.2.0".parse().unwrap(), 0));
        assert!(in_net6("2001:db8::1".parse().unwrap(), "2001:db8::".parse().unwrap(), 32));
        assert!(!in_net6("2001:db9::1".parse().unwrap(), "2001:db8::".parse().unwrap(), 32));
        assert_eq!(canonical_ip("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(reverse_name("192.0.2.1".parse().unwrap()), "1.2.0.192.in-addr.arpa");
    }

    #[test]
    fn evaluation() {
        let mut z = Zone::default();
        z.set_txt("example.org", "v=spf1 ip4:192.0.2.0/24 include:_spf.example.net ~all");
        z.set_txt("_spf.example.net", "v=spf1 a:mail.example.net -all");
        z.set_a("mail.example.net", "198.51.100.7");
        z.set_txt("fail.example.org", "v=spf1 -all exp=why.example.org");
        z.set_txt("why.example.org", "%{i} may not send for %{d} (%{r})");
        z.set_txt("loop.example.org", "v=spf1 include:loop.example.org");
        z.set_txt("void.example.org", "v=spf1 a:n1.example.org a:n2.example.org a:n3.example.org");
        let c = client("192.0.2.9");
        let o = check_mail_from(&z, &c, "u@example.org");
        assert_eq!(o.result, SpfResult::Pass, "{o:?}");
        assert_eq!(check_mail_from(&z, &client("198.51.100.7"), "u@example.org").result, SpfResult::Pass);
        assert_eq!(check_mail_from(&z, &client("203.0.113.1"), "u@example.org").result, SpfResult::SoftFail);
        let o = check_mail_from(&z, &c, "u@fail.example.org");
        assert_eq!(o.result, SpfResult::Fail);
        assert_eq!(o.explanation.as_deref(), Some("192.0.2.9 may not send for fail.example.org (rx.example.net)"));
        assert_eq!(check_mail_from(&z, &c, "u@loop.example.org").result, SpfResult::PermError);
        assert_eq!(check_mail_from(&z, &c, "u@void.example.org").result, SpfResult::PermError);
        assert_eq!(check_mail_from(&z, &c, "u@nothing.example.org").result, SpfResult::None);
        assert_eq!(check_mail_from(&z, &c, "u@single").result, SpfResult::None);
        // Empty MAIL FROM: the HELO name's policy.
        z.set_txt("mx.example.org", "v=spf1 ip4:192.0.2.9 -all");
        let o = check_mail_from(&z, &c, "");
        assert_eq!((o.result, o.domain.as_str()), (SpfResult::Pass, "mx.example.org"));
        assert_eq!(check_helo(&z, &client("::ffff:192.0.2.9")).result, SpfResult::Pass);
        z.set_temp("tmp.example.org");
        assert_eq!(check_mail_from(&z, &c, "u@tmp.example.org").result, SpfResult::TempError);
        // mx (with a prefix length) and ptr (validated names only).
        z.set_txt("mx.example.com", "v=spf1 mx/30 ptr -all");
        z.set_mx("mx.example.com", 10, "in.example.com");
        z.set_a("in.example.com", "203.0.113.4");
        assert_eq!(check_mail_from(&z, &client("203.0.113.6"), "u@mx.example.com").result, SpfResult::Pass);
        assert_eq!(check_mail_from(&z, &client("203.0.113.9"), "u@mx.example.com").result, SpfResult::Fail);
        z.set_ptr("9.113.0.203.in-addr.arpa", "host.mx.example.com");
        assert_eq!(check_mail_from(&z, &client("203.0.113.9"), "u@mx.example.com").result, SpfResult::Fail);
        z.set_a("host.mx.example.com", "203.0.113.9");
        assert_eq!(check_mail_from(&z, &client("203.0.113.9"), "u@mx.example.com").result, SpfResult::Pass);
    }
}
