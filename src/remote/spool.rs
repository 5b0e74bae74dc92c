//! The message on stdin, readable as many times as there are hosts to try.
//! A regular file (as qmail-rspawn and queue-run hand it over) is read in
//! place from its current offset; a pipe is copied once into an unlinked
//! temporary file. Both are scanned on the way (size, 8-bit), in bounded memory.

use super::message::Scan;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;

pub struct Spool {
    file: File,
    start: u64,
    pub scan: Scan,
}

const CHUNK: usize = 65536;

impl Spool {
    pub fn from_stdin() -> io::Result<Spool> {
        let fd = io::stdin().as_fd().try_clone_to_owned()?;
        Spool::from_file(File::from(fd))
    }

    pub fn from_file(mut input: File) -> io::Result<Spool> {
        let mut scan = Scan::new();
        let mut buf = vec![0u8; CHUNK];
        if input.metadata()?.file_type().is_file() {
            let start = input.stream_position()?;
            loop {
                match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => scan.feed(buf.get(..n).unwrap_or_default()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            scan.finish();
            input.seek(SeekFrom::Start(start))?;
            return Ok(Spool { file: input, start, scan });
        }
        let mut tmp = tempfile::tempfile()?;
        loop {
            match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let chunk = buf.get(..n).unwrap_or_default();
                    scan.feed(chunk);
                    tmp.write_all(chunk)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        scan.finish();
        tmp.seek(SeekFrom::Start(0))?;
        Ok(Spool { file: tmp, start: 0, scan })
    }

    pub fn rewind(&mut self) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(self.start)).map(|_| ())
    }

    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.file.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
}
