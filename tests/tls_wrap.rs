//! tls-wrap over loopback with openssl s_client as the peer: UCSPI-TLS
//! (STARTTLS) and implicit TLS, the three key types, SNI, client
//! certificates, refused old protocols, and bad input that must end the
//! connection cleanly without leaving the application hanging.

#[path = "support/tls.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::*;

const SESSION: &str = "ENV\nQUIT\n";

fn starttls(certs: &Certs, key: &str, opts: &[&str], client: &[&str]) -> (String, Outcome) {
    let (port, h) = serve_once(wrap_args(opts), certs.env(key));
    let mut a = vec!["-starttls", "smtp"];
    a.extend_from_slice(client);
    let out = s_client(port, &a, SESSION);
    (out, h.join().expect("server thread"))
}

#[test]
fn starttls_with_each_key_type() {
    let certs = Certs::new();
    for key in ["rsa", "ecdsa", "ed25519"] {
        let (out, o) = starttls(&certs, key, &[], &[]);
        assert!(out.contains("250-SSL_PROTOCOL=TLSv1.3"), "{key}: {out}\n{o:?}");
        assert!(out.contains("250-SSL_CIPHER=TLS_"), "{key}: {out}");
        assert!(out.contains("250-SSL_TLS_SNI_SERVERNAME=(unset)"), "{key}: {out}");
        assert!(out.contains("250-SSL_PEER_CERT_SUBJECT=(unset)"), "{key}: {out}");
        // The key's location never reaches the application.
        assert!(out.contains("250-HIDDEN=\r\n") || out.contains("250-HIDDEN=\n"), "{key}: {out}");
        assert!(out.contains("250 TLS=yes") && out.contains("221 bye"), "{key}: {out}");
        // prog starts with no signal blocked (SIGCHLD is tls-wrap's business).
        assert!(out.contains("250-SIGBLK=0000000000000000"), "{key}: {out}");
        assert_eq!(o.code, Some(0), "{key}: {o:?}");
    }
}

