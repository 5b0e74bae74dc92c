//! tcprules text and cdb readers, and lookups in what they accept.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::tcprules;
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    let ips: [IpAddr; 4] = [
        "127.0.0.1".parse().unwrap(),
        "192.0.2.77".parse().unwrap(),
        "::1".parse().unwrap(),
        "2001:db8::5".parse().unwrap(),
    ];
    for rules in [tcprules::parse_rules(data), tcprules::parse_cdb(data)].into_iter().flatten() {
        for ip in ips {
            let _ = rules.lookup(ip);
        }
        let _ = rules.len();
    }
});
