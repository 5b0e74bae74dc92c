//! End to end with the real programs: (swaks ->) smtpd-rs / sendmail ->
//! queue-inject -> queue-run -> smtp-remote -> an aiosmtpd sink on loopback
//! (Debian's python3-aiosmtpd, run by /usr/bin/python3).

#[path = "support/queuerun.rs"]
mod support;

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use support::*;

fn queue_run(w: &World, extra: &[(&str, &str)]) -> Kid {
    let mut c = w.command(QUEUE_RUN);
    c.env("SMTP_REMOTE", SMTP_REMOTE)
        .env("QMAILQUEUE", QUEUE_INJECT)
        .env("SMTPROUTES", w.dir.path().join("routes"))
        .env("HELOHOST", "relay.test");
    for (k, v) in extra {
        c.env(k, v);
    }
    Kid(c.spawn().unwrap())
}

fn crlf(b: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for &c in b {
        if c == b'\n' {
            v.push(b'\r');
        }
        v.push(c);
    }
    v
}

fn sendmail(w: &World, args: &[&str], input: &[u8]) {
    sendmail_via_queue_inject(w, "app.test", args, input);
}

#[test]
fn swaks_through_smtpd_to_the_sink_byte_exact() {
    let w = World::new();
    let sink = Sink::start(&w);
    // swaks --pipe runs smtpd-rs, which hands the message to queue-inject in session mode.
    let swaks = swaks();
    let body = "Subject: e2e\r\nMessage-ID: <e2e@client.test>\r\n\r\nline 1\r\n.leading dot\r\n\r\n" .to_string()
        + &"x".repeat(900)
        + "\r\nlast\r\n";
    let out = Command::new(swaks)
        .args(["--pipe", SMTPD, "--from", "alice@client.test", "--to", "bob@dest.test,carol@dest.test", "--helo", "client.test", "--data", "-"])
        .env("QUEUE_DIR", w.queue())
        .env("RELAYCLIENT", "")
        .env("PATH", format!("{}:{}", Path::new(QUEUE_INJECT).parent().unwrap().display(), std::env::var("PATH").unwrap_or_default()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(body.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("<-  250 "), "{text}");
    // The queued message text (after the queue file's header), then delivery.
    let q = w.queued();
    assert_eq!(q.len(), 1);
    let file = fs::read(w.queue().join("new").join(&q[0])).unwrap();
    let queued = file[file.windows(2).position(|x| x == b"\n\n").unwrap() + 2..].to_vec();
    let _qr = queue_run(&w, &[]);
    wait_for(30, "delivered to the sink", || w.queued().is_empty() && !sink.received().is_empty());
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, vec!["alice@client.test", "bob@dest.test", "carol@dest.test"]);
    // What the sink got is exactly what was queued (CRLF on the wire), and
    // that is what swaks sent after smtpd-rs's Received: header (swaks ends
    // its data with one more CRLF of its own).
    let m = &got[0].1;
    assert_eq!(m, &crlf(&queued));
    assert!(m.starts_with(b"Received: "), "{}", String::from_utf8_lossy(m));
    let tail = [body.as_bytes(), b"\r\n"].concat();
    assert!(m.ends_with(body.as_bytes()) || m.ends_with(&tail), "{:?}", &m[m.len().saturating_sub(20)..]);
}

#[test]
fn sendmail_retry_after_451_and_bounce_after_550() {
    let w = World::new();
    let sink = Sink::start(&w);
    let msg = b"Subject: two\nMessage-ID: <two@app.test>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nFrom: app@app.test\n\nhello\n";
    sendmail(&w, &["-f", "app@app.test", "grey1@dest.test", "fail1@other.test", "ok1@dest.test"], msg);
    let qr = queue_run(&w, &[("RETRY_SCHEDULE", "1")]);
    wait_for(30, "all done", || w.queued().is_empty() && sink.received().len() >= 3);
    let got = sink.received();
    // ok1 at once, grey1 on the retry, then the DSN to the sender.
    let to = |r: &str| got.iter().filter(|(e, _)| e.iter().skip(1).any(|x| x == r)).count();
    assert_eq!((to("ok1@dest.test"), to("grey1@dest.test"), to("fail1@other.test")), (1, 1, 0));
    for (e, m) in &got {
        if e[1..].iter().any(|r| r.starts_with("ok1") || r.starts_with("grey1")) {
            assert_eq!(m, &crlf(msg));
        }
    }
    let dsn: Vec<&(Vec<String>, Vec<u8>)> = got.iter().filter(|(e, _)| e[0] == "<>" || e[0].is_empty()).collect();
    assert_eq!(dsn.len(), 1, "{got:?}");
    assert_eq!(dsn[0].0[1..], ["app@app.test".to_string()]);
    let t = String::from_utf8_lossy(&dsn[0].1);
    assert!(t.contains("Content-Type: multipart/report; report-type=delivery-status;"), "{t}");
    assert!(t.contains("Final-Recipient: rfc822; fail1@other.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"), "{t}");
    assert!(t.contains("Message-ID: <two@app.test>"), "{t}");
    let log = w.log_after(qr);
    assert!(log.contains("<grey1@dest.test> deferred:") && log.contains("451 4.7.1"), "{log}");
    assert!(log.contains("<grey1@dest.test> delivered:"), "{log}");
}

#[test]
fn kill_9_mid_delivery_then_restart() {
    let w = World::new();
    let sink = Sink::start(&w);
    sendmail(&w, &["slow1@dest.test"], b"Subject: slow\n\nbody\n");
    let qr = queue_run(&w, &[("RETRY_SCHEDULE", "1")]);
    // smtp-remote is waiting for the sink's reply to DATA: kill queue-run.
    wait_for(20, "an attempt in flight", || fs::read_to_string(w.dir.path().join("queue-run.log")).is_ok_and(|l| l.contains("started")));
    std::thread::sleep(std::time::Duration::from_millis(1000));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(qr.pid()), nix::sys::signal::Signal::SIGKILL).unwrap();
    drop(qr);
    let _qr = queue_run(&w, &[("RETRY_SCHEDULE", "1")]);
    wait_for(30, "delivered after restart", || w.queued().is_empty());
    // At least once; the orphaned smtp-remote may have delivered it too.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let n = sink.received().len();
    assert!((1..=2).contains(&n), "{n} deliveries");
}

