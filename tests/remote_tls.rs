//! smtp-remote's STARTTLS policies and AUTH, against the scripted server
//! with rustls on loopback (address literals, so no DNS here).
#[path = "support/remote.rs"]
mod support;
use support::*;

const MSG: &[u8] = b"Subject: tls\n\nsecret\n";

fn go(port: u16, env: &[(&str, &str)]) -> Run {
    let p = port.to_string();
    let mut e = vec![("SMTP_PORT", p.as_str())];
    e.extend_from_slice(env);
    run(&["[127.0.0.1]", "a@example.org", "b@example.net"], &e, MSG)
}

fn tls_fake(cert: &std::path::Path, key: &std::path::Path, ext: &[&str], script: Script) -> Fake {
    fake_on("127.0.0.1", 0, ext, Some(server_config(cert, key)), script)
}

#[test]
fn may_uses_starttls_when_offered() {
    let d = tempfile::tempdir().unwrap();
    let (c, k) = cert(d.path(), "mx.test");
    let f = tls_fake(&c, &k, &["PIPELINING"], Box::new(|_| Act::Default));
    let r = go(f.port(), &[]);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    let log = f.log();
    assert_eq!(&log[..4], ["EHLO client.test", "STARTTLS", "TLS", "EHLO client.test"]);
    assert_eq!(f.messages()[0], b"Subject: tls\r\n\r\nsecret\r\n");
}

#[test]
fn may_falls_back_to_plaintext_after_a_failed_handshake() {
    let f = fake(&["STARTTLS"], |c| if c == "STARTTLS" { send("220 ready\r\n\x15\x03\x03garbage") } else { Act::Default });
    let r = go(f.port(), &[]);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    let log = f.log();
    assert_eq!(log.iter().filter(|l| *l == "STARTTLS").count(), 1, "{log:?}");
    assert_eq!(f.messages().len(), 1);
}

#[test]
fn encrypt_requires_starttls() {
    let f = fake(&["PIPELINING"], |_| Act::Default);
    let r = go(f.port(), &[("SMTP_TLS", "encrypt")]);
    assert_eq!(r.report, "ZConnected to 127.0.0.1 but it does not offer STARTTLS, which my policy requires. (#4.7.0)\n|");
    assert!(f.messages().is_empty());
    let f = fake(&["STARTTLS"], |c| if c == "STARTTLS" { send("454 4.7.0 TLS not available\r\n") } else { Act::Default });
    let r = go(f.port(), &[("SMTP_TLS", "encrypt")]);
    assert_eq!(r.report, "ZConnected to 127.0.0.1 but STARTTLS was refused. (#4.7.0)\nRemote host said: 454 4.7.0 TLS not available\n|");
}

#[test]
fn none_never_starttls() {
    let d = tempfile::tempdir().unwrap();
    let (c, k) = cert(d.path(), "mx.test");
    let f = tls_fake(&c, &k, &[], Box::new(|_| Act::Default));
    let r = go(f.port(), &[("SMTP_TLS", "none")]);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    assert!(!f.log().iter().any(|l| l == "STARTTLS"));
}

#[test]
fn verify_with_and_without_the_ca() {
    let d = tempfile::tempdir().unwrap();
    let (ca, _leaf, key, chain) = ca_and_leaf(d.path(), "mx.test");
    let f = tls_fake(&chain, &key, &[], Box::new(|_| Act::Default));
    let r = go(f.port(), &[("SMTP_TLS", "verify"), ("TLS_CAFILE", ca.to_str().unwrap())]);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    let r = go(f.port(), &[("SMTP_TLS", "verify")]);
    assert!(r.report.starts_with("ZConnected to 127.0.0.1 but the TLS handshake failed ("), "{}", r.report);
    assert!(r.report.ends_with("(#4.7.0)\n|"), "{}", r.report);
    assert_eq!(f.messages().len(), 1);
    // A self-signed certificate does not verify either.
    let (c, k) = cert(d.path(), "self.test");
    let f = tls_fake(&c, &k, &[], Box::new(|_| Act::Default));
    let r = go(f.port(), &[("SMTP_TLS", "verify"), ("TLS_CAFILE", ca.to_str().unwrap())]);
    assert!(r.report.starts_with("ZConnected to 127.0.0.1 but the TLS handshake failed"), "{}", r.report);
}

