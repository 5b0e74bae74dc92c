//! sendmail for every local user (issue 17, point 9): an unprivileged
//! sendmail runs queue-drop, setgid to the drop group, which writes into
//! the queue's drop folder (maildrop/, 1730 <queue user>:<drop group>);
//! queue-run, as the queue's user, checks each drop file, queues it through
//! queue-inject with the real uid recorded, and removes it. Set up as
//! installed, in a scratch folder: a throwaway drop group (groupadd, removed
//! after), copies of sendmail and queue-drop with the setgid bit, the queue
//! and queue-run belonging to a uid of their own (64999, no account needed),
//! senders run as nobody (uid 65534) and as root (setpriv). These tests need
//! root (CI runs as root).

#[path = "support/queuerun.rs"]
mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::*;

const QUEUE_RUN: &str = env!("CARGO_BIN_EXE_queue-run");
const QUEUE_INJECT: &str = env!("CARGO_BIN_EXE_queue-inject");
const SENDMAIL: &str = env!("CARGO_BIN_EXE_sendmail");
const QUEUE_DROP: &str = env!("CARGO_BIN_EXE_queue-drop");
const NOBODY: u32 = 65534;
/// The queue's user: neither the sender nor in the drop group.
const OWNER: u32 = 64999;

/// A drop group made for one test, removed when dropped.
struct Group {
    name: String,
    gid: u32,
}

impl Group {
    fn new(tag: &str) -> Group {
        assert!(nix::unistd::geteuid().is_root(), "this test needs root: it sets up a setgid program and runs as nobody");
        let name = format!("qd{}{tag}", std::process::id());
        let st = Command::new("groupadd").arg(&name).status().expect("groupadd missing: install the Debian package passwd");
        assert!(st.success(), "groupadd {name}");
        let out = Command::new("getent").args(["group", &name]).output().unwrap();
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        let gid = line.split(':').nth(2).and_then(|g| g.parse().ok()).unwrap_or_else(|| panic!("getent: {line}"));
        Group { name, gid }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.name).status();
    }
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// The installed-like set-up.
struct Site {
    w: World,
    group: Group,
    bin: PathBuf,
}

impl Site {
    fn new(tag: &str) -> Site {
        let group = Group::new(tag);
        let w = World::new();
        chmod(w.dir.path(), 0o755);
        // The queue belongs to OWNER, who runs queue-run; the fakes write to out/.
        for d in [w.queue(), w.queue().join("new"), w.queue().join("tmp"), w.out()] {
            chown(&d, Some(OWNER), Some(OWNER)).unwrap();
        }
        chown(w.out().join("rules"), Some(OWNER), Some(OWNER)).unwrap();
        let md = w.queue().join("maildrop");
        fs::create_dir(&md).unwrap();
        chown(&md, Some(OWNER), Some(group.gid)).unwrap();
        chmod(&md, 0o1730);
        // sendmail and queue-drop side by side, queue-drop setgid to the group
        // (chown first: it clears the setgid bit).
        let bin = w.dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        chmod(&bin, 0o755);
        exe::copy(Path::new(SENDMAIL), &bin.join("sendmail"));
        exe::copy(Path::new(QUEUE_DROP), &bin.join("queue-drop"));
        chown(bin.join("queue-drop"), Some(0), Some(group.gid)).unwrap();
        chmod(&bin.join("queue-drop"), 0o2755);
        Site { w, group, bin }
    }

    /// queue-run as the queue's user, with the real queue-inject.
    fn queue_run(&self) -> Kid {
        let mut c = self.w.command("setpriv");
        c.args([&format!("--reuid={OWNER}"), &format!("--regid={OWNER}"), "--clear-groups", QUEUE_RUN]).env("QMAILQUEUE", QUEUE_INJECT);
        Kid(c.spawn().unwrap())
    }

