//! conf-examples/setup-accounts.sh: --dry-run changes nothing and prints
//! the commands; under a prefix (ROOT=, useradd --prefix) it makes the
//! accounts and folders the script's header lists, and a second run changes
//! nothing and says nothing; for real (as root), run twice, the same; and
//! the README gives the same useradd lines.
#[path = "support/examples.rs"]
mod examples;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use examples::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf-examples/setup-accounts.sh");
const ACCOUNTS: [&str; 3] = ["smtpd", "smtpd-tls", "smtplog"];

/// A prefix with the smallest /etc that useradd --prefix works on.
fn prefix() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    let etc = d.path().join("etc");
    std::fs::create_dir(&etc).expect("mkdir etc");
    for (f, text) in [
        ("passwd", "root:x:0:0:root:/root:/bin/bash\n"),
        ("group", "root:x:0:\nadm:x:4:\n"),
        ("shadow", "root:*:19000:0:99999:7:::\n"),
        ("gshadow", "root:*::\nadm:*::\n"),
    ] {
        std::fs::write(etc.join(f), text).expect("write");
    }
    d
}

/// The script, with ROOT set or not; (stdout, stderr).
fn setup(root: Option<&Path>, args: &[&str]) -> (String, String) {
    let mut c = Command::new("sh");
    c.arg(SCRIPT).args(args).env_clear().env("PATH", SERVICE_PATH);
    if let Some(r) = root {
        c.env("ROOT", r);
    }
    let o = run(&mut c, b"", Duration::from_secs(60));
    assert_ok(&o, &format!("setup-accounts.sh {args:?} (ROOT {root:?})"));
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn field(file: &Path, name: &str, n: usize) -> Option<String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines().find(|l| l.split(':').next() == Some(name)).and_then(|l| l.split(':').nth(n)).map(str::to_owned)
}

fn snapshot(root: &Path) -> Vec<(String, String)> {
    walk(root)
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).expect("stat");
            (p.display().to_string(), format!("{} {}:{} {:o} {}", m.len(), m.uid(), m.gid(), m.mode(), std::fs::read_to_string(&p).unwrap_or_default()))
        })
        .collect()
}

#[test]
fn dry_run_prints_the_commands_and_changes_nothing() {
    need_root();
    let d = prefix();
    let before = snapshot(d.path());
    let (out, err) = setup(Some(d.path()), &["--dry-run"]);
    assert_eq!(snapshot(d.path()), before, "--dry-run changed the prefix:\n{out}");
    assert!(!d.path().join("var").exists());
    for a in ACCOUNTS {
        assert!(out.lines().any(|l| l.starts_with("useradd ") && l.ends_with(&format!(" {a}"))), "useradd {a}:\n{out}");
    }
    for p in ["/etc/smtpd-rs", "/var/spool/smtpd-rs/queue", "/var/log/smtpd-rs", "/var/log/queue-run"] {
        assert!(out.contains(&format!("mkdir -p {}{p}", d.path().display())), "mkdir {p}:\n{out}");
    }
    assert!(err.is_empty(), "{err}");
}

#[test]
fn under_a_prefix_twice() {
    need_root();
    let d = prefix();
    let r = d.path();
    let (_, err) = setup(Some(r), &[]);
    let passwd = r.join("etc/passwd");
    let group = r.join("etc/group");
    for a in ACCOUNTS {
        assert!(err.contains(&format!("adding the system user {a}")), "{err}");
        assert_eq!(field(&passwd, a, 6).as_deref(), Some("/usr/sbin/nologin"), "{a}: no login shell");
        assert_eq!(field(&passwd, a, 5).as_deref(), Some("/nonexistent"), "{a}: no home");
        let uid: u32 = field(&passwd, a, 2).and_then(|u| u.parse().ok()).unwrap_or_else(|| panic!("{a} in the prefix's passwd"));
        assert!(uid < 1000, "{a}: a system account ({uid})");
        assert_eq!(field(&passwd, a, 3), field(&group, a, 2), "{a}: a group of its own");
    }
    let id = |f: &Path, n: &str| -> u32 { field(f, n, 2).and_then(|v| v.parse().ok()).expect("id") };
    let (smtpd, smtplog) = (id(&passwd, "smtpd"), id(&passwd, "smtplog"));
    let smtpd_g = id(&group, "smtpd");
    for (p, uid, gid, mode) in [
        ("etc/smtpd-rs", 0, 0, 0o755),
        ("etc/smtpd-rs/passwd", 0, smtpd_g, 0o640),
        ("var/spool/smtpd-rs", smtpd, smtpd_g, 0o750),
        ("var/spool/smtpd-rs/queue", smtpd, smtpd_g, 0o750),
        ("var/log/smtpd-rs", smtplog, 4, 0o750),
        ("var/log/queue-run", smtplog, 4, 0o750),
    ] {
        let m = std::fs::metadata(r.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (uid, gid, mode), "{p}");
    }
    // Idempotent: nothing to do, nothing said, nothing changed.
    let before = snapshot(r);
    let (out, err) = setup(Some(r), &[]);
    assert!(out.is_empty() && err.is_empty(), "second run: {out}{err}");
    assert_eq!(snapshot(r), before, "the second run changed something");
    let (out, _) = setup(Some(r), &["--dry-run"]);
    assert!(out.is_empty(), "dry run after: {out}");
    // A mode put wrong is put back, and only that.
    chmod(&r.join("var/spool/smtpd-rs/queue"), 0o777);
    let (out, err) = setup(Some(r), &["--dry-run"]);
    assert_eq!(out.trim(), format!("chmod 0750 {}/var/spool/smtpd-rs/queue", r.display()), "{err}");
    setup(Some(r), &[]);
    assert_eq!(snapshot(r), before);
}

#[test]
fn for_real_twice() {
    need_root();
    // accounts() runs it once; then again: nothing to do.
    let ids = accounts();
    let files = ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"];
    let read = || files.iter().map(|f| std::fs::read(f).unwrap_or_default()).collect::<Vec<_>>();
    let before = read();
    let (out, err) = setup(None, &[]);
    assert!(out.is_empty() && err.is_empty(), "second run for real: {out}{err}");
    assert_eq!(read(), before, "the second run changed the account files");
    let (out, _) = setup(None, &["--dry-run"]);
    assert!(out.is_empty(), "dry run after: {out}");
    let m = std::fs::metadata("/var/spool/smtpd-rs/queue").expect("the queue folder");
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (ids.smtpd.0, ids.smtpd.1, 0o750));
    let m = std::fs::metadata("/etc/smtpd-rs/passwd").expect("the password file");
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, ids.smtpd.1, 0o640));
}

/// The README's set-up gives the same useradd lines as the script.
#[test]
fn readme_gives_the_scripts_useradd_lines() {
    need_root();
    let d = prefix();
    let (out, _) = setup(Some(d.path()), &["--dry-run"]);
    let readme = std::fs::read_to_string(format!("{TOP}/README.md")).expect("README.md");
    let pre = format!("--prefix {} ", d.path().display());
    for l in out.lines().filter(|l| l.starts_with("useradd ")) {
        let l = l.replace(&pre, "");
        assert!(readme.contains(&l), "README.md lacks `{l}`");
    }
}
