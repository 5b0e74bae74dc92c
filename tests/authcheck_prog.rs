//! auth-check, the program, run as smtpd-rs runs it: the qmail-queue
//! protocol (message on fd 0, envelope on fd 1, notqmail's fd 6) and
//! session mode (frames), with queue-inject next and a fake DNS server on
//! loopback. Every queued message has our Authentication-Results field on
//! top (read back by python3-authres) and the AUTH_* attribute lines; a
//! forged field with our authserv-id is gone; the policies refuse with the
//! documented replies; a DNS failure is never a permanent refusal; what the
//! next program answers comes back unchanged; a large message passes
//! intact through the spool file.
#[path = "support/authcheck.rs"]
mod ac;
#[path = "support/dkim.rs"]
mod dkim_support;
#[path = "support/queue.rs"]
mod queue_support;
#[path = "support/remote.rs"]
mod remote_support;
#[path = "support/smtpd.rs"]
mod smtpd_support;

use ac::*;
use remote_support::{fake_dns, FakeDns, Rr, Zone};
use smtpd::dkim::canon::lf_to_crlf;
use smtpd::dkim::key::SigningKey;
use smtpd::dkim::sign::{sign_message, Signer};
use std::sync::Arc;

const ENV_ALICE: &[u8] = b"Falice@example.com\0Tbob@example.net\0\0";

fn attrs(ip: &str) -> String {
    format!("CLIENT_ADDR={ip}\nCLIENT_HELO=mail.example.com\nCLIENT_PROTO=ESMTP\n")
}

/// A key made by openssl at test time, loaded by our key reader.
fn ed_key() -> (Arc<SigningKey>, dkim_support::Keys) {
    let keys = dkim_support::make_keys();
    (dkim_support::load(&keys.ed25519), keys)
}

/// The zone of these tests: SPF and DMARC for example.com (p=reject),
/// example.org (p=quarantine), example.co.uk (p=none); a DKIM key.
fn zone(key: &SigningKey) -> Zone {
    let txt = |s: &str| Rr::Txt(vec![s.to_string()]);
    let mut z = Zone::new(false)
        .add("example.com", txt("v=spf1 ip4:192.0.2.0/24 -all"))
        .add("_dmarc.example.com", txt("v=DMARC1; p=reject"))
        .add("example.org", txt("v=spf1 ip4:192.0.2.0/24 -all"))
        .add("_dmarc.example.org", txt("v=DMARC1; p=quarantine"))
        .add("mail.example.com", txt("v=spf1 a -all"))
        .add("mail.example.com", Rr::A("192.0.2.1".parse().unwrap()))
        .add("sel._domainkey.example.com", Rr::Txt(key.txt_strings()))
        .add("fail.example", txt("v=spf1 -all"));
    z.servfail.push("temp.example".into());
    z.servfail.push("_dmarc.temp.example".into());
    z
}

fn dns(key: &SigningKey) -> FakeDns {
    fake_dns(zone(key))
}

/// `msg` (LF form) signed for example.com, selector sel, in LF form again.
fn signed(key: &Arc<SigningKey>, msg: &str) -> Vec<u8> {
    let s = Signer::new("example.com", "sel", key.clone()).unwrap();
    let crlf = lf_to_crlf(msg.as_bytes());
    let f = sign_message(&[&s], &crlf, dkim_support::NOW).unwrap().remove(0);
    [String::from_utf8(f).unwrap().replace("\r\n", "\n").into_bytes(), msg.as_bytes().to_vec()].concat()
}

const MSG: &str = "From: Alice <alice@example.com>\nTo: bob@example.net\nSubject: hello\n\
                   Authentication-Results: mx.test.example; dkim=pass header.d=paypal.com\n\
                   Authentication-Results: other.example; spf=pass smtp.mailfrom=x@other.example\n\nHello Bob.\n";

