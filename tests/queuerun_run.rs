//! queue-run against a fake smtp-remote (qmail-remote reports by rule) and a
//! fake QMAILQUEUE that records the DSNs, on queue files written in the
//! documented format.

#[path = "support/queuerun.rs"]
mod support;

use std::fs;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_queue-run");
const BODY: &[u8] = b"Received: from x\nSubject: test\n\nline 1\n.dotted\n\nlast line\n";

fn start(w: &World, extra: &[(&str, &str)]) -> Kid {
    let mut c = w.command(BIN);
    for (k, v) in extra {
        c.env(k, v);
    }
    Kid(c.spawn().unwrap())
}

#[test]
fn delivers_by_domain_byte_exact() {
    let w = World::new();
    // One queued before start, one after (inotify).
    write_queue_file(&w.queue(), "100.1.1", now(), "s@src.test", &["a@x.test", "b@y.test", "c@X.test"], &[], BODY);
    let k = start(&w, &[]);
    wait_for(20, "first message delivered", || w.queued().is_empty());
    write_queue_file(&w.queue(), "100.1.2", now(), "", &["d@z.test"], &[("BODY", "8BITMIME")], b"S: x\n\nb\n");
    wait_for(20, "second message delivered", || w.queued().is_empty() && w.accepted("d@z.test") == 1);
    let mut d = w.deliveries();
    d.sort();
    assert_eq!(d.len(), 3, "{d:?}");
    assert!(d.contains(&vec!["x.test".into(), "s@src.test".into(), "a@x.test".into(), "c@X.test".into()]));
    assert!(d.contains(&vec!["y.test".into(), "s@src.test".into(), "b@y.test".into()]));
    assert!(d.contains(&vec!["z.test".into(), "".into(), "d@z.test".into()]));
    // The message on stdin is exactly the text after the header.
    let msgs: Vec<Vec<u8>> = w.recorded("msg.").iter().map(|p| fs::read(p).unwrap()).collect();
    assert_eq!(msgs.iter().filter(|m| m.as_slice() == BODY).count(), 2);
    assert!(msgs.iter().any(|m| m.as_slice() == b"S: x\n\nb\n"));
    let attrs: Vec<String> = w.recorded("attrs.").iter().map(|p| fs::read_to_string(p).unwrap()).collect();
    assert!(attrs.iter().any(|a| a == "BODY=8BITMIME\n"), "{attrs:?}");
    assert!(w.bounces().is_empty());
    assert!(fs::read_dir(w.queue().join("state")).unwrap().next().is_none(), "state left behind");
    let log = w.log_after(k);
    assert!(log.contains("100.1.1: delivery to x.test: <a@x.test> delivered: Remote host said: 250 2.1.5 ok/"), "{log}");
    assert!(log.contains("100.1.2: done, removed from the queue"), "{log}");
}

