//! A report on SMTPD_STATS_FD, from any session (untrusted): parsing never
//! panics, and what it yields encodes to a report that parses to the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::statsfd::{self, Report};

fuzz_target!(|data: &[u8]| {
    match statsfd::parse(data) {
        Ok(Report::Session(r)) => assert_eq!(statsfd::parse(&r.encode()), Ok(Report::Session(r))),
        Ok(Report::Tls(t)) => assert_eq!(statsfd::parse(&t.encode()), Ok(Report::Tls(t))),
        Err(_) => {}
    }
});
