//! The queue's folders and work files (issue 16, point 11): queue-run refuses
//! to start on folders that others than the queue's user can write to, or
//! that are symbolic links; its state work file never follows a planted
//! symbolic link; a symbolic link in new/ is set aside, never read.
//! queue-inject refuses tmp/ and new/ on the same terms.

#[path = "support/queuerun.rs"]
mod support;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::process::Stdio;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_queue-run");
const QUEUE_INJECT: &str = env!("CARGO_BIN_EXE_queue-inject");

fn chmod(p: &std::path::Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Run queue-run on `w`'s queue; it must exit at once. Returns (code, log).
fn refused(w: &World, what: &str) -> (i32, String) {
    let mut c = w.command(BIN);
    c.stderr(Stdio::piped());
    let mut k = c.spawn().unwrap();
    let t = std::time::Instant::now();
    while k.try_wait().unwrap().is_none() {
        if t.elapsed() > std::time::Duration::from_secs(10) {
            let _ = k.kill();
            let out = k.wait_with_output().unwrap();
            panic!("{what}: queue-run kept running:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = k.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn refuses_folders_others_can_write_or_that_are_links() {
    for (what, set_up) in [
        ("state/ at 0777", &(|w: &World| chmod(&w.queue().join("state"), 0o777)) as &dyn Fn(&World)),
        ("new/ o+w", &|w: &World| chmod(&w.queue().join("new"), 0o703)),
        ("tmp/ at 1777", &|w: &World| chmod(&w.queue().join("tmp"), 0o1777)),
        ("QUEUE_DIR o+w", &|w: &World| chmod(&w.queue(), 0o757)),
        ("bad/ a symbolic link", &|w: &World| {
            fs::create_dir(w.dir.path().join("elsewhere")).unwrap();
            symlink(w.dir.path().join("elsewhere"), w.queue().join("bad")).unwrap();
        }),
        ("state/ group-writable by another group", &|w: &World| {
            let p = w.queue().join("state");
            chmod(&p, 0o770);
            std::os::unix::fs::chown(&p, None, Some(nix::unistd::getegid().as_raw() + 4242)).unwrap();
        }),
        ("state/ owned by another user", &|w: &World| {
            std::os::unix::fs::chown(w.queue().join("state"), Some(nix::unistd::geteuid().as_raw() + 4242), None).unwrap();
        }),
    ] {
        let w = World::new();
        for d in ["state", "bad"] {
            if what != "bad/ a symbolic link" || d != "bad" {
                fs::create_dir(w.queue().join(d)).unwrap();
            }
        }
        chmod(&w.queue().join("state"), 0o700);
        if nix::unistd::geteuid().is_root() || !what.contains("another") {
            set_up(&w);
        } else {
            continue; // chown to another owner or group needs root
        }
        write_queue_file(&w.queue(), "1.1.1", now(), "s@src.test", &["a@x.test"], &[], b"S: x\n\nb\n");
        let (code, log) = refused(&w, what);
        assert_eq!(code, 111, "{what}: {log}");
        assert!(log.starts_with("queue-run: fatal: ") && log.lines().count() == 1, "{what}: {log}");
        assert!(log.contains("refusing"), "{what}: {log}");
        assert!(w.deliveries().is_empty(), "{what}: delivered anyway");
    }
    // The same queue with safe modes (group-writable by the user's own group is fine).
    let w = World::new();
    chmod(&w.queue().join("new"), 0o770);
    write_queue_file(&w.queue(), "1.1.2", now(), "s@src.test", &["a@x.test"], &[], b"S: x\n\nb\n");
    let k = Kid(w.command(BIN).spawn().unwrap());
    wait_for(20, "delivered", || w.queued().is_empty());
    drop(k);
}

#[test]
fn planted_symlink_for_the_state_work_file_is_not_followed() {
    let w = World::new();
    w.rules("a@x.test s\n");
    let target = w.dir.path().join("precious");
    fs::write(&target, "precious\n").unwrap();
    write_queue_file(&w.queue(), "700.1.1", now(), "s@src.test", &["a@x.test"], &[], b"S: x\n\nb\n");
    let k = Kid(w.command(BIN).env("RETRY_SCHEDULE", "1").spawn().unwrap());
    let state = w.queue().join("state/700.1.1");
    // The attempts recorded so far (the fifth field of the `r` line).
    let attempts = || -> u32 {
        let s = fs::read_to_string(&state).unwrap_or_default();
        s.lines().find_map(|l| l.strip_prefix("r P 0 0 ")).and_then(|r| r.split(' ').next()?.parse().ok()).unwrap_or(0)
    };
    wait_for(30, "a first state", || attempts() >= 1);
    // Planted where the next state update writes its work file.
    symlink(&target, w.queue().join("state/.700.1.1.tmp")).unwrap();
    let planted_at = attempts();
    wait_for(30, "two more state updates", || attempts() >= planted_at + 2);
    let log = w.log_after(k);
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n", "{log}");
    assert!(!fs::symlink_metadata(&state).unwrap().file_type().is_symlink(), "{log}");
}

#[test]
fn symlink_in_new_is_set_aside_not_read() {
    let w = World::new();
    // A complete queue file outside the queue, linked into new/.
    let outside = World::new();
    write_queue_file(&outside.queue(), "800.1.1", now(), "s@src.test", &["a@x.test"], &[], b"S: secret\n\nb\n");
    symlink(outside.queue().join("new/800.1.1"), w.queue().join("new/800.1.1")).unwrap();
    write_queue_file(&w.queue(), "800.1.2", now(), "s@src.test", &["b@x.test"], &[], b"S: x\n\nb\n");
    let k = Kid(w.command(BIN).spawn().unwrap());
    wait_for(20, "the good one delivered, the link set aside", || w.queued().is_empty());
    let log = w.log_after(k);
    assert_eq!(w.deliveries().len(), 1, "{log}");
    assert_eq!(w.deliveries()[0][2], "b@x.test");
    assert!(fs::symlink_metadata(w.queue().join("bad/800.1.1")).unwrap().file_type().is_symlink(), "{log}");
    assert!(log.contains("800.1.1: corrupt queue file"), "{log}");
}

#[test]
fn queue_inject_refuses_unsafe_tmp_and_new() {
    use std::io::Write;
    let run = |q: &std::path::Path| {
        let (r, wr) = nix::unistd::pipe().unwrap();
        let mut c = std::process::Command::new(QUEUE_INJECT)
            .env("QUEUE_DIR", q)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(r))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It may refuse before reading: write errors are expected then.
        let _ = c.stdin.take().unwrap().write_all(b"Subject: x\n\nhi\n");
        let mut e = fs::File::from(wr);
        let _ = e.write_all(b"Fa@b\0Tc@d\0\0");
        drop(e);
        let out = c.wait_with_output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let w = World::new();
    chmod(&w.queue().join("new"), 0o777);
    let (code, err) = run(&w.queue());
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("refusing"), "{err}");
    let w = World::new();
    fs::remove_dir(w.queue().join("tmp")).unwrap();
    fs::create_dir(w.dir.path().join("elsewhere")).unwrap();
    symlink(w.dir.path().join("elsewhere"), w.queue().join("tmp")).unwrap();
    let (code, err) = run(&w.queue());
    assert_eq!(code, 62, "{err}");
    assert_eq!(fs::read_dir(w.dir.path().join("elsewhere")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(w.queue().join("new")).unwrap().count(), 0);
    let w = World::new();
    assert_eq!(run(&w.queue()).0, 0);
}