#[test]
fn permanent_failure_bounces_rfc3464() {
    let w = World::new();
    w.rules("bad@x.test h\n");
    write_queue_file(
        &w.queue(),
        "200.1.1",
        now(),
        "alice@src.test",
        &["good@x.test", "bad@x.test"],
        &[("ENVID", "QQ314159"), ("RCPT.1.ORCPT", "rfc822;Bad@x.test")],
        BODY,
    );
    let _k = start(&w, &[]);
    wait_for(20, "message finished", || w.queued().is_empty());
    let b = w.bounces();
    assert_eq!(b.len(), 1);
    let (env, text) = &b[0];
    assert_eq!(env, b"F\0Talice@src.test\0\0");
    for want in [
        "To: <alice@src.test>\n",
        "Content-Type: multipart/report; report-type=delivery-status;",
        "Reporting-MTA: dns; mx.test\n",
        "Original-Envelope-Id: QQ314159\n",
        "Final-Recipient: rfc822; bad@x.test\nOriginal-Recipient: rfc822; Bad@x.test\nAction: failed\nStatus: 5.1.1\n",
        // RFC 3464 2.3.6: the remote's SMTP reply, not our prose around it.
        "Diagnostic-Code: smtp; 550 5.1.1 <bad@x.test>: no such user\n",
        "Content-Type: message/rfc822\n\nReceived: from x\nSubject: test\n\nline 1\n.dotted\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("good@x.test"));
    assert_eq!(w.accepted("good@x.test"), 1);
}

#[test]
fn temporary_then_delivered_on_retry() {
    let w = World::new();
    w.rules("g@x.test s1\nc@y.test crash1\n@z.test Z\n");
    write_queue_file(&w.queue(), "300.1.1", now(), "s@src.test", &["g@x.test", "c@y.test"], &[], BODY);
    let k = start(&w, &[]);
    wait_for(30, "retried and delivered", || w.queued().is_empty());
    assert_eq!(fs::read_to_string(w.out().join("count.g@x.test")).unwrap().trim(), "2");
    assert_eq!(fs::read_to_string(w.out().join("count.c@y.test")).unwrap().trim(), "2");
    assert_eq!((w.accepted("g@x.test"), w.accepted("c@y.test")), (1, 1));
    assert!(w.bounces().is_empty());
    let log = w.log_after(k);
    assert!(log.contains("<g@x.test> deferred: Remote host said: 451 4.7.1 greylisted"), "{log}");
    assert!(log.contains("<c@y.test> deferred: smtp-remote crashed (signal 9)"), "{log}");
}

#[test]
fn lifetime_exceeded_bounces_and_list_shows_state() {
    let w = World::new();
    w.rules("@z.test Z\n");
    write_queue_file(&w.queue(), "400.1.1", now(), "s@src.test", &["a@z.test"], &[("RET", "HDRS")], BODY);
    let _k = start(&w, &[("QUEUE_LIFETIME", "3"), ("RETRY_SCHEDULE", "1")]);
    // Before giving up, --list shows the deferred recipient.
    wait_for(10, "a first attempt", || !w.deliveries().is_empty() && w.queue().join("state/400.1.1").exists());
    let out = w.command(BIN).arg("--list").output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    if !w.queued().is_empty() {
        assert!(list.contains("400.1.1  age ") && list.contains("from <s@src.test>"), "{list}");
        assert!(list.contains("<a@z.test>  pending  attempts 1"), "{list}");
    }
    wait_for(30, "bounced after the lifetime", || w.queued().is_empty());
    let b = w.bounces();
    assert_eq!(b.len(), 1);
    // Given up on a persistent transient failure: the remote's 4.3.2 stands
    // (RFC 3463 class 4 with a failure report), its reply is the diagnostic.
    assert!(b[0].1.contains("Action: failed\nStatus: 4.3.2\nDiagnostic-Code: smtp; 421 4.3.2 service not available\n"), "{}", b[0].1);
    assert!(b[0].1.contains("giving up"));
    // RET=HDRS: the header only.
    assert!(b[0].1.contains("Content-Type: text/rfc822-headers\n\nReceived: from x\nSubject: test\n\n"));
    assert!(!b[0].1.contains(".dotted"));
}

#[test]
fn null_sender_and_double_bounces() {
    let w = World::new();
    w.rules("bad@x.test h\n");
    // Null sender, no postmaster: dropped. Double-bounce sender: dropped.
    write_queue_file(&w.queue(), "500.1.1", now(), "", &["bad@x.test"], &[], BODY);
    write_queue_file(&w.queue(), "500.1.2", now(), "#@[]", &["bad@x.test"], &[], BODY);
    let k = start(&w, &[]);
    wait_for(20, "both finished", || w.queued().is_empty());
    assert!(w.bounces().is_empty());
    drop(k);
    // With DOUBLEBOUNCETO: once to the postmaster, from #@[].
    write_queue_file(&w.queue(), "500.1.3", now(), "", &["bad@x.test"], &[], BODY);
    let _k = start(&w, &[("DOUBLEBOUNCETO", "pm@mx.test")]);
    wait_for(20, "finished", || w.queued().is_empty());
    let b = w.bounces();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].0, b"F#@[]\0Tpm@mx.test\0\0");
    // The delivery of a double bounce goes out with the null sender.
    assert!(w.deliveries().iter().all(|d| d[1].is_empty()));
}

