//! smtp-remote against a scripted SMTP server on loopback: every result
//! kind, the exact qmail-remote report, and hostile servers.
#[path = "support/remote.rs"]
mod support;
use support::*;

const MSG: &[u8] = b"From: a@example.org\nSubject: test\n\nline 1\n.line with dot\n";

fn lit(f: &Fake) -> (String, String) {
    ("[127.0.0.1]".to_string(), f.port().to_string())
}

fn go(f: &Fake, rcpts: &[&str], env: &[(&str, &str)], msg: &[u8]) -> Run {
    let (host, port) = lit(f);
    let mut args = vec![host.as_str(), "a@example.org"];
    args.extend_from_slice(rcpts);
    let mut e = vec![("SMTP_PORT", port.as_str())];
    e.extend_from_slice(env);
    run(&args, &e, msg)
}

#[test]
fn all_accepted_k_and_bytes_exact() {
    let f = fake(&["PIPELINING", "8BITMIME", "SIZE 100000"], |_| Act::Default);
    let r = go(&f, &["b@example.net", "c@example.net"], &[], MSG);
    assert_eq!(r.report, "r|r|K127.0.0.1 accepted message.\nRemote host said: 250 ok queued\n|");
    assert_eq!(r.code, 0);
    assert_eq!(f.messages(), vec![b"From: a@example.org\r\nSubject: test\r\n\r\nline 1\r\n..line with dot\r\n".to_vec()]);
    let log = f.log();
    assert_eq!(log[0], "EHLO client.test");
    assert_eq!(log[1], "MAIL FROM:<a@example.org> SIZE=62");
    assert_eq!(log[2], "RCPT TO:<b@example.net>");
    assert_eq!(log[3], "RCPT TO:<c@example.net>");
    assert_eq!(log[4], "DATA");
}

#[test]
fn rcpt_550_h_and_450_s() {
    let f = fake(&[], |c| match c {
        "RCPT TO:<bad@example.net>" => send("550 5.1.1 no such user\r\n"),
        "RCPT TO:<later@example.net>" => send("450 4.2.0 mailbox busy\r\n"),
        _ => Act::Default,
    });
    let r = go(&f, &["bad@example.net", "ok@example.net", "later@example.net"], &[], MSG);
    assert_eq!(
        r.report,
        "h127.0.0.1 does not like recipient.\nRemote host said: 550 5.1.1 no such user\n|\
r|\
s127.0.0.1 does not like recipient.\nRemote host said: 450 4.2.0 mailbox busy\n|\
K127.0.0.1 accepted message.\nRemote host said: 250 ok queued\n|"
    );
}

#[test]
fn all_rcpts_refused_gives_up() {
    let f = fake(&["PIPELINING"], |c| if c.starts_with("RCPT") { send("550 no\r\n") } else if c == "DATA" { send("554 no valid recipients\r\n") } else { Act::Default });
    let r = go(&f, &["x@example.net"], &[], MSG);
    assert_eq!(r.report, "h127.0.0.1 does not like recipient.\nRemote host said: 550 no\n|DGiving up on 127.0.0.1.\nRemote host said: 550 no\n|");
    assert!(f.messages().is_empty());
}

#[test]
fn greeting_421_z() {
    let f = fake(&[], |c| if c == "CONNECT" { send("421 4.3.2 busy, go away\r\n") } else { Act::Default });
    let r = go(&f, &["x@example.net"], &[], MSG);
    assert_eq!(r.report, "ZConnected to 127.0.0.1 but greeting failed.\nRemote host said: 421 4.3.2 busy, go away\n|");
}

#[test]
fn connection_refused_z() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let r = run(&["[127.0.0.1]", "a@b", "c@d"], &[("SMTP_PORT", &port.to_string())], MSG);
    assert_eq!(r.report, "ZSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n|");
    assert_eq!(r.code, 0);
}