    /// The scratch sendmail, as `uid` (through setpriv unless root); its exit code and stderr.
    fn sendmail(&self, uid: u32, queue: &Path, args: &[&str], msg: &[u8]) -> (i32, String) {
        let sm = self.bin.join("sendmail");
        let mut c = if uid == 0 {
            Command::new(&sm)
        } else {
            let mut c = Command::new("setpriv");
            c.args([&format!("--reuid={uid}"), &format!("--regid={uid}"), "--clear-groups"]).arg(&sm);
            c
        };
        c.args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("QUEUE_DIR", queue)
            .env("MAILHOST", "host.test")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut k = c.spawn().unwrap();
        let _ = k.stdin.take().unwrap().write_all(msg);
        let out = k.wait_with_output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    fn maildrop(&self) -> Vec<String> {
        fs::read_dir(self.w.queue().join("maildrop")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }

    /// (message, attributes) the fake smtp-remote got for `rcpt`.
    fn delivered(&self, rcpt: &str) -> Option<(String, String)> {
        self.w.recorded("args.").iter().find_map(|p| {
            let args = fs::read_to_string(p).unwrap();
            if !args.lines().skip(2).any(|l| l == rcpt) {
                return None;
            }
            let n = p.file_name().unwrap().to_string_lossy().trim_start_matches("args.").to_string();
            let msg = fs::read_to_string(self.w.out().join(format!("msg.{n}"))).unwrap_or_default();
            let attrs = fs::read_to_string(self.w.out().join(format!("attrs.{n}"))).unwrap_or_default();
            Some((msg, attrs))
        })
    }
}

#[test]
fn nobody_and_root_send_through_the_drop_folder() {
    let s = Site::new("a");
    let q = s.w.queue();
    // As nobody, before queue-run runs: the file waits in maildrop/.
    let (code, err) = s.sendmail(NOBODY, &q, &["-f", "app@host.test", "rcpt1@x.test"], b"Subject: from nobody\n\nhello\n");
    assert_eq!(code, 0, "{err}");
    let drops = s.maildrop();
    assert_eq!(drops.len(), 1, "{drops:?}");
    let f = q.join("maildrop").join(&drops[0]);
    let md = fs::metadata(&f).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (NOBODY, s.group.gid, 0o644), "owner and mode of the drop file");
    let list = s.w.command(QUEUE_RUN).arg("--list").output().unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).ends_with("0 messages\n1 local messages waiting in maildrop/\n"), "{list:?}");
    let k = s.queue_run();
    wait_for(30, "nobody's message delivered", || s.delivered("rcpt1@x.test").is_some());
    let (msg, attrs) = s.delivered("rcpt1@x.test").unwrap();
    assert!(msg.starts_with("Received: by mx.test (smtpd-rs queue-run, from uid 65534 (nobody))\n\tid "), "{msg}");
    assert!(msg.contains("\nFrom: nobody@host.test\n") && msg.ends_with("Subject: from nobody\n\nhello\n"), "{msg}");
    assert!(attrs.contains("SUBMITTER_UID=65534\n"), "{attrs}");
    // As root, while queue-run runs: a file queue-run (nobody) can read.
    let (code, err) = s.sendmail(0, &q, &["rcpt2@x.test"], b"Subject: from root\n\nhi\n");
    assert_eq!(code, 0, "{err}");
    wait_for(30, "root's message delivered", || s.delivered("rcpt2@x.test").is_some());
    let (msg, attrs) = s.delivered("rcpt2@x.test").unwrap();
    assert!(msg.starts_with("Received: by mx.test (smtpd-rs queue-run, from uid 0 (root))"), "{msg}");
    assert!(attrs.contains("SUBMITTER_UID=0\n"), "{attrs}");
    wait_for(10, "maildrop/ and new/ empty", || s.maildrop().is_empty() && s.w.queued().is_empty());
    let log = s.w.log_after(k);
    assert!(log.contains("local message from uid 65534 (nobody) queued"), "{log}");
    // Without the setgid bit nobody cannot: a temporary failure, nothing written.
    chmod(&s.bin.join("queue-drop"), 0o755);
    let (code, err) = s.sendmail(NOBODY, &q, &["rcpt3@x.test"], b"Subject: x\n\nx\n");
    assert_eq!(code, 75, "{err}");
    assert!(err.contains("queue-drop: fatal: "), "{err}");
    assert!(s.maildrop().is_empty());
}

#[test]
fn root_with_queue_inject_into_another_users_queue_is_refused() {
    // What used to leave a root-owned 0640 file queue-run could not read:
    // queue-inject as root refuses a queue that belongs to another user.
    let s = Site::new("b");
    let out = Command::new(s.bin.join("sendmail"))
        .args(["a@x.test"])
        .env("QMAILQUEUE", QUEUE_INJECT)
        .env("QUEUE_DIR", s.w.queue())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut k| {
            let _ = k.stdin.take().unwrap().write_all(b"Subject: x\n\nx\n");
            k.wait_with_output()
        })
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(err.contains("belongs to uid 64999"), "{err}");
    assert!(s.w.queued().is_empty());
}

