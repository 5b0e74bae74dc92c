//! Helpers of the real-peer tests (tests/peers_*.rs): finding the peer
//! programs (a missing one fails the test naming its Debian package), a
//! scratch queue with a sample configuration, smtpd-rs under tcpserver,
//! child processes with a deadline, and reading queue files (smtpd-queue(5)).
#![allow(dead_code)]

#[path = "data.rs"]
pub mod data;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

pub const SMTPD: &str = env!("CARGO_BIN_EXE_smtpd-rs");
pub const QUEUE_INJECT: &str = env!("CARGO_BIN_EXE_queue-inject");

/// Every child gets this long at most; a session waits this long for a client.
pub const DEADLINE: Duration = Duration::from_secs(60);
pub const SESSION_TIMEOUT: &str = "20";

/// The sample configuration: these domains are accepted, others refused.
pub const RCPTHOSTS: &str = "example.com\nlocalhost\n";

/// The path of a peer program, or a panic naming the Debian package.
pub fn peer(prog: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for d in ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        dirs.push(PathBuf::from(d));
    }
    for d in dirs {
        let p = d.join(prog);
        if is_executable(&p) {
            return p;
        }
    }
    panic!(
        "real peer `{prog}` not found: install the Debian package {package} \
         (apt-get install {package}, or `make peers` as root)"
    );
}

/// Debian's python3 (it has python3-aiosmtpd when installed), else any python3.
pub fn python3() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/python3");
    if is_executable(&debian) {
        return debian;
    }
    peer("python3", "python3")
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// The test messages (tests/data/messages; TESTDATA_MESSAGES overrides).
pub fn testdata_messages() -> Vec<PathBuf> {
    data::message_paths()
}

/// A scratch folder with a queue (tmp/, new/) and an rcpthosts file.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub queue: PathBuf,
    pub rcpthosts: PathBuf,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = dir.path().join("queue");
        std::fs::create_dir_all(queue.join("tmp")).expect("mkdir queue/tmp");
        std::fs::create_dir_all(queue.join("new")).expect("mkdir queue/new");
        let rcpthosts = dir.path().join("rcpthosts");
        std::fs::write(&rcpthosts, RCPTHOSTS).expect("write rcpthosts");
        Scratch { dir, queue, rcpthosts }
    }

    /// A clean environment for smtpd-rs (and any peer that runs it): PATH
    /// finds our queue-inject first; QMAILQUEUE unset = session mode.
    pub fn env(&self, cmd: &mut Command) {
        let bindir = Path::new(QUEUE_INJECT).parent().expect("bin dir");
        let path = format!("{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", bindir.display());
        cmd.env_clear()
            .env("PATH", path)
            .env("LANG", "C")
            .env("QUEUE_DIR", &self.queue)
            .env("RCPTHOSTS", &self.rcpthosts)
            .env("SMTPD_HOSTNAME", "mx.test.example")
            .env("SMTPD_TIMEOUT", SESSION_TIMEOUT);
        if let Some(home) = std::env::var_os("HOME") {
            cmd.env("HOME", home);
        }
    }

    /// The files in QUEUE_DIR/new, sorted by name.
    pub fn new_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.queue.join("new"))
            .expect("read queue/new")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        v.sort();
        v
    }

    /// Waits (bounded) until at least n messages are in new/, then returns them all.
    pub fn wait_new(&self, n: usize, limit: Duration) -> Vec<PathBuf> {
        let start = Instant::now();
        loop {
            let v = self.new_files();
            if v.len() >= n || start.elapsed() > limit {
                return v;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The queue's messages, parsed.
    pub fn messages(&self) -> Vec<QueueFile> {
        self.new_files().iter().map(|p| QueueFile::read(p)).collect()
    }
}

/// Kills the child's whole process group (it was started as a group leader)
/// and reaps it, on every exit path of a test.
pub struct Group(pub Child);

impl Group {
    pub fn spawn(cmd: &mut Command) -> Group {
        cmd.process_group(0);
        let name = format!("{:?}", cmd.get_program());
        Group(cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}")))
    }
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
    pub fn kill(&mut self) {
        let _ = killpg(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a bounded run produced.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn text(&self) -> String {
        format!(
            "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr)
        )
    }
}

/// Runs cmd with `input` on its stdin, collecting stdout and stderr; kills
/// its process group and panics when it is not done within `limit`.
pub fn run(cmd: &mut Command, input: &[u8], limit: Duration) -> Output {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let name = format!("{:?}", cmd.get_program());
    let mut g = Group::spawn(cmd);
    let mut stdin = g.0.stdin.take().expect("stdin");
    let input = input.to_vec();
    let w = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let (out, out_h) = collect_joinable(g.0.stdout.take().expect("stdout"));
    let (err, err_h) = collect_joinable(g.0.stderr.take().expect("stderr"));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = g.0.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            g.kill();
            let so = take(&out);
            let se = take(&err);
            panic!(
                "{name} still running after {limit:?}; killed\n--- stdout\n{}\n--- stderr\n{}",
                String::from_utf8_lossy(&so),
                String::from_utf8_lossy(&se)
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    // The child is gone; kill what it left behind in its group so that
    // the pipes reach EOF, then take everything it wrote.
    g.kill();
    let _ = w.join();
    let _ = out_h.join();
    let _ = err_h.join();
    Output { status, stdout: take(&out), stderr: take(&err) }
}

/// Reads a pipe to its end in a thread, into a shared buffer.
pub fn collect<R: Read + Send + 'static>(r: R) -> Arc<Mutex<Vec<u8>>> {
    collect_joinable(r).0
}

pub fn collect_joinable<R: Read + Send + 'static>(mut r: R) -> (Arc<Mutex<Vec<u8>>>, thread::JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = Arc::clone(&buf);
    let h = thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => b.lock().expect("lock").extend_from_slice(&chunk[..n]),
            }
        }
    });
    (buf, h)
}

