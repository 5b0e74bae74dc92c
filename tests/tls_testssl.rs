//! testssl.sh --starttls smtp against tls-wrap + smtpd-rs under tcpserver
//! (STARTTLS offered by the real session program, with its queue behind it):
//! no protocol below TLS 1.2, no weak or CBC cipher, nothing vulnerable.
//! Bounded: about a minute, killed at 5. The findings' lines are printed
//! (`cargo test --test tls_testssl -- --nocapture`) for the README.

#[path = "support/tls.rs"]
mod support;

use std::io::BufRead;
use std::process::{Command, Stdio};
use support::*;

#[test]
fn testssl_finds_nothing_weak() {
    need("testssl", "testssl.sh");
    need("tcpserver", "ucspi-tcp");
    let certs = Certs::new();
    let q = tempfile::tempdir().expect("queue dir");
    std::fs::write(q.path().join("rcpthosts"), "example.com\n").expect("rcpthosts");
    let mut server = Command::new("tcpserver")
        .args(["-1", "-R", "-H", "-l", "localhost", "-c", "40", "127.0.0.1", "0", TLS_WRAP, env!("CARGO_BIN_EXE_smtpd-rs")])
        .envs(certs.env("ecdsa"))
        .env("UCSPITLS", "")
        .env("QUEUE_DIR", q.path().join("queue"))
        .env("RCPTHOSTS", q.path().join("rcpthosts"))
        .env("SMTPD_HOSTNAME", "mx.test")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpserver");
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("port");
    let port: u16 = line.trim().parse().expect("port number");
    let out = Command::new("timeout")
        .args(["300", "testssl", "--quiet", "--color", "0", "--warnings", "batch", "--starttls", "smtp", "-p", "-s", "-U"])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .expect("testssl");
    let _ = server.kill();
    let _ = server.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    let has = |prefix: &str, what: &str| text.lines().any(|l| l.trim_start().starts_with(prefix) && l.contains(what));
    for p in ["SSLv2", "SSLv3", "TLS 1 ", "TLS 1.1"] {
        assert!(has(p, "not offered"), "{p}:\n{text}");
    }
    assert!(has("TLS 1.2", "offered (OK)") && has("TLS 1.3", "offered (OK)"), "{text}");
    for c in ["NULL ciphers", "Anonymous NULL", "Export ciphers", "LOW: 64 Bit", "Triple DES", "Obsolete CBC"] {
        assert!(has(c, "not offered"), "{c}:\n{text}");
    }
    assert!(has("Heartbleed", "not vulnerable") && has("ROBOT", ""), "{text}");
    assert!(!text.contains("VULNERABLE") && !text.contains("NOT ok"), "{text}");
}
