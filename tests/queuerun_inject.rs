//! queue-run and sendmail with the real queue-inject: messages queued by
//! sendmail are delivered byte-exact; DSNs are queued into the same queue
//! and delivered in turn; a DSN that fails goes once to the postmaster, and
//! a failing double bounce is dropped: no loop.

#[path = "support/queuerun.rs"]
mod support;

use support::*;

const QUEUE_RUN: &str = env!("CARGO_BIN_EXE_queue-run");
const QUEUE_INJECT: &str = env!("CARGO_BIN_EXE_queue-inject");

fn sendmail(w: &World, args: &[&str], input: &[u8]) {
    sendmail_via_queue_inject(w, "h.test", args, input);
}

#[test]
fn sendmail_to_queue_run_byte_exact() {
    let w = World::new();
    let body = "Subject: caf\u{e9}\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <1@h.test>\nFrom: app@h.test\n\n.leading dot\nlast\n";
    sendmail(&w, &["-oi", "-N", "FAILURE,DELAY", "-B", "8BITMIME", "a@x.test", "b@y.test"], body.as_bytes());
    assert_eq!(w.queued().len(), 1);
    let _k = Kid(w.command(QUEUE_RUN).env("QMAILQUEUE", QUEUE_INJECT).spawn().unwrap());
    wait_for(20, "delivered", || w.queued().is_empty());
    let msgs: Vec<Vec<u8>> = w.recorded("msg.").iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(msgs.len(), 2);
    assert!(msgs.iter().all(|m| m == body.as_bytes()));
    let mut d = w.deliveries();
    d.sort();
    assert_eq!(d, vec![vec!["x.test", "app@h.test", "a@x.test"], vec!["y.test", "app@h.test", "b@y.test"]]);
    // Each run sees its own recipient as RCPT.0.
    for p in w.recorded("attrs.") {
        let a = std::fs::read_to_string(p).unwrap();
        assert!(a.contains("BODY=8BITMIME\n") && a.contains("RCPT.0.NOTIFY=FAILURE,DELAY\n") && !a.contains("RCPT.1"), "{a}");
    }
}

#[test]
fn bounces_go_through_the_queue_and_never_loop() {
    let w = World::new();
    // The recipient fails; so does the sender (the bounce fails); so does the
    // postmaster (the double bounce fails, and is dropped).
    w.rules("bad@x.test h\napp@h.test h\npm@h.test h\n");
    sendmail(&w, &["-f", "app@h.test", "bad@x.test"], b"Subject: x\n\nbody\n");
    let k = Kid(w.command(QUEUE_RUN).env("QMAILQUEUE", QUEUE_INJECT).env("DOUBLEBOUNCETO", "pm@h.test").spawn().unwrap());
    wait_for(30, "everything finished", || w.queued().is_empty() && w.deliveries().len() >= 3);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(w.queued().is_empty());
    let d = w.deliveries();
    assert_eq!(d.len(), 3, "{d:?}");
    assert!(d.contains(&vec!["x.test".into(), "app@h.test".into(), "bad@x.test".into()]));
    // The DSN: null sender, to the original sender.
    assert!(d.contains(&vec!["h.test".into(), "".into(), "app@h.test".into()]));
    // The double bounce: sent with the null sender (#@[] in the queue), to the postmaster.
    assert!(d.contains(&vec!["h.test".into(), "".into(), "pm@h.test".into()]));
    let log = w.log_after(k);
    assert_eq!(log.matches("DSN (failure) queued").count(), 2, "{log}");
}
