//! smtp-remote's LMTP routes (RFC 2033) against a scripted LMTP server on a
//! Unix socket and on a loopback port: LHLO, one reply per accepted
//! recipient after the data, each recipient's own record in the report,
//! and what LMTP leaves out (HELO fallback, loop checks by name, TLS over a
//! socket). Dovecot as the real peer is in tests/deliver_dovecot.rs.
#[path = "support/remote.rs"]
mod support;
use std::path::Path;
use support::*;

const MSG: &[u8] = b"From: a@example.org\nSubject: test\n\nline 1\n.line with dot\n";

fn routes(dir: &Path, line: &str) -> String {
    let p = dir.join("smtproutes");
    std::fs::write(&p, format!("{line}\n")).unwrap();
    p.display().to_string()
}

fn go(routes: &str, rcpts: &[&str], env: &[(&str, &str)]) -> Run {
    let mut args = vec!["example.com", "a@example.org"];
    args.extend_from_slice(rcpts);
    let mut e = vec![("SMTPROUTES", routes)];
    e.extend_from_slice(env);
    run(&args, &e, MSG)
}

#[test]
fn unix_socket_one_reply_per_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("lmtp");
    // Even a server that names us (Dovecot on this host greets with the
    // host name) is no loop: LMTP delivers to a store, not to our queue.
    let f = fake_unix(&sock, &["PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME"], |c| match c {
        "CONNECT" => send("220 client.test Dovecot ready.\r\n"),
        "RCPT TO:<gone@example.com>" => send("550 5.1.1 <gone@example.com> User doesn't exist\r\n"),
        "DATA-END" => send("250 2.0.0 <a@example.com> Saved\r\n452 4.2.2 <b@example.com> Mailbox is full\r\n250 2.0.0 <c@example.com> Saved\r\n"),
        _ => Act::Default,
    });
    let rt = routes(dir.path(), &format!("example.com:{} proto=lmtp", sock.display()));
    let r = go(&rt, &["a@example.com", "gone@example.com", "b@example.com", "c@example.com"], &[]);
    let p = sock.display().to_string();
    assert_eq!(
        r.report,
        format!(
            "rRemote host said: 250 2.0.0 <a@example.com> Saved\n|\
h{p} does not like recipient.\nRemote host said: 550 5.1.1 <gone@example.com> User doesn't exist\n|\
s{p} failed after I sent the message.\nRemote host said: 452 4.2.2 <b@example.com> Mailbox is full\n|\
rRemote host said: 250 2.0.0 <c@example.com> Saved\n|\
K{p} accepted the message for 2 of 4 recipients.\n|"
        )
    );
    let log = f.log();
    assert_eq!(log[0], "LHLO client.test");
    assert_eq!(log[1], "MAIL FROM:<a@example.org>");
    assert_eq!(&log[2..6], ["RCPT TO:<a@example.com>", "RCPT TO:<gone@example.com>", "RCPT TO:<b@example.com>", "RCPT TO:<c@example.com>"]);
    assert_eq!(log[6], "DATA");
    assert_eq!(f.messages(), vec![b"From: a@example.org\r\nSubject: test\r\n\r\nline 1\r\n..line with dot\r\n".to_vec()]);
}

#[test]
fn unix_socket_all_delivered_and_quit() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("lmtp");
    let f = fake_unix(&sock, &[], |c| match c {
        "DATA-END" => send("250 2.0.0 <a@example.com> Saved\r\n250 2.0.0 <b@example.com> Saved\r\n"),
        _ => Act::Default,
    });
    let rt = routes(dir.path(), &format!("example.com:{} proto=lmtp", sock.display()));
    let r = go(&rt, &["a@example.com", "b@example.com"], &[("SMTP_TLS", "encrypt")]);
    let p = sock.display().to_string();
    assert_eq!(
        r.report,
        format!(
            "rRemote host said: 250 2.0.0 <a@example.com> Saved\n|rRemote host said: 250 2.0.0 <b@example.com> Saved\n|K{p} accepted message.\n|"
        )
    );
    // No pipelining offered: step by step. SMTP_TLS=encrypt does not apply
    // to a socket; QUIT once the replies are in.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(f.log(), ["LHLO client.test", "MAIL FROM:<a@example.org>", "RCPT TO:<a@example.com>", "RCPT TO:<b@example.com>", "DATA", "QUIT"]);
}

