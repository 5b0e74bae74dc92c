//! smtp-remote: deliver one message to one host, report as qmail-remote;
//! `smtp-remote -m`: queue-run's deliveries in turn over kept connections.
use smtpd::dns::Resolver;
use smtpd::remote::deliver::{self, Config, Job};
use smtpd::remote::report::{self, Outcome};
use smtpd::remote::spool::Spool;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;

// Nothing is ever written to fd 2 in one-message mode: qmail-rspawn makes
// it a copy of fd 1, so a diagnostic there would corrupt the report.

fn main() {
    let args: Vec<Vec<u8>> = std::env::args_os().skip(1).map(|a| a.into_vec()).collect();
    // Exactly one argument: a domain "-m" comes with a sender and recipients.
    if args.len() == 1 && args[0] == b"-m" {
        std::process::exit(smtpd::remote::multi::run());
    }
    let outcome_only = |o: Outcome| report::encode("", &[], &o);
    let config = |e: &str| outcome_only(Outcome::temp(format!("Unable to read configuration: {}. (#4.3.0)", report::safe(e))));
    let out = match args.as_slice() {
        [host, sender, rcpts @ ..] if !rcpts.is_empty() => match Config::from_env().and_then(|c| Ok((c, deliver::attrs_from_env()?))) {
            Err(e) => config(&e),
            Ok((cfg, attrs)) => match Job::new(String::from_utf8_lossy(host).into_owned(), sender.clone(), rcpts.to_vec(), attrs) {
                Err(e) => config(&format!("bad QUEUE_ATTRS: {e}")),
                Ok(job) => match Spool::from_stdin() {
                    Err(e) => outcome_only(Outcome::temp(format!("Unable to read message: {}. (#4.3.0)", report::safe(&e.to_string())))),
                    Ok(mut spool) => {
                        let d = deliver::deliver(&cfg, &job, &mut spool, &Resolver::from_env());
                        report::encode(&d.partner, &d.rcpts, &d.outcome)
                    }
                },
            },
        },
        _ => outcome_only(Outcome::perm("I (smtp-remote) was invoked improperly. (#5.3.5)")),
    };
    // qmail-remote exits 0 whatever happened: the report says it all.
    let mut so = std::io::stdout().lock();
    if so.write_all(&out).and_then(|_| so.flush()).is_err() {
        std::process::exit(smtpd::die::EXIT_TEMP);
    }
}
