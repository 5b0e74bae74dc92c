//! xtext (RFC 3461 section 4): `+XX` for octets outside `!`..`~`, `+` and `=`.
//! The queue's text files use it so that any address or value fits on one line.
//! Octets 0x80 and above pass unchanged, so that UTF-8 addresses (RFC 6531)
//! stay readable; everything below 0x21, 0x7f, `+` and `=` is encoded. Pure.

/// Encode `raw` as xtext (with UTF-8 octets left as they are).
pub fn encode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    for &b in raw {
        if b < 0x21 || b == 0x7f || b == b'+' || b == b'=' {
            out.extend_from_slice(format!("+{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    // Only ASCII was added and the rest is copied from `raw`: lossy only if
    // `raw` was not UTF-8, and then the replacement is visible, never silent
    // truncation. Keep bytes exact by encoding invalid UTF-8 too.
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => {
            let bytes = e.into_bytes();
            let mut s = String::with_capacity(bytes.len() * 3);
            for chunk in bytes.utf8_chunks() {
                s.push_str(chunk.valid());
                for b in chunk.invalid() {
                    s.push_str(&format!("+{b:02X}"));
                }
            }
            s
        }
    }
}

/// Decode xtext. `None` if a `+` is not followed by two upper-case hex digits
/// (RFC 3461 requires upper case) or an octet that must be encoded appears raw.
pub fn decode(x: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(x.len());
    let mut i = 0;
    while let Some(&b) = x.get(i) {
        match b {
            b'+' => {
                let h = hex(*x.get(i + 1)?)?;
                let l = hex(*x.get(i + 2)?)?;
                out.push(h << 4 | l);
                i += 3;
            }
            b'=' | 0x7f | 0..=0x20 => return None,
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(encode(b"a@b.c"), "a@b.c");
        assert_eq!(encode(b"a b+c=d"), "a+20b+2Bc+3Dd");
        assert_eq!(encode(b"\n\0\x7f"), "+0A+00+7F");
        assert_eq!(encode("jöe@例え.jp".as_bytes()), "jöe@例え.jp");
        assert_eq!(encode(b"\xff"), "+FF");
        assert_eq!(decode(b"a+20b+2Bc"), Some(b"a b+c".to_vec()));
        assert_eq!(decode(b"+2b"), None);
        assert_eq!(decode(b"+2"), None);
        assert_eq!(decode(b"a b"), None);
        assert_eq!(decode(b"a=b"), None);
    }

    #[test]
    fn round_trip_all_octets() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(encode(&all).as_bytes()), Some(all));
    }
}
