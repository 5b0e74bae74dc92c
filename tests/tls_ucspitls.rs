//! smtpd::io::ucspitls against tls-wrap: this test binary runs itself under
//! tls-wrap as a small SMTP-like application (`ucspitls_app_entry` below,
//! active only when TLS_TEST_APP is set) that uses the library's UcspiTls to
//! start TLS; openssl s_client drives it.

#[path = "support/tls.rs"]
mod support;

use std::io::{Read, Write};
use std::time::Duration;

use smtpd::io::ucspitls::{TlsInfo, UcspiTls, READY, STARTTLS_PIPELINED};
use support::*;

/// Entry point of the application mode (a no-op in the normal test run).
#[test]
fn ucspitls_app_entry() {
    if std::env::var_os("TLS_TEST_APP").is_none() {
        return;
    }
    let get = |k: &str| std::env::var(k).ok();
    let mut tls = UcspiTls::from_env(&get).expect("UCSPI-TLS fds");
    let mut info = TlsInfo::from_env(&get);
    let mut rd = smtpd::sys::take_fd(0).expect("fd 0");
    // libtest prints on fd 1, so the wrapper moved the network's write side
    // to fd 29 and fd 1 to stderr; after STARTTLS the library puts the TLS
    // pipe on fd 1, which is what the app then writes to.
    let mut wr = smtpd::sys::take_fd(29).expect("fd 29");
    let mut buf: Vec<u8> = Vec::new();
    let _ = wr.write_all(b"220 app ready\r\n");
    loop {
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            let mut chunk = [0u8; 4096];
            match rd.read(&mut chunk) {
                Ok(0) | Err(_) => std::process::exit(0),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let line: Vec<u8> = buf.drain(..=nl).collect();
        let line = String::from_utf8_lossy(&line).trim_end().to_string();
        match line.as_str() {
            "STARTTLS" | "STARTTLS-y" => {
                if !buf.is_empty() {
                    let _ = wr.write_all(STARTTLS_PIPELINED.as_bytes());
                    continue;
                }
                let Some(t) = tls.take() else {
                    let _ = wr.write_all(b"454 4.7.0 no TLS\r\n");
                    continue;
                };
                let _ = wr.write_all(READY.as_bytes());
                match t.start(line == "STARTTLS", Duration::from_secs(10)) {
                    Ok(i) => {
                        info = i.or(Some(TlsInfo { protocol: "(y)".into(), ..Default::default() }));
                        wr = smtpd::sys::take_fd(1).expect("fd 1 after STARTTLS");
                        buf.clear(); // CVE-2011-0411
                    }
                    Err(e) => {
                        eprintln!("app: {e}");
                        std::process::exit(4);
                    }
                }
            }
            "INFO" => {
                let s = match &info {
                    Some(i) => format!("250 {} {} sni={:?} peer={:?} verified={}\r\n", i.protocol, i.cipher, i.sni, i.peer_subject, i.client_cert_verified()),
                    None => "250 plaintext\r\n".to_string(),
                };
                let _ = wr.write_all(s.as_bytes());
            }
            "QUIT" => {
                let _ = wr.write_all(b"221 bye\r\n");
                std::process::exit(0);
            }
            _ => {
                let _ = wr.write_all(format!("250 echo {line}\r\n").as_bytes());
            }
        }
    }
}

fn app_args(opts: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
    v.extend(["/bin/bash", "-c", "exec \"$0\" \"$@\" 29>&1 1>&2"].map(String::from));
    v.push(std::env::current_exe().expect("exe").display().to_string());
    v.extend(["ucspitls_app_entry", "--exact", "--nocapture", "--test-threads=1"].map(String::from));
    v
}

fn app_env(certs: &Certs) -> Vec<(String, String)> {
    let mut e = certs.env("ecdsa");
    e.push(("TLS_TEST_APP".into(), "1".into()));
    e
}

#[test]
fn library_starts_tls_under_tls_wrap() {
    let certs = Certs::new();
    let (port, h) = serve_once(app_args(&[]), app_env(&certs));
    let out = s_client(port, &["-starttls", "smtp", "-servername", "mx.test"], "INFO\nQUIT\n");
    assert!(out.contains("250 TLSv1.3 TLS_"), "{out}");
    assert!(out.contains("sni=Some(\"mx.test\")") && out.contains("verified=false"), "{out}");
    assert!(out.contains("221 bye"), "{out}");
    assert_eq!(h.join().expect("server").code, Some(0));
}

#[test]
fn lower_case_y_and_implicit_tls() {
    let certs = Certs::new();
    let (port, h) = serve_once(app_args(&["-i"]), app_env(&certs));
    let out = s_client(port, &[], "INFO\nQUIT\n");
    assert!(out.contains("250 TLSv1.3"), "{out}");
    assert_eq!(h.join().expect("server").code, Some(0));
}

#[test]
fn pipelined_starttls_is_refused_and_injection_gets_no_answer() {
    let certs = Certs::new();
    let (port, h) = serve_once(app_args(&[]), app_env(&certs));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut got = Vec::new();
    let mut b = [0u8; 256];
    while !got.ends_with(b"\r\n") {
        let n = s.read(&mut b).expect("greeting");
        assert!(n > 0);
        got.extend_from_slice(&b[..n]);
    }
    s.write_all(b"STARTTLS\r\nINFO\r\n").expect("write");
    let mut reply = Vec::new();
    while reply.iter().filter(|&&c| c == b'\n').count() < 2 {
        let n = s.read(&mut b).expect("replies");
        assert!(n > 0, "{}", String::from_utf8_lossy(&reply));
        reply.extend_from_slice(&b[..n]);
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("503 5.5.1"), "{reply}");
    assert!(reply.contains("250 plaintext"), "{reply}");
    s.write_all(b"QUIT\r\n").expect("write");
    drop(s);
    assert_eq!(h.join().expect("server").code, Some(0));
}

#[test]
fn failed_handshake_is_seen_as_eof_by_the_library() {
    let certs = Certs::new();
    let (port, h) = serve_once(app_args(&[]), app_env(&certs));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut b = [0u8; 256];
    let _ = s.read(&mut b).expect("greeting");
    s.write_all(b"STARTTLS\r\n").expect("write");
    let _ = s.read(&mut b).expect("220");
    s.write_all(b"\x16\x03\x01\x00\x05hello").expect("garbage");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let o = h.join().expect("server");
    assert_eq!(o.code, Some(111), "{o:?}");
    assert!(o.stderr.contains("app: TLS handshake failed"), "{}", o.stderr);
}
