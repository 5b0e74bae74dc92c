//! DKIM signing of outbound mail through the real chain: queue file ->
//! queue-run (DKIM_SIGN) -> smtp-remote -> an aiosmtpd server on loopback
//! (tests/support/dkim_sink.py), and what that server received verified by
//! dkimpy and by OpenDKIM's opendkim-testmsg (in private namespaces with a
//! fake DNS), with the DNS records that `queue-run --dkim-record` printed.
//! Keys made by openssl at test time: RSA-2048 and Ed25519, relaxed and
//! simple, for every message of tests/data/messages and the edge cases of
//! support/dkim.rs, a 50 MB message in bounded memory, one signature per
//! message whatever the destinations and retries, key problems that defer,
//! a bad table that is fatal, a foreign QMAILREMOTE fed on a pipe, and
//! smtp-remote's PREPEND attribute on its own.
#[path = "support/peers.rs"]
mod support;
#[path = "support/dkim.rs"]
mod dkim_support;
#[path = "support/dkim_verifiers.rs"]
mod verifiers;
#[path = "support/queuerun.rs"]
mod qr;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use dkim_support::*;
use qr::{wait_for, write_queue_file, Kid, World};
use smtpd::dkim::canon::lf_to_crlf;
use smtpd::dkim::header;
use smtpd::dkim::tags::TagList;
use smtpd::queuerun::signtable::ascii_domain;
use verifiers::{dkimpy, opendkim, Records};

const QUEUE_RUN: &str = env!("CARGO_BIN_EXE_queue-run");
const QUEUE_INJECT: &str = env!("CARGO_BIN_EXE_queue-inject");
const SMTP_REMOTE: &str = env!("CARGO_BIN_EXE_smtp-remote");

/// The aiosmtpd server (tests/support/dkim_sink.py).
struct Sink(qr::Sink);

/// One message as the server received it.
struct Got {
    mail_opts: String,
    rcpts: Vec<String>,
    msg: Vec<u8>,
}

impl Sink {
    fn start(w: &World) -> Sink {
        Sink(qr::Sink::start_script(w, "dkim_sink.py"))
    }

    fn received(&self) -> Vec<Got> {
        self.0
            .received()
            .into_iter()
            .map(|(env, msg)| {
                // MAIL FROM, its parameters, then the recipients.
                let mut lines = env.into_iter().skip(1);
                let mail_opts = lines.next().unwrap_or_default();
                Got { mail_opts, rcpts: lines.collect(), msg }
            })
            .collect()
    }
}

/// Keys by openssl, readable by their owner only (as queue-run(8) asks).
fn keys() -> Keys {
    let k = make_keys();
    for p in [&k.rsa_pkcs8, &k.rsa_pkcs1, &k.ed25519] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap();
    }
    k
}

/// queue-run with the real smtp-remote, routed to the sink, signing with `table`.
fn queue_run(w: &World, table: &Path, extra: &[(&str, &str)]) -> Kid {
    let mut c = w.command(QUEUE_RUN);
    c.env("SMTP_REMOTE", SMTP_REMOTE)
        .env("SMTPROUTES", w.dir.path().join("routes"))
        .env("HELOHOST", "relay.test")
        .env("SMTP_TLS", "none")
        .env("DKIM_SIGN", table);
    for (k, v) in extra {
        if v.is_empty() {
            c.env_remove(k);
        } else {
            c.env(k, v);
        }
    }
    Kid(c.spawn().unwrap())
}

