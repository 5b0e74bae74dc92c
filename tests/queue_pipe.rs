//! queue-inject in per-message mode, driven as qmail-smtpd drives
//! qmail-queue: message on fd 0, envelope on fd 1, exit code mapped.
#[path = "support/queue.rs"]
mod support;

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

#[test]
fn testdata_round_trip_byte_exact() {
    let (_d, q) = scratch();
    let msgs = testdata();
    for (i, (name, msg)) in msgs.iter().enumerate() {
        let rcpt = format!("r{i}@example.org");
        let o =
            qmail_style(inject_cmd(&q), msg, &envelope("sender@example.com", &[&rcpt, "second@example.net"]));
        assert_eq!(o.code, 0, "{name}: {}", o.stderr);
        assert_eq!(qmail_reply(o.code), "250 ok");
    }
    let queued = read_queue(&q);
    assert_eq!(queued.len(), msgs.len());
    let mut bodies: Vec<_> =
        queued.iter().map(|(_, h, b)| (h.envelope.recipients[0].clone(), b.clone())).collect();
    bodies.sort();
    for (i, (_, msg)) in msgs.iter().enumerate() {
        let rcpt = format!("r{i}@example.org").into_bytes();
        let (_, body) = bodies.iter().find(|(r, _)| *r == rcpt).expect("message queued");
        assert_eq!(body, msg, "message {i} byte-exact");
    }
    for (_, h, _) in &queued {
        assert_eq!(h.envelope.sender, b"sender@example.com");
        assert_eq!(h.envelope.recipients[1], b"second@example.net");
        assert!(h.attrs.is_empty());
    }
    assert_eq!(count(&q.join("tmp")), 0, "no work file left");
}

#[test]
fn large_binary_message_and_odd_addresses() {
    // Larger than the 64 KiB buffer (goes through the spool file), every
    // octet value, no final newline.
    let (_d, q) = scratch();
    let msg: Vec<u8> = (0..3 * 65536 + 77).map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let env = smtpd::envelope::Envelope {
        sender: b"".to_vec(),
        recipients: vec!["jöe@例え.jp".as_bytes().to_vec(), b"\"a b\"+c=d\x80@x".to_vec()],
    };
    let o = qmail_style(inject_cmd(&q), &msg, &env.encode());
    assert_eq!(o.code, 0, "{}", o.stderr);
    let queued = read_queue(&q);
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].1.envelope, env);
    assert!(queued[0].2 == msg, "body differs");
    // Exactly the buffer size, and empty.
    for len in [65536, 0] {
        let (_d, q) = scratch();
        let msg = vec![b'x'; len];
        assert_eq!(qmail_style(inject_cmd(&q), &msg, &envelope("a@b", &["c@d"])).code, 0);
        assert_eq!(read_queue(&q)[0].2, msg);
    }
}

#[test]
fn queue_attrs_stored_and_checked() {
    let (_d, q) = scratch();
    let mut c = inject_cmd(&q);
    c.env("QUEUE_ATTRS", "BODY=8BITMIME\nSMTPUTF8=1\nCLIENT_HELO=a+20b\n");
    let o = qmail_style(c, b"hi\n", &envelope("a@b", &["c@d"]));
    assert_eq!(o.code, 0, "{}", o.stderr);
    let (_, h, _) = &read_queue(&q)[0];
    assert_eq!(h.attrs.get("BODY"), Some(&b"8BITMIME"[..]));
    assert_eq!(h.attrs.get("SMTPUTF8"), Some(&b"1"[..]));
    assert_eq!(h.attrs.get("CLIENT_HELO"), Some(&b"a b"[..]));
    let text = fs::read_to_string(q.join("new").join(&h.id)).unwrap();
    assert!(text.contains("\nattr BODY=8BITMIME\nattr SMTPUTF8=1\nattr CLIENT_HELO=a+20b\n\nhi\n"), "{text}");

    let (_d, q) = scratch();
    let mut c = inject_cmd(&q);
    c.env("QUEUE_ATTRS", "not an attribute\n");
    let o = qmail_style(c, b"hi\n", &envelope("a@b", &["c@d"]));
    assert_eq!(o.code, 91);
    assert!(o.stderr.starts_with("queue-inject: fatal: "), "{}", o.stderr);
    assert_eq!(count(&q.join("new")), 0);
}

