//! The UCSPI side of smtpd-rs: a connection on a read fd and a write fd
//! (fd 0 and 1 under tcpserver, systemd Accept=yes or a pipe), with a bounded
//! input buffer, CRLF command lines of at most 512 octets, replies buffered
//! and written only before a blocking read (RFC 2920 pipelining), poll
//! timeouts on both directions; and the peer's facts from the UCSPI-TCP or
//! systemd variables, or from the socket itself.
//!
//! On a socket no poll precedes a read or a send in the common case: the
//! read side carries the timeout itself (SO_RCVTIMEO), and a send that
//! cannot block (MSG_DONTWAIT) is tried before waiting for room. A session
//! is about fifteen system calls fewer, one message on a kept connection
//! eight fewer; poll remains where the kernel cannot bound the wait (pipes,
//! a full socket buffer, a read cut short by a signal).

use crate::smtp::reply;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::time::{Duration, Instant};

/// RFC 5321 4.5.3.1.4: a command line is at most 512 octets with its CRLF.
pub const MAX_LINE: usize = 512;
/// Input buffer: many pipelined commands, or a piece of a message.
pub const IN_BUF: usize = 16 * 1024;
/// Replies beyond this are written even before a read would block.
pub const OUT_HIGH: usize = 16 * 1024;
/// POSIX PIPE_BUF on Linux: a pipe that polls writable takes this much.
const PIPE_BUF: usize = 4096;

