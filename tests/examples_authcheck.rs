//! conf-examples/auth-check as shipped (only the substitutions of
//! conf-examples/README): port 25 with auth-check between smtpd-rs and
//! queue-inject, three ways, and auth-check under a qmail-smtpd's rules.
//! A fake DNS server on loopback (DNS_SERVER in the service's environment,
//! where a host has /etc/resolv.conf) publishes SPF and DMARC records for
//! three sender domains: one whose mail comes from loopback (pass), one
//! whose DMARC p=reject fails (SPF neutral), one whose SPF fails (no DMARC).
//! swaks connects from 127.0.0.1 (this host: relays, not checked), from
//! 127.0.0.2 (a stranger) and from 127.0.0.3 (tcp.smtp's partner, whose
//! address the test substitutes). Each test checks what the comments
//! promise: the Authentication-Results field of mail.example.com on top of
//! the message and the AUTH_* lines in the queue file, forged fields
//! removed, annotation by default, the refusals where the files turn them
//! on (550 5.7.1 for DMARC, 550 5.7.23 for SPF) with nothing queued, relay
//! clients skipped, and the privileges: smtpd-rs and auth-check as smtpd.
#[path = "support/examples.rs"]
mod examples;
#[path = "support/remote.rs"]
mod remote_support;
#[path = "support/smtpd.rs"]
mod smtpd_support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use examples::*;
use remote_support::{fake_dns, FakeDns, Rr, Zone};

/// Mail from this domain comes from loopback: SPF pass, DMARC pass.
const GOOD: &str = "sender.example";
/// SPF neutral, DMARC p=reject: mail From it fails DMARC.
const SPOOFED: &str = "spoofed.example";
/// SPF -all for another address, no DMARC record: SPF fail only.
const SPF_FAIL: &str = "nodmarc.example";

const STRANGER: &str = "127.0.0.2";
const PARTNER: &str = "127.0.0.3";

/// A forged field with our authserv-id, which auth-check must remove.
const FORGED_AR: &str = "Authentication-Results: mail.example.com; dmarc=pass header.from=bank.example";

fn dns() -> FakeDns {
    let txt = |s: &str| Rr::Txt(vec![s.to_owned()]);
    fake_dns(
        Zone::new(false)
            .add(GOOD, txt("v=spf1 ip4:127.0.0.0/8 -all"))
            .add(&format!("_dmarc.{GOOD}"), txt("v=DMARC1; p=reject"))
            .add(SPOOFED, txt("v=spf1 ?all"))
            .add(&format!("_dmarc.{SPOOFED}"), txt("v=DMARC1; p=reject"))
            .add(SPF_FAIL, txt("v=spf1 ip4:192.0.2.1 -all")),
    )
}

/// The service's extra environment: the fake DNS server as the resolver.
fn dns_env(d: &FakeDns) -> String {
    d.addr.to_string()
}

/// One message from `domain` (envelope sender and From), sent from `from_ip`
/// (None: 127.0.0.1) to `to`, with a forged field of ours on top.
fn send(port: u16, from_ip: Option<&str>, domain: &str, to: &str, tls: bool) -> (bool, String) {
    let mail_from = format!("alice@{domain}");
    let header_from = format!("From: Alice <alice@{domain}>");
    let mut a: Vec<&str> = vec!["--from", &mail_from, "--to", to, "--header", &header_from, "--add-header", FORGED_AR];
    if let Some(ip) = from_ip {
        a.extend(["--local-interface", ip]);
    }
    if tls {
        a.push("--tls");
    }
    swaks(port, &a)
}

/// The fields above smtpd-rs's Received field (auth-check's own, if any).
fn above_received(q: &QueueFile) -> String {
    let text = String::from_utf8_lossy(&q.message).into_owned();
    let at = if text.starts_with("Received: ") { 0 } else { text.find("\nReceived: ").map_or(0, |i| i + 1) };
    text[..at].to_owned()
}

