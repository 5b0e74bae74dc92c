//! PROXY protocol v1/v2 headers from a load balancer, arriving in pieces:
//! a prefix of a good header is Incomplete, never an error or another header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::proxy::{self, Parsed};

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Done { header, len }) = proxy::parse_header(data) {
        assert!(len <= data.len());
        assert_eq!(proxy::parse_header(&data[..len]), Ok(Parsed::Done { header, len }));
        for cut in [0, 1, len / 2, len.saturating_sub(1)] {
            if cut < len {
                assert_eq!(proxy::parse_header(&data[..cut]), Ok(Parsed::Incomplete), "prefix {cut} of {len}");
            }
        }
    }
});
