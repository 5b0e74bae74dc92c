//! smtpd-rs over pipes: whole pipelined conversations against the real
//! binary, with fake queue programs recording what they received.

#[path = "support/smtpd.rs"]
mod support;
#[path = "support/remote.rs"]
mod remote_support;

use support::*;
use std::path::Path;

/// Environment for a per-message (plain qmail-queue) run into `dir`.
fn qq_env(dir: &Path) -> Vec<(String, String)> {
    let qq = script(dir, "fakeqq", FAKE_QMAIL_QUEUE);
    let out = dir.join("q");
    std::fs::create_dir_all(&out).unwrap();
    vec![
        ("QMAILQUEUE".into(), qq.to_string_lossy().into_owned()),
        ("FAKEQQ_DIR".into(), out.to_string_lossy().into_owned()),
        ("RCPTHOSTS".into(), write(dir, "rcpthosts", "example.com\n.sub.example.org\n")),
    ]
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

fn run_with(env: &[(String, String)], extra: &[(&str, &str)], input: &[u8]) -> Run {
    let mut vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    vars.extend_from_slice(extra);
    converse(command(&vars), input)
}

const HEAD: &str = "EHLO client.test\r\nMAIL FROM:<s@sender.test>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n";

#[test]
fn pipelined_session_per_message_queue() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let input = "EHLO client.test\r\n\
        MAIL FROM:<s@sender.test> BODY=8BITMIME\r\n\
        RCPT TO:<u@example.com> NOTIFY=FAILURE ORCPT=rfc822;u@example.com\r\n\
        RCPT TO:<v@x.sub.example.org>\r\n\
        RCPT TO:<w@elsewhere.test>\r\n\
        DATA\r\n\
        Subject: one\r\n\r\n..leading dot\r\nline\r\n.\r\n\
        MAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nDATA\r\nSubject: two\r\n\r\nx\r\n.\r\nQUIT\r\n";
    let r = run_with(&env, &[], input.as_bytes());
    assert_eq!(r.codes(), ["220", "250", "250", "250", "250", "553", "354", "250", "250", "250", "354", "250", "221"], "{}", r.out);
    assert!(r.replies()[7].starts_with("250 2.0.0 ok: queued as "), "{}", r.out);
    assert_eq!(r.code, Some(0));
    let q = d.path().join("q");
    let msgs = files(&q, "msg.");
    assert_eq!(msgs.len(), 2);
    assert_eq!(strip_received(&msgs[0]), b"Subject: one\n\n.leading dot\nline\n");
    assert_eq!(strip_received(&msgs[1]), b"Subject: two\n\nx\n");
    let hdr = String::from_utf8_lossy(&msgs[0]);
    // A foreign queue program names its id only at the end: the header names
    // the session's own id for the message (tests/smtpd_trace.rs).
    assert!(hdr.starts_with("Received: from client.test\n\tby mx.test (smtpd-rs) with ESMTP\n\tid <s"), "{hdr}");
    let envs = files(&q, "env.");
    assert_eq!(envs[0], b"Fs@sender.test\0Tu@example.com\0Tv@x.sub.example.org\0\0");
    // A bare postmaster names this host's (SMTPD_HOSTNAME mx.test).
    assert_eq!(envs[1], b"F\0Tpostmaster@mx.test\0\0");
    let attrs = String::from_utf8(files(&q, "attrs.").remove(0)).unwrap();
    for want in ["BODY=8BITMIME", "RCPT.0.NOTIFY=FAILURE", "RCPT.0.ORCPT=rfc822;u@example.com", "CLIENT_HELO=client.test", "CLIENT_PROTO=ESMTP"] {
        assert!(attrs.lines().any(|l| l == want), "{want} in {attrs}");
    }
    assert!(r.log.contains("message accepted"), "{}", r.log);
    assert!(r.log.contains("refused RCPT: 553 5.7.1"), "{}", r.log);
    assert!(r.log.contains("end: quit: messages 2 recipients 3"), "{}", r.log);
}

