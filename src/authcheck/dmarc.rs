//! DMARC (RFC 7489): the record parser (6.3, 6.4), policy discovery at
//! _dmarc.<From domain> then _dmarc.<organizational domain> (6.6.3),
//! relaxed and strict identifier alignment (3.1), sp= and pct= (6.6.4), and
//! the result with the policy to apply. No I/O but the questions put to a
//! `dns::Lookup`; no reports (rua/ruf are parsed and kept, never sent); the
//! random number for pct= sampling comes from the caller.

use super::psl::{self, Suffixes};
use super::spf::SpfResult;
use crate::dns::{self, Lookup};
use std::fmt;

/// A record longer than this is refused (DNS can carry 64 KiB; real
/// records stay well under 1 KiB).
const MAX_RECORD: usize = 8192;
/// At most this many report URIs per tag are kept, each at most MAX_URI.
const MAX_URIS: usize = 16;
const MAX_URI: usize = 512;

/// p=, sp= (6.3), and the policy applied to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    None,
    Quarantine,
    Reject,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
        }
    }

    fn parse(s: &str) -> Option<Policy> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Some(Policy::None),
            "quarantine" => Some(Policy::Quarantine),
            "reject" => Some(Policy::Reject),
            _ => None,
        }
    }

    /// 6.6.4: a message not sampled by pct= gets the next lower policy.
    fn lower(self) -> Policy {
        match self {
            Policy::Reject => Policy::Quarantine,
            _ => Policy::None,
        }
    }
}

/// adkim=, aspf= (3.1.1, 3.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    Relaxed,
    Strict,
}

/// A parsed DMARC record; tags absent or invalid hold their defaults (6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// None when p= is absent or invalid (see `discover` for what follows).
    pub p: Option<Policy>,
    pub sp: Option<Policy>,
    pub pct: u8,
    pub adkim: Alignment,
    pub aspf: Alignment,
    pub rua: Vec<String>,
    pub ruf: Vec<String>,
    pub fo: String,
    pub rf: String,
    pub ri: u32,
}

impl Default for Record {
    fn default() -> Record {
        Record {
            p: None,
            sp: None,
            pct: 100,
            adkim: Alignment::Relaxed,
            aspf: Alignment::Relaxed,
            rua: Vec::new(),
            ruf: Vec::new(),
            fo: "0".into(),
            rf: "afrf".into(),
            ri: 86400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// No "v=DMARC1" as the first tag: not a DMARC record (discarded, 6.6.3).
    NotDmarc,
    TooLong,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotDmarc => f.write_str("not a DMARC record"),
            ParseError::TooLong => f.write_str("DMARC record too long"),
        }
    }
}

/// Parses a DMARC record (6.3, 6.4: a tag-value list, "v=DMARC1" first and
/// exactly so). Unknown tags are ignored; a tag with a bad value keeps its
/// default; a tag given twice keeps its first value.
pub fn parse_record(txt: &[u8]) -> Result<Record, ParseError> {
    let text = String::from_utf8_lossy(txt);
    let mut tags = text.split(';');
    let first = tags.next().unwrap_or("");
    match first.split_once('=') {
        Some((t, v)) if t.trim() == "v" && v.trim() == "DMARC1" => {}
        _ => return Err(ParseError::NotDmarc),
    }
    if txt.len() > MAX_RECORD {
        return Err(ParseError::TooLong);
    }
    let mut r = Record::default();
    let mut seen: Vec<String> = Vec::new();
    for tag in tags {
        let Some((name, value)) = tag.split_once('=') else { continue };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        if seen.contains(&name) {
            continue;
        }
        let known = matches!(name.as_str(), "p" | "sp" | "pct" | "adkim" | "aspf" | "rua" | "ruf" | "fo" | "rf" | "ri");
        if known {
            seen.push(name.clone());
        }
        match name.as_str() {
            "p" => r.p = Policy::parse(value),
            "sp" => r.sp = Policy::parse(value),
            "pct" => {
                if let Some(n) = value.parse::<u8>().ok().filter(|n| *n <= 100) {
                    r.pct = n;
                }
            }
            "adkim" => r.adkim = alignment(value),
            "aspf" => r.aspf = alignment(value),
            "rua" => r.rua = uris(value),
            "ruf" => r.ruf = uris(value),
            "fo" => {
                let ok = !value.is_empty() && value.split(':').all(|o| matches!(o.trim(), "0" | "1" | "d" | "s"));
                if ok {
                    r.fo = value.chars().filter(|c| !c.is_whitespace()).collect();
                }
            }
            "rf" if !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':') => {
                r.rf = value.to_string();
            }
            "ri" => r.ri = value.parse::<u32>().unwrap_or(r.ri),
            _ => {}
        }
    }
    Ok(r)
}

