//! The kept delivery processes: `smtp-remote -m`, each holding at most one
//! connection open between jobs (doc/PROTOCOLS.md 10). Starts them, hands
//! each one job at a time with the message file (`crate::remotejob`), turns
//! their answers and exits into events, and closes them when they have been
//! idle too long. `room` (pure) says whether a delivery may start, counting
//! a kept process as a running delivery. Which job goes where, and when,
//! is the runner's: a process gets its next job only after the runner has
//! recorded the outcome of the one before.

use super::report::{self, Exit};
use crate::remotejob::{self, AnswerReader};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long writing one job may block: a process waits for its next job,
/// so this only bounds a process that hangs instead.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// What a process reports, from its reader thread.
#[derive(Debug)]
pub enum Event {
    /// The answer to its job: the report, as one-message mode writes it.
    Answer { proc: u64, report: Vec<u8> },
    /// It exited (EOF on its socket, then wait(2)); `report` holds what came
    /// of an answer cut off, for a job still outstanding.
    Gone { proc: u64, report: Vec<u8>, exit: Exit },
}

/// Whether a delivery to a domain may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    Start,
    /// Every slot is taken by a running delivery (`CONCURRENCY`).
    WaitAny,
    /// The domain has its share (`CONCURRENCY_DOMAIN`).
    WaitDomain,
}

/// The counts `room` weighs: deliveries running (`busy`, of them `busy_dom`
/// to the domain) and kept processes waiting for a job (`idle`, of them
/// `idle_dom` last used for the domain). A kept process counts as a running
/// delivery, of the domain of its last job; taking one over for another
/// domain moves it from that domain to this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub busy: usize,
    pub busy_dom: usize,
    pub idle: usize,
    pub idle_dom: usize,
}

/// Pure: `concurrency` in all, `per_domain` to one domain.
pub fn room(c: Counts, concurrency: usize, per_domain: usize) -> Room {
    if c.idle_dom > 0 {
        // Its own kept process: the counts stay as they are.
        return Room::Start;
    }
    if c.idle == 0 && c.busy >= concurrency {
        return Room::WaitAny;
    }
    if c.busy_dom >= per_domain {
        return Room::WaitDomain;
    }
    // A free slot, or a kept process of another domain to take over.
    Room::Start
}

struct Proc {
    pid: u32,
    sock: UnixStream,
    /// The domain of its last job.
    domain: String,
    /// The runner's job in flight, if any.
    job: Option<u64>,
    since: Instant,
    /// Close it once its job is answered (SIGHUP: a new configuration).
    retire: bool,
}

#[derive(Default)]
pub struct Pool {
    procs: HashMap<u64, Proc>,
    next: u64,
}

impl Pool {
    /// Kept processes waiting for a job.
    pub fn idle(&self) -> usize {
        self.procs.values().filter(|p| p.job.is_none()).count()
    }

    /// Of them, those whose last job was for `dom`.
    pub fn idle_for(&self, dom: &str) -> usize {
        self.procs.values().filter(|p| p.job.is_none() && p.domain == dom).count()
    }

    /// Every process alive, busy or not.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// The idle process for a job to `dom`: one whose last job was for it
    /// (its connection may serve), else the one idle the longest.
    pub fn pick(&self, dom: &str) -> Option<u64> {
        let idle = || self.procs.iter().filter(|(_, p)| p.job.is_none());
        idle()
            .filter(|(_, p)| p.domain == dom)
            .max_by_key(|(_, p)| p.since)
            .or_else(|| idle().min_by_key(|(_, p)| p.since))
            .map(|(&n, _)| n)
    }

    /// Start `prog -m` with `env` (the caller's, plus the reuse limits),
    /// stderr shared, in its own process group. `notify` gets its events
    /// (from a thread that reads its answers and reaps it); false: stop.
    pub fn spawn(
        &mut self,
        prog: &OsString,
        env: &[(OsString, OsString)],
        notify: impl Fn(Event) -> bool + Send + 'static,
    ) -> io::Result<u64> {
        let (ours, theirs) = remotejob::pair()?;
        let sock = UnixStream::from(ours);
        sock.set_write_timeout(Some(SEND_TIMEOUT))?;
        let reader = sock.try_clone()?;
        let mut cmd = Command::new(prog);
        cmd.arg("-m").process_group(0).envs(env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::from(theirs.try_clone()?)).stdout(Stdio::from(theirs)).stderr(Stdio::inherit());
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let proc = self.next;
        self.next += 1;
        std::thread::spawn(move || {
            let mut answers = AnswerReader::new(reader);
            let report = loop {
                match answers.next_answer() {
                    Ok(Some(mut report)) => {
                        report.truncate(report::MAX_REPORT);
                        if !notify(Event::Answer { proc, report }) {
                            break Vec::new();
                        }
                    }
                    Ok(None) => break Vec::new(),
                    Err(_) => {
                        // A broken answer: its bytes so far count as a report
                        // cut off; the process is stopped, the job retried.
                        let mut cut = answers.leftover().to_vec();
                        cut.truncate(report::MAX_REPORT);
                        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
                        break cut;
                    }
                }
            };
            let exit = Exit::of(child.wait());
            notify(Event::Gone { proc, report, exit });
        });
        self.procs.insert(proc, Proc { pid, sock, domain: String::new(), job: None, since: Instant::now(), retire: false });
        Ok(proc)
    }

