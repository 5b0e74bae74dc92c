//! The queue (smtpd-queue(5)): the durable writer, the file format's reader
//! (`format`), queue-inject's two input modes (`inject`) and its zygote
//! (`zygote`), and queue-drop's writer into the drop folder for local users
//! (`drop`).
//!
//! A message is written to a work file in `QUEUE_DIR/tmp/`, fsynced, linked
//! with no clobber to `QUEUE_DIR/new/<queue id>`, and then `new/` itself is
//! fsynced: a reader of `new/` sees a message whole or not at all, and only
//! once it is on disk. The work file has no name at all where the kernel
//! allows (O_TMPFILE, then linkat through /proc/self/fd): nothing to remove
//! after a crash, no entry in `tmp/` to write and sync, no rename across
//! two folders (which takes the file system's rename lock). Elsewhere it is
//! a named file in `tmp/`, renamed into `new/`.

pub mod client;
pub mod drop;
pub mod format;
pub mod inject;
pub mod zygote;

pub use format::{encode_header, parse_header, read_header, FormatError, Header, ReadError};

use crate::envelope::{Attrs, Envelope};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the queue is when `QUEUE_DIR` is not set.
pub const DEFAULT_QUEUE_DIR: &str = "/var/spool/smtpd-rs/queue";
/// Work files in tmp/ older than this are leftovers of a crash.
pub const LEFTOVER_AGE: Duration = Duration::from_secs(36 * 3600);
/// Size of every I/O buffer of the writer.
pub const BUF_SIZE: usize = 65536;

// qmail-queue's exit codes (qmail-queue(8)); queue-inject uses the same
// numbers with the same meanings, so that it can stand in as QMAILQUEUE.
pub const EXIT_ADDR_TOO_LONG: i32 = 11;
pub const EXIT_REFUSED: i32 = 31;
pub const EXIT_NOMEM: i32 = 51;
pub const EXIT_TIMEOUT: i32 = 52;
pub const EXIT_WRITE: i32 = 53;
pub const EXIT_READ: i32 = 54;
pub const EXIT_CONFIG: i32 = 55;
pub const EXIT_QUEUE_DIR: i32 = 61;
pub const EXIT_TMP_DIR: i32 = 62;
pub const EXIT_SPOOL: i32 = 63;
pub const EXIT_WORK_FILE: i32 = 64;
pub const EXIT_NEW_DIR: i32 = 65;
pub const EXIT_LINK: i32 = 66;
pub const EXIT_BUG: i32 = 81;
pub const EXIT_ENVELOPE: i32 = 91;

/// The first control character in an envelope address: a C0 octet (NUL, CR,
/// LF, TAB, ...) or DEL. No address may hold one: RFC 5321 4.1.2 allows none,
/// not even quoted, and CR LF in an address would become SMTP commands of
/// their own at the next hop. queue-inject refuses them (31), sendmail
/// refuses them, queue-run never hands one to the delivery program.
pub fn control_char(addr: &[u8]) -> Option<u8> {
    addr.iter().copied().find(|&b| b < 0x20 || b == 0x7f)
}

