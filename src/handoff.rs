//! Hand-off of accepted connections from smtpd-supervise to waiting workers
//! (doc/PROTOCOLS.md section 4), both sides.
//!
//! A worker finds `HANDOFF_FD=<n>` (and `HANDOFF_MAX=<m>`) in its environment;
//! fd n is a `SOCK_SEQPACKET` Unix socket to the supervisor. Each hand-off is one
//! packet: SCM_RIGHTS carries the connection, the data is the session's variables
//! as `KEY=VALUE\0` items (`KEY\0`: unset KEY). After the session the worker
//! either exits or, when it may serve more, writes `.` back and waits again.
//! EOF on fd n: the supervisor is gone (or retired this worker): exit.
//!
//! A worker program needs three calls:
//! ```no_run
//! # fn serve() {}
//! let mut w = match smtpd::handoff::Worker::from_env() {
//!     Ok(Some(w)) => w,
//!     Ok(None) => return,          // not under smtpd-supervise -W: serve fd 0/1 once
//!     Err(e) => panic!("{e}"),
//! };
//! while w.begin_session().unwrap_or(false) {   // socket on fd 0 and 1, env applied
//!     serve();                                  // one session from a fresh state
//!     if !w.end_session().unwrap_or(false) {   // fds 0/1 back to /dev/null, `.` sent
//!         break;
//!     }
//! }
//! ```
//! Readers and writers of fds 0/1 must be made afresh for each session: a buffer
//! kept from one session (std's global `stdin()` buffer, say) would hand its
//! unread bytes to the next client.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{
    recv, recvmsg, send, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag,
    SockType,
};

/// Variable naming the worker's end of the hand-off socket.
pub const ENV_FD: &str = "HANDOFF_FD";
/// Variable giving how many sessions a worker may serve (default 1).
pub const ENV_MAX: &str = "HANDOFF_MAX";
/// Variable set by `smtpd-supervise -F`: the worker is a template that forks
/// a fresh process for each session (see [`Worker::forks`]).
pub const ENV_FORK: &str = "HANDOFF_FORK";
/// Largest environment block in one hand-off packet.
pub const MAX_PACKET: usize = 65536;
/// The byte a worker writes when it is idle again.
pub const IDLE: u8 = b'.';

/// A session's variables: set (`Some`) or unset (`None`).
pub type Env = Vec<(OsString, Option<OsString>)>;

/// Hand-off errors seen by a worker.
#[derive(Debug)]
pub enum Error {
    /// A system call failed.
    Io(io::Error),
    /// `HANDOFF_FD` or `HANDOFF_MAX` is not a number or names a closed fd.
    BadEnv(&'static str),
    /// A packet without exactly one fd, or truncated.
    Protocol(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "hand-off: {e}"),
            Error::BadEnv(s) => write!(f, "hand-off: {s}"),
            Error::Protocol(s) => write!(f, "hand-off protocol error: {s}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Errno> for Error {
    fn from(e: Errno) -> Self {
        Error::Io(io::Error::from(e))
    }
}

// ---------------------------------------------------------------------------
// Supervisor side

/// A new hand-off channel: (supervisor end, close-on-exec; worker end, inherited
/// across exec, to be named in `HANDOFF_FD` and closed by the supervisor once
/// the worker is spawned).
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
    fcntl(&b, FcntlArg::F_SETFD(FdFlag::empty()))?;
    Ok((a, b))
}

/// Encode a session's variables as the packet's data (pure).
pub fn encode_env(env: &[(&[u8], Option<&[u8]>)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (k, val) in env {
        v.extend_from_slice(k);
        if let Some(val) = val {
            v.push(b'=');
            v.extend_from_slice(val);
        }
        v.push(0);
    }
    v
}

/// Decode the packet's data (pure). Empty items are skipped.
pub fn decode_env(data: &[u8]) -> Env {
    data.split(|&c| c == 0)
        .filter(|item| !item.is_empty())
        .map(|item| match item.iter().position(|&c| c == b'=') {
            Some(eq) => (OsString::from_vec(item[..eq].to_vec()), Some(OsString::from_vec(item[eq + 1..].to_vec()))),
            None => (OsString::from_vec(item.to_vec()), None),
        })
        .collect()
}

/// Send one connection with its encoded variables to a worker. Does not block:
/// a worker's socket holds at most the one packet it has not yet read.
pub fn send_session(chan: BorrowedFd<'_>, conn: BorrowedFd<'_>, data: &[u8]) -> io::Result<()> {
    if data.len() > MAX_PACKET {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "environment block too large"));
    }
    let fds = [conn.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(data)];
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
    sendmsg::<()>(chan.as_raw_fd(), &iov, &cmsg, flags, None)?;
    Ok(())
}

