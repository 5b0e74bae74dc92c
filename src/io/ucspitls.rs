//! The application side of UCSPI-TLS (s6-ucspitlsd, sslserver -n, tls-wrap):
//! find SSLCTLFD, SSLREADFD and SSLWRITEFD, check them, and on STARTTLS
//! write `Y` on the control fd, read back the `KEY=VALUE\0...\0\0` block
//! (bounded, with a timeout; EOF with no data: the handshake failed), then
//! move SSLREADFD/SSLWRITEFD onto fd 0/1. Also: UCSPITLS's policy values
//! and the facts of an implicit-TLS session found in the environment.
//! The caller discards its input buffer after `start` (CVE-2011-0411).

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Longest block accepted on the control fd (s6 writes at most 4096).
pub const MAX_BLOCK: usize = 8192;

/// UCSPITLS (s/qmail's values): unset or `-`: no STARTTLS; empty: offer it;
/// `!`: offer it and refuse MAIL until TLS is active (530 5.7.0); `?`:
/// offer it, and a verified client certificate allows relaying; `@`: both.
/// Other values offer STARTTLS, as s/qmail reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlsPolicy {
    pub offer: bool,
    pub require: bool,
    pub cert_relay: bool,
}

pub fn parse_ucspitls(v: Option<&str>) -> TlsPolicy {
    match v {
        None | Some("-") => TlsPolicy::default(),
        Some("!") => TlsPolicy { offer: true, require: true, cert_relay: false },
        Some("?") => TlsPolicy { offer: true, require: false, cert_relay: true },
        Some("@") => TlsPolicy { offer: true, require: true, cert_relay: true },
        Some(_) => TlsPolicy { offer: true, require: false, cert_relay: false },
    }
}

/// 530 before MAIL when UCSPITLS=! (or @) and TLS is not active.
pub const TLS_REQUIRED: &str = "530 5.7.0 must issue a STARTTLS command first\r\n";
/// RFC 3207 section 4: the reply that starts the handshake.
pub const READY: &str = "220 2.0.0 ready to start TLS\r\n";
/// RFC 3207: STARTTLS takes no parameter.
pub const STARTTLS_SYNTAX: &str = "501 5.5.4 syntax: STARTTLS (no parameters)\r\n";
/// Pipelined input behind STARTTLS (command injection, CVE-2011-0411).
pub const STARTTLS_PIPELINED: &str = "503 5.5.1 no commands may follow STARTTLS in the same packet\r\n";
/// TLS is already active (or not offered).
pub const STARTTLS_AGAIN: &str = "503 5.5.1 TLS already active\r\n";

/// The facts of a TLS session as UCSPI-TLS servers pass them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsInfo {
    pub protocol: String,
    pub cipher: String,
    pub sni: Option<String>,
    /// SSL_PEER_CERT_SUBJECT (s6, tls-wrap) or SSL_CLIENT_S_DN (ucspi-ssl).
    pub peer_subject: Option<String>,
    pub peer_hash: Option<String>,
}

impl TlsInfo {
    /// From `(name, Some(value))` / `(name, None)` items (None: unset).
    pub fn from_items(items: &[(String, Option<String>)]) -> TlsInfo {
        let get = |k: &str| {
            items.iter().rev().find(|(n, _)| n == k).and_then(|(_, v)| v.clone()).filter(|v| !v.is_empty())
        };
        TlsInfo {
            protocol: get("SSL_PROTOCOL").unwrap_or_default(),
            cipher: get("SSL_CIPHER").unwrap_or_default(),
            sni: get("SSL_TLS_SNI_SERVERNAME"),
            peer_subject: get("SSL_PEER_CERT_SUBJECT").or_else(|| get("SSL_CLIENT_S_DN")),
            peer_hash: get("SSL_PEER_CERT_HASH"),
        }
    }

    /// TLS already active from the start (implicit TLS: tls-wrap -i,
    /// s6-tlsd, sslserver without -n): SSL_PROTOCOL is in the environment.
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Option<TlsInfo> {
        let names = ["SSL_PROTOCOL", "SSL_CIPHER", "SSL_TLS_SNI_SERVERNAME", "SSL_PEER_CERT_SUBJECT", "SSL_CLIENT_S_DN", "SSL_PEER_CERT_HASH"];
        let items: Vec<(String, Option<String>)> = names.iter().map(|n| (n.to_string(), get(n))).collect();
        let info = TlsInfo::from_items(&items);
        (!info.protocol.is_empty()).then_some(info)
    }

    /// A client certificate was presented and verified (tls-wrap and s6
    /// report one only when it verified against CAFILE/CADIR).
    pub fn client_cert_verified(&self) -> bool {
        self.peer_subject.is_some() || self.peer_hash.is_some()
    }

