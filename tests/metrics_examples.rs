//! conf-examples/monitoring as shipped: promtool accepts the scrape job and
//! the alerting rules, the Grafana dashboard is JSON of the shape Grafana
//! imports, and the metrics-http units serve GET /metrics (and refuse the
//! rest) under systemd-socket-activate. tests/metrics_prometheus.rs runs
//! every expression of the rules and the dashboard against a real
//! Prometheus.

#[path = "support/examples.rs"]
mod examples;

use std::process::Command;
use std::time::Duration;

use examples::*;

fn monitoring(f: &str) -> String {
    format!("{}/conf-examples/monitoring/{f}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn promtool_checks_the_config_and_rules() {
    let promtool = peer("promtool", "prometheus");
    for args in [vec!["check", "rules"], vec!["check", "config"]] {
        let f = if args[1] == "rules" { "alerts.yml" } else { "prometheus.yml" };
        let mut c = Command::new(&promtool);
        c.args(&args).arg(monitoring(f));
        let o = run(&mut c, b"", Duration::from_secs(60));
        assert!(o.status.success(), "promtool {args:?} {f}: {}", o.text());
        assert!(!o.text().contains("WARNING"), "promtool {args:?} {f}: {}", o.text());
    }
    // The check can fail: a rule with a broken expression is refused.
    let d = tempfile::tempdir().expect("tempdir");
    let bad = d.path().join("bad.yml");
    let text = std::fs::read_to_string(monitoring("alerts.yml")).expect("alerts.yml").replacen("> 3600", "> > 3600", 1);
    std::fs::write(&bad, text).expect("write");
    let mut c = Command::new(&promtool);
    c.args(["check", "rules"]).arg(&bad);
    assert!(!run(&mut c, b"", Duration::from_secs(60)).status.success());
}

/// Valid JSON with the fields Grafana's import needs, every panel with a
/// data source and at least one PromQL target; python3's json module is
/// the parser.
#[test]
fn the_dashboard_is_grafana_json() {
    let script = r#"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["title"] and d["uid"] and d["schemaVersion"] >= 30, "title, uid, schemaVersion"
names = [v["name"] for v in d["templating"]["list"]]
assert "datasource" in names and "instance" in names, names
ids = set()
for p in d["panels"]:
    assert p["id"] not in ids, p["id"]
    ids.add(p["id"])
    assert p["datasource"]["type"] == "prometheus", p["title"]
    g = p["gridPos"]
    assert g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, p["title"]
    assert p["targets"], p["title"]
    for t in p["targets"]:
        assert t["expr"].strip() and t["refId"], p["title"]
print(len(d["panels"]))
"#;
    let mut c = Command::new(python3());
    c.arg("-c").arg(script).arg(monitoring("grafana-dashboard.json"));
    let o = run(&mut c, b"", Duration::from_secs(30));
    assert!(o.status.success(), "grafana-dashboard.json: {}", o.text());
    let n: usize = String::from_utf8_lossy(&o.stdout).trim().parse().expect("panel count");
    assert!(n >= 10, "{n} panels");
}

#[test]
fn metrics_http_units_as_shipped() {
    let s = Site::new();
    let sock = Unit::read(&s.install("monitoring/metrics-http.socket", "/etc/systemd/system/metrics-http.socket", None));
    assert_eq!(sock.get("Socket", "ListenStream").as_deref(), Some("127.0.0.1:9101"), "loopback by default");
    assert_eq!(sock.get("Socket", "Accept").as_deref(), Some("yes"));
    let unit = Unit::read(&s.install("monitoring/metrics-http@.service", "/etc/systemd/system/metrics-http@.service", None));
    assert_eq!(unit.get("Service", "DynamicUser").as_deref(), Some("yes"));
    assert_eq!(unit.get("Service", "User"), None);
    // The files the unit names, where it names them (not substituted: the
    // test writes the supervisor's; queue-run's is missing).
    let cl = unit.command_line();
    let files: Vec<&String> = cl.iter().filter(|a| a.ends_with(".prom")).collect();
    assert_eq!(files.len(), 2, "{cl:?}");
    // systemd-socket-activate, with setpriv standing for DynamicUser= as
    // nobody's ids (a uid with no files) and for the other settings.
    let port = free_port();
    let mut c = Command::new(peer("systemd-socket-activate", "systemd"));
    c.env_clear().env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    c.args(["-a", "--inetd", "-l", &format!("127.0.0.1:{port}")]);
    c.arg(peer("setpriv", "util-linux")).args(["--reuid=65534", "--regid=65534", "--clear-groups"]).args(unit.setpriv()).arg("--");
    c.args(unit.exec_start());
    let mut svc = Service::spawn("metrics-http units", c, Vec::new());
    svc.wait_port(port);
    let get = |req: &str| {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        c.write_all(req.as_bytes()).expect("send");
        let mut v = String::new();
        let _ = c.read_to_string(&mut v);
        v
    };
    let ok = get("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}\n{}", svc.log_text());
    assert!(ok.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{ok}");
    // Neither file exists in the scratch site: metrics-http says so in a series.
    assert!(ok.contains("\nsmtpd_textfile_scrape_error 1\n"), "{ok}");
    assert!(get("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").starts_with("HTTP/1.1 405 "));
    assert!(get("GET /queue HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 404 "));
}
