//! rustls set-up for STARTTLS: the policy levels and the certificate
//! verifiers behind them (accept any certificate for opportunistic and
//! mandatory-unauthenticated TLS, WebPKI roots plus an optional CA file for
//! verified TLS, TLSA records for DANE). Handshake signatures are always
//! checked; only the certificate *chain* check differs by policy.

use super::dane;
use crate::dns::TlsaRecord;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use std::sync::Arc;

/// `SMTP_TLS`: how much TLS we insist on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Never STARTTLS.
    None,
    /// STARTTLS when offered, any certificate; plaintext otherwise (default).
    May,
    /// STARTTLS required, any certificate.
    Encrypt,
    /// STARTTLS required, certificate verified against the WebPKI roots (and
    /// `TLS_CAFILE`) for the name we connected to.
    Verify,
    /// DANE (RFC 7672) where the destination publishes secure TLSA records,
    /// else as `May`.
    Dane,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Policy> {
        Some(match s {
            "none" => Policy::None,
            "" | "may" => Policy::May,
            "encrypt" => Policy::Encrypt,
            "verify" => Policy::Verify,
            "dane" => Policy::Dane,
            _ => return None,
        })
    }
    pub fn required(self) -> bool {
        matches!(self, Policy::Encrypt | Policy::Verify)
    }
}

/// A pinned certificate: the SHA-256 of its SubjectPublicKeyInfo or of the
/// whole certificate (DER); a server certificate matches either way.
pub type Pin = [u8; 32];

/// `sha256:` and 64 hex digits, upper or lower case, pairs optionally
/// separated by colons (as `openssl x509 -fingerprint -sha256` prints them).
pub fn parse_pin(s: &str) -> Option<Pin> {
    let (algo, hex) = s.split_once(':')?;
    if !algo.eq_ignore_ascii_case("sha256") {
        return None;
    }
    let digits: Vec<u8> = hex.bytes().filter(|&b| b != b':').collect();
    // from_str_radix alone would take a sign.
    if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut pin = [0u8; 32];
    for (out, pair) in pin.iter_mut().zip(digits.chunks(2)) {
        let s = std::str::from_utf8(pair).ok()?;
        *out = u8::from_str_radix(s, 16).ok()?;
    }
    Some(pin)
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config around `verifier`; no client certificate, no ALPN.
pub fn config(verifier: Arc<dyn ServerCertVerifier>) -> Result<Arc<ClientConfig>, Error> {
    let c = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(c))
}

/// The WebPKI roots plus the PEM certificates of `cafile`.
pub fn roots(cafile: Option<&str>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = cafile {
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| format!("unable to read {path}: {e}"))?;
        for c in certs {
            let c = c.map_err(|e| format!("unable to parse {path}: {e}"))?;
            roots.add(c).map_err(|e| format!("bad certificate in {path}: {e}"))?;
        }
    }
    Ok(roots)
}

pub fn webpki_verifier(roots: RootCertStore) -> Result<Arc<dyn ServerCertVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map(|v| v as Arc<dyn ServerCertVerifier>)
        .map_err(|e| e.to_string())
}

/// The handshake signature checks, the same in every verifier here
/// (rustls's own, with the verifier's `provider`): only the certificate
/// check differs by policy.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
        }
        fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider.signature_verification_algorithms.supported_schemes()
        }
    };
}

/// Any certificate: opportunistic TLS protects against passive listeners only.
#[derive(Debug)]
pub struct AnyCert {
    provider: Arc<CryptoProvider>,
}

impl AnyCert {
    pub fn verifier() -> Arc<dyn ServerCertVerifier> {
        Arc::new(AnyCert { provider: provider() })
    }
}

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }
    handshake_signatures!();
}

/// Pinned certificates (`TLS_PIN`, a route's `pin=`): the leaf matches a
/// pin by the SHA-256 of its SubjectPublicKeyInfo or of itself; names,
/// dates and chain are not checked (as DANE-EE, RFC 7672 3.1.1), which is
/// what a smarthost's self-signed certificate needs.
#[derive(Debug)]
pub struct Pinned {
    pins: Vec<Pin>,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    pub fn verifier(pins: Vec<Pin>) -> Arc<dyn ServerCertVerifier> {
        Arc::new(Pinned { pins, provider: provider() })
    }
}

