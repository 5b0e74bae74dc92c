//! tls-wrap's process side: start prog with the UCSPI-TLS fds (or, with -i,
//! after the handshake with pipes on its fd 0/1), wait for its request on
//! the control socket, then hand over to the relay. tls-wrap stays the
//! parent: it holds the key, prog never does. In both modes tls-wrap drops
//! to TLS_UID/TLS_GID before it reads a byte from the network.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{pipe2, Gid, Pid, Uid};
use rustls::{ServerConfig, ServerConnection};

use super::config::{is_tls_var, Accounts, Options, TlsEnv};
use super::relay::{self, Net, RelayEnd, TlsFail};
use super::certs;
use crate::die;
use crate::statsfd::{Reporter, TlsReport, TlsVersion};

pub const PROG: &str = "tls-wrap";
/// Exit code when TLS failed (handshake, timeout) or a system call failed.
pub const EXIT_TLS: i32 = 111;
/// How long output may wait for a peer that does not read.
pub const WRITE_STALL: Duration = Duration::from_secs(300);
/// After a failed handshake, how long prog gets to exit on its own after
/// seeing EOF, before SIGTERM (and as long again before SIGKILL).
pub const GRACE: Duration = Duration::from_secs(5);

/// Everything, from argv and environment to the exit code.
pub fn main_with(args: Vec<OsString>) -> i32 {
    // Before any key is in memory: no core dumps, no ptrace by the same uid.
    let _ = nix::sys::prctl::set_dumpable(false);
    let opts = super::config::parse_args(&args, &|k| std::env::var_os(k), &SystemAccounts)
        .unwrap_or_else(|e| die::fatal(PROG, die::EXIT_PERM, e));
    let vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let tenv = super::config::parse_env(&vars, &opts, &SystemAccounts).unwrap_or_else(|e| die::fatal(PROG, die::EXIT_PERM, e));
    if let Some(w) = root_warning(Uid::effective().is_root(), &opts, &tenv) {
        die::warn(PROG, w);
    }
    let cfg = certs::server_config(&tenv, opts.client_cert).unwrap_or_else(|e| die::fatal(PROG, die::EXIT_TEMP, e));
    // smtpd-supervise's report socket: tls-wrap reports each handshake; the
    // fd and the variable stay for prog, which reports its session.
    let reporter = Reporter::from_env(true).unwrap_or_else(|e| {
        die::warn(PROG, format_args!("{e}; no handshake reports"));
        None
    });
    let sigfd = block_sigchld().unwrap_or_else(|e| die::fatal(PROG, EXIT_TLS, format_args!("unable to set up SIGCHLD: {e}")));
    if !wait_for_handoff() {
        return 0;
    }
    if opts.implicit {
        implicit(&opts, &tenv, cfg, &sigfd, reporter.as_ref())
    } else {
        ucspi(&opts, &tenv, cfg, &sigfd, reporter.as_ref())
    }
}

/// Tell the supervisor how a handshake ended (tls-wrap(8), REPORTS): the
/// version negotiated, when the handshake got that far.
fn report(reporter: Option<&Reporter>, conn: &ServerConnection, ok: bool) {
    let Some(r) = reporter else { return };
    let version = conn
        .protocol_version()
        .map_or(TlsVersion::Unknown, |v| TlsVersion::from_name(&super::envblock::protocol_name(u16::from(v))));
    r.send(&TlsReport { ok, version }.encode());
}

/// Users and groups from /etc/passwd and /etc/group (`crate::passwd`:
/// no NSS in a static binary).
struct SystemAccounts;

impl Accounts for SystemAccounts {
    fn user(&self, name: &str) -> Result<Option<(u32, u32)>, String> {
        crate::passwd::user_by_name(name).map(|e| e.map(|e| (e.id, e.gid))).map_err(|e| format!("unable to read the user database: {e}"))
    }
    fn primary_gid(&self, uid: u32) -> Result<Option<u32>, String> {
        crate::passwd::user_by_uid(uid).map(|e| e.map(|e| e.gid)).map_err(|e| format!("unable to read the user database: {e}"))
    }
    fn group(&self, name: &str) -> Result<Option<u32>, String> {
        crate::passwd::group_by_name(name).map(|e| e.map(|e| e.id)).map_err(|e| format!("unable to read the group database: {e}"))
    }
}

