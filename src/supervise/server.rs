//! The supervisor's one loop: poll on the listening sockets, the workers'
//! hand-off sockets, connections sending a PROXY header, the children's log
//! pipe (-s) and a self-pipe for signals; accept, check rules and limits, start a session
//! (fork+exec, or hand-off to an idle worker), reap children, enforce the
//! wall-clock limit, keep the worker pool full with back-off, reload, drain;
//! with -M and -L, read the sessions' reports (`SMTPD_STATS_FD`, counted by
//! `super::stats`) and keep the metrics textfile and the scoreboard current
//! (each written at most every `METRICS_GAP` / `SCOREBOARD_GAP`, only when
//! something changed, by a rename: no reader ever waits on this loop).
//! Single-threaded: no locks, and nothing is inherited by a child by accident
//! (every fd is close-on-exec except the ones named in `HANDOFF_FD` and
//! `SMTPD_STATS_FD`).

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::socket::{self as sock, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::config::{self, Config};
use super::log::{Level, LineSplitter, Log};
use super::privs;
use super::stats::{self, Stats};
use crate::handoff;
use crate::scoreboard;
use crate::statsfd;
use crate::proxy::{self, Header, Parsed};
use crate::tcprules::{canonical, Action, Rules};

const PROG: &str = "smtpd-supervise";
/// Most connections taken from one listening socket per turn of the loop.
const ACCEPT_BATCH: usize = 32;
/// How long a trusted peer has to send its PROXY header.
const PROXY_TIMEOUT: Duration = Duration::from_secs(10);
/// A worker that exits sooner than this without serving counts as dying at once.
const QUICK_DEATH: Duration = Duration::from_secs(1);
/// Consecutive quick deaths before restarts are spaced out.
const BACKOFF_AFTER: u32 = 3;
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// After the drain deadline's SIGKILLs, how long to wait for the last reaps.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Pause in accepting after EMFILE and similar.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Variables taken from the supervisor's own environment and never passed on.
const PRIVATE_VARS: &[&str] =
    &["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "HANDOFF_FD", "HANDOFF_MAX", "HANDOFF_FORK", statsfd::ENV_FD];
/// The scoreboard is rewritten at most this often (when something changed)...
const SCOREBOARD_GAP: Duration = Duration::from_millis(100);
/// ... and at least this often, so that its time shows the supervisor alive.
const SCOREBOARD_BEAT: Duration = Duration::from_secs(10);
/// The same for the metrics textfile.
const METRICS_GAP: Duration = Duration::from_secs(1);
const METRICS_BEAT: Duration = Duration::from_secs(30);
/// Most reports read from `SMTPD_STATS_FD` per turn of the loop, so that a
/// flood of them never holds up accepting.
const REPORT_BATCH: usize = 64;
/// The rules variable that marks a trusted PROXY sender (with -a).
pub const PROXY_VAR: &[u8] = b"PROXY";

/// Set up everything, then serve until SIGTERM; returns the exit code.
/// Every check that can fail on bad input happens before anything is bound or started.
pub fn run(cfg: Config) -> i32 {
    // Whatever we inherited above fd 2 (a shell's `exec 7<file`, a
    // leaked descriptor of whoever started us) must not reach the sessions,
    // which may run under another uid: they get only what is passed by name.
    if let Err(e) = crate::sys::cloexec_from(3) {
        crate::die::fatal(PROG, crate::die::EXIT_TEMP, format!("unable to mark inherited fds close-on-exec: {e}"));
    }
    let rules = config::load_rules(&cfg).unwrap_or_else(|e| crate::die::fatal(PROG, crate::die::EXIT_PERM, e));
    let env_file = config::load_env(&cfg).unwrap_or_else(|e| crate::die::fatal(PROG, crate::die::EXIT_PERM, e));
    let log = if cfg.syslog {
        Log::syslog(PROG).unwrap_or_else(|e| crate::die::fatal(PROG, crate::die::EXIT_TEMP, format!("unable to connect to /dev/log: {e}")))
    } else {
        Log::stderr(PROG)
    };

    // Signals arrive as bytes on a self-pipe (see sys::signal_pipe for why not a signalfd).
    let sigs = [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGUSR1];
    let sigfd = crate::sys::signal_pipe(&sigs.map(|s| s as i32))
        .unwrap_or_else(|e| crate::die::fatal(PROG, crate::die::EXIT_TEMP, format!("unable to set signal handlers: {e}")));

    let listeners = listen(&cfg).unwrap_or_else(|e| crate::die::fatal(PROG, crate::die::EXIT_TEMP, e));
    if cfg.print_port {
        if let Some(a) = listeners.first().and_then(|l| l.local_addr().ok()) {
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{}", a.port());
            let _ = out.flush();
        }
    }
    if let (Some(uid), Some(gid)) = (cfg.uid, cfg.gid) {
        if let Err(e) = privs::drop_to(uid, gid) {
            crate::die::fatal(PROG, crate::die::EXIT_TEMP, e);
        }
    }
    let log_pipe = if cfg.syslog {
        match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK) {
            Ok((r, w)) => {
                // The write end is given to children as stderr, and must block there.
                let _ = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()));
                Some((r, w))
            }
            Err(e) => crate::die::fatal(PROG, crate::die::EXIT_TEMP, format!("unable to create log pipe: {e}")),
        }
    } else {
        None
    };

    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .unwrap_or_else(|e| crate::die::fatal(PROG, crate::die::EXIT_TEMP, format!("unable to open /dev/null: {e}")));
    let base_env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| !PRIVATE_VARS.iter().any(|p| k.as_bytes() == p.as_bytes()))
        .collect();
    // The report channel: only when someone reads the figures (-M, -L), so
    // that without them children get exactly what tcpserver would give.
    let stats_chan = if cfg.metrics_file.is_some() || cfg.scoreboard_file.is_some() {
        Some(statsfd::pair().unwrap_or_else(|e| crate::die::fatal(PROG, crate::die::EXIT_TEMP, format!("unable to create the report socket: {e}"))))
    } else {
        None
    };
    let port = listeners.first().and_then(|l| l.local_addr().ok()).map_or(cfg.port, |a| a.port());
    let start_wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let stats = cfg.metrics_file.as_ref().map(|_| Stats::new(port, start_wall));
    let tag = std::path::Path::new(&cfg.prog[0])
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "child".into());
    let mut s = Server {
        log,
        listeners,
        sigfd,
        rules,
        env_file,
        base_env,
        children: HashMap::new(),
        pending: Vec::new(),
        waiting: VecDeque::new(),
        per_ip: HashMap::new(),
        served: 0,
        restarts: 0,
        gen: 0,
        quick_deaths: 0,
        backoff_until: None,
        draining: None,
        killed_all: None,
        next_status: cfg.status_interval.map(|i| Instant::now() + i),
        accept_pause_until: None,
        log_pipe,
        splitter: LineSplitter::default(),
        tag,
        devnull,
        // SIGPIPE too: std ignores it in this process, and an ignored signal stays ignored across exec.
        caught: sigs.iter().map(|&s| s as i32).chain([libc::SIGPIPE]).collect(),
        stats_chan,
        stats,
        start_wall,
        board: Publish::new(),
        metrics: Publish::new(),
        publish_warned: false,
        cfg,
    };
    s.start();
    // A file that cannot be written at all is a mistake in the set-up: say
    // so now. Later failures (a full disk) are warnings: figures never stop mail.
    if let Some(e) = s.publish_now(true) {
        crate::die::fatal(PROG, crate::die::EXIT_TEMP, e);
    }
    s.serve()
}