#[test]
fn qmail_queue_exit_codes_map_to_replies() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let input = format!("{HEAD}hello\r\n.\r\nQUIT\r\n");
    let cases: &[(&str, &str, &str)] = &[
        ("0", "", "250 2.0.0 ok"),
        ("11", "", "554 5.1.3 envelope address too long for qq (#5.1.3)"),
        ("31", "", "554 5.3.0 mail server permanently rejected message (#5.3.0)"),
        ("25", "", "554 5.3.0 qq permanent problem (#5.3.0)"),
        ("53", "", "451 4.3.0 qq write error or disk full (#4.3.0)"),
        ("71", "", "451 4.3.0 mail server temporarily rejected message (#4.3.0)"),
        ("72", "", "451 4.4.1 connection to mail server timed out (#4.4.1)"),
        ("81", "", "451 4.3.0 qq internal bug (#4.3.0)"),
        ("91", "", "451 4.3.0 qq internal bug (#4.3.0)"),
        ("100", "", "451 4.3.0 qq temporary problem (#4.3.0)"),
        ("82", "Dspam detected (#5.7.1)", "554 5.7.1 spam detected (#5.7.1)"),
        ("82", "Zgreylisted, try later", "451 4.3.0 greylisted, try later"),
        ("82", "", "451 4.3.0 qq temporary problem (#4.3.0)"),
    ];
    for (code, fd6, want) in cases {
        let r = run_with(&env, &[("FAKEQQ_EXIT", code), ("FAKEQQ_FD6", fd6)], input.as_bytes());
        let got = r.replies()[5];
        assert!(got.starts_with(want), "exit {code}: {got}");
    }
    // A queue program that cannot be run: temporary, never 250.
    let mut env2 = env.clone();
    env2[0].1 = "/nonexistent/qmail-queue".into();
    let r = run_with(&env2, &[], input.as_bytes());
    assert_eq!(r.replies()[5], "451 4.3.0 unable to exec qq (#4.3.0)");
}

#[test]
fn session_mode_one_queue_inject_per_session() {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    script(&bin, "queue-inject", FAKE_QUEUE_INJECT);
    let out = d.path().join("q");
    std::fs::create_dir(&out).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let hosts = write(d.path(), "rcpthosts", "example.com\n");
    let vars = |extra: &[(&'static str, &'static str)]| {
        let mut v: Vec<(String, String)> = vec![
            ("PATH".into(), path.clone()),
            ("FAKEQI_DIR".into(), out.to_string_lossy().into_owned()),
            ("RCPTHOSTS".into(), hosts.clone()),
        ];
        v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        v
    };
    let mut input = String::from("EHLO c.test\r\n");
    for i in 0..3 {
        input.push_str(&format!(
            "MAIL FROM:<s@x.test> SMTPUTF8\r\nRCPT TO:<u{i}@example.com>\r\nDATA\r\nmsg {i}\r\n.\r\n"
        ));
    }
    input.push_str("QUIT\r\n");
    let r = run_with(&vars(&[]), &[], input.as_bytes());
    let rep = r.replies();
    assert_eq!(rep[5], "250 2.0.0 ok: queued as id.1", "{}", r.out);
    assert_eq!(rep[9], "250 2.0.0 ok: queued as id.2");
    assert_eq!(rep[13], "250 2.0.0 ok: queued as id.3");
    assert_eq!(std::fs::read_to_string(out.join("starts")).unwrap().lines().count(), 1, "one queue-inject per session");
    assert_eq!(strip_received(&std::fs::read(out.join("data.2")).unwrap()), b"msg 1\n");
    assert_eq!(std::fs::read(out.join("env.3")).unwrap(), b"Fs@x.test\0Tu2@example.com\0\0");
    let attrs = std::fs::read_to_string(out.join("attrs.1")).unwrap();
    assert!(attrs.contains("SMTPUTF8=1\n") && attrs.contains("CLIENT_PROTO=UTF8SMTP\n"), "{attrs}");
    assert!(r.log.contains("message accepted: id id.2 from <s@x.test> rcpts 1 size 7"), "{}", r.log);

    // Status codes from queue-inject: temporary and permanent, never 250.
    let r = run_with(&vars(&[("FAKEQI_CODE", "53 disk full")]), &[], input.as_bytes());
    assert_eq!(r.replies()[5], "451 4.3.0 qq write error or disk full (#4.3.0)");
    let r = run_with(&vars(&[("FAKEQI_CODE", "82 Dno such user here (#5.1.1)")]), &[], input.as_bytes());
    assert_eq!(r.replies()[5], "554 5.1.1 no such user here (#5.1.1)");

    // queue-inject dies: that message gets 451, the next one a new queue-inject.
    std::fs::remove_file(out.join("starts")).unwrap();
    let r = run_with(&vars(&[("FAKEQI_DIE_AFTER", "1")]), &[], input.as_bytes());
    let rep = r.replies();
    assert_eq!(rep[5], "451 4.3.0 qq crashed (#4.3.0)", "{}", r.out);
    assert!(rep[9].starts_with("451"), "second dies too (each new one dies after one)");
    assert_eq!(std::fs::read_to_string(out.join("starts")).unwrap().lines().count(), 3);
}