fn alignment(v: &str) -> Alignment {
    if v.eq_ignore_ascii_case("s") {
        Alignment::Strict
    } else {
        Alignment::Relaxed
    }
}

/// A comma-separated list of DMARC URIs (6.2): `scheme:rest[!size]`; kept
/// only when they look like a URI, bounded in number and length.
fn uris(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|u| is_uri(u))
        .take(MAX_URIS)
        .map(str::to_string)
        .collect()
}

fn is_uri(u: &str) -> bool {
    let Some((scheme, rest)) = u.split_once(':') else { return false };
    u.len() <= MAX_URI
        && !rest.is_empty()
        && scheme.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && u.bytes().all(|b| b.is_ascii_graphic())
}

/// What policy discovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// The record, the domain it was published at (without "_dmarc."), and
    /// whether that is the organizational domain standing in for the From
    /// domain (then sp= applies, 6.3).
    Found { record: Record, domain: String, at_org: bool },
    NoRecord,
    TempError(String),
    PermError(String),
}

/// 6.6.3: _dmarc.<from>, then _dmarc.<organizational domain>. More than
/// one DMARC record at a name, or a record with neither a valid p= nor a
/// valid rua= URI, ends discovery: the RFC applies no DMARC processing then,
/// and we report it as permerror (RFC 7489 11.2: "a permanent error ...
/// such as encountering a syntactically incorrect DMARC record"), with no
/// policy to act upon.
pub fn discover(dns: &dyn Lookup, psl: &dyn Suffixes, from_domain: &str) -> Discovery {
    let Some(from) = psl::to_alabel(from_domain) else {
        return Discovery::PermError(format!("bad From domain {from_domain:?}"));
    };
    match lookup(dns, &from) {
        Discovery::NoRecord => {}
        Discovery::Found { record, domain, .. } => return usable(record, domain, false),
        other => return other,
    }
    let org = match psl.organizational(&from) {
        Ok(o) => o.unwrap_or_else(|| from.clone()),
        Err(e) => return Discovery::TempError(e),
    };
    if org == from {
        return Discovery::NoRecord;
    }
    match lookup(dns, &org) {
        Discovery::Found { record, domain, .. } => usable(record, domain, true),
        other => other,
    }
}

fn lookup(dns: &dyn Lookup, domain: &str) -> Discovery {
    let name = format!("_dmarc.{domain}");
    let txts = match dns.txt(&name) {
        Ok(t) => t,
        Err(dns::Error::NoName) => return Discovery::NoRecord,
        Err(dns::Error::Temp(e)) => return Discovery::TempError(format!("{name}: {e}")),
    };
    let mut found = None;
    for t in &txts {
        match parse_record(t) {
            Err(ParseError::NotDmarc) => continue,
            Err(e) => return Discovery::PermError(format!("{name}: {e}")),
            Ok(r) => {
                if found.is_some() {
                    return Discovery::PermError(format!("{name}: more than one DMARC record"));
                }
                found = Some(r);
            }
        }
    }
    match found {
        Some(record) => Discovery::Found { record, domain: domain.to_string(), at_org: false },
        None => Discovery::NoRecord,
    }
}

/// 6.6.3 step 6: no valid p= but a valid rua= acts as p=none.
fn usable(mut record: Record, domain: String, at_org: bool) -> Discovery {
    if record.p.is_none() {
        if record.rua.is_empty() {
            return Discovery::PermError(format!("_dmarc.{domain}: no valid p= tag"));
        }
        record.p = Some(Policy::None);
    }
    Discovery::Found { record, domain, at_org }
}

