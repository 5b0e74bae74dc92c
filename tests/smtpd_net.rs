//! smtpd-rs on sockets: socketpairs (pregreet, pipelining in one write),
//! under tcpserver on loopback, and bounded memory with a big message and
//! many pipelined commands.

#[path = "support/smtpd.rs"]
mod support;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::time::Duration;
use support::*;

/// A per-message queue that discards everything and exits 0.
const DISCARD_QQ: &str = "#!/bin/sh\ncat >/dev/null\ncat <&1 >/dev/null\nexit 0\n";

fn spawn_on(sock: &UnixStream, vars: &[(&str, &str)]) -> Child {
    let r: OwnedFd = sock.try_clone().unwrap().into();
    let w: OwnedFd = sock.try_clone().unwrap().into();
    command(vars).stdin(Stdio::from(r)).stdout(Stdio::from(w)).stderr(Stdio::piped()).spawn().unwrap()
}

fn read_until(s: &mut impl Read, end: &str) -> String {
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(end) {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn client_talking_first_is_refused() {
    let (mut client, server) = UnixStream::pair().unwrap();
    client.write_all(b"EHLO eager.test\r\n").unwrap();
    let mut child = spawn_on(&server, &[("RELAYCLIENT", "")]);
    drop(server);
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = String::new();
    client.read_to_string(&mut out).unwrap();
    assert_eq!(out, "554 5.5.1 protocol error: data sent before the greeting\r\n");
    assert_eq!(wait_bounded(&mut child, Duration::from_secs(10)), Some(1));
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("end: client talked before the greeting"), "{log}");
}

#[test]
fn pregreet_wait_catches_a_slightly_late_talker() {
    let (mut client, server) = UnixStream::pair().unwrap();
    let mut child = spawn_on(&server, &[("SMTPD_PREGREET", "2000")]);
    drop(server);
    std::thread::sleep(Duration::from_millis(300));
    client.write_all(b"HELO early.test\r\n").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = String::new();
    client.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("554 5.5.1"), "{out}");
    wait_bounded(&mut child, Duration::from_secs(10));
}

/// On a SOCK_SEQPACKET pair every write is one packet: the replies to a
/// pipelined group must come back as one packet, i.e. in one write.
#[test]
fn pipelined_replies_come_in_one_write() {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).unwrap();
    let server = UnixStream::from(b);
    let mut client = UnixStream::from(a);
    let mut child = spawn_on(&server, &[("RELAYCLIENT", "")]);
    drop(server);
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = client.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"220 mx.test"));
    let group = "EHLO c.test\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n".to_string()
        + &"NOOP\r\n".repeat(50);
    client.write_all(group.as_bytes()).unwrap();
    let n = client.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(text.matches("\r\n").count(), 8 + 3 + 50, "one packet with every reply: {text}");
    assert!(text.ends_with("250 2.0.0 ok\r\n"));
    client.write_all(b"QUIT\r\n").unwrap();
    let n = client.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"221 2.0.0 closing connection\r\n");
    assert_eq!(wait_bounded(&mut child, Duration::from_secs(10)), Some(0));
}

#[test]
fn under_tcpserver_on_loopback() {
    let d = tempfile::tempdir().unwrap();
    let qq = script(d.path(), "fakeqq", FAKE_QMAIL_QUEUE);
    let q = d.path().join("q");
    std::fs::create_dir(&q).unwrap();
    let mut server = std::process::Command::new("tcpserver")
        .args(["-1", "-R", "-H", "-c", "4", "127.0.0.1", "0", BIN])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("SMTPD_HOSTNAME", "mx.test")
        .env("QMAILQUEUE", &qq)
        .env("FAKEQQ_DIR", &q)
        .env("RELAYCLIENT", "")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("tcpserver (Debian package ucspi-tcp) is needed: {e}"));
    let mut port = String::new();
    let mut out = server.stdout.take().unwrap();
    let mut c = [0u8; 1];
    while out.read(&mut c).unwrap_or(0) == 1 && c[0] != b'\n' {
        port.push(c[0] as char);
    }
    let result = std::panic::catch_unwind(|| {
        let port: u16 = port.trim().parse().expect("tcpserver -1 prints the port");
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert!(read_until(&mut s, "\r\n").starts_with("220 mx.test ESMTP"));
        s.write_all(b"EHLO c.test\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<u@x.test>\r\nDATA\r\n").unwrap();
        assert!(read_until(&mut s, "354 ").contains("250 2.1.5"));
        s.write_all(b"over tcp\r\n.\r\nQUIT\r\n").unwrap();
        let rest = read_until(&mut s, "221 ");
        assert!(rest.contains("250 2.0.0 ok: queued as"), "{rest}");
        let msg = files(&q, "msg.");
        let msg = String::from_utf8_lossy(&msg[0]).into_owned();
        assert!(msg.starts_with("Received: from c.test ([127.0.0.1])"), "{msg}");
        assert!(msg.ends_with("\n\nover tcp\n") || msg.ends_with("\nover tcp\n"), "{msg}");
    });
    let _ = server.kill();
    let _ = server.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// Peak resident memory of a live process, in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A 30 MB message and 100,000 pipelined commands leave the process small.
