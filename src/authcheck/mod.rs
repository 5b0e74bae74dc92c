//! Inbound mail authentication, the checker's room: SPF (RFC 7208), DMARC
//! (RFC 7489) with the Public Suffix List, and the Authentication-Results
//! header field (RFC 8601), then the program auth-check that applies them
//! between smtpd-rs and queue-inject. The pure modules take DNS through
//! `dns::Lookup` (the suite's resolver, `dns::CachedResolver` in the
//! checker, an in-memory zone in tests) and see no file descriptor, but for
//! the one read of the PSL file (`psl::List::load`).
//!
//! ```text
//! spf.rs      record selection, parser, macros, check_host() and its limits
//! psl.rs      the Public Suffix List and the organizational domain
//! dmarc.rs    record parser, discovery, alignment, sp=, pct=, the policy
//! authres.rs  our Authentication-Results field; spotting forged ones
//! check.rs    one message's facts, results, policy, field, attributes, log
//! filter.rs   removes forged Authentication-Results fields from a stream
//! frames.rs   the session-mode frames auth-check reads, and their order
//! config.rs   auth-check's environment, read once           (I/O below)
//! spool.rs    a message kept in memory, then in a file
//! run.rs      the qmail-queue and session-mode loops of auth-check
//! ```
//!
//! auth-check calls, per message: `check_spf` (through `check::evaluate`),
//! the DKIM module (src/dkim/) for the signatures while the message is
//! read, DMARC for the From domains, then `authentication_results` for the
//! field it puts on top, after `filter` removed every existing field for
//! which `authres::is_ours` holds (RFC 8601 5).

pub mod authres;
pub mod check;
pub mod config;
pub mod dmarc;
pub mod filter;
pub mod frames;
pub mod psl;
pub mod run;
pub mod spf;
pub mod spool;
#[cfg(test)]
pub(crate) mod testzone;

use crate::dns::Lookup;
use authres::MethodResult;
use spf::SpfResult;
use std::net::IpAddr;

/// The SMTP facts SPF is checked on.
#[derive(Debug, Clone)]
pub struct SpfInputs<'a> {
    /// The client address smtpd-rs saw (or the trusted XCLIENT/XFORWARD one).
    pub ip: IpAddr,
    /// The HELO/EHLO argument.
    pub helo: &'a str,
    /// The MAIL FROM address without brackets, empty for the null sender.
    pub mail_from: &'a str,
    /// Our host name (the authserv-id; %{r} in explanations).
    pub receiver: &'a str,
    /// Seconds since the epoch (%{t}).
    pub now: u64,
    /// Also check the HELO identity on its own (RFC 7208 2.3 recommends it;
    /// it costs a second policy evaluation when MAIL FROM is not empty).
    pub check_helo: bool,
}

/// The SPF results of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfVerdict {
    /// The MAIL FROM identity; for the null sender this is the HELO check
    /// (postmaster@<helo>, RFC 7208 2.4).
    pub mail_from: spf::Outcome,
    /// The HELO identity when checked on its own (check_helo, non-null
    /// sender, a HELO name that is a domain).
    pub helo: Option<spf::Outcome>,
    /// The MAIL FROM address as given (empty: the null sender).
    pub mail_from_address: String,
    pub helo_name: String,
}

impl SpfVerdict {
    /// What DMARC aligns on: the MAIL FROM result and its domain (the HELO
    /// name's when MAIL FROM was empty).
    pub fn dmarc_identity(&self) -> (SpfResult, &str) {
        (self.mail_from.result, &self.mail_from.domain)
    }
}

/// SPF for the transaction (RFC 7208 2.3, 2.4).
pub fn check_spf(dns: &dyn Lookup, i: &SpfInputs<'_>) -> SpfVerdict {
    let client = spf::Client { ip: i.ip, helo: i.helo, receiver: i.receiver, now: i.now };
    let mail_from = spf::check_mail_from(dns, &client, i.mail_from);
    let helo = (i.check_helo && !i.mail_from.is_empty()).then(|| spf::check_helo(dns, &client));
    SpfVerdict { mail_from, helo, mail_from_address: i.mail_from.to_string(), helo_name: i.helo.to_string() }
}

