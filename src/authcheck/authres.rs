//! Authentication-Results (RFC 8601): the writer of our header field, and
//! the reader of just enough of other fields to tell which carry our
//! authserv-id (section 5: those that arrive from outside are forgeries and
//! must go before ours is added). Pure: strings in, strings out.

use std::fmt::Write as _;

/// The longest reason= text kept (longer is cut); a header line stays short.
pub const MAX_REASON: usize = 200;
/// Where a continuation line is started instead of going on (RFC 5322 2.1.1
/// asks for 78 characters a line where it can be done).
const FOLD_AT: usize = 78;

/// One property: `ptype.property=value` (RFC 8601 2.3), e.g.
/// `smtp.mailfrom=example.org`, `header.d=example.org`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prop {
    pub ptype: &'static str,
    pub property: &'static str,
    pub value: String,
}

/// One resinfo: `method=result [(comment)] [reason="..."] props...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodResult {
    /// A method keyword: spf, dkim, dmarc, iprev, auth ...
    pub method: &'static str,
    /// A result keyword (pass, fail, none, temperror ...).
    pub result: &'static str,
    /// A short comment after the result, e.g. "p=reject dis=none" for DMARC.
    pub comment: Option<String>,
    /// The reason (RFC 8601 2.3), written as reason="...".
    pub reason: Option<String>,
    pub props: Vec<Prop>,
}

impl MethodResult {
    pub fn new(method: &'static str, result: &'static str) -> MethodResult {
        MethodResult { method, result, comment: None, reason: None, props: Vec::new() }
    }

    pub fn prop(mut self, ptype: &'static str, property: &'static str, value: impl Into<String>) -> MethodResult {
        self.props.push(Prop { ptype, property, value: value.into() });
        self
    }

    pub fn reason(mut self, r: impl Into<String>) -> MethodResult {
        self.reason = Some(r.into());
        self
    }

    pub fn comment(mut self, c: impl Into<String>) -> MethodResult {
        self.comment = Some(c.into());
        self
    }
}

/// The whole field, `Authentication-Results: <authserv-id>; ...` folded one
/// resinfo a line (longer ones folded between properties), ending in LF
/// (lines end in LF in the queue; a caller writing CRLF converts). With no
/// results the field says `none` (RFC 8601 2.2).
pub fn write(authserv_id: &str, results: &[MethodResult]) -> String {
    let mut out = String::from("Authentication-Results: ");
    out.push_str(&value(authserv_id));
    if results.is_empty() {
        out.push_str("; none\n");
        return out;
    }
    for r in results {
        out.push(';');
        let mut words = vec![format!("{}={}", keyword(r.method), keyword(r.result))];
        if let Some(c) = &r.comment {
            words.push(comment(c));
        }
        if let Some(reason) = &r.reason {
            words.push(format!("reason={}", quoted(&cut(reason, MAX_REASON))));
        }
        for p in &r.props {
            words.push(format!("{}.{}={}", keyword(p.ptype), keyword(p.property), pvalue(&p.value)));
        }
        // Each resinfo on its own line, a tab in front.
        out.push_str("\n\t");
        let mut col = 8;
        for (j, w) in words.iter().enumerate() {
            if j > 0 {
                if col + 1 + w.len() > FOLD_AT {
                    out.push_str("\n\t  ");
                    col = 10;
                } else {
                    out.push(' ');
                    col += 1;
                }
            }
            out.push_str(w);
            col += w.len();
        }
    }
    out.push('\n');
    out
}

/// RFC 2045 token: printable US-ASCII but SPACE and tspecials.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b)
}

/// A keyword we write: our own constants; anything else made a token.
fn keyword(s: &str) -> String {
    let k: String = s.bytes().filter(|b| is_token_byte(*b)).map(char::from).collect();
    if k.is_empty() {
        "x".into()
    } else {
        k
    }
}