/// `prog` as execvp would find it: itself when it names a path (has a '/'),
/// else the first executable file of that name in `path` (the child's PATH,
/// or ours when it has none).
fn resolve(prog: &OsString, path: Option<&[u8]>) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if prog.as_bytes().contains(&b'/') {
        return Some(prog.into());
    }
    let ours = std::env::var_os("PATH").map(|p| p.into_vec());
    let path = path.map(<[u8]>::to_vec).or(ours).unwrap_or_else(|| b"/usr/local/bin:/usr/bin:/bin".to_vec());
    path.split(|&b| b == b':').find_map(|dir| {
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        let p = std::path::Path::new(std::ffi::OsStr::from_bytes(dir)).join(prog);
        let m = std::fs::metadata(&p).ok()?;
        (m.is_file() && m.permissions().mode() & 0o111 != 0).then_some(p)
    })
}

/// Bind (or take systemd's sockets) and listen; non-blocking, close-on-exec.
fn listen(cfg: &Config) -> Result<Vec<TcpListener>, String> {
    let fds = crate::systemd::listen_fds()?;
    if !fds.is_empty() {
        let mut v = Vec::new();
        for fd in fds {
            let l = TcpListener::from(fd);
            l.set_nonblocking(true).map_err(|e| format!("socket from LISTEN_FDS: {e}"))?;
            v.push(l);
        }
        return Ok(v);
    }
    let addrs: Vec<SocketAddr> = match cfg.host.as_str() {
        "0" => vec![
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), cfg.port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), cfg.port),
        ],
        h => match h.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, cfg.port)],
            Err(_) => (h, cfg.port)
                .to_socket_addrs()
                .map_err(|e| format!("unable to resolve {h}: {e}"))?
                .take(1)
                .collect(),
        },
    };
    let mut last = String::from("no address to bind");
    for a in addrs {
        match bind_one(a, cfg.backlog) {
            Ok(l) => return Ok(vec![l]),
            // "0": no IPv6 on this host; fall back to IPv4.
            Err(Errno::EAFNOSUPPORT) | Err(Errno::EADDRNOTAVAIL) if cfg.host == "0" && a.is_ipv6() => continue,
            Err(e) => last = format!("unable to bind {a}: {}", io::Error::from(e)),
        }
        break;
    }
    Err(last)
}

fn bind_one(a: SocketAddr, backlog: i32) -> Result<TcpListener, Errno> {
    let fam = if a.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = sock::socket(fam, SockType::Stream, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)?;
    sock::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    match a {
        SocketAddr::V4(v4) => sock::bind(fd.as_raw_fd(), &SockaddrIn::from(v4))?,
        SocketAddr::V6(v6) => {
            // Dual stack for "::" (and so for "0"): IPv4 clients appear mapped.
            if v6.ip().is_unspecified() {
                sock::setsockopt(&fd, sockopt::Ipv6V6Only, &false)?;
            }
            sock::bind(fd.as_raw_fd(), &SockaddrIn6::from(v6))?
        }
    }
    sock::listen(&fd, Backlog::new(backlog).unwrap_or(Backlog::MAXCONN))?;
    Ok(TcpListener::from(fd))
}

struct Server {
    cfg: Config,
    log: Log,
    listeners: Vec<TcpListener>,
    sigfd: OwnedFd,
    rules: Option<Rules>,
    env_file: Vec<(Vec<u8>, Vec<u8>)>,
    base_env: Vec<(OsString, OsString)>,
    children: HashMap<i32, Child>,
    /// Trusted peers whose PROXY header has not fully arrived.
    pending: Vec<PendingProxy>,
    /// Hand-off: admitted connections waiting for an idle worker.
    waiting: VecDeque<Ready>,
    per_ip: HashMap<IpAddr, usize>,
    served: u64,
    restarts: u64,
    /// Bumped by SIGHUP; idle workers of an older generation are retired.
    gen: u64,
    quick_deaths: u32,
    backoff_until: Option<Instant>,
    /// SIGTERM received: the drain deadline.
    draining: Option<Instant>,
    /// When the drain deadline's SIGKILLs went out.
    killed_all: Option<Instant>,
    next_status: Option<Instant>,
    accept_pause_until: Option<Instant>,
    log_pipe: Option<(OwnedFd, OwnedFd)>,
    splitter: LineSplitter,
    tag: String,
    /// fd 0 and 1 of a worker (it takes its connection over HANDOFF_FD).
    devnull: OwnedFd,
    /// The signals we handle, reset to their defaults in a child before exec.
    caught: Vec<i32>,
    /// The report channel (ours, the children's), with -M or -L.
    stats_chan: Option<(OwnedFd, OwnedFd)>,
    /// The counters, with -M.
    stats: Option<Stats>,
    start_wall: f64,
    /// When the scoreboard (-L) and the metrics file (-M) were last written.
    board: Publish,
    metrics: Publish,
    /// A write of either file failed (warned once until one succeeds).
    publish_warned: bool,
}

/// When a file that the loop keeps current was written, and whether what
/// it shows has changed since.
struct Publish {
    last: Option<Instant>,
    dirty: bool,
}

impl Publish {
    fn new() -> Publish {
        Publish { last: None, dirty: true }
    }