    /// The comment for the Received header, e.g.
    /// `using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384`.
    pub fn received_comment(&self) -> String {
        format!("using {} with cipher {}", clean(&self.protocol), clean(&self.cipher))
    }

    /// The attribute block's TLS names (doc/PROTOCOLS.md).
    pub fn attrs(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("TLS_PROTOCOL", self.protocol.clone()), ("TLS_CIPHER", self.cipher.clone())];
        if let Some(p) = &self.peer_subject {
            v.push(("TLS_PEER", p.clone()));
        }
        v
    }
}

/// Printable ASCII only, for header text.
fn clean(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_graphic()).take(100).collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockError {
    /// No terminating empty item.
    Unterminated,
    /// An empty name, a name with `=`... or an item that is not UTF-8.
    BadItem,
    TooLong,
}

/// Parse `KEY=VALUE\0KEY\0...\0\0` into items; `KEY` alone means unset.
pub fn parse_block(b: &[u8]) -> Result<Vec<(String, Option<String>)>, BlockError> {
    if b.len() > MAX_BLOCK {
        return Err(BlockError::TooLong);
    }
    let body = b.strip_suffix(b"\0").ok_or(BlockError::Unterminated)?;
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let body = body.strip_suffix(b"\0").ok_or(BlockError::Unterminated)?;
    let mut items = Vec::new();
    for item in body.split(|&c| c == 0) {
        let s = std::str::from_utf8(item).map_err(|_| BlockError::BadItem)?;
        let (k, v) = match s.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (s, None),
        };
        if k.is_empty() || !k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            return Err(BlockError::BadItem);
        }
        items.push((k.to_owned(), v));
    }
    Ok(items)
}

