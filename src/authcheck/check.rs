//! What auth-check decides about one message: the client facts it trusts
//! (the attribute block smtpd-rs wrote, or a plain qmail-smtpd's
//! environment), SPF, the DKIM results turned into reports, DMARC for every
//! From domain, the operator's policy (annotate, reject, defer), and what
//! goes downstream: the Authentication-Results field, the attribute lines
//! and the log line. Pure: DNS comes in through `dns::Lookup`, the clock
//! and the pct= sample from the caller; no I/O here.

use super::dmarc::{self, Policy as DmarcPolicy, Verdict};
use super::psl::Suffixes;
use super::spf::SpfResult;
use super::{authentication_results, check_spf, DkimReport, SpfInputs, SpfVerdict};
use crate::dkim::header::{self, Field, HeaderError};
use crate::dkim::verify::{Outcome as DkimOutcome, SigResult};
use crate::dns::Lookup;
use crate::envelope::Attrs;
use std::net::IpAddr;

/// Distinct From domains evaluated at most (RFC 7489 6.6.1: each one, the
/// strictest policy wins); more is a permerror.
pub const MAX_FROM_DOMAINS: usize = 4;
/// Characters of b= written as header.b (RFC 6008; 8 is common practice).
pub const B_PREFIX: usize = 8;
/// Longest explanation put into a reply.
const MAX_TEXT: usize = 200;

/// The operator's choices (auth-check(8) POLICY). The default annotates
/// only and never refuses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Refuse SPF `fail` of the MAIL FROM identity: `550 5.7.23`.
    pub spf_reject: bool,
    /// Refuse a DMARC `fail` whose policy (after sp= and pct=) is reject: `550 5.7.1`.
    pub dmarc_reject: bool,
    /// A DNS failure that leaves SPF or DMARC undecided: `451 4.4.3`
    /// instead of annotating temperror.
    pub defer_temperror: bool,
    /// Also check the HELO identity on its own (RFC 7208 2.3).
    pub check_helo: bool,
}

/// The facts about the client, as the program before us saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub ip: Option<IpAddr>,
    pub helo: String,
    /// The envelope sender (empty for the null sender).
    pub mail_from: String,
    /// The AUTH user name.
    pub login: Option<String>,
    /// The client may relay (smtpd-rs's RELAYCLIENT for it).
    pub relay: bool,
}

impl Facts {
    /// From the attribute block (CLIENT_ADDR, CLIENT_HELO, CLIENT_LOGIN,
    /// CLIENT_RELAY), trusted as the program before us wrote it. A block
    /// without CLIENT_ADDR comes from a program that writes none (the real
    /// qmail-smtpd): then the UCSPI environment it passes on is read
    /// instead (TCPREMOTEIP, RELAYCLIENT, and SMTPAUTHUSER or
    /// SMTP_AUTH_USER of the AUTH patches).
    pub fn new(attrs: &Attrs, sender: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Facts {
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        let mut f = Facts { mail_from: text(sender), ..Facts::default() };
        match attrs.get("CLIENT_ADDR") {
            Some(a) => {
                f.ip = parse_ip(&text(a));
                f.helo = attrs.get("CLIENT_HELO").map(text).unwrap_or_default();
                f.login = attrs.get("CLIENT_LOGIN").map(text).filter(|l| !l.is_empty());
                f.relay = attrs.get("CLIENT_RELAY").is_some();
            }
            None => {
                f.ip = env("TCPREMOTEIP").as_deref().and_then(parse_ip);
                f.helo = attrs.get("CLIENT_HELO").map(text).unwrap_or_default();
                f.login = attrs
                    .get("CLIENT_LOGIN")
                    .map(text)
                    .or_else(|| env("SMTPAUTHUSER"))
                    .or_else(|| env("SMTP_AUTH_USER"))
                    .filter(|l| !l.is_empty());
                f.relay = env("RELAYCLIENT").is_some();
            }
        }
        f
    }
}

/// `192.0.2.1`, `2001:db8::1`, `IPv6:2001:db8::1`, `[192.0.2.1]`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_start_matches('[').trim_end_matches(']');
    let s = s.get(..5).filter(|p| p.eq_ignore_ascii_case("ipv6:")).map_or(s, |_| s.get(5..).unwrap_or_default());
    s.parse().ok()
}

