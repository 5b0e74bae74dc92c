//! Helpers of the conf-examples tests (tests/examples_*.rs): a scratch
//! folder standing in for the host's `/` (a "site"), the shipped files copied
//! into it with only the substitutions conf-examples/README lists, the
//! accounts of conf-examples/setup-accounts.sh, a certificate, the services
//! started the way their supervisor starts them (runsv, s6-svscan, a run
//! script, systemd-socket-activate with setpriv standing for User=, Group=,
//! NoNewPrivileges= and CapabilityBoundingSet=), and swaks as the client.
#![allow(dead_code)]

#[path = "peers.rs"]
pub mod peers;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

pub use peers::*;

pub const TOP: &str = env!("CARGO_MANIFEST_DIR");

/// The suite's programs that the examples name under /usr/local/sbin (and lib/smtpd-rs).
const PROGRAMS: &[&str] = &[
    env!("CARGO_BIN_EXE_smtpd-rs"),
    env!("CARGO_BIN_EXE_queue-inject"),
    env!("CARGO_BIN_EXE_tls-wrap"),
    env!("CARGO_BIN_EXE_smtpd-supervise"),
    env!("CARGO_BIN_EXE_queue-run"),
    env!("CARGO_BIN_EXE_smtp-remote"),
    env!("CARGO_BIN_EXE_maildir-deliver"),
    env!("CARGO_BIN_EXE_sendmail"),
    env!("CARGO_BIN_EXE_queue-drop"),
    env!("CARGO_BIN_EXE_smtpd-checkpassword"),
    env!("CARGO_BIN_EXE_smtpd-passwd"),
    env!("CARGO_BIN_EXE_metrics-http"),
    env!("CARGO_BIN_EXE_smtpd-supervise-status"),
    env!("CARGO_BIN_EXE_auth-check"),
];

/// The host name and domain of every example.
pub const HOSTNAME: &str = "mail.example.com";
/// The password of the submission user the tests add.
pub const ALICE_PW: &str = "wonderland 42";
/// The smarthost credentials of conf-examples/smtp-remote/smtp-auth.
pub const SMARTHOST_USER: &str = "mx@example.com";
pub const SMARTHOST_PW: &str = "correct horse battery staple";

/// The PATH that runit's and s6's run scripts and the tests' cron job see.
pub const SERVICE_PATH: &str = "/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin";

pub fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the conf-examples tests need root: they run the examples' services, which start as root and \
         drop to the accounts that conf-examples/setup-accounts.sh makes"
    );
}

/// The ids of the examples' accounts.
#[derive(Debug, Clone, Copy)]
pub struct Ids {
    pub smtpd: (u32, u32),
    pub smtpd_tls: (u32, u32),
    pub smtplog: (u32, u32),
    pub adm: u32,
    /// The group queue-drop is setgid to (no members).
    pub drop: u32,
}

fn user(name: &str) -> (u32, u32) {
    let e = smtpd::passwd::user_by_name(name)
        .unwrap_or_else(|e| panic!("read /etc/passwd: {e}"))
        .unwrap_or_else(|| panic!("no user {name} after setup-accounts.sh"));
    (e.id, e.gid)
}

/// conf-examples/setup-accounts.sh run for real (once per test program; it
/// is idempotent), then the accounts' ids.
pub fn accounts() -> Ids {
    static ONCE: Once = Once::new();
    need_root();
    ONCE.call_once(|| {
        let mut c = Command::new("sh");
        c.arg(format!("{TOP}/conf-examples/setup-accounts.sh")).env_remove("ROOT");
        let o = run(&mut c, b"", Duration::from_secs(60));
        assert_ok(&o, "conf-examples/setup-accounts.sh");
    });
    let adm = smtpd::passwd::group_by_name("adm").ok().flatten().expect("group adm").id;
    let drop = smtpd::passwd::group_by_name("smtpd-drop").ok().flatten().expect("group smtpd-drop").id;
    Ids { smtpd: user("smtpd"), smtpd_tls: user("smtpd-tls"), smtplog: user("smtplog"), adm, drop }
}

