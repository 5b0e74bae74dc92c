//! A small blocking DNS stub resolver: queries built and answers parsed with
//! the `domain` crate (wire format only), sent over UDP to the nameservers of
//! /etc/resolv.conf (or `DNS_SERVER`), retried over TCP when truncated.
//! Every query sets DO (RFC 3225) so that a validating resolver reports AD;
//! the AD bit of each answer is passed up, because DANE (RFC 7672) may only
//! use TLSA records from an answer the resolver says it validated; an AD
//! bit from a resolver not trusted with it (not loopback, not listed in
//! `DNS_TRUST_AD`) is cleared on arrival, so nothing above ever sees it.
//! No recursion of our own, no search list: the names asked for are always
//! fully qualified. `Resolver` does not cache; `CachedResolver` wraps it with
//! a bounded per-process cache (positive answers for their TTL, negative ones
//! per RFC 2308, both capped) for the checker, which asks the same SPF and
//! DMARC names again and again.
//! `Lookup` is the small interface SPF and DMARC evaluate against, so that
//! their tests serve in-memory zones.

use domain::base::iana::{Rcode, Rtype};
use domain::base::{Message, MessageBuilder, Name, ParsedName};
use domain::rdata::{Aaaa, Mx, Ptr, Soa, Txt, ZoneRecordData, A};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The largest UDP answer we advertise (EDNS0) and read.
const UDP_SIZE: u16 = 1232;
/// The largest TCP answer we accept. It also bounds what one TXT, PTR or MX
/// answer can make us hold: the records are parsed out of at most this much.
const TCP_MAX: usize = 65535;
/// Cache bounds: entries and (approximate) bytes held, oldest evicted first.
pub const CACHE_ENTRIES: usize = 4096;
pub const CACHE_BYTES: usize = 4 << 20;
/// Positive answers are kept for their TTL but at most an hour.
pub const CACHE_TTL_MAX: u32 = 3600;
/// Negative answers (NXDOMAIN, NODATA) for the SOA's negative TTL
/// (RFC 2308 section 5: min of the SOA's TTL and MINIMUM) but at most 15
/// minutes; without an SOA in the authority section they are not cached.
/// Temporary failures are never cached: the next question asks again.
pub const CACHE_NEG_TTL_MAX: u32 = 900;

