//! auth-check's session-mode input (doc/PROTOCOLS.md 2, the framing
//! queue-inject reads): netstring frames taken from a buffer that the
//! caller fills, and the order they must come in (`I`? `E` `A`? `D`* then
//! `.` or `R`). Pure: the caller reads the fd; no I/O here.

use crate::envelope::{self, Attrs, Envelope};
use crate::netstring;
use std::fmt;
use std::ops::Range;

/// Largest `D` frame payload: the type octet and 65536 octets of message.
pub const MAX_DATA_FRAME: usize = 1 + 65536;
/// Largest `E` or `A` frame payload.
pub const MAX_META_FRAME: usize = 1 << 20;
/// Most recipients in one envelope, as queue-inject (more: refused, 31).
pub const MAX_RCPT: usize = 10000;
/// Longest `I` frame payload.
pub const MAX_ID: usize = 200;
/// The buffer's usual size: one whole `D` frame and its length prefix.
const FRAME_BUF: usize = MAX_DATA_FRAME + 16;

/// A violation of the framing: queue-inject answers `91 <reason>` and exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "protocol error: {}", self.0)
    }
}

fn error(msg: impl Into<String>) -> ProtocolError {
    ProtocolError(msg.into())
}

/// Netstring frames out of a buffer the caller fills: 64 KiB and a little,
/// grown only while an `E` or `A` frame larger than that is read.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder { buf: vec![0; FRAME_BUF], start: 0, end: 0 }
    }

    /// The next whole frame: its type octet and where the rest of its
    /// payload is (see `payload`); None when more input is needed.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Range<usize>)>, ProtocolError> {
        let pending = self.buf.get(self.start..self.end).unwrap_or_default();
        match netstring::parse(pending, MAX_META_FRAME) {
            Ok(Some((r, used))) => {
                if r.is_empty() {
                    return Err(error("empty frame"));
                }
                let (s, e) = (self.start + r.start, self.start + r.end);
                self.start += used;
                let kind = *self.buf.get(s).ok_or_else(|| error("empty frame"))?;
                if kind == b'D' && e - s > MAX_DATA_FRAME {
                    return Err(error("D frame longer than 65536 octets"));
                }
                Ok(Some((kind, s + 1..e)))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(error(e.to_string())),
        }
    }

    /// A payload `next_frame` pointed at (valid until the next `space`).
    pub fn payload(&self, r: Range<usize>) -> &[u8] {
        self.buf.get(r).unwrap_or_default()
    }

    /// Room for the next read, after the pending octets; grows the buffer
    /// (up to one whole meta frame) when a frame does not fit.
    pub fn space(&mut self) -> Result<&mut [u8], ProtocolError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grown = (self.buf.len() * 2).min(MAX_META_FRAME + 16);
            if grown <= self.buf.len() {
                return Err(error("frame too long"));
            }
            self.buf.resize(grown, 0);
        } else if self.buf.len() > FRAME_BUF && self.end <= FRAME_BUF {
            self.buf.truncate(FRAME_BUF);
            self.buf.shrink_to_fit();
        }
        Ok(self.buf.get_mut(self.end..).unwrap_or_default())
    }

    /// `n` octets were read into `space()`.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Octets of an incomplete frame are pending (EOF now is an error).
    pub fn has_partial(&self) -> bool {
        self.start < self.end
    }
}

/// What a frame means for the message in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `I`: the id proposed for the next message.
    Id(String),
    /// `E`: a message starts. Err: its envelope is refused (the exit code
    /// and reason), answered at its `.`; the session goes on.
    Begin(Result<Envelope, (i32, String)>),
    /// `A`: the message's attribute block.
    Attrs(Attrs),
    /// `D`: message octets (the payload the caller holds).
    Data,
    /// `.`: the message is complete.
    End,
    /// `R`: the message is abandoned.
    Reset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seq {
    Idle,
    Named,
    /// After `E`; whether `A` came.
    Meta { attrs: bool },
    Body,
}

/// The order of frames in a session, as queue-inject enforces it.
#[derive(Debug)]
pub struct Sequencer {
    seq: Seq,
}

impl Default for Sequencer {
    fn default() -> Self {
        Sequencer::new()
    }
}

impl Sequencer {
    pub fn new() -> Sequencer {
        Sequencer { seq: Seq::Idle }
    }

    /// Between messages (EOF here ends the session normally).
    pub fn is_idle(&self) -> bool {
        self.seq == Seq::Idle
    }

    /// One frame: its meaning, or the protocol error that ends the session.
    pub fn step(&mut self, kind: u8, payload: &[u8]) -> Result<Event, ProtocolError> {
        let (next, ev) = match (self.seq, kind) {
            (Seq::Idle, b'I') => match std::str::from_utf8(payload) {
                Ok(id) if id.len() <= MAX_ID => (Seq::Named, Event::Id(id.to_owned())),
                _ => return Err(error("bad I frame")),
            },
            (Seq::Idle | Seq::Named, b'E') => (Seq::Meta { attrs: false }, Event::Begin(envelope(payload)?)),
            (Seq::Named, _) => return Err(error("I frame not followed by E")),
            (Seq::Idle, _) => return Err(error("frame outside a message")),
            (Seq::Meta { attrs: false }, b'A') => match Attrs::parse(payload) {
                Some(a) => (Seq::Meta { attrs: true }, Event::Attrs(a)),
                None => return Err(error("bad attribute block")),
            },
            (Seq::Meta { .. } | Seq::Body, b'D') => (Seq::Body, Event::Data),
            (Seq::Meta { .. } | Seq::Body, b'.') => (Seq::Idle, Event::End),
            (Seq::Meta { .. } | Seq::Body, b'R') => (Seq::Idle, Event::Reset),
            (Seq::Meta { .. } | Seq::Body, _) => return Err(error("unexpected frame in a message")),
        };
        self.seq = next;
        Ok(ev)
    }
}