pub fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}

pub fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

fn mkdir(p: &Path, uid: u32, gid: u32, mode: u32) {
    std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    chown(p, uid, gid);
    chmod(p, mode);
}

/// A scratch folder standing in for the host's `/`, with what
/// setup-accounts.sh makes (under SCRATCH instead of `/`) and the programs.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub ids: Ids,
}

impl Site {
    pub fn new() -> Site {
        let ids = accounts();
        let dir = tempfile::Builder::new().prefix("conf-examples.").tempdir().expect("tempdir");
        // The accounts must reach the programs and their files.
        chmod(dir.path(), 0o755);
        let s = Site { dir, ids };
        s.link_programs();
        mkdir(&s.p("/etc/smtpd-rs"), 0, 0, 0o755);
        let pw = s.p("/etc/smtpd-rs/passwd");
        std::fs::write(&pw, "").expect("write passwd");
        chown(&pw, 0, ids.smtpd.1);
        chmod(&pw, 0o640);
        for d in ["/var", "/var/spool", "/var/log"] {
            mkdir(&s.p(d), 0, 0, 0o755);
        }
        mkdir(&s.p("/var/spool/smtpd-rs"), ids.smtpd.0, ids.smtpd.1, 0o750);
        mkdir(&s.p("/var/spool/smtpd-rs/queue"), ids.smtpd.0, ids.smtpd.1, 0o750);
        mkdir(&s.p("/var/spool/smtpd-rs/queue/maildrop"), ids.smtpd.0, ids.drop, 0o1730);
        mkdir(&s.p("/var/log/smtpd-rs"), ids.smtplog.0, ids.adm, 0o750);
        mkdir(&s.p("/var/log/queue-run"), ids.smtplog.0, ids.adm, 0o750);
        s
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The scratch path of an absolute path of the examples.
    pub fn p(&self, abs: &str) -> PathBuf {
        self.root().join(abs.trim_start_matches('/'))
    }

    /// The site's sendmail run as the user smtpd (setpriv), from `from`,
    /// with the service PATH and the site's queue: add the recipients.
    pub fn sendmail_as_smtpd(&self, from: &str) -> Command {
        let mut c = Command::new(peer("setpriv", "util-linux"));
        c.env_clear()
            .env("PATH", SERVICE_PATH)
            .env("QUEUE_DIR", self.p("/var/spool/smtpd-rs/queue"))
            .args(["--reuid=smtpd", "--regid=smtpd", "--init-groups", "--"])
            .arg(self.p("/bin/sendmail"))
            .args(["-f", from]);
        c
    }

    /// The built programs in SCRATCH/bin: hard links where the file system
    /// allows, else copies (the accounts may not reach the build folder).
    fn link_programs(&self) {
        let bin = self.p("/bin");
        mkdir(&bin, 0, 0, 0o755);
        for src in PROGRAMS.iter().map(Path::new) {
            let dst = bin.join(src.file_name().expect("name"));
            if std::fs::hard_link(src, &dst).is_err() {
                std::fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
            }
        }
    }

    /// A program of the suite in SCRATCH/bin.
    pub fn program(&self, name: &str) -> PathBuf {
        let p = self.p("/bin").join(name);
        assert!(p.is_file(), "{name} is not in {}", self.p("/bin").display());
        p
    }

    /// `text` with the substitutions of conf-examples/README: programs,
    /// settings, queue and logs under SCRATCH, and, with `port`, the port
    /// the example listens on (on every address) as 127.0.0.1 PORT.
    pub fn subst(&self, text: &str, port: Option<u16>) -> String {
        let root = self.root().display().to_string();
        let mut t = text
            .replace("/usr/local/sbin/", &format!("{root}/bin/"))
            .replace("/usr/local/lib/smtpd-rs/", &format!("{root}/bin/"))
            .replace("/etc/smtpd-rs/", &format!("{root}/etc/smtpd-rs/"))
            .replace("/var/spool/smtpd-rs", &format!("{root}/var/spool/smtpd-rs"))
            .replace("/var/log/", &format!("{root}/var/log/"));
        if let Some(port) = port {
            let mut found = false;
            for p in [" 0 25 ", " 0 465 ", " 0 587 "] {
                if t.contains(p) {
                    found = true;
                    t = t.replace(p, &format!(" 127.0.0.1 {port} "));
                }
            }
            assert!(found, "no listening address and port (\" 0 25 \", \" 0 465 \", \" 0 587 \") to substitute in:\n{text}");
        }
        t
    }

    /// conf-examples/`example` copied to `dest` (an absolute path of the
    /// examples, under SCRATCH), substituted, with the shipped file's mode.
    pub fn install(&self, example: &str, dest: &str, port: Option<u16>) -> PathBuf {
        let src = Path::new(TOP).join("conf-examples").join(example);
        let text = std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        let mode = std::fs::metadata(&src).expect("stat").permissions().mode() & 0o777;
        let dst = self.p(dest);
        std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
        std::fs::write(&dst, self.subst(&text, port)).unwrap_or_else(|e| panic!("write {}: {e}", dst.display()));
        chmod(&dst, mode);
        dst
    }

    /// Every file of the folder conf-examples/`example`, as `install` does.
    pub fn install_dir(&self, example: &str, dest: &str, port: Option<u16>) -> PathBuf {
        let src = Path::new(TOP).join("conf-examples").join(example);
        for e in walk(&src) {
            let rel = e.strip_prefix(&src).expect("prefix").to_str().expect("utf-8").to_owned();
            // Only the run scripts name the port.
            let has_port = std::fs::read_to_string(&e).map(|t| t.contains(" 0 25 ")).unwrap_or(false);
            self.install(&format!("{example}/{rel}"), &format!("{dest}/{rel}"), port.filter(|_| has_port));
        }
        self.p(dest)
    }

    /// The settings every port-25, 587 and 465 example reads, installed as
    /// the README's steps install them, and a certificate.
    pub fn settings(&self) {
        self.install("rcpthosts", "/etc/smtpd-rs/rcpthosts", None);
        self.install("smtpd.env", "/etc/smtpd-rs/smtpd.env", None);
        self.install("submission.env", "/etc/smtpd-rs/submission.env", None);
        self.install("tls.env", "/etc/smtpd-rs/tls.env", None);
        self.install("smtpd-supervise/smtpd.rules", "/etc/smtpd-rs/smtpd.rules", None);
        self.install("tcpserver/tcp.smtp", "/etc/smtpd-rs/tcp.smtp", None);
        self.certificate();
    }

    /// A test CA (SCRATCH/ca.pem) and, signed by it, the certificate of
    /// mail.example.com (also valid for 127.0.0.1) in the files tls.env
    /// names: /etc/smtpd-rs/cert.pem, and key.pem owned by root, 0600.
    pub fn certificate(&self) {
        let d = self.root();
        if d.join("ca.pem").is_file() {
            return;
        }
        let openssl = |args: &[&str]| {
            let o = Command::new(peer("openssl", "openssl")).args(args).current_dir(d).output().expect("run openssl");
            assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        let mut a = vec!["req", "-x509", "-days", "2", "-subj", "/CN=Test CA", "-keyout", "ca.key", "-out", "ca.pem"];
        a.extend_from_slice(&ec);
        a.extend_from_slice(&["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
        openssl(&a);
        let mut a = vec!["req", "-new", "-subj", "/CN=mail.example.com", "-keyout", "etc/smtpd-rs/key.pem", "-out", "cert.csr"];
        a.extend_from_slice(&ec);
        openssl(&a);
        std::fs::write(
            d.join("cert.ext"),
            "subjectAltName=DNS:mail.example.com,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        )
        .expect("write cert.ext");
        openssl(&[
            "x509", "-req", "-in", "cert.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile",
            "cert.ext", "-out", "etc/smtpd-rs/cert.pem",
        ]);
        let key = self.p("/etc/smtpd-rs/key.pem");
        chown(&key, 0, 0);
        chmod(&key, 0o600);
        chmod(&self.p("/etc/smtpd-rs/cert.pem"), 0o644);
    }

    pub fn ca(&self) -> PathBuf {
        self.root().join("ca.pem")
    }

    /// `smtpd-passwd -f /etc/smtpd-rs/passwd USER` with the password on
    /// stdin, as the README's step adds a submission user.
    pub fn add_user(&self, user: &str, password: &str) {
        let mut c = Command::new(self.program("smtpd-passwd"));
        c.arg("-f").arg(self.p("/etc/smtpd-rs/passwd")).arg(user);
        let o = run(&mut c, format!("{password}\n").as_bytes(), Duration::from_secs(30));
        assert_ok(&o, "smtpd-passwd");
        let m = std::fs::metadata(self.p("/etc/smtpd-rs/passwd")).expect("stat passwd");
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (0, self.ids.smtpd.1, 0o640), "smtpd-passwd kept root:smtpd 0640");
    }

    /// The queue's new/ files, parsed.
    pub fn queue(&self) -> Vec<QueueFile> {
        let new = self.p("/var/spool/smtpd-rs/queue/new");
        let mut v: Vec<PathBuf> = match std::fs::read_dir(&new) {
            Ok(d) => d.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v.iter().map(|p| QueueFile::read(p)).collect()
    }

    /// Waits (bounded) until the queue holds n messages; returns them.
    pub fn wait_queue(&self, n: usize) -> Vec<QueueFile> {
        wait_for(Duration::from_secs(10), || self.queue().len() >= n);
        self.queue()
    }

    /// The processes running programs from SCRATCH/bin: (program name,
    /// effective uid, pid).
    pub fn processes(&self) -> Vec<(String, u32, i32)> {
        let bin = self.p("/bin");
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            let Ok(exe) = std::fs::read_link(e.path().join("exe")) else { continue };
            if !exe.starts_with(&bin) {
                continue;
            }
            let Ok(status) = std::fs::read_to_string(e.path().join("status")) else { continue };
            let euid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|u| u.parse().ok());
            if let Some(euid) = euid {
                let name = exe.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                out.push((name, euid, pid));
            }
        }
        out
    }
}

/// The files under a folder, sorted.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())).flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A running example: its process group, its output, and how to stop it
/// the way its supervisor would before the group is killed.
pub struct Service {
    pub what: String,
    pub log: Arc<Mutex<Vec<u8>>>,
    stop: Vec<Command>,
    group: Group,
}

impl Service {
    pub fn spawn(what: &str, mut cmd: Command, stop: Vec<Command>) -> Service {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut group = Group::spawn(&mut cmd);
        // stdout and stderr into one buffer, as they come.
        let log = Arc::new(Mutex::new(Vec::new()));
        let out: Box<dyn Read + Send> = Box::new(group.0.stdout.take().expect("stdout"));
        let err: Box<dyn Read + Send> = Box::new(group.0.stderr.take().expect("stderr"));
        for mut r in [out, err] {
            let l = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = r.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    l.lock().expect("lock").extend_from_slice(&chunk[..n]);
                }
            });
        }
        Service { what: what.to_owned(), log, stop, group }
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&take(&self.log)).into_owned()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.group.0.try_wait(), Ok(None))
    }

    /// Waits until 127.0.0.1:port accepts, or fails with the log.
    pub fn wait_port(&mut self, port: u16) {
        let up = wait_for(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(up, "{}: nothing listens on 127.0.0.1:{port}\n{}", self.what, self.log_text());
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        for c in &mut self.stop {
            let _ = run(c, b"", Duration::from_secs(20));
        }
        self.group.kill();
    }
}