/// What happens to the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Passed on, with the field and the attributes.
    Accept,
    /// Refused for good: the whole reply (`550 5.7.23 ...`).
    Reject(String),
    /// Refused for now: the whole reply (`451 4.4.3 ...`).
    Defer(String),
}

/// Why nothing was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// An authenticated submission (CLIENT_LOGIN).
    Login,
    /// A relay client (CLIENT_RELAY, or RELAYCLIENT from a plain qmail-smtpd).
    Relay,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Login => "login",
            Skip::Relay => "relay",
        }
    }
}

/// Everything decided about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub skipped: Option<Skip>,
    pub spf: Option<SpfVerdict>,
    pub dkim: Vec<DkimReport>,
    /// One per From domain; empty when DMARC was not evaluated.
    pub dmarc: Vec<dmarc::Outcome>,
    /// Why the From field gave no domain to evaluate, if so.
    pub from_error: Option<String>,
    pub action: Action,
}

/// What the checks are run with.
pub struct Checks<'a> {
    pub dns: &'a dyn Lookup,
    pub psl: &'a dyn Suffixes,
    /// Our host name: the authserv-id and SPF's %{r}.
    pub authserv_id: &'a str,
    pub policy: &'a Policy,
    /// Seconds since the epoch.
    pub now: u64,
    /// A random number for pct= sampling.
    pub sample: u32,
}

/// Whether to check at all: authenticated and relay clients are skipped
/// (their mail is ours to vouch for, not theirs to prove: RFC 7208 and RFC
/// 7489 are about mail arriving from outside).
pub fn skip(f: &Facts) -> Option<Skip> {
    if f.login.is_some() {
        Some(Skip::Login)
    } else if f.relay {
        Some(Skip::Relay)
    } else {
        None
    }
}

/// Evaluate one message. `dkim`: the reports of its signatures (see
/// `dkim_reports`); `from`: its From domains (see `from_domains`).
pub fn evaluate(c: &Checks<'_>, facts: &Facts, dkim: Vec<DkimReport>, from: Result<Vec<String>, String>) -> Evaluation {
    if let Some(s) = skip(facts) {
        return Evaluation { skipped: Some(s), spf: None, dkim: Vec::new(), dmarc: Vec::new(), from_error: None, action: Action::Accept };
    }
    let spf = facts.ip.map(|ip| {
        let i = SpfInputs {
            ip,
            helo: &facts.helo,
            mail_from: &facts.mail_from,
            receiver: c.authserv_id,
            now: c.now,
            check_helo: c.policy.check_helo,
        };
        check_spf(c.dns, &i)
    });
    let (domains, from_error) = match from {
        Ok(d) => (d, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let passes: Vec<(&str, bool)> = dkim.iter().map(|d| (d.domain.as_str(), d.result == "pass")).collect();
    // A DNS failure on the SPF or a DKIM side may hide a pass: a DMARC
    // fail is then no fail but temperror (never a permanent refusal).
    let temp = spf.as_ref().is_some_and(|s| s.mail_from.result == SpfResult::TempError) || dkim.iter().any(|d| d.result == "temperror");
    let mut outcomes = Vec::new();
    for d in &domains {
        let input = dmarc::Input { from_domain: d, spf: spf.as_ref().map(SpfVerdict::dmarc_identity), dkim: &passes, sample: c.sample };
        let mut o = dmarc::evaluate(c.dns, c.psl, &input);
        if o.verdict == Verdict::Fail && temp {
            o.verdict = Verdict::TempError;
            o.policy = DmarcPolicy::None;
            o.reason = format!("{}; but an SPF or DKIM check had a DNS failure", o.reason);
        }
        outcomes.push(o);
    }
    let action = decide(c.policy, spf.as_ref(), &outcomes, facts);
    Evaluation { skipped: None, spf, dkim, dmarc: outcomes, from_error, action }
}

fn decide(p: &Policy, spf: Option<&SpfVerdict>, dmarc: &[dmarc::Outcome], facts: &Facts) -> Action {
    if let Some(s) = spf.filter(|s| p.spf_reject && s.mail_from.result == SpfResult::Fail) {
        let why = match &s.mail_from.explanation {
            Some(e) => e.clone(),
            None => {
                let who = if facts.mail_from.is_empty() { format!("postmaster@{}", s.helo_name) } else { facts.mail_from.clone() };
                let ip = facts.ip.map(|i| i.to_string()).unwrap_or_default();
                format!("{} does not allow {ip} to send mail as {who}", s.mail_from.domain)
            }
        };
        return Action::Reject(format!("550 5.7.23 SPF fail: {}", clean(&why)));
    }
    if p.dmarc_reject {
        if let Some(o) = dmarc.iter().find(|o| o.verdict == Verdict::Fail && o.policy == DmarcPolicy::Reject) {
            let at = o.record_domain.as_deref().unwrap_or(&o.from_domain);
            return Action::Reject(format!(
                "550 5.7.1 Message refused by the DMARC policy of {} ({})",
                clean(at),
                clean(&o.reason)
            ));
        }
    }
    if p.defer_temperror {
        if let Some(s) = spf.filter(|s| s.mail_from.result == SpfResult::TempError) {
            return Action::Defer(format!("451 4.4.3 Temporary DNS failure in the SPF check of {}, try again later", clean(&s.mail_from.domain)));
        }
        if let Some(o) = dmarc.iter().find(|o| o.verdict == Verdict::TempError) {
            return Action::Defer(format!("451 4.4.3 Temporary DNS failure in the DMARC check of {}, try again later", clean(&o.from_domain)));
        }
    }
    Action::Accept
}

/// Printable ASCII for a reply line, cut at MAX_TEXT.
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).take(MAX_TEXT).collect()
}

