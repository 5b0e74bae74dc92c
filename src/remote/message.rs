//! The message as SMTP DATA wants it (RFC 5321 4.5.2, 2.3.8): every line end
//! becomes CR LF (a bare LF from the queue gets its CR, an existing CR LF is
//! kept), a leading dot is doubled, a partial last line is ended, and the
//! final `.` CR LF is added. Works chunk by chunk in bounded memory.
//! `Scan` looks at the same bytes first to learn what MAIL must declare: the
//! size (RFC 1870) and whether 8-bit octets appear (8BITMIME, RFC 6152) and
//! whether they appear in the header section (SMTPUTF8, RFC 6532). Pure.

/// What the message needs, learnt in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Size in octets with CR LF line ends (dot-stuffing not counted, as RFC 1870 4 allows).
    pub size: u64,
    /// An octet >= 0x80 somewhere.
    pub eight_bit: bool,
    /// An octet >= 0x80 in the header section (before the first empty line).
    pub header_eight_bit: bool,
    in_header: bool,
    line_len: u64,
    prev_cr: bool,
    started: bool,
}

impl Scan {
    pub fn new() -> Scan {
        Scan { in_header: true, ..Scan::default() }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.started |= !chunk.is_empty();
        for &b in chunk {
            match b {
                b'\n' => {
                    self.size += if self.prev_cr { 1 } else { 2 };
                    // An empty line (just LF or CR LF) ends the header section.
                    if self.line_len == 0 || (self.line_len == 1 && self.prev_cr) {
                        self.in_header = false;
                    }
                    self.line_len = 0;
                }
                _ => {
                    self.size += 1;
                    self.line_len += 1;
                    if b >= 0x80 {
                        self.eight_bit = true;
                        self.header_eight_bit |= self.in_header;
                    }
                }
            }
            self.prev_cr = b == b'\r';
        }
    }

    /// Account for the CR LF that `Encoder::finish` adds to a partial last line.
    pub fn finish(&mut self) {
        if self.line_len > 0 {
            self.size += 2;
            self.line_len = 0;
        }
    }
}

/// LF to CR LF and dot-stuffing, streaming.
#[derive(Debug)]
pub struct Encoder {
    at_line_start: bool,
    prev_cr: bool,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder { at_line_start: true, prev_cr: false }
    }

    /// Append the encoded form of `chunk` to `out`.
    pub fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + chunk.len() / 16 + 2);
        for &b in chunk {
            if self.at_line_start && b == b'.' {
                out.push(b'.');
            }
            if b == b'\n' {
                if !self.prev_cr {
                    out.push(b'\r');
                }
                out.push(b'\n');
                self.at_line_start = true;
            } else {
                out.push(b);
                self.at_line_start = false;
            }
            self.prev_cr = b == b'\r';
        }
    }

    /// End a partial last line, then the terminating `.` CR LF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            if !self.prev_cr {
                out.push(b'\r');
            }
            out.push(b'\n');
        }
        out.extend_from_slice(b".\r\n");
        self.at_line_start = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(chunks: &[&[u8]]) -> Vec<u8> {
        let mut e = Encoder::new();
        let mut out = Vec::new();
        for c in chunks {
            e.encode(c, &mut out);
        }
        e.finish(&mut out);
        out
    }

    fn scan(m: &[u8]) -> Scan {
        let mut s = Scan::new();
        s.feed(m);
        s.finish();
        s
    }

    #[test]
    fn encoder_table() {
        let t: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"a\n", b"a\r\n.\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b"a", b"a\r\n.\r\n"),
            (b".\n", b"..\r\n.\r\n"),
            (b"x\n.hidden\n..two\n", b"x\r\n..hidden\r\n...two\r\n.\r\n"),
            (b"a\rb\n", b"a\rb\r\n.\r\n"),
            (b"\n\n", b"\r\n\r\n.\r\n"),
            (b"a.b\n", b"a.b\r\n.\r\n"),
        ];
        for (i, o) in t {
            assert_eq!(enc(&[i]), o.to_vec(), "{:?}", String::from_utf8_lossy(i));
        }
    }

    #[test]
    fn encoder_chunk_boundaries() {
        let m: &[u8] = b"Subject: x\r\n\n.a\r\n.\nend";
        let whole = enc(&[m]);
        for cut in 0..m.len() {
            assert_eq!(enc(&[&m[..cut], &m[cut..]]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn scan_table() {
        let s = scan(b"Subject: hi\n\nbody\n");
        assert_eq!((s.size, s.eight_bit, s.header_eight_bit), (21, false, false));
        let s = scan(b"Subject: hi\r\n\r\nb\xc3\xa9\n");
        assert_eq!((s.size, s.eight_bit, s.header_eight_bit), (20, true, false));
        let s = scan(b"Subject: \xc3\xa9\n\nx");
        assert_eq!((s.size, s.eight_bit, s.header_eight_bit), (18, true, true));
        // The size is the length of the CR LF form without the final dot.
        let m = b"a\nb\r\n\nc";
        let e = enc(&[m]);
        assert_eq!(scan(m).size as usize, e.len() - 3);
    }

    /// What a server does with DATA: CR LF to LF, leading dot removed, up to ".".
    fn decode(wire: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in wire.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line == b"." {
                break;
            }
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
            out.push(b'\n');
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn round_trip(lines in proptest::collection::vec("[.a-z\\x80-\\xff ]{0,20}", 0..20), cut in 0usize..400) {
            let msg: Vec<u8> = lines.iter().flat_map(|l| l.bytes().chain(std::iter::once(b'\n'))).collect();
            let cut = cut.min(msg.len());
            let wire = enc(&[&msg[..cut], &msg[cut..]]);
            proptest::prop_assert_eq!(decode(&wire), msg.clone());
            let mut s = Scan::new();
            s.feed(&msg);
            s.finish();
            let stuffed = lines.iter().filter(|l| l.starts_with('.')).count() as u64;
            proptest::prop_assert_eq!(s.size + stuffed, wire.len() as u64 - 3);
            // No bare LF and no bare "." line before the end.
            proptest::prop_assert!(!wire.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        }
    }
}