#[test]
fn per_message_annotates_and_queues() {
    let (key, _k) = ed_key();
    let d = dns(&key);
    let (_t, q) = scratch();
    let mut cmd = command(&q, &d.addr.to_string(), &[]);
    cmd.env("QUEUE_ATTRS", attrs("192.0.2.1"));
    let r = per_message(cmd, &signed(&key, MSG), ENV_ALICE);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("auth-check: info: accepted id ") && r.stderr.contains("spf=pass helo=pass dkim=pass:example.com dmarc=pass:example.com/none removed_forged_ar=1"), "{}", r.stderr);
    let m = queued(&q);
    assert_eq!(m.len(), 1);
    let m = &m[0];
    // Ours first, the forged one gone, the foreign one kept.
    assert!(m.header().starts_with("Authentication-Results: mx.test.example;\n\tspf=pass smtp.mailfrom=alice@example.com;\n"), "{}", m.header());
    let ar = m.auth_results();
    assert_eq!(ar.len(), 2, "{ar:?}");
    assert!(ar[1].starts_with("Authentication-Results: other.example;"));
    assert!(!m.header().contains("paypal"), "{}", m.header());
    let parsed = authres_parse(&ar);
    assert_eq!(parsed[0].0, ID);
    assert_eq!(verdicts(&parsed[0].1), ["spf=pass", "spf=pass", "dkim=pass", "dmarc=pass"]);
    assert!(parsed[0].1[2].props.contains(&"header.d=example.com".to_string()), "{:?}", parsed[0].1[2]);
    assert!(parsed[0].1[3].props.contains(&"header.from=example.com".to_string()));
    for (k, v) in [("AUTH_SPF", "pass"), ("AUTH_SPF_HELO", "pass"), ("AUTH_DKIM", "pass:example.com"), ("AUTH_DMARC", "pass"), ("AUTH_DMARC_POLICY", "none"), ("CLIENT_ADDR", "192.0.2.1")] {
        assert_eq!(m.attr(k), Some(v), "{k}: {:?}", m.attrs);
    }
    // The message below our field is what came in, less the forged field.
    let body = String::from_utf8_lossy(&m.message);
    let after = &body[body.find("DKIM-Signature:").unwrap()..];
    let sent = String::from_utf8(signed(&key, MSG)).unwrap();
    assert_eq!(after, sent.replace("Authentication-Results: mx.test.example; dkim=pass header.d=paypal.com\n", ""));
}

#[test]
fn policies_refuse_with_the_documented_replies() {
    let (key, _k) = ed_key();
    let d = dns(&key);
    let (_t, q) = scratch();
    let strict = [("AUTHCHECK_SPF", "reject"), ("AUTHCHECK_DMARC", "reject")];
    // SPF fail of MAIL FROM: 550 5.7.23, nothing queued.
    let mut cmd = command(&q, &d.addr.to_string(), &strict);
    cmd.env("QUEUE_ATTRS", attrs("203.0.113.5"));
    let r = per_message(cmd, MSG.as_bytes(), ENV_ALICE);
    assert_eq!((r.code, r.fd6.as_str()), (82, "D550 5.7.23 SPF fail: example.com does not allow 203.0.113.5 to send mail as alice@example.com"), "{r:?}");
    assert!(r.stderr.contains("auth-check: info: refused: 550 5.7.23"), "{}", r.stderr);
    // DMARC p=reject, SPF of another domain passes: 550 5.7.1 naming the policy.
    let mut cmd = command(&q, &d.addr.to_string(), &strict);
    cmd.env("QUEUE_ATTRS", attrs("192.0.2.1"));
    let r = per_message(cmd, MSG.as_bytes(), b"Fbounce@example.org\0Tbob@example.net\0\0");
    assert_eq!((r.code, r.fd6.as_str()), (82, "D550 5.7.1 Message refused by the DMARC policy of example.com (no aligned SPF or DKIM pass; p=reject)"), "{r:?}");
    assert!(queued(&q).is_empty());
    // The same two annotated only by default; p=quarantine is an attribute.
    for (ip, from, dom, spf, dmarc, policy) in [
        ("203.0.113.5", &b"Falice@example.com\0Tb@example.net\0\0"[..], "example.com", "fail", "fail", "reject"),
        ("192.0.2.1", b"Fbounce@example.com\0Tb@example.net\0\0", "example.org", "pass", "fail", "quarantine"),
    ] {
        let (_t, q) = scratch();
        let mut cmd = command(&q, &d.addr.to_string(), &[]);
        cmd.env("QUEUE_ATTRS", attrs(ip));
        let r = per_message(cmd, MSG.replace("alice@example.com>", &format!("alice@{dom}>")).as_bytes(), from);
        assert_eq!(r.code, 0, "{r:?}");
        let m = &queued(&q)[0];
        assert_eq!((m.attr("AUTH_SPF"), m.attr("AUTH_DMARC"), m.attr("AUTH_DMARC_POLICY")), (Some(spf), Some(dmarc), Some(policy)));
        let p = authres_parse(&m.auth_results()[..1]);
        assert_eq!(verdicts(&p[0].1).last().map(String::as_str), Some("dmarc=fail"));
        assert!(m.auth_results()[0].contains(&format!("(p={policy} dis={policy})")), "{}", m.auth_results()[0]);
    }
    // Without fd 6 (a caller that knows no 82): the plain permanent code 31.
    let mut cmd = command(&q, &d.addr.to_string(), &strict);
    cmd.env("QUEUE_ATTRS", attrs("203.0.113.5"));
    let out = ac_plain(cmd, MSG.as_bytes(), ENV_ALICE);
    assert_eq!(out, 31);
}

