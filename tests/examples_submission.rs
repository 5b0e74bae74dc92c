//! conf-examples, submission: port 587 (STARTTLS, then AUTH) and port 465
//! (implicit TLS, AUTH), each as a tcpserver run script and as systemd
//! socket + service units, run as shipped (ports and scratch paths
//! substituted) with a user added by smtpd-passwd as the README says, and
//! talked to with swaks: the greeting name, MAIL refused before TLS (587)
//! and before AUTH, AUTH offered only inside TLS, a wrong password refused,
//! the right one relaying, the message queued with its login; and the
//! privilege model (smtpd-rs as smtpd, tls-wrap as smtpd-tls, on 465 before
//! the client's first byte is read).
#[path = "support/examples.rs"]
mod examples;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use examples::*;

fn check_submission(s: &Site, port: u16, svc: &Service, implicit: bool) {
    let log = || svc.log_text();
    let tls = if implicit { "--tlsc" } else { "--tls" };

    if !implicit {
        // Before TLS: STARTTLS, no AUTH, and MAIL refused.
        let (ok, t) = swaks(port, &["--quit-after", "EHLO"]);
        assert!(ok, "{}: EHLO\n{t}\n{}", svc.what, log());
        let g = greeting(&t);
        assert!(g.starts_with(&format!("220 {HOSTNAME} ")), "{}: greeting {g:?}\n{t}", svc.what);
        let kw = ehlo_keywords(&t);
        assert!(kw.iter().any(|k| k == "STARTTLS"), "{}: STARTTLS offered: {kw:?}", svc.what);
        assert!(!kw.iter().any(|k| k.starts_with("AUTH")), "{}: AUTH offered before TLS: {kw:?}", svc.what);
        let (ok, t) = swaks(port, &["--to", "friend@elsewhere.test"]);
        assert!(!ok && server_lines(&t).iter().any(|l| l.starts_with("530 ")), "{}: MAIL before STARTTLS\n{t}", svc.what);
    }

    // Inside TLS: AUTH offered (not STARTTLS again), MAIL refused before it.
    let (ok, t) = swaks(port, &[tls, "--quit-after", "EHLO"]);
    assert!(ok, "{}: EHLO inside TLS\n{t}\n{}", svc.what, log());
    if implicit {
        let g = greeting(&t);
        assert!(g.starts_with(&format!("220 {HOSTNAME} ")), "{}: greeting {g:?}\n{t}", svc.what);
    }
    let kw = ehlo_keywords(&t);
    assert!(
        kw.iter().any(|k| k.starts_with("AUTH ") && k.contains("PLAIN") && k.contains("LOGIN")),
        "{}: AUTH PLAIN LOGIN inside TLS: {kw:?}",
        svc.what
    );
    assert!(!kw.iter().any(|k| k == "STARTTLS"), "{}: STARTTLS inside TLS: {kw:?}", svc.what);
    let (ok, t) = swaks(port, &[tls, "--to", "friend@elsewhere.test"]);
    assert!(!ok && server_lines(&t).iter().any(|l| l.starts_with("530 ")), "{}: MAIL before AUTH\n{t}", svc.what);

    // A wrong password, then the right one.
    let (ok, t) = swaks(port, &[tls, "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "not her password"]);
    assert!(!ok && server_lines(&t).iter().any(|l| l.starts_with("535 ")), "{}: wrong password\n{t}\n{}", svc.what, log());
    assert!(s.queue().is_empty());
    let (ok, t) = swaks(
        port,
        &[tls, "--auth", "LOGIN", "--auth-user", "alice", "--auth-password", ALICE_PW, "--from", "alice@example.com", "--to", "friend@elsewhere.test"],
    );
    assert!(ok, "{}: AUTH and relaying\n{t}\n{}", svc.what, log());
    let q = s.wait_queue(1);
    assert_eq!(q.len(), 1, "{}: one message queued", svc.what);
    assert_eq!(q[0].to_strings(), ["friend@elsewhere.test"]);
    assert_eq!(q[0].attr("CLIENT_LOGIN"), Some("alice"), "{}: {:?}", svc.what, q[0].attrs);
    let rcv = String::from_utf8_lossy(q[0].received()).into_owned();
    assert!(rcv.contains("with ESMTPSA") && rcv.contains(&format!("by {HOSTNAME}")), "{}: {rcv}", svc.what);
}

/// While a client is connected: on 587 smtpd-rs (greeting sent) runs as
/// smtpd and its tls-wrap as smtpd-tls; on 465, before the client sent a
/// byte, tls-wrap already runs as smtpd-tls and no smtpd-rs exists yet
/// (only tls-wrap's launcher, already as smtpd, waiting to become it).
fn check_privileges(s: &Site, port: u16, svc: &Service, implicit: bool) {
    let conn = connect(port, Duration::from_secs(10));
    if !implicit {
        let mut line = String::new();
        BufReader::new(&conn).read_line(&mut line).expect("greeting");
        assert!(line.starts_with("220 "), "{}: {line:?}", svc.what);
    }
    let (smtpd, tlsuid) = (s.ids.smtpd.0, s.ids.smtpd_tls.0);
    let ok = wait_for(Duration::from_secs(3), || {
        let p = s.processes();
        let sessions: Vec<_> = p.iter().filter(|(n, _, _)| n == "smtpd-rs").collect();
        sessions.iter().all(|(_, u, _)| *u == smtpd)
            && sessions.is_empty() == implicit
            // On 465 tls-wrap's launcher waits for the handshake as smtpd,
            // to exec smtpd-rs (tls-wrap(8), PRIVILEGES); it reads nothing.
            && p.iter().filter(|(n, _, _)| n == "tls-wrap").all(|(_, u, _)| *u == tlsuid || (implicit && *u == smtpd))
            && p.iter().any(|(n, u, _)| n == "tls-wrap" && *u == tlsuid)
    });
    assert!(ok, "{}: uids (smtpd {smtpd}, smtpd-tls {tlsuid}): {:?}\n{}", svc.what, s.processes(), svc.log_text());
    drop(conn);
}

fn site() -> Site {
    let s = Site::new();
    s.settings();
    s.add_user("alice", ALICE_PW);
    s
}

#[test]
fn submission_run_under_tcpserver() {
    let s = site();
    let port = free_port();
    let run = s.install("submission/run", "/etc/service/smtpd-submission/run", Some(port));
    let mut svc = run_script(&run);
    svc.wait_port(port);
    check_submission(&s, port, &svc, false);
    check_privileges(&s, port, &svc, false);
}

#[test]
fn smtps_run_under_tcpserver() {
    let s = site();
    let port = free_port();
    let run = s.install("smtps/run", "/etc/service/smtpd-smtps/run", Some(port));
    let mut svc = run_script(&run);
    svc.wait_port(port);
    check_submission(&s, port, &svc, true);
    check_privileges(&s, port, &svc, true);
}

fn units(s: &Site, socket: &str, service: &str, listen: &str) -> Unit {
    let name = |p: &str| p.rsplit('/').next().expect("name").to_owned();
    let sock = Unit::read(&s.install(socket, &format!("/etc/systemd/system/{}", name(socket)), None));
    assert_eq!(sock.get("Socket", "ListenStream").as_deref(), Some(listen));
    assert_eq!(sock.get("Socket", "Accept").as_deref(), Some("yes"));
    Unit::read(&s.install(service, &format!("/etc/systemd/system/{}", name(service)), None))
}

#[test]
fn submission_systemd_units() {
    let s = site();
    let unit = units(&s, "submission/smtpd-submission.socket", "submission/smtpd-submission@.service", "587");
    let port = free_port();
    let mut svc = socket_activate(&unit, true, port, &[]);
    svc.wait_port(port);
    check_submission(&s, port, &svc, false);
    check_privileges(&s, port, &svc, false);
}

#[test]
fn smtps_systemd_units() {
    let s = site();
    let unit = units(&s, "smtps/smtpd-smtps.socket", "smtps/smtpd-smtps@.service", "465");
    let port = free_port();
    let mut svc = socket_activate(&unit, true, port, &[]);
    svc.wait_port(port);
    check_submission(&s, port, &svc, true);
    check_privileges(&s, port, &svc, true);
}
