//! A small blocking DNS stub resolver: queries built and answers parsed with
//! the `domain` crate (wire format only), sent over UDP to the nameservers of
//! /etc/resolv.conf (or `DNS_SERVER`), retried over TCP when truncated.
//! Every query sets DO (RFC 3225) so that a validating resolver reports AD;
//! the AD bit of each answer is passed up, because DANE (RFC 7672) may only
//! use TLSA records from an answer the resolver says it validated; an AD
//! bit from a resolver not trusted with it (not loopback, not listed in
//! `DNS_TRUST_AD`) is cleared on arrival, so nothing above ever sees it.
//! No caching, no recursion of our own, no search list: the names smtp-remote
//! asks for are always fully qualified.

use domain::base::iana::{Rcode, Rtype};
use domain::base::{Message, MessageBuilder, Name, ParsedName};
use domain::rdata::{Aaaa, Mx, ZoneRecordData, A};
use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The largest UDP answer we advertise (EDNS0) and read.
const UDP_SIZE: u16 = 1232;
/// The largest TCP answer we accept.
const TCP_MAX: usize = 65535;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The name does not exist (NXDOMAIN): a permanent answer.
    NoName,
    /// Anything else: no answer, SERVFAIL, a malformed answer. Try later.
    Temp(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoName => f.write_str("no such domain"),
            Error::Temp(s) => write!(f, "temporary DNS failure: {s}"),
        }
    }
}

/// One TLSA record (RFC 6698).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsaRecord {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

/// Records of one answer, with the AD bit of the message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer<T> {
    pub records: Vec<T>,
    pub secure: bool,
}

#[derive(Debug, Clone)]
pub struct Resolver {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    attempts: u32,
    /// Whose AD bit counts: `None`, loopback resolvers only.
    trust_ad: Option<Vec<IpAddr>>,
}

impl Resolver {
    /// Servers from `DNS_SERVER` (`ip` or `ip:port`, comma separated; for
    /// tests and for pointing at a local validating resolver), else the
    /// `nameserver` lines of /etc/resolv.conf, else 127.0.0.1.
    /// `DNS_TIMEOUT` (seconds per try, default 5).
    pub fn from_env() -> Resolver {
        let servers = match std::env::var("DNS_SERVER") {
            Ok(v) if !v.trim().is_empty() => parse_server_list(&v),
            _ => std::fs::read_to_string("/etc/resolv.conf")
                .map(|s| parse_resolv_conf(&s))
                .unwrap_or_default(),
        };
        let servers = if servers.is_empty() {
            vec![SocketAddr::from(([127, 0, 0, 1], 53))]
        } else {
            servers
        };
        let timeout = std::env::var("DNS_TIMEOUT")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(5);
        // RFC 6698 / RFC 7672 2.2 rest on the AD bit, which a resolver
        // across a network can forge or lose: only loopback is trusted
        // unless DNS_TRUST_AD lists the addresses whose AD counts.
        let trust_ad = std::env::var("DNS_TRUST_AD").ok().filter(|v| !v.trim().is_empty()).map(|v| parse_trust_list(&v));
        Resolver { servers, timeout: Duration::from_secs(timeout), attempts: 2, trust_ad }
    }

    pub fn with_servers(servers: Vec<SocketAddr>, timeout: Duration) -> Resolver {
        Resolver { servers, timeout, attempts: 2, trust_ad: None }
    }

    /// Does the AD bit of `server`'s answers count?
    fn trusts_ad(&self, server: IpAddr) -> bool {
        match &self.trust_ad {
            Some(list) => list.contains(&server),
            None => server.is_loopback(),
        }
    }

    /// MX records as (preference, exchange). An empty list with Ok means the
    /// name exists but has no MX (implicit MX applies, RFC 5321 5.1).
    pub fn mx(&self, name: &str) -> Result<Answer<(u16, String)>, Error> {
        let buf = self.query(name, Rtype::MX)?;
        parse_mx(&buf)
    }