#[test]
fn bare_lf_and_cr_never_end_or_split_a_message() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let vectors: &[&str] = &[
        "a\n.\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<v@example.com>\r\nDATA\r\nsmuggled\r\n.\r\n",
        "a\r.\rMAIL FROM:<evil@x.test>\r\n.\r\n",
        "a\n.\r\nMAIL FROM:<evil@x.test>\r\n.\r\n",
        "a\r\n.\nMAIL FROM:<evil@x.test>\r\n.\r\n",
        "bare\rcr inside\r\n.\r\n",
        "bare\nlf inside\r\n.\r\n",
    ];
    for v in vectors {
        let input = format!("{HEAD}{v}NOOP\r\nQUIT\r\n");
        let r = run_with(&env, &[], input.as_bytes());
        let rep = r.replies();
        assert_eq!(rep.len(), 8, "{v:?}: {}", r.out);
        assert!(rep[5].starts_with("554 5.6.0 message refused: bare CR or LF"), "{v:?}: {}", r.out);
        assert_eq!(&rep[6][..3], "250", "in sync after the real end: {v:?}");
        assert_eq!(&rep[7][..3], "221");
    }
    assert!(files(&d.path().join("q"), "msg.").is_empty() || files(&d.path().join("q"), "env.").iter().all(|e| e.is_empty()),
        "nothing queued");
}

#[test]
fn bad_command_lines() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let long = "NOOP ".to_string() + &"x".repeat(600);
    let input = format!("HELO a.test\nNOOP\r\nNO\rOP\r\nNO\0OP\r\n{long}\r\nNOOP\r\nQUIT\r\n");
    let r = run_with(&env, &[], input.as_bytes());
    assert_eq!(
        r.replies(),
        [
            "220 mx.test ESMTP smtpd-rs",
            "500 5.5.2 bare LF in command; lines end in CRLF (see https://cr.yp.to/docs/smtplf.html)",
            "250 2.0.0 ok",
            "500 5.5.2 bare CR in command; lines end in CRLF (see https://cr.yp.to/docs/smtplf.html)",
            "500 5.5.2 NUL octet in command",
            "500 5.5.2 line too long (512 octets at most)",
            "250 2.0.0 ok",
            "221 2.0.0 closing connection"
        ]
    );
    assert!(r.log.contains("refused line: 500 5.5.2 NUL octet in command"), "{}", r.log);
}

#[test]
fn long_message_lines_are_accepted() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let line = "y".repeat(5000);
    let input = format!("{HEAD}{line}\r\n{line}\r\n.\r\nQUIT\r\n");
    let r = run_with(&env, &[], input.as_bytes());
    assert!(r.replies()[5].starts_with("250 2.0.0"), "{}", r.out);
    let msg = files(&d.path().join("q"), "msg.").remove(0);
    assert_eq!(strip_received(&msg), format!("{line}\n{line}\n").as_bytes());
}

#[test]
fn size_limits() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let big = "z".repeat(200);
    let input = format!(
        "EHLO c.test\r\nMAIL FROM:<s@x.test> SIZE=101\r\nMAIL FROM:<s@x.test> SIZE=50\r\nRCPT TO:<u@example.com>\r\nDATA\r\n{big}\r\nRSET\r\n.\r\nNOOP\r\nQUIT\r\n"
    );
    let r = run_with(&env, &[("DATABYTES", "100")], input.as_bytes());
    assert!(r.out.contains("250-SIZE 100\r\n"));
    let rep = r.replies();
    assert_eq!(rep[2], "552 5.3.4 message size exceeds fixed limit");
    assert_eq!(rep[6], "552 5.3.4 message too big", "{}", r.out);
    assert_eq!(rep[7], "250 2.0.0 ok", "the RSET inside the message was message data");
    assert!(files(&d.path().join("q"), "env.").iter().all(|e| e.is_empty()), "nothing queued");
}

