//! conf-examples, port 25 with STARTTLS, run as shipped (only the ports and
//! scratch paths of conf-examples/README substituted) and talked to with
//! swaks: smtpd-supervise under runit, s6, systemd (plain and socket-
//! activated), tcpserver's run script with its tcprules, and the Accept=yes
//! systemd units, plain and with the documented TLS lines. Each checks the
//! greeting name, what EHLO offers (STARTTLS, never AUTH on port 25), mail
//! for our domain queued over TLS, relaying refused to a stranger and
//! allowed where the rules say, and the privilege model: no smtpd-rs runs
//! as anything but smtpd, the tls-wrap of a session runs as smtpd-tls.
#[path = "support/examples.rs"]
mod examples;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use examples::*;

/// What a stranger (127.0.0.2: the rules' ":" line) and this host
/// (127.0.0.1) get from a port-25 example.
fn check_mx(s: &Site, port: u16, svc: &Service, tls: bool, local_relays: bool) {
    let log = || svc.log_text();
    let stranger = ["--local-interface", "127.0.0.2"];

    let (ok, t) = swaks(port, &[&stranger[..], &["--quit-after", "EHLO"]].concat());
    assert!(ok, "{}: EHLO failed\n{t}\n{}", svc.what, log());
    let g = greeting(&t);
    assert!(g.starts_with(&format!("220 {HOSTNAME} ")), "{}: greeting {g:?}: SMTPD_HOSTNAME not set\n{t}", svc.what);
    let kw = ehlo_keywords(&t);
    assert_eq!(kw.iter().any(|k| k == "STARTTLS"), tls, "{}: STARTTLS offered: {kw:?}", svc.what);
    assert!(!kw.iter().any(|k| k.starts_with("AUTH")), "{}: AUTH offered on port 25: {kw:?}", svc.what);

    // Mail for our domain, over TLS where it is offered.
    let mut a: Vec<&str> = stranger.to_vec();
    a.extend(["--from", "sender@example.org", "--to", "user@example.com"]);
    if tls {
        a.push("--tls");
    }
    let (ok, t) = swaks(port, &a);
    assert!(ok, "{}: mail for example.com refused\n{t}\n{}", svc.what, log());
    let q = s.wait_queue(1);
    assert_eq!(q.len(), 1, "{}: one message queued\n{}", svc.what, log());
    assert_eq!(q[0].to_strings(), ["user@example.com"]);
    let rcv = String::from_utf8_lossy(q[0].received()).into_owned();
    assert!(rcv.contains(&format!("by {HOSTNAME}")), "{}: {rcv}", svc.what);
    assert_eq!(rcv.contains("with ESMTPS"), tls, "{}: TLS in the Received header: {rcv}", svc.what);

    // A stranger may not relay.
    let (ok, t) = swaks(port, &[&stranger[..], &["--to", "someone@elsewhere.test"]].concat());
    assert!(!ok, "{}: relayed for a stranger\n{t}", svc.what);
    assert!(server_lines(&t).iter().any(|l| l.starts_with("553 ")), "{}: relaying refused with 553\n{t}", svc.what);

    // This host: relaying as the rules say.
    let mut a = vec!["--to", "someone@elsewhere.test"];
    if tls {
        a.push("--tls");
    }
    let (ok, t) = swaks(port, &a);
    assert_eq!(ok, local_relays, "{}: 127.0.0.1 relays\n{t}\n{}", svc.what, log());
    assert_eq!(s.wait_queue(1 + usize::from(local_relays)).len(), 1 + usize::from(local_relays));
}

