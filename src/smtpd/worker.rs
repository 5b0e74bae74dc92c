//! The process around one or many sessions of smtpd-rs: the classic run (one
//! session on fds 0 and 1, then exit), the hand-off worker (doc/PROTOCOLS.md
//! section 4: it starts its queue-inject first, then serves each connection
//! handed to it from a fresh session state) and the fork-mode template. The
//! hand-off protocol itself is `crate::handoff`; the session loop `serve`.

use crate::die;
use crate::handoff::Worker;
use crate::io::ucspi::{peer_info, Conn};
use crate::queue::client::{QueueClient, QueueProgram};
use crate::queue::zygote::Zygote;
use crate::smtp::reply;
use crate::smtpd::config::Config;
use crate::smtpd::serve::{serve, ProcessHooks};
use crate::statsfd::Reporter;
use std::fs::File;
use std::io::Write;

const PROG: &str = "smtpd-rs";

/// The classic run: one session on fds 0 and 1; the exit code it calls for.
pub fn classic() -> i32 {
    let reporter = reporter();
    let cfg = config_or_421();
    let mut conn = Conn::stdio(cfg.timeout)
        .unwrap_or_else(|e| die::fatal(PROG, die::EXIT_TEMP, format_args!("unable to use fd 0 and 1: {e}")));
    let mut queue = QueueClient::new(&cfg.queue);
    let code = session(&mut conn, &cfg, &mut queue, reporter.as_ref());
    // The client sees the end now (fds 0 and 1 were the connection's last
    // hold here), not after queue-inject has exited.
    drop(conn);
    queue.close();
    code
}

/// One session on `conn`; the exit code it calls for.
pub fn session(conn: &mut Conn, cfg: &Config, queue: &mut QueueClient, reporter: Option<&Reporter>) -> i32 {
    let peer = peer_info(&|k| std::env::var(k).ok(), conn.read_fd());
    let mut hooks = ProcessHooks::new(cfg, reporter);
    serve(conn, cfg, peer, queue, &mut hooks).exit_code()
}

/// The supervisor's report socket (`SMTPD_STATS_FD`), taken once per
/// process, before anything is started: close-on-exec, and the variable
/// removed, so that queue-inject and checkpassword never see it. A
/// variable that names no datagram socket is warned about and ignored.
pub fn reporter() -> Option<Reporter> {
    Reporter::from_env(false).unwrap_or_else(|e| {
        die::warn(PROG, format_args!("{e}; no session reports"));
        None
    })
}

/// The configuration, or a 421 to the client and exit 111.
pub fn config_or_421() -> Config {
    Config::from_env().unwrap_or_else(|e| {
        // Tell the client to come back later rather than leave it hanging.
        let _ = std::io::stdout().write_all(reply::CONFIG_ERROR.as_bytes());
        die::fatal(PROG, die::EXIT_TEMP, e)
    })
}

/// Serve handed-off sessions until the supervisor is gone or HANDOFF_MAX is
/// reached. The configuration is read again for every session, since the
/// supervisor's rules set per-client variables (RELAYCLIENT, XCLIENT, ...).
pub fn run(mut w: Worker) -> ! {
    let reporter = reporter();
    let first = Config::from_env().unwrap_or_else(|e| die::fatal(PROG, die::EXIT_TEMP, e));
    if w.forks() {
        template(w, &first, reporter.as_ref())
    }
    let mut queue = QueueClient::new(&first.queue);
    queue.prepare();
    loop {
        match w.begin_session() {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => die::fatal(PROG, die::EXIT_TEMP, format_args!("hand-off: {e}")),
        }
        handed_session(&mut queue, reporter.as_ref());
        match w.end_session() {
            Ok(true) => queue.prepare(),
            Ok(false) => break,
            Err(e) => die::fatal(PROG, die::EXIT_TEMP, format_args!("hand-off: {e}")),
        }
    }
    queue.close();
    die::quick_exit(0)
}

/// One handed-off session, now on fds 0 and 1 with its variables applied.
fn handed_session(queue: &mut QueueClient, reporter: Option<&Reporter>) -> i32 {
    match (Config::from_env(), dup_stdio()) {
        (Ok(cfg), Ok((r, wr))) => {
            let mut conn = Conn::new(r, wr, cfg.timeout);
            session(&mut conn, &cfg, queue, reporter)
        }
        (Err(e), _) => {
            let _ = std::io::stdout().write_all(reply::CONFIG_ERROR.as_bytes());
            die::warn(PROG, e);
            die::EXIT_TEMP
        }
        (_, Err(e)) => {
            die::warn(PROG, format_args!("unable to use fd 0 and 1: {e}"));
            die::EXIT_TEMP
        }
    }
}

