//! CRAM-MD5 (RFC 2195) secrets as Dovecot stores them: not the password but
//! the two HMAC-MD5 (RFC 2104) states after the key block, `{CRAM-MD5}` and 64
//! hex digits (outer state, then inner, each as four little-endian 32-bit
//! words). Whoever holds them can answer any challenge (they are
//! password-equivalent for CRAM-MD5) but cannot read the password back, so a
//! stolen file does not give away passwords used elsewhere. Pure: no I/O.

use md5::block_api::compress;
use md5::Digest;
use subtle::ConstantTimeEq;

/// The scheme tag of the file's third field (matched case-insensitively).
pub const TAG: &str = "{CRAM-MD5}";

/// RFC 1321 3.3: MD5's initial state.
const MD5_INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// HMAC-MD5 keyed by one password, stopped after the ipad and opad blocks.
#[derive(Clone, PartialEq, Eq)]
pub struct CramSecret {
    outer: [u32; 4],
    inner: [u32; 4],
}

impl std::fmt::Debug for CramSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CramSecret { .. }") // password-equivalent: never printed
    }
}

impl CramSecret {
    /// RFC 2104 section 2: a key longer than the block is hashed first; then
    /// one block of key XOR ipad (0x36) and one of key XOR opad (0x5c).
    pub fn from_password(password: &[u8]) -> CramSecret {
        let mut key = [0u8; 64];
        if password.len() > 64 {
            key[..16].copy_from_slice(&md5::Md5::digest(password));
        } else {
            key[..password.len()].copy_from_slice(password);
        }
        let mut ipad = [0u8; 64];
        let mut opad = [0u8; 64];
        for ((k, i), o) in key.iter().zip(ipad.iter_mut()).zip(opad.iter_mut()) {
            *i = k ^ 0x36;
            *o = k ^ 0x5c;
        }
        let mut inner = MD5_INIT;
        compress(&mut inner, &[ipad]);
        let mut outer = MD5_INIT;
        compress(&mut outer, &[opad]);
        key.fill(0);
        ipad.fill(0);
        opad.fill(0);
        CramSecret { outer, inner }
    }

    /// `{CRAM-MD5}` and 64 hex digits (either case), or None.
    pub fn parse(field: &str) -> Option<CramSecret> {
        let tag = field.get(..TAG.len())?;
        if !tag.eq_ignore_ascii_case(TAG) {
            return None;
        }
        let hex = field.get(TAG.len()..)?.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut words = [0u32; 8];
        for (w, chunk) in words.iter_mut().zip(hex.chunks_exact(8)) {
            let mut bytes = [0u8; 4];
            for (b, pair) in bytes.iter_mut().zip(chunk.chunks_exact(2)) {
                *b = hex_byte(pair)?;
            }
            *w = u32::from_le_bytes(bytes);
        }
        let [o0, o1, o2, o3, i0, i1, i2, i3] = words;
        Some(CramSecret { outer: [o0, o1, o2, o3], inner: [i0, i1, i2, i3] })
    }

    /// The file's form: `{CRAM-MD5}` and 64 lower-case hex digits.
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(TAG.len() + 64);
        s.push_str(TAG);
        for w in self.outer.iter().chain(self.inner.iter()) {
            for b in w.to_le_bytes() {
                s.push_str(&format!("{b:02x}"));
            }
        }
        s
    }

    /// HMAC-MD5(password, challenge), from the stored states.
    pub fn digest(&self, challenge: &[u8]) -> [u8; 16] {
        let inner = md5_resume(self.inner, challenge);
        md5_resume(self.outer, &inner)
    }

    /// Whether `response_hex` (the client's 32 hex digits, either case) is
    /// the digest of `challenge`; the comparison takes the same time
    /// wherever the first difference is.
    pub fn verify(&self, challenge: &[u8], response_hex: &[u8]) -> bool {
        let Some(response) = parse_hex16(response_hex) else { return false };
        bool::from(self.digest(challenge).ct_eq(&response))
    }
}

/// MD5 of (one 64-byte block already in `state`) followed by `data`: the
/// remaining blocks, then RFC 1321 3.1-3.2 padding with the whole length.
fn md5_resume(mut state: [u32; 4], data: &[u8]) -> [u8; 16] {
    let mut blocks = data.chunks_exact(64);
    for b in &mut blocks {
        let mut block = [0u8; 64];
        block.copy_from_slice(b);
        compress(&mut state, &[block]);
    }
    let rest = blocks.remainder(); // shorter than 64
    let bits = (64 + data.len() as u64).wrapping_mul(8);
    let mut tail = [[0u8; 64]; 2];
    let used = if rest.len() < 56 { 1 } else { 2 };
    let flat = tail.as_flattened_mut();
    flat[..rest.len()].copy_from_slice(rest);
    flat[rest.len()] = 0x80;
    flat[used * 64 - 8..used * 64].copy_from_slice(&bits.to_le_bytes());
    compress(&mut state, &tail[..used]);
    let mut out = [0u8; 16];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    match pair {
        [h, l] => Some(hex_digit(*h)? << 4 | hex_digit(*l)?),
        _ => None,
    }
}

