//! The scoreboard (smtpd-supervise -L, smtpd-supervise-status) during 20
//! concurrent sessions shows 20 sessions with the clients' ports, and idle
//! workers only once they end; metrics-http refuses bad requests (other
//! methods, huge heads, slow heads) while mail goes on; and a bench figure:
//! the supervisor's session rate without the scoreboard, with -L and -M,
//! and with the scoreboard read 100 times a second (run with --nocapture
//! to see it).

#[path = "support/peers.rs"]
mod peers;
#[path = "support/metrics.rs"]
mod metrics;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use metrics::*;
use peers::wait_for;

fn mx_env(dir: &Path) -> Vec<(&'static str, String)> {
    let queue = dir.join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    std::fs::write(dir.join("rcpthosts"), "example.com\n").unwrap();
    vec![
        ("QUEUE_DIR", queue.display().to_string()),
        ("RCPTHOSTS", dir.join("rcpthosts").display().to_string()),
        ("SMTPD_HOSTNAME", "localhost".into()),
        ("SMTPD_TIMEOUT", "30".into()),
    ]
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).expect("read a reply");
    l
}

#[test]
fn twenty_sessions_on_the_scoreboard() {
    let d = tempfile::tempdir().unwrap();
    let board_path = d.path().join("board");
    let b = board_path.display().to_string();
    let (_sup, port) = supervise(
        &["-W", "-w", "2", "-m", "100", "-c", "40", "-C", "40", "-L", &b, "127.0.0.1", "0", peers::SMTPD],
        &mx_env(d.path()),
        &d.path().join("log"),
    );
    let mut clients = Vec::new();
    let mut ports = BTreeSet::new();
    for _ in 0..20 {
        let s = peers::connect(port, Duration::from_secs(10));
        ports.insert(s.local_addr().unwrap().port());
        let mut r = BufReader::new(s.try_clone().unwrap());
        assert!(line(&mut r).starts_with("220 "), "greeting");
        clients.push((s, r));
    }
    let sessions = |rows: &[(String, Option<u16>)]| -> BTreeSet<u16> {
        rows.iter().filter(|(st, _)| st == "session").filter_map(|(_, p)| *p).collect()
    };
    let mut rows = Vec::new();
    let seen = wait_for(Duration::from_secs(20), || {
        rows = board(&board_path);
        sessions(&rows) == ports
    });
    assert!(seen, "the scoreboard shows the 20 client ports {ports:?} in session: {rows:?}");
    assert_eq!(rows.iter().filter(|(s, _)| s == "session").count(), 20, "{rows:?}");
    let table = Command::new(STATUS).arg(&board_path).output().unwrap();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.contains("sessions 20/40"), "{table}");
    for p in &ports {
        assert!(table.contains(&format!("127.0.0.1:{p}\n")), "{p} in\n{table}");
    }
    let json = Command::new(STATUS).arg("-j").arg(&board_path).output().unwrap();
    let json = String::from_utf8_lossy(&json.stdout).into_owned();
    assert_eq!(json.lines().filter(|l| l.contains("\"state\":\"session\"")).count(), 20, "{json}");

    for (s, r) in &mut clients {
        s.write_all(b"QUIT\r\n").unwrap();
        assert!(line(r).starts_with("221 "));
    }
    drop(clients);
    let idle = wait_for(Duration::from_secs(20), || {
        rows = board(&board_path);
        !rows.is_empty() && rows.iter().all(|(s, _)| s == "idle")
    });
    assert!(idle, "after the sessions, idle workers only: {rows:?}");
    assert!(rows.len() >= 2, "{rows:?}");
    let table = Command::new(STATUS).arg(&board_path).output().unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains("sessions 0/40, idle workers"), "{table:?}");
}

/// One message through the MX on `port`: the 250 of the final dot.
fn send_mail(port: u16) -> String {
    let s = peers::connect(port, Duration::from_secs(10));
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    assert!(line(&mut r).starts_with("220 "), "greeting");
    for cmd in ["EHLO client.test", "MAIL FROM:<a@client.test>", "RCPT TO:<u@example.com>", "DATA"] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        while line(&mut r).as_bytes().get(3) == Some(&b'-') {}
    }
    w.write_all(b"Subject: t\r\n\r\nhello\r\n.\r\n").unwrap();
    let last = line(&mut r);
    w.write_all(b"QUIT\r\n").unwrap();
    last
}

