//! From a message's headers to the log line and the queue file: the
//! Received header names the queue id (session mode) or the session's own id
//! that the log line also carries (a per-message queue program), and the
//! client forwarded by XCLIENT or XFORWARD is on the "message accepted" line
//! whichever queue program is used.

#[path = "support/smtpd.rs"]
mod support;

use smtpd::queue::parse_header;
use std::path::Path;
use support::*;

const QI: &str = env!("CARGO_BIN_EXE_queue-inject");

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// The `id <...@mx.test>` of a Received header at the top of `msg`.
fn received_id(msg: &[u8]) -> String {
    let text = String::from_utf8_lossy(msg);
    let head = &text[..text.find(";\n").expect("end of the Received header")];
    let at = head.find("\n\tid <").unwrap_or_else(|| panic!("no id clause in {head:?}"));
    let rest = &head[at + 6..];
    let id = &rest[..rest.find("@mx.test>").unwrap_or_else(|| panic!("id not <...@mx.test> in {head:?}"))];
    id.to_owned()
}

/// The "message accepted" lines of a log.
fn accepted(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("message accepted: ")).collect()
}

const XFORWARD_SESSION: &str = "EHLO proxy.test\r\n\
    XFORWARD NAME=up.example ADDR=10.0.0.1 PORT=4711 HELO=up+2Ehelo\r\n\
    MAIL FROM:<s@sender.test>\r\nRCPT TO:<u@example.com>\r\nDATA\r\nSubject: one\r\n\r\nbody\r\n.\r\n\
    MAIL FROM:<s@sender.test>\r\nRCPT TO:<u@example.com>\r\nDATA\r\nSubject: two\r\n\r\nbody\r\n.\r\nQUIT\r\n";

#[test]
fn session_mode_received_id_is_the_queue_id_and_xforward_is_logged() {
    let d = tempfile::tempdir().unwrap();
    let queue = d.path().join("queue");
    std::fs::create_dir(&queue).unwrap();
    let rh = write(d.path(), "rcpthosts", "example.com\n");
    let vars = [
        ("QUEUE_DIR", queue.to_str().unwrap()),
        ("RCPTHOSTS", rh.as_str()),
        ("XFORWARD", ""),
        ("PATH", Path::new(QI).parent().unwrap().to_str().unwrap()),
    ];
    let r = converse(command(&vars), XFORWARD_SESSION.as_bytes());
    assert_eq!(r.codes(), ["220", "250", "250", "250", "250", "354", "250", "250", "250", "354", "250", "221"], "{}\n{}", r.out, r.log);
    let ids: Vec<&str> = r.replies().iter().filter_map(|l| l.strip_prefix("250 2.0.0 ok: queued as ")).collect();
    assert_eq!(ids.len(), 2, "{}", r.out);
    let lines = accepted(&r.log);
    assert_eq!(lines.len(), 2, "{}", r.log);
    // First message: XFORWARD named the client. XFORWARD_README: the
    // attributes last for one transaction, so the second has none.
    assert!(lines[0].contains(&format!("id {} ", ids[0])), "{}", lines[0]);
    assert!(lines[0].ends_with(" orig_client=up.example[10.0.0.1]:4711 orig_helo=up.helo"), "{}", lines[0]);
    assert!(!lines[1].contains("orig_client"), "{}", lines[1]);
    assert!(!r.log.contains("received-id"), "the Received id is the queue id: {}", r.log);
    for id in &ids {
        let file = std::fs::read(queue.join("new").join(id)).unwrap_or_else(|e| panic!("queue file {id}: {e}"));
        let (h, off) = parse_header(&file).unwrap();
        assert_eq!(&h.id, id);
        assert_eq!(received_id(&file[off..]), *id, "Received header of {id}");
    }
}

