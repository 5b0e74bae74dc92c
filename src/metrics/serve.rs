//! metrics-http's one request: read the head from fd 0 within one total
//! deadline (a client that trickles bytes, slowloris, gets 408 like one
//! that sends nothing), at most `http::MAX_HEAD` octets; answer GET or HEAD
//! of the metrics path with the metrics files merged (`merge`), anything
//! else with its error status; write within the same kind of deadline;
//! exit. It reads only the files named on its command line and never
//! touches mail.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::http::{self, Method, Parsed};
use super::merge::merge;
use crate::die;

pub const PROG: &str = "metrics-http";
pub const USAGE: &str = "usage: metrics-http [-p path] [-t seconds] file...";
/// Largest metrics file served (a supervisor's is a few KB).
pub const MAX_FILE: u64 = 4 << 20;
/// Default -t.
pub const DEFAULT_TIMEOUT: u64 = 10;
/// After the response, how long the client may take to close (so that
/// unread bytes of its request never turn our close into a reset that
/// would cut the response short).
const LINGER: Duration = Duration::from_secs(1);

/// The command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// -p: the one path served (default `/metrics`).
    pub path: String,
    /// -t: the whole request head must arrive within this, and the response
    /// must be taken within it again.
    pub timeout: Duration,
    pub files: Vec<PathBuf>,
}

pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = getopts::Options::new();
    o.optopt("p", "", "", "");
    o.optopt("t", "", "", "");
    let m = o.parse(args).map_err(|e| format!("{e}; {USAGE}"))?;
    let path = m.opt_str("p").unwrap_or_else(|| "/metrics".into());
    if !path.starts_with('/') || path.contains(['?', '#']) || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("-p wants a path starting with /: {path}"));
    }
    let timeout = match m.opt_str("t") {
        None => DEFAULT_TIMEOUT,
        Some(t) => t.parse::<u64>().ok().filter(|&n| (1..=3600).contains(&n)).ok_or_else(|| format!("-t wants 1 to 3600 seconds: {t}"))?,
    };
    if m.free.is_empty() {
        return Err(USAGE.into());
    }
    Ok(Options { path, timeout: Duration::from_secs(timeout), files: m.free.iter().map(PathBuf::from).collect() })
}

/// Serve one request on fds 0 and 1; the exit code: 0 for a 200, 1 for a
/// refused or timed-out request, 111 when the connection failed.
pub fn run(opts: &Options) -> i32 {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let (rd, wr) = (stdin.as_fd(), stdout.as_fd());
    let deadline = Instant::now() + opts.timeout;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let req = loop {
        match http::parse_head(&buf) {
            Ok(Parsed::Done(r)) => break r,
            Ok(Parsed::Incomplete) => {}
            Err(e) => {
                refused(&e.to_string());
                return finish(rd, wr, &http::error_response(e), 1, opts.timeout);
            }
        }
        // At most MAX_HEAD + 1 octets in all: one more than a head may have.
        let room = http::MAX_HEAD + 1 - buf.len().min(http::MAX_HEAD);
        match read_until(rd, room, deadline) {
            Ok(Some(b)) if b.is_empty() => return 1, // the client left before a whole head
            Ok(Some(b)) => buf.extend_from_slice(&b),
            Ok(None) => {
                refused("request head not complete in time");
                let body = format!("request head not complete within {} s\n", opts.timeout.as_secs());
                return finish(rd, wr, &http::response(408, "text/plain; charset=utf-8", body.as_bytes(), false), 1, opts.timeout);
            }
            Err(_) => return 111,
        }
    };
    let head_only = req.method == Method::Head;
    let (resp, code) = match req.method {
        Method::Other => {
            refused("method not allowed");
            (http::response(405, "text/plain; charset=utf-8", b"only GET and HEAD\n", false), 1)
        }
        _ if req.path != opts.path => {
            refused("no such path");
            (http::response(404, "text/plain; charset=utf-8", format!("the metrics are at {}\n", opts.path).as_bytes(), head_only), 1)
        }
        _ => (http::response(200, http::CONTENT_TYPE, exposition(&opts.files).as_bytes(), head_only), 0),
    };
    finish(rd, wr, &resp, code, opts.timeout)
}

