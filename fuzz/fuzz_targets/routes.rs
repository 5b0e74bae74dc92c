//! smtp-remote's smtproutes reader (qmail's lines plus our options field)
//! and lookups in what it accepts. Properties besides "no panic": a route
//! never has an empty relay string or port 0, and a host matches the same
//! route however its case and trailing dot are written.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::remote::routes::Routes;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(routes) = Routes::parse(text) else { return };
    let mut hosts: Vec<&str> = vec!["example.com", "a.b.example.com", "[192.0.2.1]", "", "."];
    // Hosts named in the input itself, so that lookups hit lines.
    hosts.extend(text.lines().filter_map(|l| l.split(':').next()).take(8));
    for h in hosts {
        let r = routes.lookup(h);
        if let Some(r) = r {
            assert!(r.relay.as_deref() != Some(""));
            assert!(r.port != Some(0));
        }
        let upper = h.to_ascii_uppercase() + ".";
        assert_eq!(routes.lookup(&upper), r, "{h:?}");
    }
});