/// One warning line when, started as root, tls-wrap would leave prog or
/// itself (the TLS parsing) running as root.
pub fn root_warning(root: bool, opts: &Options, tenv: &TlsEnv) -> Option<String> {
    if !root {
        return None;
    }
    let prog_root = !matches!(opts.app_uid, Some(u) if u != 0);
    let tls_root = !matches!(tenv.tls_uid, Some(u) if u != 0);
    let what = match (prog_root, tls_root) {
        (false, false) => return None,
        (true, false) => "prog runs as root: give -u and -g (or -U)",
        (false, true) => "TLS is parsed as root: set TLS_UID and TLS_GID",
        (true, true) => "prog runs as root and TLS is parsed as root: give -u and -g (or -U), and set TLS_UID and TLS_GID",
    };
    Some(format!("{what} (see tls-wrap(8), PRIVILEGES)"))
}

/// Under `smtpd-supervise -W` (HANDOFF_FD set): the keys are loaded and the
/// configuration built; now wait for the connection, which arrives on fd 0/1
/// with its variables in the environment (doc/PROTOCOLS.md section 4). One
/// session per tls-wrap process: after the first prog is started tls-wrap
/// may have dropped its privileges, so it could not start the next one as
/// another uid; the supervisor starts the next worker ahead of time. `false`:
/// the supervisor is gone, exit quietly.
fn wait_for_handoff() -> bool {
    let mut w = match crate::handoff::Worker::from_env() {
        Ok(Some(w)) => w,
        Ok(None) => return true,
        Err(e) => die::fatal(PROG, EXIT_TLS, format_args!("hand-off: {e}")),
    };
    match w.begin_session() {
        Ok(more) => more,
        Err(e) => die::fatal(PROG, EXIT_TLS, format_args!("hand-off: {e}")),
    }
}

/// Who is on the other end, for log lines.
fn remote() -> String {
    ["TCPREMOTEIP", "REMOTE_ADDR", "SSLREMOTEIP"]
        .iter()
        .find_map(|k| std::env::var(k).ok())
        .unwrap_or_else(|| "unknown".into())
}

fn deadline(opts: &Options) -> Option<Instant> {
    opts.handshake_timeout.map(|t| Instant::now() + t)
}

