//! maildir-deliver's report on stdout, in qmail-remote's format so that
//! queue-run (or qmail-rspawn) reads it as smtp-remote's: one record per
//! recipient, each final on its own (`r` delivered, `h` permanent, `s`
//! temporary), then the message record (`K` when any recipient was
//! delivered, else `Z` or `D`), each a letter, a text line and a NUL.
//! Pure: the bytes are built here and written by the caller.

/// What became of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Result {
    Delivered(String),
    Temp(String),
    Perm(String),
}

/// The report for `rcpts`, one result each, in argv order.
pub fn encode(rcpts: &[Result]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rcpts {
        let (letter, text) = match r {
            Result::Delivered(t) => (b'r', t),
            Result::Temp(t) => (b's', t),
            Result::Perm(t) => (b'h', t),
        };
        record(&mut out, letter, text);
    }
    let delivered = rcpts.iter().filter(|r| matches!(r, Result::Delivered(_))).count();
    if delivered == rcpts.len() {
        record(&mut out, b'K', "Delivered.");
    } else if delivered > 0 {
        record(&mut out, b'K', &format!("Delivered to {delivered} of {} recipients.", rcpts.len()));
    } else if rcpts.iter().any(|r| matches!(r, Result::Temp(_))) {
        record(&mut out, b'Z', "Nothing delivered; trying again later.");
    } else {
        record(&mut out, b'D', "Nothing delivered.");
    }
    out
}

/// A message record alone (no recipient was looked at): `Z` or `D`.
pub fn message_only(permanent: bool, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    record(&mut out, if permanent { b'D' } else { b'Z' }, text);
    out
}

fn record(out: &mut Vec<u8>, letter: u8, text: &str) {
    out.push(letter);
    // One line of printable text (qmail-remote's outsafe).
    out.extend(text.bytes().map(|b| if b.is_ascii_graphic() || b == b' ' { b } else { b'?' }));
    out.extend_from_slice(b"\n\0");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let d = Result::Delivered("Delivered to /var/m/new/1.M2P3Q1.h".into());
        let t = Result::Temp("Unable to write /var/m/tmp/x: disk full. (#4.3.0)".into());
        let p = Result::Perm("Sorry, no mailbox here by that name. (#5.1.1)".into());
        assert_eq!(encode(std::slice::from_ref(&d)), b"rDelivered to /var/m/new/1.M2P3Q1.h\n\0KDelivered.\n\0");
        assert_eq!(
            encode(&[d.clone(), t.clone(), p.clone()]),
            &b"rDelivered to /var/m/new/1.M2P3Q1.h\n\0sUnable to write /var/m/tmp/x: disk full. (#4.3.0)\n\0\
hSorry, no mailbox here by that name. (#5.1.1)\n\0KDelivered to 1 of 3 recipients.\n\0"[..]
        );
        assert!(encode(&[t.clone(), p.clone()]).ends_with(b"\0ZNothing delivered; trying again later.\n\0"));
        assert!(encode(&[p]).ends_with(b"\0DNothing delivered.\n\0"));
        assert_eq!(message_only(false, "bad\nmap"), b"Zbad?map\n\0");
        assert_eq!(message_only(true, "usage"), b"Dusage\n\0");
    }
}
