//! `queue-run -e FILE` (issue 17, points 1 and 2): the file is read with
//! systemd's `EnvironmentFile=` rules (the one reader, src/envfile.rs, that
//! smtpd-supervise uses too: quotes stripped), and its settings reach the
//! programs queue-run runs: smtp-remote finds its routes there, queue-inject
//! its queue. Real smtp-remote and queue-inject, an aiosmtpd sink on loopback.

#[path = "support/queuerun.rs"]
mod support;

use std::fs;
use std::process::{Command, Stdio};
use support::*;

/// queue-run with nothing but PATH and the World's test settings in its
/// environment (no SMTPROUTES, no QUEUE_DIR) and `-e env`.
fn queue_run_with(w: &World, env: &str) -> Kid {
    let f = w.dir.path().join("queue-run.env");
    fs::write(&f, env).unwrap();
    let mut c = w.command(QUEUE_RUN);
    c.env_remove("QUEUE_DIR").env_remove("SMTP_REMOTE").env_remove("QMAILQUEUE").arg("-e").arg(&f);
    Kid(c.spawn().unwrap())
}

#[test]
fn routes_only_in_the_e_file_reach_smtp_remote() {
    let w = World::new();
    let sink = Sink::start(&w);
    write_queue_file(&w.queue(), "100.1.1", now(), "s@src.test", &["bob@dest.test"], &[], b"Subject: e\n\nrouted\n");
    // Quoted values, as smtpd-supervise and systemd read them.
    let env = format!(
        "# settings for queue-run and what it runs\nQUEUE_DIR=\"{}\"\nSMTP_REMOTE='{SMTP_REMOTE}'\nQMAILQUEUE={QUEUE_INJECT}\nSMTPROUTES=\"{}\"\nHELOHOST=relay.test\n",
        w.queue().display(),
        w.dir.path().join("routes").display()
    );
    let k = queue_run_with(&w, &env);
    let ok = (0..300).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !sink.received().is_empty()
    });
    let log = w.log_after(k);
    assert!(ok, "the smarthost named in the -e file got nothing:\n{log}");
    let got = sink.received();
    assert_eq!(got[0].0, vec!["s@src.test", "bob@dest.test"]);
    assert!(String::from_utf8_lossy(&got[0].1).ends_with("routed\r\n"));
}

#[test]
fn queue_dir_only_in_the_e_file_gets_the_dsns() {
    let w = World::new();
    w.rules("bad@x.test h\n");
    write_queue_file(&w.queue(), "200.1.1", now(), "s@src.test", &["bad@x.test"], &[], b"Subject: b\n\nbounce me\n");
    let env = format!(
        "QUEUE_DIR={}\nSMTP_REMOTE={}\nQMAILQUEUE={QUEUE_INJECT}\n",
        w.queue().display(),
        w.dir.path().join("fake-remote").display()
    );
    let k = queue_run_with(&w, &env);
    // The DSN is queued by queue-inject into the -e file's queue, and then
    // delivered from there (to the sender, from <>).
    let dsn = |w: &World| w.deliveries().iter().any(|d| d.len() == 3 && d[0] == "src.test" && d[1].is_empty() && d[2] == "s@src.test");
    let ok = (0..300).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        dsn(&w)
    });
    let log = w.log_after(k);
    assert!(ok, "no DSN went through the -e file's queue:\n{log}");
    assert!(log.contains("200.1.1: DSN (failure) queued for <s@src.test>"), "{log}");
}

#[test]
fn one_env_file_with_quotes_for_supervise_and_queue_run() {
    // The same file, as conf-examples ship it for both programs, with a
    // double-quoted QUEUE_DIR: smtpd-supervise's sessions queue into it,
    // queue-run delivers from it.
    let w = World::new();
    let sink = Sink::start(&w);
    let envf = w.dir.path().join("shared.env");
    fs::write(
        &envf,
        format!(
            "QUEUE_DIR=\"{}\"\nSMTPD_HOSTNAME=\"relay.test\"\nSMTPROUTES=\"{}\"\nHELOHOST='relay.test'\nSMTP_REMOTE=\"{SMTP_REMOTE}\"\nQMAILQUEUE=\"{QUEUE_INJECT}\"\n",
            w.queue().display(),
            w.dir.path().join("routes").display()
        ),
    )
    .unwrap();
    let (_sup, port) = supervise(&w, |c| {
        c.arg("-e").arg(&envf).env_clear();
    });
    let out = Command::new(swaks())
        .args(["--server", &format!("127.0.0.1:{port}"), "--from", "alice@client.test", "--to", "u@dest.test"])
        .args(["--helo", "client.test", "--header", "Subject: shared env", "--body", "one file\n"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let log = fs::read_to_string(w.dir.path().join("supervise.log")).unwrap_or_default();
    assert!(out.status.success(), "{}\n{log}", String::from_utf8_lossy(&out.stdout));
    let k = queue_run_with(&w, &fs::read_to_string(&envf).unwrap());
    let ok = (0..300).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !sink.received().is_empty()
    });
    let qlog = w.log_after(k);
    assert!(ok, "not delivered:\n{qlog}");
    let got = sink.received();
    assert_eq!(got[0].0, vec!["alice@client.test", "u@dest.test"]);
    assert!(String::from_utf8_lossy(&got[0].1).starts_with("Received: from client.test"), "{:?}", got[0]);
}
