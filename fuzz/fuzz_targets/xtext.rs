//! xtext (RFC 3461, with UTF-8 passed through as src/xtext.rs documents):
//! the encoding holds no space, control, DEL or `=`; decode(encode(x)) == x
//! for any bytes; what decodes re-encodes to something that decodes to the
//! same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::xtext;

fuzz_target!(|data: &[u8]| {
    let e = xtext::encode(data);
    assert!(e.bytes().all(|b| b > b' ' && b != 0x7f && b != b'='));
    assert_eq!(xtext::decode(e.as_bytes()).as_deref(), Some(data));
    if let Some(d) = xtext::decode(data) {
        assert_eq!(xtext::decode(xtext::encode(&d).as_bytes()), Some(d));
    }
});
