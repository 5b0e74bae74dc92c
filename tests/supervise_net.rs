//! Loopback tests of smtpd-supervise, run by our own small runner
//! (`harness = false`): this test executable is also the session program the
//! supervisor runs (when `SUPERVISE_TEST_PROG` is set), in classic mode or as a
//! hand-off worker through smtpd::handoff::Worker, so the worker API is tested
//! end to end. `cargo test --test supervise_net [name-filter]`.
//! `SUPERVISE_SOAK=<n>` sets the soak test's session count (default 10000).

#[path = "support/peers.rs"]
mod support;

use support::wait_for;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_smtpd-supervise");

fn main() {
    if let Ok(mode) = std::env::var("SUPERVISE_TEST_PROG") {
        prog::run(&mode);
        return;
    }
    // Started by a supervisor whose environment lost SUPERVISE_TEST_PROG: be the
    // program, never the test runner (which would start supervisors of its own).
    if std::env::var_os("HANDOFF_FD").is_some() || std::env::var_os("TCPREMOTEIP").is_some() {
        prog::run("serve");
        return;
    }
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let tests: &[(&str, fn())] = &[
        ("bad_input_exits_before_binding", bad_input_exits_before_binding),
        ("classic_child_sees_ucspi_env", classic_child_sees_ucspi_env),
        ("ipv6_and_any_address", ipv6_and_any_address),
        ("banner_and_local_name", banner_and_local_name),
        ("workers_ready_before_any_connection", workers_ready_before_any_connection),
        ("killed_worker_replaced_within_2s", killed_worker_replaced_within_2s),
        ("worker_reuse_gives_fresh_env", worker_reuse_gives_fresh_env),
        ("max_use_enforced_by_the_supervisor", max_use_enforced_by_the_supervisor),
        ("concurrency_limit", concurrency_limit),
        ("per_address_limit", per_address_limit),
        ("rules_allow_deny_env", rules_allow_deny_env),
        ("rules_cdb_built_by_tcprules", rules_cdb_built_by_tcprules),
        ("sighup_reloads_rules_and_env", sighup_reloads_rules_and_env),
        ("sigterm_drains_then_exits", sigterm_drains_then_exits),
        ("sigterm_deadline_kills_without_orphans", sigterm_deadline_kills_without_orphans),
        ("session_wall_clock_limit", session_wall_clock_limit),
        ("kill_9_of_a_session_keeps_serving", kill_9_of_a_session_keeps_serving),
        ("dying_program_backs_off_loudly", dying_program_backs_off_loudly),
        ("privilege_drop_to_nobody", privilege_drop_to_nobody),
        ("tls_wrap_privilege_model_in_the_start_log", tls_wrap_privilege_model_in_the_start_log),
        ("inherited_fds_do_not_reach_sessions", inherited_fds_do_not_reach_sessions),
        ("syslog_facility_mail_with_childrens_lines", syslog_facility_mail_with_childrens_lines),
        ("socket_activation", socket_activation),
        ("sd_notify_ready", sd_notify_ready),
        ("proxy_protocol_trusted_and_untrusted", proxy_protocol_trusted_and_untrusted),
        ("status_on_sigusr1", status_on_sigusr1),
        ("idle_supervisor_does_not_spin", idle_supervisor_does_not_spin),
        ("storm_beyond_limits", storm_beyond_limits),
        ("soak_fds_and_memory_flat", soak_fds_and_memory_flat),
    ];
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, f) in tests {
        if filter.as_ref().is_some_and(|flt| !name.contains(flt.as_str())) {
            continue;
        }
        ran += 1;
        let t = Instant::now();
        let r = std::panic::catch_unwind(f);
        let secs = t.elapsed().as_secs_f32();
        match r {
            Ok(()) => println!("test {name} ... ok ({secs:.1} s)"),
            Err(_) => {
                println!("test {name} ... FAILED ({secs:.1} s)");
                failed.push(*name);
            }
        }
    }
    println!("\ntest result: {} passed; {} failed", ran - failed.len(), failed.len());
    if !failed.is_empty() {
        println!("failed: {failed:?}");
        std::process::exit(101);
    }
}

// ---------------------------------------------------------------------------
// The session program

mod prog {
    use super::*;

    pub fn run(mode: &str) {
        if mode == "die" {
            std::process::exit(1);
        }
        let session: fn() = if mode == "smtp" { smtp_stub } else { session };
        if mode == "greedy" {
            // A worker that says it is idle after every session, whatever
            // HANDOFF_MAX says: the supervisor must enforce -m itself.
            let Ok(Some(mut w)) = smtpd::handoff::Worker::from_env() else { return };
            while let Ok(true) = w.begin_session() {
                session();
                if w.idle().is_err() {
                    return;
                }
            }
            return;
        }
        match smtpd::handoff::Worker::from_env() {
            Ok(Some(mut w)) => loop {
                match w.begin_session() {
                    Ok(true) => {}
                    _ => return,
                }
                session();
                match w.end_session() {
                    Ok(true) => {}
                    _ => return,
                }
            },
            Ok(None) => session(),
            Err(e) => {
                eprintln!("test prog: {e}");
                std::process::exit(111);
            }
        }
    }

