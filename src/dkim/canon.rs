//! DKIM canonicalization (RFC 6376 3.4): "simple" and "relaxed" for header
//! fields (3.4.1, 3.4.2) and for the body (3.4.3, 3.4.4), the body streamed
//! in chunks of any size into SHA-256 with bounded state (only pending empty
//! lines and white space are held back, as counts, never body bytes); the
//! queue's LF form is turned into the CR LF form smtp-remote transmits by
//! `smtp::crlf::LfToCrlf`, re-exported here. Pure: no I/O here.
//!
//! The input is the message as transmitted: lines end in CR LF. A CR not
//! followed by LF, and an LF not preceded by CR, are ordinary octets (they are
//! no line end; `LfToCrlf` never leaves either, but a verifier may meet them).

use std::collections::HashMap;

use ring::digest;

use super::header::Field;

/// A canonicalization algorithm (RFC 6376 3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Canon {
    Simple,
    Relaxed,
}

impl Canon {
    pub fn name(self) -> &'static str {
        match self {
            Canon::Simple => "simple",
            Canon::Relaxed => "relaxed",
        }
    }

    /// `simple` or `relaxed` (case-sensitive, as c= is).
    pub fn parse(s: &[u8]) -> Option<Canon> {
        match s {
            b"simple" => Some(Canon::Simple),
            b"relaxed" => Some(Canon::Relaxed),
            _ => None,
        }
    }
}