/// An address as text for a log line or a report: control characters as
/// `\r`, `\n`, `\t`, `\0` or `\xHH` (C0, DEL and C1), so that one address
/// never splits a line; everything else as it is (invalid UTF-8 as U+FFFD).
pub fn printable_address(addr: &[u8]) -> String {
    let mut out = String::with_capacity(addr.len());
    for c in String::from_utf8_lossy(addr).chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Why a queue folder must not be used, if so (smtpd-queue(5), SAFE
/// FOLDERS): a folder that another user can write to lets that user plant
/// files, or links that the queue's programs would follow. `euid`/`egid`:
/// the caller's. Refused: a symbolic link; not a folder; owned by someone
/// other than the caller or root (also when the caller is root: a folder of
/// another user is one where that user can swap names under root's feet);
/// writable by every user; writable by a group other than the caller's own.
pub fn unsafe_folder(md: &fs::Metadata, euid: u32, egid: u32) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mode = md.mode() & 0o7777;
    if md.file_type().is_symlink() {
        Some("it is a symbolic link".into())
    } else if !md.is_dir() {
        Some("it is not a folder".into())
    } else if md.uid() != euid && md.uid() != 0 {
        Some(format!("it belongs to uid {}, not to this user (uid {euid}) or root", md.uid()))
    } else if mode & 0o002 != 0 {
        Some(format!("every user can write to it (mode {mode:04o})"))
    } else if mode & 0o020 != 0 && md.gid() != egid {
        Some(format!("group {} can write to it (mode {mode:04o}), not only this user's group {egid}", md.gid()))
    } else {
        None
    }
}

/// `unsafe_folder` for `path` (not followed if it is a link) and this
/// process: `Err` with a one-line reason, or the reason it cannot be looked at.
pub fn check_folder(path: &Path) -> Result<(), String> {
    let md = fs::symlink_metadata(path).map_err(|e| format!("unable to stat {}: {e}", path.display()))?;
    match unsafe_folder(&md, nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw()) {
        None => Ok(()),
        Some(why) => Err(format!("refusing {}: {why}", path.display())),
    }
}

/// A failure with its qmail-queue exit code and a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: i32,
    pub msg: String,
}

impl Error {
    pub fn new(code: i32, msg: impl fmt::Display) -> Error {
        Error { code, msg: msg.to_string() }
    }

