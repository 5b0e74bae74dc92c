//! Fault injection (issue 7): the client vanishes at every stage of an
//! smtpd-rs session (FIN or RST), with the real queue-inject in session mode
//! behind it. Nothing is queued unless the 250 was due (the final dot or the
//! last BDAT chunk was received whole), smtpd-rs ends promptly (on EOF, not
//! at its timeout), no process of the session is left behind, and no
//! half-written file stays in the queue's tmp/.
#[path = "support/peers.rs"]
mod support;

use nix::sys::signal::killpg;
use nix::sys::socket::{setsockopt, sockopt};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

const EHLO: &str = "EHLO client.example\r\n";
const MAIL: &str = "MAIL FROM:<s@sender.example>\r\n";
const RCPT: &str = "RCPT TO:<u@example.com>\r\n";

/// (stage, what the client sends before it vanishes, messages then queued)
fn stages() -> Vec<(&'static str, String, usize)> {
    let tx = format!("{EHLO}{MAIL}{RCPT}");
    vec![
        ("before EHLO", String::new(), 0),
        ("in the middle of a command line", "EHLO cli".into(), 0),
        ("after EHLO", EHLO.into(), 0),
        ("after MAIL", format!("{EHLO}{MAIL}"), 0),
        ("after RCPT", tx.clone(), 0),
        ("after DATA", format!("{tx}DATA\r\n"), 0),
        ("during DATA, inside a line", format!("{tx}DATA\r\nSubject: t\r\n\r\nhalf a li"), 0),
        ("during DATA, at a line start", format!("{tx}DATA\r\nSubject: t\r\n\r\nline\r\n"), 0),
        ("during DATA, after CRLF.", format!("{tx}DATA\r\nSubject: t\r\n\r\nline\r\n."), 0),
        ("during DATA, after CRLF.CR", format!("{tx}DATA\r\nSubject: t\r\n\r\nline\r\n.\r"), 0),
        ("after the final dot, before the reply", format!("{tx}DATA\r\nSubject: t\r\n\r\nline\r\n.\r\n"), 1),
        ("during a BDAT chunk", format!("{tx}BDAT 100 LAST\r\n{}", "x".repeat(50)), 0),
        ("after a BDAT chunk that is not the last", format!("{tx}BDAT 6\r\nab\r\ncd"), 0),
        ("after the last BDAT chunk, before the reply", format!("{tx}BDAT 6 LAST\r\nab\r\ncd"), 1),
        ("after a second transaction's RCPT", format!("{tx}DATA\r\nfirst\r\n.\r\n{MAIL}{RCPT}"), 1),
    ]
}

/// One session: smtpd-rs on an accepted loopback socket; the client sends
/// `input`, then closes (or resets) the connection without reading.
fn vanish(stage: &str, input: &str, want: usize, reset: bool) {
    let s = Scratch::new();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = TcpStream::connect(l.local_addr().unwrap()).expect("connect");
    let (conn, _) = l.accept().expect("accept");
    let mut cmd = Command::new(SMTPD);
    s.env(&mut cmd);
    // A long timeout: smtpd-rs must end because the client left, not because it timed out.
    cmd.env("SMTPD_TIMEOUT", "60")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(conn.try_clone().unwrap())))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(conn)))
        .stderr(Stdio::piped());
    let mut g = Group::spawn(&mut cmd);
    let (log, reader) = collect_joinable(g.0.stderr.take().unwrap());
    let pgid = Pid::from_raw(g.pid() as i32);

    let mut greeting = [0u8; 64];
    let n = client.read(&mut greeting).expect("greeting");
    assert!(greeting[..n].starts_with(b"220 "), "{stage}: greeting {:?}", String::from_utf8_lossy(&greeting[..n]));
    client.write_all(input.as_bytes()).expect("send");
    // Let smtpd-rs take the input before the connection goes away (an RST
    // would otherwise discard what it has not read yet).
    thread::sleep(Duration::from_millis(150));
    if reset {
        setsockopt(&client, sockopt::Linger, &nix::libc::linger { l_onoff: 1, l_linger: 0 }).expect("SO_LINGER");
    } else {
        let _ = client.shutdown(Shutdown::Write);
    }
    drop(client);

    let start = Instant::now();
    let status = loop {
        if let Some(st) = g.0.try_wait().expect("wait") {
            break st;
        }
        let why = String::from_utf8_lossy(&take(&log)).into_owned();
        assert!(start.elapsed() < Duration::from_secs(10), "{stage} (reset {reset}): smtpd-rs still running\n{why}");
        thread::sleep(Duration::from_millis(10));
    };
    // The rest of the session's group (queue-inject) must go as well.
    while killpg(pgid, None).is_ok() {
        assert!(start.elapsed() < Duration::from_secs(10), "{stage} (reset {reset}): a process of the session is stuck");
        thread::sleep(Duration::from_millis(10));
    }
    // Every process of the session has gone, so stderr is at EOF: wait for
    // the reader to have taken all of it (reading earlier raced the last line).
    reader.join().expect("log reader");
    let text = String::from_utf8_lossy(&take(&log)).into_owned();
    let queued = s.new_files();
    assert_eq!(queued.len(), want, "{stage} (reset {reset}): messages queued\n{text}");
    for q in &queued {
        let f = QueueFile::read(q);
        assert!(!f.body().is_empty(), "{stage}: empty message queued");
    }
    let tmp: Vec<_> = std::fs::read_dir(s.queue.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "{stage} (reset {reset}): {} file(s) left in tmp/\n{text}", tmp.len());
    assert!(text.contains(" end: "), "{stage} (reset {reset}): no end line in the log\n{text}");
    eprintln!("{stage} (reset {reset}): {status}, {} queued, {:?}", queued.len(), start.elapsed());
}

#[test]
fn client_vanishing_at_every_stage() {
    for (stage, input, want) in stages() {
        vanish(stage, &input, want, false);
        vanish(stage, &input, want, true);
    }
}