#[test]
fn auth_cram_md5_over_tls() {
    let d = tempfile::tempdir().unwrap();
    let (c, k) = cert(d.path(), "mx.test");
    let f = tls_fake(
        &c,
        &k,
        &["AUTH PLAIN LOGIN CRAM-MD5"],
        Box::new(|cmd| match cmd {
            // RFC 2195's example exchange.
            "AUTH CRAM-MD5" => send("334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n"),
            "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw" => send("235 2.7.0 ok\r\n"),
            _ => Act::Default,
        }),
    );
    let creds = d.path().join("auth");
    std::fs::write(&creds, "# smarthost\n127.0.0.1 tim tanstaaftanstaaf\n").unwrap();
    let r = go(f.port(), &[("SMTP_AUTHFILE", creds.to_str().unwrap()), ("TLS_PIN", &pin(&c))]);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    let log = f.log();
    assert_eq!(log[4], "AUTH CRAM-MD5");
    assert!(log[6].starts_with("MAIL FROM:"));
}

#[test]
fn auth_failure_is_temporary_and_no_password_in_plaintext() {
    let d = tempfile::tempdir().unwrap();
    let (c, k) = cert(d.path(), "mx.test");
    let creds = d.path().join("auth");
    std::fs::write(&creds, "* u p\n").unwrap();
    let f = tls_fake(&c, &k, &["AUTH PLAIN"], Box::new(|_| Act::Default));
    let r = go(f.port(), &[("SMTP_AUTHFILE", creds.to_str().unwrap()), ("TLS_PIN", &pin(&c))]);
    assert_eq!(r.report, "ZConnected to 127.0.0.1 but authentication failed.\nRemote host said: 535 no\n|");
    assert!(f.log().contains(&"AUTH PLAIN AHUAcA==".to_string()));
    let f = fake(&["AUTH PLAIN"], |_| Act::Default);
    let r = go(f.port(), &[("SMTP_AUTHFILE", creds.to_str().unwrap())]);
    assert_eq!(r.report, "ZConnected to 127.0.0.1 but TLS is not active and I send no password without it. (#4.7.0)\n|");
    assert!(!f.log().iter().any(|l| l.starts_with("AUTH")));
}

#[test]
fn auth_login_over_tls() {
    let d = tempfile::tempdir().unwrap();
    let (c, k) = cert(d.path(), "mx.test");
    let f = tls_fake(
        &c,
        &k,
        &["AUTH LOGIN"],
        Box::new(|cmd| match cmd {
            "AUTH LOGIN" => send("334 VXNlcm5hbWU6\r\n"),
            "dXNlcg==" => send("334 UGFzc3dvcmQ6\r\n"),
            "cGFzcw==" => send("235 2.7.0 ok\r\n"),
            _ => Act::Default,
        }),
    );
    let creds = d.path().join("auth");
    std::fs::write(&creds, "127.0.0.1 user pass\n").unwrap();
    let r = go(f.port(), &[("SMTP_AUTHFILE", creds.to_str().unwrap()), ("TLS_PIN", &pin(&c))]);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    assert_eq!(&f.log()[4..7], ["AUTH LOGIN", "dXNlcg==", "cGFzcw=="]);
}

#[test]
fn verify_with_an_unreadable_ca_file_is_a_config_error() {
    let f = fake(&["STARTTLS"], |_| Act::Default);
    let r = go(f.port(), &[("SMTP_TLS", "verify"), ("TLS_CAFILE", "/nonexistent/ca.pem")]);
    assert!(r.report.starts_with("ZUnable to read configuration: unable to read /nonexistent/ca.pem"), "{}", r.report);
    assert!(f.log().is_empty());
}