#[test]
fn too_many_errors_end_the_session() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let input = "BOGUS\r\n".repeat(30);
    let r = run_with(&env, &[], input.as_bytes());
    let rep = r.replies();
    assert_eq!(rep.len(), 22, "{}", r.out);
    assert_eq!(rep[21], "421 4.7.0 too many errors, closing connection");
    assert_eq!(r.code, Some(1));
    assert!(r.log.contains("end: too many errors"), "{}", r.log);
}

#[test]
fn timeout_ends_the_session() {
    use std::io::Read;
    use std::process::Stdio;
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let mut vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    vars.push(("SMTPD_TIMEOUT", "1"));
    let t = std::time::Instant::now();
    let mut c = command(&vars).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let _keep_open = c.stdin.take();
    let mut out = String::new();
    c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let code = wait_bounded(&mut c, std::time::Duration::from_secs(10));
    assert!(out.ends_with("421 4.4.2 timeout, closing connection\r\n"), "{out}");
    assert_eq!(code, Some(1));
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn bdat_chunks() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    // CRLF split across chunks; then a bad chunk; then BDAT out of sequence.
    let input = "EHLO c.test\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<u@example.com>\r\n\
        BDAT 7\r\nab\r\ncd\rBDAT 5 LAST\r\n\nef\r\n\
        MAIL FROM:<s@x.test>\r\nRCPT TO:<u@example.com>\r\nBDAT 5\r\na\nb\r\nBDAT 3 LAST\r\nxyzNOOP\r\n\
        BDAT 6 LAST\r\nQUIT\r\nRSET\r\nQUIT\r\n";
    let r = run_with(&env, &[], input.as_bytes());
    let rep = r.replies();
    assert_eq!(rep[4], "250 2.0.0 7 octets received", "{}", r.out);
    assert!(rep[5].starts_with("250 2.0.0 ok: queued as"), "{}", r.out);
    assert!(rep[8].starts_with("554 5.6.0"), "bare LF in a chunk: {}", r.out);
    assert!(rep[9].starts_with("554 5.6.0"), "the LAST chunk of a failed message");
    assert_eq!(rep[10], "250 2.0.0 ok");
    assert_eq!(rep[11], "503 5.5.1 MAIL first", "BDAT data skipped even when refused");
    assert_eq!(rep[12], "250 2.0.0 flushed");
    let msgs = files(&d.path().join("q"), "msg.");
    assert_eq!(strip_received(&msgs[0]), b"ab\ncd\nef\n");
}

#[test]
fn recipient_policy() {
    let d = tempfile::tempdir().unwrap();
    let mut env = qq_env(d.path());
    let flow = "HELO c.test\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<u@example.com>\r\nRCPT TO:<u@other.test>\r\nQUIT\r\n";
    // None of RCPTHOSTS, RECIPIENTS, RCPTCHECK, RELAYCLIENT: refuse everything.
    env.retain(|(k, _)| k != "RCPTHOSTS");
    let r = run_with(&env, &[], flow.as_bytes());
    assert_eq!(r.codes(), ["220", "250", "250", "553", "553", "221"]);
    assert!(r.replies()[3].contains("5.7.1"));
    // RELAYCLIENT: everything, with its value appended (qmail).
    let r = run_with(&env, &[("RELAYCLIENT", "")], flow.as_bytes());
    assert_eq!(r.codes(), ["220", "250", "250", "250", "250", "221"]);
    // RECIPIENTS (with VRFY).
    let list = write(d.path(), "recipients", "u@example.com\n");
    let r = run_with(
        &env,
        &[("RECIPIENTS", &list)],
        format!("VRFY <u@example.com>\r\nVRFY nobody@example.com\r\n{flow}").as_bytes(),
    );
    assert_eq!(r.codes(), ["220", "250", "252", "250", "250", "250", "550", "221"]);
    // RCPTCHECK: notqmail's exit codes, SENDER and RECIPIENT in the environment.
    let seen = d.path().join("seen");
    let check = script(
        d.path(),
        "rcptcheck",
        &format!(
            "#!/bin/sh\necho \"$SENDER $RECIPIENT\" >> {}\ncase $RECIPIENT in ok@*) exit 0;; temp@*) exit 111;; *) exit 100;; esac\n",
            seen.display()
        ),
    );
    let r = run_with(
        &env,
        &[("RCPTCHECK", check.to_str().unwrap())],
        b"HELO c.test\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<ok@a.test>\r\nRCPT TO:<temp@a.test>\r\nRCPT TO:<no@a.test>\r\nQUIT\r\n",
    );
    assert_eq!(r.codes(), ["220", "250", "250", "250", "451", "550", "221"], "{}", r.out);
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), "s@x.test ok@a.test\ns@x.test temp@a.test\ns@x.test no@a.test\n");
    // A checker that hangs is killed after RCPTCHECK_TIMEOUT: a temporary failure.
    let hang = script(d.path(), "hang", "#!/bin/sh\nexec sleep 30\n");
    let t0 = std::time::Instant::now();
    let r = run_with(
        &env,
        &[("RCPTCHECK", hang.to_str().unwrap()), ("RCPTCHECK_TIMEOUT", "1")],
        b"HELO c.test\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<ok@a.test>\r\nQUIT\r\n",
    );
    assert_eq!(r.codes(), ["220", "250", "250", "451", "221"], "{}", r.out);
    assert!(t0.elapsed() < std::time::Duration::from_secs(10), "{:?}", t0.elapsed());
}