pub fn take(b: &Arc<Mutex<Vec<u8>>>) -> Vec<u8> {
    b.lock().expect("lock").clone()
}

/// smtpd-rs (or any program) under `tcpserver -1` on a loopback port it picks.
pub struct TcpServer {
    pub port: u16,
    pub log: Arc<Mutex<Vec<u8>>>,
    group: Group,
}

impl TcpServer {
    /// `extra` adds to (or, with None, removes from) the scratch environment.
    pub fn start(s: &Scratch, extra: &[(&str, Option<&str>)], prog: &[&str]) -> TcpServer {
        TcpServer::start_with(s, extra, &[], prog)
    }

    /// As `start`, with more tcpserver options (e.g. `-x rules.cdb`).
    pub fn start_with(s: &Scratch, extra: &[(&str, Option<&str>)], opts: &[&str], prog: &[&str]) -> TcpServer {
        let tcpserver = peer("tcpserver", "ucspi-tcp");
        let mut cmd = Command::new(tcpserver);
        s.env(&mut cmd);
        for (k, v) in extra {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.args(["-1", "-v", "-R", "-H", "-l", "0", "-c", "40"]).args(opts).args(["127.0.0.1", "0"]).args(prog);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut group = Group::spawn(&mut cmd);
        let log = collect(group.0.stderr.take().expect("stderr"));
        let stdout = group.0.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        let port = line.trim().parse::<u16>().unwrap_or_else(|_| {
            panic!("tcpserver -1 printed no port ({line:?}); log: {}", String::from_utf8_lossy(&take(&log)))
        });
        TcpServer { port, log, group }
    }

    /// smtpd-rs itself.
    pub fn smtpd(s: &Scratch, extra: &[(&str, Option<&str>)]) -> TcpServer {
        TcpServer::start(s, extra, &[SMTPD])
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&take(&self.log)).into_owned()
    }

    pub fn stop(&mut self) {
        self.group.kill();
    }
}

