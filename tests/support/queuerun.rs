//! Test helpers for queue-run and sendmail: queue files written header-first
//! exactly as doc/PROTOCOLS.md section 3 describes, a fake smtp-remote that
//! prints qmail-remote reports by rule, a fake QMAILQUEUE that records what
//! it gets, and a queue-run child that is always killed.
#![allow(dead_code)]

#[path = "exe.rs"]
pub mod exe;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The programs as cargo built them.
pub const QUEUE_RUN: &str = env!("CARGO_BIN_EXE_queue-run");
pub const QUEUE_INJECT: &str = env!("CARGO_BIN_EXE_queue-inject");
pub const SMTP_REMOTE: &str = env!("CARGO_BIN_EXE_smtp-remote");
pub const SMTPD: &str = env!("CARGO_BIN_EXE_smtpd-rs");
pub const SUPERVISE: &str = env!("CARGO_BIN_EXE_smtpd-supervise");

/// xtext (RFC 3461) as the queue file uses it, written independently of the
/// library so that the tests check the format, not the code against itself.
pub fn xtext(s: &[u8]) -> String {
    let mut o = String::new();
    for &b in s {
        if b < 0x21 || b == 0x7f || b == b'+' || b == b'=' {
            o.push_str(&format!("+{b:02X}"));
        } else {
            o.push(b as char);
        }
    }
    o
}

/// Write `QUEUE_DIR/new/<id>` as queue-inject does: work file in tmp/, then
/// link into new/.
pub fn write_queue_file(q: &Path, id: &str, time: u64, from: &str, to: &[&str], attrs: &[(&str, &str)], body: &[u8]) {
    for d in ["tmp", "new"] {
        fs::create_dir_all(q.join(d)).unwrap();
    }
    let mut h = format!("smtpd-queue 1\nid {id}\ntime {time}\nfrom {}\n", xtext(from.as_bytes()));
    for r in to {
        h.push_str(&format!("to {}\n", xtext(r.as_bytes())));
    }
    for (n, v) in attrs {
        h.push_str(&format!("attr {n}={}\n", xtext(v.as_bytes())));
    }
    h.push('\n');
    let tmp = q.join("tmp").join(format!("w.{id}"));
    let mut f = fs::File::create(&tmp).unwrap();
    f.write_all(h.as_bytes()).unwrap();
    f.write_all(body).unwrap();
    f.sync_all().unwrap();
    fs::hard_link(&tmp, q.join("new").join(id)).unwrap();
    fs::remove_file(&tmp).unwrap();
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Scratch folder with `queue/`, `out/` (what the fakes record) and the
/// fake programs.
pub struct World {
    pub dir: tempfile::TempDir,
}

impl World {
    pub fn new() -> World {
        let w = World { dir: tempfile::tempdir().unwrap() };
        fs::create_dir_all(w.queue().join("new")).unwrap();
        fs::create_dir_all(w.queue().join("tmp")).unwrap();
        fs::create_dir_all(w.out()).unwrap();
        fs::write(w.out().join("rules"), "").unwrap();
        w.script("fake-remote", FAKE_REMOTE);
        w.script("fake-queue", FAKE_QUEUE);
        w
    }
    pub fn queue(&self) -> PathBuf {
        self.dir.path().join("queue")
    }
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
    fn script(&self, name: &str, body: &str) {
        exe::write(&self.dir.path().join(name), &body.replace("@OUT@", &self.out().display().to_string()));
    }
    /// Rules for the fake remote: lines `<rcpt> <mode>` or `@<host> <mode>`.
    pub fn rules(&self, rules: &str) {
        fs::write(self.out().join("rules"), rules).unwrap();
    }
    /// queue-run with the fakes and a short schedule.
    pub fn command(&self, bin: &str) -> Command {
        let mut c = Command::new(bin);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("QUEUE_DIR", self.queue())
            .env("SMTP_REMOTE", self.dir.path().join("fake-remote"))
            .env("QMAILQUEUE", self.dir.path().join("fake-queue"))
            .env("RETRY_SCHEDULE", "1")
            .env("SCAN_INTERVAL", "1")
            .env("BOUNCE_HOST", "mx.test")
            .stdin(Stdio::null())
            .stderr(self.log_file());
        c
    }
    /// The log of every queue-run started with `command` (a file, never a
    /// pipe that nobody reads while the test waits).
    fn log_file(&self) -> fs::File {
        fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("queue-run.log")).unwrap()
    }
    /// Stop `k` and return the log.
    pub fn log_after(&self, k: Kid) -> String {
        drop(k);
        fs::read_to_string(self.dir.path().join("queue-run.log")).unwrap_or_default()
    }
    /// Files in out/ whose names start with `prefix`, sorted.
    pub fn recorded(&self, prefix: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.out())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .collect();
        v.sort();
        v
    }
    /// Lines of every args.* file: host, sender, recipients.
    pub fn deliveries(&self) -> Vec<Vec<String>> {
        self.recorded("args.").iter().map(|p| fs::read_to_string(p).unwrap().lines().map(String::from).collect()).collect()
    }
    /// How many times `rcpt` was accepted (r record followed by K).
    pub fn accepted(&self, rcpt: &str) -> usize {
        fs::read_to_string(self.out().join("accepted")).unwrap_or_default().lines().filter(|l| *l == rcpt).count()
    }
    pub fn queued(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.queue().join("new")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }
    /// DSNs the fake QMAILQUEUE got: (envelope, message).
    pub fn bounces(&self) -> Vec<(Vec<u8>, String)> {
        self.recorded("bounce.")
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "env"))
            .map(|p| (fs::read(p).unwrap(), fs::read_to_string(p.with_extension("msg")).unwrap()))
            .collect()
    }
}