/// An `E` frame's envelope; an address too long or too many recipients
/// refuse the message only (as queue-inject: 11, 31), a malformed envelope
/// ends the session.
fn envelope(payload: &[u8]) -> Result<Result<Envelope, (i32, String)>, ProtocolError> {
    match Envelope::parse(payload, MAX_RCPT) {
        Ok(e) => Ok(Ok(e)),
        Err(e @ envelope::Error::AddressTooLong) => Ok(Err((crate::queue::EXIT_ADDR_TOO_LONG, e.to_string()))),
        Err(e @ envelope::Error::TooManyRecipients) => Ok(Err((crate::queue::EXIT_REFUSED, e.to_string()))),
        Err(e) => Err(error(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        netstring::encode(&[&[kind][..], payload].concat())
    }

    /// Decode `input` fed in pieces of `chunk`; the frames, or the error.
    fn decode(input: &[u8], chunk: usize) -> Result<Vec<(u8, Vec<u8>)>, ProtocolError> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut rest = input;
        loop {
            while let Some((k, r)) = d.next_frame()? {
                out.push((k, d.payload(r).to_vec()));
            }
            if rest.is_empty() {
                return if d.has_partial() { Err(error("eof")) } else { Ok(out) };
            }
            let space = d.space()?;
            let n = chunk.min(space.len()).min(rest.len());
            space[..n].copy_from_slice(&rest[..n]);
            d.filled(n);
            rest = &rest[n..];
        }
    }

    #[test]
    fn frames_in_any_pieces() {
        let big = vec![b'x'; 65536];
        let meta = vec![b'y'; 300_000];
        let input = [frame(b'E', b"Fa\0Tb\0\0"), frame(b'A', &meta), frame(b'D', &big), frame(b'.', b"")].concat();
        for chunk in [1, 7, 4096, 1 << 20] {
            let f = decode(&input, chunk).unwrap();
            assert_eq!(f.iter().map(|(k, p)| (*k, p.len())).collect::<Vec<_>>(), [(b'E', 7), (b'A', 300_000), (b'D', 65536), (b'.', 0)]);
        }
        let too_big = frame(b'D', &vec![b'x'; 65537]);
        assert!(decode(&too_big, 4096).is_err());
        assert!(decode(&frame(b'A', &vec![b'y'; MAX_META_FRAME]), 65536).is_err());
        assert!(decode(b"0:,", 10).is_err());
        assert!(decode(b"3:Dab;", 10).is_err());
        assert!(decode(b"3:Da", 10).is_err(), "EOF inside a frame");
    }

    #[test]
    fn order_table() {
        let env = b"Fa@b\0Tc@d\0\0";
        let run = |frames: &[&[u8]]| -> Vec<String> {
            let mut s = Sequencer::new();
            let mut out = Vec::new();
            for f in frames {
                let (k, p) = f.split_first().unwrap();
                match s.step(*k, p) {
                    Ok(Event::Id(id)) => out.push(format!("I{id}")),
                    Ok(Event::Begin(Ok(_))) => out.push("E".into()),
                    Ok(Event::Begin(Err((c, _)))) => out.push(format!("E{c}")),
                    Ok(Event::Attrs(_)) => out.push("A".into()),
                    Ok(Event::Data) => out.push("D".into()),
                    Ok(Event::End) => out.push(".".into()),
                    Ok(Event::Reset) => out.push("R".into()),
                    Err(_) => {
                        out.push("fatal".into());
                        break;
                    }
                }
            }
            out
        };
        let e = [&b"E"[..], env].concat();
        assert_eq!(run(&[b"I1.2.3", &e, b"ABODY=7BIT\n", b"Dx", b"Dy", b"."]), ["I1.2.3", "E", "A", "D", "D", "."]);
        assert_eq!(run(&[&e, b".", &e, b"Dx", b"R", &e, b"R"]), ["E", ".", "E", "D", "R", "E", "R"]);
        assert_eq!(run(&[b"Dx"]), ["fatal"]);
        assert_eq!(run(&[b"I1", b"Dx"]), ["I1", "fatal"]);
        assert_eq!(run(&[b"I\xff"]), ["fatal"]);
        assert_eq!(run(&[&e, b"A", b"A"]), ["E", "A", "fatal"]);
        assert_eq!(run(&[&e, b"Dx", b"A"]), ["E", "D", "fatal"]);
        assert_eq!(run(&[&e, b"Abad line"]), ["E", "fatal"]);
        assert_eq!(run(&[&e, b"Dx", &e]), ["E", "D", "fatal"]);
        assert_eq!(run(&[b"Ebad"]), ["fatal"]);
        let long = [&b"EF"[..], &vec![b'x'; 1004], b"\0Tc\0\0"].concat();
        assert_eq!(run(&[&long, b"Dx", b".", &e, b"."]), ["E11", "D", ".", "E", "."]);
    }
}
