//! queue-run: deliver the queue through smtp-remote, with retries and DSNs.
//! See man/queue-run.8. The loop lives in smtpd::queuerun::runner.

use smtpd::die;
use smtpd::queuerun::{runner, sign};
use std::path::PathBuf;

const PROG: &str = "queue-run";
const USAGE: &str = "usage: queue-run [-l] [-e FILE] | queue-run [-e FILE] --dkim-record [KEYFILE DOMAIN SELECTOR]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = getopts::Options::new();
    opts.optflag("l", "list", "list the queue and exit");
    opts.optopt("e", "", "environment file, re-read on SIGHUP", "FILE");
    opts.optflag("", "dkim-record", "print the DNS records of DKIM keys and exit");
    let m = opts.parse(&args).unwrap_or_else(|e| die::fatal(PROG, die::EXIT_PERM, format_args!("{e}; {USAGE}")));
    let record = m.opt_present("dkim-record");
    if !m.free.is_empty() && !record {
        die::fatal(PROG, die::EXIT_PERM, USAGE);
    }
    // A state file written past RLIMIT_FSIZE fails with EFBIG (reported and
    // retried, as ENOSPC is) instead of killing queue-run with SIGXFSZ.
    if let Err(e) = smtpd::sys::ignore_sigxfsz() {
        die::fatal(PROG, die::EXIT_TEMP, format_args!("unable to ignore SIGXFSZ: {e}"));
    }
    let env_file = m.opt_str("e").map(PathBuf::from);
    let cfg = runner::load_config(env_file.as_deref()).unwrap_or_else(|e| die::fatal(PROG, die::EXIT_PERM, e));
    if record {
        let out = sign::print_records(&cfg, &m.free, &mut std::io::stdout().lock());
        std::process::exit(out.map_or_else(|e| die::fatal(PROG, die::EXIT_PERM, e), |()| 0));
    }
    if m.opt_present("l") {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        if let Err(e) = runner::list(&cfg, &mut out) {
            die::fatal(PROG, die::EXIT_TEMP, format_args!("unable to list {}: {e}", cfg.queue_dir.display()));
        }
        std::process::exit(0);
    }
    // The signing table and its keys, before anything runs: a bad line is fatal.
    let signing = sign::Signing::load(&cfg).unwrap_or_else(|e| die::fatal(PROG, die::EXIT_PERM, e));
    std::process::exit(runner::Runner::new(cfg, env_file).with_signing(signing).run())
}