/// qmail-smtpd's way without fd 6.
fn ac_plain(cmd: std::process::Command, msg: &[u8], env: &[u8]) -> i32 {
    queue_support::qmail_style(cmd, msg, env).code
}

#[test]
fn dns_failures_annotate_or_defer_never_refuse() {
    let (key, _k) = ed_key();
    let d = dns(&key);
    let env = b"Fa@temp.example\0Tbob@example.net\0\0";
    let msg = "From: a@temp.example\nSubject: x\n\nbody\n";
    let (_t, q) = scratch();
    let strict = [("AUTHCHECK_SPF", "reject"), ("AUTHCHECK_DMARC", "reject")];
    let mut cmd = command(&q, &d.addr.to_string(), &strict);
    cmd.env("QUEUE_ATTRS", attrs("192.0.2.1"));
    let r = per_message(cmd, msg.as_bytes(), env);
    assert_eq!(r.code, 0, "{r:?}");
    let m = &queued(&q)[0];
    assert_eq!((m.attr("AUTH_SPF"), m.attr("AUTH_DMARC")), (Some("temperror"), Some("temperror")));
    let p = authres_parse(&m.auth_results());
    assert_eq!(verdicts(&p[0].1), ["spf=temperror", "spf=pass", "dmarc=temperror"]);
    let mut cmd = command(&q, &d.addr.to_string(), &[("AUTHCHECK_TEMPERROR", "defer")]);
    cmd.env("QUEUE_ATTRS", attrs("192.0.2.1"));
    let r = per_message(cmd, msg.as_bytes(), env);
    assert_eq!((r.code, r.fd6.as_str()), (82, "Z451 4.4.3 Temporary DNS failure in the SPF check of temp.example, try again later"));
    assert_eq!(queued(&q).len(), 1);
}

