//! Message decoders: DATA (dot-unstuffing, CRLF -> LF, only CRLF.CRLF ends it)
//! and BDAT chunks (RFC 3030; CRLF -> LF across chunk boundaries). Streaming:
//! input in any pieces, output appended to the caller's buffer, state of a
//! few bytes. A bare CR or bare LF never ends or splits a message: it makes
//! the message fail (sticky error) while the decoder keeps looking for the
//! real end (https://cr.yp.to/docs/smtplf.html; SMTP smuggling,
//! CVE-2023-51764). Lines of any length are passed through. Also the hop
//! counter, which counts the trace fields of the decoded header section
//! (loop detection, RFC 5321 6.3). Pure: no I/O here.

/// Why a message is refused after its end has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataError {
    /// More octets than the size limit.
    TooBig,
    /// An LF not preceded by CR.
    BareLf,
    /// A CR not followed by LF.
    BareCr,
    /// More `Received:` and `Delivered-To:` fields than the hop limit.
    TooManyHops,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF, or at the start of DATA).
    LineStart,
    /// A `.` at the start of a line.
    Dot,
    /// `.` CR at the start of a line: one LF more ends the message.
    DotCr,
    /// Inside a line.
    InLine,
    /// After a CR inside a line.
    Cr,
}

/// Size and sticky error shared by both decoders.
#[derive(Debug, Clone)]
struct Meter {
    size: u64,
    limit: u64,
    error: Option<DataError>,
}

impl Meter {
    fn new(limit: u64) -> Meter {
        Meter { size: 0, limit, error: None }
    }

    fn fail(&mut self, e: DataError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Count `n` message octets (CRLF counts 2); refuse past the limit.
    fn count(&mut self, n: u64) {
        self.size = self.size.saturating_add(n);
        if self.limit > 0 && self.size > self.limit {
            self.fail(DataError::TooBig);
        }
    }

    /// Append `b` to `out` unless the message has already failed.
    fn emit(&self, b: &[u8], out: &mut Vec<u8>) {
        if self.error.is_none() {
            out.extend_from_slice(b);
        }
    }
}

/// The DATA decoder. Output has LF line ends and no stuffing dots.
#[derive(Debug, Clone)]
pub struct DotDecoder {
    state: State,
    m: Meter,
}

impl DotDecoder {
    /// `limit`: the most message octets accepted (0: no limit).
    pub fn new(limit: u64) -> DotDecoder {
        DotDecoder { state: State::LineStart, m: Meter::new(limit) }
    }

    /// Decode from `input`, appending to `out` (nothing once the message has
    /// failed). Returns the number of octets used and whether CRLF.CRLF was
    /// reached; octets after the end are the next commands.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::InLine {
                // Fast path: copy up to the next CR or LF in one piece.
                let rest = &input[i..];
                let n = rest.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(rest.len());
                self.m.count(n as u64);
                self.m.emit(&rest[..n], out);
                i += n;
                if i >= input.len() {
                    break;
                }
            }
            let b = input[i];
            i += 1;
            if self.step(b, out) {
                return (i, true);
            }
        }
        (i, false)
    }

    /// Octets of the message so far (CRLF as 2, stuffing dots not counted).
    pub fn size(&self) -> u64 {
        self.m.size
    }

    /// The sticky error, if the message has failed.
    pub fn error(&self) -> Option<DataError> {
        self.m.error
    }

    /// One octet outside the fast path. True at the end of the message.
    fn step(&mut self, b: u8, out: &mut Vec<u8>) -> bool {
        use State::*;
        match (self.state, b) {
            (LineStart, b'.') => self.state = Dot,
            (LineStart | InLine | Dot, b'\r') => self.state = if self.state == Dot { DotCr } else { Cr },
            (_, b'\n') if self.state != Cr && self.state != DotCr => {
                // RFC 5321 2.3.8: LF alone is not a line end.
                self.m.fail(DataError::BareLf);
                self.m.count(1);
                self.state = InLine;
            }
            (DotCr, b'\n') => return true,
            (Cr, b'\n') => {
                self.m.count(2);
                self.m.emit(b"\n", out);
                self.state = LineStart;
            }
            (Cr | DotCr, _) => {
                self.m.fail(DataError::BareCr);
                self.m.count(1);
                self.state = if b == b'\r' { Cr } else { InLine };
                if b != b'\r' {
                    self.m.count(1);
                    self.m.emit(&[b], out);
                }
            }
            // RFC 5321 4.5.2: the first dot of a line is removed.
            (LineStart | Dot | InLine, _) => {
                self.m.count(1);
                self.m.emit(&[b], out);
                self.state = InLine;
            }
        }
        false
    }
}

