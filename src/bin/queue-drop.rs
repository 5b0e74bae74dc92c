//! queue-drop: put one message from a local user into the queue's drop
//! folder (qmail-queue protocol), for queue-run to pick up. Installed setgid
//! to the drop group; see man/queue-drop.8 and src/queue/drop.rs.
use smtpd::die;
use smtpd::queue::{drop, inject, EXIT_BUG};
use std::os::fd::{AsRawFd, IntoRawFd};

const PROG: &str = "queue-drop";

fn main() {
    // A caller may close fds 0 to 2 before running a setgid program so that
    // a file it opens lands on one of them (and diagnostics go into it):
    // hold each closed one on /dev/null first.
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) if f.as_raw_fd() <= 2 => {
                let _ = f.into_raw_fd();
            }
            Ok(_) => break,
            Err(_) => std::process::exit(EXIT_BUG),
        }
    }
    if std::env::args_os().len() > 1 {
        die::fatal(PROG, die::EXIT_PERM, "usage: queue-drop (message on fd 0, envelope on fd 1)");
    }
    if let Err(e) = smtpd::sys::ignore_sigxfsz() {
        die::fatal(PROG, EXIT_BUG, format_args!("unable to ignore SIGXFSZ: {e}"));
    }
    let fail = |e: smtpd::queue::Error| -> ! { die::fatal(PROG, e.code, e) };
    let cfg = inject::Config::from_env().unwrap_or_else(|e| fail(e));
    drop::run(&cfg).unwrap_or_else(|e| fail(e));
}