#[test]
fn data_554_d_and_451_z() {
    let f = fake(&[], |c| if c == "DATA-END" { send("554 5.7.1 spam\r\n") } else { Act::Default });
    let r = go(&f, &["x@example.net"], &[], MSG);
    assert_eq!(r.report, "r|D127.0.0.1 failed after I sent the message.\nRemote host said: 554 5.7.1 spam\n|");
    let f = fake(&[], |c| if c == "DATA-END" { send("451 4.3.0 later\r\n") } else { Act::Default });
    let r = go(&f, &["x@example.net"], &[], MSG);
    assert_eq!(r.report, "r|Z127.0.0.1 failed after I sent the message.\nRemote host said: 451 4.3.0 later\n|");
    let f = fake(&[], |c| if c == "DATA" { send("554 no data for you\r\n") } else { Act::Default });
    let r = go(&f, &["x@example.net"], &[], MSG);
    assert_eq!(r.report, "r|D127.0.0.1 failed on DATA command.\nRemote host said: 554 no data for you\n|");
}

#[test]
fn sender_rejected() {
    let f = fake(&[], |c| if c.starts_with("MAIL") { send("553 5.1.8 bad sender\r\n") } else { Act::Default });
    let r = go(&f, &["x@example.net"], &[], MSG);
    assert_eq!(r.report, "DConnected to 127.0.0.1 but sender was rejected.\nRemote host said: 553 5.1.8 bad sender\n|");
    let f = fake(&["PIPELINING"], |c| if c.starts_with("MAIL") { send("451 4.1.8 try later\r\n") } else if c.starts_with("RCPT") || c == "DATA" { send("503 5.5.1 no MAIL\r\n") } else { Act::Default });
    let r = go(&f, &["x@example.net"], &[], MSG);
    assert_eq!(r.report, "ZConnected to 127.0.0.1 but sender was rejected.\nRemote host said: 451 4.1.8 try later\n|");
}

#[test]
fn size_too_big_d_without_sending() {
    let f = fake(&["SIZE 20"], |_| Act::Default);
    let r = go(&f, &["x@example.net"], &[], MSG);
    assert_eq!(r.report, "DConnected to 127.0.0.1 but the message (62 bytes) is larger than its SIZE limit of 20. (#5.3.4)\n|");
    assert!(!f.log().iter().any(|l| l.starts_with("MAIL")));
}

#[test]
fn ehlo_refused_helo() {
    let f = fake(&["PIPELINING"], |c| if c.starts_with("EHLO") { send("502 5.5.1 what is EHLO\r\n") } else { Act::Default });
    let r = go(&f, &["x@example.net"], &[], MSG);
    assert!(r.report.starts_with("r|K127.0.0.1 accepted"), "{}", r.report);
    let log = f.log();
    assert_eq!(&log[..3], ["EHLO client.test", "HELO client.test", "MAIL FROM:<a@example.org>"]);
    let f = fake(&[], |c| if c.starts_with("EHLO") || c.starts_with("HELO") { send("550 go away\r\n") } else { Act::Default });
    let r = go(&f, &["x@example.net"], &[], MSG);
    assert_eq!(r.report, "ZConnected to 127.0.0.1 but my name was rejected.\nRemote host said: 550 go away\n|");
}

#[test]
fn eight_bit_smtputf8_dsn_and_quoting() {
    let f = fake(&["8BITMIME", "SMTPUTF8", "DSN"], |_| Act::Default);
    let attrs = "RET=HDRS\nENVID=id+2B2B1\nRCPT.0.NOTIFY=SUCCESS,FAILURE\nRCPT.0.ORCPT=rfc822;x+2B2By@example.net\n";
    let r = go(&f, &["x+y@example.net", "j\u{f6}rg@example.net", "a b@example.net"], &[("QUEUE_ATTRS", attrs)], b"Subject: caf\xc3\xa9\n\nbody\n");
    assert!(r.report.ends_with("K127.0.0.1 accepted message.\nRemote host said: 250 ok queued\n|"), "{}", r.report);
    let log = f.log();
    assert_eq!(log[1], "MAIL FROM:<a@example.org> BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1");
    assert_eq!(log[2], "RCPT TO:<x+y@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x+2By@example.net");
    assert_eq!(log[3], "RCPT TO:<j\u{f6}rg@example.net>");
    assert_eq!(log[4], "RCPT TO:<\"a b\"@example.net>");
}