/// A routes file in `dir` with `text`, for SMTPROUTES.
fn routes(dir: &std::path::Path, text: &str) -> String {
    let p = dir.join("smtproutes");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn a_route_option_sets_the_tls_level() {
    let d = tempfile::tempdir().unwrap();
    let f = fake(&["PIPELINING"], |_| Act::Default);
    let rp = routes(d.path(), &format!("[127.0.0.1]:127.0.0.1:{} tls=encrypt\n", f.port()));
    let r = go(f.port(), &[("SMTPROUTES", &rp)]);
    assert_eq!(r.report, "ZConnected to 127.0.0.1 but it does not offer STARTTLS, which my policy requires. (#4.7.0)\n|");
    // And the other way: SMTP_TLS=encrypt, the route says may.
    let rp = routes(d.path(), &format!("[127.0.0.1]:127.0.0.1:{} tls=may\n", f.port()));
    let r = go(f.port(), &[("SMTPROUTES", &rp), ("SMTP_TLS", "encrypt")]);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    // A bad option is a configuration error: temporary, nothing sent.
    let rp = routes(d.path(), "[127.0.0.1]:127.0.0.1 tls=secure\n");
    let r = go(f.port(), &[("SMTPROUTES", &rp)]);
    assert_eq!(r.report, format!("ZUnable to read configuration: {rp}: line 1: bad tls= level. (#4.3.0)\n|"));
    assert_eq!(f.messages().len(), 1);
}

/// What `sh -c cmd` prints, trimmed.
fn sh(cmd: &str) -> String {
    let out = std::process::Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A plain `openssl req -x509` certificate, as an operator makes one for a
/// smarthost: openssl.cnf's v3_ca extensions make it a CA certificate.
fn plain_self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (c, k) = (dir.join("plain.crt"), dir.join("plain.key"));
    sh(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=smarthost.test -keyout {} -out {} 2>/dev/null",
        k.display(),
        c.display()
    ));
    (c, k)
}

#[test]
fn pinning_a_self_signed_certificate() {
    let d = tempfile::tempdir().unwrap();
    let (c, k) = plain_self_signed(d.path());
    let f = tls_fake(&c, &k, &[], Box::new(|_| Act::Default));
    // The problem: as a CA file it is refused (CaUsedAsEndEntity).
    let r = go(f.port(), &[("SMTP_TLS", "verify"), ("TLS_CAFILE", c.to_str().unwrap())]);
    assert!(r.report.starts_with("ZConnected to 127.0.0.1 but the TLS handshake failed"), "{}", r.report);
    // The two commands smtp-remote(8) gives: the public key's hash ...
    let spki = sh(&format!(
        "openssl x509 -in {} -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256",
        c.display()
    ));
    let spki = format!("sha256:{}", spki.rsplit(' ').next().unwrap());
    let r = go(f.port(), &[("TLS_PIN", &spki)]);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    assert_eq!(f.log().iter().filter(|l| *l == "TLS").count(), 1);
    // ... or the certificate's fingerprint, colons and all; one of several.
    let fp = sh(&format!("openssl x509 -in {} -noout -fingerprint -sha256", c.display()));
    let fp = format!("sha256:{}", fp.rsplit('=').next().unwrap());
    let other = format!("sha256:{}", "00".repeat(32));
    let r = go(f.port(), &[("TLS_PIN", &format!("{other}, {fp}")), ("SMTP_TLS", "may")]);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    // A certificate that matches no pin: temporary, nothing sent.
    let r = go(f.port(), &[("TLS_PIN", &other)]);
    assert!(r.report.starts_with("ZConnected to 127.0.0.1 but the TLS handshake failed ("), "{}", r.report);
    assert!(r.report.contains("matches no pinned certificate"), "{}", r.report);
    assert_eq!(f.messages().len(), 2);
    // Pins require TLS, whatever the level: no STARTTLS, no mail.
    let plain = fake(&[], |_| Act::Default);
    let r = go(plain.port(), &[("TLS_PIN", &spki), ("SMTP_TLS", "none")]);
    assert_eq!(r.report, "ZConnected to 127.0.0.1 but it does not offer STARTTLS, which my policy requires. (#4.7.0)\n|");
    // Per route: the route's pins replace TLS_PIN.
    let rp = routes(d.path(), &format!("[127.0.0.1]:127.0.0.1:{} pin={other} pin={spki}\n", f.port()));
    let r = go(f.port(), &[("SMTPROUTES", &rp), ("TLS_PIN", &other)]);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    // A bad pin is a configuration error.
    let r = go(f.port(), &[("TLS_PIN", "sha256:abc")]);
    assert_eq!(r.report, "ZUnable to read configuration: bad TLS_PIN: \"sha256:abc\" (sha256:hex). (#4.3.0)\n|");
}

