//! `smtp-remote -m` (kept connections) against a scripted SMTP server on
//! loopback, driven as queue-run drives it: several messages over one
//! connection with RSET between them, the reuse limits, which messages may
//! share a connection, and the faults (a server that closes after some
//! messages, a 421 in the middle, a 4xx for one message between good ones,
//! a connection lost after the final dot): every report right, every
//! message received once (or, after a lost final reply, reported as a
//! possible duplicate).
#[path = "support/remote.rs"]
mod support;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use support::*;

const MSG: &[u8] = b"From: a@example.org\nSubject: reuse\n\nline 1\n.line with dot\n";
const WIRE: &[u8] = b"From: a@example.org\r\nSubject: reuse\r\n\r\nline 1\r\n..line with dot\r\n";
const OK: &str = "r|K127.0.0.1 accepted message.\nRemote host said: 250 ok queued\n|";

/// A routes file in a scratch folder: `lines`, with PORT replaced.
fn routes(dir: &tempfile::TempDir, port: u16, lines: &str) -> String {
    let p = dir.path().join("smtproutes");
    std::fs::write(&p, lines.replace("PORT", &port.to_string())).unwrap();
    p.display().to_string()
}

fn count(log: &[String], verb: &str) -> usize {
    log.iter().filter(|l| l.split(' ').next() == Some(verb)).count()
}

#[test]
fn several_messages_over_one_connection_with_rset_between() {
    for ext in [&["PIPELINING", "8BITMIME"][..], &[][..]] {
        let conns = Arc::new(AtomicUsize::new(0));
        let f = fake(ext, counting(conns.clone(), |_| Act::Default));
        let dir = tempfile::tempdir().unwrap();
        let r = routes(&dir, f.port(), "a.test:127.0.0.1:PORT\n");
        let mut m = Multi::start(&[("SMTPROUTES", &r)]);
        for i in 0..5 {
            assert_eq!(m.deliver("a.test", "s@example.org", &[&format!("r{i}@a.test")], "", MSG), OK, "{ext:?} message {i}");
        }
        assert_eq!(m.finish().0, 0);
        assert_eq!(conns.load(Ordering::SeqCst), 1, "{ext:?}: one connection for five messages");
        assert_eq!(f.messages(), vec![WIRE.to_vec(); 5], "{ext:?}");
        let log = f.log();
        assert_eq!((count(&log, "EHLO"), count(&log, "RSET"), count(&log, "MAIL")), (1, 4, 5), "{ext:?}: {log:?}");
        // Each RSET right before its MAIL; QUIT at EOF.
        for (i, _) in log.iter().enumerate().filter(|(_, l)| *l == "RSET") {
            assert!(log[i + 1].starts_with("MAIL FROM:<s@example.org>"), "{log:?}");
        }
        assert_eq!(log.last().map(String::as_str), Some("QUIT"), "{ext:?}: {log:?}");
    }
}

#[test]
fn domains_share_a_connection_only_on_the_same_route() {
    let conns = Arc::new(AtomicUsize::new(0));
    let f = fake(&["PIPELINING"], counting(conns.clone(), |_| Act::Default));
    let dir = tempfile::tempdir().unwrap();
    // a and b: the same relay line; c: the same relay with an option of its own.
    let r = routes(&dir, f.port(), "a.test:127.0.0.1:PORT\nb.test:127.0.0.1:PORT\nc.test:127.0.0.1:PORT xforward\n");
    let mut m = Multi::start(&[("SMTPROUTES", &r)]);
    for host in ["a.test", "b.test", "a.test", "b.test"] {
        assert_eq!(m.deliver(host, "s@example.org", &[&format!("x@{host}")], "", MSG), OK);
    }
    assert_eq!(conns.load(Ordering::SeqCst), 1, "the same route: one connection");
    for host in ["c.test", "a.test"] {
        assert_eq!(m.deliver(host, "s@example.org", &[&format!("x@{host}")], "", MSG), OK);
    }
    m.finish();
    assert_eq!(conns.load(Ordering::SeqCst), 3, "another route's options: a connection of its own");
    assert_eq!(count(&f.log(), "QUIT"), 3);
}

#[test]
fn reuse_limits_count_and_time() {
    let conns = Arc::new(AtomicUsize::new(0));
    let f = fake(&["PIPELINING"], counting(conns.clone(), |_| Act::Default));
    let dir = tempfile::tempdir().unwrap();
    let r = routes(&dir, f.port(), "a.test:127.0.0.1:PORT\n");
    let mut m = Multi::start(&[("SMTPROUTES", &r), ("CONNECTION_REUSE_COUNT", "2")]);
    for _ in 0..5 {
        assert_eq!(m.deliver("a.test", "s@example.org", &["x@a.test"], "", MSG), OK);
    }
    m.finish();
    assert_eq!(conns.load(Ordering::SeqCst), 3, "two messages a connection");
    // QUIT as soon as a connection has carried its two.
    assert_eq!(count(&f.log(), "QUIT"), 3);
    assert_eq!(f.messages().len(), 5);

    let conns = Arc::new(AtomicUsize::new(0));
    let f = fake(&["PIPELINING"], counting(conns.clone(), |_| Act::Default));
    let r = routes(&dir, f.port(), "a.test:127.0.0.1:PORT\n");
    let mut m = Multi::start(&[("SMTPROUTES", &r), ("CONNECTION_REUSE_TIME", "1")]);
    assert_eq!(m.deliver("a.test", "s@example.org", &["x@a.test"], "", MSG), OK);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(m.deliver("a.test", "s@example.org", &["x@a.test"], "", MSG), OK);
    m.finish();
    assert_eq!(conns.load(Ordering::SeqCst), 2, "older than CONNECTION_REUSE_TIME: a new one");
}