/// UCSPI-TLS: prog starts at once with fd 0/1 on the network and the three
/// fds in SSLCTLFD, SSLREADFD, SSLWRITEFD; TLS starts when it asks.
fn ucspi(opts: &Options, tenv: &TlsEnv, cfg: Arc<ServerConfig>, sigfd: &OwnedFd, reporter: Option<&Reporter>) -> i32 {
    let sys = |what: &str, e: nix::Error| -> ! { die::fatal(PROG, EXIT_TLS, format_args!("unable to {what}: {e}")) };
    let (ctl, ctl_app) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
        .unwrap_or_else(|e| sys("create the control socket", e));
    let (app_rd, to_app) = pipe2(OFlag::O_CLOEXEC).unwrap_or_else(|e| sys("create a pipe", e));
    let (from_app, app_wr) = pipe2(OFlag::O_CLOEXEC).unwrap_or_else(|e| sys("create a pipe", e));
    for fd in [&ctl_app, &app_rd, &app_wr] {
        fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap_or_else(|e| sys("pass an fd on", e));
    }
    let mut cmd = command(opts, true);
    cmd.env("SSLCTLFD", ctl_app.as_raw_fd().to_string())
        .env("SSLREADFD", app_rd.as_raw_fd().to_string())
        .env("SSLWRITEFD", app_wr.as_raw_fd().to_string());
    let pid = spawn(cmd, opts);
    drop((ctl_app, app_rd, app_wr));
    drop_self(tenv);
    let mut status: Option<i32> = None;

    // Plaintext phase: prog talks to the network itself; we wait for a
    // command on the control socket, or for prog to end.
    let mut ctl = Some(ctl);
    let cmd_byte = loop {
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        if let Some(c) = &ctl {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => sys("poll", e),
        }
        let sig_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        let ctl_ready = fds.get(1).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        drop(fds);
        if sig_ready {
            reap(sigfd, pid, &mut status);
            if let Some(code) = status {
                return code;
            }
        }
        if ctl_ready {
            let mut b = [0u8; 1];
            let c = ctl.as_ref().map(|c| nix::unistd::read(c.as_fd(), &mut b));
            match c {
                Some(Ok(1)) if b[0] == b'Y' || b[0] == b'y' => break b[0],
                Some(Err(nix::errno::Errno::EINTR)) | Some(Err(nix::errno::Errno::EAGAIN)) => {}
                Some(Ok(1)) => {
                    die::warn(PROG, format_args!("pid {pid}: unrecognized command on control socket from {}", remote()));
                    return fail_app(sigfd, pid, status, (None, to_app, from_app));
                }
                _ => ctl = None, // prog declined TLS; wait for it to end
            }
        }
    };
    if cmd_byte == b'y' {
        ctl = None; // no facts wanted: prog sees EOF on the control socket
    }
    // TLS phase: prog has given fd 0/1 up.
    let (net_rd, net_wr) = Net::take_stdio().unwrap_or_else(|e| die::fatal(PROG, EXIT_TLS, format_args!("unable to set up fd 0/1: {e}")));
    let net = Net { rd: &net_rd, wr: &net_wr };
    let mut conn = match ServerConnection::new(cfg) {
        Ok(c) => c,
        Err(e) => {
            die::warn(PROG, format_args!("pid {pid}: unable to start TLS: {e}"));
            return fail_app(sigfd, pid, status, (ctl, to_app, from_app));
        }
    };
    if let Err(e) = relay::handshake(&mut conn, net, deadline(opts)) {
        log_fail(pid, &e);
        report(reporter, &conn, false);
        return fail_app(sigfd, pid, status, (ctl, to_app, from_app));
    }
    report(reporter, &conn, true);
    let facts = certs::facts(&conn);
    if opts.verbosity >= 2 {
        die::info(PROG, format_args!("pid {pid}: {} {} from {}{}", facts.protocol, facts.cipher, remote(), sni_note(&facts.sni)));
    }
    if let Some(c) = ctl.take() {
        // The facts block, then EOF on the control socket. prog may have
        // gone already: a write error is not ours to report.
        let _ = std::fs::File::from(c).write_all(&facts.encode_block());
    }
    let mut on_sig = || reap(sigfd, pid, &mut status);
    let end = relay::relay(&mut conn, net, to_app, from_app, Some(sigfd.as_fd()), &mut on_sig, WRITE_STALL);
    let code = finish(sigfd, pid, status);
    log_end(pid, &end, code, opts);
    code
}