    /// A and AAAA addresses of `name` (IPv4 first, as most MTAs still do).
    /// Secure when every answer used had AD.
    pub fn addrs(&self, name: &str) -> Result<Answer<IpAddr>, Error> {
        let a = self.query(name, Rtype::A).and_then(|b| parse_addrs(&b));
        let aaaa = self.query(name, Rtype::AAAA).and_then(|b| parse_addrs(&b));
        match (a, aaaa) {
            (Ok(mut x), Ok(y)) => {
                x.records.extend(y.records);
                x.secure &= y.secure;
                Ok(x)
            }
            (Ok(x), Err(_)) if !x.records.is_empty() => Ok(x),
            (Err(_), Ok(y)) if !y.records.is_empty() => Ok(y),
            (Err(Error::NoName), _) | (_, Err(Error::NoName)) => Err(Error::NoName),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }

    /// TLSA records at `_port._tcp.host` (RFC 7672 section 2.2.2).
    pub fn tlsa(&self, host: &str, port: u16) -> Result<Answer<TlsaRecord>, Error> {
        let name = format!("_{port}._tcp.{}", host.trim_end_matches('.'));
        let buf = self.query(&name, Rtype::TLSA)?;
        parse_tlsa(&buf)
    }

    /// One question to each server in turn until one answers; the raw,
    /// checked answer (id and question match, rcode NOERROR or NXDOMAIN).
    fn query(&self, name: &str, rtype: Rtype) -> Result<Vec<u8>, Error> {
        let mut last = Error::Temp("no nameserver answered".into());
        for _ in 0..self.attempts {
            for &server in &self.servers {
                let id = query_id();
                let q = build_query(id, name, rtype)?;
                match self.ask(server, &q, id, name, rtype) {
                    Ok(mut buf) => {
                        if !self.trusts_ad(server.ip()) {
                            clear_ad(&mut buf);
                        }
                        return Ok(buf);
                    }
                    Err(e @ Error::NoName) => return Err(e),
                    Err(e) => last = e,
                }
            }
        }
        Err(last)
    }

    fn ask(&self, server: SocketAddr, q: &[u8], id: u16, name: &str, rtype: Rtype) -> Result<Vec<u8>, Error> {
        let bind: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let sock = UdpSocket::bind(bind).map_err(|e| Error::Temp(format!("socket: {e}")))?;
        sock.connect(server).map_err(|e| Error::Temp(format!("connect {server}: {e}")))?;
        sock.send(q).map_err(|e| Error::Temp(format!("send to {server}: {e}")))?;
        let deadline = Instant::now() + self.timeout;
        let mut buf = vec![0u8; UDP_SIZE as usize + 512];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Temp(format!("{server} timed out")));
            }
            sock.set_read_timeout(Some(left)).map_err(|e| Error::Temp(e.to_string()))?;
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(Error::Temp(format!("{server} timed out")))
                }
                Err(e) => return Err(Error::Temp(format!("{server}: {e}"))),
            };
            let ans = buf.get(..n).unwrap_or_default();
            match check_answer(ans, id, name, rtype) {
                Check::Ok => return Ok(ans.to_vec()),
                Check::Truncated => return self.ask_tcp(server, q, id, name, rtype),
                Check::NoName => return Err(Error::NoName),
                Check::Fail(s) => return Err(Error::Temp(format!("{server}: {s}"))),
                // A stray or spoofed datagram: keep waiting for ours.
                Check::Foreign => continue,
            }
        }
    }

    fn ask_tcp(&self, server: SocketAddr, q: &[u8], id: u16, name: &str, rtype: Rtype) -> Result<Vec<u8>, Error> {
        let t = |e: std::io::Error| Error::Temp(format!("tcp {server}: {e}"));
        let mut s = TcpStream::connect_timeout(&server, self.timeout).map_err(t)?;
        s.set_read_timeout(Some(self.timeout)).map_err(t)?;
        s.set_write_timeout(Some(self.timeout)).map_err(t)?;
        let len = u16::try_from(q.len()).map_err(|_| Error::Temp("query too long".into()))?;
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(q);
        s.write_all(&out).map_err(t)?;
        let mut lb = [0u8; 2];
        s.read_exact(&mut lb).map_err(t)?;
        let n = u16::from_be_bytes(lb) as usize;
        if n > TCP_MAX {
            return Err(Error::Temp("answer too long".into()));
        }
        let mut buf = vec![0u8; n];
        s.read_exact(&mut buf).map_err(t)?;
        match check_answer(&buf, id, name, rtype) {
            Check::Ok => Ok(buf),
            Check::NoName => Err(Error::NoName),
            Check::Truncated => Err(Error::Temp(format!("{server}: truncated answer over TCP"))),
            Check::Fail(s) => Err(Error::Temp(format!("{server}: {s}"))),
            Check::Foreign => Err(Error::Temp(format!("{server}: answer does not match the question"))),
        }
    }
}