#[test]
fn tls12_gets_an_aead_ecdhe_suite() {
    let certs = Certs::new();
    let (out, o) = starttls(&certs, "rsa", &[], &["-tls1_2"]);
    assert!(out.contains("250-SSL_PROTOCOL=TLSv1.2"), "{out}");
    assert!(out.contains("250-SSL_CIPHER=ECDHE-RSA-AES") || out.contains("250-SSL_CIPHER=ECDHE-RSA-CHACHA20"), "{out}");
    assert!(out.contains("GCM") || out.contains("CHACHA20"), "{out}");
    assert_eq!(o.code, Some(0));
    // A CBC suite is not on offer.
    let (out, o) = starttls(&certs, "rsa", &[], &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA"]);
    assert!(!out.contains("TLS=yes"), "{out}");
    assert_eq!(o.code, Some(111), "{o:?}");
}

#[test]
fn tls11_is_refused_and_the_app_is_not_left_hanging() {
    let certs = Certs::new();
    let (out, o) = starttls(&certs, "rsa", &[], &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    assert!(!out.contains("TLS=yes"), "{out}");
    assert_eq!(o.code, Some(111), "{o:?}");
    assert!(o.stderr.contains("tls-wrap: warning:") && o.stderr.contains("handshake failed"), "{}", o.stderr);
    // The application saw EOF on the control socket and ended on its own.
    assert!(o.stderr.contains("tls_app: TLS failed: EOF on control fd"), "{}", o.stderr);
    assert!(o.elapsed < Duration::from_secs(5), "{o:?}");
}

#[test]
fn sni_chooses_the_certificate() {
    let certs = Certs::new();
    let mut env = certs.env("rsa");
    for n in ["a", "b"] {
        env.push((format!("CERTFILE:{n}.test"), certs.path(&format!("{n}.pem")).display().to_string()));
        env.push((format!("KEYFILE:{n}.test"), certs.path(&format!("{n}.key")).display().to_string()));
    }
    for (name, cn) in [("a.test", "CN = a.test"), ("b.test", "CN = b.test"), ("other.test", "CN = localhost")] {
        let (port, h) = serve_once(wrap_args(&[]), env.clone());
        let out = s_client(port, &["-starttls", "smtp", "-servername", name], SESSION);
        let o = h.join().expect("server");
        assert!(out.contains(&format!("depth=0 {cn}")), "{name}: {out}");
        assert!(out.contains(&format!("250-SSL_TLS_SNI_SERVERNAME={name}")), "{name}: {out}");
        assert!(out.contains("221 bye"), "{name}: {out}");
        assert_eq!(o.code, Some(0));
    }
    // -k 2: only the named certificates; an unknown name gets no handshake.
    let (port, h) = serve_once(wrap_args(&["-k", "2"]), env.clone());
    let out = s_client(port, &["-starttls", "smtp", "-servername", "other.test"], SESSION);
    assert!(!out.contains("TLS=yes"), "{out}");
    assert_eq!(h.join().expect("server").code, Some(111));
}

#[test]
fn client_certificate_checked_against_cafile() {
    let certs = Certs::new();
    let mut env = certs.env("ecdsa");
    env.push(("CAFILE".into(), certs.path("ca.pem").display().to_string()));
    let cert = certs.path("client.pem").display().to_string();
    let key = certs.path("client.key").display().to_string();

    // -Y, with a certificate: subject and hash reach the application.
    let (port, h) = serve_once(wrap_args(&["-Y"]), env.clone());
    let out = s_client(port, &["-starttls", "smtp", "-cert", &cert, "-key", &key], SESSION);
    assert!(out.contains("250-SSL_PEER_CERT_SUBJECT=/O=Test/CN=client"), "{out}");
    let der = std::process::Command::new("openssl")
        .args(["x509", "-in", &cert, "-outform", "der"])
        .output()
        .expect("openssl x509");
    let fp = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("openssl x509 -in '{cert}' -noout -fingerprint -sha256"))
        .output()
        .expect("fingerprint");
    let fp = String::from_utf8_lossy(&fp.stdout).trim().rsplit('=').next().unwrap_or("").replace(':', "").to_lowercase();
    assert!(!der.stdout.is_empty() && fp.len() == 64);
    assert!(out.contains(&format!("250-SSL_PEER_CERT_HASH=SHA256:{fp}")), "{out}");
    assert_eq!(h.join().expect("server").code, Some(0));

    // -Y without a certificate: fine, nothing to report.
    let (port, h) = serve_once(wrap_args(&["-Y"]), env.clone());
    let out = s_client(port, &["-starttls", "smtp"], SESSION);
    assert!(out.contains("250-SSL_PEER_CERT_SUBJECT=(unset)") && out.contains("TLS=yes"), "{out}");
    assert_eq!(h.join().expect("server").code, Some(0));

    // -y without a certificate: no session.
    let (port, h) = serve_once(wrap_args(&["-y"]), env.clone());
    let out = s_client(port, &["-starttls", "smtp"], SESSION);
    assert!(!out.contains("TLS=yes"), "{out}");
    assert_eq!(h.join().expect("server").code, Some(111));

    // A certificate from another CA: refused.
    let other = certs.path("a.pem").display().to_string();
    let otherkey = certs.path("a.key").display().to_string();
    let (port, h) = serve_once(wrap_args(&["-Y"]), env);
    let out = s_client(port, &["-starttls", "smtp", "-cert", &other, "-key", &otherkey], SESSION);
    assert!(!out.contains("TLS=yes"), "{out}");
    assert_eq!(h.join().expect("server").code, Some(111));
}

#[test]
fn implicit_tls_sets_the_environment() {
    let certs = Certs::new();
    let (port, h) = serve_once(wrap_args(&["-i"]), certs.env("ecdsa"));
    let out = s_client(port, &["-servername", "mx.test"], SESSION);
    assert!(out.contains("220 test ESMTP"), "{out}");
    assert!(out.contains("250-SSL_PROTOCOL=TLSv1.3"), "{out}");
    assert!(out.contains("250-SSL_TLS_SNI_SERVERNAME=mx.test"), "{out}");
    assert!(out.contains("250 TLS=yes"), "{out}");
    assert_eq!(h.join().expect("server").code, Some(0));
}

#[test]
fn lower_case_y_needs_no_facts() {
    let certs = Certs::new();
    let (port, h) = serve_once(wrap_args(&[]), certs.env("ecdsa"));
    let mut s = connect(port);
    expect(&mut s, "220 ");
    s.write_all(b"STARTTLS-Y\r\n").expect("write");
    expect(&mut s, "220 ready");
    drop(s);
    let o = h.join().expect("server");
    assert_eq!(o.code, Some(111), "{o:?}");
    // The app got EOF on SSLREADFD and ended by itself.
    assert!(o.stderr.contains("tls_app: eof"), "{}", o.stderr);
}

#[test]
fn large_transfers_both_ways() {
    let certs = Certs::new();
    let (port, h) = serve_once(wrap_args(&[]), certs.env("ecdsa"));
    let big = "y".repeat(4000);
    let mut input = String::from("BIG 300000\n");
    for i in 0..50 {
        input.push_str(&format!("ECHO {i} {big}\n"));
    }
    input.push_str("QUIT\n");
    let out = s_client(port, &["-starttls", "smtp"], &input);
    let longest = out.lines().map(str::len).max().unwrap_or(0);
    assert!(longest >= 300_000, "longest line {longest}");
    for i in 0..50 {
        assert!(out.contains(&format!("250 {i} {big}")), "echo {i} lost");
    }
    assert!(out.contains("221 bye"));
    assert_eq!(h.join().expect("server").code, Some(0));
}

#[test]
fn plaintext_session_passes_through() {
    let certs = Certs::new();
    let (port, h) = serve_once(wrap_args(&[]), certs.env("ecdsa"));
    let mut s = connect(port);
    expect(&mut s, "220 test ESMTP");
    s.write_all(b"EHLO x\r\n").expect("write");
    expect(&mut s, "250 STARTTLS");
    s.write_all(b"ENV\r\nQUIT\r\n").expect("write");
    let rest = read_all(&mut s);
    assert!(rest.contains("250 TLS=no") && rest.contains("221 bye"), "{rest}");
    let o = h.join().expect("server");
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stderr.is_empty() || !o.stderr.contains("tls-wrap"), "{}", o.stderr);
}