/// The questions SPF (RFC 7208) and DMARC (RFC 7489) ask, answered by the
/// resolver or by a test zone. Ok with an empty list: the name exists but has
/// no record of that type (NODATA); `Error::NoName`: NXDOMAIN; `Error::Temp`:
/// anything else. SPF's void-lookup limit (RFC 7208 4.6.4) counts the first
/// two alike and must not count the third.
pub trait Lookup {
    /// TXT records, each one's character-strings joined with nothing between
    /// them (RFC 7208 3.3); bytes, because a record may hold anything.
    fn txt(&self, name: &str) -> Result<Vec<Vec<u8>>, Error>;
    fn a(&self, name: &str) -> Result<Vec<Ipv4Addr>, Error>;
    fn aaaa(&self, name: &str) -> Result<Vec<Ipv6Addr>, Error>;
    /// (preference, exchange) pairs, exchange without the trailing dot.
    fn mx(&self, name: &str) -> Result<Vec<(u16, String)>, Error>;
    /// Names of a PTR query (the caller builds the in-addr.arpa/ip6.arpa name).
    fn ptr(&self, name: &str) -> Result<Vec<String>, Error>;
}

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

    /// TXT records of `name` (see `Lookup::txt`).
    pub fn txt(&self, name: &str) -> Result<Vec<Vec<u8>>, Error> {
        parse_txt(&self.query(name, Rtype::TXT)?).map(|(r, _)| r)
    }

    /// PTR names of `name` (an in-addr.arpa or ip6.arpa name).
    pub fn ptr(&self, name: &str) -> Result<Vec<String>, Error> {
        parse_ptr(&self.query(name, Rtype::PTR)?).map(|(r, _)| r)
    }

    /// One question to each server in turn until one answers; the raw,
    /// checked answer (id and question match, rcode NOERROR or NXDOMAIN).
    fn query(&self, name: &str, rtype: Rtype) -> Result<Vec<u8>, Error> {
        match self.query_rcode(name, rtype)? {
            (buf, false) => Ok(buf),
            (_, true) => Err(Error::NoName),
        }
    }

    /// As `query`, but an NXDOMAIN answer comes back too (flagged true), so
    /// that the cache can read its SOA.
    fn query_rcode(&self, name: &str, rtype: Rtype) -> Result<(Vec<u8>, bool), Error> {
        let mut last = Error::Temp("no nameserver answered".into());
        for _ in 0..self.attempts {
            for &server in &self.servers {
                let id = query_id();
                let q = build_query(id, name, rtype)?;
                match self.ask(server, &q, id, name, rtype) {
                    Ok((mut buf, nx)) => {
                        if !self.trusts_ad(server.ip()) {
                            clear_ad(&mut buf);
                        }
                        return Ok((buf, nx));
                    }
                    Err(e) => last = e,
                }
            }
        }
        Err(last)
    }

    fn ask(&self, server: SocketAddr, q: &[u8], id: u16, name: &str, rtype: Rtype) -> Result<(Vec<u8>, bool), Error> {
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
                Check::Ok => return Ok((ans.to_vec(), false)),
                Check::Truncated => return self.ask_tcp(server, q, id, name, rtype),
                Check::NoName => return Ok((ans.to_vec(), true)),
                Check::Fail(s) => return Err(Error::Temp(format!("{server}: {s}"))),
                // A stray or spoofed datagram: keep waiting for ours.
                Check::Foreign => continue,
            }
        }
    }

    fn ask_tcp(&self, server: SocketAddr, q: &[u8], id: u16, name: &str, rtype: Rtype) -> Result<(Vec<u8>, bool), Error> {
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
            Check::Ok => Ok((buf, false)),
            Check::NoName => Ok((buf, true)),
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

/// TXT records and the smallest TTL among them. Each record's
/// character-strings are joined (RFC 7208 3.3). Bounded by the answer's size.
pub fn parse_txt(buf: &[u8]) -> Result<(Vec<Vec<u8>>, u32), Error> {
    let msg = Message::from_octets(buf).map_err(|_| malformed())?;
    let mut records = Vec::new();
    let mut ttl = u32::MAX;
    for rr in msg.answer().map_err(|_| malformed())?.limit_to::<Txt<&[u8]>>() {
        let rr = rr.map_err(|_| malformed())?;
        ttl = ttl.min(rr.ttl().as_secs());
        records.push(rr.data().iter().flatten().copied().collect());
    }
    Ok((records, ttl))
}

/// PTR names (without the trailing dot) and the smallest TTL among them.
pub fn parse_ptr(buf: &[u8]) -> Result<(Vec<String>, u32), Error> {
    let msg = Message::from_octets(buf).map_err(|_| malformed())?;
    let mut records = Vec::new();
    let mut ttl = u32::MAX;
    for rr in msg.answer().map_err(|_| malformed())?.limit_to::<Ptr<ParsedName<&[u8]>>>() {
        let rr = rr.map_err(|_| malformed())?;
        ttl = ttl.min(rr.ttl().as_secs());
        records.push(rr.data().ptrdname().to_string());
    }
    Ok((records, ttl))
}

/// The smallest TTL of the answer section's records (CNAMEs included: the
/// chain is only as fresh as its shortest link); u32::MAX when empty.
fn answer_ttl(buf: &[u8]) -> u32 {
    let Ok(msg) = Message::from_octets(buf) else { return 0 };
    let Ok(ans) = msg.answer() else { return 0 };
    let mut ttl = u32::MAX;
    for rr in ans {
        match rr {
            Ok(rr) => ttl = ttl.min(rr.ttl().as_secs()),
            Err(_) => return 0,
        }
    }
    ttl
}

/// RFC 2308 section 5: a negative answer lives for the minimum of the SOA
/// record's TTL and its MINIMUM field; None without an SOA (not cached).
pub fn negative_ttl(buf: &[u8]) -> Option<u32> {
    let msg = Message::from_octets(buf).ok()?;
    let auth = msg.authority().ok()?;
    let rr = auth.limit_to::<Soa<ParsedName<&[u8]>>>().next()?.ok()?;
    Some(rr.ttl().as_secs().min(rr.data().minimum().as_secs()))
}

impl Lookup for Resolver {
    fn txt(&self, name: &str) -> Result<Vec<Vec<u8>>, Error> {
        Resolver::txt(self, name)
    }
    fn a(&self, name: &str) -> Result<Vec<Ipv4Addr>, Error> {
        Ok(v4s(parse_addrs(&self.query(name, Rtype::A)?)?.records))
    }
    fn aaaa(&self, name: &str) -> Result<Vec<Ipv6Addr>, Error> {
        Ok(v6s(parse_addrs(&self.query(name, Rtype::AAAA)?)?.records))
    }
    fn mx(&self, name: &str) -> Result<Vec<(u16, String)>, Error> {
        Ok(Resolver::mx(self, name)?.records)
    }
    fn ptr(&self, name: &str) -> Result<Vec<String>, Error> {
        Resolver::ptr(self, name)
    }
}

fn v4s(v: Vec<IpAddr>) -> Vec<Ipv4Addr> {
    v.into_iter().filter_map(|a| if let IpAddr::V4(a) = a { Some(a) } else { None }).collect()
}

fn v6s(v: Vec<IpAddr>) -> Vec<Ipv6Addr> {
    v.into_iter().filter_map(|a| if let IpAddr::V6(a) = a { Some(a) } else { None }).collect()
}

/// The resolver with a per-process cache in front (see `Cache`). The cache
/// sits behind a Mutex so that one CachedResolver may serve threads.
#[derive(Debug)]
pub struct CachedResolver {
    resolver: Resolver,
    cache: Mutex<Cache>,
}

/// What one cached question answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rdata {
    Txt(Vec<Vec<u8>>),
    A(Vec<Ipv4Addr>),
    Aaaa(Vec<Ipv6Addr>),
    Mx(Vec<(u16, String)>),
    Ptr(Vec<String>),
}

