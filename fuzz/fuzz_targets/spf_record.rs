//! SPF record parser and macro expander, then a whole check_host() over a
//! zone that answers every TXT question with the input itself (includes and
//! redirects recurse until the 10-lookup limit ends them).
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::authcheck::spf::{self, Client, MacroVars, Mechanism};
use smtpd::dns::{Error, Lookup};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

struct Echo<'a>(&'a [u8]);

impl Lookup for Echo<'_> {
    fn txt(&self, name: &str) -> Result<Vec<Vec<u8>>, Error> {
        match name.len() % 7 {
            0 => Err(Error::NoName),
            1 => Err(Error::Temp("x".into())),
            _ => Ok(vec![self.0.to_vec()]),
        }
    }
    fn a(&self, name: &str) -> Result<Vec<Ipv4Addr>, Error> {
        if name.len() % 3 == 0 {
            Err(Error::NoName)
        } else {
            Ok(vec![Ipv4Addr::new(192, 0, 2, 1)])
        }
    }
    fn aaaa(&self, _: &str) -> Result<Vec<Ipv6Addr>, Error> {
        Ok(vec!["2001:db8::1".parse().unwrap()])
    }
    fn mx(&self, name: &str) -> Result<Vec<(u16, String)>, Error> {
        Ok((0..name.len() % 13).map(|i| (i as u16, format!("mx{i}.example.org"))).collect())
    }
    fn ptr(&self, _: &str) -> Result<Vec<String>, Error> {
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
                let _ = spf::expand(&ms, &vars);
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
                let _ = spf::expand(ms, &vars);
            }
        }
    }
    for ip in [IpAddr::from([192, 0, 2, 1]), "2001:db8::1".parse().unwrap()] {
        let c = Client { ip, helo: "mx.example.org", receiver: "rx.example.net", now: 1 };
        let _ = spf::check_mail_from(&Echo(data), &c, "user@example.org");
    }
});