#[test]
fn authenticated_and_relay_clients_are_not_checked() {
    let (key, _k) = ed_key();
    let d = dns(&key);
    let strict = [("AUTHCHECK_SPF", "reject"), ("AUTHCHECK_DMARC", "reject")];
    for (extra, why) in [("CLIENT_LOGIN=alice\n", "login"), ("CLIENT_RELAY=1\n", "relay")] {
        let (_t, q) = scratch();
        let mut cmd = command(&q, &d.addr.to_string(), &strict);
        cmd.env("QUEUE_ATTRS", format!("{}{extra}", attrs("203.0.113.5")));
        let r = per_message(cmd, MSG.as_bytes(), ENV_ALICE);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.stderr.contains(&format!("skipped={why}")), "{}", r.stderr);
        let m = &queued(&q)[0];
        assert_eq!(m.attr("AUTH_SKIPPED"), Some(why));
        // No field of ours, but the forged one is still removed.
        assert_eq!(m.auth_results().len(), 1, "{}", m.header());
        assert!(m.auth_results()[0].contains("other.example"));
        assert!(d.queries.lock().unwrap().is_empty(), "no DNS for a skipped message: {:?}", d.queries.lock().unwrap());
    }
    // A plain qmail-smtpd before us: no block, the UCSPI environment.
    let (_t, q) = scratch();
    let mut cmd = command(&q, &d.addr.to_string(), &strict);
    cmd.env("TCPREMOTEIP", "203.0.113.5");
    let r = per_message(cmd, MSG.as_bytes(), ENV_ALICE);
    assert_eq!((r.code, &r.fd6[..15]), (82, "D550 5.7.23 SPF"), "{r:?}");
    let mut cmd = command(&q, &d.addr.to_string(), &strict);
    cmd.env("TCPREMOTEIP", "203.0.113.5").env("RELAYCLIENT", "");
    assert_eq!(per_message(cmd, MSG.as_bytes(), ENV_ALICE).code, 0);
}

#[test]
fn session_mode_passes_ids_and_answers_per_message() {
    let (key, _k) = ed_key();
    let d = dns(&key);
    let (_t, q) = scratch();
    let cmd = command(&q, &d.addr.to_string(), &[("AUTHCHECK_SPF", "reject")]);
    let good = signed(&key, MSG);
    let (answers, code, stderr) = session(cmd, |pid| {
        let a = attrs("192.0.2.1");
        let bad = attrs("203.0.113.5");
        [
            message_frames(Some(&format!("1700000000.{pid}.1")), ENV_ALICE, Some(&a), &good),
            message_frames(Some(&format!("1700000000.{pid}.2")), ENV_ALICE, Some(&bad), MSG.as_bytes()),
            frame(b'E', ENV_ALICE),
            frame(b'D', b"Subject: abandoned\n"),
            frame(b'R', b""),
            message_frames(None, b"Fb@example.com\0Tc@example.net\0\0", Some(&a), b"From: b@example.org\n\nx\n"),
        ]
        .concat()
    });
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(answers.len(), 3, "{answers:?} {stderr}");
    // The proposed id was passed on and taken (queue-inject is our child).
    assert!(answers[0].starts_with("0 1700000000.") && answers[0].ends_with(".1"), "{answers:?}");
    assert!(answers[1].starts_with("82 D550 5.7.23 SPF fail: "), "{answers:?}");
    assert!(answers[2].starts_with("0 "), "{answers:?}");
    let m = queued(&q);
    assert_eq!(m.len(), 2);
    assert_eq!(format!("0 {}", m[0].id), answers[0]);
    assert_eq!(m[1].attr("AUTH_DMARC_POLICY"), Some("quarantine"));
    assert!(stderr.matches("auth-check: info: ").count() == 3, "{stderr}");
    // A protocol error: answered 91, then the end.
    let (answers, code, _) = session(command(&q, &d.addr.to_string(), &[]), |_| [frame(b'D', b"x")].concat());
    assert_eq!((answers.len(), code), (1, 91));
    assert!(answers[0].starts_with("91 protocol error: "), "{answers:?}");
    // EOF inside a message: 54.
    let (_, code, _) = session(command(&q, &d.addr.to_string(), &[]), |_| frame(b'E', ENV_ALICE));
    assert_eq!(code, 54);
}