#[test]
fn bad_envelopes() {
    let long = "x".repeat(1004);
    let cases: &[(&[u8], i32)] = &[
        (b"Xa@b\0Tc@d\0\0", 91),
        (b"Fa@b\0Xc@d\0\0", 91),
        (b"Fa@b\0\0", 91),     // no recipient: refused, unlike qmail-queue
        (b"Fa@b\0Tc@d", 54),   // EOF inside the envelope
        (b"Fa@b\0Tc@d\0", 54), // EOF before the final \0
        (b"", 54),
    ];
    for (env, code) in cases {
        let (_d, q) = scratch();
        let o = qmail_style(inject_cmd(&q), b"Subject: x\n\nhi\n", env);
        assert_eq!(o.code, *code, "{:?}: {}", String::from_utf8_lossy(env), o.stderr);
        assert!(
            o.stderr.starts_with("queue-inject: fatal: ") && o.stderr.lines().count() == 1,
            "{}",
            o.stderr
        );
        assert_eq!(count(&q.join("new")), 0);
        assert_eq!(count(&q.join("tmp")), 0);
    }
    for env in [envelope(&long, &["c@d"]), envelope("a@b", &["c@d", &long])] {
        let (_d, q) = scratch();
        let o = qmail_style(inject_cmd(&q), b"hi\n", &env);
        assert_eq!(o.code, 11, "{}", o.stderr);
        assert_eq!(qmail_reply(o.code), "554 qq envelope address too long (#5.1.3)");
        assert_eq!(count(&q.join("new")), 0);
    }
    // The longest address qmail-queue takes (1003 octets) is fine.
    let (_d, q) = scratch();
    let ok = "y".repeat(1003);
    assert_eq!(qmail_style(inject_cmd(&q), b"hi\n", &envelope(&ok, &[&ok])).code, 0);
}

#[test]
fn missing_queue_dir_is_55_and_bad_one_61() {
    let (d, _q) = scratch();
    let o = qmail_style(inject_cmd(&d.path().join("absent")), b"hi\n", &envelope("a@b", &["c@d"]));
    assert_eq!(o.code, 55, "{}", o.stderr);
    assert!(o.stderr.contains("no queue at"), "{}", o.stderr);
    assert_eq!(qmail_reply(o.code), "451 qq unable to read configuration (#4.3.0)");
    fs::write(d.path().join("file"), b"").unwrap();
    let o = qmail_style(inject_cmd(&d.path().join("file")), b"hi\n", &envelope("a@b", &["c@d"]));
    assert_eq!(o.code, 61, "{}", o.stderr);
}

#[test]
fn creates_tmp_and_new_with_mode_0700() {
    use std::os::unix::fs::PermissionsExt;
    let (_d, q) = scratch();
    assert_eq!(qmail_style(inject_cmd(&q), b"hi\n", &envelope("a@b", &["c@d"])).code, 0);
    for sub in ["tmp", "new"] {
        assert_eq!(fs::metadata(q.join(sub)).unwrap().permissions().mode() & 0o777, 0o700);
    }
}

#[test]
fn unreadable_message_is_54() {
    // fd 0 open for writing only: read(2) fails with EBADF.
    let (_d, q) = scratch();
    let w = fs::OpenOptions::new().write(true).open("/dev/null").unwrap();
    let (er, mut ew) = pipe();
    let mut c = inject_cmd(&q);
    c.stdin(Stdio::from(w)).stdout(Stdio::from(er)).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    drop(c);
    use std::io::Write;
    let _ = ew.write_all(&envelope("a@b", &["c@d"]));
    drop(ew);
    let o = finish(&mut child);
    assert_eq!(o.code, 54, "{}", o.stderr);
    assert_eq!(qmail_reply(o.code), "451 qq read error (#4.3.0)");
}

#[test]
fn stuck_writer_times_out_with_52() {
    let (_d, q) = scratch();
    let (mr, mut mw) = pipe();
    let (er, _ew) = pipe();
    let mut c = inject_cmd(&q);
    c.env("QUEUE_TIMEOUT", "1").stdin(Stdio::from(mr)).stdout(Stdio::from(er)).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = c.spawn().unwrap();
    drop(c);
    use std::io::Write;
    mw.write_all(b"half a message").unwrap();
    let o = finish(&mut child); // fd 0 never closed
    assert_eq!(o.code, 52, "{}", o.stderr);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(count(&q.join("new")), 0);
}

/// `ulimit -f` makes every file larger than the limit fail with EFBIG, as a
/// full disk would: exit 53, nothing in new/, nothing left in tmp/.
#[test]
fn disk_full_is_53_and_leaves_nothing() {
    for size in [200_000usize, 20_000] {
        let (_d, q) = scratch();
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("ulimit -f 16 && exec \"$0\"")
            .arg(BIN)
            .env("QUEUE_DIR", &q)
            .env_remove("QUEUE_ATTRS");
        let msg = vec![b'z'; size];
        let o = qmail_style(c, &msg, &envelope("a@b", &["c@d"]));
        assert_eq!(o.code, 53, "{size}: {}", o.stderr);
        assert!(o.stderr.contains("disk full"), "{}", o.stderr);
        assert_eq!(qmail_reply(o.code), "451 qq write error or disk full (#4.3.0)");
        assert_eq!(count(&q.join("new")), 0);
        assert_eq!(count(&q.join("tmp")), 0);
    }
}

