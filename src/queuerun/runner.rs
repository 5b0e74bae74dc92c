//! The queue-run daemon: watches `new/` (inotify plus a periodic scan), runs
//! the delivery program per destination domain within the concurrency limits,
//! records every outcome durably before acting on it, queues DSNs, removes
//! finished messages. With kept connections (pool.rs) the program is
//! `smtp-remote -m`, fed one job at a time. One thread owns all state; helper threads only turn
//! signals, inotify events and finished deliveries into events on a channel.

use super::config::Config;
use super::dsn::{self, Action, RcptReport};
use super::inject::{Injection, Refused};
use super::metrics::QueueMetrics;
use super::pickup;
use super::plan::{self, BounceTo, Policy};
use super::pool::{self, Pool, Room};
use crate::queue::format::Header;
use super::report::{self, Exit, Outcome};
use super::sign;
use super::state::State;
use super::store::{LoadError, PrepareError, Queue};
use crate::die;
use crate::envelope::{Attrs, Envelope};
use crate::queue::printable_address;
use crate::remotejob;
use nix::sys::signal::{SigSet, Signal};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PROG: &str = "queue-run";

/// Seconds before retrying what could not be done for a local reason (state
/// not recorded, DSN not queued, file unreadable).
const LOCAL_RETRY: u64 = 60;

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// This host's name (for DSNs), from the kernel.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Read the configuration: `env_file` (if any, read as systemd's
/// `EnvironmentFile=` by `crate::envfile`, as smtpd-supervise reads its `-e`)
/// over the process environment. The file's assignments are kept in
/// `Config::env` for the programs queue-run runs.
pub fn load_config(env_file: Option<&Path>) -> Result<Config, String> {
    let file = match env_file {
        None => Vec::new(),
        Some(p) => read_env_file(p)?,
    };
    let get = |k: &str| {
        file.iter()
            .rev()
            .find(|(fk, _)| fk.as_slice() == k.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .or_else(|| std::env::var(k).ok())
    };
    let mut cfg = Config::from_lookup(get, &hostname())?;
    cfg.env = file.into_iter().map(|(k, v)| (OsString::from_vec(k), OsString::from_vec(v))).collect();
    if let Some(p) = &cfg.local_domains_file {
        let text = std::fs::read_to_string(p).map_err(|e| format!("unable to read LOCAL_DOMAINS {}: {e}", p.display()))?;
        cfg.local_domains = super::config::parse_domains(&text);
    }
    Ok(cfg)
}

/// The assignments of an environment file, at most `envfile::MAX_FILE` octets.
fn read_env_file(p: &Path) -> Result<Vec<crate::envfile::Pair>, String> {
    let mut text = Vec::new();
    File::open(p)
        .and_then(|f| f.take(crate::envfile::MAX_FILE as u64 + 1).read_to_end(&mut text))
        .map_err(|e| format!("unable to read {}: {e}", p.display()))?;
    crate::envfile::parse_envfile(&text).map_err(|e| format!("{}: {e}", p.display()))
}

/// A program named by a setting, or `name` next to our own binary, or `name` from PATH.
pub fn program(set: Option<&OsString>, name: &str) -> OsString {
    if let Some(p) = set {
        return p.clone();
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
        let p = dir.join(name);
        if p.is_file() {
            return p.into_os_string();
        }
    }
    OsString::from(name)
}

enum Event {
    Names(Vec<String>),
    /// Names that appeared in maildrop/.
    Drops(Vec<String>),
    Rescan,
    Signal(Signal),
    Done { job: u64, out: Vec<u8>, exit: Exit },
    /// A kept delivery process answered or exited.
    Pool(pool::Event),
}

/// A message with deliveries in flight (or being looked at).
struct Active {
    header: Header,
    body_offset: u64,
    size: u64,
    state: State,
    in_flight: HashSet<usize>,
    jobs: usize,
}

struct Job {
    id: String,
    domain: String,
    idxs: Vec<usize>,
    pid: u32,
    started: Instant,
    abandoned: bool,
    /// Killed by the watchdog (its outcome, a temporary failure, is recorded).
    timed_out: bool,
}

pub struct Runner {
    cfg: Config,
    env_file: Option<PathBuf>,
    q: Queue,
    remote: OsString,
    /// The program for `LOCAL_DOMAINS` (maildir-deliver by default).
    local: OsString,
    queue_prog: OsString,
    tx: Sender<Event>,
    rx: Receiver<Event>,
    sched: BTreeSet<(u64, String)>,
    when: HashMap<String, u64>,
    active: HashMap<String, Active>,
    jobs: HashMap<u64, Job>,
    next_job: u64,
    per_domain: HashMap<String, usize>,
    wait_any: VecDeque<String>,
    wait_dom: HashMap<String, VecDeque<String>>,
    waiting: HashSet<String>,
    stop_at: Option<Instant>,
    killed: bool,
    /// DKIM signing (sign.rs): off unless `with_signing`.
    signing: sign::Signing,
    /// The figures for Prometheus (METRICS_FILE), fed by small hooks below.
    metrics: QueueMetrics,
    /// Kept `smtp-remote -m` processes (CONNECTION_REUSE_COUNT above 0).
    pool: Pool,
}

impl Runner {
    pub fn new(cfg: Config, env_file: Option<PathBuf>) -> Runner {
        let (tx, rx) = mpsc::channel();
        let metrics = QueueMetrics::from_config(&cfg).unwrap_or_else(|e| die::fatal(PROG, die::EXIT_PERM, e));
        Runner {
            metrics,
            q: Queue::new(cfg.queue_dir.clone()),
            remote: program(cfg.remote.as_ref(), "smtp-remote"),
            local: program(cfg.local.as_ref(), "maildir-deliver"),
            queue_prog: program(cfg.queue_prog.as_ref(), "queue-inject"),
            cfg,
            env_file,
            tx,
            rx,
            sched: BTreeSet::new(),
            when: HashMap::new(),
            active: HashMap::new(),
            jobs: HashMap::new(),
            next_job: 0,
            per_domain: HashMap::new(),
            wait_any: VecDeque::new(),
            wait_dom: HashMap::new(),
            waiting: HashSet::new(),
            stop_at: None,
            killed: false,
            signing: sign::Signing::off(),
            pool: Pool::default(),
        }
    }

    /// Sign outbound mail with this set-up (`sign::Signing::load`, made by
    /// the main so that a bad signing table is fatal before anything runs).
    pub fn with_signing(mut self, signing: sign::Signing) -> Runner {
        self.signing = signing;
        self
    }

    /// Run until SIGTERM (or SIGINT). Returns the exit code.
    pub fn run(mut self) -> i32 {
        // Block the signals in every thread; one thread waits for them.
        let mut sigs = SigSet::empty();
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGALRM] {
            sigs.add(s);
        }
        if let Err(e) = sigs.thread_block() {
            die::fatal(PROG, die::EXIT_TEMP, format_args!("unable to block signals: {e}"));
        }
        match self.q.prepare() {
            Ok(()) => {}
            // Folders others can write to: a clear refusal, at start.
            Err(PrepareError::Unsafe(e)) => die::fatal(PROG, die::EXIT_TEMP, format_args!("{e} (see smtpd-queue(5))")),
            Err(e) => die::fatal(PROG, die::EXIT_TEMP, format_args!("unable to set up {}: {e}", self.q.dir.display())),
        }
        let tx = self.tx.clone();
        std::thread::spawn(move || loop {
            match sigs.wait() {
                Ok(s) => {
                    if tx.send(Event::Signal(s)).is_err() {
                        return;
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        });
        match crate::sys::inotify_watch_dir(&self.q.new_dir()) {
            Ok(fd) => {
                let tx = self.tx.clone();
                std::thread::spawn(move || watch(File::from(fd), tx, false));
            }
            Err(e) => die::warn(PROG, format_args!("no inotify ({e}): new messages are seen by the periodic scan only")),
        }
        match crate::sys::inotify_watch_dir(&self.q.maildrop_dir()) {
            Ok(fd) => {
                let tx = self.tx.clone();
                std::thread::spawn(move || watch(File::from(fd), tx, true));
            }
            Err(e) => die::warn(PROG, format_args!("no inotify on maildrop/ ({e}): local messages are seen by the periodic scan only")),
        }
        match self.q.clean_maildrop(crate::queue::LEFTOVER_AGE) {
            Ok(0) => {}
            Ok(n) => die::info(PROG, format_args!("removed {n} leftover work files from maildrop/")),
            Err(e) => die::warn(PROG, format_args!("unable to clean maildrop/: {e}")),
        }
        match self.q.clean_state() {
            Ok(0) => {}
            Ok(n) => die::info(PROG, format_args!("removed {n} leftover state files")),
            Err(e) => die::warn(PROG, format_args!("unable to clean state/: {e}")),
        }
        die::info(
            PROG,
            format_args!(
                "started: queue {}, delivery program {}, concurrency {} ({} per domain), {}",
                self.q.dir.display(),
                self.remote.to_string_lossy(),
                self.cfg.concurrency,
                self.cfg.per_domain,
                if self.keeps_connections() {
                    format!(
                        "kept connections ({} messages, {} s each, closed after {} s idle)",
                        self.cfg.reuse_count, self.cfg.reuse_time, self.cfg.idle_time
                    )
                } else {
                    "one run per delivery".into()
                }
            ),
        );
        let mut next_scan = Instant::now();
        loop {
            let now = unix_now();
            while let Some((t, id)) = self.sched.first().cloned() {
                if t > now || self.stop_at.is_some() {
                    break;
                }
                self.sched.pop_first();
                self.when.remove(&id);
                self.process(&id, false);
            }
            if Instant::now() >= next_scan && self.stop_at.is_none() {
                self.scan();
                next_scan = Instant::now() + Duration::from_secs(self.cfg.scan_interval);
            }
            self.watchdog();
            self.pool.expire(Duration::from_secs(self.cfg.idle_time));
            if let Some(at) = self.stop_at {
                if self.jobs.is_empty() {
                    // Idle kept processes see EOF: QUIT, exit.
                    self.pool = Pool::default();
                    self.metrics.tick(0, true);
                    die::info(PROG, "stopped");
                    return 0;
                }
                if Instant::now() >= at && !self.killed {
                    self.kill_all("stopping");
                }
            }
            let mut wait = next_scan.saturating_duration_since(Instant::now());
            if let Some((t, _)) = self.sched.first() {
                wait = wait.min(Duration::from_secs(t.saturating_sub(unix_now())));
            }
            if !self.jobs.is_empty() {
                wait = wait.min(Duration::from_secs(1));
            }
            if let Some(t) = self.metrics.next_due() {
                wait = wait.min(t.saturating_duration_since(Instant::now()));
            }
            if let Some(t) = self.pool.next_expiry(Duration::from_secs(self.cfg.idle_time)) {
                wait = wait.min(t.saturating_duration_since(Instant::now()));
            }
            match self.rx.recv_timeout(wait) {
                Ok(ev) => self.event(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return 111,
            }
            self.metrics.tick(self.jobs.len(), false);
        }
    }

    fn event(&mut self, ev: Event) {
        match ev {
            Event::Names(names) => {
                if self.stop_at.is_none() {
                    for n in names {
                        if !self.known(&n) {
                            self.process(&n, false);
                        }
                    }
                }
            }
            Event::Drops(names) => {
                if self.stop_at.is_none() {
                    for n in names.iter().filter(|n| !n.starts_with('.')) {
                        self.pickup(n);
                    }
                }
            }
            Event::Rescan => self.scan(),
            Event::Done { job, out, exit } => self.done(job, out, exit),
            Event::Pool(pool::Event::Answer { proc, report }) => {
                if let Some(job) = self.pool.answered(proc) {
                    if self.stop_at.is_some() {
                        self.pool.close(proc);
                    }
                    self.done(job, report, Exit::Code(0));
                }
            }
            Event::Pool(pool::Event::Gone { proc, report, exit }) => {
                if let Some(job) = self.pool.gone(proc) {
                    self.done(job, report, exit);
                }
            }
            Event::Signal(Signal::SIGHUP) => match load_config(self.env_file.as_deref()).and_then(|c| Ok((sign::Signing::load(&c)?, c))) {
                Ok((signing, c)) => {
                    self.signing = signing;
                    if c.queue_dir != self.cfg.queue_dir {
                        die::warn(PROG, "SIGHUP: QUEUE_DIR cannot change while running; kept");
                    }
                    self.remote = program(c.remote.as_ref(), "smtp-remote");
                    self.local = program(c.local.as_ref(), "maildir-deliver");
                    self.queue_prog = program(c.queue_prog.as_ref(), "queue-inject");
                    self.cfg = Config { queue_dir: self.cfg.queue_dir.clone(), ..c };
                    // Kept processes read the old settings: new ones from now on.
                    self.pool.retire_all();
                    die::info(PROG, "SIGHUP: configuration read again");
                }
                Err(e) => die::warn(PROG, format_args!("SIGHUP: {e}; old configuration kept")),
            },
            Event::Signal(Signal::SIGALRM) => {
                die::info(PROG, "SIGALRM: retrying every message now");
                let ids: Vec<String> = self.sched.iter().map(|(_, id)| id.clone()).collect();
                self.sched.clear();
                self.when.clear();
                for id in ids {
                    self.process(&id, true);
                }
            }
            Event::Signal(_) => {
                if self.stop_at.is_none() {
                    die::info(PROG, format_args!("stopping: waiting up to {} s for {} deliveries", self.cfg.term_grace, self.jobs.len()));
                    self.stop_at = Some(Instant::now() + Duration::from_secs(self.cfg.term_grace));
                    self.pool.retire_all();
                }
            }
        }
    }

    fn known(&self, id: &str) -> bool {
        self.when.contains_key(id) || self.active.contains_key(id) || self.waiting.contains(id)
    }

    fn scan(&mut self) {
        // Local messages first: once queued they are in new/ for this scan.
        match self.q.list_maildrop() {
            Ok(names) => {
                for n in names {
                    self.pickup(&n);
                }
            }
            Err(e) => die::warn(PROG, format_args!("unable to read {}: {e}", self.q.maildrop_dir().display())),
        }
        match self.q.list() {
            Ok(names) => {
                for n in names {
                    if !self.known(&n) {
                        self.process(&n, false);
                    }
                }
            }
            Err(e) => die::warn(PROG, format_args!("unable to read {}: {e}", self.q.new_dir().display())),
        }
    }

    /// Queue one drop file of maildrop/ (written by queue-drop for a local
    /// user): check it as untrusted input (`pickup::check`), hand it to the
    /// queue program with a `Received:` line naming the submitter's uid, then
    /// remove it. A file that fails the checks, or that the queue program
    /// refuses for good, is set aside into bad/; a temporary refusal leaves it
    /// for the next scan. A crash between queuing and removal queues it twice
    /// (at least once, as everywhere).
    fn pickup(&mut self, name: &str) {
        let bad = |r: &Runner, why: &str| match r.q.quarantine_drop(name).inspect(|_| r.metrics.bad()) {
            Ok(to) => die::warn(PROG, format_args!("maildrop/{}: {why}: set aside as {}", printable_address(name.as_bytes()), to.display())),
            Err(e) => die::warn(PROG, format_args!("maildrop/{}: {why}; unable to set it aside: {e}", printable_address(name.as_bytes()))),
        };
        let f = match self.q.open_drop(name) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => return bad(self, "a symbolic link"),
            Err(e) => return die::warn(PROG, format_args!("maildrop/{name}: unable to open: {e}")),
        };
        let md = match f.metadata() {
            Ok(m) => m,
            Err(e) => return die::warn(PROG, format_args!("maildrop/{name}: unable to stat: {e}")),
        };
        if !md.is_file() {
            return bad(self, "not a regular file");
        }
        let mut r = io::BufReader::with_capacity(8192, f);
        let (h, off) = match crate::queue::format::read_header(&mut r) {
            Ok(x) => x,
            Err(crate::queue::format::ReadError::Io(e)) => return die::warn(PROG, format_args!("maildrop/{name}: unable to read: {e}")),
            Err(crate::queue::format::ReadError::Format(e)) => return bad(self, &format!("not a drop file: {e}")),
        };
        let c = match pickup::check(&h, name, md.uid(), md.nlink()) {
            Ok(c) => c,
            Err(why) => return bad(self, &why),
        };
        let user = crate::passwd::user_by_uid(c.uid).ok().flatten().map(|e| e.name);
        let received = pickup::received(&self.cfg.host, c.uid, user.as_deref(), name, &dsn::date(unix_now()));
        let mut f = r.into_inner();
        let block = c.attrs.encode();
        let res = f.seek(SeekFrom::Start(off)).map_err(|e| Refused::Temporary(-1, format!("unable to read: {e}"))).and_then(|_| {
            let mut inj = Injection::start(&self.queue_prog, Some(&block), &self.child_env())
                .map_err(|e| Refused::Temporary(-1, format!("unable to run {}: {e}", self.queue_prog.to_string_lossy())))?;
            // Write errors (the queue program gave up) show in its exit code.
            let _ = inj.write_all(received.as_bytes());
            let _ = io::copy(&mut f, &mut inj);
            inj.finish(&c.envelope.encode())
        });
        let who = match &user {
            Some(u) => format!("uid {} ({})", c.uid, printable_address(u.as_bytes())),
            None => format!("uid {}", c.uid),
        };
        match res {
            Ok(()) => match self.q.remove_drop(name) {
                Ok(()) => die::info(PROG, format_args!("maildrop/{name}: local message from {who} queued")),
                Err(e) => die::warn(PROG, format_args!("maildrop/{name}: queued, but unable to remove it (it may be queued again): {e}")),
            },
            Err(e @ Refused::Permanent(..)) => bad(self, &format!("refused by the queue program: {e}")),
            Err(e) => die::warn(PROG, format_args!("maildrop/{name}: not queued for now (from {who}): {e}")),
        }
    }

    fn schedule(&mut self, id: &str, t: u64) {
        if let Some(old) = self.when.insert(id.to_owned(), t) {
            self.sched.remove(&(old, id.to_owned()));
        }
        self.sched.insert((t, id.to_owned()));
    }

    fn unschedule(&mut self, id: &str) {
        if let Some(old) = self.when.remove(id) {
            self.sched.remove(&(old, id.to_owned()));
        }
    }

    /// Delay before retrying after a local trouble: `LOCAL_RETRY`, or the
    /// schedule's first delay if that is shorter.
    fn local_retry(&self, now: u64) -> u64 {
        LOCAL_RETRY.min(self.cfg.schedule.next(now, now, 1).saturating_sub(now)).max(1)
    }

    fn policy(&self) -> Policy<'_> {
        Policy {
            lifetime: self.cfg.lifetime,
            schedule: &self.cfg.schedule,
            delay_warning: self.cfg.delay_warning,
            doublebounceto: self.cfg.doublebounceto.as_deref(),
            max_rcpt: self.cfg.max_rcpt,
        }
    }

    /// The environment queue-run adds for the programs it runs: the `-e`
    /// file's assignments, then `QUEUE_DIR` (the queue in use, which a
    /// SIGHUP does not change), so that DSNs go into this queue.
    fn child_env(&self) -> Vec<(OsString, OsString)> {
        let mut v = self.cfg.env.clone();
        v.push(("QUEUE_DIR".into(), self.cfg.queue_dir.clone().into_os_string()));
        v
    }

    /// Read a message and its state from disk into an `Active`.
    fn load(&mut self, id: &str) -> Option<Active> {
        match self.q.load(id) {
            Ok((m, _f)) => {
                let n = m.header.envelope.recipients.len();
                let state = match self.q.load_state(id, m.ino, n) {
                    Ok(Some(st)) => st,
                    Ok(None) => State::new(m.ino, n),
                    Err(e) if e.kind() != io::ErrorKind::InvalidData => {
                        // Unreadable for now (not corrupt): never start afresh on a guess.
                        die::warn(PROG, format_args!("{id}: unable to read the state file: {e}"));
                        self.schedule(id, unix_now() + self.local_retry(unix_now()));
                        return None;
                    }
                    Err(e) => {
                        die::warn(PROG, format_args!("{id}: state file unusable ({e}): set aside, starting afresh"));
                        if let Err(e) = self.q.quarantine_state(id) {
                            die::warn(PROG, format_args!("{id}: unable to set the state file aside: {e}"));
                            self.schedule(id, unix_now() + self.local_retry(unix_now()));
                            return None;
                        }
                        State::new(m.ino, n)
                    }
                };
                Some(Active { header: m.header, body_offset: m.body_offset, size: m.size, state, in_flight: HashSet::new(), jobs: 0 })
            }
            Err(LoadError::Gone) => {
                self.metrics.gone(id);
                None
            }
            Err(LoadError::Corrupt(e)) => {
                match self.q.quarantine(id).inspect(|_| {
                    self.metrics.bad();
                    self.metrics.gone(id);
                }) {
                    Ok(to) => die::warn(PROG, format_args!("{id}: corrupt queue file: {e}: set aside as {}", to.display())),
                    Err(e2) => {
                        die::warn(PROG, format_args!("{id}: corrupt queue file: {e}; unable to set it aside: {e2}"));
                        self.schedule(id, unix_now() + self.cfg.scan_interval.max(self.local_retry(unix_now())));
                    }
                }
                None
            }
            Err(LoadError::Io(e)) => {
                die::warn(PROG, format_args!("{id}: unable to read: {e}"));
                self.schedule(id, unix_now() + self.local_retry(unix_now()));
                None
            }
        }
    }

    /// Look at one message: fail what cannot be routed, queue owed DSNs,
    /// remove it when finished, start what is due, schedule the next look.
    fn process(&mut self, id: &str, force: bool) {
        self.unschedule(id);
        let mut a = match self.active.remove(id) {
            Some(a) => a,
            None => match self.load(id) {
                Some(a) => a,
                None => return,
            },
        };
        let now = unix_now();
        let mut retry_at: Option<u64> = None;

        // Recipients without a domain, or with a control character in their
        // address or the sender's: nothing to deliver to.
        let groups = plan::due(&a.header, &a.state, now, &a.in_flight, force, self.cfg.max_rcpt);
        let unroutable: Vec<usize> = groups.iter().filter(|(d, _)| d.is_none()).flat_map(|(_, g)| g.clone()).collect();
        if !unroutable.is_empty() {
            let outs: Vec<Outcome> = unroutable
                .iter()
                .map(|&i| Outcome::Permanent(plan::undeliverable(&a.header, i).unwrap_or("Recipient address has no domain. (#5.1.3)").into()))
                .collect();
            let mut st = a.state.clone();
            plan::apply(&a.header, &mut st, &unroutable, &outs, now, &self.policy());
            match self.q.save_state(id, &st) {
                Ok(()) => {
                    a.state = st;
                    log_attempt(id, "(none)", &a.header, &unroutable, &outs);
                    self.metrics.attempt(&outs, None, a.header.time, now);
                }
                Err(e) => {
                    die::warn(PROG, format_args!("{id}: unable to record state: {e}"));
                    self.schedule(id, now + self.local_retry(now));
                    self.keep(id, a);
                    return;
                }
            }
        }

        // DSNs, one per message and look, when no delivery of it is in flight.
        if a.jobs == 0 && !self.notify(id, &mut a, now) {
            retry_at = Some(now + self.local_retry(now));
        }

        if a.jobs == 0 && plan::complete(&a.state) {
            match self.q.remove(id) {
                Ok(()) => {
                    self.metrics.gone(id);
                    die::info(PROG, format_args!("{id}: done, removed from the queue"));
                }
                Err(e) => {
                    die::warn(PROG, format_args!("{id}: unable to remove: {e}"));
                    let _ = self.q.save_state(id, &a.state);
                    self.schedule(id, now + self.local_retry(now));
                }
            }
            return;
        }

        // Start what is due, within the limits.
        let mut blocked: HashSet<usize> = HashSet::new();
        if self.stop_at.is_none() {
            for (dom, idxs) in groups {
                let Some(dom) = dom else { continue };
                match self.room(&dom) {
                    Room::WaitAny => {
                        blocked.extend(&idxs);
                        self.wait(id, None);
                    }
                    Room::WaitDomain => {
                        blocked.extend(&idxs);
                        self.wait(id, Some(&dom));
                    }
                    Room::Start => self.start(id, &mut a, dom, idxs),
                }
            }
        }

        let mut skip = a.in_flight.clone();
        skip.extend(blocked);
        let wake = plan::next_wake(&a.header, &a.state, &skip, &self.policy());
        // After a local failure, look again only after the retry delay (a
        // delay warning already due would otherwise bring it back at once).
        let wake = match (wake, retry_at) {
            (_, Some(r)) => Some(r),
            (w, None) => w,
        };
        if let Some(w) = wake {
            self.schedule(id, w.max(now + if force { 0 } else { 1 }).max(now));
        }
        self.metrics.message(id, a.header.time, &a.state);
        self.keep(id, a);
    }

    /// Keep a message in memory while deliveries of it are in flight.
    fn keep(&mut self, id: &str, a: Active) {
        if a.jobs > 0 {
            self.active.insert(id.to_owned(), a);
        }
    }

    /// Whether a delivery to `dom` may start now (pool.rs: a kept process
    /// counts as a running delivery).
    fn room(&self, dom: &str) -> Room {
        let counts = pool::Counts {
            busy: self.jobs.len(),
            busy_dom: self.per_domain.get(dom).copied().unwrap_or(0),
            idle: self.pool.idle(),
            idle_dom: self.pool.idle_for(dom),
        };
        pool::room(counts, self.cfg.concurrency, self.cfg.per_domain)
    }

    fn wait(&mut self, id: &str, dom: Option<&str>) {
        if !self.waiting.insert(id.to_owned()) {
            return;
        }
        match dom {
            None => self.wait_any.push_back(id.to_owned()),
            Some(d) => self.wait_dom.entry(d.to_owned()).or_default().push_back(id.to_owned()),
        }
    }

    /// Run the delivery program for `idxs` of message `id` to `dom`.
    fn start(&mut self, id: &str, a: &mut Active, dom: String, idxs: Vec<usize>) {
        let job = self.next_job;
        self.next_job += 1;
        // DKIM (sign.rs): signed at the first run, the fields kept in the
        // state; they go as the PREPEND attribute, or before the message on
        // a pipe for a QMAILREMOTE. A key that cannot be used defers the run.
        // LOCAL_DOMAINS go to the local delivery program, by the same
        // interface, and unsigned: the mail does not leave this host.
        let local = self.cfg.local_domains.contains(&dom);
        let open = || self.q.open_message(id);
        let feed = if local {
            None
        } else {
            match self.signing.prepare(id, &open, a.body_offset, &mut a.header, &mut a.state.dkim, self.cfg.remote_is_qmail, unix_now()) {
                Ok(feed) => feed,
                Err(why) => return self.defer_run(job, id, a, dom, idxs, &why),
            }
        };
        let h = &a.header;
        let sender: &[u8] = if h.envelope.sender == plan::DOUBLE_BOUNCE_SENDER { b"" } else { &h.envelope.sender };
        let attrs = plan::attrs_for(&h.attrs, &idxs).encode();
        // Kept connections (pool.rs): the job goes to an `smtp-remote -m`.
        if !local && feed.is_none() && self.keeps_connections() {
            let rcpts: Vec<&[u8]> = idxs.iter().map(|&i| h.envelope.recipients.get(i).map(Vec::as_slice).unwrap_or_default()).collect();
            let frame = remotejob::encode_job(dom.as_bytes(), sender, attrs.as_bytes(), id.as_bytes(), &rcpts);
            if let Some(pid) = self.send_pooled(job, id, &dom, &frame, a.body_offset) {
                return self.track(job, id, a, dom, idxs, pid);
            }
        }
        let prog = if local { &self.local } else { &self.remote };
        let spawned = self.q.open_message(id).and_then(|mut f| {
            f.seek(SeekFrom::Start(a.body_offset))?;
            let mut cmd = Command::new(prog);
            cmd.arg(&dom).arg(OsStr::from_bytes(sender));
            for &i in &idxs {
                cmd.arg(OsStr::from_bytes(h.envelope.recipients.get(i).map(Vec::as_slice).unwrap_or_default()));
            }
            // Its own process group, so that stopping it stops what it started.
            cmd.process_group(0);
            // The -e file's settings (SMTPROUTES, HELOHOST, TLS...) as queue-run has them.
            cmd.envs(self.child_env());
            cmd.env("QUEUE_ATTRS", attrs).env("QUEUE_ID", id).stdin(Stdio::from(f)).stdout(Stdio::piped()).stderr(Stdio::inherit());
            if feed.is_some() {
                cmd.stdin(Stdio::piped());
            }
            cmd.spawn()
        });
        let pid = match spawned {
            Ok(mut child) => {
                let pid = child.id();
                if let (Some(feed), Some(stdin)) = (feed, child.stdin.take()) {
                    feed.start(stdin, pid);
                }
                let tx = self.tx.clone();
                let stdout = child.stdout.take();
                std::thread::spawn(move || {
                    let mut out = Vec::new();
                    if let Some(mut s) = stdout {
                        let mut buf = [0u8; 8192];
                        // Keep reading past the bound (so the program never
                        // blocks on a full pipe), keep only the first part.
                        while let Ok(n) = s.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            if out.len() < report::MAX_REPORT {
                                out.extend_from_slice(&buf[..n]);
                            }
                        }
                    }
                    let exit = Exit::of(child.wait());
                    let _ = tx.send(Event::Done { job, out, exit });
                });
                pid
            }
            Err(e) => {
                die::warn(PROG, format_args!("{id}: unable to run {}: {e}", prog.to_string_lossy()));
                // qmail-rspawn: a program that cannot run is a temporary failure.
                let _ = self.tx.send(Event::Done { job, out: Vec::new(), exit: Exit::Code(111) });
                0
            }
        };
        self.track(job, id, a, dom, idxs, pid);
    }

    /// Whether deliveries go to kept `smtp-remote -m` processes: when
    /// `CONNECTION_REUSE_COUNT` is above 0 and the delivery program is this
    /// suite's smtp-remote (by its file name: `-m` is our own interface),
    /// not a `QMAILREMOTE`. Any other program is run once per delivery.
    fn keeps_connections(&self) -> bool {
        self.cfg.reuse_count > 0 && !self.cfg.remote_is_qmail && Path::new(&self.remote).file_name() == Some(OsStr::new("smtp-remote"))
    }

    /// A run has started (`pid`, 0 for none): count it until its `done`.
    fn track(&mut self, job: u64, id: &str, a: &mut Active, dom: String, idxs: Vec<usize>, pid: u32) {
        *self.per_domain.entry(dom.clone()).or_default() += 1;
        a.jobs += 1;
        a.in_flight.extend(&idxs);
        self.jobs.insert(job, Job { id: id.to_owned(), domain: dom, idxs, pid, started: Instant::now(), abandoned: false, timed_out: false });
    }

    /// Hand a job to a kept `smtp-remote -m` (pool.rs): the idle one
    /// `Pool::pick` chooses, else a new one. Its pid; `None` when no kept
    /// process could take it (a frame too large, a program that does not
    /// start): the caller runs the program for this one delivery instead.
    fn send_pooled(&mut self, job: u64, id: &str, dom: &str, frame: &[u8], offset: u64) -> Option<u32> {
        if frame.len() > remotejob::MAX_JOB {
            return None;
        }
        let mut f = self.q.open_message(id).ok()?;
        f.seek(SeekFrom::Start(offset)).ok()?;
        // A process that died while idle shows here: then once more, anew.
        for _ in 0..2 {
            let proc = match self.pool.pick(dom) {
                Some(p) => p,
                None => {
                    let mut env = self.child_env();
                    env.push(("CONNECTION_REUSE_COUNT".into(), self.cfg.reuse_count.to_string().into()));
                    env.push(("CONNECTION_REUSE_TIME".into(), self.cfg.reuse_time.to_string().into()));
                    let tx = self.tx.clone();
                    match self.pool.spawn(&self.remote, &env, move |e| tx.send(Event::Pool(e)).is_ok()) {
                        Ok(p) => p,
                        Err(e) => {
                            die::warn(PROG, format_args!("{id}: unable to run {} -m: {e}", self.remote.to_string_lossy()));
                            return None;
                        }
                    }
                }
            };
            match self.pool.send(proc, job, dom, frame, &f) {
                Ok(pid) => return Some(pid),
                Err(e) => die::warn(PROG, format_args!("{id}: unable to hand the delivery to {dom} to a kept smtp-remote: {e}")),
            }
        }
        None
    }

    /// A run that cannot start (DKIM: see `sign::Signing::prepare`): its
    /// recipients get `why` as a temporary failure, recorded as any run's.
    fn defer_run(&mut self, job: u64, id: &str, a: &mut Active, dom: String, idxs: Vec<usize>, why: &str) {
        let _ = self.tx.send(Event::Done { job, out: format!("Z{why}\0").into_bytes(), exit: Exit::Code(0) });
        self.track(job, id, a, dom, idxs, 0);
    }

    /// A delivery program ended: record its outcomes, then look again.
    fn done(&mut self, job: u64, out: Vec<u8>, exit: Exit) {
        let Some(j) = self.jobs.remove(&job) else { return };
        if let Some(n) = self.per_domain.get_mut(&j.domain) {
            *n -= 1;
            if *n == 0 {
                self.per_domain.remove(&j.domain);
            }
        }
        let now = unix_now();
        if let Some(mut a) = self.active.remove(&j.id) {
            a.jobs -= 1;
            for i in &j.idxs {
                a.in_flight.remove(i);
            }
            if j.abandoned {
                die::info(PROG, format_args!("{}: delivery to {} abandoned; it will be retried", j.id, j.domain));
            } else {
                let outs = report::parse(&out, exit, j.idxs.len());
                log_attempt(&j.id, &j.domain, &a.header, &j.idxs, &outs);
                self.metrics.attempt(&outs, Some(j.started.elapsed().as_secs_f64()), a.header.time, now);
                let mut st = a.state.clone();
                plan::apply(&a.header, &mut st, &j.idxs, &outs, now, &self.policy());
                // Finished with nothing owed: the removal itself is the record.
                let finished = a.jobs == 0 && plan::complete(&st) && self.q.remove(&j.id).is_ok();
                if finished {
                    self.metrics.gone(&j.id);
                    die::info(PROG, format_args!("{}: done, removed from the queue", j.id));
                    self.wake_waiting(&j.domain);
                    return;
                }
                match self.q.save_state(&j.id, &st) {
                    Ok(()) => a.state = st,
                    Err(e) => {
                        // Nothing is acted on: the recipients stay as they
                        // were on disk and are tried again later.
                        die::warn(PROG, format_args!("{}: unable to record the outcome ({e}); will retry", j.id));
                        for &i in &j.idxs {
                            if let Some(r) = a.state.rcpts.get_mut(i) {
                                r.next = now + self.local_retry(now);
                            }
                        }
                    }
                }
            }
            self.active.insert(j.id.clone(), a);
            if self.stop_at.is_none() {
                self.process(&j.id, false);
            } else if let Some(a) = self.active.remove(&j.id) {
                self.keep(&j.id, a);
            }
        }
        self.wake_waiting(&j.domain);
    }

    /// A slot is free: look again at messages that waited for one.
    fn wake_waiting(&mut self, dom: &str) {
        if self.stop_at.is_some() {
            return;
        }
        let mut tries = self.wait_any.len() + self.wait_dom.get(dom).map_or(0, VecDeque::len);
        while tries > 0 && self.jobs.len() < self.cfg.concurrency {
            tries -= 1;
            let next = match self.wait_dom.get_mut(dom).and_then(VecDeque::pop_front) {
                Some(id) if self.room(dom) == Room::Start => Some(id),
                Some(id) => {
                    self.wait_dom.entry(dom.to_owned()).or_default().push_front(id);
                    self.wait_any.pop_front()
                }
                None => self.wait_any.pop_front(),
            };
            let Some(id) = next else { break };
            self.waiting.remove(&id);
            self.process(&id, false);
        }
        if self.wait_dom.get(dom).is_some_and(VecDeque::is_empty) {
            self.wait_dom.remove(dom);
        }
    }

    fn watchdog(&mut self) {
        let limit = Duration::from_secs(self.cfg.attempt_timeout);
        for j in self.jobs.values_mut() {
            if j.pid != 0 && j.started.elapsed() > limit && !j.abandoned && !j.timed_out {
                j.timed_out = true;
                die::warn(PROG, format_args!("{}: delivery to {} ran over {} s: killed", j.id, j.domain, limit.as_secs()));
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(j.pid as i32), Signal::SIGKILL);
            }
        }
    }

    fn kill_all(&mut self, why: &str) {
        self.killed = true;
        self.pool.retire_all();
        for j in self.jobs.values_mut() {
            j.abandoned = true;
            if j.pid != 0 {
                die::info(PROG, format_args!("{}: {why}: abandoning the delivery to {}", j.id, j.domain));
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(j.pid as i32), Signal::SIGKILL);
            }
        }
    }

    /// Queue the DSNs owed for this message. False if one could not be queued.
    fn notify(&mut self, id: &str, a: &mut Active, now: u64) -> bool {
        let owed = plan::owed(&a.header, &a.state, now, &self.policy());
        if owed.is_empty() {
            return true;
        }
        let h = &a.header;
        let (env_sender, to): (&[u8], Vec<u8>) = match plan::bounce_to(&h.envelope.sender, self.cfg.doublebounceto.as_deref()) {
            BounceTo::Sender(s) => (b"", s),
            BounceTo::Postmaster(p) => (plan::DOUBLE_BOUNCE_SENDER, p),
            BounceTo::Nobody => {
                plan::mark_notified(&mut a.state, &owed);
                return true;
            }
        };
        let ret_hdrs = h.attrs.get("RET").is_some_and(|v| v.eq_ignore_ascii_case(b"HDRS"));
        let body_len = a.size.saturating_sub(a.body_offset);
        let full = !ret_hdrs && body_len <= self.cfg.bounce_max as u64;
        let original = match read_original(&self.q, id, a.body_offset, if full { body_len as usize } else { 256 * 1024 }) {
            Ok(o) => o,
            Err(e) => {
                die::warn(PROG, format_args!("{id}: unable to read the message for a DSN: {e}"));
                return false;
            }
        };
        let rcpts: Vec<RcptReport> = owed
            .iter()
            .map(|&(i, action)| RcptReport {
                address: h.envelope.recipients.get(i).cloned().unwrap_or_default(),
                orcpt: h.attrs.get(&format!("RCPT.{i}.ORCPT")).map(<[u8]>::to_vec),
                action,
                text: a.state.rcpts.get(i).map(|r| r.text.clone()).unwrap_or_default(),
                expired: action == Action::Failed && a.state.rcpts.get(i).is_some_and(|r| r.expired),
                last_attempt: 0,
            })
            .collect();
        let built = dsn::build(&dsn::Report {
            host: &self.cfg.host,
            to: &to,
            queue_id: id,
            envid: h.attrs.get("ENVID"),
            arrival: h.time,
            now,
            retry_until: Some(h.time.saturating_add(self.cfg.lifetime)),
            rcpts,
            original: &original,
            full,
        }, &mut random_boundary);
        let built = match built {
            Ok(b) => b,
            Err(e) => {
                die::warn(PROG, format_args!("{id}: unable to build a DSN: {e}"));
                return false;
            }
        };
        let mut attrs = Attrs::default();
        if built.eight_bit {
            attrs.push("BODY", "8BITMIME");
        }
        if built.utf8 {
            attrs.push("SMTPUTF8", "1");
        }
        let env = Envelope { sender: env_sender.to_vec(), recipients: vec![to.clone()] };
        let mut kinds: Vec<&str> = Vec::new();
        for (_, a) in &owed {
            let k = match a {
                Action::Failed => "failure",
                Action::Delayed => "delay",
                Action::Relayed => "success",
            };
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        match inject(&self.queue_prog, &self.child_env(), &built.text, &env, &attrs) {
            Ok(()) => {
                die::info(PROG, format_args!("{id}: DSN ({}) queued for <{}>", kinds.join(","), printable_address(&to)));
                self.metrics.dsn(&kinds);
                let mut st = a.state.clone();
                plan::mark_notified(&mut st, &owed);
                if !plan::complete(&st) || a.jobs > 0 {
                    if let Err(e) = self.q.save_state(id, &st) {
                        // The DSN is queued; at worst it is queued again later.
                        die::warn(PROG, format_args!("{id}: unable to record the DSN ({e})"));
                        return false;
                    }
                }
                a.state = st;
                true
            }
            Err(e) => {
                // Refused for good, or still failing when the message is twice
                // the queue lifetime old: the DSN is dropped, so that no
                // message stays forever.
                let give_up = matches!(e, Refused::Permanent(..)) || now >= h.time.saturating_add(self.cfg.lifetime.saturating_mul(2));
                if !give_up {
                    die::warn(PROG, format_args!("{id}: unable to queue a DSN: {e}"));
                    return false;
                }
                die::warn(PROG, format_args!("{id}: DSN for <{}> dropped: {e}", printable_address(&to)));
                let mut st = a.state.clone();
                plan::mark_notified(&mut st, &owed);
                if (!plan::complete(&st) || a.jobs > 0) && self.q.save_state(id, &st).is_err() {
                    return false;
                }
                a.state = st;
                true
            }
        }
    }
}

