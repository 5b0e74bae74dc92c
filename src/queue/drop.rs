//! queue-drop: one message from any local user into `QUEUE_DIR/maildrop/`
//! (smtpd-queue(5), MAILDROP), over the qmail-queue protocol, for queue-run
//! to pick up, check and queue. Installed setgid to the drop group (as
//! Postfix's postdrop): that group may create files in `maildrop/` (mode
//! 1730) and nothing else. So this code trusts nothing of its caller but
//! the kernel's real uid, which it records (`SUBMITTER_UID`) and which owns
//! the file it writes; the folder it writes to must be one that only root can
//! have made (the drop group's, mode 1730, not a link), whatever `QUEUE_DIR`
//! the caller names; everything else (envelope, attributes, message) is
//! checked again by queue-run as untrusted input. Not a queue writer of new/:
//! that stays queue-inject's job, run by queue-run.

use super::inject::{read_input, Config, Input};
use super::{
    control_char, write_error, Error, EXIT_ADDR_TOO_LONG, EXIT_CONFIG, EXIT_ENVELOPE, EXIT_LINK, EXIT_QUEUE_DIR,
    EXIT_REFUSED, EXIT_SPOOL, EXIT_WORK_FILE,
};
use crate::envelope::{Attrs, Envelope};
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, renameat2, OFlag, RenameFlags};
use nix::sys::stat::{fchmod, fstat, Mode};
use nix::unistd::{getegid, geteuid, getgid, getuid, unlinkat, UnlinkatFlags};
use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};

/// The drop folder, in the queue folder.
pub const DROP_DIR: &str = "maildrop";
/// Its mode: owner (the queue's user) all, the drop group write and search
/// only (it can create names, never list them), sticky (nobody removes
/// another's file), others nothing.
pub const DROP_DIR_MODE: u32 = 0o1730;
/// A drop file's mode: the queue's user reads it as "other" (the folder lets
/// nobody else reach it).
pub const DROP_FILE_MODE: u32 = 0o644;
/// The attribute that records the real uid of the submitter.
pub const SUBMITTER_UID: &str = "SUBMITTER_UID";

/// The attributes a local submission may carry (what sendmail sets); any
/// other (client facts, TLS facts, SUBMITTER_UID itself) is refused, so that
/// a local user cannot pass for a network client or another user.
pub fn local_attr(name: &str) -> bool {
    if let Some(rest) = name.strip_prefix("RCPT.") {
        return match rest.split_once('.') {
            Some((n, what)) => !n.is_empty() && n.len() <= 5 && n.bytes().all(|b| b.is_ascii_digit()) && matches!(what, "NOTIFY" | "ORCPT"),
            None => false,
        };
    }
    matches!(name, "BODY" | "SMTPUTF8" | "ENVID" | "RET")
}

