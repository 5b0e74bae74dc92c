//! smtp-remote's reply parser (multi-line replies, RFC 5321 4.2) fed the
//! server's lines, and the EHLO keyword parser on every reply it yields;
//! queue-run's reader of smtp-remote's report on the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::queuerun::report::{self, Exit};
use smtpd::remote::reply::Parser;
use smtpd::remote::smtp::Extensions;

fuzz_target!(|data: &[u8]| {
    let mut p = Parser::new();
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match p.push(line) {
            Ok(Some(r)) => {
                assert!((200..600).contains(&r.code));
                let _ = (r.is_positive(), r.is_temp(), r.is_perm(), r.report_text());
                let _ = Extensions::parse(&r);
            }
            Ok(None) => {}
            Err(_) => p = Parser::new(),
        }
    }
    let nrcpt = usize::from(data.first().copied().unwrap_or(0) % 8);
    let out = report::parse(data, Exit::Code(0), nrcpt);
    assert_eq!(out.len(), nrcpt, "one outcome per recipient");
});
