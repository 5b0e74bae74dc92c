//! smtpd-passwd and smtpd-checkpassword, the real binaries: a file made and
//! edited by smtpd-passwd, checked by smtpd-checkpassword with fd 3 as
//! smtpd-rs fills it (right and wrong passwords, CRAM-MD5, a file open to
//! others, a missing file, oversize input); then end to end behind
//! smtpd-rs with real clients: swaks --pipe and Python's smtplib over
//! tcpserver, AUTH PLAIN, LOGIN and CRAM-MD5 accepted and refused.
#[path = "support/peers.rs"]
mod support;

use std::fs::{self, File, Permissions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

const CHECKPW: &str = env!("CARGO_BIN_EXE_smtpd-checkpassword");
const PASSWD: &str = env!("CARGO_BIN_EXE_smtpd-passwd");

// RFC 2195's example user and its challenge and digest.
const TIM_PW: &str = "tanstaaftanstaaf";
const CHALLENGE: &str = "<1896.697170952@postoffice.reston.mci.net>";
const DIGEST: &str = "b913a602c7eda7a495b4e6e7334d3890";
// Debian 12's libxcrypt made this yescrypt hash of TIM_PW.
const TIM_YESCRYPT: &str = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$1RQFZyzbGU4uV.c4QftxXYK3O3ixZ5JX//n4ep20am1";

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// smtpd-passwd ARGS with `stdin` as its input.
fn passwd(args: &[&str], stdin: &str) -> Out {
    let mut c = Command::new(PASSWD);
    c.env_remove("CHECKPASSWORD_FILE").args(args);
    let o = run(&mut c, stdin.as_bytes(), DEADLINE);
    Out { code: o.status.code(), stdout: String::from_utf8_lossy(&o.stdout).into(), stderr: String::from_utf8_lossy(&o.stderr).into() }
}

/// smtpd-checkpassword ARGS with `fd3` on its fd 3 (a file, read to its
/// end as a pipe would be) and SMTPAUTHMETHOD `method`.
fn check(dir: &Path, args: &[&str], fd3: &[u8], method: Option<&str>, file_var: Option<&Path>) -> Out {
    let input = dir.join("fd3");
    fs::write(&input, fd3).expect("write fd3 input");
    let f = File::open(&input).expect("open fd3 input");
    let mut c = Command::new(CHECKPW);
    c.args(args).env_remove("SMTPAUTHMETHOD").env_remove("CHECKPASSWORD_FILE").env_remove("USER");
    if let Some(m) = method {
        c.env("SMTPAUTHMETHOD", m);
    }
    if let Some(p) = file_var {
        c.env("CHECKPASSWORD_FILE", p);
    }
    smtpd::sys::child_fd(&mut c, f.as_raw_fd(), 3);
    let o = run(&mut c, b"", DEADLINE);
    drop(f);
    Out { code: o.status.code(), stdout: String::from_utf8_lossy(&o.stdout).into(), stderr: String::from_utf8_lossy(&o.stderr).into() }
}

/// A password file made by smtpd-passwd: alice (argon2id), tim (argon2id
/// and CRAM-MD5), bob (sha512), yves (imported yescrypt).
fn make_file(dir: &Path) -> PathBuf {
    let pw = dir.join("passwd");
    let p = pw.to_str().expect("utf-8 path");
    let o = passwd(&["-f", p, "alice"], "s3cret\n");
    assert_eq!(o.code, Some(100), "no -c, no file: {}", o.stderr);
    assert!(o.stderr.contains("no such file (-c creates it)"), "{}", o.stderr);
    for (args, input) in [
        (vec!["-f", p, "-c", "alice"], "s3cret\n"),
        (vec!["-f", p, "--cram", "tim"], "tanstaaftanstaaf\r\n"),
        (vec!["-f", p, "-m", "sha512", "bob"], "b0b"),
        (vec!["-f", p, "-H", "yves"], &format!("{TIM_YESCRYPT}\n")),
    ] {
        let o = passwd(&args, input);
        assert_eq!(o.code, Some(0), "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains("info: added"), "{}", o.stderr);
        assert!(o.stdout.is_empty());
    }
    assert_eq!(fs::metadata(&pw).expect("stat").permissions().mode() & 0o777, 0o600, "a new file is 0600");
    let text = fs::read_to_string(&pw).expect("read passwd");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("alice:$argon2id$v=19$m=19456,t=2,p=1$") && lines[0].matches(':').count() == 1, "{text}");
    assert!(lines[1].starts_with("tim:$argon2id$") && lines[1].ends_with(":{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b"), "{text}");
    assert!(lines[2].starts_with("bob:$6$") && !lines[2].contains("rounds="), "{text}");
    assert_eq!(lines[3], format!("yves:{TIM_YESCRYPT}"));
    pw
}

#[test]
fn passwd_then_checkpassword() {
    let d = tempfile::tempdir().expect("tempdir");
    let pw = make_file(d.path());
    let p = pw.to_str().expect("utf-8");
    let ok = |user: &str, pass: &str| check(d.path(), &["-f", p, "env"], format!("{user}\0{pass}\0\0").as_bytes(), Some("plain"), None);

    // Right passwords: prog runs (env prints USER), exit 0, nothing logged.
    for (user, pass) in [("alice", "s3cret"), ("tim", TIM_PW), ("bob", "b0b"), ("yves", TIM_PW)] {
        let o = ok(user, pass);
        assert_eq!(o.code, Some(0), "{user}: {}", o.stderr);
        assert!(o.stdout.lines().any(|l| l == format!("USER={user}")), "{user}: {}", o.stdout);
        assert!(o.stderr.is_empty(), "{}", o.stderr);
    }
    // prog's exit is checkpassword's.
    let o = check(d.path(), &["-f", p, "false"], b"alice\0s3cret\0\0", Some("login"), None);
    assert_eq!(o.code, Some(1));
    // Wrong password, unknown user, wrong case: exit 1, one line naming
    // the user and the reason, never the password; prog does not run.
    for (user, pass, why) in [("alice", "s3creT", "wrong password"), ("mallory", "s3cret", "unknown user"), ("Alice", "s3cret", "unknown user")] {
        let o = ok(user, pass);
        assert_eq!(o.code, Some(1), "{user}/{pass}");
        assert!(o.stdout.is_empty(), "prog ran: {}", o.stdout);
        assert_eq!(o.stderr, format!("smtpd-checkpassword: info: rejected user <{user}> (plain): {why}\n"));
        assert!(!o.stderr.contains(pass));
    }

    // CRAM-MD5: tim has the secret, alice does not.
    let cram = |user: &str, digest: &str| {
        check(d.path(), &["-f", p, "env"], format!("{user}\0{digest}\0{CHALLENGE}\0").as_bytes(), Some("cram-md5"), None)
    };
    let o = cram("tim", DIGEST);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.contains("USER=tim\n"));
    assert_eq!(cram("tim", "b913a602c7eda7a495b4e6e7334d3891").code, Some(1));
    let o = cram("alice", DIGEST);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("no CRAM-MD5 secret"), "{}", o.stderr);

    // CHECKPASSWORD_FILE names the file; -f wins over it.
    let o = check(d.path(), &["true"], b"alice\0s3cret\0\0", Some("plain"), Some(&pw));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let o = check(d.path(), &["-f", p, "true"], b"alice\0s3cret\0\0", Some("plain"), Some(Path::new("/nonexistent/pw")));
    assert_eq!(o.code, Some(0), "{}", o.stderr);

    // Oversize fd 3 (djb's limit, 512 bytes): refused, exit 1.
    let mut big = b"alice\0".to_vec();
    big.resize(600, b'x');
    big.extend_from_slice(b"\0\0");
    let o = check(d.path(), &["-f", p, "true"], &big, Some("plain"), None);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("more than 512 bytes on fd 3"), "{}", o.stderr);
    // Not user\0password\0: misuse, exit 2.
    assert_eq!(check(d.path(), &["-f", p, "true"], b"alice\0s3cret", Some("plain"), None).code, Some(2));
    // No prog: misuse.
    assert_eq!(check(d.path(), &["-f", p], b"alice\0s3cret\0\0", Some("plain"), None).code, Some(2));
    // prog that cannot run: temporary.
    let o = check(d.path(), &["-f", p, "/nonexistent/prog"], b"alice\0s3cret\0\0", Some("plain"), None);
    assert_eq!(o.code, Some(111));
    assert!(o.stderr.contains("unable to run /nonexistent/prog"), "{}", o.stderr);

    // A missing file: 111, the path in the log.
    let missing = d.path().join("no-such-passwd");
    let o = check(d.path(), &["-f", missing.to_str().expect("utf-8"), "true"], b"alice\0s3cret\0\0", Some("plain"), None);
    assert_eq!(o.code, Some(111));
    assert!(o.stderr.contains(&format!("{}: unable to open", missing.display())), "{}", o.stderr);

    // A FIFO in its place: 111 at once (opening it must not wait for a writer).
    let fifo = d.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let o = check(d.path(), &["-f", fifo.to_str().expect("utf-8"), "true"], b"alice\0s3cret\0\0", Some("plain"), None);
    assert_eq!(o.code, Some(111));
    assert!(o.stderr.contains("fifo: not a regular file"), "{}", o.stderr);

    // Group-readable (root:smtpd 0640) is fine; readable by others is not.
    fs::set_permissions(&pw, Permissions::from_mode(0o640)).expect("chmod");
    assert_eq!(ok("alice", "s3cret").code, Some(0));
    for mode in [0o644, 0o604, 0o602, 0o601] {
        fs::set_permissions(&pw, Permissions::from_mode(mode)).expect("chmod");
        let o = ok("alice", "s3cret");
        assert_eq!(o.code, Some(111), "mode {mode:o}");
        assert!(o.stderr.contains(&format!("{p}: open to others (mode {mode:04o})")), "{}", o.stderr);
        assert!(o.stdout.is_empty());
    }
    fs::set_permissions(&pw, Permissions::from_mode(0o640)).expect("chmod");

    // A malformed line: 111 naming the file and the line.
    let mut text = fs::read(&pw).expect("read");
    text.extend_from_slice(b"carol:plaintext\n");
    fs::write(&pw, &text).expect("write");
    let o = ok("alice", "s3cret");
    assert_eq!(o.code, Some(111));
    assert!(o.stderr.contains(&format!("{p}: line 5: unsupported hash scheme")), "{}", o.stderr);
}

