//! HAProxy PROXY protocol header parser, versions 1 (text) and 2 (binary), as
//! haproxy's doc/proxy-protocol.txt specifies them. Pure: bytes in, addresses
//! out; no I/O here. The caller peeks at what has arrived, calls [`parse_header`],
//! and reads exactly the consumed length once the header is complete, so that
//! not one byte of the session behind it is taken.
//!
//! Bounded: a v1 header is at most 107 bytes; a v2 header is refused above
//! [`MAX_V2`] bytes (TLVs included, which are skipped).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12-byte signature that starts a v2 header.
pub const V2_SIG: [u8; 12] = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
/// Longest v1 line, CRLF included (the specification's figure).
pub const V1_MAX: usize = 107;
/// Longest v2 header accepted, signature and TLVs included.
pub const MAX_V2: usize = 16 + 4096;
/// Enough to hold any header this parser accepts.
pub const MAX_HEADER: usize = MAX_V2;

/// What the header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// Relayed connection: the original client (source) and the address it
    /// connected to (destination).
    Proxied { src: SocketAddr, dst: SocketAddr },
    /// v2 LOCAL (the proxy's own health check), v1 `UNKNOWN`, or a v2 family
    /// other than TCP over IPv4/IPv6: keep the real addresses of the connection.
    Local,
}

/// Outcome of looking at the bytes that have arrived so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Not enough bytes yet; nothing wrong so far.
    Incomplete,
    /// A whole header of `len` bytes.
    Done { header: Header, len: usize },
}

/// Why a header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Neither the v1 `PROXY ` prefix nor the v2 signature.
    NotProxy,
    /// v1 line without CRLF within 107 bytes.
    V1TooLong,
    /// v1 line that does not follow the grammar.
    V1Syntax,
    /// v2 version nibble other than 2 or command other than LOCAL/PROXY.
    V2Version,
    /// v2 address block shorter than its family needs.
    V2Short,
    /// v2 header longer than [`MAX_V2`].
    V2TooLong,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::NotProxy => "no PROXY protocol header",
            Error::V1TooLong => "PROXY v1 line too long",
            Error::V1Syntax => "PROXY v1 syntax error",
            Error::V2Version => "PROXY v2 bad version or command",
            Error::V2Short => "PROXY v2 address block too short",
            Error::V2TooLong => "PROXY v2 header too long",
        })
    }
}

impl std::error::Error for Error {}

/// Parse the header at the start of `buf`.
pub fn parse_header(buf: &[u8]) -> Result<Parsed, Error> {
    if buf.first() == Some(&V2_SIG[0]) {
        let n = buf.len().min(V2_SIG.len());
        if buf[..n] != V2_SIG[..n] {
            return Err(Error::NotProxy);
        }
        if buf.len() < 16 {
            return Ok(Parsed::Incomplete);
        }
        return parse_v2(buf);
    }
    const V1: &[u8] = b"PROXY ";
    let n = buf.len().min(V1.len());
    if buf[..n] != V1[..n] {
        return Err(Error::NotProxy);
    }
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(end) if end + 2 <= V1_MAX => parse_v1(&buf[..end]).map(|header| Parsed::Done { header, len: end + 2 }),
        Some(_) => Err(Error::V1TooLong),
        None if buf.len() >= V1_MAX => Err(Error::V1TooLong),
        None => Ok(Parsed::Incomplete),
    }
}

/// `PROXY TCP4 src dst sport dport` without the CRLF.
fn parse_v1(line: &[u8]) -> Result<Header, Error> {
    let line = std::str::from_utf8(line).map_err(|_| Error::V1Syntax)?;
    let mut it = line.split(' ');
    it.next(); // "PROXY"
    let proto = it.next().ok_or(Error::V1Syntax)?;
    if proto == "UNKNOWN" {
        // The rest of the line may be anything and is ignored.
        return Ok(Header::Local);
    }
    let fields: Vec<&str> = it.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(Error::V1Syntax);
    };
    let (src, dst): (IpAddr, IpAddr) = match proto {
        "TCP4" => (
            IpAddr::V4(src.parse::<Ipv4Addr>().map_err(|_| Error::V1Syntax)?),
            IpAddr::V4(dst.parse::<Ipv4Addr>().map_err(|_| Error::V1Syntax)?),
        ),
        "TCP6" => (
            IpAddr::V6(src.parse::<Ipv6Addr>().map_err(|_| Error::V1Syntax)?),
            IpAddr::V6(dst.parse::<Ipv6Addr>().map_err(|_| Error::V1Syntax)?),
        ),
        _ => return Err(Error::V1Syntax),
    };
    Ok(Header::Proxied { src: SocketAddr::new(src, port(sport)?), dst: SocketAddr::new(dst, port(dport)?) })
}

