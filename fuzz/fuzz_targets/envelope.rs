//! The qmail-queue envelope reader (fd 1 of queue-inject): byte by byte,
//! bounded; what it accepts re-encodes to the same bytes; the attribute
//! block parser round-trips too.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::envelope::{Attrs, Envelope, Parser, MAX_ADDR};

fuzz_target!(|data: &[u8]| {
    let mut p = Parser::new(100);
    let mut used = data.len();
    for (i, &b) in data.iter().enumerate() {
        match p.push(b) {
            Ok(true) => {
                used = i + 1;
                break;
            }
            Ok(false) => {}
            Err(_) => return,
        }
    }
    if let Ok(env) = p.finish() {
        assert!(env.recipients.len() <= 100 && env.sender.len() <= MAX_ADDR);
        assert_eq!(env.encode(), &data[..used], "envelope does not re-encode to its input");
        assert_eq!(Envelope::parse(&data[..used], 100).as_ref(), Ok(&env));
    }
    if let Some(a) = Attrs::parse(data) {
        assert_eq!(Attrs::parse(a.encode().as_bytes()).as_ref(), Some(&a));
    }
});
