//! conf-examples, delivery: queue-run as its systemd unit, runit and s6
//! services run it, with queue-run.env, smtproutes and smtp-auth as shipped
//! (paths substituted, and the smarthost smtp.provider.example:587 replaced
//! by a loopback one), sending a message that sendmail queued to a smarthost
//! that requires TLS and AUTH (Python's aiosmtpd, with a certificate from
//! the test CA, which the tests add as TLS_CAFILE: the one variable that is
//! not in the shipped files); with the README's DKIM step, signed with the
//! keys of dkim/make-keys.sh. And the cron job that cleans the queue's tmp/.
#[path = "support/examples.rs"]
mod examples;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use examples::*;

/// aiosmtpd with STARTTLS and AUTH required (tests/support/remote_aiosmtpd.py).
struct Smarthost {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Drop for Smarthost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smarthost(s: &Site) -> Smarthost {
    let out = s.root().join("smarthost");
    std::fs::create_dir_all(&out).expect("mkdir");
    let script = format!("{TOP}/tests/support/remote_aiosmtpd.py");
    let auth = format!("{SMARTHOST_USER}:{SMARTHOST_PW}");
    let mut child = Command::new(python3())
        .arg(&script)
        .arg("--out")
        .arg(&out)
        .arg("--cert")
        .arg(s.p("/etc/smtpd-rs/cert.pem"))
        .arg("--key")
        .arg(s.p("/etc/smtpd-rs/key.pem"))
        .args(["--auth", &auth])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("/usr/bin/python3 with aiosmtpd (Debian package python3-aiosmtpd)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("port");
    let port = line.trim().parse().unwrap_or_else(|_| panic!("aiosmtpd did not start (Debian package python3-aiosmtpd): {line:?}"));
    Smarthost { child, port, out }
}

/// queue-run.env, smtproutes and smtp-auth installed (smtp-auth owned by
/// smtpd, 0600, as its comment says), the smarthost's name and port
/// replaced by the loopback one; one message queued by sendmail, as smtpd.
fn site() -> (Site, Smarthost) {
    let s = Site::new();
    s.certificate();
    let sink = smarthost(&s);
    s.install("queue-run/queue-run.env", "/etc/smtpd-rs/queue-run.env", None);
    for f in ["smtproutes", "smtp-auth"] {
        let p = s.install(&format!("smtp-remote/{f}"), &format!("/etc/smtpd-rs/{f}"), None);
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(text.contains("smtp.provider.example"), "{f} names the smarthost");
        let text = text
            .replace("smtp.provider.example:587", &format!("127.0.0.1:{}", sink.port))
            .replace("smtp.provider.example ", "127.0.0.1 ");
        std::fs::write(&p, text).expect("write");
    }
    let auth = s.p("/etc/smtpd-rs/smtp-auth");
    chown(&auth, s.ids.smtpd.0, s.ids.smtpd.1);
    chmod(&auth, 0o600);
    let mut c = s.sendmail_as_smtpd("alice@example.com");
    c.arg("friend@example.net");
    let o = run(&mut c, b"From: Alice <alice@example.com>\nSubject: through the smarthost\n\nhello\n", Duration::from_secs(30));
    assert_ok(&o, "sendmail as smtpd");
    // sendmail leaves it in the queue's maildrop/ (queue-drop(8)); queue-run
    // takes it from there into new/.
    let dropped = std::fs::read_dir(s.p("/var/spool/smtpd-rs/queue/maildrop"))
        .expect("maildrop")
        .filter(|e| e.as_ref().is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.')))
        .count();
    assert_eq!(s.queue().len() + dropped, 1, "sendmail queued the message");
    (s, sink)
}

/// The smarthost got the message over TLS, after AUTH, and the queue is empty.
fn check_delivered(s: &Site, sink: &Smarthost, svc: &Service) {
    let env = sink.out.join("1.env");
    let text = wait_file_contains(&env, "to friend@example.net", Duration::from_secs(30));
    assert!(text.contains("to friend@example.net"), "{}: nothing reached the smarthost\n{}", svc.what, svc.log_text());
    assert!(text.contains("from alice@example.com"), "{text}");
    assert!(text.contains("tls True") && text.contains("auth True"), "{}: not over TLS with AUTH:\n{text}", svc.what);
    let msg = std::fs::read_to_string(sink.out.join("1.msg")).expect("1.msg");
    assert!(msg.contains("Subject: through the smarthost"), "{msg}");
    assert!(wait_for(Duration::from_secs(10), || s.queue().is_empty()), "{}: message still queued\n{}", svc.what, svc.log_text());
}

fn test_ca(s: &Site) -> String {
    s.ca().display().to_string()
}

#[test]
fn queue_run_systemd_unit_to_the_smarthost() {
    let (s, sink) = site();
    let unit = Unit::read(&s.install("queue-run/queue-run.service", "/etc/systemd/system/queue-run.service", None));
    assert_eq!(unit.get("Service", "User").as_deref(), Some("smtpd"), "queue-run runs as the queue's owner");
    let ca = test_ca(&s);
    let svc = unit_direct(&unit, &[("TLS_CAFILE", &ca)]);
    check_delivered(&s, &sink, &svc);
    assert!(svc.log_text().contains("delivered"), "{}", svc.log_text());
}

/// The README's DKIM step: signing and make-keys.sh in /etc/smtpd-rs/dkim,
/// make-keys.sh run there, the DKIM_SIGN line of queue-run.env taken in
/// from its comment; what queue-run.service sends to the smarthost carries
/// both signatures (tests/examples_dkim.rs verifies them with dkimpy).
#[test]
fn queue_run_signs_with_dkim_as_the_readme_says() {
    let (s, sink) = site();
    let dir = s.p("/etc/smtpd-rs/dkim");
    for f in ["signing", "make-keys.sh"] {
        s.install(&format!("dkim/{f}"), &format!("/etc/smtpd-rs/dkim/{f}"), None);
    }
    let mut c = Command::new("sh");
    c.env_clear().env("PATH", SERVICE_PATH).arg("make-keys.sh").current_dir(&dir);
    let o = run(&mut c, b"", Duration::from_secs(60));
    assert_ok(&o, "sh make-keys.sh");
    assert!(String::from_utf8_lossy(&o.stdout).contains("ed2026._domainkey.example.com."), "{}", o.text());
    let env = s.p("/etc/smtpd-rs/queue-run.env");
    let text = std::fs::read_to_string(&env).expect("read");
    assert!(text.contains("\n#DKIM_SIGN=/etc/smtpd-rs/dkim/signing\n") || text.contains(&format!("\n#DKIM_SIGN={}\n", dir.join("signing").display())), "{text}");
    std::fs::write(&env, text.replace("\n#DKIM_SIGN=", "\nDKIM_SIGN=")).expect("write");
    let unit = Unit::read(&s.install("queue-run/queue-run.service", "/etc/systemd/system/queue-run.service", None));
    let ca = test_ca(&s);
    let svc = unit_direct(&unit, &[("TLS_CAFILE", &ca)]);
    check_delivered(&s, &sink, &svc);
    let msg = std::fs::read_to_string(sink.out.join("1.msg")).expect("1.msg");
    let sigs: Vec<&str> = msg.lines().filter(|l| l.starts_with("DKIM-Signature: ")).collect();
    assert_eq!(sigs.len(), 2, "{msg}");
    assert!(sigs[0].contains("a=ed25519-sha256;") && sigs[1].contains("a=rsa-sha256;"), "{msg}");
    let log = svc.log_text();
    assert!(log.contains("DKIM signed: d=example.com s=ed2026 a=ed25519-sha256, d=example.com s=rsa2026 a=rsa-sha256"), "{log}");
}

#[test]
fn queue_run_under_runit_to_the_smarthost() {
    let (s, sink) = site();
    let dir = s.install_dir("queue-run/runit", "/etc/sv/queue-run", None);
    let ca = test_ca(&s);
    let svc = runsv(&dir, &[("TLS_CAFILE", &ca)]);
    check_delivered(&s, &sink, &svc);
    check_log(&s, &svc);
}

#[test]
fn queue_run_under_s6_to_the_smarthost() {
    let (s, sink) = site();
    s.install_dir("queue-run/s6", "/run/service/queue-run", None);
    let ca = test_ca(&s);
    let svc = s6_svscan(&s.p("/run/service"), &[("TLS_CAFILE", &ca)]);
    check_delivered(&s, &sink, &svc);
    check_log(&s, &svc);
}

/// queue-run's lines in /var/log/queue-run/current, written by smtplog.
fn check_log(s: &Site, svc: &Service) {
    let current = s.p("/var/log/queue-run/current");
    let text = wait_file_contains(&current, "delivered", Duration::from_secs(10));
    assert!(text.contains("queue-run: info") && text.contains("delivered"), "{}: {text}\n{}", current.display(), svc.log_text());
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&current).expect("stat"));
    assert_eq!(uid, s.ids.smtplog.0, "{} written by smtplog", current.display());
}

/// The cron job as cron runs it (the file's variables, the command as the
/// named user): a leftover older than 36 hours goes, a fresh one stays.
#[test]
fn queue_inject_cron_cleans_tmp() {
    let s = Site::new();
    let cron = s.install("queue-inject.cron", "/etc/cron.d/smtpd-rs-queue", None);
    let text = std::fs::read_to_string(&cron).expect("cron file");
    let mut env = vec![("PATH".to_owned(), "/usr/bin:/bin".to_owned()), ("SHELL".to_owned(), "/bin/sh".to_owned())];
    let mut job = None;
    for l in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 1 && f[0].contains('=') {
            let (k, v) = f[0].split_once('=').expect("=");
            env.push((k.to_owned(), v.to_owned()));
        } else {
            assert!(f.len() >= 7, "cron line: five times, a user, a command: {l}");
            assert!(job.is_none(), "one job");
            job = Some((f[5].to_owned(), f[6..].join(" ")));
        }
    }
    let (user, command) = job.expect("a job");
    assert_eq!(user, "smtpd", "the job runs as the queue's owner");
    let tmp = s.p("/var/spool/smtpd-rs/queue/tmp");
    std::fs::create_dir_all(&tmp).expect("mkdir tmp");
    chown(&tmp, s.ids.smtpd.0, s.ids.smtpd.1);
    chmod(&tmp, 0o700);
    let (old, fresh) = (tmp.join("1.2.3"), tmp.join("4.5.6"));
    for f in [&old, &fresh] {
        std::fs::write(f, "partial").expect("write");
        chown(f, s.ids.smtpd.0, s.ids.smtpd.1);
    }
    let three_days = std::time::SystemTime::now() - Duration::from_secs(3 * 86400);
    std::fs::File::options().write(true).open(&old).and_then(|f| f.set_modified(three_days)).expect("set mtime");
    let mut c = Command::new(peer("setpriv", "util-linux"));
    c.env_clear().envs(env).arg(format!("--reuid={user}")).arg(format!("--regid={user}")).args(["--init-groups", "--", "/bin/sh", "-c", &command]);
    let o = run(&mut c, b"", Duration::from_secs(30));
    assert_ok(&o, &command);
    assert!(!old.exists(), "the old leftover was removed: {}", o.text());
    assert!(fresh.exists(), "the fresh one was kept");
}