#[test]
fn garbage_instead_of_client_hello() {
    let certs = Certs::new();
    let (port, h) = serve_once(wrap_args(&[]), certs.env("ecdsa"));
    let mut s = to_starttls(port);
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
    let _ = read_all(&mut s);
    let o = h.join().expect("server");
    assert_eq!(o.code, Some(111), "{o:?}");
    assert_eq!(o.stderr.matches("tls-wrap: warning:").count(), 1, "{}", o.stderr);
    assert!(o.stderr.contains("handshake failed"), "{}", o.stderr);
    assert!(o.stderr.contains("tls_app: TLS failed"), "{}", o.stderr);
    assert!(o.elapsed < Duration::from_secs(5), "{o:?}");
}

#[test]
fn peer_closing_mid_record() {
    let certs = Certs::new();
    let (port, h) = serve_once(wrap_args(&[]), certs.env("ecdsa"));
    let mut s = to_starttls(port);
    // A handshake record header announcing 512 bytes, then 5 of them.
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03]).expect("write");
    drop(s);
    let o = h.join().expect("server");
    assert_eq!(o.code, Some(111), "{o:?}");
    assert!(o.stderr.contains("peer closed the connection during the handshake"), "{}", o.stderr);
    assert!(o.elapsed < Duration::from_secs(5), "{o:?}");
}

#[test]
fn slow_handshake_times_out() {
    let certs = Certs::new();
    let (port, h) = serve_once(wrap_args(&["-K", "700"]), certs.env("ecdsa"));
    let mut s = to_starttls(port);
    s.write_all(&[0x16, 0x03, 0x01]).expect("write"); // then nothing
    let rest = read_all(&mut s);
    assert!(rest.is_empty(), "{rest}");
    let o = h.join().expect("server");
    assert_eq!(o.code, Some(111), "{o:?}");
    assert!(o.stderr.contains("handshake timed out"), "{}", o.stderr);
    assert!(o.elapsed >= Duration::from_millis(700) && o.elapsed < Duration::from_secs(6), "{o:?}");
}

