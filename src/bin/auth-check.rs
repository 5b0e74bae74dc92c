//! auth-check: SPF, DKIM and DMARC for each message between smtpd-rs and
//! queue-inject, with an Authentication-Results field on top; the
//! qmail-queue protocol, or a whole session's messages (-s).
use smtpd::authcheck::{config::Config, psl, run};
use smtpd::die;
use smtpd::dns::{CachedResolver, Resolver};
use smtpd::queue::{EXIT_BUG, EXIT_CONFIG};

const PROG: &str = "auth-check";
const USAGE: &str = "usage: auth-check [-s]";

fn main() {
    let mut opts = getopts::Options::new();
    opts.optflag("s", "", "session mode: many messages over framed fd 0/1");
    let m = opts
        .parse(std::env::args_os().skip(1))
        .unwrap_or_else(|e| die::fatal(PROG, die::EXIT_PERM, format_args!("{e}; {USAGE}")));
    if !m.free.is_empty() {
        die::fatal(PROG, die::EXIT_PERM, USAGE);
    }
    smtpd::sys::default_sigchld();
    if let Err(e) = smtpd::sys::ignore_sigxfsz() {
        die::fatal(PROG, EXIT_BUG, format_args!("unable to ignore SIGXFSZ: {e}"));
    }
    // notqmail's error pipe, in per-message mode, if the caller opened it.
    let fd6 = if m.opt_present("s") { None } else { smtpd::sys::take_fd(6).ok() };
    let fail = |e: smtpd::queue::Error| -> ! { die::fatal(PROG, e.code, e) };
    let cfg = Config::from_env().unwrap_or_else(|e| fail(e));
    // Read at its first use; a missing file is a configuration error now.
    let psl = psl::Lazy::from_env();
    if let Err(e) = psl.check() {
        die::fatal(PROG, EXIT_CONFIG, format_args!("public suffix list: {e} (Debian package publicsuffix, or PUBLIC_SUFFIX_LIST)"));
    }
    let dns = CachedResolver::new(Resolver::from_env());
    let c = run::Checker { cfg: &cfg, dns: &dns, psl: &psl };
    if m.opt_present("s") {
        run::session(&c).unwrap_or_else(|e| fail(e));
    } else {
        let code = run::per_message(&c, fd6).unwrap_or_else(|e| fail(e));
        std::process::exit(code);
    }
}
