//! Helpers of the metrics and scoreboard tests: smtpd-supervise started on
//! a loopback port it picks (-1), a small HTTP client for metrics-http and
//! Prometheus's query API, and a self-signed certificate for tls-wrap.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::peers::Group;

pub const SUPERVISE: &str = env!("CARGO_BIN_EXE_smtpd-supervise");
pub const STATUS: &str = env!("CARGO_BIN_EXE_smtpd-supervise-status");
pub const METRICS_HTTP: &str = env!("CARGO_BIN_EXE_metrics-http");
pub const TLS_WRAP: &str = env!("CARGO_BIN_EXE_tls-wrap");
pub const QUEUE_RUN: &str = env!("CARGO_BIN_EXE_queue-run");
pub const SMTP_REMOTE: &str = env!("CARGO_BIN_EXE_smtp-remote");

/// `smtpd-supervise -1 args...` with `env` added; its stderr goes to
/// `log`. Returns the group and the port it bound.
pub fn supervise(args: &[&str], env: &[(&str, String)], log: &Path) -> (Group, u16) {
    let mut c = Command::new(SUPERVISE);
    c.arg("-1").args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(std::fs::File::create(log).expect("log file"));
    for (k, v) in env {
        c.env(k, v);
    }
    let mut g = Group::spawn(&mut c);
    let out = g.0.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).expect("the port line");
    let port = line.trim().parse().unwrap_or_else(|_| panic!("no port from smtpd-supervise: {line:?}; log:\n{}", std::fs::read_to_string(log).unwrap_or_default()));
    (g, port)
}

/// Send `request` raw to 127.0.0.1:port and read the whole answer
/// (empty when nothing listens there).
pub fn raw_http(port: u16, request: &[u8]) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let _ = s.write_all(request);
    let mut v = Vec::new();
    let _ = s.read_to_end(&mut v);
    String::from_utf8_lossy(&v).into_owned()
}

/// GET `path` (HTTP/1.0); the body when the status is 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let r = raw_http(port, format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes());
    let (head, body) = r.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string()).or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

/// `%XX` for everything but unreserved characters.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// The value of a Prometheus instant query that returns one sample
/// (`sum(...)` of what is wanted), or None when it returns none.
pub fn query(port: u16, q: &str) -> Option<f64> {
    let body = http_get(port, &format!("/api/v1/query?query={}", urlencode(q)))?;
    // {"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"5"]}]}}
    let v = body.split("\"value\":[").nth(1)?;
    let v = v.split(',').nth(1)?;
    v.trim_start().strip_prefix('"')?.split('"').next()?.parse().ok()
}

/// A self-signed ECDSA certificate and key for CN localhost in `dir`.
pub fn cert(dir: &Path) -> (String, String) {
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new(super::peers::peer("openssl", "openssl"))
        .args(["req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=localhost", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout"])
        .arg(&k)
        .arg("-out")
        .arg(&c)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    (c.display().to_string(), k.display().to_string())
}

/// The scoreboard as `smtpd-supervise-status -t` prints it: (state, port) per row.
pub fn board(path: &Path) -> Vec<(String, Option<u16>)> {
    let out = Command::new(STATUS).arg("-t").arg(path).output().expect("run smtpd-supervise-status");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some((f.get(1)?.to_string(), f.get(5).and_then(|p| p.parse().ok())))
        })
        .collect()
}