#[test]
fn implicit_garbage_never_starts_the_app() {
    let certs = Certs::new();
    let (port, h) = serve_once(wrap_args(&["-i"]), certs.env("ecdsa"));
    let mut s = connect(port);
    s.write_all(b"EHLO plaintext\r\n").expect("write");
    let rest = read_all(&mut s);
    assert!(!rest.contains("220"), "{rest}");
    let o = h.join().expect("server");
    assert_eq!(o.code, Some(111), "{o:?}");
    assert!(!o.stderr.contains("tls_app"), "{}", o.stderr);
}

#[test]
fn bad_configuration_is_fatal_before_the_app_starts() {
    let (port, h) = serve_once(wrap_args(&[]), vec![("CERTFILE".into(), "/nonexistent.pem".into()), ("KEYFILE".into(), "/nonexistent.key".into())]);
    let mut s = connect(port);
    let rest = read_all(&mut s);
    assert!(rest.is_empty(), "{rest}");
    let o = h.join().expect("server");
    assert_eq!(o.code, Some(111), "{o:?}");
    assert!(o.stderr.starts_with("tls-wrap: fatal: unable to read certificates from /nonexistent.pem"), "{}", o.stderr);
    let (port, h) = serve_once(wrap_args(&[]), vec![]);
    drop(connect(port));
    let o = h.join().expect("server");
    assert_eq!(o.code, Some(100), "{o:?}");
}