    /// A minimal SMTP responder, for a dry run of tests/bench/supervise.sh
    /// (`SMTPD=<this test binary>` with `SUPERVISE_TEST_PROG=smtp`).
    fn smtp_stub() {
        put("220 stub ESMTP\r\n");
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4096];
        let mut data = false;
        loop {
            while let Some(nl) = pending.iter().position(|&c| c == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                let up = String::from_utf8_lossy(&line).trim_end().to_ascii_uppercase();
                if data {
                    if up == "." {
                        data = false;
                        put("250 2.0.0 ok\r\n");
                    }
                } else if up == "DATA" {
                    data = true;
                    put("354 go ahead\r\n");
                } else if up == "QUIT" {
                    put("221 2.0.0 bye\r\n");
                    return;
                } else {
                    put("250 ok\r\n");
                }
            }
            match nix::unistd::read(std::io::stdin().as_fd(), &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
    }

    fn var(k: &str) -> String {
        std::env::var(k).unwrap_or_else(|_| "-".into())
    }

    fn put(s: &str) {
        let _ = nix::unistd::write(std::io::stdout().as_fd(), s.as_bytes());
    }

    fn session() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .map(|l| l[name.len()..].split_whitespace().collect::<Vec<_>>().join(","))
                .unwrap_or_default()
        };
        put(&format!(
            "hello pid={} ip={} port={} proto={} lip={} lport={} host={} lhost={} R={} E={} uid={} groups={} sigblk={} fd7={}\n",
            std::process::id(),
            var("TCPREMOTEIP"),
            var("TCPREMOTEPORT"),
            var("PROTO"),
            var("TCPLOCALIP"),
            var("TCPLOCALPORT"),
            var("TCPREMOTEHOST"),
            var("TCPLOCALHOST"),
            var("R"),
            var("E"),
            field("Uid:").split(',').next().unwrap_or(""),
            if field("Groups:").is_empty() { "none".to_string() } else { field("Groups:") },
            field("SigBlk:"),
            // lstat of the fd's link: open or not, whatever it points to.
            if std::fs::symlink_metadata("/proc/self/fd/7").is_ok() { "open" } else { "closed" },
        ));
        // Fresh reads of fd 0 each session: nothing buffered crosses sessions.
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            while let Some(nl) = pending.iter().position(|&c| c == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                if line == "quit" {
                    put("bye\n");
                    return;
                } else if let Some(ms) = line.strip_prefix("sleep ") {
                    std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
                    put("slept\n");
                } else if line == "hold" {
                    put("holding\n");
                } else {
                    put(&format!("unknown: {line}\n"));
                }
            }
            match nix::unistd::read(std::io::stdin().as_fd(), &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers

struct Sup {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

fn start(args: &[&str], mode: &str) -> Sup {
    start_with(args, mode, &[])
}

fn start_with(args: &[&str], mode: &str, env: &[(&str, &str)]) -> Sup {
    start_on("127.0.0.1", args, mode, env)
}

fn start_on(host: &str, args: &[&str], mode: &str, env: &[(&str, &str)]) -> Sup {
    let me = std::env::current_exe().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("-1").args(args).arg(host).arg("0").arg(&me);
    cmd.env("SUPERVISE_TEST_PROG", mode);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
    let mut child = cmd.spawn().expect("run smtpd-supervise");
    let log = collect(child.stderr.take().unwrap());
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port = match line.trim().parse() {
        Ok(p) => p,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!("no port from smtpd-supervise; log: {:?}", log.lock().unwrap());
        }
    };
    Sup { child, port, log }
}

fn collect(r: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("SUPERVISE_TEST_VERBOSE").is_some() {
                eprintln!("  | {line}");
            }
            l2.lock().unwrap().push(line);
        }
    });
    log
}

impl Sup {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Connect from 127.0.0.1 and read the greeting line.
    fn session(&self) -> (TcpStream, String) {
        self.session_from([127, 0, 0, 1])
    }

    fn session_from(&self, src: [u8; 4]) -> (TcpStream, String) {
        let s = connect_from(src, self.addr());
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let g = read_line(&s);
        (s, g)
    }

    fn has_log(&self, pat: &str, within: Duration) -> bool {
        wait_for(within, || self.log.lock().unwrap().iter().any(|l| l.contains(pat)))
    }

    fn log_count(&self, pat: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|l| l.contains(pat)).count()
    }

    fn dump(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Wait for the supervisor to exit; its exit code.
    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let t = Instant::now();
        while t.elapsed() < within {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let kids = children(self.pid());
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), nix::sys::signal::Signal::SIGKILL);
            for k in kids {
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(k), nix::sys::signal::Signal::SIGKILL);
            }
            let _ = self.child.wait();
        }
    }
}

fn connect_from(src: [u8; 4], dst: SocketAddr) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    let a = SockaddrIn::new(src[0], src[1], src[2], src[3], 0);
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &a).unwrap();
    let SocketAddr::V4(d) = dst else { panic!("v4 only") };
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(d)).unwrap();
    TcpStream::from(fd)
}

