//! smtpd-rs: one SMTP server session on fd 0/1, log on fd 2. See smtpd-rs(8).
//! Under smtpd-supervise -W it is a hand-off worker (src/smtpd/worker.rs).

use smtpd::die;
use smtpd::handoff::Worker;
use smtpd::smtpd::worker;

const PROG: &str = "smtpd-rs";

fn main() {
    smtpd::sys::default_sigchld();
    match Worker::from_env() {
        Ok(Some(w)) => worker::run(w),
        Ok(None) => {}
        Err(e) => die::fatal(PROG, die::EXIT_TEMP, format_args!("hand-off: {e}")),
    }
    die::quick_exit(worker::classic())
}
