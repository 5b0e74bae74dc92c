//! DMARC record parser, then a whole evaluation with the input served as
//! the TXT record of every _dmarc name.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::authcheck::dmarc::{self, Input};
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
    let _ = dmarc::parse_record(data);
    let psl = List::parse("com\nuk\nco.uk\n*.ck\n!www.ck\n");
    let dkim = [("mail.example.co.uk", true), ("other.example", false)];
    for from in ["a.b.example.co.uk", "example.com"] {
        for sample in [0, 99] {
            let input = Input { from_domain: from, spf: Some((SpfResult::Pass, "example.com")), dkim: &dkim, sample };
            let _ = dmarc::evaluate(&Echo(data), &psl, &input);
        }
    }
    // The list parser too, on the same bytes.
    let l = List::parse(&String::from_utf8_lossy(data));
    let _ = l.organizational_domain("a.b.example.co.uk");
});
