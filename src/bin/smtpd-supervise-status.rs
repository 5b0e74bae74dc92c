//! smtpd-supervise-status: print the scoreboard that smtpd-supervise -L
//! keeps, as a table (default), tab-separated (-t) or JSON lines (-j).
//! See man/smtpd-supervise-status.8.

use smtpd::die;
use smtpd::metrics::status::{render, Form};
use std::io::{Read, Write};

const PROG: &str = "smtpd-supervise-status";
const USAGE: &str = "usage: smtpd-supervise-status [-t | -j] scoreboard";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = getopts::Options::new();
    o.optflag("t", "", "");
    o.optflag("j", "", "");
    let m = o.parse(&args).unwrap_or_else(|e| die::fatal(PROG, die::EXIT_PERM, format_args!("{e}; {USAGE}")));
    let [path] = m.free.as_slice() else { die::fatal(PROG, die::EXIT_PERM, USAGE) };
    let form = match (m.opt_present("t"), m.opt_present("j")) {
        (false, false) => Form::Table,
        (true, false) => Form::Tab,
        (false, true) => Form::Json,
        (true, true) => die::fatal(PROG, die::EXIT_PERM, USAGE),
    };
    let mut text = String::new();
    let limit = smtpd::scoreboard::MAX_FILE as u64 + 1;
    if let Err(e) = std::fs::File::open(path).and_then(|f| f.take(limit).read_to_string(&mut text)) {
        die::fatal(PROG, die::EXIT_TEMP, format_args!("unable to read {path}: {e}"));
    }
    let (h, rows) = smtpd::scoreboard::parse(&text).unwrap_or_else(|e| die::fatal(PROG, die::EXIT_TEMP, format_args!("{path}: {e}")));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    // Signal 0: is the supervisor still there? EPERM means it is, as another user.
    let alive = i32::try_from(h.pid).is_ok_and(|p| {
        !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None), Err(nix::errno::Errno::ESRCH))
    });
    let out = render(&h, &rows, now, alive, form);
    if std::io::stdout().lock().write_all(out.as_bytes()).is_err() {
        std::process::exit(die::EXIT_TEMP);
    }
    // A supervisor that is gone: exit 1, so that scripts can tell.
    std::process::exit(if alive { 0 } else { 1 })
}
