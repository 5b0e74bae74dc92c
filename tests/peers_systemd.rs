//! Real peer: systemd's socket activation with Accept=yes, as
//! `systemd-socket-activate -a --inetd` runs it: the connection on fd 0/1,
//! no TCP* variables. systemd itself also sets REMOTE_ADDR/REMOTE_PORT for
//! Accept=yes services; systemd-socket-activate does not, so one test sets
//! them (-E) the way systemd would and one leaves smtpd-rs to getpeername.
#[path = "support/peers.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

/// Starts smtpd-rs under systemd-socket-activate on a loopback port.
fn activate(s: &Scratch, extra: &[&str]) -> (Group, u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    let prog = peer("systemd-socket-activate", "systemd");
    let port = free_port();
    let mut c = Command::new(prog);
    s.env(&mut c);
    c.args(["-a", "--inetd", "-l", &format!("127.0.0.1:{port}")]);
    // It hands the program only PATH, HOME, TERM and what -E names (as
    // systemd gives a unit only its Environment=): pass the scratch settings.
    for var in ["QUEUE_DIR", "RCPTHOSTS", "SMTPD_HOSTNAME", "SMTPD_TIMEOUT", "LANG"] {
        c.args(["-E", var]);
    }
    c.args(extra).arg(SMTPD);
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut g = Group::spawn(&mut c);
    let log = collect(g.0.stderr.take().expect("stderr"));
    (g, port, log)
}

/// One plain SMTP transaction by hand; returns the server's replies.
fn transaction(port: u16) -> String {
    let conn = connect(port, Duration::from_secs(10));
    let mut w = conn.try_clone().expect("clone");
    let mut r = BufReader::new(conn);
    let mut replies = String::new();
    let reply = |r: &mut BufReader<std::net::TcpStream>| -> String {
        let mut all = String::new();
        for _ in 0..50 {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap_or(0) == 0 {
                break;
            }
            all.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        all
    };
    replies += &reply(&mut r);
    for cmd in [
        "EHLO client.test.example\r\n",
        "MAIL FROM:<sender@example.org>\r\n",
        "RCPT TO:<user@example.com>\r\n",
        "DATA\r\n",
    ] {
        w.write_all(cmd.as_bytes()).expect("write");
        replies += &reply(&mut r);
    }
    w.write_all(b"Subject: socket activation\r\n\r\nhello\r\n.\r\n").expect("write");
    replies += &reply(&mut r);
    w.write_all(b"QUIT\r\n").expect("write");
    replies += &reply(&mut r);
    replies
}

fn codes(replies: &str) -> Vec<&str> {
    replies.lines().filter(|l| l.as_bytes().get(3) == Some(&b' ')).map(|l| &l[..3]).collect()
}

#[test]
fn socket_activation_with_remote_addr() {
    let s = Scratch::new();
    // What systemd sets for an Accept=yes service (an address that is not
    // the real peer's, so the test sees which one smtpd-rs used).
    let (g, port, log) = activate(&s, &["-E", "REMOTE_ADDR=192.0.2.7", "-E", "REMOTE_PORT=4242"]);
    let replies = transaction(port);
    assert_eq!(codes(&replies), ["220", "250", "250", "250", "354", "250", "221"], "{replies}");
    let files = s.wait_new(1, Duration::from_secs(5));
    assert_eq!(files.len(), 1, "one message queued");
    let m = QueueFile::read(&files[0]);
    let rcv = String::from_utf8_lossy(m.received()).into_owned();
    assert!(rcv.contains("192.0.2.7"), "REMOTE_ADDR in the trace: {rcv}");
    assert_eq!(m.body(), b"Subject: socket activation\n\nhello\n");
    let log = wait_log(&log, "smtpd-rs:", Duration::from_secs(3));
    drop(g);
    assert!(log.lines().any(|l| l.starts_with("smtpd-rs") && l.contains("192.0.2.7")), "REMOTE_ADDR in the log:\n{log}");
}

#[test]
fn socket_activation_falls_back_to_getpeername() {
    let s = Scratch::new();
    let (g, port, log) = activate(&s, &[]);
    let replies = transaction(port);
    assert_eq!(codes(&replies), ["220", "250", "250", "250", "354", "250", "221"], "{replies}");
    let files = s.wait_new(1, Duration::from_secs(5));
    assert_eq!(files.len(), 1, "one message queued");
    let m = QueueFile::read(&files[0]);
    let rcv = String::from_utf8_lossy(m.received()).into_owned();
    assert!(rcv.contains("127.0.0.1"), "peer address from getpeername in the trace: {rcv}");
    let log = wait_log(&log, "smtpd-rs:", Duration::from_secs(3));
    drop(g);
    assert!(log.lines().any(|l| l.starts_with("smtpd-rs") && l.contains("127.0.0.1")), "peer address in the log:\n{log}");
}
