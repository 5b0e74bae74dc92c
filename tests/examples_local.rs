//! `make run`: conf-examples/run-local.sh in a copy of the tree's layout
//! (conf-examples/ with its rcpthosts and local.rules, bin/ with the
//! programs), on a free port, under smtpd-supervise (the default) and under
//! tcpserver (RUN_UNDER=tcpserver): the greeting names localhost, mail for
//! example.com lands in var/queue/new, other domains are refused, the
//! session's log lines reach the terminal; under smtpd-supervise the
//! scoreboard (var/scoreboard) reads back with smtpd-supervise-status and
//! var/metrics.prom counts the session. Needs no root.
#[path = "support/examples.rs"]
mod examples;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use examples::*;

fn make_run(under: Option<&str>) {
    let d = tempfile::tempdir().expect("tempdir");
    let top = d.path();
    std::fs::create_dir_all(top.join("conf-examples")).expect("mkdir");
    std::fs::create_dir_all(top.join("bin")).expect("mkdir");
    for f in ["run-local.sh", "rcpthosts", "local.rules"] {
        std::fs::copy(Path::new(TOP).join("conf-examples").join(f), top.join("conf-examples").join(f)).expect("copy");
    }
    // What `make build` puts into bin/.
    for p in [
        env!("CARGO_BIN_EXE_smtpd-rs"),
        env!("CARGO_BIN_EXE_queue-inject"),
        env!("CARGO_BIN_EXE_smtpd-supervise"),
        env!("CARGO_BIN_EXE_smtpd-supervise-status"),
    ] {
        let dst = top.join("bin").join(Path::new(p).file_name().expect("name"));
        if std::fs::hard_link(p, &dst).is_err() {
            std::fs::copy(p, &dst).expect("copy program");
        }
    }
    let port = free_port();
    let mut c = Command::new("sh");
    c.env_clear().env("PATH", SERVICE_PATH).env("PORT", port.to_string()).arg(top.join("conf-examples/run-local.sh"));
    if let Some(u) = under {
        c.env("RUN_UNDER", u);
    }
    let mut svc = Service::spawn("make run", c, Vec::new());
    svc.wait_port(port);

    let (ok, t) = swaks(port, &["--from", "sender@example.org", "--to", "user@example.com"]);
    assert!(ok, "{t}\n{}", svc.log_text());
    assert!(greeting(&t).starts_with("220 localhost "), "{t}");
    let new = top.join("var/queue/new");
    assert!(wait_for(Duration::from_secs(5), || std::fs::read_dir(&new).map(|d| d.count()).unwrap_or(0) == 1), "one message in var/queue/new");
    let (ok, t) = swaks(port, &["--to", "user@elsewhere.test"]);
    assert!(!ok && server_lines(&t).iter().any(|l| l.starts_with("553 ")), "{t}");
    let log = wait_log(&svc.log, "message accepted", Duration::from_secs(5));
    assert!(log.contains("smtpd-rs: info") && log.contains("message accepted"), "{log}");

    // The scoreboard and the metrics, under smtpd-supervise only, as the
    // README's first session shows them.
    let board = top.join("var/scoreboard");
    let metrics = top.join("var/metrics.prom");
    if under.is_some() {
        assert!(!board.exists() && !metrics.exists(), "tcpserver keeps no scoreboard");
        return;
    }
    let mut c = Command::new(top.join("bin/smtpd-supervise-status"));
    c.arg("var/scoreboard").current_dir(top);
    let o = run(&mut c, b"", Duration::from_secs(10));
    assert_ok(&o, "bin/smtpd-supervise-status var/scoreboard");
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(table.starts_with("smtpd-supervise pid ") && table.contains(&format!("listening on 127.0.0.1:{port}")), "{table}");
    assert!(table.lines().any(|l| l.split_whitespace().nth(1) == Some("idle")), "an idle worker: {table}");
    let sessions = |t: &str| t.lines().any(|l| l.starts_with("smtpd_sessions_total{") && l.contains("end=\"quit\"") && !l.ends_with(" 0"));
    let ok = wait_for(Duration::from_secs(5), || sessions(&std::fs::read_to_string(&metrics).unwrap_or_default()));
    assert!(ok, "var/metrics.prom counts no session:\n{}", std::fs::read_to_string(&metrics).unwrap_or_default());
}

#[test]
fn make_run_under_smtpd_supervise() {
    make_run(None);
}

#[test]
fn make_run_under_tcpserver() {
    make_run(Some("tcpserver"));
}