/// Implicit TLS (-i): the handshake first; prog starts only once it is
/// done, with pipes on its fd 0/1 and the facts in its environment. The
/// process that will start prog is forked before anything is read from the
/// network and drops to prog's uid at once (a launcher, waiting for the
/// facts on a pipe); tls-wrap itself then drops to TLS_UID/TLS_GID, so that
/// no byte of the handshake is parsed as root.
fn implicit(opts: &Options, tenv: &TlsEnv, cfg: Arc<ServerConfig>, sigfd: &OwnedFd, reporter: Option<&Reporter>) -> i32 {
    let sys = |what: &str, e: nix::Error| -> ! { die::fatal(PROG, EXIT_TLS, format_args!("unable to {what}: {e}")) };
    let me = std::process::id();
    let (app_in, to_app) = pipe2(OFlag::O_CLOEXEC).unwrap_or_else(|e| sys("create a pipe", e));
    let (from_app, app_out) = pipe2(OFlag::O_CLOEXEC).unwrap_or_else(|e| sys("create a pipe", e));
    let (facts_rd, facts_wr) = pipe2(OFlag::O_CLOEXEC).unwrap_or_else(|e| sys("create a pipe", e));
    // tls-wrap has one thread (it starts none), as fork_single_threaded needs.
    let pid = match crate::sys::fork_single_threaded() {
        Ok(0) => {
            drop((to_app, from_app, facts_wr));
            launch(opts, app_in, app_out, facts_rd)
        }
        Ok(p) => Pid::from_raw(p),
        Err(e) => die::fatal(PROG, EXIT_TLS, format_args!("unable to fork: {e}")),
    };
    drop((app_in, app_out, facts_rd));
    drop_self(tenv);
    let (net_rd, net_wr) = Net::take_stdio().unwrap_or_else(|e| die::fatal(PROG, EXIT_TLS, format_args!("unable to set up fd 0/1: {e}")));
    let net = Net { rd: &net_rd, wr: &net_wr };
    let mut conn = ServerConnection::new(cfg).unwrap_or_else(|e| die::fatal(PROG, EXIT_TLS, format_args!("unable to start TLS: {e}")));
    if let Err(e) = relay::handshake(&mut conn, net, deadline(opts)) {
        log_fail(Pid::from_raw(me as i32), &e);
        report(reporter, &conn, false);
        // EOF on the facts pipe: the launcher exits without running prog.
        drop((facts_wr, to_app, from_app));
        finish(sigfd, pid, None);
        return EXIT_TLS;
    }
    report(reporter, &conn, true);
    let facts = certs::facts(&conn);
    if opts.verbosity >= 2 {
        die::info(PROG, format_args!("pid {me}: {} {} from {}{}", facts.protocol, facts.cipher, remote(), sni_note(&facts.sni)));
    }
    // At most 4096 bytes: the pipe takes them whole. A launcher that died
    // gives EPIPE here; the relay then finds prog's pipes closed.
    let _ = std::fs::File::from(facts_wr).write_all(&facts.encode_block());
    let mut status = None;
    let mut on_sig = || reap(sigfd, pid, &mut status);
    let end = relay::relay(&mut conn, net, to_app, from_app, Some(sigfd.as_fd()), &mut on_sig, WRITE_STALL);
    let code = finish(sigfd, pid, status);
    log_end(pid, &end, code, opts);
    code
}

/// The launcher, in the child forked by `implicit`: become prog's uid and
/// gid, wait for the facts of the handshake on `facts` (EOF without them:
/// the handshake failed, exit quietly), then exec prog with them in its
/// environment and the pipes on its fd 0/1. Never returns.
fn launch(opts: &Options, app_in: OwnedFd, app_out: OwnedFd, facts: OwnedFd) -> ! {
    use std::io::Read;
    if let (Some(u), Some(g)) = (opts.app_uid, opts.app_gid) {
        if Uid::effective().is_root() {
            if let Err(e) = become_app(Uid::from_raw(u), Gid::from_raw(g)) {
                die::fatal(PROG, EXIT_TLS, e);
            }
        }
    }
    let mut block = Vec::new();
    let limit = super::envblock::MAX_BLOCK as u64 + 1;
    let read = std::fs::File::from(facts).take(limit).read_to_end(&mut block);
    if read.is_err() || block.is_empty() {
        std::process::exit(EXIT_TLS);
    }
    let items = crate::io::ucspitls::parse_block(&block)
        .unwrap_or_else(|e| die::fatal(PROG, EXIT_TLS, format_args!("bad facts block: {e:?}")));
    let mut cmd = command(opts, false);
    cmd.stdin(Stdio::from(app_in)).stdout(Stdio::from(app_out));
    for (k, v) in items.iter().filter(|(k, _)| k.starts_with("SSL_")) {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let e = cmd.exec();
    die::fatal(PROG, EXIT_TLS, format_args!("unable to run {}: {e}", opts.prog[0].to_string_lossy()))
}

/// Become `uid`:`gid` for good (the launcher, before it reads anything):
/// no supplementary groups, gid, uid, then check that root cannot come back.
fn become_app(uid: Uid, gid: Gid) -> Result<(), String> {
    nix::unistd::setgroups(&[]).map_err(|e| format!("unable to drop supplementary groups: {e}"))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| format!("unable to set gid {gid}: {e}"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| format!("unable to set uid {uid}: {e}"))?;
    if !uid.is_root() && nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).is_ok() {
        return Err("root privileges could be regained after dropping them".into());
    }
    Ok(())
}

