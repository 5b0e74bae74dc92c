//! The facts of a finished handshake, as UCSPI-TLS servers hand them to the
//! application: the `KEY=VALUE\0...\0\0` block that s6-ucspitlsd writes on the
//! control fd after a `Y`, and the same variables for the environment of an
//! implicit-TLS application (as s6-tlsd sets them). Pure: no I/O here.
//!
//! Byte layout, as s6-networking's stls_send_environment writes it: set
//! variables as `KEY=VALUE\0`, variables to unset as `KEY\0` (no `=`), the
//! whole block ended by one more `\0`. Names: SSL_PROTOCOL, SSL_CIPHER,
//! SSL_TLS_SNI_SERVERNAME, SSL_PEER_CERT_HASH (`SHA256:` + 64 hex digits),
//! SSL_PEER_CERT_SUBJECT. Protocol and cipher are spelled the way the
//! OpenSSL-based servers (libtls, ucspi-ssl) spell them.

/// What the application learns about the TLS session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFacts {
    /// `TLSv1.2` or `TLSv1.3`.
    pub protocol: String,
    /// OpenSSL's name of the cipher suite.
    pub cipher: String,
    /// The SNI name the client asked for, if any.
    pub sni: Option<String>,
    /// `SHA256:<hex>` of the client's end-entity certificate, if one verified.
    pub peer_cert_hash: Option<String>,
    /// The client certificate's subject, OpenSSL one-line form (`/C=../CN=..`).
    pub peer_cert_subject: Option<String>,
}

/// Largest block we ever write; s6-networking's readers take 4096 bytes.
pub const MAX_BLOCK: usize = 4096;

