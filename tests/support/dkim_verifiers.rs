//! The independent DKIM verifiers of the tests (tests/dkim_*.rs): dkimpy
//! (Debian python3-dkim, keys looked up through its dnsfunc) and OpenDKIM's
//! opendkim-testmsg (opendkim-tools, run in private user, mount and network
//! namespaces whose resolver is a fake DNS server on 127.0.0.1:53 serving
//! the test's records), and those records, as our printer writes them.
//! Needs support/peers.rs as `crate::support` and support/dkim.rs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use smtpd::dkim::key::SigningKey;
use smtpd::dkim::verify::LookupError;

use crate::support::{peer, python3, run};

pub const LIMIT: Duration = Duration::from_secs(900);

pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support").join(name)
}

/// Key records as (name, TXT character-strings).
pub struct Records(pub Vec<(String, Vec<String>)>);

impl Records {
    /// The records our printer writes for `keys` (selector, key) of `domain`.
    pub fn of(domain: &str, keys: &[(&str, &SigningKey)]) -> Records {
        Records(
            keys.iter()
                .map(|(sel, k)| (format!("{sel}._domainkey.{domain}"), crate::dkim_support::zone_strings(&k.zone_entry(sel, domain))))
                .collect(),
        )
    }

    /// The records of zone-file text as `queue-run --dkim-record` prints it
    /// (`name.<TAB>IN<TAB>TXT<TAB>( "..." "..." )  ; comment`, an entry
    /// continued on lines that start with a TAB).
    pub fn from_zone(text: &str) -> Records {
        let mut entries: Vec<String> = Vec::new();
        for line in text.lines() {
            match (line.starts_with('\t'), entries.last_mut()) {
                (true, Some(e)) => {
                    e.push('\n');
                    e.push_str(line);
                }
                _ if line.trim().is_empty() => {}
                _ => entries.push(line.to_string()),
            }
        }
        Records(
            entries
                .iter()
                .map(|e| {
                    let name = e.split_whitespace().next().unwrap_or_default().trim_end_matches('.').to_string();
                    (name, crate::dkim_support::zone_strings(e))
                })
                .collect(),
        )
    }

    /// `name<TAB>record` lines for dkim_peer.py.
    pub fn joined(&self) -> String {
        self.0.iter().map(|(n, s)| format!("{n}\t{}\n", s.concat())).collect()
    }

    /// `name<TAB>string<TAB>string...` lines for dkim_opendkim.py.
    pub fn strings(&self) -> String {
        self.0.iter().map(|(n, s)| format!("{n}\t{}\n", s.join("\t"))).collect()
    }

    pub fn lookup(&self) -> impl FnMut(&str) -> Result<Vec<u8>, LookupError> + '_ {
        |name| {
            self.0.iter().find(|(n, _)| n == name).map(|(_, s)| s.concat().into_bytes()).ok_or(LookupError::NotFound)
        }
    }
}

/// Runs dkim_peer.py over `jobs` (one line each, see the script); its
/// answer lines (`pass`, `fail ...`, `signed BH`).
pub fn dkimpy(dir: &Path, records: &Records, jobs: &str) -> Vec<String> {
    peer("python3", "python3");
    let check = Command::new(python3()).args(["-c", "import dkim, nacl"]).status().expect("python3");
    assert!(check.success(), "dkimpy is missing: install the Debian package python3-dkim (and python3-nacl)");
    let rec = dir.join("records.dkimpy");
    std::fs::write(&rec, records.joined()).unwrap();
    let out = run(Command::new(python3()).arg(script("dkim_peer.py")).arg(&rec), jobs.as_bytes(), LIMIT);
    assert!(out.status.success(), "dkim_peer.py: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), jobs.lines().count(), "dkim_peer.py stderr: {}", String::from_utf8_lossy(&out.stderr));
    lines
}

/// Runs dkim_opendkim.py (opendkim-testmsg) over `jobs` under `unshare`,
/// with `records` in its fake DNS; its answer lines (`pass`,
/// `fail CODE STDERR`, `signed`).
pub fn opendkim(dir: &Path, records: &Records, jobs: &str) -> Vec<String> {
    let testmsg = peer("opendkim-testmsg", "opendkim-tools");
    let unshare = peer("unshare", "util-linux");
    let rec = dir.join("records.opendkim");
    std::fs::write(&rec, records.strings()).unwrap();
    let mut cmd = Command::new(&unshare);
    cmd.args(["--user", "--map-root-user", "--mount", "--net"])
        .arg(python3())
        .arg(script("dkim_opendkim.py"))
        .arg(dir)
        .arg(&rec)
        .env("PATH", format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", testmsg.parent().unwrap().display()));
    let out = run(&mut cmd, jobs.as_bytes(), LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "dkim_opendkim.py under unshare (it needs user namespaces: sysctl kernel.unprivileged_userns_clone=1 or root): {err}"
    );
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), jobs.lines().count(), "dkim_opendkim.py stderr: {err}");
    lines
}