fn inject(prog: &OsStr, vars: &[(OsString, OsString)], text: &[u8], env: &Envelope, attrs: &Attrs) -> Result<(), Refused> {
    let block = attrs.encode();
    let mut inj = Injection::start(prog, if attrs.is_empty() { None } else { Some(&block) }, vars)
        .map_err(|e| Refused::Temporary(-1, format!("unable to run {}: {e}", prog.to_string_lossy())))?;
    let _ = inj.write_all(text);
    inj.finish(&env.encode())
}

/// A MIME boundary nobody can guess: `=_dsn_` and 128 bits from the OS
/// (ring's SystemRandom: getrandom(2)). `=_` cannot occur in
/// quoted-printable text. Empty if the OS gives no randomness (the DSN is
/// then not built, and tried again later).
fn random_boundary() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        return String::new();
    }
    let mut s = String::from("=_dsn_");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// Up to `max` bytes of the message text of a queue file.
fn read_original(q: &Queue, id: &str, offset: u64, max: usize) -> io::Result<Vec<u8>> {
    let mut f = q.open_message(id)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut v = Vec::new();
    f.take(max as u64).read_to_end(&mut v)?;
    Ok(v)
}

/// One line per attempt: message, destination, each recipient's result and text.
fn log_attempt(id: &str, dom: &str, h: &Header, idxs: &[usize], outs: &[Outcome]) {
    let parts: Vec<String> = idxs
        .iter()
        .zip(outs)
        .map(|(&i, o)| {
            let r = h.envelope.recipients.get(i).map(|r| printable_address(r)).unwrap_or_default();
            let what = match o {
                Outcome::Delivered(_) => "delivered",
                Outcome::Temporary(_) => "deferred",
                Outcome::Permanent(_) => "failed",
            };
            format!("<{r}> {what}: {}", o.text())
        })
        .collect();
    die::info(PROG, format_args!("{id}: delivery to {dom}: {}", parts.join("; ")));
}

