//! DMARC record parser, then a whole evaluation with the input served as
//! the TXT record of every _dmarc name. Properties besides "no panic":
//! pct= is at most 100 and the URI lists are bounded (16 URIs of at most
//! 512 octets); the outcome's reason is printable ASCII (it goes into
//! Authentication-Results); a pass applies no policy; the same input gives
//! the same outcome.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::authcheck::dmarc::{self, Input, Policy, Verdict};
use smtpd::authcheck::psl::List;
use smtpd::authcheck::spf::SpfResult;
use smtpd::dns::{Error, Lookup};
use std::net::{Ipv4Addr, Ipv6Addr};

struct Echo<'a>(&'a [u8]);

impl Lookup for Echo<'_> {
    fn txt(&self, _: &str) -> Result<Vec<Vec<u8>>, Error> {
        Ok(vec![self.0.to_vec()])
    }
    fn a(&self, _: &str) -> Result<Vec<Ipv4Addr>, Error> {
        Err(Error::NoName)
    }
    fn aaaa(&self, _: &str) -> Result<Vec<Ipv6Addr>, Error> {
        Err(Error::NoName)
    }
    fn mx(&self, _: &str) -> Result<Vec<(u16, String)>, Error> {
        Err(Error::NoName)
    }
    fn ptr(&self, _: &str) -> Result<Vec<String>, Error> {
        Err(Error::NoName)
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = dmarc::parse_record(data) {
        assert!(r.pct <= 100);
        for l in [&r.rua, &r.ruf] {
            assert!(l.len() <= 16 && l.iter().all(|u| u.len() <= 512), "{l:?}");
        }
    }
    let psl = List::parse("com\nuk\nco.uk\n*.ck\n!www.ck\n");
    let dkim = [("mail.example.co.uk", true), ("other.example", false)];
    for from in ["a.b.example.co.uk", "example.com"] {
        for sample in [0, 99] {
            let input = Input { from_domain: from, spf: Some((SpfResult::Pass, "example.com")), dkim: &dkim, sample };
            let out = dmarc::evaluate(&Echo(data), &psl, &input);
            assert!(out.reason.bytes().all(|b| (0x20..0x7f).contains(&b)), "{:?}", out.reason);
            if out.verdict == Verdict::Pass {
                assert_eq!(out.policy, Policy::None, "{out:?}");
            }
            assert_eq!(dmarc::evaluate(&Echo(data), &psl, &input), out);
        }
    }
    // The list parser too, on the same bytes.
    let l = List::parse(&String::from_utf8_lossy(data));
    let _ = l.organizational_domain("a.b.example.co.uk");
});
