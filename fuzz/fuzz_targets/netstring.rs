//! Netstrings (session-mode framing between smtpd-rs and queue-inject):
//! the payload range lies inside the input and re-encodes to it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::netstring;

fuzz_target!(|data: &[u8]| {
    for max in [0, 10, 1 << 20] {
        if let Ok(Some((r, used))) = netstring::parse(data, max) {
            assert!(r.end <= used && used <= data.len() && r.len() <= max);
            assert_eq!(netstring::encode(&data[r]), &data[..used]);
        }
    }
});
