//! The header filter of auth-check: streams a message in the queue's LF
//! form and removes from its header section every Authentication-Results
//! field that carries our authserv-id (RFC 8601 5: one that arrives from
//! outside is a forgery). Everything else passes byte for byte, whatever
//! the chunking. Pure: bytes in, bytes out, no I/O here.
//!
//! A line of the header section ends in LF; a line that is empty or holds
//! only CR ends the section (the same place `dkim::header::HeaderReader`
//! finds in the CR LF form). A field whose name is Authentication-Results
//! (any case, white space allowed before the colon, RFC 5322 4.5.8) is held
//! until its last continuation line has been seen, then judged by
//! `authres::is_ours`. One longer than MAX_FIELD (or whose name runs on in
//! white space that long) is removed unread: no real field is that long,
//! and one we cannot read is one we cannot vouch for.

use super::authres;

/// The longest Authentication-Results field held for judging.
pub const MAX_FIELD: usize = 64 * 1024;

const NAME: &[u8] = b"authentication-results";

#[derive(Debug, Clone)]
pub struct HeaderFilter {
    ours: String,
    mode: Mode,
    /// The line start being judged, or the whole candidate field.
    held: Vec<u8>,
    /// The candidate field grew past MAX_FIELD: it is dropped.
    overflow: bool,
    removed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// At the start of a header line, nothing of it seen yet.
    LineStart,
    /// Reading the start of a line until it is known whether it begins an
    /// Authentication-Results field (bytes kept in `held`).
    Judging,
    /// Inside an Authentication-Results field (all of it kept in `held`).
    Candidate,
    /// At the start of a line while a candidate field is held: a
    /// continuation line goes on with it, anything else ends it.
    CandidateLineStart,
    /// Inside any other field (or a line that is none): passed on.
    Pass,
    /// At the start of a line after a passed field.
    PassLineStart,
    /// The body: passed on.
    Body,
}

impl HeaderFilter {
    /// A filter removing fields whose authserv-id is `ours`.
    pub fn new(ours: &str) -> HeaderFilter {
        HeaderFilter { ours: ours.to_string(), mode: Mode::LineStart, held: Vec::new(), overflow: false, removed: 0 }
    }

    /// How many fields were removed.
    pub fn removed(&self) -> usize {
        self.removed
    }

    /// The next piece of the message; what passes is appended to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.mode == Mode::Body {
                out.extend_from_slice(rest);
                return;
            }
            if self.mode == Mode::Pass {
                // Stream to the end of the line in one piece.
                match rest.iter().position(|&b| b == b'\n') {
                    Some(n) => {
                        out.extend_from_slice(rest.get(..=n).unwrap_or_default());
                        rest = rest.get(n + 1..).unwrap_or_default();
                        self.mode = Mode::PassLineStart;
                    }
                    None => {
                        out.extend_from_slice(rest);
                        return;
                    }
                }
                continue;
            }
            let Some((&b, after)) = rest.split_first() else { return };
            rest = after;
            self.byte(b, out);
        }
    }

    /// The end of the message: a field still held is judged.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.mode {
            Mode::Candidate | Mode::CandidateLineStart => self.judge(out),
            Mode::Judging => out.append(&mut self.held),
            _ => {}
        }
        self.mode = Mode::Body;
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.mode {
            Mode::LineStart | Mode::PassLineStart => {
                if matches!(b, b' ' | b'\t') {
                    // A continuation (or, first in the message, a line that
                    // is no field): passed on with what came before.
                    out.push(b);
                    self.mode = Mode::Pass;
                } else {
                    self.mode = Mode::Judging;
                    self.judging(b, out);
                }
            }
            Mode::CandidateLineStart => {
                if matches!(b, b' ' | b'\t') {
                    self.hold(b);
                    self.mode = Mode::Candidate;
                } else {
                    self.judge(out);
                    self.mode = Mode::Judging;
                    self.judging(b, out);
                }
            }
            Mode::Judging => self.judging(b, out),
            Mode::Candidate => {
                self.hold(b);
                if b == b'\n' {
                    self.mode = Mode::CandidateLineStart;
                }
            }
            Mode::Pass | Mode::Body => out.push(b),
        }
    }

    /// One more octet of a line start: still possibly our field's name,
    /// certainly it, certainly not, or the empty line.
    fn judging(&mut self, b: u8, out: &mut Vec<u8>) {
        self.held.push(b);
        if b == b'\n' {
            let empty = self.held.len() == 1 || self.held == b"\r\n";
            out.append(&mut self.held);
            self.mode = if empty { Mode::Body } else { Mode::PassLineStart };
            return;
        }
        if self.held == b"\r" {
            return; // perhaps the empty line
        }
        match name_state(&self.held) {
            NameState::Maybe if self.held.len() < MAX_FIELD => {}
            NameState::Field => self.mode = Mode::Candidate,
            // Our field's name and no end of white space in sight: not
            // readable, so not passed on either.
            NameState::Maybe => {
                self.overflow = true;
                self.mode = Mode::Candidate;
            }
            NameState::Not => {
                out.append(&mut self.held);
                self.mode = Mode::Pass;
            }
        }
    }

    fn hold(&mut self, b: u8) {
        if self.held.len() < MAX_FIELD {
            self.held.push(b);
        } else {
            self.overflow = true;
        }
    }

    /// The held candidate field has ended: pass it on or remove it.
    fn judge(&mut self, out: &mut Vec<u8>) {
        if self.overflow || authres::is_ours(&self.held, &self.ours) {
            self.removed += 1;
            self.held.clear();
        } else {
            out.append(&mut self.held);
        }
        self.overflow = false;
    }
}

