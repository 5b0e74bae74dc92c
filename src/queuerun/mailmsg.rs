//! sendmail's pure parts: its command line, the input filter (CRLF to LF,
//! the lone-dot end of input unless -i), the header scan (Date, Message-ID,
//! From present? To/Cc/Bcc addresses for -t; Bcc removed), address lists.
//! No I/O here.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// sendmail's exit codes (sysexits.h).
pub const EX_USAGE: i32 = 64;
pub const EX_DATAERR: i32 = 65;
pub const EX_OSERR: i32 = 71;
pub const EX_IOERR: i32 = 74;
pub const EX_TEMPFAIL: i32 = 75;

/// Largest header scanned; beyond it the rest is passed on as it is.
pub const MAX_HEADER: usize = 1 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opts {
    /// -f / -r: envelope sender.
    pub sender: Option<Vec<u8>>,
    /// -F: full name for a From: header we add.
    pub name: Option<String>,
    /// -t: recipients from To/Cc/Bcc too.
    pub from_headers: bool,
    /// -i / -oi: a lone dot does not end the input.
    pub ignore_dots: bool,
    pub recipients: Vec<Vec<u8>>,
    /// -N, -R, -V, -B: DSN NOTIFY, RET, ENVID, BODY.
    pub notify: Option<String>,
    pub ret: Option<String>,
    pub envid: Option<String>,
    pub body: Option<String>,
    /// Flags accepted and ignored (reported by the caller).
    pub ignored: Vec<String>,
}

/// Parse sendmail's arguments (without argv[0]).
pub fn parse_args(args: &[OsString]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut i = 0;
    let mut done = false;
    while i < args.len() {
        let a = args[i].as_bytes();
        i += 1;
        if done || !a.starts_with(b"-") || a == b"-" {
            o.recipients.push(a.to_vec());
            continue;
        }
        if a == b"--" {
            done = true;
            continue;
        }
        let flag = a[1];
        let rest = &a[2..];
        // Flags with a value: attached (-fuser) or the next argument (-f user).
        let value = |i: &mut usize| -> Result<Vec<u8>, String> {
            if !rest.is_empty() {
                return Ok(rest.to_vec());
            }
            let v = args.get(*i).ok_or_else(|| format!("option -{} needs a value", flag as char))?;
            *i += 1;
            Ok(v.as_bytes().to_vec())
        };
        let text = |v: Vec<u8>| String::from_utf8(v).map_err(|_| "option value is not UTF-8".to_string());
        match flag {
            b'f' | b'r' => o.sender = Some(strip_angles(&value(&mut i)?)),
            b'F' => o.name = Some(text(value(&mut i)?)?),
            b't' if rest.is_empty() => o.from_headers = true,
            b'i' if rest.is_empty() => o.ignore_dots = true,
            b'o' if rest == b"i" => o.ignore_dots = true,
            b'o' => o.ignored.push(String::from_utf8_lossy(a).into_owned()),
            b'N' => o.notify = Some(text(value(&mut i)?)?.to_ascii_uppercase()),
            b'R' => o.ret = Some(text(value(&mut i)?)?.to_ascii_uppercase()),
            b'V' => o.envid = Some(text(value(&mut i)?)?),
            b'B' => o.body = Some(text(value(&mut i)?)?.to_ascii_uppercase()),
            b'b' if rest == b"m" => {}
            b'b' => return Err(format!("mode -b{} is not supported (only -bm)", String::from_utf8_lossy(rest))),
            b'v' | b'm' | b'e' | b'd' | b'U' | b'n' | b'x' | b'q' => o.ignored.push(String::from_utf8_lossy(a).into_owned()),
            b'h' | b'L' | b'O' | b'X' | b'C' | b'p' => {
                value(&mut i)?;
                o.ignored.push(String::from_utf8_lossy(a).into_owned());
            }
            _ => return Err(format!("unknown option {}", String::from_utf8_lossy(a))),
        }
    }
    if let Some(n) = &o.notify {
        let ok = n == "NEVER" || n.split(',').all(|w| matches!(w, "SUCCESS" | "FAILURE" | "DELAY"));
        if !ok {
            return Err(format!("-N {n}: not NEVER or a list of SUCCESS, FAILURE, DELAY"));
        }
    }
    if let Some(r) = &o.ret {
        if r != "FULL" && r != "HDRS" {
            return Err(format!("-R {r}: not FULL or HDRS"));
        }
    }
    if let Some(b) = &o.body {
        if b != "7BIT" && b != "8BITMIME" {
            return Err(format!("-B {b}: not 7BIT or 8BITMIME"));
        }
    }
    Ok(o)
}

