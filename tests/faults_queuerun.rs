//! Fault injection (issue 7): a full disk while queue-run records delivery
//! outcomes, made with RLIMIT_FSIZE (prlimit(1), util-linux; no tmpfs mount
//! needed): a state file cannot be written. queue-run must neither die nor
//! act on an outcome it could not record (no bounce), keep the message,
//! and once space returns (the limit raised on the running process)
//! record it and bounce exactly once.
#[path = "support/queuerun.rs"]
mod support;

use std::process::Command;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_queue-run");
const BODY: &[u8] = b"Received: from x\nSubject: disk full\n\nline 1\n";

#[test]
fn disk_full_during_state_updates() {
    let w = World::new();
    w.rules("bad@x.test h\n");
    write_queue_file(&w.queue(), "960.1.1", now(), "s@src.test", &["bad@x.test"], &[], BODY);
    // Every write past 40 octets fails (EFBIG, as ENOSPC would): the state
    // file of the first attempt is larger than that.
    let mut c = w.command("prlimit");
    c.args(["--fsize=40:", "--", BIN]);
    // The log through a pipe: a log file would be cut at 40 octets too.
    c.stderr(std::process::Stdio::piped());
    let mut k = Kid(c.spawn().unwrap());
    let mut err = k.0.stderr.take().unwrap();
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let b2 = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut err, &mut chunk) {
            if n == 0 {
                break;
            }
            b2.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    let log = || String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
    let ok = (0..100).any(|_| { std::thread::sleep(std::time::Duration::from_millis(200)); log().contains("960.1.1: unable to record the outcome") });
    assert!(ok, "no outcome-not-recorded line; status {:?}\n{}", k.0.try_wait(), log());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(matches!(k.0.try_wait(), Ok(None)), "queue-run died on a full disk: {:?}\n{}", k.0.try_wait(), log());
    assert!(w.bounces().is_empty(), "bounced on an outcome that was not recorded");
    assert_eq!(w.queued(), vec!["960.1.1".to_string()]);
    // Space returns.
    let st = Command::new("prlimit").args(["--pid", &k.pid().to_string(), "--fsize=unlimited:"]).status().unwrap();
    assert!(st.success(), "prlimit --pid");
    wait_for(60, "bounced once space returned", || w.queued().is_empty());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(w.bounces().len(), 1, "exactly one bounce");
    drop(k);
    let text = log();
    assert!(text.contains("960.1.1: unable to record the outcome"), "{text}");
    eprintln!("{}", text.lines().filter(|l| l.contains("960.1.1")).take(6).collect::<Vec<_>>().join("\n"));
}