enum NameState {
    /// Could still be `Authentication-Results [WSP] :`.
    Maybe,
    /// It is: the colon has been seen.
    Field,
    Not,
}

fn name_state(line: &[u8]) -> NameState {
    let n = line.len().min(NAME.len());
    let (head, tail) = line.split_at(n);
    if !head.eq_ignore_ascii_case(NAME.get(..n).unwrap_or_default()) {
        return NameState::Not;
    }
    if tail.is_empty() {
        return NameState::Maybe;
    }
    let (last, wsp) = tail.split_last().unwrap_or((&b' ', &[]));
    if !wsp.iter().all(|&c| c == b' ' || c == b'\t') {
        return NameState::Not;
    }
    match last {
        b':' => NameState::Field,
        b' ' | b'\t' => NameState::Maybe,
        _ => NameState::Not,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], chunk: usize) -> (Vec<u8>, usize) {
        let mut f = HeaderFilter::new("mx.example.org");
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            f.feed(c, &mut out);
        }
        f.finish(&mut out);
        (out, f.removed())
    }

    #[test]
    fn forged_fields_go_others_stay() {
        let table: &[(&str, &str, usize)] = &[
            ("Subject: x\n\nbody\n", "Subject: x\n\nbody\n", 0),
            (
                "Authentication-Results: mx.example.org; spf=pass\nSubject: x\n\nbody\n",
                "Subject: x\n\nbody\n",
                1,
            ),
            (
                "Received: a\nauthentication-results : (c) MX.Example.Org.;\n\tdkim=pass\n  header.d=x\nTo: y\n\n",
                "Received: a\nTo: y\n\n",
                1,
            ),
            (
                "Authentication-Results: other.example; spf=pass\nAuthentication-Results: mx.example.org; none\n\n",
                "Authentication-Results: other.example; spf=pass\n\n",
                1,
            ),
            // Another field whose name only starts alike.
            ("Authentication-Results-X: mx.example.org; x\n\n", "Authentication-Results-X: mx.example.org; x\n\n", 0),
            ("X-Authentication-Results: mx.example.org; x\n\n", "X-Authentication-Results: mx.example.org; x\n\n", 0),
            // In the body it is text, not a field.
            ("Subject: x\n\nAuthentication-Results: mx.example.org; spf=pass\n", "Subject: x\n\nAuthentication-Results: mx.example.org; spf=pass\n", 0),
            // CR LF lines, and the CR-only empty line ends the header too.
            (
                "Subject: x\r\nAuthentication-Results: mx.example.org; none\r\n\r\nAuthentication-Results: mx.example.org; none\r\n",
                "Subject: x\r\n\r\nAuthentication-Results: mx.example.org; none\r\n",
                1,
            ),
            // The last field of a message with no body and no final newline.
            ("Subject: x\nAuthentication-Results: mx.example.org; none", "Subject: x\n", 1),
            ("Subject: x\nAuthentication-Results: elsewhere; none", "Subject: x\nAuthentication-Results: elsewhere; none", 0),
            // A line that is no field, and a message starting with white space.
            ("From someone\n Authentication-Results: mx.example.org\n\n", "From someone\n Authentication-Results: mx.example.org\n\n", 0),
            ("Authentication-Results", "Authentication-Results", 0),
            ("", "", 0),
        ];
        for (input, want, n) in table {
            for chunk in [1, 2, 3, 7, 1000] {
                let (out, removed) = run(input.as_bytes(), chunk);
                assert_eq!(String::from_utf8_lossy(&out), *want, "{input:?} in chunks of {chunk}");
                assert_eq!(removed, *n, "{input:?}");
            }
        }
    }

    #[test]
    fn an_overlong_field_is_removed_and_long_lines_pass() {
        let long = format!("Authentication-Results: other.example; x={}\nSubject: y\n\nb\n", "a".repeat(MAX_FIELD));
        let (out, n) = run(long.as_bytes(), 4096);
        assert_eq!((out, n), (b"Subject: y\n\nb\n".to_vec(), 1));
        let line = format!("X-Long: {}\n\nb\n", "a".repeat(3 * MAX_FIELD));
        assert_eq!(run(line.as_bytes(), 5000).0, line.as_bytes());
        // White space before the colon is bounded too.
        let wsp = format!("Authentication-Results{}: mx.example.org\nTo: x\n\n", " ".repeat(MAX_FIELD));
        assert_eq!(run(wsp.as_bytes(), 999), (b"To: x\n\n".to_vec(), 1));
    }

    proptest::proptest! {
        /// Any chunking gives the same output; the output is the input less
        /// whole lines; no field of ours is left in the output's header.
        #[test]
        fn chunking_does_not_matter(
            lines in proptest::collection::vec(proptest::sample::select(vec![
                "Authentication-Results: mx.example.org; spf=pass\n",
                "Authentication-Results: other.example; spf=pass\n",
                "AUTHENTICATION-RESULTS:mx.example.org;\n",
                "\tdkim=pass\n", " x\n", "Subject: s\n", "\n", "\r\n", "body\n", "Authentication-Results", ":", "\r",
            ]), 0..20),
            chunk in 1usize..40,
        ) {
            let input: String = lines.concat();
            let (whole, n) = run(input.as_bytes(), usize::MAX);
            let (pieces, m) = run(input.as_bytes(), chunk);
            proptest::prop_assert_eq!(&whole, &pieces);
            proptest::prop_assert_eq!(n, m);
            // Run again: nothing more to remove.
            let (again, k) = run(&whole, chunk);
            proptest::prop_assert_eq!(&again, &whole);
            proptest::prop_assert_eq!(k, 0);
        }
    }
}
