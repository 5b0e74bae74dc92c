//! tls-wrap + smtpd-rs + queue-inject end to end, with real clients:
//! openssl s_client -starttls smtp, swaks --tls / --tlsc, Python's smtplib
//! starttls() + login(); AUTH with each mechanism, right and wrong
//! passwords, before and after TLS; UCSPITLS=!; the STARTTLS injection test.

#[path = "support/exe.rs"]
mod exe;
#[path = "support/tls.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;
use support::*;

const SMTPD: &str = env!("CARGO_BIN_EXE_smtpd-rs");

struct Setup {
    certs: Certs,
    queue: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let queue = tempfile::tempdir().expect("queue dir");
        std::fs::write(queue.path().join("rcpthosts"), "example.com\n").expect("rcpthosts");
        for d in ["q/tmp", "q/new"] {
            std::fs::create_dir_all(queue.path().join(d)).expect("queue folders");
        }
        Setup { certs: Certs::new(), queue }
    }

    fn env(&self, ucspitls: &str, smtpauth: &str) -> Vec<(String, String)> {
        let mut e = self.certs.env("ecdsa");
        let q = self.queue.path();
        e.push(("QUEUE_DIR".into(), q.join("q").display().to_string()));
        e.push(("RCPTHOSTS".into(), q.join("rcpthosts").display().to_string()));
        e.push(("SMTPD_HOSTNAME".into(), "mx.test".into()));
        e.push(("SMTPD_TIMEOUT".into(), "20".into()));
        e.push(("UCSPITLS".into(), ucspitls.into()));
        e.push(("SMTPAUTH".into(), smtpauth.into()));
        e
    }

    /// tls-wrap [opts] smtpd-rs checkpassword.py true
    fn args(opts: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        v.push(SMTPD.into());
        v.push(format!("{}/tests/support/checkpassword.py", env!("CARGO_MANIFEST_DIR")));
        v.push("true".into());
        v
    }

    /// The queued messages (files in the queue's new/ folder).
    fn queued(&self) -> Vec<String> {
        let new = self.queue.path().join("q").join("new");
        let Ok(rd) = std::fs::read_dir(&new) else { return vec![] };
        rd.flatten().map(|e| String::from_utf8_lossy(&std::fs::read(e.path()).unwrap_or_default()).into_owned()).collect()
    }
}

/// A plain connection to `port`, read up to the greeting; what was read.
fn greeted(port: u16) -> (TcpStream, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    let mut seen = String::new();
    read_until(&mut s, &mut seen, "220 mx.test");
    (s, seen)
}

