//! Real peers for src/dkim/: dkimpy (Debian python3-dkim) and OpenDKIM's
//! opendkim-testmsg (opendkim-tools) verify what we sign, and we verify what
//! they sign, for every message of tests/data/messages and the edge cases of
//! support/dkim.rs, rsa-sha256 and ed25519-sha256, relaxed and simple. Keys
//! are made by openssl at test time; the records verification uses are the
//! ones our key printer wrote. An altered body octet or signed header field
//! fails on every side.
#[path = "support/peers.rs"]
mod support;
#[path = "support/dkim.rs"]
mod dkim_support;
#[path = "support/dkim_verifiers.rs"]
mod verifiers;

use std::collections::HashMap;
use std::process::Command;

use dkim_support::*;
use smtpd::dkim::canon::{BodyHasher, Canon};
use smtpd::dkim::header;
use smtpd::dkim::key::{KeyError, SigningKey};
use smtpd::dkim::sign::Signer;
use smtpd::dkim::verify::{self, Failure, Outcome, VerifyOptions};
use support::testdata_messages;
use verifiers::{dkimpy, opendkim, Records};

fn our_verify(msg: &[u8], records: &Records) -> Vec<Outcome> {
    // The body in odd-sized chunks: the streaming path, not the whole-message one.
    let (h, body) = header::split_message(msg).expect("header");
    let mut v = verify::Verifier::new(h, &VerifyOptions::default()).expect("verifier");
    for c in body.chunks(777) {
        v.body(c);
    }
    v.finish(NOW + 60, &mut records.lookup()).into_iter().map(|r| r.outcome).collect()
}

struct Setup {
    keys: Keys,
    rsa: std::sync::Arc<SigningKey>,
    ed: std::sync::Arc<SigningKey>,
    records: Records,
}

fn setup() -> Setup {
    let keys = make_keys();
    let rsa = load(&keys.rsa_pkcs8);
    let ed = load(&keys.ed25519);
    // The PKCS#1 form of the same key has the same public key.
    assert_eq!(load(&keys.rsa_pkcs1).public_key(), rsa.public_key());
    let records = Records::of(DOMAIN, &[("rsa", &rsa), ("ed", &ed)]);
    Setup { keys, rsa, ed, records }
}

/// Our signatures (an RSA and an Ed25519 one on each message, for relaxed
/// and for simple) verify with dkimpy and with our verifier; an altered body
/// octet and an altered signed field fail with both.
#[test]
fn dkimpy_verifies_our_signatures() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(&testdata_messages());
    let rsa_pkcs1 = load(&s.keys.rsa_pkcs1);
    let mut jobs = String::new();
    let mut expect: Vec<(String, &str)> = Vec::new();
    let mut refused = Vec::new();
    for (c, rsa_key) in [(Canon::Relaxed, &s.rsa), (Canon::Simple, &rsa_pkcs1)] {
        let rsa = Signer::new(DOMAIN, "rsa", rsa_key.clone()).unwrap().with_canonicalization(c, c);
        let ed = Signer::new(DOMAIN, "ed", s.ed.clone()).unwrap().with_canonicalization(c, c);
        for (name, msg) in &corpus {
            let Some(signed) = sign(&[&rsa, &ed], msg, 4096) else {
                if c == Canon::Relaxed {
                    refused.push(name.clone());
                }
                continue;
            };
            let names = signed_names(&signed);
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let variants = [("ok", signed.clone()), ("body", alter_body(&signed)), ("header", alter_header(&signed, &names))];
            for (what, m) in variants {
                let path = dir.path().join(format!("{name}.{}.{what}", c.name()));
                std::fs::write(&path, &m).unwrap();
                let want = if what == "ok" { "pass" } else { "fail" };
                let ours = our_verify(&m, &s.records);
                assert_eq!(ours.len(), 2, "{name} {c:?} {what}");
                for (i, o) in ours.iter().enumerate() {
                    assert_eq!(o.result(), want, "our verifier, {name} {c:?} {what} signature {i}: {o}");
                    jobs.push_str(&format!("verify\t{}\t{i}\n", path.display()));
                    expect.push((format!("{name} {} {what} signature {i}", c.name()), want));
                }
            }
        }
    }
    assert_eq!(refused, REFUSED, "messages whose header section we refuse");
    let got = dkimpy(dir.path(), &s.records, &jobs);
    let wrong: Vec<String> = expect
        .iter()
        .zip(&got)
        .filter(|((_, want), got)| !got.starts_with(want))
        .map(|((what, want), got)| format!("{what}: dkimpy says {got}, expected {want}"))
        .collect();
    assert!(wrong.is_empty(), "{} of {} checks differ:\n{}", wrong.len(), expect.len(), wrong.join("\n"));
    assert!(expect.len() > 600, "{} checks", expect.len());
}

