//! auth-check in the chain, end to end, with swaks as the client: smtpd-rs
//! under tcpserver running `auth-check -s` as its session-mode queue
//! program (QUEUE_SESSION_PROGRAM), and smtpd-rs under `swaks --pipe`
//! running auth-check once per message (QMAILQUEUE); queue-inject after it.
//! With both reject policies on: a genuine message is queued with our
//! field on top (above smtpd-rs's Received), the AUTH_* attribute lines
//! and no forged field, under the queue id smtpd-rs announced; an SPF
//! failure gets `550 5.7.23` and a DMARC p=reject failure `550 5.7.1` at
//! the end of DATA, and nothing is queued for them.
#[path = "support/exe.rs"]
mod exe;
#[path = "support/authcheck.rs"]
mod ac;
#[path = "support/peers.rs"]
mod peers;
#[path = "support/remote.rs"]
mod remote_support;

use peers::{assert_ok, peer, run, Scratch, TcpServer, DEADLINE};
use remote_support::{fake_dns, FakeDns, Rr, Zone};
use std::process::Command;

fn dns() -> FakeDns {
    let txt = |s: &str| Rr::Txt(vec![s.to_string()]);
    fake_dns(
        Zone::new(false)
            .add("example.org", txt("v=spf1 ip4:127.0.0.1 ip4:192.0.2.1 -all"))
            .add("_dmarc.example.org", txt("v=DMARC1; p=reject"))
            .add("forged.example", txt("v=spf1 -all"))
            .add("_dmarc.forged.example", txt("v=DMARC1; p=reject")),
    )
}

/// The chain's variables: auth-check's DNS, PSL, policy and next program.
fn chain_env(d: &FakeDns) -> Vec<(&'static str, String)> {
    vec![
        ("DNS_SERVER", d.addr.to_string()),
        ("DNS_TIMEOUT", "2".into()),
        ("PUBLIC_SUFFIX_LIST", ac::psl().display().to_string()),
        ("AUTHCHECK_QUEUE", ac::QUEUE_INJECT.into()),
        ("AUTHCHECK_SPF", "reject".into()),
        ("AUTHCHECK_DMARC", "reject".into()),
    ]
}

const FORGED: &str = "Authentication-Results: mx.test.example; dmarc=pass header.from=bank.example";

/// swaks sending one message: (envelope sender, From field).
fn swaks(s: &Scratch, to_server: &[&str], mail_from: &str, from: &str) -> peers::Output {
    let mut c = Command::new(peer("swaks", "swaks"));
    s.env(&mut c);
    c.args(["--helo", "client.example.org", "--from", mail_from, "--to", "user@example.com", "--timeout", "20"])
        .args(["--header", &format!("From: {from}"), "--header", "Subject: checked", "--add-header", FORGED])
        .args(["--body", "hello\n"])
        .args(to_server);
    run(&mut c, b"", DEADLINE)
}