/// Read inotify events; names created in new/ become events.
fn watch(mut f: File, tx: Sender<Event>, drops: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut names = Vec::new();
        let mut overflow = false;
        for (mask, name) in crate::sys::inotify_events(&buf[..n]) {
            if mask & crate::sys::IN_Q_OVERFLOW != 0 {
                overflow = true;
            } else if !name.is_empty() {
                names.push(String::from_utf8_lossy(&name).into_owned());
            }
        }
        let ev = match (overflow, drops) {
            (true, _) => Event::Rescan,
            (false, false) => Event::Names(names),
            (false, true) => Event::Drops(names),
        };
        if tx.send(ev).is_err() {
            return;
        }
    }
}

/// `queue-run --list`: every message in the queue and its recipients' state.
pub fn list(cfg: &Config, out: &mut dyn Write) -> io::Result<usize> {
    let q = Queue::new(cfg.queue_dir.clone());
    let mut names = q.list()?;
    names.sort();
    let now = unix_now();
    let mut n = 0;
    for id in names {
        match q.load(&id) {
            Ok((m, _)) => {
                let st = q.load_state(&id, m.ino, m.header.envelope.recipients.len()).ok().flatten();
                out.write_all(super::list::entry(&m.header, m.size, st.as_ref(), now).as_bytes())?;
                n += 1;
            }
            Err(LoadError::Gone) => {}
            Err(e) => writeln!(out, "{id}  unreadable: {e}")?,
        }
    }
    writeln!(out, "{n} messages")?;
    // Local messages not picked up yet (queue-run not running, or refused for now).
    if let Ok(drops) = q.list_maildrop() {
        if !drops.is_empty() {
            writeln!(out, "{} local messages waiting in maildrop/", drops.len())?;
        }
    }
    Ok(n)
}
