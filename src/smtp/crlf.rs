//! The message as it goes on the wire (RFC 5321 2.3.8, 4.5.2): the queue's
//! LF line ends to CR LF, and for DATA a leading dot doubled. One streaming
//! encoder serves smtp-remote's DATA (`remote::message::Encoder`, which adds
//! the final `.`) and the DKIM signer and checker (`dkim::canon::LfToCrlf`,
//! without the dot-stuffing, which is SMTP framing and not part of the
//! message), so what is signed is byte for byte what is sent. Pure: no I/O
//! here.
//!
//! An LF not preceded by CR gets one, an existing CR LF is kept, a bare CR is
//! followed by an LF (RFC 5321 2.3.8: no bare CR on the wire), and `finish`
//! ends a partial last line. So the output has no bare CR and no bare LF.
//! Two flags of state, whatever the chunking.

/// Line ends to CR LF, and with `dot_stuffed` a leading dot doubled.
#[derive(Debug, Clone)]
pub struct LfToCrlf {
    at_line_start: bool,
    /// A CR was sent last: its line end is complete once the LF is sent,
    /// whatever octet comes next.
    prev_cr: bool,
    dot_stuff: bool,
}

impl Default for LfToCrlf {
    fn default() -> Self {
        LfToCrlf::new()
    }
}

impl LfToCrlf {
    /// Line ends only: the message as DKIM sees it.
    pub fn new() -> LfToCrlf {
        LfToCrlf { at_line_start: true, prev_cr: false, dot_stuff: false }
    }

    /// Line ends and dot-stuffing: the lines of DATA.
    pub fn dot_stuffed() -> LfToCrlf {
        LfToCrlf { dot_stuff: true, ..LfToCrlf::new() }
    }

    /// Append the converted form of `chunk` to `out`.
    pub fn convert(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + chunk.len() / 16 + 2);
        let mut rest = chunk;
        while let Some((&b, tail)) = rest.split_first() {
            if self.prev_cr {
                // CR LF as it was, or a bare CR made CR LF (RFC 5321 2.3.8).
                self.prev_cr = false;
                out.push(b'\n');
                self.at_line_start = true;
                if b == b'\n' {
                    rest = tail;
                    continue;
                }
            }
            match b {
                b'\r' => {
                    out.push(b'\r');
                    self.prev_cr = true;
                    self.at_line_start = false;
                    rest = tail;
                }
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                    rest = tail;
                }
                _ => {
                    // RFC 5321 4.5.2: a line starting with a dot gets another.
                    if self.dot_stuff && self.at_line_start && b == b'.' {
                        out.push(b'.');
                    }
                    let n = rest.iter().position(|&c| c == b'\r' || c == b'\n').unwrap_or(rest.len());
                    let (line, after) = rest.split_at(n);
                    out.extend_from_slice(line);
                    self.at_line_start = false;
                    rest = after;
                }
            }
        }
    }

    /// End a partial last line.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.prev_cr {
            out.push(b'\n');
        } else if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        self.at_line_start = true;
        self.prev_cr = false;
    }
}

/// The whole of `msg` converted, without dot-stuffing (tests, small messages).
pub fn lf_to_crlf(msg: &[u8]) -> Vec<u8> {
    let mut c = LfToCrlf::new();
    let mut out = Vec::new();
    c.convert(msg, &mut out);
    c.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuffed(msg: &[u8]) -> Vec<u8> {
        let mut c = LfToCrlf::dot_stuffed();
        let mut out = Vec::new();
        c.convert(msg, &mut out);
        c.finish(&mut out);
        out
    }

    #[test]
    fn lf_to_crlf_table() {
        // (input, line ends only, dot-stuffed too)
        let t: &[(&[u8], &[u8], &[u8])] = &[
            (b"", b"", b""),
            (b"a\n", b"a\r\n", b"a\r\n"),
            (b"a\r\n", b"a\r\n", b"a\r\n"),
            (b"a", b"a\r\n", b"a\r\n"),
            (b"a\r", b"a\r\n", b"a\r\n"),
            (b".\n", b".\r\n", b"..\r\n"),
            (b".", b".\r\n", b"..\r\n"),
            (b"a.b\n.c\n", b"a.b\r\n.c\r\n", b"a.b\r\n..c\r\n"),
            // A bare CR ends its line (RFC 5321 2.3.8), as smtp-remote sends it.
            (b"a\rb\n", b"a\r\nb\r\n", b"a\r\nb\r\n"),
            (b"a\r.b\n", b"a\r\n.b\r\n", b"a\r\n..b\r\n"),
            (b"\n\n", b"\r\n\r\n", b"\r\n\r\n"),
            (b"\r\r\n", b"\r\n\r\n", b"\r\n\r\n"),
            (b"\r", b"\r\n", b"\r\n"),
            (b"a\r\r", b"a\r\n\r\n", b"a\r\n\r\n"),
            (b"x\n\ry", b"x\r\n\r\ny\r\n", b"x\r\n\r\ny\r\n"),
        ];
        for (i, plain, dots) in t {
            assert_eq!(lf_to_crlf(i), plain.to_vec(), "{:?}", String::from_utf8_lossy(i));
            assert_eq!(stuffed(i), dots.to_vec(), "stuffed {:?}", String::from_utf8_lossy(i));
        }
    }

    #[test]
    fn every_single_cut() {
        let m: &[u8] = b" a \t b\r\n\r\n\rx \r\r\n.\r\n\n.\t\r\n\r\n.";
        for mk in [LfToCrlf::new, LfToCrlf::dot_stuffed] {
            let mut whole = Vec::new();
            let mut c = mk();
            c.convert(m, &mut whole);
            c.finish(&mut whole);
            for cut in 0..=m.len() {
                let mut c = mk();
                let mut out = Vec::new();
                c.convert(&m[..cut], &mut out);
                c.convert(&m[cut..], &mut out);
                c.finish(&mut out);
                assert_eq!(out, whole, "cut at {cut}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn lf_to_crlf_chunked_and_no_bare_lf(msg in proptest::collection::vec(proptest::sample::select(b"\r\na.".to_vec()), 0..60), cut in 0usize..60) {
            let cut = cut.min(msg.len());
            let whole = lf_to_crlf(&msg);
            let mut conv = LfToCrlf::new();
            let mut out = Vec::new();
            conv.convert(&msg[..cut], &mut out);
            conv.convert(&msg[cut..], &mut out);
            conv.finish(&mut out);
            proptest::prop_assert_eq!(&out, &whole);
            proptest::prop_assert!(!whole.windows(2).any(|w| (w[1] == b'\n') != (w[0] == b'\r')));
            proptest::prop_assert!(whole.last() != Some(&b'\r'));
            proptest::prop_assert!(whole.first() != Some(&b'\n'));
            proptest::prop_assert!(whole.is_empty() || whole.ends_with(b"\r\n"));
        }
    }
}