/// One environment change: `Set(name, value)` or `Unset(name)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvOp {
    Set(&'static str, String),
    Unset(&'static str),
}

impl TlsFacts {
    /// The variables in block order, as set/unset operations.
    pub fn env_ops(&self) -> Vec<EnvOp> {
        let opt = |name: &'static str, v: &Option<String>| match v {
            Some(s) if !s.is_empty() => EnvOp::Set(name, clean(s)),
            _ => EnvOp::Unset(name),
        };
        vec![
            EnvOp::Set("SSL_PROTOCOL", clean(&self.protocol)),
            EnvOp::Set("SSL_CIPHER", clean(&self.cipher)),
            opt("SSL_TLS_SNI_SERVERNAME", &self.sni),
            opt("SSL_PEER_CERT_HASH", &self.peer_cert_hash),
            opt("SSL_PEER_CERT_SUBJECT", &self.peer_cert_subject),
        ]
    }

    /// The control-fd block: `KEY=VALUE\0` / `KEY\0` items, then `\0`.
    /// Never longer than [`MAX_BLOCK`]: an over-long subject is cut.
    pub fn encode_block(&self) -> Vec<u8> {
        let mut ops = self.env_ops();
        // Too long: cut values, the subject first (the one a peer can make
        // long), then the others, until the block fits. Each value is cut
        // once, by what is still over, at a character boundary: a loop, not
        // a recursion, so that it ends whatever the values (a fuzz finding:
        // long values beside the subject made the old recursion overflow the
        // stack).
        for name in ["SSL_PEER_CERT_SUBJECT", "SSL_TLS_SNI_SERVERNAME", "SSL_PEER_CERT_HASH", "SSL_CIPHER", "SSL_PROTOCOL"] {
            let over = block_len(&ops).saturating_sub(MAX_BLOCK);
            if over == 0 {
                break;
            }
            for op in ops.iter_mut() {
                if let EnvOp::Set(k, v) = op {
                    if *k == name {
                        let mut cut = v.len().saturating_sub(over);
                        while !v.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        v.truncate(cut);
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(block_len(&ops));
        for op in ops {
            match op {
                EnvOp::Set(k, v) => {
                    out.extend_from_slice(k.as_bytes());
                    out.push(b'=');
                    out.extend_from_slice(v.as_bytes());
                }
                EnvOp::Unset(k) => out.extend_from_slice(k.as_bytes()),
            }
            out.push(0);
        }
        out.push(0);
        out
    }
}

/// The length of the block `ops` make: each item and its NUL, then a NUL.
fn block_len(ops: &[EnvOp]) -> usize {
    1 + ops
        .iter()
        .map(|op| match op {
            EnvOp::Set(k, v) => k.len() + 1 + v.len() + 1,
            EnvOp::Unset(k) => k.len() + 1,
        })
        .sum::<usize>()
}

/// No NUL may travel inside a value (it would end the item).
fn clean(s: &str) -> String {
    s.replace('\0', "")
}

/// `TLSv1.2` / `TLSv1.3` from the wire version number.
pub fn protocol_name(version: u16) -> String {
    match version {
        0x0304 => "TLSv1.3".into(),
        0x0303 => "TLSv1.2".into(),
        0x0302 => "TLSv1.1".into(),
        0x0301 => "TLSv1".into(),
        v => format!("unknown-0x{v:04x}"),
    }
}

/// OpenSSL's name of a cipher suite, from its IANA number; the IANA name
/// (or the number) for suites OpenSSL spells some other way.
pub fn cipher_name(suite: u16, iana: Option<&str>) -> String {
    let n = match suite {
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0xc02b => "ECDHE-ECDSA-AES128-GCM-SHA256",
        0xc02c => "ECDHE-ECDSA-AES256-GCM-SHA384",
        0xcca9 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        0xc02f => "ECDHE-RSA-AES128-GCM-SHA256",
        0xc030 => "ECDHE-RSA-AES256-GCM-SHA384",
        0xcca8 => "ECDHE-RSA-CHACHA20-POLY1305",
        _ => return iana.map(str::to_owned).unwrap_or_else(|| format!("0x{suite:04x}")),
    };
    n.into()
}

/// `SHA256:` and the lower-case hex of a digest, as s6-networking writes it.
pub fn cert_hash(digest: &[u8]) -> String {
    let mut s = String::with_capacity(7 + 2 * digest.len());
    s.push_str("SHA256:");
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The subject of a DER certificate in OpenSSL's one-line form
/// (`/C=DE/O=Example/CN=client`), as libtls' tls_peer_cert_subject gives it.
/// Octets outside printable ASCII are written `\xHH`. `None` when the DER
/// does not parse (bounded walk, no panics on hostile input).
pub fn subject_oneline(cert: &[u8]) -> Option<String> {
    let (tag, certbody, _) = tlv(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, tbs, _) = tlv(certbody)?;
    if tag != 0x30 {
        return None;
    }
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        // [0] EXPLICIT version; the serial number comes next.
        let (_, _, r2) = tlv(r)?;
        rest = r2;
    } else {
        rest = r; // that was the serial number
    }
    // signature algorithm, issuer, validity, then the subject.
    for _ in 0..3 {
        let (_, _, r) = tlv(rest)?;
        rest = r;
    }
    let (tag, name, _) = tlv(rest)?;
    if tag != 0x30 {
        return None;
    }
    let mut out = String::new();
    let mut rdns = name;
    while !rdns.is_empty() {
        let (tag, set, r) = tlv(rdns)?;
        rdns = r;
        if tag != 0x31 {
            return None;
        }
        let mut atvs = set;
        while !atvs.is_empty() {
            let (tag, atv, r) = tlv(atvs)?;
            atvs = r;
            if tag != 0x30 {
                return None;
            }
            let (otag, oid, r) = tlv(atv)?;
            if otag != 0x06 {
                return None;
            }
            let (vtag, val, _) = tlv(r)?;
            out.push('/');
            out.push_str(&oid_name(oid));
            out.push('=');
            push_value(&mut out, vtag, val);
            if out.len() > MAX_BLOCK {
                return Some(out);
            }
        }
    }
    Some(out)
}

use crate::der::tlv;

fn oid_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x05] => "serialNumber".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC".into(),
        _ => oid_dotted(oid),
    }
}

fn oid_dotted(oid: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in oid {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            parts.push(acc);
            acc = 0;
        }
        if acc > u64::MAX >> 8 {
            return "?".into();
        }
    }
    let mut s = String::new();
    if let Some(&first) = parts.first() {
        let (a, b) = if first < 80 { (first / 40, first % 40) } else { (2, first - 80) };
        s.push_str(&format!("{a}.{b}"));
        for p in &parts[1..] {
            s.push_str(&format!(".{p}"));
        }
    }
    s
}