#[test]
fn under_tcpserver() {
    need("tcpserver", "ucspi-tcp");
    let certs = Certs::new();
    let mut child = std::process::Command::new("tcpserver")
        .args(["-1", "-R", "-H", "-l", "localhost", "-c", "2", "127.0.0.1", "0", TLS_WRAP, "python3", &app()])
        .envs(certs.env("rsa"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tcpserver");
    let mut line = String::new();
    {
        use std::io::BufRead;
        let mut r = std::io::BufReader::new(child.stdout.as_mut().expect("stdout"));
        r.read_line(&mut line).expect("port line");
    }
    let port: u16 = line.trim().parse().expect("port");
    let out = s_client(port, &["-starttls", "smtp"], SESSION);
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.contains("250-SSL_PROTOCOL=TLSv1.3") && out.contains("221 bye"), "{out}");
}

#[test]
fn handoff_worker_under_smtpd_supervise() {
    // smtpd-supervise -W: tls-wrap waits with its keys loaded and gets each
    // connection handed over (doc/PROTOCOLS.md section 4), with TCPREMOTEIP
    // in its environment for the app; both UCSPI-TLS and implicit TLS.
    let certs = Certs::new();
    for (opts, client) in [(vec![], vec!["-starttls", "smtp"]), (vec!["-i"], vec![])] {
        let mut args = vec!["-1", "-W", "-w", "2", "127.0.0.1", "0", TLS_WRAP];
        args.extend_from_slice(&opts);
        let app = app();
        args.extend_from_slice(&["python3", &app]);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_smtpd-supervise"))
            .args(&args)
            .envs(certs.env("ecdsa"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("smtpd-supervise");
        let mut line = String::new();
        {
            use std::io::BufRead;
            let mut r = std::io::BufReader::new(child.stdout.as_mut().expect("stdout"));
            r.read_line(&mut line).expect("port line");
        }
        let port: u16 = line.trim().parse().expect("port");
        // Three sessions in turn: each one a fresh worker that was waiting.
        let outs: Vec<String> = (0..3).map(|_| s_client(port, &client, SESSION)).collect();
        let _ = child.kill();
        let _ = child.wait();
        for out in outs {
            assert!(out.contains("SSL_PROTOCOL=TLSv1.3") && out.contains("221 bye"), "{opts:?}: {out}");
            assert!(out.contains("TCPREMOTEIP=127.0.0.1"), "{opts:?}: {out}");
        }
    }
}

#[test]
fn privileges_app_and_tls_wrap_under_their_own_uids() {
    let certs = Certs::new();
    let mut env = certs.env("ecdsa");
    let key = certs.path("ecdsa.key").display().to_string();
    env.push(("TEST_KEYPATH".into(), key.clone()));
    if nix::unistd::geteuid().is_root() {
        env.push(("TLS_UID".into(), "65534".into()));
        env.push(("TLS_GID".into(), "65534".into()));
        let (port, h) = serve_once(wrap_args(&["-u", "65533", "-g", "65533"]), env.clone());
        let out = s_client(port, &["-starttls", "smtp"], SESSION);
        assert!(out.contains("250-APPUID=65533"), "{out}");
        assert!(out.contains("250-PARENTUID=65534"), "{out}");
        assert!(out.contains("250-KEYREAD=denied"), "{out}");
        assert!(out.contains("250-PARENTMEM=denied"), "{out}");
        assert!(out.contains("TLS=yes"), "{out}");
        assert_eq!(h.join().expect("server").code, Some(0));
        // Implicit TLS: the same split (prog started by a launcher that
        // became prog's uid before the handshake).
        let (port, h) = serve_once(wrap_args(&["-i", "-u", "65533", "-g", "65533"]), env);
        let out = s_client(port, &[], SESSION);
        assert!(out.contains("250-APPUID=65533"), "{out}");
        assert!(out.contains("250-PARENTUID=65534"), "{out}");
        assert!(out.contains("250-KEYREAD=denied"), "{out}");
        assert!(out.contains("250-PARENTMEM=denied"), "{out}");
        assert!(out.contains("250-SSL_PROTOCOL=TLSv1.3") && out.contains("TLS=yes"), "{out}");
        assert_eq!(h.join().expect("server").code, Some(0));
    } else {
        // Not root: no uid change possible; tls-wrap is still non-dumpable.
        let (port, h) = serve_once(wrap_args(&[]), env);
        let out = s_client(port, &["-starttls", "smtp"], SESSION);
        assert!(out.contains("250-PARENTMEM=denied"), "{out}");
        assert_eq!(h.join().expect("server").code, Some(0));
    }
}

/// CPU time (user + system, in clock ticks) of the tls-wrap whose command
/// line carries `marker`.
fn cpu_ticks(marker: &str) -> u64 {
    let pid = std::process::Command::new("pgrep").args(["-n", "-f", marker]).output().expect("pgrep");
    let pid = String::from_utf8_lossy(&pid.stdout).trim().to_string();
    assert!(!pid.is_empty(), "no process {marker}");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0)
}

#[test]
fn idle_sessions_do_not_spin() {
    let certs = Certs::new();
    let marker = "tls-wrap -K 61234";
    let (port, h) = serve_once(wrap_args(&["-K", "61234"]), certs.env("ecdsa"));
    // Plaintext phase: tls-wrap waits on the control socket only.
    let mut s = connect(port);
    expect(&mut s, "220 ");
    std::thread::sleep(Duration::from_millis(300));
    let t0 = cpu_ticks(marker);
    std::thread::sleep(Duration::from_millis(1500));
    let t1 = cpu_ticks(marker);
    assert!(t1 - t0 <= 5, "plaintext phase used {} ticks", t1 - t0);
    drop(s);
    h.join().expect("server");

    // TLS phase: an idle relay.
    let (port, h) = serve_once(wrap_args(&["-K", "61234"]), certs.env("ecdsa"));
    let mut child = std::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-crlf", "-starttls", "smtp", "-connect", &format!("127.0.0.1:{port}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl");
    std::thread::sleep(Duration::from_millis(1500));
    let t0 = cpu_ticks(marker);
    std::thread::sleep(Duration::from_millis(1500));
    let t1 = cpu_ticks(marker);
    let _ = child.stdin.as_mut().expect("stdin").write_all(b"QUIT\n");
    let _ = child.wait();
    assert!(t1 - t0 <= 5, "TLS relay used {} ticks while idle", t1 - t0);
    assert_eq!(h.join().expect("server").code, Some(0));
}

#[test]
fn under_systemd_socket_activation() {
    need("systemd-socket-activate", "systemd");
    let certs = Certs::new();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = std::process::Command::new("systemd-socket-activate");
    cmd.args(["-a", "--inetd", "-l", &listen]);
    for (k, v) in certs.env("ecdsa") {
        cmd.arg("-E").arg(format!("{k}={v}"));
    }
    let mut child = cmd
        .args([TLS_WRAP, "-i", "/usr/bin/python3", &app()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("systemd-socket-activate");
    let mut up = false;
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = if up { s_client(port, &[], SESSION) } else { String::new() };
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "systemd-socket-activate did not listen on {listen}");
    assert!(out.contains("250-SSL_PROTOCOL=TLSv1.3") && out.contains("221 bye"), "{out}");
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    s
}

fn expect(s: &mut TcpStream, what: &str) {
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !String::from_utf8_lossy(&got).contains(what) {
        match s.read(&mut b) {
            Ok(1) => got.push(b[0]),
            _ => panic!("wanted {what:?}, got {:?}", String::from_utf8_lossy(&got)),
        }
    }
    // Finish the line.
    while got.last() != Some(&b'\n') {
        match s.read(&mut b) {
            Ok(1) => got.push(b[0]),
            _ => break,
        }
    }
}

fn read_all(s: &mut TcpStream) -> String {
    let mut v = Vec::new();
    let _ = s.read_to_end(&mut v);
    String::from_utf8_lossy(&v).into_owned()
}

fn to_starttls(port: u16) -> TcpStream {
    let mut s = connect(port);
    expect(&mut s, "220 ");
    s.write_all(b"STARTTLS\r\n").expect("write");
    expect(&mut s, "220 ready");
    s
}

/// Uid and gid lines of /proc/PID/status ("Uid:\t0\t0\t0\t0").
fn ids_of(pid: u32) -> (String, String) {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| st.lines().find(|l| l.starts_with(k)).map(|l| l[k.len()..].split_whitespace().collect::<Vec<_>>().join(" ")).unwrap_or_default();
    (field("Uid:"), field("Gid:"))
}

/// Issue 16.4: with -i, tls-wrap parses the handshake under TLS_UID/TLS_GID,
/// not as root: it drops before reading a byte from the network.
#[test]
fn implicit_handshake_runs_under_tls_uid() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: no uid change to check");
        return;
    }
    let certs = Certs::new();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let out = theirs.try_clone().expect("clone");
    let mut child = std::process::Command::new(TLS_WRAP)
        .args(wrap_args(&["-i", "-u", "65533", "-g", "65533"]))
        .envs(certs.env("ecdsa"))
        .env("TLS_UID", "65534")
        .env("TLS_GID", "65534")
        .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(out)))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tls-wrap");
    // A handshake record header announcing 512 bytes, and 5 of them.
    let mut s = ours;
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03]).expect("write");
    let want = ("65534 65534 65534 65534".to_string(), "65534 65534 65534 65534".to_string());
    let mut ids = ids_of(child.id());
    for _ in 0..100 {
        if ids == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        ids = ids_of(child.id());
    }
    // Mid-handshake still: the process has read part of a record.
    std::thread::sleep(Duration::from_millis(200));
    let during = ids_of(child.id());
    drop(s);
    let st = child.wait().expect("wait");
    let mut err = String::new();
    let _ = child.stderr.take().expect("stderr").read_to_string(&mut err);
    assert_eq!(during, want, "tls-wrap's ids during the handshake; stderr: {err}");
    assert_eq!(st.code(), Some(111), "{err}");
    assert!(err.contains("peer closed the connection during the handshake"), "{err}");
    assert!(!err.contains("tls_app"), "prog never started: {err}");
}

