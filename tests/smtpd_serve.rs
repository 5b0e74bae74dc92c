//! The session loop as a library: one process serves two sessions in turn on
//! fd pairs it was given (as a hand-off worker will), each from a fresh
//! state, with one queue client kept across them.

#[path = "support/smtpd.rs"]
mod support;

use smtpd::smtpd::serve::{serve, End, ProcessHooks};
use smtpd::io::ucspi::Conn;
use smtpd::queue::client::QueueClient;
use smtpd::smtpd::session::Peer;
use smtpd::smtpd::config::Config;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;
use support::*;

fn session(cfg: &Config, queue: &mut QueueClient, input: &'static [u8]) -> (End, String) {
    let (mut client, server) = UnixStream::pair().unwrap();
    let r = File::from(OwnedFd::from(server.try_clone().unwrap()));
    let w = File::from(OwnedFd::from(server));
    let mut conn = Conn::new(r, w, cfg.timeout);
    let t = std::thread::spawn(move || {
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut g = [0u8; 256];
        let n = client.read(&mut g).unwrap();
        assert!(g[..n].starts_with(b"220 "));
        client.write_all(input).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        client.read_to_string(&mut out).unwrap();
        out
    });
    let mut hooks = ProcessHooks::new(cfg, None);
    let end = serve(&mut conn, cfg, Peer { remote_ip: Some("192.0.2.5".into()), ..Peer::default() }, queue, &mut hooks);
    drop(conn);
    (end, t.join().unwrap())
}

#[test]
fn two_sessions_in_one_process_start_fresh() {
    let d = tempfile::tempdir().unwrap();
    let qq = script(d.path(), "fakeqq", FAKE_QMAIL_QUEUE);
    let q = d.path().join("q");
    std::fs::create_dir(&q).unwrap();
    std::env::set_var("FAKEQQ_DIR", &q);
    let vars: Vec<(&str, OsString)> = vec![
        ("SMTPD_HOSTNAME", "mx.test".into()),
        ("RELAYCLIENT", "".into()),
        ("SMTPD_TIMEOUT", "5".into()),
        ("QMAILQUEUE", qq.into_os_string()),
    ];
    let cfg = Config::from_vars(&|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()), None).unwrap();
    let mut queue = QueueClient::new(&cfg.queue);
    let (end, out) = session(
        &cfg,
        &mut queue,
        b"EHLO one.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nfirst\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(end, End::Quit);
    assert!(out.contains("250 2.0.0 ok: queued as"), "{out}");
    // The second session must not inherit the first one's HELO or transaction.
    let (end, out) = session(&cfg, &mut queue, b"MAIL FROM:<a@x.test>\r\nHELO two.test\r\nRCPT TO:<b@x.test>\r\n");
    assert_eq!(end, End::Eof);
    assert!(out.starts_with("503 5.5.1 send EHLO or HELO first\r\n250 mx.test\r\n503 5.5.1 MAIL first\r\n"), "{out}");
    queue.close();
    let msgs = files(&q, "msg.");
    assert_eq!(msgs.len(), 1);
    assert!(String::from_utf8_lossy(&msgs[0]).starts_with("Received: from one.test ([192.0.2.5])"));
}