/// The message is checked: our field on top with these verdicts, the
/// AUTH_* lines, the forged field gone.
fn assert_checked(q: &QueueFile, spf: &str, dmarc: &str, policy: &str) {
    let top = above_received(q);
    let text = String::from_utf8_lossy(&q.message);
    assert!(top.starts_with("Authentication-Results: mail.example.com;\n"), "our field on top:\n{text}");
    assert!(top.contains(&format!("\tspf={spf} ")) && top.contains(" smtp.mailfrom=alice@"), "{top}");
    assert!(top.contains(&format!("\tdmarc={dmarc} ")), "{top}");
    assert!(!text.contains("bank.example"), "the forged field is still there:\n{text}");
    for (k, v) in [("AUTH_SPF", spf), ("AUTH_DMARC", dmarc), ("AUTH_DMARC_POLICY", policy), ("AUTH_DKIM", "none")] {
        assert_eq!(q.attr(k), Some(v), "{k}: {:?}", q.attrs);
    }
}

/// A relay client's message: not checked, no field of ours, forged one gone.
fn assert_skipped(q: &QueueFile) {
    let text = String::from_utf8_lossy(&q.message);
    assert_eq!(q.attr("AUTH_SKIPPED"), Some("relay"), "{:?}", q.attrs);
    assert_eq!(q.attr("AUTH_SPF"), None, "{:?}", q.attrs);
    assert!(above_received(q).is_empty() && !text.contains("Authentication-Results:"), "{text}");
}

/// The newest queue file, once there are `n`.
fn nth(s: &Site, n: usize, svc: &Service) -> QueueFile {
    let q = s.wait_queue(n);
    assert_eq!(q.len(), n, "{}: {n} messages queued\n{}", svc.what, svc.log_text());
    let mut q = q;
    q.sort_by_key(|f| std::fs::metadata(&f.path).and_then(|m| m.modified()).ok());
    q.pop().expect("a message")
}

