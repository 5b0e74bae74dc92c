//! smtpd-rs as a hand-off worker under smtpd-supervise -W: sessions handed to
//! waiting workers, the rules' variables applied per session, one queue-inject
//! kept across a worker's sessions, each session from a fresh state.

#[path = "support/exe.rs"]
mod exe;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_BIN_EXE_smtpd-rs")).parent().unwrap().to_path_buf()
}

/// One SMTP session; the replies it got.
fn session(port: u16, rcpt: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("220 "), "{line}");
    write!(s, "EHLO t.example\r\nMAIL FROM:<a@t.example>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").unwrap();
    let mut out = line;
    // EHLO lines, MAIL, RCPT, DATA
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap() == 0 {
            return out;
        }
        out.push_str(&l);
        if l.starts_with("354") || l.starts_with("5") || l.starts_with("4") {
            break;
        }
    }
    if out.contains("354") {
        s.write_all(b"Subject: t\r\n\r\nhello\r\n.\r\nQUIT\r\n").unwrap();
    } else {
        s.write_all(b"QUIT\r\n").unwrap();
    }
    let mut rest = String::new();
    let _ = r.read_to_string(&mut rest);
    out + &rest
}

/// smtpd-supervise `args` 127.0.0.1 0 smtpd-rs, with the queue in `queue`
/// and stderr to `log`; the running supervisor and its port.
fn supervise(args: &[&str], queue: &std::path::Path, log: Stdio) -> (Kill, u16) {
    let path = format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    let mut child = Command::new(env!("CARGO_BIN_EXE_smtpd-supervise"))
        .args(args)
        .args(["127.0.0.1", "0", env!("CARGO_BIN_EXE_smtpd-rs")])
        .env("PATH", path)
        .env("QUEUE_DIR", queue)
        .env("SMTPD_HOSTNAME", "mx.test")
        .env_remove("RELAYCLIENT")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let k = Kill(child);
    let port: u16 = first.trim().parse().expect("port on stdout");
    (k, port)
}

/// `supervise` with `args`, a queue and a log in a new folder, and rules that
/// let loopback relay only through the rules' variable (handed over per
/// session): the folder, the queue, the log, the supervisor and its port.
fn supervise_with_rules(args: &[&str]) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf, Kill, u16) {
    let d = tempfile::tempdir().unwrap();
    let queue = d.path().join("queue");
    std::fs::create_dir(&queue).unwrap();
    let rules = d.path().join("rules");
    std::fs::write(&rules, "127.0.0.1:allow,RELAYCLIENT=\"\"\n:allow\n").unwrap();
    let log = d.path().join("log");
    let mut all = args.to_vec();
    all.extend(["-x", rules.to_str().unwrap()]);
    let (k, port) = supervise(&all, &queue, std::fs::File::create(&log).unwrap().into());
    (d, queue, log, k, port)
}

#[test]
fn handoff_workers_serve_sessions_with_rules_env_and_a_kept_queue_inject() {
    let (_d, queue, log, _k, port) = supervise_with_rules(&["-1", "-W", "-w", "1", "-m", "3"]);

    for i in 0..4 {
        let out = session(port, &format!("u{i}@example.com"));
        assert!(out.contains("250 2.0.0 ok: queued as "), "session {i}: {out}");
        assert!(out.contains("221 "), "session {i}: {out}");
    }
    let ids: Vec<String> = std::fs::read_dir(queue.join("new"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    // <secs>.<pid>.<seq>: a sequence above 1 means one queue-inject served
    // messages of more than one session.
    assert!(ids.iter().any(|id| id.rsplit('.').next().unwrap() != "1"), "{ids:?}");

    // The log names fewer session pids than sessions: workers were reused.
    let text = log_after(&log, 4);
    let mut pids: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("smtpd-supervise: pid "))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    pids.sort();
    pids.dedup();
    assert!(!pids.is_empty() && pids.len() < 4, "{pids:?}\n{text}");
}

#[test]
fn handoff_session_without_rules_relay_is_refused() {
    // The same worker set-up with no rule granting RELAYCLIENT: the
    // recipient is refused, showing that the variable really came per session.
    let d = tempfile::tempdir().unwrap();
    let queue = d.path().join("queue");
    std::fs::create_dir(&queue).unwrap();
    let (_k, port) = supervise(&["-1", "-W", "-w", "1", "-m", "3"], &queue, Stdio::null());
    let out = session(port, "u@example.com");
    assert!(!out.contains("queued as"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("553 ") || l.starts_with("550 ")), "{out}");
}

/// The log file once it holds `marker` `n` times (or after 5 s).
fn log_once(log: &std::path::Path, marker: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = String::new();
    while Instant::now() < deadline {
        text.clear();
        std::fs::File::open(log).unwrap().read_to_string(&mut text).unwrap();
        if text.matches(marker).count() >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    text
}

/// The log once `n` sessions have ended (or after 5 s).
fn log_after(log: &std::path::Path, n: usize) -> String {
    log_once(log, " end: quit", n)
}

/// The log once it shows `n` sessions started (or after 5 s).
fn log_after_connects(log: &std::path::Path, n: usize) -> String {
    log_once(log, " connect: remote", n)
}

/// How many of process `pid`'s fds are Unix SOCK_SEQPACKET sockets
/// (/proc/net/unix, type 0005).
fn packet_sockets(pid: &str) -> usize {
    let seqpacket: Vec<String> = std::fs::read_to_string("/proc/net/unix")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(4) == Some(&"0005")).then(|| f.get(6).map(|i| i.to_string())).flatten()
        })
        .collect();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .filter(|inode| seqpacket.contains(inode))
        .count()
}

