//! Real peer: Python's smtplib against smtpd-rs under tcpserver.
#[path = "support/peers.rs"]
mod support;

use std::process::Command;
use std::time::Duration;
use support::*;

/// One session: EHLO and its extensions, a message to two accepted and one
/// refused recipient, an 8-bit message (BODY=8BITMIME), an SMTPUTF8 one, a
/// DSN one, a null sender, VRFY. Prints nothing; raises on any surprise.
const SCRIPT: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
s = smtplib.SMTP('127.0.0.1', port, timeout=20)
code, _ = s.ehlo('client.test.example')
assert code == 250, code
for ext in ('pipelining', '8bitmime', 'size', 'enhancedstatuscodes', 'smtputf8', 'chunking', 'dsn'):
    assert s.has_extn(ext), 'EHLO lacks ' + ext

def crlf(b):
    return b.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')

m1 = open(sys.argv[2], 'rb').read()
refused = s.sendmail('sender@example.org', ['a@example.com', 'b@localhost', 'x@elsewhere.test'], crlf(m1))
assert list(refused) == ['x@elsewhere.test'], refused
assert 500 <= refused['x@elsewhere.test'][0] < 600, refused

m2 = open(sys.argv[3], 'rb').read()
s.sendmail('sender@example.org', ['eight@example.com'], crlf(m2), mail_options=['BODY=8BITMIME'])

m3 = open(sys.argv[4], 'rb').read()
s.sendmail('s\u00e9nder@example.org', ['utf8@example.com'], crlf(m3), mail_options=['SMTPUTF8', 'BODY=8BITMIME'])

s.sendmail('sender@example.org', ['dsn@example.com'], crlf(m1),
           mail_options=['RET=HDRS', 'ENVID=abc123'],
           rcpt_options=['NOTIFY=SUCCESS,FAILURE', 'ORCPT=rfc822;dsn@example.com'])

s.sendmail('', ['bounce@example.com'], crlf(m1))

code, _ = s.verify('a@example.com')
assert code == 252, code
code, _ = s.docmd('EXPN', 'list')
assert 500 <= code < 600, code
code, _ = s.quit()
assert code == 221, code
"#;

#[test]
fn python_smtplib_session() {
    let py = python3();
    let s = Scratch::new();
    let srv = TcpServer::smtpd(&s, &[]);
    let d = s.dir.path();
    let m1 = b"From: a <sender@example.org>\nTo: b@example.com\nSubject: smtplib\n\nline one\n.line with a dot\n..two dots\n";
    let m2 = "From: sender@example.org\nSubject: 8 bit\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nd\u{e9}j\u{e0} vu \u{2014} \u{fc}ber\n"
        .as_bytes();
    let m3 = "From: s\u{e9}nder@example.org\nTo: utf8@example.com\nSubject: \u{2603}\n\nsnow\n".as_bytes();
    for (name, body) in [("m1", &m1[..]), ("m2", m2), ("m3", m3)] {
        std::fs::write(d.join(name), body).expect("write message");
    }
    let mut c = Command::new(py);
    s.env(&mut c);
    let o = run(
        c.arg("-c").arg(SCRIPT).arg(srv.port.to_string()).arg(d.join("m1")).arg(d.join("m2")).arg(d.join("m3")),
        b"",
        DEADLINE,
    );
    assert!(o.status.success(), "smtplib session: {}\n--- smtpd-rs log\n{}", o.text(), srv.log_text());

    let msgs: Vec<QueueFile> = {
        let files = s.wait_new(5, Duration::from_secs(5));
        assert_eq!(files.len(), 5, "five messages queued");
        files.iter().map(|p| QueueFile::read(p)).collect()
    };
    let by_rcpt = |r: &str| {
        msgs.iter()
            .find(|m| m.to_strings().first().map(String::as_str) == Some(r))
            .unwrap_or_else(|| panic!("no message to {r}"))
    };
    let first = by_rcpt("a@example.com");
    assert_eq!(first.to_strings(), ["a@example.com", "b@localhost"]);
    assert_eq!(first.from, b"sender@example.org");
    assert_eq!(first.body(), &as_stored(m1)[..], "dot-stuffing undone, LF line ends");

    let eight = by_rcpt("eight@example.com");
    assert_eq!(eight.body(), m2, "8-bit body byte-exact");
    assert_eq!(eight.attr("BODY"), Some("8BITMIME"));

    let utf8 = by_rcpt("utf8@example.com");
    assert_eq!(utf8.from, "s\u{e9}nder@example.org".as_bytes());
    assert_eq!(utf8.attr("SMTPUTF8"), Some("1"));
    assert_eq!(utf8.body(), m3);

    let dsn = by_rcpt("dsn@example.com");
    assert_eq!(dsn.attr("RET"), Some("HDRS"));
    assert!(dsn.attr("ENVID").is_some(), "ENVID kept: {:?}", dsn.attrs);
    assert_eq!(dsn.attr("RCPT.0.NOTIFY"), Some("SUCCESS,FAILURE"));
    assert!(dsn.attr("RCPT.0.ORCPT").is_some(), "ORCPT kept: {:?}", dsn.attrs);

    let bounce = by_rcpt("bounce@example.com");
    assert!(bounce.from.is_empty(), "null sender kept");
}