/// The environment runit and s6 give a run script (runsvdir's, s6-svscan's).
pub fn service_env(c: &mut Command) {
    c.env_clear().env("PATH", SERVICE_PATH).env("LANG", "C");
}

/// A runit service folder under runsv (which runs ./run, and ./log/run
/// with a pipe from the first); stopped with sv down, then sv exit.
pub fn runsv(dir: &Path, extra_env: &[(&str, &str)]) -> Service {
    let mut c = Command::new(peer("runsv", "runit"));
    service_env(&mut c);
    c.envs(extra_env.iter().copied());
    c.arg(dir);
    let sv = peer("sv", "runit");
    let mut down = Command::new(&sv);
    down.args(["-w", "10", "down"]).arg(dir);
    let mut exit = Command::new(&sv);
    exit.arg("exit").arg(dir);
    Service::spawn(&format!("runsv {}", dir.display()), c, vec![down, exit])
}

/// An s6 scan folder under s6-svscan (each service's ./run, and ./log/run
/// with a pipe); stopped with s6-svscanctl -t.
pub fn s6_svscan(scandir: &Path, extra_env: &[(&str, &str)]) -> Service {
    let mut c = Command::new(peer("s6-svscan", "s6"));
    service_env(&mut c);
    c.envs(extra_env.iter().copied());
    c.arg(scandir);
    let mut stop = Command::new(peer("s6-svscanctl", "s6"));
    stop.arg("-t").arg(scandir);
    Service::spawn(&format!("s6-svscan {}", scandir.display()), c, vec![stop])
}