/// Our verifier's results as the reports the field and DMARC use.
pub fn dkim_reports(results: &[SigResult]) -> Vec<DkimReport> {
    results
        .iter()
        .map(|r| DkimReport {
            result: r.outcome.result(),
            domain: r.domain.clone(),
            selector: r.selector.clone(),
            b_prefix: r.b.chars().take(B_PREFIX).collect(),
            reason: (r.outcome != DkimOutcome::Pass).then(|| r.outcome.to_string()),
        })
        .collect()
}

/// When the header section cannot be read (over the size limit, or a line
/// that is no field), one permerror for the signatures we cannot see, if
/// the header seems to hold any.
pub fn unreadable_header(header: &[u8], e: &HeaderError) -> Vec<DkimReport> {
    let signed = header
        .split(|&b| b == b'\n')
        .any(|l| l.get(..15).is_some_and(|n| n.eq_ignore_ascii_case(b"dkim-signature:")));
    if !signed && *e != HeaderError::TooLarge {
        return Vec::new();
    }
    vec![DkimReport { result: "permerror", domain: String::new(), selector: String::new(), b_prefix: String::new(), reason: Some(format!("header: {e}")) }]
}

/// The RFC5322.From domains DMARC is evaluated for: every mailbox of every
/// From field (RFC 7489 6.6.1 for several addresses; several From fields,
/// which RFC 5322 forbids, are treated alike so that they cannot hide a
/// failing domain), each once.
pub fn from_domains(fields: &[Field<'_>]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    let mut any = false;
    for f in fields.iter().filter(|f| f.is("from")) {
        any = true;
        for d in header::address_domains(f.value()).map_err(|e| e.to_string())? {
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    if !any {
        return Err(header::FromError::Missing.to_string());
    }
    if out.is_empty() {
        return Err(header::FromError::NoMailbox.to_string());
    }
    if out.len() > MAX_FROM_DOMAINS {
        return Err(format!("more than {MAX_FROM_DOMAINS} From domains"));
    }
    Ok(out)
}

/// The Authentication-Results field (None for a skipped message: its mail
/// is not for us to annotate; see auth-check(8)).
pub fn field(e: &Evaluation, authserv_id: &str) -> Option<String> {
    if e.skipped.is_some() {
        return None;
    }
    Some(authentication_results(authserv_id, e.spf.as_ref(), &e.dkim, &e.dmarc, e.from_error.as_deref()))
}

/// The attribute lines added to the block passed on (doc/PROTOCOLS.md 1).
pub fn attributes(e: &Evaluation) -> Vec<(&'static str, String)> {
    let mut a = Vec::new();
    if let Some(s) = e.skipped {
        a.push(("AUTH_SKIPPED", s.as_str().to_string()));
        return a;
    }
    if let Some(s) = &e.spf {
        a.push(("AUTH_SPF", s.mail_from.result.as_str().to_string()));
        if let Some(h) = &s.helo {
            a.push(("AUTH_SPF_HELO", h.result.as_str().to_string()));
        }
    }
    a.push(("AUTH_DKIM", dkim_list(&e.dkim)));
    if let Some(o) = strictest(&e.dmarc) {
        a.push(("AUTH_DMARC", o.verdict.as_str().to_string()));
        a.push(("AUTH_DMARC_POLICY", o.policy.as_str().to_string()));
        a.push(("AUTH_DMARC_DOMAIN", o.from_domain.clone()));
    } else if e.from_error.is_some() {
        a.push(("AUTH_DMARC", "permerror".to_string()));
        a.push(("AUTH_DMARC_POLICY", "none".to_string()));
    }
    a
}

/// `result:domain` of each signature, comma-separated; `none` if unsigned.
fn dkim_list(d: &[DkimReport]) -> String {
    if d.is_empty() {
        return "none".into();
    }
    d.iter().map(|r| if r.domain.is_empty() { r.result.to_string() } else { format!("{}:{}", r.result, r.domain) }).collect::<Vec<_>>().join(",")
}

/// The DMARC outcome that decides: the failing one with the strictest
/// policy, else the first.
pub fn strictest(o: &[dmarc::Outcome]) -> Option<&dmarc::Outcome> {
    let rank = |p: DmarcPolicy| match p {
        DmarcPolicy::Reject => 2,
        DmarcPolicy::Quarantine => 1,
        DmarcPolicy::None => 0,
    };
    o.iter().filter(|x| x.verdict == Verdict::Fail).max_by_key(|x| rank(x.policy)).or_else(|| o.first())
}

/// The results for the log line: `spf=pass helo=none dkim=pass:example.com
/// dmarc=pass:example.com/none`, or `skipped=login`.
pub fn summary(e: &Evaluation) -> String {
    if let Some(s) = e.skipped {
        return format!("skipped={}", s.as_str());
    }
    let mut out = Vec::new();
    match &e.spf {
        Some(s) => {
            out.push(format!("spf={}", s.mail_from.result));
            if let Some(h) = &s.helo {
                out.push(format!("helo={}", h.result));
            }
        }
        None => out.push("spf=-".into()),
    }
    out.push(format!("dkim={}", dkim_list(&e.dkim)));
    match (strictest(&e.dmarc), &e.from_error) {
        (Some(o), _) => out.push(format!("dmarc={}:{}/{}", o.verdict.as_str(), o.from_domain, o.policy.as_str())),
        (None, Some(_)) => out.push("dmarc=permerror".into()),
        (None, None) => out.push("dmarc=-".into()),
    }
    clean(&out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authcheck::testzone::Zone;

    fn psl() -> crate::authcheck::psl::List {
        crate::authcheck::psl::List::parse("com\norg\nnet\nuk\nco.uk\n")
    }

    fn zone() -> Zone {
        let mut z = Zone::default();
        z.set_txt("example.com", "v=spf1 ip4:192.0.2.0/24 exp=exp.example.com -all");
        z.set_txt("exp.example.com", "%{i} may not send for %{d}");
        z.set_txt("_dmarc.example.com", "v=DMARC1; p=reject");
        z.set_txt("example.org", "v=spf1 ip4:192.0.2.0/24 -all");
        z.set_txt("_dmarc.example.org", "v=DMARC1; p=quarantine");
        z.set_txt("example.co.uk", "v=spf1 -all");
        z.set_txt("_dmarc.example.co.uk", "v=DMARC1; p=none");
        z
    }

    fn facts(ip: &str, from: &str) -> Facts {
        Facts { ip: ip.parse().ok(), helo: "mx.example.com".into(), mail_from: from.into(), login: None, relay: false }
    }

    fn run(p: &Policy, f: &Facts, dkim: Vec<DkimReport>, from: &[&str]) -> Evaluation {
        let z = zone();
        let psl = psl();
        let c = Checks { dns: &z, psl: &psl, authserv_id: "in.example.net", policy: p, now: 0, sample: 0 };
        evaluate(&c, f, dkim, Ok(from.iter().map(|s| s.to_string()).collect()))
    }

    fn report(result: &'static str, domain: &str) -> DkimReport {
        DkimReport { result, domain: domain.into(), selector: "s".into(), b_prefix: "AAAA".into(), reason: None }
    }

    #[test]
    fn facts_from_attrs_or_environment() {
        let mut a = Attrs::default();
        a.push("CLIENT_ADDR", "IPv6:2001:db8::1");
        a.push("CLIENT_HELO", "h.example");
        let env = |k: &str| (k == "TCPREMOTEIP" || k == "RELAYCLIENT").then(|| "192.0.2.7".to_string());
        let f = Facts::new(&a, b"a@b.example", &env);
        assert_eq!(f, Facts { ip: "2001:db8::1".parse().ok(), helo: "h.example".into(), mail_from: "a@b.example".into(), login: None, relay: false });
        let f = Facts::new(&Attrs::default(), b"", &env);
        assert_eq!((f.ip, f.relay, f.helo.as_str()), ("192.0.2.7".parse().ok(), true, ""));
        a.push("CLIENT_LOGIN", "joe");
        assert_eq!(skip(&Facts::new(&a, b"", &env)), Some(Skip::Login));
        let mut r = Attrs::default();
        r.push("CLIENT_ADDR", "[192.0.2.1]");
        r.push("CLIENT_RELAY", "1");
        let f = Facts::new(&r, b"", &|_| None);
        assert_eq!((f.ip, skip(&f)), ("192.0.2.1".parse().ok(), Some(Skip::Relay)));
    }

    #[test]
    fn policies() {
        let annotate = Policy { check_helo: true, ..Policy::default() };
        let strict = Policy { spf_reject: true, dmarc_reject: true, defer_temperror: true, check_helo: true };
        // SPF fail with exp=: annotated by default, refused with its text when asked.
        let f = facts("203.0.113.9", "bounce@example.com");
        let e = run(&annotate, &f, vec![], &["example.com"]);
        assert_eq!(e.action, Action::Accept);
        assert_eq!(e.dmarc[0].verdict, Verdict::Fail);
        let e = run(&strict, &f, vec![], &["example.com"]);
        assert_eq!(e.action, Action::Reject("550 5.7.23 SPF fail: 203.0.113.9 may not send for example.com".into()));
        // Without exp=, our own explanation.
        let e = run(&strict, &facts("203.0.113.9", "b@example.org"), vec![], &["example.org"]);
        assert_eq!(e.action, Action::Reject("550 5.7.23 SPF fail: example.org does not allow 203.0.113.9 to send mail as b@example.org".into()));
        // DMARC reject only: the From domain fails, SPF of another domain passes.
        let dmarc_only = Policy { dmarc_reject: true, ..annotate.clone() };
        let e = run(&dmarc_only, &facts("192.0.2.1", "b@example.org"), vec![], &["example.com"]);
        assert_eq!(e.action, Action::Reject("550 5.7.1 Message refused by the DMARC policy of example.com (no aligned SPF or DKIM pass; p=reject)".into()));
        // An aligned DKIM pass saves it.
        let e = run(&dmarc_only, &facts("192.0.2.1", "b@example.org"), vec![report("pass", "mail.example.com")], &["example.com"]);
        assert_eq!((e.action.clone(), e.dmarc[0].verdict), (Action::Accept, Verdict::Pass));
        // p=quarantine: never refused; the attributes carry it.
        let e = run(&strict, &facts("192.0.2.1", "b@example.com"), vec![], &["example.org"]);
        assert_eq!(e.action, Action::Accept);
        let a = attributes(&e);
        assert!(a.contains(&("AUTH_DMARC", "fail".into())) && a.contains(&("AUTH_DMARC_POLICY", "quarantine".into())), "{a:?}");
        assert!(a.contains(&("AUTH_SPF", "pass".into())) && a.contains(&("AUTH_DKIM", "none".into())), "{a:?}");
        // Several From domains: the strictest failing policy decides.
        let e = run(&dmarc_only, &facts("192.0.2.1", "b@example.co.uk"), vec![], &["example.org", "example.com"]);
        assert!(matches!(e.action, Action::Reject(ref t) if t.contains("example.com")), "{:?}", e.action);
        assert_eq!(strictest(&e.dmarc).map(|o| o.from_domain.as_str()), Some("example.com"));
        let h = field(&e, "in.example.net").unwrap();
        assert_eq!(h.matches("dmarc=fail").count(), 2, "{h}");
    }

    #[test]
    fn dns_failures_are_never_permanent() {
        let strict = Policy { spf_reject: true, dmarc_reject: true, defer_temperror: false, check_helo: false };
        let mut z = zone();
        z.set_temp("example.com");
        let psl = psl();
        let c = Checks { dns: &z, psl: &psl, authserv_id: "in.example.net", policy: &strict, now: 0, sample: 0 };
        let f = facts("203.0.113.9", "b@example.com");
        let e = evaluate(&c, &f, vec![], Ok(vec!["example.com".into()]));
        assert_eq!(e.spf.as_ref().map(|s| s.mail_from.result), Some(SpfResult::TempError));
        assert_eq!((e.dmarc[0].verdict, e.action.clone()), (Verdict::TempError, Action::Accept));
        let defer = Policy { defer_temperror: true, ..strict.clone() };
        let c = Checks { policy: &defer, ..c };
        let e = evaluate(&c, &f, vec![], Ok(vec!["example.com".into()]));
        assert_eq!(e.action, Action::Defer("451 4.4.3 Temporary DNS failure in the SPF check of example.com, try again later".into()));
        // A DKIM key that could not be fetched: the DMARC fail is temperror.
        let c = Checks { dns: &zone(), policy: &strict, ..c };
        let e = evaluate(&c, &facts("192.0.2.1", "b@example.org"), vec![report("temperror", "example.com")], Ok(vec!["example.com".into()]));
        assert_eq!((e.dmarc[0].verdict, e.action), (Verdict::TempError, Action::Accept));
    }

    #[test]
    fn skipped_and_unreadable() {
        let mut f = facts("203.0.113.9", "b@example.com");
        f.login = Some("joe".into());
        let strict = Policy { spf_reject: true, dmarc_reject: true, defer_temperror: true, check_helo: true };
        let e = run(&strict, &f, vec![], &["example.com"]);
        assert_eq!((e.skipped, e.action.clone(), field(&e, "x")), (Some(Skip::Login), Action::Accept, None));
        assert_eq!(attributes(&e), [("AUTH_SKIPPED", "login".to_string())]);
        assert_eq!(summary(&e), "skipped=login");
        // No From domain: permerror, no policy.
        let z = zone();
        let psl = psl();
        let c = Checks { dns: &z, psl: &psl, authserv_id: "in.example.net", policy: &strict, now: 0, sample: 0 };
        let e = evaluate(&c, &facts("192.0.2.1", "b@example.com"), vec![], Err("no From field".into()));
        assert_eq!(e.action, Action::Accept);
        assert!(field(&e, "in.example.net").unwrap().contains("dmarc=permerror reason=\"no From field\""));
        assert_eq!(summary(&e), "spf=pass helo=none dkim=none dmarc=permerror");
        let fields = header::split_fields(b"From: a@x.example, b@y.example\r\nFrom: c@x.example\r\n").unwrap();
        assert_eq!(from_domains(&fields), Ok(vec!["x.example".to_string(), "y.example".to_string()]));
        assert_eq!(from_domains(&header::split_fields(b"To: a@b\r\n").unwrap()), Err("no From field".into()));
        assert_eq!(from_domains(&header::split_fields(b"From: <>\r\n").unwrap()).map_err(|_| ()), Err(()));
        let many = header::split_fields(b"From: a@a.example, b@b.example, c@c.example, d@d.example, e@e.example\r\n").unwrap();
        assert!(from_domains(&many).is_err());
        // A header we cannot read: a permerror when it seems signed.
        assert_eq!(unreadable_header(b"From x\r\n", &HeaderError::NotAField { line: 1 }), vec![]);
        let r = unreadable_header(b"From x\r\nDKIM-Signature: v=1\r\n", &HeaderError::NotAField { line: 1 });
        assert_eq!((r[0].result, r[0].reason.as_deref()), ("permerror", Some("header: header line 1 is not a header field")));
    }
}
