//! smtp-remote against real servers on loopback: Python's aiosmtpd (plain,
//! STARTTLS, AUTH PLAIN/LOGIN) and Postfix's smtp-sink; message and envelope
//! arrive byte for byte.
#[path = "support/remote.rs"]
mod support;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use support::*;

const MSG: &[u8] = b"From: a@example.org\nTo: b@example.net\nSubject: peers\n\nfirst\n.dotted\n..two\nlast line\n";
const WIRE: &[u8] = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: peers\r\n\r\nfirst\r\n.dotted\r\n..two\r\nlast line\r\n";

struct Py {
    child: Child,
    port: u16,
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn aiosmtpd(out: &Path, extra: &[&str]) -> Py {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/remote_aiosmtpd.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .arg("--out")
        .arg(out)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 with aiosmtpd (Debian package python3-aiosmtpd)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| panic!("aiosmtpd did not start (Debian package python3-aiosmtpd): {line:?}"));
    Py { child, port }
}

fn deliver(port: u16, env: &[(&str, &str)]) -> Run {
    let p = port.to_string();
    let mut e = vec![("SMTP_PORT", p.as_str())];
    e.extend_from_slice(env);
    run(&["[127.0.0.1]", "a@example.org", "b@example.net", "c@example.net"], &e, MSG)
}

fn stored(dir: &Path) -> (Vec<u8>, String) {
    (std::fs::read(dir.join("1.msg")).unwrap(), std::fs::read_to_string(dir.join("1.env")).unwrap())
}

#[test]
fn aiosmtpd_plain_byte_exact() {
    let d = tempfile::tempdir().unwrap();
    let s = aiosmtpd(d.path(), &[]);
    let r = deliver(s.port, &[]);
    assert_eq!(r.report, "r|r|K127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 stored 1\n|");
    let (msg, env) = stored(d.path());
    assert_eq!(msg, WIRE);
    assert_eq!(env, format!("from a@example.org\nmailopts SIZE={}\nto b@example.net\nto c@example.net\ntls False\nauth False\n", WIRE.len()));
}

#[test]
fn aiosmtpd_starttls_and_auth() {
    let d = tempfile::tempdir().unwrap();
    let (c, k) = cert(d.path(), "sink.test");
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let s = aiosmtpd(&out, &["--cert", c.to_str().unwrap(), "--key", k.to_str().unwrap(), "--auth", "alice:pass word"]);
    let creds = d.path().join("auth");
    std::fs::write(&creds, "127.0.0.1 alice pass word\n").unwrap();
    // Credentials go only to a verified certificate: this one is pinned.
    let r = deliver(s.port, &[("SMTP_AUTHFILE", creds.to_str().unwrap()), ("TLS_PIN", &pin(&c))]);
    assert_eq!(r.report, "r|r|K127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 stored 1\n|");
    let (msg, env) = stored(&out);
    assert_eq!(msg, WIRE);
    assert!(env.ends_with("tls True\nauth True\n"), "{env}");
    // A wrong password: temporary, nothing stored.
    std::fs::write(&creds, "* alice wrong\n").unwrap();
    let r = deliver(s.port, &[("SMTP_AUTHFILE", creds.to_str().unwrap()), ("TLS_PIN", &pin(&c))]);
    assert!(r.report.starts_with("ZConnected to 127.0.0.1 but authentication failed.\nRemote host said: 535"), "{}", r.report);
    assert!(!out.join("2.msg").exists());
}

fn smtp_sink(dir: &Path, extra: &[&str]) -> (Py, u16) {
    let port = free_port();
    let mut c = Command::new("/usr/sbin/smtp-sink");
    if nix_is_root() {
        c.args(["-u", "nobody"]);
    }
    let template = format!("{}/%M.", dir.display());
    let child = c
        .args(["-d", &template])
        .args(extra)
        .arg(format!("127.0.0.1:{port}"))
        .arg("10")
        .stdin(Stdio::null())
        .spawn()
        .expect("smtp-sink (Debian package postfix)");
    // Wait until it listens.
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    (Py { child, port }, port)
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

#[test]
fn smtp_sink_byte_exact_and_rejects() {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let (_s, port) = smtp_sink(d.path(), &[]);
    let r = deliver(port, &[]);
    assert_eq!(r.report, "r|r|K127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 Ok\n|");
    let files: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1);
    let dump = std::fs::read(&files[0]).unwrap();
    let text = String::from_utf8_lossy(&dump);
    assert!(text.contains("X-Mail-Args: <a@example.org>"), "{text}");
    assert!(text.contains("X-Rcpt-Args: <b@example.net>\n") && text.contains("X-Rcpt-Args: <c@example.net>\n"), "{text}");
    // smtp-sink stores the message with LF line ends after its own headers.
    let body = String::from_utf8_lossy(MSG).into_owned();
    assert!(text.contains(&body), "{text}");

    let (_s, port) = smtp_sink(d.path(), &["-f", "RCPT"]);
    let r = deliver(port, &[]);
    assert!(r.report.starts_with("h127.0.0.1 does not like recipient.\nRemote host said: 500 5.3.0"), "{}", r.report);
    assert!(r.report.contains("|DGiving up on 127.0.0.1.\n"), "{}", r.report);
    let (_s, port) = smtp_sink(d.path(), &["-r", "."]);
    let r = deliver(port, &[]);
    assert_eq!(r.report, "r|r|Z127.0.0.1 failed after I sent the message.\nRemote host said: 450 4.3.0 Error: command failed\n|");
    let (_s, port) = smtp_sink(d.path(), &["-Q", "CONNECT"]);
    let r = deliver(port, &[]);
    assert!(r.report.starts_with("ZConnected to 127.0.0.1 but greeting failed.\nRemote host said: 421"), "{}", r.report);
}
