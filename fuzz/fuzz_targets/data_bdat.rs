//! The BDAT decoder: chunk boundaries anywhere give the same result as one
//! chunk; decode(encode(x)) == x (LF lines, no CR); no CR in a clean output.
//! The hop counter, fed the decoded output as it comes, counts the same
//! trace fields whatever the chunking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::smtp::data::{ChunkDecoder, HopCounter};

fn decode(input: &[u8], cuts: &[u8]) -> (Vec<u8>, Option<smtpd::smtp::data::DataError>, u64, u32) {
    let mut d = ChunkDecoder::new(0);
    let mut hops = HopCounter::new(0);
    let mut out = Vec::new();
    if cuts.is_empty() {
        d.feed(input, &mut out);
        hops.feed(&out);
    } else {
        let mut at = 0;
        for &c in cuts.iter().cycle() {
            if at >= input.len() {
                break;
            }
            let end = (at + usize::from(c) % 32).min(input.len());
            let from = out.len();
            d.feed(&input[at..end], &mut out);
            hops.feed(&out[from..]);
            at = end;
        }
    }
    d.finish();
    (out, d.error(), d.size(), hops.hops())
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else { return };
    let k = usize::from(k % 16).min(rest.len());
    let (cuts, input) = rest.split_at(k);
    // Cut sizes of 0 are allowed (an empty chunk), but not all zero (no progress).
    let cuts: Vec<u8> = if cuts.iter().all(|&c| c % 32 == 0) { Vec::new() } else { cuts.to_vec() };

    let whole = decode(input, &[]);
    assert_eq!(whole, decode(input, &cuts), "chunking changes the result");
    if whole.1.is_none() {
        assert!(!whole.0.contains(&b'\r'));
        assert_eq!(whole.2, input.len() as u64);
    }

    let msg: Vec<u8> = input.iter().copied().filter(|&b| b != b'\r').collect();
    let mut enc = Vec::new();
    for &b in &msg {
        if b == b'\n' {
            enc.push(b'\r');
        }
        enc.push(b);
    }
    let (out, err, size, _) = decode(&enc, &cuts);
    assert_eq!(err, None);
    assert_eq!(out, msg, "decode(encode(x)) != x");
    assert_eq!(size, enc.len() as u64);
});