/// Five messages through a server that misbehaves once; the reports.
fn five(script: impl FnMut(&str) -> Act + Send + 'static, ext: &[&str]) -> (Vec<String>, usize, Fake) {
    let conns = Arc::new(AtomicUsize::new(0));
    let f = fake(ext, counting(conns.clone(), script));
    let dir = tempfile::tempdir().unwrap();
    let r = routes(&dir, f.port(), "a.test:127.0.0.1:PORT\n");
    let mut m = Multi::start(&[("SMTPROUTES", &r)]);
    let reports = (0..5).map(|i| m.deliver("a.test", "s@example.org", &[&format!("r{i}@a.test")], "", MSG)).collect();
    let (code, stderr) = m.finish();
    assert_eq!(code, 0, "{stderr}");
    (reports, conns.load(Ordering::SeqCst), f)
}

/// Answer `verb` with `act` once, after `after` messages were received.
fn once_after(after: usize, verb: &'static str, act: fn() -> Act) -> impl FnMut(&str) -> Act + Send + 'static {
    let mut done = 0;
    let mut fired = false;
    move |c| {
        let fire = !fired && done == after && c.split(' ').next() == Some(verb);
        if c == "DATA-END" {
            done += 1;
        }
        if fire {
            fired = true;
            return act();
        }
        Act::Default
    }
}

#[test]
fn a_server_that_closes_after_some_messages() {
    // It drops the connection when the third RSET comes: that message goes
    // over a fresh connection, and so do the rest; none is lost or sent twice.
    for ext in [&["PIPELINING"][..], &[][..]] {
        let (reports, conns, f) = five(once_after(2, "RSET", || Act::Close), ext);
        assert_eq!(reports, vec![OK.to_string(); 5], "{ext:?}");
        assert_eq!(conns, 2, "{ext:?}");
        assert_eq!(f.messages().len(), 5, "{ext:?}: each message once");
    }
}

#[test]
fn a_421_in_the_middle() {
    // 421 to MAIL (the server will close): nothing of the message went out;
    // it goes over a fresh connection. Pipelined, RCPT and DATA were sent
    // too: the 354 is left unanswered, which discards the transaction.
    for ext in [&["PIPELINING"][..], &[][..]] {
        let (reports, conns, f) = five(once_after(2, "MAIL", || send("421 4.7.0 enough for this session\r\n")), ext);
        assert_eq!(reports, vec![OK.to_string(); 5], "{ext:?}");
        assert_eq!(conns, 2, "{ext:?}");
        assert_eq!(f.messages().len(), 5, "{ext:?}: each message once");
    }
    // 421 to RSET: the same.
    let (reports, conns, f) = five(once_after(3, "RSET", || send("421 4.3.2 shutting down\r\n")), &["PIPELINING"]);
    assert_eq!(reports, vec![OK.to_string(); 5]);
    assert_eq!((conns, f.messages().len()), (2, 5));
}

#[test]
fn a_4xx_for_one_message_between_good_ones() {
    let (reports, conns, f) = five(once_after(1, "DATA-END", || send("451 4.3.0 try again later\r\n")), &["PIPELINING"]);
    assert_eq!(reports[0], OK);
    assert_eq!(reports[1], "r|Z127.0.0.1 failed after I sent the message.\nRemote host said: 451 4.3.0 try again later\n|");
    assert_eq!(&reports[2..], &[OK.to_string(), OK.to_string(), OK.to_string()]);
    assert_eq!(conns, 1, "the connection stays in step");
    assert_eq!(f.messages().len(), 5);
    // A recipient refused for now, another message for the same connection.
    let (reports, conns, _) = five(once_after(2, "RCPT", || send("450 4.2.1 mailbox busy\r\n")), &["PIPELINING"]);
    // qmail-remote's report: the s record stands for the recipient (temporary).
    assert_eq!(reports[2], "s127.0.0.1 does not like recipient.\nRemote host said: 450 4.2.1 mailbox busy\n|DGiving up on 127.0.0.1.\nRemote host said: 450 4.2.1 mailbox busy\n|");
    assert_eq!([&reports[..2], &reports[3..]].concat(), vec![OK.to_string(); 4]);
    assert_eq!(conns, 1);
}

#[test]
fn a_connection_lost_after_the_final_dot() {
    // The message arrived, its reply never came: a possible duplicate,
    // reported as a temporary failure (retried later); the next message
    // goes over a fresh connection.
    let (reports, conns, f) = five(once_after(2, "DATA-END", || Act::Close), &["PIPELINING"]);
    assert_eq!(&reports[..2], &[OK.to_string(), OK.to_string()]);
    assert_eq!(reports[2], "r|ZConnected to 127.0.0.1 but connection died. Possible duplicate! (#4.4.2)\n|");
    assert_eq!(&reports[3..], &[OK.to_string(), OK.to_string()]);
    assert_eq!(conns, 2);
    assert_eq!(f.messages().len(), 5, "the third reached the server once");
}

#[test]
fn xclient_facts_keep_a_connection_to_one_message() {
    let conns = Arc::new(AtomicUsize::new(0));
    let f = fake(&["PIPELINING", "XCLIENT ADDR NAME HELO"], counting(conns.clone(), |_| Act::Default));
    let dir = tempfile::tempdir().unwrap();
    let r = routes(&dir, f.port(), "a.test:127.0.0.1:PORT xclient\n");
    let mut m = Multi::start(&[("SMTPROUTES", &r)]);
    for ip in ["192.0.2.1", "192.0.2.2"] {
        assert_eq!(m.deliver("a.test", "s@example.org", &["x@a.test"], &format!("CLIENT_ADDR={ip}\n"), MSG), OK);
    }
    m.finish();
    assert_eq!(conns.load(Ordering::SeqCst), 2, "each message's client facts on a session of its own");
    let log = f.log();
    assert!(log.iter().any(|l| l.contains("ADDR=192.0.2.1")) && log.iter().any(|l| l.contains("ADDR=192.0.2.2")), "{log:?}");
}

#[test]
fn tls_once_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = cert(dir.path(), "relay.test");
    let conns = Arc::new(AtomicUsize::new(0));
    let f = fake_on("127.0.0.1", 0, &["PIPELINING"], Some(server_config(&c, &k)), Box::new(counting(conns.clone(), |_| Act::Default)));
    let r = routes(&dir, f.port(), &format!("a.test:127.0.0.1:PORT pin={}\nb.test:127.0.0.1:PORT\n", pin(&c)));
    let mut m = Multi::start(&[("SMTPROUTES", &r), ("SMTP_TLS", "none")]);
    for _ in 0..3 {
        assert_eq!(m.deliver("a.test", "s@example.org", &["x@a.test"], "", MSG), OK);
    }
    // b.test's route has no pin (and SMTP_TLS=none): never over a's TLS session.
    assert_eq!(m.deliver("b.test", "s@example.org", &["x@b.test"], "", MSG), OK);
    m.finish();
    let log = f.log();
    assert_eq!(log.iter().filter(|l| *l == "TLS").count(), 1, "{log:?}");
    assert_eq!(conns.load(Ordering::SeqCst), 2);
    assert_eq!(count(&log, "STARTTLS"), 1);
}

