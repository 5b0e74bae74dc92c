//! queue-run's DKIM signing table (src/queuerun/signtable.rs): the table
//! parser, the author-domain lookup and the state file's `dkim` line never
//! panic on any input; what parses is well-formed (d= an ASCII name of two
//! labels or more, h= names From, lists bounded, each line found by its
//! own domain), and a `dkim` line encodes back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::queuerun::signtable::{self, Stored};

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = signtable::parse_table(data) {
        for (i, e) in entries.iter().enumerate() {
            assert!(e.domain.is_ascii() && e.domain.contains('.') && !e.domain.starts_with('.'), "{e:?}");
            assert!(e.selector.is_ascii() && !e.selector.is_empty() && !e.keyfile.is_empty());
            assert!(e.headers.as_ref().map_or(true, |h| h.iter().any(|n| n == "from") && h.len() <= signtable::MAX_NAMES));
            assert!(e.oversign.as_ref().map_or(true, |o| o.len() <= signtable::MAX_NAMES));
            let name = if e.subdomains { format!("x.{}", e.domain) } else { e.domain.clone() };
            let found = signtable::lookup(&entries, &name);
            assert!(!found.is_empty() && found.len() <= signtable::MAX_PER_DOMAIN, "{name}");
            if !e.subdomains {
                assert!(found.contains(&i));
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let first = s.lines().next().unwrap_or_default();
        let _ = signtable::lookup(&[], first);
        let _ = signtable::ascii_domain(first);
        let _ = signtable::envelope_domain(first.as_bytes());
        if let Some(st) = Stored::parse(first) {
            assert!(smtpd::envelope::valid_prepend(&st.fields));
            assert_eq!(Stored::parse(&st.encode()), Some(st));
        }
    }
});
