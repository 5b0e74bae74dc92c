//! The job channel between queue-run and `smtp-remote -m` (doc/PROTOCOLS.md
//! 10), both sides: a Unix stream socket on which queue-run writes one job at
//! a time (a netstring of netstrings: domain, sender, attribute block, queue
//! id, recipients) with the message file attached by SCM_RIGHTS, and
//! smtp-remote answers each with a netstring holding exactly the qmail-remote
//! report. The frames are pure (`encode_job`, `decode_job`, `encode_answer`);
//! `send_job`, `JobReader` and `AnswerReader` do the I/O. Knows nothing of
//! SMTP or of the queue.

use crate::netstring;
use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType};
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// Largest job payload: 10000 recipients of 1000 octets fit, with a 1 MiB
/// attribute block (queue-inject's limits) and room to spare.
pub const MAX_JOB: usize = 16 << 20;
/// Largest answer payload: queue-run keeps at most `MAX_REPORT` (1 MiB) of
/// a report; one recipient record is at most a few KB.
pub const MAX_ANSWER: usize = 4 << 20;
/// Read step on either side.
const CHUNK: usize = 65536;

/// One job, as `smtp-remote -m` receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The destination domain: what one-message mode gets as `host`.
    pub host: Vec<u8>,
    /// The envelope sender (empty: the null sender).
    pub sender: Vec<u8>,
    /// The attribute block, as `QUEUE_ATTRS` would hold it (`PREPEND` included).
    pub attrs: Vec<u8>,
    /// The queue id, as `QUEUE_ID` would (for logs).
    pub queue_id: Vec<u8>,
    /// At least one.
    pub rcpts: Vec<Vec<u8>>,
}

#[derive(Debug)]
pub enum Error {
    Io(io::Error),
    /// A frame that is not a netstring, or longer than the limit.
    Frame(netstring::Error),
    /// A job whose fields are wrong: missing, no recipient, trailing bytes.
    BadJob(&'static str),
    /// A job without its one file, or with more than one.
    Fds(&'static str),
    /// EOF in the middle of a frame.
    Truncated,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "job channel: {e}"),
            Error::Frame(e) => write!(f, "job channel: {e}"),
            Error::BadJob(s) | Error::Fds(s) => write!(f, "job channel: {s}"),
            Error::Truncated => f.write_str("job channel: EOF in the middle of a frame"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// A new channel: (queue-run's end, the program's end), both close-on-exec
/// (the program's end reaches it as fd 0 and 1 through dup2, which clears the flag).
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)?)
}

/// The whole frame of one job (pure): the netstring of the fields' netstrings.
pub fn encode_job(host: &[u8], sender: &[u8], attrs: &[u8], queue_id: &[u8], rcpts: &[&[u8]]) -> Vec<u8> {
    let mut inner = Vec::with_capacity(64 + host.len() + sender.len() + attrs.len() + rcpts.iter().map(|r| r.len() + 8).sum::<usize>());
    for field in [host, sender, attrs, queue_id] {
        netstring::encode_into(&mut inner, field);
    }
    for r in rcpts {
        netstring::encode_into(&mut inner, r);
    }
    netstring::encode(&inner)
}

/// The fields of a job's payload (pure).
pub fn decode_job(payload: &[u8]) -> Result<Job, Error> {
    let mut rest = payload;
    let mut fields: Vec<Vec<u8>> = Vec::new();
    while !rest.is_empty() {
        let (r, used) = netstring::parse(rest, MAX_JOB).map_err(Error::Frame)?.ok_or(Error::BadJob("a field cut short"))?;
        fields.push(rest.get(r).unwrap_or_default().to_vec());
        rest = rest.get(used..).unwrap_or_default();
    }
    if fields.len() < 5 {
        return Err(Error::BadJob("a job needs a domain, a sender, attributes, an id and a recipient"));
    }
    let rcpts = fields.split_off(4);
    let mut f = fields.into_iter();
    let mut next = || f.next().unwrap_or_default();
    Ok(Job { host: next(), sender: next(), attrs: next(), queue_id: next(), rcpts })
}

/// An answer frame (pure): the report, whole, in one netstring.
pub fn encode_answer(report: &[u8]) -> Vec<u8> {
    netstring::encode(report)
}

