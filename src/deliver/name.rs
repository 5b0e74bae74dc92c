//! Unique names of Maildir files, in the form maildir(5) recommends and
//! Dovecot and Courier write: `<sec>.M<usec>P<pid>Q<n>.<host>`, where `n`
//! counts the deliveries of this process (from 1), so that two deliveries
//! in one microsecond by one process still differ. The host's `/` and `:`
//! are written `\057` and `\072` (maildir(5)), and `,` as `\054`, since
//! Dovecot and Courier read `,S=<size>` style fields after a comma. Pure:
//! the caller gives the time, pid and host. No I/O here.

/// The unique name for one delivery.
pub fn unique(sec: u64, usec: u32, pid: u32, n: u64, host: &str) -> String {
    format!("{sec}.M{usec}P{pid}Q{n}.{}", escape_host(host))
}

/// The host part: never `/` or `:` (nor `,`); nothing outside printable
/// ASCII; never empty.
pub fn escape_host(host: &str) -> String {
    let mut out = String::new();
    for b in host.bytes() {
        match b {
            b'/' | b':' | b',' | b'\\' => out.push_str(&format!("\\{b:03o}")),
            b if b.is_ascii_graphic() => out.push(b as char),
            b => out.push_str(&format!("\\{b:03o}")),
        }
    }
    if out.is_empty() {
        out.push_str("localhost");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(unique(1733412000, 42, 1234, 1, "mail.example.com"), "1733412000.M42P1234Q1.mail.example.com");
        assert_eq!(unique(1, 999999, 7, 12, "a/b:c,d"), "1.M999999P7Q12.a\\057b\\072c\\054d");
        assert_eq!(escape_host(""), "localhost");
        assert_eq!(escape_host("h\\ x\u{e9}"), "h\\134\\040x\\303\\251");
        // Nothing a Maildir reader splits on, whatever the host.
        for h in ["a:2,S", "x/../y", "..", "tab\there", ",S=5"] {
            let n = unique(1, 2, 3, 4, h);
            assert!(!n.contains('/') && !n.contains(':') && !n.contains(','), "{n}");
            assert!(n.bytes().all(|b| b.is_ascii_graphic()), "{n}");
        }
        // Distinct counters give distinct names in the same microsecond.
        assert_ne!(unique(5, 6, 7, 1, "h"), unique(5, 6, 7, 2, "h"));
    }
}
