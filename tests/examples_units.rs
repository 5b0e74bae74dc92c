//! conf-examples as a whole: systemd-analyze verify passes every unit
//! (offline: it needs no running systemd), the environment files mean the
//! same to systemd and to sh, every shipped file is run by a test named
//! here, and conf-examples/README names every entry.
#[path = "support/examples.rs"]
mod examples;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use examples::*;

/// Every file of conf-examples and the test that runs it as shipped.
const EXERCISED: &[(&str, &str)] = &[
    ("README", "examples_units::readme_names_every_entry"),
    ("setup-accounts.sh", "examples_accounts::*"),
    ("smtpd.env", "examples_mx::*, examples_authcheck::*"),
    ("tls.env", "examples_mx::*, examples_submission::*"),
    ("submission.env", "examples_submission::*"),
    ("rcpthosts", "examples_mx::*, examples_local::*"),
    ("local.rules", "examples_local::*, examples_mx::rules_files_and_tcprules"),
    ("run-local.sh", "examples_local::*"),
    ("queue-inject.cron", "examples_queue::queue_inject_cron_cleans_tmp"),
    ("smtpd-supervise/README", "examples_units::readme_names_every_entry"),
    ("smtpd-supervise/smtpd.rules", "examples_mx::smtpd_supervise_*, examples_mx::rules_files_and_tcprules"),
    ("smtpd-supervise/runit/smtpd/run", "examples_mx::smtpd_supervise_under_runit"),
    ("smtpd-supervise/runit/smtpd/log/run", "examples_mx::smtpd_supervise_under_runit"),
    ("smtpd-supervise/s6/smtpd/run", "examples_mx::smtpd_supervise_under_s6"),
    ("smtpd-supervise/s6/smtpd/finish", "examples_mx::smtpd_supervise_under_s6"),
    ("smtpd-supervise/s6/smtpd/type", "examples_mx::smtpd_supervise_under_s6"),
    ("smtpd-supervise/s6/smtpd/log/run", "examples_mx::smtpd_supervise_under_s6"),
    ("smtpd-supervise/systemd/smtpd-supervise.service", "examples_mx::smtpd_supervise_systemd_service, examples_authcheck::smtpd_supervise_with_auth_check_env"),
    ("smtpd-supervise/systemd/smtpd-supervise-activated.socket", "examples_mx::smtpd_supervise_systemd_socket_activated"),
    ("smtpd-supervise/systemd/smtpd-supervise-activated.service", "examples_mx::smtpd_supervise_systemd_socket_activated"),
    ("tcpserver/run", "examples_mx::tcpserver_run_with_tcp_smtp"),
    ("tcpserver/tcp.smtp", "examples_mx::tcpserver_run_with_tcp_smtp"),
    ("systemd/smtpd-rs.socket", "examples_mx::systemd_accept_units_*"),
    ("systemd/smtpd-rs@.service", "examples_mx::systemd_accept_units_*, examples_authcheck::systemd_accept_units_with_the_drop_in"),
    ("auth-check/README", "examples_units::readme_names_every_entry"),
    ("auth-check/auth-check.env", "examples_authcheck::*"),
    ("auth-check/tcpserver.run", "examples_authcheck::tcpserver_run_with_its_tcp_smtp"),
    ("auth-check/tcp.smtp", "examples_authcheck::tcpserver_run_with_its_tcp_smtp"),
    ("auth-check/systemd/smtpd-rs@.service.d/auth-check.conf", "examples_authcheck::systemd_accept_units_with_the_drop_in, examples_units::systemd_analyze_verify_every_unit"),
    ("auth-check/qmail.tcp.smtp", "examples_authcheck::qmail_tcp_smtp_in_front_of_a_qmail_queue"),
    ("submission/run", "examples_submission::submission_run_under_tcpserver"),
    ("submission/smtpd-submission.socket", "examples_submission::submission_systemd_units"),
    ("submission/smtpd-submission@.service", "examples_submission::submission_systemd_units"),
    ("smtps/run", "examples_submission::smtps_run_under_tcpserver"),
    ("smtps/smtpd-smtps.socket", "examples_submission::smtps_systemd_units"),
    ("smtps/smtpd-smtps@.service", "examples_submission::smtps_systemd_units"),
    ("queue-run/queue-run.env", "examples_queue::queue_run_*"),
    ("queue-run/queue-run.service", "examples_queue::queue_run_systemd_unit_to_the_smarthost"),
    ("queue-run/runit/run", "examples_queue::queue_run_under_runit_to_the_smarthost"),
    ("queue-run/runit/log/run", "examples_queue::queue_run_under_runit_to_the_smarthost"),
    ("queue-run/s6/run", "examples_queue::queue_run_under_s6_to_the_smarthost"),
    ("queue-run/s6/log/run", "examples_queue::queue_run_under_s6_to_the_smarthost"),
    ("smtp-remote/smtproutes", "examples_queue::queue_run_*"),
    ("smtp-remote/smtp-auth", "examples_queue::queue_run_*"),
    ("dkim/signing", "examples_dkim::dkim_keys_table_and_records_as_shipped, examples_queue::queue_run_signs_with_dkim_as_the_readme_says"),
    ("dkim/make-keys.sh", "examples_dkim::dkim_keys_table_and_records_as_shipped, examples_queue::queue_run_signs_with_dkim_as_the_readme_says"),
    ("dkim/example.com.zone", "examples_dkim::zone_records_parse"),
    ("monitoring/README", "examples_units::readme_names_every_entry"),
    ("monitoring/metrics-http.socket", "metrics_examples::metrics_http_units_as_shipped"),
    ("monitoring/metrics-http@.service", "metrics_examples::metrics_http_units_as_shipped"),
    ("monitoring/prometheus.yml", "metrics_examples::promtool_checks_the_config_and_rules"),
    ("monitoring/alerts.yml", "metrics_examples::promtool_checks_the_config_and_rules, metrics_prometheus::*"),
    ("monitoring/grafana-dashboard.json", "metrics_examples::the_dashboard_is_grafana_json, metrics_prometheus::*"),
    ("lmtp-dovecot/README", "examples_units::readme_names_every_entry"),
    ("lmtp-dovecot/queue-run.env", "examples_delivery::lmtp_to_dovecot_as_shipped"),
    ("lmtp-dovecot/smtproutes", "examples_delivery::lmtp_to_dovecot_as_shipped"),
    ("lmtp-dovecot/dovecot-smtpd-rs.conf", "examples_delivery::lmtp_to_dovecot_as_shipped"),
    ("maildir/README", "examples_units::readme_names_every_entry"),
    ("maildir/queue-run.env", "examples_delivery::maildir_as_shipped"),
    ("maildir/locals", "examples_delivery::maildir_as_shipped"),
    ("maildir/maildir-map", "examples_delivery::maildir_as_shipped"),
    ("maildir/queue-run.service.d/maildir.conf", "examples_delivery::maildir_as_shipped, examples_units::systemd_analyze_verify_every_unit"),
];

