//! maildir-deliver run as queue-run runs it: the report, the map and its
//! extension rule, the loop check, privileges (as root: each write as the
//! Maildir's owner; not root: only its own Maildirs), kill -9 at random
//! moments (never a partial file in new/ or cur/), a full disk (a small
//! tmpfs mounted here) and RLIMIT_FSIZE (temporary, nothing partial), and
//! queue-run's LOCAL_DOMAINS hook. Dovecot and Python's mailbox module read
//! its Maildirs in tests/deliver_dovecot.rs.

#[path = "support/queuerun.rs"]
mod qr;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_maildir-deliver");
const QUEUE_RUN: &str = env!("CARGO_BIN_EXE_queue-run");
const MSG: &[u8] = b"From: a@example.org\nSubject: test\n\nline 1\n.line with dot\n";

fn run(map: &Path, args: &[&str], env: &[(&str, &str)], msg: &[u8]) -> String {
    let mut c = Command::new(BIN);
    c.args(args).env_clear().env("MAILDIR_MAP", map);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // A usage or configuration error is reported before the message is read.
    let _ = child.stdin.take().unwrap().write_all(msg);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty(), "nothing on fd 2: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).replace('\0', "|")
}

/// Files in `md`'s new/ and cur/, and in its tmp/.
fn files(md: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let list = |d: &str| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(md.join(d)).map(|r| r.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
        v.sort();
        v
    };
    let mut done = list("new");
    done.extend(list("cur"));
    (done, list("tmp"))
}

/// A scratch folder that `nobody`, the owner in the maps here, may write
/// in (the Maildirs are made in it). The tests run as root, as `make
/// test` does: maildir-deliver then writes as `nobody` in a child.
fn scratch() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    open_to_nobody(d.path());
    d
}

fn open_to_nobody(p: &Path) {
    assert!(nix::unistd::geteuid().is_root(), "the maildir-deliver tests run as root (make test does)");
    fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("user nobody");
    nix::unistd::chown(p, Some(nobody.uid), Some(nobody.gid)).unwrap();
}

fn me() -> &'static str {
    "nobody"
}

#[test]
fn report_map_extensions_and_loops() {
    let d = scratch();
    let p = d.path();
    let owner = me();
    fs::write(
        p.join("map"),
        format!("alice@example.com {0}/alice/ {owner}\nbob-lists@example.com {0}/lists/ {owner}\n@example.org {0}/org/ {owner}\n", p.display()),
    )
    .unwrap();
    let map = p.join("map");
    let r = run(&map, &["example.com", "s@example.net", "alice@example.com", "Alice+News@Example.COM", "nosuch@example.com", "bob-lists-x@example.com"], &[], MSG);
    let recs: Vec<&str> = r.split('|').collect();
    assert!(recs[0].starts_with(&format!("rDelivered to {}/alice/new/", p.display())), "{r}");
    assert!(recs[1].starts_with(&format!("rDelivered to {}/alice/new/", p.display())), "{r}");
    assert_eq!(recs[2], "hSorry, no mailbox here by that name. (#5.1.1)\n");
    // `-` is no delimiter by default.
    assert_eq!(recs[3], "hSorry, no mailbox here by that name. (#5.1.1)\n");
    assert_eq!(recs[4], "KDelivered to 2 of 4 recipients.\n");
    let (done, tmp) = files(&p.join("alice"));
    assert_eq!(done.len(), 2);
    assert!(tmp.is_empty());
    let mut got: Vec<Vec<u8>> = done.iter().map(|f| fs::read(f).unwrap()).collect();
    got.sort();
    let want = |rcpt: &str| [format!("Return-Path: <s@example.net>\nDelivered-To: {rcpt}\n").as_bytes(), MSG].concat();
    assert_eq!(got, vec![want("Alice+News@Example.COM"), want("alice@example.com")]);
    // qmail's delimiter, the longest base first; the domain's catch-all.
    let r = run(&map, &["example.com", "", "bob-lists-x@example.com", "any+thing@example.org"], &[("MAILDIR_DELIMITERS", "-+")], MSG);
    assert!(r.starts_with(&format!("rDelivered to {}/lists/new/", p.display())), "{r}");
    assert!(r.contains(&format!("|rDelivered to {}/org/new/", p.display())) && r.ends_with("|KDelivered.\n|"), "{r}");
    let lists = fs::read(&files(&p.join("lists")).0[0]).unwrap();
    assert!(lists.starts_with(b"Return-Path: <>\nDelivered-To: bob-lists-x@example.com\nFrom: "));
    // Our Delivered-To for that address is already there: a loop, bounced
    // (any case, folded or not); other addresses still get it.
    let looped = b"Delivered-To: other@example.com\nDelivered-To:\n ALICE@example.com\nSubject: again\n\nbody\n";
    let r = run(&map, &["example.com", "s@example.net", "alice@example.com", "x@example.org"], &[], looped);
    assert!(r.starts_with("hThis message is looping: it already has my Delivered-To line. (#5.4.6)\n|r"), "{r}");
    assert_eq!(files(&p.join("alice")).0.len(), 2, "no third file");
    // Only the header counts.
    let body_only = b"Subject: quoted\n\nDelivered-To: alice@example.com\n";
    assert!(run(&map, &["example.com", "s@x", "alice@example.com"], &[], body_only).ends_with("|KDelivered.\n|"));
}