/// RFC 8601 2.2: a value is a token or a quoted-string.
fn value(s: &str) -> String {
    if is_token(s) {
        s.to_string()
    } else {
        quoted(s)
    }
}

/// pvalue (RFC 8601 2.2): a value, or `[local-part] "@" domain-name`
/// written bare when both parts are plain (dot-atom and a domain).
fn pvalue(s: &str) -> String {
    if is_token(s) {
        return s.to_string();
    }
    if let Some((local, domain)) = s.rsplit_once('@') {
        let atom = |p: &str| !p.is_empty() && p.split('.').all(|a| !a.is_empty() && a.bytes().all(is_atext));
        let dom = !domain.is_empty() && domain.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        if dom && (local.is_empty() || atom(local)) {
            return s.to_string();
        }
    }
    quoted(s)
}

/// RFC 5322 atext.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// A quoted-string: `"` and `\` escaped, controls and non-ASCII made `?`
/// or a space (so nothing can end the header line or the field).
fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                q.push('\\');
                q.push(c);
            }
            ' ' | '\t' | '\r' | '\n' => q.push(' '),
            c if c.is_ascii_graphic() => q.push(c),
            _ => q.push('?'),
        }
    }
    q.push('"');
    q
}

/// A comment: parentheses and backslashes escaped, controls as above.
fn comment(s: &str) -> String {
    let mut q = String::from("(");
    for c in cut(s, MAX_REASON).chars() {
        match c {
            '(' | ')' | '\\' => {
                q.push('\\');
                q.push(c);
            }
            c if c.is_ascii_graphic() || c == ' ' => q.push(c),
            _ => q.push(' '),
        }
    }
    q.push(')');
    q
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut n = max;
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    let mut t = s.get(..n).unwrap_or("").to_string();
    let _ = write!(t, "...");
    t
}

/// The authserv-id of an Authentication-Results field body (what follows
/// the colon), robust to comments, folding and a version (RFC 8601 2.2:
/// `authserv-id [ CFWS authres-version ] ...`). None when there is none.
pub fn parse_authserv_id(body: &str) -> Option<String> {
    let b = body.as_bytes();
    let mut i = skip_cfws(b, 0)?;
    match b.get(i)? {
        b'"' => {
            let mut id = Vec::new();
            i += 1;
            loop {
                match *b.get(i)? {
                    b'"' => break,
                    b'\\' => {
                        id.push(*b.get(i + 1)?);
                        i += 2;
                    }
                    b'\r' | b'\n' => i += 1,
                    c => {
                        id.push(c);
                        i += 1;
                    }
                }
            }
            let id = String::from_utf8(id).ok()?;
            (!id.is_empty()).then_some(id)
        }
        _ => {
            let start = i;
            while b.get(i).is_some_and(|c| is_token_byte(*c) || *c >= 0x80) {
                i += 1;
            }
            let id = body.get(start..i)?;
            (!id.is_empty()).then(|| id.to_string())
        }
    }
}