/// The name of a drop file: `<unix seconds>.<32 hex digits from the OS>`,
/// a valid queue id (`format::valid_id`); the work file is `.<name>`.
pub fn drop_name(now: u64, random: &[u8; 16]) -> String {
    let mut s = format!("{now}.");
    for b in random {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Run with setgid in effect (the effective group is not the real one).
pub fn privileged() -> bool {
    getegid() != getgid()
}

/// queue-drop: read the message and the envelope, write the drop file.
/// Returns its name.
pub fn run(cfg: &Config) -> Result<String, Error> {
    if geteuid() != getuid() {
        return Err(Error::new(EXIT_CONFIG, "queue-drop must not be setuid (setgid to the drop group only)"));
    }
    let dir = open_drop_dir(cfg)?;
    let mut input = read_input(cfg.timeout, || spool(&dir))?;
    let attrs = local_attrs(&cfg.attrs, input.envelope.recipients.len())?;
    check_envelope(&input.envelope)?;
    write_drop(&dir, &mut input, &attrs)
}

/// Open `QUEUE_DIR/maildrop/` (O_PATH: the drop group may not read it) and
/// check it: a folder, not a link; when privileged, the drop group's with
/// mode 1730, which only root can have made (the group has no members), so
/// that a `QUEUE_DIR` from the caller can lead nowhere else.
fn open_drop_dir(cfg: &Config) -> Result<OwnedFd, Error> {
    let path = cfg.dir.join(DROP_DIR);
    let fd = nix::fcntl::open(&path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| match e {
            Errno::ENOENT => Error::new(EXIT_CONFIG, format_args!("no drop folder {} (queue-run makes it)", path.display())),
            e => Error::new(EXIT_QUEUE_DIR, format_args!("unable to open {} (a folder, not a link): {e}", path.display())),
        })?;
    if privileged() {
        let st = fstat(fd.as_fd()).map_err(|e| Error::new(EXIT_QUEUE_DIR, format_args!("unable to stat {}: {e}", path.display())))?;
        let mode = st.st_mode & 0o7777;
        if st.st_gid != getegid().as_raw() || mode != DROP_DIR_MODE {
            return Err(Error::new(
                EXIT_QUEUE_DIR,
                format_args!(
                    "refusing {}: not the drop folder (group {} mode {mode:04o}; it must be group {} mode {DROP_DIR_MODE:04o})",
                    path.display(),
                    st.st_gid,
                    getegid()
                ),
            ));
        }
    }
    Ok(fd)
}

/// An anonymous file in the drop folder for a message larger than one
/// buffer (O_TMPFILE; else a named one, unlinked at once).
fn spool(dir: &OwnedFd) -> Result<File, Error> {
    let err = |e: Errno| Error::new(EXIT_SPOOL, format_args!("unable to create a spool file in the drop folder: {e}"));
    match openat(dir.as_fd(), ".", OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o600)) {
        Ok(fd) => Ok(File::from(fd)),
        Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => {
            let rnd = random().map_err(|e| Error::new(EXIT_SPOOL, format_args!("no randomness for a file name: {e}")))?;
            let name = format!(".spool.{}", drop_name(0, &rnd));
            let fd = openat(dir.as_fd(), name.as_str(), OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o600))
                .map_err(err)?;
            let _ = unlinkat(dir.as_fd(), name.as_str(), UnlinkatFlags::NoRemoveDir);
            Ok(File::from(fd))
        }
        Err(e) => Err(err(e)),
    }
}

/// `QUEUE_ATTRS` as a local user may give it, with `SUBMITTER_UID` added.
fn local_attrs(given: &Attrs, nrcpt: usize) -> Result<Attrs, Error> {
    let mut out = Attrs::default();
    for (name, value) in &given.0 {
        let rcpt_ok = name
            .strip_prefix("RCPT.")
            .and_then(|r| r.split_once('.'))
            .and_then(|(n, _)| n.parse::<usize>().ok())
            .map_or(true, |n| n < nrcpt);
        if !local_attr(name) || !rcpt_ok {
            return Err(Error::new(EXIT_REFUSED, format_args!("attribute {name} is not one a local user may give")));
        }
        out.0.push((name.clone(), value.clone()));
    }
    out.push(SUBMITTER_UID, getuid().as_raw().to_string());
    Ok(out)
}

/// What queue-inject refuses, refused here too (queue-run checks again).
fn check_envelope(env: &Envelope) -> Result<(), Error> {
    if env.recipients.is_empty() {
        return Err(Error::new(EXIT_ENVELOPE, "envelope has no recipient"));
    }
    if let Some(c) = std::iter::once(&env.sender).chain(&env.recipients).find_map(|a| control_char(a)) {
        return Err(Error::new(EXIT_REFUSED, format_args!("envelope address contains a control character (0x{c:02x})")));
    }
    Ok(())
}