#[test]
fn smtputf8_needed_but_not_offered_d_and_8bit_sent_as_is() {
    let f = fake(&["8BITMIME"], |_| Act::Default);
    let r = go(&f, &["j\u{f6}rg@example.net"], &[], MSG);
    assert_eq!(r.report, "DConnected to 127.0.0.1 but it does not support SMTPUTF8, which this message needs. (#5.6.7)\n|");
    // 8-bit body to a server without 8BITMIME: sent as it is, as qmail does.
    let f = fake(&[], |_| Act::Default);
    let r = go(&f, &["x@example.net"], &[], b"Subject: x\n\ncaf\xc3\xa9\n");
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    assert_eq!(f.log()[1], "MAIL FROM:<a@example.org>");
    assert_eq!(f.messages()[0], b"Subject: x\r\n\r\ncaf\xc3\xa9\r\n");
}

#[test]
fn xforward_and_xclient_only_when_told() {
    // Off by default (issue 17.10): the client's facts stay here, even for
    // a server that offers both.
    let both = ["XFORWARD NAME ADDR PROTO HELO SOURCE", "XCLIENT ADDR NAME HELO LOGIN"];
    let attrs = "CLIENT_ADDR=192.0.2.9\nCLIENT_HELO=box.example\nCLIENT_PROTO=esmtp\n";
    let f = fake(&both, |_| Act::Default);
    let r = go(&f, &["x@example.net"], &[("QUEUE_ATTRS", attrs)], MSG);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    assert!(!f.log().iter().any(|l| l.starts_with("XFORWARD") || l.starts_with("XCLIENT")), "{:?}", f.log());
    // One of them by variable, the other by the route.
    let d = tempfile::tempdir().unwrap();
    let rp = d.path().join("smtproutes");
    let f2 = fake(&both, |_| Act::Default);
    std::fs::write(&rp, format!("[127.0.0.1]:127.0.0.1:{} xclient\n", f2.port())).unwrap();
    go(&f2, &["x@example.net"], &[("QUEUE_ATTRS", attrs), ("SMTPROUTES", rp.to_str().unwrap())], MSG);
    let log = f2.log();
    assert!(log[1].starts_with("XCLIENT ") && !log.iter().any(|l| l.starts_with("XFORWARD")), "{log:?}");
    // A route can turn off what the variable turns on.
    std::fs::write(&rp, format!("[127.0.0.1]:127.0.0.1:{} xforward=0\n", f.port())).unwrap();
    go(&f, &["x@example.net"], &[("QUEUE_ATTRS", attrs), ("SMTPROUTES", rp.to_str().unwrap()), ("SMTP_XFORWARD", "1")], MSG);
    assert!(!f.log().iter().any(|l| l.starts_with("XFORWARD") || l.starts_with("XCLIENT")), "{:?}", f.log());
}