/// (The figure asserted here is for the debug build the tests use; the
/// release binary's peak is measured separately with /usr/bin/time.)
#[test]
fn memory_stays_bounded() {
    let d = tempfile::tempdir().unwrap();
    let qq = script(d.path(), "discard", DISCARD_QQ);
    let (mut client, server) = UnixStream::pair().unwrap();
    let mut child = spawn_on(&server, &[("RELAYCLIENT", ""), ("QMAILQUEUE", qq.to_str().unwrap())]);
    drop(server);
    client.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    assert!(read_until(&mut client, "\r\n").starts_with("220"));
    let before = peak_rss_kb(child.id());

    let mut w = client.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(b"EHLO c.test\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<u@x.test>\r\nDATA\r\n").unwrap();
        let line = [b"x".repeat(998), b"\r\n".to_vec()].concat();
        let block = line.repeat(64);
        for _ in 0..(30 << 20) / block.len() {
            w.write_all(&block).unwrap();
        }
        w.write_all(b".\r\n").unwrap();
        let noops = b"NOOP\r\n".repeat(100_000);
        w.write_all(&noops).unwrap();
    });
    let mut got = read_until(&mut client, "250 2.0.0 ok: queued as");
    while !got[got.find("queued as").unwrap()..].contains("\r\n") {
        got.push_str(&read_until(&mut client, "\r\n"));
    }
    assert!(got.contains("354 "), "{got}");
    // Read the 100,000 NOOP replies while they are written.
    let want = 100_000 * b"250 2.0.0 ok\r\n".len();
    let q = got.find("queued as").unwrap();
    let mut n = got[q..].find("\r\n").map_or(0, |e| got.len() - (q + e + 2));
    let mut buf = vec![0u8; 65536];
    let mut tail = Vec::new();
    while n < want {
        let k = client.read(&mut buf).unwrap();
        assert!(k > 0, "connection closed after {n} octets");
        n += k;
        tail = buf[..k].to_vec();
    }
    writer.join().unwrap();
    assert!(tail.ends_with(b"250 2.0.0 ok\r\n"));
    let peak = peak_rss_kb(child.id());
    client.write_all(b"QUIT\r\n").unwrap();
    assert!(read_until(&mut client, "221 ").contains("221 2.0.0"));
    assert_eq!(wait_bounded(&mut child, Duration::from_secs(30)), Some(0));
    eprintln!("peak RSS: {before} kB after the greeting, {peak} kB after 30 MB + 100,000 commands");
    assert!(peak < before + 2048, "peak RSS grew from {before} kB to {peak} kB");
}

/// systemd `Accept=yes` style (inetd fd passing): without TCPREMOTEIP the
/// address comes from REMOTE_ADDR or, as here, from getpeername(2).
#[test]
fn under_systemd_socket_activate() {
    let d = tempfile::tempdir().unwrap();
    let qq = script(d.path(), "fakeqq", FAKE_QMAIL_QUEUE);
    let q = d.path().join("q");
    std::fs::create_dir(&q).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = std::process::Command::new("systemd-socket-activate")
        .args(["-a", "--inetd", "-l", &format!("127.0.0.1:{port}")])
        .args(["-E", "SMTPD_HOSTNAME=mx.test", "-E", "RELAYCLIENT="])
        .arg("-E")
        .arg(format!("QMAILQUEUE={}", qq.display()))
        .arg("-E")
        .arg(format!("FAKEQQ_DIR={}", q.display()))
        .arg(BIN)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("systemd-socket-activate (Debian package systemd) is needed: {e}"));
    let result = std::panic::catch_unwind(|| {
        let mut s = None;
        for _ in 0..100 {
            if let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                s = Some(c);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut s = s.expect("systemd-socket-activate listens");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert!(read_until(&mut s, "\r\n").starts_with("220 mx.test"));
        s.write_all(b"HELO c.test\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<u@x.test>\r\nDATA\r\n").unwrap();
        assert!(read_until(&mut s, "354 ").contains("250 2.1.5"));
        s.write_all(b"hi\r\n.\r\nQUIT\r\n").unwrap();
        assert!(read_until(&mut s, "221 ").contains("250 2.0.0 ok"));
        let msg = String::from_utf8_lossy(&files(&q, "msg.")[0]).into_owned();
        assert!(msg.starts_with("Received: from c.test ([127.0.0.1])\n\tby mx.test (smtpd-rs) with SMTP"), "{msg}");
    });
    let _ = server.kill();
    let _ = server.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn socket_client_that_never_reads_times_out() {
    let (client, server) = UnixStream::pair().unwrap();
    let mut child = spawn_on(&server, &[("SMTPD_TIMEOUT", "1"), ("RELAYCLIENT", "")]);
    drop(server);
    let t = std::time::Instant::now();
    let mut w = client.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = w.write_all(&b"NOOP\r\n".repeat(300_000));
    });
    assert_eq!(wait_bounded(&mut child, Duration::from_secs(15)), Some(1));
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    drop(client);
}