/// The three messages of both set-ups, and what must come of them.
fn three_messages(s: &Scratch, server: &[&str]) {
    let o = swaks(s, server, "alice@example.org", "Alice <alice@example.org>");
    assert_ok(&o, "swaks, genuine message");
    let transcript = String::from_utf8_lossy(&o.stdout).into_owned();
    let files = s.wait_new(1, std::time::Duration::from_secs(5));
    assert_eq!(files.len(), 1, "{transcript}");
    let q = &ac::queued(&s.queue)[0];
    let text = String::from_utf8_lossy(&q.message).into_owned();
    assert!(text.starts_with("Authentication-Results: mx.test.example;\n\tspf=pass smtp.mailfrom=alice@example.org;\n"), "{text}");
    let received_at = text.find("\nReceived: ").expect("Received below our field");
    assert!(received_at < text.find("\n\n").unwrap());
    assert!(!text.contains("bank.example"), "forged field removed: {text}");
    let parsed = ac::authres_parse(&q.auth_results());
    assert_eq!(ac::verdicts(&parsed[0].1), ["spf=pass", "spf=none", "dmarc=pass"]);
    for (k, v) in [("AUTH_SPF", "pass"), ("AUTH_DMARC", "pass"), ("AUTH_DMARC_POLICY", "none"), ("AUTH_DKIM", "none"), ("CLIENT_HELO", "client.example.org")] {
        assert_eq!(q.attr(k), Some(v), "{k}: {:?}", q.attrs);
    }
    // SPF fail of the envelope sender.
    let o = swaks(s, server, "ceo@forged.example", "ceo@forged.example");
    assert!(!o.status.success());
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("<** 550 5.7.23 SPF fail: forged.example does not allow 127.0.0.1 to send mail as ceo@forged.example"), "{t}");
    // DMARC p=reject of the From domain; SPF passes for another domain.
    let o = swaks(s, server, "alice@example.org", "CEO <ceo@forged.example>");
    assert!(!o.status.success());
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("<** 550 5.7.1 Message refused by the DMARC policy of forged.example (no aligned SPF or DKIM pass; p=reject)"), "{t}");
    assert_eq!(s.new_files().len(), 1, "nothing more queued");
    // The queue id the 250 announced is the file's (session mode passes the
    // I frame on; per-message mode has qmail's "qp" form).
    let id = files[0].file_name().unwrap().to_string_lossy().into_owned();
    if !transcript.contains(" qp ") {
        assert!(transcript.contains(&format!("queued as {id}")), "{id} in {transcript}");
        assert!(String::from_utf8_lossy(&q.message).contains(&format!("id <{id}@")), "the Received id is the queue id");
    }
}

#[test]
fn session_mode_under_tcpserver() {
    let d = dns();
    let s = Scratch::new();
    let env = chain_env(&d);
    let mut extra: Vec<(&str, Option<&str>)> = env.iter().map(|(k, v)| (*k, Some(v.as_str()))).collect();
    extra.push(("QUEUE_SESSION_PROGRAM", Some(ac::AUTH_CHECK)));
    let srv = TcpServer::smtpd(&s, &extra);
    let port = srv.port.to_string();
    three_messages(&s, &["--server", &format!("127.0.0.1:{port}")]);
    let log = srv.log_text();
    assert!(log.contains("auth-check: info: accepted id "), "{log}");
    assert!(log.contains("auth-check: info: refused: 550 5.7.23"), "{log}");
}

#[test]
fn per_message_with_qmailqueue_under_swaks_pipe() {
    let d = dns();
    let s = Scratch::new();
    // swaks passes its environment to the program it pipes to.
    let wrapper = s.dir.path().join("smtpd-env");
    let mut script = String::from("#!/bin/sh\n");
    for (k, v) in chain_env(&d) {
        script.push_str(&format!("{k}='{v}'; export {k}\n"));
    }
    script.push_str(&format!("QMAILQUEUE='{}'; TCPREMOTEIP=192.0.2.1; export QMAILQUEUE TCPREMOTEIP\nexec '{}'\n", ac::AUTH_CHECK, ac::SMTPD));
    exe::write(&wrapper, &script);
    let w = wrapper.display().to_string();
    // Here the client is 192.0.2.1 (TCPREMOTEIP): allowed for example.org only.
    let o = swaks(&s, &["--pipe", &w], "alice@example.org", "Alice <alice@example.org>");
    assert_ok(&o, "swaks --pipe, genuine message");
    let q = &ac::queued(&s.queue)[0];
    assert_eq!((q.attr("AUTH_SPF"), q.attr("AUTH_DMARC"), q.attr("CLIENT_ADDR")), (Some("pass"), Some("pass"), Some("192.0.2.1")));
    assert!(q.header().starts_with("Authentication-Results: mx.test.example;"));
    assert!(!q.header().contains("bank.example"));
    let o = swaks(&s, &["--pipe", &w], "ceo@forged.example", "ceo@forged.example");
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("<** 550 5.7.23 SPF fail: forged.example does not allow 192.0.2.1 to send mail as ceo@forged.example"), "{t}");
    let o = swaks(&s, &["--pipe", &w], "alice@example.org", "CEO <ceo@forged.example>");
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("<** 550 5.7.1 Message refused by the DMARC policy of forged.example"), "{t}");
    assert_eq!(s.new_files().len(), 1);
}
