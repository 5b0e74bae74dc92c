//! smtpd-checkpassword's password file (src/checkpw/file.rs, with the hash
//! and CRAM-MD5 field parsers under it) and fd 3's request
//! (src/checkpw/verify.rs). Properties besides "no panic": what parses
//! encodes to text that parses to the same file; every entry is found by
//! its name at a line that holds it; deleting an entry and setting it back
//! gives the same entries; a request's fields are NUL-free and bounded.
//! No hash is computed: costs taken from the input would be the fuzzer's
//! time, not a finding (parse_hash's caps are what bound them).
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::checkpw::cram::CramSecret;
use smtpd::checkpw::file::{encode_entry, valid_user, PasswdFile, MAX_FILE};
use smtpd::checkpw::verify::{parse_request, Mech, MAX_INPUT};

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = PasswdFile::parse(data) {
        assert!(data.len() <= MAX_FILE);
        let text = f.encode();
        let again = PasswdFile::parse(&text).expect("encoded file parses");
        assert_eq!(again, f);
        let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        for e in f.entries() {
            assert!(valid_user(&e.user));
            let (n, found) = f.find(&e.user).expect("entry found by its name");
            assert_eq!(found, e);
            assert_eq!(lines.get(n - 1).copied(), Some(&encode_entry(e)[..]));
        }
        if let Some(first) = f.entries().next().cloned() {
            let mut g = f.clone();
            assert!(g.remove(&first.user));
            assert!(g.find(&first.user).is_none());
            assert!(!g.set(first.clone()));
            let a: Vec<_> = f.entries().cloned().collect();
            let mut b: Vec<_> = g.entries().cloned().collect();
            b.rotate_right(1);
            assert_eq!(a, b);
        }
    }

    // fd 3's request, as PLAIN/LOGIN and as CRAM-MD5.
    for mech in [Mech::Password, Mech::CramMd5] {
        if let Ok(r) = parse_request(data, mech) {
            assert!(data.len() <= MAX_INPUT);
            for f in [r.user, r.secret, r.challenge] {
                assert!(!f.contains(&0) && f.len() < MAX_INPUT);
            }
        }
    }

    // A CRAM-MD5 field: what parses encodes back (in lower case) and
    // answers any challenge without panicking.
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(c) = CramSecret::parse(s) {
            assert!(s.eq_ignore_ascii_case(&c.encode()));
            assert!(!c.verify(data, b"not hex"));
            let _ = c.digest(data);
        }
    }
});