/// Append the canonical form of one header field (`raw`: the field as it
/// appears, name, colon, value with its folding, and its CR LF) to `out`.
/// RFC 6376 3.4.1: simple changes nothing. 3.4.2: relaxed lowercases the
/// name, unfolds, turns each run of WSP into one SP, drops WSP at the ends of
/// the value and around the colon, and ends the field with CR LF.
pub fn header_field(c: Canon, raw: &[u8], out: &mut Vec<u8>) {
    match c {
        Canon::Simple => out.extend_from_slice(raw),
        Canon::Relaxed => {
            let colon = raw.iter().position(|&b| b == b':').unwrap_or(raw.len());
            let (name, value) = raw.split_at(colon);
            let name = trim_wsp_end(name);
            out.extend(name.iter().map(u8::to_ascii_lowercase));
            out.push(b':');
            let value = value.get(1..).unwrap_or_default();
            let start = out.len();
            let mut wsp = false;
            let mut i = 0;
            while let Some(&b) = value.get(i) {
                i += 1;
                match b {
                    // Unfold: a CR LF pair goes, whatever follows it.
                    b'\r' if value.get(i) == Some(&b'\n') => i += 1,
                    b' ' | b'\t' => wsp = true,
                    _ => {
                        // WSP before the first octet of the value is dropped.
                        if wsp && out.len() > start {
                            out.push(b' ');
                        }
                        wsp = false;
                        out.push(b);
                    }
                }
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// The input of the header hash (RFC 6376 3.7, 5.4.2): the fields named by
/// h=, each name taking the next instance from the bottom up (a name with no
/// instance left adds nothing: that is how oversigning works), canonicalized,
/// then the DKIM-Signature field itself (`sig_blanked`: with the b= value
/// deleted) canonicalized without its final CR LF.
pub fn header_hash_input<N: AsRef<[u8]>>(c: Canon, fields: &[Field<'_>], names: &[N], sig_blanked: &[u8]) -> Vec<u8> {
    let mut by_name: HashMap<Vec<u8>, Vec<&[u8]>> = HashMap::new();
    for f in fields {
        by_name.entry(f.name().to_ascii_lowercase()).or_default().push(f.raw);
    }
    let mut out = Vec::new();
    for n in names {
        if let Some(raw) = by_name.get_mut(&n.as_ref().to_ascii_lowercase()).and_then(Vec::pop) {
            header_field(c, raw, &mut out);
        }
    }
    let raw = sig_blanked.strip_suffix(b"\r\n").unwrap_or(sig_blanked);
    header_field(c, raw, &mut out);
    if c == Canon::Relaxed {
        out.truncate(out.len().saturating_sub(2));
    }
    out
}

/// The streaming body canonicalizer (RFC 6376 3.4.3, 3.4.4). Feed the body
/// (everything after the empty line that ends the header section) in chunks;
/// canonical octets come out through the `out` callback.
#[derive(Debug, Clone)]
pub struct BodyCanon {
    canon: Canon,
    /// A CR was the last octet seen: a line end if LF follows.
    pending_cr: bool,
    /// Relaxed: a run of WSP was seen in this line, not yet written (it
    /// becomes one SP if more of the line follows, nothing at its end).
    pending_wsp: bool,
    /// Empty lines seen and not yet written: they are written only when
    /// something follows them (both algorithms ignore empty lines at the end).
    empty_lines: u64,
    /// The current line has had an octet written.
    line_started: bool,
    /// Anything written at all (simple: an empty body becomes one CR LF).
    written: bool,
}

impl BodyCanon {
    pub fn new(canon: Canon) -> BodyCanon {
        BodyCanon { canon, pending_cr: false, pending_wsp: false, empty_lines: 0, line_started: false, written: false }
    }

    pub fn canon(&self) -> Canon {
        self.canon
    }

    /// Canonicalize the next chunk of the body.
    pub fn feed(&mut self, mut data: &[u8], out: &mut impl FnMut(&[u8])) {
        let relaxed = self.canon == Canon::Relaxed;
        while let Some((&b, rest)) = data.split_first() {
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    self.end_line(out);
                    data = rest;
                    continue;
                }
                // The CR was no line end: an ordinary octet.
                self.content(b"\r", out);
            }
            // The longest run of octets that need no decision goes out as it is.
            let run = data.iter().position(|&b| b == b'\r' || (relaxed && (b == b' ' || b == b'\t')));
            match run {
                Some(0) => {
                    if b == b'\r' {
                        self.pending_cr = true;
                    } else {
                        self.pending_wsp = true;
                    }
                    data = rest;
                }
                Some(n) => {
                    let (now, later) = data.split_at(n);
                    self.content(now, out);
                    data = later;
                }
                None => {
                    self.content(data, out);
                    data = &[];
                }
            }
        }
    }

    /// The end of the body: a partial last line gets its CR LF, empty lines at
    /// the end are dropped; simple turns an empty body into one CR LF (3.4.3),
    /// relaxed leaves it empty (3.4.4 adds the CR LF to a non-empty body only).
    pub fn finish(&mut self, out: &mut impl FnMut(&[u8])) {
        if self.pending_cr {
            self.pending_cr = false;
            self.content(b"\r", out);
        }
        // A last line without CR LF: its trailing WSP goes (relaxed), then CR LF.
        self.pending_wsp = false;
        if self.line_started {
            out(b"\r\n");
            self.line_started = false;
            self.written = true;
        }
        self.empty_lines = 0;
        if self.canon == Canon::Simple && !self.written {
            out(b"\r\n");
            self.written = true;
        }
    }

    fn content(&mut self, bytes: &[u8], out: &mut impl FnMut(&[u8])) {
        const CRLFS: &[u8] = b"\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n";
        while self.empty_lines > 0 {
            let n = self.empty_lines.min((CRLFS.len() / 2) as u64);
            out(CRLFS.get(..2 * n as usize).unwrap_or_default());
            self.empty_lines -= n;
        }
        if self.pending_wsp {
            out(b" ");
            self.pending_wsp = false;
        }
        out(bytes);
        self.line_started = true;
        self.written = true;
    }

    fn end_line(&mut self, out: &mut impl FnMut(&[u8])) {
        // Relaxed: WSP at the end of a line is ignored (3.4.4).
        self.pending_wsp = false;
        if self.line_started {
            out(b"\r\n");
            self.line_started = false;
        } else {
            self.empty_lines += 1;
        }
    }
}

/// The hash of a canonical body and its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyHash {
    /// SHA-256 of the canonical body, or of its first `limit` octets.
    pub digest: Vec<u8>,
    /// Octets of the canonical body (all of them, whatever the limit).
    pub length: u64,
}

/// A body canonicalizer feeding SHA-256, optionally hashing only the first
/// `limit` octets of the canonical body (a verifier honouring l=).
pub struct BodyHasher {
    canon: BodyCanon,
    ctx: digest::Context,
    limit: Option<u64>,
    length: u64,
}

impl BodyHasher {
    pub fn new(canon: Canon, limit: Option<u64>) -> BodyHasher {
        BodyHasher { canon: BodyCanon::new(canon), ctx: digest::Context::new(&digest::SHA256), limit, length: 0 }
    }

    pub fn canon(&self) -> Canon {
        self.canon.canon()
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    pub fn update(&mut self, chunk: &[u8]) {
        let (ctx, limit, length) = (&mut self.ctx, self.limit, &mut self.length);
        self.canon.feed(chunk, &mut |b| hash_capped(ctx, limit, length, b));
    }

    pub fn finish(mut self) -> BodyHash {
        let (ctx, limit, length) = (&mut self.ctx, self.limit, &mut self.length);
        self.canon.finish(&mut |b| hash_capped(ctx, limit, length, b));
        BodyHash { digest: self.ctx.finish().as_ref().to_vec(), length: self.length }
    }
}

fn hash_capped(ctx: &mut digest::Context, limit: Option<u64>, length: &mut u64, b: &[u8]) {
    let take = match limit {
        Some(l) => (l.saturating_sub(*length)).min(b.len() as u64) as usize,
        None => b.len(),
    };
    ctx.update(b.get(..take).unwrap_or_default());
    *length = length.saturating_add(b.len() as u64);
}

/// The canonical form of a whole body (tests, small messages).
pub fn body_canonical(c: Canon, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bc = BodyCanon::new(c);
    bc.feed(body, &mut |b| out.extend_from_slice(b));
    bc.finish(&mut |b| out.extend_from_slice(b));
    out
}

/// The queue's LF form to the form smtp-remote transmits, without the
/// dot-stuffing (SMTP framing, not part of the message): the one encoder
/// smtp-remote uses for DATA too, so what is signed is what is sent.
pub use crate::smtp::crlf::{lf_to_crlf, LfToCrlf};

fn trim_wsp_end(s: &[u8]) -> &[u8] {
    let end = s.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(0, |e| e + 1);
    s.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn relaxed_header(raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        header_field(Canon::Relaxed, raw, &mut out);
        out
    }

    #[test]
    fn header_relaxed_table() {
        let t: &[(&[u8], &[u8])] = &[
            // RFC 6376 3.4.5's example.
            (b"A: X\r\n", b"a:X\r\n"),
            (b"B : Y\t\r\n\tZ  \r\n", b"b:Y Z\r\n"),
            (b"Subject:  two  words \r\n", b"subject:two words\r\n"),
            (b"X:\r\n", b"x:\r\n"),
            (b"X: \t \r\n \r\n", b"x:\r\n"),
            (b"To: a,\r\n\tb\r\n", b"to:a, b\r\n"),
            // Folding with no white space before it: the CR LF simply goes.
            (b"X: a\r\n b\r\n", b"x:a b\r\n"),
            // A bare CR or LF is no fold: kept.
            (b"X: a\rb\r\n", b"x:a\rb\r\n"),
            (b"X: a\nb\r\n", b"x:a\nb\r\n"),
            // Colons in the value stay; only the first one separates.
            (b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n", b"date:Mon, 1 Jan 2024 10:00:00 +0000\r\n"),
            // An unterminated last field still ends with CR LF.
            (b"X: y", b"x:y\r\n"),
            (b"MiXeD-Case: \xc3\xa9 8bit\r\n", b"mixed-case:\xc3\xa9 8bit\r\n"),
        ];
        for (i, o) in t {
            assert_eq!(relaxed_header(i), o.to_vec(), "{:?}", String::from_utf8_lossy(i));
        }
        let mut out = Vec::new();
        header_field(Canon::Simple, b"B : Y\t\r\n\tZ  \r\n", &mut out);
        assert_eq!(out, b"B : Y\t\r\n\tZ  \r\n");
    }

    #[test]
    fn body_table() {
        // (input, simple, relaxed)
        let t: &[(&[u8], &[u8], &[u8])] = &[
            // RFC 6376 3.4.5's example body.
            (b" C \r\nD \t E\r\n\r\n\r\n", b" C \r\nD \t E\r\n", b" C\r\nD E\r\n"),
            // Empty body: simple is one CR LF, relaxed nothing.
            (b"", b"\r\n", b""),
            (b"\r\n", b"\r\n", b""),
            (b"\r\n\r\n\r\n", b"\r\n", b""),
            // Only white space: relaxed sees empty lines.
            (b"  \r\n\t\r\n", b"  \r\n\t\r\n", b""),
            (b" \t ", b" \t \r\n", b""),
            // No final CR LF: one is added.
            (b"abc", b"abc\r\n", b"abc\r\n"),
            (b"abc  ", b"abc  \r\n", b"abc\r\n"),
            (b"a\r\n\r\nb", b"a\r\n\r\nb\r\n", b"a\r\n\r\nb\r\n"),
            // Empty lines in the middle stay, at the end go.
            (b"a\r\n\r\n\r\nb\r\n\r\n", b"a\r\n\r\n\r\nb\r\n", b"a\r\n\r\n\r\nb\r\n"),
            (b"a\r\n \r\nb\r\n", b"a\r\n \r\nb\r\n", b"a\r\n\r\nb\r\n"),
            // Leading white space is one SP in relaxed, not removed.
            (b"\t\tx\r\n", b"\t\tx\r\n", b" x\r\n"),
            // Bare CR and bare LF are ordinary octets.
            (b"a\rb\r\n", b"a\rb\r\n", b"a\rb\r\n"),
            (b"a \r\r\n", b"a \r\r\n", b"a \r\r\n"),
            (b"a\nb\r\n", b"a\nb\r\n", b"a\nb\r\n"),
            (b"a\r", b"a\r\r\n", b"a\r\r\n"),
            (b"\r", b"\r\r\n", b"\r\r\n"),
            (b"\n", b"\n\r\n", b"\n\r\n"),
            (b"a\r\n\r", b"a\r\n\r\r\n", b"a\r\n\r\r\n"),
            (b"a\r\n\r\n\r", b"a\r\n\r\n\r\r\n", b"a\r\n\r\n\r\r\n"),
            (b"x \r\n", b"x \r\n", b"x\r\n"),
            (b"x\t \t y \r\n", b"x\t \t y \r\n", b"x y\r\n"),
        ];
        for (i, s, r) in t {
            assert_eq!(body_canonical(Canon::Simple, i), s.to_vec(), "simple {:?}", String::from_utf8_lossy(i));
            assert_eq!(body_canonical(Canon::Relaxed, i), r.to_vec(), "relaxed {:?}", String::from_utf8_lossy(i));
        }
    }

    /// RFC 6376 3.4.4/3.4.3 hashes known from other implementations: the
    /// SHA-256 of an empty relaxed body and of a simple "\r\n" body.
    #[test]
    fn empty_body_hashes() {
        use base64::Engine;
        let b64 = |h: BodyHash| base64::engine::general_purpose::STANDARD.encode(h.digest);
        let h = BodyHasher::new(Canon::Relaxed, None).finish();
        assert_eq!(b64(h), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        let h = BodyHasher::new(Canon::Simple, None).finish();
        assert_eq!(h.length, 2);
        assert_eq!(b64(h), "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=");
    }

    #[test]
    fn limit_hashes_a_prefix_and_counts_all() {
        let mut h = BodyHasher::new(Canon::Simple, Some(3));
        h.update(b"abcdef\r\n");
        let got = h.finish();
        assert_eq!(got.length, 8);
        assert_eq!(got.digest, digest::digest(&digest::SHA256, b"abc").as_ref());
        let mut h = BodyHasher::new(Canon::Simple, Some(0));
        h.update(b"x");
        assert_eq!(h.finish().digest, digest::digest(&digest::SHA256, b"").as_ref());
    }

    #[test]
    fn many_empty_lines_are_counted_not_kept() {
        let mut bc = BodyCanon::new(Canon::Relaxed);
        let mut n = 0usize;
        let blanks = b"\r\n \r\n\t\r\n".repeat(10_000);
        bc.feed(&blanks, &mut |b| n += b.len());
        assert_eq!(n, 0);
        assert_eq!(bc.empty_lines, 30_000);
        let mut out = Vec::new();
        bc.feed(b"x", &mut |b| out.extend_from_slice(b));
        bc.finish(&mut |b| out.extend_from_slice(b));
        assert_eq!(out.len(), 60_000 + 3);
    }

    fn chunked(c: Canon, body: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut bc = BodyCanon::new(c);
        let mut at = 0;
        for &cut in cuts {
            let cut = cut.clamp(at, body.len());
            bc.feed(&body[at..cut], &mut |b| out.extend_from_slice(b));
            at = cut;
        }
        bc.feed(&body[at..], &mut |b| out.extend_from_slice(b));
        bc.finish(&mut |b| out.extend_from_slice(b));
        out
    }

    #[test]
    fn every_single_cut() {
        let body: &[u8] = b" a \t b\r\n\r\n\rx \r\r\n \r\n\n\t\r\n\r\n";
        for c in [Canon::Simple, Canon::Relaxed] {
            let whole = body_canonical(c, body);
            for cut in 0..=body.len() {
                assert_eq!(chunked(c, body, &[cut]), whole, "{c:?} cut at {cut}");
            }
        }
    }

    /// A slow, obviously right model: split into CR LF lines, apply 3.4.3/3.4.4.
    fn model(c: Canon, body: &[u8]) -> Vec<u8> {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut cur = Vec::new();
        let mut i = 0;
        while i < body.len() {
            if body[i] == b'\r' && body.get(i + 1) == Some(&b'\n') {
                lines.push(std::mem::take(&mut cur));
                i += 2;
            } else {
                cur.push(body[i]);
                i += 1;
            }
        }
        if !cur.is_empty() {
            lines.push(cur);
        }
        if c == Canon::Relaxed {
            for l in lines.iter_mut() {
                let mut o = Vec::new();
                let mut ws = false;
                for &b in l.iter() {
                    if b == b' ' || b == b'\t' {
                        ws = true;
                    } else {
                        if ws {
                            o.push(b' ');
                        }
                        ws = false;
                        o.push(b);
                    }
                }
                *l = o;
            }
        }
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let mut out: Vec<u8> = lines.iter().flat_map(|l| l.iter().copied().chain(*b"\r\n")).collect();
        if c == Canon::Simple && out.is_empty() {
            out = b"\r\n".to_vec();
        }
        out
    }

    proptest! {
        #[test]
        fn chunked_equals_whole_equals_model(body in proptest::collection::vec(prop::sample::select(b" \t\r\nab\x80".to_vec()), 0..80),
                                              cuts in proptest::collection::vec(0usize..80, 0..6)) {
            let mut cuts = cuts;
            cuts.sort();
            for c in [Canon::Simple, Canon::Relaxed] {
                let whole = body_canonical(c, &body);
                prop_assert_eq!(&whole, &model(c, &body));
                prop_assert_eq!(chunked(c, &body, &cuts), whole.clone());
                // Hashing the stream equals hashing the canonical form.
                let mut h = BodyHasher::new(c, None);
                let mut at = 0;
                for &cut in &cuts {
                    let cut = cut.clamp(at, body.len());
                    h.update(&body[at..cut]);
                    at = cut;
                }
                h.update(&body[at..]);
                let got = h.finish();
                prop_assert_eq!(got.length, whole.len() as u64);
                prop_assert_eq!(got.digest, digest::digest(&digest::SHA256, &whole).as_ref().to_vec());
            }
        }
    }
}
