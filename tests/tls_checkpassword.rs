//! smtpd::smtpd::checkpassword against a small checkpassword program: each
//! mechanism, right and wrong passwords, temporary failure, misuse, a
//! program that hangs (timeout) and one that does not exist.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use smtpd::smtpd::auth::{self, Credentials, Mech, Step};
use smtpd::smtpd::checkpassword::{check, Verdict};

fn prog(sub: &[&str]) -> Vec<OsString> {
    let mut v = vec![OsString::from(format!("{}/tests/support/checkpassword.py", env!("CARGO_MANIFEST_DIR")))];
    v.extend(sub.iter().map(OsString::from));
    v
}

fn creds(mech: Mech, user: &str, secret: &str, chal: &[u8]) -> Credentials {
    Credentials { mech, user: user.into(), secret: secret.into(), challenge: chal.to_vec() }
}

#[test]
fn plain_and_login_passwords() {
    let t = Duration::from_secs(20);
    assert_eq!(check(&prog(&["true"]), &creds(Mech::Plain, "alice", "s3cret", b""), t).unwrap(), Verdict::Accepted);
    assert_eq!(check(&prog(&["true"]), &creds(Mech::Login, "bob", "b0b", b""), t).unwrap(), Verdict::Accepted);
    assert_eq!(check(&prog(&["true"]), &creds(Mech::Plain, "alice", "wrong", b""), t).unwrap(), Verdict::Rejected);
    assert_eq!(check(&prog(&["true"]), &creds(Mech::Plain, "nobody", "x", b""), t).unwrap(), Verdict::Rejected);
    // The subprogram's exit is checkpassword's: "false" turns a success into a refusal.
    assert_eq!(check(&prog(&["false"]), &creds(Mech::Plain, "alice", "s3cret", b""), t).unwrap(), Verdict::Rejected);
    assert_eq!(check(&prog(&["true"]), &creds(Mech::Plain, "tempfail", "x", b""), t).unwrap(), Verdict::TempFail);
}

#[test]
fn cram_md5_through_the_exchange() {
    let chal = auth::cram_challenge(std::process::id(), 1_700_000_000, "mx.test");
    for (pw, want) in [("s3cret", Verdict::Accepted), ("nope", Verdict::Rejected)] {
        let (mut ex, _) = auth::start(Mech::CramMd5, None, chal.clone());
        let answer = format!("alice {}", auth::cram_md5_digest(pw.as_bytes(), &chal));
        use base64::Engine;
        let line = base64::engine::general_purpose::STANDARD.encode(answer);
        let Step::Check(c) = ex.respond(line.as_bytes()) else { panic!("no check") };
        assert_eq!(check(&prog(&["true"]), &c, Duration::from_secs(20)).unwrap(), want, "{pw}");
    }
}

#[test]
fn fd3_layout_and_method_variable() {
    // A checkpassword stand-in that records fd 3 and SMTPAUTHMETHOD.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let rec = |log: &std::path::Path| {
        vec![
            OsString::from("/bin/sh"),
            OsString::from("-c"),
            OsString::from("cat <&3 >> \"$0\"; echo \" $SMTPAUTHMETHOD\" >> \"$0\""),
            log.as_os_str().to_owned(),
        ]
    };
    let t = Duration::from_secs(20);
    assert_eq!(check(&rec(&log), &creds(Mech::Login, "alice", "s3cret", b""), t).unwrap(), Verdict::Accepted);
    check(&rec(&log), &creds(Mech::CramMd5, "alice", "0123456789abcdef0123456789abcdef", b"<1.2@h>"), t).unwrap();
    let got = std::fs::read(&log).unwrap();
    assert_eq!(got, b"alice\0s3cret\0\0 login\nalice\x000123456789abcdef0123456789abcdef\0<1.2@h>\0 cram-md5\n".to_vec());
}

#[test]
fn misuse_timeout_and_missing_program() {
    // Exit 2 (misuse): a program that reads fd 3 and finds garbage.
    let sh = vec![OsString::from("/bin/sh"), OsString::from("-c"), OsString::from("exit 2")];
    assert_eq!(check(&sh, &creds(Mech::Plain, "a", "b", b""), Duration::from_secs(10)).unwrap(), Verdict::Misuse);
    let t0 = Instant::now();
    let v = check(&prog(&["true"]), &creds(Mech::Plain, "slow", "x", b""), Duration::from_millis(800)).unwrap();
    assert_eq!(v, Verdict::TempFail);
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(check(&[OsString::from("/nonexistent/checkpassword")], &creds(Mech::Plain, "a", "b", b""), Duration::from_secs(5)).is_err());
    assert!(check(&[], &creds(Mech::Plain, "a", "b", b""), Duration::from_secs(5)).is_err());
}