#[test]
fn xforward_and_xclient() {
    let f = fake(&["XFORWARD NAME ADDR PROTO HELO SOURCE", "XCLIENT ADDR NAME HELO LOGIN"], |_| Act::Default);
    let attrs = "CLIENT_ADDR=192.0.2.9\nCLIENT_HELO=box.example\nCLIENT_PROTO=esmtp\n";
    let on = [("QUEUE_ATTRS", attrs), ("SMTP_XFORWARD", "1"), ("SMTP_XCLIENT", "1")];
    let r = go(&f, &["x@example.net"], &on, MSG);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    let log = f.log();
    assert_eq!(log[1], "XCLIENT NAME=[UNAVAILABLE] ADDR=192.0.2.9 HELO=box.example LOGIN=[UNAVAILABLE]");
    assert_eq!(log[2], "EHLO client.test");
    assert_eq!(log[3], "XFORWARD NAME=[UNAVAILABLE] ADDR=192.0.2.9 PROTO=ESMTP HELO=box.example SOURCE=[UNAVAILABLE]");
    assert!(log[4].starts_with("MAIL FROM:"));
    // Without client facts, nothing is forwarded.
    let f = fake(&["XFORWARD NAME ADDR"], |_| Act::Default);
    go(&f, &["x@example.net"], &[("SMTP_XFORWARD", "1")], MSG);
    assert!(!f.log().iter().any(|l| l.starts_with("XFORWARD")));
}

#[test]
fn stdin_from_a_regular_file_and_bare_cr_lf_mix() {
    let f = fake(&[], |_| Act::Default);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m");
    std::fs::write(&p, b"A: 1\r\nB: 2\n\n.\r\nlast").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["[127.0.0.1]", "a@b", "c@d"])
        .env_clear()
        .env("SMTP_PORT", f.port().to_string())
        .env("HELOHOST", "h")
        .stdin(std::fs::File::open(&p).unwrap())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("K127.0.0.1 accepted"));
    assert_eq!(f.messages()[0], b"A: 1\r\nB: 2\r\n\r\n..\r\nlast\r\n");
}

#[test]
fn usage_and_bad_config() {
    let r = run(&["host", "sender"], &[], b"");
    assert_eq!(r.report, "DI (smtp-remote) was invoked improperly. (#5.3.5)\n|");
    assert_eq!(r.code, 0);
    let r = run(&["host", "a@b", "c@d"], &[("SMTP_TLS", "bogus")], b"");
    assert!(r.report.starts_with("ZUnable to read configuration: bad SMTP_TLS"), "{}", r.report);
    let r = run(&["host", "a@b", "c@d"], &[("SMTPROUTES", "/nonexistent/routes")], b"");
    assert!(r.report.starts_with("ZUnable to read configuration: unable to read /nonexistent/routes"), "{}", r.report);
}

// ---- hostile and broken servers: always a clean Z, within the timeout ----

fn hostile(script: impl FnMut(&str) -> Act + Send + 'static) -> String {
    let f = fake(&[], script);
    let t = std::time::Instant::now();
    let r = go(&f, &["x@example.net"], &[("TIMEOUTREMOTE", "2")], MSG);
    assert!(t.elapsed() < std::time::Duration::from_secs(15), "took {:?}", t.elapsed());
    assert_eq!(r.code, 0);
    r.report
}

#[test]
fn garbage_greeting() {
    let r = hostile(|c| if c == "CONNECT" { send("hello there\r\n") } else { Act::Default });
    assert_eq!(r, "ZConnected to 127.0.0.1 but it sent a bad reply (reply without a valid code). (#4.4.2)\n|");
}

#[test]
fn over_long_line() {
    let r = hostile(|c| if c == "CONNECT" { Act::Send([b"220 ".to_vec(), vec![b'x'; 100_000], b"\r\n".to_vec()].concat()) } else { Act::Default });
    assert_eq!(r, "ZConnected to 127.0.0.1 but it sent a bad reply (reply line too long). (#4.4.2)\n|");
}

#[test]
fn endless_continuation() {
    let r = hostile(|c| if c.starts_with("EHLO") { Act::Send("250-more\r\n".repeat(1000).into_bytes()) } else { Act::Default });
    assert_eq!(r, "ZConnected to 127.0.0.1 but it sent a bad reply (reply with too many lines). (#4.4.2)\n|");
}