/// The DMARC results of RFC 7489 11.2 (the dmarc= method of RFC 8601).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    None,
    Pass,
    Fail,
    TempError,
    PermError,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::None => "none",
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::TempError => "temperror",
            Verdict::PermError => "permerror",
        }
    }
}

/// What DMARC evaluation is given.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// The RFC5322.From domain.
    pub from_domain: &'a str,
    /// The SPF result and the domain it is about (the MAIL FROM domain, or
    /// the HELO name when MAIL FROM was empty, RFC 7208 2.4).
    pub spf: Option<(SpfResult, &'a str)>,
    /// Each DKIM signature's d= and whether it verified (pass).
    pub dkim: &'a [(&'a str, bool)],
    /// A uniformly random number for pct= sampling (any u32; used mod 100).
    pub sample: u32,
}

/// The outcome: the result for Authentication-Results and the policy to
/// apply (what a later step may act on; `None` on pass, none and errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The policy to apply after sp= and pct=.
    pub policy: Policy,
    /// The policy the record asked for (p= or sp=), before pct=.
    pub requested: Option<Policy>,
    /// The From domain (A-label form) as written in header.from=.
    pub from_domain: String,
    /// Where the record was found (without "_dmarc.").
    pub record_domain: Option<String>,
    pub spf_aligned: bool,
    pub dkim_aligned: bool,
    /// pct= left this failing message out of the requested policy.
    pub sampled_out: bool,
    /// A short, ASCII note of why.
    pub reason: String,
}