/// One line, or "" on EOF/timeout.
fn read_line(s: &TcpStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    let mut r = s;
    while let Ok(1) = r.read(&mut b) {
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

fn say(s: &TcpStream, line: &str) -> String {
    let mut w = s;
    w.write_all(format!("{line}\n").as_bytes()).unwrap();
    read_line(s)
}

fn field(greeting: &str, name: &str) -> String {
    greeting
        .split(' ')
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .unwrap_or("")
        .to_string()
}

fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; look at its state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

fn zombies(pid: i32) -> usize {
    children(pid).into_iter().filter(|&c| !alive(c)).count()
}

/// The supervisor's fds, less one per child (an idle or busy worker's hand-off
/// socket), so that the figure does not move with the size of the pool.
fn fd_count(pid: i32) -> usize {
    let n = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    n.saturating_sub(children(pid).len())
}

fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn tmpfile(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------
// Tests

fn bad_input_exits_before_binding() {
    let run = |args: &[&str]| {
        let o = Command::new(BIN).args(args).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (code, err) = run(&["-Z", "127.0.0.1", "0", "true"]);
    assert_eq!(code, Some(100), "{err}");
    assert!(err.contains("smtpd-supervise: fatal:") && err.contains("Z"), "{err}");
    let (code, err) = run(&["127.0.0.1", "0"]);
    assert_eq!(code, Some(100), "{err}");
    assert!(err.contains("usage"), "{err}");
    let (code, err) = run(&["-u", "no-such-user-xyz", "127.0.0.1", "0", "true"]);
    assert_eq!(code, Some(100), "{err}");
    assert!(err.contains("unknown user: no-such-user-xyz"), "{err}");
    // Port in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let (code, err) = run(&["127.0.0.1", &port, "true"]);
    assert_eq!(code, Some(111), "{err}");
    assert!(err.contains("unable to bind") && err.contains("in use"), "{err}");
    // A rules syntax error is found before the (busy) port is even tried.
    let dir = tempfile::tempdir().unwrap();
    let rules = tmpfile(&dir, "rules", "127.0.0.1:allow\n10.0.0.1:permit\n");
    let (code, err) = run(&["-x", &rules, "127.0.0.1", &port, "true"]);
    assert_eq!(code, Some(100), "{err}");
    assert!(err.contains("line 2"), "{err}");
    let env = tmpfile(&dir, "env", "GOOD=1\nBAD KEY=2\n");
    let (code, err) = run(&["-e", &env, "127.0.0.1", &port, "true"]);
    assert_eq!(code, Some(100), "{err}");
    assert!(err.contains("line 2"), "{err}");
    let (code, _) = run(&["-x", "/nonexistent/rules", "127.0.0.1", &port, "true"]);
    assert_eq!(code, Some(100));
}

fn classic_child_sees_ucspi_env() {
    let sup = start(&[], "serve");
    let (s, g) = sup.session();
    assert!(g.starts_with("hello "), "{g} / {}", sup.dump());
    assert_eq!(field(&g, "ip"), "127.0.0.1");
    assert_eq!(field(&g, "port"), s.local_addr().unwrap().port().to_string());
    assert_eq!(field(&g, "proto"), "TCP");
    assert_eq!(field(&g, "lip"), "127.0.0.1");
    assert_eq!(field(&g, "lport"), sup.port.to_string());
    assert_eq!(field(&g, "host"), "-");
    // The child starts with no signal blocked although the supervisor blocks several.
    assert_eq!(field(&g, "sigblk"), "0000000000000000");
    assert_eq!(say(&s, "quit"), "bye");
    let pid = field(&g, "pid");
    assert!(sup.has_log(&format!("end {pid} status 0"), Duration::from_secs(2)), "{}", sup.dump());
    assert!(sup.has_log(&format!("ok {pid} :127.0.0.1:{} :127.0.0.1::", sup.port), Duration::from_secs(1)));
}

fn banner_and_local_name() {
    for mode in [&[][..], &["-W", "-w", "1"][..]] {
        let mut args = vec!["-B", "banner here\n", "-l", "mail.example.test"];
        args.extend_from_slice(mode);
        let sup = start(&args, "serve");
        let (s, first) = sup.session();
        assert_eq!(first, "banner here");
        let g = read_line(&s);
        assert_eq!(field(&g, "lhost"), "mail.example.test", "{g}");
        assert_eq!(field(&g, "host"), "-");
        assert_eq!(say(&s, "quit"), "bye");
        assert!(sup.has_log("ok ", Duration::from_secs(1)));
        assert!(sup.dump().contains(&format!(" mail.example.test:127.0.0.1:{} :127.0.0.1::", sup.port)));
    }
}

fn ipv6_and_any_address() {
    for mode in [&[][..], &["-W", "-w", "1"][..]] {
        let sup = start_on("::1", mode, "serve", &[]);
        let s = TcpStream::connect(("::1", sup.port)).expect("IPv6 loopback");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let g = read_line(&s);
        assert_eq!(field(&g, "proto"), "TCP6", "{g}");
        assert_eq!(field(&g, "ip"), "::1");
        assert_eq!(field(&g, "lip"), "::1");
        assert_eq!(say(&s, "quit"), "bye");
        // "0": every address, IPv4 clients seen as IPv4 (not ::ffff:...).
        let sup = start_on("0", mode, "serve", &[]);
        let (s, g) = sup.session();
        assert_eq!(field(&g, "proto"), "TCP", "{g}");
        assert_eq!(field(&g, "ip"), "127.0.0.1");
        assert_eq!(field(&g, "lip"), "127.0.0.1");
        assert_eq!(say(&s, "quit"), "bye");
        let s = TcpStream::connect(("::1", sup.port)).expect("IPv6 on 0");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(field(&read_line(&s), "proto"), "TCP6");
    }
}

fn workers_ready_before_any_connection() {
    let sup = start(&["-W", "-w", "3"], "serve");
    assert!(
        wait_for(Duration::from_secs(3), || children(sup.pid()).len() == 3),
        "workers: {:?}",
        children(sup.pid())
    );
    std::thread::sleep(Duration::from_millis(200));
    let before = children(sup.pid());
    assert_eq!(before.len(), 3);
    let (s, g) = sup.session();
    let pid: i32 = field(&g, "pid").parse().unwrap();
    assert!(before.contains(&pid), "session pid {pid} was not a waiting worker {before:?}");
    assert_eq!(field(&g, "ip"), "127.0.0.1");
    assert_eq!(field(&g, "port"), s.local_addr().unwrap().port().to_string());
    assert_eq!(field(&g, "sigblk"), "0000000000000000");
    // A replacement starts at once: three idle again while this session runs.
    assert!(wait_for(Duration::from_secs(2), || children(sup.pid()).len() == 4));
    assert_eq!(say(&s, "quit"), "bye");
    assert!(sup.has_log(&format!("end {pid} status 0"), Duration::from_secs(2)), "{}", sup.dump());
    assert!(wait_for(Duration::from_secs(2), || children(sup.pid()).len() == 3));
}

fn killed_worker_replaced_within_2s() {
    let sup = start(&["-W", "-w", "2"], "serve");
    assert!(wait_for(Duration::from_secs(3), || children(sup.pid()).len() == 2));
    let victim = children(sup.pid())[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(
        wait_for(Duration::from_secs(2), || {
            let c = children(sup.pid());
            c.len() == 2 && !c.contains(&victim)
        }),
        "not replaced: {:?}\n{}",
        children(sup.pid()),
        sup.dump()
    );
    assert_eq!(zombies(sup.pid()), 0);
    let (s, g) = sup.session();
    assert!(g.starts_with("hello"), "{g}");
    assert_eq!(say(&s, "quit"), "bye");
    assert!(sup.has_log(&format!("worker {victim} exited while idle: signal 9"), Duration::from_secs(1)));
}

fn worker_reuse_gives_fresh_env() {
    let dir = tempfile::tempdir().unwrap();
    let rules = tmpfile(&dir, "rules", "127.0.0.2:allow,R=\"two\"\n:allow\n");
    let sup = start(&["-W", "-w", "1", "-m", "5", "-x", &rules], "serve");
    let (s1, g1) = sup.session_from([127, 0, 0, 2]);
    assert_eq!(field(&g1, "R"), "two", "{g1}");
    // Input left unread by one session must not reach the next.
    let mut w = &s1;
    w.write_all(b"sleep 50\nleftover\n").unwrap();
    assert_eq!(read_line(&s1), "slept");
    drop(s1);
    let pid1 = field(&g1, "pid");
    assert!(sup.has_log(&format!("end {pid1} idle"), Duration::from_secs(2)), "{}", sup.dump());
    let (s2, g2) = sup.session_from([127, 0, 0, 1]);
    assert_eq!(field(&g2, "pid"), pid1, "same worker reused");
    assert_eq!(field(&g2, "R"), "-", "rules variable of the previous session leaked: {g2}");
    assert_eq!(field(&g2, "ip"), "127.0.0.1");
    assert_eq!(say(&s2, "quit"), "bye");
}

fn concurrency_limit() {
    for mode in [&[][..], &["-W", "-w", "2"][..]] {
        let mut args = vec!["-c", "2"];
        args.extend_from_slice(mode);
        let sup = start(&args, "serve");
        let (a, ga) = sup.session();
        let (_b, gb) = sup.session();
        assert!(ga.starts_with("hello") && gb.starts_with("hello"), "{ga} {gb}");
        // The third waits in the backlog, not served.
        let c = TcpStream::connect(sup.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
        assert_eq!(read_line(&c), "", "third session served beyond -c 2 ({mode:?})");
        assert_eq!(say(&a, "quit"), "bye");
        drop(a);
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(read_line(&c).starts_with("hello"), "third not served after one ended ({mode:?})\n{}", sup.dump());
    }
}

fn per_address_limit() {
    let sup = start(&["-C", "1", "-c", "10"], "serve");
    let (_a, ga) = sup.session_from([127, 0, 0, 1]);
    assert!(ga.starts_with("hello"));
    let (_b, gb) = sup.session_from([127, 0, 0, 1]);
    assert_eq!(gb, "", "second session from one address allowed");
    let (_c, gc) = sup.session_from([127, 0, 0, 2]);
    assert!(gc.starts_with("hello"), "another address refused: {gc}");
    assert!(sup.has_log("limit 0", Duration::from_secs(1)), "{}", sup.dump());
}

fn rules_allow_deny_env() {
    let dir = tempfile::tempdir().unwrap();
    let rules = tmpfile(&dir, "rules", "# test\n127.0.0.2:deny\n127.0.0.3:allow,R=\"three\"\n127.0.0.:allow,R=/net/\n:allow,R=\"any\"\n");
    for mode in [&[][..], &["-W", "-w", "1"][..]] {
        let mut args = vec!["-x", rules.as_str()];
        args.extend_from_slice(mode);
        let sup = start(&args, "serve");
        let (_a, ga) = sup.session_from([127, 0, 0, 2]);
        assert_eq!(ga, "", "denied address served");
        let (_b, gb) = sup.session_from([127, 0, 0, 3]);
        assert_eq!(field(&gb, "R"), "three", "{gb}");
        let (_c, gc) = sup.session_from([127, 0, 0, 1]);
        assert_eq!(field(&gc, "R"), "net", "{gc}");
        assert!(sup.has_log("deny 0 :127.0.0.1:", Duration::from_secs(1)), "{}", sup.dump());
    }
}

fn rules_cdb_built_by_tcprules() {
    let tcprules = which("tcprules").expect("tcprules missing: install the Debian package ucspi-tcp");
    let dir = tempfile::tempdir().unwrap();
    let cdb = dir.path().join("rules.cdb");
    let tmp = dir.path().join("rules.tmp");
    let mut c = Command::new(tcprules).arg(&cdb).arg(&tmp).stdin(Stdio::piped()).spawn().unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"127.0.0.2:deny\n127.0.0.3-4:allow,R=\"three\"\n127.0.0.:allow,R=/net/\n=x.example:allow,R=\"host\"\n:allow,R=\"any\"\n")
        .unwrap();
    assert!(c.wait().unwrap().success());
    let sup = start(&["-W", "-w", "1", "-x", cdb.to_str().unwrap()], "serve");
    assert_eq!(sup.session_from([127, 0, 0, 2]).1, "", "denied address served");
    assert_eq!(field(&sup.session_from([127, 0, 0, 4]).1, "R"), "three");
    assert_eq!(field(&sup.session_from([127, 0, 0, 9]).1, "R"), "net");
    // 127.0.0.3-4 is two records in the cdb.
    assert!(sup.has_log("rules 6", Duration::from_secs(1)), "{}", sup.dump());
}

fn sighup_reloads_rules_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let rules = tmpfile(&dir, "rules", ":allow,R=\"one\"\n");
    let env = tmpfile(&dir, "env", "E=first\n");
    let sup = start(&["-W", "-w", "1", "-x", &rules, "-e", &env], "serve");
    let (held, g) = sup.session();
    assert_eq!((field(&g, "R").as_str(), field(&g, "E").as_str()), ("one", "first"), "{g}");
    std::fs::write(&rules, ":allow,R=\"two\"\n").unwrap();
    std::fs::write(&env, "E=second\n").unwrap();
    sup.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(sup.has_log("reload: rules 1", Duration::from_secs(2)), "{}", sup.dump());
    // The running session is untouched.
    assert_eq!(say(&held, "sleep 1"), "slept");
    let ok = wait_for(Duration::from_secs(3), || {
        let (s, g) = sup.session();
        let _ = say(&s, "quit");
        field(&g, "R") == "two" && field(&g, "E") == "second"
    });
    assert!(ok, "reload not seen\n{}", sup.dump());
    // A bad file: old rules kept, loud warning.
    std::fs::write(&rules, "garbage\n").unwrap();
    std::fs::write(&env, "1=bad\n").unwrap();
    sup.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(sup.has_log("keeping the old rules", Duration::from_secs(2)), "{}", sup.dump());
    assert!(sup.has_log("keeping the old environment", Duration::from_secs(2)));
    let (s, g) = sup.session();
    assert_eq!((field(&g, "R").as_str(), field(&g, "E").as_str()), ("two", "second"), "{g}");
    assert_eq!(say(&s, "quit"), "bye");
    assert_eq!(say(&held, "quit"), "bye");
}

fn sigterm_drains_then_exits() {
    let mut sup = start(&["-W", "-w", "2", "-k", "10"], "serve");
    let (s, g) = sup.session();
    assert!(g.starts_with("hello"));
    let workers = children(sup.pid());
    sup.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(sup.has_log("stop: draining 1 sessions", Duration::from_secs(2)), "{}", sup.dump());
    // No new connections; the running session goes on.
    assert!(wait_for(Duration::from_secs(2), || TcpStream::connect(sup.addr()).is_err()));
    assert_eq!(say(&s, "sleep 100"), "slept");
    assert_eq!(say(&s, "quit"), "bye");
    assert_eq!(sup.wait_exit(Duration::from_secs(5)), Some(0), "{}", sup.dump());
    std::thread::sleep(Duration::from_millis(100));
    for w in workers {
        assert!(!alive(w), "worker {w} outlived the supervisor");
    }
}

fn sigterm_deadline_kills_without_orphans() {
    for mode in [&[][..], &["-W", "-w", "1"][..]] {
        let mut args = vec!["-k", "1"];
        args.extend_from_slice(mode);
        let mut sup = start(&args, "serve");
        let (s, g) = sup.session();
        let pid: i32 = field(&g, "pid").parse().unwrap();
        let all = children(sup.pid());
        sup.signal(nix::sys::signal::Signal::SIGTERM);
        let t = Instant::now();
        assert_eq!(sup.wait_exit(Duration::from_secs(5)), Some(0), "{}", sup.dump());
        assert!(t.elapsed() >= Duration::from_millis(900), "did not wait for the deadline");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert_eq!(read_line(&s), "", "session still open");
        std::thread::sleep(Duration::from_millis(100));
        assert!(!alive(pid), "session {pid} orphaned ({mode:?})");
        for c in all {
            assert!(!alive(c), "child {c} orphaned ({mode:?})");
        }
        assert!(sup.has_log("drain deadline: killed", Duration::from_secs(1)));
    }
}

fn session_wall_clock_limit() {
    for mode in [&[][..], &["-W", "-w", "1"][..]] {
        let mut args = vec!["-T", "1"];
        args.extend_from_slice(mode);
        let sup = start(&args, "serve");
        let (s, g) = sup.session();
        assert!(g.starts_with("hello"));
        let t = Instant::now();
        assert_eq!(read_line(&s), "", "session not ended");
        let e = t.elapsed();
        assert!(e >= Duration::from_millis(800) && e < Duration::from_secs(4), "{e:?}");
        assert!(sup.has_log("session over 1 s: killed", Duration::from_secs(1)), "{}", sup.dump());
        assert!(sup.has_log("signal 9", Duration::from_secs(2)), "{}", sup.dump());
        let (s2, g2) = sup.session();
        assert!(g2.starts_with("hello"));
        assert_eq!(say(&s2, "quit"), "bye");
    }
}

fn kill_9_of_a_session_keeps_serving() {
    for mode in [&[][..], &["-W", "-w", "1"][..]] {
        let sup = start(mode, "serve");
        let (s, g) = sup.session();
        let pid: i32 = field(&g, "pid").parse().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        assert_eq!(read_line(&s), "");
        assert!(sup.has_log(&format!("end {pid} signal 9"), Duration::from_secs(2)), "{}", sup.dump());
        assert_eq!(zombies(sup.pid()), 0);
        let (s2, g2) = sup.session();
        assert!(g2.starts_with("hello"), "{g2}");
        assert_eq!(say(&s2, "quit"), "bye");
    }
}

fn dying_program_backs_off_loudly() {
    let sup = start(&["-W", "-w", "4"], "die");
    assert!(sup.has_log("ALERT", Duration::from_secs(3)), "{}", sup.dump());
    // Spaced out: in 2 s, far fewer starts than a tight loop would make.
    let before = sup.log_count("exited while idle");
    std::thread::sleep(Duration::from_secs(2));
    let after = sup.log_count("exited while idle");
    assert!(after - before <= 12, "restarts not spaced out: {}", after - before);
    assert_eq!(zombies(sup.pid()), 0);
}

fn privilege_drop_to_nobody() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test needs root (it checks the drop from root to nobody)");
    }
    for mode in [&[][..], &["-W", "-w", "1"][..]] {
        let mut args = vec!["-u", "nobody"];
        args.extend_from_slice(mode);
        let sup = start(&args, "serve");
        let (s, g) = sup.session();
        assert_eq!(field(&g, "uid"), "65534", "{g}");
        assert_eq!(field(&g, "groups"), "none", "{g}");
        let st = std::fs::read_to_string(format!("/proc/{}/status", sup.pid())).unwrap();
        let uid_line = st.lines().find(|l| l.starts_with("Uid:")).unwrap().to_string();
        assert_eq!(uid_line.split_whitespace().skip(1).collect::<Vec<_>>(), ["65534"; 4], "{uid_line}");
        let groups = st.lines().find(|l| l.starts_with("Groups:")).unwrap().to_string();
        assert_eq!(groups.trim(), "Groups:", "supplementary groups kept");
        assert_eq!(say(&s, "quit"), "bye");
    }
}

/// Issue 17.5: one TLS privilege model. The supervisor stays root to start
/// tls-wrap, which has its own -u/-g: no warning about root then; without
/// them, or when the supervisor itself drops (tls-wrap could no longer read
/// its key), a warning that says what to do.
fn tls_wrap_privilege_model_in_the_start_log() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (the supervisor's root warning)");
    let dir = tempfile::tempdir().unwrap();
    let tw = dir.path().join("tls-wrap");
    std::os::unix::fs::symlink(std::env::current_exe().unwrap(), &tw).unwrap();
    let tw = tw.to_str().unwrap();
    let cases: [(&[&str], &[&str], &str); 3] = [
        (&[], &["-u", "smtpd", "-g", "smtpd"], "smtpd-supervise: running tls-wrap as root: it reads its key"),
        (&[], &["-i"], "warning: tls-wrap would run its program as root: give tls-wrap -u and -g"),
        (&["-u", "nobody"], &["-u", "smtpd", "-g", "smtpd"], "warning: running tls-wrap as uid 65534"),
    ];
    for (sup_args, tw_args, want) in cases {
        let mut cmd = Command::new(BIN);
        cmd.arg("-1").args(sup_args).args(["127.0.0.1", "0", tw]).args(tw_args).arg("smtpd-rs");
        cmd.env("SUPERVISE_TEST_PROG", "serve").stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let log = collect(child.stderr.take().unwrap());
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let sup = Sup { child, port: line.trim().parse().unwrap_or(0), log };
        assert!(sup.has_log(want, Duration::from_secs(5)), "{sup_args:?} {tw_args:?}: {}", sup.dump());
        assert_eq!(sup.log_count("running sessions as root"), 0, "{}", sup.dump());
        assert_eq!(sup.log_count("tls-wrap(8), PRIVILEGES"), 1, "{}", sup.dump());
    }
    // Any other program as root: the plain warning, naming the model too.
    let sup = start(&[], "serve");
    assert!(sup.has_log("warning: running sessions as root: use -u, -U", Duration::from_secs(5)), "{}", sup.dump());
}

/// Issue 16.17: -m is the supervisor's to enforce: a worker that keeps
/// saying it is idle is retired after -m sessions all the same.
fn max_use_enforced_by_the_supervisor() {
    for (m, per_pid) in [("1", 1), ("2", 2)] {
        let sup = start(&["-W", "-w", "1", "-m", m], "greedy");
        let mut pids = Vec::new();
        for _ in 0..4 {
            let (s, g) = sup.session();
            pids.push(field(&g, "pid"));
            assert_eq!(say(&s, "quit"), "bye");
            drop(s);
            // Let the worker's idle byte arrive before the next connection.
            assert!(wait_for(Duration::from_secs(5), || sup.log_count(" idle") >= pids.len()), "{}", sup.dump());
        }
        let mut distinct = pids.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 4 / per_pid, "-m {m}: sessions by pid {pids:?}\n{}", sup.dump());
    }
}

/// Issue 16.10: an fd the supervisor inherited (here a root-only file opened
/// as fd 7 by the shell that starts it) never reaches a session, classic or
/// hand-off, even one run as another user.
fn inherited_fds_do_not_reach_sessions() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (a root-only file, sessions as nobody)");
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "TOPSECRET\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let me = std::env::current_exe().unwrap();
    for mode in [&[][..], &["-W", "-w", "1"][..]] {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg("exec 7<\"$0\"; exec \"$@\"").arg(&secret).arg(BIN).args(["-1", "-u", "nobody"]);
        cmd.args(mode).args(["127.0.0.1", "0"]).arg(&me);
        cmd.env("SUPERVISE_TEST_PROG", "serve").stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let log = collect(child.stderr.take().unwrap());
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("no port; log: {:?}", log.lock().unwrap()));
        let sup = Sup { child, port, log };
        let (s, g) = sup.session();
        assert_eq!(field(&g, "uid"), "65534", "{g}");
        assert_eq!(field(&g, "fd7"), "closed", "{mode:?}: the session got the supervisor's fd 7: {g}");
        assert_eq!(say(&s, "quit"), "bye");
        // The supervisor itself still has it (nothing was closed).
        assert!(std::fs::symlink_metadata(format!("/proc/{}/fd/7", sup.pid())).is_ok());
    }
}

