//! queue-run's scheduling: SIGALRM, SIGHUP, concurrency limits, and many
//! messages none lost or duplicated (fake smtp-remote, fake QMAILQUEUE).

#[path = "support/queuerun.rs"]
mod support;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_queue-run");

#[test]
fn sigalrm_retries_now() {
    let w = World::new();
    w.rules("g@x.test s1\n");
    write_queue_file(&w.queue(), "1.1.1", now(), "s@src.test", &["g@x.test"], &[], b"S: x\n\nb\n");
    let k = Kid(w.command(BIN).env("RETRY_SCHEDULE", "3600").spawn().unwrap());
    wait_for(20, "first attempt", || w.deliveries().len() == 1 && w.queue().join("state/1.1.1").exists());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(w.queued().len(), 1, "retried before its time");
    kill(Pid::from_raw(k.pid()), Signal::SIGALRM).unwrap();
    wait_for(20, "delivered after SIGALRM", || w.queued().is_empty());
    assert_eq!(w.accepted("g@x.test"), 1);
    assert!(w.log_after(k).contains("SIGALRM: retrying every message now"));
}

#[test]
fn sighup_rereads_env_file() {
    let w = World::new();
    let envf = w.dir.path().join("env");
    // First a delivery program that cannot run: temporary failure.
    fs::write(&envf, "SMTP_REMOTE=/nonexistent/remote\nRETRY_SCHEDULE=3600\n").unwrap();
    write_queue_file(&w.queue(), "2.1.1", now(), "s@src.test", &["a@x.test"], &[], b"S: x\n\nb\n");
    let k = Kid(w.command(BIN).arg("-e").arg(&envf).spawn().unwrap());
    wait_for(20, "a failed attempt recorded", || {
        fs::read_to_string(w.queue().join("state/2.1.1")).is_ok_and(|s| s.contains("r P 0 0 1 "))
    });
    fs::write(&envf, "# fixed\nRETRY_SCHEDULE=3600\n").unwrap();
    kill(Pid::from_raw(k.pid()), Signal::SIGHUP).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    kill(Pid::from_raw(k.pid()), Signal::SIGALRM).unwrap();
    wait_for(20, "delivered with the new setting", || w.queued().is_empty());
    let log = w.log_after(k);
    assert!(log.contains("SIGHUP: configuration read again"), "{log}");
    // A bad file on SIGHUP keeps the old settings.
    let w2 = World::new();
    let envf2 = w2.dir.path().join("env");
    fs::write(&envf2, "RETRY_SCHEDULE=1\n").unwrap();
    let k2 = Kid(w2.command(BIN).arg("-e").arg(&envf2).spawn().unwrap());
    std::thread::sleep(std::time::Duration::from_millis(300));
    fs::write(&envf2, "CONCURRENCY=lots\n").unwrap();
    kill(Pid::from_raw(k2.pid()), Signal::SIGHUP).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    write_queue_file(&w2.queue(), "2.1.2", now(), "s@src.test", &["a@x.test"], &[], b"S: x\n\nb\n");
    wait_for(20, "still delivering", || w2.queued().is_empty());
    assert!(w2.log_after(k2).contains("old configuration kept"));
}

#[test]
fn concurrency_limits() {
    let w = World::new();
    w.rules("@a.test slow\n@b.test slow\n@c.test slow\n");
    for i in 0..12 {
        let dom = ["a.test", "b.test", "c.test"][i % 3];
        write_queue_file(&w.queue(), &format!("3.1.{i}"), now(), "s@src.test", &[&format!("r{i}@{dom}")], &[], b"S: x\n\nb\n");
    }
    let _k = Kid(w.command(BIN).env("CONCURRENCY", "3").env("CONCURRENCY_DOMAIN", "2").spawn().unwrap());
    wait_for(60, "all delivered", || w.queued().is_empty());
    assert_eq!(w.deliveries().len(), 12);
    assert!(w.max_parallel(None) <= 3, "overall {}", w.max_parallel(None));
    assert!(w.max_parallel(None) >= 2, "no parallelism at all");
    for d in ["a.test", "b.test", "c.test"] {
        assert!(w.max_parallel(Some(d)) <= 2, "{d}: {}", w.max_parallel(Some(d)));
    }
}

#[test]
fn many_messages_none_lost_or_duplicated() {
    let w = World::new();
    const N: usize = 300;
    // Half queued before start, half while running.
    for i in 0..N / 2 {
        write_queue_file(&w.queue(), &format!("4.1.{i}"), now(), "s@src.test", &[&format!("m{i}@x.test")], &[], b"S: x\n\nb\n");
    }
    let _k = Kid(w.command(BIN).spawn().unwrap());
    for i in N / 2..N {
        write_queue_file(&w.queue(), &format!("4.1.{i}"), now(), "s@src.test", &[&format!("m{i}@y.test")], &[], b"S: x\n\nb\n");
    }
    wait_for(120, "all delivered", || w.queued().is_empty());
    let acc = fs::read_to_string(w.out().join("accepted")).unwrap();
    let mut lines: Vec<&str> = acc.lines().collect();
    assert_eq!(lines.len(), N);
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), N, "duplicates");
}

#[test]
fn hung_delivery_killed_and_retried() {
    let w = World::new();
    w.rules("slow@x.test sleep1\n");
    write_queue_file(&w.queue(), "5.1.1", now(), "s@src.test", &["slow@x.test"], &[], b"S: x\n\nb\n");
    let k = Kid(w.command(BIN).env("ATTEMPT_TIMEOUT", "1").spawn().unwrap());
    wait_for(20, "killed, retried and delivered", || w.queued().is_empty());
    assert_eq!(w.accepted("slow@x.test"), 1);
    let log = w.log_after(k);
    assert_eq!(log.matches("ran over 1 s: killed").count(), 1, "{log}");
    assert!(log.contains("<slow@x.test> deferred: smtp-remote crashed (signal 9)"), "{log}");
}

/// Hardening: one destination that hangs every connection cannot hold every
/// delivery slot. With CONCURRENCY=2 and no CONCURRENCY_DOMAIN, two messages
/// to a tarpit used to take both slots and hold up a healthy domain.
#[test]
fn a_tarpit_domain_cannot_take_every_slot() {
    let w = World::new();
    w.rules("@tarpit.test tarpit\n");
    write_queue_file(&w.queue(), "30.1.1", now(), "s@src.test", &["a@tarpit.test"], &[], b"S: x\n\nb\n");
    write_queue_file(&w.queue(), "30.1.2", now(), "s@src.test", &["b@tarpit.test"], &[], b"S: x\n\nb\n");
    let _k = Kid(w.command(BIN).env("CONCURRENCY", "2").spawn().unwrap());
    wait_for(10, "the tarpit attempt started", || !w.deliveries().is_empty());
    let t = std::time::Instant::now();
    write_queue_file(&w.queue(), "30.1.3", now(), "s@src.test", &["c@fast.test"], &[], b"S: x\n\nb\n");
    wait_for(20, "the healthy domain delivered", || w.accepted("c@fast.test") == 1);
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "healthy mail waited {:?} behind the tarpit", t.elapsed());
    assert_eq!(w.max_parallel(Some("tarpit.test")), 1, "one slot for the tarpit");
}
