//! Test helpers for smtp-remote: run the binary, a scripted SMTP server on
//! loopback (with STARTTLS through rustls), a fake DNS server on loopback
//! (UDP and TCP, built with the `domain` crate), a throwaway certificate.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_smtp-remote");

/// The report with NULs shown as `|`, and the exit code.
pub struct Run {
    pub report: String,
    pub code: i32,
    pub stderr: String,
}

/// Run smtp-remote with a clean environment plus `env`, `msg` on stdin,
/// killed after 60 s whatever happens.
pub fn run(args: &[&str], env: &[(&str, &str)], msg: &[u8]) -> Run {
    let mut c = Command::new(BIN);
    c.args(args).env_clear().env("HELOHOST", "client.test").env("DNS_SERVER", "127.0.0.1:9").env("DNS_TIMEOUT", "2");
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn smtp-remote");
    let mut stdin = child.stdin.take().unwrap();
    let msg = msg.to_vec();
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(&msg);
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("smtp-remote did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = w.join();
    let out = child.wait_with_output().unwrap();
    // qmail-rspawn makes fd 2 a copy of fd 1: nothing may ever go there.
    assert!(out.stderr.is_empty(), "smtp-remote wrote on stderr: {}", String::from_utf8_lossy(&out.stderr));
    Run {
        report: String::from_utf8_lossy(&out.stdout).replace('\0', "|"),
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What the scripted server does for one event.
pub enum Act {
    /// The normal answer of a well-behaved server.
    Default,
    /// These exact bytes.
    Send(Vec<u8>),
    /// Close the connection now.
    Close,
    /// Say nothing, keep the connection open (until the client goes away).
    Hang,
}

pub fn send(s: &str) -> Act {
    Act::Send(s.as_bytes().to_vec())
}

/// A scripted SMTP server. Events given to the script: `CONNECT`, each
/// command line as received (without CR LF), `DATA-END` after the final dot.
pub struct Fake {
    pub addr: SocketAddr,
    /// Every command line received, in order (`TLS` marks the handshake).
    pub log: Arc<Mutex<Vec<String>>>,
    /// Each message as received between DATA and the dot (still dot-stuffed).
    pub data: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Fake {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    pub fn messages(&self) -> Vec<Vec<u8>> {
        self.data.lock().unwrap().clone()
    }
}

pub type Script = Box<dyn FnMut(&str) -> Act + Send>;

/// Start a server on `ip:port` (port 0: any) offering `ext` EHLO keywords,
/// answering per `script`. `tls`: a server config for STARTTLS (then
/// STARTTLS is offered before TLS and not after).
pub fn fake_on(ip: &str, port: u16, ext: &[&str], tls: Option<Arc<rustls::ServerConfig>>, script: Script) -> Fake {
    let l = TcpListener::bind((ip, port)).expect("bind fake smtp");
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let data = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (log2, data2, stop2) = (log.clone(), data.clone(), stop.clone());
    let ext: Vec<String> = ext.iter().map(|s| s.to_string()).collect();
    let script = Arc::new(Mutex::new(script));
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
            match l.accept() {
                Ok((s, _)) => {
                    let (log, data, ext, script, tls) = (log2.clone(), data2.clone(), ext.clone(), script.clone(), tls.clone());
                    std::thread::spawn(move || {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                        let tcp = s.try_clone().unwrap();
                        session(Box::new(s), Some(tcp), &ext, tls, &script, &log, &data)
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Fake { addr, log, data, stop }
}

pub fn fake(ext: &[&str], script: impl FnMut(&str) -> Act + Send + 'static) -> Fake {
    fake_on("127.0.0.1", 0, ext, None, Box::new(script))
}

/// The same scripted server on a Unix socket at `path` (no STARTTLS): an
/// LMTP server as Dovecot's `/var/run/dovecot/lmtp`. Its script answers
/// `LHLO` by default as EHLO, and `DATA-END` with one line per recipient
/// when the test says so.
pub fn fake_unix(path: &Path, ext: &[&str], script: impl FnMut(&str) -> Act + Send + 'static) -> Fake {
    let l = std::os::unix::net::UnixListener::bind(path).expect("bind fake unix socket");
    l.set_nonblocking(true).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let data = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (log2, data2, stop2) = (log.clone(), data.clone(), stop.clone());
    let ext: Vec<String> = ext.iter().map(|s| s.to_string()).collect();
    let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Box::new(script)));
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
            match l.accept() {
                Ok((s, _)) => {
                    let (log, data, ext, script) = (log2.clone(), data2.clone(), ext.clone(), script.clone());
                    std::thread::spawn(move || {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                        session(Box::new(s), None, &ext, None, &script, &log, &data)
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Fake { addr: "0.0.0.0:0".parse().unwrap(), log, data, stop }
}

trait Rw: Read + Write + Send {}
impl<T: Read + Write + Send> Rw for T {}

fn session(
    s: Box<dyn Rw>,
    tcp: Option<TcpStream>,
    ext: &[String],
    tls: Option<Arc<rustls::ServerConfig>>,
    script: &Mutex<Script>,
    log: &Mutex<Vec<String>>,
    data: &Mutex<Vec<Vec<u8>>>,
) {
    let mut io: BufReader<Box<dyn Rw>> = BufReader::new(s);
    let mut in_tls = false;
    let act = |ev: &str| (script.lock().unwrap())(ev);
    // Returns false when the connection must end.
    let reply = |io: &mut BufReader<Box<dyn Rw>>, a: Act, default: &str| -> bool {
        let bytes = match a {
            Act::Default => default.as_bytes().to_vec(),
            Act::Send(b) => b,
            Act::Close => return false,
            Act::Hang => {
                let mut b = [0u8; 1];
                let _ = io.get_mut().read(&mut b);
                std::thread::sleep(Duration::from_secs(5));
                return false;
            }
        };
        io.get_mut().write_all(&bytes).is_ok() && io.get_mut().flush().is_ok()
    };
    if !reply(&mut io, act("CONNECT"), "220 fake.test ESMTP\r\n") {
        return;
    }
    loop {
        let mut line = Vec::new();
        match io.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let cmd = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string();
        log.lock().unwrap().push(cmd.clone());
        let verb = cmd.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let default = match verb.as_str() {
            "EHLO" | "LHLO" => {
                let mut kw: Vec<String> = ext.to_vec();
                if tls.is_some() && !in_tls {
                    kw.push("STARTTLS".into());
                }
                let mut r = String::from("250");
                if kw.is_empty() {
                    r.push_str(" fake.test\r\n");
                } else {
                    r.push_str("-fake.test\r\n");
                    for (i, k) in kw.iter().enumerate() {
                        r.push_str(&format!("250{}{k}\r\n", if i + 1 == kw.len() { ' ' } else { '-' }));
                    }
                }
                r
            }
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" | "XFORWARD" => "250 ok\r\n".into(),
            "XCLIENT" => "220 fake.test ESMTP\r\n".into(),
            "DATA" => "354 go\r\n".into(),
            "STARTTLS" => "220 ready\r\n".into(),
            "QUIT" => "221 bye\r\n".into(),
            "AUTH" => "535 no\r\n".into(),
            _ => "500 what\r\n".into(),
        };
        let a = act(&cmd);
        let sent_354 = matches!(&a, Act::Default) && verb == "DATA" || matches!(&a, Act::Send(b) if b.starts_with(b"354"));
        let starting_tls = verb == "STARTTLS" && (matches!(&a, Act::Default) || matches!(&a, Act::Send(b) if b.starts_with(b"220")));
        if !reply(&mut io, a, &default) {
            return;
        }
        if verb == "QUIT" {
            return;
        }
        if starting_tls {
            let (Some(cfg), Some(tcp)) = (tls.clone(), tcp.as_ref()) else { return };
            let conn = rustls::ServerConnection::new(cfg).unwrap();
            let sock = tcp.try_clone().unwrap();
            let mut stream = rustls::StreamOwned::new(conn, sock);
            // Drive the handshake now, so a failure ends the session here.
            while stream.conn.is_handshaking() {
                if stream.conn.complete_io(&mut stream.sock).is_err() {
                    log.lock().unwrap().push("TLS-FAILED".into());
                    return;
                }
            }
            log.lock().unwrap().push("TLS".into());
            in_tls = true;
            io = BufReader::new(Box::new(stream));
            continue;
        }
        if sent_354 {
            let mut msg = Vec::new();
            loop {
                let mut l = Vec::new();
                match io.read_until(b'\n', &mut l) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if l == b".\r\n" {
                    break;
                }
                msg.extend_from_slice(&l);
            }
            data.lock().unwrap().push(msg);
            if !reply(&mut io, act("DATA-END"), "250 ok queued\r\n") {
                return;
            }
        }
    }
}

/// A throwaway self-signed ECDSA certificate for `name` (and 127.0.0.1),
/// made by openssl in `dir`: (cert path, key path).
pub fn cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (c, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let st = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .arg("-subj")
        .arg(format!("/CN={name}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{name},IP:127.0.0.1"))
        .arg("-keyout")
        .arg(&k)
        .arg("-out")
        .arg(&c)
        .stderr(Stdio::null())
        .status()
        .expect("openssl (Debian package openssl) is needed");
    assert!(st.success(), "openssl req failed");
    (c, k)
}

pub fn server_config(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert).unwrap().map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(cfg)
}

/// The DER of the first certificate in a PEM file.
pub fn cert_der(cert: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    CertificateDer::pem_file_iter(cert).unwrap().next().unwrap().unwrap().to_vec()
}

// ---------------------------------------------------------------- fake DNS

#[derive(Clone, Debug)]
pub enum Rr {
    Mx(u16, &'static str),
    A(IpAddr),
    Tlsa(u8, u8, u8, Vec<u8>),
    /// One TXT record: its character-strings (each at most 255 octets).
    Txt(Vec<String>),
}

/// A fake recursive resolver: `zone` maps a name to its records; a name not
/// in it is NXDOMAIN. `ad`: set AD in every answer. `servfail`: names
/// answered with SERVFAIL. Answers larger than 512 bytes, or any answer when
/// `truncate` is set, go out truncated over UDP (and whole over TCP).
pub struct FakeDns {
    pub addr: SocketAddr,
    pub queries: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

pub struct Zone {
    pub names: HashMap<String, Vec<Rr>>,
    pub ad: bool,
    pub servfail: Vec<String>,
    /// Names answered without AD even when `ad` is set.
    pub insecure: Vec<String>,
    pub truncate: bool,
}

impl Zone {
    pub fn new(ad: bool) -> Zone {
        Zone { names: HashMap::new(), ad, servfail: Vec::new(), insecure: Vec::new(), truncate: false }
    }
    pub fn add(mut self, name: &str, rr: Rr) -> Zone {
        self.names.entry(name.to_string()).or_default().push(rr);
        self
    }
}

pub fn fake_dns(zone: Zone) -> FakeDns {
    // UDP and TCP on one port number: a port free for UDP may be taken for
    // TCP by another test on a busy machine, so try again with another.
    let (udp, tcp, addr) = (0..100)
        .find_map(|_| {
            let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
            let addr = udp.local_addr().ok()?;
            let tcp = TcpListener::bind(addr).ok()?;
            Some((udp, tcp, addr))
        })
        .expect("a loopback port free for both UDP and TCP");
    tcp.set_nonblocking(true).unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let queries = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let zone = Arc::new(zone);
    let (q2, s2) = (queries.clone(), stop.clone());
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 4096];
        while !s2.load(Ordering::SeqCst) && Instant::now() < deadline {
            if let Ok((n, peer)) = udp.recv_from(&mut buf) {
                if let Some(ans) = dns_answer(&zone, &buf[..n], &q2, true) {
                    let _ = udp.send_to(&ans, peer);
                }
            }
            if let Ok((mut s, _)) = tcp.accept() {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut lb = [0u8; 2];
                if s.read_exact(&mut lb).is_ok() {
                    let mut q = vec![0u8; u16::from_be_bytes(lb) as usize];
                    if s.read_exact(&mut q).is_ok() {
                        if let Some(ans) = dns_answer(&zone, &q, &q2, false) {
                            let mut out = (ans.len() as u16).to_be_bytes().to_vec();
                            out.extend(ans);
                            let _ = s.write_all(&out);
                        }
                    }
                }
            }
        }
    });
    FakeDns { addr, queries, stop }
}

fn dns_answer(zone: &Zone, q: &[u8], log: &Mutex<Vec<String>>, udp: bool) -> Option<Vec<u8>> {
    use domain::base::iana::{Class, Rcode, Rtype, TlsaCertificateUsage, TlsaMatchingType, TlsaSelector};
    use domain::base::{Message, MessageBuilder, Name};
    use domain::rdata::{Aaaa, Mx, Tlsa, Txt, A};
    use std::str::FromStr;
    let msg = Message::from_octets(q.to_vec()).ok()?;
    let question = msg.sole_question().ok()?;
    let qname = question.qname().to_string().to_ascii_lowercase();
    let qtype = question.qtype();
    log.lock().unwrap().push(format!("{qname} {qtype}{}", if udp { "" } else { " tcp" }));
    let owner = Name::<Vec<u8>>::from_str(&qname).ok()?;
    let rcode = if zone.servfail.contains(&qname) {
        Rcode::SERVFAIL
    } else if zone.names.contains_key(&qname) {
        Rcode::NOERROR
    } else {
        Rcode::NXDOMAIN
    };
    let ad = zone.ad && rcode == Rcode::NOERROR && !zone.insecure.contains(&qname);
    let mut a = MessageBuilder::new_vec().start_answer(&msg, rcode).ok()?;
    a.header_mut().set_ra(true);
    a.header_mut().set_ad(ad);
    if rcode == Rcode::NOERROR {
        for rr in zone.names.get(&qname).into_iter().flatten() {
            match (rr, qtype) {
                (Rr::Mx(p, ex), Rtype::MX) => {
                    let ex = Name::<Vec<u8>>::from_str(ex).ok()?;
                    a.push((&owner, Class::IN, 60, Mx::new(*p, ex))).ok()?;
                }
                (Rr::A(IpAddr::V4(ip)), Rtype::A) => a.push((&owner, Class::IN, 60, A::new(*ip))).ok()?,
                (Rr::A(IpAddr::V6(ip)), Rtype::AAAA) => a.push((&owner, Class::IN, 60, Aaaa::new(*ip))).ok()?,
                (Rr::Tlsa(u, s, m, d), Rtype::TLSA) => {
                    let t = Tlsa::new(
                        TlsaCertificateUsage::from_int(*u),
                        TlsaSelector::from_int(*s),
                        TlsaMatchingType::from_int(*m),
                        d.clone(),
                    );
                    a.push((&owner, Class::IN, 60, t)).ok()?
                }
                (Rr::Txt(strings), Rtype::TXT) => {
                    let mut wire = Vec::new();
                    for s in strings {
                        wire.push(u8::try_from(s.len()).ok()?);
                        wire.extend_from_slice(s.as_bytes());
                    }
                    a.push((&owner, Class::IN, 60, Txt::<Vec<u8>>::from_octets(wire).ok()?)).ok()?
                }
                _ => {}
            }
        }
    }
    let mut out = a.finish();
    if udp && (zone.truncate || out.len() > 512) {
        // TC: header and question only.
        let mut t = MessageBuilder::new_vec().start_answer(&msg, rcode).ok()?;
        t.header_mut().set_tc(true);
        out = t.finish();
    }
    Some(out)
}

/// A CA and a leaf for `name` (and 127.0.0.1) signed by it, made by openssl
/// in `dir`: (ca cert, leaf cert, leaf key, chain file = leaf then ca).
pub fn ca_and_leaf(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.join(f);
    let sh = |args: &[&str]| {
        let st = Command::new("openssl").args(args).current_dir(dir).stderr(Stdio::null()).status().expect("openssl (Debian package openssl)");
        assert!(st.success(), "openssl {args:?}");
    };
    sh(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
        "-subj", "/CN=Test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
        "-keyout", "ca.key", "-out", "ca.crt"]);
    sh(&["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", &format!("/CN={name}"), "-keyout", "leaf.key", "-out", "leaf.csr"]);
    std::fs::write(p("ext.cnf"), format!("subjectAltName=DNS:{name},IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")).unwrap();
    sh(&["x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "ext.cnf", "-out", "leaf.crt"]);
    let chain = [std::fs::read(p("leaf.crt")).unwrap(), std::fs::read(p("ca.crt")).unwrap()].concat();
    std::fs::write(p("chain.crt"), chain).unwrap();
    (p("ca.crt"), p("leaf.crt"), p("leaf.key"), p("chain.crt"))
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo (TLSA selector 1, matching 1).
pub fn spki_sha256(cert: &Path) -> Vec<u8> {
    let der = cert_der(cert);
    let spki = smtpd::remote::dane::spki(&der).expect("spki");
    ring::digest::digest(&ring::digest::SHA256, spki).as_ref().to_vec()
}

/// `sha256:<hex>` of a certificate's public key: a `TLS_PIN` value.
pub fn pin(cert: &Path) -> String {
    format!("sha256:{}", spki_sha256(cert).iter().map(|b| format!("{b:02x}")).collect::<String>())
}

pub fn cert_sha256(cert: &Path) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, &cert_der(cert)).as_ref().to_vec()
}

/// A port free on 127.0.0.1 at the time of asking.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `smtp-remote -m`, driven as queue-run drives it: one job at a time over
/// a Unix socket on its fd 0 and 1, the message file attached, each answer
/// read before the next job is sent.
pub struct Multi {
    child: std::process::Child,
    sock: std::os::unix::net::UnixStream,
    answers: smtpd::remotejob::AnswerReader<std::os::unix::net::UnixStream>,
}

impl Multi {
    /// Start it with a clean environment plus `env` (as `run`).
    pub fn start(env: &[(&str, &str)]) -> Multi {
        use std::os::unix::net::UnixStream;
        let (ours, theirs) = smtpd::remotejob::pair().unwrap();
        let sock = UnixStream::from(ours);
        sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut c = Command::new(BIN);
        c.arg("-m").env_clear().env("HELOHOST", "client.test").env("DNS_SERVER", "127.0.0.1:9").env("DNS_TIMEOUT", "2");
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .stdin(Stdio::from(theirs.try_clone().unwrap()))
            .stdout(Stdio::from(theirs))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn smtp-remote -m");
        let answers = smtpd::remotejob::AnswerReader::new(sock.try_clone().unwrap());
        Multi { child, sock, answers }
    }

    /// One job; its report with NULs shown as `|`.
    pub fn deliver(&mut self, host: &str, sender: &str, rcpts: &[&str], attrs: &str, msg: &[u8]) -> String {
        use std::os::fd::AsFd;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"queue header, skipped\n\n").unwrap();
        f.write_all(msg).unwrap();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(23)).unwrap();
        let rcpts: Vec<&[u8]> = rcpts.iter().map(|r| r.as_bytes()).collect();
        let frame = smtpd::remotejob::encode_job(host.as_bytes(), sender.as_bytes(), attrs.as_bytes(), b"1.2.3", &rcpts);
        smtpd::remotejob::send_job(self.sock.as_fd(), &frame, f.as_fd()).unwrap();
        let report = self.answers.next_answer().expect("an answer").expect("an answer, not EOF");
        String::from_utf8_lossy(&report).replace('\0', "|")
    }

    /// EOF on its fd 0; its exit code and stderr.
    pub fn finish(mut self) -> (i32, String) {
        self.sock.shutdown(std::net::Shutdown::Both).unwrap();
        drop(self.answers);
        drop(self.sock);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "smtp-remote -m did not exit at EOF");
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = self.child.wait_with_output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A script that counts connections in `n` and otherwise answers as `inner`.
pub fn counting(n: Arc<std::sync::atomic::AtomicUsize>, mut inner: impl FnMut(&str) -> Act + Send + 'static) -> impl FnMut(&str) -> Act + Send + 'static {
    move |c| {
        if c == "CONNECT" {
            n.fetch_add(1, Ordering::SeqCst);
        }
        inner(c)
    }
}
