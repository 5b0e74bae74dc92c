//! conf-examples, the last mile, as shipped (with the README's
//! substitutions): lmtp-dovecot/ (example.com to Dovecot over LMTP, with a
//! private Dovecot that includes the shipped dovecot-smtpd-rs.conf) and
//! maildir/ (example.com into Maildirs by maildir-deliver), each with
//! queue-run started by queue-run/queue-run.service as smtpd, and a
//! message that sendmail queued: delivered, the unknown recipient bounced
//! to the local sender, the queue emptied.
#[path = "support/dovecot.rs"]
mod dovecot;
#[path = "support/examples.rs"]
mod examples;

use examples::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// sendmail, as smtpd, from alice@example.com to `to` (queue-drop's
/// maildrop/, which queue-run picks up).
fn sendmail(s: &Site, to: &[&str], msg: &[u8]) {
    let mut c = s.sendmail_as_smtpd("alice@example.com");
    c.args(to);
    let o = run(&mut c, msg, Duration::from_secs(30));
    assert_ok(&o, "sendmail as smtpd");
}

fn queue_run(s: &Site) -> Service {
    let unit = Unit::read(&s.install("queue-run/queue-run.service", "/etc/systemd/system/queue-run.service", None));
    assert_eq!(unit.get("Service", "User").as_deref(), Some("smtpd"));
    unit_direct(&unit, &[])
}

fn queue_empty(s: &Site) -> bool {
    let drop = fs::read_dir(s.p("/var/spool/smtpd-rs/queue/maildrop")).map(|d| d.flatten().filter(|e| !e.file_name().to_string_lossy().starts_with('.')).count()).unwrap_or(0);
    s.queue().is_empty() && drop == 0
}

#[test]
fn lmtp_to_dovecot_as_shipped() {
    let s = Site::new();
    let conf = fs::read_to_string(Path::new(TOP).join("conf-examples/lmtp-dovecot/dovecot-smtpd-rs.conf")).expect("read");
    let dc = dovecot::Dovecot::start_with(&["alice"], &conf);
    // The socket is for the group smtpd alone, as the example says.
    let m = fs::metadata(&dc.socket).expect("socket");
    assert_eq!((m.mode() & 0o777, m.gid()), (0o660, s.ids.smtpd.1), "{}", dc.socket.display());
    s.install("lmtp-dovecot/queue-run.env", "/etc/smtpd-rs/queue-run.env", None);
    let routes = s.install("lmtp-dovecot/smtproutes", "/etc/smtpd-rs/smtproutes", None);
    let text = fs::read_to_string(&routes).expect("read");
    assert!(text.contains("example.com:/run/dovecot/lmtp proto=lmtp"), "{text}");
    fs::write(&routes, text.replace("/run/dovecot/lmtp", &dc.socket.display().to_string())).expect("write");
    let msg = b"Subject: to Dovecot\n\nhello over LMTP\n";
    sendmail(&s, &["alice+news@example.com", "nosuch@example.com"], msg);
    let svc = queue_run(&s);
    // alice gets the message (by the + rule into her INBOX) and the bounce
    // for nosuch@, which went to alice@example.com by the same route.
    let both = wait_for(Duration::from_secs(30), || dc.fetch("alice").len() == 2 && queue_empty(&s));
    assert!(both, "{}\n{}", svc.log_text(), dc.log());
    let got: Vec<String> = dc.fetch("alice").iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect();
    let (orig, dsn) = if got[0].contains("hello over LMTP") && !got[0].contains("nosuch") { (&got[0], &got[1]) } else { (&got[1], &got[0]) };
    assert!(orig.starts_with("Return-Path: <alice@example.com>\n") && orig.ends_with("Subject: to Dovecot\n\nhello over LMTP\n"), "{orig}");
    assert!(dsn.contains("Final-Recipient: rfc822; nosuch@example.com") && dsn.contains("550 5.1.1"), "{dsn}");
    assert!(svc.log_text().contains("<alice+news@example.com> delivered"), "{}", svc.log_text());
}

#[test]
fn maildir_as_shipped() {
    let s = Site::new();
    s.install("maildir/queue-run.env", "/etc/smtpd-rs/queue-run.env", None);
    s.install("maildir/locals", "/etc/smtpd-rs/locals", None);
    let map = s.install("maildir/maildir-map", "/etc/smtpd-rs/maildir-map", None);
    let text = fs::read_to_string(&map).expect("read");
    let scratch_mail = s.p("/var/mail/").display().to_string();
    fs::write(&map, text.replace("/var/mail/", &scratch_mail)).expect("write");
    // The systemd drop-in opens the folder that holds every Maildir of the map.
    let dropin = Unit::read(&Path::new(TOP).join("conf-examples/maildir/queue-run.service.d/maildir.conf"));
    let rw = dropin.get("Service", "ReadWritePaths").expect("ReadWritePaths");
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        assert!(line.split_whitespace().nth(1).is_some_and(|p| p.starts_with(&format!("{rw}/"))), "{line} outside {rw}");
    }
    // The README's step: the domain's folder, smtpd's.
    for (d, owner, mode) in [("/var/mail", (0, 0), 0o755), ("/var/mail/vhosts", s.ids.smtpd, 0o700), ("/var/mail/vhosts/example.com", s.ids.smtpd, 0o700)] {
        fs::create_dir_all(s.p(d)).expect("mkdir");
        chown(&s.p(d), owner.0, owner.1);
        chmod(&s.p(d), mode);
    }
    let msg = b"Subject: to the Maildirs\n\nhello\n";
    sendmail(&s, &["alice+lists@example.com", "bob@example.com", "nosuch@example.com"], msg);
    let svc = queue_run(&s);
    let md = |u: &str| s.p(&format!("/var/mail/vhosts/example.com/{u}"));
    let count = |u: &str| fs::read_dir(md(u).join("new")).map(|d| d.count()).unwrap_or(0);
    let done = wait_for(Duration::from_secs(30), || count("alice") == 2 && count("bob") == 1 && queue_empty(&s));
    assert!(done, "alice {} bob {}\n{}", count("alice"), count("bob"), svc.log_text());
    // Written by smtpd, read back by Python's mailbox module.
    for e in fs::read_dir(md("alice").join("new")).expect("new") {
        assert_eq!(fs::metadata(e.expect("entry").path()).expect("stat").uid(), s.ids.smtpd.0);
    }
    let py = Command::new(python3())
        .arg("-c")
        .arg("import mailbox,sys\nfor u in sys.argv[1:]:\n  m=mailbox.Maildir(u,factory=None,create=False)\n  for k in sorted(m.keys()):\n    print(u.rsplit('/',1)[1], m[k]['Delivered-To'], m[k]['Subject'])\n")
        .arg(md("alice"))
        .arg(md("bob"))
        .output()
        .expect("python3");
    let out = String::from_utf8_lossy(&py.stdout);
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    assert!(out.contains("alice alice+lists@example.com to the Maildirs\n"), "{out}");
    assert!(out.contains("bob bob@example.com to the Maildirs\n"), "{out}");
    // The bounce for nosuch@, delivered to the local sender.
    assert!(out.lines().any(|l| l.starts_with("alice alice@example.com Delivery Status Notification (Failure)")), "{out}");
}