/// -s: our lines and the children's stderr lines reach /dev/log with facility
/// mail. /dev/log is faked in a private mount namespace (needs root and
/// unshare(1) from util-linux).
fn syslog_facility_mail_with_childrens_lines() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (a private /dev for a fake /dev/log)");
    let unshare = which("unshare").expect("unshare missing: install the Debian package util-linux");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("syslog.out");
    let script = format!(
        r#"set -e
mount -t tmpfs tmpfs /dev
mknod -m 666 /dev/null c 1 3
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
s.settimeout(3)
out = open(sys.argv[1], "w")
try:
    while True:
        out.write(s.recv(4096).decode() + "\n"); out.flush()
except Exception:
    pass
' {out} &
# Wait for the listener and then for the port (a loaded machine is slow).
for i in $(seq 100); do [ -S /dev/log ] && break; sleep 0.05; done
{bin} -s -1 127.0.0.1 0 sh -c 'echo child line >&2; echo hi' > {out}.port &
SP=$!
for i in $(seq 100); do [ -s {out}.port ] && break; sleep 0.05; done
python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1", int(open(sys.argv[1]).read()))); s.recv(10)' {out}.port
sleep 0.3
kill $SP
wait $SP || true
wait
"#,
        out = out.display(),
        bin = BIN
    );
    let st = Command::new(unshare).arg("-m").arg("sh").arg("-c").arg(&script).status().unwrap();
    assert!(st.success());
    let got = std::fs::read_to_string(&out).unwrap();
    assert!(got.contains("<22>smtpd-supervise["), "{got}");
    assert!(got.lines().any(|l| l.starts_with("<22>smtpd-supervise[") && l.contains("]: ok ")), "{got}");
    assert!(got.contains("<22>sh: child line"), "{got}");
    assert!(got.contains("<20>smtpd-supervise[") && got.contains("warning:"), "{got}");
}

