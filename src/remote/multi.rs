//! `smtp-remote -m`: the deliveries queue-run hands over one after the
//! other, in one process, over kept connections (`deliver::Session`). Jobs
//! come on fd 0 with their message files (`crate::remotejob`,
//! doc/PROTOCOLS.md 10); each is answered on fd 1 with exactly the report
//! the one-message mode would write. EOF on fd 0: QUIT, exit 0.

use super::deliver::{Config, Job, Reuse, Session};
use super::report::{self, Outcome};
use super::spool::Spool;
use crate::die;
use crate::dns::Resolver;
use crate::envelope::Attrs;
use crate::remotejob::{self, JobReader};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

const PROG: &str = "smtp-remote";

/// Serve jobs until EOF; the exit code (0, or 111 when the channel broke).
pub fn run() -> i32 {
    // A bad setting is every job's temporary failure, as in one-message mode.
    let cfg = Config::from_env().and_then(|c| Ok((c, Reuse::from_env()?)));
    let dns = Resolver::from_env();
    let mut session = Session::new(cfg.as_ref().map_or(Reuse::DEFAULT, |(_, r)| *r));
    let stdin = std::io::stdin();
    let mut jobs = JobReader::new(stdin.as_fd());
    let mut out = std::io::stdout().lock();
    let code = loop {
        let (job, file) = match jobs.next_job() {
            Ok(Some(j)) => j,
            Ok(None) => break 0,
            Err(e) => {
                die::warn(PROG, e);
                break die::EXIT_TEMP;
            }
        };
        let report = one(&cfg, &mut session, &dns, job, file);
        if let Err(e) = out.write_all(&remotejob::encode_answer(&report)).and_then(|_| out.flush()) {
            die::warn(PROG, format_args!("unable to write the report: {e}"));
            break die::EXIT_TEMP;
        }
    };
    session.close();
    code
}

/// One job: its report.
fn one(cfg: &Result<(Config, Reuse), String>, session: &mut Session, dns: &Resolver, j: remotejob::Job, file: OwnedFd) -> Vec<u8> {
    let temp = |text: String| report::encode("", &[], &Outcome::temp(text));
    let cfg = match cfg {
        Ok((c, _)) => c,
        Err(e) => return temp(format!("Unable to read configuration: {}. (#4.3.0)", report::safe(e))),
    };
    let Some(attrs) = Attrs::parse(&j.attrs) else {
        return temp("Unable to read configuration: bad QUEUE_ATTRS. (#4.3.0)".into());
    };
    let job = match Job::new(String::from_utf8_lossy(&j.host).into_owned(), j.sender, j.rcpts, attrs) {
        Ok(job) => job,
        Err(e) => return temp(format!("Unable to read configuration: bad QUEUE_ATTRS: {e}. (#4.3.0)")),
    };
    let mut spool = match Spool::from_file(File::from(file)) {
        Ok(s) => s,
        Err(e) => return temp(format!("Unable to read message: {}. (#4.3.0)", report::safe(&e.to_string()))),
    };
    let d = session.deliver(cfg, &job, &mut spool, dns);
    report::encode(&d.partner, &d.rcpts, &d.outcome)
}