#[derive(Debug)]
pub enum ConnError {
    /// The client closed the connection.
    Eof,
    /// Nothing to read, or no way to write, for the whole timeout.
    Timeout,
    Io(io::Error),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Eof => f.write_str("end of input"),
            ConnError::Timeout => f.write_str("timeout"),
            ConnError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// One client connection.
pub struct Conn {
    r: File,
    w: File,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// A line longer than `MAX_LINE` is being skipped up to its LF.
    skipping: bool,
    /// The write side is a socket (send with MSG_DONTWAIT) or not.
    w_socket: bool,
    /// The read side is a socket whose reads time out by themselves
    /// (SO_RCVTIMEO set to `timeout`), so a read needs no poll before it.
    r_timed: bool,
    /// Replies not yet written.
    pub out: Vec<u8>,
    timeout: Duration,
}

impl Conn {
    pub fn new(r: File, w: File, timeout: Duration) -> Conn {
        let w_socket = w.metadata().is_ok_and(|m| m.file_type().is_socket());
        let r_timed = read_timeout(&r, timeout);
        Conn {
            r,
            w,
            w_socket,
            r_timed,
            buf: vec![0; IN_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            skipping: false,
            out: Vec::with_capacity(4096),
            timeout,
        }
    }

    /// fd 0 (read) and fd 1 (write).
    pub fn stdio(timeout: Duration) -> io::Result<Conn> {
        Ok(Conn::new(crate::sys::take_fd(0)?, crate::sys::take_fd(1)?, timeout))
    }

    /// Put a new fd pair in place (e.g. after a TLS helper moved its fds),
    /// dropping whatever input was buffered (CVE-2011-0411).
    pub fn replace_fds(&mut self, r: File, w: File) {
        // The old read side is the network socket that a UCSPI-TLS engine
        // (s6-ucspitlsd, sslserver -n) reads from now on: it gets the socket
        // back as it was, with no read timeout of ours on it.
        if self.r_timed {
            read_timeout(&self.r, Duration::ZERO);
        }
        self.w_socket = w.metadata().is_ok_and(|m| m.file_type().is_socket());
        self.r_timed = read_timeout(&r, self.timeout);
        self.r = r;
        self.w = w;
        self.discard_input();
    }

    /// Forget buffered input.
    pub fn discard_input(&mut self) {
        self.start = 0;
        self.end = 0;
        self.skipping = false;
    }

    pub fn read_fd(&self) -> RawFd {
        self.r.as_raw_fd()
    }

    /// Is the read side a socket (not a pipe or a file)?
    pub fn is_socket(&self) -> bool {
        self.r.metadata().is_ok_and(|m| m.file_type().is_socket())
    }

    /// Input already read and not yet used.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Mark `n` buffered octets as used.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Does input arrive within `wait` (zero: is some already there)?
    pub fn readable_within(&self, wait: Duration) -> bool {
        if self.end > self.start {
            return true;
        }
        let ms = PollTimeout::try_from(wait.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::ZERO);
        let mut fds = [PollFd::new(self.r.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, ms), Ok(n) if n > 0)
    }

    /// Before closing: drop buffered input and whatever is already readable
    /// (bounded), so that closing does not reset the connection (a socket
    /// closed with unread input sends RST, which can destroy our last reply).
    pub fn drain(&mut self) {
        self.discard_input();
        for _ in 0..64 {
            if !self.readable_within(Duration::ZERO) {
                break;
            }
            match self.r.read(&mut self.buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        self.discard_input();
    }

    /// Write every buffered reply. A blocking write could wait forever for
    /// a client that does not read, so each write is one that cannot block:
    /// on a socket a send with MSG_DONTWAIT (poll only when the socket's
    /// buffer is full), on a pipe at most PIPE_BUF octets after poll said
    /// "writable" (the room POLLOUT promises).
    pub fn flush(&mut self) -> Result<(), ConnError> {
        use nix::sys::socket::{send, MsgFlags};
        let mut done = 0;
        let mut room = false;
        while done < self.out.len() {
            if !self.w_socket || room {
                wait_for(&self.w, PollFlags::POLLOUT, self.timeout)?;
            }
            let rest = &self.out[done..];
            let r = if self.w_socket {
                send(self.w.as_raw_fd(), rest, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL).map_err(io::Error::from)
            } else {
                self.w.write(&rest[..rest.len().min(PIPE_BUF)])
            };
            match r {
                Ok(0) => return Err(ConnError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    done += n;
                    room = false;
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => room = true,
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
        self.out.clear();
        Ok(())
    }

    /// Write the replies, then wait for and read more input.
    pub fn fill(&mut self) -> Result<(), ConnError> {
        self.flush()?;
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Ok(()); // full: the caller uses what is there first
        }
        // With SO_RCVTIMEO the read waits by itself; it comes back with
        // EAGAIN when the timeout passed, or at once on a socket someone made
        // non-blocking, and EINTR on a signal: from then on poll with what
        // is left of the timeout, so the wait is never longer than it.
        let start = Instant::now();
        let mut timed = self.r_timed;
        loop {
            if !timed {
                let left = self.timeout.saturating_sub(start.elapsed());
                if left.is_zero() {
                    return Err(ConnError::Timeout);
                }
                wait_for(&self.r, PollFlags::POLLIN, left)?;
            }
            match self.r.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(ConnError::Eof),
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => timed = false,
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
    }

    /// The next command line, CRLF removed, copied into `line`. `Ok(None)`:
    /// a good line. `Ok(Some(reply))`: a line refused as a whole (too long,
    /// bare CR, bare LF, NUL) with the reply to give; a bare LF ends such a
    /// line too, so that a client using LF alone gets an answer.
    pub fn next_line(&mut self, line: &mut Vec<u8>) -> Result<Option<&'static str>, ConnError> {
        line.clear();
        loop {
            let data = &self.buf[self.start..self.end];
            let lf = data.iter().position(|&b| b == b'\n');
            if self.skipping {
                match lf {
                    Some(i) => {
                        self.consume(i + 1);
                        self.skipping = false;
                        return Ok(Some(reply::LINE_TOO_LONG));
                    }
                    None => {
                        let n = data.len();
                        self.consume(n);
                        self.fill()?;
                        continue;
                    }
                }
            }
            let Some(i) = lf else {
                if data.len() >= MAX_LINE {
                    self.skipping = true;
                } else {
                    self.fill()?;
                }
                continue;
            };
            let raw = &data[..i];
            let verdict = if i + 1 > MAX_LINE {
                Some(reply::LINE_TOO_LONG)
            } else if raw.last() != Some(&b'\r') {
                Some(reply::BARE_LF_CMD)
            } else {
                let body = &raw[..i - 1];
                if body.contains(&b'\r') {
                    Some(reply::BARE_CR_CMD)
                } else if body.contains(&0) {
                    Some(reply::NUL_CMD)
                } else {
                    line.extend_from_slice(body);
                    None
                }
            };
            self.consume(i + 1);
            return Ok(verdict);
        }
    }
}

/// Give reads on `r` the timeout `t` (SO_RCVTIMEO), so that they need no
/// poll before them. False where that cannot be: not a socket, or no
/// timeout to give (a zero timeout means "no wait" to poll, but "wait for
/// ever" to the socket, so a zero `t` leaves the reads to poll).
/// Zero takes the timeout off again (for whoever reads the socket after us).
fn read_timeout(r: &File, t: Duration) -> bool {
    use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
    use nix::sys::time::{TimeVal, TimeValLike};
    let us = i64::try_from(t.as_micros()).unwrap_or(i64::MAX);
    setsockopt(r, ReceiveTimeout, &TimeVal::microseconds(us)).is_ok() && !t.is_zero()
}

/// Poll `f` for `what` up to `timeout`.
fn wait_for(f: &File, what: PollFlags, timeout: Duration) -> Result<(), ConnError> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let ms = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
    loop {
        let mut fds = [PollFd::new(f.as_fd(), what)];
        match poll(&mut fds, ms) {
            Ok(0) => return Err(ConnError::Timeout),
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(ConnError::Io(e.into())),
        }
    }
}

/// Facts about the connection (UCSPI-TCP or systemd variables, or the
/// socket itself); XCLIENT can replace them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    pub remote_ip: Option<String>,
    pub remote_port: Option<String>,
    pub remote_host: Option<String>,
    pub remote_info: Option<String>,
    pub local_ip: Option<String>,
    pub local_port: Option<String>,
}

/// The peer's facts: UCSPI-TCP variables (`TCPREMOTEIP`, `TCPREMOTEPORT`,
/// `TCPREMOTEHOST`, `TCPREMOTEINFO`, `TCPLOCALIP`, `TCPLOCALPORT`), else
/// systemd's `REMOTE_ADDR`/`REMOTE_PORT`, else the socket on `fd`
/// (getpeername/getsockname); nothing on a pipe.
pub fn peer_info(get: &dyn Fn(&str) -> Option<String>, fd: RawFd) -> Peer {
    let clean = |v: Option<String>| v.filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()));
    let mut p = Peer {
        remote_ip: clean(get("TCPREMOTEIP")),
        remote_port: clean(get("TCPREMOTEPORT")),
        remote_host: clean(get("TCPREMOTEHOST")),
        remote_info: clean(get("TCPREMOTEINFO")),
        local_ip: clean(get("TCPLOCALIP")),
        local_port: clean(get("TCPLOCALPORT")),
    };
    if p.remote_ip.is_none() {
        p.remote_ip = clean(get("REMOTE_ADDR"));
        p.remote_port = clean(get("REMOTE_PORT"));
    }
    if p.remote_ip.is_none() {
        if let Some((ip, port)) = socket_addr(nix::sys::socket::getpeername(fd)) {
            p.remote_ip = Some(ip);
            p.remote_port = Some(port);
        }
    }
    if p.local_ip.is_none() {
        if let Some((ip, port)) = socket_addr(nix::sys::socket::getsockname(fd)) {
            p.local_ip = Some(ip);
            p.local_port = Some(port);
        }
    }
    p
}

fn socket_addr(a: nix::Result<nix::sys::socket::SockaddrStorage>) -> Option<(String, String)> {
    let a = a.ok()?;
    if let Some(v4) = a.as_sockaddr_in() {
        return Some((v4.ip().to_string(), v4.port().to_string()));
    }
    let v6 = a.as_sockaddr_in6()?;
    let ip = v6.ip();
    let ip = ip.to_ipv4_mapped().map_or_else(|| ip.to_string(), |v4| v4.to_string());
    Some((ip, v6.port().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn conn_with(input: &[u8]) -> Conn {
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(input).unwrap();
        drop(b);
        let r = File::from(std::os::fd::OwnedFd::from(a));
        let w = r.try_clone().unwrap();
        Conn::new(r, w, Duration::from_secs(2))
    }

    #[test]
    fn lines() {
        let long = [vec![b'x'; 600], b"\r\nNOOP\r\n".to_vec()].concat();
        let edge = [vec![b'x'; 510], b"\r\n".to_vec(), vec![b'y'; 511], b"\r\n".to_vec()].concat();
        type Want<'a> = &'a [Result<&'a [u8], &'a str>];
        let t: &[(&[u8], Want)] = &[
            (b"HELO a\r\nNOOP\r\n", &[Ok(b"HELO a"), Ok(b"NOOP")]),
            (b"HELO a\nNOOP\r\n", &[Err(reply::BARE_LF_CMD), Ok(b"NOOP")]),
            (b"HE\rLO a\r\nNOOP\r\n", &[Err(reply::BARE_CR_CMD), Ok(b"NOOP")]),
            (b"HE\0LO\r\nNOOP\r\n", &[Err(reply::NUL_CMD), Ok(b"NOOP")]),
            (&long, &[Err(reply::LINE_TOO_LONG), Ok(b"NOOP")]),
            (&edge, &[Ok(&[b'x'; 510]), Err(reply::LINE_TOO_LONG)]),
        ];
        for (input, want) in t {
            let mut c = conn_with(input);
            let mut line = Vec::new();
            for w in *want {
                let got = c.next_line(&mut line).unwrap();
                match w {
                    Ok(l) => assert_eq!((got, line.as_slice()), (None, *l)),
                    Err(r) => assert_eq!(got, Some(*r)),
                }
            }
            assert!(matches!(c.next_line(&mut line), Err(ConnError::Eof)));
        }
    }

    #[test]
    fn huge_line_in_bounded_memory() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let r = File::from(std::os::fd::OwnedFd::from(a));
        let w = r.try_clone().unwrap();
        let mut c = Conn::new(r, w, Duration::from_secs(5));
        let t = std::thread::spawn(move || {
            let chunk = vec![b'z'; 65536];
            for _ in 0..64 {
                b.write_all(&chunk).unwrap();
            }
            b.write_all(b"\r\nQUIT\r\n").unwrap();
        });
        let mut line = Vec::new();
        assert_eq!(c.next_line(&mut line).unwrap(), Some(reply::LINE_TOO_LONG));
        assert_eq!(c.next_line(&mut line).unwrap(), None);
        assert_eq!(line, b"QUIT");
        t.join().unwrap();
        assert_eq!(c.buf.len(), IN_BUF);
    }

    /// A socket pair as a `Conn` with `timeout`, and the client's end.
    fn socket_conn(timeout: Duration) -> (Conn, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        let r = File::from(std::os::fd::OwnedFd::from(a));
        let w = r.try_clone().unwrap();
        (Conn::new(r, w, timeout), b)
    }

    #[test]
    fn a_silent_client_times_out_once() {
        // The read waits by itself (SO_RCVTIMEO), and no poll follows that
        // waits the whole timeout again.
        let (mut c, _client) = socket_conn(Duration::from_millis(300));
        assert!(c.r_timed);
        let t0 = Instant::now();
        assert!(matches!(c.fill(), Err(ConnError::Timeout)));
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(250) && took < Duration::from_millis(550), "{took:?}");
    }

    #[test]
    fn a_non_blocking_socket_still_waits_for_input() {
        // Someone made the socket non-blocking: the read comes back at once,
        // and poll does the waiting.
        let (mut c, mut client) = socket_conn(Duration::from_secs(5));
        let s = UnixStream::from(std::os::fd::OwnedFd::from(c.r.try_clone().unwrap()));
        s.set_nonblocking(true).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            client.write_all(b"NOOP\r\n").unwrap();
            client
        });
        let mut line = Vec::new();
        assert_eq!(c.next_line(&mut line).unwrap(), None);
        assert_eq!(line, b"NOOP");
        drop(t.join().unwrap());
    }