fn socket_activation() {
    let me = std::env::current_exe().unwrap();
    let port = free_port();
    let sa = which("systemd-socket-activate")
        .expect("systemd-socket-activate missing: install the Debian package systemd");
    let mut child = Command::new(sa)
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-E")
        .arg("SUPERVISE_TEST_PROG=serve")
        .arg(BIN)
        .args(["-W", "-w", "1", "0", "1", me.to_str().unwrap()])
        .env("SUPERVISE_TEST_PROG", "serve")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let log = collect(child.stderr.take().unwrap());
    let sup = Sup { child, port, log };
    // systemd-socket-activate listens first, then execs the supervisor on the
    // first connection.
    assert!(wait_for(Duration::from_secs(3), || std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .contains(&format!(":{port:04X} 00000000:0000 0A"))));
    let (s, g) = sup.session();
    assert!(g.starts_with("hello"), "{g}\n{}", sup.dump());
    assert_eq!(field(&g, "lport"), port.to_string());
    assert_eq!(say(&s, "quit"), "bye");
    assert!(sup.has_log(&format!("listen 127.0.0.1:{port}"), Duration::from_secs(1)), "{}", sup.dump());
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join(name)).find(|p| {
        std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    })
}

fn sd_notify_ready() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("smtpd-supervise-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let rx = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sup = start_with(&["-W", "-w", "1"], "serve", &[("NOTIFY_SOCKET", &format!("@{name}"))]);
    let mut buf = [0u8; 128];
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    // The worker must not see NOTIFY_SOCKET (nor HANDOFF_FD after taking it).
    sup.signal(nix::sys::signal::Signal::SIGTERM);
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert_eq!(sup.wait_exit(Duration::from_secs(5)), Some(0));
}

