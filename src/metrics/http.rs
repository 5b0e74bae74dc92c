//! metrics-http's HTTP/1.x: the request head parsed as RFC 9112 says (only
//! what a metrics endpoint needs: the request line, header syntax, `Host`
//! for 1.1), with bounds, and the few responses it gives. Pure: bytes in,
//! a verdict or a response out; no fd is touched here.

use std::fmt;

/// Largest request head (request line and headers) read: 8 KiB, as
/// common servers' defaults (nginx's large_client_header_buffers).
pub const MAX_HEAD: usize = 8192;
/// Most header lines.
pub const MAX_HEADERS: usize = 64;

/// The method, as far as we care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    /// GET without the body (RFC 9110 9.3.2: a general-purpose server supports both).
    Head,
    Other,
}

/// A request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path, without the query.
    pub path: String,
}

/// Where the head stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// No empty line yet (and under `MAX_HEAD`).
    Incomplete,
    Done(Request),
}

/// A request that gets an error status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// 400.
    BadRequest(&'static str),
    /// 431: the head is larger than `MAX_HEAD` or has too many lines.
    TooLarge,
    /// 505.
    Version,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequest(w) => write!(f, "bad request: {w}"),
            HttpError::TooLarge => write!(f, "request head over {MAX_HEAD} octets or {MAX_HEADERS} lines"),
            HttpError::Version => f.write_str("HTTP version not supported"),
        }
    }
}

/// Parse what has arrived of a request head.
pub fn parse_head(buf: &[u8]) -> Result<Parsed, HttpError> {
    // RFC 9112 2.2: a recipient may take a bare LF as a line end.
    let crlf = find(buf, b"\r\n\r\n").map(|i| i + 4);
    let lf = find(buf, b"\n\n").map(|i| i + 2);
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let Some(end) = end.filter(|&e| e <= MAX_HEAD) else {
        return if buf.len() >= MAX_HEAD { Err(HttpError::TooLarge) } else { Ok(Parsed::Incomplete) };
    };
    let head = buf.get(..end).unwrap_or_default();
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    // RFC 9112 2.2: empty lines before the request line are ignored.
    let mut line = lines.next().unwrap_or_default();
    while line.is_empty() {
        match lines.next() {
            Some(l) => line = l,
            None => return Ok(Parsed::Incomplete),
        }
    }
    let req = request_line(line)?;
    let http11 = line.ends_with(b"HTTP/1.1");
    let mut host = false;
    let mut n = 0;
    for l in lines {
        if l.is_empty() {
            break;
        }
        n += 1;
        if n > MAX_HEADERS {
            return Err(HttpError::TooLarge);
        }
        // RFC 9112 5.2: obsolete line folding is refused.
        if l.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            return Err(HttpError::BadRequest("folded header line"));
        }
        let colon = l.iter().position(|&b| b == b':').ok_or(HttpError::BadRequest("header line without a colon"))?;
        let name = l.get(..colon).unwrap_or_default();
        // RFC 9112 5.1: no whitespace between the name and the colon.
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(HttpError::BadRequest("bad header name"));
        }
        if l.iter().any(|&b| b == 0 || b == b'\r') {
            return Err(HttpError::BadRequest("control character in a header"));
        }
        if name.eq_ignore_ascii_case(b"host") {
            if host {
                return Err(HttpError::BadRequest("two Host headers"));
            }
            host = true;
        }
    }
    // RFC 9112 3.2: a 1.1 request without Host gets 400.
    if http11 && !host {
        return Err(HttpError::BadRequest("no Host header"));
    }
    Ok(Parsed::Done(req))
}

/// `method SP request-target SP HTTP-version` (RFC 9112 3).
fn request_line(l: &[u8]) -> Result<Request, HttpError> {
    let mut parts = l.split(|&b| b == b' ');
    let (Some(m), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(HttpError::BadRequest("request line is not method, target, version"));
    };
    if m.is_empty() || !m.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::BadRequest("bad method"));
    }
    let version_ok = version.len() == 8 && version.starts_with(b"HTTP/") && version.get(6) == Some(&b'.');
    if !version_ok || !version.get(5).is_some_and(u8::is_ascii_digit) || !version.get(7).is_some_and(u8::is_ascii_digit) {
        return Err(HttpError::BadRequest("bad HTTP version"));
    }
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Err(HttpError::Version);
    }
    if target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(HttpError::BadRequest("bad request target"));
    }
    // Origin form (`/metrics?x`), or absolute form (`http://host:port/metrics`).
    let path = if target.first() == Some(&b'/') {
        target
    } else {
        let rest = strip_prefix_ci(target, b"http://").ok_or(HttpError::BadRequest("bad request target"))?;
        let slash = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        let p = rest.get(slash..).unwrap_or_default();
        if p.is_empty() {
            b"/"
        } else {
            p
        }
    };
    let path = path.split(|&b| b == b'?' || b == b'#').next().unwrap_or_default();
    let method = match m {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        _ => Method::Other,
    };
    Ok(Request { method, path: String::from_utf8_lossy(path).into_owned() })
}