#[test]
fn bad_input_and_configuration() {
    let d = scratch();
    let map = d.path().join("map");
    fs::write(&map, format!("a@example.com {}/a/ {}\n", d.path().display(), me())).unwrap();
    assert_eq!(run(&map, &["example.com", "s@x"], &[], MSG), "DI (maildir-deliver) was invoked improperly. (#5.3.5)\n|");
    assert_eq!(run(&map, &["example.com", "s@x\nX: y", "a@example.com"], &[], MSG), "DSorry, the sender address is not valid. (#5.1.7)\n|");
    let r = run(&map, &["example.com", "s@x", "a@example.com\nX-Evil: 1", ""], &[], MSG);
    assert_eq!(r, "hSorry, the recipient address is not valid. (#5.1.3)\n|hSorry, the recipient address is not valid. (#5.1.3)\n|DNothing delivered.\n|");
    fs::write(&map, "a@example.com relative/ nobody\n").unwrap();
    let r = run(&map, &["example.com", "s@x", "a@example.com"], &[], MSG);
    assert_eq!(r, format!("ZUnable to read configuration: {}: line 1: the maildir is not an absolute path. (#4.3.0)\n|", map.display()));
    let r = run(&d.path().join("none"), &["example.com", "s@x", "a@example.com"], &[], MSG);
    assert!(r.starts_with("ZUnable to read configuration: unable to read "), "{r}");
    fs::write(&map, format!("a@example.com {}/a/ no-such-user-here\n", d.path().display())).unwrap();
    let r = run(&map, &["example.com", "s@x", "a@example.com"], &[("MAILDIR_DELIMITERS", "+")], MSG);
    assert_eq!(r, "sMAILDIR_MAP line 1: no user no-such-user-here in /etc/passwd. (#4.3.0)\n|ZNothing delivered; trying again later.\n|");
    let r = run(&map, &["example.com", "s@x", "a@example.com"], &[("MAILDIR_DELIMITERS", "a")], MSG);
    assert!(r.starts_with("ZUnable to read configuration: bad MAILDIR_DELIMITERS"), "{r}");
}

#[test]
fn privileges() {
    assert!(nix::unistd::geteuid().is_root(), "this test runs as root (make test does)");
    let d = scratch();
    let p = d.path();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    fs::create_dir(p.join("home")).unwrap();
    nix::unistd::chown(&p.join("home"), Some(nobody.uid), Some(nobody.gid)).unwrap();
    fs::write(p.join("map"), format!("n@example.com {0}/home/Maildir/ nobody\nr@example.com {0}/root/ root\nu@example.com {0}/u/ 4242:4242\n", p.display())).unwrap();
    let map = p.join("map");
    // As root: the write happens as nobody (file, folders and all).
    let r = run(&map, &["example.com", "s@x", "n@example.com", "r@example.com"], &[], MSG);
    assert!(r.starts_with(&format!("rDelivered to {}/home/Maildir/new/", p.display())), "{r}");
    assert!(r.contains("|sMAILDIR_MAP line 2: root may not own a Maildir delivered to. (#4.3.0)\n|"), "{r}");
    let f = &files(&p.join("home/Maildir")).0[0];
    for x in [f.clone(), p.join("home/Maildir"), p.join("home/Maildir/tmp")] {
        assert_eq!(fs::metadata(&x).unwrap().uid(), nobody.uid.as_raw(), "{}", x.display());
    }
    assert_eq!(fs::metadata(f).unwrap().mode() & 0o777, 0o600);
    // As nobody: its own Maildir yes, another uid's never (temporary).
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", BIN, "example.com", "s@x", "n@example.com", "u@example.com"])
        .env_clear()
        .env("MAILDIR_MAP", &map)
        .stdin(Stdio::from(tempfile_with(MSG)))
        .output()
        .expect("setpriv (util-linux)");
    let r = String::from_utf8_lossy(&out.stdout).replace('\0', "|");
    assert!(r.starts_with(&format!("rDelivered to {}/home/Maildir/new/", p.display())), "{r}");
    assert!(
        r.contains(&format!("|sMAILDIR_MAP line 3: {}/u/ belongs to uid 4242 and I run as uid {}: run maildir-deliver as root or as uid 4242. (#4.3.0)\n|", p.display(), nobody.uid)),
        "{r}"
    );
    assert!(!p.join("u").exists());
}