#[test]
fn the_next_programs_answer_comes_back_unchanged() {
    let (key, _k) = ed_key();
    let d = dns(&key);
    let (t, q) = scratch();
    let qq = smtpd_support::script(t.path(), "qq", smtpd_support::FAKE_QMAIL_QUEUE);
    let seen = t.path().join("seen");
    std::fs::create_dir(&seen).unwrap();
    for (exit, fd6, code, text) in [("31", "", 31, ""), ("82", "Dno thanks (#5.7.1)", 82, "Dno thanks (#5.7.1)"), ("0", "", 0, "")] {
        let mut cmd = command(&q, &d.addr.to_string(), &[]);
        cmd.env("AUTHCHECK_QUEUE", &qq).env("FAKEQQ_DIR", &seen).env("FAKEQQ_EXIT", exit).env("FAKEQQ_FD6", fd6);
        cmd.env("QUEUE_ATTRS", attrs("192.0.2.1"));
        let r = per_message(cmd, MSG.as_bytes(), ENV_ALICE);
        assert_eq!((r.code, r.fd6.as_str()), (code, text), "{r:?}");
    }
    // What the real-qmail-queue stand-in got: our field on top, the
    // envelope, and the attribute block in QUEUE_ATTRS.
    let got = smtpd_support::files(&seen, "msg.");
    assert!(got.iter().all(|m| m.starts_with(b"Authentication-Results: mx.test.example;")));
    let attrs = smtpd_support::files(&seen, "attrs.");
    assert!(attrs.iter().all(|a| String::from_utf8_lossy(a).contains("AUTH_SPF=pass\n")), "{attrs:?}");
    // Session mode: the next session program's answer, as it is.
    let qi = smtpd_support::script(t.path(), "qi", smtpd_support::FAKE_QUEUE_INJECT);
    let fake = t.path().join("fake");
    std::fs::create_dir(&fake).unwrap();
    let mut cmd = command(&q, &d.addr.to_string(), &[]);
    cmd.env("AUTHCHECK_QUEUE", &qi).env("FAKEQI_DIR", &fake).env("FAKEQI_CODE", "82 Zgreylisted, try later (#4.7.1)");
    let (answers, code, _) = session(cmd, |_| message_frames(None, ENV_ALICE, Some(&attrs_str()), MSG.as_bytes()).repeat(2));
    assert_eq!(code, 0);
    assert_eq!(answers, ["82 Zgreylisted, try later (#4.7.1)", "82 Zgreylisted, try later (#4.7.1)"]);
    assert_eq!(std::fs::read_to_string(fake.join("starts")).unwrap().lines().count(), 1, "one next program for the session");
    // A next program that cannot be run: a temporary failure.
    let mut cmd = command(&q, &d.addr.to_string(), &[]);
    cmd.env("AUTHCHECK_QUEUE", t.path().join("missing"));
    let (answers, _, _) = session(cmd, |_| message_frames(None, ENV_ALICE, Some(&attrs_str()), MSG.as_bytes()));
    assert_eq!(answers, ["82 Zunable to exec qq (#4.3.0)"]);
}

fn attrs_str() -> String {
    attrs("192.0.2.1")
}

#[test]
fn a_large_message_goes_through_the_spool_file_intact() {
    let (key, _k) = ed_key();
    let d = dns(&key);
    let (t, q) = scratch();
    let line = "0123456789 the quick brown fox jumps over the lazy dog\n";
    let msg = format!("From: alice@example.com\nSubject: big\n\n{}", line.repeat(3 * 1024 * 1024 / line.len()));
    let spool = t.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let signed_big = signed(&key, &msg);
    for session_mode in [false, true] {
        let mut cmd = command(&q, &d.addr.to_string(), &[("AUTHCHECK_SPOOL", spool.to_str().unwrap())]);
        if session_mode {
            let (a, code, e) = session(cmd, |_| message_frames(None, ENV_ALICE, Some(&attrs_str()), &signed_big));
            assert_eq!((a.len(), code), (1, 0), "{e}");
        } else {
            cmd.env("QUEUE_ATTRS", attrs_str());
            assert_eq!(per_message(cmd, &signed_big, ENV_ALICE).code, 0);
        }
    }
    let m = queued(&q);
    assert_eq!(m.len(), 2);
    for m in &m {
        assert_eq!(m.attr("AUTH_DKIM"), Some("pass:example.com"));
        let body = &m.message[m.message.len() - signed_big.len()..];
        assert!(body == &signed_big[..], "the message below our field is the one sent");
    }
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0, "nothing left in the spool folder");
}
