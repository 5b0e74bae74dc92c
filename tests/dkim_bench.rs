//! A small figure for src/dkim/: CPU per signature (signing, and verifying
//! what was signed) with RSA-2048 and Ed25519 over a 1 KB and a 1 MB
//! message, printed. Meaningful in the release profile:
//!   cargo test --release --test dkim_bench -- --nocapture
//! In the debug profile (make test) it only checks that the work verifies.
#[path = "support/dkim.rs"]
mod dkim_support;

use std::time::Duration;

use dkim_support::*;
use smtpd::dkim::sign::{sign_message, Signer};
use smtpd::dkim::verify::{verify_message, LookupError, Outcome, VerifyOptions};

/// CPU time of this process (user + system).
fn cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    tv(u.user_time()) + tv(u.system_time())
}

fn message(size: usize) -> Vec<u8> {
    let mut m = b"From: Bench <bench@example.com>\r\nTo: someone@example.net\r\nSubject: bench\r\n\
                  Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <bench@example.com>\r\n\r\n"
        .to_vec();
    let line = b"The quick brown fox jumps over the lazy dog, again and again.  \r\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m
}

#[test]
fn cpu_per_signature() {
    let keys = make_keys();
    let release = !cfg!(debug_assertions);
    for (alg, key) in [("rsa-2048", load(&keys.rsa_pkcs8)), ("ed25519", load(&keys.ed25519))] {
        let record = key.dns_record();
        let signer = Signer::new(DOMAIN, "sel", key.clone()).unwrap();
        for (label, size, rounds) in [("1 KB", 1024, 200), ("1 MB", 1024 * 1024, 20)] {
            let rounds = if release { rounds } else { 2 };
            let msg = message(size);
            let t0 = cpu();
            let mut fields = Vec::new();
            for _ in 0..rounds {
                fields = sign_message(&[&signer], &msg, NOW).unwrap();
            }
            let sign = (cpu() - t0) / rounds;
            let signed = [fields.concat(), msg.clone()].concat();
            let mut lookup = |_: &str| -> Result<Vec<u8>, LookupError> { Ok(record.clone().into_bytes()) };
            let t0 = cpu();
            for _ in 0..rounds {
                let r = verify_message(&signed, &VerifyOptions::default(), NOW, &mut lookup).unwrap();
                assert_eq!(r[0].outcome, Outcome::Pass);
            }
            let verify = (cpu() - t0) / rounds;
            println!(
                "dkim {alg:8} {label}: sign {:>8.1} us, verify {:>8.1} us of CPU per message{}",
                sign.as_secs_f64() * 1e6,
                verify.as_secs_f64() * 1e6,
                if release { "" } else { " (debug build: not a figure)" }
            );
        }
    }
}