/// Skips CFWS: white space, folding and (nested) comments with quoted-pairs.
/// None when a comment never ends.
fn skip_cfws(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        match b.get(i) {
            Some(b' ' | b'\t' | b'\r' | b'\n') => i += 1,
            Some(b'(') => {
                let mut depth = 0usize;
                loop {
                    match *b.get(i)? {
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        b'\\' => i += 1,
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => return Some(i),
        }
    }
}

/// Is this header field (`name: body`, unfolded or not) an
/// Authentication-Results field whose authserv-id is `ours`? Compared
/// case-insensitively (it is a host name). RFC 8601 section 5: such a field
/// arriving from outside is a forgery; the caller removes or renames it.
pub fn is_ours(field: &[u8], ours: &str) -> bool {
    let Some(colon) = field.iter().position(|&c| c == b':') else { return false };
    let name = field.get(..colon).unwrap_or_default();
    // RFC 5322 4.5.3 (obsolete syntax): white space before the colon.
    let name = name.trim_ascii_end();
    if !name.eq_ignore_ascii_case(b"Authentication-Results") {
        return false;
    }
    let body = String::from_utf8_lossy(field.get(colon + 1..).unwrap_or_default());
    let ours = ours.trim_end_matches('.');
    parse_authserv_id(&body).is_some_and(|id| id.trim_end_matches('.').eq_ignore_ascii_case(ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_folded_and_quoted() {
        let h = write("mx.example.org", &[]);
        assert_eq!(h, "Authentication-Results: mx.example.org; none\n");
        let rs = [
            MethodResult::new("spf", "pass").prop("smtp", "mailfrom", "user@example.com"),
            MethodResult::new("dkim", "fail")
                .reason("signature \"did not\" verify\r\n\\")
                .prop("header", "d", "example.com")
                .prop("header", "s", "sel")
                .prop("header", "b", "ab/c+D=="),
            MethodResult::new("dmarc", "fail").comment("p=reject dis=none").prop("header", "from", "example.com"),
        ];
        let h = write("mx.example.org", &rs);
        assert_eq!(
            h,
            "Authentication-Results: mx.example.org;\n\
             \tspf=pass smtp.mailfrom=user@example.com;\n\
             \tdkim=fail reason=\"signature \\\"did not\\\" verify  \\\\\"\n\
             \t  header.d=example.com header.s=sel header.b=\"ab/c+D==\";\n\
             \tdmarc=fail (p=reject dis=none) header.from=example.com\n"
        );
        // A local part that is no dot-atom is quoted whole; an odd id too.
        let h = write("a b", &[MethodResult::new("spf", "none").prop("smtp", "mailfrom", "\"x y\"@example.com")]);
        assert!(h.starts_with("Authentication-Results: \"a b\";\n\tspf=none smtp.mailfrom=\"\\\"x y\\\"@example.com\"\n"), "{h}");
        // Nothing a value holds ends the field.
        let h = write("mx\r\nX-Evil: 1", &[MethodResult::new("spf", "pass").reason("a\nb").prop("smtp", "helo", "é\n")]);
        assert_eq!(h.matches('\n').count(), 2, "{h}");
    }

    #[test]
    fn authserv_id_and_forgeries() {
        let table: &[(&str, Option<&str>)] = &[
            (" mx.example.org; spf=pass", Some("mx.example.org")),
            (" mx.example.org 1; none", Some("mx.example.org")),
            (" (comment (nested) \\) ) mx.example.org;", Some("mx.example.org")),
            ("\r\n\t\"mx.example.org\" ; none", Some("mx.example.org")),
            (" \"mx\\.example.org\";", Some("mx.example.org")),
            ("mx.example.org(c);", Some("mx.example.org")),
            (" ; spf=pass", None),
            (" (unterminated", None),
            ("", None),
        ];
        for (body, want) in table {
            assert_eq!(parse_authserv_id(body).as_deref(), *want, "{body:?}");
        }
        assert!(is_ours(b"Authentication-Results: MX.Example.org; spf=pass", "mx.example.org"));
        assert!(is_ours(b"authentication-results : (x) mx.example.org.;\n\tspf=pass", "mx.example.org"));
        assert!(!is_ours(b"Authentication-Results: mx.example.org.evil; spf=pass", "mx.example.org"));
        assert!(!is_ours(b"Authentication-Results: other.example; spf=pass", "mx.example.org"));
        assert!(!is_ours(b"X-Authentication-Results: mx.example.org; spf=pass", "mx.example.org"));
        assert!(!is_ours(b"Authentication-Results mx.example.org", "mx.example.org"));
        // Our own output is recognized as ours.
        let h = write("mx.example.org", &[MethodResult::new("spf", "pass")]);
        assert!(is_ours(h.as_bytes(), "mx.example.org"));
    }
}