/// dkimpy's signatures verify with our verifier, altered copies fail, and
/// its bh= equals ours for the same message and canonicalization: the
/// canonical bodies are byte-identical.
#[test]
fn we_verify_dkimpy_signatures_and_body_hashes_agree() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    // dkimpy refuses to sign a message without From ("The From header field
    // MUST be signed"); we sign those (the caller decides), so they are left out here.
    type Named = Vec<(String, Vec<u8>)>;
    let (corpus, no_from): (Named, Named) = corpus(&testdata_messages())
        .into_iter()
        .filter(|(n, _)| !REFUSED.contains(&n.as_str()))
        .partition(|(_, m)| {
            let (h, _) = header::split_message(m).unwrap();
            header::split_fields(h).unwrap().iter().any(|f| f.is("from"))
        });
    let no_from: Vec<&str> = no_from.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(no_from, ["msg_11", "msg_18", "msg_37", "msg_38", "msg_39", "msg_40"]);
    let mut jobs = String::new();
    let mut cases = Vec::new();
    for (name, msg) in &corpus {
        let path = dir.path().join(name);
        std::fs::write(&path, msg).unwrap();
        for (alg, sel, key) in [("rsa-sha256", "rsa", &s.keys.rsa_pkcs8), ("ed25519-sha256", "ed", &s.keys.ed25519)] {
            for c in [Canon::Relaxed, Canon::Simple] {
                let out = dir.path().join(format!("{name}.{sel}.{}.signed", c.name()));
                jobs.push_str(&format!(
                    "sign\t{}\t{}\t{sel}\t{DOMAIN}\t{}\t{alg}\t{}/{}\n",
                    path.display(),
                    out.display(),
                    key.display(),
                    c.name(),
                    c.name()
                ));
                cases.push((name, msg, c, out));
            }
        }
    }
    let got = dkimpy(dir.path(), &s.records, &jobs);
    let mut bh_ours: HashMap<(String, Canon), String> = HashMap::new();
    for ((name, msg, c, out), line) in cases.iter().zip(&got) {
        let what = format!("{name} {}", out.display());
        let bh = line.strip_prefix("signed ").unwrap_or_else(|| panic!("{what}: dkimpy: {line}"));
        let ours = bh_ours.entry(((*name).clone(), *c)).or_insert_with(|| {
            use base64::Engine;
            let (_, body) = header::split_message(msg).unwrap();
            let mut h = BodyHasher::new(*c, None);
            h.update(body);
            base64::engine::general_purpose::STANDARD.encode(h.finish().digest)
        });
        assert_eq!(bh, ours, "{what}: bh= of dkimpy and ours ({c:?})");
        let signed = std::fs::read(out).unwrap();
        assert_eq!(our_verify(&signed, &s.records), [Outcome::Pass], "{what}");
        assert_eq!(our_verify(&alter_body(&signed), &s.records), [Outcome::Fail(Failure::BodyHash)], "{what} body altered");
        let names = signed_names(&signed);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(
            our_verify(&alter_header(&signed, &names), &s.records),
            [Outcome::Fail(Failure::Signature)],
            "{what} header altered"
        );
    }
    assert_eq!(cases.len(), 4 * corpus.len());
}

