//! Real peer: tcprules. The example rules in conf-examples compile, and
//! tcpserver -x with them gives smtpd-rs the per-address settings they name
//! (127.0.0.1: RELAYCLIENT, and not XCLIENT or XFORWARD, which the examples
//! never give to an address that relays).
#[path = "support/peers.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;

fn compile(s: &Scratch, rules: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(rules);
    let text = std::fs::read(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let cdb = s.dir.path().join("rules.cdb");
    let tmp = s.dir.path().join("rules.tmp");
    let mut c = Command::new(peer("tcprules", "ucspi-tcp"));
    c.arg(&cdb).arg(&tmp);
    let o = run(&mut c, &text, Duration::from_secs(10));
    assert_ok(&o, &format!("tcprules < {rules}"));
    cdb
}

#[test]
fn local_rules_compile() {
    let s = Scratch::new();
    assert!(compile(&s, "conf-examples/local.rules").is_file());
}

#[test]
fn tcp_smtp_rules_let_loopback_relay_without_xclient() {
    let s = Scratch::new();
    let cdb = compile(&s, "conf-examples/tcpserver/tcp.smtp");
    let cdb = cdb.to_str().expect("utf8 path");
    let srv = TcpServer::start_with(&s, &[], &["-x", cdb], &[SMTPD]);
    let mut c = Command::new(peer("swaks", "swaks"));
    s.env(&mut c);
    c.args([
        "--server",
        &format!("127.0.0.1:{}", srv.port),
        "--helo",
        "client.test.example",
        "--from",
        "sender@example.org",
        "--to",
        "someone@elsewhere.test",
        "--timeout",
        "20",
    ]);
    let o = run(&mut c, b"", DEADLINE);
    assert!(o.status.success(), "relaying allowed by RELAYCLIENT from the rules: {}\n{}", o.text(), srv.log_text());
    let transcript = String::from_utf8_lossy(&o.stdout);
    assert!(!transcript.contains("XCLIENT"), "EHLO offers XCLIENT to 127.0.0.1, which relays:\n{transcript}");
    assert!(!transcript.contains("XFORWARD"), "EHLO offers XFORWARD to 127.0.0.1, which relays:\n{transcript}");
    let files = s.wait_new(1, Duration::from_secs(5));
    assert_eq!(files.len(), 1);
    assert_eq!(QueueFile::read(&files[0]).to_strings(), ["someone@elsewhere.test"]);
}
