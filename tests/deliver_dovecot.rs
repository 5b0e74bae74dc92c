//! Dovecot as the real peer (a private instance, tests/support/dovecot.rs):
//! smtp-remote's LMTP routes over Dovecot's Unix socket and loopback port,
//! directly and through queue-run, messages read back byte for byte with
//! `doveadm fetch`; each recipient's own result (550 at RCPT bounced, 452
//! after the data deferred, the others delivered once); and the Maildirs
//! maildir-deliver writes, read by Dovecot and by Python's mailbox module.

#[path = "support/dovecot.rs"]
mod dovecot;
#[path = "support/queuerun.rs"]
mod qr;

use dovecot::Dovecot;
use qr::{wait_for, write_queue_file, Kid, World};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const SMTP_REMOTE: &str = env!("CARGO_BIN_EXE_smtp-remote");
const QUEUE_RUN: &str = env!("CARGO_BIN_EXE_queue-run");
const MAILDIR_DELIVER: &str = env!("CARGO_BIN_EXE_maildir-deliver");

/// Message `i`: LF line ends (the queue's form), a leading dot, 8-bit text,
/// a long line, and no two alike.
fn message(i: usize) -> Vec<u8> {
    format!(
        "From: sender@example.org\nTo: alice@example.com\nSubject: message {i}\nMessage-ID: <m{i}@example.org>\n\n\
line one of {i}\n.a line that starts with a dot\n..two dots\nnon-ASCII: \u{e9}t\u{e9}\n{}\nlast line\n",
        "x".repeat(990 + i)
    )
    .into_bytes()
}

/// What Dovecot stores for `msg` from `sender`: its Return-Path, then the
/// message as sent (lmtp_add_received_header = no).
fn stored(sender: &str, msg: &[u8]) -> Vec<u8> {
    [format!("Return-Path: <{sender}>\n").as_bytes(), msg].concat()
}

/// Messages as text for the assertions (compared exactly; shown readably).
fn text(v: &[Vec<u8>]) -> Vec<String> {
    v.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect()
}

/// smtp-remote with `routes`, `msg` on stdin; the report with NULs as `|`.
fn smtp_remote(routes: &Path, host: &str, sender: &str, rcpts: &[&str], msg: &[u8]) -> String {
    let mut c = Command::new(SMTP_REMOTE)
        .arg(host)
        .arg(sender)
        .args(rcpts)
        .env_clear()
        .env("SMTPROUTES", routes)
        .env("HELOHOST", "mx.test")
        .env("DNS_SERVER", "127.0.0.1:9")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(msg).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).replace('\0', "|")
}

#[test]
fn smtp_remote_to_dovecot_socket_and_port() {
    let dc = Dovecot::start(&["alice", "bob"], &[]);
    fs::write(dc.path().join("routes.sock"), format!("example.com:{} proto=lmtp\n", dc.socket.display())).unwrap();
    fs::write(dc.path().join("routes.tcp"), format!("example.com:127.0.0.1:{} proto=lmtp\n", dc.port)).unwrap();
    let mut sent = Vec::new();
    for i in 0..6 {
        let routes = dc.path().join(if i % 2 == 0 { "routes.sock" } else { "routes.tcp" });
        let msg = message(i);
        let r = smtp_remote(&routes, "example.com", "sender@example.org", &["alice@example.com", "nosuch@example.com", "bob@example.com"], &msg);
        // Dovecot refuses the unknown user at RCPT; the others each get
        // their own 250 after the data.
        let lines: Vec<&str> = r.split('|').collect();
        assert!(lines[0].starts_with("rRemote host said: 250 2.0.0 <alice@example.com> "), "{r}");
        assert!(lines[1].starts_with("h") && lines[1].contains("does not like recipient.\nRemote host said: 550 5.1.1 <nosuch@example.com> User doesn't exist"), "{r}");
        assert!(lines[2].starts_with("rRemote host said: 250 2.0.0 <bob@example.com> "), "{r}");
        assert!(lines[3].starts_with("K") && lines[3].contains("accepted the message for 2 of 3 recipients."), "{r}");
        sent.push(stored("sender@example.org", &msg));
    }
    assert_eq!(text(&dc.fetch("alice@example.com")), text(&sent), "alice, byte for byte");
    assert_eq!(text(&dc.fetch("bob@example.com")), text(&sent), "bob, byte for byte");
    // Over quota after the data: 452 for that one, 250 for alice.
    let r = smtp_remote(&dc.path().join("routes.sock"), "example.com", "", &["full@example.com", "alice@example.com"], &message(9));
    let lines: Vec<&str> = r.split('|').collect();
    assert!(lines[0].starts_with("s") && lines[0].contains("failed after I sent the message.\nRemote host said: 452 4.2.2 <full@example.com> Quota exceeded"), "{r}");
    assert!(lines[1].starts_with("rRemote host said: 250 2.0.0 <alice@example.com> "), "{r}");
    assert_eq!(text(&dc.fetch("alice@example.com")[6..]), text(&[stored("", &message(9))]));
    assert!(dc.fetch("full@example.com").is_empty());
}