/// What `queue-run --dkim-record` prints for `table`, as DNS records.
fn records(table: &Path) -> (Records, String) {
    let out = Command::new(QUEUE_RUN).arg("--dkim-record").env_clear().env("DKIM_SIGN", table).output().unwrap();
    assert!(out.status.success(), "--dkim-record: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    (Records::from_zone(&text), text)
}

/// The DKIM-Signature fields on top of a message, and where the rest starts.
fn top_signatures(msg: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let (h, _) = header::split_message(msg).expect("a header");
    let Ok(fields) = header::split_fields(h) else { return (Vec::new(), 0) };
    let sigs: Vec<Vec<u8>> = fields.iter().take_while(|f| f.is("dkim-signature")).map(|f| f.raw.to_vec()).collect();
    let len = sigs.iter().map(Vec::len).sum();
    (sigs, len)
}

fn tag(field: &[u8], name: &str) -> String {
    let value = &field[field.iter().position(|&b| b == b':').unwrap() + 1..];
    let value = value.strip_suffix(b"\r\n").unwrap_or(value);
    let tags = TagList::parse(value).expect("tag list");
    String::from_utf8_lossy(tags.get(name).unwrap_or_default()).into_owned()
}

/// Only signature `keep` of those on top (the others are independent of it:
/// no signature covers another), for opendkim-testmsg, which reports one
/// result per message.
fn only_signature(msg: &[u8], keep: usize) -> Vec<u8> {
    let (sigs, len) = top_signatures(msg);
    [sigs[keep].clone(), msg[len..].to_vec()].concat()
}

fn queue_id(i: usize) -> String {
    format!("1700000000.{}.1", 1000 + i)
}

/// Every test message and edge case, signed by queue-run with four keys per
/// author domain (RSA-2048 and Ed25519, each relaxed/relaxed and
/// simple/simple), arrives at the server unchanged below its four
/// signatures, and each signature verifies with dkimpy and with
/// opendkim-testmsg, using the records queue-run printed; one altered body
/// octet or signed header field fails with both. Messages without a usable
/// From are signed for the envelope sender's domain; those whose header
/// does not split into fields go unsigned (DKIM_UNSIGNABLE's default).
#[test]
fn every_message_signed_in_the_chain_verifies_with_dkimpy_and_opendkim() {
    let w = World::new();
    let k = keys();
    let mut corpus: Vec<(String, Vec<u8>)> = support::testdata_messages()
        .iter()
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), fs::read(p).unwrap()))
        .collect();
    corpus.extend(edge_messages());
    // The signing domain each message should get (None: unsigned).
    let expect: Vec<Option<String>> = corpus
        .iter()
        .map(|(_, m)| {
            let crlf = lf_to_crlf(m);
            let (h, _) = header::split_message(&crlf).ok()?;
            let fields = header::split_fields(h).ok()?;
            match header::from_domain(&fields) {
                Ok(d) => ascii_domain(&d).filter(|d| d.contains('.')),
                Err(_) => Some("env.example".to_string()),
            }
        })
        .collect();
    let domains: BTreeSet<&String> = expect.iter().flatten().collect();
    assert!(domains.len() >= 10, "{domains:?}");
    let mut table = String::from("# four signatures per domain\n");
    for d in &domains {
        let (rsa, ed) = (k.rsa_pkcs8.display(), k.ed25519.display());
        table.push_str(&format!("{d} rr {rsa} c=relaxed/relaxed\n{d} er {ed}\n{d} rs {rsa} c=simple/simple\n{d} es {ed} c=simple\n"));
    }
    let table_path = w.dir.path().join("signing");
    fs::write(&table_path, &table).unwrap();
    let (records, zone) = records(&table_path);
    assert_eq!(records.0.len(), 4 * domains.len(), "{zone}");
    for (i, (_, m)) in corpus.iter().enumerate() {
        write_queue_file(&w.queue(), &queue_id(i), qr::now(), "sender@env.example", &[&format!("m{i}@dest.example")], &[], m);
    }
    let sink = Sink::start(&w);
    let qrun = queue_run(&w, &table_path, &[]);
    wait_for(300, "every message at the server", || sink.received().len() >= corpus.len() && w.queued().is_empty());
    let log = w.log_after(qrun);
    let got = sink.received();
    assert_eq!(got.len(), corpus.len(), "{log}");
    assert!(w.bounces().is_empty(), "{log}");

    let dir = w.dir.path().join("verify");
    fs::create_dir_all(&dir).unwrap();
    let (mut py_jobs, mut py_want, mut od_jobs, mut od_want) = (String::new(), Vec::new(), String::new(), Vec::new());
    let mut unsigned = Vec::new();
    for g in &got {
        let i: usize = g.rcpts[0].trim_start_matches('m').split('@').next().unwrap().parse().unwrap();
        let (name, raw) = &corpus[i];
        let sent = lf_to_crlf(raw);
        let (sigs, len) = top_signatures(&g.msg);
        assert_eq!(&g.msg[len..], &sent[..], "{name}: the message below the signatures changed");
        let Some(d) = &expect[i] else {
            assert!(sigs.is_empty(), "{name}");
            unsigned.push(name.as_str());
            continue;
        };
        let what: Vec<(String, String, String, String)> =
            sigs.iter().map(|s| (tag(s, "d"), tag(s, "s"), tag(s, "a"), tag(s, "c"))).collect();
        let want = ["rr", "er", "rs", "es"].map(|s| {
            let a = if s.starts_with('r') { "rsa-sha256" } else { "ed25519-sha256" };
            let c = if s.ends_with('r') { "relaxed/relaxed" } else { "simple/simple" };
            (d.clone(), s.to_string(), a.to_string(), c.to_string())
        });
        assert_eq!(what, want, "{name}");
        assert!(sigs.iter().all(|s| tag(s, "l").is_empty() && !tag(s, "t").is_empty()), "{name}: no l=, a t=");
        let names = signed_names(&g.msg);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        for (what, m) in [("ok", g.msg.clone()), ("body", alter_body(&g.msg)), ("header", alter_header(&g.msg, &names))] {
            let path = dir.join(format!("{name}.{what}"));
            fs::write(&path, &m).unwrap();
            for (k, (_, sel, _, _)) in want.iter().enumerate() {
                let pass = if what == "ok" { "pass" } else { "fail" };
                py_jobs.push_str(&format!("verify\t{}\t{k}\n", path.display()));
                py_want.push((format!("{name} {sel} {what}"), pass));
                let one = dir.join(format!("{name}.{sel}.{what}"));
                fs::write(&one, only_signature(&m, k)).unwrap();
                od_jobs.push_str(&format!("verify\t{}\n", one.display()));
                let od = if what != "ok" {
                    "fail"
                } else if !rfc5322_counts_ok(&sent) {
                    "fail 70 opendkim-testmsg: dkim_chunk(): Syntax error"
                } else {
                    "pass"
                };
                od_want.push((format!("{name} {sel} {what}"), od));
            }
        }
    }
    unsigned.sort();
    let no_domain: Vec<&str> = corpus.iter().zip(&expect).filter(|(_, e)| e.is_none()).map(|((n, _), _)| n.as_str()).collect();
    assert_eq!(unsigned, no_domain);
    assert!(REFUSED.iter().all(|r| unsigned.contains(r)), "messages whose header does not split go unsigned: {unsigned:?}");
    for (who, answers, want) in [("dkimpy", dkimpy(&dir, &records, &py_jobs), &py_want), ("opendkim-testmsg", opendkim(&dir, &records, &od_jobs), &od_want)] {
        let wrong: Vec<String> = want
            .iter()
            .zip(&answers)
            .filter(|((_, w), got)| !got.starts_with(w))
            .map(|((what, w), got)| format!("{what}: {who} says {got}, expected {w}"))
            .collect();
        assert!(wrong.is_empty(), "{} of {} checks differ:\n{}", wrong.len(), want.len(), wrong.join("\n"));
        assert!(want.iter().filter(|(_, w)| *w == "pass").count() > 150, "{who}");
    }
    // The log says what was signed, and why some were not.
    assert_eq!(log.matches(": DKIM signed: d=").count(), corpus.len() - no_domain.len(), "{log}");
    assert!(log.contains("(envelope sender domain env.example)"), "{log}");
    assert!(log.contains(": not DKIM signed: the header cannot be signed: header line 1 is not a header field"), "{log}");
}

