//! Scoreboard files and metrics textfiles as their readers take them
//! (smtpd-supervise-status, metrics-http): no panic; a scoreboard read
//! and written again reads back the same; merging expositions twice
//! changes nothing more than merging them once.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::metrics::merge::merge;
use smtpd::scoreboard;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok((h, rows)) = scoreboard::parse(text) {
        let once = scoreboard::encode(&h, &rows);
        let (h2, rows2) = scoreboard::parse(&once).expect("what encode writes parses");
        assert_eq!(scoreboard::encode(&h2, &rows2), once);
    }
    let mid = (0..=text.len() / 2).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    let (a, b) = text.split_at(mid);
    let m = merge(&[a, b]);
    if !m.contains("# metrics-http:") {
        assert_eq!(merge(&[&m]), m);
    }
});