#[test]
fn queue_run_to_dovecot_each_recipient_its_own_result() {
    let dc = Dovecot::start(&["alice", "bob"], &[]);
    let w = World::new();
    fs::write(w.dir.path().join("routes"), format!("example.com:{} proto=lmtp\n", dc.socket.display())).unwrap();
    let n = 5;
    for i in 0..n {
        let to = ["alice@example.com", "nosuch@example.com", "full@example.com", "bob@example.com"];
        write_queue_file(&w.queue(), &format!("{}.1.{i}", 500 + i), qr::now(), "sender@example.org", &to, &[], &message(i));
    }
    let mut c = w.command(QUEUE_RUN);
    c.env("SMTP_REMOTE", SMTP_REMOTE).env("SMTPROUTES", w.dir.path().join("routes")).env("HELOHOST", "mx.test").env("DNS_SERVER", "127.0.0.1:9");
    let kid = Kid(c.spawn().unwrap());
    // Every unknown recipient bounced (one DSN per message), every other
    // delivered once, `full` deferred and retried (RETRY_SCHEDULE=1).
    wait_for(60, "the bounces", || w.bounces().len() == n);
    wait_for(60, "alice's and bob's messages", || dc.fetch("alice@example.com").len() == n && dc.fetch("bob@example.com").len() == n);
    wait_for(60, "retries for full@", || dc.log().matches("lmtp(full@example.com)").count() >= 2 * n);
    assert_eq!(w.queued().len(), n, "the messages wait for full@ only");
    for (env, dsn) in w.bounces() {
        assert!(String::from_utf8_lossy(&env).contains("sender@example.org"));
        assert!(dsn.contains("nosuch@example.com") && dsn.contains("550 5.1.1"), "{dsn}");
        assert_eq!(dsn.matches("Final-Recipient: ").count(), 1, "only nosuch@ failed: {dsn}");
        assert!(dsn.contains("Final-Recipient: rfc822; nosuch@example.com\n"), "{dsn}");
    }
    // The quota raised: the next retries deliver to full@, and the queue empties.
    let users = fs::read_to_string(dc.path().join("users")).unwrap().replace("userdb_quota_rule=*:storage=1\n", "userdb_quota_rule=*:storage=100M\n");
    fs::write(dc.path().join("users"), users).unwrap();
    wait_for(60, "the queue to empty", || w.queued().is_empty());
    let log = w.log_after(kid);
    let want: Vec<Vec<u8>> = (0..n).map(|i| stored("sender@example.org", &message(i))).collect();
    // Alone in its transaction, Dovecot adds a Delivered-To line too.
    let mut got = dc.fetch("full@example.com");
    got.sort();
    let alone: Vec<Vec<u8>> =
        want.iter().map(|m| [&m[..34], b"Delivered-To: full@example.com\n".as_slice(), &m[34..]].concat()).collect();
    assert_eq!(text(&got), text(&alone), "full@, once each");
    // Never a second copy for those delivered the first time.
    for u in ["alice@example.com", "bob@example.com"] {
        let mut got = dc.fetch(u);
        got.sort();
        assert_eq!(text(&got), text(&want), "{u}, once each:\n{log}");
    }
    assert!(log.contains("<full@example.com> deferred: ") && log.contains("452 4.2.2"), "{log}");
}

#[test]
fn maildir_deliver_read_by_dovecot_and_python() {
    // maildir-deliver (as root: each write in a child switched to nobody)
    // into a Maildir that Dovecot's user carol reads.
    let dc = Dovecot::start(&[], &[("carol", Path::new("/nonexistent"))]);
    let home = dc.path().join("carol");
    fs::create_dir(&home).unwrap();
    let (uid, gid) = dovecot::nobody();
    nix::unistd::chown(&home, Some(uid.into()), Some(gid.into())).unwrap();
    let md = home.join("Maildir");
    let users = fs::read_to_string(dc.path().join("users")).unwrap().replace("/nonexistent", &md.display().to_string());
    fs::write(dc.path().join("users"), users).unwrap();
    fs::write(dc.path().join("map"), format!("carol@example.com {}/ nobody\n", md.display())).unwrap();
    let mut want = Vec::new();
    for i in 0..4 {
        let msg = message(i);
        let mut c = Command::new(MAILDIR_DELIVER)
            .args(["example.com", "sender@example.org", "carol@example.com"])
            .env_clear()
            .env("MAILDIR_MAP", dc.path().join("map"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(&msg).unwrap();
        let out = c.wait_with_output().unwrap();
        let r = String::from_utf8_lossy(&out.stdout).replace('\0', "|");
        assert!(r.starts_with(&format!("rDelivered to {}/new/", md.display())) && r.ends_with("|KDelivered.\n|"), "{r}");
        want.push([b"Return-Path: <sender@example.org>\nDelivered-To: carol@example.com\n".as_slice(), &msg].concat());
    }
    // Owned by the map's owner, not by root.
    for e in fs::read_dir(md.join("new")).unwrap() {
        let m = e.unwrap().metadata().unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&m), uid);
    }
    // Python's mailbox module, by the order of the names (time, then Q).
    let py = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg("import mailbox,sys\nm=mailbox.Maildir(sys.argv[1],factory=None,create=False)\nfor k in sorted(m.keys()):\n  b=m.get_bytes(k)\n  sys.stdout.buffer.write(b'%d\\n' % len(b) + b)\n")
        .arg(&md)
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    let mut got = Vec::new();
    let mut rest = py.stdout.as_slice();
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let len: usize = std::str::from_utf8(&rest[..nl]).unwrap().parse().unwrap();
        got.push(rest[nl + 1..nl + 1 + len].to_vec());
        rest = &rest[nl + 1 + len..];
    }
    let mut sorted_want = want.clone();
    sorted_want.sort();
    got.sort();
    assert_eq!(text(&got), text(&sorted_want), "mailbox.Maildir, byte for byte");
    // Dovecot reads the same files (and moves them to cur/ as it indexes).
    let mut got = dc.fetch("carol@example.com");
    got.sort();
    assert_eq!(text(&got), text(&sorted_want), "doveadm fetch, byte for byte");
}
