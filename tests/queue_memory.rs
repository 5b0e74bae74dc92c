//! Bounded memory: queue-inject's peak RSS does not grow with the message,
//! in either mode (measured with GNU time, Debian package `time`).
#[path = "support/queue.rs"]
mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use support::*;

const TIME: &str = "/usr/bin/time";
const BIG: usize = 20 << 20;

/// Peak RSS in KiB of queue-inject (with `args`) fed the qmail way or, in
/// session mode, with `session_input` on fd 0.
fn peak_rss(q: &Path, args: &[&str], msg: &[u8], session_input: Option<&[u8]>) -> u64 {
    assert!(Path::new(TIME).exists(), "{TIME} missing: install the Debian package `time`");
    let out = q.parent().unwrap().join("rss");
    let mut c = Command::new(TIME);
    c.arg("-f").arg("%M").arg("-o").arg(&out).arg(BIN).args(args).env("QUEUE_DIR", q);
    let code = match session_input {
        None => qmail_style(c, msg, &envelope("a@b", &["c@d"])).code,
        Some(input) => {
            let (ans, o) = session(c, input);
            assert!(ans.iter().all(|a| a.starts_with("0 ")), "{ans:?}");
            o.code
        }
    };
    assert_eq!(code, 0);
    fs::read_to_string(&out).unwrap().trim().parse().expect("rss figure")
}

#[test]
fn rss_does_not_grow_with_the_message() {
    let (_d, q) = scratch();
    let big: Vec<u8> = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123\n"
        .iter()
        .copied()
        .cycle()
        .take(BIG)
        .collect();
    let small = b"Subject: x\n\nhi\n";
    let per_small = peak_rss(&q, &[], small, None);
    let per_big = peak_rss(&q, &[], &big, None);
    let env = envelope("a@b", &["c@d"]);
    let sess_small = peak_rss(&q, &[], b"", Some(&message_frames(&env, None, small)));
    let sess_big = peak_rss(&q, &[], b"", Some(&message_frames(&env, None, &big)));
    eprintln!("peak RSS KiB: per-message {per_small} / {per_big}, session {sess_small} / {sess_big}");
    // Buffers are 64 KiB each; allow some allocator slack, far below 20 MiB.
    assert!(per_big < per_small + 512, "per-message mode grew: {per_small} -> {per_big} KiB");
    assert!(sess_big < sess_small + 512, "session mode grew: {sess_small} -> {sess_big} KiB");
    assert_eq!(read_queue(&q).len(), 4);
}
