//! Helpers for smtpd-rs's pipe and socket tests: run the real binary with a
//! chosen environment, talk to it, and fake queue programs that record what
//! they were given (a qmail-queue-protocol shell script, and a session-mode
//! queue-inject in Python speaking doc/PROTOCOLS.md section 2).
#![allow(dead_code)]

#[path = "exe.rs"]
pub mod exe;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_smtpd-rs");

/// A qmail-queue stand-in: message from fd 0, envelope from fd 1, both
/// stored in $FAKEQQ_DIR; exits $FAKEQQ_EXIT (default 0) and writes
/// $FAKEQQ_FD6 on fd 6.
pub const FAKE_QMAIL_QUEUE: &str = r#"#!/bin/sh
d=${FAKEQQ_DIR:?}
n=$$
cat > "$d/msg.$n" || exit 54
cat <&1 > "$d/env.$n" || exit 54
printf '%s' "$QUEUE_ATTRS" > "$d/attrs.$n"
[ -n "$FAKEQQ_FD6" ] && printf '%s' "$FAKEQQ_FD6" >&6
exit ${FAKEQQ_EXIT:-0}
"#;

/// A session-mode queue-inject stand-in. Each start appends a line to
/// $FAKEQI_DIR/starts; each message is stored as msg.N (data), env.N,
/// attrs.N; the answer is "$FAKEQI_CODE" (default "0 id.N"); with
/// $FAKEQI_DIE_AFTER=k it exits after k messages without answering the k-th.
pub const FAKE_QUEUE_INJECT: &str = r#"#!/usr/bin/python3
import os, sys
d = os.environ["FAKEQI_DIR"]
assert sys.argv[1:] == ["-s"], sys.argv
with open(os.path.join(d, "starts"), "a") as f:
    f.write("%d\n" % os.getpid())
inp = sys.stdin.buffer
out = sys.stdout.buffer
def frame():
    n = b""
    while True:
        c = inp.read(1)
        if not c:
            return None
        if c == b":":
            break
        n += c
    p = inp.read(int(n))
    assert inp.read(1) == b","
    return p
count = len([f for f in os.listdir(d) if f.startswith("env.")])
die_after = int(os.environ.get("FAKEQI_DIE_AFTER", "0"))
done = 0
cur = None
while True:
    p = frame()
    if p is None:
        sys.exit(0)
    t, body = p[:1], p[1:]
    if t == b"E":
        count += 1
        cur = {"env": body, "attrs": b"", "data": b""}
    elif t == b"A":
        cur["attrs"] = body
    elif t == b"D":
        assert len(body) <= 65536
        cur["data"] += body
    elif t == b"R":
        with open(os.path.join(d, "aborted"), "a") as f:
            f.write("1\n")
        cur = None
    elif t == b".":
        done += 1
        if die_after and done >= die_after:
            sys.exit(1)
        for k in ("env", "attrs", "data"):
            with open(os.path.join(d, "%s.%d" % (k, count)), "wb") as f:
                f.write(cur[k])
        code = os.environ.get("FAKEQI_CODE", "0 id.%d" % count).encode()
        out.write(b"%d:%s," % (len(code), code))
        out.flush()
        cur = None
"#;

/// Write `text` as an executable file `dir/name`.
pub fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    if text.starts_with("#!/usr/bin/python3") {
        assert!(Path::new("/usr/bin/python3").exists(), "/usr/bin/python3 (Debian package python3) is needed");
    }
    let p = dir.join(name);
    exe::write(&p, text);
    p
}

/// The binary with a clean environment plus `vars`.
pub fn command(vars: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear().env("PATH", "/usr/bin:/bin").env("SMTPD_HOSTNAME", "mx.test");
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

/// Output of a whole conversation over pipes.
pub struct Run {
    pub out: String,
    pub log: String,
    pub code: Option<i32>,
}

impl Run {
    /// The reply lines that end a reply (`250 ...`, not `250-...`).
    pub fn replies(&self) -> Vec<&str> {
        self.out.split("\r\n").filter(|l| l.len() >= 4 && &l[3..4] == " ").collect()
    }

    /// The three-digit codes of `replies()`.
    pub fn codes(&self) -> Vec<&str> {
        self.replies().iter().map(|l| &l[..3]).collect()
    }
}

/// Run the binary: wait for the greeting, then write `input` in one piece
/// (a pipelined conversation), close, collect everything.
pub fn converse(mut cmd: Command, input: &[u8]) -> Run {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut greeting = [0u8; 1];
    let mut first = Vec::new();
    while !first.ends_with(b"\r\n") {
        if stdout.read(&mut greeting).unwrap_or(0) == 0 {
            break;
        }
        first.push(greeting[0]);
    }
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    writer.join().unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(20));
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    first.extend_from_slice(&rest);
    Run { out: String::from_utf8_lossy(&first).into_owned(), log, code: status }
}

/// Wait for `child` at most `limit`, killing it after that.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<i32> {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("smtpd-rs did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Files in `dir` whose names start with `prefix`, sorted, with contents.
pub fn files(dir: &Path, prefix: &str) -> Vec<Vec<u8>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort_by_key(|n| (n.len(), n.clone()));
    names.iter().map(|n| std::fs::read(dir.join(n)).unwrap()).collect()
}

/// The message body after the Received header (which ends at the first
/// line not starting with a tab after the `Received:` line).
pub fn strip_received(msg: &[u8]) -> &[u8] {
    assert!(msg.starts_with(b"Received: "), "no Received header first: {:?}", String::from_utf8_lossy(msg));
    let mut i = 0;
    loop {
        let nl = msg[i..].iter().position(|&b| b == b'\n').unwrap() + i;
        i = nl + 1;
        if msg.get(i) != Some(&b'\t') {
            return &msg[i..];
        }
    }
}