#[test]
fn dsn_notify_success_never_delay() {
    let w = World::new();
    w.rules("n@x.test h\nd@y.test s\n");
    write_queue_file(
        &w.queue(),
        "600.1.1",
        now(),
        "s@src.test",
        &["ok@x.test", "n@x.test", "d@y.test"],
        &[("RCPT.0.NOTIFY", "SUCCESS"), ("RCPT.1.NOTIFY", "NEVER"), ("RCPT.2.NOTIFY", "DELAY,FAILURE")],
        BODY,
    );
    let _k = start(&w, &[("DELAY_WARNING", "1"), ("RETRY_SCHEDULE", "1")]);
    wait_for(20, "success and delay DSNs", || w.bounces().len() >= 2);
    let all: Vec<String> = w.bounces().into_iter().map(|(_, t)| t).collect();
    assert!(all.iter().any(|t| t.contains("Final-Recipient: rfc822; ok@x.test\nAction: relayed\nStatus: 2.")), "{all:?}");
    assert!(all.iter().any(|t| t.contains("Final-Recipient: rfc822; d@y.test\nAction: delayed\nStatus: 4.2.0")), "{all:?}");
    assert!(all.iter().all(|t| !t.contains("n@x.test")), "NOTIFY=NEVER got a DSN");
    std::thread::sleep(std::time::Duration::from_secs(3));
    // One delay DSN only, however many retries.
    let delays = w.bounces().iter().filter(|(_, t)| t.contains("Action: delayed")).count();
    assert_eq!(delays, 1);
    assert!(w.deliveries().len() >= 3, "d@y.test retried");
}

#[test]
fn corrupt_and_foreign_files_set_aside() {
    let w = World::new();
    fs::write(w.queue().join("new").join("garbage"), b"hello\n").unwrap();
    fs::write(w.queue().join("new").join("777.1.1"), b"smtpd-queue 1\nid 777.1.1\ntime x\n\n").unwrap();
    write_queue_file(&w.queue(), "700.1.1", now(), "s@src.test", &["a@x.test"], &[], BODY);
    let k = start(&w, &[]);
    wait_for(20, "good one delivered, bad ones moved", || w.queued().is_empty());
    assert!(w.queue().join("bad/garbage").exists());
    assert!(w.queue().join("bad/777.1.1").exists());
    assert_eq!(w.accepted("a@x.test"), 1);
    assert!(k.0.try_wait_is_running());
    let log = w.log_after(k);
    assert!(log.contains("777.1.1: corrupt queue file: line 3: bad time: set aside"), "{log}");
}

trait Running {
    fn try_wait_is_running(&self) -> bool;
}
impl Running for std::process::Child {
    fn try_wait_is_running(&self) -> bool {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.id() as i32), None).is_ok()
    }
}

#[test]
fn kill_9_mid_delivery_then_restart() {
    let w = World::new();
    w.rules("slow@x.test sleep1\nbad@y.test h\n");
    write_queue_file(&w.queue(), "800.1.1", now(), "s@src.test", &["slow@x.test", "bad@y.test", "ok@z.test"], &[], BODY);
    let k = start(&w, &[]);
    // Wait until the fast ones are recorded and the slow one is in flight
    // (the DSN waits for the message's deliveries in flight).
    let state = w.queue().join("state/800.1.1");
    wait_for(20, "two outcomes recorded", || {
        let s = fs::read_to_string(&state).unwrap_or_default();
        s.contains("r F ") && s.contains("r D ") && w.out().join("sleeper").exists()
    });
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(k.pid()), nix::sys::signal::Signal::SIGKILL).unwrap();
    drop(k);
    // The fake smtp-remote in flight is an orphan now (it would report to
    // nobody): stop it, and restart queue-run.
    kill_sleeper(&w);
    let _k = start(&w, &[]);
    wait_for(30, "message finished after restart", || w.queued().is_empty());
    assert_eq!(w.accepted("slow@x.test"), 1);
    assert_eq!(w.accepted("ok@z.test"), 1, "a recorded delivery was repeated");
    assert_eq!(w.bounces().len(), 1, "bounced twice");
    assert_eq!(w.accepted("bad@y.test"), 0);
}

