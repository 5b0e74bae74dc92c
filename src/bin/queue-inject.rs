//! queue-inject: put a message durably into the queue (qmail-queue protocol),
//! or every message of a session (-s), or fork a fresh session-mode process
//! for each request (-z, the zygote), or clean old leftovers (-c).
use smtpd::die;
use smtpd::queue::{inject, zygote, Queue, EXIT_BUG, LEFTOVER_AGE};

const PROG: &str = "queue-inject";
const USAGE: &str = "usage: queue-inject [-s | -z | -c]";

fn main() {
    let mut opts = getopts::Options::new();
    opts.optflag("s", "", "session mode: many messages over framed fd 0/1");
    opts.optflag("z", "", "zygote: fork a session-mode process per request on fd 0");
    opts.optflag("c", "", "remove leftovers older than 36 hours from tmp/");
    let m = opts
        .parse(std::env::args_os().skip(1))
        .unwrap_or_else(|e| die::fatal(PROG, die::EXIT_PERM, format_args!("{e}; {USAGE}")));
    let modes = ["s", "z", "c"].iter().filter(|o| m.opt_present(o)).count();
    if !m.free.is_empty() || modes > 1 {
        die::fatal(PROG, die::EXIT_PERM, USAGE);
    }
    if let Err(e) = smtpd::sys::ignore_sigxfsz() {
        die::fatal(PROG, EXIT_BUG, format_args!("unable to ignore SIGXFSZ: {e}"));
    }
    let fail = |e: smtpd::queue::Error| -> ! { die::fatal(PROG, e.code, e) };
    let cfg = inject::Config::from_env().unwrap_or_else(|e| fail(e));
    if m.opt_present("c") {
        let n = inject::clean(&cfg).unwrap_or_else(|e| fail(e));
        if n > 0 {
            die::info(PROG, format_args!("removed {n} leftover work files from {}/tmp", cfg.dir.display()));
        }
    } else if m.opt_present("s") || m.opt_present("z") {
        let mut q = Queue::open(&cfg.dir).unwrap_or_else(|e| fail(e));
        match q.clean(LEFTOVER_AGE) {
            Ok(0) => {}
            Ok(n) => die::info(PROG, format_args!("removed {n} leftover work files")),
            Err(e) => die::warn(PROG, e),
        }
        // The zygote returns in each child it forks, ready for the session.
        if m.opt_present("z") && zygote::serve(&mut q).unwrap_or_else(|e| fail(e)) == zygote::Forked::Done {
            return;
        }
        inject::session(&cfg, &mut q).unwrap_or_else(|e| fail(e));
        die::quick_exit(0);
    } else {
        inject::per_message(&cfg).unwrap_or_else(|e| fail(e));
    }
}
