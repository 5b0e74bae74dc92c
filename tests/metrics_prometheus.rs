//! A real Prometheus (Debian package prometheus: a private instance with
//! its own configuration and storage in a scratch folder, on a loopback
//! port, scraping every second) scrapes the suite while known traffic
//! goes through it: smtpd-supervise -W -M running tls-wrap and smtpd-rs,
//! queue-run with METRICS_FILE deferring every message (its route points
//! at a closed port), and metrics-http under a second smtpd-supervise
//! serving both files. The figures read back through Prometheus's query
//! API are exact; `promtool check metrics` finds nothing to say about the
//! exposition; the example rules and dashboard name only series that exist.

#[path = "support/peers.rs"]
mod peers;
#[path = "support/metrics.rs"]
mod metrics;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use metrics::*;
use peers::{peer, wait_for, Group};

const N: u32 = 5; // messages accepted
const M: u32 = 3; // sessions whose recipient is refused
const K: u32 = 2; // sessions in TLS (the first fails AUTH once)

fn start_prometheus(dir: &Path, target: u16) -> (Group, u16) {
    let prom = peer("prometheus", "prometheus");
    let port = peers::free_port();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: smtpd\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        ),
    )
    .unwrap();
    let mut c = Command::new(prom);
    c.arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap());
    let g = Group::spawn(&mut c);
    let ready = wait_for(Duration::from_secs(60), || http_get(port, "/-/ready").is_some());
    assert!(ready, "prometheus not ready:\n{}", std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default());
    (g, port)
}

