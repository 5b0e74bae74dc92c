//! auth-check's session-mode input (src/authcheck/frames.rs): the frame
//! decoder fed in two pieces at a cut the input chooses, and the order
//! checker on what comes out: never a panic, the same frames whatever the
//! cut, a D frame never over 65536 octets of message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::authcheck::frames::{Decoder, Sequencer, MAX_DATA_FRAME};

/// The frames (type, payload length) decoded from `parts`, and whether
/// decoding stopped on an error.
fn decode(parts: &[&[u8]]) -> (Vec<(u8, usize)>, bool) {
    let mut d = Decoder::new();
    let mut seq = Sequencer::new();
    let mut out = Vec::new();
    for part in parts {
        let mut rest = *part;
        loop {
            loop {
                match d.next_frame() {
                    Ok(Some((k, r))) => {
                        let p = d.payload(r);
                        if k == b'D' {
                            assert!(p.len() < MAX_DATA_FRAME);
                        }
                        out.push((k, p.len()));
                        if seq.step(k, p).is_err() {
                            return (out, true);
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return (out, true),
                }
            }
            if rest.is_empty() {
                break;
            }
            let Ok(space) = d.space() else { return (out, true) };
            let n = space.len().min(rest.len());
            space[..n].copy_from_slice(&rest[..n]);
            d.filled(n);
            rest = &rest[n..];
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |&b| b as usize).min(data.len());
    let whole = decode(&[data]);
    let split = decode(&[&data[..cut], &data[cut..]]);
    assert_eq!(whole, split);
});