/// A run script started as daemontools, runit and s6 start one: in its
/// folder, with their environment.
pub fn run_script(script: &Path) -> Service {
    run_script_env(script, &[])
}

/// The same with what the supervisor's environment adds (e.g. DNS_SERVER).
pub fn run_script_env(script: &Path, extra_env: &[(&str, &str)]) -> Service {
    let mut c = Command::new(script);
    service_env(&mut c);
    c.envs(extra_env.iter().copied());
    c.current_dir(script.parent().expect("folder"));
    Service::spawn(&script.display().to_string(), c, Vec::new())
}

/// A systemd unit file: its keys per section, in order (a key may repeat).
#[derive(Debug)]
pub struct Unit {
    pub path: PathBuf,
    pub keys: BTreeMap<String, Vec<(String, String)>>,
}

impl Unit {
    /// Reads a unit as systemd does for the keys the examples use: comments
    /// (# and ;), sections, KEY=VALUE, a backslash joining the next line.
    pub fn read(path: &Path) -> Unit {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut keys: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut section = String::new();
        let mut pending = String::new();
        for line in text.lines() {
            let line = line.trim();
            if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';')) {
                continue;
            }
            if let Some(l) = line.strip_suffix('\\') {
                pending.push_str(l);
                pending.push(' ');
                continue;
            }
            let whole = std::mem::take(&mut pending) + line;
            if whole.starts_with('[') {
                section = whole.trim_matches(|c| c == '[' || c == ']').to_owned();
                continue;
            }
            let (k, v) = whole.split_once('=').unwrap_or_else(|| panic!("{}: not KEY=VALUE: {whole}", path.display()));
            keys.entry(section.clone()).or_default().push((k.trim().to_owned(), v.trim().to_owned()));
        }
        Unit { path: path.to_owned(), keys }
    }

    /// The unit with a drop-in (`NAME.d/*.conf`) applied as systemd applies
    /// one: its assignments after the unit's own, so that a list setting
    /// (EnvironmentFile=, Documentation=) grows and a single one is
    /// replaced by the later value.
    pub fn with_dropin(mut self, dropin: &Path) -> Unit {
        let d = Unit::read(dropin);
        for (section, kv) in d.keys {
            self.keys.entry(section).or_default().extend(kv);
        }
        self
    }

    pub fn all(&self, section: &str, key: &str) -> Vec<String> {
        self.keys.get(section).map(|v| v.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()).unwrap_or_default()
    }

    /// The last value of a key (systemd: a later assignment wins).
    pub fn get(&self, section: &str, key: &str) -> Option<String> {
        self.all(section, key).pop()
    }

    /// The service's environment as systemd builds it: its own PATH and
    /// LANG, USER/LOGNAME/HOME/SHELL for User=, then each EnvironmentFile=
    /// and Environment= in order.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("PATH".to_owned(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()),
            ("LANG".to_owned(), "C".to_owned()),
        ];
        if let Some(u) = self.get("Service", "User") {
            for k in ["USER", "LOGNAME"] {
                env.push((k.to_owned(), u.clone()));
            }
            env.push(("HOME".to_owned(), "/".to_owned()));
            env.push(("SHELL".to_owned(), "/usr/sbin/nologin".to_owned()));
        }
        for (k, v) in self.keys.get("Service").into_iter().flatten() {
            match k.as_str() {
                "EnvironmentFile" => {
                    let (optional, file) = match v.strip_prefix('-') {
                        Some(f) => (true, f),
                        None => (false, v.as_str()),
                    };
                    match std::fs::read_to_string(file) {
                        Ok(t) => env.extend(env_file(&t, file)),
                        Err(e) if !optional => panic!("{}: EnvironmentFile={file}: {e}", self.path.display()),
                        Err(_) => {}
                    }
                }
                "Environment" => {
                    for a in v.split_whitespace() {
                        let (k, v) = a.split_once('=').unwrap_or_else(|| panic!("Environment={v}: not NAME=value"));
                        env.push((k.to_owned(), v.to_owned()));
                    }
                }
                _ => {}
            }
        }
        env
    }

    /// ExecStart= split into words (the examples use no quotes).
    pub fn exec_start(&self) -> Vec<String> {
        let v = self.get("Service", "ExecStart").unwrap_or_else(|| panic!("{}: no ExecStart=", self.path.display()));
        assert!(!v.contains(['"', '\'', '$', '%']), "{}: ExecStart= with quotes or specifiers: {v}", self.path.display());
        v.split_whitespace().map(str::to_owned).collect()
    }

    /// setpriv's options for User=, Group=, NoNewPrivileges= and
    /// CapabilityBoundingSet=, what systemd applies before ExecStart=.
    pub fn setpriv(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(u) = self.get("Service", "User") {
            let g = self.get("Service", "Group").unwrap_or_else(|| u.clone());
            a.push(format!("--reuid={u}"));
            a.push(format!("--regid={g}"));
            a.push("--init-groups".to_owned());
        }
        if self.get("Service", "NoNewPrivileges").as_deref() == Some("yes") {
            a.push("--no-new-privs".to_owned());
        }
        if let Some(caps) = self.get("Service", "CapabilityBoundingSet") {
            let mut set = String::from("-all");
            for c in caps.split_whitespace() {
                let c = c.strip_prefix("CAP_").unwrap_or_else(|| panic!("CapabilityBoundingSet: {c}"));
                set.push_str(&format!(",+{}", c.to_ascii_lowercase()));
            }
            a.push(format!("--bounding-set={set}"));
        }
        a
    }

    /// The command systemd would run: setpriv OPTIONS -- ExecStart.
    pub fn command_line(&self) -> Vec<String> {
        let mut v = vec![peer("setpriv", "util-linux").display().to_string()];
        v.extend(self.setpriv());
        v.push("--".to_owned());
        v.extend(self.exec_start());
        v
    }
}