fn proxy_protocol_trusted_and_untrusted() {
    use smtpd::proxy::{encode_v1, encode_v2};
    let dir = tempfile::tempdir().unwrap();
    let rules = tmpfile(&dir, "rules", "127.0.0.1:allow,PROXY=\"1\"\n192.0.2.66:deny\n:allow,R=\"any\"\n");
    for mode in [&[][..], &["-W", "-w", "2"][..]] {
        let mut args = vec!["-a", "-x", rules.as_str()];
        args.extend_from_slice(mode);
        let sup = start(&args, "serve");
        let src: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let dst: SocketAddr = "198.51.100.1:25".parse().unwrap();
        for header in [encode_v1(src, dst), encode_v2(src, dst)] {
            let mut s = connect_from([127, 0, 0, 1], sup.addr());
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(&header).unwrap();
            s.write_all(b"quit\n").unwrap();
            let g = read_line(&s);
            assert_eq!(field(&g, "ip"), "192.0.2.7", "{g}\n{}", sup.dump());
            assert_eq!(field(&g, "port"), "40000");
            assert_eq!(field(&g, "lip"), "198.51.100.1");
            assert_eq!(field(&g, "lport"), "25");
            assert_eq!(field(&g, "R"), "any", "the real client's rule applies: {g}");
            assert_eq!(read_line(&s), "bye", "bytes after the header lost");
        }
        // The rules apply to the real client: a denied one behind the proxy.
        let mut s = connect_from([127, 0, 0, 1], sup.addr());
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&encode_v1("192.0.2.66:1".parse().unwrap(), dst)).unwrap();
        assert_eq!(read_line(&s), "");
        // Trusted peer without a valid header: dropped.
        let mut s = connect_from([127, 0, 0, 1], sup.addr());
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"EHLO x\r\n").unwrap();
        assert_eq!(read_line(&s), "");
        assert!(sup.has_log("PROXY from 127.0.0.1: no PROXY protocol header", Duration::from_secs(1)));
        // Untrusted peer: no header is read; the program sees the real address
        // and gets the PROXY line as client data (which smtpd-rs refuses).
        let (s, g) = sup.session_from([127, 0, 0, 2]);
        assert_eq!(field(&g, "ip"), "127.0.0.2", "{g}");
        let mut w = &s;
        w.write_all(&encode_v1(src, dst)).unwrap();
        assert!(read_line(&s).starts_with("unknown: PROXY TCP4 192.0.2.7"));
    }
}