#[test]
fn queue_drop_writes_only_into_a_drop_folder_root_made() {
    // The caller names QUEUE_DIR; queue-drop (setgid) writes only where the
    // folder is the drop group's with mode 1730. A folder anybody can write
    // to, or the right group with the wrong mode, is refused.
    let s = Site::new("c");
    for (mode, gid) in [(0o1733, 0), (0o1770, s.group.gid), (0o2730, s.group.gid)] {
        let other = s.w.dir.path().join(format!("other{mode:o}"));
        fs::create_dir_all(other.join("maildrop")).unwrap();
        chmod(&other, 0o755);
        chown(other.join("maildrop"), Some(0), Some(gid)).unwrap();
        chmod(&other.join("maildrop"), mode);
        let (code, err) = s.sendmail(NOBODY, &other, &["a@x.test"], b"Subject: x\n\nx\n");
        assert_eq!(code, 75, "{mode:o}: {err}");
        assert!(err.contains("queue-drop: fatal: refusing") && err.contains("not the drop folder"), "{mode:o}: {err}");
        assert_eq!(fs::read_dir(other.join("maildrop")).unwrap().count(), 0, "{mode:o}: written anyway");
    }
    // A symbolic link named maildrop is not followed.
    let other = s.w.dir.path().join("linked");
    fs::create_dir(&other).unwrap();
    chmod(&other, 0o755);
    std::os::unix::fs::symlink(s.w.queue().join("maildrop"), other.join("maildrop")).unwrap();
    let (code, err) = s.sendmail(NOBODY, &other, &["a@x.test"], b"Subject: x\n\nx\n");
    assert_eq!(code, 75, "{err}");
    assert!(s.maildrop().is_empty());
    // Attributes a local user may not give (client facts) are refused.
    let mut c = Command::new("setpriv");
    c.args([&format!("--reuid={NOBODY}"), &format!("--regid={NOBODY}"), "--clear-groups"]).arg(s.bin.join("queue-drop"));
    c.env_clear().env("QUEUE_DIR", s.w.queue()).env("QUEUE_ATTRS", "CLIENT_ADDR=192.0.2.1\n");
    let (r, wr) = nix::unistd::pipe().unwrap();
    let mut k = c.stdin(Stdio::piped()).stdout(Stdio::from(r)).stderr(Stdio::piped()).spawn().unwrap();
    let _ = k.stdin.take().unwrap().write_all(b"x\n");
    let mut e = fs::File::from(wr);
    let _ = e.write_all(b"Fa@b.test\0Tc@d.test\0\0");
    drop(e);
    let out = k.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(31), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.maildrop().is_empty());
}

#[test]
fn forged_drop_files_are_set_aside() {
    // Files queue-drop would not write (root plants them): a SUBMITTER_UID
    // that is not the file's owner, a client fact, no SUBMITTER_UID.
    let s = Site::new("d");
    let md = s.w.queue().join("maildrop");
    let plant = |name: &str, attrs: &str, owner: u32| {
        let p = md.join(name);
        fs::write(&p, format!("smtpd-queue 1\nid {name}\ntime 1\nfrom a@b.test\nto victim@x.test\n{attrs}\nSubject: forged\n\nx\n")).unwrap();
        chown(&p, Some(owner), None).unwrap();
        chmod(&p, 0o644);
    };
    plant("1.aa", "attr SUBMITTER_UID=0\n", NOBODY);
    plant("1.bb", "attr SUBMITTER_UID=65534\nattr CLIENT_ADDR=192.0.2.1\n", NOBODY);
    plant("1.cc", "", NOBODY);
    plant("1.dd", "attr SUBMITTER_UID=65534\n", NOBODY);
    let k = s.queue_run();
    wait_for(30, "maildrop/ emptied", || s.maildrop().is_empty());
    wait_for(30, "the good one delivered", || s.delivered("victim@x.test").is_some());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let log = s.w.log_after(k);
    assert_eq!(s.w.deliveries().len(), 1, "{log}");
    for (name, why) in [("1.aa", "SUBMITTER_UID 0 but the file belongs to uid 65534"), ("1.bb", "CLIENT_ADDR"), ("1.cc", "no SUBMITTER_UID")] {
        assert!(s.w.queue().join("bad").join(format!("maildrop.{name}")).exists(), "{name}: {log}");
        assert!(log.contains(&format!("maildrop/{name}: ")) && log.contains(why), "{name}: {log}");
    }
}