/// Does the certificate (DER) match one of `pins`?
pub fn pinned(pins: &[Pin], cert_der: &[u8]) -> bool {
    let sha = |b: &[u8]| ring::digest::digest(&ring::digest::SHA256, b);
    let whole = sha(cert_der);
    let key = dane::spki(cert_der).map(sha);
    pins.iter().any(|p| whole.as_ref() == p || key.as_ref().is_some_and(|k| k.as_ref() == p))
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        ee: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if pinned(&self.pins, ee) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::General("the certificate matches no pinned certificate".into()))
        }
    }
    handshake_signatures!();
}

/// DANE-EE(3): the leaf matches, names and dates are not checked (RFC 7672
/// 3.1.1). DANE-TA(2): a certificate the server sent matches, and the chain
/// from the leaf up to it verifies for the TLSA base domain (3.1.2).
#[derive(Debug)]
pub struct Dane {
    records: Vec<TlsaRecord>,
    provider: Arc<CryptoProvider>,
}

impl Dane {
    /// `None` when no record is usable (then the caller uses mandatory
    /// unauthenticated TLS, RFC 7672 2.2).
    pub fn verifier(records: Vec<TlsaRecord>) -> Option<Arc<dyn ServerCertVerifier>> {
        let records: Vec<TlsaRecord> = records.into_iter().filter(dane::usable).collect();
        if records.is_empty() {
            return None;
        }
        Some(Arc::new(Dane { records, provider: provider() }))
    }
}

impl ServerCertVerifier for Dane {
    fn verify_server_cert(
        &self,
        ee: &CertificateDer<'_>,
        chain: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        for r in &self.records {
            if r.usage == dane::DANE_EE && dane::matches(r, ee) {
                return Ok(ServerCertVerified::assertion());
            }
        }
        for r in self.records.iter().filter(|r| r.usage == dane::DANE_TA) {
            for ta in chain.iter().filter(|c| dane::matches(r, c)) {
                let mut roots = RootCertStore::empty();
                if roots.add(ta.clone()).is_err() {
                    continue;
                }
                let Ok(v) = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone()).build() else {
                    continue;
                };
                if v.verify_server_cert(ee, chain, name, ocsp, now).is_ok() {
                    return Ok(ServerCertVerified::assertion());
                }
            }
        }
        Err(Error::General("no TLSA record matches the server certificate".into()))
    }
    handshake_signatures!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert_eq!(Policy::parse(""), Some(Policy::May));
        assert_eq!(Policy::parse("dane"), Some(Policy::Dane));
        assert_eq!(Policy::parse("secure"), None);
        assert!(Policy::Verify.required() && !Policy::Dane.required());
        assert!(Dane::verifier(vec![TlsaRecord { usage: 1, selector: 1, matching: 1, data: vec![] }]).is_none());
        assert!(config(AnyCert::verifier()).is_ok());
        assert!(roots(Some("/nonexistent")).is_err());
    }

    #[test]
    fn pins() {
        let hex = "0123456789abcdef".repeat(4);
        let want: Pin = std::array::from_fn(|i| [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef][i % 8]);
        assert_eq!(parse_pin(&format!("sha256:{hex}")), Some(want));
        assert_eq!(parse_pin(&format!("SHA256:{}", hex.to_uppercase())), Some(want));
        let colons: Vec<String> = hex.as_bytes().chunks(2).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
        assert_eq!(parse_pin(&format!("sha256:{}", colons.join(":"))), Some(want));
        assert_eq!(parse_pin(&hex), None);
        assert_eq!(parse_pin(&format!("sha512:{hex}")), None);
        assert_eq!(parse_pin(&format!("sha256:{}", &hex[1..])), None);
        assert_eq!(parse_pin(&format!("sha256:{}x", &hex[1..])), None);
        assert_eq!(parse_pin(&format!("sha256:+{}", &hex[1..])), None);
        assert_eq!(parse_pin("sha256:é"), None);
        // Not a certificate: only its whole hash can match.
        let junk = b"not a certificate";
        let whole: Pin = ring::digest::digest(&ring::digest::SHA256, junk).as_ref().try_into().unwrap();
        assert!(pinned(&[[0; 32], whole], junk));
        assert!(!pinned(&[[0; 32]], junk) && !pinned(&[], junk));
    }
}