impl Rdata {
    /// Roughly the bytes it holds, for the cache's budget.
    fn size(&self) -> usize {
        match self {
            Rdata::Txt(v) => v.iter().map(|t| t.len() + 24).sum(),
            Rdata::A(v) => v.len() * 4,
            Rdata::Aaaa(v) => v.len() * 16,
            Rdata::Mx(v) => v.iter().map(|(_, h)| h.len() + 32).sum(),
            Rdata::Ptr(v) => v.iter().map(|h| h.len() + 24).sum(),
        }
    }
}

impl CachedResolver {
    pub fn new(resolver: Resolver) -> CachedResolver {
        CachedResolver { resolver, cache: Mutex::new(Cache::new(CACHE_ENTRIES, CACHE_BYTES)) }
    }

    /// Asks the cache, then the resolver; stores what the answer allows.
    fn lookup(
        &self,
        name: &str,
        rtype: Rtype,
        parse: impl Fn(&[u8]) -> Result<Rdata, Error>,
    ) -> Result<Rdata, Error> {
        let key = (name.trim_end_matches('.').to_ascii_lowercase(), rtype.to_int());
        let now = Instant::now();
        if let Ok(mut c) = self.cache.lock() {
            if let Some(hit) = c.get(&key, now) {
                return hit;
            }
        }
        let (buf, nx) = self.resolver.query_rcode(name, rtype)?;
        let (answer, ttl) = if nx {
            (Err(Error::NoName), negative_ttl(&buf).unwrap_or(0).min(CACHE_NEG_TTL_MAX))
        } else {
            let data = parse(&buf)?;
            let ttl = match answer_ttl(&buf) {
                // NODATA: an empty answer section, negative caching again.
                u32::MAX => negative_ttl(&buf).unwrap_or(0).min(CACHE_NEG_TTL_MAX),
                t => t.min(CACHE_TTL_MAX),
            };
            (Ok(data), ttl)
        };
        if let Ok(mut c) = self.cache.lock() {
            c.put(key, answer.clone(), ttl, now);
        }
        answer
    }
}