fn strip_prefix_ci<'a>(s: &'a [u8], p: &[u8]) -> Option<&'a [u8]> {
    let head = s.get(..p.len())?;
    head.eq_ignore_ascii_case(p).then(|| s.get(p.len()..).unwrap_or_default())
}

/// RFC 9110 5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The content type of the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A whole response: status line, headers, and `body` unless `head_only`.
/// Every response closes the connection (one request per connection).
pub fn response(status: u16, content_type: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Internal Server Error",
    };
    let allow = if status == 405 { "Allow: GET, HEAD\r\n" } else { "" };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// The status and a short text body for a refused request.
pub fn error_response(e: HttpError) -> Vec<u8> {
    let status = match e {
        HttpError::BadRequest(_) => 400,
        HttpError::TooLarge => 431,
        HttpError::Version => 505,
    };
    response(status, "text/plain; charset=utf-8", format!("{e}\n").as_bytes(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(m: Method, p: &str) -> Result<Parsed, HttpError> {
        Ok(Parsed::Done(Request { method: m, path: p.into() }))
    }

    #[test]
    fn heads() {
        assert_eq!(parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"), req(Method::Get, "/metrics"));
        assert_eq!(parse_head(b"GET /metrics?a=b HTTP/1.0\r\n\r\n"), req(Method::Get, "/metrics"));
        assert_eq!(parse_head(b"\r\nHEAD / HTTP/1.0\n\n"), req(Method::Head, "/"));
        assert_eq!(parse_head(b"GET http://127.0.0.1:9101/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), req(Method::Get, "/metrics"));
        assert_eq!(parse_head(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), req(Method::Other, "/metrics"));
        assert_eq!(parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), Ok(Parsed::Incomplete));
        assert_eq!(parse_head(b""), Ok(Parsed::Incomplete));
    }

    #[test]
    fn bad_heads() {
        let bad = |h: &[u8]| matches!(parse_head(h), Err(HttpError::BadRequest(_)));
        assert!(bad(b"GET /metrics HTTP/1.1\r\n\r\n"), "1.1 without Host");
        assert!(bad(b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"));
        assert!(bad(b"GET  /metrics HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(bad(b"GET /metrics\r\n\r\n"), "HTTP/0.9");
        assert!(bad(b"GET /metrics HTTP/1.1\r\nHost : a\r\n\r\n"));
        assert!(bad(b"GET /metrics HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"));
        assert!(bad(b"GET /metrics HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n"));
        assert!(bad(b"GET /me\x01trics HTTP/1.0\r\n\r\n"));
        assert!(bad(b"GET metrics HTTP/1.0\r\n\r\n"));
        assert!(bad(b"G(T / HTTP/1.0\r\n\r\n"));
        assert_eq!(parse_head(b"GET / HTTP/2.0\r\n\r\n"), Err(HttpError::Version));
        let mut huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b"X-Pad: aaaaaaaaaaaaaaaa\r\n", 400).flatten());
        assert_eq!(parse_head(&huge), Err(HttpError::TooLarge), "no end in sight");
        huge.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&huge), Err(HttpError::TooLarge), "an end, too late");
        let mut many = b"GET / HTTP/1.0\r\n".to_vec();
        many.extend(std::iter::repeat_n(b"A: b\r\n", MAX_HEADERS + 1).flatten());
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&many), Err(HttpError::TooLarge));
    }

    #[test]
    fn responses() {
        let r = response(200, CONTENT_TYPE, b"a 1\n", false);
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 4\r\nCache-Control: no-store\r\nConnection: close\r\n\r\na 1\n"
        );
        let r = String::from_utf8(response(405, "text/plain", b"x", true)).unwrap();
        assert!(r.contains("Allow: GET, HEAD\r\n") && r.ends_with("\r\n\r\n") && r.contains("Content-Length: 1\r\n"));
        assert!(error_response(HttpError::TooLarge).starts_with(b"HTTP/1.1 431 "));
    }
}