fn conf_examples() -> Vec<String> {
    let top = Path::new(TOP).join("conf-examples");
    walk(&top).iter().map(|p| p.strip_prefix(&top).expect("prefix").display().to_string()).collect()
}

#[test]
fn every_file_is_run_by_a_test() {
    let mut shipped = conf_examples();
    shipped.sort();
    let mut listed: Vec<String> = EXERCISED.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(shipped, listed, "a file in conf-examples without a test in EXERCISED (tests/examples_units.rs), or the reverse");
}

#[test]
fn readme_names_every_entry() {
    let readme = std::fs::read_to_string(format!("{TOP}/conf-examples/README")).expect("conf-examples/README");
    let mut entries: Vec<String> = conf_examples().iter().map(|f| f.split('/').next().expect("entry").to_owned()).collect();
    entries.dedup();
    for e in entries.iter().filter(|e| *e != "README") {
        assert!(readme.contains(e.as_str()), "conf-examples/README does not name {e}");
    }
}

/// The environment files hold only what systemd's EnvironmentFile= and
/// sh's `.` read alike (as smtpd.env says), and sh reads every value so.
#[test]
fn env_files_mean_the_same_to_systemd_and_sh() {
    for f in conf_examples().iter().filter(|f| f.ends_with(".env")) {
        let path = format!("{TOP}/conf-examples/{f}");
        let text = std::fs::read_to_string(&path).expect("read");
        let vars = env_file(&text, f);
        assert!(!vars.is_empty(), "{f}: no variables");
        let mut c = Command::new("sh");
        c.env_clear().arg("-c").arg(format!("set -a; . {path}; set +a; env -0"));
        let o = run(&mut c, b"", Duration::from_secs(10));
        assert_ok(&o, &format!("sh . {f}"));
        let env: Vec<String> = o.stdout.split(|&b| b == 0).map(|v| String::from_utf8_lossy(v).into_owned()).collect();
        for (k, v) in vars {
            assert!(env.contains(&format!("{k}={v}")), "{f}: sh reads {k} otherwise than {v:?}");
        }
    }
}