fn parse_hex16(hex: &[u8]) -> Option<[u8; 16]> {
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = hex_byte(pair)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    // RFC 2195 section 2's example: user tim, password tanstaaftanstaaf.
    const RFC2195_CHALLENGE: &[u8] = b"<1896.697170952@postoffice.reston.mci.net>";
    const RFC2195_DIGEST: &str = "b913a602c7eda7a495b4e6e7334d3890";

    #[test]
    fn rfc2195_vector() {
        let s = CramSecret::from_password(b"tanstaaftanstaaf");
        assert_eq!(hex(&s.digest(RFC2195_CHALLENGE)), RFC2195_DIGEST);
        assert!(s.verify(RFC2195_CHALLENGE, RFC2195_DIGEST.as_bytes()));
        assert!(s.verify(RFC2195_CHALLENGE, RFC2195_DIGEST.to_ascii_uppercase().as_bytes()));
        // One digit off, the wrong challenge, the wrong password: no.
        assert!(!s.verify(RFC2195_CHALLENGE, b"b913a602c7eda7a495b4e6e7334d3891"));
        assert!(!s.verify(b"<1896.697170953@postoffice.reston.mci.net>", RFC2195_DIGEST.as_bytes()));
        assert!(!CramSecret::from_password(b"tanstaaftanstaaF").verify(RFC2195_CHALLENGE, RFC2195_DIGEST.as_bytes()));
        // Malformed responses never match.
        for bad in [&b""[..], b"b913a602c7eda7a495b4e6e7334d389", b"b913a602c7eda7a495b4e6e7334d3890a", b"g913a602c7eda7a495b4e6e7334d3890"] {
            assert!(!s.verify(RFC2195_CHALLENGE, bad), "{bad:?}");
        }
    }

    #[test]
    fn dovecot_contexts() {
        // From Dovecot 2.3.19's `doveadm pw -s CRAM-MD5 -p ...`.
        for (pw, stored) in [
            ("tanstaaftanstaaf".to_string(), "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b"),
            ("s3cret".to_string(), "{CRAM-MD5}f5ed572d28e21dc835df33e856b52ed7fa69d793810545332aa71e91b9ed7e06"),
            // Longer than a block: the key is MD5(password).
            ("x".repeat(80), "{CRAM-MD5}ff6454343902c25cfaf14768b382dae3172680a33b4792a34267ff0628fbfe89"),
        ] {
            let s = CramSecret::from_password(pw.as_bytes());
            assert_eq!(s.encode(), stored);
            assert_eq!(CramSecret::parse(stored), Some(s.clone()));
            assert_eq!(CramSecret::parse(&stored.to_ascii_uppercase().replace("{CRAM-MD5}", "{cram-md5}")), Some(s));
        }
        let s = CramSecret::parse("{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b").unwrap();
        assert_eq!(hex(&s.digest(RFC2195_CHALLENGE)), RFC2195_DIGEST);
    }

    #[test]
    fn same_as_hmac_md5_for_every_length() {
        // Against the hmac crate, around the padding edges (55, 56, 63, 64 ...).
        use hmac::{Hmac, KeyInit, Mac};
        for pw_len in [0usize, 1, 63, 64, 65, 200] {
            let pw: Vec<u8> = (0..pw_len).map(|i| (i * 7 + 1) as u8).collect();
            let s = CramSecret::from_password(&pw);
            for len in [0usize, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000] {
                let chal: Vec<u8> = (0..len).map(|i| (i * 13 + 5) as u8).collect();
                let mut mac = Hmac::<md5::Md5>::new_from_slice(&pw).unwrap();
                mac.update(&chal);
                assert_eq!(s.digest(&chal)[..], mac.finalize().into_bytes()[..], "pw {pw_len} chal {len}");
            }
        }
    }

    #[test]
    fn parse_refuses() {
        for bad in [
            "",
            "{CRAM-MD5}",
            "d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b",
            "{PLAIN}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b",
            "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116",
            "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116bb",
            "{CRAM-MD5}z06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b",
            "{CRAM-MD5}\u{e9}6d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b",
            "{CRAM-MD\u{e9}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b",
        ] {
            assert_eq!(CramSecret::parse(bad), None, "{bad:?}");
        }
        assert_eq!(format!("{:?}", CramSecret::from_password(b"x")), "CramSecret { .. }");
    }
}
