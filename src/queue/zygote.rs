//! `queue-inject -z`, the zygote: one long-lived queue-inject that forks a
//! fresh session-mode queue-inject for each request, so that a session
//! gets a process of its own without an exec (about half a millisecond of
//! CPU here, a third of it glibc asking the processor its features). Both
//! sides: [`serve`] in queue-inject, [`Zygote`] in the program that starts
//! it (smtpd-rs's fork-mode template, doc/PROTOCOLS.md section 2).
//!
//! The channel is a `SOCK_SEQPACKET` socket on the zygote's fd 0. The
//! zygote says it is ready with one packet `Z` once its queue is open. A
//! request is one packet `S` whose SCM_RIGHTS carry two fds, the child's
//! fd 0 (frames) and fd 1 (answers); the reply is the child's pid in
//! decimal, or `-` when no child could be made. The child is exactly
//! `queue-inject -s` on those fds (doc/PROTOCOLS.md 2). The zygote reads
//! no message and no frame: what its children share with it is the
//! configuration and the open queue, read at its start. It exits at EOF
//! on fd 0, and reaps its children as they end.

use super::{Error, Queue, EXIT_BUG, LEFTOVER_AGE};
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType};

/// The zygote's packet saying it is ready.
const READY: &[u8] = b"Z";
/// A request for one child.
const REQUEST: &[u8] = b"S";
/// The reply when no child could be made.
const FAILED: &[u8] = b"-";
/// How long the requester waits for the zygote's answer (a fork) or for
/// its readiness (an exec and the queue's folder checks) before it gives
/// up on it.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the zygote removes old leftovers from tmp/ (queue-inject -s
/// does it at every start; the zygote at its start and then at this pace).
const CLEAN_EVERY: Duration = Duration::from_secs(3600);

/// Which process [`serve`] returns in.
#[derive(Debug, PartialEq, Eq)]
pub enum Forked {
    /// The zygote: its channel closed; exit 0.
    Done,
    /// A child, with its fds 0 and 1 in place: run the session.
    Child,
}

/// The zygote's loop on fd 0. `q` is open (its folders checked) and is
/// what every child writes with. Returns `Forked::Child` in each child and
/// `Forked::Done` in the zygote at EOF.
pub fn serve(q: &mut Queue) -> Result<Forked, Error> {
    let chan = std::io::stdin();
    let chan = chan.as_fd();
    send(chan, READY).map_err(|e| Error::new(EXIT_BUG, format_args!("zygote: unable to say ready: {e}")))?;
    let mut cleaned = Instant::now();
    loop {
        let fds = match receive(chan) {
            Ok(Some(fds)) => fds,
            Ok(None) => return Ok(Forked::Done),
            Err(e) => return Err(Error::new(EXIT_BUG, format_args!("zygote: {e}"))),
        };
        reap();
        let [frames, answers] = match <[OwnedFd; 2]>::try_from(fds) {
            Ok(pair) => pair,
            Err(_) => {
                crate::die::warn("queue-inject", "zygote: request without exactly two fds");
                let _ = send(chan, FAILED);
                continue;
            }
        };
        if cleaned.elapsed() >= CLEAN_EVERY {
            cleaned = Instant::now();
            if let Err(e) = q.clean(LEFTOVER_AGE) {
                crate::die::warn("queue-inject", e);
            }
        }
        // queue-inject starts no thread: the child may go on running.
        match crate::sys::fork_single_threaded() {
            Ok(0) => {
                nix::unistd::dup2_stdin(&frames).map_err(|e| Error::new(EXIT_BUG, format_args!("zygote: dup2: {e}")))?;
                nix::unistd::dup2_stdout(&answers).map_err(|e| Error::new(EXIT_BUG, format_args!("zygote: dup2: {e}")))?;
                q.forked();
                return Ok(Forked::Child);
            }
            Ok(pid) => {
                drop((frames, answers));
                let _ = send(chan, pid.to_string().as_bytes());
            }
            Err(e) => {
                drop((frames, answers));
                crate::die::warn("queue-inject", format_args!("zygote: unable to fork: {e}"));
                let _ = send(chan, FAILED);
            }
        }
    }
}