impl Lookup for CachedResolver {
    fn txt(&self, name: &str) -> Result<Vec<Vec<u8>>, Error> {
        match self.lookup(name, Rtype::TXT, |b| parse_txt(b).map(|(r, _)| Rdata::Txt(r)))? {
            Rdata::Txt(v) => Ok(v),
            _ => Err(malformed()),
        }
    }
    fn a(&self, name: &str) -> Result<Vec<Ipv4Addr>, Error> {
        match self.lookup(name, Rtype::A, |b| parse_addrs(b).map(|r| Rdata::A(v4s(r.records))))? {
            Rdata::A(v) => Ok(v),
            _ => Err(malformed()),
        }
    }
    fn aaaa(&self, name: &str) -> Result<Vec<Ipv6Addr>, Error> {
        match self.lookup(name, Rtype::AAAA, |b| parse_addrs(b).map(|r| Rdata::Aaaa(v6s(r.records))))? {
            Rdata::Aaaa(v) => Ok(v),
            _ => Err(malformed()),
        }
    }
    fn mx(&self, name: &str) -> Result<Vec<(u16, String)>, Error> {
        match self.lookup(name, Rtype::MX, |b| parse_mx(b).map(|r| Rdata::Mx(r.records)))? {
            Rdata::Mx(v) => Ok(v),
            _ => Err(malformed()),
        }
    }
    fn ptr(&self, name: &str) -> Result<Vec<String>, Error> {
        match self.lookup(name, Rtype::PTR, |b| parse_ptr(b).map(|(r, _)| Rdata::Ptr(r)))? {
            Rdata::Ptr(v) => Ok(v),
            _ => Err(malformed()),
        }
    }
}

type CacheKey = (String, u16);

