//! Real peer: Postfix's smtp-source. N messages sent -> exactly N files in
//! QUEUE_DIR/new, each byte-exact against what smtp-source sent. What it
//! sent is recorded by a small proxy between smtp-source and tcpserver, so
//! the generated messages (with their Date and Message-Id) are compared as
//! they crossed the wire.
#[path = "support/peers.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// Forwards every connection to 127.0.0.1:upstream and records what the
/// client sent on each.
struct Recorder {
    port: u16,
    sessions: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl Recorder {
    fn start(upstream: u16) -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let port = l.local_addr().expect("addr").port();
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ss, st) = (Arc::clone(&sessions), Arc::clone(&stop));
        thread::spawn(move || {
            let start = Instant::now();
            while !st.load(Ordering::Relaxed) && start.elapsed() < DEADLINE {
                match l.accept() {
                    Ok((c, _)) => {
                        let ss = Arc::clone(&ss);
                        thread::spawn(move || {
                            if let Some(rec) = relay(c, upstream) {
                                ss.lock().expect("lock").push(rec);
                            }
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Recorder { port, sessions, stop }
    }

    /// Waits (bounded) for n finished sessions, then returns them all.
    fn wait_sessions(&self, n: usize) -> Vec<Vec<u8>> {
        let start = Instant::now();
        while self.sessions.lock().expect("lock").len() < n && start.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(20));
        }
        self.sessions.lock().expect("lock").clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn relay(client: TcpStream, upstream: u16) -> Option<Vec<u8>> {
    client.set_nonblocking(false).ok()?;
    let server = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    for s in [&client, &server] {
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    }
    let (mut c2, mut s2) = (client.try_clone().ok()?, server.try_clone().ok()?);
    let back = thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while let Ok(n) = s2.read(&mut buf) {
            if n == 0 || c2.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = c2.shutdown(Shutdown::Write);
    });
    let (mut c, mut s) = (client, server);
    let mut rec = Vec::new();
    let mut buf = [0u8; 16384];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 {
            break;
        }
        rec.extend_from_slice(&buf[..n]);
        if s.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = s.shutdown(Shutdown::Write);
    let _ = back.join();
    Some(rec)
}

/// The messages in one recorded client stream, as the queue must hold them:
/// after each DATA line, the lines up to ".", dot-unstuffed, LF line ends.
fn data_payloads(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    for line in stream.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match cur.as_mut() {
            None => {
                if line.eq_ignore_ascii_case(b"DATA") {
                    cur = Some(Vec::new());
                }
            }
            Some(m) => {
                if line == b"." {
                    out.push(cur.take().unwrap_or_default());
                } else {
                    m.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
                    m.push(b'\n');
                }
            }
        }
    }
    out
}

/// Runs smtp-source through the recorder against smtpd-rs and checks that
/// exactly the messages sent are in the queue, byte for byte.
fn source(s: &Scratch, extra_env: &[(&str, Option<&str>)], args: &[&str], messages: usize, connections: usize, rcpts: usize) {
    let prog = peer("smtp-source", "postfix");
    let srv = TcpServer::smtpd(s, extra_env);
    let rec = Recorder::start(srv.port);
    let mut c = Command::new(prog);
    s.env(&mut c);
    c.args(["-M", "client.test.example", "-f", "sender@example.org", "-t", "user@example.com"])
        .args(args)
        .args(["-m", &messages.to_string()])
        .arg(format!("127.0.0.1:{}", rec.port));
    let o = run(&mut c, b"", DEADLINE);
    assert!(o.status.success(), "smtp-source: {}\n--- smtpd-rs log\n{}", o.text(), srv.log_text());

    let sessions = rec.wait_sessions(connections);
    assert_eq!(sessions.len(), connections, "connections recorded");
    let mut sent: Vec<Vec<u8>> = sessions.iter().flat_map(|st| data_payloads(st)).collect();
    assert_eq!(sent.len(), messages, "messages recorded");

    let files = s.wait_new(messages, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(s.new_files().len(), messages, "exactly {messages} messages in {}", s.queue.display());
    let queued = s.messages();
    let mut got: Vec<Vec<u8>> = queued.iter().map(|m| m.body().to_vec()).collect();
    for m in &queued {
        assert_eq!(m.from, b"sender@example.org", "{}", m.path.display());
        assert_eq!(m.to.len(), rcpts, "{}: recipients {:?}", m.path.display(), m.to_strings());
    }
    assert!(files.len() == messages);
    sent.sort();
    got.sort();
    for (i, (a, b)) in sent.iter().zip(got.iter()).enumerate() {
        assert!(
            a == b,
            "message {i} differs:\n--- sent\n{}\n--- queued\n{}",
            String::from_utf8_lossy(a),
            String::from_utf8_lossy(b)
        );
    }
}

#[test]
fn smtp_source_one_message_per_connection() {
    let s = Scratch::new();
    source(&s, &[], &["-s", "4", "-l", "1024"], 20, 20, 1);
}

#[test]
fn smtp_source_kept_connections_many_recipients() {
    let s = Scratch::new();
    // -d: all messages of a session over one connection (session mode);
    // -r 3: three recipients per message (3user@, 2user@, user@example.com).
    source(&s, &[], &["-s", "2", "-d", "-r", "3", "-l", "5000"], 40, 2, 3);
}

#[test]
fn smtp_source_per_message_queue_program() {
    // A foreign-style QMAILQUEUE: our queue-inject once per message.
    let s = Scratch::new();
    source(&s, &[("QMAILQUEUE", Some(QUEUE_INJECT))], &["-s", "2", "-d", "-l", "2048"], 10, 2, 1);
}

#[test]
fn smtp_source_preformatted_dots_and_long_lines() {
    // -F: smtp-source sends each line of the file with CRLF, doubling a
    // leading dot. Lines over 1000 octets are real mail and are accepted.
    let s = Scratch::new();
    let long = "L".repeat(3000);
    let text = format!(
        "From: sender@example.org\nTo: user@example.com\nSubject: dots\n\n.\n..\n.leading dot\nmiddle . dot\n{long}\nlast\n"
    );
    let f = s.dir.path().join("msg");
    std::fs::write(&f, &text).expect("write");
    source(&s, &[], &["-s", "1", "-d", "-F", f.to_str().expect("utf8 path")], 3, 1, 1);
    // Beside the byte-exact check against the wire: the file arrived whole
    // (smtp-source -F sends one empty line more after the file's last line).
    for m in s.messages() {
        assert!(m.body().starts_with(text.as_bytes()), "{}", m.path.display());
    }
}

#[test]
fn smtp_source_large_messages_with_dots_everywhere() {
    // About 300 KB per message: crosses every buffer and the 64 KB session
    // frames many times, with leading dots at all kinds of offsets.
    let s = Scratch::new();
    let mut text = String::from("From: sender@example.org\nSubject: large\n\n");
    for i in 0..6000 {
        match i % 3 {
            0 => text.push_str(&format!(".{i}\n")),
            1 => text.push_str(&format!("..x{i}\n")),
            _ => text.push_str(&format!("line {i} {}\n", "y".repeat(i % 97))),
        }
    }
    let f = s.dir.path().join("msg");
    std::fs::write(&f, &text).expect("write");
    source(&s, &[], &["-s", "1", "-d", "-F", f.to_str().expect("utf8 path")], 2, 1, 1);
    for m in s.messages() {
        assert!(m.body().starts_with(text.as_bytes()), "{}", m.path.display());
    }
}