#[test]
fn passwd_edits_keep_the_rest() {
    let d = tempfile::tempdir().expect("tempdir");
    let pw = make_file(d.path());
    let p = pw.to_str().expect("utf-8");
    // A comment the operator wrote, and the mode they chose.
    let mut text = b"# smtpd-checkpassword users\n\n".to_vec();
    text.extend(fs::read(&pw).expect("read"));
    fs::write(&pw, &text).expect("write");
    fs::set_permissions(&pw, Permissions::from_mode(0o640)).expect("chmod");

    // Change alice's password: her line changes in place, nothing else.
    let o = passwd(&["-f", p, "alice"], "n3w\n");
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stderr.contains("info: changed alice in"), "{}", o.stderr);
    let after = fs::read_to_string(&pw).expect("read");
    assert!(after.starts_with("# smtpd-checkpassword users\n\nalice:$argon2id$"), "{after}");
    let old: Vec<&str> = std::str::from_utf8(&text).expect("utf-8").lines().collect();
    let new: Vec<&str> = after.lines().collect();
    assert_eq!(old.len(), new.len());
    for (i, (a, b)) in old.iter().zip(&new).enumerate() {
        assert_eq!(a == b, i != 2, "line {i}: {a} / {b}");
    }
    assert_eq!(fs::metadata(&pw).expect("stat").permissions().mode() & 0o7777, 0o640, "the mode is kept");
    assert_eq!(check(d.path(), &["-f", p, "true"], b"alice\0n3w\0\0", Some("plain"), None).code, Some(0));
    assert_eq!(check(d.path(), &["-f", p, "true"], b"alice\0s3cret\0\0", Some("plain"), None).code, Some(1));

    // A new password without --cram drops tim's CRAM-MD5 secret (it would
    // still answer for the old password).
    assert_eq!(passwd(&["-f", p, "tim"], "other\n").code, Some(0));
    assert!(!fs::read_to_string(&pw).expect("read").contains("{CRAM-MD5}"));

    // Delete bob; a second time: no such user (100).
    assert_eq!(passwd(&["-f", p, "-d", "bob"], "").code, Some(0));
    let o = passwd(&["-f", p, "-d", "bob"], "");
    assert_eq!(o.code, Some(100));
    assert!(o.stderr.contains("no user bob"), "{}", o.stderr);
    assert!(!fs::read_to_string(&pw).expect("read").contains("\nbob:"));

    // Refused input leaves the file as it was.
    let before = fs::read(&pw).expect("read");
    for (args, input, why) in [
        (vec!["-f", p, "alice"], "", "nothing on stdin"),
        (vec!["-f", p, "alice"], "\n", "empty password"),
        (vec!["-f", p, "-H", "alice"], "plaintext\n", "unsupported hash scheme"),
        (vec!["-f", p, "-m", "md5", "alice"], "x\n", "unknown method"),
        (vec!["-f", p, "al:ice"], "x\n", "bad user name"),
    ] {
        let o = passwd(&args, input);
        assert_eq!(o.code, Some(100), "{args:?}");
        assert!(o.stderr.contains(why), "{args:?}: {}", o.stderr);
    }
    let long = format!("{}\n", "x".repeat(600));
    assert_eq!(passwd(&["-f", p, "alice"], &long).code, Some(100));
    assert_eq!(fs::read(&pw).expect("read"), before);
    // No temporary file left behind.
    let names: Vec<String> = fs::read_dir(d.path()).expect("readdir").flatten().map(|e| e.file_name().to_string_lossy().into()).collect();
    assert!(names.iter().all(|n| !n.starts_with(".smtpd-passwd.")), "{names:?}");

    // A malformed file is not rewritten: 100, its line named.
    fs::write(&pw, b"alice:plaintext\n").expect("write");
    let o = passwd(&["-f", p, "bob"], "b0b\n");
    assert_eq!(o.code, Some(100));
    assert!(o.stderr.contains("line 1: unsupported hash scheme") && o.stderr.contains("fix it by hand"), "{}", o.stderr);
    assert_eq!(fs::read(&pw).expect("read"), b"alice:plaintext\n");
}