/// A template's child's exit code when the channel closed before a
/// connection came (the supervisor is gone or retired the worker).
const NO_SESSION: i32 = 99;

/// HANDOFF_FORK (smtpd-supervise -F): this process serves no session. Ahead
/// of each connection it forks a child, which takes one connection, serves
/// it and exits; so each session has a fresh process, as with one exec per
/// session, without the exec. The child's queue-inject is fresh too: forked
/// for it by the template's queue-inject zygote (`queue-inject -z`, started
/// once, as the same user), or started by the child when there is none.
/// The template waits for the child, forks the next one and only then
/// reports idle (the supervisor may hand it the next connection at once). It never reads a
/// byte of any session, and the child gets no way to the zygote, so nothing
/// of one session can reach the next; what the children share with it is
/// the configuration read at start and the memory layout.
fn template(mut w: Worker, cfg: &Config, reporter: Option<&Reporter>) -> ! {
    let mut zygote = start_zygote(&cfg.queue);
    let mut child = fork_session(&mut w, &mut zygote, cfg, reporter);
    loop {
        use nix::sys::wait::{waitpid, WaitStatus};
        let status = loop {
            match waitpid(child, None) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other,
            }
        };
        if matches!(status, Ok(WaitStatus::Exited(_, NO_SESSION)) | Err(_)) || !w.count_session() {
            std::process::exit(0);
        }
        // The next session's process before the idle report: the supervisor
        // gives the next connection to the worker that has served most, this
        // one, which must not keep it waiting for a fork.
        child = fork_session(&mut w, &mut zygote, cfg, reporter);
        if let Err(e) = w.report_idle() {
            die::fatal(PROG, die::EXIT_TEMP, format_args!("hand-off: {e}"))
        }
    }
}

/// Fork the process of the template's next session, with its queue-inject
/// made by the zygote (or started by the child when there is none): it
/// waits for a connection, serves it and exits. Returns its pid.
fn fork_session(w: &mut Worker, zygote: &mut Option<Zygote>, cfg: &Config, reporter: Option<&Reporter>) -> nix::unistd::Pid {
    let made = match zygote.as_mut().map(Zygote::make) {
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            die::warn(PROG, format_args!("queue-inject zygote: {e}; starting queue-inject for each session"));
            if let Some(mut z) = zygote.take() {
                z.kill();
            }
            None
        }
        None => None,
    };
    // One thread here (this program starts none), as fork_single_threaded needs.
    let pid = match crate::sys::fork_single_threaded() {
        Ok(p) => p,
        Err(e) => die::fatal(PROG, die::EXIT_TEMP, format_args!("unable to fork: {e}")),
    };
    if pid == 0 {
        // The session's process keeps no channel to the zygote.
        drop(zygote.take());
        let mut queue = QueueClient::new(&cfg.queue);
        match made {
            Some(m) => queue.adopt(m),
            None => queue.prepare(),
        }
        match w.begin_session() {
            Ok(true) => {}
            Ok(false) => std::process::exit(NO_SESSION),
            Err(e) => die::fatal(PROG, die::EXIT_TEMP, format_args!("hand-off: {e}")),
        }
        let code = handed_session(&mut queue, reporter);
        // The client sees the end of the session now, not after this
        // process is torn down; its messages are on disk already.
        let _ = crate::handoff::release_connection();
        queue.close();
        die::quick_exit(code);
    }
    // The child's pipes to its queue-inject are the child's alone.
    drop(made);
    nix::unistd::Pid::from_raw(pid)
}

/// The template's queue-inject zygote, when the session program is
/// queue-inject itself (another one, auth-check say, knows no `-z`).
fn start_zygote(q: &QueueProgram) -> Option<Zygote> {
    let QueueProgram::Session(prog) = q else { return None };
    if prog.file_name().is_none_or(|n| n != "queue-inject") {
        return None;
    }
    Zygote::start(prog)
        .map_err(|e| die::warn(PROG, format_args!("unable to start {} -z: {e}; starting it for each session", prog.display())))
        .ok()
}

/// Private copies of fds 0 and 1 for one session's `Conn`; the worker keeps
/// fds 0 and 1 themselves for the hand-off to repoint.
fn dup_stdio() -> std::io::Result<(File, File)> {
    let r = std::io::stdin().lock();
    let r = File::from(std::os::fd::AsFd::as_fd(&r).try_clone_to_owned()?);
    let w = std::io::stdout().lock();
    let w = File::from(std::os::fd::AsFd::as_fd(&w).try_clone_to_owned()?);
    Ok((r, w))
}