/// During a session: every smtpd-rs of this site runs as smtpd, and (with
/// TLS) a tls-wrap runs as smtpd-tls; no smtpd-rs is left as root.
fn check_privileges(s: &Site, port: u16, svc: &Service, tls: bool) {
    let conn = connect(port, Duration::from_secs(10));
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).expect("greeting");
    assert!(line.starts_with("220 "), "{}: greeting {line:?}", svc.what);
    let (smtpd, tlsuid) = (s.ids.smtpd.0, s.ids.smtpd_tls.0);
    let ok = wait_for(Duration::from_secs(3), || {
        let p = s.processes();
        let sessions: Vec<_> = p.iter().filter(|(n, _, _)| n == "smtpd-rs").collect();
        !sessions.is_empty()
            && sessions.iter().all(|(_, u, _)| *u == smtpd)
            && (!tls || p.iter().any(|(n, u, _)| n == "tls-wrap" && *u == tlsuid))
    });
    assert!(
        ok,
        "{}: uids during a session (smtpd {smtpd}, smtpd-tls {tlsuid}): {:?}\n{}",
        svc.what,
        s.processes(),
        svc.log_text()
    );
    drop(conn);
}

/// The service's log folder (svlogd's or s6-log's `current`), owned by smtplog.
fn check_log(s: &Site, dir: &str) {
    let current = s.p(dir).join("current");
    let text = wait_file_contains(&current, "smtpd-rs: info", Duration::from_secs(10));
    assert!(text.contains("smtpd-rs: info"), "{}: no session lines:\n{text}", current.display());
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&current).expect("stat"));
    assert_eq!(uid, s.ids.smtplog.0, "{} written by smtplog", current.display());
}

#[test]
fn smtpd_supervise_under_runit() {
    let s = Site::new();
    s.settings();
    let port = free_port();
    let dir = s.install_dir("smtpd-supervise/runit/smtpd", "/etc/sv/smtpd-rs", Some(port));
    let mut svc = runsv(&dir, &[]);
    svc.wait_port(port);
    check_mx(&s, port, &svc, true, true);
    check_privileges(&s, port, &svc, true);
    check_log(&s, "/var/log/smtpd-rs");
}

#[test]
fn smtpd_supervise_under_s6() {
    let s = Site::new();
    s.settings();
    let port = free_port();
    s.install_dir("smtpd-supervise/s6/smtpd", "/run/service/smtpd-rs", Some(port));
    let mut svc = s6_svscan(&s.p("/run/service"), &[]);
    svc.wait_port(port);
    check_mx(&s, port, &svc, true, true);
    check_privileges(&s, port, &svc, true);
    check_log(&s, "/var/log/smtpd-rs");
}

#[test]
fn smtpd_supervise_systemd_service() {
    let s = Site::new();
    s.settings();
    let port = free_port();
    let unit = s.install("smtpd-supervise/systemd/smtpd-supervise.service", "/etc/systemd/system/smtpd-supervise.service", Some(port));
    let mut svc = unit_direct(&Unit::read(&unit), &[]);
    svc.wait_port(port);
    check_mx(&s, port, &svc, true, true);
    check_privileges(&s, port, &svc, true);
}

#[test]
fn smtpd_supervise_systemd_socket_activated() {
    let s = Site::new();
    s.settings();
    let sock = Unit::read(&s.install(
        "smtpd-supervise/systemd/smtpd-supervise-activated.socket",
        "/etc/systemd/system/smtpd-supervise-activated.socket",
        None,
    ));
    assert_eq!(sock.get("Socket", "ListenStream").as_deref(), Some("25"));
    assert_eq!(sock.get("Socket", "Accept"), None, "one listening socket for the supervisor");
    let port = free_port();
    let unit = s.install(
        "smtpd-supervise/systemd/smtpd-supervise-activated.service",
        "/etc/systemd/system/smtpd-supervise-activated.service",
        Some(port),
    );
    // systemd binds (the socket unit's port, here a loopback one) and
    // passes the socket: LISTEN_FDS.
    let mut svc = socket_activate(&Unit::read(&unit), false, port, &[]);
    svc.wait_port(port);
    check_mx(&s, port, &svc, true, true);
    check_privileges(&s, port, &svc, true);
}

