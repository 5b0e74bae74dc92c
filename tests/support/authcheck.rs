//! Helpers of the auth-check tests (tests/authcheck_*.rs): the binary run
//! the qmail-smtpd way (message on fd 0, envelope on fd 1, notqmail's fd 6)
//! and in session mode, a zone for the fake DNS server, and the
//! Authentication-Results fields of a message read back by the Python
//! `authres` package (Debian python3-authres).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use smtpd::netstring;

pub const AUTH_CHECK: &str = env!("CARGO_BIN_EXE_auth-check");
pub const QUEUE_INJECT: &str = env!("CARGO_BIN_EXE_queue-inject");
pub const SMTPD: &str = env!("CARGO_BIN_EXE_smtpd-rs");
/// Our authserv-id in every test.
pub const ID: &str = "mx.test.example";

/// The vendored Public Suffix List (tests/data/psl, MPL 2.0).
pub fn psl() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/psl/public_suffix_list.dat")
}

/// auth-check with a clean environment: the queue `q`, DNS at `dns`, the
/// vendored PSL, queue-inject next, plus `vars`.
pub fn command(q: &Path, dns: &str, vars: &[(&str, &str)]) -> Command {
    let mut c = Command::new(AUTH_CHECK);
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("QUEUE_DIR", q)
        .env("DNS_SERVER", dns)
        .env("DNS_TIMEOUT", "2")
        .env("PUBLIC_SUFFIX_LIST", psl())
        .env("SMTPD_HOSTNAME", ID)
        .env("AUTHCHECK_QUEUE", QUEUE_INJECT);
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

/// What one per-message run gave.
#[derive(Debug)]
pub struct PerMessage {
    pub code: i32,
    /// What it wrote on fd 6.
    pub fd6: String,
    pub stderr: String,
}

/// Run `cmd` as qmail-smtpd runs qmail-queue: message on fd 0, then the
/// envelope on fd 1, an error pipe on fd 6; killed after 60 s.
pub fn per_message(mut cmd: Command, msg: &[u8], envelope: &[u8]) -> PerMessage {
    let pipe = || {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        (std::fs::File::from(r), std::fs::File::from(w))
    };
    let (mr, mut mw) = pipe();
    let (er, mut ew) = pipe();
    let (e6r, e6w) = pipe();
    use std::os::fd::AsRawFd;
    smtpd::sys::child_fd(&mut cmd, e6w.as_raw_fd(), 6);
    cmd.stdin(Stdio::from(mr)).stdout(Stdio::from(er)).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn auth-check");
    drop(cmd);
    drop(e6w);
    let msg = msg.to_vec();
    let envelope = envelope.to_vec();
    let w = std::thread::spawn(move || {
        let _ = mw.write_all(&msg);
        drop(mw);
        let _ = ew.write_all(&envelope);
    });
    let mut err = child.stderr.take().expect("stderr");
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut fd6 = String::new();
    let mut e6r = e6r;
    let _ = e6r.read_to_string(&mut fd6);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("auth-check still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = w.join();
    PerMessage { code: status.code().unwrap_or(-1), fd6, stderr: e.join().unwrap_or_default() }
}

pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    netstring::encode(&[&[kind][..], payload].concat())
}

/// The frames of one message: I (if any), E, A (if any), D pieces, `.`.
pub fn message_frames(id: Option<&str>, env: &[u8], attrs: Option<&str>, msg: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    if let Some(i) = id {
        v.extend(frame(b'I', i.as_bytes()));
    }
    v.extend(frame(b'E', env));
    if let Some(a) = attrs {
        v.extend(frame(b'A', a.as_bytes()));
    }
    for c in msg.chunks(65536) {
        v.extend(frame(b'D', c));
    }
    v.extend(frame(b'.', b""));
    v
}

/// `auth-check -s`: `input(pid)` is written on fd 0 (it may use the pid to
/// propose ids); returns the answers, the exit code and stderr.
pub fn session(mut cmd: Command, input: impl FnOnce(u32) -> Vec<u8>) -> (Vec<String>, i32, String) {
    cmd.arg("-s").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn auth-check -s");
    let bytes = input(child.id());
    let mut stdin = child.stdin.take().expect("stdin");
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(&bytes);
    });
    let mut err = child.stderr.take().expect("stderr");
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut out = Vec::new();
    let _ = child.stdout.take().expect("stdout").read_to_end(&mut out);
    let _ = w.join();
    let st = child.wait().expect("wait");
    let mut answers = Vec::new();
    let mut rest: &[u8] = &out;
    while !rest.is_empty() {
        let (r, n) = netstring::parse(rest, 1 << 20).expect("answer netstring").expect("whole answer");
        answers.push(String::from_utf8_lossy(&rest[r]).into_owned());
        rest = &rest[n..];
    }
    (answers, st.code().unwrap_or(-1), e.join().unwrap_or_default())
}

