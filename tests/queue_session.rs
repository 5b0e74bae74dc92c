//! queue-inject -s: many messages over one framed channel (doc/PROTOCOLS.md
//! section 2), driven by a small client.
#[path = "support/queue.rs"]
mod support;

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

#[test]
fn many_messages_one_process_byte_exact() {
    let (_d, q) = scratch();
    let msgs = testdata();
    let mut input = Vec::new();
    for (i, (_, m)) in msgs.iter().enumerate() {
        input.extend(message_frames(&envelope("s@example.com", &[&format!("r{i}@example.org")]), None, m));
    }
    let (ans, o) = session(inject_cmd(&q), &input);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(ans.len(), msgs.len());
    let queued = read_queue(&q);
    assert_eq!(queued.len(), msgs.len());
    let pid = ans[0].split('.').nth(1).unwrap().to_string();
    for (i, a) in ans.iter().enumerate() {
        let id = a.strip_prefix("0 ").unwrap_or_else(|| panic!("answer {a}"));
        assert_eq!(id.split('.').nth(1), Some(pid.as_str()), "one process");
        assert_eq!(id.rsplit('.').next(), Some((i + 1).to_string().as_str()), "sequence");
        let (_, h, body) = queued.iter().find(|(n, _, _)| n == id).expect("answered id is queued");
        assert_eq!(h.envelope.recipients, vec![format!("r{i}@example.org").into_bytes()]);
        assert_eq!(body, &msgs[i].1, "message {i} byte-exact");
    }
    assert_eq!(count(&q.join("tmp")), 0);
}

#[test]
fn big_message_streamed() {
    let (_d, q) = scratch();
    let msg: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let (ans, o) = session(inject_cmd(&q), &message_frames(&envelope("", &["c@d"]), None, &msg));
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(ans.len(), 1);
    assert!(read_queue(&q)[0].2 == msg);
}

#[test]
fn abandon_leaves_nothing() {
    let (_d, q) = scratch();
    let mut input = frame(b'E', &envelope("a@b", &["c@d"]));
    input.extend(frame(b'D', b"partial\n"));
    input.extend(frame(b'R', b""));
    input.extend(frame(b'E', &envelope("a@b", &["c@d"])));
    input.extend(frame(b'R', b""));
    input.extend(message_frames(&envelope("a@b", &["kept@d"]), None, b"kept\n"));
    let (ans, o) = session(inject_cmd(&q), &input);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(ans.len(), 1, "no answer for R");
    let queued = read_queue(&q);
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].2, b"kept\n");
    assert_eq!(count(&q.join("tmp")), 0);
}

#[test]
fn bad_frames_answer_91_and_end() {
    let good = message_frames(&envelope("a@b", &["c@d"]), None, b"ok\n");
    let e = frame(b'E', &envelope("a@b", &["c@d"]));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not a netstring", b"hello\r\n".to_vec()),
        ("missing comma", [&e[..], b"3:Dab;"].concat()),
        ("D before E", frame(b'D', b"x")),
        (". before E", frame(b'.', b"")),
        ("bad envelope", frame(b'E', b"Xa\0\0")),
        ("no recipient", frame(b'E', b"Fa\0\0")),
        ("bad attributes", [&e[..], &frame(b'A', b"no equals sign")].concat()),
        ("two A frames", [&e[..], &frame(b'A', b"X=1"), &frame(b'A', b"X=2")].concat()),
        ("unknown type", [&e[..], &frame(b'Q', b"")].concat()),
        ("E in a message", [&e[..], &frame(b'D', b"x"), &e].concat()),
        ("empty frame", [&e[..], b"0:,"].concat()),
        ("D frame over 64 KiB", [&e[..], &frame(b'D', &vec![b'x'; 65537])].concat()),
    ];
    for (what, bad) in cases {
        let (_d, q) = scratch();
        let mut input = good.clone();
        input.extend(&bad);
        input.extend(&good); // never reached
        let (ans, o) = session(inject_cmd(&q), &input);
        assert_eq!(o.code, 91, "{what}: {}", o.stderr);
        assert_eq!(ans.len(), 2, "{what}: {ans:?}");
        assert!(ans[0].starts_with("0 "), "{what}");
        assert!(ans[1].starts_with("91 "), "{what}: {}", ans[1]);
        assert!(o.stderr.starts_with("queue-inject: fatal: "), "{what}: {}", o.stderr);
        assert_eq!(read_queue(&q).len(), 1, "{what}");
        assert_eq!(count(&q.join("tmp")), 0, "{what}");
    }
}

