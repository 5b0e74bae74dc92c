//! The RFC 7208 test suite (tests/data/spf/rfc7208-tests.yml, BSD licence,
//! from pyspf's source distribution) run against authcheck::spf: each
//! scenario's zone data is served from memory, every case must give its
//! result (any one of a listed set) and, where the suite names one, its
//! explanation ("DEFAULT" standing for the caller's default, as in pyspf's
//! driver).
//!
//! YAML is read by Debian's python3-yaml through the small converter below
//! (SUITE_READER), which prints a line format: the least costly honest way
//! here, since it needs no YAML crate at build time and python3 is a test
//! peer already.

use smtpd::authcheck::spf::{self, Client};
use smtpd::dns::{Error, Lookup};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;

const PY: &str = "/usr/bin/python3";

const SUITE_READER: &str = r#"
# Reads the RFC 7208 test suite (YAML) and prints it in a line format that
# tests/authcheck_spf.rs reads without a YAML crate (PyYAML is Debian's
# python3-yaml). Every free-form field is hex-encoded (UTF-8).
#
#   S                                          a new scenario
#   R name type value                          one record, in the order pyspf's
#                                              test driver serves them
#   T id helo host mailfrom results explanation   one case ("-": no explanation)
#
# Zone data is translated as pyspf's own driver (test/testspf.py, getrdata)
# does: type SPF records are served as TXT too unless the name has a TXT
# record; "NONE" values are dropped; a bare TIMEOUT entry stays in place.
import sys
import yaml


def h(s):
    return (s if isinstance(s, bytes) else str(s).encode("utf-8")).hex() or "-"


def rdata(entries):
    generated = []
    gen = True
    for m in entries:
        if not isinstance(m, dict):
            yield ("TIMEOUT", "")
            continue
        for t, v in m.items():
            if t == "TXT":
                gen = False
            elif t == "SPF" and gen:
                generated.append(("TXT", v))
            if v == "NONE":
                continue
            yield (t, v)
    if gen:
        for g in generated:
            yield g


def value(t, v):
    if v == "TIMEOUT":
        return "TIMEOUT"
    if t in ("TXT", "SPF"):
        strings = v if isinstance(v, list) else [v]
        return h("".join(strings))
    if t == "MX":
        return "%d:%s" % (v[0], h(v[1]))
    return h(v)


for doc in yaml.safe_load_all(open(sys.argv[1], "rb")):
    print("S")
    for name, entries in doc["zonedata"].items():
        for t, v in rdata(entries):
            print("R\t%s\t%s\t%s" % (h(name.lower()), t, value(t, v) if t != "TIMEOUT" else "-"))
    for tid, case in doc["tests"].items():
        res = case["result"]
        res = ",".join(res) if isinstance(res, list) else res
        exp = case.get("explanation")
        print("T\t%s\t%s\t%s\t%s\t%s\t%s" % (
            h(tid), h(case["helo"]), case["host"], h(case["mailfrom"]), res,
            h(exp) if exp is not None else "-"))
"#;

/// One scenario's zone, with the semantics of pyspf's test driver
/// (test/testspf.py, DNSLookup): a name absent is NXDOMAIN; a bare TIMEOUT
/// entry times out a query unless a record of the asked type came before it;
/// a TIMEOUT value times out queries of its type; CNAMEs are followed (a
/// loop is a temporary error, as a resolver's SERVFAIL); labels over 63
/// characters are a temporary error, empty ones are dropped (as pydns did).
#[derive(Default)]
struct Zone {
    names: HashMap<String, Vec<(String, String)>>,
}

impl Zone {
    fn query(&self, name: &str, qtype: &str, depth: u32) -> Result<Vec<String>, Error> {
        let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
        if labels.iter().any(|l| l.len() > 63) {
            return Err(Error::Temp("DNS label too long".into()));
        }
        let name = labels.join(".").to_ascii_lowercase();
        let Some(entries) = self.names.get(&name) else {
            if name.starts_with("error.") {
                return Err(Error::Temp("DNS timeout".into()));
            }
            return Err(Error::NoName);
        };
        let mut out = Vec::new();
        let mut timeout = true;
        for (t, v) in entries {
            if t == "TIMEOUT" {
                if timeout {
                    return Err(Error::Temp("DNS timeout".into()));
                }
                return Ok(out);
            }
            if t == "CNAME" && qtype != "CNAME" {
                if depth > 8 {
                    return Err(Error::Temp("CNAME loop".into()));
                }
                return self.query(&text(v), qtype, depth + 1);
            }
            if t == qtype {
                timeout = false;
                if v == "TIMEOUT" {
                    return Err(Error::Temp("DNS timeout".into()));
                }
                out.push(v.clone());
            }
        }
        Ok(out)
    }
}