#[test]
fn lmtp_over_a_unix_socket_kept_too() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("lmtp");
    let conns = Arc::new(AtomicUsize::new(0));
    let f = fake_unix(&sock, &["PIPELINING"], counting(conns.clone(), |_| Act::Default));
    let r = dir.path().join("routes");
    std::fs::write(&r, format!("l.test:{} proto=lmtp\n", sock.display())).unwrap();
    let mut m = Multi::start(&[("SMTPROUTES", &r.display().to_string())]);
    let partner = sock.display().to_string();
    for _ in 0..3 {
        let rep = m.deliver("l.test", "s@example.org", &["x@l.test"], "", MSG);
        assert!(rep.starts_with(&format!("r{partner} accepted the message.")) || rep.contains("accepted message"), "{rep:?}");
    }
    m.finish();
    assert_eq!(conns.load(Ordering::SeqCst), 1);
    assert_eq!(count(&f.log(), "LHLO"), 1);
    assert_eq!(f.messages().len(), 3);
}

#[test]
fn jobs_refused_before_any_connection_keep_it() {
    let conns = Arc::new(AtomicUsize::new(0));
    let f = fake(&["PIPELINING"], counting(conns.clone(), |_| Act::Default));
    let dir = tempfile::tempdir().unwrap();
    let r = routes(&dir, f.port(), "a.test:127.0.0.1:PORT\n");
    let mut m = Multi::start(&[("SMTPROUTES", &r)]);
    assert_eq!(m.deliver("a.test", "s@example.org", &["x@a.test"], "", MSG), OK);
    // A bad address and a bad attribute block: answered without the server.
    assert_eq!(m.deliver("a.test", "s@example.org", &["x\r\nRSET@a.test"], "", MSG), "hSorry, the recipient address has a control character, which SMTP cannot carry. (#5.1.3)\n|DSorry, no recipient address is valid. (#5.1.3)\n|");
    assert!(m.deliver("a.test", "s@example.org", &["x@a.test"], "no equals sign\n", MSG).starts_with("ZUnable to read configuration: bad QUEUE_ATTRS"));
    assert_eq!(m.deliver("a.test", "s@example.org", &["x@a.test"], "", MSG), OK);
    m.finish();
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}