/// The requester's end: a running `queue-inject -z` and its channel.
#[derive(Debug)]
pub struct Zygote {
    chan: OwnedFd,
    child: Child,
}

/// One fresh session-mode queue-inject made by the zygote: the parent's
/// ends of its two pipes, and its pid (not our child: nobody here waits
/// for it; it exits at EOF on its fd 0).
#[derive(Debug)]
pub struct Made {
    /// Frames to it.
    pub to: File,
    /// Answers from it.
    pub from: File,
    pub pid: u32,
}

impl Zygote {
    /// Start `prog -z` (stdout /dev/null, stderr ours) and wait until it
    /// says it is ready. A program that does not know `-z`, or a queue it
    /// cannot open, shows as an error here.
    pub fn start(prog: &Path) -> io::Result<Zygote> {
        Zygote::start_command(Command::new(prog))
    }

    /// `start`, from a command already made (its program, environment).
    pub fn start_command(mut cmd: Command) -> io::Result<Zygote> {
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
        let child = cmd.arg("-z").stdin(Stdio::from(theirs)).stdout(Stdio::null()).spawn()?;
        // The command holds the zygote's end until dropped: without this, a
        // zygote that exits at once would look alive until the timeout.
        drop(cmd);
        let mut z = Zygote { chan: ours, child };
        match z.answer() {
            Ok(a) if a == READY => Ok(z),
            Ok(_) => {
                z.kill();
                Err(io::Error::new(io::ErrorKind::InvalidData, "zygote: no ready packet"))
            }
            Err(e) => {
                z.kill();
                Err(e)
            }
        }
    }

    /// A fresh queue-inject -s, forked by the zygote.
    pub fn make(&mut self) -> io::Result<Made> {
        let (frames_r, frames_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (answers_r, answers_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let fds = [frames_r.as_raw_fd(), answers_w.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        loop {
            match sendmsg::<()>(self.chan.as_raw_fd(), &[IoSlice::new(REQUEST)], &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
                Ok(_) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        drop((frames_r, answers_w));
        let a = self.answer()?;
        let pid = std::str::from_utf8(&a)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|&p| p > 1)
            .ok_or_else(|| io::Error::other("the zygote could not make a child"))?;
        Ok(Made { to: File::from(frames_w), from: File::from(answers_r), pid })
    }

    /// The zygote's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Close the channel and wait for the zygote to exit (its children go on).
    pub fn close(self) -> io::Result<std::process::ExitStatus> {
        let Zygote { chan, mut child } = self;
        drop(chan);
        child.wait()
    }

    /// Stop the zygote now (it is our child).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// One packet from the zygote, within ANSWER_TIMEOUT.
    fn answer(&self) -> io::Result<Vec<u8>> {
        let end = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
            let mut p = [PollFd::new(self.chan.as_fd(), PollFlags::POLLIN)];
            match poll(&mut p, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)) {
                Ok(0) => return Err(io::ErrorKind::TimedOut.into()),
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let mut buf = [0u8; 32];
            match nix::sys::socket::recv(self.chan.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => return Ok(buf.get(..n).unwrap_or_default().to_vec()),
                Err(Errno::EINTR | Errno::EAGAIN) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// One request's fds; `None` at EOF.
fn receive(chan: BorrowedFd<'_>) -> io::Result<Option<Vec<OwnedFd>>> {
    let mut buf = [0u8; 16];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(chan.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(v) = c {
                        fds.extend(v.into_iter().map(crate::sys::adopt_received_fd));
                    }
                }
                if msg.bytes == 0 && fds.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(fds));
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn send(chan: BorrowedFd<'_>, data: &[u8]) -> nix::Result<()> {
    loop {
        match nix::sys::socket::send(chan.as_raw_fd(), data, MsgFlags::MSG_NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Collect the children that have ended (each request's turn: a session's
/// queue-inject lives as long as its session, so few wait here).
fn reap() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(s) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if s == WaitStatus::StillAlive {
            break;
        }
    }
}
