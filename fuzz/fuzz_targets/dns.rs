//! DNS answers as they come off the wire: the MX, A/AAAA and TLSA parsers
//! and the id/question check.
#![no_main]
use domain::base::iana::Rtype;
use libfuzzer_sys::fuzz_target;
use smtpd::dns;

fuzz_target!(|data: &[u8]| {
    let _ = dns::parse_mx(data);
    let _ = dns::parse_addrs(data);
    let _ = dns::parse_tlsa(data);
    for t in [Rtype::MX, Rtype::A, Rtype::AAAA, Rtype::TLSA] {
        let _ = dns::check_answer(data, 0x1234, "example.com", t);
    }
});
