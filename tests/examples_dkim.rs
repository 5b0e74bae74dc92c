//! conf-examples/dkim as shipped. make-keys.sh, run as root in the table's
//! folder (/etc/smtpd-rs/dkim of the scratch site), makes the keys for the
//! smtpd account and prints their records; queue-run as smtpd, with the
//! DKIM_SIGN that queue-run.env names (commented out there), signs a message
//! from example.com that sendmail queued with both keys of the shipped table
//! and sends it to an aiosmtpd on loopback, where dkimpy verifies both
//! signatures against the printed records. example.com.zone's records parse:
//! DKIM with our key record parser, SPF and DMARC with authcheck's.
#[path = "support/examples.rs"]
mod examples;
#[path = "support/dkim.rs"]
mod dkim_support;
#[path = "support/dkim_verifiers.rs"]
mod verifiers;

// support/dkim_verifiers.rs finds peers.rs as crate::support.
use examples::peers as support;

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use examples::*;
use verifiers::{dkimpy, Records};

/// The keys make-keys.sh makes, the records it prints, the signatures
/// queue-run makes with the shipped table, as dkimpy sees them.
#[test]
fn dkim_keys_table_and_records_as_shipped() {
    let s = Site::new();
    let dir = s.install_dir("dkim", "/etc/smtpd-rs/dkim", None);
    let mut c = Command::new("sh");
    c.env_clear().env("PATH", SERVICE_PATH).arg(dir.join("make-keys.sh")).current_dir(&dir);
    let o = run(&mut c, b"", Duration::from_secs(60));
    assert_ok(&o, "make-keys.sh");
    let zone = String::from_utf8(o.stdout).expect("records");
    for k in ["ed2026.pem", "rsa2026.pem"] {
        let md = std::fs::metadata(dir.join(k)).expect("key");
        assert_eq!((md.uid(), md.mode() & 0o777), (s.ids.smtpd.0, 0o600), "{k}: smtpd's, 0600");
    }
    let records = Records::from_zone(&zone);
    let names: Vec<&str> = records.0.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ed2026._domainkey.example.com", "rsa2026._domainkey.example.com"], "{zone}");

    // A sink, and queue-run as smtpd routed to it.
    let out = s.root().join("sink");
    std::fs::create_dir_all(&out).expect("mkdir");
    let mut sink = Command::new(python3())
        .arg(verifiers::script("dkim_sink.py"))
        .arg(&out)
        .stdin(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 with aiosmtpd (Debian package python3-aiosmtpd)");
    assert!(wait_for(Duration::from_secs(20), || out.join("port").exists()), "the sink did not start");
    let port = std::fs::read_to_string(out.join("port")).expect("port");
    let routes = s.p("/etc/smtpd-rs/test-routes");
    std::fs::write(&routes, format!(":127.0.0.1:{port}\n")).expect("routes");
    let queue = s.p("/var/spool/smtpd-rs/queue");
    let mut c = Command::new(peer("setpriv", "util-linux"));
    c.env_clear()
        .env("PATH", SERVICE_PATH)
        .env("QUEUE_DIR", &queue)
        .env("DKIM_SIGN", s.p("/etc/smtpd-rs/dkim/signing"))
        .env("SMTPROUTES", &routes)
        .env("SMTP_TLS", "none")
        .env("HELOHOST", HOSTNAME)
        .env("SCAN_INTERVAL", "1")
        .args(["--reuid=smtpd", "--regid=smtpd", "--init-groups", "--"])
        .arg(s.program("queue-run"));
    let mut qr = Service::spawn("queue-run", c, Vec::new());
    let mut c = Command::new(peer("setpriv", "util-linux"));
    c.env_clear()
        .env("PATH", SERVICE_PATH)
        .env("QUEUE_DIR", &queue)
        .args(["--reuid=smtpd", "--regid=smtpd", "--init-groups", "--"])
        .arg(s.program("sendmail"))
        .args(["-f", "alice@example.com", "friend@example.net"]);
    let o = run(&mut c, b"From: Alice <alice@example.com>\nTo: friend@example.net\nSubject: signed\n\nhello\n", Duration::from_secs(30));
    assert_ok(&o, "sendmail as smtpd");
    assert!(wait_for(Duration::from_secs(30), || out.join("msg.000001").exists()), "nothing reached the sink:\n{}", qr.log_text());
    let log = qr.log_text();
    assert!(qr.alive(), "{log}");
    assert!(log.contains("DKIM signed: d=example.com s=ed2026 a=ed25519-sha256, d=example.com s=rsa2026 a=rsa-sha256"), "{log}");
    let _ = sink.kill();
    let _ = sink.wait();
    let got = std::fs::read(out.join("msg.000001")).expect("message");
    assert!(got.starts_with(b"DKIM-Signature: v=1; a=ed25519-sha256;"), "{}", String::from_utf8_lossy(&got));
    let path = out.join("msg.000001");
    let answers = dkimpy(&out, &records, &format!("verify\t{0}\t0\nverify\t{0}\t1\n", path.display()));
    assert_eq!(answers, ["pass", "pass"]);
}

/// The records of example.com.zone mean what they say: two DKIM keys, SPF
/// for the domain and the HELO name, one DMARC policy.
#[test]
fn zone_records_parse() {
    let text = std::fs::read_to_string(format!("{TOP}/conf-examples/dkim/example.com.zone")).expect("zone");
    let mut records: Vec<(String, String)> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with(';') && !l.trim().is_empty()) {
        let strings: String = line.split('"').skip(1).step_by(2).collect();
        match (line.starts_with('\t'), records.last_mut()) {
            (true, Some((_, r))) => r.push_str(&strings),
            _ => records.push((line.split_whitespace().next().expect("name").trim_end_matches('.').to_owned(), strings)),
        }
    }
    let names: Vec<&str> = records.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["ed2026._domainkey.example.com", "rsa2026._domainkey.example.com", "example.com", "mail.example.com", "_dmarc.example.com"]
    );
    for (name, rec) in &records {
        let b = rec.as_bytes();
        if name.contains("._domainkey.") {
            let k = smtpd::dkim::key::parse_key_record(b).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!k.is_revoked(), "{name}");
        } else if name.starts_with("_dmarc.") {
            assert!(smtpd::authcheck::dmarc::parse_record(b).is_ok(), "{name}: {rec}");
        } else {
            assert!(smtpd::authcheck::spf::is_spf_record(b), "{name}: {rec}");
            assert!(smtpd::authcheck::spf::parse_record(b).is_ok(), "{name}: {rec}");
        }
    }
}