fn b64(s: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn openssl_starttls_auth_plain_and_relay() {
    let st = Setup::new();
    let (port, h) = serve_once(Setup::args(&[]), st.env("", ""));
    let input = format!(
        "EHLO client.test\nAUTH PLAIN {}\nMAIL FROM:<alice@client.test> AUTH=alice+40client.test\nRCPT TO:<bob@elsewhere.org>\nDATA\nSubject: hi\n\nover TLS\n.\nQUIT\n",
        b64(b"\0alice\0s3cret")
    );
    let out = s_client(port, &["-starttls", "smtp"], &input);
    let o = h.join().expect("server");
    assert!(out.contains("235 2.7.0"), "{out}\n{o:?}");
    assert!(out.contains("250 2.0.0") && out.contains("221 2.0.0"), "{out}\n{o:?}");
    let q = st.queued();
    assert_eq!(q.len(), 1, "{out}\n{o:?}");
    assert!(q[0].contains("with ESMTPSA (using TLSv1.3 with cipher TLS_"), "{}", q[0]);
    assert!(q[0].contains("attr CLIENT_LOGIN=alice") && q[0].contains("attr TLS_PROTOCOL=TLSv1.3"), "{}", q[0]);
    assert!(o.stderr.contains("auth: success type=plain user=<alice>"), "{}", o.stderr);
    assert_eq!(o.code, Some(0), "{o:?}");
}

fn swaks(port: u16, extra: &[&str]) -> (bool, String) {
    need("swaks", "swaks");
    let server = format!("127.0.0.1:{port}");
    let out = Command::new("timeout")
        .args(["30", "swaks", "--server", &server, "--helo", "client.test", "--from", "alice@client.test", "--to", "bob@example.com"])
        .args(extra)
        .output()
        .expect("swaks");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn swaks_tls_with_each_mechanism() {
    let st = Setup::new();
    for (i, mech) in ["PLAIN", "LOGIN", "CRAM-MD5"].iter().enumerate() {
        let (port, h) = serve_once(Setup::args(&[]), st.env("", "+cram"));
        let (ok, out) = swaks(port, &["--tls", "--auth", mech, "--auth-user", "alice", "--auth-password", "s3cret"]);
        let o = h.join().expect("server");
        assert!(ok, "{mech}: {out}\n{o:?}");
        assert_eq!(st.queued().len(), i + 1, "{mech}: {out}");
    }
    // A wrong password: 535, nothing queued.
    let (port, h) = serve_once(Setup::args(&[]), st.env("", "+cram"));
    let (ok, out) = swaks(port, &["--tls", "--auth", "LOGIN", "--auth-user", "alice", "--auth-password", "nope"]);
    h.join().expect("server");
    assert!(!ok && out.contains("535 5.7.8"), "{out}");
    assert_eq!(st.queued().len(), 3);
}

#[test]
fn swaks_tlsc_implicit_tls() {
    let st = Setup::new();
    let (port, h) = serve_once(Setup::args(&["-i"]), st.env("", ""));
    let (ok, out) = swaks(port, &["--tlsc", "--auth", "PLAIN", "--auth-user", "bob", "--auth-password", "b0b"]);
    let o = h.join().expect("server");
    assert!(ok, "{out}\n{o:?}");
    // Implicit TLS: AUTH offered from the first EHLO, no STARTTLS.
    assert!(out.contains("AUTH LOGIN PLAIN") && !out.contains("STARTTLS"), "{out}");
    let q = st.queued();
    assert_eq!(q.len(), 1);
    assert!(q[0].contains("with ESMTPSA (using TLSv1."), "{}", q[0]);
    assert!(!q[0].contains("Authenticated sender"), "not asked for: {}", q[0]);
    // SMTPD_RECEIVED_AUTH: the AUTH user is named in the Received header.
    let mut env = st.env("", "");
    env.push(("SMTPD_RECEIVED_AUTH".into(), "".into()));
    let (port, h) = serve_once(Setup::args(&["-i"]), env);
    let (ok, out) = swaks(port, &["--tlsc", "--auth", "PLAIN", "--auth-user", "bob", "--auth-password", "b0b"]);
    let o = h.join().expect("server");
    assert!(ok, "{out}\n{o:?}");
    let q = st.queued();
    assert!(q.iter().any(|m| m.contains("\n\t(Authenticated sender: bob)\n\tby mx.test")), "{q:?}");
}

#[test]
fn python_smtplib_starttls_login() {
    let st = Setup::new();
    let (port, h) = serve_once(Setup::args(&[]), st.env("!", ""));
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", {port}, timeout=20)
s.ehlo("client.test")
assert s.has_extn("starttls"), s.esmtp_features
assert not s.has_extn("auth"), "AUTH before TLS"
code, msg = s.mail("a@client.test")
assert code == 530, (code, msg)
s.rset()
s.starttls(context=ctx)
s.ehlo("client.test")
assert s.has_extn("auth") and not s.has_extn("starttls"), s.esmtp_features
try:
    s.login("alice", "wrong")
    raise SystemExit("wrong password accepted")
except smtplib.SMTPAuthenticationError as e:
    assert e.smtp_code == 535, e
s.login("alice", "s3cret")
s.sendmail("alice@client.test", ["carol@far.example.net"], b"Subject: py\r\n\r\nhello\r\n")
s.quit()
print("OK")
"#
    );
    let out = Command::new("timeout").args(["60", "/usr/bin/python3", "-c", &script]).output().expect("python3");
    let o = h.join().expect("server");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("OK"), "{text}\n{o:?}");
    assert_eq!(st.queued().len(), 1);
    assert!(o.stderr.contains("refused MAIL: 530 5.7.0"), "{}", o.stderr);
}