/// An empty queue folder in a scratch folder.
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let q = d.path().join("q");
    std::fs::create_dir(&q).expect("mkdir q");
    (d, q)
}

/// One queued message: its queue file's attribute lines and its message.
pub struct Queued {
    pub id: String,
    pub attrs: Vec<(String, String)>,
    pub message: Vec<u8>,
}

impl Queued {
    pub fn attr(&self, k: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
    /// The message's header section (LF form).
    pub fn header(&self) -> String {
        let m = String::from_utf8_lossy(&self.message).into_owned();
        m.split("\n\n").next().unwrap_or("").to_string()
    }
    /// The Authentication-Results fields of the header, unfolded lines kept.
    pub fn auth_results(&self) -> Vec<String> {
        fields(&self.header(), "authentication-results")
    }
}

/// Fields named `name` (any case) of a header section, folding kept.
pub fn fields(header: &str, name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur: Option<String> = None;
    for line in header.split_inclusive('\n') {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(c) = &mut cur {
                c.push_str(line);
            }
            continue;
        }
        if let Some(c) = cur.take() {
            out.push(c);
        }
        let n = line.split(':').next().unwrap_or("").trim();
        if n.eq_ignore_ascii_case(name) {
            cur = Some(line.to_string());
        }
    }
    out.extend(cur);
    out
}

/// Every message in `q/new`, read through the library's queue file parser.
pub fn queued(q: &Path) -> Vec<Queued> {
    let mut v = Vec::new();
    let Ok(dir) = std::fs::read_dir(q.join("new")) else { return v };
    for e in dir.flatten() {
        let bytes = std::fs::read(e.path()).expect("read queue file");
        let (h, off) = smtpd::queue::parse_header(&bytes).expect("queue file header");
        let attrs = h.attrs.0.iter().map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned())).collect();
        v.push(Queued { id: h.id.clone(), attrs, message: bytes[off..].to_vec() });
    }
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

/// One method result as python3-authres read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub method: String,
    pub result: String,
    pub reason: Option<String>,
    /// `ptype.property=value`.
    pub props: Vec<String>,
}

/// Reads fields separated by NUL on stdin; per field `H <hex id>`, one `M
/// method result <hex reason|-> ptype.prop=<hex>...` line per result, `E`.
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

/// Parse each field with python3-authres: (authserv-id, results) each.
pub fn authres_parse(fields: &[String]) -> Vec<(String, Vec<Parsed>)> {
    let py = Path::new("/usr/bin/python3");
    assert!(py.exists(), "/usr/bin/python3 (Debian package python3) is needed");
    let ok = Command::new(py).args(["-c", "import authres"]).status().expect("python3");
    assert!(ok.success(), "python3-authres is missing: install the Debian package python3-authres");
    let mut child = Command::new(py)
        .args(["-c", READER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let input = fields.join("\0");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "authres could not parse {fields:?}: {}", String::from_utf8_lossy(&out.stderr));
    let unhex = |s: &str| -> Option<String> {
        if s == "-" {
            return None;
        }
        let b: Vec<u8> = (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect();
        Some(String::from_utf8(b).unwrap())
    };
    let mut v: Vec<(String, Vec<Parsed>)> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let w: Vec<&str> = line.split(' ').collect();
        match w[0] {
            "H" => v.push((unhex(w[1]).unwrap_or_default(), Vec::new())),
            "M" => {
                let props = w[4..]
                    .iter()
                    .map(|p| {
                        let (k, x) = p.split_once('=').unwrap();
                        format!("{k}={}", unhex(x).unwrap_or_default())
                    })
                    .collect();
                v.last_mut().unwrap().1.push(Parsed { method: w[1].into(), result: w[2].into(), reason: unhex(w[3]), props });
            }
            _ => {}
        }
    }
    assert_eq!(v.len(), fields.len(), "one parse per field");
    v
}

/// `method=result` of each result, in order, e.g. `["spf=pass", "dkim=fail"]`.
pub fn verdicts(p: &[Parsed]) -> Vec<String> {
    p.iter().map(|r| format!("{}={}", r.method, r.result)).collect()
}