#[test]
fn sigterm_abandons_and_restart_retries() {
    let w = World::new();
    w.rules("slow@x.test sleep1\n");
    write_queue_file(&w.queue(), "900.1.1", now(), "s@src.test", &["slow@x.test"], &[], BODY);
    let mut k = start(&w, &[("TERM_GRACE", "0")]);
    wait_for(20, "attempt started", || w.deliveries().len() == 1);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(k.pid()), nix::sys::signal::Signal::SIGTERM).unwrap();
    let t = std::time::Instant::now();
    let st = k.0.wait().unwrap();
    assert!(st.success(), "{st:?}");
    assert!(t.elapsed().as_secs() < 10);
    assert_eq!(w.queued(), vec!["900.1.1".to_string()]);
    let _k = start(&w, &[]);
    wait_for(20, "delivered after restart", || w.queued().is_empty());
    assert_eq!(w.accepted("slow@x.test"), 1);
}

#[test]
fn state_not_recorded_nothing_acted_on() {
    let w = World::new();
    w.rules("bad@x.test h\n");
    let k = start(&w, &[]);
    wait_for(10, "state/ created", || w.queue().join("state").is_dir());
    // The state's work file cannot be written (as on a full disk): the
    // outcome cannot be recorded.
    let blocker = w.queue().join("state/.950.1.1.tmp");
    fs::create_dir(&blocker).unwrap();
    write_queue_file(&w.queue(), "950.1.1", now(), "s@src.test", &["bad@x.test"], &[], BODY);
    wait_for(10, "an attempt", || !w.deliveries().is_empty());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(w.bounces().is_empty(), "acted on an outcome that was not recorded");
    assert_eq!(w.queued(), vec!["950.1.1".to_string()]);
    // Repaired: retried, recorded, bounced once.
    fs::remove_dir(&blocker).unwrap();
    wait_for(120, "bounced after repair", || w.queued().is_empty());
    assert_eq!(w.bounces().len(), 1);
    let log = w.log_after(k);
    assert!(log.contains("950.1.1: unable to record the outcome"), "{log}");
}

#[test]
fn dsn_refused_for_good_is_dropped_not_retried_forever() {
    let w = World::new();
    w.rules("bad@x.test h\n");
    let q = w.dir.path().join("refusing-queue");
    support::exe::write(&q, "#!/bin/sh\ncat >/dev/null; cat <&1 >/dev/null; exit 31\n");
    write_queue_file(&w.queue(), "960.1.1", now(), "s@src.test", &["bad@x.test"], &[], BODY);
    let k = Kid(w.command(BIN).env("QMAILQUEUE", &q).spawn().unwrap());
    wait_for(20, "message finished", || w.queued().is_empty());
    let log = w.log_after(k);
    assert!(log.contains("960.1.1: DSN for <s@src.test> dropped: message refused (exit 31)"), "{log}");
}

#[test]
fn list_shows_each_recipient() {
    use std::os::unix::fs::MetadataExt;
    let w = World::new();
    let t = now() - 3700;
    write_queue_file(&w.queue(), "970.1.1", t, "s@src.test", &["a@x.test", "b@y.test", "c@z.test"], &[], BODY);
    fs::write(w.queue().join("new/971.1.1"), b"garbage\n").unwrap();
    let ino = fs::metadata(w.queue().join("new/970.1.1")).unwrap().ino();
    fs::create_dir_all(w.queue().join("state")).unwrap();
    let next = now() + 400;
    fs::write(
        w.queue().join("state/970.1.1"),
        format!("queue-run-state 1\nino {ino}\nr D 1 0 1 0 250+20ok\nr P 0 0 2 {next} 451+20later\nr P 0 0 0 0 \n"),
    )
    .unwrap();
    let out = w.command(BIN).arg("-l").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let size = fs::metadata(w.queue().join("new/970.1.1")).unwrap().len();
    assert!(text.starts_with(&format!("970.1.1  age 1h01m  {size} bytes  from <s@src.test>\n")), "{text}");
    assert!(text.contains("  <a@x.test>  delivered  250 ok\n"), "{text}");
    assert!(text.contains("  <b@y.test>  pending  attempts 2  next in 6m"), "{text}");
    assert!(text.contains("  <c@z.test>  pending  not tried yet\n"), "{text}");
    assert!(text.contains("971.1.1  unreadable: corrupt queue file"), "{text}");
    assert!(text.ends_with("1 messages\n"), "{text}");
    // Listing changes nothing.
    assert_eq!(w.queued(), vec!["970.1.1".to_string(), "971.1.1".to_string()]);
}

