//! Certificates, keys and the rustls server configuration for tls-wrap:
//! PEM via rustls::pki_types, RSA/ECDSA/Ed25519 keys, a certificate chosen
//! by SNI name, optional client certificates checked against CAFILE/CADIR.
//! TLS 1.2 and 1.3 only, the provider's AEAD + ECDHE suites only.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerConnection, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use super::config::{ClientCert, TlsEnv};
use super::envblock::{self, TlsFacts};

#[derive(Debug)]
pub struct CertError(pub String);

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The crypto provider chosen at build time (cargo feature `ring`, or
/// `aws-lc-rs`), keeping only AEAD suites with forward secrecy.
pub fn provider() -> CryptoProvider {
    #[cfg(feature = "ring")]
    let mut p = rustls::crypto::ring::default_provider();
    #[cfg(all(not(feature = "ring"), feature = "aws-lc-rs"))]
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    p.cipher_suites.retain(|s| allowed_suite(u16::from(s.suite())));
    p
}

/// TLS 1.3 suites, and TLS 1.2 ECDHE with AES-GCM or ChaCha20-Poly1305.
pub fn allowed_suite(n: u16) -> bool {
    matches!(n, 0x1301 | 0x1302 | 0x1303 | 0xc02b | 0xc02c | 0xcca9 | 0xc02f | 0xc030 | 0xcca8)
}

/// Load every certificate and key named by the environment, and build the
/// server configuration. Called before prog starts, so errors are fatal
/// before any client is served.
pub fn server_config(env: &TlsEnv, client_cert: ClientCert) -> Result<Arc<ServerConfig>, CertError> {
    let prov = Arc::new(provider());
    let mut resolver = SniResolver { default: None, names: Vec::new() };
    if let Some((c, k)) = &env.default {
        resolver.default = Some(Arc::new(load_pair(c, k, &prov)?));
    }
    for (name, c, k) in &env.sni {
        resolver.names.push((name.clone(), Arc::new(load_pair(c, k, &prov)?)));
    }
    let builder = ServerConfig::builder_with_provider(prov.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| CertError(format!("unable to set protocol versions: {e}")))?;
    let builder = if client_cert == ClientCert::None {
        builder.with_no_client_auth()
    } else {
        let roots = Arc::new(load_roots(env)?);
        let v = WebPkiClientVerifier::builder_with_provider(roots, prov.clone());
        let v = if client_cert == ClientCert::Optional { v.allow_unauthenticated() } else { v };
        builder.with_client_cert_verifier(v.build().map_err(|e| CertError(format!("unable to set up client verification: {e}")))?)
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(resolver));
    // One process per connection: a session cache or tickets would die with
    // the process, so do not spend time producing them.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

fn load_pair(cert: &Path, key: &Path, prov: &CryptoProvider) -> Result<CertifiedKey, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| CertError(format!("unable to read certificates from {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(CertError(format!("no certificate in {}", cert.display())));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| CertError(format!("unable to read private key from {}: {e}", key.display())))?;
    CertifiedKey::from_der(chain, der, prov)
        .map_err(|e| CertError(format!("unusable key {} for {}: {e}", key.display(), cert.display())))
}

fn load_roots(env: &TlsEnv) -> Result<RootCertStore, CertError> {
    let mut roots = RootCertStore::empty();
    let mut add = |path: &Path, strict: bool| -> Result<(), CertError> {
        let it = match CertificateDer::pem_file_iter(path) {
            Ok(it) => it,
            Err(e) if strict => return Err(CertError(format!("unable to read {}: {e}", path.display()))),
            Err(_) => return Ok(()),
        };
        for c in it {
            match c {
                Ok(c) => {
                    if let Err(e) = roots.add(c) {
                        if strict {
                            return Err(CertError(format!("bad CA certificate in {}: {e}", path.display())));
                        }
                    }
                }
                Err(e) if strict => return Err(CertError(format!("unable to read {}: {e}", path.display()))),
                Err(_) => break,
            }
        }
        Ok(())
    };
    if let Some(f) = &env.cafile {
        add(f, true)?;
    }
    if let Some(d) = &env.cadir {
        let rd = std::fs::read_dir(d).map_err(|e| CertError(format!("unable to read {}: {e}", d.display())))?;
        for ent in rd.flatten() {
            if ent.file_type().map(|t| t.is_file() || t.is_symlink()).unwrap_or(false) {
                add(&ent.path(), false)?;
            }
        }
    }
    if roots.is_empty() {
        return Err(CertError("no CA certificate found in CAFILE/CADIR".into()));
    }
    Ok(roots)
}

/// Picks the certificate by SNI name: exact name, then `*.parent` for one
/// label, then CERTFILE/KEYFILE. No match and no default: the handshake fails.
#[derive(Debug)]
pub struct SniResolver {
    pub default: Option<Arc<CertifiedKey>>,
    pub names: Vec<(String, Arc<CertifiedKey>)>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(|n| n.to_ascii_lowercase());
        if let Some(n) = name {
            if let Some((_, k)) = self.names.iter().find(|(h, _)| *h == n) {
                return Some(k.clone());
            }
            if let Some((_, parent)) = n.split_once('.') {
                let wild = format!("*.{parent}");
                if let Some((_, k)) = self.names.iter().find(|(h, _)| *h == wild) {
                    return Some(k.clone());
                }
            }
        }
        self.default.clone()
    }
}

/// The facts of a finished handshake, for the application.
pub fn facts(conn: &ServerConnection) -> TlsFacts {
    let protocol = conn.protocol_version().map(|v| envblock::protocol_name(u16::from(v))).unwrap_or_default();
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| envblock::cipher_name(u16::from(s.suite()), s.suite().as_str()))
        .unwrap_or_default();
    let ee = conn.peer_certificates().and_then(|c| c.first());
    TlsFacts {
        protocol,
        cipher,
        sni: conn.server_name().map(str::to_owned),
        peer_cert_hash: ee.and_then(|c| sha256(c.as_ref())).map(|d| envblock::cert_hash(&d)),
        peer_cert_subject: ee.and_then(|c| envblock::subject_oneline(c.as_ref())),
    }
}

/// SHA-256 through the provider's own hash (no second crypto library).
fn sha256(data: &[u8]) -> Option<Vec<u8>> {
    provider()
        .cipher_suites
        .iter()
        .find(|s| u16::from(s.suite()) == 0x1301)
        .and_then(|s| s.tls13())
        .map(|s| s.common.hash_provider.hash(data).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_modern_suites() {
        let p = provider();
        assert!(!p.cipher_suites.is_empty());
        for s in &p.cipher_suites {
            assert!(allowed_suite(u16::from(s.suite())), "{:?}", s.suite());
        }
        assert!(!allowed_suite(0xc013)); // ECDHE-RSA-AES128-SHA (CBC)
        assert!(!allowed_suite(0x009c)); // RSA key exchange
    }

    #[test]
    fn sha256_known_answer() {
        let d = sha256(b"abc").unwrap();
        assert_eq!(
            envblock::cert_hash(&d),
            "SHA256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn missing_files_are_errors() {
        let env = TlsEnv { default: Some(("/nonexistent/c".into(), "/nonexistent/k".into())), ..Default::default() };
        let e = server_config(&env, ClientCert::None).unwrap_err();
        assert!(e.0.contains("/nonexistent/c"), "{e}");
    }
}