fn status_on_sigusr1() {
    let sup = start(&["-W", "-w", "2", "-S", "1"], "serve");
    assert!(wait_for(Duration::from_secs(3), || children(sup.pid()).len() == 2));
    let (s, _) = sup.session();
    sup.signal(nix::sys::signal::Signal::SIGUSR1);
    assert!(sup.has_log("status: 1/40 idle 2 served 0 restarts 0", Duration::from_secs(2)), "{}", sup.dump());
    assert_eq!(say(&s, "quit"), "bye");
    drop(s);
    // And at the -S interval without a signal.
    assert!(sup.has_log("status: 0/40 idle 2 served 1 restarts 0", Duration::from_secs(3)), "{}", sup.dump());
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest: Vec<&str> = st.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    // Fields after the command: state is index 0, utime 11, stime 12.
    rest.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0) + rest.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

fn idle_supervisor_does_not_spin() {
    // Idle, with a session held, and in back-off: poll must sleep.
    let sup = start(&["-W", "-w", "2", "-T", "5"], "serve");
    let (_s, g) = sup.session();
    assert!(g.starts_with("hello"));
    let dying = start(&["-W", "-w", "2"], "die");
    assert!(dying.has_log("ALERT", Duration::from_secs(3)));
    std::thread::sleep(Duration::from_millis(300));
    let (a0, b0) = (cpu_ticks(sup.pid()), cpu_ticks(dying.pid()));
    std::thread::sleep(Duration::from_millis(1500));
    let (a1, b1) = (cpu_ticks(sup.pid()), cpu_ticks(dying.pid()));
    assert!(a1 - a0 <= 5, "idle supervisor used {} ticks in 1.5 s", a1 - a0);
    assert!(b1 - b0 <= 20, "supervisor in back-off used {} ticks in 1.5 s", b1 - b0);
}

