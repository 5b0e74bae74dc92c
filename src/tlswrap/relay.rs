//! tls-wrap's I/O engine: the handshake on the network fds, then plaintext
//! relayed both ways between the application's pipes and the TLS stream.
//! One poll loop, non-blocking fds, bounded buffers (16 KiB each way plus
//! rustls' own, capped at 64 KiB), no busy waiting: an fd is polled only
//! while there is room for what it would bring.

use std::fmt;
use std::io::{self, Read, Write};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rustls::ServerConnection;

/// Plaintext buffered in each direction, beside rustls' own buffers.
pub const BUF: usize = 16 * 1024;
/// Cap on rustls' buffered plaintext and TLS records.
pub const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// Why a handshake or a session ended badly.
#[derive(Debug)]
pub enum TlsFail {
    /// The handshake did not finish in time.
    Timeout,
    /// The peer closed the connection during the handshake.
    Eof,
    /// A TLS protocol error (bad ClientHello, no shared version, ...).
    Tls(rustls::Error),
    /// A system error on the network fds.
    Io(io::Error),
}

impl fmt::Display for TlsFail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFail::Timeout => f.write_str("handshake timed out"),
            TlsFail::Eof => f.write_str("peer closed the connection during the handshake"),
            TlsFail::Tls(e) => write!(f, "{e}"),
            TlsFail::Io(e) => write!(f, "{e}"),
        }
    }
}

/// The network side: fd 0 to read, fd 1 to write (often the same socket),
/// as Files so that a TLS flight goes out in one writev.
#[derive(Clone, Copy)]
pub struct Net<'a> {
    pub rd: &'a File,
    pub wr: &'a File,
}

impl Net<'_> {
    /// Our own copies of fd 0 and 1, non-blocking, with Nagle off on a TCP
    /// socket (tcpserver leaves it on): a handshake flight must not wait
    /// for the peer's delayed ACK.
    pub fn take_stdio() -> io::Result<(File, File)> {
        let rd = File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
        let wr = File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
        set_nonblocking(rd.as_fd())?;
        set_nonblocking(wr.as_fd())?;
        let _ = nix::sys::socket::setsockopt(&wr, nix::sys::socket::sockopt::TcpNoDelay, &true);
        Ok((rd, wr))
    }
}

/// Put an fd in non-blocking mode.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let fl = fcntl(fd, FcntlArg::F_GETFL).map_err(io::Error::from)?;
    fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
    Ok(())
}

/// Read/Write over a File, EINTR retried; writev for vectored writes.
struct FdIo<'a>(&'a File);

impl Read for FdIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match (&mut &*self.0).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
}