/// An environment file read strictly: NAME=value lines (and # comments),
/// with nothing that systemd's EnvironmentFile= and sh's `.` read
/// differently (quotes, backslashes, $, spaces), as the examples promise.
pub fn env_file(text: &str, what: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("{what}:{}: not NAME=value: {line}", n + 1));
        let key_ok = k.chars().enumerate().all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        assert!(key_ok && !k.is_empty(), "{what}:{}: bad name: {line}", n + 1);
        assert!(
            !v.contains(|c: char| c.is_whitespace() || "'\"\\$`;&|<>(){}".contains(c)),
            "{what}:{}: a value that sh and systemd would read differently: {line}",
            n + 1
        );
        out.push((k.to_owned(), v.to_owned()));
    }
    out
}

/// A systemd socket unit with Accept=yes: each connection runs the service
/// under systemd-socket-activate -a --inetd on 127.0.0.1:port.
pub fn socket_activate(service: &Unit, accept: bool, port: u16, extra_env: &[(&str, &str)]) -> Service {
    let mut c = Command::new(peer("systemd-socket-activate", "systemd"));
    c.env_clear().env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    if accept {
        c.args(["-a", "--inetd"]);
    }
    c.args(["-l", &format!("127.0.0.1:{port}")]);
    for (k, v) in service.environment().into_iter().chain(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string()))) {
        c.arg("-E").arg(format!("{k}={v}"));
    }
    c.args(service.command_line());
    Service::spawn(&format!("systemd-socket-activate {}", service.path.display()), c, Vec::new())
}