    /// Hand `proc` the runner's `job` (its frame and the message file, at the
    /// start of the message text). Its pid, for the watchdog. `Err`: the
    /// process could not take it (it is closed; the job was not sent whole,
    /// so nothing of it was delivered).
    pub fn send(&mut self, proc: u64, job: u64, dom: &str, frame: &[u8], file: &File) -> io::Result<u32> {
        let sent = match self.procs.get(&proc) {
            Some(p) => remotejob::send_job(p.sock.as_fd(), frame, file.as_fd()),
            None => Err(io::ErrorKind::NotFound.into()),
        };
        if let Err(e) = sent {
            self.close(proc);
            return Err(e);
        }
        let p = self.procs.get_mut(&proc).ok_or(io::ErrorKind::NotFound)?;
        p.job = Some(job);
        p.since = Instant::now();
        if p.domain != dom {
            p.domain = dom.to_owned();
        }
        Ok(p.pid)
    }

    /// `proc` answered: its job, now done; the process is idle again (or
    /// closed, when it was to retire).
    pub fn answered(&mut self, proc: u64) -> Option<u64> {
        let p = self.procs.get_mut(&proc)?;
        let job = p.job.take();
        p.since = Instant::now();
        if p.retire {
            self.close(proc);
        }
        job
    }

    /// `proc` exited: the job it still had, if any.
    pub fn gone(&mut self, proc: u64) -> Option<u64> {
        self.procs.remove(&proc).and_then(|p| p.job)
    }

    /// Close `proc`'s socket: EOF, so it sends QUIT and exits (its exit
    /// comes as an `Event::Gone` the runner ignores).
    pub fn close(&mut self, proc: u64) {
        self.procs.remove(&proc);
    }

    /// Close the processes idle for `idle` or longer.
    pub fn expire(&mut self, idle: Duration) {
        let old: Vec<u64> = self.procs.iter().filter(|(_, p)| p.job.is_none() && p.since.elapsed() >= idle).map(|(&n, _)| n).collect();
        for n in old {
            self.close(n);
        }
    }

    /// When the next idle process is due to be closed.
    pub fn next_expiry(&self, idle: Duration) -> Option<Instant> {
        self.procs.values().filter(|p| p.job.is_none()).map(|p| p.since + idle).min()
    }

    /// Close the idle processes now, the busy ones after their answer
    /// (SIGHUP, SIGTERM).
    pub fn retire_all(&mut self) {
        for p in self.procs.values_mut() {
            p.retire = true;
        }
        self.expire(Duration::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(busy: usize, busy_dom: usize, idle: usize, idle_dom: usize) -> Counts {
        Counts { busy, busy_dom, idle, idle_dom }
    }

    #[test]
    fn rooms() {
        // (counts, concurrency 4, per domain 2)
        let table = [
            (c(0, 0, 0, 0), Room::Start),
            (c(3, 1, 0, 0), Room::Start),
            (c(4, 0, 0, 0), Room::WaitAny),
            (c(2, 2, 0, 0), Room::WaitDomain),
            // Its own idle process: always, whatever else runs.
            (c(3, 2, 1, 1), Room::Start),
            // Another domain's idle process, when the domain has room.
            (c(3, 1, 1, 0), Room::Start),
            (c(3, 2, 1, 0), Room::WaitDomain),
            // Without kept processes, as before: the total first.
            (c(4, 2, 0, 0), Room::WaitAny),
        ];
        for (counts, want) in table {
            assert_eq!(room(counts, 4, 2), want, "{counts:?}");
        }
    }

    #[test]
    fn the_pool_picks_and_expires() {
        let mut pool = Pool::default();
        // Processes that only exist in the table (no process behind them).
        for (n, dom, job) in [(0, "a.example", None), (1, "b.example", None), (2, "a.example", Some(7))] {
            let (s, _) = UnixStream::pair().unwrap();
            pool.procs.insert(n, Proc { pid: 0, sock: s, domain: dom.into(), job, since: Instant::now(), retire: false });
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!((pool.idle(), pool.idle_for("a.example"), pool.len()), (2, 1, 3));
        assert_eq!(pool.pick("a.example"), Some(0));
        assert_eq!(pool.pick("b.example"), Some(1));
        // None of its own: the one idle the longest.
        assert_eq!(pool.pick("c.example"), Some(0));
        assert_eq!(pool.answered(2), Some(7));
        assert_eq!(pool.idle_for("a.example"), 2);
        assert_eq!(pool.gone(2), None);
        pool.retire_all();
        assert!(pool.is_empty());
    }
}