/// RFC 7489 6.6: discovery, alignment, the result and the policy.
pub fn evaluate(dns: &dyn Lookup, psl: &dyn Suffixes, input: &Input<'_>) -> Outcome {
    let from = psl::to_alabel(input.from_domain).unwrap_or_else(|| input.from_domain.to_ascii_lowercase());
    let mut out = Outcome {
        verdict: Verdict::None,
        policy: Policy::None,
        requested: None,
        from_domain: from.clone(),
        record_domain: None,
        spf_aligned: false,
        dkim_aligned: false,
        sampled_out: false,
        reason: String::new(),
    };
    let (record, domain, at_org) = match discover(dns, psl, input.from_domain) {
        Discovery::Found { record, domain, at_org } => (record, domain, at_org),
        Discovery::NoRecord => {
            out.reason = "no DMARC record".into();
            return out;
        }
        Discovery::TempError(e) => {
            out.verdict = Verdict::TempError;
            out.reason = e;
            return out;
        }
        Discovery::PermError(e) => {
            out.verdict = Verdict::PermError;
            out.reason = e;
            return out;
        }
    };
    out.record_domain = Some(domain);
    // The list is asked only when the names differ (and read only then).
    let list_error = std::cell::RefCell::new(None);
    let aligned = |id: &str, mode: Alignment| -> bool {
        let Some(id) = psl::to_alabel(id) else { return false };
        match mode {
            _ if id == from => true,
            Alignment::Strict => false,
            Alignment::Relaxed => match (psl.organizational(&id), psl.organizational(&from)) {
                (Ok(a), Ok(b)) => a == b,
                (Err(e), _) | (_, Err(e)) => {
                    *list_error.borrow_mut() = Some(e);
                    false
                }
            },
        }
    };
    out.spf_aligned = matches!(input.spf, Some((SpfResult::Pass, d)) if aligned(d, record.aspf));
    out.dkim_aligned = input.dkim.iter().any(|(d, pass)| *pass && aligned(d, record.adkim));
    if let (false, Some(e)) = (out.spf_aligned || out.dkim_aligned, list_error.into_inner()) {
        // Alignment could not be decided: never a fail.
        out.verdict = Verdict::TempError;
        out.reason = e;
        return out;
    }
    if out.spf_aligned || out.dkim_aligned {
        out.verdict = Verdict::Pass;
        out.reason = match (out.spf_aligned, out.dkim_aligned) {
            (true, true) => "SPF and DKIM aligned".into(),
            (true, false) => "SPF aligned".into(),
            _ => "DKIM aligned".into(),
        };
        return out;
    }
    out.verdict = Verdict::Fail;
    // 6.3: sp= is for subdomains of the organizational domain whose own
    // name has no record; without sp=, p= applies to them too.
    let requested = if at_org { record.sp.or(record.p) } else { record.p }.unwrap_or(Policy::None);
    out.requested = Some(requested);
    out.policy = requested;
    if requested != Policy::None && input.sample % 100 >= u32::from(record.pct) {
        out.policy = requested.lower();
        out.sampled_out = true;
    }
    out.reason = format!(
        "no aligned SPF or DKIM pass; {}={}{}",
        if at_org && record.sp.is_some() { "sp" } else { "p" },
        requested.as_str(),
        if out.sampled_out { format!(", not sampled by pct={}", record.pct) } else { String::new() }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authcheck::testzone::Zone;

    fn psl() -> psl::List {
        psl::List::parse("com\norg\nuk\nco.uk\n*.kawasaki.jp\n")
    }

    /// A list that cannot be read.
    struct Unreadable;

    impl Suffixes for Unreadable {
        fn organizational(&self, _: &str) -> Result<Option<String>, String> {
            Err("public suffix list x: unable to open".into())
        }
    }

    #[test]
    fn record_parser() {
        let r = parse_record(b"v=DMARC1; p=reject; sp=quarantine; pct=50; adkim=s; aspf=r; rua=mailto:a@example.com, mailto:b@example.com!10m; ruf=mailto:f@example.com; fo=1:d; rf=afrf; ri=3600").unwrap();
        assert_eq!(r.p, Some(Policy::Reject));
        assert_eq!(r.sp, Some(Policy::Quarantine));
        assert_eq!(r.pct, 50);
        assert_eq!((r.adkim, r.aspf), (Alignment::Strict, Alignment::Relaxed));
        assert_eq!(r.rua, vec!["mailto:a@example.com", "mailto:b@example.com!10m"]);
        assert_eq!(r.ruf, vec!["mailto:f@example.com"]);
        assert_eq!((r.fo.as_str(), r.ri), ("1:d", 3600));
        // Defaults, bad values, unknown and repeated tags.
        let r = parse_record(b"v=DMARC1;p=None;pct=101;adkim=x;fo=9;ri=-1;zz=top;p=reject;").unwrap();
        assert_eq!(r, Record { p: Some(Policy::None), ..Record::default() });
        let r = parse_record(b"v = DMARC1 ; p = bogus").unwrap();
        assert_eq!(r.p, None);
        for bad in [&b"v=DMARC2; p=none"[..], b"p=none; v=DMARC1", b"v=dmarc1; p=none", b"", b"v=spf1 -all"] {
            assert_eq!(parse_record(bad), Err(ParseError::NotDmarc), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = format!("v=DMARC1; p=none; x={}", "a".repeat(MAX_RECORD));
        assert_eq!(parse_record(long.as_bytes()), Err(ParseError::TooLong));
    }

    fn zone() -> Zone {
        let mut z = Zone::default();
        z.set_txt("_dmarc.none.com", "v=DMARC1; p=none");
        z.set_txt("_dmarc.quar.com", "v=DMARC1; p=quarantine");
        z.set_txt("_dmarc.rej.com", "v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=s");
        z.set_txt("_dmarc.half.com", "v=DMARC1; p=reject; pct=50");
        z.set_txt("_dmarc.example.co.uk", "v=DMARC1; p=reject");
        z.set_txt("_dmarc.co.uk", "v=DMARC1; p=none");
        z.set_txt("_dmarc.two.com", "v=DMARC1; p=none");
        z.set_txt("_dmarc.two.com", "v=DMARC1; p=reject");
        z.set_txt("_dmarc.nop.com", "v=DMARC1; pct=20");
        z.set_txt("_dmarc.ruaonly.com", "v=DMARC1; rua=mailto:r@ruaonly.com");
        z.set_txt("_dmarc.other.com", "some other TXT record");
        z.set_temp("_dmarc.tmp.com");
        z
    }

    fn run(from: &str, spf: Option<(SpfResult, &str)>, dkim: &[(&str, bool)], sample: u32) -> Outcome {
        evaluate(&zone(), &psl(), &Input { from_domain: from, spf, dkim, sample })
    }

    #[test]
    fn policies_alignment_and_sampling() {
        let pass = Some((SpfResult::Pass, "bounce.quar.com"));
        // Relaxed SPF alignment: a subdomain's MAIL FROM aligns.
        let o = run("quar.com", pass, &[], 0);
        assert_eq!((o.verdict, o.policy, o.spf_aligned), (Verdict::Pass, Policy::None, true));
        // No pass at all: the policy.
        let o = run("quar.com", Some((SpfResult::Fail, "quar.com")), &[("quar.com", false)], 0);
        assert_eq!((o.verdict, o.policy), (Verdict::Fail, Policy::Quarantine));
        assert_eq!(run("none.com", None, &[], 0).policy, Policy::None);
        assert_eq!(run("none.com", None, &[], 0).verdict, Verdict::Fail);
        // A DKIM pass for another domain does not align.
        let o = run("rej.com", None, &[("evil.com", true)], 0);
        assert_eq!((o.verdict, o.policy), (Verdict::Fail, Policy::Reject));
        // Strict: a subdomain does not align, the exact name does.
        let o = run("rej.com", Some((SpfResult::Pass, "mail.rej.com")), &[("sub.rej.com", true)], 0);
        assert_eq!(o.verdict, Verdict::Fail);
        let o = run("rej.com", None, &[("sub.rej.com", true), ("REJ.com", true)], 0);
        assert_eq!((o.verdict, o.dkim_aligned), (Verdict::Pass, true));
        // sp= for a subdomain without its own record; p= where sp= is absent.
        let o = run("a.b.rej.com", None, &[], 0);
        assert_eq!((o.verdict, o.policy, o.record_domain.as_deref()), (Verdict::Fail, Policy::Quarantine, Some("rej.com")));
        assert_eq!(run("x.quar.com", None, &[], 0).policy, Policy::Quarantine);
        // pct=50: sampled in below 50, out (one step lower) from 50 on.
        assert_eq!(run("half.com", None, &[], 49).policy, Policy::Reject);
        let o = run("half.com", None, &[], 150);
        assert_eq!((o.policy, o.requested, o.sampled_out), (Policy::Quarantine, Some(Policy::Reject), true));
        // A multi-label public suffix: the organizational domain is
        // example.co.uk, never co.uk.
        let o = run("mail.example.co.uk", Some((SpfResult::Pass, "example.co.uk")), &[], 0);
        assert_eq!((o.verdict, o.record_domain.as_deref()), (Verdict::Pass, Some("example.co.uk")));
        let o = run("mail.example.co.uk", Some((SpfResult::Pass, "other.co.uk")), &[], 0);
        assert_eq!((o.verdict, o.policy), (Verdict::Fail, Policy::Reject));
        // No record, another TXT record only, errors.
        assert_eq!(run("nothing.com", pass, &[], 0).verdict, Verdict::None);
        assert_eq!(run("other.com", pass, &[], 0).verdict, Verdict::None);
        assert_eq!(run("tmp.com", None, &[], 0).verdict, Verdict::TempError);
        assert_eq!(run("two.com", None, &[], 0).verdict, Verdict::PermError);
        assert_eq!(run("nop.com", None, &[], 0).verdict, Verdict::PermError);
        let o = run("ruaonly.com", None, &[], 0);
        assert_eq!((o.verdict, o.policy, o.requested), (Verdict::Fail, Policy::None, Some(Policy::None)));
        assert_eq!(run("a..b", None, &[], 0).verdict, Verdict::PermError);
        // Without the list: equal names align and a record at the From
        // domain is found; anything that needs the list is temperror.
        let bad = |from: &str, spf: Option<(SpfResult, &str)>| evaluate(&zone(), &Unreadable, &Input { from_domain: from, spf, dkim: &[], sample: 0 });
        assert_eq!(bad("quar.com", Some((SpfResult::Pass, "QUAR.com"))).verdict, Verdict::Pass);
        let o = bad("quar.com", pass);
        assert_eq!((o.verdict, o.policy, o.reason.as_str()), (Verdict::TempError, Policy::None, "public suffix list x: unable to open"));
        assert_eq!(bad("a.b.rej.com", None).verdict, Verdict::TempError);
    }
}