/// prog's command: its environment without the TLS material (unless -Z),
/// under the uid/gid of -u/-g/-U when `ids` (std sets groups, gid, then uid).
fn command(opts: &Options, ids: bool) -> Command {
    let mut cmd = Command::new(&opts.prog[0]);
    cmd.args(&opts.prog[1..]);
    if !opts.keep_env {
        for (k, _) in std::env::vars_os() {
            if is_tls_var(&k) {
                cmd.env_remove(k);
            }
        }
    }
    if ids {
        if let Some(g) = opts.app_gid {
            cmd.gid(g);
        }
        if let Some(u) = opts.app_uid {
            cmd.uid(u);
        }
    }
    cmd
}

/// Start prog; it is reaped with waitpid (see `reap`, `finish`), not
/// through std's Child.
#[allow(clippy::zombie_processes)]
fn spawn(mut cmd: Command, opts: &Options) -> Pid {
    let child: Child = cmd.spawn().unwrap_or_else(|e| {
        die::fatal(PROG, EXIT_TLS, format_args!("unable to run {}: {e}", opts.prog[0].to_string_lossy()))
    });
    Pid::from_raw(child.id() as i32)
}

/// SIGCHLD arrives as a byte on a self-pipe, so that the poll loops see
/// prog end. (A signalfd would need SIGCHLD blocked, and std's Command
/// hands the signal mask on to the child.)
fn block_sigchld() -> std::io::Result<OwnedFd> {
    crate::sys::default_sigchld();
    crate::sys::signal_pipe(&[Signal::SIGCHLD as i32])
}

/// Drain the self-pipe and collect prog's status if it has ended.
fn reap(sigfd: &OwnedFd, pid: Pid, status: &mut Option<i32>) {
    let mut b = [0u8; 64];
    while matches!(nix::unistd::read(sigfd.as_fd(), &mut b), Ok(n) if n > 0) {}
    if status.is_none() {
        if let Ok(ws) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            *status = exit_code(ws);
        }
    }
}