#[test]
fn connection_lost_between_replies() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("lmtp");
    let _f = fake_unix(&sock, &["PIPELINING"], |c| match c {
        // The first recipient's reply, then the server dies.
        "DATA-END" => Act::Send(b"250 2.0.0 <a@example.com> Saved\r\n".to_vec()),
        "QUIT" => Act::Close,
        _ => Act::Default,
    });
    let rt = routes(dir.path(), &format!("example.com:{} proto=lmtp", sock.display()));
    // The fake answers DATA-END once and then reads the next command: it
    // never sends the second reply, so smtp-remote times out on it.
    let r = go(&rt, &["a@example.com", "b@example.com"], &[("TIMEOUTREMOTE", "1")]);
    let p = sock.display().to_string();
    assert_eq!(
        r.report,
        format!(
            "rRemote host said: 250 2.0.0 <a@example.com> Saved\n|\
sConnected to {p} but the connection timed out. Possible duplicate! (#4.4.2)\n|\
K{p} accepted the message for 1 of 2 recipients.\n|"
        )
    );
}

#[test]
fn nothing_delivered_after_data() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("lmtp");
    let _f = fake_unix(&sock, &["PIPELINING"], |c| match c {
        "DATA-END" => send("552 5.2.2 <a@example.com> Quota exceeded\r\n451 4.3.0 <b@example.com> Temporary failure\r\n"),
        _ => Act::Default,
    });
    let rt = routes(dir.path(), &format!("example.com:{} proto=lmtp", sock.display()));
    let r = go(&rt, &["a@example.com", "b@example.com"], &[]);
    let p = sock.display().to_string();
    assert_eq!(
        r.report,
        format!(
            "h{p} failed after I sent the message.\nRemote host said: 552 5.2.2 <a@example.com> Quota exceeded\n|\
s{p} failed after I sent the message.\nRemote host said: 451 4.3.0 <b@example.com> Temporary failure\n|\
Z{p} failed after I sent the message.\n|"
        )
    );
}

#[test]
fn no_recipient_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("lmtp");
    // RFC 2033 4.2: DATA fails with 503 when no RCPT succeeded.
    let f = fake_unix(&sock, &["PIPELINING"], |c| match c {
        c if c.starts_with("RCPT") => send("550 5.1.1 User doesn't exist\r\n"),
        "DATA" => send("503 5.5.1 No valid recipients\r\n"),
        _ => Act::Default,
    });
    let rt = routes(dir.path(), &format!("example.com:{} proto=lmtp", sock.display()));
    let r = go(&rt, &["x@example.com"], &[]);
    let p = sock.display().to_string();
    assert_eq!(
        r.report,
        format!("h{p} does not like recipient.\nRemote host said: 550 5.1.1 User doesn't exist\n|DGiving up on {p}.\nRemote host said: 550 5.1.1 User doesn't exist\n|")
    );
    assert!(f.messages().is_empty());
}

#[test]
fn lhlo_refused_no_helo() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("lmtp");
    let f = fake_unix(&sock, &[], |c| if c.starts_with("LHLO") { send("500 5.5.2 what\r\n") } else { Act::Default });
    let rt = routes(dir.path(), &format!("example.com:{} proto=lmtp", sock.display()));
    let r = go(&rt, &["x@example.com"], &[]);
    let p = sock.display().to_string();
    assert_eq!(r.report, format!("ZConnected to {p} but my name was rejected.\nRemote host said: 500 5.5.2 what\n|"));
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(f.log(), ["LHLO client.test", "QUIT"]);
}

#[test]
fn missing_socket_is_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nothing-here");
    let rt = routes(dir.path(), &format!("example.com:{} proto=lmtp", sock.display()));
    let r = go(&rt, &["x@example.com"], &[]);
    assert!(r.report.starts_with(&format!("ZSorry, I wasn't able to connect to the LMTP socket {}: ", sock.display())), "{}", r.report);
    assert!(r.report.ends_with(". (#4.4.1)\n|"), "{}", r.report);
}

