//! DMARC end to end through auth-check (session mode, queue-inject next,
//! records in a fake DNS server, the vendored Public Suffix List): p=none,
//! quarantine and reject; relaxed and strict alignment of SPF and of DKIM;
//! sp= for a subdomain without its own record; pct= sampling; a From
//! domain under a multi-label public suffix (example.co.uk, where a
//! neighbour under co.uk must not align); no DMARC record. Each case is
//! checked in our field (read back by python3-authres) and in the
//! attribute lines; then again with AUTHCHECK_DMARC=reject, where exactly
//! the p=reject failures are refused with 550 5.7.1.
#[path = "support/authcheck.rs"]
mod ac;
#[path = "support/dkim.rs"]
mod dkim_support;
#[path = "support/remote.rs"]
mod remote_support;

use ac::*;
use remote_support::{fake_dns, Rr, Zone};
use smtpd::dkim::canon::lf_to_crlf;
use smtpd::dkim::sign::{sign_message, Signer};

struct Case {
    what: &'static str,
    mail_from: &'static str,
    from: &'static str,
    /// d= of a good signature, if any.
    dkim: Option<&'static str>,
    /// dmarc= result and the policy to apply.
    verdict: &'static str,
    policy: &'static str,
}

const CASES: &[Case] = &[
    Case { what: "SPF aligned, same domain", mail_from: "b@example.com", from: "example.com", dkim: None, verdict: "pass", policy: "none" },
    Case { what: "SPF relaxed alignment", mail_from: "b@mail.example.com", from: "example.com", dkim: None, verdict: "pass", policy: "none" },
    Case { what: "DKIM relaxed alignment", mail_from: "b@elsewhere.example", from: "example.com", dkim: Some("mail.example.com"), verdict: "pass", policy: "none" },
    Case { what: "no alignment, p=reject", mail_from: "b@elsewhere.example", from: "example.com", dkim: None, verdict: "fail", policy: "reject" },
    Case { what: "subdomain, sp=quarantine", mail_from: "b@elsewhere.example", from: "news.example.com", dkim: None, verdict: "fail", policy: "quarantine" },
    Case { what: "SPF strict alignment fails", mail_from: "b@sub.strict.example", from: "strict.example", dkim: None, verdict: "fail", policy: "reject" },
    Case { what: "DKIM strict alignment fails", mail_from: "b@elsewhere.example", from: "strict.example", dkim: Some("sub.strict.example"), verdict: "fail", policy: "reject" },
    Case { what: "DKIM strict alignment holds", mail_from: "b@elsewhere.example", from: "strict.example", dkim: Some("strict.example"), verdict: "pass", policy: "none" },
    Case { what: "p=none", mail_from: "b@elsewhere.example", from: "none.example", dkim: None, verdict: "fail", policy: "none" },
    Case { what: "pct=0 samples out reject", mail_from: "b@elsewhere.example", from: "pct.example", dkim: None, verdict: "fail", policy: "quarantine" },
    Case { what: "multi-label suffix, aligned", mail_from: "b@mail.example.co.uk", from: "example.co.uk", dkim: None, verdict: "pass", policy: "none" },
    Case { what: "multi-label suffix, neighbour", mail_from: "b@example.co.uk", from: "other.co.uk", dkim: None, verdict: "fail", policy: "reject" },
    Case { what: "no DMARC record", mail_from: "b@elsewhere.example", from: "nodmarc.example", dkim: None, verdict: "none", policy: "none" },
];

