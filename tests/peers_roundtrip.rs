//! Byte-exact round trip of every test message (tests/data/messages) through
//! smtpd-rs into the queue, sent by Python's smtplib over tcpserver, once in
//! session mode (one queue-inject for the session) and once with a
//! per-message queue program (QMAILQUEUE). The queue file is a header, an
//! empty line, then the message with our Received header first: strip that
//! header and the rest must equal the file as sent (see `as_stored`).
#[path = "support/peers.rs"]
mod support;

use std::process::Command;
use std::time::Duration;
use support::*;

/// Sends file i to rt<i>@example.com, all in one session.
const SCRIPT: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
s = smtplib.SMTP('127.0.0.1', port, timeout=20)
s.ehlo('client.test.example')
for i, name in enumerate(sys.argv[2:]):
    data = open(name, 'rb').read()
    data = data.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
    s.sendmail('sender@example.org', ['rt%d@example.com' % i], data)
assert s.quit()[0] == 221
"#;

fn roundtrip(extra_env: &[(&str, Option<&str>)]) {
    let files = testdata_messages();
    let s = Scratch::new();
    let srv = TcpServer::smtpd(&s, extra_env);
    let mut c = Command::new(python3());
    s.env(&mut c);
    c.arg("-c").arg(SCRIPT).arg(srv.port.to_string()).args(&files);
    let o = run(&mut c, b"", DEADLINE);
    assert!(o.status.success(), "smtplib: {}\n--- smtpd-rs log\n{}", o.text(), srv.log_text());

    let got = s.wait_new(files.len(), Duration::from_secs(5));
    assert_eq!(got.len(), files.len(), "one queue file per message sent");
    let queued = s.messages();
    for (i, f) in files.iter().enumerate() {
        let rcpt = format!("rt{i}@example.com");
        let m = queued
            .iter()
            .find(|m| m.to_strings() == [rcpt.as_str()])
            .unwrap_or_else(|| panic!("{}: no queue file for {rcpt}", f.display()));
        // The attribute block reaches the queue in both hand-off modes (an
        // A frame in session mode, QUEUE_ATTRS per message).
        assert_eq!(m.attr("CLIENT_ADDR"), Some("127.0.0.1"), "{}: {:?}", m.path.display(), m.attrs);
        assert_eq!(m.attr("CLIENT_HELO"), Some("client.test.example"), "{}: {:?}", m.path.display(), m.attrs);
        let want = as_stored(&std::fs::read(f).expect("read message"));
        let body = m.body();
        if body != &want[..] {
            let at = body.iter().zip(want.iter()).position(|(a, b)| a != b).unwrap_or(body.len().min(want.len()));
            panic!(
                "{} differs from {} at byte {at} (queued {} bytes, sent {}):\n--- queued from there\n{}\n--- sent from there\n{}",
                m.path.display(),
                f.display(),
                body.len(),
                want.len(),
                String::from_utf8_lossy(&body[at..body.len().min(at + 200)]),
                String::from_utf8_lossy(&want[at..want.len().min(at + 200)])
            );
        }
    }
}

#[test]
fn testdata_roundtrip_session_mode() {
    roundtrip(&[]);
}

#[test]
fn testdata_roundtrip_per_message_queue_program() {
    roundtrip(&[("QMAILQUEUE", Some(QUEUE_INJECT))]);
}
