//! DKIM keys: private keys loaded from PEM (RSA in PKCS#8 or PKCS#1, Ed25519
//! in PKCS#8) for signing with ring, the DNS TXT record that publishes the
//! public half (RFC 6376 3.6.1, RFC 8463 4), and the parser of such records
//! for the verifier. No I/O here: the caller reads the file and does DNS.
//! Key material never appears in Display or Debug output.
//!
//! Key sizes: ring signs with RSA keys of 2048, 3072 or 4096 bits only (its
//! `RsaKeyPair` refuses moduli under 2048 or over 4096 bits and primes that
//! are not a multiple of 512 bits), so a 1024-bit key, which RFC 8301 still
//! allows, is refused here with `KeyError::RsaTooSmall`, a 2560-bit one with
//! `RsaOddSize`; 2048 bits is what RFC 8301 recommends. Verification accepts RSA keys of 1024 to 8192 bits
//! (RFC 8301 3.2: smaller ones MUST NOT be considered valid).

use std::fmt;

use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;

use super::tags::{self, TagError, TagList};
use crate::der::tlv;

/// The smallest and largest RSA key ring can sign with (and a multiple of 1024 bits).
pub const RSA_SIGN_MIN_BITS: u32 = 2048;
pub const RSA_SIGN_MAX_BITS: u32 = 4096;
/// RFC 8301 3.2: verifiers MUST NOT accept smaller RSA keys.
pub const RSA_VERIFY_MIN_BITS: u32 = 1024;
/// The largest RSA key ring verifies with.
pub const RSA_VERIFY_MAX_BITS: u32 = 8192;

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]; // 1.2.840.113549.1.1.1
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70]; // 1.3.101.112

/// A signing algorithm (a= of RFC 6376 3.5; ed25519-sha256 from RFC 8463).
/// rsa-sha1 is not here: RFC 8301 3.1 forbids signing with it and verifying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RsaSha256,
    Ed25519Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }

    pub fn parse(s: &[u8]) -> Option<Algorithm> {
        match s {
            b"rsa-sha256" => Some(Algorithm::RsaSha256),
            b"ed25519-sha256" => Some(Algorithm::Ed25519Sha256),
            _ => None,
        }
    }

    pub fn key_type(self) -> KeyType {
        match self {
            Algorithm::RsaSha256 => KeyType::Rsa,
            Algorithm::Ed25519Sha256 => KeyType::Ed25519,
        }
    }
}

/// k= of a key record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    Ed25519,
}

impl KeyType {
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Rsa => "rsa",
            KeyType::Ed25519 => "ed25519",
        }
    }
}

/// Why a private key cannot be used. Never shows key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// No `PRIVATE KEY` or `RSA PRIVATE KEY` PEM section (an encrypted key
    /// has neither: DKIM keys are stored unencrypted, readable by one uid).
    NoKey,
    /// The PEM text is damaged (bad base64, no END line).
    Pem,
    /// A key of a kind DKIM cannot use (EC P-256, DSA, ...).
    Unsupported(&'static str),
    /// ring signs with RSA keys of at least 2048 bits.
    RsaTooSmall { bits: u32 },
    /// ring signs with RSA keys of at most 4096 bits.
    RsaTooLarge { bits: u32 },
    /// ring signs with RSA keys of 2048, 3072 or 4096 bits only (it wants
    /// primes of a multiple of 512 bits).
    RsaOddSize { bits: u32 },
    /// ring refused the key (ring's reason: InvalidEncoding, InconsistentComponents, ...).
    Rejected(String),
    /// Signing failed inside ring.
    Sign,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NoKey => write!(f, "no unencrypted PRIVATE KEY or RSA PRIVATE KEY section in the PEM file"),
            KeyError::Pem => write!(f, "damaged PEM file"),
            KeyError::Unsupported(what) => write!(f, "unsupported key type: {what} (DKIM uses RSA or Ed25519)"),
            KeyError::RsaTooSmall { bits } => {
                write!(f, "RSA key of {bits} bits: signing needs {RSA_SIGN_MIN_BITS} to {RSA_SIGN_MAX_BITS} bits")
            }
            KeyError::RsaTooLarge { bits } => {
                write!(f, "RSA key of {bits} bits: signing needs {RSA_SIGN_MIN_BITS} to {RSA_SIGN_MAX_BITS} bits")
            }
            KeyError::RsaOddSize { bits } => {
                write!(f, "RSA key of {bits} bits: signing needs 2048, 3072 or 4096 bits")
            }
            KeyError::Rejected(why) => write!(f, "key rejected: {why}"),
            KeyError::Sign => write!(f, "signing failed"),
        }
    }
}

