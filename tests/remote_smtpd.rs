//! smtp-remote against our own smtpd-rs under tcpserver on loopback, with a
//! per-message queue program that keeps what it gets: message, envelope and
//! attribute block arrive exactly (BODY, SMTPUTF8, DSN, XFORWARD facts).
#[path = "support/exe.rs"]
mod exe;
#[path = "support/remote.rs"]
mod support;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use support::*;

const SMTPD: &str = env!("CARGO_BIN_EXE_smtpd-rs");

/// Keeps the message, the envelope (read from fd 1) and QUEUE_ATTRS.
const QQ: &str = "#!/bin/sh\ncat > \"$KEEP/msg\" || exit 54\ncat <&1 > \"$KEEP/env\" || exit 54\nprintf '%s' \"$QUEUE_ATTRS\" > \"$KEEP/attrs\"\n";

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smtpd(dir: &std::path::Path, env: &[(&str, &str)]) -> Server {
    smtpd_behind(dir, env, &[])
}

/// smtpd-rs under tcpserver, with `wrap` (e.g. tls-wrap) in front of it.
fn smtpd_behind(dir: &std::path::Path, env: &[(&str, &str)], wrap: &[&str]) -> Server {
    let qq = dir.join("qq");
    exe::write(&qq, QQ);
    let mut c = Command::new("tcpserver");
    c.args(["-1", "-R", "-H", "-l", "0", "-c", "4", "127.0.0.1", "0"]).args(wrap).arg(SMTPD)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("SMTPD_HOSTNAME", "mx.test")
        .env("QMAILQUEUE", &qq)
        .env("KEEP", dir)
        .env("RELAYCLIENT", "");
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("tcpserver (Debian package ucspi-tcp)");
    let mut out = child.stdout.take().unwrap();
    let (mut port, mut b) = (String::new(), [0u8; 1]);
    while out.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        port.push(b[0] as char);
    }
    let port = port.trim().parse().expect("tcpserver -1 prints the port");
    Server { child, port }
}

#[test]
fn smtpd_rs_byte_exact_with_attributes() {
    let d = tempfile::tempdir().unwrap();
    let s = smtpd(d.path(), &[("XFORWARD", "1")]);
    let msg: &[u8] = b"From: a@example.org\nSubject: caf\xc3\xa9\n\nfirst\n.dot\n..two\nlast\n";
    let attrs = "SMTPUTF8=1\nRET=HDRS\nENVID=env1\nRCPT.0.NOTIFY=SUCCESS,FAILURE\nRCPT.0.ORCPT=rfc822;b@example.net\n\
CLIENT_ADDR=192.0.2.9\nCLIENT_HELO=box.example\nCLIENT_PROTO=ESMTP\nCLIENT_NAME=box.example\n";
    let r = run(
        &["[127.0.0.1]", "a@example.org", "b@example.net", "j\u{f6}rg@example.net"],
        &[("SMTP_PORT", &s.port.to_string()), ("QUEUE_ATTRS", attrs), ("SMTP_XFORWARD", "1")],
        msg,
    );
    assert!(r.report.starts_with("r|r|K127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 ok"), "{}", r.report);
    let got = std::fs::read(d.path().join("msg")).unwrap();
    // smtpd-rs adds its Received header, then the message with LF line ends.
    let body_at = got.windows(msg.len()).position(|w| w == msg).expect("message arrives unchanged");
    assert!(got.starts_with(b"Received: "), "{}", String::from_utf8_lossy(&got));
    assert_eq!(&got[body_at..], msg);
    assert_eq!(std::fs::read(d.path().join("env")).unwrap(), "Fa@example.org\0Tb@example.net\0Tj\u{f6}rg@example.net\0\0".as_bytes());
    let stored = std::fs::read_to_string(d.path().join("attrs")).unwrap();
    for want in ["BODY=8BITMIME", "SMTPUTF8=1", "RET=HDRS", "ENVID=env1", "RCPT.0.NOTIFY=SUCCESS,FAILURE", "CLIENT_ADDR=192.0.2.9", "CLIENT_HELO=box.example"] {
        assert!(stored.lines().any(|l| l == want), "{want} not in {stored}");
    }
}

