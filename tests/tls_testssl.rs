//! testssl.sh against tls-wrap under tcpserver (STARTTLS via SMTP, with the
//! small test application): no protocol below TLS 1.2, no weak or CBC
//! cipher, nothing vulnerable. Bounded: about a minute, killed at 5.

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
    let mut server = Command::new("tcpserver")
        .args(["-1", "-R", "-H", "-l", "localhost", "-c", "40", "127.0.0.1", "0", TLS_WRAP, "/usr/bin/python3", &app()])
        .envs(certs.env("ecdsa"))
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