/// OpenDKIM (libopendkim through opendkim-testmsg) verifies our single
/// signatures, each algorithm and canonicalization on its own, with the keys
/// from our printed records served by a fake DNS server in private
/// namespaces; altered copies fail. One kind of message it refuses before
/// any signature is looked at, which the test expects: those breaking RFC
/// 5322 3.6's field counts (no Date or From, two Subject fields, ...:
/// "Syntax error"). A bare CR, which opendkim-testmsg would hash as CR LF
/// (DKIM_LIBFLAGS_FIXCRLF; dkimpy hashes the CR), never reaches it: the
/// corpus is in the form smtp-remote sends, where a bare CR is CR LF (RFC
/// 5321 2.3.8). And what opendkim-testmsg signs (it signs rsa-sha1) we
/// refuse as RFC 8301 says.
#[test]
fn opendkim_verifies_our_signatures() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(&testdata_messages());
    let mut jobs = String::new();
    let mut expect = Vec::new();
    for c in [Canon::Relaxed, Canon::Simple] {
        for (sel, key) in [("rsa", &s.rsa), ("ed", &s.ed)] {
            let signer = Signer::new(DOMAIN, sel, key.clone()).unwrap().with_canonicalization(c, c);
            for (name, msg) in &corpus {
                let Some(signed) = sign(&[&signer], msg, 65536) else { continue };
                let names = signed_names(&signed);
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                for (what, m) in [("ok", signed.clone()), ("body", alter_body(&signed)), ("header", alter_header(&signed, &names))] {
                    let path = dir.path().join(format!("{name}.{sel}.{}.{what}", c.name()));
                    std::fs::write(&path, &m).unwrap();
                    jobs.push_str(&format!("verify\t{}\n", path.display()));
                    assert!(!msg.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n'), "{name}: a bare CR in the sent form");
                    let want = if what != "ok" {
                        "fail"
                    } else if !rfc5322_counts_ok(msg) {
                        "fail 70 opendkim-testmsg: dkim_chunk(): Syntax error"
                    } else {
                        "pass"
                    };
                    expect.push((format!("{name} {sel} {} {what}", c.name()), want));
                }
            }
        }
    }
    // opendkim-testmsg signing with our RSA key, for our verifier.
    let (name, msg) = &corpus[0];
    let src = dir.path().join(format!("{name}.plain"));
    std::fs::write(&src, msg).unwrap();
    let out = dir.path().join(format!("{name}.opendkim"));
    jobs.push_str(&format!("sign\t{}\t{}\trsa\t{DOMAIN}\t{}\n", src.display(), out.display(), s.keys.rsa_pkcs1.display()));
    let got = opendkim(dir.path(), &s.records, &jobs);
    assert_eq!(got.len(), expect.len() + 1);
    let wrong: Vec<String> = expect
        .iter()
        .zip(&got)
        .filter(|((_, want), got)| !got.starts_with(want))
        .map(|((what, want), got)| format!("{what}: opendkim-testmsg says {got}, expected {want}"))
        .collect();
    assert!(wrong.is_empty(), "{} of {} checks differ:\n{}", wrong.len(), expect.len(), wrong.join("\n"));
    assert_eq!(got.last().map(String::as_str), Some("signed"));
    let signed = std::fs::read(&out).unwrap();
    let r = verify::verify_message(&signed, &VerifyOptions::default(), NOW, &mut s.records.lookup()).unwrap();
    assert_eq!(r.len(), 1, "{}", String::from_utf8_lossy(&signed[..200.min(signed.len())]));
    assert_eq!(r[0].outcome, Outcome::PermError(verify::PermReason::Sha1));
    assert!(expect.len() > 500, "{} checks", expect.len());
    assert!(expect.iter().filter(|(_, w)| *w == "pass").count() > 100);
}

