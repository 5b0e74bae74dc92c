//! One SMTP or LMTP connection: TCP, plain or after STARTTLS, or a Unix
//! socket (LMTP to a local store). Buffered writes flushed
//! before each read (so a pipelined batch leaves in one segment), replies
//! read through `reply::Parser` under a deadline per reply, so a server that
//! drips bytes or never answers costs at most the reply timeout.

use super::reply::{self, Reply};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub enum Error {
    /// No complete reply within the reply timeout.
    Timeout,
    /// The server closed the connection (in the middle of a reply, maybe).
    Closed,
    Io(io::Error),
    /// A reply that breaks RFC 5321 4.2 (see `reply::Error`).
    Reply(reply::Error),
    /// The TLS handshake or a TLS record failed.
    Tls(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout => f.write_str("timed out"),
            Error::Closed => f.write_str("connection closed"),
            Error::Io(e) => write!(f, "{e}"),
            Error::Reply(e) => write!(f, "{e}"),
            Error::Tls(e) => write!(f, "TLS: {e}"),
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    Unix(UnixStream),
}

impl Stream {
    fn set_read_timeout(&self, d: Duration) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.set_read_timeout(Some(d)),
            Stream::Tls(t) => t.sock.set_read_timeout(Some(d)),
            Stream::Unix(u) => u.set_read_timeout(Some(d)),
        }
    }
}

pub struct Conn {
    stream: Stream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    timeout: Duration,
    /// No reply is awaited past this instant, whatever `timeout` says (the
    /// attempt's own deadline, TIMEOUTATTEMPT).
    limit: Option<Instant>,
}

/// Read buffer step; a line may be at most `reply::MAX_LINE` plus CR LF.
const CHUNK: usize = 8192;

impl Conn {
    pub fn connect(addr: SocketAddr, connect_timeout: Duration, timeout: Duration) -> io::Result<Conn> {
        let s = TcpStream::connect_timeout(&addr, connect_timeout)?;
        s.set_nodelay(true)?;
        s.set_write_timeout(Some(timeout))?;
        Ok(Conn { stream: Stream::Plain(s), inbuf: Vec::new(), out: Vec::new(), timeout, limit: None })
    }