#[test]
fn close_mid_reply() {
    let r = hostile(|c| if c.starts_with("MAIL") { send("250-half a rep") } else if c.starts_with("RCPT") { Act::Close } else { Act::Default });
    // The server closes after the partial line (the RCPT that follows makes it close).
    assert!(r.starts_with("ZConnected to 127.0.0.1 but "), "{r}");
    let r = hostile(|c| if c.starts_with("MAIL") { Act::Close } else { Act::Default });
    assert_eq!(r, "ZConnected to 127.0.0.1 but connection died. (#4.4.2)\n|");
}

#[test]
fn never_answers() {
    let r = hostile(|c| if c == "CONNECT" { Act::Hang } else { Act::Default });
    assert_eq!(r, "ZConnected to 127.0.0.1 but the connection timed out. (#4.4.2)\n|");
}

#[test]
fn dies_after_the_dot_possible_duplicate() {
    let r = hostile(|c| if c == "DATA-END" { Act::Close } else { Act::Default });
    assert_eq!(r, "r|ZConnected to 127.0.0.1 but connection died. Possible duplicate! (#4.4.2)\n|");
}

#[test]
fn big_message_streams() {
    let f = fake(&["PIPELINING"], |_| Act::Default);
    let line = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";
    let msg: Vec<u8> = line.iter().copied().cycle().take(line.len() * 50_000).collect();
    let r = go(&f, &["x@example.net"], &[], &msg);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    assert_eq!(f.messages()[0].len(), msg.len() + 50_000);
}

#[test]
fn unreadable_stdin_is_temporary() {
    let out = std::process::Command::new(BIN)
        .args(["[127.0.0.1]", "a@b", "c@d"])
        .env_clear()
        .stdin(std::fs::File::open("/").unwrap())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).replace('\0', "|");
    assert!(report.starts_with("ZUnable to read message: "), "{report}");
    assert!(report.ends_with("(#4.3.0)\n|"), "{report}");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn utf8_domains_become_a_labels_without_smtputf8() {
    let f = fake(&["8BITMIME"], |_| Act::Default);
    let r = go(&f, &["x@b\u{fc}cher.example"], &[], MSG);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
    assert_eq!(f.log()[2], "RCPT TO:<x@xn--bcher-kva.example>");
    // With SMTPUTF8 offered, the address goes as it is.
    let f = fake(&["SMTPUTF8"], |_| Act::Default);
    go(&f, &["x@b\u{fc}cher.example"], &[], MSG);
    assert_eq!(f.log()[1], "MAIL FROM:<a@example.org> SMTPUTF8");
    assert_eq!(f.log()[2], "RCPT TO:<x@b\u{fc}cher.example>");
}

#[test]
fn connect_timeout_is_temporary() {
    use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn};
    // A listener with a full accept queue: Linux drops further SYNs, so a
    // connect hangs until the client gives up.
    let s = socket(AddressFamily::Inet, SockType::Stream, SockFlag::empty(), None).unwrap();
    bind(std::os::fd::AsRawFd::as_raw_fd(&s), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
    listen(&s, Backlog::new(0).unwrap()).unwrap();
    let l = std::net::TcpListener::from(s);
    let port = l.local_addr().unwrap().port();
    let mut fill = Vec::new();
    for _ in 0..4 {
        if let Ok(c) = std::net::TcpStream::connect_timeout(&l.local_addr().unwrap(), std::time::Duration::from_millis(300)) {
            fill.push(c);
        }
    }
    let t = std::time::Instant::now();
    let r = run(&["[127.0.0.1]", "a@b", "c@d"], &[("SMTP_PORT", &port.to_string()), ("TIMEOUTCONNECT", "1")], MSG);
    assert_eq!(r.report, "ZSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n|");
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "took {:?}", t.elapsed());
}