/// One DKIM signature's result, as the DKIM module reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimReport {
    /// RFC 8601 2.7.1: pass, fail, neutral, policy, temperror, permerror.
    pub result: &'static str,
    /// d= and s= of the signature.
    pub domain: String,
    pub selector: String,
    /// The first characters of b= (8 is common practice), to tell
    /// signatures apart (RFC 6008); empty: not written.
    pub b_prefix: String,
    pub reason: Option<String>,
}

/// DMARC for the message (RFC 7489 6.6). `sample` is a random number for
/// pct= (`random_sample()` gives one).
pub fn check_dmarc(
    dns: &dyn Lookup,
    psl: &dyn psl::Suffixes,
    from_domain: &str,
    spf: &SpfVerdict,
    dkim: &[DkimReport],
    sample: u32,
) -> dmarc::Outcome {
    let passes: Vec<(&str, bool)> = dkim.iter().map(|d| (d.domain.as_str(), d.result == "pass")).collect();
    let input = dmarc::Input { from_domain, spf: Some(spf.dmarc_identity()), dkim: &passes, sample };
    dmarc::evaluate(dns, psl, &input)
}

/// The Authentication-Results field for what was checked (RFC 8601):
/// spf= for MAIL FROM (smtp.mailfrom) or, for the null sender, HELO
/// (smtp.helo), and the separate HELO check when made; one dkim= per
/// signature; one dmarc= per From domain with header.from, or a permerror
/// with `from_error` when the From field gave none. Nothing checked: `none`.
pub fn authentication_results(
    authserv_id: &str,
    spf: Option<&SpfVerdict>,
    dkim: &[DkimReport],
    dmarc: &[dmarc::Outcome],
    from_error: Option<&str>,
) -> String {
    let mut rs = Vec::new();
    if let Some(v) = spf {
        if v.mail_from_address.is_empty() {
            rs.push(spf_result(&v.mail_from, "helo", &v.helo_name));
        } else {
            rs.push(spf_result(&v.mail_from, "mailfrom", &v.mail_from_address));
        }
        if let Some(h) = &v.helo {
            rs.push(spf_result(h, "helo", &v.helo_name));
        }
    }
    for d in dkim {
        let mut r = MethodResult::new("dkim", d.result);
        if let Some(reason) = &d.reason {
            r = r.reason(reason.clone());
        }
        if !d.domain.is_empty() {
            r = r.prop("header", "d", d.domain.clone());
        }
        if !d.selector.is_empty() {
            r = r.prop("header", "s", d.selector.clone());
        }
        if !d.b_prefix.is_empty() {
            r = r.prop("header", "b", d.b_prefix.clone());
        }
        rs.push(r);
    }
    for o in dmarc {
        let mut r = MethodResult::new("dmarc", o.verdict.as_str());
        if let Some(p) = o.requested {
            r = r.comment(format!("p={} dis={}", p.as_str(), o.policy.as_str()));
        }
        if o.verdict != dmarc::Verdict::Pass {
            r = r.reason(o.reason.clone());
        }
        rs.push(r.prop("header", "from", o.from_domain.clone()));
    }
    if let (true, Some(e)) = (dmarc.is_empty(), from_error) {
        rs.push(MethodResult::new("dmarc", "permerror").reason(e.to_string()));
    }
    authres::write(authserv_id, &rs)
}

fn spf_result(o: &spf::Outcome, property: &'static str, value: &str) -> MethodResult {
    let mut r = MethodResult::new("spf", o.result.as_str());
    if !matches!(o.result, SpfResult::Pass | SpfResult::None | SpfResult::Neutral) {
        r = r.reason(o.reason.clone());
    }
    r.prop("smtp", property, value)
}

