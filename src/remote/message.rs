//! The message as SMTP DATA wants it (RFC 5321 4.5.2, 2.3.8): every line end
//! becomes CR LF (a bare LF from the queue gets its CR, an existing CR LF is
//! kept, and a bare CR, which RFC 5321 2.3.8 forbids on the wire, is sent as
//! CR LF too), a leading dot is doubled, a partial last line is ended, and the
//! final `.` CR LF is added. Works chunk by chunk in bounded memory; nothing
//! else is changed (no 8-bit conversion, no line wrapping), so a DKIM
//! signature made over the same conversion (`smtp::crlf::LfToCrlf`, which
//! both use) holds.
//! `Scan` looks at the same bytes first to learn what MAIL must declare: the
//! size (RFC 1870) and whether 8-bit octets appear (8BITMIME, RFC 6152) and
//! whether they appear in the header section (SMTPUTF8, RFC 6532). Pure.

use crate::smtp::crlf::LfToCrlf;

/// The header fields queue-run asks to have sent on top of the message (the
/// `PREPEND` attribute: its DKIM signatures, doc/PROTOCOLS.md section 1), in
/// LF form, checked: `Err` if the value is not whole header fields. They go
/// through the same `Encoder` first; `Scan::prepended` counts them in SIZE.
pub fn prepend(attrs: &crate::envelope::Attrs) -> Result<Vec<u8>, &'static str> {
    let v = attrs.get(crate::envelope::PREPEND).unwrap_or_default();
    if !crate::envelope::valid_prepend(v) {
        return Err("the PREPEND attribute is not a block of header fields");
    }
    Ok(v.to_vec())
}

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
}

impl Scan {
    pub fn new() -> Scan {
        Scan { in_header: true, ..Scan::default() }
    }

    /// Lines as `Encoder` sends them: CR, LF and CR LF each end one line of
    /// two octets' ending.
    pub fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if self.prev_cr {
                self.prev_cr = false;
                if b == b'\n' {
                    // The LF of a CR LF: the line ended at the CR.
                    continue;
                }
            }
            match b {
                b'\r' | b'\n' => {
                    self.size += 2;
                    // An empty line ends the header section.
                    if self.line_len == 0 {
                        self.in_header = false;
                    }
                    self.line_len = 0;
                    self.prev_cr = b == b'\r';
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
        }
    }

    /// The same scan with `fields` (whole header fields, ASCII, LF form, as
    /// `prepend` returns them) sent first: they add their CR LF size.
    pub fn prepended(&self, fields: &[u8]) -> Scan {
        let lfs = fields.iter().filter(|&&b| b == b'\n').count();
        Scan { size: self.size + (fields.len() + lfs) as u64, ..self.clone() }
    }

    /// Account for the CR LF that `Encoder::finish` adds to a partial last line.
    pub fn finish(&mut self) {
        if self.line_len > 0 {
            self.size += 2;
            self.line_len = 0;
        }
    }
}

/// Line ends to CR LF and dot-stuffing, streaming: the shared encoder
/// (`smtp::crlf`, the same one DKIM signs over) plus the final `.`.
#[derive(Debug)]
pub struct Encoder(LfToCrlf);

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder(LfToCrlf::dot_stuffed())
    }

    /// Append the encoded form of `chunk` to `out`.
    pub fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.0.convert(chunk, out);
    }

    /// End a partial last line, then the terminating `.` CR LF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.0.finish(out);
        out.extend_from_slice(b".\r\n");
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
            // RFC 5321 2.3.8: no bare CR on the wire; it ends a line.
            (b"a\rb\n", b"a\r\nb\r\n.\r\n"),
            (b"a\r", b"a\r\n.\r\n"),
            (b"\r\r\n", b"\r\n\r\n.\r\n"),
            (b"a\r.b\n", b"a\r\n..b\r\n.\r\n"),
            (b"\r", b"\r\n.\r\n"),
            (b"a\n\r", b"a\r\n\r\n.\r\n"),
            (b"\n\n", b"\r\n\r\n.\r\n"),
            (b"a.b\n", b"a.b\r\n.\r\n"),
        ];
        for (i, o) in t {
            assert_eq!(enc(&[i]), o.to_vec(), "{:?}", String::from_utf8_lossy(i));
        }
    }

    #[test]
    fn encoder_chunk_boundaries() {
        let m: &[u8] = b"Subject: x\r\n\n.a\r\n.\nend\r.\r\r\nx\r";
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
        // A bare CR is sent as CR LF: two octets, and a line end (here the
        // empty line that ends the header section).
        let s = scan(b"Subject: x\r\r\xc3\xa9\r");
        assert_eq!((s.size, s.eight_bit, s.header_eight_bit), (18, true, false));
        assert_eq!(enc(&[b"Subject: x\r\r\xc3\xa9\r"]), b"Subject: x\r\n\r\n\xc3\xa9\r\n.\r\n");
    }

    #[test]
    fn prepended_fields() {
        let mut a = crate::envelope::Attrs::default();
        assert_eq!(prepend(&a), Ok(Vec::new()));
        let fields = b"DKIM-Signature: v=1;\n\tb=x\n";
        a.push("PREPEND", fields);
        assert_eq!(prepend(&a).as_deref(), Ok(&fields[..]));
        let msg = b"Subject: x\n\nbody\n";
        let whole = [&fields[..], msg].concat();
        // Sent first through the same encoder: as if they were in the message.
        let mut e = Encoder::new();
        let mut out = Vec::new();
        e.encode(fields, &mut out);
        e.encode(msg, &mut out);
        e.finish(&mut out);
        assert_eq!(out, enc(&[&whole]));
        assert_eq!(scan(msg).prepended(fields), scan(&whole));
        let mut bad = crate::envelope::Attrs::default();
        bad.push("PREPEND", b"X: 1\n\nInjected body\n");
        assert!(prepend(&bad).is_err());
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

        /// Any octets, CR and LF in any order: no bare CR or LF on the wire,
        /// the size is the wire's without dot-stuffing, chunking changes nothing.
        #[test]
        fn line_ends_sizes_and_chunks(msg in proptest::collection::vec(proptest::sample::select(b"\r\n.a\xff".to_vec()), 0..60), cut in 0usize..60) {
            let cut = cut.min(msg.len());
            let wire = enc(&[&msg[..cut], &msg[cut..]]);
            proptest::prop_assert_eq!(&wire, &enc(&[&msg]));
            proptest::prop_assert!(!wire.windows(2).any(|w| (w[1] == b'\n') != (w[0] == b'\r')));
            proptest::prop_assert!(wire.first() != Some(&b'\n') && wire.last() == Some(&b'\n'));
            let stuffed = wire.windows(3).filter(|w| w == b"\n..").count() + wire.starts_with(b"..") as usize;
            let mut s = Scan::new();
            s.feed(&msg[..cut]);
            s.feed(&msg[cut..]);
            s.finish();
            proptest::prop_assert_eq!(s.size as usize + stuffed, wire.len() - 3);
        }
    }
}
