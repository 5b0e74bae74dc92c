//! queue-run's side of the queue folders (queue-run(8), smtpd-queue(5)):
//! reads `new/<id>` (written only by queue-inject), keeps per-recipient state
//! in `state/<id>` (written atomically: work file, fsync, rename, fsync of
//! the folder), sets corrupt files aside in `bad/`, removes finished messages;
//! and lists, opens, removes or sets aside the drop files of `maildrop/`.
//! queue-run never writes in `tmp/` or creates anything in `new/`.

use crate::queue::drop::{DROP_DIR, DROP_DIR_MODE};
use crate::queue::format::{self, Header};
use super::state::State;
use nix::fcntl::OFlag;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct Queue {
    pub dir: PathBuf,
}

/// A message as read from `new/<id>`.
pub struct Message {
    pub header: Header,
    /// Offset of the message text in the file.
    pub body_offset: u64,
    pub ino: u64,
    pub size: u64,
    /// Last change of the file (for `--list` of a corrupt file, and ages).
    pub mtime: i64,
}

/// Why the queue's folders cannot be used.
#[derive(Debug)]
pub enum PrepareError {
    Io(io::Error),
    /// A folder others could write to, or a link (`queue::check_folder`'s reason).
    Unsafe(String),
}

impl std::fmt::Display for PrepareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrepareError::Io(e) => write!(f, "{e}"),
            PrepareError::Unsafe(e) => f.write_str(e),
        }
    }
}