impl Lookup for Zone {
    fn txt(&self, name: &str) -> Result<Vec<Vec<u8>>, Error> {
        Ok(self.query(name, "TXT", 0)?.iter().map(|v| unhex(v)).collect())
    }
    fn a(&self, name: &str) -> Result<Vec<Ipv4Addr>, Error> {
        Ok(self.query(name, "A", 0)?.iter().filter_map(|v| text(v).parse().ok()).collect())
    }
    fn aaaa(&self, name: &str) -> Result<Vec<Ipv6Addr>, Error> {
        Ok(self.query(name, "AAAA", 0)?.iter().filter_map(|v| text(v).parse().ok()).collect())
    }
    fn mx(&self, name: &str) -> Result<Vec<(u16, String)>, Error> {
        let v = self.query(name, "MX", 0)?;
        Ok(v.iter()
            .filter_map(|m| m.split_once(':').map(|(p, h)| (p.parse().unwrap_or(0), text(h))))
            .collect())
    }
    fn ptr(&self, name: &str) -> Result<Vec<String>, Error> {
        Ok(self.query(name, "PTR", 0)?.iter().map(|v| text(v)).collect())
    }
}

fn unhex(s: &str) -> Vec<u8> {
    if s == "-" {
        return Vec::new();
    }
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

fn text(s: &str) -> String {
    String::from_utf8(unhex(s)).expect("utf-8")
}

struct Case {
    id: String,
    helo: String,
    host: IpAddr,
    mailfrom: String,
    results: Vec<String>,
    explanation: Option<String>,
}

fn load() -> Vec<(Zone, Vec<Case>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ok = Command::new(PY).args(["-c", "import yaml"]).status().is_ok_and(|s| s.success());
    assert!(ok, "{PY} without yaml: install the Debian package python3-yaml");
    let out = Command::new(PY)
        .args(["-c", SUITE_READER])
        .arg(dir.join("tests/data/spf/rfc7208-tests.yml"))
        .output()
        .expect("run python3");
    assert!(out.status.success(), "SUITE_READER: {}", String::from_utf8_lossy(&out.stderr));
    let mut scenarios: Vec<(Zone, Vec<Case>)> = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f[0] {
            "S" => scenarios.push((Zone::default(), Vec::new())),
            "R" => {
                let (zone, _) = scenarios.last_mut().unwrap();
                zone.names.entry(text(f[1])).or_default().push((f[2].to_string(), f[3].to_string()));
            }
            "T" => {
                let (_, cases) = scenarios.last_mut().unwrap();
                cases.push(Case {
                    id: text(f[1]),
                    helo: text(f[2]),
                    host: f[3].parse().unwrap_or_else(|e| panic!("{}: {e}", f[3])),
                    mailfrom: text(f[4]),
                    results: f[5].split(',').map(str::to_string).collect(),
                    explanation: (f[6] != "-").then(|| text(f[6])),
                });
            }
            x => panic!("SUITE_READER printed {x:?}"),
        }
    }
    scenarios
}

#[test]
fn rfc7208_test_suite() {
    let scenarios = load();
    let (mut passed, mut failed) = (0, Vec::new());
    for (zone, cases) in &scenarios {
        for c in cases {
            let client = Client { ip: c.host, helo: &c.helo, receiver: "receiver.example.net", now: 0 };
            let o = spf::check_mail_from(zone, &client, &c.mailfrom);
            let result_ok = c.results.iter().any(|r| r == o.result.as_str());
            let got_exp = o.explanation.clone().unwrap_or_else(|| "DEFAULT".into());
            let exp_ok = c.explanation.as_ref().is_none_or(|e| *e == got_exp);
            if result_ok && exp_ok {
                passed += 1;
            } else {
                failed.push(format!(
                    "{}: want {:?} {:?}, got {} {:?} ({})",
                    c.id, c.results, c.explanation, o.result, o.explanation, o.reason
                ));
            }
        }
    }
    println!("RFC 7208 test suite: {passed} passed, {} failed", failed.len());
    for f in &failed {
        println!("  {f}");
    }
    assert!(failed.is_empty(), "{} of {} cases failed", failed.len(), passed + failed.len());
    assert_eq!(passed, 203, "the suite has 203 cases");
}