#[test]
fn smtpd_rs_through_tls_wrap_with_starttls() {
    // tls-wrap gives smtpd-rs STARTTLS (UCSPI-TLS); smtp-remote with TLS
    // required and the test CA verifies it, and the message arrives exact.
    let d = tempfile::tempdir().unwrap();
    let (ca, _leaf, key, chain) = ca_and_leaf(d.path(), "mx.test");
    let s = smtpd_behind(
        d.path(),
        &[("CERTFILE", chain.to_str().unwrap()), ("KEYFILE", key.to_str().unwrap()), ("UCSPITLS", "")],
        &[env!("CARGO_BIN_EXE_tls-wrap")],
    );
    let msg: &[u8] = b"From: a@example.org\nSubject: over TLS\n\nbody\n.dot\n";
    let r = run(
        &["[127.0.0.1]", "a@example.org", "b@example.net"],
        &[("SMTP_PORT", &s.port.to_string()), ("SMTP_TLS", "verify"), ("TLS_CAFILE", ca.to_str().unwrap())],
        msg,
    );
    assert!(r.report.starts_with("r|K127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 ok"), "{}", r.report);
    let got = std::fs::read(d.path().join("msg")).unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(got.ends_with(msg), "{text}");
    assert!(text.lines().take(4).any(|l| l.contains("with ESMTPS")), "{text}");
    let stored = std::fs::read_to_string(d.path().join("attrs")).unwrap();
    assert!(stored.lines().any(|l| l.starts_with("TLS_PROTOCOL=TLSv1.")), "{stored}");
    assert_eq!(std::fs::read(d.path().join("env")).unwrap(), b"Fa@example.org\0Tb@example.net\0\0");
}

#[test]
fn smtpd_rs_refusals() {
    let d = tempfile::tempdir().unwrap();
    let s = smtpd(d.path(), &[("DATABYTES", "10")]);
    let r = run(&["[127.0.0.1]", "a@example.org", "b@example.net"], &[("SMTP_PORT", &s.port.to_string())], b"Subject: big enough\n\nbody\n");
    assert!(r.report.starts_with("DConnected to 127.0.0.1 but the message (29 bytes) is larger than its SIZE limit of 10. (#5.3.4)"), "{}", r.report);
    assert!(!d.path().join("msg").exists());
}

#[test]
fn smtpd_rs_xclient() {
    let d = tempfile::tempdir().unwrap();
    let s = smtpd(d.path(), &[("XCLIENT", "1")]);
    let attrs = "CLIENT_ADDR=198.51.100.7\nCLIENT_HELO=far.example\nCLIENT_LOGIN=alice\n";
    let r = run(&["[127.0.0.1]", "a@example.org", "b@example.net"], &[("SMTP_PORT", &s.port.to_string()), ("QUEUE_ATTRS", attrs), ("SMTP_XCLIENT", "1")], b"Subject: x\n\nbody\n");
    assert!(r.report.starts_with("r|K127.0.0.1 accepted message."), "{}", r.report);
    let stored = std::fs::read_to_string(d.path().join("attrs")).unwrap();
    for want in ["CLIENT_ADDR=198.51.100.7", "CLIENT_HELO=far.example", "CLIENT_LOGIN=alice"] {
        assert!(stored.lines().any(|l| l == want), "{want} not in {stored}");
    }
}

#[test]
fn smtpd_rs_with_my_own_name_is_a_loop() {
    // The loop: a route that points at this host's own smtpd-rs
    // (here on another port, so the address check alone cannot see it).
    // It greets with smtp-remote's own HELOHOST: permanent, nothing queued.
    let d = tempfile::tempdir().unwrap();
    let s = smtpd(d.path(), &[("SMTPD_HOSTNAME", "client.test")]);
    let routes = d.path().join("smtproutes");
    std::fs::write(&routes, format!("loop.test:127.0.0.1:{}\n", s.port)).unwrap();
    let r = run(&["loop.test", "a@example.org", "b@loop.test"], &[("SMTPROUTES", routes.to_str().unwrap())], b"Subject: x\n\nbody\n");
    assert_eq!(
        r.report,
        "DConnected to 127.0.0.1 but it greeted me with my own name, client.test: mail for loop.test loops back to myself. (#5.4.6)\n|"
    );
    assert!(!d.path().join("msg").exists());
    // Another name: delivered as usual.
    let s = smtpd(d.path(), &[("SMTPD_HOSTNAME", "mx.test")]);
    std::fs::write(&routes, format!("loop.test:127.0.0.1:{}\n", s.port)).unwrap();
    let r = run(&["loop.test", "a@example.org", "b@loop.test"], &[("SMTPROUTES", routes.to_str().unwrap())], b"Subject: x\n\nbody\n");
    assert!(r.report.starts_with("r|K127.0.0.1 accepted message."), "{}", r.report);
}