/// A 50 MB message is signed while streamed: queue-run's peak resident
/// memory (VmHWM) stays a few MB, and both signatures verify.
#[test]
fn fifty_megabytes_signed_in_bounded_memory() {
    let w = World::new();
    let k = keys();
    let table = w.dir.path().join("signing");
    fs::write(&table, format!("big.example ed {}\nbig.example rsa {} c=simple/simple\n", k.ed25519.display(), k.rsa_pkcs8.display())).unwrap();
    let line = "The quick brown fox jumps over the lazy dog;  trailing white space \t \n.leading dot and a bare\rCR\n";
    let mut msg = b"From: Big <big@big.example>\nTo: someone@dest.example\nSubject: fifty megabytes\nDate: Mon, 1 Jan 2024 10:00:00 +0000\nMessage-ID: <big@big.example>\n\n".to_vec();
    let body = line.repeat(50 * 1024 * 1024 / line.len());
    msg.extend_from_slice(body.as_bytes());
    write_queue_file(&w.queue(), &queue_id(0), qr::now(), "big@big.example", &["rcpt@dest.example"], &[], &msg);
    drop(body);
    let sink = Sink::start(&w);
    let qrun = queue_run(&w, &table, &[]);
    wait_for(300, "the 50 MB message at the server", || w.queued().is_empty() && sink.received().len() == 1);
    let status = fs::read_to_string(format!("/proc/{}/status", qrun.pid())).unwrap();
    let hwm_kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap();
    let log = w.log_after(qrun);
    assert!(log.contains(": DKIM signed: d=big.example s=ed a=ed25519-sha256, d=big.example s=rsa a=rsa-sha256"), "{log}");
    eprintln!("queue-run signing a {} MB message: VmHWM {hwm_kb} kB", msg.len() >> 20);
    assert!(hwm_kb < 12 * 1024, "queue-run's peak RSS was {hwm_kb} kB for a {} octet message", msg.len());
    let got = sink.received();
    let (sigs, len) = top_signatures(&got[0].msg);
    assert_eq!(sigs.len(), 2);
    assert!(got[0].msg[len..] == lf_to_crlf(&msg)[..], "the message changed");
    let (records, _) = records(&table);
    let dir = w.dir.path().join("verify");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big");
    fs::write(&path, &got[0].msg).unwrap();
    let py = dkimpy(&dir, &records, &format!("verify\t{0}\t0\nverify\t{0}\t1\n", path.display()));
    assert_eq!(py, ["pass", "pass"]);
    let mut jobs = String::new();
    for i in 0..2 {
        let one = dir.join(format!("big.{i}"));
        fs::write(&one, only_signature(&got[0].msg, i)).unwrap();
        jobs.push_str(&format!("verify\t{}\n", one.display()));
    }
    assert_eq!(opendkim(&dir, &records, &jobs), ["pass", "pass"]);
}