/// A loopback port that was free a moment ago (for peers that cannot pick one).
/// Poll `f` every 20 ms until it holds or `within` has passed; its last answer.
pub fn wait_for(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    f()
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Connects to 127.0.0.1:port, retrying for up to `limit`.
pub fn connect(port: u16, limit: Duration) -> std::net::TcpStream {
    let start = Instant::now();
    loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => {
                c.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
                c.set_write_timeout(Some(Duration::from_secs(20))).expect("timeout");
                return c;
            }
            Err(e) if start.elapsed() > limit => panic!("connect 127.0.0.1:{port}: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(25)),
        }
    }
}

/// One queue file (smtpd-queue(5)): a text header, an empty line, the message.
#[derive(Debug, Clone)]
pub struct QueueFile {
    pub path: PathBuf,
    pub header: Vec<String>,
    pub from: Vec<u8>,
    pub to: Vec<Vec<u8>>,
    pub attrs: Vec<String>,
    /// The message as stored: Received header first, LF line ends.
    pub message: Vec<u8>,
}

impl QueueFile {
    pub fn read(path: &Path) -> QueueFile {
        let raw = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let split = find(&raw, b"\n\n").unwrap_or_else(|| panic!("{}: no empty line after the header", path.display()));
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let message = raw[split + 2..].to_vec();
        let header: Vec<String> = head.lines().map(str::to_owned).collect();
        assert_eq!(header.first().map(String::as_str), Some("smtpd-queue 1"), "{}: first line", path.display());
        let mut from = None;
        let mut to = Vec::new();
        let mut attrs = Vec::new();
        for l in &header[1..] {
            let (k, v) = l.split_once(' ').unwrap_or((l.as_str(), ""));
            let dec = || smtpd::xtext::decode(v.as_bytes()).unwrap_or_else(|| panic!("{}: bad xtext {l:?}", path.display()));
            match k {
                "from" => from = Some(dec()),
                "to" => to.push(dec()),
                "attr" => attrs.push(v.to_owned()),
                _ => {}
            }
        }
        let from = from.unwrap_or_else(|| panic!("{}: no from line", path.display()));
        QueueFile { path: path.to_owned(), header, from, to, attrs, message }
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.to.iter().map(|t| String::from_utf8_lossy(t).into_owned()).collect()
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find_map(|a| a.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
    }

    /// The Received header smtpd-rs prepended (with its continuation lines).
    pub fn received(&self) -> &[u8] {
        split_received(&self.message, &self.path).0
    }

    /// The message as the client sent it (LF line ends), Received header removed.
    pub fn body(&self) -> &[u8] {
        split_received(&self.message, &self.path).1
    }
}

fn split_received<'a>(m: &'a [u8], path: &Path) -> (&'a [u8], &'a [u8]) {
    assert!(
        m.starts_with(b"Received: "),
        "{}: message does not start with our Received header: {:?}",
        path.display(),
        String::from_utf8_lossy(&m[..m.len().min(200)])
    );
    let mut end = 0;
    loop {
        let nl = find(&m[end..], b"\n").unwrap_or_else(|| panic!("{}: unterminated Received header", path.display()));
        end += nl + 1;
        if !matches!(m.get(end), Some(b' ') | Some(b'\t')) {
            return (&m[..end], &m[end..]);
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What the queue holds for a message a client sent from this file: CRLF
/// becomes LF (a client sends every line with CRLF; the queue keeps LF, as
/// qmail-queue gets it), and a last line without its end gets one (the
/// client must end it before the final dot).
pub fn as_stored(file: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(file.len() + 1);
    let mut i = 0;
    while i < file.len() {
        if file[i] == b'\r' && file.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(file[i]);
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

/// Checks exit status success, with the whole output on failure.
pub fn assert_ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what} failed: {}", o.text());
}

/// Waits (bounded) until the collected log contains `needle`; returns the log.
pub fn wait_log(log: &Arc<Mutex<Vec<u8>>>, needle: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = String::from_utf8_lossy(&take(log)).into_owned();
        if text.contains(needle) || start.elapsed() > limit {
            return text;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
