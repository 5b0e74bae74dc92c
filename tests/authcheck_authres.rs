//! Our Authentication-Results fields parsed back by a real reader: the
//! Python `authres` package (Debian python3-authres, run by
//! /usr/bin/python3), for a table of cases: plain results, quoted values
//! and reasons with quotes and backslashes, comments, folding of long
//! lines, and `none`.

use smtpd::authcheck::authres::{self, MethodResult};
use std::io::Write;
use std::process::{Command, Stdio};

const PY: &str = "/usr/bin/python3";

/// Reads NUL-separated header fields on stdin; prints for each
/// `H <hex authserv-id>`, one `M method result <hex reason|-> <ptype.prop=hex>...`
/// line per result, then `E`. authres keeps quoted-pairs in reasons and
/// values as written; they are undone here, as a consumer would.
const READER: &str = r#"
import sys, re, authres
def h(s):
    return s.encode().hex() if s else "-"
def unq(s):
    return re.sub(r'\\(.)', r'\1', s) if s is not None else None
ctx = authres.all_features()
for field in sys.stdin.read().split("\0"):
    if not field:
        continue
    a = ctx.parse(field.rstrip("\n"))
    print("H", h(a.authserv_id))
    for r in a.results:
        props = ["%s.%s=%s" % (p.type, p.name, h(unq(p.value))) for p in r.properties]
        print("M", r.method, r.result, h(unq(r.reason)), *props)
    print("E")
"#;

struct Case {
    id: &'static str,
    results: Vec<MethodResult>,
}

fn cases() -> Vec<Case> {
    vec![
        Case { id: "mx.example.org", results: vec![] },
        Case {
            id: "mx.example.org",
            results: vec![
                MethodResult::new("spf", "pass").prop("smtp", "mailfrom", "user@example.com"),
                MethodResult::new("dkim", "pass")
                    .prop("header", "d", "example.com")
                    .prop("header", "s", "sel2024")
                    .prop("header", "b", "AbC/+dE="),
                MethodResult::new("dmarc", "pass").prop("header", "from", "example.com"),
            ],
        },
        Case {
            id: "in.example.net",
            results: vec![
                MethodResult::new("spf", "fail")
                    .reason("example.com: -all matched")
                    .prop("smtp", "mailfrom", "bounce+tag=x@example.com"),
                MethodResult::new("spf", "none").prop("smtp", "helo", "[192.0.2.1]"),
                MethodResult::new("dkim", "fail")
                    .reason("signature \"b\" did not verify \\ at all")
                    .prop("header", "d", "example.com")
                    .prop("header", "s", "s"),
                MethodResult::new("dkim", "temperror").reason("key lookup: timeout").prop("header", "d", "other.example").prop("header", "s", "k1"),
                MethodResult::new("dmarc", "fail")
                    .comment("p=reject dis=quarantine")
                    .reason("no aligned SPF or DKIM pass; p=reject, not sampled by pct=50")
                    .prop("header", "from", "example.com"),
            ],
        },
        Case {
            id: "mx.example.org",
            results: vec![MethodResult::new("spf", "pass").prop("smtp", "mailfrom", "\"odd local\"@example.com")],
        },
        Case { id: "mx.example.org", results: vec![MethodResult::new("spf", "pass").prop("smtp", "mailfrom", "@example.com")] },
        Case {
            id: "mx.example.org",
            results: vec![MethodResult::new("dmarc", "permerror")
                .reason("_dmarc.example.com: more than one DMARC record")
                .prop("header", "from", "very-long-subdomain-name.of-a-rather-long.example.com")],
        },
        // Not here: an authserv-id that needs quoting (RFC 8601 allows a
        // quoted-string; authres 1.2 reads only a token: "Expected
        // authserv-id"). Ours is a host name, always a token; the writer's
        // quoting of others is in the unit tests.
        Case { id: "MX.Example.ORG", results: vec![MethodResult::new("spf", "neutral").prop("smtp", "helo", "helo.example")] },
    ]
}

/// The reader's view of one field.
#[derive(Debug, PartialEq)]
struct Parsed {
    id: String,
    results: Vec<(String, String, Option<String>, Vec<String>)>,
}

fn unhex(s: &str) -> Option<String> {
    if s == "-" {
        return None;
    }
    let b: Vec<u8> = (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect();
    Some(String::from_utf8(b).unwrap())
}

fn parse_back(fields: &[String]) -> Vec<Parsed> {
    let ok = Command::new(PY).args(["-c", "import authres"]).status().is_ok_and(|s| s.success());
    assert!(ok, "{PY} without authres: install the Debian package python3-authres");
    let mut child = Command::new(PY)
        .args(["-c", READER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(fields.join("\0").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "authres could not parse:\n{}\n{}", fields.join("\n"), String::from_utf8_lossy(&out.stderr));
    let mut all = Vec::new();
    let mut cur: Option<Parsed> = None;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let w: Vec<&str> = line.split(' ').collect();
        match w[0] {
            "H" => cur = Some(Parsed { id: unhex(w[1]).unwrap_or_default(), results: vec![] }),
            "M" => cur.as_mut().unwrap().results.push((
                w[1].to_string(),
                w[2].to_string(),
                unhex(w[3]),
                w[4..]
                    .iter()
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap();
                        format!("{k}={}", unhex(v).unwrap_or_default())
                    })
                    .collect(),
            )),
            "E" => all.push(cur.take().unwrap()),
            x => panic!("reader printed {x:?}"),
        }
    }
    all
}

#[test]
fn python_authres_reads_what_we_write() {
    let cases = cases();
    let fields: Vec<String> = cases.iter().map(|c| authres::write(c.id, &c.results)).collect();
    for f in &fields {
        assert!(f.lines().all(|l| l.len() <= 998), "{f}");
        assert!(authres::is_ours(f.as_bytes(), cases[0].id) || !f.contains(cases[0].id));
    }
    let parsed = parse_back(&fields);
    assert_eq!(parsed.len(), cases.len());
    for ((c, p), f) in cases.iter().zip(&parsed).zip(&fields) {
        let want = Parsed {
            // authres lower-cases the authserv-id (a host name).
            id: c.id.to_ascii_lowercase(),
            results: c
                .results
                .iter()
                .map(|r| {
                    (
                        r.method.to_string(),
                        r.result.to_string(),
                        r.reason.clone(),
                        r.props.iter().map(|p| format!("{}.{}={}", p.ptype, p.property, p.value)).collect(),
                    )
                })
                .collect(),
        };
        assert_eq!(*p, want, "field:\n{f}");
        // And our own reader finds the authserv-id in it.
        assert!(authres::is_ours(f.as_bytes(), c.id), "{f}");
    }
    println!("python3-authres parsed {} fields back: {} passed, 0 failed", fields.len(), fields.len());
}