/// `nameserver` lines of resolv.conf, port 53.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next()) {
                (Some("nameserver"), Some(a)) => {
                    // A scoped IPv6 address (fe80::1%eth0) is not supported by
                    // IpAddr: skipped.
                    IpAddr::from_str(a).ok().map(|ip| SocketAddr::new(ip, 53))
                }
                _ => None,
            }
        })
        .collect()
}

/// `ip`, `ip:port`, `[v6]:port`, comma or space separated.
pub fn parse_server_list(text: &str) -> Vec<SocketAddr> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            SocketAddr::from_str(s).ok().or_else(|| IpAddr::from_str(s).ok().map(|ip| SocketAddr::new(ip, 53)))
        })
        .collect()
}

/// `DNS_TRUST_AD`: addresses, comma or space separated; what does not
/// parse is left out (so it is not trusted).
pub fn parse_trust_list(text: &str) -> Vec<IpAddr> {
    text.split(|c: char| c == ',' || c.is_whitespace()).filter_map(|s| IpAddr::from_str(s).ok()).collect()
}

/// Clear AD (RFC 4035 3.2.3), bit 5 of the header's fourth octet.
fn clear_ad(buf: &mut [u8]) {
    if let Some(b) = buf.get_mut(3) {
        *b &= !0x20;
    }
}

/// A query with RD set and an EDNS0 OPT record with DO set.
pub fn build_query(id: u16, name: &str, rtype: Rtype) -> Result<Vec<u8>, Error> {
    let qname = Name::<Vec<u8>>::from_str(name).map_err(|_| Error::Temp(format!("bad domain name {name:?}")))?;
    let mut b = MessageBuilder::new_vec();
    b.header_mut().set_id(id);
    b.header_mut().set_rd(true);
    // RFC 6840 5.7: AD in a query asks for the AD bit in the answer.
    b.header_mut().set_ad(true);
    let mut q = b.question();
    q.push((&qname, rtype)).map_err(|_| Error::Temp("query too long".into()))?;
    let mut add = q.additional();
    add.opt(|o| {
        o.set_udp_payload_size(UDP_SIZE);
        o.set_dnssec_ok(true);
        Ok(())
    })
    .map_err(|_| Error::Temp("query too long".into()))?;
    Ok(add.finish())
}

#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    Ok,
    Truncated,
    NoName,
    Foreign,
    Fail(String),
}

/// Is `buf` the answer to our question (id, QR, question) and what did it say?
pub fn check_answer(buf: &[u8], id: u16, name: &str, rtype: Rtype) -> Check {
    let Ok(msg) = Message::from_octets(buf) else { return Check::Foreign };
    let h = msg.header();
    if !h.qr() || h.id() != id {
        return Check::Foreign;
    }
    let Ok(qname) = Name::<Vec<u8>>::from_str(name) else { return Check::Foreign };
    let mut qs = msg.question();
    match qs.next() {
        Some(Ok(q)) if q.qtype() == rtype && q.qname().to_string().eq_ignore_ascii_case(&qname.to_string()) => {}
        _ => return Check::Foreign,
    }
    if h.tc() {
        return Check::Truncated;
    }
    match h.rcode() {
        Rcode::NOERROR => Check::Ok,
        Rcode::NXDOMAIN => Check::NoName,
        r => Check::Fail(format!("rcode {r}")),
    }
}