/// The files' expositions merged, then our own series: each file's mtime
/// (so that a stale file shows, as node_exporter's textfile collector
/// does) and whether one could not be read.
pub fn exposition(files: &[PathBuf]) -> String {
    let mut texts = Vec::new();
    let mut mtimes = Vec::new();
    let mut error = false;
    for p in files {
        match read_file(p) {
            Ok((text, mtime)) => {
                texts.push(text);
                mtimes.push((p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), mtime));
            }
            Err(e) => {
                error = true;
                die::warn(PROG, format_args!("unable to read {}: {e}", p.display()));
            }
        }
    }
    let mut own = String::from(
        "# HELP smtpd_textfile_mtime_seconds When each metrics file served was last written, unix seconds\n\
         # TYPE smtpd_textfile_mtime_seconds gauge\n",
    );
    for (name, t) in &mtimes {
        own.push_str(&format!("smtpd_textfile_mtime_seconds{{file=\"{}\"}} {t}\n", label_value(name)));
    }
    own.push_str(&format!(
        "# HELP smtpd_textfile_scrape_error 1 if a metrics file could not be read, else 0\n\
         # TYPE smtpd_textfile_scrape_error gauge\nsmtpd_textfile_scrape_error {}\n",
        u8::from(error)
    ));
    texts.push(own);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    merge(&refs)
}

fn read_file(p: &PathBuf) -> std::io::Result<(String, i64)> {
    let f = File::open(p)?;
    let mtime = f.metadata()?.mtime();
    let mut v = Vec::new();
    f.take(MAX_FILE + 1).read_to_end(&mut v)?;
    if v.len() as u64 > MAX_FILE {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {MAX_FILE} octets")));
    }
    let text = String::from_utf8(v).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))?;
    Ok((text, mtime))
}

/// A label value in the text format: `\`, `"` and LF escaped.
fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn refused(why: &str) {
    let who = std::env::var("TCPREMOTEIP").or_else(|_| std::env::var("REMOTE_ADDR")).unwrap_or_else(|_| "unknown".into());
    die::info(PROG, format_args!("{who}: refused: {why}"));
}

/// Up to `max` octets from `fd`, waiting at most until `deadline`:
/// `Ok(None)` on timeout, an empty vector at EOF.
fn read_until(fd: BorrowedFd<'_>, max: usize, deadline: Instant) -> nix::Result<Option<Vec<u8>>> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e),
        }
        let mut b = vec![0u8; max.clamp(1, 4096)];
        match nix::unistd::read(fd, &mut b) {
            Ok(n) => {
                b.truncate(n);
                return Ok(Some(b));
            }
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Write `resp` on `wr` within the time the client has to take it (the
/// write side is made non-blocking: a client that never reads cannot hold
/// this process), say we are done, and wait briefly for the client to close.
fn finish(rd: BorrowedFd<'_>, wr: BorrowedFd<'_>, resp: &[u8], code: i32, timeout: Duration) -> i32 {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(fl) = fcntl(wr, FcntlArg::F_GETFL) {
        let _ = fcntl(wr, FcntlArg::F_SETFL(OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK));
    }
    let deadline = Instant::now() + timeout;
    let mut off = 0;
    while off < resp.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return 111;
        }
        let mut fds = [PollFd::new(wr, PollFlags::POLLOUT)];
        let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return 111,
        }
        match nix::unistd::write(wr, resp.get(off..).unwrap_or_default()) {
            Ok(n) => off += n,
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
            Err(_) => return 111,
        }
    }
    // Done writing (a socket: FIN now); then let the client close first.
    let _ = nix::sys::socket::shutdown(std::os::fd::AsRawFd::as_raw_fd(&wr), nix::sys::socket::Shutdown::Write);
    let until = Instant::now() + LINGER;
    let mut drained = 0usize;
    while drained < 65536 {
        match read_until(rd, 4096, until) {
            Ok(Some(b)) if !b.is_empty() => drained += b.len(),
            _ => break,
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let a = |v: &[&str]| parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let o = a(&["-t", "5", "a.prom", "b.prom"]).unwrap();
        assert_eq!(o.path, "/metrics");
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert_eq!(o.files.len(), 2);
        assert_eq!(a(&["-p", "/m", "x"]).unwrap().path, "/m");
        assert!(a(&[]).is_err());
        assert!(a(&["-p", "metrics", "x"]).is_err());
        assert!(a(&["-t", "0", "x"]).is_err());
    }

    #[test]
    fn files_merged_with_their_mtimes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.prom");
        std::fs::write(&p, "# HELP a A.\n# TYPE a gauge\na 1\n").unwrap();
        let missing = d.path().join("gone.prom");
        let t = exposition(&[p, missing]);
        assert!(t.starts_with("# HELP a A.\n# TYPE a gauge\na 1\n"));
        assert!(t.contains("smtpd_textfile_mtime_seconds{file=\"s.prom\"} "));
        assert!(!t.contains("gone.prom"));
        assert!(t.ends_with("smtpd_textfile_scrape_error 1\n"));
    }
}
