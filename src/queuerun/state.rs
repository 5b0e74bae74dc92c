//! Per-recipient delivery state of one message, as queue-run keeps it in
//! `QUEUE_DIR/state/<id>` (queue-run(8)). Encoder and bounded parser; pure.
//!
//! ```text
//! queue-run-state 1
//! ino <inode of new/<id>>            ties the state to that very file
//! r <P|D|F|E> <notified 0|1> <delayed 0|1> <attempts> <next attempt> <xtext text>
//! ```
//! An optional `dkim <signed at> <expires> <xtext fields>` line (after `ino`,
//! at most one; older files have none) keeps the DKIM-Signature fields made
//! for the message, so that every destination and retry sends the same ones
//! (`signtable::Stored`).
//! One `r` line per recipient, in envelope order. `P` pending, `D` delivered,
//! `F` failed for good, `E` failed because queue-run gave up after the
//! queue lifetime (the text is then the last temporary result); `notified`:
//! the DSN owed for that final status was queued (or none was owed);
//! `delayed`: a delay DSN was queued.

use super::signtable::Stored;
use crate::xtext;

pub const MAGIC: &str = "queue-run-state 1";
/// Longest result text kept per recipient, in octets (a longer one keeps
/// both ends: the host's words and its last reply). It bounds the state.
pub const MAX_TEXT: usize = 500;
/// Longest `r` line: `r X 1 1 `, attempts (10 digits), next (20 digits),
/// the text in xtext (3 octets per octet at worst), spaces and newline.
pub const MAX_LINE: usize = 8 + 10 + 1 + 20 + 1 + 3 * MAX_TEXT + 1;
/// A state file larger than this is corrupt.
pub const MAX_STATE: usize = 16 << 20;
/// Longest `dkim` line: `dkim `, two numbers of 20 digits, the fields in
/// xtext (3 octets per octet at worst), spaces and newline.
pub const MAX_DKIM_LINE: usize = 5 + 20 + 1 + 20 + 1 + 3 * crate::envelope::MAX_PREPEND + 1;
// Every message queue-inject takes (at most MAX_RCPT recipients) has a state
// that can be written and read back (issue 16, point 12), its DKIM signature
// fields too; store.rs sets a file with more recipients aside.
const _: () = assert!(MAGIC.len() + 1 + 25 + MAX_DKIM_LINE + crate::queue::inject::MAX_RCPT * MAX_LINE <= MAX_STATE);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Delivered,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rcpt {
    pub status: Status,
    pub notified: bool,
    pub delay_notified: bool,
    pub attempts: u32,
    /// Unix seconds of the next attempt (0: at once).
    pub next: u64,
    /// The last result's text (remote reply).
    pub text: String,
    /// Failed because queue-run gave up after the queue lifetime (`E`), not
    /// because the remote said no: `text` is the last temporary result.
    pub expired: bool,
}

impl Rcpt {
    pub fn new() -> Rcpt {
        Rcpt { status: Status::Pending, notified: false, delay_notified: false, attempts: 0, next: 0, text: String::new(), expired: false }
    }
    /// Record a result text, cut to `MAX_TEXT`.
    pub fn set_text(&mut self, text: &str) {
        self.text = cut_text(text);
    }
    /// Nothing more to do for this recipient.
    pub fn done(&self) -> bool {
        self.status != Status::Pending && self.notified
    }
}