#[test]
fn metrics_http_refuses_bad_requests_and_mail_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let prom = d.path().join("s.prom").display().to_string();
    let (_mx, mx) = supervise(&["-W", "-w", "2", "-M", &prom, "127.0.0.1", "0", peers::SMTPD], &mx_env(d.path()), &d.path().join("mx.log"));
    let (_http, http) = supervise(&["-c", "10", "-T", "30", "127.0.0.1", "0", METRICS_HTTP, "-t", "2", &prom], &[], &d.path().join("http.log"));

    let status = |req: &[u8]| raw_http(http, req).lines().next().unwrap_or_default().to_string();
    assert_eq!(status(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"), "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(status(b"DELETE /metrics HTTP/1.0\r\n\r\n"), "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(status(b"GET /etc/passwd HTTP/1.0\r\n\r\n"), "HTTP/1.1 404 Not Found");
    assert_eq!(status(b"GET /metrics HTTP/1.1\r\n\r\n"), "HTTP/1.1 400 Bad Request", "1.1 without Host");
    assert_eq!(status(b"GET /metrics HTTP/3.0\r\n\r\n"), "HTTP/1.1 505 HTTP Version Not Supported");
    let mut huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Junk: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let t = Instant::now();
    assert_eq!(status(&huge), "HTTP/1.1 431 Request Header Fields Too Large");
    assert!(t.elapsed() < Duration::from_secs(2), "refused at once, not at the timeout");

    // Slow heads: one that never ends its headers, one byte every 300 ms,
    // and one that sends nothing; both answered 408 at -t (2 s), however
    // the bytes trickle, and closed.
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", http)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let t = Instant::now();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
        let mut got = Vec::new();
        while t.elapsed() < Duration::from_secs(15) {
            if s.write_all(b"X").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
            s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 512];
            match s.read(&mut b) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&b[..n]),
                Err(_) => {}
            }
            s.set_nonblocking(false).unwrap();
        }
        (t.elapsed(), String::from_utf8_lossy(&got).into_owned())
    });
    let silent = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", http)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let t = Instant::now();
        let mut v = String::new();
        let _ = s.read_to_string(&mut v);
        (t.elapsed(), v)
    });
    // Meanwhile mail goes on.
    let reply = send_mail(mx);
    assert!(reply.starts_with("250 "), "the message is queued while metrics-http is pestered: {reply}");
    for h in [slow, silent] {
        let (took, got) = h.join().unwrap();
        assert!(got.starts_with("HTTP/1.1 408 Request Timeout"), "{got:?}");
        assert!(took >= Duration::from_millis(1800) && took < Duration::from_secs(8), "answered after {took:?}");
    }
    // And the scrape still works, with the message counted.
    let mut body = String::new();
    let counted = wait_for(Duration::from_secs(10), || {
        body = http_get(http, "/metrics").unwrap_or_default();
        body.lines().any(|l| l.starts_with("smtpd_messages_total{") && l.contains("result=\"accepted\"") && l.ends_with(" 1"))
    });
    assert!(counted, "{body}");
    let head = raw_http(http, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "HEAD: headers only: {head}");
}

/// Sessions per second for `secs` seconds from two client threads, each
/// connecting, reading the greeting, sending QUIT and reading the 221.
fn session_rate(port: u16, secs: f64) -> f64 {
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < stop {
                    let s = peers::connect(port, Duration::from_secs(10));
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let mut w = s;
                    if !line(&mut r).starts_with("220") {
                        break;
                    }
                    w.write_all(b"QUIT\r\n").unwrap();
                    if line(&mut r).starts_with("221") {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let n: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    n as f64 / secs
}

#[test]
fn bench_session_rate_with_scoreboard_reads() {
    let d = tempfile::tempdir().unwrap();
    let secs = 3.0;
    let env = mx_env(d.path());
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["-W", "-w", "2", "-m", "100", "-Q"].iter().map(|s| s.to_string()).collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v.extend(["127.0.0.1", "0", peers::SMTPD].iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&str], reader: Option<&Path>, name: &str| -> f64 {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (_sup, port) = supervise(&a, &env, &d.path().join(format!("{name}.log")));
        // Warm up (workers started), then measure.
        session_rate(port, 0.5);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reads = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let rd = reader.map(|p| {
            let (p, stop, reads) = (p.to_path_buf(), stop.clone(), reads.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let o = Command::new(STATUS).arg(&p).output().expect("smtpd-supervise-status");
                    assert!(o.status.success());
                    reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        });
        let rate = session_rate(port, secs);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = rd {
            t.join().unwrap();
        }
        let n = reads.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("bench: {name}: {rate:.0} sessions/s{}", if n > 0 { format!(" ({:.0} scoreboard reads/s)", n as f64 / secs) } else { String::new() });
        rate
    };
    let board = d.path().join("board");
    let b = board.display().to_string();
    let m = d.path().join("s.prom").display().to_string();
    let base = run(&[], None, "no scoreboard");
    let written = run(&["-L", &b, "-M", &m], None, "-L and -M");
    let read = run(&["-L", &b, "-M", &m], Some(&board), "-L and -M, smtpd-supervise-status in a loop");
    eprintln!("bench: ratios: -L -M {:.2}, with reads {:.2} (2 cores shared with the client and the reader)", written / base, read / base);
    // Loose bounds: the machine is shared; a supervisor that waited on its
    // readers would fall far below them.
    assert!(written > base * 0.6 && read > base * 0.5, "base {base:.0}/s, -L -M {written:.0}/s, with reads {read:.0}/s");
}