    /// When the next write is due: `gap` after the last one if something
    /// changed, `beat` after it anyway.
    fn due(&self, gap: Duration, beat: Duration) -> Option<Instant> {
        match self.last {
            None => Some(Instant::now()),
            Some(t) => Some(t + if self.dirty { gap } else { beat }),
        }
    }
}

struct Child {
    worker: Option<WorkerState>,
    session: Option<Session>,
    started: Instant,
}

struct WorkerState {
    /// Our end of the hand-off socket; `None` once closed (retired or gone).
    chan: Option<OwnedFd>,
    retired: bool,
    gen: u64,
    served: u64,
    /// When it last became idle (for retiring surplus workers).
    idle_since: Instant,
}

/// How long an idle worker beyond twice -w is kept before it is retired (as
/// Postfix's max_idle): a burst of concurrent sessions leaves workers that the
/// next burst reuses, instead of a fork and exec for each of its sessions.
const IDLE_KEEP: Duration = Duration::from_secs(30);

struct Session {
    ip: IpAddr,
    port: u16,
    started: Instant,
    killed: bool,
    /// When tls-wrap reported its handshake (the scoreboard's `tls` state).
    tls_since: Option<Instant>,
}

struct PendingProxy {
    conn: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
}

struct Ready {
    conn: TcpStream,
    ip: IpAddr,
    port: u16,
    since: Instant,
    env: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    desc: String,
}

#[derive(Clone, Copy)]
enum Ev {
    Sig,
    Listen(usize),
    Chan(i32),
    Proxy(usize),
    LogPipe,
    Reports,
}

impl Server {
    fn info(&self, msg: &str) {
        if self.cfg.verbosity >= 2 {
            self.log.line(Level::Info, msg);
        }
    }

    fn warn(&self, msg: &str) {
        if self.cfg.verbosity >= 1 {
            self.log.line(Level::Warning, &format!("warning: {msg}"));
        }
    }

    fn start(&mut self) {
        let addrs: Vec<String> =
            self.listeners.iter().filter_map(|l| l.local_addr().ok()).map(|a| a.to_string()).collect();
        let mode = if self.cfg.handoff {
            format!("handoff workers {} max_use {}{}", self.cfg.workers, self.cfg.max_use, if self.cfg.fork { " fork" } else { "" })
        } else {
            "classic".into()
        };
        let rules = self.rules.as_ref().map(|r| r.len()).unwrap_or(0);
        self.fill_pool();
        self.info(&format!(
            "start version {} listen {} mode {} limit {} per_ip {} uid {} gid {} rules {}",
            env!("CARGO_PKG_VERSION"),
            addrs.join(","),
            mode,
            self.cfg.limit,
            self.cfg.per_ip,
            nix::unistd::geteuid(),
            nix::unistd::getegid(),
            rules
        ));
        self.privilege_notes();
        if let Err(e) = crate::systemd::notify("READY=1") {
            self.warn(&format!("sd_notify READY=1: {e}"));
        }
    }

    /// What the start-up log says about privileges, after the drop. One
    /// model for TLS (tls-wrap(8), PRIVILEGES): the supervisor stays root
    /// only to start tls-wrap, which reads its key as root, drops to
    /// TLS_UID/TLS_GID before reading the network, and runs the session
    /// program under its own -u/-g.
    fn privilege_notes(&self) {
        const MODEL: &str = "tls-wrap(8), PRIVILEGES";
        let euid = nix::unistd::geteuid();
        match (euid.is_root(), self.cfg.tls_wrap) {
            (true, Some(true)) => self.info(&format!(
                "running tls-wrap as root: it reads its key, drops to TLS_UID/TLS_GID before reading the network \
                 and runs its program under its own -u/-g ({MODEL})"
            )),
            (true, Some(false)) => self.warn(&format!(
                "tls-wrap would run its program as root: give tls-wrap -u and -g \
                 (smtpd-supervise stays root only to start it; {MODEL})"
            )),
            (true, None) => self.warn(&format!(
                "running sessions as root: use -u, -U or the service's User= \
                 (with TLS, run tls-wrap as the program, with its own -u and -g, instead; {MODEL})"
            )),
            (false, Some(_)) => self.warn(&format!(
                "running tls-wrap as uid {euid}: it can read no root-only key and start its program under no other uid; \
                 run smtpd-supervise as root without -u/-U and give tls-wrap -u and -g ({MODEL})"
            )),
            (false, None) => {}
        }
    }

    fn serve(&mut self) -> i32 {
        loop {
            let now = Instant::now();
            if let Some(deadline) = self.draining {
                if self.children.is_empty() {
                    self.info("end: all sessions done");
                    self.on_reports();
                    self.publish(true);
                    return 0;
                }
                if self.killed_all.is_none() && now >= deadline {
                    self.kill_all();
                }
                if let Some(t) = self.killed_all {
                    if now >= t + KILL_GRACE {
                        self.warn(&format!("{} children did not die after SIGKILL; exiting", self.children.len()));
                        self.publish(true);
                        return 111;
                    }
                }
            }
            let events = match self.wait_events() {
                Ok(e) => e,
                Err(e) => {
                    self.log.line(Level::Fatal, &format!("fatal: poll: {e}"));
                    return 111;
                }
            };
            let changed = !events.is_empty();
            for ev in events {
                match ev {
                    Ev::Sig => self.on_signals(),
                    Ev::Listen(i) => self.accept_on(i),
                    Ev::Chan(pid) => self.on_chan(pid),
                    Ev::Proxy(i) => self.on_proxy(i),
                    Ev::LogPipe => self.on_log_pipe(),
                    Ev::Reports => self.on_reports(),
                }
            }
            self.timers();
            self.dispatch();
            self.fill_pool();
            if changed {
                self.board.dirty = true;
                self.metrics.dirty = true;
            }
            self.publish(false);
        }
    }

