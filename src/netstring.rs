//! Netstrings (`<len>:<bytes>,`, D. J. Bernstein's framing): encoder and an
//! incremental, bounded decoder. Pure: no I/O here.

use std::fmt;

/// Longest length prefix accepted, in digits: bounds the work on garbage.
const MAX_DIGITS: usize = 10;

/// Append the netstring for `payload` to `out`.
pub fn encode_into(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(payload);
    out.push(b',');
}

/// The netstring for `payload`.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 12);
    encode_into(&mut v, payload);
    v
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The length prefix is not `[0-9]+:` or has a leading zero before more digits.
    BadLength,
    /// The declared length is larger than the decoder's limit.
    TooLong,
    /// The payload is not followed by `,`.
    MissingComma,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::BadLength => "netstring: bad length prefix",
            Error::TooLong => "netstring: frame longer than the limit",
            Error::MissingComma => "netstring: missing trailing comma",
        })
    }
}

impl std::error::Error for Error {}

/// Try to take one netstring from the front of `buf`, accepting payloads of
/// at most `max` bytes. `Ok(None)`: more bytes are needed. `Ok(Some((payload
/// range, consumed)))`: the payload is `buf[range]` and `consumed` bytes of
/// `buf` were used.
pub fn parse(buf: &[u8], max: usize) -> Result<Option<(std::ops::Range<usize>, usize)>, Error> {
    let mut len: usize = 0;
    let mut i = 0;
    loop {
        let Some(&c) = buf.get(i) else {
            return if i > MAX_DIGITS { Err(Error::BadLength) } else { Ok(None) };
        };
        match c {
            b'0'..=b'9' => {
                if i >= MAX_DIGITS || (i == 1 && buf.first() == Some(&b'0')) {
                    return Err(Error::BadLength);
                }
                len = len * 10 + usize::from(c - b'0');
                if len > max {
                    return Err(Error::TooLong);
                }
                i += 1;
            }
            b':' if i > 0 => break,
            _ => return Err(Error::BadLength),
        }
    }
    let start = i + 1;
    let end = start + len;
    match buf.get(end) {
        None => Ok(None),
        Some(b',') => Ok(Some((start..end, end + 1))),
        Some(_) => Err(Error::MissingComma),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for p in [&b""[..], b"a", b"hello, world", &[0u8, 255, b':', b',']] {
            let e = encode(p);
            let (r, n) = parse(&e, 100).unwrap().unwrap();
            assert_eq!(&e[r], p);
            assert_eq!(n, e.len());
        }
    }

    #[test]
    fn table() {
        assert_eq!(parse(b"", 10), Ok(None));
        assert_eq!(parse(b"3", 10), Ok(None));
        assert_eq!(parse(b"3:ab", 10), Ok(None));
        assert_eq!(parse(b"3:abc", 10), Ok(None));
        assert_eq!(parse(b"3:abc,rest", 10), Ok(Some((2..5, 6))));
        assert_eq!(parse(b"0:,", 10), Ok(Some((2..2, 3))));
        assert_eq!(parse(b"3:abcd", 10), Err(Error::MissingComma));
        assert_eq!(parse(b":abc,", 10), Err(Error::BadLength));
        assert_eq!(parse(b"03:abc,", 10), Err(Error::BadLength));
        assert_eq!(parse(b"x", 10), Err(Error::BadLength));
        assert_eq!(parse(b"11:", 10), Err(Error::TooLong));
        assert_eq!(parse(b"99999999999999", usize::MAX), Err(Error::BadLength));
    }
}