enum Pair {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private key ready to sign, with the public key DNS publishes.
pub struct SigningKey {
    pair: Pair,
    bits: u32,
    /// What p= carries: SubjectPublicKeyInfo DER for RSA (as opendkim-genkey
    /// and `openssl rsa -pubout` write it), the raw 32 octets for Ed25519.
    public: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("algorithm", &self.algorithm()).field("bits", &self.bits).finish()
    }
}

impl SigningKey {
    /// Load the first private key of a PEM file: `PRIVATE KEY` (PKCS#8, RSA
    /// or Ed25519) or `RSA PRIVATE KEY` (PKCS#1).
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => KeyError::NoKey,
            _ => KeyError::Pem,
        })?;
        match der {
            PrivateKeyDer::Pkcs1(k) => Self::rsa(k.secret_pkcs1_der(), None),
            PrivateKeyDer::Pkcs8(k) => {
                let pkcs8 = k.secret_pkcs8_der();
                let (oid, inner) = pkcs8_algorithm(pkcs8).ok_or(KeyError::Rejected("InvalidEncoding".into()))?;
                if oid == OID_RSA {
                    Self::rsa(inner, Some(pkcs8))
                } else if oid == OID_ED25519 {
                    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
                        .map_err(|e| KeyError::Rejected(e.to_string()))?;
                    let public = pair.public_key().as_ref().to_vec();
                    Ok(SigningKey { pair: Pair::Ed25519(pair), bits: 256, public })
                } else {
                    Err(KeyError::Unsupported("PKCS#8 key that is neither RSA nor Ed25519"))
                }
            }
            PrivateKeyDer::Sec1(_) => Err(KeyError::Unsupported("EC key")),
            _ => Err(KeyError::Unsupported("unknown PEM key kind")),
        }
    }

    /// `pkcs1`: the RSAPrivateKey DER; `pkcs8`: its PKCS#8 wrapper, if any.
    fn rsa(pkcs1: &[u8], pkcs8: Option<&[u8]>) -> Result<SigningKey, KeyError> {
        let bits = rsa_private_bits(pkcs1).ok_or(KeyError::Rejected("InvalidEncoding".into()))?;
        if bits < RSA_SIGN_MIN_BITS {
            return Err(KeyError::RsaTooSmall { bits });
        }
        if bits > RSA_SIGN_MAX_BITS {
            return Err(KeyError::RsaTooLarge { bits });
        }
        if bits % 1024 != 0 {
            return Err(KeyError::RsaOddSize { bits });
        }
        let pair = match pkcs8 {
            Some(p8) => RsaKeyPair::from_pkcs8(p8),
            None => RsaKeyPair::from_der(pkcs1),
        }
        .map_err(|e| KeyError::Rejected(e.to_string()))?;
        let public = spki_rsa(pair.public().as_ref());
        Ok(SigningKey { pair: Pair::Rsa(pair), bits, public })
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.pair {
            Pair::Rsa(_) => Algorithm::RsaSha256,
            Pair::Ed25519(_) => Algorithm::Ed25519Sha256,
        }
    }

    /// RSA modulus bits, or 256 for Ed25519.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The public key as p= carries it (decoded).
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// Sign the canonical header data (RFC 6376 3.7's data-hash input):
    /// RSASSA-PKCS1-v1_5 with SHA-256 over it, or Ed25519 over its SHA-256
    /// (RFC 8463 3: PureEdDSA of the hash).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.pair {
            Pair::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public().modulus_len()];
                let rng = ring::rand::SystemRandom::new();
                pair.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, data, &mut sig).map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
            Pair::Ed25519(pair) => {
                let hash = ring::digest::digest(&ring::digest::SHA256, data);
                Ok(pair.sign(hash.as_ref()).as_ref().to_vec())
            }
        }
    }

    /// The TXT record text: `v=DKIM1; k=rsa; p=<base64>` (or `k=ed25519`).
    pub fn dns_record(&self) -> String {
        let p = base64::engine::general_purpose::STANDARD.encode(&self.public);
        tags::encode(&[("v", "DKIM1"), ("k", self.algorithm().key_type().name()), ("p", &p)])
    }

    /// The record as character-strings of at most 255 octets (RFC 1035
    /// 3.3.14), as a zone file and a DNS server need them: the tags first,
    /// then p= in pieces. Concatenated they are `dns_record()`.
    pub fn txt_strings(&self) -> Vec<String> {
        let rec = self.dns_record();
        let (head, p) = rec.split_at(rec.find("p=").unwrap_or(0));
        let mut out = vec![head.to_string()];
        // Base64 is ASCII: any byte offset is a char boundary.
        let mut rest = p;
        while !rest.is_empty() {
            let (a, b) = rest.split_at(rest.len().min(250));
            out.push(a.to_string());
            rest = b;
        }
        out
    }

    /// A zone-file line for the record, as opendkim-genkey writes one:
    /// `sel._domainkey.example.com. IN TXT ( "v=DKIM1; k=rsa; " "p=..." )`.
    pub fn zone_entry(&self, selector: &str, domain: &str) -> String {
        let mut s = format!("{selector}._domainkey.{domain}.\tIN\tTXT\t(");
        for (i, t) in self.txt_strings().iter().enumerate() {
            if i > 0 {
                s.push_str("\n\t");
            }
            s.push_str(&format!(" \"{t}\""));
        }
        s.push_str(&format!(" )  ; DKIM {} key {selector} for {domain}\n", self.algorithm().key_type().name()));
        s
    }
}