#[test]
fn prometheus_reads_exact_figures() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let queue = dir.join("queue");
    std::fs::create_dir(&queue).unwrap();
    std::fs::write(dir.join("rcpthosts"), "example.com\n").unwrap();
    let mdir = dir.join("metrics");
    std::fs::create_dir(&mdir).unwrap();
    let (cert, key) = cert(dir);
    let sup_prom = mdir.join("supervise.prom");
    let queue_prom = mdir.join("queue.prom");

    // The MX: tls-wrap (STARTTLS) and smtpd-rs as hand-off workers.
    let env = vec![
        ("QUEUE_DIR", queue.display().to_string()),
        ("RCPTHOSTS", dir.join("rcpthosts").display().to_string()),
        ("SMTPD_HOSTNAME", "localhost".into()),
        ("UCSPITLS", String::new()),
        ("SMTPAUTH", String::new()),
        ("CERTFILE", cert),
        ("KEYFILE", key),
    ];
    let sp = sup_prom.display().to_string();
    let board = mdir.join("board").display().to_string();
    let (_mx, mx_port) = supervise(
        &["-W", "-w", "2", "-m", "50", "-M", &sp, "-L", &board, "127.0.0.1", "0", TLS_WRAP, peers::SMTPD, "/bin/false"],
        &env,
        &dir.join("mx.log"),
    );

    // queue-run, every delivery deferred: the route is a closed port.
    let closed = peers::free_port();
    std::fs::write(dir.join("routes"), format!("example.com:127.0.0.1:{closed}\n")).unwrap();
    let mut qr = Command::new(QUEUE_RUN);
    qr.env("QUEUE_DIR", &queue)
        .env("SMTP_REMOTE", SMTP_REMOTE)
        .env("QMAILQUEUE", peers::QUEUE_INJECT)
        .env("SMTPROUTES", dir.join("routes"))
        .env("HELOHOST", "relay.test")
        .env("RETRY_SCHEDULE", "3600")
        .env("METRICS_FILE", &queue_prom)
        .env("METRICS_INTERVAL", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("queue-run.log")).unwrap());
    let _qr = Group::spawn(&mut qr);

    // metrics-http, under a second smtpd-supervise (classic).
    let qp = queue_prom.display().to_string();
    let (_http, http_port) = supervise(&["-c", "10", "127.0.0.1", "0", METRICS_HTTP, "-t", "5", &sp, &qp], &[], &dir.join("http.log"));
    let (_prom, prom_port) = start_prometheus(dir, http_port);

    let out = Command::new(peers::python3())
        .arg(format!("{}/tests/support/metrics_traffic.py", env!("CARGO_MANIFEST_DIR")))
        .args([mx_port.to_string(), N.to_string(), M.to_string(), K.to_string()])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "traffic: {}{}\nmx log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("mx.log")).unwrap_or_default()
    );

    let expected: Vec<(&str, f64)> = vec![
        (r#"sum(smtpd_sessions_total{end="quit"})"#, f64::from(N + M + K)),
        (r#"sum(smtpd_sessions_total{end="tls_failed"})"#, 1.0),
        (r#"sum(smtpd_sessions_total)"#, f64::from(N + M + K + 1)),
        (r#"sum(smtpd_connections_total{result="accepted"})"#, f64::from(N + M + K + 1)),
        (r#"sum(smtpd_messages_total{result="accepted"})"#, f64::from(N)),
        (r#"sum(smtpd_recipients_total)"#, f64::from(N)),
        (r#"sum(smtpd_refusals_total{class="5xx",reason="policy"})"#, f64::from(M)),
        (r#"sum(smtpd_refusals_total{reason="auth"})"#, 1.0),
        (r#"sum(smtpd_refusals_total)"#, f64::from(M + 1)),
        (r#"sum(smtpd_auth_total{result="failure"})"#, 1.0),
        (r#"sum(smtpd_tls_handshakes_total{result="ok"})"#, f64::from(K)),
        (r#"sum(smtpd_tls_handshakes_total{result="failed"})"#, 1.0),
        (r#"sum(smtpd_reports_total{result="malformed"})"#, 0.0),
        (r#"sum(smtpd_sessions_active)"#, 0.0),
        (r#"smtpd_queue_messages"#, f64::from(N)),
        (r#"smtpd_queue_recipients_pending"#, f64::from(N)),
        (r#"sum(smtpd_delivery_attempts_total{result="deferred"})"#, f64::from(N)),
        (r#"sum(smtpd_delivery_attempts_total{result="delivered"})"#, 0.0),
        (r#"smtpd_delivery_attempt_duration_seconds_count"#, f64::from(N)),
        (r#"smtpd_queue_oldest_message_age_seconds < 600"#, -1.0),
        (r#"up{job="smtpd"}"#, 1.0),
        (r#"smtpd_textfile_scrape_error"#, 0.0),
    ];
    let check = || -> Vec<String> {
        expected
            .iter()
            .filter_map(|(q, want)| {
                let got = query(prom_port, q);
                let ok = if *want < 0.0 { got.is_some() } else { got == Some(*want) };
                (!ok).then(|| format!("{q}: got {got:?}, want {want}"))
            })
            .collect()
    };
    let mut wrong = check();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !wrong.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        wrong = check();
    }
    let exposition = http_get(http_port, "/metrics").unwrap_or_default();
    assert!(
        wrong.is_empty(),
        "figures read back through Prometheus:\n{}\n\nexposition:\n{exposition}\nmx log:\n{}\nqueue-run log:\n{}",
        wrong.join("\n"),
        std::fs::read_to_string(dir.join("mx.log")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("queue-run.log")).unwrap_or_default()
    );

    // promtool's linter (metric names, units, help, types): not a word.
    let mut c = Command::new(peer("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    {
        use std::io::Write;
        c.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    }
    let o = c.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{exposition}");

    // Every series the examples use exists, and Prometheus takes every
    // expression of the rules and the dashboard.
    names_in_examples_exist(&exposition);
    for e in example_expressions() {
        let q = e.replace("$__rate_interval", "1m").replace("$instance", ".*");
        let body = http_get(prom_port, &format!("/api/v1/query?query={}", urlencode(&q)));
        assert!(body.as_deref().is_some_and(|b| b.contains("\"status\":\"success\"")), "Prometheus refuses {q}: {body:?}");
    }
}

/// The PromQL of conf-examples/monitoring: alert rules and dashboard targets.
fn example_expressions() -> Vec<String> {
    let script = r#"
import json, sys, yaml
for g in yaml.safe_load(open(sys.argv[1]))["groups"]:
    for r in g["rules"]:
        print(" ".join(r["expr"].split()))
for p in json.load(open(sys.argv[2]))["panels"]:
    for t in p["targets"]:
        print(" ".join(t["expr"].split()))
"#;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf-examples/monitoring");
    let o = Command::new(peers::python3())
        .arg("-c")
        .arg(script)
        .arg(root.join("alerts.yml"))
        .arg(root.join("grafana-dashboard.json"))
        .output()
        .expect("run python3");
    assert!(o.status.success(), "python3 (python3-yaml): {}", String::from_utf8_lossy(&o.stderr));
    let v: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect();
    assert!(v.len() >= 15, "{v:?}");
    v
}

/// The `smtpd_...` names in conf-examples/monitoring (alert rules, the
/// Grafana dashboard) are families or samples of the exposition.
fn names_in_examples_exist(exposition: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf-examples/monitoring");
    let mut missing = Vec::new();
    for f in ["alerts.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        let mut rest = text.as_str();
        while let Some(i) = rest.find("smtpd_") {
            let tail = &rest[i..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            let name = &tail[..end];
            let known = exposition.lines().any(|l| {
                l.strip_prefix(name).is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
                    || l.strip_prefix("# TYPE ").is_some_and(|r| r.strip_prefix(name).is_some_and(|r| r.starts_with(' ')))
            });
            if !known && !missing.contains(&format!("{f}: {name}")) {
                missing.push(format!("{f}: {name}"));
            }
            rest = &tail[end..];
        }
    }
    assert!(missing.is_empty(), "series named in conf-examples/monitoring that the suite does not expose:\n{}", missing.join("\n"));
}