/// The distinct pids in the word after `prefix` on the log's lines.
fn pids_after(text: &str, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn forking_template_serves_each_session_in_a_fresh_process() {
    // -F: each worker is a template that forks a fresh smtpd-rs (with its
    // own queue-inject) per session and outlives it, up to -m sessions.
    let (_d, queue, log, _k, port) = supervise_with_rules(&["-1", "-W", "-F", "-w", "1", "-m", "3", "-T", "1"]);

    for i in 0..4 {
        let out = session(port, &format!("u{i}@example.com"));
        assert!(out.contains("250 2.0.0 ok: queued as "), "session {i}: {out}");
        assert!(out.contains("221 "), "session {i}: {out}");
    }
    let text = log_after(&log, 4);
    assert!(text.contains("max_use 3 fork"), "{text}");
    // Four sessions, four smtpd-rs processes...
    let sessions = pids_after(&text, "smtpd-rs: info: ");
    assert_eq!(sessions.len(), 4, "{sessions:?}\n{text}");
    // ...forked by fewer workers (templates), which served none themselves.
    let workers = pids_after(&text, "smtpd-supervise: pid ");
    assert!(!workers.is_empty() && workers.len() < 4, "{workers:?}\n{text}");
    assert!(sessions.iter().all(|p| !workers.contains(p)), "{sessions:?} {workers:?}");
    // A queue-inject of its own per session: <secs>.<pid>.<seq> with seq 1
    // and four different pids.
    let ids: Vec<String> = std::fs::read_dir(queue.join("new"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(ids.iter().all(|id| id.ends_with(".1")), "{ids:?}");
    let mut qpids: Vec<&str> = ids.iter().map(|id| id.split('.').nth(1).unwrap()).collect();
    qpids.sort();
    qpids.dedup();
    assert_eq!(qpids.len(), 4, "{ids:?}");

    // The watchdog (-T 1) ends a session that outlives its limit, template
    // and all; the next session is served by a new template.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut greeting = [0u8; 4];
    idle.read_exact(&mut greeting).unwrap();
    // Meanwhile: the session's process holds one Unix packet socket, its
    // template's hand-off channel, and no way to the queue-inject zygote
    // that made its queue-inject.
    let before = sessions.len();
    let text = log_after_connects(&log, before + 1);
    let now = pids_after(&text, "smtpd-rs: info: ");
    let fresh: Vec<&String> = now.iter().filter(|p| !sessions.contains(p)).collect();
    assert_eq!(fresh.len(), 1, "{now:?}\n{text}");
    assert_eq!(packet_sockets(fresh[0]), 1, "packet sockets of session {}", fresh[0]);
    let mut buf = greeting.to_vec();
    let _ = idle.read_to_end(&mut buf);
    assert!(started.elapsed() < Duration::from_secs(5), "the idle session was not ended");
    assert!(String::from_utf8_lossy(&buf).starts_with("220 "), "{buf:?}");
    let out = session(port, "after@example.com");
    assert!(out.contains("250 2.0.0 ok: queued as "), "after the kill: {out}");
}

/// Issue 16.7: a session that ends with a BDAT message unfinished (QUIT,
/// EOF, too many errors) must leave its worker's queue-inject between
/// messages: the next session on that worker queues its message (not
/// `451 4.3.0 qq internal bug`). 70000 octets make the client send frames
/// to queue-inject before the session ends.
#[test]
fn unfinished_bdat_is_abandoned_whatever_ends_the_session() {
    let (_d, queue, log, _k, port) = supervise_with_rules(&["-1", "-W", "-w", "1", "-m", "100"]);
    let chunk = "x".repeat(998).add_crlf().repeat(70);
    assert_eq!(chunk.len(), 70000);
    let endings: [(&str, &str); 3] = [("QUIT", "QUIT\r\n"), ("EOF", ""), ("errors", &"FOO\r\n".repeat(20))];
    for (how, tail) in endings {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut greeting = [0u8; 1];
        while greeting[0] != b'\n' {
            assert_eq!(s.read(&mut greeting).unwrap(), 1, "greeting");
        }
        write!(s, "EHLO t.example\r\nMAIL FROM:<a@t.example>\r\nRCPT TO:<u@example.com>\r\nBDAT 70000\r\n{chunk}{tail}").unwrap();
        if tail.is_empty() {
            // Wait for the chunk's reply, then close between commands.
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut seen = String::new();
            while !seen.contains("octets received") {
                let mut l = String::new();
                assert!(r.read_line(&mut l).unwrap() > 0, "{how}: {seen}");
                seen.push_str(&l);
            }
            drop(r);
        } else {
            let mut rest = String::new();
            let _ = s.read_to_string(&mut rest);
            assert!(rest.contains("250 2.0.0 70000 octets received"), "{how}: {rest}");
        }
        drop(s);
        // Let the worker report idle, so that the next session is its.
        std::thread::sleep(Duration::from_millis(500));
        let out = session(port, "next@example.com");
        assert!(out.contains("250 2.0.0 ok: queued as "), "after {how}: {out}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(std::fs::read_dir(queue.join("new")).unwrap().count(), 3, "only the complete messages");
    // Every session went to the same worker (the most used idle one).
    let text = std::fs::read_to_string(&log).unwrap();
    let workers = pids_after(&text, "smtpd-supervise: pid ");
    assert_eq!(workers.len(), 1, "{workers:?}\n{text}");
}

trait Crlf {
    fn add_crlf(self) -> String;
}
impl Crlf for String {
    fn add_crlf(mut self) -> String {
        self.push_str("\r\n");
        self
    }
}

/// The client sees the end of its session at once, not when the session's
/// queue program has exited: in `-W -m 1` and `-W -F` (no zygote here, the
/// queue program is not queue-inject), with a queue program that lingers
/// three seconds after its input ends.
#[test]
fn the_client_sees_the_end_before_the_queue_program_exits() {
    let d = tempfile::tempdir().unwrap();
    let queue = d.path().join("queue");
    std::fs::create_dir_all(queue.join("tmp")).unwrap();
    std::fs::create_dir_all(queue.join("new")).unwrap();
    let slow = d.path().join("slow-queue");
    exe::write(&slow, "#!/bin/sh\ncat >/dev/null\nsleep 3\n");
    for mode in [&["-W", "-m", "1"][..], &["-W", "-F"][..]] {
        let path = format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default());
        let mut child = Command::new(env!("CARGO_BIN_EXE_smtpd-supervise"))
            .arg("-1")
            .args(mode)
            .args(["127.0.0.1", "0", env!("CARGO_BIN_EXE_smtpd-rs")])
            .env("PATH", path)
            .env("QUEUE_DIR", &queue)
            .env("QUEUE_SESSION_PROGRAM", &slow)
            .env("SMTPD_HOSTNAME", "mx.test")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        let _k = Kill(child);
        let port: u16 = first.trim().parse().expect("port on stdout");
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("220 "), "{mode:?}: {line}");
        // The queue program has been started for the session by now.
        std::thread::sleep(Duration::from_millis(200));
        s.write_all(b"QUIT\r\n").unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("221 "), "{mode:?}: {line}");
        let t = Instant::now();
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert!(t.elapsed() < Duration::from_millis(1500), "{mode:?}: the connection closed {:?} after 221", t.elapsed());
    }
}