fn strip_angles(a: &[u8]) -> Vec<u8> {
    let t = a.trim_ascii();
    t.strip_prefix(b"<").and_then(|x| x.strip_suffix(b">")).unwrap_or(t).to_vec()
}

/// The input filter: CRLF becomes LF (a bare CR stays), and unless
/// `ignore_dots`, a line holding only `.` ends the input (sendmail's rule).
#[derive(Debug, Clone)]
pub struct Filter {
    ignore_dots: bool,
    at_start: bool,
    held: Vec<u8>,
    pub ended: bool,
}

impl Filter {
    pub fn new(ignore_dots: bool) -> Filter {
        Filter { ignore_dots, at_start: true, held: Vec::new(), ended: false }
    }

    /// Filter `input` into `out`; after the end line, input is dropped.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if self.ended {
                return;
            }
            match self.held.as_slice() {
                b"\r" => {
                    self.held.clear();
                    if b == b'\n' {
                        out.push(b'\n');
                        self.at_start = true;
                        continue;
                    }
                    out.push(b'\r');
                    self.at_start = false;
                }
                b"." | b".\r" => {
                    if b == b'\n' {
                        self.ended = true;
                        return;
                    }
                    if b == b'\r' && self.held == b"." {
                        self.held.push(b'\r');
                        continue;
                    }
                    out.append(&mut self.held);
                    self.at_start = false;
                }
                _ => {}
            }
            if b == b'\r' {
                self.held.push(b'\r');
            } else if b == b'.' && self.at_start && !self.ignore_dots {
                self.held.push(b'.');
            } else {
                out.push(b);
                self.at_start = b == b'\n';
            }
        }
    }

    /// At EOF: what was held back.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.ended {
            out.append(&mut self.held);
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderScan {
    pub has_date: bool,
    pub has_message_id: bool,
    pub has_from: bool,
    /// Addresses in To, Cc and Bcc (for -t).
    pub rcpts: Vec<Vec<u8>>,
    /// The header to pass on (Bcc removed), LF line ends, without the empty line.
    pub kept: Vec<u8>,
    /// Where the message text after the header starts in the input.
    pub body_start: usize,
    /// The header ended with an empty line (false: none, or body right after).
    pub had_blank: bool,
}

/// Scan the header at the start of `msg` (LF line ends). The header is the
/// leading run of field lines (and their continuations); a line that is
/// neither ends it, as does the empty line.
pub fn scan_header(msg: &[u8]) -> HeaderScan {
    let mut s = HeaderScan::default();
    let mut pos = 0;
    let mut field: Vec<u8> = Vec::new();
    let flush = |field: &mut Vec<u8>, s: &mut HeaderScan| {
        if field.is_empty() {
            return;
        }
        let colon = field.iter().position(|&b| b == b':').unwrap_or(0);
        let name = field[..colon].trim_ascii().to_ascii_lowercase();
        let value = &field[colon + 1..];
        match name.as_slice() {
            b"date" => s.has_date = true,
            b"message-id" => s.has_message_id = true,
            b"from" => s.has_from = true,
            b"to" | b"cc" | b"bcc" => s.rcpts.extend(addresses(value)),
            _ => {}
        }
        if name != b"bcc" {
            s.kept.extend_from_slice(field);
        }
        field.clear();
    };
    while pos < msg.len() {
        let end = msg[pos..].iter().position(|&b| b == b'\n').map_or(msg.len(), |e| pos + e + 1);
        let line = &msg[pos..end];
        if line == b"\n" {
            s.had_blank = true;
            pos = end;
            break;
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            if field.is_empty() {
                break; // a continuation with nothing to continue: body
            }
            field.extend_from_slice(line);
        } else if is_field(line) {
            flush(&mut field, &mut s);
            field.extend_from_slice(line);
        } else {
            break;
        }
        if !line.ends_with(b"\n") {
            field.push(b'\n');
        }
        pos = end;
    }
    flush(&mut field, &mut s);
    s.body_start = pos;
    s
}