/// Why a key record (RFC 6376 3.6.1) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    Syntax(TagError),
    /// v= present but not first or not `DKIM1`.
    Version,
    /// k= names a key type we do not know.
    KeyType,
    /// No p= tag.
    NoPublicKey,
    /// p= is not base64.
    Base64,
    /// s= lists neither `*` nor `email`.
    NotForEmail,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Syntax(e) => write!(f, "key record syntax: {e}"),
            RecordError::Version => write!(f, "key record v= is not DKIM1"),
            RecordError::KeyType => write!(f, "key record k= unknown"),
            RecordError::NoPublicKey => write!(f, "key record has no p="),
            RecordError::Base64 => write!(f, "key record p= is not base64"),
            RecordError::NotForEmail => write!(f, "key record s= excludes email"),
        }
    }
}

/// A parsed key record.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key_type: KeyType,
    /// Decoded p=; empty means the key was revoked (RFC 6376 3.6.1).
    pub public_key: Vec<u8>,
    /// h= absent, or listing sha256.
    pub sha256_allowed: bool,
    /// t=y: the domain is testing DKIM.
    pub testing: bool,
    /// t=s: i= must have exactly the domain of d=, no subdomain.
    pub strict: bool,
}

impl fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("key_type", &self.key_type)
            .field("public_key_len", &self.public_key.len())
            .field("sha256_allowed", &self.sha256_allowed)
            .field("testing", &self.testing)
            .field("strict", &self.strict)
            .finish()
    }
}

impl KeyRecord {
    pub fn is_revoked(&self) -> bool {
        self.public_key.is_empty()
    }
}

