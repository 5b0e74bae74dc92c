//! The repository stands alone: no tracked file names a path outside the
//! checkout. Absolute paths are allowed only under the system's own folders
//! (/usr, /etc, /var, /run, /tmp, ...), where a program or an example
//! rightly points; a developer's folder (/home/..., /root/...,
//! or wherever this checkout happens to live) fails the test, naming the
//! file and line.

use std::path::Path;
use std::process::Command;

/// First components of absolute paths that name the system, not a machine
/// of the developers: the FHS top level, plus a few names the docs and tests
/// use on purpose.
const ALLOWED: &[&str] = &[
    "bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "media", "mnt", "opt", "proc", "run", "sbin", "srv", "sys",
    "tmp", "usr", "var",
    // daemontools' and runit's service folders (conf-examples).
    "service",
    // A path that must not exist, in error-path tests.
    "nonexistent",
    // Queue sub-folders after a variable in roff (`.IB QUEUE_DIR /new/`).
    "new", "bad", "state",
    // Dummy values in unit tests (`/x/qr`), and tcprules' `VAR=/v/` quoting.
    "x", "v",
    // URL paths of Prometheus's HTTP API (`/api/v1/query`, `/-/ready`) in the metrics tests.
    "api", "-",
];

/// Octets that may stand before an absolute path in text or code.
fn boundary(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'"' | b'\'' | b'=' | b'(' | b':' | b',' | b'<' | b'[' | b'`' | b'{')
}

/// The absolute paths in `line` that leave the allowed folders. A path whose
/// first component is a top-level name of the checkout (`/tests/...` after
/// `CARGO_MANIFEST_DIR`, `/man/...`) is a suffix of the checkout's path.
fn outside_paths(line: &str, top: &[String]) -> Vec<String> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    for (i, _) in line.match_indices('/') {
        if i > 0 && !boundary(b[i - 1]) {
            continue;
        }
        let rest = &line[i + 1..];
        // Base64 (keys, test vectors) is not a path: a long unbroken run of
        // its alphabet.
        let token = rest.split(|c: char| !(c.is_ascii_alphanumeric() || "+/=".contains(c))).next().unwrap_or("");
        if token.len() >= 40 {
            continue;
        }
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c))).unwrap_or(rest.len());
        let first = &rest[..end];
        // Only paths of at least two components: `/first/...`.
        if first.is_empty() || !rest[end..].starts_with('/') || !rest[end + 1..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
            continue;
        }
        if !ALLOWED.contains(&first) && !top.iter().any(|t| t == first) {
            out.push(format!("/{first}/..."));
        }
    }
    out
}

fn tracked_files(root: &Path) -> Vec<String> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .expect("git ls-files (Debian package git)");
    assert!(out.status.success(), "git ls-files: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

#[test]
fn no_tracked_file_names_a_path_outside_the_checkout() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let here = root.canonicalize().expect("checkout path");
    // Where this checkout lives, and its parent, unless that is a system folder.
    let mut own = vec![format!("{}/", here.display())];
    if let Some(p) = here.parent().filter(|p| p.components().count() > 2) {
        own.push(format!("{}/", p.display()));
    }
    let files = tracked_files(root);
    assert!(files.len() > 50, "git ls-files found only {} files", files.len());
    let top: Vec<String> = files.iter().filter_map(|f| f.split('/').next()).map(str::to_owned).collect();
    let mut bad = Vec::new();
    for f in &files {
        // Third-party test data (real messages, fuzz inputs) is data, not paths we use.
        if f.starts_with("tests/data/") || f.starts_with("fuzz/corpus/") {
            continue;
        }
        let Ok(text) = std::fs::read(root.join(f)) else { continue };
        let text = String::from_utf8_lossy(&text);
        for (n, line) in text.lines().enumerate() {
            for o in &own {
                if line.contains(o.as_str()) {
                    bad.push(format!("{f}:{}: names this checkout's own place {o}", n + 1));
                }
            }
            for p in outside_paths(line, &top) {
                bad.push(format!("{f}:{}: {p}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(bad.is_empty(), "tracked files name paths outside the checkout:\n{}", bad.join("\n"));
}

#[test]
fn the_check_can_fail() {
    let top = vec!["tests".to_string(), "man".to_string()];
    let outside_paths = |l: &str| outside_paths(l, &top);
    // Built at run time, so that this file does not name such paths itself.
    let p = |first: &str, rest: &str| format!("/{first}/{rest}");
    let line = format!("let dir = Path::new(\"{}\");", p("work", "shared/testdata/messages"));
    assert_eq!(outside_paths(&line), vec![format!("/{}/...", "work")]);
    let line = format!("see {} and ({})", p("home", "alice/notes"), p("root", "x"));
    assert_eq!(outside_paths(&line), vec!["/home/...", "/root/..."]);
    assert!(outside_paths("QUEUE_DIR=/var/spool/smtpd-rs/queue /usr/bin/swaks /etc/smtpd-rs/rcpthosts").is_empty());
    assert!(outside_paths("a/b/c x/y, 1/2 and https://example.org/a/b").is_empty());
    assert!(outside_paths("    /R/piWZoS0VwhQGXZQziirXaJfRw8kKMEWMs9MtSr5VIcvuzNLee0CQFog4LlbMm\\n\\").is_empty());
    assert!(outside_paths("concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/tests/support/x.py\")").is_empty());
}