/// `name:` with name made of printable ASCII except colon (RFC 5322 2.2).
fn is_field(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        Some(c) if c > 0 => line[..c].iter().all(|&b| (33..=126).contains(&b)),
        _ => false,
    }
}

/// Addresses of an RFC 5322 address list (`a@b, Name <c@d>, "x, y" <e@f>,
/// group: g@h;`), comments dropped. Bounded by the input's size.
pub fn addresses(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut angle: Option<Vec<u8>> = None;
    let (mut in_quote, mut in_angle, mut depth, mut esc) = (false, false, 0usize, false);
    let mut push = |cur: &mut Vec<u8>, angle: &mut Option<Vec<u8>>| {
        let a = match angle.take() {
            Some(a) => a,
            None => cur.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect(),
        };
        let a = a.trim_ascii().to_vec();
        if !a.is_empty() {
            out.push(a);
        }
        cur.clear();
    };
    for &b in value {
        if esc {
            esc = false;
            if depth == 0 {
                cur.push(b);
            }
            continue;
        }
        match b {
            b'\\' => {
                esc = true;
                if depth == 0 {
                    cur.push(b);
                }
            }
            b'(' if !in_quote => depth += 1,
            b')' if !in_quote && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            b'"' => {
                in_quote = !in_quote;
                cur.push(b);
            }
            b'<' if !in_quote => {
                in_angle = true;
                cur.clear();
            }
            b'>' if in_angle => {
                in_angle = false;
                angle = Some(std::mem::take(&mut cur));
            }
            b':' if !in_quote && !in_angle => cur.clear(), // group name
            b',' | b';' if !in_quote && !in_angle => push(&mut cur, &mut angle),
            _ if angle.is_some() => {} // display text after <...>
            _ => cur.push(b),
        }
    }
    push(&mut cur, &mut angle);
    out
}

