//! maildir-deliver's map (MAILDIR_MAP) and lookups in what it accepts,
//! with the extension rule. Properties besides "no panic": every entry
//! found has an absolute Maildir path; a lookup does not depend on the
//! ASCII case of the address; an address that has a line of its own is
//! found on it whatever the delimiters (the address itself comes first).
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::deliver::map::Map;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(map) = Map::parse(text) else { return };
    let mut addrs: Vec<String> = vec!["a@example.com".into(), "a+b@example.com".into(), "a-b-c@example.org".into(), "@".into(), "".into()];
    // Addresses named in the input itself, with and without extensions.
    for key in text.lines().filter_map(|l| l.split_whitespace().next()).take(8) {
        addrs.push(key.to_string());
        if let Some((l, d)) = key.rsplit_once('@') {
            addrs.push(format!("{l}+ext@{d}"));
            addrs.push(format!("{l}-x-y@{d}"));
        }
    }
    for a in &addrs {
        let plain = map.lookup(a.as_bytes(), "");
        for delims in ["", "+", "-+", "+-."] {
            let found = map.lookup(a.as_bytes(), delims);
            if let Some((_, e)) = found {
                assert!(e.maildir.starts_with('/'));
            }
            if plain.is_some_and(|(k, _)| k == a.to_ascii_lowercase()) {
                assert_eq!(found, plain, "{a:?} {delims:?}");
            }
            assert_eq!(map.lookup(a.to_ascii_uppercase().as_bytes(), delims).map(|(k, _)| k), found.map(|(k, _)| k), "{a:?}");
        }
    }
});