#[test]
fn usage_errors() {
    let o = Command::new(BIN).arg("-x").stdin(Stdio::null()).output().unwrap();
    assert_eq!(o.status.code(), Some(100));
    let o = Command::new(BIN).args(["-s", "-c"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(o.status.code(), Some(100));
}

#[test]
fn default_queue_dir_is_documented_one() {
    let default = smtpd::queue::DEFAULT_QUEUE_DIR;
    let page = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/queue-inject.8")).unwrap();
    assert!(page.contains(default), "queue-inject(8) names the default {default}");
    if std::path::Path::new(default).exists() {
        return; // a real queue on this machine: do not write into it
    }
    let mut c = Command::new(BIN);
    c.env_remove("QUEUE_DIR");
    let o = qmail_style(c, b"hi\n", &envelope("a@b", &["c@d"]));
    assert_eq!(o.code, 55, "{}", o.stderr);
    assert!(o.stderr.contains(default), "{}", o.stderr);
}

/// Hardening: an envelope queue-inject accepts is one queue-run can read. 3000
/// recipients of 984 octets that xtext writes three times over would make an
/// 8.8 MB header: refused (11, nothing queued), where it used to be queued
/// and then set aside as corrupt by queue-run. Just under the limit: queued,
/// and the reader queue-run uses reads it back.
#[test]
fn envelope_too_large_for_the_reader_is_refused() {
    let addr = |i: usize, n: usize| {
        let mut a = format!("{i:05} ").into_bytes();
        a.resize(n - 2, b' '); // spaces: three octets each in xtext
        a.extend_from_slice(b"@x");
        a
    };
    let env = |n: usize, len: usize| smtpd::envelope::Envelope { sender: b"s@x".to_vec(), recipients: (0..n).map(|i| addr(i, len)).collect() };
    let (_d, q) = scratch();
    let o = qmail_style(inject_cmd(&q), b"Subject: x\n\nbig envelope\n", &env(3000, 984).encode());
    assert_eq!(o.code, 11, "refused as qmail-queue's 11: {}", o.stderr);
    assert!(o.stderr.contains("envelope too large"), "{}", o.stderr);
    assert_eq!(count(&q.join("new")), 0);
    assert_eq!(count(&q.join("tmp")), 0);
    // 2700 of them: about 8.0 MB, under the 8 MiB limit.
    let (_d, q) = scratch();
    let e = env(2700, 984);
    let o = qmail_style(inject_cmd(&q), b"Subject: x\n\nbig envelope\n", &e.encode());
    assert_eq!(o.code, 0, "{}", o.stderr);
    let name = fs::read_dir(q.join("new")).unwrap().next().unwrap().unwrap().path();
    let mut r = std::io::BufReader::new(fs::File::open(&name).unwrap());
    let (h, off) = smtpd::queue::format::read_header(&mut r).expect("queue-run's reader reads what queue-inject wrote");
    assert_eq!(h.envelope, e);
    assert!(off > 7_000_000, "{off}");
}

#[test]
fn control_characters_in_addresses_are_refused_with_31() {
    // CR LF in a recipient would become SMTP commands of their own at the
    // next hop (issue 16, point 6): refused for good, as qmail-smtpd reads 31
    // ("554 mail server permanently rejected message"), nothing queued.
    let smuggle = "x@example.net>\r\nRSET\r\nMAIL FROM:<ceo@bank.test>\r\nRCPT TO:<victim@example.net";
    for env in [
        envelope("me@host.test", &[smuggle]),
        envelope("me@host.test\n", &["a@b"]),
        envelope("me@host.test", &["a@b", "tab\t@b"]),
        envelope("me@host.test", &["del\x7f@b"]),
        envelope("esc\x1b@host.test", &["a@b"]),
    ] {
        let (_d, q) = scratch();
        let o = qmail_style(inject_cmd(&q), b"Subject: x\n\nhi\n", &env);
        assert_eq!(o.code, 31, "{:?}: {}", String::from_utf8_lossy(&env), o.stderr);
        assert_eq!(qmail_reply(o.code), "554 mail server permanently rejected message (#5.3.0)");
        assert!(o.stderr.starts_with("queue-inject: fatal: ") && o.stderr.contains("control character"), "{}", o.stderr);
        assert_eq!(count(&q.join("new")), 0);
        assert_eq!(count(&q.join("tmp")), 0);
    }
}
