//! One message into one Maildir, as maildir(5) says: written under a
//! unique name in `tmp/`, fsynced, linked into `new/` (link(2), as
//! qmail-local: it never replaces a file that is there), unlinked from
//! `tmp/`, and `new/` fsynced. A crash at any point leaves the message
//! either complete in `new/` or not there at all (at worst a file in
//! `tmp/`, which Maildir readers remove after 36 hours); a write error
//! (disk full, quota) removes the work file and is a temporary failure.
//! A Maildir that does not exist is made (mode 0700) when its parent
//! folder does. I/O: the caller runs this as the Maildir's owner.

use super::name;
use nix::errno::Errno;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Names for this process's deliveries.
pub struct Namer {
    pid: u32,
    n: u64,
    host: String,
}

impl Namer {
    pub fn new(host: &str) -> Namer {
        Namer { pid: std::process::id(), n: 0, host: host.to_string() }
    }

    fn next(&mut self) -> String {
        self.n += 1;
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        name::unique(t.as_secs(), t.subsec_micros(), self.pid, self.n, &self.host)
    }
}

/// Write `prefix` and then `msg` (from its current offset to its end) into
/// `maildir`. `Ok`: the file's path in `new/`. `Err`: the text of a
/// temporary failure (nothing left in `new/`).
pub fn deliver(maildir: &Path, prefix: &[u8], msg: &mut File, namer: &mut Namer) -> Result<PathBuf, String> {
    prepare(maildir)?;
    let (tmp_dir, new_dir) = (maildir.join("tmp"), maildir.join("new"));
    // O_EXCL: a name in use (a clock set back, a pid reused within the
    // microsecond) is never written over; the next name is tried.
    let mut attempt = 0;
    let (name, mut file) = loop {
        let name = namer.next();
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp_dir.join(&name)) {
            Ok(f) => break (name, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 3 => attempt += 1,
            Err(e) => return Err(failed("create", &tmp_dir.join(&name), &e)),
        }
    };
    let tmp = tmp_dir.join(&name);
    let new = new_dir.join(&name);
    let written = file.write_all(prefix).and_then(|_| io::copy(msg, &mut file)).and_then(|_| file.sync_all());
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(failed("write", &tmp, &e));
    }
    if let Err(e) = fs::hard_link(&tmp, &new) {
        let _ = fs::remove_file(&tmp);
        return Err(failed("link into new/", &new, &e));
    }
    // Delivered now; a tmp/ entry left behind is only garbage.
    let _ = fs::remove_file(&tmp);
    if let Err(e) = File::open(&new_dir).and_then(|d| d.sync_all()) {
        // The link may not be on disk: a retry could deliver it twice, but
        // saying "delivered" could lose it.
        return Err(format!("Unable to fsync {}: {e}; possible duplicate. (#4.3.0)", new_dir.display()));
    }
    Ok(new)
}

/// The Maildir and its three folders, made (0700) where missing; the
/// folders that gained an entry fsynced so that the entries last.
fn prepare(maildir: &Path) -> Result<(), String> {
    let mut made_top = false;
    if !maildir.is_dir() {
        let parent = maildir.parent().unwrap_or(Path::new("/"));
        if !parent.is_dir() {
            return Err(format!("The folder {} of the Maildir {} does not exist. (#4.3.0)", parent.display(), maildir.display()));
        }
        mkdir(maildir)?;
        made_top = true;
        sync_dir(parent)?;
    }
    let mut made = false;
    for sub in ["tmp", "new", "cur"] {
        let d = maildir.join(sub);
        if !d.is_dir() {
            mkdir(&d)?;
            made = true;
        }
    }
    if made || made_top {
        sync_dir(maildir)?;
    }
    Ok(())
}

fn mkdir(d: &Path) -> Result<(), String> {
    match DirBuilder::new().mode(0o700).create(d) {
        Ok(()) => Ok(()),
        // Made by a delivery running beside this one.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => Ok(()),
        Err(e) => Err(failed("create the folder", d, &e)),
    }
}

fn sync_dir(d: &Path) -> Result<(), String> {
    File::open(d).and_then(|f| f.sync_all()).map_err(|e| failed("fsync", d, &e))
}

/// A temporary failure's text, with the enhanced code of RFC 3463: disk
/// full (4.3.1), quota (4.2.2), else 4.3.0.
fn failed(what: &str, path: &Path, e: &io::Error) -> String {
    let code = match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOSPC) => "4.3.1",
        Some(Errno::EDQUOT) => "4.2.2",
        _ => "4.3.0",
    };
    format!("Unable to {what} {}: {e}. (#{code})", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    #[test]
    fn write_link_and_names() {
        let d = tempfile::tempdir().unwrap();
        let md = d.path().join("Maildir");
        let mut msg = tempfile::tempfile().unwrap();
        msg.write_all(b"Subject: x\n\nbody\n").unwrap();
        let mut namer = Namer::new("h:o/st");
        let mut paths = Vec::new();
        for _ in 0..3 {
            msg.seek(SeekFrom::Start(0)).unwrap();
            paths.push(deliver(&md, b"Delivered-To: a@b\n", &mut msg, &mut namer).unwrap());
        }
        for p in &paths {
            assert_eq!(fs::read(p).unwrap(), b"Delivered-To: a@b\nSubject: x\n\nbody\n");
            assert_eq!(p.parent().unwrap(), md.join("new"));
            assert!(p.file_name().unwrap().to_str().unwrap().ends_with(".h\\072o\\057st"));
        }
        assert_eq!(fs::read_dir(md.join("new")).unwrap().count(), 3);
        assert_eq!(fs::read_dir(md.join("tmp")).unwrap().count(), 0);
        assert!(md.join("cur").is_dir());
        // No parent, no Maildir: temporary.
        let err = deliver(&d.path().join("no/such/Maildir"), b"", &mut msg, &mut namer).unwrap_err();
        assert!(err.contains("does not exist. (#4.3.0)"), "{err}");
    }
}