/// Issue 16.2: a mail loop ends at the hop limit. 100 trace fields in the
/// incoming header pass (ours makes 101 at the next hop), 101 do not; the
/// message is read to its end and refused with one reply, by DATA and BDAT.
#[test]
fn too_many_hops() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let header = |received: usize, delivered: usize| {
        let mut h = "Received: from a.test by b.test; Thu, 1 Jan 2026 00:00:00 +0000\r\n".repeat(received);
        h.push_str(&"Delivered-To: u@example.com\r\n".repeat(delivered));
        h.push_str("Subject: loop\r\n\r\nReceived: in the body does not count\r\n");
        h
    };
    let data = |h: &str| format!("{HEAD}{h}.\r\nQUIT\r\n");
    let r = run_with(&env, &[], data(&header(100, 0)).as_bytes());
    assert!(r.replies()[5].starts_with("250 2.0.0 ok: queued as"), "{}", r.out);
    let r = run_with(&env, &[], data(&header(99, 2)).as_bytes());
    assert_eq!(r.replies()[5], "554 5.4.6 too many hops, this message is looping", "{}", r.out);
    assert_eq!(r.replies()[6], "221 2.0.0 closing connection", "read to the end, one reply: {}", r.out);
    assert!(r.log.contains("message refused: from <s@sender.test> rcpts 1"), "{}", r.log);
    // MAXHOPS sets the limit.
    let r = run_with(&env, &[("MAXHOPS", "5")], data(&header(6, 0)).as_bytes());
    assert!(r.replies()[5].starts_with("554 5.4.6"), "{}", r.out);
    let r = run_with(&env, &[("MAXHOPS", "5")], data(&header(5, 0)).as_bytes());
    assert!(r.replies()[5].starts_with("250"), "{}", r.out);
    // BDAT: the header spread over chunks, the refusal sticky to the last.
    let h = header(101, 0);
    let (a, b) = h.as_bytes().split_at(3000);
    let mut input = b"EHLO c.test\r\nMAIL FROM:<s@sender.test>\r\nRCPT TO:<u@example.com>\r\n".to_vec();
    input.extend_from_slice(format!("BDAT {}\r\n", a.len()).as_bytes());
    input.extend_from_slice(a);
    input.extend_from_slice(format!("BDAT {} LAST\r\n", b.len()).as_bytes());
    input.extend_from_slice(b);
    input.extend_from_slice(b"QUIT\r\n");
    let r = run_with(&env, &[], &input);
    let rep = r.replies();
    assert!(rep[5].starts_with("554 5.4.6"), "{}", r.out);
    assert_eq!(rep[6], "221 2.0.0 closing connection", "{}", r.out);
    // Only the accepted messages reached the queue program.
    let queued: Vec<_> = files(&d.path().join("q"), "env.").into_iter().filter(|e| !e.is_empty()).collect();
    assert_eq!(queued.len(), 2, "{queued:?}");
}

/// Processes whose command line has the argument `marker`.
fn running(marker: &str) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if cmd.split(|&b| b == 0).any(|a| a == marker.as_bytes()) {
            v.push(pid);
        }
    }
    v
}