    /// True for qmail's permanent range (11-40).
    pub fn is_permanent(&self) -> bool {
        (11..=40).contains(&self.code)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

/// An open queue: its folders checked, `new/` held open for its fsyncs.
#[derive(Debug)]
pub struct Queue {
    tmp: PathBuf,
    new: PathBuf,
    new_dir: File,
    pid: u32,
    /// The parent's pid (1 once it is gone: never a caller's).
    ppid: u32,
    seq: u64,
    /// Work files are anonymous (O_TMPFILE, linked by /proc/self/fd):
    /// until the kernel or a missing /proc says otherwise.
    anonymous: bool,
}

impl Queue {
    /// Open the queue at `dir`. A missing `dir` is exit 55 (the
    /// configuration names no queue); missing `tmp/` or `new/` are created
    /// with mode 0700. The three must be safe folders (`check_folder`):
    /// 61, 62 or 65 otherwise.
    pub fn open(dir: &Path) -> Result<Queue, Error> {
        match fs::symlink_metadata(dir) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::new(EXIT_CONFIG, format_args!("no queue at {}", dir.display())))
            }
            Err(e) => {
                return Err(Error::new(EXIT_QUEUE_DIR, format_args!("unable to stat {}: {e}", dir.display())))
            }
        }
        check_folder(dir).map_err(|e| Error::new(EXIT_QUEUE_DIR, e))?;
        let tmp = dir.join("tmp");
        let new = dir.join("new");
        ensure_dir(&tmp)
            .map_err(|e| Error::new(EXIT_TMP_DIR, format_args!("unable to create {}: {e}", tmp.display())))?;
        check_folder(&tmp).map_err(|e| Error::new(EXIT_TMP_DIR, e))?;
        ensure_dir(&new)
            .map_err(|e| Error::new(EXIT_NEW_DIR, format_args!("unable to create {}: {e}", new.display())))?;
        check_folder(&new).map_err(|e| Error::new(EXIT_NEW_DIR, e))?;
        let new_dir = File::open(&new)
            .map_err(|e| Error::new(EXIT_NEW_DIR, format_args!("unable to open {}: {e}", new.display())))?;
        let ppid = u32::try_from(nix::unistd::getppid().as_raw()).unwrap_or(1).max(2);
        let anonymous = Path::new(PROC_FD).is_dir();
        Ok(Queue { tmp, new, new_dir, pid: std::process::id(), ppid, seq: 0, anonymous })
    }

    /// In a process forked from the one that opened the queue (queue-inject
    /// -z): ids from this process's pid, numbered from 1, and none taken
    /// from the parent's (which its other children use).
    pub fn forked(&mut self) {
        self.pid = std::process::id();
        self.ppid = self.pid;
        self.seq = 0;
    }

    /// An anonymous file in `tmp/` (O_TMPFILE where the kernel has it): it
    /// has no name, so a crash leaves nothing behind.
    pub fn spool(&self) -> Result<File, Error> {
        tempfile::tempfile_in(&self.tmp).map_err(|e| {
            Error::new(
                EXIT_SPOOL,
                format_args!("unable to create a spool file in {}: {e}", self.tmp.display()),
            )
        })
    }

    /// Start a message: a new work file in `tmp/` holding its header.
    pub fn begin(&mut self, env: &Envelope, attrs: &Attrs) -> Result<Work, Error> {
        self.begin_as(env, attrs, None)
    }

    /// `begin`, under the id the client proposed (session mode's `I` frame,
    /// so that smtpd-rs can name the id in its Received header) when it is
    /// one this process could have made: `<secs>.<this pid>.<n>` with `n`
    /// past every sequence number used so far. Otherwise its own id, which
    /// the answer tells.
    pub fn begin_as(&mut self, env: &Envelope, attrs: &Attrs, proposed: Option<&str>) -> Result<Work, Error> {
        let time = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let id = match proposed.and_then(|p| self.accept_id(p)) {
            Some(n) => {
                self.seq = n;
                proposed.unwrap_or_default().to_owned()
            }
            None => {
                self.seq += 1;
                format!("{time}.{}.{}", self.pid, self.seq)
            }
        };
        // Checked here, where every message of both protocols passes.
        if let Some(c) = std::iter::once(&env.sender).chain(&env.recipients).find_map(|a| control_char(a)) {
            return Err(Error::new(
                EXIT_REFUSED,
                format_args!("envelope address contains a control character (0x{c:02x})"),
            ));
        }
        let header = encode_header(&id, time, env, attrs);
        if header.len() > format::MAX_HEADER {
            // One limit for the writer and every reader: what is queued can
            // be read back (smtpd-queue(5)).
            return Err(Error::new(
                EXIT_ADDR_TOO_LONG,
                format_args!("envelope too large: the queue file header would be {} octets, over {}", header.len(), format::MAX_HEADER),
            ));
        }
        let work_error = |e: io::Error| {
            Error::new(EXIT_WORK_FILE, format_args!("unable to create a work file in {}: {e}", self.tmp.display()))
        };
        let (file, name) = match self.anonymous.then(|| self.anonymous_file()) {
            Some(Ok(f)) => (f, None),
            Some(Err(e)) if !no_tmpfile(&e) => return Err(work_error(e)),
            other => {
                if other.is_some() {
                    self.anonymous = false;
                }
                let named = tempfile::Builder::new()
                    .prefix(&format!("{id}."))
                    .permissions(fs::Permissions::from_mode(0o640))
                    .tempfile_in(&self.tmp)
                    .map_err(work_error)?;
                let (f, p) = named.into_parts();
                (f, Some(p))
            }
        };
        let mut work = Work { id, w: BufWriter::with_capacity(BUF_SIZE, file), name };
        work.write(&header)?;
        Ok(work)
    }

    /// A work file without a name, in `tmp/`'s file system.
    fn anonymous_file(&self) -> io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new().write(true).custom_flags(libc::O_TMPFILE).mode(0o640).open(&self.tmp)
    }

    /// The sequence number of a proposed id, if it is `<secs>.<pid>.<n>`
    /// with this process's pid and an unused `n`: then it is as unique as
    /// an id of our own. The parent's pid is taken too: a program in the
    /// middle of the chain (auth-check) passes on the ids its own caller
    /// made from the middle program's pid, numbered upwards for as long as
    /// that process lives, so no other process can make the same id.
    fn accept_id(&self, id: &str) -> Option<u64> {
        let mut f = id.split('.');
        let (secs, pid, n) = (f.next()?, f.next()?, f.next()?);
        let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        let ours = pid == self.pid.to_string() || pid == self.ppid.to_string();
        if f.next().is_some() || !digits(secs) || !ours || !digits(n) {
            return None;
        }
        n.parse().ok().filter(|&n| n > self.seq)
    }

    /// Make `work` durable and visible; returns its queue id. On any error
    /// the work file is removed and nothing appears in `new/`.
    pub fn commit(&mut self, work: Work) -> Result<String, Error> {
        let Work { id, w, name } = work;
        let file = w.into_inner().map_err(|e| write_error(e.error()))?;
        file.sync_all().map_err(|e| write_error(&e))?;
        let target = self.new.join(&id);
        let linked = match name {
            // linkat never replaces an existing name (EEXIST).
            None => {
                use std::os::fd::AsRawFd;
                let proc_path = format!("{PROC_FD}/{}", file.as_raw_fd());
                nix::unistd::linkat(nix::fcntl::AT_FDCWD, proc_path.as_str(), &self.new_dir, id.as_str(), nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW)
                    .map_err(io::Error::from)
            }
            Some(p) => p.persist_noclobber(&target).map_err(|e| e.error),
        };
        if let Err(e) = linked {
            return Err(Error::new(EXIT_LINK, format_args!("unable to link {}: {e}", target.display())));
        }
        self.new_dir.sync_all().map_err(|e| {
            Error::new(EXIT_NEW_DIR, format_args!("unable to fsync {}: {e}", self.new.display()))
        })?;
        Ok(id)
    }

    /// Remove regular files in `tmp/` last modified more than `age` ago.
    /// Returns how many were removed; a file that cannot be removed is
    /// skipped (and counted in the error text only when nothing else works).
    pub fn clean(&self, age: Duration) -> Result<usize, Error> {
        let cutoff = SystemTime::now().checked_sub(age).unwrap_or(UNIX_EPOCH);
        let dir = fs::read_dir(&self.tmp).map_err(|e| {
            Error::new(EXIT_TMP_DIR, format_args!("unable to read {}: {e}", self.tmp.display()))
        })?;
        let mut removed = 0;
        for entry in dir.flatten() {
            let Ok(m) = entry.metadata() else { continue };
            let old = m.modified().map(|t| t < cutoff).unwrap_or(false);
            if m.is_file() && old && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// A message being written: a work file in `tmp/`, gone when dropped
/// unless `Queue::commit` made it visible (an anonymous one simply
/// vanishes; a named one is removed).
#[derive(Debug)]
pub struct Work {
    id: String,
    w: BufWriter<File>,
    /// The work file's name, when it has one.
    name: Option<tempfile::TempPath>,
}

impl Work {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Append message bytes.
    pub fn write(&mut self, b: &[u8]) -> Result<(), Error> {
        self.w.write_all(b).map_err(|e| write_error(&e))
    }

    /// Append the whole of `src` from its start (copy_file_range in the
    /// kernel where it can, else 64 KiB at a time).
    pub fn copy_from(&mut self, src: &mut File) -> Result<u64, Error> {
        self.w.flush().map_err(|e| write_error(&e))?;
        src.rewind().map_err(|e| write_error(&e))?;
        io::copy(src, self.w.get_mut()).map_err(|e| write_error(&e))
    }
}

/// Where a process finds its own open files by number (for linkat of an
/// anonymous work file without CAP_DAC_READ_SEARCH).
const PROC_FD: &str = "/proc/self/fd";

/// The errors by which a kernel or file system says it has no O_TMPFILE.
fn no_tmpfile(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL))
}