impl World {
    /// The most runs to one host (`Some(host)`) or to any host at once, from
    /// the start/end lines the fake remote appends (runs of hosts in mode
    /// `slow` overlap for 0.3 s).
    pub fn max_parallel(&self, host: Option<&str>) -> usize {
        let text = fs::read_to_string(self.out().join("spans")).unwrap_or_default();
        let (mut cur, mut max) = (0i64, 0i64);
        for l in text.lines() {
            let (h, what) = l.split_once(' ').unwrap();
            if host.is_some_and(|x| x != h) {
                continue;
            }
            cur += if what == "start" { 1 } else { -1 };
            max = max.max(cur);
        }
        max as usize
    }
}

/// Wait until `f` holds, at most `secs` seconds.
pub fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kill the process group of a fake remote left sleeping (mode `sleep1`).
pub fn kill_sleeper(w: &World) {
    if let Ok(pid) = fs::read_to_string(w.out().join("sleeper")) {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A child that is killed when dropped.
pub struct Kid(pub Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Kid {
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

/// A fake smtp-remote: records its arguments, QUEUE_ATTRS and the message,
/// then prints a qmail-remote report according to out/rules. Modes: `K`
/// (default, accepted), `h` (550), `s` (451), `s1` (451 on the first
/// attempt, then accepted), `crash1` (killed by SIGKILL on the first
/// attempt), `sleep1` (hangs 30 s on the first attempt); host modes `Z`, `D`.
const FAKE_REMOTE: &str = r#"#!/bin/sh
out=@OUT@
host=$1; sender=$2; shift 2
n=$(date +%s%N).$$
cat > "$out/msg.$n"
printf '%s\n' "$host" "$sender" "$@" > "$out/args.$n"
printf '%s' "$QUEUE_ATTRS" > "$out/attrs.$n"
hmode=$(grep "^@$host " "$out/rules" | cut -d' ' -f2)
echo "$host start" >> "$out/spans"
case "$hmode" in
  slow) sleep 0.3 ;;
  tarpit) sleep 8 ;;
  Z) echo "$host end" >> "$out/spans"; printf 'Z421 4.3.2 service not available\0'; exit 0 ;;
  D) echo "$host end" >> "$out/spans"; printf 'DSorry, I could not find a mail exchanger for %s. (#5.1.2)\0' "$host"; exit 0 ;;
esac
ok=""
for r in "$@"; do
  c=$(cat "$out/count.$r" 2>/dev/null || echo 0); c=$((c+1)); echo $c > "$out/count.$r"
  mode=$(grep "^$r " "$out/rules" | cut -d' ' -f2)
  case "$mode" in
    h) printf 'hRemote host said: 550 5.1.1 <%s>: no such user\0' "$r" ;;
    s) printf 'sRemote host said: 451 4.2.0 try later\0' ;;
    s1) if [ "$c" -le 1 ]; then printf 'sRemote host said: 451 4.7.1 greylisted\0'; else printf 'rRemote host said: 250 ok\0'; ok="$ok $r"; fi ;;
    crash1) if [ "$c" -le 1 ]; then kill -9 $$; fi; printf 'r250 ok\0'; ok="$ok $r" ;;
    sleep1) if [ "$c" -le 1 ]; then echo $$ > "$out/sleeper"; sleep 30; fi; printf 'r250 ok\0'; ok="$ok $r" ;;
    *) printf 'rRemote host said: 250 2.1.5 ok\0'; ok="$ok $r" ;;
  esac