fn assert_refused(ok: bool, t: &str, reply: &str, s: &Site, queued: usize) {
    assert!(!ok, "accepted:\n{t}");
    assert!(server_lines(t).iter().any(|l| l.starts_with(reply)), "no {reply:?}:\n{t}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s.queue().len(), queued, "a refused message was queued");
}

/// Inside a session, at DATA: smtpd-rs and auth-check (and the queue-inject
/// it runs) as smtpd, and with TLS a tls-wrap as smtpd-tls.
fn check_privileges(s: &Site, port: u16, svc: &Service, tls: bool) {
    let conn = connect(port, Duration::from_secs(10));
    let mut r = BufReader::new(conn.try_clone().expect("clone"));
    let mut w = conn;
    let mut reply = |cmd: Option<&str>| -> String {
        if let Some(c) = cmd {
            w.write_all(format!("{c}\r\n").as_bytes()).expect("send");
        }
        let mut all = String::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    };
    assert!(reply(None).starts_with("220 "));
    assert!(reply(Some("EHLO client.example.org")).starts_with("250"));
    assert!(reply(Some(&format!("MAIL FROM:<alice@{GOOD}>"))).starts_with("250"));
    assert!(reply(Some("RCPT TO:<user@example.com>")).starts_with("250"));
    let data = reply(Some("DATA"));
    assert!(data.starts_with("354"), "{data}");
    let (smtpd, tlsuid) = (s.ids.smtpd.0, s.ids.smtpd_tls.0);
    let ok = wait_for(Duration::from_secs(5), || {
        let p = s.processes();
        let of = |name: &str| p.iter().filter(|(n, _, _)| n == name).map(|(_, u, _)| *u).collect::<Vec<u32>>();
        let (sessions, checks) = (of("smtpd-rs"), of("auth-check"));
        !sessions.is_empty()
            && !checks.is_empty()
            && sessions.iter().chain(&checks).chain(&of("queue-inject")).all(|u| *u == smtpd)
            && (!tls || of("tls-wrap").contains(&tlsuid))
    });
    assert!(ok, "{}: uids during a session (smtpd {smtpd}, smtpd-tls {tlsuid}): {:?}\n{}", svc.what, s.processes(), svc.log_text());
}

/// auth-check.env where the README puts it.
fn install_env(s: &Site) -> std::path::PathBuf {
    s.install("auth-check/auth-check.env", "/etc/smtpd-rs/auth-check.env", None)
}

/// Takes in the commented-out line `#NAME=value` of a file, as an operator
/// turns a setting on.
fn uncomment(p: &Path, line: &str) {
    let text = std::fs::read_to_string(p).expect("read");
    let commented = format!("\n#{line}\n");
    assert!(text.contains(&commented), "{} has no line #{line}", p.display());
    std::fs::write(p, text.replace(&commented, &format!("\n{line}\n"))).expect("write");
}

/// The rules as the file's comment says to compile them.
fn tcprules_as_commented(text: &str) {
    let cmd = text
        .lines()
        .find_map(|l| l.strip_prefix("#   tcprules "))
        .unwrap_or_else(|| panic!("no tcprules command in:\n{text}"));
    let mut c = Command::new("sh");
    c.arg("-c").arg(format!("tcprules {cmd}")).env("PATH", SERVICE_PATH);
    assert_ok(&run(&mut c, b"", Duration::from_secs(20)), &format!("tcprules {cmd}"));
}

/// tcpserver.run with its tcp.smtp: DMARC p=reject failures refused from a
/// stranger, annotated from the partner, this host not checked; STARTTLS
/// through tls-wrap as in tcpserver/run.
#[test]
fn tcpserver_run_with_its_tcp_smtp() {
    let s = Site::new();
    s.settings();
    install_env(&s);
    let rules = s.install("auth-check/tcp.smtp", "/etc/smtpd-rs/tcp.smtp", None);
    let text = std::fs::read_to_string(&rules).expect("read");
    assert!(text.contains("\n203.0.113.25:allow,"), "{text}");
    std::fs::write(&rules, text.replace("\n203.0.113.25:", &format!("\n{PARTNER}:"))).expect("write");
    tcprules_as_commented(&text);
    let port = free_port();
    let run = s.install("auth-check/tcpserver.run", "/etc/service/smtpd-rs/run", Some(port));
    let d = dns();
    let mut svc = run_script_env(&run, &[("DNS_SERVER", &dns_env(&d))]);
    svc.wait_port(port);

    // A stranger, a genuine message, over TLS: checked and queued.
    let (ok, t) = send(port, Some(STRANGER), GOOD, "user@example.com", true);
    assert!(ok, "{t}\n{}", svc.log_text());
    assert!(greeting(&t).starts_with("220 mail.example.com "), "{t}");
    let q = nth(&s, 1, &svc);
    assert_checked(&q, "pass", "pass", "none");
    let text = String::from_utf8_lossy(&q.message);
    assert!(text[above_received(&q).len()..].starts_with("Received: from client.example.org") && text.contains(") with ESMTPS"), "{text}");
    // A stranger, DMARC p=reject failing: refused at the end of DATA.
    let (ok, t) = send(port, Some(STRANGER), SPOOFED, "user@example.com", false);
    assert_refused(ok, &t, &format!("550 5.7.1 Message refused by the DMARC policy of {SPOOFED}"), &s, 1);
    // The same from the partner: annotated only (its rule), queued.
    let (ok, t) = send(port, Some(PARTNER), SPOOFED, "user@example.com", false);
    assert!(ok, "the partner's forwarded mail refused:\n{t}\n{}", svc.log_text());
    assert_checked(&nth(&s, 2, &svc), "neutral", "fail", "reject");
    // This host relays: its mail is not checked.
    let (ok, t) = send(port, None, SPOOFED, "someone@elsewhere.test", false);
    assert!(ok, "{t}\n{}", svc.log_text());
    assert_skipped(&nth(&s, 3, &svc));
    let log = wait_log(&svc.log, "skipped=relay", Duration::from_secs(5));
    assert!(log.contains(&format!("auth-check: info: refused: 550 5.7.1 Message refused by the DMARC policy of {SPOOFED}")), "{log}");
    check_privileges(&s, port, &svc, true);
}

/// systemd/smtpd-rs@.service with the drop-in: annotation as shipped, then
/// the refusals of auth-check.env's commented lines taken in.
#[test]
fn systemd_accept_units_with_the_drop_in() {
    let s = Site::new();
    s.settings();
    let env = install_env(&s);
    let service = s.install("systemd/smtpd-rs@.service", "/etc/systemd/system/smtpd-rs@.service", None);
    let dropin = s.install(
        "auth-check/systemd/smtpd-rs@.service.d/auth-check.conf",
        "/etc/systemd/system/smtpd-rs@.service.d/auth-check.conf",
        None,
    );
    let d = dns();
    let dns_server = dns_env(&d);
    let start = |port: u16| {
        let unit = Unit::read(&service).with_dropin(&dropin);
        let mut svc = socket_activate(&unit, true, port, &[("DNS_SERVER", &dns_server)]);
        svc.wait_port(port);
        svc
    };
    let port = free_port();
    let svc = start(port);
    let (ok, t) = send(port, Some(STRANGER), SPOOFED, "user@example.com", false);
    assert!(ok, "refused, though auth-check.env only annotates:\n{t}\n{}", svc.log_text());
    assert_checked(&nth(&s, 1, &svc), "neutral", "fail", "reject");
    let (ok, t) = send(port, Some(STRANGER), SPF_FAIL, "user@example.com", false);
    assert!(ok, "{t}\n{}", svc.log_text());
    assert_checked(&nth(&s, 2, &svc), "fail", "none", "none");
    check_privileges(&s, port, &svc, false);
    drop(svc);

    // The refusals on: every instance reads the file when it starts.
    uncomment(&env, "AUTHCHECK_SPF=reject");
    uncomment(&env, "AUTHCHECK_DMARC=reject");
    let port = free_port();
    let svc = start(port);
    let (ok, t) = send(port, Some(STRANGER), SPOOFED, "user@example.com", false);
    assert_refused(ok, &t, &format!("550 5.7.1 Message refused by the DMARC policy of {SPOOFED}"), &s, 2);
    let (ok, t) = send(port, Some(STRANGER), SPF_FAIL, "user@example.com", false);
    assert_refused(ok, &t, "550 5.7.23 SPF fail", &s, 2);
    let (ok, t) = send(port, Some(STRANGER), GOOD, "user@example.com", false);
    assert!(ok, "{t}\n{}", svc.log_text());
    assert_checked(&nth(&s, 3, &svc), "pass", "pass", "none");
}

/// smtpd-supervise.service with auth-check.env added to its -e file, as
/// auth-check/README says: tls-wrap workers, each session's smtpd-rs runs
/// auth-check; annotation only, this host skipped.
#[test]
fn smtpd_supervise_with_auth_check_env() {
    let s = Site::new();
    s.settings();
    let env = std::fs::read_to_string(install_env(&s)).expect("read");
    let smtpd_env = s.p("/etc/smtpd-rs/smtpd.env");
    let mut f = std::fs::OpenOptions::new().append(true).open(&smtpd_env).expect("smtpd.env");
    f.write_all(env.as_bytes()).expect("append");
    drop(f);
    let port = free_port();
    let unit = s.install("smtpd-supervise/systemd/smtpd-supervise.service", "/etc/systemd/system/smtpd-supervise.service", Some(port));
    let d = dns();
    let mut svc = unit_direct(&Unit::read(&unit), &[("DNS_SERVER", &dns_env(&d))]);
    svc.wait_port(port);
    let (ok, t) = send(port, Some(STRANGER), SPOOFED, "user@example.com", true);
    assert!(ok, "{t}\n{}", svc.log_text());
    assert_checked(&nth(&s, 1, &svc), "neutral", "fail", "reject");
    let (ok, t) = send(port, None, GOOD, "someone@elsewhere.test", true);
    assert!(ok, "{t}\n{}", svc.log_text());
    assert_skipped(&nth(&s, 2, &svc));
    check_privileges(&s, port, &svc, true);
}

/// qmail.tcp.smtp, compiled by tcprules, under tcpserver with smtpd-rs
/// standing in for qmail-smtpd (it runs QMAILQUEUE once per message, as
/// qmail-smtpd does, defaulting to qmail-queue) and a script for
/// qmail-queue: a stranger's message goes through auth-check, annotated,
/// into the qmail-queue stand-in; this host's goes to it directly.
#[test]
fn qmail_tcp_smtp_in_front_of_a_qmail_queue() {
    let s = Site::new();
    s.install("rcpthosts", "/etc/smtpd-rs/rcpthosts", None);
    let qq_dir = s.p("/var/qmail/bin");
    std::fs::create_dir_all(&qq_dir).expect("mkdir");
    let qmail_queue = smtpd_support::script(&qq_dir, "qmail-queue", smtpd_support::FAKE_QMAIL_QUEUE);
    let got = s.p("/var/qmail/queue");
    std::fs::create_dir_all(&got).expect("mkdir");
    chown(&got, s.ids.smtpd.0, s.ids.smtpd.1);
    let rules = s.install("auth-check/qmail.tcp.smtp", "/etc/tcp.smtp", None);
    let text = std::fs::read_to_string(&rules).expect("read");
    assert!(text.contains("\"/var/qmail/bin/qmail-queue\""), "{text}");
    std::fs::write(&rules, text.replace("/var/qmail/bin/qmail-queue", &qmail_queue.display().to_string())).expect("write");
    let mut c = Command::new(peer("tcprules", "ucspi-tcp"));
    c.arg(s.p("/etc/tcp.smtp.cdb")).arg(s.p("/etc/tcp.smtp.tmp"));
    assert_ok(&run(&mut c, &std::fs::read(&rules).expect("read"), Duration::from_secs(10)), "tcprules < qmail.tcp.smtp");

    let d = dns();
    let port = free_port();
    let (uid, gid) = (s.ids.smtpd.0.to_string(), s.ids.smtpd.1.to_string());
    let mut c = Command::new(peer("tcpserver", "ucspi-tcp"));
    service_env(&mut c);
    c.env("DNS_SERVER", dns_env(&d))
        .env("SMTPD_HOSTNAME", HOSTNAME)
        .env("RCPTHOSTS", s.p("/etc/smtpd-rs/rcpthosts"))
        .env("QMAILQUEUE", &qmail_queue)
        .env("FAKEQQ_DIR", &got)
        .args(["-v", "-R", "-H", "-l", HOSTNAME, "-x"])
        .arg(s.p("/etc/tcp.smtp.cdb"))
        .args(["-u", &uid, "-g", &gid, "127.0.0.1", &port.to_string()])
        .arg(s.program("smtpd-rs"));
    let mut svc = Service::spawn("tcpserver -x qmail.tcp.smtp.cdb smtpd-rs", c, Vec::new());
    svc.wait_port(port);

    let message = |n: usize| -> (String, String) {
        let files = |p: &str| -> Vec<std::path::PathBuf> {
            let mut v: Vec<_> = std::fs::read_dir(&got).expect("read").flatten().map(|e| e.path()).filter(|f| f.file_name().is_some_and(|f| f.to_string_lossy().starts_with(p))).collect();
            v.sort_by_key(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok());
            v
        };
        assert!(wait_for(Duration::from_secs(10), || files("env.").len() >= n), "{n} messages in qmail-queue\n{}", svc.log_text());
        let msg = files("msg.").pop().expect("msg");
        let attrs = msg.with_file_name(msg.file_name().expect("name").to_string_lossy().replace("msg.", "attrs."));
        (std::fs::read_to_string(&msg).expect("msg"), std::fs::read_to_string(attrs).unwrap_or_default())
    };
    let (ok, t) = send(port, Some(STRANGER), SPOOFED, "user@example.com", false);
    assert!(ok, "{t}\n{}", svc.log_text());
    let (msg, attrs) = message(1);
    assert!(msg.starts_with("Authentication-Results: mail.example.com;\n"), "{msg}");
    assert!(msg.contains("\tdmarc=fail (p=reject dis=reject)") && !msg.contains("bank.example"), "{msg}");
    assert!(attrs.contains("AUTH_DMARC=fail\n") && attrs.contains("AUTH_DMARC_POLICY=reject\n"), "{attrs}");
    let (ok, t) = send(port, None, SPOOFED, "someone@elsewhere.test", false);
    assert!(ok, "{t}\n{}", svc.log_text());
    // Straight to qmail-queue: no check, the forged field left as it came.
    let (msg, attrs) = message(2);
    assert!(msg.contains(FORGED_AR) && !attrs.contains("AUTH_"), "this host's mail went through auth-check:\n{msg}\n{attrs}");
}