#[test]
fn foreign_queue_received_id_is_on_the_log_line_and_xclient_is_logged() {
    let d = tempfile::tempdir().unwrap();
    let qq = script(d.path(), "fakeqq", FAKE_QMAIL_QUEUE);
    let out = d.path().join("q");
    std::fs::create_dir(&out).unwrap();
    let rh = write(d.path(), "rcpthosts", "example.com\n");
    let vars = [
        ("QMAILQUEUE", qq.to_str().unwrap()),
        ("FAKEQQ_DIR", out.to_str().unwrap()),
        ("RCPTHOSTS", rh.as_str()),
        ("XCLIENT", ""),
    ];
    let input = "EHLO proxy.test\r\n\
        XCLIENT NAME=far.example ADDR=192.0.2.7 PORT=1234 HELO=far.helo\r\n\
        EHLO far.helo\r\nMAIL FROM:<s@sender.test>\r\nRCPT TO:<u@example.com>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n\
        MAIL FROM:<s@sender.test>\r\nRCPT TO:<u@example.com>\r\nDATA\r\nSubject: y\r\n\r\nbody\r\n.\r\nQUIT\r\n";
    let r = converse(command(&vars), input.as_bytes());
    assert_eq!(r.codes(), ["220", "250", "220", "250", "250", "250", "354", "250", "250", "250", "354", "250", "221"], "{}\n{}", r.out, r.log);
    let msgs = files(&out, "msg.");
    let lines = accepted(&r.log);
    assert_eq!((msgs.len(), lines.len()), (2, 2), "{}", r.log);
    let mut seen = Vec::new();
    for (msg, line) in msgs.iter().zip(&lines) {
        let id = received_id(msg);
        assert!(id.starts_with('s'), "a session id, not a queue id: {id}");
        assert!(line.contains(&format!(" received-id {id}")), "{line}");
        // XCLIENT lasts for the session.
        assert!(line.ends_with(" orig_client=far.example[192.0.2.7]:1234 orig_helo=far.helo"), "{line}");
        seen.push(id);
    }
    assert_ne!(seen[0], seen[1], "one id per message");
}

#[test]
fn per_message_queue_inject_received_id_on_the_log_line() {
    let d = tempfile::tempdir().unwrap();
    let queue = d.path().join("queue");
    std::fs::create_dir(&queue).unwrap();
    let rh = write(d.path(), "rcpthosts", "example.com\n");
    let vars = [
        ("QUEUE_DIR", queue.to_str().unwrap()),
        ("RCPTHOSTS", rh.as_str()),
        ("QUEUE_SESSION", "0"),
        ("XFORWARD", ""),
        ("PATH", Path::new(QI).parent().unwrap().to_str().unwrap()),
    ];
    let r = converse(command(&vars), XFORWARD_SESSION.as_bytes());
    assert_eq!(r.codes()[6], "250", "{}\n{}", r.out, r.log);
    let lines = accepted(&r.log);
    assert_eq!(lines.len(), 2, "{}", r.log);
    assert!(lines[0].ends_with(" orig_client=up.example[10.0.0.1]:4711 orig_helo=up.helo"), "{}", lines[0]);
    let mut files: Vec<_> = std::fs::read_dir(queue.join("new")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 2);
    let mut rids: Vec<String> = files
        .iter()
        .map(|p| {
            let f = std::fs::read(p).unwrap();
            let (_, off) = parse_header(&f).unwrap();
            received_id(&f[off..])
        })
        .collect();
    rids.sort();
    let mut logged: Vec<String> = lines
        .iter()
        .map(|l| l.split(" received-id ").nth(1).and_then(|r| r.split(' ').next()).expect("received-id").to_owned())
        .collect();
    logged.sort();
    assert_eq!(rids, logged);
}

/// Issue 16.3: a bare `RCPT TO:<postmaster>` is accepted (RFC 5321 4.5.1)
/// and queued as a deliverable address: this host's postmaster, or POSTMASTER.
#[test]
fn bare_postmaster_is_queued_with_a_domain() {
    let d = tempfile::tempdir().unwrap();
    let rh = write(d.path(), "rcpthosts", "example.com\n");
    for (pm, want) in [(None, "postmaster@mx.test"), (Some("hostmaster@example.net"), "hostmaster@example.net")] {
        let queue = d.path().join(format!("queue-{}", want.len()));
        std::fs::create_dir(&queue).unwrap();
        let mut vars = vec![
            ("QUEUE_DIR", queue.to_str().unwrap()),
            ("RCPTHOSTS", rh.as_str()),
            ("PATH", Path::new(QI).parent().unwrap().to_str().unwrap()),
        ];
        if let Some(p) = pm {
            vars.push(("POSTMASTER", p));
        }
        let input = "EHLO c.test\r\nMAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n";
        let r = converse(command(&vars), input.as_bytes());
        assert_eq!(r.codes(), ["220", "250", "250", "250", "354", "250", "221"], "{}\n{}", r.out, r.log);
        let files: Vec<_> = std::fs::read_dir(queue.join("new")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1);
        let text = String::from_utf8_lossy(&std::fs::read(&files[0]).unwrap()).into_owned();
        let to: Vec<&str> = text.lines().take_while(|l| !l.is_empty()).filter(|l| l.starts_with("to ")).collect();
        assert_eq!(to, [format!("to {want}")], "{text}");
        let (h, _) = parse_header(text.as_bytes()).unwrap();
        assert_eq!(h.envelope.recipients, vec![want.as_bytes().to_vec()]);
    }
}