#[test]
fn eof_mid_message_leaves_nothing() {
    let e = frame(b'E', &envelope("a@b", &["c@d"]));
    for tail in [&b""[..], b"9:Dpart", &frame(b'D', b"x")] {
        let (_d, q) = scratch();
        let input = [&e[..], tail].concat();
        let (ans, o) = session(inject_cmd(&q), &input);
        assert_eq!(o.code, 54, "{}", o.stderr);
        assert!(ans.is_empty());
        assert_eq!(count(&q.join("new")), 0);
        assert_eq!(count(&q.join("tmp")), 0);
    }
    // EOF between messages is the normal end.
    let (_d, q) = scratch();
    let (ans, o) = session(inject_cmd(&q), b"");
    assert_eq!((ans.len(), o.code), (0, 0));
}

#[test]
fn attributes_from_a_frame_or_queue_attrs() {
    let (_d, q) = scratch();
    let mut input = message_frames(
        &envelope("a@b", &["c@d"]),
        Some(b"BODY=8BITMIME\nRCPT.0.NOTIFY=SUCCESS,FAILURE\n"),
        b"1\n",
    );
    input.extend(message_frames(&envelope("a@b", &["c@d"]), None, b"2\n"));
    let mut c = inject_cmd(&q);
    c.env("QUEUE_ATTRS", "CLIENT_ADDR=192.0.2.1\n");
    let (ans, o) = session(c, &input);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let queued = read_queue(&q);
    let by_id = |a: &str| queued.iter().find(|(n, _, _)| n == &a[2..]).unwrap().1.attrs.clone();
    let a1 = by_id(&ans[0]);
    assert_eq!(a1.get("BODY"), Some(&b"8BITMIME"[..]));
    assert_eq!(a1.get("RCPT.0.NOTIFY"), Some(&b"SUCCESS,FAILURE"[..]));
    assert_eq!(a1.get("CLIENT_ADDR"), None, "an A frame replaces QUEUE_ATTRS");
    assert_eq!(by_id(&ans[1]).get("CLIENT_ADDR"), Some(&b"192.0.2.1"[..]));
}

#[test]
fn refused_message_then_session_goes_on() {
    let (_d, q) = scratch();
    let long = "x".repeat(1004);
    let mut input = message_frames(&envelope(&long, &["c@d"]), None, b"refused\n");
    input.extend(message_frames(&envelope("a@b", &["c@d"]), None, b"ok\n"));
    let (ans, o) = session(inject_cmd(&q), &input);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(ans.len(), 2);
    assert!(ans[0].starts_with("11 "), "{}", ans[0]);
    assert!(o.stderr.starts_with("queue-inject: warning: message not queued: 11 "), "{}", o.stderr);
    assert!(ans[1].starts_with("0 "), "{}", ans[1]);
    assert_eq!(read_queue(&q).len(), 1);
}

#[test]
fn control_character_in_an_address_answers_31_and_goes_on() {
    let (_d, q) = scratch();
    let mut input = message_frames(&envelope("a@b", &["x@example.net>\r\nRSET"]), None, b"refused\n");
    input.extend(message_frames(&envelope("a@b\x7f", &["c@d"]), None, b"refused too\n"));
    input.extend(message_frames(&envelope("a@b", &["c@d"]), None, b"ok\n"));
    let (ans, o) = session(inject_cmd(&q), &input);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(ans.len(), 3, "{ans:?}");
    assert!(ans[0].starts_with("31 ") && ans[0].contains("control character"), "{}", ans[0]);
    assert!(ans[1].starts_with("31 "), "{}", ans[1]);
    assert!(ans[2].starts_with("0 "), "{}", ans[2]);
    assert_eq!(read_queue(&q).len(), 1);
}

#[test]
fn disk_full_answers_53_and_goes_on() {
    let (_d, q) = scratch();
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("ulimit -f 16 && exec \"$0\" \"$@\"")
        .arg(BIN)
        .env("QUEUE_DIR", &q)
        .env_remove("QUEUE_ATTRS");
    let mut input = message_frames(&envelope("a@b", &["c@d"]), None, &vec![b'z'; 300_000]);
    input.extend(message_frames(&envelope("a@b", &["c@d"]), None, b"small\n"));
    let (ans, o) = session(c, &input);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(ans.len(), 2, "{ans:?}");
    assert!(ans[0].starts_with("53 ") && ans[0].contains("disk full"), "{}", ans[0]);
    assert!(ans[1].starts_with("0 "), "{}", ans[1]);
    let queued = read_queue(&q);
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].2, b"small\n");
    assert_eq!(count(&q.join("tmp")), 0);
}

#[test]
fn missing_queue_dir_ends_session_with_55() {
    let (d, _q) = scratch();
    let (ans, o) = session(
        inject_cmd(&d.path().join("absent")),
        &message_frames(&envelope("a@b", &["c@d"]), None, b"x\n"),
    );
    assert_eq!(o.code, 55, "{}", o.stderr);
    assert!(ans.is_empty());
}

