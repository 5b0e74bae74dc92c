//! sendmail run as a program, handing messages to a fake QMAILQUEUE that
//! records message, envelope and attributes (and exits as told).

#[path = "support/queuerun.rs"]
mod support;

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use support::World;

const BIN: &str = env!("CARGO_BIN_EXE_sendmail");

fn sendmail(w: &World, args: &[&str], input: &[u8], extra: &[(&str, &str)]) -> (i32, String) {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("QMAILQUEUE", w.dir.path().join("fake-queue"))
        .env("MAILHOST", "h.test")
        .env("USER", "cron")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        c.env(k, v);
    }
    let mut ch = c.spawn().unwrap();
    let mut i = ch.stdin.take().unwrap();
    let _ = i.write_all(input);
    drop(i);
    let out = ch.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn adds_headers_and_builds_envelope() {
    let w = World::new();
    let (code, err) = sendmail(&w, &["-oi", "-odi", "-oem", "-F", "Cron Daemon", "root", "a@x.test"], b"Subject: report\r\n\r\nline\r\n.\r\nafter dot\r\n", &[]);
    assert_eq!(code, 0, "{err}");
    let b = w.bounces();
    assert_eq!(b.len(), 1);
    let (env, msg) = &b[0];
    assert_eq!(env, b"Fcron@h.test\0Troot@h.test\0Ta@x.test\0\0");
    assert!(msg.starts_with("From: Cron Daemon <cron@h.test>\nDate: "), "{msg}");
    assert!(msg.contains("\nMessage-ID: <") && msg.contains("@h.test>\n"), "{msg}");
    // -oi: the lone dot is text; CRLF became LF.
    assert!(msg.ends_with("Subject: report\n\nline\n.\nafter dot\n"), "{msg:?}");
}

#[test]
fn dash_t_reads_recipients_and_drops_bcc() {
    let w = World::new();
    let input = b"From: me@src.test\nTo: A <a@x.test>, b@y.test\nCc: c@z.test\nBcc: hidden@x.test\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <1@src.test>\n\nbody\n.\nnot sent\n";
    let (code, err) = sendmail(&w, &["-t", "-f", "bounces@src.test", "-N", "success,failure", "-R", "hdrs"], input, &[]);
    assert_eq!(code, 0, "{err}");
    let b = w.bounces();
    let (env, msg) = &b[0];
    assert_eq!(env, b"Fbounces@src.test\0Ta@x.test\0Tb@y.test\0Tc@z.test\0Thidden@x.test\0\0");
    assert_eq!(msg, "From: me@src.test\nTo: A <a@x.test>, b@y.test\nCc: c@z.test\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <1@src.test>\n\nbody\n");
    let attrs = fs::read_to_string(&w.recorded("battrs.")[0]).unwrap();
    assert_eq!(attrs, "RET=HDRS\nRCPT.0.NOTIFY=SUCCESS,FAILURE\nRCPT.1.NOTIFY=SUCCESS,FAILURE\nRCPT.2.NOTIFY=SUCCESS,FAILURE\nRCPT.3.NOTIFY=SUCCESS,FAILURE\n");
}

#[test]
fn exit_codes() {
    let w = World::new();
    assert_eq!(sendmail(&w, &[], b"Subject: x\n\nno rcpt\n", &[]).0, 64);
    assert_eq!(sendmail(&w, &["-bs"], b"", &[]).0, 64);
    let q = |code: i32| {
        let p = w.dir.path().join(format!("q{code}"));
        support::exe::write(&p, &format!("#!/bin/sh\ncat >/dev/null; cat <&1 >/dev/null; exit {code}\n"));
        p.display().to_string()
    };
    assert_eq!(sendmail(&w, &["a@b"], b"x\n", &[("QMAILQUEUE", &q(31))]).0, 65);
    assert_eq!(sendmail(&w, &["a@b"], b"x\n", &[("QMAILQUEUE", &q(53))]).0, 75);
    assert_eq!(sendmail(&w, &["a@b"], b"x\n", &[("QMAILQUEUE", "/nonexistent/queue")]).0, 71);
}

#[test]
fn large_message_streams_unchanged() {
    let w = World::new();
    let mut input = b"Subject: big\nFrom: a@b\nDate: x\nMessage-ID: <m@b>\n\n".to_vec();
    for i in 0..200_000 {
        input.extend_from_slice(format!("line {i} .\n").as_bytes());
    }
    let (code, err) = sendmail(&w, &["r@x.test"], &input, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(w.bounces()[0].1.as_bytes(), &input[..]);
}

#[test]
fn control_characters_in_addresses_are_refused() {
    // Issue 16, point 6: the command line. CR LF in the recipient
    // would have become RSET, MAIL and RCPT commands at the next hop.
    let w = World::new();
    let smuggle = "x@example.net>\r\nRSET\r\nMAIL FROM:<ceo@bank.test>\r\nRCPT TO:<victim@example.net";
    let (code, err) = sendmail(&w, &["-f", "me@host.test", "--", smuggle], b"Subject: x\n\nhi\n", &[]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("control character") && err.contains("\\r\\nRSET") && err.lines().count() == 1, "{err}");
    // The sender (-f, or the user name it is made from), other C0 octets, DEL.
    for args in [&["-f", "me@host.test\r\nRSET", "a@b.test"][..], &["-fme\x7f@host.test", "a@b.test"], &["a@b.test", "tab\t@b.test"]] {
        assert_eq!(sendmail(&w, args, b"x\n", &[]).0, 64, "{args:?}");
    }
    assert_eq!(sendmail(&w, &["a@b.test"], b"x\n", &[("USER", "cron\nRSET")]).0, 64);
    // -t: an address in the header is bad input (65).
    let (code, err) = sendmail(&w, &["-t"], b"To: <a@b.test\rRSET>\nSubject: x\n\nhi\n", &[]);
    assert_eq!(code, 65, "{err}");
    assert!(w.bounces().is_empty(), "something was queued");
    // Folded header lines are not control characters in an address.
    let (code, err) = sendmail(&w, &["-t"], b"To: A <a@b.test>,\n\tB <b@b.test>\nSubject: x\n\nhi\n", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(w.bounces()[0].0, b"Fcron@h.test\0Ta@b.test\0Tb@b.test\0\0");
}
