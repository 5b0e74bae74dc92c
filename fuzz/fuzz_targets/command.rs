//! The SMTP command parser: any line, no panic, and the pieces it returns
//! lie inside the line; the parameter iterator and address checks too.
//! Allocation is bounded by the run's -malloc_limit_mb (tests/fuzz.sh).
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::smtp::command::{self, Command};

fn inside(line: &[u8], part: &[u8]) {
    let (a, b) = (line.as_ptr() as usize, part.as_ptr() as usize);
    assert!(part.is_empty() || (b >= a && b + part.len() <= a + line.len()));
}

fuzz_target!(|line: &[u8]| {
    let Ok(cmd) = command::parse(line) else { return };
    match cmd {
        Command::Mail { path, params } | Command::Rcpt { path, params } => {
            inside(line, path);
            inside(line, params);
            for p in command::params_iter(params).take(1000) {
                let _ = p;
            }
            let _ = command::check_mailbox(path, true);
            let _ = command::check_mailbox(path, false);
            let _ = command::is_postmaster(path);
            if let Some(d) = command::domain_of(path) {
                inside(line, d);
                let _ = command::check_domain(d, true);
                let _ = command::check_literal(d);
            }
        }
        Command::Helo(n) | Command::Ehlo(n) => {
            inside(line, n);
            let _ = command::check_helo(n);
        }
        _ => {}
    }
});