pub fn parse_mx(buf: &[u8]) -> Result<Answer<(u16, String)>, Error> {
    let msg = Message::from_octets(buf).map_err(|_| malformed())?;
    let secure = msg.header().ad();
    let mut records = Vec::new();
    for rr in msg.answer().map_err(|_| malformed())?.limit_to::<Mx<ParsedName<&[u8]>>>() {
        let rr = rr.map_err(|_| malformed())?;
        let host = rr.data().exchange().to_string();
        records.push((rr.data().preference(), host));
    }
    Ok(Answer { records, secure })
}

pub fn parse_addrs(buf: &[u8]) -> Result<Answer<IpAddr>, Error> {
    let msg = Message::from_octets(buf).map_err(|_| malformed())?;
    let secure = msg.header().ad();
    let mut records = Vec::new();
    for rr in msg.answer().map_err(|_| malformed())?.limit_to::<A>() {
        records.push(IpAddr::V4(rr.map_err(|_| malformed())?.data().addr()));
    }
    for rr in msg.answer().map_err(|_| malformed())?.limit_to::<Aaaa>() {
        records.push(IpAddr::V6(rr.map_err(|_| malformed())?.data().addr()));
    }
    Ok(Answer { records, secure })
}

pub fn parse_tlsa(buf: &[u8]) -> Result<Answer<TlsaRecord>, Error> {
    let msg = Message::from_octets(buf).map_err(|_| malformed())?;
    let secure = msg.header().ad();
    let mut records = Vec::new();
    for rr in msg.answer().map_err(|_| malformed())?.limit_to::<ZoneRecordData<&[u8], ParsedName<&[u8]>>>() {
        let rr = rr.map_err(|_| malformed())?;
        let ZoneRecordData::Tlsa(d) = rr.data() else { continue };
        records.push(TlsaRecord {
            usage: d.usage().to_int(),
            selector: d.selector().to_int(),
            matching: d.matching_type().to_int(),
            data: d.data().to_vec(),
        });
    }
    Ok(Answer { records, secure })
}

fn malformed() -> Error {
    Error::Temp("malformed answer".into())
}