/// A bounded TTL cache of answers (pure: the caller passes the clock).
/// Entries past their time are dropped when met; when the entry or byte
/// budget is full the oldest insertions go first.
#[derive(Debug)]
pub struct Cache {
    map: HashMap<CacheKey, (Result<Rdata, Error>, Instant)>,
    order: VecDeque<CacheKey>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Cache {
    pub fn new(max_entries: usize, max_bytes: usize) -> Cache {
        Cache { map: HashMap::new(), order: VecDeque::new(), bytes: 0, max_entries, max_bytes }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&mut self, key: &CacheKey, now: Instant) -> Option<Result<Rdata, Error>> {
        match self.map.get(key) {
            Some((v, until)) if now < *until => Some(v.clone()),
            Some(_) => {
                self.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` for `ttl` seconds; Temp errors and TTL 0 are not kept.
    pub fn put(&mut self, key: CacheKey, value: Result<Rdata, Error>, ttl: u32, now: Instant) {
        if ttl == 0 || matches!(value, Err(Error::Temp(_))) {
            return;
        }
        let size = entry_size(&key, &value);
        if size > self.max_bytes || self.max_entries == 0 {
            return;
        }
        self.remove(&key);
        while self.map.len() >= self.max_entries || self.bytes + size > self.max_bytes {
            let Some(old) = self.order.pop_front() else { break };
            if let Some((v, _)) = self.map.remove(&old) {
                self.bytes = self.bytes.saturating_sub(entry_size(&old, &v));
            }
        }
        self.bytes += size;
        self.order.push_back(key.clone());
        self.map.insert(key, (value, now + Duration::from_secs(u64::from(ttl))));
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some((v, _)) = self.map.remove(key) {
            self.bytes = self.bytes.saturating_sub(entry_size(key, &v));
            self.order.retain(|k| k != key);
        }
    }
}

fn entry_size(key: &CacheKey, value: &Result<Rdata, Error>) -> usize {
    64 + key.0.len() + value.as_ref().map(Rdata::size).unwrap_or(0)
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

    #[test]
    fn txt_strings_are_joined_and_ptr_names_read() {
        let buf = answer_with(2, "example.org", Rtype::TXT, false, Rcode::NOERROR, |a, n| {
            let t = Txt::<Vec<u8>>::build_from_slice(b"v=spf1 ").unwrap();
            a.push((n, Class::IN, 300, t)).unwrap();
            let t = Txt::<Vec<u8>>::from_octets(b"\x04v=sp\x07f1 -all".to_vec()).unwrap();
            a.push((n, Class::IN, 60, t)).unwrap();
        });
        let (r, ttl) = parse_txt(&buf).unwrap();
        assert_eq!(r, vec![b"v=spf1 ".to_vec(), b"v=spf1 -all".to_vec()]);
        assert_eq!(ttl, 60);
        assert_eq!(answer_ttl(&buf), 60);
        let buf = answer_with(2, "4.3.2.1.in-addr.arpa", Rtype::PTR, false, Rcode::NOERROR, |a, n| {
            let p = Name::<Vec<u8>>::from_str("mx.example.org").unwrap();
            a.push((n, Class::IN, 30, Ptr::new(p))).unwrap();
        });
        assert_eq!(parse_ptr(&buf).unwrap(), (vec!["mx.example.org".to_string()], 30));
        assert!(parse_txt(b"\x00").is_err());
    }

    #[test]
    fn negative_ttl_from_soa() {
        let qname = Name::<Vec<u8>>::from_str("nx.example.org").unwrap();
        let mut b = MessageBuilder::new_vec();
        b.header_mut().set_qr(true);
        b.header_mut().set_rcode(Rcode::NXDOMAIN);
        let mut q = b.question();
        q.push((&qname, Rtype::TXT)).unwrap();
        let mut auth = q.authority();
        let zone = Name::<Vec<u8>>::from_str("example.org").unwrap();
        let soa = Soa::new(
            zone.clone(),
            zone.clone(),
            domain::base::Serial(1),
            domain::base::Ttl::from_secs(3600),
            domain::base::Ttl::from_secs(600),
            domain::base::Ttl::from_secs(86400),
            domain::base::Ttl::from_secs(120),
        );
        auth.push((&zone, Class::IN, 3000, soa)).unwrap();
        let buf = auth.finish();
        assert_eq!(negative_ttl(&buf), Some(120));
        assert_eq!(answer_ttl(&buf), u32::MAX);
        let bare = answer_with(1, "x.example", Rtype::A, false, Rcode::NXDOMAIN, |_, _| {});
        assert_eq!(negative_ttl(&bare), None);
    }

    #[test]
    fn cache_ttl_negative_and_bounds() {
        let t0 = Instant::now();
        let key = |n: &str| (n.to_string(), 16u16);
        let mut c = Cache::new(3, 1 << 20);
        c.put(key("a"), Ok(Rdata::Txt(vec![b"x".to_vec()])), 10, t0);
        c.put(key("nx"), Err(Error::NoName), 5, t0);
        c.put(key("tmp"), Err(Error::Temp("x".into())), 100, t0);
        c.put(key("zero"), Ok(Rdata::A(vec![])), 0, t0);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&key("a"), t0), Some(Ok(Rdata::Txt(vec![b"x".to_vec()]))));
        assert_eq!(c.get(&key("nx"), t0 + Duration::from_secs(4)), Some(Err(Error::NoName)));
        assert_eq!(c.get(&key("nx"), t0 + Duration::from_secs(5)), None);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&key("a"), t0 + Duration::from_secs(10)), None);
        // The entry budget: the oldest goes first.
        for n in ["1", "2", "3", "4"] {
            c.put(key(n), Ok(Rdata::A(vec![Ipv4Addr::LOCALHOST])), 60, t0);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&key("1"), t0), None);
        assert!(c.get(&key("4"), t0).is_some());
        // The byte budget: a record larger than the whole budget is not kept,
        // and big ones push the others out.
        let mut c = Cache::new(100, 1000);
        c.put(key("big"), Ok(Rdata::Txt(vec![vec![b'x'; 2000]])), 60, t0);
        assert!(c.is_empty());
        for n in 0..10 {
            c.put(key(&n.to_string()), Ok(Rdata::Txt(vec![vec![b'x'; 300]])), 60, t0);
        }
        assert!(c.len() <= 3 && c.bytes <= 1000, "{} {}", c.len(), c.bytes);
        assert!(c.get(&key("9"), t0).is_some());
    }
}
