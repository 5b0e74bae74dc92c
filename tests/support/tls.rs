//! Shared helpers for tls-wrap's tests: certificates made with openssl in a
//! temporary folder, a one-connection loopback server that runs tls-wrap on
//! the accepted socket, and openssl s_client as the peer.
#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const TLS_WRAP: &str = env!("CARGO_BIN_EXE_tls-wrap");

pub fn app() -> String {
    format!("{}/tests/support/tls_app.py", env!("CARGO_MANIFEST_DIR"))
}

pub fn need(prog: &str, package: &str) {
    let ok = Command::new("sh").arg("-c").arg(format!("command -v {prog}")).stdout(Stdio::null()).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "{prog} is missing: install the Debian package {package}");
}

fn openssl(dir: &Path, args: &[&str]) {
    need("openssl", "openssl");
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Certificates for the tests, all in one temporary folder:
/// rsa, ecdsa, ed25519 (CN localhost), a.test, b.test (for SNI),
/// ca + client (CN client, signed by ca).
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn new() -> Certs {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let selfsigned = |name: &str, keyargs: &[&str], cn: &str| {
            let mut a = vec!["req", "-x509", "-nodes", "-days", "2", "-subj"];
            let subj = format!("/CN={cn}");
            a.push(&subj);
            let k = format!("{name}.key");
            let c = format!("{name}.pem");
            a.extend_from_slice(&["-keyout", &k, "-out", &c]);
            a.extend_from_slice(keyargs);
            openssl(d, &a);
        };
        selfsigned("rsa", &["-newkey", "rsa:2048"], "localhost");
        selfsigned("ecdsa", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "localhost");
        selfsigned("ed25519", &["-newkey", "ed25519"], "localhost");
        selfsigned("a", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "a.test");
        selfsigned("b", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "b.test");
        selfsigned("ca", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"], "Test CA");
        openssl(d, &["req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-subj", "/O=Test/CN=client", "-keyout", "client.key", "-out", "client.csr"]);
        std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n").expect("ext");
        openssl(d, &["x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "client.ext", "-out", "client.pem"]);
        Certs { dir }
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    /// CERTFILE/KEYFILE for one of the key types.
    pub fn env(&self, name: &str) -> Vec<(String, String)> {
        vec![
            ("CERTFILE".into(), self.path(&format!("{name}.pem")).display().to_string()),
            ("KEYFILE".into(), self.path(&format!("{name}.key")).display().to_string()),
        ]
    }
}

/// What became of one tls-wrap run.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    /// stderr without tls-wrap's warning about running as root (the tests
    /// run as root, mostly without -u/-g or TLS_UID), which is `root_warning`.
    pub stderr: String,
    pub root_warning: bool,
    pub elapsed: Duration,
}

/// The end of tls-wrap's one-line warning about root (tls-wrap(8), PRIVILEGES).
pub const ROOT_WARNING: &str = "(see tls-wrap(8), PRIVILEGES)";

/// Listen on 127.0.0.1, accept one connection, run `tls-wrap args...` on it
/// with `env` added, and report how it ended (killed after 30 s).
pub fn serve_once(args: Vec<String>, env: Vec<(String, String)>) -> (u16, JoinHandle<Outcome>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let h = std::thread::spawn(move || {
        l.set_nonblocking(true).expect("nonblocking");
        let start = Instant::now();
        let sock = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(_) if start.elapsed() < Duration::from_secs(30) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("no connection: {e}"),
            }
        };
        sock.set_nonblocking(false).expect("blocking");
        let out = sock.try_clone().expect("clone");
        let t0 = Instant::now();
        let mut child = Command::new(TLS_WRAP)
            .args(&args)
            .envs(env)
            .env("TCPREMOTEIP", "127.0.0.1")
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(sock)))
            .stdout(Stdio::from(std::os::fd::OwnedFd::from(out)))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tls-wrap");
        let mut err = child.stderr.take().expect("stderr");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let code = loop {
            if let Some(st) = child.try_wait().expect("wait") {
                break st.code();
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let elapsed = t0.elapsed();
        let raw = reader.join().unwrap_or_default();
        eprintln!("tls-wrap exit {code:?} after {elapsed:?}, stderr:\n{raw}");
        let root_warning = raw.contains(ROOT_WARNING);
        let stderr: String = raw.split_inclusive('\n').filter(|l| !l.contains(ROOT_WARNING)).collect();
        Outcome { code, stderr, root_warning, elapsed }
    });
    (port, h)
}

/// Run openssl s_client with `args`, feed it `input`, return stdout+stderr.
pub fn s_client(port: u16, args: &[&str], input: &str) -> String {
    need("openssl", "openssl");
    let connect = format!("127.0.0.1:{port}");
    let mut a = vec!["20", "openssl", "s_client", "-connect", &connect, "-quiet", "-crlf"];
    a.extend_from_slice(args);
    let mut child = Command::new("timeout")
        .args(&a)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl");
    {
        use std::io::Write;
        let mut i = child.stdin.take().expect("stdin");
        let _ = i.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().expect("s_client output");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The test application under tls-wrap: `tls-wrap opts... python3 tls_app.py`.
pub fn wrap_args(opts: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
    v.push("/usr/bin/python3".into());
    v.push(app());
    v
}