/// systemd-analyze verify of each unit (with its socket), after the path
/// substitutions (its executables must exist), man pages from man/: it
/// must say nothing. It runs offline, without systemd as PID 1: it parses
/// the units, checks the executables and the Documentation= pages; it does
/// not read EnvironmentFile= or look up User=.
#[test]
fn systemd_analyze_verify_every_unit() {
    let s = Site::new();
    for (sec, ext) in [("man8", "8"), ("man5", "5")] {
        let d = s.root().join("man").join(sec);
        std::fs::create_dir_all(&d).expect("mkdir man");
        for m in walk(&Path::new(TOP).join("man")).iter().filter(|m| m.extension().is_some_and(|e| e == ext)) {
            std::fs::copy(m, d.join(m.file_name().expect("name"))).expect("copy man page");
        }
    }
    let units: Vec<String> = conf_examples().into_iter().filter(|f| f.ends_with(".service") || f.ends_with(".socket")).collect();
    assert!(units.len() >= 10, "{units:?}");
    let mut groups: Vec<Vec<String>> = Vec::new();
    for u in &units {
        let folder = u.rsplit_once('/').map_or("", |(d, _)| d);
        match groups.iter_mut().find(|g| g[0].rsplit_once('/').map_or("", |(d, _)| d) == folder) {
            Some(g) => g.push(u.clone()),
            None => groups.push(vec![u.clone()]),
        }
    }
    let verify = |files: &[std::path::PathBuf], what: &str| {
        let mut c = Command::new(peer("systemd-analyze", "systemd"));
        c.env_clear().env("PATH", SERVICE_PATH).env("MANPATH", s.root().join("man")).arg("verify").args(files);
        let o = run(&mut c, b"", Duration::from_secs(60));
        assert!(o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(), "systemd-analyze verify {what}: {}", o.text());
    };
    // Each folder's units together (a socket with its service), apart
    // from the other folders'.
    for g in &groups {
        let files: Vec<_> = g
            .iter()
            .map(|u| {
                let (folder, name) = u.rsplit_once('/').unwrap_or(("top", u));
                s.install(u, &format!("/srv/units/{}/{name}", folder.replace('/', "-")), None)
            })
            .collect();
        verify(&files, &g.join(" "));
    }
    // Each drop-in (a folder UNIT.d/) beside its unit, found by name among
    // the examples; systemd-analyze reads the drop-ins next to a unit file.
    let dropins: Vec<String> = conf_examples().into_iter().filter(|f| f.ends_with(".conf") && f.contains(".service.d/")).collect();
    assert!(dropins.len() >= 2, "{dropins:?}");
    for d in &dropins {
        let (dir, conf) = d.rsplit_once(".service.d/").expect("drop-in");
        let name = format!("{}.service", dir.rsplit('/').next().expect("unit name"));
        let unit = units.iter().find(|u| u.rsplit('/').next() == Some(name.as_str())).unwrap_or_else(|| panic!("{d}: no unit {name} in conf-examples"));
        let folder = unit.rsplit_once('/').map_or("", |(f, _)| f);
        let dest = format!("/srv/dropins/{}", d.replace('/', "-"));
        let mut files = vec![s.install(unit, &format!("{dest}/{name}"), None)];
        s.install(d, &format!("{dest}/{name}.d/{conf}"), None);
        // A template's socket comes along.
        for sock in units.iter().filter(|u| u.ends_with(".socket") && u.rsplit_once('/').map_or("", |(f, _)| f) == folder) {
            files.push(s.install(sock, &format!("{dest}/{}", sock.rsplit('/').next().expect("name")), None));
        }
        verify(&files, &format!("{unit} with {d}"));
    }
    // The TLS lines of smtpd-rs@.service, taken in as its comment says.
    let dir = s.p("/srv/units/systemd");
    let text = std::fs::read_to_string(dir.join("smtpd-rs@.service")).expect("unit");
    std::fs::write(dir.join("smtpd-rs@.service"), tls_variant(&text)).expect("write");
    verify(&[dir.join("smtpd-rs.socket"), dir.join("smtpd-rs@.service")], "smtpd-rs@.service with its TLS lines");
}