#[test]
fn corrupt_state_set_aside_message_delivered() {
    let w = World::new();
    write_queue_file(&w.queue(), "980.1.1", now(), "s@src.test", &["a@x.test"], &[], BODY);
    fs::create_dir_all(w.queue().join("state")).unwrap();
    fs::write(w.queue().join("state/980.1.1"), b"not a state file\n").unwrap();
    let k = start(&w, &[]);
    wait_for(20, "delivered", || w.queued().is_empty());
    assert!(w.queue().join("bad/980.1.1.state").exists());
    assert_eq!(w.accepted("a@x.test"), 1);
    assert!(w.log_after(k).contains("980.1.1: state file unusable"));
}

#[test]
fn control_characters_never_reach_smtp_remote_nor_the_log() {
    // Files from a writer that did not check (an older or a foreign one):
    // such an address is never passed to smtp-remote (issue 16, point 6),
    // fails for good, and is escaped in the log and in the DSN.
    let w = World::new();
    write_queue_file(&w.queue(), "600.1.1", now(), "s@src.test", &["ok@x.test", "x@x.test>\r\nRSET"], &[], BODY);
    write_queue_file(&w.queue(), "600.1.2", now(), "s@src.test\r\nRSET", &["b@x.test"], &[], BODY);
    let k = start(&w, &[("DOUBLEBOUNCETO", "pm@mx.test")]);
    wait_for(20, "both messages done", || w.queued().is_empty() && w.bounces().len() == 2);
    let log = w.log_after(k);
    assert_eq!(w.deliveries(), vec![vec!["x.test".to_string(), "s@src.test".into(), "ok@x.test".into()]], "{log}");
    assert!(!log.lines().any(|l| l.starts_with("RSET")) && !log.contains('\r'), "{log}");
    assert!(log.contains("<x@x.test>\\r\\nRSET> failed: Recipient address contains a control character"), "{log}");
    assert!(log.contains("600.1.2: delivery to (none): <b@x.test> failed: Sender address contains a control character"), "{log}");
    let b = w.bounces();
    let to_sender = b.iter().find(|(e, _)| e == b"F\0Ts@src.test\0\0").expect("DSN to the sender");
    assert!(to_sender.1.contains("Final-Recipient: rfc822; x@x.test>\\r\\nRSET\n"), "{}", to_sender.1);
    assert!(!to_sender.1.contains("\nRSET"), "{}", to_sender.1);
    // The other one cannot go back to its sender: to the postmaster.
    assert!(b.iter().any(|(e, m)| e == b"F#@[]\0Tpm@mx.test\0\0" && m.contains("Status: 5.1.7")), "{b:?}");
}

/// The boundary of a DSN's multipart/report, from its Content-Type.
fn boundary_of(dsn: &str) -> String {
    let at = dsn.find("boundary=\"").expect("a boundary parameter") + "boundary=\"".len();
    dsn[at..].split('"').next().unwrap().to_string()
}