/// A query id that a blind spoofer cannot guess easily: from the clock and pid
/// mixed; no RNG dependency for one process that asks a handful of questions.
fn query_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.write_u32(std::process::id());
    h.finish() as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::base::iana::Class;
    use domain::rdata::Tlsa;

    fn answer_with(id: u16, name: &str, rtype: Rtype, ad: bool, rcode: Rcode, add: impl FnOnce(&mut domain::base::message_builder::AnswerBuilder<Vec<u8>>, &Name<Vec<u8>>)) -> Vec<u8> {
        let qname = Name::<Vec<u8>>::from_str(name).unwrap();
        let mut b = MessageBuilder::new_vec();
        b.header_mut().set_id(id);
        b.header_mut().set_qr(true);
        b.header_mut().set_ad(ad);
        b.header_mut().set_rcode(rcode);
        let mut q = b.question();
        q.push((&qname, rtype)).unwrap();
        let mut a = q.answer();
        add(&mut a, &qname);
        a.finish()
    }

    #[test]
    fn resolv_conf_and_server_list() {
        let s = parse_resolv_conf("# x\nnameserver 10.0.0.1\nnameserver ::1\nsearch a\nnameserver fe80::1%eth0\n");
        assert_eq!(s, vec!["10.0.0.1:53".parse().unwrap(), "[::1]:53".parse().unwrap()]);
        let s = parse_server_list("127.0.0.1:5353, 10.0.0.2");
        assert_eq!(s, vec!["127.0.0.1:5353".parse().unwrap(), "10.0.0.2:53".parse().unwrap()]);
    }

    #[test]
    fn ad_trust() {
        let ip = |s: &str| IpAddr::from_str(s).unwrap();
        assert_eq!(parse_trust_list("192.0.2.1, ::1 bogus,10.0.0.1:53"), vec![ip("192.0.2.1"), ip("::1")]);
        let mut r = Resolver::with_servers(Vec::new(), Duration::from_secs(1));
        assert!(r.trusts_ad(ip("127.0.0.53")) && r.trusts_ad(ip("::1")) && !r.trusts_ad(ip("192.0.2.1")));
        r.trust_ad = Some(vec![ip("192.0.2.1")]);
        assert!(r.trusts_ad(ip("192.0.2.1")) && !r.trusts_ad(ip("127.0.0.1")));
        let mut buf = answer_with(9, "example.org", Rtype::MX, true, Rcode::NOERROR, |_, _| {});
        assert!(parse_mx(&buf).unwrap().secure);
        clear_ad(&mut buf);
        assert!(!parse_mx(&buf).unwrap().secure);
        assert_eq!(check_answer(&buf, 9, "example.org", Rtype::MX), Check::Ok);
    }

    #[test]
    fn query_has_do_bit() {
        let q = build_query(7, "example.org", Rtype::MX).unwrap();
        let m = Message::from_octets(&q[..]).unwrap();
        assert!(m.header().rd());
        assert!(m.opt().unwrap().dnssec_ok());
        assert!(build_query(7, "a..b", Rtype::MX).is_err());
    }

    #[test]
    fn mx_answer_and_checks() {
        let buf = answer_with(9, "example.org", Rtype::MX, true, Rcode::NOERROR, |a, n| {
            let mx = Name::<Vec<u8>>::from_str("mx1.example.org").unwrap();
            a.push((n, Class::IN, 300, Mx::new(10, mx))).unwrap();
        });
        assert_eq!(check_answer(&buf, 9, "example.org", Rtype::MX), Check::Ok);
        assert_eq!(check_answer(&buf, 8, "example.org", Rtype::MX), Check::Foreign);
        assert_eq!(check_answer(&buf, 9, "example.com", Rtype::MX), Check::Foreign);
        assert_eq!(check_answer(&buf, 9, "example.org", Rtype::A), Check::Foreign);
        assert_eq!(check_answer(b"\x00\x09garbage", 9, "example.org", Rtype::A), Check::Foreign);
        let a = parse_mx(&buf).unwrap();
        assert!(a.secure);
        assert_eq!(a.records, vec![(10, "mx1.example.org".to_string())]);
        let nx = answer_with(9, "example.org", Rtype::MX, false, Rcode::NXDOMAIN, |_, _| {});
        assert_eq!(check_answer(&nx, 9, "example.org", Rtype::MX), Check::NoName);
        let sf = answer_with(9, "example.org", Rtype::MX, false, Rcode::SERVFAIL, |_, _| {});
        assert!(matches!(check_answer(&sf, 9, "example.org", Rtype::MX), Check::Fail(_)));
    }

    #[test]
    fn tlsa_and_addr_answers() {
        use domain::base::iana::{TlsaCertificateUsage, TlsaMatchingType, TlsaSelector};
        let buf = answer_with(1, "_25._tcp.mx.example", Rtype::TLSA, false, Rcode::NOERROR, |a, n| {
            let t = Tlsa::new(
                TlsaCertificateUsage::from_int(3),
                TlsaSelector::from_int(1),
                TlsaMatchingType::from_int(1),
                vec![1u8, 2, 3],
            );
            a.push((n, Class::IN, 300, t)).unwrap();
        });
        let t = parse_tlsa(&buf).unwrap();
        assert!(!t.secure);
        assert_eq!(t.records, vec![TlsaRecord { usage: 3, selector: 1, matching: 1, data: vec![1, 2, 3] }]);
        let buf = answer_with(1, "h.example", Rtype::A, false, Rcode::NOERROR, |a, n| {
            a.push((n, Class::IN, 300, A::from_octets(192, 0, 2, 1))).unwrap();
        });
        assert_eq!(parse_addrs(&buf).unwrap(), Answer { records: vec![IpAddr::from([192, 0, 2, 1])], secure: false });
    }
}