/// A random number for pct= sampling: from std's per-process random hash
/// keys, mixed with the clock (no RNG crate for one number per message).
pub fn random_sample() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use testzone::Zone;

    #[test]
    fn a_transaction_end_to_end() {
        let mut z = Zone::default();
        z.set_txt("example.co.uk", "v=spf1 ip4:192.0.2.0/24 -all");
        z.set_txt("_dmarc.example.co.uk", "v=DMARC1; p=reject; sp=quarantine");
        z.set_txt("mx.example.co.uk", "v=spf1 a -all");
        z.set_a("mx.example.co.uk", "192.0.2.1");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/psl/public_suffix_list.dat");
        let psl = psl::List::load(&path).unwrap();
        let inputs = SpfInputs {
            ip: "192.0.2.1".parse().unwrap(),
            helo: "mx.example.co.uk",
            mail_from: "bounce@example.co.uk",
            receiver: "in.example.net",
            now: 0,
            check_helo: true,
        };
        let spf = check_spf(&z, &inputs);
        assert_eq!(spf.mail_from.result, SpfResult::Pass);
        assert_eq!(spf.helo.as_ref().map(|h| h.result), Some(SpfResult::Pass));
        let dkim = [DkimReport {
            result: "fail",
            domain: "example.co.uk".into(),
            selector: "s1".into(),
            b_prefix: "AbCdEfGh".into(),
            reason: Some("body hash mismatch".into()),
        }];
        // From a subdomain: relaxed SPF alignment passes.
        let d = check_dmarc(&z, &psl, "news.example.co.uk", &spf, &dkim, 0);
        assert_eq!(d.verdict, dmarc::Verdict::Pass);
        let h = authentication_results("in.example.net", Some(&spf), &dkim, &[d], None);
        assert_eq!(
            h,
            "Authentication-Results: in.example.net;\n\
             \tspf=pass smtp.mailfrom=bounce@example.co.uk;\n\
             \tspf=pass smtp.helo=mx.example.co.uk;\n\
             \tdkim=fail reason=\"body hash mismatch\" header.d=example.co.uk\n\
             \t  header.s=s1 header.b=AbCdEfGh;\n\
             \tdmarc=pass header.from=news.example.co.uk\n"
        );
        // Another domain under the same public suffix does not align.
        let d = check_dmarc(&z, &psl, "example2.co.uk", &spf, &[], 0);
        assert_eq!(d.verdict, dmarc::Verdict::None);
        let mut z2 = Zone::default();
        z2.set_txt("_dmarc.example2.co.uk", "v=DMARC1; p=reject");
        let d = check_dmarc(&z2, &psl, "example2.co.uk", &spf, &dkim, 0);
        assert_eq!((d.verdict, d.policy), (dmarc::Verdict::Fail, dmarc::Policy::Reject));
        // An SPF fail: sp= for the subdomain.
        let bad = SpfInputs { ip: "203.0.113.5".parse().unwrap(), check_helo: false, ..inputs };
        let spf = check_spf(&z, &bad);
        assert_eq!((spf.mail_from.result, spf.helo.is_none()), (SpfResult::Fail, true));
        let d = check_dmarc(&z, &psl, "sub.example.co.uk", &spf, &[], 0);
        assert_eq!((d.verdict, d.policy), (dmarc::Verdict::Fail, dmarc::Policy::Quarantine));
        let h = authentication_results("in.example.net", Some(&spf), &[], &[d], None).replace("\n\t  ", " ");
        assert!(h.contains("\tdmarc=fail (p=quarantine dis=quarantine) reason=\"no aligned"), "{h}");
        assert!(h.contains("\tspf=fail reason=\"example.co.uk: -all matched\" smtp.mailfrom=bounce@example.co.uk;"), "{h}");
        assert_eq!(authentication_results("in.example.net", None, &[], &[], None), "Authentication-Results: in.example.net; none\n");
        assert_ne!(random_sample(), random_sample());
    }
}
