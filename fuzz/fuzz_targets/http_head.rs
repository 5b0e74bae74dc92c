//! metrics-http's request heads from the network, arriving in pieces: no
//! panic, and a head that is complete is one whose every shorter prefix
//! without an empty line is still incomplete.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::metrics::http::{parse_head, Parsed, MAX_HEAD};

fuzz_target!(|data: &[u8]| {
    let r = parse_head(data);
    if let Ok(Parsed::Done(req)) = &r {
        assert!(req.path.starts_with('/'));
    }
    for cut in [1, data.len() / 2] {
        let p = &data[..cut.min(data.len())];
        let ends = p.windows(2).any(|w| w == b"\n\n") || p.windows(4).any(|w| w == b"\r\n\r\n");
        if !ends && p.len() < MAX_HEAD {
            assert_eq!(parse_head(p), Ok(Parsed::Incomplete));
        }
    }
});
