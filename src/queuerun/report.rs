//! qmail-remote's report on stdout: per-recipient records (`r` accepted,
//! `h` permanent, `s` temporary), then one message record (`K` success,
//! `Z` temporary, `D` permanent), each ended by a NUL byte; and how
//! qmail-rspawn turns report plus exit status into one result per recipient.
//! Pure, bounded: no I/O here.

/// What became of one recipient in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The remote host took responsibility for the message.
    Delivered(String),
    /// Try again later.
    Temporary(String),
    /// Give up: bounce.
    Permanent(String),
}

impl Outcome {
    pub fn text(&self) -> &str {
        match self {
            Outcome::Delivered(t) | Outcome::Temporary(t) | Outcome::Permanent(t) => t,
        }
    }
    pub fn letter(&self) -> char {
        match self {
            Outcome::Delivered(_) => 'K',
            Outcome::Temporary(_) => 'Z',
            Outcome::Permanent(_) => 'D',
        }
    }
}

/// How the program ended (from wait(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    /// Killed by a signal (crashed, or killed by us).
    Signal(i32),
}

impl Exit {
    /// What wait(2) said; a failed wait counts as a temporary failure (111).
    pub fn of(waited: std::io::Result<std::process::ExitStatus>) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match waited {
            Ok(st) => match (st.code(), st.signal()) {
                (Some(c), _) => Exit::Code(c),
                (None, Some(s)) => Exit::Signal(s),
                _ => Exit::Signal(0),
            },
            Err(_) => Exit::Code(111),
        }
    }
}

/// Longest text kept from one record (the rest is cut off).
pub const MAX_TEXT: usize = 1000;
/// Most report bytes read from one run; the caller stops reading there.
pub const MAX_REPORT: usize = 1 << 20;

/// One outcome per recipient (`nrcpt` recipients, in argv order), from the
/// program's output and exit, as qmail-rspawn reads them, with one change
/// for safety: output without a message record (`K`/`Z`/`D`), as left by a
/// program that crashed or was cut off, is temporary for every recipient
/// that has no `h`/`s` record, never permanent: the attempt is simply
/// retried (at-least-once), nothing is bounced on a guess.
pub fn parse(out: &[u8], exit: Exit, nrcpt: usize) -> Vec<Outcome> {
    match exit {
        Exit::Signal(n) => {
            return all(nrcpt, Outcome::Temporary(format!("smtp-remote crashed (signal {n}) (#4.3.0)")))
        }
        Exit::Code(0) => {}
        // qmail-rspawn: 111 is "unable to run", temporary; any other code permanent.
        Exit::Code(111) => return all(nrcpt, Outcome::Temporary("Unable to run smtp-remote. (#4.3.0)".into())),
        Exit::Code(c) => return all(nrcpt, Outcome::Permanent(format!("Unable to run smtp-remote (exit {c}). (#5.3.0)"))),
    }
    if out.is_empty() {
        return all(nrcpt, Outcome::Temporary("smtp-remote produced no output. (#4.3.0)".into()));
    }
    let mut rcpt: Vec<(u8, String)> = Vec::new();
    let mut message: Option<(u8, String)> = None;
    // Only complete (NUL-terminated) records count; a trailing fragment is
    // what a program cut off mid-write leaves.
    let mut recs = out.split(|&b| b == 0).collect::<Vec<_>>();
    recs.pop();
    for rec in recs {
        let Some((&kind, text)) = rec.split_first() else { continue };
        match kind {
            b'r' | b'h' | b's' if rcpt.len() < nrcpt => rcpt.push((kind, clean(text))),
            b'K' | b'Z' | b'D' => {
                message = Some((kind, clean(text)));
                break;
            }
            _ => {}
        }
    }
    let Some((mkind, mtext)) = message else {
        // No message record: cut off. h/s records still stand; the rest retry.
        return (0..nrcpt)
            .map(|i| match rcpt.get(i) {
                Some((b'h', t)) => Outcome::Permanent(t.clone()),
                Some((b's', t)) => Outcome::Temporary(t.clone()),
                _ => Outcome::Temporary("smtp-remote ended without a report. (#4.3.0)".into()),
            })
            .collect();
    };
    (0..nrcpt)
        .map(|i| match (rcpt.get(i), mkind) {
            (Some((b'h', t)), _) => Outcome::Permanent(t.clone()),
            (Some((b's', t)), _) => Outcome::Temporary(t.clone()),
            // Accepted recipient: the message record says whether the data went through.
            (Some((_, t)), b'K') => Outcome::Delivered(join(t, &mtext)),
            (Some((_, t)), b'D') => Outcome::Permanent(join(t, &mtext)),
            (Some((_, t)), _) => Outcome::Temporary(join(t, &mtext)),
            // No record for this recipient: the message record applies, but a
            // K without the recipient's r is not proof of delivery.
            (None, b'D') => Outcome::Permanent(mtext.clone()),
            (None, b'Z') => Outcome::Temporary(mtext.clone()),
            (None, _) => Outcome::Temporary(format!("no report for this recipient: {mtext}")),
        })
        .collect()
}

