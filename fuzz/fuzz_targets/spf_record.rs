//! SPF record parser and macro expander, then a whole check_host() over a
//! zone that answers every TXT question with the input itself (includes and
//! redirects recurse until the 10-lookup limit ends them). Properties
//! besides "no panic": an expansion stays within its 4096-byte cap; one
//! check asks DNS a bounded number of questions (RFC 7208 4.6.4: 10 terms,
//! each at most one question plus 10 address checks for mx, and for ptr or
//! a %{p} in its domain-spec, plus exp=); the reason is printable ASCII, and
//! so is the explanation (macro-literals are VCHAR or space, 7.1).
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::authcheck::spf::{self, Client, MacroVars, Mechanism, MAX_DNS_TERMS, MAX_NAMES};
use smtpd::dns::{Error, Lookup};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Answers every TXT question with the input; counts the questions.
struct Echo<'a>(&'a [u8], Cell<usize>);

impl Echo<'_> {
    fn ask(&self) {
        self.1.set(self.1.get() + 1);
    }
}

impl Lookup for Echo<'_> {
    fn txt(&self, name: &str) -> Result<Vec<Vec<u8>>, Error> {
        self.ask();
        match name.len() % 7 {
            0 => Err(Error::NoName),
            1 => Err(Error::Temp("x".into())),
            _ => Ok(vec![self.0.to_vec()]),
        }
    }
    fn a(&self, name: &str) -> Result<Vec<Ipv4Addr>, Error> {
        self.ask();
        if name.len() % 3 == 0 {
            Err(Error::NoName)
        } else {
            Ok(vec![Ipv4Addr::new(192, 0, 2, 1)])
        }
    }
    fn aaaa(&self, _: &str) -> Result<Vec<Ipv6Addr>, Error> {
        self.ask();
        Ok(vec!["2001:db8::1".parse().unwrap()])
    }
    fn mx(&self, name: &str) -> Result<Vec<(u16, String)>, Error> {
        self.ask();
        Ok((0..name.len() % 13).map(|i| (i as u16, format!("mx{i}.example.org"))).collect())
    }
    fn ptr(&self, _: &str) -> Result<Vec<String>, Error> {
        self.ask();
        Ok(vec!["mail.example.org".into(), "host.example.com".into()])
    }
}

fuzz_target!(|data: &[u8]| {
    let vars = MacroVars {
        sender: "user@example.org".into(),
        local: "user".into(),
        sender_domain: "example.org".into(),
        domain: "example.org".into(),
        ip: Some("2001:db8::1".parse().unwrap()),
        ptr: "unknown".into(),
        helo: "mx.example.org".into(),
        receiver: "rx.example.net".into(),
        now: 1,
    };
    if let Ok(s) = std::str::from_utf8(data) {
        for exp in [false, true] {
            if let Ok(ms) = spf::parse_macro_string(s, exp) {
                assert!(spf::expand(&ms, &vars).len() <= 4096);
            }
        }
    }
    if let Ok(rec) = spf::parse_record(data) {
        for d in &rec.directives {
            let ms = match &d.mechanism {
                Mechanism::Include(m) | Mechanism::Exists(m) => Some(m),
                Mechanism::A(m, ..) | Mechanism::Mx(m, ..) | Mechanism::Ptr(m) => m.as_ref(),
                _ => None,
            };
            if let Some(ms) = ms {
                assert!(spf::expand(ms, &vars).len() <= 4096);
            }
        }
    }
    for ip in [IpAddr::from([192, 0, 2, 1]), "2001:db8::1".parse().unwrap()] {
        let c = Client { ip, helo: "mx.example.org", receiver: "rx.example.net", now: 1 };
        let dns = Echo(data, Cell::new(0));
        let out = spf::check_mail_from(&dns, &c, "user@example.org");
        // The record, each term's question and %{p} validation, the 10 mx
        // or ptr address checks, exp= (and its %{p}); one term over the cap.
        let per_term = 2 * (1 + MAX_NAMES);
        assert!(dns.1.get() <= 1 + (MAX_DNS_TERMS as usize + 1) * per_term + per_term, "{} questions", dns.1.get());
        assert!(out.reason.bytes().all(|b| (0x20..0x7f).contains(&b)), "{:?}", out.reason);
        if let Some(e) = &out.explanation {
            assert!(e.bytes().all(|b| (0x20..0x7f).contains(&b)), "{e:?}");
        }
    }
});