#[test]
fn thousand_messages_none_lost_or_duplicated() {
    let w = World::new();
    let sink = Sink::start(&w);
    const N: usize = 1000;
    let _qr = queue_run(&w, &[("CONCURRENCY", "20"), ("CONCURRENCY_DOMAIN", "20")]);
    let t = std::time::Instant::now();
    for i in 0..N {
        queue_one(&w, &format!("Subject: m{i}\nMessage-ID: <m{i}@app.test>\n\nbody {i}\n"), &format!("r{}@dest{}.test", i, i % 3));
    }
    wait_for(300, "1000 messages at the sink", || sink.received().len() >= N && w.queued().is_empty());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let got = sink.received();
    assert_eq!(got.len(), N, "duplicates");
    let ids: HashSet<String> = got
        .iter()
        .map(|(_, m)| String::from_utf8_lossy(m).lines().find(|l| l.starts_with("Message-ID:")).unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), N);
    // Kept connections: far fewer than messages (at most CONCURRENCY at a
    // time, each for up to CONNECTION_REUSE_COUNT messages).
    assert!(sink.connections() < N / 5, "{} connections for {N} messages", sink.connections());
    eprintln!("1000 messages through queue-inject, queue-run, smtp-remote in {:?}, {} connections", t.elapsed(), sink.connections());
}

/// 60 messages to three domains waiting when queue-run starts: with kept
/// connections (the default) a few connections carry them all, each message
/// once and whole; with CONNECTION_REUSE_COUNT=0 one connection (and one
/// smtp-remote) per message, as before.
#[test]
fn kept_connections_carry_many_messages_each() {
    const N: usize = 60;
    for (reuse, at_most) in [("100", 8), ("0", N)] {
        let w = World::new();
        let sink = Sink::start(&w);
        for i in 0..N {
            let body = format!("Subject: k{i}\nMessage-ID: <k{i}@app.test>\n\nbody {i}\n");
            write_queue_file(&w.queue(), &format!("{}.1.{}", now(), i + 1), now(), "app@app.test", &[&format!("r{i}@dest{}.test", i % 3)], &[], body.as_bytes());
        }
        let qr = queue_run(&w, &[("CONCURRENCY", "4"), ("CONCURRENCY_DOMAIN", "2"), ("CONNECTION_REUSE_COUNT", reuse)]);
        wait_for(120, "60 messages at the sink", || sink.received().len() >= N && w.queued().is_empty());
        std::thread::sleep(std::time::Duration::from_millis(300));
        let got = sink.received();
        assert_eq!(got.len(), N, "reuse {reuse}: duplicates");
        let ids: HashSet<String> = got.iter().map(|(_, m)| String::from_utf8_lossy(m).lines().find(|l| l.starts_with("Message-ID:")).unwrap().to_string()).collect();
        assert_eq!(ids.len(), N, "reuse {reuse}");
        for (e, m) in &got {
            let i: usize = e[1].trim_start_matches('r').split('@').next().unwrap().parse().unwrap();
            assert_eq!(m, &crlf(format!("Subject: k{i}\nMessage-ID: <k{i}@app.test>\n\nbody {i}\n").as_bytes()));
        }
        let conns = sink.connections();
        if reuse == "0" {
            assert_eq!(conns, N, "one connection per message without reuse");
        } else {
            assert!(conns <= at_most, "{conns} connections for {N} messages");
        }
        let log = w.log_after(qr);
        assert!(!log.contains("warning"), "{log}");
    }
}

