//! Per-recipient delivery state of one message, as queue-run keeps it in
//! `QUEUE_DIR/state/<id>` (queue-run(8)). Encoder and bounded parser; pure.
//!
//! ```text
//! queue-run-state 1
//! ino <inode of new/<id>>            ties the state to that very file
//! r <P|D|F> <notified 0|1> <delayed 0|1> <attempts> <next attempt> <xtext text>
//! ```
//! An optional `dkim <signed at> <expires> <xtext fields>` line (after `ino`,
//! at most one; older files have none) keeps the DKIM-Signature fields made
//! for the message, so that every destination and retry sends the same ones
//! (`signtable::Stored`).
//! One `r` line per recipient, in envelope order. `P` pending, `D` delivered,
//! `F` failed for good; `notified`: the DSN owed for that final status was
//! queued (or none was owed); `delayed`: a delay DSN was queued.

use super::signtable::Stored;
use crate::xtext;

pub const MAGIC: &str = "queue-run-state 1";
/// A state file larger than this is corrupt.
pub const MAX_STATE: usize = 16 << 20;

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
}

impl Rcpt {
    pub fn new() -> Rcpt {
        Rcpt { status: Status::Pending, notified: false, delay_notified: false, attempts: 0, next: 0, text: String::new() }
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
                Status::Failed => 'F',
            };
            s.push_str(&format!(
                "r {st} {} {} {} {} {}\n",
                r.notified as u8,
                r.delay_notified as u8,
                r.attempts,
                r.next,
                xtext::encode(r.text.as_bytes())
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
            let status = match *st {
                "P" => Status::Pending,
                "D" => Status::Delivered,
                "F" => Status::Failed,
                _ => return None,
            };
            rcpts.push(Rcpt {
                status,
                notified: flag(n)?,
                delay_notified: flag(d)?,
                attempts: a.parse().ok()?,
                next: next.parse().ok()?,
                text: String::from_utf8_lossy(&xtext::decode(text.as_bytes())?).into_owned(),
            });
        }
        Some(State { ino, rcpts, dkim })
    }
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
        };
        st.rcpts[2].status = Status::Failed;
        st.rcpts[2].text = String::new();
        let enc = st.encode();
        assert_eq!(State::parse(&enc), Some(st.clone()));
        assert!(st.rcpts[0].done() && !st.rcpts[1].done() && !st.rcpts[2].done());
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