impl Default for Rcpt {
    fn default() -> Self {
        Rcpt::new()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub ino: u64,
    pub rcpts: Vec<Rcpt>,
    /// The message's DKIM signature fields, once made (sign.rs).
    pub dkim: Option<Stored>,
}

impl State {
    /// A fresh state: every recipient pending, due at once.
    pub fn new(ino: u64, n: usize) -> State {
        State { ino, rcpts: vec![Rcpt::new(); n], dkim: None }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!("{MAGIC}\nino {}\n", self.ino);
        if let Some(d) = &self.dkim {
            s.push_str(&format!("dkim {}\n", d.encode()));
        }
        for r in &self.rcpts {
            let st = match r.status {
                Status::Pending => 'P',
                Status::Delivered => 'D',
                Status::Failed if r.expired => 'E',
                Status::Failed => 'F',
            };
            s.push_str(&format!(
                "r {st} {} {} {} {} {}\n",
                r.notified as u8,
                r.delay_notified as u8,
                r.attempts,
                r.next,
                xtext::encode(cut_text(&r.text).as_bytes())
            ));
        }
        s.into_bytes()
    }

    /// Parse a state file; `None` if it is malformed.
    pub fn parse(buf: &[u8]) -> Option<State> {
        if buf.len() > MAX_STATE {
            return None;
        }
        let s = std::str::from_utf8(buf).ok()?;
        let mut lines = s.strip_suffix('\n')?.split('\n');
        if lines.next()? != MAGIC {
            return None;
        }
        let ino = lines.next()?.strip_prefix("ino ")?.parse().ok()?;
        let mut rcpts = Vec::new();
        let mut dkim = None;
        for line in lines {
            if let Some(v) = line.strip_prefix("dkim ") {
                if dkim.is_some() || !rcpts.is_empty() {
                    return None;
                }
                dkim = Some(Stored::parse(v)?);
                continue;
            }
            let f: Vec<&str> = line.split(' ').collect();
            let [r, st, n, d, a, next, text] = f.as_slice() else { return None };
            if *r != "r" {
                return None;
            }
            let (status, expired) = match *st {
                "P" => (Status::Pending, false),
                "D" => (Status::Delivered, false),
                "F" => (Status::Failed, false),
                "E" => (Status::Failed, true),
                _ => return None,
            };
            rcpts.push(Rcpt {
                status,
                notified: flag(n)?,
                delay_notified: flag(d)?,
                attempts: a.parse().ok()?,
                next: next.parse().ok()?,
                text: cut_text(&String::from_utf8_lossy(&xtext::decode(text.as_bytes())?)),
                expired,
            });
        }
        Some(State { ino, rcpts, dkim })
    }
}

/// `text` if it is at most `MAX_TEXT` octets, else its first and last parts
/// around ` ... ` (cut on character boundaries).
pub fn cut_text(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    const GAP: &str = " ... ";
    let half = (MAX_TEXT - GAP.len()) / 2;
    let mut head = half;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - (MAX_TEXT - GAP.len() - head);
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}{GAP}{}", &text[..head], &text[tail..])
}