#[test]
fn starttls_injection_gets_no_answer_inside_tls() {
    let st = Setup::new();
    let (port, h) = serve_once(Setup::args(&[]), st.env("", ""));
    let (mut s, mut seen) = greeted(port);
    s.write_all(b"EHLO client.test\r\n").expect("write");
    read_until(&mut s, &mut seen, "250 ");
    // The injection: a command behind STARTTLS in the same write.
    s.write_all(b"STARTTLS\r\nRSET\r\n").expect("write");
    let mut r = String::new();
    read_until(&mut s, &mut r, "\r\n");
    assert!(r.starts_with("503 5.5.1"), "STARTTLS with input behind it must be refused: {r}");
    assert!(!r.contains("220"), "{r}");
    // The RSET is answered in plaintext, never inside a TLS session.
    read_until(&mut s, &mut r, "250 2.0.0 flushed");
    s.write_all(b"QUIT\r\n").expect("write");
    drop(s);
    let o = h.join().expect("server");
    assert!(o.stderr.contains("refused STARTTLS: 503"), "{}", o.stderr);

    // The same with a real TLS client: STARTTLS alone, then the handshake,
    // and the first thing heard inside TLS is the answer to our EHLO.
    let (port, h) = serve_once(Setup::args(&[]), st.env("", ""));
    let script = format!(
        r#"
import socket, ssl
s = socket.create_connection(("127.0.0.1", {port}), timeout=15)
f = s.makefile("rb")
def reply():
    lines = []
    while True:
        l = f.readline()
        lines.append(l)
        if l[3:4] != b"-":
            return lines
assert reply()[0].startswith(b"220")
s.sendall(b"EHLO client.test\r\n"); reply()
s.sendall(b"STARTTLS\r\n")
assert reply()[0].startswith(b"220 2.0.0")
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s)
tf = t.makefile("rb")
t.sendall(b"EHLO again.test\r\n")
first = tf.readline()
assert first.startswith(b"250-mx.test"), first
t.sendall(b"QUIT\r\n")
print("OK")
"#
    );
    let out = Command::new("timeout").args(["30", "/usr/bin/python3", "-c", &script]).output().expect("python3");
    h.join().expect("server");
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn per_message_queue_program_gets_the_auth_variables() {
    let st = Setup::new();
    let d = st.queue.path().join("qq");
    std::fs::create_dir(&d).expect("qq dir");
    let qq = st.queue.path().join("fake-qmail-queue");
    exe::write(
        &qq,
        &format!("#!/bin/sh\ncat > {0}/msg || exit 54\ncat <&1 > {0}/env || exit 54\necho \"$SMTPAUTHUSER $TCPREMOTEINFO $SMTP_AUTH_USER\" > {0}/authenv\nexit 0\n", d.display()),
    );
    let mut env = st.env("", "");
    env.push(("QMAILQUEUE".into(), qq.display().to_string()));
    let (port, h) = serve_once(Setup::args(&[]), env);
    let (ok, out) = swaks(port, &["--tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "s3cret"]);
    h.join().expect("server");
    assert!(ok, "{out}");
    assert_eq!(std::fs::read_to_string(d.join("authenv")).expect("authenv"), "alice alice alice\n");
}

#[test]
fn auth_refused_before_tls() {
    let st = Setup::new();
    let (port, h) = serve_once(Setup::args(&[]), st.env("", ""));
    let (mut s, _) = greeted(port);
    s.write_all(format!("EHLO c.test\r\nAUTH PLAIN {}\r\nQUIT\r\n", b64(b"\0alice\0s3cret")).as_bytes()).expect("write");
    let mut r = String::new();
    read_until(&mut s, &mut r, "221 ");
    assert!(r.contains("538 5.7.11") && !r.contains("235"), "{r}");
    h.join().expect("server");
}

fn read_until(s: &mut TcpStream, acc: &mut String, what: &str) {
    let mut b = [0u8; 1024];
    while !acc.contains(what) {
        match s.read(&mut b) {
            Ok(n) if n > 0 => acc.push_str(&String::from_utf8_lossy(&b[..n])),
            _ => panic!("wanted {what:?}, got {acc:?}"),
        }
    }
}

/// Issue 17.4: with tls-wrap in front (SSLCTLFD set) and UCSPITLS unset,
/// STARTTLS is off, and the log says so once per session; set (even to
/// `-`, a choice), it says nothing.
#[test]
fn tls_available_but_not_offered_is_logged() {
    let st = Setup::new();
    for (ucspitls, logged) in [(None, true), (Some(""), false), (Some("-"), false)] {
        let mut env = st.env("", "");
        env.retain(|(k, _)| k != "UCSPITLS");
        if let Some(v) = ucspitls {
            env.push(("UCSPITLS".into(), v.into()));
        }
        let (port, h) = serve_once(Setup::args(&[]), env);
        let (mut s, _) = greeted(port);
        s.write_all(b"EHLO c.test\r\nQUIT\r\n").expect("write");
        let mut r = String::new();
        read_until(&mut s, &mut r, "221 ");
        let o = h.join().expect("server");
        assert_eq!(r.contains("STARTTLS"), ucspitls == Some(""), "{ucspitls:?}: {r}");
        let n = o.stderr.matches("smtpd-rs: info: ").count();
        assert!(n > 0, "{}", o.stderr);
        let lines = o.stderr.lines().filter(|l| l.contains("STARTTLS not offered: UCSPITLS is unset")).count();
        assert_eq!(lines, usize::from(logged), "{ucspitls:?}: {}", o.stderr);
    }
}