#[test]
fn passwd_keeps_the_owner() {
    // As root, a file given to another uid and gid (root:smtpd in real
    // life) keeps them when rewritten.
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let pw = make_file(d.path());
    nix::unistd::chown(&pw, Some(4242.into()), Some(4343.into())).expect("chown");
    assert_eq!(passwd(&["-f", pw.to_str().expect("utf-8"), "alice"], "n3w\n").code, Some(0));
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(&pw).expect("stat");
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (4242, 4343, 0o600));
}

// --- end to end: smtpd-rs runs smtpd-checkpassword ---

fn swaks_auth(s: &Scratch, pw: &Path, mech: &str, user: &str, pass: &str) -> Output {
    let mut c = Command::new(peer("swaks", "swaks"));
    s.env(&mut c);
    c.env("SMTPAUTH", "+cram").env("SMTPAUTH_PLAINTEXT", "1");
    let pipe = format!("{SMTPD} {CHECKPW} -f {} true", pw.display());
    c.args(["--pipe", &pipe, "--helo", "client.test", "--from", "sender@example.org", "--to", "user@example.com"]);
    c.args(["--timeout", "20", "--auth", mech, "--auth-user", user, "--auth-password", pass]);
    run(&mut c, b"", DEADLINE)
}

#[test]
fn swaks_pipe_auth_each_mechanism() {
    let s = Scratch::new();
    let pw = make_file(s.dir.path());
    fs::set_permissions(&pw, Permissions::from_mode(0o640)).expect("chmod");
    let mut queued = 0;
    for (mech, user, pass) in [("PLAIN", "alice", "s3cret"), ("LOGIN", "bob", "b0b"), ("CRAM-MD5", "tim", TIM_PW), ("PLAIN", "yves", TIM_PW)] {
        let o = swaks_auth(&s, &pw, mech, user, pass);
        let t = o.text();
        assert!(o.status.success(), "{mech} {user}: {t}");
        assert!(t.contains("235 2.7.0"), "{t}");
        queued += 1;
        assert_eq!(s.wait_new(queued, Duration::from_secs(5)).len(), queued, "{t}");
        assert!(t.contains(&format!("auth: success type={} user=<{user}>", mech.to_ascii_lowercase())), "{t}");
    }
    // Refusals: a 535 and nothing queued, and checkpassword's reason in the log.
    for (mech, user, pass, why) in [
        ("PLAIN", "alice", "Wr0ngPw", "wrong password"),
        ("LOGIN", "nobody", "s3cret", "unknown user"),
        ("CRAM-MD5", "tim", "Wr0ngPw", "wrong password"),
        ("CRAM-MD5", "alice", "s3cret", "no CRAM-MD5 secret"),
    ] {
        let o = swaks_auth(&s, &pw, mech, user, pass);
        let t = o.text();
        assert!(!o.status.success(), "{mech} {user} accepted: {t}");
        assert!(t.contains("535 5.7.8"), "{t}");
        assert!(t.contains(&format!("smtpd-checkpassword: info: rejected user <{user}> ({}): {why}", mech.to_ascii_lowercase())), "{t}");
        let ours: Vec<&str> = t.lines().filter(|l| l.starts_with("smtpd-checkpassword:")).collect();
        assert_eq!(ours.len(), 1, "one line per failure: {t}");
        assert!(!ours[0].contains(pass), "the password in the log: {}", ours[0]);
    }
    // A file open to others: a temporary failure, 454.
    fs::set_permissions(&pw, Permissions::from_mode(0o644)).expect("chmod");
    let o = swaks_auth(&s, &pw, "PLAIN", "alice", "s3cret");
    let t = o.text();
    assert!(!o.status.success() && t.contains("454 4.7.0"), "{t}");
    assert!(t.contains("open to others (mode 0644)"), "{t}");
    assert_eq!(s.new_files().len(), queued);
}