/// Decimal 0..=65535 without a leading zero (the specification forbids them).
fn port(s: &str) -> Result<u16, Error> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|c| c.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return Err(Error::V1Syntax);
    }
    s.parse().map_err(|_| Error::V1Syntax)
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, Error> {
    let ver_cmd = buf[12];
    let fam = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if ver_cmd >> 4 != 2 || ver_cmd & 0x0f > 1 {
        return Err(Error::V2Version);
    }
    let total = 16 + len;
    if total > MAX_V2 {
        return Err(Error::V2TooLong);
    }
    if buf.len() < total {
        return Ok(Parsed::Incomplete);
    }
    let body = &buf[16..total];
    let done = |header| Ok(Parsed::Done { header, len: total });
    if ver_cmd & 0x0f == 0 {
        return done(Header::Local);
    }
    let be16 = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match fam {
        // TCP over IPv4
        0x11 => {
            if body.len() < 12 {
                return Err(Error::V2Short);
            }
            let src = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let dst = Ipv4Addr::new(body[4], body[5], body[6], body[7]);
            done(Header::Proxied {
                src: SocketAddr::new(IpAddr::V4(src), be16(&body[8..10])),
                dst: SocketAddr::new(IpAddr::V4(dst), be16(&body[10..12])),
            })
        }
        // TCP over IPv6
        0x21 => {
            if body.len() < 36 {
                return Err(Error::V2Short);
            }
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&body[0..16]);
            d.copy_from_slice(&body[16..32]);
            done(Header::Proxied {
                src: SocketAddr::new(IpAddr::V6(Ipv6Addr::from(s)), be16(&body[32..34])),
                dst: SocketAddr::new(IpAddr::V6(Ipv6Addr::from(d)), be16(&body[34..36])),
            })
        }
        // UNSPEC, UNIX, datagrams: the specification lets the receiver keep
        // the connection's own addresses.
        _ => done(Header::Local),
    }
}

/// Encode a v1 header (for tests and tools).
pub fn encode_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let fam = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!("PROXY {fam} {} {} {} {}\r\n", src.ip(), dst.ip(), src.port(), dst.port()).into_bytes()
}

