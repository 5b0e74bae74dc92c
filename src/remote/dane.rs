//! DANE for SMTP (RFC 7672, RFC 7671): which TLSA records we can use and
//! whether a certificate matches one. Only DANE-TA(2) and DANE-EE(3), with
//! selectors Cert(0) and SPKI(1) and matching types Full(0), SHA2-256(1) and
//! SHA2-512(2); PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP (RFC 7672
//! 3.1.3). Pure: DER bytes in, yes or no out.

use crate::dns::TlsaRecord;

pub const DANE_TA: u8 = 2;
pub const DANE_EE: u8 = 3;

/// A record we know how to use.
pub fn usable(r: &TlsaRecord) -> bool {
    (r.usage == DANE_TA || r.usage == DANE_EE) && r.selector <= 1 && r.matching <= 2
}

/// Does the certificate (DER) match the record's selector and matching type?
pub fn matches(r: &TlsaRecord, cert_der: &[u8]) -> bool {
    let selected = match r.selector {
        0 => cert_der,
        1 => match spki(cert_der) {
            Some(s) => s,
            None => return false,
        },
        _ => return false,
    };
    match r.matching {
        0 => selected == r.data.as_slice(),
        1 => ring::digest::digest(&ring::digest::SHA256, selected).as_ref() == r.data.as_slice(),
        2 => ring::digest::digest(&ring::digest::SHA512, selected).as_ref() == r.data.as_slice(),
        _ => false,
    }
}

/// The SubjectPublicKeyInfo of an X.509 certificate, as its whole DER TLV:
/// Certificate = SEQ { tbs = SEQ { [0] version OPTIONAL, serial, signature,
/// issuer, validity, subject, spki, ... }, ... } (RFC 5280 4.1).
pub fn spki(cert: &[u8]) -> Option<&[u8]> {
    let (tag, cert_body, _) = tlv(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, mut tbs, _) = tlv(cert_body)?;
    if tag != 0x30 {
        return None;
    }
    // Skip the optional explicit version.
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    // serial, signature, issuer, validity, subject
    for _ in 0..5 {
        tbs = tlv(tbs)?.2;
    }
    let (tag, _, rest) = tlv(tbs)?;
    if tag != 0x30 {
        return None;
    }
    tbs.get(..tbs.len() - rest.len())
}

use crate::der::tlv;

#[cfg(test)]
mod tests {
    use super::*;

    // A tiny hand-made certificate shape: the parser only walks the structure.
    fn fake_cert(spki: &[u8]) -> Vec<u8> {
        let mut tbs = vec![0xa0, 0x03, 0x02, 0x01, 0x02]; // [0] { INTEGER 2 }
        tbs.extend_from_slice(&[0x02, 0x01, 0x01]); // serial
        for _ in 0..4 {
            tbs.extend_from_slice(&[0x30, 0x00]); // signature, issuer, validity, subject
        }
        tbs.extend_from_slice(spki);
        tbs.extend_from_slice(&[0xa3, 0x00]);
        let mut t = vec![0x30, tbs.len() as u8];
        t.extend(tbs);
        let mut c = t.clone();
        c.extend_from_slice(&[0x30, 0x00, 0x03, 0x01, 0x00]);
        let mut cert = vec![0x30, 0x81, c.len() as u8];
        cert.extend(c);
        cert
    }

    #[test]
    fn spki_and_matching() {
        let key = [0x30, 0x04, 0x30, 0x00, 0x03, 0x00];
        let cert = fake_cert(&key);
        assert_eq!(spki(&cert), Some(&key[..]));
        assert_eq!(spki(&cert[..cert.len() - 1]), None);
        assert_eq!(spki(b""), None);
        assert_eq!(spki(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        let sha256 = ring::digest::digest(&ring::digest::SHA256, &key).as_ref().to_vec();
        let sha512 = ring::digest::digest(&ring::digest::SHA512, &cert).as_ref().to_vec();
        let rec = |usage, selector, matching, data: &[u8]| TlsaRecord { usage, selector, matching, data: data.to_vec() };
        assert!(matches(&rec(3, 1, 1, &sha256), &cert));
        assert!(matches(&rec(3, 1, 0, &key), &cert));
        assert!(matches(&rec(2, 0, 2, &sha512), &cert));
        assert!(matches(&rec(3, 0, 0, &cert), &cert));
        assert!(!matches(&rec(3, 0, 1, &sha256), &cert));
        assert!(!matches(&rec(3, 2, 1, &sha256), &cert));
        assert!(usable(&rec(3, 1, 1, &[])) && usable(&rec(2, 0, 2, &[])));
        assert!(!usable(&rec(1, 1, 1, &[])) && !usable(&rec(0, 0, 0, &[])) && !usable(&rec(3, 1, 3, &[])));
    }
}