/// Parse a key record: the TXT record's strings concatenated (RFC 6376 3.6.2.2).
/// Unknown tags, unknown t= flags and unknown h= algorithms are ignored.
pub fn parse_key_record(txt: &[u8]) -> Result<KeyRecord, RecordError> {
    let list = TagList::parse(txt).map_err(RecordError::Syntax)?;
    if let Some(pos) = list.tags.iter().position(|t| t.name == "v") {
        // 3.6.1: "If specified, this tag MUST be set to "DKIM1" ... MUST be the first tag".
        if pos != 0 || list.tags.first().map(|t| t.value) != Some(b"DKIM1") {
            return Err(RecordError::Version);
        }
    }
    let key_type = match list.get("k") {
        None | Some(b"rsa") => KeyType::Rsa,
        Some(b"ed25519") => KeyType::Ed25519,
        Some(_) => return Err(RecordError::KeyType),
    };
    let p = list.get("p").ok_or(RecordError::NoPublicKey)?;
    let public_key = decode_base64(p).ok_or(RecordError::Base64)?;
    let sha256_allowed = list.get("h").map_or(true, |h| tags::split_colons(h).any(|a| a == b"sha256"));
    if let Some(s) = list.get("s") {
        if !tags::split_colons(s).any(|x| x == b"*" || x == b"email") {
            return Err(RecordError::NotForEmail);
        }
    }
    let flags: Vec<&[u8]> = list.get("t").map(|t| tags::split_colons(t).collect()).unwrap_or_default();
    Ok(KeyRecord {
        key_type,
        public_key,
        sha256_allowed,
        testing: flags.contains(&&b"y"[..]),
        strict: flags.contains(&&b"s"[..]),
    })
}

/// Base64 with folding white space anywhere and padding optional.
pub fn decode_base64(v: &[u8]) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    const LAX: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LAX.decode(tags::strip_fws(v)).ok()
}

/// The RSAPublicKey DER ring verifies with, and the modulus size in bits,
/// from p=: a SubjectPublicKeyInfo (what everyone publishes) or a bare
/// RSAPublicKey (what RFC 6376 3.6.1's text literally says).
pub fn rsa_public_key(p: &[u8]) -> Option<(&[u8], u32)> {
    let (tag, body, rest) = tlv(p)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (first, _, _) = tlv(body)?;
    let pkcs1 = if first == 0x30 {
        // SEQUENCE { AlgorithmIdentifier, BIT STRING }
        let (_, alg, after) = tlv(body)?;
        let (otag, oid, _) = tlv(alg)?;
        if otag != 0x06 || oid != OID_RSA {
            return None;
        }
        let (btag, bits, end) = tlv(after)?;
        if btag != 0x03 || !end.is_empty() {
            return None;
        }
        bits.strip_prefix(&[0u8])?
    } else {
        p
    };
    let (tag, seq, _) = tlv(pkcs1)?;
    if tag != 0x30 {
        return None;
    }
    let (itag, n, _) = tlv(seq)?;
    (itag == 0x02).then_some(())?;
    Some((pkcs1, integer_bits(n)))
}

/// (algorithm OID, privateKey contents) of a PKCS#8 PrivateKeyInfo (RFC 5958).
fn pkcs8_algorithm(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tag, body, _) = tlv(der)?;
    (tag == 0x30).then_some(())?;
    let (vtag, _, rest) = tlv(body)?;
    (vtag == 0x02).then_some(())?;
    let (atag, alg, rest) = tlv(rest)?;
    (atag == 0x30).then_some(())?;
    let (otag, oid, _) = tlv(alg)?;
    (otag == 0x06).then_some(())?;
    let (ktag, key, _) = tlv(rest)?;
    (ktag == 0x04).then_some(())?;
    Some((oid, key))
}

/// Modulus bits of an RSAPrivateKey (RFC 8017 A.1.2): SEQUENCE { version, n, ... }.
fn rsa_private_bits(der: &[u8]) -> Option<u32> {
    let (tag, body, _) = tlv(der)?;
    (tag == 0x30).then_some(())?;
    let (vtag, _, rest) = tlv(body)?;
    (vtag == 0x02).then_some(())?;
    let (ntag, n, _) = tlv(rest)?;
    (ntag == 0x02).then_some(())?;
    Some(integer_bits(n))
}