/// Why the UCSPI-TLS fds are unusable.
#[derive(Debug)]
pub struct SetupError(pub String);

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why TLS did not start.
#[derive(Debug)]
pub enum StartError {
    /// EOF on the control fd with no data: the handshake failed.
    HandshakeFailed,
    Timeout,
    Block(BlockError),
    Io(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::HandshakeFailed => f.write_str("TLS handshake failed"),
            StartError::Timeout => f.write_str("timeout waiting for the TLS handshake"),
            StartError::Block(e) => write!(f, "bad TLS facts from the UCSPI-TLS server: {e:?}"),
            StartError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// The three UCSPI-TLS fds, checked and owned.
#[derive(Debug)]
pub struct UcspiTls {
    ctl: OwnedFd,
    rd: OwnedFd,
    wr: OwnedFd,
}

impl UcspiTls {
    /// Ok(None) when SSLCTLFD is unset (no UCSPI-TLS server in front).
    /// The fds must be distinct, above 2 and open; they are made
    /// close-on-exec so that programs we run (queue-inject, checkpassword)
    /// do not keep them open.
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<UcspiTls>, SetupError> {
        let Some(ctl) = get("SSLCTLFD") else { return Ok(None) };
        let num = |name: &str, v: Option<String>| -> Result<i32, SetupError> {
            let v = v.ok_or_else(|| SetupError(format!("SSLCTLFD is set but {name} is not")))?;
            match v.parse::<i32>() {
                Ok(n) if n > 2 && v.bytes().all(|c| c.is_ascii_digit()) => Ok(n),
                _ => Err(SetupError(format!("bad {name}: {v}"))),
            }
        };
        let c = num("SSLCTLFD", Some(ctl))?;
        let r = num("SSLREADFD", get("SSLREADFD"))?;
        let w = num("SSLWRITEFD", get("SSLWRITEFD"))?;
        if c == r || c == w || r == w {
            return Err(SetupError("SSLCTLFD, SSLREADFD and SSLWRITEFD must differ".into()));
        }
        let take = |name: &str, n: i32| -> Result<OwnedFd, SetupError> {
            let f = crate::sys::take_fd(n).map_err(|e| SetupError(format!("{name}={n}: {e}")))?;
            let fd = OwnedFd::from(f);
            fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|e| SetupError(format!("{name}={n}: {e}")))?;
            Ok(fd)
        };
        Ok(Some(UcspiTls { ctl: take("SSLCTLFD", c)?, rd: take("SSLREADFD", r)?, wr: take("SSLWRITEFD", w)? }))
    }

    /// Ask for TLS. The caller has flushed its `220` and reads nothing more
    /// from fd 0 before this returns. `Y` (want_info) or `y`; then fd 0/1
    /// are the TLS pipes. On error the session cannot go on in plaintext
    /// (the client is in its handshake): log and close.
    pub fn start(self, want_info: bool, timeout: Duration) -> Result<Option<TlsInfo>, StartError> {
        let UcspiTls { ctl, rd, wr } = self;
        let mut ctl = std::fs::File::from(ctl);
        ctl.write_all(if want_info { b"Y" } else { b"y" }).map_err(StartError::Io)?;
        let info = if want_info {
            let block = read_block(&mut ctl, timeout)?;
            Some(TlsInfo::from_items(&parse_block(&block).map_err(StartError::Block)?))
        } else {
            None
        };
        drop(ctl);
        nix::unistd::dup2_stdin(&rd).map_err(|e| StartError::Io(e.into()))?;
        nix::unistd::dup2_stdout(&wr).map_err(|e| StartError::Io(e.into()))?;
        Ok(info)
    }
}

/// Read up to the final `\0\0` (or EOF), at most MAX_BLOCK, within `timeout`.
fn read_block(ctl: &mut std::fs::File, timeout: Duration) -> Result<Vec<u8>, StartError> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StartError::Timeout);
        }
        let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(ctl.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(StartError::Io(e.into())),
        }
        match ctl.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err(StartError::HandshakeFailed),
            Ok(0) => return Ok(buf), // parse_block judges it
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_BLOCK {
                    return Err(StartError::Block(BlockError::TooLong));
                }
                if buf.ends_with(b"\0\0") || buf == b"\0" {
                    return Ok(buf);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StartError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_values() {
        let t = |offer, require, cert_relay| TlsPolicy { offer, require, cert_relay };
        for (v, want) in [
            (None, t(false, false, false)),
            (Some("-"), t(false, false, false)),
            (Some(""), t(true, false, false)),
            (Some("!"), t(true, true, false)),
            (Some("?"), t(true, false, true)),
            (Some("@"), t(true, true, true)),
            (Some("yes"), t(true, false, false)),
        ] {
            assert_eq!(parse_ucspitls(v), want, "{v:?}");
        }
    }

    #[test]
    fn blocks() {
        let b = b"SSL_PROTOCOL=TLSv1.3\0SSL_CIPHER=TLS_AES_128_GCM_SHA256\0SSL_TLS_SNI_SERVERNAME\0SSL_PEER_CERT_SUBJECT=/CN=a=b\0\0";
        let items = parse_block(b).unwrap();
        assert_eq!(items[2], ("SSL_TLS_SNI_SERVERNAME".to_string(), None));
        let info = TlsInfo::from_items(&items);
        assert_eq!(info.protocol, "TLSv1.3");
        assert_eq!(info.sni, None);
        assert_eq!(info.peer_subject.as_deref(), Some("/CN=a=b"));
        assert!(info.client_cert_verified());
        assert_eq!(info.received_comment(), "using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256");
        assert_eq!(parse_block(b"\0"), Ok(vec![]));
        for bad in [&b""[..], b"A=1", b"A=1\0", b"=1\0\0", b"A B=1\0\0", b"\xff=1\0\0"] {
            assert!(parse_block(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_block(&vec![b'A'; MAX_BLOCK + 1]), Err(BlockError::TooLong));
    }

    #[test]
    fn implicit_tls_from_env() {
        let env = |k: &str| match k {
            "SSL_PROTOCOL" => Some("TLSv1.2".to_string()),
            "SSL_CIPHER" => Some("ECDHE-RSA-AES128-GCM-SHA256".to_string()),
            "SSL_CLIENT_S_DN" => Some("/CN=x".to_string()),
            _ => None,
        };
        let i = TlsInfo::from_env(&env).unwrap();
        assert_eq!(i.peer_subject.as_deref(), Some("/CN=x"));
        assert_eq!(i.attrs()[2], ("TLS_PEER", "/CN=x".to_string()));
        assert_eq!(TlsInfo::from_env(&|_| None), None);
    }

    #[test]
    fn env_validation() {
        let mk = |c: &'static str, r: &'static str, w: &'static str| {
            move |k: &str| match k {
                "SSLCTLFD" => Some(c.to_string()),
                "SSLREADFD" => Some(r.to_string()),
                "SSLWRITEFD" => Some(w.to_string()),
                _ => None,
            }
        };
        assert!(UcspiTls::from_env(&|_| None).unwrap().is_none());
        for (c, r, w) in [("1", "5", "6"), ("x", "5", "6"), ("7", "7", "8"), ("-3", "5", "6"), ("900", "901", "902")] {
            assert!(UcspiTls::from_env(&mk(c, r, w)).is_err(), "{c} {r} {w}");
        }
        let partial = |k: &str| (k == "SSLCTLFD").then(|| "5".to_string());
        assert!(UcspiTls::from_env(&partial).is_err());
    }
}
