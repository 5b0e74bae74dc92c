//! queue-run: deliver the queue through smtp-remote, with retries and DSNs.
//! See man/queue-run.8. The loop lives in smtpd::queuerun::runner.

use smtpd::die;
use smtpd::queuerun::runner;
use std::path::PathBuf;

const PROG: &str = "queue-run";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = getopts::Options::new();
    opts.optflag("l", "list", "list the queue and exit");
    opts.optopt("e", "", "environment file, re-read on SIGHUP", "FILE");
    let m = opts
        .parse(&args)
        .unwrap_or_else(|e| die::fatal(PROG, die::EXIT_PERM, format_args!("{e}; usage: queue-run [-l] [-e FILE]")));
    if !m.free.is_empty() {
        die::fatal(PROG, die::EXIT_PERM, "usage: queue-run [-l] [-e FILE]");
    }
    // A state file written past RLIMIT_FSIZE fails with EFBIG (reported and
    // retried, as ENOSPC is) instead of killing queue-run with SIGXFSZ.
    if let Err(e) = smtpd::sys::ignore_sigxfsz() {
        die::fatal(PROG, die::EXIT_TEMP, format_args!("unable to ignore SIGXFSZ: {e}"));
    }
    let env_file = m.opt_str("e").map(PathBuf::from);
    let cfg = runner::load_config(env_file.as_deref()).unwrap_or_else(|e| die::fatal(PROG, die::EXIT_PERM, e));
    if m.opt_present("l") {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        if let Err(e) = runner::list(&cfg, &mut out) {
            die::fatal(PROG, die::EXIT_TEMP, format_args!("unable to list {}: {e}", cfg.queue_dir.display()));
        }
        std::process::exit(0);
    }
    std::process::exit(runner::Runner::new(cfg, env_file).run())
}