fn exit_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// The relay is over: prog's fds are closed, so it is ending; wait for it.
fn finish(_sigfd: &OwnedFd, pid: Pid, status: Option<i32>) -> i32 {
    if let Some(c) = status {
        return c;
    }
    loop {
        match waitpid(pid, None) {
            Ok(ws) => {
                if let Some(c) = exit_code(ws) {
                    return c;
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return EXIT_TLS,
        }
    }
}

/// TLS did not start: close every fd prog has to us so that it sees EOF
/// (on the control socket, or on SSLREADFD after a `y`), give it time to
/// exit, then SIGTERM, then SIGKILL. Exit 111.
fn fail_app(sigfd: &OwnedFd, pid: Pid, mut status: Option<i32>, fds: (Option<OwnedFd>, OwnedFd, OwnedFd)) -> i32 {
    drop(fds);
    for sig in [None, Some(Signal::SIGTERM), Some(Signal::SIGKILL)] {
        if let Some(s) = sig {
            // After tls-wrap dropped to TLS_UID, prog (under -u) is another
            // user's process: EPERM. It has seen EOF on every fd to us, and its
            // own timeout (SMTPD_TIMEOUT) and the supervisor's watchdog, which
            // signals the whole process group as root, still bound it.
            if let Err(e) = kill(pid, s) {
                crate::die::warn(PROG, format_args!("unable to send {s} to prog pid {pid}: {e}; it ends on its own timeout"));
                break;
            }
        }
        let end = Instant::now() + GRACE;
        while status.is_none() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds = [PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
            let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1).unwrap_or(PollTimeout::MAX);
            let _ = poll(&mut fds, ms);
            reap(sigfd, pid, &mut status);
        }
        if status.is_some() {
            break;
        }
    }
    EXIT_TLS
}

fn log_fail(pid: Pid, e: &TlsFail) {
    die::warn(PROG, format_args!("pid {pid}: TLS handshake failed with {}: {e}", remote()));
}

/// The relay's end in the log, once prog's exit `code` is known. A peer
/// that went away (EPIPE, ECONNRESET) after ending its side, or from a
/// session prog ended normally (exit 0: a client that sent QUIT and closed
/// without waiting for the reply), is a normal end: an info line at -v 2,
/// no warning. Real errors stay warnings.
fn log_end(pid: Pid, end: &RelayEnd, code: i32, opts: &Options) {
    match end {
        RelayEnd::Done => {}
        RelayEnd::Stalled => die::warn(PROG, format_args!("pid {pid}: peer {} stopped reading; connection dropped", remote())),
        RelayEnd::PeerGone { what, after_close } if *after_close || code == 0 => {
            if opts.verbosity >= 2 {
                die::info(PROG, format_args!("pid {pid}: peer {} closed first: {what}", remote()));
            }
        }
        RelayEnd::PeerGone { what: m, .. } | RelayEnd::PeerError(m) => {
            die::warn(PROG, format_args!("pid {pid}: connection with {} ended: {m}", remote()))
        }
    }
}

fn sni_note(sni: &Option<String>) -> String {
    sni.as_ref().map(|s| format!(" sni {s}")).unwrap_or_default()
}

/// Once the keys are loaded and prog started: as s6-tlsd-io does, drop to
/// TLS_GID/TLS_UID when running as root; groups, gid, uid, then check that
/// root cannot come back. Keep the process non-dumpable afterwards.
fn drop_self(tenv: &TlsEnv) {
    if !Uid::effective().is_root() {
        return;
    }
    let fail = |what: &str, e: nix::Error| -> ! { die::fatal(PROG, EXIT_TLS, format_args!("unable to {what}: {e}")) };
    if let Some(g) = tenv.tls_gid {
        let g = Gid::from_raw(g);
        nix::unistd::setgroups(&[g]).unwrap_or_else(|e| fail("setgroups", e));
        nix::unistd::setresgid(g, g, g).unwrap_or_else(|e| fail("set gid", e));
    }
    if let Some(u) = tenv.tls_uid {
        let u = Uid::from_raw(u);
        nix::unistd::setresuid(u, u, u).unwrap_or_else(|e| fail("set uid", e));
        if !u.is_root() && nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).is_ok() {
            die::fatal(PROG, EXIT_TLS, "root privileges could be regained after dropping them");
        }
    }
    let _ = nix::sys::prctl::set_dumpable(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_warning_names_what_stays_root() {
        let opts = |u: Option<u32>| Options {
            implicit: false,
            client_cert: super::super::config::ClientCert::None,
            keep_env: false,
            handshake_timeout: None,
            sni_level: 1,
            verbosity: 1,
            app_uid: u,
            app_gid: u,
            prog: vec!["p".into()],
        };
        let tenv = |u: Option<u32>| TlsEnv { tls_uid: u, tls_gid: u, ..TlsEnv::default() };
        assert_eq!(root_warning(false, &opts(None), &tenv(None)), None, "not root: nothing to say");
        assert_eq!(root_warning(true, &opts(Some(999)), &tenv(Some(998))), None);
        let w = |o, t| root_warning(true, &opts(o), &tenv(t)).unwrap_or_default();
        assert!(w(None, Some(998)).starts_with("prog runs as root: give -u and -g"));
        assert!(w(Some(0), Some(998)).starts_with("prog runs as root"), "-u 0 is root too");
        assert!(w(Some(999), None).starts_with("TLS is parsed as root: set TLS_UID and TLS_GID"));
        assert!(w(None, None).contains("prog runs as root and TLS is parsed as root"));
        assert!(w(None, None).ends_with("(see tls-wrap(8), PRIVILEGES)"));
    }
}