const SMTPLIB: &str = r#"
import smtplib, sys
port, mech, user, pw, want = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
s = smtplib.SMTP('127.0.0.1', port, timeout=20)
s.ehlo('client.test')
assert s.has_extn('auth'), s.esmtp_features
assert set(s.esmtp_features['auth'].split()) == {'LOGIN', 'PLAIN', 'CRAM-MD5'}, s.esmtp_features
s.user, s.password = user, pw
obj = {'CRAM-MD5': s.auth_cram_md5, 'PLAIN': s.auth_plain, 'LOGIN': s.auth_login}[mech]
try:
    code, msg = s.auth(mech, obj)
except smtplib.SMTPAuthenticationError as e:
    code, msg = e.smtp_code, e.smtp_error
assert code == want, (mech, user, code, msg)
if code == 235:
    s.sendmail('sender@example.org', ['user@example.com'], b'Subject: smtplib auth\r\n\r\nhi\r\n')
s.quit()
print('OK')
"#;

#[test]
fn python_smtplib_auth_each_mechanism() {
    let py = python3();
    let s = Scratch::new();
    let pw = make_file(s.dir.path());
    let env = [("SMTPAUTH", Some("+cram")), ("SMTPAUTH_PLAINTEXT", Some("1"))];
    let srv = TcpServer::start(&s, &env, &[SMTPD, CHECKPW, "-f", pw.to_str().expect("utf-8"), "true"]);
    let mut queued = 0;
    for (mech, user, pass, want) in [
        ("CRAM-MD5", "tim", TIM_PW, 235),
        ("PLAIN", "alice", "s3cret", 235),
        ("LOGIN", "bob", "b0b", 235),
        ("CRAM-MD5", "tim", "tanstaaftanstaaF", 535),
        ("CRAM-MD5", "bob", "b0b", 535),
        ("PLAIN", "alice", "s3cret ", 535),
        ("LOGIN", "yves", "nope", 535),
    ] {
        let mut c = Command::new(&py);
        s.env(&mut c);
        c.arg("-c").arg(SMTPLIB).arg(srv.port.to_string()).args([mech, user, pass, &want.to_string()]);
        let o = run(&mut c, b"", DEADLINE);
        assert!(o.status.success() && o.stdout.starts_with(b"OK"), "{mech} {user}: {}\n--- log\n{}", o.text(), srv.log_text());
        if want == 235 {
            queued += 1;
        }
        assert_eq!(s.wait_new(queued, Duration::from_secs(5)).len(), queued, "{}", srv.log_text());
    }
    let log = srv.log_text();
    assert!(log.contains("rejected user <bob> (cram-md5): no CRAM-MD5 secret"), "{log}");
}