/// Issue 16.9: a hung RCPTCHECK is killed with everything it started (its
/// process group), not only the direct child.
#[test]
fn hung_rcptcheck_leaves_no_orphans() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let marker = format!("40.{}", std::process::id());
    // Off the log pipe: orphans holding it would stall the test's reading.
    let hang = script(d.path(), "hang", &format!("#!/bin/sh\nexec 2>/dev/null\nsleep {marker} &\nsleep {marker} &\nsleep {marker}\n"));
    let r = run_with(
        &env,
        &[("RCPTCHECK", hang.to_str().unwrap()), ("RCPTCHECK_TIMEOUT", "1")],
        b"HELO c.test\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<ok@example.com>\r\nQUIT\r\n",
    );
    assert_eq!(r.codes(), ["220", "250", "250", "451", "221"], "{}", r.out);
    let mut left = running(&marker);
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        left = running(&marker);
    }
    for &pid in &left {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    assert!(left.is_empty(), "sleeps of the checker outlived the session: {left:?}");
}

/// A checkpassword that cannot be run is named in the log.
#[test]
fn missing_checkpassword_is_named_in_the_log() {
    let mut c = command(&[("SMTPAUTH", ""), ("SMTPAUTH_PLAINTEXT", "1")]);
    c.args(["/nonexistent/checkpassword", "true"]);
    // PLAIN \0alice\0secret
    let r = converse(c, b"EHLO c.test\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nQUIT\r\n");
    assert_eq!(r.codes(), ["220", "250", "454", "221"], "{}", r.out);
    assert!(r.log.contains("warning: unable to run checkpassword /nonexistent/checkpassword: "), "{}", r.log);
}

#[test]
fn maxrcpt() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let mut input = String::from("HELO c.test\r\nMAIL FROM:<s@x.test>\r\n");
    for i in 0..4 {
        input.push_str(&format!("RCPT TO:<u{i}@example.com>\r\n"));
    }
    let r = run_with(&env, &[("MAXRCPT", "3")], input.as_bytes());
    assert_eq!(r.codes(), ["220", "250", "250", "250", "250", "250", "452"]);
    assert_eq!(r.replies()[6], "452 4.5.3 too many recipients");
}

#[test]
fn xclient_only_when_enabled() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let input = format!("EHLO c.test\r\nXCLIENT ADDR=192.0.2.9 NAME=real.example\r\n{HEAD}x\r\n.\r\nQUIT\r\n");
    let r = run_with(&env, &[], input.as_bytes());
    assert_eq!(r.replies()[2], "550 5.7.0 XCLIENT not authorized");
    assert!(!r.out.contains("XCLIENT NAME"));
    std::fs::remove_dir_all(d.path().join("q")).unwrap();
    std::fs::create_dir(d.path().join("q")).unwrap();
    let r = run_with(&env, &[("XCLIENT", ""), ("XFORWARD", "")], input.as_bytes());
    assert!(r.out.contains("250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT\r\n"), "{}", r.out);
    assert!(r.out.contains("250 XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE\r\n"), "{}", r.out);
    assert_eq!(r.replies()[2], "220 mx.test ESMTP smtpd-rs");
    let msg = String::from_utf8(files(&d.path().join("q"), "msg.").remove(0)).unwrap();
    assert!(msg.starts_with("Received: from client.test (real.example [192.0.2.9])"), "{msg}");
    let attrs = String::from_utf8(files(&d.path().join("q"), "attrs.").remove(0)).unwrap();
    assert!(attrs.contains("CLIENT_ADDR=192.0.2.9\n") && attrs.contains("CLIENT_NAME=real.example\n"), "{attrs}");
}

