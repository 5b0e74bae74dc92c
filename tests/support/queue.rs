//! Helpers for the queue tests: a scratch queue, queue-inject driven as
//! qmail-smtpd drives qmail-queue, a small session-mode client, and a reader
//! of the queue through the library's own parser.
#![allow(dead_code)]

#[path = "data.rs"]
pub mod data;

use smtpd::envelope::Envelope;
use smtpd::netstring;
use smtpd::queue::{parse_header, Header};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_queue-inject");

/// A scratch folder with an empty queue folder `q` in it.
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let q = d.path().join("q");
    fs::create_dir(&q).expect("mkdir q");
    (d, q)
}

pub fn envelope(sender: &str, rcpts: &[&str]) -> Vec<u8> {
    Envelope { sender: sender.into(), recipients: rcpts.iter().map(|r| r.as_bytes().to_vec()).collect() }
        .encode()
}

/// What the run of one queue-inject gave.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code, or 128 + signal.
    pub code: i32,
    pub stderr: String,
}

/// Run `cmd` the qmail-smtpd way: fd 0 and fd 1 are the read ends of two
/// pipes; write the whole message and close it, then the envelope and close
/// it, then wait. Write errors (the child exited early) are ignored, as
/// qmail-smtpd notes them and still waits for the exit code.
pub fn qmail_style(mut cmd: Command, message: &[u8], env: &[u8]) -> Outcome {
    let (mr, mut mw) = pipe();
    let (er, mut ew) = pipe();
    cmd.stdin(Stdio::from(mr)).stdout(Stdio::from(er)).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn queue-inject");
    drop(cmd); // the parent's copies of the read ends
    let _ = mw.write_all(message);
    drop(mw);
    let _ = ew.write_all(env);
    drop(ew);
    finish(&mut child)
}

pub fn pipe() -> (fs::File, fs::File) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    (fs::File::from(r), fs::File::from(w))
}

pub fn finish(child: &mut Child) -> Outcome {
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let st = child.wait().expect("wait");
    Outcome { code: st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)), stderr }
}

/// queue-inject with `QUEUE_DIR=q` and no other queue variable.
pub fn inject_cmd(q: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env("QUEUE_DIR", q).env_remove("QUEUE_ATTRS").env_remove("QUEUE_TIMEOUT");
    c
}

/// qmail-smtpd's reply for a qmail-queue exit code (qmail.c, qmail_close).
pub fn qmail_reply(code: i32) -> &'static str {
    match code {
        0 => "250 ok",
        11 => "554 qq envelope address too long (#5.1.3)",
        31 => "554 mail server permanently rejected message (#5.3.0)",
        51 => "451 qq out of memory (#4.3.0)",
        52 => "451 qq timeout (#4.3.0)",
        53 => "451 qq write error or disk full (#4.3.0)",
        54 => "451 qq read error (#4.3.0)",
        55 => "451 qq unable to read configuration (#4.3.0)",
        61 => "451 qq trouble in home directory (#4.3.0)",
        62..=66 => "451 qq trouble creating files in queue (#4.3.0)",
        81 | 91 => "451 qq internal bug (#4.3.0)",
        c if (11..=40).contains(&c) => "554 qq permanent problem (#5.3.0)",
        _ => "451 qq temporary problem (#4.3.0)",
    }
}

/// Every file in `q/new`, parsed: (file name, header, message).
pub fn read_queue(q: &Path) -> Vec<(String, Header, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir(q.join("new")) else { return out };
    for e in dir {
        let e = e.expect("readdir");
        let name = e.file_name().into_string().expect("utf-8 name");
        let bytes = fs::read(e.path()).expect("read queue file");
        let (h, off) = parse_header(&bytes).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(h.id, name, "the id line names the file");
        out.push((name, h, bytes[off..].to_vec()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// The test messages shipped with the project's test data.
pub fn testdata() -> Vec<(String, Vec<u8>)> {
    let v = data::messages();
    assert!(v.len() >= 40, "test data missing");
    v
}

/// Session-mode frames.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    netstring::encode(&[&[kind][..], payload].concat())
}

/// The frames of one whole message: E, A (if any), D in 64 KiB pieces, `.`.
pub fn message_frames(env: &[u8], attrs: Option<&[u8]>, msg: &[u8]) -> Vec<u8> {
    let mut v = frame(b'E', env);
    if let Some(a) = attrs {
        v.extend(frame(b'A', a));
    }
    for c in msg.chunks(65536) {
        v.extend(frame(b'D', c));
    }
    v.extend(frame(b'.', b""));
    v
}

/// Split a stream of netstring answers into their payloads.
pub fn answers(mut out: &[u8]) -> Vec<String> {
    let mut v = Vec::new();
    while !out.is_empty() {
        let (r, n) = netstring::parse(out, 1 << 20).expect("answer netstring").expect("whole answer");
        v.push(String::from_utf8_lossy(&out[r]).into_owned());
        out = &out[n..];
    }
    v
}

/// Run `queue-inject -s` with all of `input` on fd 0; returns the answers and
/// the outcome.
pub fn session(mut cmd: Command, input: &[u8]) -> (Vec<String>, Outcome) {
    cmd.arg("-s");
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn queue-inject -s");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out = Vec::new();
    child.stdout.take().expect("stdout").read_to_end(&mut out).expect("read answers");
    let _ = writer.join();
    let o = finish(&mut child);
    (answers(&out), o)
}
