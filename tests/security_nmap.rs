//! Security check with a real tool (issue 7): nmap's smtp-open-relay and
//! smtp-commands scripts against the default configuration of `make run`
//! (conf-examples/run-local.sh: smtpd-supervise -W -m 100 -x with
//! conf-examples/local.rules compiled by tcprules, RCPTHOSTS
//! conf-examples/rcpthosts, SMTPD_HOSTNAME localhost, no RELAYCLIENT).
//! Passes when nmap finds no open relay and nothing was queued for a
//! domain outside rcpthosts. Needs nmap and tcprules (Debian packages nmap,
//! ucspi-tcp).
#[path = "support/peers.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

const SUPERVISE: &str = env!("CARGO_BIN_EXE_smtpd-supervise");

#[test]
fn nmap_finds_no_open_relay_in_the_default_configuration() {
    let nmap = peer("nmap", "nmap");
    let tcprules = peer("tcprules", "ucspi-tcp");
    let s = Scratch::new();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf-examples");
    std::fs::copy(conf.join("rcpthosts"), &s.rcpthosts).unwrap();
    let cdb = s.dir.path().join("local.rules.cdb");
    let rules = std::fs::read(conf.join("local.rules")).unwrap();
    let mut c = Command::new(tcprules);
    c.arg(&cdb).arg(s.dir.path().join("local.rules.tmp"));
    let o = run(&mut c, &rules, Duration::from_secs(10));
    assert!(o.status.success(), "tcprules: {}", o.text());

    let mut c = Command::new(SUPERVISE);
    s.env(&mut c);
    c.env("SMTPD_HOSTNAME", "localhost").env("DATABYTES", "10485760");
    c.args(["-1", "-W", "-m", "100", "-x"]).arg(&cdb).args(["127.0.0.1", "0", SMTPD]);
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut sup = Group::spawn(&mut c);
    let log = collect(sup.0.stderr.take().unwrap());
    let mut line = String::new();
    BufReader::new(sup.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().to_string();
    assert!(port.parse::<u16>().is_ok(), "no port: {}", String::from_utf8_lossy(&take(&log)));

    let mut c = Command::new(nmap);
    c.args(["-n", "-Pn", "--script", "+smtp-open-relay,+smtp-commands", "-p", &port, "127.0.0.1"]);
    let o = run(&mut c, b"", Duration::from_secs(180));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    eprintln!("{out}");
    assert!(o.status.success(), "nmap: {}", o.text());
    assert!(out.contains(&format!("{port}/tcp open")), "nmap did not reach the port:\n{out}");
    assert!(out.contains("smtp-commands:"), "smtp-commands did not run:\n{out}");
    assert!(out.contains("smtp-open-relay:"), "smtp-open-relay did not run:\n{out}");
    assert!(!out.contains("Server is an open relay"), "open relay:\n{out}");
    assert!(out.contains("Server doesn't seem to be an open relay"), "no verdict from smtp-open-relay:\n{out}");
    // And the queue agrees: nothing for a domain outside rcpthosts.
    for f in s.messages() {
        for r in &f.to {
            let r = String::from_utf8_lossy(r).to_ascii_lowercase();
            let dom = r.rsplit('@').next().unwrap_or("");
            assert!(dom == "localhost" || dom == "example.com", "queued for {r}");
        }
    }
    let text = String::from_utf8_lossy(&take(&log)).into_owned();
    eprintln!("{} sessions logged, {} messages queued", text.matches(" from 127.0.0.1").count(), s.new_files().len());
}