/// The BDAT decoder: the chunks of one message, CRLF -> LF (also when a
/// chunk ends between CR and LF); bare CR or LF fails the message.
#[derive(Debug, Clone)]
pub struct ChunkDecoder {
    cr: bool,
    m: Meter,
}

impl ChunkDecoder {
    pub fn new(limit: u64) -> ChunkDecoder {
        ChunkDecoder { cr: false, m: Meter::new(limit) }
    }

    /// Decode chunk octets (any part of a chunk), appending to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut rest = input;
        while !rest.is_empty() {
            if self.cr {
                self.cr = false;
                if rest[0] == b'\n' {
                    self.m.count(2);
                    self.m.emit(b"\n", out);
                    rest = &rest[1..];
                    continue;
                }
                self.m.fail(DataError::BareCr);
                self.m.count(1);
            }
            let n = rest.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(rest.len());
            self.m.count(n as u64);
            self.m.emit(&rest[..n], out);
            match rest.get(n) {
                Some(b'\r') => self.cr = true,
                Some(_) => {
                    self.m.fail(DataError::BareLf);
                    self.m.count(1);
                }
                None => {}
            }
            rest = rest.get(n + 1..).unwrap_or(&[]);
        }
    }

    /// The last chunk is complete: a CR left hanging is a bare CR.
    pub fn finish(&mut self) {
        if self.cr {
            self.cr = false;
            self.m.fail(DataError::BareCr);
            self.m.count(1);
        }
    }

    pub fn size(&self) -> u64 {
        self.m.size
    }

    pub fn error(&self) -> Option<DataError> {
        self.m.error
    }
}

/// Default hop limit (MAXHOPS): RFC 5321 6.3 asks for at least 100.
pub const DEFAULT_MAXHOPS: u32 = 100;

/// Counts the `Received:` and `Delivered-To:` fields of a message's header
/// section, fed the decoded message (LF line ends) in pieces of any size:
/// RFC 5321 6.3's loop detection. The header ends at the first empty line
/// (RFC 5322 2.1); continuation lines (starting with a space or tab) are not
/// fields. Field names are compared without regard to case, with white space
/// allowed before the colon (RFC 5322 4.5.3, obsolete syntax); unlike qmail,
/// which counts every line starting with `received` or `delivered`, names
/// that merely begin so (`Received-SPF:`) are not hops. State: one field
/// name prefix of at most 16 octets.
#[derive(Debug, Clone)]
pub struct HopCounter {
    limit: u32,
    hops: u32,
    /// Still in the header section.
    in_header: bool,
    /// Octets of the current line seen so far (saturating).
    pos: usize,
    /// The current line's name so far, lower case; `None` once the line is
    /// known not to be a counted field (or has been counted).
    name: Option<([u8; NAME_MAX], usize)>,
}

const NAME_MAX: usize = 16;
const TRACE_NAMES: [&[u8]; 2] = [b"received", b"delivered-to"];

impl HopCounter {
    /// `limit`: the most trace fields accepted (0: no limit).
    pub fn new(limit: u32) -> HopCounter {
        HopCounter { limit, hops: 0, in_header: true, pos: 0, name: Some(([0; NAME_MAX], 0)) }
    }

    /// Count the trace fields in the next piece of the decoded message.
    pub fn feed(&mut self, data: &[u8]) {
        for &b in data {
            if !self.in_header {
                return;
            }
            if b == b'\n' {
                if self.pos == 0 {
                    self.in_header = false; // the empty line ends the header
                }
                self.pos = 0;
                self.name = Some(([0; NAME_MAX], 0));
                continue;
            }
            self.pos = self.pos.saturating_add(1);
            let Some((buf, len)) = &mut self.name else { continue };
            if b == b':' {
                let name = buf.get(..*len).unwrap_or_default().trim_ascii_end();
                if TRACE_NAMES.contains(&name) {
                    self.hops = self.hops.saturating_add(1);
                }
                self.name = None;
            } else if *len < NAME_MAX && (b.is_ascii_graphic() || ((b == b' ' || b == b'\t') && *len > 0)) {
                buf[*len] = b.to_ascii_lowercase();
                *len += 1;
            } else {
                self.name = None; // a continuation line, or too long a name
            }
        }
    }

