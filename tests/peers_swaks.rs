//! Real peer: swaks, over tcpserver on a loopback port and with `swaks --pipe`.
#[path = "support/peers.rs"]
mod support;

use std::process::Command;
use support::*;

fn swaks(s: &Scratch) -> Command {
    let mut c = Command::new(peer("swaks", "swaks"));
    s.env(&mut c);
    c.args(["--helo", "client.test.example", "--from", "sender@example.org", "--timeout", "20"]);
    c
}

const BODY: &str = "hello from swaks\nsecond line\n";

fn check_one_message(s: &Scratch, to: &str, subject: &str) -> QueueFile {
    let files = s.wait_new(1, std::time::Duration::from_secs(5));
    assert_eq!(files.len(), 1, "exactly one message in {}", s.queue.display());
    let m = QueueFile::read(&files[0]);
    assert_eq!(m.from, b"sender@example.org");
    assert_eq!(m.to_strings(), vec![to.to_owned()]);
    let body = m.body();
    assert!(!body.contains(&b'\r'), "queue keeps LF line ends");
    let text = String::from_utf8_lossy(body);
    assert!(text.contains(&format!("\nSubject: {subject}\n")), "subject in {text}");
    assert!(text.contains(&format!("\n\n{BODY}")), "body after the header in {text}");
    m
}

#[test]
fn swaks_over_tcpserver_lands_one_message() {
    let s = Scratch::new();
    let srv = TcpServer::smtpd(&s, &[]);
    let o = run(
        swaks(&s).args([
            "--server",
            &format!("127.0.0.1:{}", srv.port),
            "--to",
            "user@example.com",
            "--header",
            "Subject: swaks over tcpserver",
            "--body",
            BODY,
        ]),
        b"",
        DEADLINE,
    );
    assert_ok(&o, "swaks");
    let m = check_one_message(&s, "user@example.com", "swaks over tcpserver");
    // The trace names the client as tcpserver reported it.
    let rcv = String::from_utf8_lossy(m.received());
    assert!(rcv.contains("127.0.0.1"), "client address in {rcv}");
    // The 250 after the message names the queue id, which is the file's name.
    let id = m.path.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
    let transcript = String::from_utf8_lossy(&o.stdout);
    assert!(transcript.contains(&id), "queue id {id} in the 250 reply:\n{transcript}");
}

#[test]
fn swaks_refused_recipient_queues_nothing() {
    let s = Scratch::new();
    let srv = TcpServer::smtpd(&s, &[]);
    let o = run(
        swaks(&s).args(["--server", &format!("127.0.0.1:{}", srv.port), "--to", "someone@elsewhere.test"]),
        b"",
        DEADLINE,
    );
    assert!(!o.status.success(), "swaks must see the recipient refused: {}", o.text());
    let transcript = String::from_utf8_lossy(&o.stdout);
    assert!(transcript.contains("<** 5"), "a 5xx reply in:\n{transcript}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(s.new_files().is_empty(), "nothing queued");
}

#[test]
fn swaks_pipe_lands_one_message() {
    let s = Scratch::new();
    let o = run(
        swaks(&s).args([
            "--pipe",
            SMTPD,
            "--to",
            "user@localhost",
            "--header",
            "Subject: swaks pipe",
            "--body",
            BODY,
        ]),
        b"",
        DEADLINE,
    );
    assert_ok(&o, "swaks --pipe");
    check_one_message(&s, "user@localhost", "swaks pipe");
}

#[test]
fn swaks_pipe_pipelining() {
    let s = Scratch::new();
    let o = run(
        swaks(&s).args([
            "--pipe",
            SMTPD,
            "--pipeline",
            "--to",
            "user@example.com",
            "--header",
            "Subject: swaks pipelining",
            "--body",
            BODY,
        ]),
        b"",
        DEADLINE,
    );
    assert_ok(&o, "swaks --pipe --pipeline");
    check_one_message(&s, "user@example.com", "swaks pipelining");
}

#[test]
fn swaks_pipe_per_message_queue_program() {
    // A foreign-style QMAILQUEUE: our queue-inject run once per message.
    let s = Scratch::new();
    let mut c = swaks(&s);
    c.env("QMAILQUEUE", QUEUE_INJECT);
    let o = run(
        c.args([
            "--pipe",
            SMTPD,
            "--to",
            "user@example.com",
            "--header",
            "Subject: per message",
            "--body",
            BODY,
        ]),
        b"",
        DEADLINE,
    );
    assert_ok(&o, "swaks --pipe with QMAILQUEUE");
    check_one_message(&s, "user@example.com", "per message");
}