/// Write `.<name>` (O_EXCL, not through a link), header then message,
/// mode 0644, fsync, rename it to `<name>` without replacing anything, and
/// make the rename durable.
fn write_drop(dir: &OwnedFd, input: &mut Input, attrs: &Attrs) -> Result<String, Error> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let rnd = random().map_err(|e| Error::new(EXIT_WORK_FILE, format_args!("no randomness for a file name: {e}")))?;
    let name = drop_name(now, &rnd);
    let work = format!(".{name}");
    let header = super::encode_header(&name, now, &input.envelope, attrs);
    if header.len() > super::format::MAX_HEADER {
        return Err(Error::new(EXIT_ADDR_TOO_LONG, format_args!("envelope too large: header of {} octets", header.len())));
    }
    let fd = openat(
        dir.as_fd(),
        work.as_str(),
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(DROP_FILE_MODE),
    )
    .map_err(|e| Error::new(EXIT_WORK_FILE, format_args!("unable to create a work file in the drop folder: {e}")))?;
    let res = (|| {
        // The caller's umask must not hide the file from queue-run.
        fchmod(fd.as_fd(), Mode::from_bits_truncate(DROP_FILE_MODE)).map_err(|e| write_error(&io::Error::from(e)))?;
        let mut f = File::from(fd);
        f.write_all(&header).map_err(|e| write_error(&e))?;
        if let Some(s) = input.spool.as_mut() {
            s.rewind().map_err(|e| write_error(&e))?;
            io::copy(s, &mut f).map_err(|e| write_error(&e))?;
        }
        f.write_all(input.tail()).map_err(|e| write_error(&e))?;
        f.sync_all().map_err(|e| write_error(&e))?;
        match renameat2(dir.as_fd(), work.as_str(), dir.as_fd(), name.as_str(), RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => {}
            // A file system without RENAME_NOREPLACE: the name is random.
            Err(Errno::EINVAL | Errno::ENOSYS) => renameat(dir.as_fd(), work.as_str(), dir.as_fd(), name.as_str())
                .map_err(|e| Error::new(EXIT_LINK, format_args!("unable to rename the work file: {e}")))?,
            Err(e) => return Err(Error::new(EXIT_LINK, format_args!("unable to rename the work file: {e}"))),
        }
        // The folder cannot be opened for an fsync by the drop group (no
        // read right): syncfs makes the new name durable all the same.
        nix::unistd::syncfs(f.as_fd()).map_err(|e| write_error(&io::Error::from(e)))
    })();
    if let Err(e) = res {
        let _ = unlinkat(dir.as_fd(), work.as_str(), UnlinkatFlags::NoRemoveDir);
        return Err(e);
    }
    Ok(name)
}

/// 16 octets from the OS (getrandom(2), through ring).
fn random() -> io::Result<[u8; 16]> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| io::Error::other("getrandom failed"))?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_a_local_user_may_give() {
        for ok in ["BODY", "SMTPUTF8", "ENVID", "RET", "RCPT.0.NOTIFY", "RCPT.12.ORCPT"] {
            assert!(local_attr(ok), "{ok}");
        }
        for bad in ["CLIENT_ADDR", "CLIENT_LOGIN", "TLS_PEER", "SUBMITTER_UID", "RCPT.x.NOTIFY", "RCPT.0.OTHER", "RCPT.0", "RCPT..NOTIFY", "body"] {
            assert!(!local_attr(bad), "{bad}");
        }
        let mut a = Attrs::default();
        a.push("BODY", "8BITMIME");
        a.push("RCPT.1.NOTIFY", "NEVER");
        let out = local_attrs(&a, 2).unwrap();
        assert_eq!(out.get("BODY"), Some(&b"8BITMIME"[..]));
        assert_eq!(out.get(SUBMITTER_UID), Some(getuid().as_raw().to_string().as_bytes()));
        assert_eq!(local_attrs(&a, 1).unwrap_err().code, EXIT_REFUSED);
        a.push("SUBMITTER_UID", "0");
        assert_eq!(local_attrs(&a, 2).unwrap_err().code, EXIT_REFUSED);
    }

    #[test]
    fn names() {
        let n = drop_name(1700000000, &[0xab; 16]);
        assert_eq!(n, format!("1700000000.{}", "ab".repeat(16)));
        assert!(super::super::format::valid_id(&n));
    }
}