    /// The trace fields counted so far.
    pub fn hops(&self) -> u32 {
        self.hops
    }

    /// `TooManyHops` once the count is past the limit.
    pub fn error(&self) -> Option<DataError> {
        (self.limit > 0 && self.hops > self.limit).then_some(DataError::TooManyHops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feed `input` whole and one octet at a time; both must agree.
    fn run(input: &[u8], limit: u64) -> (Vec<u8>, Option<usize>, Option<DataError>) {
        let mut d = DotDecoder::new(limit);
        let mut out = Vec::new();
        let (n, done) = d.feed(input, &mut out);
        let whole = (out, done.then_some(n), d.error());
        let mut d = DotDecoder::new(limit);
        let mut out = Vec::new();
        let mut end = None;
        for (i, b) in input.iter().enumerate() {
            let (n, done) = d.feed(std::slice::from_ref(b), &mut out);
            assert_eq!(n, 1);
            if done {
                end = Some(i + 1);
                break;
            }
        }
        // Once the message has failed its output is discarded: compare it only before.
        assert_eq!((end, d.error()), (whole.1, whole.2), "split feeding differs");
        if whole.2.is_none() {
            assert_eq!(out, whole.0, "split feeding differs");
        }
        whole
    }

    #[test]
    fn table() {
        type Row<'a> = (&'a [u8], &'a [u8], Option<usize>, Option<DataError>);
        let t: &[Row] = &[
            (b".\r\n", b"", Some(3), None),
            (b"a\r\n.\r\n", b"a\n", Some(6), None),
            (b"a\r\n.\r\nMAIL", b"a\n", Some(6), None),
            (b"..x\r\n.\r\n", b".x\n", Some(8), None),
            (b".x\r\n.\r\n", b"x\n", Some(7), None),
            (b"a\r\n..\r\n.\r\n", b"a\n.\n", Some(10), None),
            (b"\r\n.\r\n", b"\n", Some(5), None),
            (b"a\r\nb", b"a\nb", None, None),
            // Smuggling vectors: none of these ends the message; each fails it.
            (b"a\n.\n", b"a", None, Some(DataError::BareLf)),
            (b"a\r.\r", b"a", None, Some(DataError::BareCr)),
            (b"a\n.\r\n", b"a", None, Some(DataError::BareLf)),
            (b"a\r\n.\n", b"a\n", None, Some(DataError::BareLf)),
            (b"a\r\n.\rX", b"a\n", None, Some(DataError::BareCr)),
            (b"a\rb\r\n", b"a", None, Some(DataError::BareCr)),
            (b"a\nb\r\n", b"a", None, Some(DataError::BareLf)),
            // ... and the real end after them still ends it.
            (b"a\n.\nb\r\n.\r\n", b"a", Some(10), Some(DataError::BareLf)),
            (b"a\r.\r\r\n.\r\n", b"a", Some(9), Some(DataError::BareCr)),
            (b"a\n.\r\n.\r\n", b"a", Some(8), Some(DataError::BareLf)),
            (b"a\r\r\n.\r\n", b"a", Some(7), Some(DataError::BareCr)),
        ];
        for (input, out, end, err) in t {
            let got = run(input, 0);
            assert_eq!(got, (out.to_vec(), *end, *err), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn size_limit() {
        assert_eq!(run(b"abcd\r\n.\r\n", 6).2, None);
        let (_, end, err) = run(b"abcde\r\n.\r\n", 6);
        assert_eq!((end, err), (Some(10), Some(DataError::TooBig)));
        let mut d = DotDecoder::new(0);
        d.feed(b"..ab\r\n", &mut Vec::new());
        assert_eq!(d.size(), 5);
    }

    #[test]
    fn long_lines_pass() {
        let mut msg = vec![b'x'; 100_000];
        msg.extend_from_slice(b"\r\n.\r\n");
        let (out, end, err) = run(&msg, 0);
        assert_eq!((out.len(), end, err), (100_001, Some(100_005), None));
    }

    #[test]
    fn chunks() {
        let mut c = ChunkDecoder::new(0);
        let mut out = Vec::new();
        c.feed(b"a\r", &mut out);
        c.feed(b"\nb\r\n", &mut out);
        c.finish();
        assert_eq!((out, c.error(), c.size()), (b"a\nb\n".to_vec(), None, 6));
        for bad in [&b"a\nb"[..], b"a\rb", b"a\r"] {
            let mut c = ChunkDecoder::new(0);
            c.feed(bad, &mut Vec::new());
            c.finish();
            assert!(c.error().is_some(), "{bad:?}");
        }
        let mut c = ChunkDecoder::new(3);
        c.feed(b"abcd", &mut Vec::new());
        assert_eq!(c.error(), Some(DataError::TooBig));
    }

    fn hops(msg: &[u8], limit: u32) -> (u32, Option<DataError>) {
        let mut whole = HopCounter::new(limit);
        whole.feed(msg);
        let mut split = HopCounter::new(limit);
        for b in msg {
            split.feed(std::slice::from_ref(b));
        }
        assert_eq!((whole.hops(), whole.error()), (split.hops(), split.error()), "split feeding differs");
        (whole.hops(), whole.error())
    }

    #[test]
    fn hop_counter() {
        let t: &[(&[u8], u32)] = &[
            (b"", 0),
            (b"Received: from a\n\tby b\nReceived: x\nSubject: y\n\nbody\n", 2),
            (b"received:x\nRECEIVED :x\nDelivered-To: a@b\ndelivered-to\t:a\n\n", 4),
            // Not trace fields: other names, continuation lines, the body.
            (b"Received-SPF: pass\nX-Received: y\nSubject: Received: z\n Received: w\n\tReceived: v\n\n", 0),
            (b"Subject: a\n\nReceived: in the body\n", 0),
            (b"\nReceived: after an empty first line\n", 0),
            (b"Delivered: x\nDelivered-To-Me: y\nReceivedfrom: z\nReceived\n", 0),
            // A message with no body: every line is header.
            (b"Received: a\nReceived: b", 2),
        ];
        for (msg, n) in t {
            assert_eq!(hops(msg, 0).0, *n, "{:?}", String::from_utf8_lossy(msg));
        }
        let many = |n: usize| b"Received: from x by y\n".repeat(n);
        assert_eq!(hops(&many(100), DEFAULT_MAXHOPS), (100, None));
        assert_eq!(hops(&many(101), DEFAULT_MAXHOPS), (101, Some(DataError::TooManyHops)));
        assert_eq!(hops(&many(101), 0), (101, None));
        // A long line costs no memory.
        let mut long = vec![b'x'; 100_000];
        long.extend_from_slice(b": y\nReceived: z\n\n");
        assert_eq!(hops(&long, 0).0, 1);
    }

    proptest! {
        #[test]
        fn hop_counter_split_agrees(input in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b':'), Just(b' '), Just(b'r'), any::<u8>()], 0..200)) {
            let _ = hops(&input, 3);
        }

        #[test]
        fn never_panics_and_split_agrees(input in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()], 0..200), limit in 0u64..50) {
            let _ = run(&input, limit);
        }

        #[test]
        fn clean_messages_round_trip(lines in proptest::collection::vec("[ -~]{0,30}", 0..10)) {
            let mut wire = Vec::new();
            let mut want = Vec::new();
            for l in &lines {
                if l.starts_with('.') { wire.push(b'.'); }
                wire.extend_from_slice(l.as_bytes());
                wire.extend_from_slice(b"\r\n");
                want.extend_from_slice(l.as_bytes());
                want.push(b'\n');
            }
            wire.extend_from_slice(b".\r\n");
            let (out, end, err) = run(&wire, 0);
            prop_assert_eq!(out, want);
            prop_assert_eq!(end, Some(wire.len()));
            prop_assert_eq!(err, None);
        }
    }
}