    fn wait_events(&mut self) -> io::Result<Vec<Ev>> {
        let can_accept = self.can_accept();
        let mut tags = Vec::new();
        let mut fds = Vec::new();
        fds.push(PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN));
        tags.push(Ev::Sig);
        if can_accept {
            for (i, l) in self.listeners.iter().enumerate() {
                fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                tags.push(Ev::Listen(i));
            }
        }
        for (pid, c) in &self.children {
            if let Some(ch) = c.worker.as_ref().and_then(|w| w.chan.as_ref()) {
                fds.push(PollFd::new(ch.as_fd(), PollFlags::POLLIN));
                tags.push(Ev::Chan(*pid));
            }
        }
        for (i, p) in self.pending.iter().enumerate() {
            fds.push(PollFd::new(p.conn.as_fd(), PollFlags::POLLIN));
            tags.push(Ev::Proxy(i));
        }
        if let Some((r, _)) = &self.log_pipe {
            fds.push(PollFd::new(r.as_fd(), PollFlags::POLLIN));
            tags.push(Ev::LogPipe);
        }
        if let Some((ours, _)) = &self.stats_chan {
            fds.push(PollFd::new(ours.as_fd(), PollFlags::POLLIN));
            tags.push(Ev::Reports);
        }
        let timeout = self.next_timeout();
        let ms = timeout.map(|d| d.as_millis().min(60_000) as u16 + 1).unwrap_or(60_000);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
        let mut out = Vec::new();
        // Proxy events are handled last and in reverse so removals keep indexes valid.
        let mut proxies = Vec::new();
        for (pfd, tag) in fds.iter().zip(tags) {
            if pfd.revents().map(|r| !r.is_empty()).unwrap_or(false) {
                match tag {
                    Ev::Proxy(_) => proxies.push(tag),
                    _ => out.push(tag),
                }
            }
        }
        proxies.reverse();
        out.extend(proxies);
        Ok(out)
    }

    fn next_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut t: Option<Instant> = None;
        // Only times still ahead: what is already due is done in this turn of
        // the loop, and a stale one must not make poll spin.
        let mut at = |i: Instant| {
            if i > now {
                t = Some(t.map_or(i, |x| x.min(i)));
            }
        };
        if let Some(limit) = self.cfg.session_limit {
            for c in self.children.values() {
                if let Some(s) = c.session.as_ref().filter(|s| !s.killed) {
                    at(s.started + limit);
                }
            }
        }
        for p in &self.pending {
            at(p.deadline);
        }
        if let Some(n) = self.next_status {
            at(n);
        }
        if let Some(b) = self.backoff_until {
            at(b);
        }
        if let Some(d) = self.draining {
            at(self.killed_all.map_or(d, |k| k + KILL_GRACE));
        }
        if let Some(p) = self.accept_pause_until {
            at(p);
        }
        if let Some(r) = self.surplus_due() {
            at(r);
        }
        if self.cfg.scoreboard_file.is_some() {
            if let Some(d) = self.board.due(SCOREBOARD_GAP, SCOREBOARD_BEAT) {
                at(d.max(now + Duration::from_millis(1)));
            }
        }
        if self.cfg.metrics_file.is_some() {
            if let Some(d) = self.metrics.due(METRICS_GAP, METRICS_BEAT) {
                at(d.max(now + Duration::from_millis(1)));
            }
        }
        t.map(|i| i.saturating_duration_since(now))
    }

    // ---- counting

    fn sessions(&self) -> usize {
        self.children.values().filter(|c| c.session.is_some()).count() + self.pending.len() + self.waiting.len()
    }

    /// When the longest-idle surplus worker is due to be retired.
    fn surplus_due(&self) -> Option<Instant> {
        let mut idle: Vec<Instant> = self
            .children
            .values()
            .filter(|c| c.session.is_none())
            .filter_map(|c| c.worker.as_ref().filter(|w| w.chan.is_some() && !w.retired).map(|w| w.idle_since))
            .collect();
        if idle.len() <= 2 * self.cfg.workers {
            return None;
        }
        idle.sort();
        idle.first().map(|&i| i + IDLE_KEEP)
    }

    fn idle_workers(&self) -> usize {
        self.children
            .values()
            .filter(|c| c.session.is_none() && c.worker.as_ref().is_some_and(|w| w.chan.is_some()))
            .count()
    }

    fn can_accept(&self) -> bool {
        if self.draining.is_some() || self.accept_pause_until.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        if self.sessions() >= self.cfg.limit {
            return false;
        }
        !self.cfg.handoff || self.idle_workers() > self.waiting.len() + self.pending.len()
    }

    fn status_short(&self) {
        self.info(&format!("status: {}/{}", self.sessions(), self.cfg.limit));
    }

    fn status_long(&self) {
        let line = format!(
            "status: {}/{} idle {} served {} restarts {}",
            self.sessions(),
            self.cfg.limit,
            self.idle_workers(),
            self.served,
            self.restarts
        );
        if self.cfg.verbosity >= 1 {
            self.log.line(Level::Info, &line);
        }
        let _ = crate::systemd::notify(&format!("STATUS={line}"));
    }

    fn ip_up(&mut self, ip: IpAddr) {
        *self.per_ip.entry(ip).or_insert(0) += 1;
    }

    fn ip_down(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    // ---- connections

    fn accept_on(&mut self, i: usize) {
        for _ in 0..ACCEPT_BATCH {
            if !self.can_accept() {
                return;
            }
            let Some(l) = self.listeners.get(i) else { return };
            match l.accept() {
                Ok((conn, peer)) => self.new_conn(conn, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    self.warn(&format!("accept: {e}; pausing {} ms", ACCEPT_PAUSE.as_millis()));
                    self.accept_pause_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    fn new_conn(&mut self, conn: TcpStream, peer: SocketAddr) {
        // Accepted sockets do not inherit O_NONBLOCK on Linux; say so anyway.
        let _ = conn.set_nonblocking(false);
        if self.cfg.nodelay {
            let _ = conn.set_nodelay(true);
        }
        if self.cfg.proxy && self.trusted_proxy(canonical(peer.ip())) {
            if conn.set_nonblocking(true).is_ok() {
                self.pending.push(PendingProxy { conn, peer, deadline: Instant::now() + PROXY_TIMEOUT });
            }
            return;
        }
        let Ok(local) = conn.local_addr() else { return };
        self.admit(conn, local, peer);
    }

    fn trusted_proxy(&self, ip: IpAddr) -> bool {
        match self.rules.as_ref().and_then(|r| r.lookup(ip)) {
            Some(Action::Allow(vars)) => vars.iter().any(|(k, v)| k == PROXY_VAR && v != b"0"),
            _ => false,
        }
    }

    /// Rules, per-address limit, banner, then start the session.
    fn admit(&mut self, mut conn: TcpStream, local: SocketAddr, peer: SocketAddr) {
        let ip = canonical(peer.ip());
        let lip = canonical(local.ip());
        let lname = self.cfg.local_name.clone().unwrap_or_default();
        let desc = format!("{lname}:{lip}:{} :{ip}::{}", local.port(), peer.port());
        let vars = match self.rules.as_ref().and_then(|r| r.lookup(ip)) {
            Some(Action::Deny) => {
                self.info(&format!("deny 0 {desc}"));
                self.count_conn(stats::Conn::Denied);
                return;
            }
            Some(Action::Allow(v)) => v.clone(),
            None => Vec::new(),
        };
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.cfg.per_ip {
            self.warn(&format!("limit 0 {desc}: {} sessions from {ip}", self.cfg.per_ip));
            self.count_conn(stats::Conn::PerIpLimit);
            return;
        }
        if let Some(b) = &self.cfg.banner {
            let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
            if conn.write_all(b).is_err() {
                return;
            }
            let _ = conn.set_write_timeout(None);
        }
        let mut env: Vec<(Vec<u8>, Option<Vec<u8>>)> = vec![
            (b"PROTO".to_vec(), Some(if ip.is_ipv4() { b"TCP".to_vec() } else { b"TCP6".to_vec() })),
            (b"TCPLOCALIP".to_vec(), Some(lip.to_string().into_bytes())),
            (b"TCPLOCALPORT".to_vec(), Some(local.port().to_string().into_bytes())),
            (b"TCPLOCALHOST".to_vec(), self.cfg.local_name.clone().map(String::into_bytes)),
            (b"TCPREMOTEIP".to_vec(), Some(ip.to_string().into_bytes())),
            (b"TCPREMOTEPORT".to_vec(), Some(peer.port().to_string().into_bytes())),
            (b"TCPREMOTEHOST".to_vec(), None),
            (b"TCPREMOTEINFO".to_vec(), None),
        ];
        for (k, v) in vars {
            if self.cfg.proxy && k == PROXY_VAR {
                continue;
            }
            match env.iter_mut().find(|(ek, _)| *ek == k) {
                Some(slot) => slot.1 = Some(v),
                None => env.push((k, Some(v))),
            }
        }
        self.ip_up(ip);
        self.count_conn(stats::Conn::Accepted);
        if self.cfg.handoff {
            self.waiting.push_back(Ready { conn, ip, port: peer.port(), since: Instant::now(), env, desc });
            self.dispatch();
        } else {
            self.spawn_classic(conn, ip, peer.port(), env, desc);
        }
    }

    fn on_proxy(&mut self, i: usize) {
        let Some(p) = self.pending.get(i) else { return };
        let mut buf = vec![0u8; proxy::MAX_HEADER];
        let n = match p.conn.peek(&mut buf) {
            Ok(0) => {
                self.pending.swap_remove(i);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => {
                self.pending.swap_remove(i);
                return;
            }
        };
        match proxy::parse_header(&buf[..n]) {
            Ok(Parsed::Incomplete) => {}
            Ok(Parsed::Done { header, len }) => {
                let mut p = self.pending.swap_remove(i);
                let mut skip = vec![0u8; len];
                if io::Read::read_exact(&mut p.conn, &mut skip).is_err() || p.conn.set_nonblocking(false).is_err() {
                    return;
                }
                let (local, peer) = match header {
                    Header::Proxied { src, dst } => (dst, src),
                    Header::Local => match p.conn.local_addr() {
                        Ok(l) => (l, p.peer),
                        Err(_) => return,
                    },
                };
                self.admit(p.conn, local, peer);
            }
            Err(e) => {
                let p = self.pending.swap_remove(i);
                self.warn(&format!("PROXY from {}: {e}; dropped", canonical(p.peer.ip())));
            }
        }
    }

    fn spawn_classic(&mut self, conn: TcpStream, ip: IpAddr, port: u16, env: Vec<(Vec<u8>, Option<Vec<u8>>)>, desc: String) {
        let fd = conn.as_raw_fd();
        match self.spawn(&env, &[(fd, 0), (fd, 1)]) {
            Ok(pid) => {
                drop(conn);
                let now = Instant::now();
                self.children.insert(
                    pid,
                    Child { worker: None, session: Some(Session { ip, port, started: now, killed: false, tls_since: None }), started: now },
                );
                self.info(&format!("pid {pid} from {ip}"));
                self.info(&format!("ok {pid} {desc}"));
                self.status_short();
            }
            Err(e) => {
                self.warn(&format!("unable to run {}: {e}", self.tag));
                self.ip_down(ip);
            }
        }
    }

    /// Start prog args... with the base environment, the -e file and `extra`
    /// (None removes a variable), `fds` dup2'd in the child (fd 0 and 1 are
    /// /dev/null unless given), stderr the log pipe or ours, in its own
    /// process group (so that a kill reaches what it started). Returns as
    /// soon as the child's execve has begun (it shares our memory until
    /// then: no copy), not when the program runs: a busy machine must not
    /// stall the accept loop (see sys::fork_exec).
    fn spawn(&self, extra: &[(Vec<u8>, Option<Vec<u8>>)], fds: &[(i32, i32)]) -> io::Result<i32> {
        let mut env: Vec<(Vec<u8>, Vec<u8>)> =
            self.base_env.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect();
        let mut set = |k: &[u8], v: Option<&[u8]>| {
            env.retain(|(ek, _)| ek != k);
            if let Some(v) = v {
                env.push((k.to_vec(), v.to_vec()));
            }
        };
        for (k, v) in &self.env_file {
            set(k, Some(v));
        }
        for (k, v) in extra {
            set(k, v.as_deref());
        }
        let stats_fd = self.stats_chan.as_ref().map(|(_, theirs)| theirs.as_raw_fd());
        if let Some(fd) = stats_fd {
            set(statsfd::ENV_FD.as_bytes(), Some(fd.to_string().as_bytes()));
        }
        let path_var = env.iter().find(|(k, _)| k == b"PATH").map(|(_, v)| v.clone());
        let prog = resolve(&self.cfg.prog[0], path_var.as_deref())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{}: not found", self.cfg.prog[0].to_string_lossy())))?;
        let items: Vec<Vec<u8>> = env.into_iter().map(|(mut k, v)| {
            k.push(b'=');
            k.extend_from_slice(&v);
            k
        }).collect();
        let argv: Vec<&[u8]> = self.cfg.prog.iter().map(|a| a.as_bytes()).collect();
        let exec = crate::sys::Exec::new(prog.as_os_str().as_bytes(), &argv, &items, &format!("{PROG}: warning: unable to run {}: ", self.tag))?;
        let null = self.devnull.as_raw_fd();
        let mut all: Vec<(i32, i32)> = Vec::with_capacity(3 + fds.len());
        for to in [0, 1] {
            if !fds.iter().any(|&(_, t)| t == to) {
                all.push((null, to));
            }
        }
        all.extend_from_slice(fds);
        if let Some(fd) = stats_fd {
            all.push((fd, fd));
        }
        let err = self.log_pipe.as_ref().map_or(2, |(_, w)| w.as_raw_fd());
        all.push((err, 2));
        crate::sys::fork_exec(&exec, &all, true, &self.caught)
    }

    // ---- hand-off workers

    fn spawn_worker(&mut self) -> io::Result<()> {
        let (ours, theirs) = handoff::pair()?;
        let fd = theirs.as_raw_fd();
        let mut extra = vec![
            (handoff::ENV_FD.as_bytes().to_vec(), Some(fd.to_string().into_bytes())),
            (handoff::ENV_MAX.as_bytes().to_vec(), Some(self.cfg.max_use.to_string().into_bytes())),
        ];
        if self.cfg.fork {
            extra.push((handoff::ENV_FORK.as_bytes().to_vec(), Some(b"1".to_vec())));
        }
        let pid = self.spawn(&extra, &[(fd, fd)])?;
        drop(theirs);
        self.children.insert(
            pid,
            Child {
                worker: Some(WorkerState { chan: Some(ours), retired: false, gen: self.gen, served: 0, idle_since: Instant::now() }),
                session: None,
                started: Instant::now(),
            },
        );
        Ok(())
    }

    fn fill_pool(&mut self) {
        if !self.cfg.handoff || self.draining.is_some() {
            return;
        }
        if self.backoff_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.backoff_until = None;
        while self.idle_workers() < self.cfg.workers {
            // While the program keeps dying at once, one on probation at a time.
            if self.quick_deaths >= BACKOFF_AFTER && self.idle_workers() > 0 {
                return;
            }
            if let Err(e) = self.spawn_worker() {
                self.warn(&format!("unable to start worker {}: {e}", self.tag));
                self.quick_death();
                return;
            }
        }
    }

    fn quick_death(&mut self) {
        self.quick_deaths += 1;
        if self.quick_deaths >= BACKOFF_AFTER {
            let exp = (self.quick_deaths - BACKOFF_AFTER).min(10);
            let delay = (Duration::from_millis(100) * (1u32 << exp)).min(BACKOFF_MAX);
            self.backoff_until = Some(Instant::now() + delay);
            if self.cfg.verbosity >= 1 {
                self.log.line(
                    Level::Warning,
                    &format!(
                        "warning: ALERT: {} keeps dying at once ({} times in a row); next start in {} ms",
                        self.tag,
                        self.quick_deaths,
                        delay.as_millis()
                    ),
                );
            }
        }
    }

    /// An idle worker, the one that has served most first: with -m above 1
    /// the warm ones are reused and surplus fresh ones stay spare.
    fn pick_idle(&self) -> Option<i32> {
        self.children
            .iter()
            .filter(|(_, c)| c.session.is_none() && c.worker.as_ref().is_some_and(|w| w.chan.is_some() && !w.retired))
            .max_by_key(|(pid, c)| (c.worker.as_ref().map_or(0, |w| w.served), -**pid))
            .map(|(pid, _)| *pid)
    }

    fn dispatch(&mut self) {
        while !self.waiting.is_empty() {
            let Some(pid) = self.pick_idle() else { return };
            let Some(r) = self.waiting.pop_front() else { return };
            let env: Vec<(&[u8], Option<&[u8]>)> = r.env.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();
            let data = handoff::encode_env(&env);
            let Some(c) = self.children.get_mut(&pid) else { return };
            let Some(w) = c.worker.as_mut() else { return };
            let Some(chan) = w.chan.as_ref() else { return };
            match handoff::send_session(chan.as_fd(), r.conn.as_fd(), &data) {
                Ok(()) => {
                    c.session = Some(Session { ip: r.ip, port: r.port, started: Instant::now(), killed: false, tls_since: None });
                    drop(r.conn);
                    self.info(&format!("pid {pid} from {}", r.ip));
                    self.info(&format!("ok {pid} {}", r.desc));
                    self.status_short();
                }
                Err(e) => {
                    // The worker is gone or broken: stop using it, retry elsewhere.
                    w.chan = None;
                    self.waiting.push_front(r);
                    self.warn(&format!("hand-off to {pid}: {e}"));
                }
            }
        }
    }

    fn on_chan(&mut self, pid: i32) {
        let Some(c) = self.children.get_mut(&pid) else { return };
        let Some(w) = c.worker.as_mut() else { return };
        let Some(chan) = w.chan.as_ref() else { return };
        match handoff::read_idle(chan.as_fd()) {
            Ok(0) => {}
            Ok(_) => {
                if let Some(s) = c.session.take() {
                    w.served += 1;
                    self.served += 1;
                    self.quick_deaths = 0;
                    self.ip_down(s.ip);
                    self.info(&format!("end {pid} idle"));
                    self.status_short();
                    self.maybe_retire(pid);
                } else {
                    self.warn(&format!("worker {pid} said idle while idle"));
                }
            }
            Err(_) => w.chan = None,
        }
    }

    /// Close an idle worker's channel (it sees EOF and exits) when it is of an
    /// older generation, has served its -m sessions, or we are draining.
    fn maybe_retire(&mut self, pid: i32) {
        // Idle workers beyond twice -w are retired by `retire_surplus` once
        // they have been idle for IDLE_KEEP, so that reuse does not churn.
        let draining = self.draining.is_some();
        let gen = self.gen;
        let max_use = self.cfg.max_use;
        if let Some(w) = self.children.get_mut(&pid).and_then(|c| c.worker.as_mut()) {
            w.idle_since = Instant::now();
            // -m is ours to enforce: a worker that says it is idle again
            // after its HANDOFF_MAX sessions does not get another.
            if draining || w.gen != gen || w.served >= max_use {
                w.chan = None;
                w.retired = true;
            }
        }
    }

    /// Retire the longest-idle workers beyond twice -w that have been idle
    /// for IDLE_KEEP. Returns when the next one would be due, if any.
    fn retire_surplus(&mut self, now: Instant) -> Option<Instant> {
        let mut idle: Vec<(Instant, i32)> = self
            .children
            .iter()
            .filter(|(_, c)| c.session.is_none())
            .filter_map(|(p, c)| c.worker.as_ref().filter(|w| w.chan.is_some() && !w.retired).map(|w| (w.idle_since, *p)))
            .collect();
        let keep = 2 * self.cfg.workers;
        if idle.len() <= keep {
            return None;
        }
        idle.sort();
        let surplus = idle.len() - keep;
        for &(since, pid) in idle.iter().take(surplus) {
            if now < since + IDLE_KEEP {
                return Some(since + IDLE_KEEP);
            }
            if let Some(w) = self.children.get_mut(&pid).and_then(|c| c.worker.as_mut()) {
                w.chan = None;
                w.retired = true;
            }
        }
        None
    }

    // ---- children ending

    fn reap(&mut self) {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.child_ended(pid.as_raw(), format!("status {code}"), code == 0),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.child_ended(pid.as_raw(), format!("signal {}", sig as i32), false)
                }
                Ok(WaitStatus::StillAlive) => return,
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(_) => return,
            }
        }
    }

    fn child_ended(&mut self, pid: i32, status: String, clean: bool) {
        let Some(c) = self.children.remove(&pid) else { return };
        if let Some(s) = &c.session {
            self.served += 1;
            self.ip_down(s.ip);
            self.info(&format!("end {pid} {status}"));
            self.status_short();
        }
        let Some(w) = c.worker else { return };
        if c.session.is_some() {
            if clean || w.served > 0 {
                self.quick_deaths = 0;
            }
            if !clean {
                self.restarts += 1;
                self.count_restart();
            }
            return;
        }
        if w.retired || self.draining.is_some() {
            return;
        }
        // An idle worker died: a crash, or a program without hand-off support.
        self.restarts += 1;
        self.count_restart();
        self.warn(&format!("worker {pid} exited while idle: {status}"));
        if w.served == 0 && c.started.elapsed() < QUICK_DEATH {
            self.quick_death();
        }
    }

    // ---- timers, signals, reload, drain

    fn timers(&mut self) {
        let now = Instant::now();
        self.retire_surplus(now);
        if let Some(limit) = self.cfg.session_limit {
            let over: Vec<i32> = self
                .children
                .iter()
                .filter(|(_, c)| c.session.as_ref().is_some_and(|s| !s.killed && now >= s.started + limit))
                .map(|(p, _)| *p)
                .collect();
            for pid in over {
                if let Some(s) = self.children.get_mut(&pid).and_then(|c| c.session.as_mut()) {
                    s.killed = true;
                }
                kill_group(pid);
                if let Some(st) = &self.stats {
                    st.killed();
                }
                self.warn(&format!("pid {pid}: session over {} s: killed", limit.as_secs()));
            }
        }
        let before = self.pending.len();
        self.pending.retain(|p| now < p.deadline);
        if self.pending.len() < before {
            self.warn("PROXY header timeout: connection dropped");
        }
        if let Some(t) = self.next_status {
            if now >= t {
                self.status_long();
                self.next_status = self.cfg.status_interval.map(|i| now + i);
            }
        }
    }

    fn on_signals(&mut self) {
        let mut buf = [0u8; 64];
        loop {
            let n = match nix::unistd::read(self.sigfd.as_fd(), &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for &b in &buf[..n] {
                match Signal::try_from(i32::from(b)) {
                    Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => self.start_drain(),
                    Ok(Signal::SIGHUP) => self.reload(),
                    Ok(Signal::SIGUSR1) => self.status_long(),
                    _ => {}
                }
            }
        }
        // SIGCHLD (coalesced or not): reap whatever is there.
        self.reap();
    }

    fn reload(&mut self) {
        match config::load_rules(&self.cfg) {
            Ok(r) => {
                let n = r.as_ref().map(|r| r.len()).unwrap_or(0);
                self.rules = r;
                self.info(&format!("reload: rules {n}"));
            }
            Err(e) => self.warn(&format!("reload: {e}; keeping the old rules")),
        }
        match config::load_env(&self.cfg) {
            Ok(e) => {
                self.info(&format!("reload: environment {} variables", e.len()));
                self.env_file = e;
            }
            Err(e) => self.warn(&format!("reload: {e}; keeping the old environment")),
        }
        // Workers started with the old environment give way when idle.
        self.gen += 1;
        let idle: Vec<i32> = self
            .children
            .iter()
            .filter(|(_, c)| c.session.is_none() && c.worker.as_ref().is_some_and(|w| w.chan.is_some()))
            .map(|(p, _)| *p)
            .collect();
        for pid in idle {
            self.maybe_retire(pid);
        }
    }

    fn start_drain(&mut self) {
        if self.draining.is_some() {
            return;
        }
        self.draining = Some(Instant::now() + self.cfg.drain);
        self.backoff_until = None;
        let _ = crate::systemd::notify("STOPPING=1");
        self.listeners.clear();
        for p in std::mem::take(&mut self.pending) {
            drop(p);
        }
        for r in std::mem::take(&mut self.waiting) {
            self.ip_down(r.ip);
        }
        let idle: Vec<i32> = self.children.iter().filter(|(_, c)| c.session.is_none()).map(|(p, _)| *p).collect();
        for pid in idle {
            self.maybe_retire(pid);
        }
        self.info(&format!(
            "stop: draining {} sessions, deadline {} s",
            self.sessions(),
            self.cfg.drain.as_secs()
        ));
    }

    fn kill_all(&mut self) {
        let n = self.children.len();
        for pid in self.children.keys() {
            kill_group(*pid);
        }
        self.killed_all = Some(Instant::now());
        self.warn(&format!("drain deadline: killed {n} children"));
    }

    fn on_log_pipe(&mut self) {
        let Some((r, _)) = &self.log_pipe else { return };
        let mut buf = [0u8; 4096];
        for _ in 0..16 {
            match nix::unistd::read(r.as_fd(), &mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    let (log, tag) = (&self.log, &self.tag);
                    self.splitter.feed(&buf[..n], |l| log.child_line(tag, l));
                }
                Err(_) => return,
            }
        }
    }

    // ---- figures: reports, metrics textfile, scoreboard

    fn count_conn(&self, c: stats::Conn) {
        if let Some(st) = &self.stats {
            st.connection(c);
        }
    }

    fn count_restart(&self) {
        if let Some(st) = &self.stats {
            st.restart();
        }
    }

    /// Read what sessions reported, at most REPORT_BATCH datagrams a turn.
    /// Reports are untrusted: `statsfd::parse` bounds them, `Stats` takes
    /// label values only from fixed sets. A TLS report from a child of ours
    /// (tls-wrap as the program: the worker or classic child itself) puts
    /// its session into the scoreboard's `tls` state.
    fn on_reports(&mut self) {
        let Some((ours, _)) = &self.stats_chan else { return };
        let mut buf = [0u8; statsfd::MAX_REPORT + 1];
        for _ in 0..REPORT_BATCH {
            let (n, pid) = match statsfd::recv(ours.as_fd(), &mut buf) {
                Ok(Some(x)) => x,
                Ok(None) | Err(_) => return,
            };
            let report = statsfd::parse(buf.get(..n).unwrap_or_default());
            if let Some(st) = &self.stats {
                match &report {
                    Ok(r) => st.report(r),
                    Err(_) => st.malformed(),
                }
            }
            if let (Ok(statsfd::Report::Tls(t)), Some(pid)) = (&report, pid) {
                if let Some(s) = self.children.get_mut(&pid).and_then(|c| c.session.as_mut()) {
                    if t.ok && s.tls_since.is_none() {
                        s.tls_since = Some(Instant::now());
                    }
                }
            }
        }
    }

    /// Hand-off workers by `stats::WORKER_STATES` (idle, busy, retiring).
    fn worker_counts(&self) -> [u64; 3] {
        let mut n = [0u64; 3];
        for c in self.children.values() {
            let Some(w) = &c.worker else { continue };
            let i = match (&c.session, w.chan.is_some() && !w.retired) {
                (Some(_), _) => 1,
                (None, true) => 0,
                (None, false) => 2,
            };
            n[i] += 1;
        }
        n
    }

    /// Write the scoreboard and the metrics file when due (`force`: now,
    /// at exit). A failed write is warned about once and retried at the
    /// next beat; it never stops the loop.
    fn publish(&mut self, force: bool) {
        if let Some(msg) = self.publish_now(force) {
            if !self.publish_warned {
                self.publish_warned = true;
                self.warn(&msg);
            }
        }
    }

    /// The writes of `publish`; the error of the last one that failed.
    fn publish_now(&mut self, force: bool) -> Option<String> {
        let now = Instant::now();
        let due = |p: &Publish, gap, beat| force || p.due(gap, beat).is_some_and(|d| now >= d);
        let mut failed = None;
        if let Some(path) = self.cfg.scoreboard_file.clone() {
            if due(&self.board, SCOREBOARD_GAP, SCOREBOARD_BEAT) {
                let text = self.scoreboard_text(now);
                match crate::textfile::write_atomic(&path, text.as_bytes(), 0o644) {
                    Ok(()) => self.publish_warned = false,
                    Err(e) => failed = Some(format!("unable to write the scoreboard {}: {e}", path.display())),
                }
                self.board = Publish { last: Some(now), dirty: false };
            }
        }
        if let (Some(path), Some(st)) = (self.cfg.metrics_file.clone(), &self.stats) {
            if due(&self.metrics, METRICS_GAP, METRICS_BEAT) {
                let workers = self.worker_counts();
                let text = st.render(&stats::Now { sessions: self.sessions() as u64, limit: self.cfg.limit as u64, workers });
                match crate::textfile::write_atomic(&path, text.as_bytes(), 0o644) {
                    Ok(()) => self.publish_warned = false,
                    Err(e) => failed = Some(format!("unable to write the metrics file {}: {e}", path.display())),
                }
                self.metrics = Publish { last: Some(now), dirty: false };
            }
        }
        failed
    }

    /// The scoreboard: every child, then the connections without a process.
    fn scoreboard_text(&self, now: Instant) -> String {
        let wall_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let wall = |t: Instant| (wall_now - now.saturating_duration_since(t).as_secs_f64()).max(0.0);
        let mut rows: Vec<scoreboard::Row> = Vec::with_capacity(self.children.len() + self.waiting.len() + self.pending.len());
        for (pid, c) in &self.children {
            let served = c.worker.as_ref().map_or(0, |w| w.served);
            let row = match (&c.session, &c.worker) {
                (Some(s), _) => scoreboard::Row {
                    pid: u32::try_from(*pid).ok(),
                    state: if s.tls_since.is_some() { scoreboard::State::Tls } else { scoreboard::State::Session },
                    since: wall(s.tls_since.unwrap_or(s.started)),
                    served,
                    remote: Some(s.ip),
                    port: Some(s.port),
                },
                (None, Some(w)) => scoreboard::Row {
                    pid: u32::try_from(*pid).ok(),
                    state: if w.chan.is_some() && !w.retired { scoreboard::State::Idle } else { scoreboard::State::Retiring },
                    since: wall(w.idle_since),
                    served,
                    remote: None,
                    port: None,
                },
                (None, None) => continue,
            };
            rows.push(row);
        }
        rows.sort_by_key(|r| r.pid);
        for r in &self.waiting {
            rows.push(scoreboard::Row {
                pid: None,
                state: scoreboard::State::Waiting,
                since: wall(r.since),
                served: 0,
                remote: Some(r.ip),
                port: Some(r.port),
            });
        }
        for p in &self.pending {
            rows.push(scoreboard::Row {
                pid: None,
                state: scoreboard::State::Proxy,
                since: wall(p.deadline.checked_sub(PROXY_TIMEOUT).unwrap_or(p.deadline)),
                served: 0,
                remote: Some(canonical(p.peer.ip())),
                port: Some(p.peer.port()),
            });
        }
        let listen: Vec<String> = self.listeners.iter().filter_map(|l| l.local_addr().ok()).map(|a| a.to_string()).collect();
        let mode = match (self.cfg.handoff, self.cfg.fork) {
            (false, _) => "classic",
            (true, false) => "handoff",
            (true, true) => "handoff-fork",
        };
        let h = scoreboard::Header {
            pid: std::process::id(),
            time: wall_now,
            started: self.start_wall,
            listen: if listen.is_empty() { "-".into() } else { listen.join(",") },
            mode: mode.into(),
            sessions: self.sessions() as u64,
            limit: self.cfg.limit as u64,
            served: self.served,
            restarts: self.restarts,
        };
        scoreboard::encode(&h, &rows)
    }
}

/// SIGKILL a child's process group (it leads one) and the child itself.
fn kill_group(pid: i32) {
    let p = Pid::from_raw(pid);
    let _ = killpg(p, Signal::SIGKILL);
    let _ = kill(p, Signal::SIGKILL);
}