#[test]
fn random_garbage_at_every_step_is_clean() {
    // A small xorshift so the test is repeatable without a new dependency.
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let steps = ["CONNECT", "EHLO", "MAIL", "RCPT", "DATA", "DATA-END"];
    for round in 0..24 {
        let step = steps[round % steps.len()];
        let len = (next() % 3000) as usize;
        let mut junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 2 == 0 {
            // Sometimes something that looks like a reply start.
            junk.splice(0..0, b"250-".iter().copied());
        }
        let junk2 = junk.clone();
        let f = fake(&["PIPELINING", "SIZE 100000"], move |c| {
            if c.starts_with(step) { Act::Send(junk2.clone()) } else { Act::Default }
        });
        let r = go(&f, &["x@example.net"], &[("TIMEOUTREMOTE", "1")], MSG);
        assert_eq!(r.code, 0);
        assert!(r.report.ends_with('|'), "round {round}: {:?}", r.report);
        let last = r.report.trim_end_matches('|').rsplit('|').next().unwrap_or("").chars().next();
        assert!(matches!(last, Some('K' | 'Z' | 'D')), "round {round} at {step}: {:?}", r.report);
    }
}

#[test]
fn pipelined_data_accepted_without_recipients_sends_an_empty_message() {
    // RFC 2920 3.1: a server that says 354 though every RCPT failed gets a lone dot.
    let f = fake(&["PIPELINING"], |c| if c.starts_with("RCPT") { send("550 no\r\n") } else { Act::Default });
    let r = go(&f, &["x@example.net"], &[], MSG);
    assert_eq!(r.report, "h127.0.0.1 does not like recipient.\nRemote host said: 550 no\n|DGiving up on 127.0.0.1.\nRemote host said: 550 no\n|");
    assert_eq!(f.messages(), vec![Vec::<u8>::new()]);
}

#[test]
fn regular_file_read_from_its_current_offset() {
    // As queue-run may hand over a queue file positioned after its header.
    use std::io::{Seek, SeekFrom};
    let f = fake(&[], |_| Act::Default);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("queued");
    std::fs::write(&p, b"smtpd-queue 1\nid x\n\nSubject: q\n\nbody\n").unwrap();
    let mut file = std::fs::File::open(&p).unwrap();
    file.seek(SeekFrom::Start(20)).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["[127.0.0.1]", "a@b", "c@d"])
        .env_clear()
        .env("SMTP_PORT", f.port().to_string())
        .stdin(file)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("K127.0.0.1 accepted"));
    assert_eq!(f.messages()[0], b"Subject: q\r\n\r\nbody\r\n");
}

#[test]
fn quoted_local_parts_are_quoted_once() {
    // smtpd-rs keeps a quoted local part as it came (`"john.doe"@...`);
    // sendmail's argv has it bare (`a b@...`): each leaves quoted once.
    let f = fake(&[], |_| Act::Default);
    let r = go(&f, &["\"john.doe\"@example.net", "a b@example.net", "\"a b\"@example.net", "\"a\\\"b\"@example.net"], &[], MSG);
    assert!(r.report.ends_with("K127.0.0.1 accepted message.\nRemote host said: 250 ok queued\n|"), "{}", r.report);
    let log = f.log();
    assert_eq!(log[2], "RCPT TO:<\"john.doe\"@example.net>");
    assert_eq!(log[3], "RCPT TO:<\"a b\"@example.net>");
    assert_eq!(log[4], "RCPT TO:<\"a b\"@example.net>");
    assert_eq!(log[5], "RCPT TO:<\"a\\\"b\"@example.net>");
}

/// The smuggling address: CR LF inside a recipient on argv.
const SMUGGLER: &str = "x@example.net>\r\nRSET\r\nMAIL FROM:<ceo@bank.test>\r\nRCPT TO:<victim@example.net";