#[test]
fn dmarc_policies_alignment_and_suffixes() {
    let keys = dkim_support::make_keys();
    let key = dkim_support::load(&keys.ed25519);
    let txt = |s: &str| Rr::Txt(vec![s.to_string()]);
    let spf = txt("v=spf1 ip4:192.0.2.0/24 -all");
    let mut z = Zone::new(false);
    for d in ["example.com", "mail.example.com", "sub.strict.example", "mail.example.co.uk", "example.co.uk"] {
        z = z.add(d, spf.clone());
    }
    z = z
        .add("elsewhere.example", txt("v=spf1 -all"))
        .add("_dmarc.example.com", txt("v=DMARC1; p=reject; sp=quarantine"))
        .add("_dmarc.strict.example", txt("v=DMARC1; p=reject; aspf=s; adkim=s"))
        .add("_dmarc.none.example", txt("v=DMARC1; p=none; rua=mailto:r@none.example"))
        .add("_dmarc.pct.example", txt("v=DMARC1; p=reject; pct=0"))
        .add("_dmarc.example.co.uk", txt("v=DMARC1; p=quarantine"))
        .add("_dmarc.other.co.uk", txt("v=DMARC1; p=reject"));
    for d in ["mail.example.com", "sub.strict.example", "strict.example"] {
        z = z.add(&format!("sel._domainkey.{d}"), Rr::Txt(key.txt_strings()));
    }
    let dns = fake_dns(z);
    let messages: Vec<(Vec<u8>, Vec<u8>)> = CASES
        .iter()
        .map(|c| {
            let msg = format!("From: someone@{}\nTo: r@example.net\nSubject: {}\n\nbody\n", c.from, c.what);
            let msg = match c.dkim {
                Some(d) => {
                    let s = Signer::new(d, "sel", key.clone()).unwrap();
                    let f = sign_message(&[&s], &lf_to_crlf(msg.as_bytes()), dkim_support::NOW).unwrap().remove(0);
                    [String::from_utf8(f).unwrap().replace("\r\n", "\n").into_bytes(), msg.into_bytes()].concat()
                }
                None => msg.into_bytes(),
            };
            let env = smtpd::envelope::Envelope { sender: c.mail_from.into(), recipients: vec![b"r@example.net".to_vec()] }.encode();
            (env, msg)
        })
        .collect();
    let attrs = "CLIENT_ADDR=192.0.2.1\nCLIENT_HELO=client.example\n";
    let frames = || messages.iter().flat_map(|(e, m)| message_frames(None, e, Some(attrs), m)).collect::<Vec<u8>>();

    // Annotate only: everything queued, each result in field and attributes.
    let (_t, q) = scratch();
    let (answers, code, stderr) = session(command(&q, &dns.addr.to_string(), &[]), |_| frames());
    assert_eq!((code, answers.len()), (0, CASES.len()), "{stderr}");
    let queue = queued(&q);
    let mut fields = Vec::new();
    for (c, a) in CASES.iter().zip(&answers) {
        let m = queue.iter().find(|m| Some(m.id.as_str()) == a.strip_prefix("0 ")).unwrap_or_else(|| panic!("{}: {a}", c.what));
        assert_eq!((m.attr("AUTH_DMARC"), m.attr("AUTH_DMARC_POLICY")), (Some(c.verdict), Some(c.policy)), "{}: {:?}", c.what, m.attrs);
        assert_eq!(m.attr("AUTH_DMARC_DOMAIN"), Some(c.from), "{}", c.what);
        fields.push(m.auth_results()[0].clone());
    }
    let parsed = authres_parse(&fields);
    for ((c, (_, results)), field) in CASES.iter().zip(&parsed).zip(&fields) {
        let d = results.iter().find(|r| r.method == "dmarc").unwrap_or_else(|| panic!("{}: no dmarc in {field}", c.what));
        assert_eq!(d.result, c.verdict, "{}: {field}", c.what);
        assert!(d.props.contains(&format!("header.from={}", c.from)), "{}: {field}", c.what);
        if c.verdict == "fail" {
            assert!(field.contains(&format!("dis={})", c.policy)), "{}: {field}", c.what);
        }
        if c.dkim.is_some() {
            assert!(results.iter().any(|r| r.method == "dkim" && r.result == "pass"), "{}: {field}", c.what);
        }
    }

    // AUTHCHECK_DMARC=reject: exactly the failures whose policy is reject.
    let (_t, q) = scratch();
    let (answers, code, stderr) = session(command(&q, &dns.addr.to_string(), &[("AUTHCHECK_DMARC", "reject")]), |_| frames());
    assert_eq!((code, answers.len()), (0, CASES.len()), "{stderr}");
    for (c, a) in CASES.iter().zip(&answers) {
        if c.verdict == "fail" && c.policy == "reject" {
            let want = format!("82 D550 5.7.1 Message refused by the DMARC policy of {}", c.from);
            assert!(a.starts_with(&want), "{}: {a}", c.what);
        } else {
            assert!(a.starts_with("0 "), "{}: {a}", c.what);
        }
    }
    let refused = CASES.iter().filter(|c| c.verdict == "fail" && c.policy == "reject").count();
    assert_eq!(queued(&q).len(), CASES.len() - refused);
    assert_eq!(refused, 4);
}