/// Issue 16.5: privileges are given whole or refused at start (exit 100,
/// before anything else): a uid without a gid, a gid without a uid, TLS_UID
/// without TLS_GID and the reverse; names are resolved; one warning line
/// when, as root, prog or the TLS parsing would stay root.
#[test]
fn partial_privileges_are_refused_and_root_is_warned_about() {
    let certs = Certs::new();
    let run = |opts: &[&str], extra: &[(&str, &str)]| {
        let (port, h) = serve_once(wrap_args(opts), certs.env("ecdsa").into_iter().chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string()))).collect());
        let out = s_client(port, &["-starttls", "smtp"], SESSION);
        (out, h.join().expect("server"))
    };
    for (opts, extra, what) in [
        (&["-u", "4242"][..], &[][..], "-u 4242 needs -g"),
        (&["-g", "4242"], &[], "-g needs -u"),
        (&["-u", "no-such-user-here"], &[], "unknown user: no-such-user-here"),
        (&[], &[("TLS_UID", "65534")], "TLS_UID is set but TLS_GID is not"),
        (&[], &[("TLS_GID", "65534")], "TLS_GID is set but TLS_UID is not"),
    ] {
        let (out, o) = run(opts, extra);
        assert_eq!(o.code, Some(100), "{opts:?} {extra:?}: {}", o.stderr);
        assert!(o.stderr.starts_with("tls-wrap: fatal: ") && o.stderr.contains(what), "{opts:?}: {}", o.stderr);
        assert!(!out.contains("220 test"), "prog never started: {out}");
    }
    if nix::unistd::geteuid().is_root() {
        // As root with neither: warned, once.
        let (out, o) = run(&[], &[]);
        assert!(out.contains("221 bye") && o.root_warning, "{out}");
        // A user name and TLS ids by name: no warning, the ids applied.
        let (out, o) = run(&["-u", "nobody"], &[("TLS_UID", "nobody"), ("TLS_GID", "nogroup")]);
        assert!(!o.root_warning, "{}", o.stderr);
        assert!(out.contains("250-APPUID=65534") && out.contains("250-PARENTUID=65534"), "{out}");
    }
}