impl Write for FdIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match (&mut &*self.0).write(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        loop {
            match (&mut &*self.0).write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Poll with an optional deadline; Ok(false) when the deadline passed.
fn poll_until(fds: &mut [PollFd<'_>], deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                // Round up so that we never wake just before the deadline.
                let ms = left.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        match poll(fds, timeout) {
            Ok(0) if deadline.is_some_and(|d| Instant::now() >= d) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn ready(p: &PollFd<'_>) -> bool {
    p.revents().is_some_and(|r| !r.is_empty())
}

/// Write out what rustls has for the network: bytes written, Err on a
/// write error.
fn flush_tls(conn: &mut ServerConnection, net: Net<'_>) -> io::Result<usize> {
    let mut total = 0;
    while conn.wants_write() {
        match conn.write_tls(&mut FdIo(net.wr)) {
            Ok(n) => total += n,
            Err(e) if would_block(&e) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Run the server handshake to its end, or fail. The network fds must be
/// non-blocking. On a TLS error the alert is sent on a best-effort basis.
pub fn handshake(conn: &mut ServerConnection, net: Net<'_>, deadline: Option<Instant>) -> Result<(), TlsFail> {
    let buf_alert = |conn: &mut ServerConnection| {
        let _ = flush_tls(conn, net);
    };
    loop {
        flush_tls(conn, net).map_err(TlsFail::Io)?;
        if !conn.is_handshaking() && !conn.wants_write() {
            return Ok(());
        }
        let mut fds = [
            PollFd::new(net.rd.as_fd(), if conn.wants_read() { PollFlags::POLLIN } else { PollFlags::empty() }),
            PollFd::new(net.wr.as_fd(), if conn.wants_write() { PollFlags::POLLOUT } else { PollFlags::empty() }),
        ];
        if !poll_until(&mut fds, deadline).map_err(TlsFail::Io)? {
            return Err(TlsFail::Timeout);
        }
        let rd_ready = ready(&fds[0]);
        let wr_err = fds[1].revents().is_some_and(|r| r.intersects(PollFlags::POLLERR));
        if wr_err && !rd_ready {
            return Err(TlsFail::Io(io::Error::from(io::ErrorKind::BrokenPipe)));
        }
        if rd_ready {
            match conn.read_tls(&mut FdIo(net.rd)) {
                Ok(0) => return Err(TlsFail::Eof),
                Ok(_) => {
                    if let Err(e) = conn.process_new_packets() {
                        buf_alert(conn);
                        return Err(TlsFail::Tls(e));
                    }
                }
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(TlsFail::Io(e)),
            }
        }
    }
}

/// How the relay ended, for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both sides finished.
    Done,
    /// The peer stopped reading for longer than the stall limit.
    Stalled,
    /// The peer went away: EPIPE or ECONNRESET on the network (text for
    /// the log). `after_close`: it had ended its side first (close_notify
    /// or EOF), the usual end of a client that sends QUIT and closes
    /// without waiting for the reply.
    PeerGone { what: String, after_close: bool },
    /// TLS error or other network error from the peer (text for the log).
    PeerError(String),
}

/// EPIPE and ECONNRESET: the peer has closed its socket.
fn gone(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset)
}

/// The end for a network error `what` (`e`), given whether the peer had
/// ended its side before.
fn net_error(what: &str, e: &io::Error, peer_closed: bool) -> RelayEnd {
    let what = format!("{what}: {e}");
    if gone(e) {
        RelayEnd::PeerGone { what, after_close: peer_closed }
    } else {
        RelayEnd::PeerError(what)
    }
}

/// Relay plaintext between the application's pipes and the TLS stream until
/// both are done. `to_app` is the write end of the pipe the application
/// reads; `from_app` the read end of the pipe it writes. `extra`, when
/// readable, calls `on_extra` (used for the SIGCHLD signalfd). `stall`: the
/// longest time output may wait for a peer that does not read.
pub fn relay(
    conn: &mut ServerConnection,
    net: Net<'_>,
    to_app: OwnedFd,
    from_app: OwnedFd,
    extra: Option<BorrowedFd<'_>>,
    on_extra: &mut dyn FnMut(),
    stall: Duration,
) -> RelayEnd {
    conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
    let _ = set_nonblocking(to_app.as_fd());
    let _ = set_nonblocking(from_app.as_fd());
    let mut to_app = Some(File::from(to_app));
    let mut from_app = Some(File::from(from_app));
    let mut inbuf: Vec<u8> = Vec::with_capacity(BUF);
    let mut in_off = 0usize;
    let mut outbuf: Vec<u8> = Vec::with_capacity(BUF);
    let mut tmp = vec![0u8; BUF];
    let mut tcp_eof = false; // read_tls saw EOF or an error: poll fd 0 no more
    let mut plain_eof = false; // rustls has no more plaintext for the application
    let mut net_dead = false; // nothing more can go to the peer
    let mut sent_close = false;
    let mut shut = false;
    let mut end = RelayEnd::Done;
    let mut last_out = Instant::now();

    loop {
        // 1. Decrypted bytes from rustls into our buffer, when it is empty.
        if inbuf.is_empty() && !plain_eof {
            match conn.reader().read(&mut tmp) {
                Ok(0) => plain_eof = true, // close_notify
                Ok(n) => {
                    inbuf.extend_from_slice(&tmp[..n]);
                    in_off = 0;
                }
                Err(e) if would_block(&e) => plain_eof = tcp_eof,
                Err(_) => plain_eof = true, // EOF without close_notify
            }
        }
        // 2. Our buffer to the application.
        if in_off < inbuf.len() {
            match &to_app {
                Some(fd) => match FdIo(fd).write(&inbuf[in_off..]) {
                    Ok(n) => in_off += n,
                    Err(e) if would_block(&e) => {}
                    Err(_) => to_app = None,
                },
                None => in_off = inbuf.len(),
            }
        }
        if in_off >= inbuf.len() {
            inbuf.clear();
            in_off = 0;
        }
        if plain_eof && inbuf.is_empty() {
            to_app = None; // the application reads EOF
        }
        // 3. The application's bytes into rustls.
        if !outbuf.is_empty() && !net_dead {
            match conn.writer().write(&outbuf) {
                Ok(n) => {
                    outbuf.drain(..n);
                }
                Err(_) => net_dead = true,
            }
        }
        if net_dead {
            outbuf.clear();
            from_app = None; // the application gets EPIPE
        }
        // 4. The application is done writing: close_notify, then half-close.
        if from_app.is_none() && outbuf.is_empty() && !sent_close && !net_dead {
            conn.send_close_notify();
            sent_close = true;
        }
        // 5. TLS records to the network.
        if !net_dead {
            match flush_tls(conn, net) {
                Ok(n) if n > 0 || !conn.wants_write() => last_out = Instant::now(),
                Ok(_) => {}
                Err(e) => {
                    if end == RelayEnd::Done {
                        end = net_error("write to network", &e, tcp_eof || plain_eof);
                    }
                    net_dead = true;
                    tcp_eof = true;
                    continue;
                }
            }
        }
        if sent_close && !conn.wants_write() && !shut {
            use std::os::fd::AsRawFd;
            let _ = nix::sys::socket::shutdown(net.wr.as_raw_fd(), nix::sys::socket::Shutdown::Write);
            shut = true;
        }
        // 6. Done when the application has nothing more to say or hear.
        let out_done = from_app.is_none() && outbuf.is_empty() && (net_dead || !conn.wants_write());
        if out_done && (to_app.is_none() || net_dead) {
            return end;
        }
        // 7. Wait for something that can make progress.
        let want_net_rd = !tcp_eof && inbuf.is_empty() && conn.wants_read();
        let want_net_wr = !net_dead && conn.wants_write();
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(5);
        fds.push(PollFd::new(net.rd.as_fd(), if want_net_rd { PollFlags::POLLIN } else { PollFlags::empty() }));
        fds.push(PollFd::new(net.wr.as_fd(), if want_net_wr { PollFlags::POLLOUT } else { PollFlags::empty() }));
        let idx_to = to_app.as_ref().map(|fd| {
            let ev = if in_off < inbuf.len() { PollFlags::POLLOUT } else { PollFlags::empty() };
            fds.push(PollFd::new(fd.as_fd(), ev));
            fds.len() - 1
        });
        let idx_from = from_app.as_ref().filter(|_| outbuf.is_empty()).map(|fd| {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let idx_extra = extra.map(|fd| {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
            fds.len() - 1
        });
        let deadline = if want_net_wr { Some(last_out + stall) } else { None };
        match poll_until(&mut fds, deadline) {
            Ok(true) => {}
            Ok(false) => return RelayEnd::Stalled,
            Err(e) => return RelayEnd::PeerError(format!("poll: {e}")),
        }
        let rev = |i: usize| fds[i].revents().unwrap_or(PollFlags::empty());
        let net_rd_ev = rev(0);
        let net_wr_ev = rev(1);
        let to_ev = idx_to.map(rev).unwrap_or(PollFlags::empty());
        let from_ev = idx_from.map(rev).unwrap_or(PollFlags::empty());
        let extra_ev = idx_extra.map(rev).unwrap_or(PollFlags::empty());
        drop(fds);

        if want_net_wr && net_wr_ev.intersects(PollFlags::POLLERR) && !net_rd_ev.intersects(PollFlags::POLLIN) {
            net_dead = true;
            tcp_eof = true;
        }
        if want_net_rd && !net_rd_ev.is_empty() {
            match conn.read_tls(&mut FdIo(net.rd)) {
                Ok(0) => tcp_eof = true,
                Ok(_) => {
                    if let Err(e) = conn.process_new_packets() {
                        let _ = flush_tls(conn, net);
                        end = RelayEnd::PeerError(format!("TLS error: {e}"));
                        tcp_eof = true;
                        net_dead = true;
                    }
                }
                Err(e) if would_block(&e) => {}
                Err(e) => {
                    end = net_error("read from network", &e, tcp_eof || plain_eof);
                    tcp_eof = true;
                }
            }
        }
        if to_ev.intersects(PollFlags::POLLERR | PollFlags::POLLHUP) {
            to_app = None; // the application closed its reading end
        }
        if idx_from.is_some() && !from_ev.is_empty() {
            if let Some(fd) = &from_app {
                let room = BUF - outbuf.len();
                match FdIo(fd).read(&mut tmp[..room]) {
                    Ok(0) => from_app = None,
                    Ok(n) => outbuf.extend_from_slice(&tmp[..n]),
                    Err(e) if would_block(&e) => {}
                    Err(_) => from_app = None,
                }
            }
        }
        if !extra_ev.is_empty() {
            on_extra();
        }
    }
}