fn push_value(out: &mut String, tag: u8, val: &[u8]) {
    // BMPString is UTF-16BE; everything else is taken octet by octet.
    let text: Vec<u8> = if tag == 0x1e {
        let units: Vec<u16> =
            val.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])).collect();
        String::from_utf16_lossy(&units).into_bytes()
    } else {
        val.to_vec()
    };
    for b in text {
        if (0x20..0x7f).contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_without_sni_or_cert_unsets_them() {
        let f = TlsFacts {
            protocol: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
            ..Default::default()
        };
        assert_eq!(
            f.encode_block(),
            b"SSL_PROTOCOL=TLSv1.3\0SSL_CIPHER=TLS_AES_256_GCM_SHA384\0SSL_TLS_SNI_SERVERNAME\0SSL_PEER_CERT_HASH\0SSL_PEER_CERT_SUBJECT\0\0"
                .to_vec()
        );
    }

    #[test]
    fn block_with_everything() {
        let f = TlsFacts {
            protocol: "TLSv1.2".into(),
            cipher: "ECDHE-RSA-AES128-GCM-SHA256".into(),
            sni: Some("mx.example.org".into()),
            peer_cert_hash: Some(cert_hash(&[0xab; 32])),
            peer_cert_subject: Some("/CN=client".into()),
        };
        let b = f.encode_block();
        assert!(b.ends_with(b"SSL_PEER_CERT_SUBJECT=/CN=client\0\0"));
        let needle = b"\0SSL_TLS_SNI_SERVERNAME=mx.example.org\0";
        assert!(b.windows(needle.len()).any(|w| w == needle));
        assert_eq!(b.iter().filter(|&&c| c == 0).count(), 6);
    }

    #[test]
    fn every_value_long_still_makes_a_bounded_block() {
        // The fuzz finding (fuzz/artifacts/ucspitls, kept as a seed): long
        // values beside the subject, and NULs in them.
        let long = |c: &str| Some(c.repeat(3000));
        let f = TlsFacts {
            protocol: "p\0".repeat(3000),
            cipher: "\u{e8}".repeat(3000),
            sni: long("s"),
            peer_cert_hash: long("h"),
            peer_cert_subject: long("\0/CN=\u{ff}"),
        };
        let b = f.encode_block();
        assert!(b.len() <= MAX_BLOCK && b.ends_with(b"\0\0"), "{}", b.len());
        let items = crate::io::ucspitls::parse_block(&b).expect("parses");
        let names: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["SSL_PROTOCOL", "SSL_CIPHER", "SSL_TLS_SNI_SERVERNAME", "SSL_PEER_CERT_HASH", "SSL_PEER_CERT_SUBJECT"]
        );
    }

    #[test]
    fn block_is_bounded_and_well_formed() {
        let f = TlsFacts {
            protocol: "TLSv1.3".into(),
            cipher: "x".into(),
            peer_cert_subject: Some("é".repeat(5000)),
            ..Default::default()
        };
        let b = f.encode_block();
        assert!(b.len() <= MAX_BLOCK);
        assert!(b.ends_with(b"\0\0"));
    }

    #[test]
    fn nul_in_values_is_dropped() {
        let f = TlsFacts { protocol: "a\0b".into(), cipher: "c".into(), ..Default::default() };
        assert!(f.encode_block().starts_with(b"SSL_PROTOCOL=ab\0"));
    }

    #[test]
    fn names() {
        assert_eq!(protocol_name(0x0304), "TLSv1.3");
        assert_eq!(protocol_name(0x0303), "TLSv1.2");
        assert_eq!(cipher_name(0x1302, None), "TLS_AES_256_GCM_SHA384");
        assert_eq!(cipher_name(0xc030, None), "ECDHE-RSA-AES256-GCM-SHA384");
        assert_eq!(cipher_name(0x1234, Some("X")), "X");
        assert_eq!(cipher_name(0x1234, None), "0x1234");
        assert_eq!(cert_hash(&[0, 255]), "SHA256:00ff");
    }

    // A minimal certificate shape: SEQ { SEQ { [0]{INT 2}, INT 1, SEQ{}, SEQ{}, SEQ{}, Name } }
    fn fake_cert(name: &[u8]) -> Vec<u8> {
        let mut tbs = vec![0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x01, 0x01, 0x30, 0x00, 0x30, 0x00, 0x30, 0x00];
        tbs.extend_from_slice(name);
        let mut t = vec![0x30, tbs.len() as u8];
        t.extend(tbs);
        let mut c = vec![0x30, t.len() as u8];
        c.extend(t);
        c
    }

    #[test]
    fn subject_of_a_certificate() {
        // Name: SET{SEQ{OID C, PrintableString "DE"}}, SET{SEQ{OID CN, UTF8 "cl\xc3\xa9"}}
        let name = [
            0x30, 0x1a, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'D', b'E', 0x31,
            0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x02, b'c', b'l',
        ];
        let mut name = name.to_vec();
        name[1] = (name.len() - 2) as u8;
        assert_eq!(subject_oneline(&fake_cert(&name)).as_deref(), Some("/C=DE/CN=cl"));
    }

    #[test]
    fn hostile_der_gives_none() {
        for bad in [&b""[..], b"\x30", b"\x30\x85\xff\xff\xff\xff\xff", b"\x30\x02\x30\x05", b"\x1f\x00"] {
            assert_eq!(subject_oneline(bad), None);
        }
        // Truncate a good one at every length: never a panic.
        let name = [0x30, 0x0b, 0x31, 0x09, 0x30, 0x07, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x00];
        let c = fake_cert(&name);
        for n in 0..c.len() {
            let _ = subject_oneline(&c[..n]);
        }
        assert_eq!(subject_oneline(&c).as_deref(), Some("/CN="));
    }

    #[test]
    fn unknown_oid_is_dotted_and_bytes_escaped() {
        assert_eq!(oid_dotted(&[0x2a, 0x86, 0x48]), "1.2.840");
        let mut s = String::new();
        push_value(&mut s, 0x0c, b"a\xc3\xa9/");
        assert_eq!(s, "a\\xC3\\xA9/");
    }
}