fn tempfile_with(b: &[u8]) -> fs::File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(b).unwrap();
    std::io::Seek::rewind(&mut f).unwrap();
    f
}

/// xorshift, seeded from the clock (the seed is printed to replay a run).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn kill_9_never_leaves_a_partial_file() {
    let d = scratch();
    let p = d.path();
    fs::write(p.join("map"), format!("a@example.com {}/Maildir/ {}\n", p.display(), me())).unwrap();
    // 4 MB: the write and the fsync take long enough to be hit.
    let mut big = b"Subject: big\n\n".to_vec();
    while big.len() < 4 << 20 {
        big.extend_from_slice(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n");
    }
    fs::write(p.join("msg"), &big).unwrap();
    let want = [b"Return-Path: <s@x>\nDelivered-To: a@example.com\n".as_slice(), &big].concat();
    // Its own process group, killed whole (the parent and the child that
    // writes as nobody), as queue-run kills a delivery.
    let spawn = || {
        use std::os::unix::process::CommandExt;
        Command::new(BIN)
            .process_group(0)
            .args(["example.com", "s@x", "a@example.com"])
            .env_clear()
            .env("MAILDIR_MAP", p.join("map"))
            .stdin(fs::File::open(p.join("msg")).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    // How long one delivery takes here (the fastest of three), to spread
    // the kills over it.
    let mut fastest = u64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        assert!(spawn().wait().unwrap().success());
        fastest = fastest.min(t.elapsed().as_micros() as u64);
    }
    let span = fastest.max(1000) * 2;
    let seed = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64) | 1;
    let mut rng = Rng(seed);
    let (mut killed, mut finished) = (0, 0);
    for _ in 0..120 {
        let mut c = spawn();
        std::thread::sleep(Duration::from_micros(rng.next() % span));
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGKILL);
        match c.wait().unwrap().code() {
            Some(0) => finished += 1,
            _ => killed += 1,
        }
    }
    let (done, tmp) = files(&p.join("Maildir"));
    // Every file in new/ is whole; partial ones are only ever in tmp/.
    for f in &done {
        let got = fs::read(f).unwrap();
        assert!(got == want, "seed {seed}: {} is {} bytes, not the whole message", f.display(), got.len());
    }
    // Nothing finished is lost (3 timing runs, then those that ended).
    assert!(done.len() >= finished + 3, "seed {seed}: {} in new/, {finished} finished", done.len());
    eprintln!("seed {seed}: span {span} us, {killed} killed, {finished} finished, {} in new/, {} left in tmp/", done.len(), tmp.len());
    assert!(killed >= 20, "seed {seed}: only {killed} of the runs were killed");
}