#[test]
fn dsn_boundary_is_random_and_not_in_the_returned_message() {
    // Issue 16, point 14: the boundary was `<now>.<queue id>/<host>`, and the
    // client learns its queue id from the 250 reply: a message carrying
    // `--<that>--` closed the multipart inside the returned original.
    let w = World::new();
    w.rules("bad@x.test h\n");
    let id = "900.1.1";
    let t = now();
    let mut body = b"Subject: crafted\n\n".to_vec();
    for s in t.saturating_sub(5)..t + 60 {
        body.extend_from_slice(format!("--{s}.{id}/mx.test--\n--{s}.{id}/mx.test\nContent-Type: text/plain\n\nforged part\n").as_bytes());
    }
    write_queue_file(&w.queue(), id, t, "s@src.test", &["bad@x.test"], &[], &body);
    let k = start(&w, &[]);
    wait_for(20, "the DSN", || w.bounces().len() == 1);
    drop(k);
    let dsn = w.bounces().remove(0).1;
    let b = boundary_of(&dsn);
    assert!(!b.contains(id) && !b.contains("mx.test"), "predictable boundary {b:?}");
    assert!(b.len() >= 32 && b.len() <= 70, "{b:?}");
    // The multipart ends once, at the end, and the original is whole inside it.
    assert_eq!(dsn.matches(&format!("--{b}--")).count(), 1, "{dsn}");
    assert!(dsn.ends_with(&format!("\n--{b}--\n")));
    assert_eq!(dsn.matches(&format!("\n--{b}\n")).count(), 3);
    let third = dsn.rsplit(&format!("\n--{b}\n")).next().unwrap();
    assert!(third.contains(&String::from_utf8_lossy(&body).into_owned()), "original not whole in the third part");
    // Two DSNs never share a boundary.
    let w2 = World::new();
    w2.rules("bad@x.test h\n");
    write_queue_file(&w2.queue(), id, t, "s@src.test", &["bad@x.test"], &[], b"S: x\n\nb\n");
    let k2 = start(&w2, &[]);
    wait_for(20, "the second DSN", || w2.bounces().len() == 1);
    drop(k2);
    assert_ne!(boundary_of(&w2.bounces()[0].1), b);
}

#[test]
fn dsn_status_and_diagnostic_follow_the_remote_reply() {
    // Issue 17, point 13. A recipient the remote keeps deferring with 451
    // 4.2.0: the delay DSN and then, after the lifetime, the failure DSN
    // both say 4.2.0 with the reply as an smtp diagnostic; queue-run's own
    // reasons are X-Local.
    let w = World::new();
    w.rules("d@y.test s\n");
    write_queue_file(&w.queue(), "950.1.1", now(), "s@src.test", &["d@y.test", "nodomain"], &[("RCPT.0.NOTIFY", "DELAY,FAILURE")], BODY);
    let k = start(&w, &[("DELAY_WARNING", "1"), ("RETRY_SCHEDULE", "1"), ("QUEUE_LIFETIME", "4")]);
    wait_for(30, "delay and failure DSNs", || w.queued().is_empty());
    let log = w.log_after(k);
    let all: Vec<String> = w.bounces().into_iter().map(|(_, t)| t).collect();
    let delay = all.iter().find(|t| t.contains("Action: delayed")).unwrap_or_else(|| panic!("no delay DSN: {all:?}\n{log}"));
    assert!(delay.contains("Final-Recipient: rfc822; d@y.test\nAction: delayed\nStatus: 4.2.0\nDiagnostic-Code: smtp; 451 4.2.0 try later\n"), "{delay}");
    let fail = all.iter().find(|t| t.contains("Final-Recipient: rfc822; d@y.test\nAction: failed")).expect("a failure DSN for d@y.test");
    assert!(fail.contains("Action: failed\nStatus: 4.2.0\nDiagnostic-Code: smtp; 451 4.2.0 try later\n"), "{fail}");
    assert!(fail.contains("giving up"), "{fail}");
    let local = all.iter().find(|t| t.contains("Final-Recipient: rfc822; nodomain\n")).expect("a DSN for nodomain");
    assert!(local.contains("Action: failed\nStatus: 5.1.3\nDiagnostic-Code: X-Local; Recipient address has no domain. (#5.1.3)\n"), "{local}");
    for t in &all {
        assert!(!t.contains("Diagnostic-Code: smtp; Remote host said") && !t.contains("X-smtp-remote"), "{t}");
    }
}