#[test]
fn stuck_writer_mid_message_is_52() {
    let (_d, q) = scratch();
    let mut c = inject_cmd(&q);
    c.env("QUEUE_TIMEOUT", "1").arg("-s").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&frame(b'E', &envelope("a@b", &["c@d"]))).unwrap();
    stdin.write_all(&frame(b'D', b"half")).unwrap();
    let o = finish(&mut child); // stdin kept open
    drop(stdin);
    assert_eq!(o.code, 52, "{}", o.stderr);
    assert_eq!(count(&q.join("new")), 0);
    assert_eq!(count(&q.join("tmp")), 0);
}

#[test]
fn session_start_removes_old_leftovers() {
    let (_d, q) = scratch();
    fs::create_dir(q.join("tmp")).unwrap();
    fs::write(q.join("tmp/old"), b"crash leftover").unwrap();
    fs::write(q.join("tmp/fresh"), b"in progress").unwrap();
    age(&q.join("tmp/old"), Duration::from_secs(37 * 3600));
    let (_, o) = session(inject_cmd(&q), b"");
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(!q.join("tmp/old").exists());
    assert!(q.join("tmp/fresh").exists());
}

/// Set a file's times `by` into the past.
fn age(p: &std::path::Path, by: Duration) {
    let t = std::time::SystemTime::now() - by;
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t)).unwrap();
}

/// One session through a zygote's child: frames in, answers out to EOF.
fn made_session(m: smtpd::queue::zygote::Made, input: &[u8]) -> Vec<String> {
    use std::io::Read;
    let smtpd::queue::zygote::Made { mut to, mut from, .. } = m;
    to.write_all(input).unwrap();
    drop(to);
    let mut out = Vec::new();
    from.read_to_end(&mut out).unwrap();
    answers(&out)
}

#[test]
fn zygote_forks_a_fresh_session_process_per_request() {
    use smtpd::queue::zygote::Zygote;
    let (_d, q) = scratch();
    let mut z = Zygote::start_command(inject_cmd(&q)).expect("queue-inject -z starts and says ready");
    let zpid = z.pid();
    let made: Vec<_> = (0..3).map(|_| z.make().expect("a child")).collect();
    let pids: Vec<u32> = made.iter().map(|m| m.pid).collect();
    let mut uniq = pids.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 3, "three processes: {pids:?}");
    assert!(!pids.contains(&zpid));
    // Each child is queue-inject -s of its own: ids from its own pid, from 1,
    // and none made from its parent's parent (the zygote's parent, this
    // test, whose ids all the siblings would otherwise accept).
    let stolen = format!("1700000000.{}.7", std::process::id());
    let mut all = Vec::new();
    for (i, m) in made.into_iter().enumerate() {
        let pid = m.pid;
        let mut input = frame(b'I', stolen.as_bytes());
        input.extend(frame(b'E', &envelope("a@b", &[&format!("r{i}@d")])));
        input.extend(frame(b'D', b"one\n"));
        input.extend(frame(b'.', b""));
        input.extend(message_frames(&envelope("a@b", &["c@d"]), None, b"two\n"));
        let ans = made_session(m, &input);
        assert_eq!(ans.len(), 2, "{ans:?}");
        for (n, a) in ans.iter().enumerate() {
            let id = a.strip_prefix("0 ").unwrap_or_else(|| panic!("answer {a}"));
            assert_eq!(id.split('.').nth(1), Some(pid.to_string().as_str()), "{id}");
            assert_eq!(id.rsplit('.').next(), Some((n + 1).to_string().as_str()), "{id}");
        }
        all.extend(ans);
    }
    assert_eq!(read_queue(&q).len(), 6);
    assert_eq!(count(&q.join("tmp")), 0);
    // A child outlives the zygote: EOF on the channel ends only the zygote.
    let late = z.make().unwrap();
    let st = z.close().unwrap();
    assert!(st.success(), "{st:?}");
    assert_eq!(made_session(late, &message_frames(&envelope("a@b", &["c@d"]), None, b"late\n")).len(), 1);
    assert_eq!(read_queue(&q).len(), 7);
}

#[test]
fn zygote_refuses_to_start_without_a_queue_or_support() {
    use smtpd::queue::zygote::Zygote;
    let (_d, q) = scratch();
    // No queue there: it says why on stderr and never says ready.
    let mut cmd = inject_cmd(&q.join("missing"));
    cmd.stderr(Stdio::null());
    assert!(Zygote::start_command(cmd).is_err());
    // A program that knows no -z (true exits at once).
    assert!(Zygote::start_command(Command::new("true")).is_err());
}