#[test]
fn disk_full_and_file_size_limit_are_temporary() {
    assert!(nix::unistd::geteuid().is_root(), "this test runs as root (it mounts a tmpfs)");
    let d = scratch();
    let p = d.path();
    let small = p.join("small");
    fs::create_dir(&small).unwrap();
    // A 256 KB tmpfs: a full disk without filling a real one.
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let opts = format!("size=256k,mode=0755,uid={},gid={}", nobody.uid, nobody.gid);
    let st = Command::new("mount").args(["-t", "tmpfs", "-o", &opts, "tmpfs"]).arg(&small).status().unwrap();
    assert!(st.success(), "mount -t tmpfs failed");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(small.clone());
    fs::write(p.join("map"), format!("a@example.com {}/Maildir/ {}\nb@example.com {}/Maildir/ {}\n", small.display(), me(), p.display(), me())).unwrap();
    let map = p.join("map");
    let mut big = b"Subject: big\n\n".to_vec();
    big.resize(400 * 1024, b'x');
    big.push(b'\n');
    let r = run(&map, &["example.com", "s@x", "a@example.com"], &[], MSG);
    assert!(r.ends_with("|KDelivered.\n|"), "a small one fits: {r}");
    let r = run(&map, &["example.com", "s@x", "a@example.com", "b@example.com"], &[], &big);
    assert!(r.starts_with(&format!("sUnable to write {}/Maildir/tmp/", small.display())), "{r}");
    assert!(r.contains("No space left on device (os error 28). (#4.3.1)\n|rDelivered to "), "{r}");
    let (done, tmp) = files(&small.join("Maildir"));
    assert_eq!(done.len(), 1, "only the small one");
    assert!(tmp.is_empty(), "the partial work file is removed: {tmp:?}");
    // RLIMIT_FSIZE: EFBIG (SIGXFSZ ignored), the same.
    let out = Command::new("prlimit")
        .args(["--fsize=100000", BIN, "example.com", "s@x", "b@example.com"])
        .env_clear()
        .env("MAILDIR_MAP", &map)
        .stdin(tempfile_with(&big))
        .output()
        .expect("prlimit (util-linux)");
    let r = String::from_utf8_lossy(&out.stdout).replace('\0', "|");
    assert!(r.starts_with("sUnable to write ") && r.contains("File too large (os error 27). (#4.3.0)"), "{r}");
    let (done, tmp) = files(&p.join("Maildir"));
    assert_eq!((done.len(), tmp.len()), (1, 0));
}

#[test]
fn queue_run_sends_local_domains_to_maildir_deliver() {
    let w = qr::World::new();
    let p = w.dir.path();
    open_to_nobody(p);
    fs::write(p.join("locals"), "# ours\nExample.COM\n").unwrap();
    fs::write(p.join("map"), format!("alice@example.com {}/alice/ {}\n", p.display(), me())).unwrap();
    for i in 0..3 {
        let body = format!("Subject: {i}\n\nbody {i}\n");
        qr::write_queue_file(&w.queue(), &format!("70{i}.1.1"), qr::now(), "s@example.net", &["alice@example.com", "nosuch@example.com", "x@remote.test"], &[], body.as_bytes());
    }
    let looped = b"Delivered-To: alice@example.com\nSubject: loop\n\nbody\n";
    qr::write_queue_file(&w.queue(), "710.1.1", qr::now(), "s@example.net", &["alice@example.com"], &[], looped);
    // maildir-deliver is found next to queue-run (LOCAL_DELIVERY unset).
    let mut c = w.command(QUEUE_RUN);
    c.env("LOCAL_DOMAINS", p.join("locals")).env("MAILDIR_MAP", p.join("map"));
    let kid = qr::Kid(c.spawn().unwrap());
    qr::wait_for(30, "the queue to empty", || w.queued().is_empty());
    let log = w.log_after(kid);
    let (done, _) = files(&p.join("alice"));
    let mut got: Vec<String> = done.iter().map(|f| fs::read_to_string(f).unwrap()).collect();
    got.sort();
    let want: Vec<String> = (0..3).map(|i| format!("Return-Path: <s@example.net>\nDelivered-To: alice@example.com\nSubject: {i}\n\nbody {i}\n")).collect();
    assert_eq!(got, want, "{log}");
    // The remote domain still went to SMTP_REMOTE (the fake), alone.
    let remote: Vec<Vec<String>> = w.deliveries();
    assert_eq!(remote.len(), 3, "{log}");
    assert!(remote.iter().all(|a| a[0] == "remote.test" && a[2..] == ["x@remote.test".to_string()]));
    // nosuch@ (3) and the loop (1) bounced, each once.
    let dsns = w.bounces();
    assert_eq!(dsns.len(), 4, "{log}");
    assert_eq!(dsns.iter().filter(|(_, m)| m.contains("Sorry, no mailbox here by that name. (#5.1.1)")).count(), 3);
    assert_eq!(dsns.iter().filter(|(_, m)| m.contains("This message is looping")).count(), 1);
}