/// A message to three domains, one of which defers it once, is signed once:
/// every copy carries the same signature fields, the one delivered by a
/// second queue-run (after the first was stopped) too, read back from the
/// message's state file.
#[test]
fn one_signature_per_message_at_every_destination_and_retry() {
    let w = World::new();
    let k = keys();
    let table = w.dir.path().join("signing");
    fs::write(&table, format!("multi.example ed {}\nmulti.example rsa {}\n", k.ed25519.display(), k.rsa_pkcs1.display())).unwrap();
    let sink = Sink::start(&w);
    // Through the real queue-inject, as a local program would send it.
    let input = b"From: Sender <sender@multi.example>\nTo: a@one.example, b@two.example, grey@three.example\nSubject: once\n\nSigned once.\n";
    qr::sendmail_via_queue_inject(&w, "app.multi.example", &["-f", "sender@multi.example", "a@one.example", "b@two.example", "grey@three.example"], input);
    let id = w.queued().remove(0);
    let run1 = queue_run(&w, &table, &[("RETRY_SCHEDULE", "4"), ("QMAILQUEUE", QUEUE_INJECT)]);
    wait_for(60, "two copies at the server", || sink.received().len() == 2);
    // Every outcome recorded: two delivered, one deferred.
    let recorded = |s: &str| s.matches("\nr D ").count() == 2 && s.matches("\nr P ").count() == 1;
    wait_for(20, "the outcomes recorded", || fs::read_to_string(w.queue().join("state").join(&id)).is_ok_and(|s| recorded(&s)));
    drop(run1);
    let state = fs::read_to_string(w.queue().join("state").join(&id)).unwrap();
    assert!(state.contains("\ndkim ") && state.contains("DKIM-Signature:"), "{state}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let run2 = queue_run(&w, &table, &[("RETRY_SCHEDULE", "4"), ("QMAILQUEUE", QUEUE_INJECT)]);
    wait_for(60, "the third copy", || sink.received().len() == 3 && w.queued().is_empty());
    let log = w.log_after(run2);
    let got = sink.received();
    let sigs: Vec<Vec<Vec<u8>>> = got.iter().map(|g| top_signatures(&g.msg).0).collect();
    assert_eq!(sigs[0].len(), 2);
    assert!(sigs.iter().all(|s| *s == sigs[0]), "the copies carry different signatures");
    let rcpts: Vec<&str> = got.iter().flat_map(|g| g.rcpts.iter().map(String::as_str)).collect();
    assert_eq!(rcpts.iter().copied().collect::<BTreeSet<_>>(), ["a@one.example", "b@two.example", "grey@three.example"].into());
    assert_eq!(log.matches(": DKIM signed:").count(), 1, "{log}");
    let (records, _) = records(&table);
    let path = w.dir.path().join("copy");
    fs::write(&path, &got[2].msg).unwrap();
    assert_eq!(dkimpy(w.dir.path(), &records, &format!("verify\t{0}\t0\nverify\t{0}\t1\n", path.display())), ["pass", "pass"]);
}

/// A key that is too small, of the wrong type or missing: its domain's
/// mail is deferred with the reason, nothing of it reaches the server, and
/// other domains' mail goes on.
#[test]
fn key_problems_defer_and_nothing_is_sent_unsigned() {
    let w = World::new();
    let k = keys();
    let kd = k.dir.path();
    openssl(kd, &["genrsa", "-out", "rsa1024.pem", "1024"]);
    openssl(kd, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ec.pem"]);
    let table = w.dir.path().join("signing");
    let p = |f: &str| kd.join(f).display().to_string();
    fs::write(
        &table,
        format!(
            "small.example s {}\nec.example s {}\ngone.example s {}\nfine.example s {}\nmixed.example ed {}\nmixed.example gone {}\n",
            p("rsa1024.pem"),
            p("ec.pem"),
            p("missing.pem"),
            p("ed25519.pem"),
            p("ed25519.pem"),
            p("missing.pem")
        ),
    )
    .unwrap();
    for (i, d) in ["small", "ec", "gone", "fine", "mixed"].iter().enumerate() {
        let m = format!("From: someone@{d}.example\nSubject: {d}\n\nbody\n");
        write_queue_file(&w.queue(), &queue_id(i), qr::now(), &format!("someone@{d}.example"), &[&format!("{d}@dest.example")], &[], m.as_bytes());
    }
    let sink = Sink::start(&w);
    let qrun = queue_run(&w, &table, &[]);
    wait_for(30, "the fine message", || sink.received().len() == 1);
    // Retried every second: deferred again and again, never sent.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let list = Command::new(QUEUE_RUN).arg("--list").env_clear().env("QUEUE_DIR", w.queue()).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    let log = w.log_after(qrun);
    let got = sink.received();
    assert_eq!(got.len(), 1, "{log}");
    assert_eq!(got[0].rcpts, ["fine@dest.example"]);
    assert_eq!(top_signatures(&got[0].msg).0.len(), 1);
    assert_eq!(w.queued().len(), 4, "{log}");
    for want in [
        "DKIM key for small.example (selector s) unusable: ",
        "rsa1024.pem: RSA key of 1024 bits: signing needs 2048 to 4096 bits; not sent unsigned. (#4.3.0)",
        "ec.pem: unsupported key type: PKCS#8 key that is neither RSA nor Ed25519",
        "DKIM key for gone.example (selector s) unusable: ",
        "DKIM key for mixed.example (selector gone) unusable: ",
        "missing.pem: No such file or directory",
    ] {
        assert!(log.contains(want), "log lacks {want:?}:\n{log}");
        assert!(list.contains(want), "--list lacks {want:?}:\n{list}");
    }
    // At start, each unusable key is named once.
    assert!(log.contains(":1: key ") && log.contains("will be deferred"), "{log}");
    assert!(log.contains("DKIM signing: 6 lines of ") && log.contains("(4 keys unusable)"), "{log}");
    assert!(w.bounces().is_empty());
}

/// A bad line of the signing table is fatal at start, naming file and line;
/// on SIGHUP it is reported and the old table kept, which goes on signing.
#[test]
fn bad_table_fatal_at_start_kept_on_sighup() {
    let w = World::new();
    let k = keys();
    let table = w.dir.path().join("signing");
    fs::write(&table, format!("# table\nfine.example s {}\nfine.example\n", k.ed25519.display())).unwrap();
    let out = w.command(QUEUE_RUN).env("DKIM_SIGN", &table).stderr(Stdio::piped()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(100), "{err}");
    assert!(err.contains(&format!("queue-run: fatal: DKIM_SIGN {}:3: want: domain selector keyfile [options]", table.display())), "{err}");
    let out = w.command(QUEUE_RUN).env("DKIM_SIGN", w.dir.path().join("none")).stderr(Stdio::piped()).output().unwrap();
    assert_eq!(out.status.code(), Some(100));
    let out = w.command(QUEUE_RUN).env("DKIM_UNSIGNABLE", "maybe").stderr(Stdio::piped()).output().unwrap();
    assert_eq!(out.status.code(), Some(100));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DKIM_UNSIGNABLE=maybe"));

    fs::write(&table, format!("fine.example s {}\n", k.ed25519.display())).unwrap();
    let sink = Sink::start(&w);
    let qrun = queue_run(&w, &table, &[]);
    wait_for(20, "queue-run started", || fs::read_to_string(w.dir.path().join("queue-run.log")).is_ok_and(|l| l.contains("started")));
    fs::write(&table, "fine.example s k c=sideways\n").unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(qrun.pid()), nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_for(20, "the SIGHUP", || fs::read_to_string(w.dir.path().join("queue-run.log")).is_ok_and(|l| l.contains("old configuration kept")));
    write_queue_file(&w.queue(), &queue_id(0), qr::now(), "a@fine.example", &["x@dest.example"], &[], b"From: a@fine.example\n\nstill signed\n");
    wait_for(30, "the message", || sink.received().len() == 1);
    let log = w.log_after(qrun);
    assert!(log.contains(&format!("SIGHUP: DKIM_SIGN {}:1: c=sideways: simple or relaxed, as header/body; old configuration kept", table.display())), "{log}");
    assert_eq!(top_signatures(&sink.received()[0].msg).0.len(), 1, "{log}");
}

/// A foreign qmail-remote (QMAILREMOTE) knows no PREPEND attribute: it gets
/// the signature fields and then the message on a pipe, and no PREPEND.
/// A PREPEND attribute in a queue file never reaches the wire.
#[test]
fn foreign_qmailremote_fed_on_a_pipe_and_queued_prepend_dropped() {
    let w = World::new();
    let k = keys();
    let table = w.dir.path().join("signing");
    fs::write(&table, format!("pipe.example ed {}\n", k.ed25519.display())).unwrap();
    let msg = b"From: <a@pipe.example>\nSubject: piped\n\n.dot line\nbody\n";
    let evil = [("PREPEND", "X-Injected: from the queue file\n"), ("BODY", "8BITMIME")];
    // Our smtp-remote named as a foreign qmail-remote: it reads the pipe.
    write_queue_file(&w.queue(), &queue_id(0), qr::now(), "a@pipe.example", &["x@dest.example"], &evil, msg);
    let sink = Sink::start(&w);
    let qrun = queue_run(&w, &table, &[("SMTP_REMOTE", ""), ("QMAILREMOTE", SMTP_REMOTE)]);
    wait_for(30, "the piped message", || sink.received().len() == 1 && w.queued().is_empty());
    drop(qrun);
    let got = sink.received().remove(0);
    let (sigs, len) = top_signatures(&got.msg);
    assert_eq!(sigs.len(), 1);
    assert_eq!(&got.msg[len..], &lf_to_crlf(msg)[..]);
    assert!(got.mail_opts.contains("BODY=8BITMIME"), "{}", got.mail_opts);
    let (records, _) = records(&table);
    let path = w.dir.path().join("piped");
    fs::write(&path, &got.msg).unwrap();
    assert_eq!(dkimpy(w.dir.path(), &records, &format!("verify\t{}\t0\n", path.display())), ["pass"]);

    // The fake qmail-remote records its QUEUE_ATTRS and its fd 0.
    write_queue_file(&w.queue(), &queue_id(1), qr::now(), "a@pipe.example", &["x@dest.example"], &evil, msg);
    let qrun = queue_run(&w, &table, &[("SMTP_REMOTE", ""), ("QMAILREMOTE", &w.dir.path().join("fake-remote").display().to_string())]);
    wait_for(30, "the fake remote's run", || w.queued().is_empty());
    drop(qrun);
    let attrs = fs::read_to_string(&w.recorded("attrs.")[0]).unwrap();
    assert_eq!(attrs, "BODY=8BITMIME\n");
    let fed = fs::read(&w.recorded("msg.")[0]).unwrap();
    assert!(fed.starts_with(b"DKIM-Signature: v=1; a=ed25519-sha256;"), "{}", String::from_utf8_lossy(&fed));
    assert!(fed.ends_with(msg) && !fed.windows(10).any(|x| x == b"X-Injected"));

    // Not signing (a domain not in the table): the queued PREPEND still goes.
    write_queue_file(&w.queue(), &queue_id(2), qr::now(), "a@other.example", &["y@dest.example"], &evil, b"From: a@other.example\n\nx\n");
    let qrun = queue_run(&w, &table, &[]);
    wait_for(30, "the unsigned message", || sink.received().len() == 2 && w.queued().is_empty());
    let log = w.log_after(qrun);
    assert!(log.contains(": not DKIM signed: From domain other.example is not in the signing table"), "{log}");
    assert_eq!(sink.received()[1].msg, lf_to_crlf(b"From: a@other.example\n\nx\n"));
}

/// smtp-remote on its own: the PREPEND attribute's fields go first, through
/// the same line-end conversion, and count in SIZE; a value that is not
/// header fields is a temporary failure and nothing is sent.
#[test]
fn smtp_remote_sends_prepend_first_and_counts_it_in_size() {
    let w = World::new();
    let sink = Sink::start(&w);
    let msg = b"Subject: x\n\n.dot\nbare\rCR\n";
    let file = w.dir.path().join("message");
    fs::write(&file, msg).unwrap();
    let remote = |prepend: &str| {
        let out = Command::new(SMTP_REMOTE)
            .args(["dest.example", "a@src.example", "b@dest.example"])
            .env_clear()
            .env("SMTPROUTES", w.dir.path().join("routes"))
            .env("HELOHOST", "relay.test")
            .env("SMTP_TLS", "none")
            .env("QUEUE_ATTRS", format!("BODY=7BIT\nPREPEND={}\n", qr::xtext(prepend.as_bytes())))
            .stdin(fs::File::open(&file).unwrap())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let fields = "DKIM-Signature: v=1; a=ed25519-sha256; d=src.example;\n\tb=AAAA\nX-Second: y\n";
    let report = remote(fields);
    assert!(report.starts_with("r") && report.contains("K127.0.0.1 accepted message"), "{report:?}");
    let got = sink.received().remove(0);
    let sent = lf_to_crlf(&[fields.as_bytes(), msg].concat());
    assert_eq!(got.msg, sent);
    assert!(got.mail_opts.split(' ').any(|o| o == format!("SIZE={}", sent.len())), "{} for {} octets", got.mail_opts, sent.len());
    let report = remote("X-Injected: 1\n\nA body\n");
    assert!(report.starts_with("ZUnable to read configuration: bad QUEUE_ATTRS: the PREPEND attribute"), "{report:?}");
    assert_eq!(sink.received().len(), 1);
}

/// `queue-run --dkim-record KEYFILE DOMAIN SELECTOR` prints the zone entry
/// of one key; the table form skips a second line of the same d= and s=
/// (a domain and its `.domain` line) and reports unusable keys.
#[test]
fn record_printer() {
    let k = keys();
    let out = Command::new(QUEUE_RUN).args(["--dkim-record"]).arg(&k.ed25519).args(["Example.COM", "sel"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, load(&k.ed25519).zone_entry("sel", "example.com"));
    let r = Records::from_zone(&text);
    assert_eq!(r.0[0].0, "sel._domainkey.example.com");
    assert_eq!(r.0[0].1.concat(), load(&k.ed25519).dns_record());
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t");
    fs::write(&table, format!("a.example s {0}\n.a.example s {0}\nb.example r {1}\nb.example x missing.pem\n", k.ed25519.display(), k.rsa_pkcs1.display())).unwrap();
    let out = Command::new(QUEUE_RUN).arg("--dkim-record").env_clear().env("DKIM_SIGN", &table).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(100), "{err}");
    let r = Records::from_zone(&text);
    assert_eq!(r.0.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["s._domainkey.a.example", "r._domainkey.b.example"]);
    assert!(r.0[1].1.concat().starts_with("v=DKIM1; k=rsa; p=MIIB"));
    assert!(err.contains(":4: key ") && err.contains("missing.pem") && err.contains("1 keys could not be used"), "{err}");
    for bad in [&["x", "y"][..], &["k", "localhost", "s"]] {
        let out = Command::new(QUEUE_RUN).arg("--dkim-record").args(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(100));
    }
}