#[test]
fn bad_lmtp_routes_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (line, what) in [
        ("example.com:/run/lmtp", "a Unix socket relay needs proto=lmtp"),
        ("example.com: proto=lmtp", "proto=lmtp needs a relay (host or socket path)"),
        ("example.com:/run/lmtp proto=lmtp tls=verify", "no TLS over a Unix socket"),
    ] {
        let rt = routes(dir.path(), line);
        let r = go(&rt, &["x@example.com"], &[]);
        assert_eq!(r.report, format!("ZUnable to read configuration: {rt}: line 1: {what}. (#4.3.0)\n|"), "{line}");
    }
}

#[test]
fn tcp_route_on_this_host_is_no_loop() {
    // An LMTP server on this host's address on a port of SMTPD_PORTS, and
    // greeting with our name: both loop checks are for SMTP only.
    let f = fake(&["PIPELINING"], |c| match c {
        "CONNECT" => send("220 client.test LMTP ready\r\n"),
        "DATA-END" => send("250 2.0.0 <a@example.com> Saved\r\n"),
        _ => Act::Default,
    });
    let dir = tempfile::tempdir().unwrap();
    let rt = routes(dir.path(), &format!("example.com:127.0.0.1:{} proto=lmtp", f.port()));
    let port = f.port().to_string();
    let r = go(&rt, &["a@example.com"], &[("SMTPD_PORTS", &port)]);
    assert_eq!(r.report, "rRemote host said: 250 2.0.0 <a@example.com> Saved\n|K127.0.0.1 accepted message.\n|");
    assert_eq!(f.log()[0], "LHLO client.test");
    // The same server as an SMTP route on that port: the loop is seen.
    let rt = routes(dir.path(), &format!("example.com:127.0.0.1:{}", f.port()));
    let r = go(&rt, &["a@example.com"], &[("SMTPD_PORTS", &port)]);
    assert!(r.report.starts_with("DSorry, mail for example.com loops back to myself"), "{}", r.report);
}

#[test]
fn tcp_route_with_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = cert(dir.path(), "lmtp.test");
    let f = fake_on("127.0.0.1", 0, &["PIPELINING"], Some(server_config(&c, &k)), Box::new(|c: &str| match c {
        "DATA-END" => send("250 2.0.0 <a@example.com> Saved\r\n"),
        _ => Act::Default,
    }));
    let rt = routes(dir.path(), &format!("example.com:127.0.0.1:{} proto=lmtp tls=encrypt", f.port()));
    let r = go(&rt, &["a@example.com"], &[]);
    assert_eq!(r.report, "rRemote host said: 250 2.0.0 <a@example.com> Saved\n|K127.0.0.1 accepted message.\n|");
    let log = f.log();
    assert_eq!(&log[..4], ["LHLO client.test", "STARTTLS", "TLS", "LHLO client.test"]);
}

#[test]
fn full_listen_queue_times_out() {
    use nix::sys::socket::{bind, connect, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("lmtp");
    // A server that never accepts, its queue filled by connections of ours.
    let l = socket(AddressFamily::Unix, SockType::Stream, SockFlag::empty(), None).unwrap();
    let addr = UnixAddr::new(&sock).unwrap();
    bind(l.as_raw_fd(), &addr).unwrap();
    listen(&l, Backlog::new(0).unwrap()).unwrap();
    let mut fillers = Vec::new();
    loop {
        let c = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK, None).unwrap();
        if connect(c.as_raw_fd(), &addr).is_err() {
            break;
        }
        fillers.push(c);
        assert!(fillers.len() < 100, "the listen queue never filled");
    }
    let rt = routes(dir.path(), &format!("example.com:{} proto=lmtp", sock.display()));
    let t = std::time::Instant::now();
    let r = go(&rt, &["x@example.com"], &[("TIMEOUTCONNECT", "1")]);
    assert!(t.elapsed() >= std::time::Duration::from_millis(900) && t.elapsed() < std::time::Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(r.report, format!("ZSorry, I wasn't able to connect to the LMTP socket {}: its listen queue stayed full. (#4.4.1)\n|", sock.display()));
}

#[test]
fn tcp_route_refused_is_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let rt = routes(dir.path(), &format!("example.com:127.0.0.1:{} proto=lmtp", free_port()));
    let r = go(&rt, &["x@example.com"], &[]);
    assert_eq!(r.report, "ZSorry, I wasn't able to establish an LMTP connection. (#4.4.1)\n|");
}
