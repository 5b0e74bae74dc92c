//! Soak and load (issue 7), loopback only, bounded:
//! - SOAK_SESSIONS sessions (default below) from smtp-source at concurrency 50
//!   through smtpd-supervise -> smtpd-rs -> queue-inject: the queue then
//!   holds exactly what was sent; the supervisor's RSS and open descriptors
//!   before and after are within 5%; no zombie is left.
//! - slowloris: 200 connections sending one byte per second while
//!   smtp-source runs: the fast clients' throughput drops by at most 20%
//!   (SLOWLORIS_MAX_DROP, percent); the slow ones end at the session limit.
//! Needs smtp-source (Debian package postfix).
#[path = "support/peers.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

const SUPERVISE: &str = env!("CARGO_BIN_EXE_smtpd-supervise");

/// The two tests measure throughput: never run them at the same time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Sessions of the soak run when SOAK_SESSIONS is not set.
const SOAK_DEFAULT: usize = 20_000;

struct Sup {
    group: Group,
    port: u16,
    log: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

fn supervise(s: &Scratch, opts: &[&str], env: &[(&str, &str)]) -> Sup {
    let mut c = Command::new(SUPERVISE);
    s.env(&mut c);
    c.envs(env.iter().copied());
    c.arg("-1").args(opts).args(["127.0.0.1", "0", SMTPD]);
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut group = Group::spawn(&mut c);
    let log = collect(group.0.stderr.take().unwrap());
    let mut line = String::new();
    BufReader::new(group.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| panic!("no port: {}", String::from_utf8_lossy(&take(&log))));
    Sup { group, port, log }
}

impl Sup {
    fn pid(&self) -> u32 {
        self.group.pid()
    }
    fn log_text(&self) -> String {
        String::from_utf8_lossy(&take(&self.log)).into_owned()
    }
}

/// smtp-source: `n` messages, one per session, `conc` sessions at once.
/// Returns the wall time; panics if smtp-source fails.
fn source(port: u16, n: usize, conc: usize) -> Duration {
    let bin = peer("smtp-source", "postfix");
    let t = Instant::now();
    let mut c = Command::new(bin);
    c.args(["-s", &conc.to_string(), "-m", &n.to_string(), "-l", "1000"])
        .args(["-f", "sender@client.example", "-t", "rcpt@example.com", "-M", "client.example"])
        .arg(format!("127.0.0.1:{port}"));
    let o = run(&mut c, b"", Duration::from_secs(600));
    assert!(o.status.success() && o.stderr.is_empty(), "smtp-source: {}", o.text());
    t.elapsed()
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn rss_kb(pid: u32) -> u64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    st.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Zombie children of `pid`.
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

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn soak_sessions_queue_exact_supervisor_flat() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let n: usize = std::env::var("SOAK_SESSIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(SOAK_DEFAULT);
    let s = Scratch::new();
    let sup = supervise(&s, &["-c", "100", "-C", "100"], &[]);
    // Warm up, then measure.
    source(sup.port, 200, 50);
    assert!(wait_for(Duration::from_secs(10), || zombies(sup.pid()) == 0 && count(&s.queue.join("new")) == 200));
    thread::sleep(Duration::from_millis(300));
    let (fd0, rss0) = (fd_count(sup.pid()), rss_kb(sup.pid()));
    let took = source(sup.port, n, 50);
    // Every session has ended once smtp-source is done; let the supervisor reap.
    assert!(
        wait_for(Duration::from_secs(10), || zombies(sup.pid()) == 0 && fd_count(sup.pid()) <= fd0),
        "zombies {} fds {} (before {fd0})",
        zombies(sup.pid()),
        fd_count(sup.pid())
    );
    thread::sleep(Duration::from_millis(300));
    let (fd1, rss1) = (fd_count(sup.pid()), rss_kb(sup.pid()));
    let queued = count(&s.queue.join("new"));
    let log = sup.log_text();
    eprintln!(
        "soak: {n} sessions in {:.1} s ({:.0}/s), queued {queued}; supervisor fds {fd0} -> {fd1}, RSS {rss0} -> {rss1} kB",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    assert_eq!(queued, 200 + n, "queue count\n{}", &log[log.len().saturating_sub(3000)..]);
    assert_eq!(count(&s.queue.join("tmp")), 0, "work files left in tmp/");
    assert!(fd1 as f64 <= fd0 as f64 * 1.05, "fds {fd0} -> {fd1}");
    assert!(rss1 as f64 <= rss0 as f64 * 1.05, "RSS {rss0} -> {rss1} kB");
    assert_eq!(zombies(sup.pid()), 0);
}

#[test]
fn slowloris_does_not_starve_fast_clients() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const SLOW: usize = 200;
    const LIMIT: u64 = 20;
    let m: usize = std::env::var("SLOWLORIS_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let max_drop: f64 = std::env::var("SLOWLORIS_MAX_DROP").ok().and_then(|v| v.parse().ok()).unwrap_or(20.0);
    let s = Scratch::new();
    // A byte a second resets SMTPD_TIMEOUT (a per-read timeout) each time:
    // the session wall-clock limit (-T) is what ends such a client.
    let sup = supervise(&s, &["-c", "400", "-C", "400", "-T", &LIMIT.to_string()], &[("SMTPD_TIMEOUT", "5")]);
    source(sup.port, 100, 50);
    // The better of two runs on each side, to damp the noise of a shared machine.
    let base = (0..2).map(|_| source(sup.port, m, 50)).min().unwrap();

    let start = Instant::now();
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", sup.port)).expect("connect");
            // The greeting first: a client that talks before it is refused (SMTPD_PREGREET).
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut g = [0u8; 512];
            let n = c.read(&mut g).unwrap_or(0);
            assert!(g[..n].starts_with(b"220 "), "slow client greeting {:?}", String::from_utf8_lossy(&g[..n]));
            c.set_nonblocking(true).unwrap();
            c
        })
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    // One byte a second on each slow connection, until the server ends it.
    let dripper = thread::spawn(move || {
        let text = b"EHLO slow.example\r\nNOOP\r\n";
        let mut ended = vec![None; slow.len()];
        let mut i = 0usize;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) && ended.iter().any(Option::is_none) {
            for (k, c) in slow.iter_mut().enumerate() {
                if ended[k].is_some() {
                    continue;
                }
                let mut buf = [0u8; 4096];
                let gone = loop {
                    match c.read(&mut buf) {
                        Ok(0) => break true,
                        Ok(_) => continue,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                        Err(_) => break true,
                    }
                };
                if gone || c.write(&text[i % text.len()..][..1]).is_err() {
                    ended[k] = Some(start.elapsed());
                }
            }
            i += 1;
            thread::sleep(Duration::from_secs(1));
        }
        ended
    });
    thread::sleep(Duration::from_millis(1500));
    let loaded = (0..2).map(|_| source(sup.port, m, 50)).min().unwrap();
    let in_loaded = start.elapsed();
    let ended = dripper.join().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let drop_pct = 100.0 * (1.0 - base.as_secs_f64() / loaded.as_secs_f64());
    let ends: Vec<f64> = ended.iter().map(|e| e.map_or(f64::NAN, |d| d.as_secs_f64())).collect();
    let first = ends.iter().copied().fold(f64::INFINITY, f64::min);
    let last = ends.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "slowloris: {m} messages at -s 50 in {:.2} s alone, {:.2} s beside {SLOW} slow clients ({drop_pct:.1}% slower); \
         slow clients ended after {first:.1} .. {last:.1} s (limit {LIMIT} s)",
        base.as_secs_f64(),
        loaded.as_secs_f64()
    );
    assert!(in_loaded < Duration::from_secs(LIMIT), "the fast runs outlasted the slow clients; lower SLOWLORIS_MESSAGES");
    assert!(drop_pct <= max_drop, "fast clients {drop_pct:.1}% slower beside slowloris (at most {max_drop}%)");
    assert!(ends.iter().all(|e| !e.is_nan()), "a slow client was never ended");
    assert!(first >= LIMIT as f64 - 1.0 && last <= LIMIT as f64 + 4.0, "slow clients ended at {first:.1} .. {last:.1} s, limit {LIMIT} s");
    let log = sup.log_text();
    assert!(log.contains(&format!("session over {LIMIT} s: killed")), "{}", &log[log.len().saturating_sub(2000)..]);
    assert!(wait_for(Duration::from_secs(10), || zombies(sup.pid()) == 0));
}