/// A service unit without a socket, run as systemd would run it.
pub fn unit_direct(service: &Unit, extra_env: &[(&str, &str)]) -> Service {
    let cl = service.command_line();
    let mut c = Command::new(&cl[0]);
    c.env_clear();
    for (k, v) in service.environment() {
        c.env(k, v);
    }
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.args(&cl[1..]).current_dir("/");
    Service::spawn(&service.path.display().to_string(), c, Vec::new())
}

/// smtpd-rs@.service with the edit its comment describes: ExecStart=,
/// User= and Group= removed, the three commented TLS lines taken in.
pub fn tls_variant(unit: &str) -> String {
    let mut out = String::new();
    let mut taken = 0;
    for l in unit.lines() {
        if l.starts_with("ExecStart=") || l.starts_with("User=") || l.starts_with("Group=") {
            continue;
        }
        let l = match l.strip_prefix('#') {
            Some(r) if r.starts_with("EnvironmentFile=") || r.starts_with("ExecStart=") || r.starts_with("CapabilityBoundingSet=") => {
                taken += 1;
                r
            }
            _ => l,
        };
        out.push_str(l);
        out.push('\n');
    }
    assert_eq!(taken, 3, "smtpd-rs@.service: three commented TLS lines");
    out
}

/// swaks against 127.0.0.1:port: its transcript and whether it succeeded.
pub fn swaks(port: u16, args: &[&str]) -> (bool, String) {
    let mut c = Command::new(peer("swaks", "swaks"));
    c.env_clear().env("PATH", SERVICE_PATH).env("LANG", "C");
    c.args(["--server", &format!("127.0.0.1:{port}"), "--timeout", "20", "--helo", "client.example.org"]);
    c.args(args);
    // Without a recipient swaks asks for one on stdin, and loops at EOF.
    if !args.contains(&"--to") {
        c.args(["--to", "user@example.com"]);
    }
    let o = run(&mut c, b"", DEADLINE);
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success(), text)
}