/// Issue 16.1: the shipped rule gives 127.0.0.1 both RELAYCLIENT and
/// XCLIENT; a proxy there forwarding an internet client must not turn it
/// into a relay client. The relay right after XCLIENT comes from the
/// forwarded client: LOGIN, AUTH, or its address in RELAYCLIENTS.
#[test]
fn xclient_does_not_keep_the_proxys_relay_right() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let proxy = [("TCPREMOTEIP", "127.0.0.1"), ("RELAYCLIENT", ""), ("XCLIENT", "")];
    let flow = |xclient: &str| {
        format!(
            "EHLO proxy\r\n{xclient}\r\nEHLO spammer.example\r\nMAIL FROM:<spam@spammer.example>\r\n\
             RCPT TO:<victim@gmail.test>\r\nRCPT TO:<u@example.com>\r\nQUIT\r\n"
        )
    };
    let x = "XCLIENT ADDR=203.0.113.66 NAME=spammer.example";
    let r = run_with(&env, &proxy, flow(x).as_bytes());
    assert_eq!(r.codes(), ["220", "250", "220", "250", "250", "553", "250", "221"], "{}", r.out);
    assert!(r.replies()[5].starts_with("553 5.7.1"), "{}", r.out);
    // The proxy's own mail still relays.
    let r = run_with(&env, &proxy, b"EHLO proxy\r\nMAIL FROM:<a@proxy.test>\r\nRCPT TO:<victim@gmail.test>\r\nQUIT\r\n");
    assert_eq!(r.codes(), ["220", "250", "250", "250", "221"], "{}", r.out);
    // A client the proxy authenticated (LOGIN) relays.
    let r = run_with(&env, &proxy, flow(&format!("{x} LOGIN=alice")).as_bytes());
    assert_eq!(r.codes()[5], "250", "{}", r.out);
    // A client on a RELAYCLIENTS network relays; others do not.
    let nets = write(d.path(), "relayclients", "# internal\n203.0.113.0/24\n");
    let mut with_nets = proxy.to_vec();
    with_nets.push(("RELAYCLIENTS", &nets));
    let r = run_with(&env, &with_nets, flow(x).as_bytes());
    assert_eq!(r.codes()[5], "250", "{}", r.out);
    let r = run_with(&env, &with_nets, flow("XCLIENT ADDR=198.51.100.9").as_bytes());
    assert_eq!(r.codes()[5], "553", "{}", r.out);
    // A bad RELAYCLIENTS file is a configuration error.
    let bad = write(d.path(), "bad", "not an address\n");
    let r = run_with(&env, &[("RELAYCLIENTS", bad.as_str())], b"");
    assert_eq!(r.code, Some(111), "{}", r.log);
    assert!(r.log.contains("RELAYCLIENTS"), "{}", r.log);
}

#[test]
fn ucspi_variables_reach_received_and_log() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let input = format!("{HEAD}x\r\n.\r\nQUIT\r\n");
    let r = run_with(&env, &[("TCPREMOTEIP", "198.51.100.4"), ("TCPREMOTEPORT", "5555"), ("TCPREMOTEHOST", "peer.example")], input.as_bytes());
    assert!(r.log.contains("connect: remote 198.51.100.4 port 5555 name peer.example"), "{}", r.log);
    let msg = String::from_utf8(files(&d.path().join("q"), "msg.").remove(0)).unwrap();
    assert!(msg.starts_with("Received: from client.test (peer.example [198.51.100.4])"), "{msg}");
    let r = run_with(&env, &[("REMOTE_ADDR", "2001:db8::7"), ("REMOTE_PORT", "6000")], input.as_bytes());
    assert!(r.log.contains("connect: remote 2001:db8::7 port 6000"), "{}", r.log);
}

#[test]
fn bad_configuration_gives_421() {
    let r = converse(command(&[("DATABYTES", "lots")]), b"");
    assert_eq!(r.out, "421 4.3.5 server configuration error, try again later\r\n");
    assert_eq!(r.code, Some(111));
    assert!(r.log.contains("DATABYTES"), "{}", r.log);
}

#[test]
fn session_mode_abandons_a_refused_message() {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    script(&bin, "queue-inject", FAKE_QUEUE_INJECT);
    let out = d.path().join("q");
    std::fs::create_dir(&out).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let big = "b".repeat(100).repeat(1500); // beyond one 64 KiB batch of frames
    let input = format!(
        "EHLO c.test\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<u@x.test>\r\nDATA\r\n{big}\r\nbare\nlf\r\n.\r\n\
         MAIL FROM:<s@x.test>\r\nRCPT TO:<u@x.test>\r\nDATA\r\nfine\r\n.\r\nQUIT\r\n"
    );
    let r = converse(
        command(&[("PATH", &path), ("FAKEQI_DIR", out.to_str().unwrap()), ("RELAYCLIENT", "")]),
        input.as_bytes(),
    );
    let rep = r.replies();
    assert!(rep[5].starts_with("554 5.6.0"), "{}", r.out);
    assert_eq!(rep[9], "250 2.0.0 ok: queued as id.2", "{}", r.out);
    assert!(out.join("aborted").exists(), "R frame sent");
    assert!(!out.join("data.1").exists(), "refused message not stored");
    assert_eq!(strip_received(&std::fs::read(out.join("data.2")).unwrap()), b"fine\n");
}

#[test]
fn eof_in_the_middle_of_a_message() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let r = run_with(&env, &[], format!("{HEAD}half a message\r\n").as_bytes());
    assert_eq!(r.code, Some(1));
    assert!(r.log.contains("end: client closed the connection during a message"), "{}", r.log);
    assert!(files(&d.path().join("q"), "env.").iter().all(|e| e.is_empty()), "nothing queued");
}