/// The rules as the comment of tcp.smtp says to compile them.
fn compile_tcp_smtp(s: &Site) {
    let rules = std::fs::read_to_string(s.p("/etc/smtpd-rs/tcp.smtp")).expect("tcp.smtp");
    let cmd = rules
        .lines()
        .find_map(|l| l.strip_prefix("#   tcprules "))
        .unwrap_or_else(|| panic!("tcp.smtp names no tcprules command:\n{rules}"));
    let mut c = std::process::Command::new("sh");
    c.arg("-c").arg(format!("tcprules {cmd}")).env("PATH", SERVICE_PATH);
    let o = run(&mut c, b"", Duration::from_secs(20));
    assert_ok(&o, &format!("tcprules {cmd}"));
    assert!(s.p("/etc/smtpd-rs/tcp.smtp.cdb").is_file());
}

#[test]
fn tcpserver_run_with_tcp_smtp() {
    let s = Site::new();
    s.settings();
    compile_tcp_smtp(&s);
    let port = free_port();
    let run = s.install("tcpserver/run", "/etc/service/smtpd-rs/run", Some(port));
    let mut svc = run_script(&run);
    svc.wait_port(port);
    check_mx(&s, port, &svc, true, true);
    check_privileges(&s, port, &svc, true);
}

/// Debian's tcprules compiles the rules offered to tcpserver and refuses
/// smtpd.rules, whose comment says so (IPv6 and CIDR lines).
#[test]
fn rules_files_and_tcprules() {
    let s = Site::new();
    s.settings();
    compile_tcp_smtp(&s);
    let tcprules = peer("tcprules", "ucspi-tcp");
    let text = std::fs::read(s.p("/etc/smtpd-rs/smtpd.rules")).expect("smtpd.rules");
    let mut c = std::process::Command::new(&tcprules);
    c.arg(s.root().join("x.cdb")).arg(s.root().join("x.tmp"));
    let o = run(&mut c, &text, Duration::from_secs(10));
    assert!(!o.status.success(), "tcprules compiles smtpd.rules: its comment (and the README) say it does not");
    assert!(String::from_utf8_lossy(&text).contains("Debian's tcprules refuses"), "smtpd.rules says tcprules refuses it");
    // local.rules (make run) compiles too.
    let text = std::fs::read(format!("{TOP}/conf-examples/local.rules")).expect("local.rules");
    let mut c = std::process::Command::new(&tcprules);
    c.arg(s.root().join("l.cdb")).arg(s.root().join("l.tmp"));
    assert_ok(&run(&mut c, &text, Duration::from_secs(10)), "tcprules < local.rules");
}

#[test]
fn systemd_accept_units_as_shipped() {
    let s = Site::new();
    s.settings();
    let sock = Unit::read(&s.install("systemd/smtpd-rs.socket", "/etc/systemd/system/smtpd-rs.socket", None));
    assert_eq!(sock.get("Socket", "ListenStream").as_deref(), Some("25"));
    assert_eq!(sock.get("Socket", "Accept").as_deref(), Some("yes"));
    let unit = Unit::read(&s.install("systemd/smtpd-rs@.service", "/etc/systemd/system/smtpd-rs@.service", None));
    let port = free_port();
    let mut svc = socket_activate(&unit, true, port, &[]);
    svc.wait_port(port);
    // Without tls-wrap nothing is offered, and there are no rules: this
    // host relays no more than a stranger.
    check_mx(&s, port, &svc, false, false);
    check_privileges(&s, port, &svc, false);
}

#[test]
fn systemd_accept_units_with_the_tls_lines() {
    let s = Site::new();
    s.settings();
    let path = s.install("systemd/smtpd-rs@.service", "/etc/systemd/system/smtpd-rs@.service", None);
    let text = std::fs::read_to_string(&path).expect("unit");
    std::fs::write(&path, tls_variant(&text)).expect("write unit");
    let unit = Unit::read(&path);
    assert_eq!(unit.get("Service", "User"), None, "runs as root until tls-wrap drops");
    let port = free_port();
    let mut svc = socket_activate(&unit, true, port, &[]);
    svc.wait_port(port);
    check_mx(&s, port, &svc, true, false);
    check_privileges(&s, port, &svc, true);
}