/// Bits of a non-negative DER INTEGER's value.
fn integer_bits(n: &[u8]) -> u32 {
    let n = &n[n.iter().position(|&b| b != 0).unwrap_or(n.len())..];
    match n.first() {
        None => 0,
        Some(&top) => (n.len() as u32 - 1) * 8 + (8 - top.leading_zeros()),
    }
}

/// SubjectPublicKeyInfo { rsaEncryption, NULL } around an RSAPublicKey.
fn spki_rsa(pkcs1: &[u8]) -> Vec<u8> {
    let oid = der(0x06, OID_RSA);
    let alg = der(0x30, &[oid, vec![0x05, 0x00]].concat());
    let bits = der(0x03, &[&[0u8][..], pkcs1].concat());
    der(0x30, &[alg, bits].concat())
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::testkeys;

    #[test]
    fn ed25519_pem_record_and_signature() {
        let k = SigningKey::from_pem(testkeys::ED25519.as_bytes()).unwrap();
        assert_eq!(k.algorithm(), Algorithm::Ed25519Sha256);
        assert_eq!(k.public_key().len(), 32);
        let rec = k.dns_record();
        assert!(rec.starts_with("v=DKIM1; k=ed25519; p="), "{rec}");
        let parsed = parse_key_record(rec.as_bytes()).unwrap();
        assert_eq!(parsed.key_type, KeyType::Ed25519);
        assert_eq!(parsed.public_key, k.public_key());
        assert_eq!(k.txt_strings().concat(), rec);
        let sig = k.sign(b"data").unwrap();
        let hash = ring::digest::digest(&ring::digest::SHA256, b"data");
        let pk = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, k.public_key());
        assert!(pk.verify(hash.as_ref(), &sig).is_ok());
        assert!(pk.verify(b"data", &sig).is_err());
        // No key material in the Debug form.
        let dbg = format!("{k:?}");
        assert_eq!(dbg, "SigningKey { algorithm: Ed25519Sha256, bits: 256 }");
        let zone = k.zone_entry("sel", "example.com");
        assert!(zone.starts_with("sel._domainkey.example.com.\tIN\tTXT\t( \"v=DKIM1; k=ed25519; \"\n\t \"p="), "{zone}");
    }

    #[test]
    fn rsa_pkcs1_and_pkcs8_record_and_signature() {
        let k8 = SigningKey::from_pem(testkeys::RSA_2048_PKCS8.as_bytes()).unwrap();
        let k1 = SigningKey::from_pem(testkeys::RSA_2048_PKCS1.as_bytes()).unwrap();
        assert_eq!((k8.algorithm(), k8.bits()), (Algorithm::RsaSha256, 2048));
        assert_eq!(k8.public_key(), k1.public_key());
        assert_eq!(format!("{k1:?}"), "SigningKey { algorithm: RsaSha256, bits: 2048 }");
        let rec = k1.dns_record();
        assert!(rec.starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"), "{rec}");
        let strings = k1.txt_strings();
        assert_eq!(strings.concat(), rec);
        assert!(strings.len() >= 3 && strings.iter().all(|s| s.len() <= 255), "{strings:?}");
        let parsed = parse_key_record(rec.as_bytes()).unwrap();
        let (pkcs1, bits) = rsa_public_key(&parsed.public_key).unwrap();
        assert_eq!(bits, 2048);
        let sig = k1.sign(b"data").unwrap();
        assert_eq!(sig.len(), 256);
        let pk = ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY, pkcs1);
        assert!(pk.verify(b"data", &sig).is_ok());
        assert!(pk.verify(b"datA", &sig).is_err());
    }

    #[test]
    fn rsa_sizes_ring_cannot_sign_with() {
        assert_eq!(SigningKey::from_pem(testkeys::RSA_1024.as_bytes()).unwrap_err(), KeyError::RsaTooSmall { bits: 1024 });
        assert_eq!(SigningKey::from_pem(testkeys::RSA_4104.as_bytes()).unwrap_err(), KeyError::RsaTooLarge { bits: 4104 });
    }

    #[test]
    fn pem_errors() {
        assert_eq!(SigningKey::from_pem(b"").unwrap_err(), KeyError::NoKey);
        assert_eq!(SigningKey::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap_err(), KeyError::NoKey);
        let enc = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(SigningKey::from_pem(enc.as_bytes()).unwrap_err(), KeyError::NoKey);
        assert_eq!(SigningKey::from_pem(b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n").unwrap_err(), KeyError::Pem);
        assert!(matches!(
            SigningKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n").unwrap_err(),
            KeyError::Rejected(_)
        ));
        // An EC P-256 key (SEC1).
        let ec = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIP3U4SgmNzRC5Iu+OUPL9shsC5YdtskNDK3e9dO2pT7PoAoGCCqGSM49\nAwEHoUQDQgAENEip3VSu950V/63xKLLihVhBbi7gQu2CNn9ESEOiIRCTSm8g2B/u\nQ2zpBW68AMut7zKTfhCpNKCksOanxDks2w==\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(SigningKey::from_pem(ec.as_bytes()).unwrap_err(), KeyError::Unsupported("EC key"));
        // Display names no key material.
        assert_eq!(KeyError::RsaTooSmall { bits: 1024 }.to_string(), "RSA key of 1024 bits: signing needs 2048 to 4096 bits");
    }

    #[test]
    fn key_record_table() {
        let ok = |s: &str| parse_key_record(s.as_bytes()).unwrap();
        let r = ok("v=DKIM1; k=rsa; p=AQID");
        assert_eq!((r.key_type, r.public_key.clone(), r.sha256_allowed, r.testing, r.strict), (KeyType::Rsa, vec![1, 2, 3], true, false, false));
        let r = ok("p=AQID");
        assert_eq!(r.key_type, KeyType::Rsa);
        let r = ok("k=ed25519; p=AQ ID; t=y:s:x; h=sha1:sha256; s=email:*");
        assert_eq!((r.key_type, r.public_key.clone(), r.testing, r.strict, r.sha256_allowed), (KeyType::Ed25519, vec![1, 2, 3], true, true, true));
        assert!(ok("p=").is_revoked());
        assert!(!ok("h=sha1; p=AQID").sha256_allowed);
        assert!(ok("p=AQI").public_key == vec![1, 2]); // padding optional
        assert_eq!(format!("{:?}", ok("p=AQID")), "KeyRecord { key_type: Rsa, public_key_len: 3, sha256_allowed: true, testing: false, strict: false }");
        let err = |s: &str| parse_key_record(s.as_bytes()).unwrap_err();
        assert_eq!(err("k=rsa; v=DKIM1; p=AQID"), RecordError::Version);
        assert_eq!(err("v=DKIM2; p=AQID"), RecordError::Version);
        assert_eq!(err("k=dsa; p=AQID"), RecordError::KeyType);
        assert_eq!(err("v=DKIM1; k=rsa"), RecordError::NoPublicKey);
        assert_eq!(err("p=!!"), RecordError::Base64);
        assert_eq!(err("s=web; p=AQID"), RecordError::NotForEmail);
        assert!(matches!(err("p=a; p=b"), RecordError::Syntax(TagError::Duplicate(_))));
    }

    #[test]
    fn der_helpers() {
        assert_eq!(integer_bits(&[0x00, 0x80]), 8);
        assert_eq!(integer_bits(&[0x01, 0x00]), 9);
        assert_eq!(integer_bits(&[0x00]), 0);
        let long = vec![7u8; 300];
        let d = der(0x04, &long);
        assert_eq!(&d[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(tlv(&d), Some((0x04, &long[..], &[][..])));
        // SPKI around a tiny RSAPublicKey and back.
        let pkcs1 = der(0x30, &[der(0x02, &[0x00, 0xc1, 0x23]), der(0x02, &[0x01, 0x00, 0x01])].concat());
        let spki = spki_rsa(&pkcs1);
        assert_eq!(rsa_public_key(&spki), Some((&pkcs1[..], 16)));
        assert_eq!(rsa_public_key(&pkcs1), Some((&pkcs1[..], 16)));
        assert_eq!(rsa_public_key(&spki[..spki.len() - 1]), None);
        assert_eq!(rsa_public_key(b""), None);
    }
}