#[test]
fn helo_check_and_syntax() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    // A fake DNS on loopback: a.example has an address, m.example only an
    // MX, anything else is NXDOMAIN.
    let dns = remote_support::fake_dns(
        remote_support::Zone::new(false)
            .add("a.example", remote_support::Rr::A("192.0.2.1".parse().unwrap()))
            .add("m.example", remote_support::Rr::Mx(10, "a.example".into())),
    );
    let server = dns.addr.to_string();
    let input = "HELO bad_name!\r\nHELO nonexistent.invalid\r\nHELO [127.0.0.1]\r\nEHLO a.example\r\nHELO m.example\r\nQUIT\r\n";
    let r = run_with(&env, &[("HELO_CHECK", ""), ("DNS_SERVER", &server)], input.as_bytes());
    assert_eq!(r.codes(), ["220", "501", "450", "250", "250", "250", "221"], "{}", r.out);
    let q = dns.queries.lock().unwrap().join(" ");
    assert!(q.contains("nonexistent.invalid") && q.contains("m.example"), "{q}");
    // No name server answering: a temporary refusal, never an acceptance.
    let r = run_with(
        &env,
        &[("HELO_CHECK", ""), ("DNS_SERVER", "127.0.0.1:9"), ("DNS_TIMEOUT", "1")],
        b"HELO a.example\r\nQUIT\r\n",
    );
    assert_eq!(r.codes(), ["220", "450", "221"], "{}", r.out);
    let input = "HELO bad_name!\r\nHELO nonexistent.invalid\r\nHELO [127.0.0.1]\r\nEHLO localhost\r\nQUIT\r\n";
    let r = run_with(&env, &[], input.as_bytes());
    assert_eq!(r.codes(), ["220", "501", "250", "250", "250", "221"], "{}", r.out);
}

#[test]
fn smtputf8_addresses() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let input = "EHLO c.test\r\nMAIL FROM:<jöe@bücher.example>\r\nMAIL FROM:<jöe@bücher.example> SMTPUTF8\r\n\
        RCPT TO:<ü@ex\u{FF20}mple.com>\r\nRCPT TO:<ü@example.com>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n";
    let r = run_with(&env, &[], input.as_bytes());
    assert_eq!(r.codes(), ["220", "250", "553", "250", "553", "250", "354", "250", "221"], "{}", r.out);
    assert!(r.replies()[2].starts_with("553 5.6.7"));
    let envs = files(&d.path().join("q"), "env.");
    assert_eq!(envs[0], "Fjöe@bücher.example\0Tü@example.com\0\0".as_bytes());
    let msg = String::from_utf8(files(&d.path().join("q"), "msg.").remove(0)).unwrap();
    assert!(msg.contains("with UTF8SMTP"), "{msg}");
}

#[test]
fn client_that_never_reads_times_out() {
    use std::io::Write;
    use std::process::Stdio;
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let mut vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    vars.push(("SMTPD_TIMEOUT", "1"));
    let t = std::time::Instant::now();
    let mut c = command(&vars).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let _unread = c.stdout.take();
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(&b"NOOP\r\n".repeat(200_000));
    });
    let code = wait_bounded(&mut c, std::time::Duration::from_secs(15));
    let _ = w.join();
    assert_eq!(code, Some(1));
    assert!(t.elapsed() < std::time::Duration::from_secs(6), "{:?}", t.elapsed());
    let mut log = String::new();
    std::io::Read::read_to_string(&mut c.stderr.take().unwrap(), &mut log).unwrap();
    assert!(log.contains("end: timeout"), "{log}");
}

/// swaks --pipe starts its child with SIGCHLD ignored: the queue program's
/// exit code must still be read.
#[test]
fn sigchld_ignored_by_the_parent() {
    let d = tempfile::tempdir().unwrap();
    let env = qq_env(d.path());
    let mut c = std::process::Command::new("/usr/bin/python3");
    c.args(["-c", "import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])", BIN])
        .env_clear()
        .env("SMTPD_HOSTNAME", "mx.test");
    for (k, v) in &env {
        c.env(k, v);
    }
    let r = converse(c, format!("{HEAD}x\r\n.\r\nQUIT\r\n").as_bytes());
    assert!(r.replies()[5].starts_with("250 2.0.0 ok: queued as"), "{}", r.out);
}