/// Where the examples may point: the suite's one layout (programs in
/// /usr/local/sbin and /usr/local/lib/smtpd-rs, settings in /etc/smtpd-rs,
/// the queue in /var/spool/smtpd-rs, logs, metrics, Maildirs) and the
/// system's and the peers' own files.
const LAYOUT: &[&str] = &[
    "/usr/local/sbin/", "/usr/local/sbin", "/usr/local/lib/smtpd-rs", "/etc/smtpd-rs", "/var/spool/smtpd-rs",
    "/var/log/smtpd-rs", "/var/log/queue-run", "/var/log/", "/var/lib/smtpd-rs", "/var/mail/",
    // Where the units and services are installed.
    "/etc/systemd/system", "/etc/service/", "/etc/sv/", "/etc/cron.d/",
    // Peers' and the system's files.
    "/run/dovecot/lmtp", "/etc/dovecot/", "/etc/prometheus/", "/usr/share/publicsuffix/", "/etc/resolv.conf",
    "/var/qmail/bin/", "/etc/tcp.smtp", "/bin/kill", "/usr/sbin/nologin", "/nonexistent", "/tmp",
    // setup-accounts.sh's example prefix; metrics-http's URL path.
    "/mnt/image", "/metrics",
];

/// Every absolute path in the examples is in the layout; no example names
/// another place for the programs or settings, another domain for our own,
/// or an account by number.
#[test]
fn every_example_keeps_to_one_layout() {
    let mut bad = Vec::new();
    for f in conf_examples() {
        let text = std::fs::read_to_string(format!("{TOP}/conf-examples/{f}")).expect("read");
        for (n, line) in text.lines().enumerate() {
            let at = |what: &str| format!("{f}:{}: {what}: {}", n + 1, line.trim());
            for (i, _) in line.match_indices('/') {
                let before = if i == 0 { b' ' } else { line.as_bytes()[i - 1] };
                let after = line.as_bytes().get(i + 1).copied().unwrap_or(b' ');
                if !b" \t\"'=:(,<".contains(&before) || !after.is_ascii_lowercase() {
                    continue;
                }
                let path = &line[i..];
                if !LAYOUT.iter().any(|p| path.starts_with(p)) {
                    bad.push(at("a path outside the layout"));
                }
            }
            for word in ["example.org", "/usr/local/bin", "/etc/smtpd/", "smtpd-supervise/env"] {
                if line.contains(word) {
                    bad.push(at(word));
                }
            }
            let numeric = |key: &str| line.split(key).skip(1).any(|r| r.trim_start_matches(['"', '\'']).starts_with(|c: char| c.is_ascii_digit()));
            if ["User=", "Group=", "TLS_UID=", "TLS_GID=", " -u ", " -g ", "--reuid=", "--regid="].iter().any(|k| numeric(k)) {
                bad.push(at("an account by number"));
            }
        }
    }
    assert!(bad.is_empty(), "conf-examples leave the layout of conf-examples/README:\n{}", bad.join("\n"));
}