/// Encode a v2 PROXY header over TCP (for tests and tools).
pub fn encode_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut v = V2_SIG.to_vec();
    v.push(0x21);
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            v.push(0x11);
            v.extend_from_slice(&12u16.to_be_bytes());
            v.extend_from_slice(&s.ip().octets());
            v.extend_from_slice(&d.ip().octets());
        }
        _ => {
            let six = |a: SocketAddr| match a.ip() {
                IpAddr::V4(x) => x.to_ipv6_mapped().octets(),
                IpAddr::V6(x) => x.octets(),
            };
            v.push(0x21);
            v.extend_from_slice(&36u16.to_be_bytes());
            v.extend_from_slice(&six(src));
            v.extend_from_slice(&six(dst));
        }
    }
    v.extend_from_slice(&src.port().to_be_bytes());
    v.extend_from_slice(&dst.port().to_be_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_table() {
        let ok = |s: &str, src: &str, dst: &str| {
            assert_eq!(
                parse_header(s.as_bytes()),
                Ok(Parsed::Done { header: Header::Proxied { src: sa(src), dst: sa(dst) }, len: s.find("\r\n").unwrap() + 2 }),
                "{s:?}"
            );
        };
        ok("PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\nEHLO x\r\n", "192.0.2.1:56324", "198.51.100.2:25");
        ok("PROXY TCP6 2001:db8::1 2001:db8::2 0 65535\r\n", "[2001:db8::1]:0", "[2001:db8::2]:65535");
        assert_eq!(parse_header(b"PROXY UNKNOWN\r\n"), Ok(Parsed::Done { header: Header::Local, len: 15 }));
        assert_eq!(
            parse_header(b"PROXY UNKNOWN ffff:f...f 1 2\r\n"),
            Ok(Parsed::Done { header: Header::Local, len: 30 })
        );
        for partial in ["", "P", "PROXY", "PROXY TCP4 1.2.3.4", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"] {
            assert_eq!(parse_header(partial.as_bytes()), Ok(Parsed::Incomplete), "{partial:?}");
        }
        let bad: &[(&str, Error)] = &[
            ("EHLO x\r\n", Error::NotProxy),
            ("proxy TCP4", Error::NotProxy),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", Error::V1Syntax),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", Error::V1Syntax),
            ("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", Error::V1Syntax),
            ("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", Error::V1Syntax),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", Error::V1Syntax),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", Error::V1Syntax),
            ("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", Error::V1Syntax),
            ("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", Error::V1Syntax),
        ];
        for (s, e) in bad {
            assert_eq!(parse_header(s.as_bytes()), Err(*e), "{s:?}");
        }
        let long = format!("PROXY UNKNOWN {}", "x".repeat(200));
        assert_eq!(parse_header(long.as_bytes()), Err(Error::V1TooLong));
    }

    #[test]
    fn v2_table() {
        let h = encode_v2(sa("192.0.2.1:56324"), sa("198.51.100.2:25"));
        assert_eq!(h.len(), 28);
        let want = Parsed::Done { header: Header::Proxied { src: sa("192.0.2.1:56324"), dst: sa("198.51.100.2:25") }, len: 28 };
        let mut with_data = h.clone();
        with_data.extend_from_slice(b"EHLO x\r\n");
        assert_eq!(parse_header(&with_data), Ok(want));
        for n in 0..h.len() {
            assert_eq!(parse_header(&h[..n]), Ok(Parsed::Incomplete), "prefix {n}");
        }
        let h6 = encode_v2(sa("[2001:db8::1]:1"), sa("[2001:db8::2]:2"));
        assert_eq!(
            parse_header(&h6),
            Ok(Parsed::Done { header: Header::Proxied { src: sa("[2001:db8::1]:1"), dst: sa("[2001:db8::2]:2") }, len: 52 })
        );
        // TLVs after the addresses are skipped.
        let mut tlv = h.clone();
        tlv[15] = 12 + 5;
        tlv.extend_from_slice(&[0x04, 0x00, 0x02, b'o', b'k']);
        assert_eq!(parse_header(&tlv), Ok(Parsed::Done { header: want_header(&want), len: 33 }));
        // LOCAL command: keep the real addresses.
        let mut local = h.clone();
        local[12] = 0x20;
        assert_eq!(parse_header(&local), Ok(Parsed::Done { header: Header::Local, len: 28 }));
        // UNSPEC family.
        let unspec = [&V2_SIG[..], &[0x21, 0x00, 0x00, 0x00]].concat();
        assert_eq!(parse_header(&unspec), Ok(Parsed::Done { header: Header::Local, len: 16 }));
        // Errors.
        let mut v1ver = h.clone();
        v1ver[12] = 0x11;
        assert_eq!(parse_header(&v1ver), Err(Error::V2Version));
        let mut cmd = h.clone();
        cmd[12] = 0x22;
        assert_eq!(parse_header(&cmd), Err(Error::V2Version));
        let mut short = h.clone();
        short[15] = 4;
        short.truncate(20);
        assert_eq!(parse_header(&short), Err(Error::V2Short));
        let mut huge = h.clone();
        huge[14] = 0xff;
        assert_eq!(parse_header(&huge), Err(Error::V2TooLong));
        let mut badsig = h.clone();
        badsig[5] = b'x';
        assert_eq!(parse_header(&badsig), Err(Error::NotProxy));
    }

    fn want_header(p: &Parsed) -> Header {
        match p {
            Parsed::Done { header, .. } => *header,
            Parsed::Incomplete => Header::Local,
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_respects_bounds(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            if let Ok(Parsed::Done { len, .. }) = parse_header(&data) {
                proptest::prop_assert!(len <= data.len() && len <= MAX_HEADER);
            }
        }

        #[test]
        fn prefixes_of_a_header_are_incomplete(a in 0u32.., b in 0u32.., p in 0u16.., q in 0u16.., v2 in proptest::prelude::any::<bool>()) {
            let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), p);
            let dst = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(b)), q);
            let h = if v2 { encode_v2(src, dst) } else { encode_v1(src, dst) };
            for n in 0..h.len() {
                proptest::prop_assert_eq!(parse_header(&h[..n]), Ok(Parsed::Incomplete));
            }
            proptest::prop_assert_eq!(parse_header(&h), Ok(Parsed::Done { header: Header::Proxied { src, dst }, len: h.len() }));
        }
    }

    #[test]
    fn v1_encode_round_trip() {
        let e = encode_v1(sa("10.0.0.1:1234"), sa("10.0.0.2:25"));
        assert_eq!(e, b"PROXY TCP4 10.0.0.1 10.0.0.2 1234 25\r\n");
        assert!(matches!(parse_header(&e), Ok(Parsed::Done { .. })));
    }
}