/// queue-inject by the qmail-queue protocol: message on fd 0, envelope on fd 1.
fn queue_one(w: &World, msg: &str, rcpt: &str) {
    let (r, wr) = nix::unistd::pipe().unwrap();
    let mut c = Command::new(QUEUE_INJECT)
        .env("QUEUE_DIR", w.queue())
        .stdin(Stdio::piped())
        .stdout(Stdio::from(r))
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(msg.as_bytes()).unwrap();
    let mut e = fs::File::from(wr);
    e.write_all(format!("Fapp@app.test\0T{rcpt}\0\0").as_bytes()).unwrap();
    drop(e);
    assert!(c.wait().unwrap().success());
}

#[test]
fn swaks_to_smtpd_supervise_whole_chain() {
    // swaks -> smtpd-supervise (hand-off workers) -> smtpd-rs -> queue-inject
    // -> queue-run -> smtp-remote -> sink, over loopback TCP.
    let w = World::new();
    let sink = Sink::start(&w);
    let _qr = queue_run(&w, &[]);
    let (_sup, port) = supervise(&w, |c| {
        c.args(["-W", "-w", "2"]).env("QUEUE_DIR", w.queue()).env("SMTPD_HOSTNAME", "relay.test").env_remove("RELAYCLIENT");
    });
    let swaks = swaks();
    for i in 0..3 {
        let out = Command::new(&swaks)
            .args(["--server", &format!("127.0.0.1:{port}"), "--from", "alice@client.test", "--to", &format!("u{i}@dest.test")])
            .args(["--helo", "client.test", "--header", &format!("Subject: chain {i}"), "--body", &format!("body {i}\n.dot\n")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }
    wait_for(30, "three messages at the sink", || sink.received().len() == 3 && w.queued().is_empty());
    for (i, (env, m)) in sink.received().iter().enumerate() {
        let _ = i;
        assert_eq!(env[0], "alice@client.test");
        let t = String::from_utf8_lossy(m);
        assert!(t.starts_with("Received: from client.test"), "{t}");
        let n = env[1].trim_start_matches('u').trim_end_matches("@dest.test");
        assert!(t.contains(&format!("Subject: chain {n}\r\n")) && t.contains(&format!("body {n}\r\n.dot\r\n")), "{t}");
    }
}

/// The kept `smtp-remote -m` processes of queue-run `pid` (its children
/// named smtp-remote).
fn kept_remotes(pid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else { continue };
        // pid (comm) state ppid ...
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let ppid: i32 = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == pid && head.ends_with("(smtp-remote") {
            v.push(head.split(' ').next().unwrap().parse().unwrap());
        }
    }
    v
}

/// kill -9 of a kept smtp-remote, idle and then in the middle of a
/// delivery: nothing is lost (the one in flight is retried, at least once),
/// and the deliveries after it go on through other processes.
#[test]
fn kill_9_of_a_kept_smtp_remote() {
    let w = World::new();
    let sink = Sink::start(&w);
    let qr = queue_run(&w, &[("RETRY_SCHEDULE", "1"), ("CONNECTION_IDLE_TIME", "60"), ("CONCURRENCY", "1")]);
    queue_one(&w, "Subject: one\n\nbody\n", "a1@dest.test");
    wait_for(30, "the first delivered", || sink.received().len() == 1 && w.queued().is_empty());
    // Idle, its connection open: killed.
    let kept = kept_remotes(qr.pid());
    assert_eq!(kept.len(), 1, "one kept process, idle");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(kept[0]), nix::sys::signal::Signal::SIGKILL).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    queue_one(&w, "Subject: two\n\nbody\n", "a2@dest.test");
    wait_for(30, "the second delivered", || sink.received().len() == 2 && w.queued().is_empty());
    // Busy: the sink answers the data of slow... 3 s late; killed meanwhile.
    queue_one(&w, "Subject: three\n\nbody\n", "slow3@dest.test");
    wait_for(20, "the slow delivery in flight", || !w.queued().is_empty() && kept_remotes(qr.pid()).len() == 1);
    std::thread::sleep(std::time::Duration::from_millis(1000));
    for p in kept_remotes(qr.pid()) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    wait_for(40, "the slow one delivered after a retry", || w.queued().is_empty());
    std::thread::sleep(std::time::Duration::from_secs(4));
    let got = sink.received();
    let to = |r: &str| got.iter().filter(|(e, _)| e.iter().skip(1).any(|x| x == r)).count();
    assert_eq!((to("a1@dest.test"), to("a2@dest.test")), (1, 1));
    // At least once: the killed attempt may have reached the sink too.
    assert!((1..=2).contains(&to("slow3@dest.test")), "{got:?}");
    let log = w.log_after(qr);
    assert!(log.contains("<slow3@dest.test> deferred: smtp-remote crashed (signal 9)"), "{log}");
    assert!(log.contains("<slow3@dest.test> delivered:"), "{log}");
}