/// `user` becomes `user@host`; other addresses stay.
pub fn qualify(addr: &[u8], host: &str) -> Vec<u8> {
    if addr.contains(&b'@') || addr.is_empty() {
        addr.to_vec()
    } else {
        [addr, b"@", host.as_bytes()].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Opts, String> {
        parse_args(&a.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn options() {
        let o = args(&["-oi", "-f", "<me@x>", "-Fme too", "-odi", "-oem", "a@b", "c"]).unwrap();
        assert_eq!(o.sender, Some(b"me@x".to_vec()));
        assert_eq!(o.name.as_deref(), Some("me too"));
        assert!(o.ignore_dots && !o.from_headers);
        assert_eq!(o.recipients, vec![b"a@b".to_vec(), b"c".to_vec()]);
        assert_eq!(o.ignored, vec!["-odi", "-oem"]);
        let o = args(&["-t", "-i", "-rx@y", "-N", "success,failure", "-R", "hdrs", "--", "-weird@x"]).unwrap();
        assert!(o.from_headers && o.ignore_dots);
        assert_eq!(o.sender, Some(b"x@y".to_vec()));
        assert_eq!(o.notify.as_deref(), Some("SUCCESS,FAILURE"));
        assert_eq!(o.recipients, vec![b"-weird@x".to_vec()]);
        assert!(args(&["-f"]).is_err());
        assert!(args(&["-bs"]).is_err());
        assert!(args(&["-Q"]).is_err());
        assert!(args(&["-N", "sometimes"]).is_err());
        assert!(args(&["-bm", "-v", "a@b"]).is_ok());
        assert_eq!(args(&["-f", ""]).unwrap().sender, Some(vec![]));
    }

    fn filter(ignore: bool, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut f = Filter::new(ignore);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut out);
        }
        f.finish(&mut out);
        (out, f.ended)
    }

    #[test]
    fn input_filter() {
        assert_eq!(filter(false, &[b"a\r\nb\r", b"\nc"]), (b"a\nb\nc".to_vec(), false));
        assert_eq!(filter(false, &[b"a\n.\nafter\n"]), (b"a\n".to_vec(), true));
        assert_eq!(filter(false, &[b"a\r\n.", b"\r", b"\nafter"]), (b"a\n".to_vec(), true));
        assert_eq!(filter(false, &[b".\n"]), (b"".to_vec(), true));
        assert_eq!(filter(false, &[b"a\n..\n.x\n"]), (b"a\n..\n.x\n".to_vec(), false));
        assert_eq!(filter(true, &[b"a\n.\nb\n"]), (b"a\n.\nb\n".to_vec(), false));
        assert_eq!(filter(false, &[b"bare\rcr\n."]), (b"bare\rcr\n.".to_vec(), false));
        assert_eq!(filter(false, &[b"x\n.\r"]), (b"x\n.\r".to_vec(), false));
    }

    #[test]
    fn header_scan() {
        let s = scan_header(b"To: a@b, \"Doe, J\" <j@d>\nBcc: hidden@x\nSubject: hi\n there\nDate: now\n\nbody\nTo: not@header\n");
        assert_eq!(s.rcpts, vec![b"a@b".to_vec(), b"j@d".to_vec(), b"hidden@x".to_vec()]);
        assert!(s.has_date && !s.has_from && !s.has_message_id && s.had_blank);
        assert_eq!(s.kept, b"To: a@b, \"Doe, J\" <j@d>\nSubject: hi\n there\nDate: now\n");
        assert_eq!(s.body_start, 68);
        let s = scan_header(b"just text\nmore\n");
        assert_eq!((s.kept.len(), s.body_start, s.had_blank), (0, 0, false));
        let s = scan_header(b"From: x\nMessage-ID: <1@x>\n");
        assert!(s.has_from && s.has_message_id && !s.had_blank);
        assert_eq!(s.body_start, 26);
    }

    #[test]
    fn address_lists() {
        let t = |s: &str| addresses(s.as_bytes()).into_iter().map(|a| String::from_utf8(a).unwrap()).collect::<Vec<_>>();
        assert_eq!(t(" a@b"), vec!["a@b"]);
        assert_eq!(t("A (comment) <a@b>, c@d (Cee)"), vec!["a@b", "c@d"]);
        assert_eq!(t("team: x@y, z@w;, last@l"), vec!["x@y", "z@w", "last@l"]);
        assert_eq!(t("\"q,uoted\"@x"), vec!["\"q,uoted\"@x"]);
        assert_eq!(t("undisclosed-recipients:;"), Vec::<String>::new());
        assert_eq!(qualify(b"root", "h.test"), b"root@h.test");
        assert_eq!(qualify(b"a@b", "h.test"), b"a@b");
    }

    proptest::proptest! {
        /// The filter's output does not depend on how the input is cut.
        #[test]
        fn filter_chunking_invariant(input in proptest::collection::vec(proptest::sample::select(vec![b'a', b'.', b'\r', b'\n']), 0..200),
                                     cut in 0usize..200, ignore in proptest::bool::ANY) {
            let cut = cut.min(input.len());
            let whole = filter(ignore, &[&input]);
            let split = filter(ignore, &[&input[..cut], &input[cut..]]);
            proptest::prop_assert_eq!(whole, split);
        }
    }
}