fn storm_beyond_limits() {
    let sup = start(&["-W", "-w", "2", "-m", "100", "-c", "4", "-C", "3", "-Q"], "serve");
    assert!(wait_for(Duration::from_secs(3), || children(sup.pid()).len() == 2));
    std::thread::sleep(Duration::from_millis(200));
    let fds0 = fd_count(sup.pid());
    let addr = sup.addr();
    let served = Arc::new(Mutex::new(0usize));
    let threads: Vec<_> = (0..40)
        .map(|i| {
            let served = served.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { continue };
                    s.set_read_timeout(Some(Duration::from_secs(3))).ok();
                    let g = read_line(&s);
                    if g.starts_with("hello") {
                        if i % 3 == 0 {
                            let _ = say(&s, "sleep 2");
                        }
                        *served.lock().unwrap() += 1;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(*served.lock().unwrap() > 0);
    // Afterwards: serving, no leaked fds, no zombies.
    assert!(
        wait_for(Duration::from_secs(5), || fd_count(sup.pid()) <= fds0 && zombies(sup.pid()) == 0),
        "fds {} (before {fds0}), zombies {}",
        fd_count(sup.pid()),
        zombies(sup.pid())
    );
    // Sleeping sessions may still hold the per-address slots (-C 3) for a
    // moment: the supervisor must serve again once they end.
    let mut last = None;
    assert!(
        wait_for(Duration::from_secs(15), || {
            let (s, g) = sup.session();
            let ok = g.starts_with("hello");
            last = ok.then_some(s);
            ok
        }),
        "not serving after the storm"
    );
    assert_eq!(say(last.as_ref().unwrap(), "quit"), "bye");
}

fn soak_fds_and_memory_flat() {
    let n: usize = std::env::var("SUPERVISE_SOAK").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    // Hand-off with reuse: the full count; fork+exec per session (classic, and
    // hand-off with -m 1): a tenth of it, as each session costs an exec there.
    soak(&["-W", "-w", "2", "-m", "1000", "-c", "40", "-q"], n);
    soak(&["-W", "-w", "2", "-c", "40", "-q"], n / 10);
    soak(&["-c", "40", "-q"], n / 10);
}

fn soak(args: &[&str], n: usize) {
    let sup = start(args, "serve");
    let one = || {
        let s = TcpStream::connect(sup.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let g = read_line(&s);
        assert!(g.starts_with("hello"), "{g}");
        let _ = (&s).write_all(b"quit\n");
        assert_eq!(read_line(&s), "bye");
    };
    for _ in 0..200 {
        one();
    }
    std::thread::sleep(Duration::from_millis(300));
    let (fds0, rss0) = (fd_count(sup.pid()), rss_kb(sup.pid()));
    let t = Instant::now();
    for _ in 0..n {
        one();
    }
    let secs = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    let (fds1, rss1) = (fd_count(sup.pid()), rss_kb(sup.pid()));
    println!("  soak {args:?}: {n} sessions in {secs:.1} s; supervisor fds {fds0} -> {fds1}, RSS {rss0} -> {rss1} kB");
    assert!(fds1 <= fds0, "fd leak: {fds0} -> {fds1}");
    assert!(rss1 <= rss0 + 256, "memory grew: {rss0} -> {rss1} kB");
    assert_eq!(zombies(sup.pid()), 0);
}