/// A server line of a swaks transcript without its marker: "<-" in plain
/// text, "<~" inside TLS, "<**" and "<~*" for an error reply.
fn server_line(l: &str) -> Option<&str> {
    let l = l.trim_start();
    ["<**", "<~*", "<-", "<~"].iter().find_map(|m| l.strip_prefix(m)).map(str::trim_start)
}

/// The server's lines of a swaks transcript.
pub fn server_lines(transcript: &str) -> Vec<String> {
    transcript.lines().filter_map(server_line).map(str::to_owned).collect()
}

/// The keywords of the server's last EHLO reply in a swaks transcript
/// (upper case, with their parameters: "AUTH PLAIN LOGIN").
pub fn ehlo_keywords(transcript: &str) -> Vec<String> {
    let mut kw = Vec::new();
    let mut in_ehlo = false;
    for l in transcript.lines().map(str::trim_start) {
        if l.starts_with("->") || l.starts_with("~>") {
            in_ehlo = l.contains("EHLO ");
            if in_ehlo {
                kw.clear();
            }
            continue;
        }
        let Some(r) = server_line(l) else { continue };
        // "250-name greets", then "250-KEYWORD ...", the last "250 KEYWORD".
        if in_ehlo && r.len() > 4 && r.starts_with("250") {
            kw.push(r[4..].to_ascii_uppercase());
        }
    }
    kw.into_iter().skip(1).collect()
}

/// The greeting line of a transcript.
pub fn greeting(transcript: &str) -> String {
    server_lines(transcript).into_iter().next().unwrap_or_default()
}

pub fn wait_file_contains(p: &Path, needle: &str, limit: Duration) -> String {
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        if text.contains(needle) || t.elapsed() > limit {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
