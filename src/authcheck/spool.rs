//! Where auth-check keeps a message until its checks are done: in memory up
//! to MEMORY octets, past that in an anonymous file (O_TMPFILE where the
//! kernel has it: no name, so a crash leaves nothing) in the spool folder
//! (`AUTHCHECK_SPOOL`, default `TMPDIR`, else /tmp). Memory stays bounded
//! whatever the message's size; the file is as large as the message.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// Octets kept in memory before the message goes to a file.
pub const MEMORY: usize = 128 * 1024;
/// Size of a piece read back from the file.
const CHUNK: usize = 64 * 1024;

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    mem: Vec<u8>,
    file: Option<File>,
    len: u64,
}

impl Spool {
    pub fn new(dir: PathBuf) -> Spool {
        Spool { dir, mem: Vec::new(), file: None, len: 0 }
    }

    /// Octets kept so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the message went to a file.
    pub fn on_disk(&self) -> bool {
        self.file.is_some()
    }

    /// Keep `data` after what came before.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.file.is_none() && self.mem.len() + data.len() > MEMORY {
            let mut f = tempfile::tempfile_in(&self.dir)
                .map_err(|e| io::Error::new(e.kind(), format!("unable to create a spool file in {}: {e}", self.dir.display())))?;
            f.write_all(&self.mem)?;
            self.mem = Vec::new();
            self.file = Some(f);
        }
        match &mut self.file {
            Some(f) => f.write_all(data)?,
            None => self.mem.extend_from_slice(data),
        }
        self.len += data.len() as u64;
        Ok(())
    }

    /// Hand everything kept to `out`, in pieces, from the start.
    pub fn replay(&mut self, out: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        let Some(f) = &mut self.file else { return out(&self.mem) };
        f.seek(SeekFrom::Start(0))?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            out(buf.get(..n).unwrap_or_default())?;
        }
    }

    /// Forget the message (the file goes with its last descriptor).
    pub fn clear(&mut self) {
        self.mem.clear();
        self.file = None;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replayed(s: &mut Spool) -> Vec<u8> {
        let mut v = Vec::new();
        s.replay(&mut |c| {
            v.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        v
    }

    #[test]
    fn memory_then_file() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::new(d.path().to_path_buf());
        s.write(b"small").unwrap();
        assert!(!s.on_disk());
        assert_eq!(replayed(&mut s), b"small");
        let big: Vec<u8> = (0..MEMORY * 3).map(|i| (i % 251) as u8).collect();
        for c in big.chunks(65536) {
            s.write(c).unwrap();
        }
        assert!(s.on_disk());
        assert_eq!(s.len(), 5 + big.len() as u64);
        let back = replayed(&mut s);
        assert_eq!(&back[..5], b"small");
        assert_eq!(&back[5..], &big[..]);
        assert_eq!(replayed(&mut s).len(), back.len(), "replayed twice");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "the file has no name");
        s.clear();
        assert!(s.is_empty() && !s.on_disk());
        let mut bad = Spool::new(d.path().join("missing"));
        assert!(bad.write(&big).unwrap_err().to_string().contains("unable to create a spool file"));
    }
}
