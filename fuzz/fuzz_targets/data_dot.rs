//! The DATA decoder. Properties:
//! - the message ends exactly at the first CRLF.CRLF (the start of DATA
//!   counts as a line start) and nowhere else: no input yields two messages
//!   or ends early on LF.LF, CR.CR, LF.CRLF, CRLF.LF (SMTP smuggling);
//! - feeding in pieces gives the same result as feeding whole;
//! - decode(encode(x)) == x for every message x (LF lines, no CR).
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::smtp::data::DotDecoder;

/// Where the message must end: just after the first CRLF.CRLF.
fn first_end(input: &[u8]) -> Option<usize> {
    if input.starts_with(b".\r\n") {
        return Some(3);
    }
    input.windows(5).position(|w| w == b"\r\n.\r\n").map(|i| i + 5)
}

fn decode(input: &[u8], cuts: &[u8]) -> (Vec<u8>, Option<usize>, Option<smtpd::smtp::data::DataError>) {
    let mut d = DotDecoder::new(0);
    let mut out = Vec::new();
    let mut at = 0;
    let mut c = cuts.iter().cycle();
    while at < input.len() {
        let step = if cuts.is_empty() { input.len() } else { 1 + usize::from(*c.next().unwrap_or(&0)) % 64 };
        let end = (at + step).min(input.len());
        let (n, done) = d.feed(&input[at..end], &mut out);
        if done {
            return (out, Some(at + n), d.error());
        }
        assert_eq!(n, end - at);
        at = end;
    }
    (out, None, d.error())
}

fuzz_target!(|data: &[u8]| {
    // First byte: how many bytes of cut sizes follow; the rest is the input.
    let Some((&k, rest)) = data.split_first() else { return };
    let k = usize::from(k % 16).min(rest.len());
    let (cuts, input) = rest.split_at(k);

    let whole = decode(input, &[]);
    assert_eq!(whole.1, first_end(input), "end of message");
    let pieces = decode(input, cuts);
    assert_eq!(whole, pieces, "pieces differ from whole");
    if whole.2.is_none() {
        assert!(!whole.0.contains(&b'\r'), "CR in a clean message");
    }

    // Round trip: the input as a message (LF lines, CR removed).
    let mut msg: Vec<u8> = input.iter().copied().filter(|&b| b != b'\r').collect();
    if !msg.is_empty() && msg.last() != Some(&b'\n') {
        msg.push(b'\n');
    }
    let mut enc = Vec::new();
    for line in msg.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            enc.push(b'.');
        }
        enc.extend_from_slice(&line[..line.len() - 1]);
        enc.extend_from_slice(b"\r\n");
    }
    enc.extend_from_slice(b".\r\n");
    let (out, end, err) = decode(&enc, cuts);
    assert_eq!(err, None);
    assert_eq!(end, Some(enc.len()), "round trip ended early or late");
    assert_eq!(out, msg, "decode(encode(x)) != x");
});
