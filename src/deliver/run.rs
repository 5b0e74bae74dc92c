//! maildir-deliver's run: the configuration from the environment, the
//! message from fd 0 (kept readable once per recipient), and for each
//! recipient the map lookup, the loop check and the write, as the owner of
//! its Maildir: in this process when that is who we are, in a child that
//! switched to the owner when we are root (`MAILDIR_ONE` mode), never
//! otherwise. Returns the report; the main writes it.

use super::header;
use super::maildir::{self, Namer};
use super::map::{self, Entry, Id, Map};
use super::report::{self, Result as Rcpt};
use crate::passwd;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Set (to the Maildir) in the environment of the child that writes one
/// message as the Maildir's owner.
pub const ONE: &str = "MAILDIR_ONE";

/// Longest text read back from a child.
const MAX_CHILD_TEXT: u64 = 2000;

/// Everything read from the environment, once.
pub struct Config {
    pub map: Map,
    /// `MAILDIR_DELIMITERS`: the extension delimiters (see `map`).
    pub delimiters: String,
    /// The host part of the file names: the kernel's host name.
    pub host: String,
}

impl Config {
    /// `Err`: a configuration problem, reported as a temporary failure.
    pub fn from_env() -> Result<Config, String> {
        let path = std::env::var("MAILDIR_MAP").ok().filter(|p| !p.is_empty()).ok_or("MAILDIR_MAP is not set")?;
        let text = std::fs::read_to_string(&path).map_err(|e| format!("unable to read {path}: {e}"))?;
        let map = Map::parse(&text).map_err(|e| format!("{path}: {e}"))?;
        let delimiters = std::env::var("MAILDIR_DELIMITERS").unwrap_or_else(|_| map::DEFAULT_DELIMITERS.to_string());
        if delimiters.chars().any(|c| c.is_alphanumeric() || c == '@' || c.is_whitespace() || c.is_control()) {
            return Err(format!("bad MAILDIR_DELIMITERS: {delimiters:?}"));
        }
        Ok(Config { map, delimiters, host: hostname() })
    }
}

/// The kernel's host name (as qmail-local's `me`), for the file names.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

/// One run: `args` are `host sender rcpt...`, the message is on fd 0.
pub fn run(args: &[Vec<u8>]) -> Vec<u8> {
    let [_host, sender, rcpts @ ..] = args else {
        return report::message_only(true, "I (maildir-deliver) was invoked improperly. (#5.3.5)");
    };
    if rcpts.is_empty() {
        return report::message_only(true, "I (maildir-deliver) was invoked improperly. (#5.3.5)");
    }
    let cfg = match Config::from_env() {
        Ok(c) => c,
        Err(e) => return report::message_only(false, &format!("Unable to read configuration: {e}. (#4.3.0)")),
    };
    if !header::address_ok(sender) {
        return report::message_only(true, "Sorry, the sender address is not valid. (#5.1.7)");
    }
    let mut msg = match Spool::from_stdin() {
        Ok(s) => s,
        Err(e) => return report::message_only(false, &format!("Unable to read message: {e}. (#4.3.0)")),
    };
    let seen = match msg.head() {
        Ok(h) => header::delivered_to(&h),
        Err(e) => return report::message_only(false, &format!("Unable to read message: {e}. (#4.3.0)")),
    };
    let euid = nix::unistd::geteuid().as_raw();
    let mut namer = Namer::new(&cfg.host);
    let results: Vec<Rcpt> = rcpts.iter().map(|r| one_rcpt(&cfg, sender, r, &seen, euid, &mut msg, &mut namer)).collect();
    report::encode(&results)
}

fn one_rcpt(cfg: &Config, sender: &[u8], rcpt: &[u8], seen: &[Vec<u8>], euid: u32, msg: &mut Spool, namer: &mut Namer) -> Rcpt {
    if rcpt.is_empty() || !header::address_ok(rcpt) {
        return Rcpt::Perm("Sorry, the recipient address is not valid. (#5.1.3)".into());
    }
    let Some((_, entry)) = cfg.map.lookup(rcpt, &cfg.delimiters) else {
        // qmail-local's words for an address that has no mailbox.
        return Rcpt::Perm("Sorry, no mailbox here by that name. (#5.1.1)".into());
    };
    // qmail's rule: our own Delivered-To for this address is already there.
    if header::loops(seen, rcpt) {
        return Rcpt::Perm("This message is looping: it already has my Delivered-To line. (#5.4.6)".into());
    }
    let (uid, gid) = match owner(entry) {
        Ok(ids) => ids,
        Err(e) => return Rcpt::Temp(format!("MAILDIR_MAP line {}: {e}. (#4.3.0)", entry.line)),
    };
    if let Err(e) = msg.rewind() {
        return Rcpt::Temp(format!("Unable to read message: {e}. (#4.3.0)"));
    }
    let prefix = header::prefix(sender, rcpt);
    let md = Path::new(&entry.maildir);
    if euid == 0 {
        as_owner(md, uid, gid, sender, rcpt, msg)
    } else if uid == euid {
        match maildir::deliver(md, &prefix, &mut msg.file, namer) {
            Ok(p) => Rcpt::Delivered(format!("Delivered to {}", p.display())),
            Err(e) => Rcpt::Temp(e),
        }
    } else {
        // Writing another account's Maildir as ourselves would leave files
        // it may not read, or need a folder open to us: the operator's to
        // decide, so the mail waits.
        Rcpt::Temp(format!(
            "MAILDIR_MAP line {}: {} belongs to uid {uid} and I run as uid {euid}: run maildir-deliver as root or as uid {uid}. (#4.3.0)",
            entry.line, entry.maildir
        ))
    }
}

