//! smtp-remote: deliver one message to one host, report as qmail-remote.
use smtpd::dns::Resolver;
use smtpd::remote::deliver::{self, Config, Job};
use smtpd::remote::report::{self, Outcome};
use smtpd::remote::spool::Spool;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;

const PROG: &str = "smtp-remote";

fn main() {
    let args: Vec<Vec<u8>> = std::env::args_os().skip(1).map(|a| a.into_vec()).collect();
    let outcome_only = |o: Outcome| report::encode("", &[], &o);
    let out = match args.as_slice() {
        [host, sender, rcpts @ ..] if !rcpts.is_empty() => match Config::from_env() {
            Err(e) => {
                smtpd::die::warn(PROG, &e);
                outcome_only(Outcome::temp(format!("Unable to read configuration: {}. (#4.3.0)", report::safe(&e))))
            }
            Ok(cfg) => match Spool::from_stdin() {
                Err(e) => outcome_only(Outcome::temp(format!("Unable to read message: {e}. (#4.3.0)"))),
                Ok(mut spool) => {
                    let job = Job { host: String::from_utf8_lossy(host).into_owned(), sender: sender.clone(), rcpts: rcpts.to_vec() };
                    let d = deliver::deliver(&cfg, &job, &mut spool, &Resolver::from_env());
                    report::encode(&d.partner, &d.rcpts, &d.outcome)
                }
            },
        },
        _ => {
            smtpd::die::warn(PROG, "usage: smtp-remote host sender recip [recip ...]");
            outcome_only(Outcome::perm("I (smtp-remote) was invoked improperly. (#5.3.5)"))
        }
    };
    // qmail-remote exits 0 whatever happened: the report says it all.
    let mut so = std::io::stdout().lock();
    if so.write_all(&out).and_then(|_| so.flush()).is_err() {
        std::process::exit(smtpd::die::EXIT_TEMP);
    }
}