    /// A Unix stream socket (an LMTP server on this host). A blocking
    /// connect would wait as long as the server's listen queue stays full:
    /// non-blocking, that is EAGAIN, tried again until `connect_timeout`.
    pub fn connect_unix(path: &str, connect_timeout: Duration, timeout: Duration) -> io::Result<Conn> {
        use nix::errno::Errno;
        use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
        use std::os::fd::AsRawFd;
        let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)?;
        let addr = UnixAddr::new(path)?;
        let deadline = Instant::now() + connect_timeout;
        loop {
            match connect(fd.as_raw_fd(), &addr) {
                Ok(()) => break,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Err(Errno::EAGAIN) => return Err(io::Error::new(io::ErrorKind::TimedOut, "its listen queue stayed full")),
                Err(e) => return Err(e.into()),
            }
        }
        let s = UnixStream::from(fd);
        s.set_nonblocking(false)?;
        s.set_write_timeout(Some(timeout))?;
        Ok(Conn { stream: Stream::Unix(s), inbuf: Vec::new(), out: Vec::new(), timeout, limit: None })
    }

    /// Cut every wait at `limit` from now on (`None`: the reply timeout only).
    pub fn set_limit(&mut self, limit: Option<Instant>) {
        self.limit = limit;
    }

    /// When the reply (or handshake) that starts now must be complete.
    fn deadline(&self) -> Instant {
        let d = Instant::now() + self.timeout;
        self.limit.map_or(d, |l| d.min(l))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// `TLSv1_3 TLS13_AES_256_GCM_SHA384`, for the log.
    pub fn tls_info(&self) -> Option<String> {
        match &self.stream {
            Stream::Tls(t) => Some(format!(
                "{:?} {:?}",
                t.conn.protocol_version()?,
                t.conn.negotiated_cipher_suite()?.suite()
            )),
            Stream::Plain(_) | Stream::Unix(_) => None,
        }
    }

    /// Queue a command; it leaves with the next `flush` or `read_reply`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    pub fn pending(&self) -> usize {
        self.out.len()
    }

    pub fn flush(&mut self) -> Result<(), Error> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let r = match &mut self.stream {
            Stream::Plain(s) => s.write_all(&out).and_then(|_| s.flush()),
            Stream::Tls(t) => t.write_all(&out).and_then(|_| t.flush()),
            Stream::Unix(u) => u.write_all(&out).and_then(|_| u.flush()),
        };
        self.out = out;
        self.out.clear();
        r.map_err(io_error)
    }

    /// Flush, then read one whole reply.
    pub fn read_reply(&mut self) -> Result<Reply, Error> {
        self.flush()?;
        let deadline = self.deadline();
        let mut parser = reply::Parser::new();
        loop {
            let line = self.read_line(deadline)?;
            if let Some(r) = parser.push(&line).map_err(Error::Reply)? {
                return Ok(r);
            }
        }
    }

    /// Bytes the server sent that no reply has consumed yet.
    pub fn has_buffered_input(&self) -> bool {
        !self.inbuf.is_empty()
    }

    /// TLS on this connection after a 220 to STARTTLS. Input already
    /// buffered would be plaintext injected before TLS: refused.
    pub fn start_tls(self, config: Arc<ClientConfig>, name: ServerName<'static>) -> Result<Conn, Error> {
        if !self.inbuf.is_empty() {
            return Err(Error::Tls("server sent data after its STARTTLS reply".into()));
        }
        let deadline = self.deadline();
        let Stream::Plain(mut sock) = self.stream else {
            return Err(Error::Tls("TLS already active, or a Unix socket".into()));
        };
        let mut tls = ClientConnection::new(config, name).map_err(|e| Error::Tls(e.to_string()))?;
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        sock.set_read_timeout(Some(left)).map_err(Error::Io)?;
        while tls.is_handshaking() {
            if Instant::now() >= deadline {
                return Err(Error::Timeout);
            }
            match tls.complete_io(&mut sock) {
                Ok((0, 0)) if tls.is_handshaking() && !tls.wants_write() => return Err(Error::Closed),
                Ok(_) => {}
                Err(e) => return Err(tls_io_error(e)),
            }
        }
        Ok(Conn { stream: Stream::Tls(Box::new(StreamOwned::new(tls, sock))), inbuf: Vec::new(), out: self.out, timeout: self.timeout, limit: self.limit })
    }

    /// Send QUIT without waiting for the answer (qmail-remote: "waiting for
    /// remote side is just too ridiculous"), then close.
    pub fn quit(mut self) {
        self.send(b"QUIT\r\n");
        let _ = self.flush();
        if let Stream::Tls(t) = &mut self.stream {
            // complete_io only writes here, but never let it wait long.
            let _ = t.sock.set_read_timeout(Some(Duration::from_secs(1)));
            t.conn.send_close_notify();
            let _ = t.conn.complete_io(&mut t.sock);
        }
    }

    /// One line without its CR LF (a bare LF ends a line too).
    fn read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, Error> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.inbuf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i;
                let mut line: Vec<u8> = self.inbuf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            scanned = self.inbuf.len();
            if self.inbuf.len() > reply::MAX_LINE + 2 {
                return Err(Error::Reply(reply::Error::LineTooLong));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            self.stream.set_read_timeout(left).map_err(Error::Io)?;
            let mut buf = [0u8; CHUNK];
            let n = match &mut self.stream {
                Stream::Plain(s) => s.read(&mut buf),
                Stream::Tls(t) => t.read(&mut buf),
                Stream::Unix(u) => u.read(&mut buf),
            };
            match n {
                Ok(0) => return Err(Error::Closed),
                Ok(n) => self.inbuf.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(e)),
            }
        }
    }
}

fn io_error(e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout,
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Error::Closed,
        io::ErrorKind::InvalidData => Error::Tls(e.to_string()),
        _ => Error::Io(e),
    }
}

fn tls_io_error(e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout,
        _ => Error::Tls(e.to_string()),
    }
}