/// A TLS client in Python (the real peer): `n` sessions to `port`, each
/// reading the greeting, sending `send`, then per `how`: `close` (no
/// close_notify), `notify` (close_notify, then close) or `reset` (RST once
/// the first bytes of the answer came).
const PY_CLIENT: &str = r#"
import socket, ssl, struct, sys
port, n, how, send = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4].encode()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    t = ctx.wrap_socket(s)
    g = b""
    while not g.endswith(b"\n"):
        g += t.recv(100)
    t.sendall(send.replace(b"|", b"\r\n"))
    if how == "notify":
        try:
            t.unwrap()
        except Exception:
            pass
    if how == "reset":
        t.recv(1000)  # prog is in the middle of its answer
        t.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    t.close()
"#;

/// Issue 17.14: a client that sends QUIT and closes without waiting for the
/// reply (as smtp-remote does) is a normal end: no warning from tls-wrap,
/// with or without close_notify. A peer that resets a session prog had not
/// finished stays a warning.
#[test]
fn quit_and_close_is_not_a_warning() {
    need("tcpserver", "ucspi-tcp");
    let certs = Certs::new();
    let err = certs.path("tcpserver.err");
    let mut child = std::process::Command::new("tcpserver")
        .args(["-1", "-R", "-H", "-c", "4", "127.0.0.1", "0", TLS_WRAP, "-i", "-v", "2", "/usr/bin/python3", &app()])
        .envs(certs.env("ecdsa"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("tcpserver");
    let mut line = String::new();
    {
        use std::io::BufRead;
        let mut r = std::io::BufReader::new(child.stdout.as_mut().expect("stdout"));
        r.read_line(&mut line).expect("port line");
    }
    let port = line.trim().to_string();
    let client = |n: &str, how: &str, send: &str| {
        let st = std::process::Command::new("/usr/bin/python3")
            .args(["-c", PY_CLIENT, &port, n, how, send])
            .status()
            .expect("python3");
        assert!(st.success(), "client {how}");
    };
    client("20", "close", "QUIT|");
    client("20", "notify", "QUIT|");
    client("1", "reset", "BIG 4000000|");
    let log = || std::fs::read_to_string(&err).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log().matches("TLS_AES").count() < 41 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();
    let text: String = log().lines().filter(|l| !l.contains(ROOT_WARNING)).map(|l| format!("{l}\n")).collect();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("tls-wrap: warning:")).collect();
    assert_eq!(warnings.len(), 1, "only the reset session warns:\n{text}");
    assert!(warnings[0].contains("connection with 127.0.0.1 ended: "), "{text}");
    assert_eq!(text.matches("TLS_AES").count(), 41, "{text}");
}
