//! A private Dovecot for the tests (Debian dovecot-core, dovecot-lmtpd),
//! never the system's service: its own configuration, sockets, state, log
//! and Maildirs in a scratch folder; LMTP on a Unix socket there and on a
//! loopback port; users from a passwd-file (password `pw`, all of them the
//! account `nobody`, which is who Dovecot delivers as); a quota plugin and
//! one user, `full@example.com`, always over quota, so that LMTP answers
//! 452 for that recipient after the data. Messages are read back with
//! `doveadm -c <conf> fetch`. Run as root (Dovecot starts as root and
//! switches to the mail user). Stopped (master killed) when dropped.
//! `start_with` runs a configuration of the caller's (a shipped example's)
//! over the same base instead.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const DOVECOT: &str = "/usr/sbin/dovecot";
pub const DOVEADM: &str = "/usr/bin/doveadm";

pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub socket: PathBuf,
    pub port: u16,
}

/// The uid and gid of `nobody`, the mail user of every test account.
pub fn nobody() -> (u32, u32) {
    let u = nix::unistd::User::from_name("nobody").unwrap().expect("user nobody");
    (u.uid.as_raw(), u.gid.as_raw())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Dovecot {
    /// Start an instance knowing `users` (local parts at example.com) and
    /// `full`; `extra`: lines `user:maildir` of users whose mail is in a
    /// Maildir of the caller's (for reading what another program wrote).
    pub fn start(users: &[&str], extra: &[(&str, &Path)]) -> Dovecot {
        let dir = scratch();
        let d = dir.path();
        let (uid, gid) = nobody();
        let mut pw = String::new();
        for u in users.iter().chain(&["full"]) {
            pw.push_str(&format!("{u}@example.com:{{PLAIN}}pw:{uid}:{gid}::{}/mail/{u}\n", d.display()));
        }
        // Over quota whatever arrives (1 byte): 452 after the data.
        pw = pw.replace(&format!("{}/mail/full\n", d.display()), &format!("{}/mail/full::userdb_quota_rule=*:storage=1\n", d.display()));
        for (u, md) in extra {
            pw.push_str(&format!("{u}@example.com:{{PLAIN}}pw:{uid}:{gid}::{}::userdb_mail=maildir:{}\n", md.display(), md.display()));
        }
        let port = free_port();
        let tail = format!(
            "mail_plugins = quota
quota_full_tempfail = yes
plugin {{
  quota = maildir:User quota
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"
        );
        launch(dir, &pw, &tail, Some(port))
    }

    /// An instance whose LMTP service is what `tail` (a configuration of
    /// the caller's, e.g. a shipped example) makes of it, the socket only;
    /// `logins` are the users' login names as they are (`alice`).
    pub fn start_with(logins: &[&str], tail: &str) -> Dovecot {
        let dir = scratch();
        let (uid, gid) = nobody();
        let pw: String = logins.iter().map(|u| format!("{u}:{{PLAIN}}pw:{uid}:{gid}::{}/mail/{u}\n", dir.path().display())).collect();
        launch(dir, &pw, tail, None)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Every message in the INBOX of `user` (a full address), as stored, in
    /// the order of their UIDs.
    pub fn fetch(&self, user: &str) -> Vec<Vec<u8>> {
        let uids = self.doveadm(&["-f", "flow", "fetch", "-u", user, "uid", "mailbox", "INBOX", "all"]);
        let uids: Vec<String> = String::from_utf8_lossy(&uids).lines().filter_map(|l| l.strip_prefix("uid=")).map(|s| s.trim().to_string()).collect();
        uids.iter()
            .map(|uid| {
                // The pager form is "text:\n" and the message as stored.
                let out = self.doveadm(&["fetch", "-u", user, "text", "mailbox", "INBOX", "uid", uid]);
                out.strip_prefix(b"text:\n").unwrap_or_else(|| panic!("doveadm fetch: {}", String::from_utf8_lossy(&out))).to_vec()
            })
            .collect()
    }

    pub fn doveadm(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new(DOVEADM).arg("-c").arg(&self.conf).args(args).output().expect("run doveadm");
        assert!(out.status.success(), "doveadm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }
}

/// A scratch folder for an instance, with `mail/` for the mail user.
fn scratch() -> tempfile::TempDir {
    assert!(Path::new(DOVECOT).exists() && Path::new("/usr/lib/dovecot/lmtp").exists(), "Dovecot is missing: apt-get install dovecot-core dovecot-lmtpd (tests/install-peers.sh)");
    assert!(nix::unistd::geteuid().is_root(), "the Dovecot tests run as root (Dovecot switches to the mail user)");
    let dir = tempfile::tempdir().unwrap();
    // The mail user must reach its Maildirs below the scratch folder.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (uid, gid) = nobody();
    fs::create_dir(dir.path().join("mail")).unwrap();
    nix::unistd::chown(&dir.path().join("mail"), Some(uid.into()), Some(gid.into())).unwrap();
    dir
}

/// Write the configuration (the base, then `tail`) and the users, start
/// the master, wait for the socket (and the port).
fn launch(dir: tempfile::TempDir, passwd: &str, tail: &str, port: Option<u16>) -> Dovecot {
    let d = dir.path();
    fs::write(d.join("users"), passwd).unwrap();
    let conf = d.join("dovecot.conf");
    let name = d.file_name().unwrap().to_string_lossy().trim_start_matches('.').to_string();
    fs::write(
        &conf,
        format!(
            "base_dir = {d}/run
state_dir = {d}/run/state
instance_name = dovecot-test-{name}
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
first_valid_uid = 1
mail_location = maildir:~/Maildir
lmtp_add_received_header = no
passdb {{
  driver = passwd-file
  args = {d}/users
}}
userdb {{
  driver = passwd-file
  args = {d}/users
}}
{tail}",
            d = d.display()
        ),
    )
    .unwrap();
    let st = Command::new(DOVECOT).arg("-c").arg(&conf).status().expect("run dovecot");
    assert!(st.success(), "dovecot did not start: {}", fs::read_to_string(d.join("dovecot.log")).unwrap_or_default());
    let socket = d.join("run/lmtp");
    let t = Instant::now();
    while !(socket.exists() && port.is_none_or(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok())) {
        assert!(t.elapsed() < Duration::from_secs(20), "dovecot did not listen: {}", fs::read_to_string(d.join("dovecot.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    Dovecot { dir, conf, socket, port: port.unwrap_or(0) }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let pidfile = self.path().join("run/master.pid");
        if let Some(pid) = fs::read_to_string(&pidfile).ok().and_then(|p| p.trim().parse::<i32>().ok()) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let t = Instant::now();
            while nix::sys::signal::kill(pid, None).is_ok() && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}
