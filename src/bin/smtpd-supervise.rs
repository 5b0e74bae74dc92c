//! smtpd-supervise: bind, drop privileges, prefork or fork per connection,
//! watchdog and restart; see man/smtpd-supervise.8.
use smtpd::die;
use smtpd::supervise::{config::Config, server};

const PROG: &str = "smtpd-supervise";

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let env_ids = (std::env::var("UID").ok(), std::env::var("GID").ok());
    let cfg = Config::parse(&args, env_ids).unwrap_or_else(|e| die::fatal(PROG, die::EXIT_PERM, e));
    std::process::exit(server::run(cfg))
}