/// queue-run's side: send one job's frame with the message file (its offset
/// at the start of the message text) attached to its first bytes. Blocks
/// until the program has taken the whole frame, or the socket's write
/// timeout expires (an error then: the job is not sent whole).
pub fn send_job(sock: BorrowedFd<'_>, frame: &[u8], file: BorrowedFd<'_>) -> io::Result<()> {
    let fds = [file.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let flags = MsgFlags::MSG_NOSIGNAL;
    // The file goes with the first sendmsg that moves any byte.
    let mut sent = loop {
        match sendmsg::<()>(sock.as_raw_fd(), &[IoSlice::new(frame)], &cmsg, flags, None) {
            Ok(n) => break n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    while sent < frame.len() {
        let rest = frame.get(sent..).unwrap_or_default();
        match sendmsg::<()>(sock.as_raw_fd(), &[IoSlice::new(rest)], &[], flags, None) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// smtp-remote's side: jobs from the socket on fd 0, each with its file.
pub struct JobReader<'a> {
    sock: BorrowedFd<'a>,
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl<'a> JobReader<'a> {
    pub fn new(sock: BorrowedFd<'a>) -> JobReader<'a> {
        JobReader { sock, buf: Vec::new(), fds: Vec::new() }
    }

    /// The next job and its file. `Ok(None)`: EOF between jobs, the caller
    /// is done. At most one job is ever outstanding (queue-run sends the next
    /// only after the answer), so the file received while reading a frame is
    /// that frame's: exactly one, or the channel is broken.
    pub fn next_job(&mut self) -> Result<Option<(Job, OwnedFd)>, Error> {
        loop {
            if let Some((r, used)) = netstring::parse(&self.buf, MAX_JOB).map_err(Error::Frame)? {
                let job = decode_job(self.buf.get(r).unwrap_or_default());
                self.buf.drain(..used);
                let fd = self.fds.pop().ok_or(Error::Fds("a job without its message file"))?;
                if !self.fds.is_empty() {
                    return Err(Error::Fds("a job with more than one file"));
                }
                return Ok(Some((job?, fd)));
            }
            let mut chunk = vec![0u8; CHUNK];
            let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
            let (n, truncated) = loop {
                let mut iov = [IoSliceMut::new(&mut chunk)];
                match recvmsg::<()>(self.sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
                    Ok(msg) => {
                        for c in msg.cmsgs().map_err(io::Error::from)? {
                            if let ControlMessageOwned::ScmRights(v) = c {
                                self.fds.extend(v.into_iter().map(crate::sys::adopt_received_fd));
                            }
                        }
                        break (msg.bytes, msg.flags.contains(MsgFlags::MSG_CTRUNC));
                    }
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(io::Error::from(e).into()),
                }
            };
            if truncated || self.fds.len() > 1 {
                return Err(Error::Fds("more files than jobs"));
            }
            if n == 0 {
                return if self.buf.is_empty() && self.fds.is_empty() { Ok(None) } else { Err(Error::Truncated) };
            }
            self.buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }
}

/// queue-run's side: answers from the program, one report each.
pub struct AnswerReader<R> {
    r: R,
    buf: Vec<u8>,
}

impl<R: Read> AnswerReader<R> {
    pub fn new(r: R) -> AnswerReader<R> {
        AnswerReader { r, buf: Vec::new() }
    }

    /// The next report. `Ok(None)`: EOF between answers. `Err`: a broken
    /// frame or EOF inside one; `leftover` then holds what came of it.
    pub fn next_answer(&mut self) -> Result<Option<Vec<u8>>, Error> {
        loop {
            if let Some((r, used)) = netstring::parse(&self.buf, MAX_ANSWER).map_err(Error::Frame)? {
                let report = self.buf.get(r).unwrap_or_default().to_vec();
                self.buf.drain(..used);
                return Ok(Some(report));
            }
            let mut chunk = [0u8; 8192];
            let n = match self.r.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return if self.buf.is_empty() { Ok(None) } else { Err(Error::Truncated) };
            }
            self.buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }

    /// The bytes of an answer that did not come whole (its report so far,
    /// past the length prefix), for a caller that reads what it can of it.
    pub fn leftover(&self) -> &[u8] {
        let start = self.buf.iter().position(|&b| b == b':').map_or(self.buf.len(), |i| i + 1);
        self.buf.get(start..).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};
    use std::os::fd::AsFd;

    #[test]
    fn job_round_trip() {
        let frame = encode_job(b"example.org", b"", b"BODY=8BITMIME\n", b"1.2.3", &[b"a@example.org", b"b@example.org"]);
        let (r, used) = netstring::parse(&frame, MAX_JOB).unwrap().unwrap();
        assert_eq!(used, frame.len());
        let j = decode_job(&frame[r]).unwrap();
        assert_eq!(j.host, b"example.org");
        assert_eq!(j.sender, b"");
        assert_eq!(j.attrs, b"BODY=8BITMIME\n");
        assert_eq!(j.queue_id, b"1.2.3");
        assert_eq!(j.rcpts, vec![b"a@example.org".to_vec(), b"b@example.org".to_vec()]);
    }

    #[test]
    fn bad_jobs() {
        // No recipient; a field cut short; a bad inner netstring.
        assert!(matches!(decode_job(b"1:a,0:,0:,0:,"), Err(Error::BadJob(_))));
        assert!(matches!(decode_job(b"1:a,0:,0:,0:,5:ab"), Err(Error::BadJob(_))));
        assert!(matches!(decode_job(b"1:a,0:,0:,0:,x"), Err(Error::Frame(_))));
        assert!(decode_job(b"1:a,0:,0:,0:,1:r,").is_ok());
    }

    fn file_with(text: &[u8], offset: u64) -> std::fs::File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(text).unwrap();
        f.seek(SeekFrom::Start(offset)).unwrap();
        f
    }

    #[test]
    fn jobs_cross_the_channel_with_their_files() {
        let (ours, theirs) = pair().unwrap();
        let f = file_with(b"header\nbody", 7);
        // A frame larger than the socket buffer, sent while the reader reads.
        let big: Vec<Vec<u8>> = (0..20000).map(|i| format!("r{i}@example.org").into_bytes()).collect();
        let rcpts: Vec<&[u8]> = big.iter().map(Vec::as_slice).collect();
        let frame = encode_job(b"example.org", b"s@x", b"", b"id", &rcpts);
        // The next job only after the answer, as queue-run does.
        let (answered, wait) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            send_job(ours.as_fd(), &frame, f.as_fd()).unwrap();
            wait.recv().unwrap();
            let f2 = file_with(b"two", 0);
            send_job(ours.as_fd(), &encode_job(b"b", b"", b"", b"", &[b"x@b"]), f2.as_fd()).unwrap();
            drop(ours);
        });
        let mut r = JobReader::new(theirs.as_fd());
        let (j, fd) = r.next_job().unwrap().unwrap();
        assert_eq!(j.rcpts.len(), 20000);
        let mut got = String::new();
        std::fs::File::from(fd).read_to_string(&mut got).unwrap();
        assert_eq!(got, "body", "the file keeps its offset");
        answered.send(()).unwrap();
        let (j, fd) = r.next_job().unwrap().unwrap();
        assert_eq!(j.host, b"b");
        let mut got = String::new();
        std::fs::File::from(fd).read_to_string(&mut got).unwrap();
        assert_eq!(got, "two");
        t.join().unwrap();
        assert!(r.next_job().unwrap().is_none(), "EOF between jobs");
    }

    #[test]
    fn a_job_without_a_file_is_refused() {
        let (ours, theirs) = pair().unwrap();
        let frame = encode_job(b"a", b"", b"", b"", &[b"x@a"]);
        nix::unistd::write(&ours, &frame).unwrap();
        let mut r = JobReader::new(theirs.as_fd());
        assert!(matches!(r.next_job(), Err(Error::Fds(_))));
        // EOF in the middle of a frame.
        let (ours, theirs) = pair().unwrap();
        nix::unistd::write(&ours, &frame[..5]).unwrap();
        drop(ours);
        assert!(matches!(JobReader::new(theirs.as_fd()).next_job(), Err(Error::Truncated)));
    }

    #[test]
    fn answers() {
        let mut bytes = encode_answer(b"rok\0Kdone\0");
        bytes.extend_from_slice(&encode_answer(b"Zlater\0"));
        bytes.extend_from_slice(b"9:rcut");
        let mut r = AnswerReader::new(&bytes[..]);
        assert_eq!(r.next_answer().unwrap().unwrap(), b"rok\0Kdone\0");
        assert_eq!(r.next_answer().unwrap().unwrap(), b"Zlater\0");
        assert!(matches!(r.next_answer(), Err(Error::Truncated)));
        assert_eq!(r.leftover(), b"rcut");
        assert!(AnswerReader::new(&b""[..]).next_answer().unwrap().is_none());
        assert!(matches!(AnswerReader::new(&b"x"[..]).next_answer(), Err(Error::Frame(_))));
    }
}