/// The owner's uid and gid; root is refused (a delivery never runs as
/// root). Names come from /etc/passwd and /etc/group, read directly (see
/// `crate::passwd`: NSS in a static binary is not safe).
fn owner(e: &Entry) -> Result<(u32, u32), String> {
    let (uid, user_gid) = match &e.owner.user {
        Id::Num(n) => (*n, None),
        Id::Name(n) => match passwd::user_by_name(n) {
            Ok(Some(u)) => (u.id, Some(u.gid)),
            Ok(None) => return Err(format!("no user {n} in /etc/passwd")),
            Err(err) => return Err(format!("unable to read /etc/passwd: {err}")),
        },
    };
    let gid = match &e.owner.group {
        Some(Id::Num(n)) => *n,
        Some(Id::Name(n)) => match passwd::group_by_name(n) {
            Ok(Some(g)) => g.id,
            Ok(None) => return Err(format!("no group {n} in /etc/group")),
            Err(err) => return Err(format!("unable to read /etc/group: {err}")),
        },
        None => user_gid.ok_or("no group")?,
    };
    if uid == 0 {
        return Err("root may not own a Maildir delivered to".into());
    }
    Ok((uid, gid))
}

/// As root: run ourselves as the owner (no supplementary groups, then the
/// gid, then the uid: std's order) in `MAILDIR_ONE` mode for this one
/// recipient, the message on its fd 0; its exit code says what happened.
fn as_owner(md: &Path, uid: u32, gid: u32, sender: &[u8], rcpt: &[u8], msg: &mut Spool) -> Rcpt {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return Rcpt::Temp(format!("Unable to find my own program: {e}. (#4.3.0)")),
    };
    let input = match msg.file.try_clone() {
        Ok(f) => f,
        Err(e) => return Rcpt::Temp(format!("Unable to pass the message on: {e}. (#4.3.0)")),
    };
    let child = Command::new(exe)
        .arg("-")
        .arg(std::ffi::OsStr::from_bytes(sender))
        .arg(std::ffi::OsStr::from_bytes(rcpt))
        .env_clear()
        .env(ONE, md)
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::from(input))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Rcpt::Temp(format!("Unable to run as uid {uid}: {e}. (#4.3.0)")),
    };
    let mut out = Vec::new();
    if let Some(o) = child.stdout.take() {
        let _ = o.take(MAX_CHILD_TEXT).read_to_end(&mut out);
    }
    let text = String::from_utf8_lossy(&out).trim_end().to_string();
    match child.wait().map(|s| s.code()) {
        Ok(Some(0)) => Rcpt::Delivered(text),
        Ok(Some(100)) => Rcpt::Perm(text),
        Ok(Some(_)) => Rcpt::Temp(text),
        Ok(None) => Rcpt::Temp("The delivery as the Maildir's owner crashed. (#4.3.0)".into()),
        Err(e) => Rcpt::Temp(format!("Unable to wait for the delivery: {e}. (#4.3.0)")),
    }
}

/// `MAILDIR_ONE` mode, already as the owner: the message on fd 0 (from its
/// offset) for `sender` to `rcpt`, into `md`. The text for stdout and the
/// exit code (0, 100, 111, as qmail-local).
pub fn one(md: &Path, args: &[Vec<u8>]) -> (i32, String) {
    let [_, sender, rcpt] = args else {
        return (100, "I (maildir-deliver) was invoked improperly. (#5.3.5)".into());
    };
    if !header::address_ok(sender) || !header::address_ok(rcpt) {
        return (100, "Sorry, the address is not valid. (#5.1.3)".into());
    }
    let mut input = match io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => File::from(fd),
        Err(e) => return (111, format!("Unable to read message: {e}. (#4.3.0)")),
    };
    let mut namer = Namer::new(&hostname());
    match maildir::deliver(md, &header::prefix(sender, rcpt), &mut input, &mut namer) {
        Ok(p) => (0, format!("Delivered to {}", p.display())),
        Err(e) => (111, e),
    }
}

/// The message, readable from its start once per recipient: a regular file
/// (as queue-run hands it over) in place from its offset, a pipe copied
/// first into an unlinked temporary file.
struct Spool {
    file: File,
    start: u64,
}

impl Spool {
    fn from_stdin() -> io::Result<Spool> {
        let mut input = File::from(io::stdin().as_fd().try_clone_to_owned()?);
        if input.metadata()?.file_type().is_file() {
            let start = input.stream_position()?;
            return Ok(Spool { file: input, start });
        }
        let mut tmp = tempfile::tempfile()?;
        io::copy(&mut input, &mut tmp)?;
        tmp.flush()?;
        Ok(Spool { file: tmp, start: 0 })
    }

    fn rewind(&mut self) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(self.start)).map(|_| ())
    }

    /// The first `header::MAX_SCAN` bytes, for the loop check.
    fn head(&mut self) -> io::Result<Vec<u8>> {
        self.rewind()?;
        let mut v = Vec::new();
        (&mut self.file).take(header::MAX_SCAN as u64).read_to_end(&mut v)?;
        Ok(v)
    }
}