done
for r in $ok; do echo "$r" >> "$out/accepted"; done
echo "$host end" >> "$out/spans"
printf 'K127.0.0.1 accepted message./Remote host said: 250 2.0.0 queued\0'
"#;

/// A fake qmail-queue: message from fd 0, envelope from fd 1, both recorded.
const FAKE_QUEUE: &str = r#"#!/bin/sh
out=@OUT@
n=$(date +%s%N).$$
cat > "$out/bounce.$n.msg"
cat <&1 > "$out/bounce.$n.tmp"
printf '%s' "$QUEUE_ATTRS" > "$out/battrs.$n"
mv "$out/bounce.$n.tmp" "$out/bounce.$n.env"
"#;

/// Queue a message with sendmail through the real queue-inject, as a local
/// program on `host` would (MAILHOST, USER=app).
pub fn sendmail_via_queue_inject(w: &World, host: &str, args: &[&str], input: &[u8]) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sendmail"))
        .args(args)
        .env("QMAILQUEUE", env!("CARGO_BIN_EXE_queue-inject"))
        .env("QUEUE_DIR", w.queue())
        .env("MAILHOST", host)
        .env("USER", "app")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input).unwrap();
    assert!(c.wait().unwrap().success());
}

pub const PY: &str = "/usr/bin/python3";

/// An aiosmtpd sink on loopback (tests/support/queuerun_sink.py, Debian's
/// python3-aiosmtpd); `start` writes `<world>/routes` routing every domain to it.
pub struct Sink {
    pub dir: PathBuf,
    _kid: Kid,
}

impl Sink {
    pub fn start(w: &World) -> Sink {
        Sink::start_script(w, "queuerun_sink.py")
    }
    /// The same with another sink script of tests/support that writes the
    /// same files (dkim_sink.py: any line length, SIZE 1 GiB, MAIL's
    /// parameters on the second line of each env file).
    pub fn start_script(w: &World, name: &str) -> Sink {
        assert!(
            Command::new(PY).args(["-c", "import aiosmtpd"]).status().is_ok_and(|s| s.success()),
            "{PY} without aiosmtpd: install the Debian package python3-aiosmtpd"
        );
        let dir = w.dir.path().join("sink");
        fs::create_dir_all(&dir).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support").join(name);
        let kid = Kid(Command::new(PY).arg(script).arg(&dir).stdin(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap());
        wait_for(20, "the sink's port", || dir.join("port").exists());
        let port = fs::read_to_string(dir.join("port")).unwrap();
        fs::write(w.dir.path().join("routes"), format!(":127.0.0.1:{port}\n")).unwrap();
        Sink { dir, _kid: kid }
    }
    /// How many connections carried the messages received so far (by the
    /// client port each came from).
    pub fn connections(&self) -> usize {
        let peers = fs::read_to_string(self.dir.join("peers")).unwrap_or_default();
        peers.lines().collect::<std::collections::HashSet<_>>().len()
    }
    /// (envelope lines, message) of every message received, in order.
    pub fn received(&self) -> Vec<(Vec<String>, Vec<u8>)> {
        let mut names: Vec<String> = fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("msg.") && n != "msg.tmp")
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| {
                let env = fs::read_to_string(self.dir.join(n.replacen("msg.", "env.", 1))).unwrap_or_default();
                (env.lines().map(String::from).collect(), fs::read(self.dir.join(n)).unwrap())
            })
            .collect()
    }
}

/// smtpd-supervise on 127.0.0.1 and a free port, serving smtpd-rs with
/// queue-inject first on PATH and a rules file that lets 127.0.0.1 relay;
/// `setup` adds options and environment. Its stderr goes to
/// `<world>/supervise.log`. Returns the child and the port it printed.
pub fn supervise(w: &World, setup: impl FnOnce(&mut Command)) -> (Kid, String) {
    use std::io::{BufRead, BufReader};
    let rules = w.dir.path().join("rules");
    fs::write(&rules, "127.0.0.1:allow,RELAYCLIENT=\"\"\n:allow\n").unwrap();
    let bin = Path::new(QUEUE_INJECT).parent().unwrap();
    let mut c = Command::new(SUPERVISE);
    c.args(["-1", "-x"]).arg(&rules);
    setup(&mut c);
    let mut sup = c
        .args(["127.0.0.1", "0", SMTPD])
        .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))
        .stdout(Stdio::piped())
        .stderr(fs::File::create(w.dir.path().join("supervise.log")).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(sup.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let port = first.trim().to_string();
    (Kid(sup), port)
}

/// The swaks on PATH (Debian package swaks).
pub fn swaks() -> PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join("swaks"))
        .find(|p| p.is_file())
        .expect("swaks missing: install the Debian package swaks")
}