#[test]
fn credentials_only_over_a_verified_certificate() {
    let d = tempfile::tempdir().unwrap();
    let (ca, leaf, key, chain) = ca_and_leaf(d.path(), "mx.test");
    let creds = d.path().join("auth");
    std::fs::write(&creds, "* u p\n").unwrap();
    let cp = creds.to_str().unwrap();
    let ok = || -> Script {
        Box::new(|c| if c.starts_with("AUTH PLAIN") { send("235 2.7.0 ok\r\n") } else { Act::Default })
    };
    let f = tls_fake(&chain, &key, &["AUTH PLAIN"], ok());
    let unverified = "ZConnected to 127.0.0.1 but its certificate was not verified: not sending credentials over unverified TLS. (#4.7.0)\n|";
    // may, encrypt, and dane without TLSA records (an address literal): TLS,
    // but nobody vouches for the certificate. No AUTH, no mail.
    for level in ["may", "encrypt", "dane"] {
        let r = go(f.port(), &[("SMTP_AUTHFILE", cp), ("SMTP_TLS", level)]);
        assert_eq!(r.report, unverified, "{level}");
    }
    assert!(!f.log().iter().any(|l| l.starts_with("AUTH")), "{:?}", f.log());
    assert_eq!(f.log().iter().filter(|l| *l == "TLS").count(), 3);
    assert!(f.messages().is_empty());
    // verify with the CA, or a pin: credentials go.
    let r = go(f.port(), &[("SMTP_AUTHFILE", cp), ("SMTP_TLS", "verify"), ("TLS_CAFILE", ca.to_str().unwrap())]);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    let r = go(f.port(), &[("SMTP_AUTHFILE", cp), ("TLS_PIN", &pin(&leaf))]);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    assert_eq!(f.log().iter().filter(|l| l.starts_with("AUTH PLAIN")).count(), 2);
    // The operator's explicit choice, by variable or per route.
    let r = go(f.port(), &[("SMTP_AUTHFILE", cp), ("AUTH_UNVERIFIED", "1")]);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    let rp = routes(d.path(), &format!("[127.0.0.1]:127.0.0.1:{} tls=encrypt auth_unverified\n", f.port()));
    let r = go(f.port(), &[("SMTP_AUTHFILE", cp), ("SMTPROUTES", &rp)]);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    let rp = routes(d.path(), &format!("[127.0.0.1]:127.0.0.1:{} auth_unverified=0\n", f.port()));
    let r = go(f.port(), &[("SMTP_AUTHFILE", cp), ("SMTPROUTES", &rp), ("AUTH_UNVERIFIED", "1")]);
    assert_eq!(r.report, unverified);
    assert_eq!(f.log().iter().filter(|l| l.starts_with("AUTH PLAIN")).count(), 4);
}