fn write_error(e: &io::Error) -> Error {
    Error::new(EXIT_WRITE, format_args!("write error or disk full: {e}"))
}

/// Create `p` (mode 0700) unless something is there already; what is there
/// is judged by `check_folder`.
fn ensure_dir(p: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(p) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Envelope {
        Envelope { sender: b"a@b".to_vec(), recipients: vec![b"c@d".to_vec()] }
    }

    #[test]
    fn write_commit_read() {
        let d = tempfile::tempdir().unwrap();
        let mut q = Queue::open(d.path()).unwrap();
        let mut w = q.begin(&env(), &Attrs::default()).unwrap();
        w.write(b"Subject: x\n\nhi\n").unwrap();
        let id = q.commit(w).unwrap();
        assert!(id.ends_with(".1"));
        let bytes = fs::read(d.path().join("new").join(&id)).unwrap();
        let (h, off) = parse_header(&bytes).unwrap();
        assert_eq!(h.id, id);
        assert_eq!(h.envelope, env());
        assert_eq!(&bytes[off..], b"Subject: x\n\nhi\n");
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
        // Second message: next sequence number.
        let w = q.begin(&env(), &Attrs::default()).unwrap();
        assert!(q.commit(w).unwrap().ends_with(".2"));
    }

    #[test]
    fn both_kinds_of_work_file() {
        for anonymous in [true, false] {
            let d = tempfile::tempdir().unwrap();
            let mut q = Queue::open(d.path()).unwrap();
            assert!(q.anonymous, "this kernel has O_TMPFILE and /proc");
            q.anonymous = anonymous;
            let tmp_names = || fs::read_dir(d.path().join("tmp")).unwrap().count();
            let mut w = q.begin(&env(), &Attrs::default()).unwrap();
            w.write(b"hi\n").unwrap();
            assert_eq!(tmp_names(), usize::from(!anonymous), "anonymous {anonymous}");
            let id = q.commit(w).unwrap();
            assert!(fs::read(d.path().join("new").join(&id)).unwrap().ends_with(b"hi\n"));
            assert_eq!(tmp_names(), 0);
            use std::os::unix::fs::MetadataExt;
            assert_eq!(fs::metadata(d.path().join("new").join(&id)).unwrap().mode() & 0o777, 0o640);
            // A name already in new/ is never replaced.
            let w = q.begin(&env(), &Attrs::default()).unwrap();
            let taken = d.path().join("new").join(w.id());
            fs::write(&taken, b"first").unwrap();
            assert_eq!(q.commit(w).unwrap_err().code, EXIT_LINK);
            assert_eq!(fs::read(&taken).unwrap(), b"first");
            assert_eq!(tmp_names(), 0, "anonymous {anonymous}");
        }
    }

    #[test]
    fn proposed_ids() {
        let d = tempfile::tempdir().unwrap();
        let mut q = Queue::open(d.path()).unwrap();
        let pid = std::process::id();
        let mut put = |p: &str| {
            let w = q.begin_as(&env(), &Attrs::default(), Some(p)).unwrap();
            q.commit(w).unwrap()
        };
        // Ours to make: taken as it is, and the sequence moves past it.
        assert_eq!(put(&format!("1700000000.{pid}.5")), format!("1700000000.{pid}.5"));
        // Not ours (another pid, a used number, bad syntax): our own id.
        for bad in [format!("1700000000.{}.9", pid + 1), format!("1700000000.{pid}.5"), "../x".into(), "1.2".into(), format!("x.{pid}.9")] {
            let got = put(&bad);
            assert_ne!(got, bad);
            assert!(got.contains(&format!(".{pid}.")) && format::valid_id(&got), "{got}");
        }
        // Own ids went on from 5 (6 to 10): 6 is used, 11 is free.
        assert!(put(&format!("1.{pid}.6")).ends_with(".11"));
        assert_eq!(put(&format!("1.{pid}.12")), format!("1.{pid}.12"));
        // The parent's pid (a middle program passing its caller's ids on).
        let ppid = nix::unistd::getppid();
        assert_eq!(put(&format!("1.{ppid}.13")), format!("1.{ppid}.13"));
        assert_ne!(put(&format!("1.{ppid}.13")), format!("1.{ppid}.13"));
    }

    #[test]
    fn dropped_work_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let mut q = Queue::open(d.path()).unwrap();
        let mut w = q.begin(&env(), &Attrs::default()).unwrap();
        w.write(b"x").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(d.path().join("new")).unwrap().count(), 0);
    }

    #[test]
    fn control_characters() {
        for a in [&b"a@b\r\nRSET"[..], b"\0", b"a\x7f@b", b"\x1b[31m@b", b"\t@b"] {
            assert!(control_char(a).is_some(), "{a:?}");
        }
        for a in [&b""[..], b"a@b", b"\"a b\"@c", "j\u{f6}e@\u{4f8b}.jp".as_bytes(), b"\x80\xff"] {
            assert_eq!(control_char(a), None, "{a:?}");
        }
        assert_eq!(printable_address(b"x@y>\r\nRSET\x01\x7f\t\0"), "x@y>\\r\\nRSET\\x01\\x7f\\t\\0");
        assert_eq!(printable_address("j\u{f6}e@b".as_bytes()), "j\u{f6}e@b");
        let d = tempfile::tempdir().unwrap();
        let mut q = Queue::open(d.path()).unwrap();
        let bad = Envelope { sender: b"a@b".to_vec(), recipients: vec![b"c@d\r\nRSET".to_vec()] };
        assert_eq!(q.begin(&bad, &Attrs::default()).unwrap_err().code, EXIT_REFUSED);
        let bad = Envelope { sender: b"a\n@b".to_vec(), recipients: vec![b"c@d".to_vec()] };
        assert_eq!(q.begin(&bad, &Attrs::default()).unwrap_err().code, EXIT_REFUSED);
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn folder_rules() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        fs::create_dir(&p).unwrap();
        let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let judge = |mode: u32, euid: u32, egid: u32| {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            unsafe_folder(&fs::symlink_metadata(&p).unwrap(), euid, egid)
        };
        assert_eq!(judge(0o700, uid, gid), None);
        assert_eq!(judge(0o750, uid, gid), None);
        assert_eq!(judge(0o770, uid, gid), None, "group-writable by the user's own group");
        assert!(judge(0o770, uid, gid + 1).unwrap().contains("group"));
        assert!(judge(0o777, uid, gid).unwrap().contains("every user"));
        assert!(judge(0o1733, uid, gid).unwrap().contains("every user"));
        if uid != 0 {
            assert!(judge(0o700, uid + 1, gid).unwrap().contains("belongs to"));
        } else {
            assert_eq!(judge(0o700, 4242, gid), None, "root's folder for another user");
            std::os::unix::fs::chown(&p, Some(4242), None).unwrap();
            assert!(judge(0o700, 0, gid).unwrap().contains("belongs to uid 4242"), "another user's folder for root");
            std::os::unix::fs::chown(&p, Some(0), None).unwrap();
        }
        let l = d.path().join("l");
        symlink(&p, &l).unwrap();
        assert!(unsafe_folder(&fs::symlink_metadata(&l).unwrap(), uid, gid).unwrap().contains("symbolic link"));
        assert!(check_folder(&l).unwrap_err().starts_with("refusing "));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(check_folder(&p), Ok(()));
    }

    #[test]
    fn open_errors() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(Queue::open(&d.path().join("nope")).unwrap_err().code, EXIT_CONFIG);
        fs::write(d.path().join("f"), b"").unwrap();
        assert_eq!(Queue::open(&d.path().join("f")).unwrap_err().code, EXIT_QUEUE_DIR);
        fs::write(d.path().join("tmp"), b"").unwrap();
        assert_eq!(Queue::open(d.path()).unwrap_err().code, EXIT_TMP_DIR);
    }
}