fn all(n: usize, o: Outcome) -> Vec<Outcome> {
    vec![o; n]
}

fn join(rcpt: &str, msg: &str) -> String {
    if rcpt.is_empty() {
        msg.to_owned()
    } else if msg.is_empty() {
        rcpt.to_owned()
    } else {
        format!("{rcpt}/{msg}")
    }
}

/// Printable, one line, bounded: newlines (qmail-remote separates the lines
/// of a multi-line reply with them) become `/`, other control octets `?`.
pub fn clean(text: &[u8]) -> String {
    let s = String::from_utf8_lossy(text);
    let mut out = String::new();
    for c in s.trim_end_matches(['\n', '\r']).chars() {
        if out.len() >= MAX_TEXT {
            break;
        }
        out.push(match c {
            '\n' => '/',
            c if c.is_control() => '?',
            c => c,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::*;

    fn p(out: &[u8], n: usize) -> Vec<Outcome> {
        parse(out, Exit::Code(0), n)
    }

    #[test]
    fn table() {
        assert_eq!(p(b"rok\0Kdone\0", 1), vec![Delivered("ok/done".into())]);
        assert_eq!(
            p(b"r250 a\0h550 no\0s451 later\0K250 queued\0", 3),
            vec![Delivered("250 a/250 queued".into()), Permanent("550 no".into()), Temporary("451 later".into())]
        );
        // Message-level temporary failure before any recipient.
        assert_eq!(p(b"Zconnect failed\0", 2), vec![Temporary("connect failed".into()); 2]);
        assert_eq!(p(b"Dnull MX\0", 1), vec![Permanent("null MX".into())]);
        // r then D after DATA: permanent; r then Z: temporary.
        assert_eq!(p(b"rok\0D554 no\0", 1), vec![Permanent("ok/554 no".into())]);
        assert_eq!(p(b"rok\0Z451 dt\0", 1), vec![Temporary("ok/451 dt".into())]);
        // Missing recipient record with K: never counted as delivered.
        assert!(matches!(p(b"rok\0Kdone\0", 2)[1], Temporary(_)));
        // Multi-line text becomes one line.
        assert_eq!(p(b"ra\nb\n\0K\0", 1), vec![Delivered("a/b".into())]);
    }

    #[test]
    fn cut_off_and_crashes() {
        // Cut off mid-report: no K, so nothing is delivered; h stands.
        assert_eq!(p(b"h550 no\0rok\0Kdo", 2)[0], Permanent("550 no".into()));
        assert!(matches!(p(b"h550 no\0rok\0Kdo", 2)[1], Temporary(_)));
        assert!(matches!(p(b"", 1)[0], Temporary(_)));
        assert!(matches!(p(b"garbage without nul", 1)[0], Temporary(_)));
        assert!(matches!(parse(b"rok\0K\0", Exit::Signal(9), 1)[0], Temporary(_)));
        assert!(matches!(parse(b"rok\0K\0", Exit::Code(111), 1)[0], Temporary(_)));
        assert!(matches!(parse(b"rok\0K\0", Exit::Code(100), 1)[0], Permanent(_)));
        // More records than recipients: extras ignored.
        assert_eq!(p(b"ra\0rb\0K\0", 1).len(), 1);
    }

    #[test]
    fn bounded_text() {
        let long = [&b"r"[..], &vec![b'x'; 5000], b"\0K\0"].concat();
        assert!(p(&long, 1)[0].text().len() <= MAX_TEXT + 2);
        assert_eq!(clean(b"a\x01b\r\n"), "a?b");
    }

    proptest::proptest! {
        #[test]
        fn any_output_one_outcome_per_recipient(out in proptest::collection::vec(proptest::num::u8::ANY, 0..400), n in 0usize..8, code in -1i32..120) {
            let exit = if code < 0 { Exit::Signal(9) } else { Exit::Code(code) };
            let v = parse(&out, exit, n);
            proptest::prop_assert_eq!(v.len(), n);
            // Delivered only with a K message record and exit 0.
            if v.iter().any(|o| matches!(o, Delivered(_))) {
                proptest::prop_assert!(code == 0 && out.contains(&b'K'));
            }
        }
    }
}