fn flag(s: &str) -> Option<bool> {
    match s {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut st = State::new(77, 3);
        st.rcpts[0].status = Status::Delivered;
        st.rcpts[0].notified = true;
        st.rcpts[1] = Rcpt {
            status: Status::Pending,
            notified: false,
            delay_notified: true,
            attempts: 4,
            next: 1700000000,
            text: "451 4.7.1 try later = soon".into(),
            expired: false,
        };
        st.rcpts[2].status = Status::Failed;
        st.rcpts[2].expired = true;
        st.rcpts[2].text = String::new();
        let enc = st.encode();
        assert_eq!(State::parse(&enc), Some(st.clone()));
        assert!(st.rcpts[0].done() && !st.rcpts[1].done() && !st.rcpts[2].done());
    }

    #[test]
    fn largest_legal_state_is_written_and_read_back() {
        // queue-inject's most recipients, each with the longest result text
        // a report gives (two records of 1000 characters, joined), all of it
        // octets that xtext triples, and the largest numbers.
        let n = crate::queue::inject::MAX_RCPT;
        let mut st = State::new(u64::MAX, n);
        let worst = format!("{}/{}", " ".repeat(1003), "=".repeat(1003));
        for r in &mut st.rcpts {
            *r = Rcpt { status: Status::Failed, notified: true, delay_notified: true, attempts: u32::MAX, next: u64::MAX, text: worst.clone(), expired: true };
        }
        // And the largest DKIM fields, all white space (tripled too).
        let fields = format!("X:{}\n", " ".repeat(crate::envelope::MAX_PREPEND - 3)).into_bytes();
        assert!(crate::envelope::valid_prepend(&fields));
        st.dkim = Some(Stored { time: u64::MAX, expires: u64::MAX, fields });
        let enc = st.encode();
        assert!(enc.len() <= MAX_STATE, "{} octets, over {MAX_STATE}", enc.len());
        let back = State::parse(&enc).expect("read back");
        assert_eq!(back.rcpts.len(), n);
        assert_eq!(back.rcpts[n - 1].attempts, u32::MAX);
        // The text is kept in part, both ends.
        let t = &back.rcpts[0].text;
        assert!(t.len() <= MAX_TEXT && t.starts_with("   ") && t.ends_with("==="), "{t:?}");
        assert_eq!(State::parse(&back.encode()), Some(back.clone()));
    }

    #[test]
    fn cut_texts() {
        assert_eq!(cut_text("short"), "short");
        let long = format!("{}{}", "\u{e9}".repeat(400), "x".repeat(400));
        let c = cut_text(&long);
        assert!(c.len() <= MAX_TEXT && c.starts_with('\u{e9}') && c.ends_with('x') && c.contains(" ... "), "{c}");
        assert_eq!(cut_text(&c), c);
    }

    #[test]
    fn bad() {
        for b in [
            &b""[..],
            b"queue-run-state 1\n",
            b"queue-run-state 1\nino x\n",
            b"queue-run-state 2\nino 1\n",
            b"queue-run-state 1\nino 1\nr X 0 0 0 0 \n",
            b"queue-run-state 1\nino 1\nr P 2 0 0 0 \n",
            b"queue-run-state 1\nino 1\nr P 0 0 0 0 a b\n",
            b"queue-run-state 1\nino 1\nr P 0 0 0 0 a",
            b"queue-run-state 1\nino 1\nr P 0 0 0 0 +G0\n",
        ] {
            assert_eq!(State::parse(b), None, "{:?}", String::from_utf8_lossy(b));
        }
        assert!(State::parse(b"queue-run-state 1\nino 1\nr P 0 0 0 0 \n").is_some());
    }

    #[test]
    fn dkim_line() {
        let mut st = State::new(9, 2);
        st.dkim = Some(Stored { time: 1700000000, expires: 0, fields: b"DKIM-Signature: v=1;\n\tb=xyz\n".to_vec() });
        let enc = st.encode();
        assert!(enc.starts_with(b"queue-run-state 1\nino 9\ndkim 1700000000 0 DKIM-Signature:+20v+3D1;+0A+09b+3Dxyz+0A\nr P"));
        assert_eq!(State::parse(&enc), Some(st.clone()));
        // Without one (older files), and the decision to send unsigned.
        assert_eq!(State::parse(b"queue-run-state 1\nino 9\nr P 0 0 0 0 \n").unwrap().dkim, None);
        let p = State::parse(b"queue-run-state 1\nino 9\ndkim 5 0 \nr P 0 0 0 0 \n").unwrap();
        assert_eq!(p.dkim, Some(Stored { time: 5, expires: 0, fields: vec![] }));
        for b in [
            &b"queue-run-state 1\nino 9\ndkim 5 0 \ndkim 5 0 \nr P 0 0 0 0 \n"[..], // twice
            b"queue-run-state 1\nino 9\nr P 0 0 0 0 \ndkim 5 0 \n",                // after the recipients
            b"queue-run-state 1\nino 9\ndkim 5 0 X:+201+0A+0Abody+0A\nr P 0 0 0 0 \n", // not header fields
            b"queue-run-state 1\nino 9\ndkim 5\nr P 0 0 0 0 \n",
        ] {
            assert_eq!(State::parse(b), None, "{:?}", String::from_utf8_lossy(b));
        }
    }
}