/// What a worker said: `Ok(n)` idle signals (`.` bytes), `Ok(0)` nothing yet,
/// `Err` with `UnexpectedEof` when the worker closed its end.
pub fn read_idle(chan: BorrowedFd<'_>) -> io::Result<usize> {
    let mut buf = [0u8; 16];
    match recv(chan.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
        Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
        Ok(n) => Ok(buf[..n].iter().filter(|&&c| c == IDLE).count()),
        Err(Errno::EAGAIN) | Err(Errno::EINTR) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------
// Worker side

/// The worker's end of the channel and what it has served.
#[derive(Debug)]
pub struct Worker {
    chan: OwnedFd,
    max: u64,
    served: u64,
    /// HANDOFF_FORK=1: a fresh process per session, forked from this one.
    fork: bool,
    /// Variables changed by the current session, with the value each had
    /// before, so that nothing of one session is seen by the next.
    saved: Vec<(OsString, Option<OsString>)>,
}

impl Worker {
    /// `Ok(None)` when `HANDOFF_FD` is unset (not started as a worker). Takes
    /// the fd, makes it close-on-exec, and removes `HANDOFF_FD` and `HANDOFF_MAX`
    /// from the environment so that the worker's own children never see them.
    pub fn from_env() -> Result<Option<Worker>, Error> {
        let fd = match std::env::var_os(ENV_FD) {
            Some(v) => v,
            None => return Ok(None),
        };
        let fd: i32 = fd.to_str().and_then(|s| s.parse().ok()).ok_or(Error::BadEnv("HANDOFF_FD is not a number"))?;
        let max: u64 = match std::env::var_os(ENV_MAX) {
            Some(v) => v
                .to_str()
                .and_then(|s| s.parse().ok())
                .filter(|&n| n > 0)
                .ok_or(Error::BadEnv("HANDOFF_MAX is not a positive number"))?,
            None => 1,
        };
        if fd < 3 {
            return Err(Error::BadEnv("HANDOFF_FD below 3"));
        }
        let chan = crate::sys::take_inherited_fd(fd).ok_or(Error::BadEnv("HANDOFF_FD names a closed fd"))?;
        fcntl(&chan, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        let fork = std::env::var_os(ENV_FORK).is_some_and(|v| v == "1");
        std::env::remove_var(ENV_FD);
        std::env::remove_var(ENV_MAX);
        std::env::remove_var(ENV_FORK);
        Ok(Some(Worker { chan, max, served: 0, fork, saved: Vec::new() }))
    }

    /// Wrap an fd already owned (tests, or a program that finds the channel otherwise).
    pub fn from_fd(chan: OwnedFd, max: u64) -> Worker {
        Worker { chan, max: max.max(1), served: 0, fork: false, saved: Vec::new() }
    }

    /// The supervisor asked for a fresh process per session (HANDOFF_FORK=1,
    /// `smtpd-supervise -F`): this process should serve no session itself but
    /// fork, ahead of each connection, a child that calls
    /// [`begin_session`](Self::begin_session), serves that one session and
    /// exits; this process waits for it and then calls
    /// [`session_done`](Self::session_done). A program that ignores the
    /// variable serves up to HANDOFF_MAX sessions in one process instead.
    pub fn forks(&self) -> bool {
        self.fork
    }

    /// For a forking template, after its child's session: counts it and,
    /// when another may follow, reports idle (`Ok(true)`). `Ok(false)`: the
    /// template has served its HANDOFF_MAX sessions and should exit.
    pub fn session_done(&mut self) -> Result<bool, Error> {
        if !self.count_session() {
            return Ok(false);
        }
        self.report_idle()?;
        Ok(true)
    }

    /// The two halves of [`session_done`](Self::session_done), for a
    /// template that makes its next child between them: counts the session;
    /// `false` when HANDOFF_MAX is reached.
    pub fn count_session(&mut self) -> bool {
        self.served += 1;
        self.may_serve_more()
    }

    /// Tell the supervisor this worker takes the next connection.
    pub fn report_idle(&mut self) -> Result<(), Error> {
        self.idle()
    }

    /// Wait for the next connection. `Ok(None)`: EOF, the supervisor is gone.
    pub fn next_session(&mut self) -> Result<Option<(OwnedFd, Env)>, Error> {
        // The packet's size first, so that the buffer is as large as the
        // variables (a few hundred octets) and not MAX_PACKET octets zeroed
        // for every session: a peek with MSG_TRUNC consumes nothing and,
        // without a control buffer, installs no fd.
        let size = loop {
            match recv(self.chan.as_raw_fd(), &mut [0u8; 1], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
                Ok(n) => break n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let mut buf = vec![0u8; size.clamp(1, MAX_PACKET)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let (bytes, fds, truncated) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(self.chan.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(msg) => {
                    let mut fds = Vec::new();
                    for c in msg.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(v) = c {
                            fds.extend(v.into_iter().map(crate::sys::adopt_received_fd));
                        }
                    }
                    let trunc = msg.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                    break (msg.bytes, fds, trunc);
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if bytes == 0 && fds.is_empty() {
            return Ok(None);
        }
        if truncated {
            return Err(Error::Protocol("truncated packet"));
        }
        let mut fds = fds.into_iter();
        let conn = fds.next().ok_or(Error::Protocol("packet without a connection"))?;
        if fds.next().is_some() {
            return Err(Error::Protocol("packet with more than one fd"));
        }
        Ok(Some((conn, decode_env(buf.get(..bytes).unwrap_or_default()))))
    }

    /// Tell the supervisor this worker is idle again.
    pub fn idle(&mut self) -> Result<(), Error> {
        loop {
            match send(self.chan.as_raw_fd(), &[IDLE], MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// True while this worker may serve another session after the current one.
    pub fn may_serve_more(&self) -> bool {
        self.served < self.max
    }

    /// The whole start of a session in one call: wait for a connection, put it
    /// on fds 0 and 1, and apply its variables to the environment (after
    /// undoing the previous session's). `Ok(false)`: EOF, exit now.
    pub fn begin_session(&mut self) -> Result<bool, Error> {
        let (conn, env) = match self.next_session()? {
            Some(s) => s,
            None => return Ok(false),
        };
        nix::unistd::dup2_stdin(&conn)?;
        nix::unistd::dup2_stdout(&conn)?;
        drop(conn);
        self.restore_env();
        for (k, v) in env {
            if k.is_empty() || k.as_bytes().contains(&b'=') {
                continue;
            }
            self.saved.push((k.clone(), std::env::var_os(&k)));
            match v {
                Some(v) => std::env::set_var(&k, v),
                None => std::env::remove_var(&k),
            }
        }
        Ok(true)
    }

    /// The end of a session: counts it, points fds 0 and 1 at /dev/null
    /// (closing this worker's hold on the connection), and when another may
    /// follow, undoes the session's variables and reports idle: `Ok(true)`. `Ok(false)`:
    /// the worker has served its `HANDOFF_MAX` sessions and should exit.
    pub fn end_session(&mut self) -> Result<bool, Error> {
        self.served += 1;
        release_connection()?;
        if !self.may_serve_more() {
            return Ok(false);
        }
        self.restore_env();
        self.idle()?;
        Ok(true)
    }

    fn restore_env(&mut self) {
        for (k, old) in self.saved.drain(..).rev() {
            match old {
                Some(v) => std::env::set_var(&k, v),
                None => std::env::remove_var(&k),
            }
        }
    }
}

/// Point fds 0 and 1 at /dev/null: this process's last hold on the
/// session's connection, so that the client sees it closed now rather than
/// when the process has been torn down (a fork-mode session's process calls
/// it before it exits).
pub fn release_connection() -> Result<(), Error> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").map_err(Error::Io)?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&null)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn env_round_trip() {
        let data = encode_env(&[(b"TCPREMOTEIP", Some(b"127.0.0.1")), (b"TCPREMOTEHOST", None), (b"X", Some(b"a=b"))]);
        assert_eq!(data, b"TCPREMOTEIP=127.0.0.1\0TCPREMOTEHOST\0X=a=b\0");
        let env = decode_env(&data);
        assert_eq!(
            env,
            vec![
                ("TCPREMOTEIP".into(), Some("127.0.0.1".into())),
                ("TCPREMOTEHOST".into(), None),
                ("X".into(), Some("a=b".into())),
            ]
        );
        assert!(decode_env(b"").is_empty());
    }

    #[test]
    fn a_connection_crosses_the_channel() {
        let (sup, wrk) = pair().unwrap();
        let mut w = Worker::from_fd(wrk, 2);
        let (mut client, server) = UnixStream::pair().unwrap();
        let data = encode_env(&[(b"A", Some(b"1"))]);
        send_session(sup.as_fd(), server.as_fd(), &data).unwrap();
        drop(server);
        let (conn, env) = w.next_session().unwrap().unwrap();
        assert_eq!(env, vec![("A".into(), Some("1".into()))]);
        let mut conn = UnixStream::from(conn);
        conn.write_all(b"hello").unwrap();
        drop(conn);
        let mut got = String::new();
        client.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello");
        assert_eq!(read_idle(sup.as_fd()).unwrap(), 0);
        w.idle().unwrap();
        assert_eq!(read_idle(sup.as_fd()).unwrap(), 1);
        drop(sup);
        assert!(w.next_session().unwrap().is_none());
    }

    #[test]
    fn packets_of_any_size_cross_whole() {
        let (sup, wrk) = pair().unwrap();
        let mut w = Worker::from_fd(wrk, 3);
        let (_client, server) = UnixStream::pair().unwrap();
        for len in [1usize, 300, MAX_PACKET - 3] {
            let value = vec![b'v'; len];
            let data = encode_env(&[(b"K", Some(&value))]);
            assert!(data.len() <= MAX_PACKET);
            send_session(sup.as_fd(), server.as_fd(), &data).unwrap();
            let (_conn, env) = w.next_session().unwrap().unwrap();
            assert_eq!(env, vec![("K".into(), Some(OsString::from_vec(value)))], "{len}");
        }
        assert!(send_session(sup.as_fd(), server.as_fd(), &vec![b'x'; MAX_PACKET + 1]).is_err());
    }

    #[test]
    fn worker_eof_is_seen() {
        let (sup, wrk) = pair().unwrap();
        drop(wrk);
        assert_eq!(read_idle(sup.as_fd()).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
