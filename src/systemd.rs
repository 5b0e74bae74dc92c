//! systemd's socket activation (`LISTEN_FDS`, `LISTEN_PID`) and readiness
//! notification (`NOTIFY_SOCKET`, sd_notify(3)), by hand: the protocol is a few
//! lines, and the sd-notify crate fails on abstract `@` sockets.

use std::io;
use std::os::fd::OwnedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// First fd passed by systemd (SD_LISTEN_FDS_START).
pub const LISTEN_FDS_START: i32 = 3;

/// The sockets systemd passed, if `LISTEN_PID` names this process; empty when
/// not socket-activated. The fds are made close-on-exec. The variables are left
/// in the environment; the caller keeps them from its children.
pub fn listen_fds() -> Result<Vec<OwnedFd>, String> {
    let pid = match std::env::var("LISTEN_PID") {
        Ok(p) => p,
        Err(_) => return Ok(Vec::new()),
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(Vec::new());
    }
    let n: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n| (0..=1024).contains(&n))
        .ok_or("LISTEN_FDS is not a number")?;
    let mut fds = Vec::new();
    for fd in LISTEN_FDS_START..LISTEN_FDS_START + n {
        let owned = crate::sys::take_inherited_fd(fd).ok_or(format!("LISTEN_FDS: fd {fd} is not open"))?;
        fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|e| format!("fd {fd}: {e}"))?;
        fds.push(owned);
    }
    Ok(fds)
}

/// Send `state` (e.g. `READY=1`, `STOPPING=1`, `STATUS=...`) to `NOTIFY_SOCKET`.
/// `Ok(false)` when the variable is unset. A leading `@` names an abstract socket.
pub fn notify(state: &str) -> io::Result<bool> {
    let path = match std::env::var_os("NOTIFY_SOCKET") {
        Some(p) if !p.is_empty() => p,
        _ => return Ok(false),
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(std::path::Path::new(&path))?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_reaches_an_abstract_socket() {
        let name = format!("smtpd-rs-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        std::env::set_var("NOTIFY_SOCKET", format!("@{name}"));
        assert!(notify("READY=1").unwrap());
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert!(!notify("READY=1").unwrap());
    }
}
