//! Fault injection (issue 7): smtpd-supervise under file-descriptor and
//! process limits, lowered on the running supervisor with prlimit(1)
//! (util-linux) as `ulimit -n` / `ulimit -u` would. Expected: a clear log
//! line, no exit, no busy loop (accept pauses), refused connections closed
//! rather than left hanging, and service again as soon as the pressure ends.
#[path = "support/peers.rs"]
mod support;

use support::wait_for;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_smtpd-supervise");
/// Each session: a greeting, then wait for one line.
const PROG: &[&str] = &["/bin/sh", "-c", "echo hello; read x; echo bye"];

struct Sup {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Sup {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The supervisor, started through `prlimit LIMITS --` when `limits` is given.
fn start(limits: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Sup {
    let mut c = match limits {
        Some(l) => {
            let mut c = Command::new("prlimit");
            c.args([l, "--", BIN]);
            c
        }
        None => Command::new(BIN),
    };
    c.arg("-1").args(args).args(["127.0.0.1", "0"]).args(PROG);
    c.envs(env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("run smtpd-supervise");
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    let err = child.stderr.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            l2.lock().unwrap().push(line);
        }
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("no port; log {:?}", log.lock().unwrap()));
    Sup { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), log }
}

impl Sup {
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn lines(&self, pat: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|l| l.contains(pat)).count()
    }
    fn dump(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    fn prlimit(&self, what: &str) {
        let st = Command::new("prlimit").args(["--pid", &self.pid().to_string(), what]).status();
        assert!(st.is_ok_and(|s| s.success()), "prlimit {what} (util-linux) failed");
    }
    /// A session: connect and read the greeting (None: closed or silent).
    fn session(&self, wait: Duration) -> (TcpStream, Option<String>) {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(wait)).unwrap();
        let g = read_line(&s);
        (s, g)
    }
}

fn read_line(s: &TcpStream) -> Option<String> {
    let mut v = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match (&*s).read(&mut b) {
            Ok(1) if b[0] == b'\n' => return Some(String::from_utf8_lossy(&v).into_owned()),
            Ok(1) => v.push(b[0]),
            _ => return None,
        }
    }
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = st.rsplit(") ").next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

fn zombies(pid: u32) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(st) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let f: Vec<&str> = st.rsplit(") ").next().unwrap_or("").split_whitespace().collect();
        if f.first() == Some(&"Z") && f.get(1) == Some(&pid.to_string().as_str()) {
            n += 1;
        }
    }
    n
}

#[test]
fn descriptor_limit_pauses_accepting_and_recovers() {
    let mut sup = start(None, &["-c", "50"], &[]);
    let (s, g) = sup.session(Duration::from_secs(5));
    assert_eq!(g.as_deref(), Some("hello"), "{}", sup.dump());
    (&s).write_all(b"x\n").unwrap();
    drop(s);
    thread::sleep(Duration::from_millis(200));
    // ulimit -n at the lowest free descriptor: the next accept fails with EMFILE.
    let fds = fd_count(sup.pid());
    let free = (0..).find(|n| std::fs::symlink_metadata(format!("/proc/{}/fd/{n}", sup.pid())).is_err()).unwrap();
    sup.prlimit(&format!("--nofile={free}:"));
    let t0 = cpu_ticks(sup.pid());
    let waiting: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(sup.addr).expect("connect (backlog)")).collect();
    thread::sleep(Duration::from_millis(1500));
    let busy = cpu_ticks(sup.pid()) - t0;
    let warned = sup.lines("accept: Too many open files");
    assert!(warned >= 1, "no clear log line about EMFILE:\n{}", sup.dump());
    assert!(warned <= 30, "{warned} EMFILE lines in 1.5 s: not pausing\n{}", sup.dump());
    assert!(busy <= 30, "supervisor used {busy} ticks under EMFILE");
    assert!(sup.alive(), "supervisor exited under EMFILE:\n{}", sup.dump());
    // The pressure ends: the waiting clients are served.
    sup.prlimit("--nofile=1024:");
    for s in &waiting {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(read_line(s).as_deref(), Some("hello"), "not served after the limit was raised\n{}", sup.dump());
        (&*s).write_all(b"x\n").unwrap();
    }
    drop(waiting);
    assert!(wait_for(Duration::from_secs(5), || zombies(sup.pid()) == 0 && fd_count(sup.pid()) <= fds));
    eprintln!("EMFILE: {warned} log lines, {busy} ticks in 1.5 s, 5 waiting clients served after");
}

#[test]
fn process_limit_refuses_cleanly_and_recovers() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test needs root (RLIMIT_NPROC applies to the unprivileged uid the supervisor drops to)");
    }
    // ulimit -u 3 (the supervisor and two sessions) for a uid of its own,
    // so that no other process counts against the limit. Set at the start:
    // once the supervisor runs as that uid, prlimit(2) on it needs
    // CAP_SYS_RESOURCE, which a container may not have.
    let mut sup = start(Some("--nproc=3"), &["-U", "-c", "50"], &[("UID", "64999"), ("GID", "64999")]);
    let (s0, g) = sup.session(Duration::from_secs(5));
    assert_eq!(g.as_deref(), Some("hello"), "{}", sup.dump());
    (&s0).write_all(b"x\n").unwrap();
    drop(s0);
    assert!(wait_for(Duration::from_secs(3), || zombies(sup.pid()) == 0));
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let (s, g) = sup.session(Duration::from_secs(5));
            assert_eq!(g.as_deref(), Some("hello"), "{}", sup.dump());
            s
        })
        .collect();
    let t0 = cpu_ticks(sup.pid());
    for _ in 0..5 {
        let t = Instant::now();
        let (_s, g) = sup.session(Duration::from_secs(5));
        assert_eq!(g, None, "a session beyond the process limit was served");
        assert!(t.elapsed() < Duration::from_secs(3), "refused connection left hanging");
    }
    let busy = cpu_ticks(sup.pid()) - t0;
    let warned = sup.lines("unable to run");
    assert!(warned >= 1, "no clear log line about the failed fork:\n{}", sup.dump());
    assert!(sup.alive(), "supervisor exited under the process limit:\n{}", sup.dump());
    assert!(busy <= 30, "supervisor used {busy} ticks");
    // The pressure ends (sessions finish): served again.
    for s in &held {
        (&*s).write_all(b"x\n").unwrap();
    }
    drop(held);
    assert!(wait_for(Duration::from_secs(3), || zombies(sup.pid()) == 0));
    let served = wait_for(Duration::from_secs(5), || {
        let (s, g) = sup.session(Duration::from_secs(2));
        let _ = (&s).write_all(b"x\n");
        g.as_deref() == Some("hello")
    });
    assert!(served, "not served after the sessions ended\n{}", sup.dump());
    let line = sup.log.lock().unwrap().iter().find(|l| l.contains("unable to run")).cloned().unwrap_or_default();
    eprintln!("EAGAIN: {warned} log lines, e.g. {line:?}; {busy} ticks; served again after");
}