#[test]
fn control_characters_in_addresses_never_reach_a_command() {
    let f = fake(&["PIPELINING"], |_| Act::Default);
    let r = go(&f, &[SMUGGLER, "ok@example.net"], &[], MSG);
    assert_eq!(
        r.report,
        "hSorry, the recipient address has a control character, which SMTP cannot carry. (#5.1.3)\n|\
r|K127.0.0.1 accepted message.\nRemote host said: 250 ok queued\n|"
    );
    let log = f.log();
    assert_eq!(log.iter().filter(|l| l.starts_with("MAIL")).count(), 1, "{log:?}");
    assert!(!log.iter().any(|l| l == "RSET" || l.contains("bank.test") || l.contains("victim")), "{log:?}");
    assert_eq!(log.iter().filter(|l| l.starts_with("RCPT")).collect::<Vec<_>>(), ["RCPT TO:<ok@example.net>"]);
    // Only bad recipients: no connection at all.
    let f = fake(&[], |_| Act::Default);
    let r = go(&f, &["a\tb@example.net", "c@exa mple.net> NOTIFY=NEVER"], &[], MSG);
    assert_eq!(
        r.report,
        "hSorry, the recipient address has a control character, which SMTP cannot carry. (#5.1.3)\n|\
hSorry, the recipient address has a domain that is neither a name nor an address literal. (#5.1.3)\n|\
DSorry, no recipient address is valid. (#5.1.3)\n|"
    );
    assert!(f.log().is_empty(), "{:?}", f.log());
    // A bad sender: the whole message, no connection.
    let f = fake(&[], |_| Act::Default);
    let (host, port) = lit(&f);
    let r = run(&[&host, "me@host.test>\r\nRSET", "ok@example.net"], &[("SMTP_PORT", &port)], MSG);
    assert_eq!(r.report, "DSorry, the sender address has a control character, which SMTP cannot carry. (#5.1.7)\n|");
    assert!(f.log().is_empty(), "{:?}", f.log());
}

#[test]
fn a_450_4_3_0_reply_reaches_the_report_exactly() {
    // queue-run makes `Diagnostic-Code: smtp; <reply>` and the DSN's Status
    // from this text (issue 17.13): every line, code and enhanced code kept.
    const R: &str = "450-4.3.0 mail system full\r\n450 4.3.0 try again later\r\n";
    const SAID: &str = "Remote host said: 450-4.3.0 mail system full\n450 4.3.0 try again later\n|";
    for (stage, head) in [
        ("MAIL", "ZConnected to 127.0.0.1 but sender was rejected.\n"),
        ("RCPT", "s127.0.0.1 does not like recipient.\n"),
        ("DATA", "r|Z127.0.0.1 failed on DATA command.\n"),
        ("DATA-END", "r|Z127.0.0.1 failed after I sent the message.\n"),
    ] {
        let f = fake(&[], move |c| if c.starts_with(stage) { send(R) } else { Act::Default });
        let r = go(&f, &["x@example.net"], &[], MSG);
        assert!(r.report.starts_with(&format!("{head}{SAID}")), "{stage}: {}", r.report);
    }
}

#[test]
fn an_ehlo_reply_with_my_own_name_is_a_loop() {
    // Postfix's check: the greeting may be generic, the EHLO reply names
    // the server (RFC 5321 4.1.1.1). Any case, a trailing dot.
    let f = fake(&[], |c| if c.starts_with("EHLO") { send("250-CLIENT.test.\r\n250 PIPELINING\r\n") } else { Act::Default });
    let r = go(&f, &["x@example.net"], &[], MSG);
    assert_eq!(
        r.report,
        "DConnected to 127.0.0.1 but it answered EHLO with my own name, client.test: mail for [127.0.0.1] loops back to myself. (#5.4.6)\n|"
    );
    assert!(!f.log().iter().any(|l| l.starts_with("MAIL")));
    // "localhost" is what too many servers call themselves to mean a loop.
    let f = fake(&[], |c| if c == "CONNECT" { send("220 localhost ESMTP\r\n") } else { Act::Default });
    let r = go(&f, &["x@example.net"], &[("HELOHOST", "localhost")], MSG);
    assert!(r.report.contains("K127.0.0.1 accepted"), "{}", r.report);
}