#[derive(Debug)]
pub enum LoadError {
    /// Gone (finished meanwhile, or never there).
    Gone,
    /// Not a queue file we can read: set it aside.
    Corrupt(String),
    /// Could not read it now (permissions, I/O error): try later.
    Io(io::Error),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Gone => f.write_str("no such message"),
            LoadError::Corrupt(e) => write!(f, "corrupt queue file: {e}"),
            LoadError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl Queue {
    pub fn new(dir: impl Into<PathBuf>) -> Queue {
        Queue { dir: dir.into() }
    }

    pub fn new_dir(&self) -> PathBuf {
        self.dir.join("new")
    }

    /// Create `state/` and `bad/` (and `new/`, `tmp/` if queue-inject has
    /// not yet), mode 0700 as queue-inject makes its folders. `QUEUE_DIR`
    /// itself must exist. Then every one of them must be a safe folder
    /// (`queue::check_folder`: no symbolic link, nobody but this user, root
    /// or this user's group can write to it), else `Unsafe`.
    pub fn prepare(&self) -> Result<(), PrepareError> {
        use std::os::unix::fs::DirBuilderExt;
        match fs::symlink_metadata(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(PrepareError::Io(io::Error::new(io::ErrorKind::NotFound, "no such queue folder")))
            }
            Err(e) => return Err(PrepareError::Io(e)),
            Ok(_) => {}
        }
        crate::queue::check_folder(&self.dir).map_err(PrepareError::Unsafe)?;
        for d in ["new", "tmp", "state", "bad"] {
            let p = self.dir.join(d);
            match fs::DirBuilder::new().mode(0o700).create(&p) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(PrepareError::Io(e)),
                _ => {}
            }
            crate::queue::check_folder(&p).map_err(PrepareError::Unsafe)?;
        }
        // The drop folder: made 1730 with queue-run's own group (enough for
        // the queue's user); root gives it the drop group (smtpd-queue(5)).
        let md = self.maildrop_dir();
        match fs::DirBuilder::new().mode(0o700).create(&md) {
            Ok(()) => fs::set_permissions(&md, fs::Permissions::from_mode(DROP_DIR_MODE)).map_err(PrepareError::Io)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(PrepareError::Io(e)),
        }
        check_maildrop(&md).map_err(PrepareError::Unsafe)
    }

    pub fn maildrop_dir(&self) -> PathBuf {
        self.dir.join(DROP_DIR)
    }

    /// The names of complete drop files (work files start with a dot).
    pub fn list_maildrop(&self) -> io::Result<Vec<String>> {
        let mut v = Vec::new();
        for e in fs::read_dir(self.maildrop_dir())? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                v.push(name);
            }
        }
        Ok(v)
    }

    /// Open a drop file: never through a link, never blocking on a FIFO.
    pub fn open_drop(&self, name: &str) -> io::Result<File> {
        open_nofollow(&self.maildrop_dir().join(name))
    }

    /// A drop file is queued: remove it, durably.
    pub fn remove_drop(&self, name: &str) -> io::Result<()> {
        remove_quiet(&self.maildrop_dir().join(name))?;
        File::open(self.maildrop_dir())?.sync_all()
    }

    /// Set a bad drop file aside as `bad/maildrop.<name>` (numbered if taken).
    pub fn quarantine_drop(&self, name: &str) -> io::Result<PathBuf> {
        let safe: String = name.chars().map(|c| if c == '/' || c.is_control() { '_' } else { c }).collect();
        let base = format!("maildrop.{safe}");
        let mut to = self.dir.join("bad").join(&base);
        let mut n = 1;
        while to.symlink_metadata().is_ok() {
            to = self.dir.join("bad").join(format!("{base}.{n}"));
            n += 1;
        }
        fs::rename(self.maildrop_dir().join(name), &to)?;
        Ok(to)
    }

    /// Work files of queue-drop older than `age` (left by a killed or
    /// crashed queue-drop): removed.
    pub fn clean_maildrop(&self, age: std::time::Duration) -> io::Result<usize> {
        let cutoff = std::time::SystemTime::now().checked_sub(age).unwrap_or(std::time::UNIX_EPOCH);
        let mut n = 0;
        for e in fs::read_dir(self.maildrop_dir())? {
            let e = e?;
            let old = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < cutoff);
            if e.file_name().to_string_lossy().starts_with('.') && old && remove_quiet(&e.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The names in `new/`, all of them (the caller sorts out bad names).
    pub fn list(&self) -> io::Result<Vec<String>> {
        let mut v = Vec::new();
        for e in fs::read_dir(self.new_dir())? {
            let e = e?;
            v.push(e.file_name().to_string_lossy().into_owned());
        }
        Ok(v)
    }

    /// Open `new/<id>` and read its header.
    pub fn load(&self, id: &str) -> Result<(Message, File), LoadError> {
        if !format::valid_id(id) {
            return Err(LoadError::Corrupt("not a queue id".into()));
        }
        let mut f = match self.open_message(id) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(LoadError::Gone),
            // O_NOFOLLOW: a symbolic link is never read (it could name any file).
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => {
                return Err(LoadError::Corrupt("a symbolic link".into()))
            }
            Err(e) => return Err(LoadError::Io(e)),
        };
        let md = f.metadata().map_err(LoadError::Io)?;
        if !md.is_file() {
            return Err(LoadError::Corrupt("not a regular file".into()));
        }
        // The queue's one header reader (queue::format), over a buffer whose
        // position afterwards does not matter: the caller seeks to the body.
        let (header, off) = format::read_header(&mut io::BufReader::with_capacity(8192, &mut f)).map_err(|e| match e {
            format::ReadError::Io(e) => LoadError::Io(e),
            format::ReadError::Format(e) => LoadError::Corrupt(e.to_string()),
        })?;
        if header.id != id {
            return Err(LoadError::Corrupt(format!("file says id {}", header.id)));
        }
        // queue-inject's limit: a state for more could outgrow MAX_STATE.
        if header.envelope.recipients.len() > crate::queue::inject::MAX_RCPT {
            return Err(LoadError::Corrupt(format!("more than {} recipients", crate::queue::inject::MAX_RCPT)));
        }
        let msg = Message { header, body_offset: off, ino: md.ino(), size: md.len(), mtime: md.mtime() };
        Ok((msg, f))
    }

    /// Open `new/<id>` for reading, never through a symbolic link, never
    /// blocking on a FIFO.
    pub fn open_message(&self, id: &str) -> io::Result<File> {
        open_nofollow(&self.new_dir().join(id))
    }

    /// The state of `id` if it belongs to the file with inode `ino`.
    /// `Ok(None)`: none yet (or a stale one); `Err`: unreadable or corrupt.
    pub fn load_state(&self, id: &str, ino: u64, nrcpt: usize) -> io::Result<Option<State>> {
        let mut buf = Vec::new();
        match open_nofollow(&self.state_path(id)) {
            Ok(f) => {
                if !f.metadata()?.is_file() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "state file is not a regular file"));
                }
                f.take(super::state::MAX_STATE as u64 + 1).read_to_end(&mut buf)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "state file is a symbolic link"))
            }
            Err(e) => return Err(e),
        }
        match State::parse(&buf) {
            Some(st) if st.ino == ino && st.rcpts.len() == nrcpt => Ok(Some(st)),
            Some(st) if st.ino != ino => Ok(None),
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, "corrupt state file")),
        }
    }

    /// Write `state/<id>` durably: the old state stays whole until the new
    /// one is on disk (a full disk loses nothing recorded before). The work
    /// file `state/.<id>.tmp` is made new (O_CREAT|O_EXCL|O_NOFOLLOW) after a
    /// stale one is unlinked (unlink removes a link itself, never its
    /// target): nothing planted there is ever followed or written through.
    pub fn save_state(&self, id: &str, st: &State) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.dir.join("state");
        let tmp = dir.join(format!(".{id}.tmp"));
        remove_quiet(&tmp)?;
        let res = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o640)
                .custom_flags(OFlag::O_NOFOLLOW.bits())
                .open(&tmp)?;
            f.write_all(&st.encode())?;
            f.sync_all()?;
            fs::rename(&tmp, self.state_path(id))?;
            File::open(&dir)?.sync_all()
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    /// A finished message leaves the queue: the message first (its absence is
    /// what says "done"), then its state.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        match fs::remove_file(self.new_dir().join(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        remove_quiet(&self.state_path(id))
    }

    /// Set a bad file aside into `bad/` (with its state, if any), under a name
    /// that does not clobber an earlier one.
    pub fn quarantine(&self, name: &str) -> io::Result<PathBuf> {
        let safe: String = name.chars().map(|c| if c == '/' || c.is_control() { '_' } else { c }).collect();
        let safe = safe.trim_start_matches('.').to_owned();
        let mut to = self.dir.join("bad").join(if safe.is_empty() { "_".into() } else { safe.clone() });
        let mut n = 1;
        while to.symlink_metadata().is_ok() {
            to = self.dir.join("bad").join(format!("{safe}.{n}"));
            n += 1;
        }
        fs::rename(self.new_dir().join(name), &to)?;
        if format::valid_id(name) {
            let st = self.state_path(name);
            if st.exists() {
                let _ = fs::rename(&st, to.with_extension("state"));
            }
        }
        Ok(to)
    }

    /// Set a corrupt state file aside (the message stays, with a fresh state).
    pub fn quarantine_state(&self, id: &str) -> io::Result<()> {
        fs::rename(self.state_path(id), self.dir.join("bad").join(format!("{id}.state")))
    }

    /// State files whose message is gone (a crash between the two unlinks of
    /// `remove`): removed. Work files of `save_state` left by a crash: removed.
    pub fn clean_state(&self) -> io::Result<usize> {
        let mut n = 0;
        for e in fs::read_dir(self.dir.join("state"))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let orphan = if name.starts_with('.') { name.ends_with(".tmp") } else { !self.new_dir().join(&name).exists() };
            if orphan {
                remove_quiet(&e.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn state_path(&self, id: &str) -> PathBuf {
        self.dir.join("state").join(id)
    }
}

/// The drop folder as queue-run needs it: a folder (not a link) of
/// queue-run's own user (it lists and removes the files), and nothing for
/// other users (only the drop group may write, through queue-drop).
pub fn check_maildrop(p: &Path) -> Result<(), String> {
    let md = fs::symlink_metadata(p).map_err(|e| format!("unable to stat {}: {e}", p.display()))?;
    let euid = nix::unistd::geteuid().as_raw();
    let why = if md.file_type().is_symlink() {
        Some("it is a symbolic link".to_string())
    } else if !md.is_dir() {
        Some("it is not a folder".into())
    } else if md.uid() != euid {
        Some(format!("it belongs to uid {}, not to queue-run's user (uid {euid})", md.uid()))
    } else if md.mode() & 0o007 != 0 {
        Some(format!("other users have rights on it (mode {:04o}; it should be {DROP_DIR_MODE:04o})", md.mode() & 0o7777))
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(w) => Err(format!("refusing {}: {w}", p.display())),
    }
}

/// Open for reading: not through a symbolic link (ELOOP), not blocking on
/// a FIFO (O_NONBLOCK, which changes nothing for a regular file).
fn open_nofollow(p: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().read(true).custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits()).open(p)
}

fn remove_quiet(p: &Path) -> io::Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> (tempfile::TempDir, Queue) {
        let d = tempfile::tempdir().unwrap();
        let q = Queue::new(d.path());
        q.prepare().unwrap();
        (d, q)
    }

    fn put(q: &Queue, id: &str, text: &[u8]) {
        fs::write(q.new_dir().join(id), text).unwrap();
    }

    #[test]
    fn load_and_state_round_trip() {
        let (_d, q) = queue();
        put(&q, "1.2.3", b"smtpd-queue 1\nid 1.2.3\ntime 5\nfrom a@b\nto c@d\n\nSubject: x\n\nbody\n");
        let (m, _) = q.load("1.2.3").unwrap();
        assert_eq!(m.header.envelope.recipients, vec![b"c@d".to_vec()]);
        assert_eq!(m.body_offset, 47);
        assert_eq!(q.load_state("1.2.3", m.ino, 1).unwrap(), None);
        let mut st = State::new(m.ino, 1);
        st.rcpts[0].attempts = 3;
        q.save_state("1.2.3", &st).unwrap();
        assert_eq!(q.load_state("1.2.3", m.ino, 1).unwrap(), Some(st));
        // Another file under the same name: the state is stale.
        assert_eq!(q.load_state("1.2.3", m.ino + 1, 1).unwrap(), None);
        fs::write(q.dir.join("state/1.2.3"), b"junk").unwrap();
        assert!(q.load_state("1.2.3", m.ino, 1).is_err());
        q.remove("1.2.3").unwrap();
        assert!(matches!(q.load("1.2.3"), Err(LoadError::Gone)));
        assert!(!q.dir.join("state/1.2.3").exists());
        q.remove("1.2.3").unwrap();
    }

    #[test]
    fn corrupt_files_and_quarantine() {
        let (_d, q) = queue();
        put(&q, "9.9.9", b"smtpd-queue 1\nid 9.9.8\ntime 5\nfrom a@b\nto c@d\n\n");
        assert!(matches!(q.load("9.9.9"), Err(LoadError::Corrupt(_))));
        put(&q, "7", b"no header end");
        assert!(matches!(q.load("7"), Err(LoadError::Corrupt(_))));
        assert!(matches!(q.load(".hidden"), Err(LoadError::Corrupt(_))));
        let many = "to x@y\n".repeat(crate::queue::inject::MAX_RCPT + 1);
        put(&q, "8.8.8", format!("smtpd-queue 1\nid 8.8.8\ntime 5\nfrom a@b\n{many}\n").as_bytes());
        assert!(matches!(q.load("8.8.8"), Err(LoadError::Corrupt(e)) if e.contains("recipients")));
        assert_eq!(q.quarantine("7").unwrap(), q.dir.join("bad/7"));
        put(&q, "7", b"again");
        assert_eq!(q.quarantine("7").unwrap(), q.dir.join("bad/7.1"));
    }

    #[test]
    fn leftovers_cleaned() {
        let (_d, q) = queue();
        put(&q, "1.1.1", b"x");
        fs::write(q.dir.join("state/1.1.1"), b"s").unwrap();
        fs::write(q.dir.join("state/2.2.2"), b"orphan").unwrap();
        fs::write(q.dir.join("state/.3.3.3.tmp"), b"work").unwrap();
        assert_eq!(q.clean_state().unwrap(), 2);
        assert!(q.dir.join("state/1.1.1").exists());
    }
}