    #[test]
    fn the_socket_goes_back_without_our_timeout() {
        // STARTTLS under s6-ucspitlsd: the engine reads the network socket
        // from then on, and must not find our read timeout on it.
        use nix::sys::socket::{getsockopt, sockopt::ReceiveTimeout};
        use nix::sys::time::TimeValLike;
        let (mut c, _client) = socket_conn(Duration::from_secs(7));
        let net = c.r.try_clone().unwrap();
        assert_eq!(getsockopt(&net, ReceiveTimeout).unwrap().num_seconds(), 7);
        let (a, _b) = UnixStream::pair().unwrap();
        let r = File::from(std::os::fd::OwnedFd::from(a));
        let w = r.try_clone().unwrap();
        c.replace_fds(r, w);
        assert_eq!(getsockopt(&net, ReceiveTimeout).unwrap().num_microseconds(), 0);
        assert!(c.r_timed);
    }

    #[test]
    fn replies_to_a_client_that_does_not_read_time_out() {
        // The send is tried first; when the socket's buffer is full, poll
        // waits for room, and gives up after the timeout.
        let (mut c, _client) = socket_conn(Duration::from_millis(300));
        c.out = vec![b'x'; 16 << 20];
        let t0 = Instant::now();
        assert!(matches!(c.flush(), Err(ConnError::Timeout)));
        assert!(t0.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn replies_reach_a_reading_client_whole() {
        let (mut c, mut client) = socket_conn(Duration::from_secs(5));
        let big = (0..1 << 20).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>();
        c.out = big.clone();
        let t = std::thread::spawn(move || {
            let mut got = vec![0; big.len()];
            client.read_exact(&mut got).unwrap();
            got == big
        });
        c.flush().unwrap();
        assert!(t.join().unwrap());
    }

    #[test]
    fn peer_from_vars() {
        let vars = |k: &str| match k {
            "TCPREMOTEIP" => Some("192.0.2.7".to_string()),
            "TCPREMOTEPORT" => Some("4242".to_string()),
            "TCPREMOTEHOST" => Some("bad host".to_string()),
            _ => None,
        };
        let p = peer_info(&vars, -1);
        assert_eq!(p.remote_ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(p.remote_port.as_deref(), Some("4242"));
        assert_eq!(p.remote_host, None);
        let sd = |k: &str| match k {
            "REMOTE_ADDR" => Some("2001:db8::2".to_string()),
            "REMOTE_PORT" => Some("25".to_string()),
            _ => None,
        };
        assert_eq!(peer_info(&sd, -1).remote_ip.as_deref(), Some("2001:db8::2"));
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
        let p = peer_info(&|_| None, s.as_raw_fd());
        assert_eq!(p.remote_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(p.remote_port, Some(tcp.local_addr().unwrap().port().to_string()));
        assert_eq!(p.local_port, Some(s.local_addr().unwrap().port().to_string()));
    }
}