/// What the queue holds, converted by dkim::canon::LfToCrlf, is what
/// smtp-remote's encoder sends once its dot-stuffing and final dot are
/// taken off: the signature covers the bytes the receiver gets.
#[test]
fn lf_form_converts_as_smtp_remote_sends() {
    use smtpd::remote::message::Encoder;
    let undo_smtp = |wire: &[u8]| -> Vec<u8> {
        let body = wire.strip_suffix(b".\r\n").expect("final dot");
        let mut out = Vec::new();
        let mut line_start = true;
        for &b in body {
            // A dot at the start of a line is always the encoder's added one.
            if line_start && b == b'.' {
                line_start = false;
                continue;
            }
            out.push(b);
            line_start = b == b'\n';
        }
        out
    };
    let mut msgs: Vec<Vec<u8>> = testdata_messages().iter().map(|p| std::fs::read(p).unwrap()).collect();
    msgs.extend(edge_messages().into_iter().map(|(_, m)| m));
    msgs.push(b".\n..\n.x\nend.\n.".to_vec());
    for m in msgs {
        let mut e = Encoder::new();
        let mut wire = Vec::new();
        for c in m.chunks(1000) {
            e.encode(c, &mut wire);
        }
        e.finish(&mut wire);
        assert_eq!(undo_smtp(&wire), smtpd::dkim::canon::lf_to_crlf(&m), "{}", String::from_utf8_lossy(&m[..80.min(m.len())]));
    }
}

/// Keys as openssl writes them: PKCS#8 and PKCS#1 RSA, Ed25519; a 1024-bit
/// RSA key and a 2560-bit one are refused with the reason (ring signs
/// 2048, 3072 and 4096 only); the printed zone entry holds strings of at
/// most 255 octets that make up the record.
#[test]
fn openssl_keys_and_printed_records() {
    let s = setup();
    for k in [&s.rsa, &s.ed] {
        let entry = k.zone_entry("sel", DOMAIN);
        let strings = zone_strings(&entry);
        assert!(strings.iter().all(|x| x.len() <= 255), "{entry}");
        assert_eq!(record_from_zone_entry(&entry), k.dns_record());
        assert!(entry.starts_with("sel._domainkey.example.com.\tIN\tTXT\t( \"v=DKIM1; k="), "{entry}");
    }
    let dir = s.keys.dir.path();
    openssl(dir, &["genrsa", "-out", "rsa1024.pem", "1024"]);
    openssl(dir, &["genrsa", "-out", "rsa2560.pem", "2560"]);
    let err = |f: &str| SigningKey::from_pem(&std::fs::read(dir.join(f)).unwrap()).unwrap_err();
    assert_eq!(err("rsa1024.pem"), KeyError::RsaTooSmall { bits: 1024 });
    assert_eq!(err("rsa2560.pem"), KeyError::RsaOddSize { bits: 2560 });
    // dkimpy agrees that our RSA record and Ed25519 record are keys it can use:
    // covered by dkimpy_verifies_our_signatures; here, the public key of the
    // printed RSA record is the one openssl derives.
    let pubout = Command::new("openssl").args(["rsa", "-in"]).arg(&s.keys.rsa_pkcs8).args(["-pubout", "-outform", "DER"]).output().unwrap();
    assert!(pubout.status.success());
    assert_eq!(pubout.stdout, s.rsa.public_key());
    let pubout = Command::new("openssl").args(["pkey", "-in"]).arg(&s.keys.ed25519).args(["-pubout", "-outform", "DER"]).output().unwrap();
    assert!(pubout.status.success());
    assert_eq!(&pubout.stdout[pubout.stdout.len() - 32..], s.ed.public_key());
}
