//! Access rules in tcprules' text syntax (tcprules(1)), or as tcprules compiles
//! them into a cdb, matched as tcpserver matches them. Pure: bytes in, a lookup
//! table out; no I/O here.
//!
//! A rule is `address:instructions` on one line; `#` lines are comments (blank
//! lines are skipped too). Instructions are `allow` or `deny`, then any number of
//! `,VAR="value"` where the quote may be any repeated character (`VAR=/v/`).
//!
//! Addresses:
//! - `1.2.3.4` one IPv4 address; `1.2.3.` `10.` prefixes ending with a dot;
//!   ranges in any part as tcprules expands them (`1.2.3.37-53`, `10.2-3.`);
//! - `2001:db8::1` one IPv6 address in any textual form; `10.0.0.0/8` and
//!   `2001:db8::/32` in CIDR notation (as ucspi-tcp6 accepts them);
//! - the empty address: every connection;
//! - `=host`, `=.domain`, `=` and `info@address` are accepted for compatibility but
//!   never match: the supervisor does no DNS or ident lookups (its callers would
//!   stall behind them), so `TCPREMOTEHOST` and `TCPREMOTEINFO` are never known.
//!
//! Lookup order is tcpserver's: the exact address first, then shorter and shorter
//! prefixes (the longest matching prefix wins), then the empty address. Among rules
//! for the same prefix the first in the file wins. No rule at all: allow.
//! IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are looked up as IPv4.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Largest rules file accepted.
pub const MAX_FILE: usize = 4 << 20;
/// Most prefixes one range rule may expand to (tcprules has no limit; a typo such
/// as `1-255.1-255.1-255.` would otherwise make millions).
pub const MAX_EXPANSION: usize = 65536;

/// What to do with a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run the program with these variables added to its environment.
    Allow(Vec<(Vec<u8>, Vec<u8>)>),
    /// Drop the connection without running anything.
    Deny,
}

/// A parsed rules file.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// (network, prefix length, index into `actions`), in file order.
    nets: Vec<(IpAddr, u8, usize)>,
    /// The first rule with the empty address.
    any: Option<usize>,
    actions: Vec<Action>,
}

/// A syntax error, `line` counting from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub line: usize,
    pub what: &'static str,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.what)
        } else {
            write!(f, "line {}: {}", self.line, self.what)
        }
    }
}

impl std::error::Error for Error {}

/// Parse a whole rules file.
pub fn parse_rules(text: &[u8]) -> Result<Rules, Error> {
    if text.len() > MAX_FILE {
        return Err(Error { line: 0, what: "rules file too large" });
    }
    let mut rules = Rules::default();
    for (n, raw) in text.split(|&c| c == b'\n').enumerate() {
        let line = n + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.first() == Some(&b'#') || raw.iter().all(|c| c.is_ascii_whitespace()) {
            continue;
        }
        let err = |what| Error { line, what };
        let (addr, instr) = split_rule(raw).ok_or(err("no ':allow' or ':deny' after the address"))?;
        let action = parse_instructions(instr).map_err(err)?;
        rules.add(parse_address(addr).map_err(err)?, action);
    }
    Ok(rules)
}

/// Largest compiled rules file accepted.
pub const MAX_CDB: usize = 64 << 20;

/// Read a rules file compiled by tcprules(1) (a cdb: a 2048-byte table of
/// hash-table positions, then records `klen, dlen, key, data` with
/// little-endian 32-bit lengths). Every record is read in order, so a key
/// written twice keeps its first value, as tcpserver's cdb_find sees it. A
/// record's data is `D` for deny, or `+VAR=value\0` items for allow.
/// `Error::line` holds the record number (from 1).
pub fn parse_cdb(bytes: &[u8]) -> Result<Rules, Error> {
    let err = |line, what| Error { line, what };
    if bytes.len() > MAX_CDB {
        return Err(err(0, "rules cdb too large"));
    }
    if bytes.len() < 2048 {
        return Err(err(0, "not a cdb file: shorter than its 2048-byte header"));
    }
    let u32_at = |i: usize| -> Option<usize> {
        let b = bytes.get(i..i + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    // Records end where the first hash table starts.
    let mut end = bytes.len();
    for slot in 0..256 {
        let pos = u32_at(slot * 8).ok_or(err(0, "not a cdb file"))?;
        if pos < 2048 || pos > bytes.len() {
            return Err(err(0, "not a cdb file: bad table position"));
        }
        end = end.min(pos);
    }
    let mut rules = Rules::default();
    let mut at = 2048;
    let mut n = 0;
    while at < end {
        n += 1;
        let (Some(klen), Some(dlen)) = (u32_at(at), u32_at(at + 4)) else {
            return Err(err(n, "truncated record"));
        };
        let kstart = at + 8;
        let dstart = kstart.checked_add(klen).ok_or(err(n, "truncated record"))?;
        let dend = dstart.checked_add(dlen).ok_or(err(n, "truncated record"))?;
        if dend > end {
            return Err(err(n, "truncated record"));
        }
        let (key, data) = (&bytes[kstart..dstart], &bytes[dstart..dend]);
        at = dend;
        let action = if data.first() == Some(&b'D') {
            Action::Deny
        } else {
            let mut vars: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for item in data.split(|&c| c == 0) {
                let Some(kv) = item.strip_prefix(b"+") else { continue };
                let Some(eq) = kv.iter().position(|&c| c == b'=') else { continue };
                let (name, value) = (&kv[..eq], &kv[eq + 1..]);
                if !vars.iter().any(|(k, _)| k == name) {
                    vars.push((name.to_vec(), value.to_vec()));
                }
            }
            Action::Allow(vars)
        };
        rules.add(parse_address(key).map_err(|what| err(n, what))?, action);
    }
    Ok(rules)
}

impl Rules {
    /// Record one rule, in file order (the first match wins, as tcpserver's).
    fn add(&mut self, pattern: Pattern, action: Action) {
        let idx = self.actions.len();
        match pattern {
            Pattern::Any => {
                if self.any.is_none() {
                    self.any = Some(idx);
                }
            }
            Pattern::Never => {}
            Pattern::Nets(v) => self.nets.extend(v.into_iter().map(|(a, l)| (a, l, idx))),
        }
        self.actions.push(action);
    }

    /// The action for a connection from `ip`, or `None` when no rule applies
    /// (tcpserver then allows the connection with nothing added).
    pub fn lookup(&self, ip: IpAddr) -> Option<&Action> {
        let ip = canonical(ip);
        let mut best: Option<(u8, usize)> = None;
        for &(net, len, idx) in &self.nets {
            if contains(net, len, ip) {
                let better = match best {
                    None => true,
                    Some((blen, bidx)) => len > blen || (len == blen && idx < bidx),
                };
                if better {
                    best = Some((len, idx));
                }
            }
        }
        best.map(|(_, i)| i).or(self.any).and_then(|i| self.actions.get(i))
    }

    /// Number of rules read (for the log).
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// True when the file held no rules.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// IPv4-mapped IPv6 addresses become plain IPv4, as a dual-stack socket reports
/// IPv4 clients that way.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

enum Pattern {
    Any,
    Never,
    Nets(Vec<(IpAddr, u8)>),
}

/// Split at the colon that starts the instructions: the first `:allow` or
/// `:deny` followed by `,` or the end. An IPv6 address holds colons but never
/// the letters of `allow`/`deny` after one.
fn split_rule(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    for i in 0..raw.len() {
        if raw[i] != b':' {
            continue;
        }
        let rest = &raw[i + 1..];
        for word in [&b"allow"[..], b"deny"] {
            if let Some(after) = rest.strip_prefix(word) {
                if after.is_empty() || after[0] == b',' {
                    return Some((&raw[..i], rest));
                }
            }
        }
    }
    None
}

fn parse_instructions(s: &[u8]) -> Result<Action, &'static str> {
    let (allow, mut rest) = if let Some(r) = s.strip_prefix(b"allow") {
        (true, r)
    } else if let Some(r) = s.strip_prefix(b"deny") {
        (false, r)
    } else {
        return Err("instructions must begin with allow or deny");
    };
    let mut vars: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    while let Some(r) = rest.strip_prefix(b",") {
        let eq = r.iter().position(|&c| c == b'=').ok_or("variable without '='")?;
        let name = &r[..eq];
        if name.is_empty() || name.iter().any(|&c| c == 0 || c.is_ascii_whitespace()) {
            return Err("bad variable name");
        }
        let after = &r[eq + 1..];
        let (&quote, body) = after.split_first().ok_or("variable without a quoted value")?;
        let end = body.iter().position(|&c| c == quote).ok_or("unterminated value")?;
        let value = &body[..end];
        if value.contains(&0) {
            return Err("NUL byte in value");
        }
        rest = &body[end + 1..];
        if !(rest.is_empty() || rest[0] == b',') {
            return Err("junk after a value");
        }
        match vars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.to_vec(),
            None => vars.push((name.to_vec(), value.to_vec())),
        }
    }
    if !rest.is_empty() {
        return Err("junk after allow or deny");
    }
    Ok(if allow { Action::Allow(vars) } else { Action::Deny })
}

fn parse_address(a: &[u8]) -> Result<Pattern, &'static str> {
    if a.is_empty() {
        return Ok(Pattern::Any);
    }
    if a[0] == b'=' || a.contains(&b'@') {
        return Ok(Pattern::Never);
    }
    let s = std::str::from_utf8(a).map_err(|_| "address is not ASCII")?;
    if let Some((net, len)) = s.split_once('/') {
        let len: u8 = len.parse().map_err(|_| "bad CIDR prefix length")?;
        let ip: IpAddr = net.parse().map_err(|_| "bad CIDR address")?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err("CIDR prefix length too long");
        }
        let ip = canonical_net(ip, len);
        return Ok(Pattern::Nets(vec![(mask(ip.0, ip.1), ip.1)]));
    }
    if s.contains(':') {
        let ip: Ipv6Addr = s.parse().map_err(|_| "bad IPv6 address (use CIDR for prefixes)")?;
        let (ip, len) = canonical_net(IpAddr::V6(ip), 128);
        return Ok(Pattern::Nets(vec![(ip, len)]));
    }
    parse_v4(s).map(Pattern::Nets)
}

/// `::ffff:a.b.c.d/n` (n >= 96) is the IPv4 network a.b.c.d/(n-96).
fn canonical_net(ip: IpAddr, len: u8) -> (IpAddr, u8) {
    match ip {
        IpAddr::V6(v6) if len >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), len - 96),
            None => (ip, len),
        },
        _ => (ip, len),
    }
}

/// Dotted IPv4 with optional trailing dot (a prefix) and ranges `a-b` in any part.
fn parse_v4(s: &str) -> Result<Vec<(IpAddr, u8)>, &'static str> {
    let (body, prefix) = match s.strip_suffix('.') {
        Some(b) => (b, true),
        None => (s, false),
    };
    let parts: Vec<&str> = body.split('.').collect();
    if parts.is_empty() || parts.len() > 4 || (prefix && parts.len() > 3) || (!prefix && parts.len() != 4) {
        return Err("bad IPv4 address or prefix (a prefix ends with a dot)");
    }
    let mut ranges = Vec::with_capacity(parts.len());
    let mut total: usize = 1;
    for p in &parts {
        let (lo, hi) = match p.split_once('-') {
            Some((l, h)) => (octet(l)?, octet(h)?),
            None => (octet(p)?, octet(p)?),
        };
        if lo > hi {
            return Err("range goes backwards");
        }
        total = total.saturating_mul(usize::from(hi - lo) + 1);
        if total > MAX_EXPANSION {
            return Err("range expands to too many addresses");
        }
        ranges.push((lo, hi));
    }
    let len = (8 * parts.len()) as u8;
    let mut out = vec![[0u8; 4]];
    for (i, &(lo, hi)) in ranges.iter().enumerate() {
        let mut next = Vec::with_capacity(out.len() * (usize::from(hi - lo) + 1));
        for o in &out {
            for v in lo..=hi {
                let mut n = *o;
                n[i] = v;
                next.push(n);
            }
        }
        out = next;
    }
    Ok(out.into_iter().map(|o| (IpAddr::V4(Ipv4Addr::from(o)), len)).collect())
}

fn octet(s: &str) -> Result<u8, &'static str> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err("bad number in IPv4 address");
    }
    s.parse().map_err(|_| "number above 255 in IPv4 address")
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

fn contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => mask(ip, len) == net,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(rules: &str, ip: &str) -> Option<Action> {
        let r = parse_rules(rules.as_bytes()).unwrap();
        r.lookup(ip.parse().unwrap()).cloned()
    }

    fn allow(vars: &[(&str, &str)]) -> Option<Action> {
        Some(Action::Allow(vars.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()))
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_rules(&text);
            let mut c = cdb(&[]);
            c.extend_from_slice(&text);
            let _ = parse_cdb(&c);
            let _ = parse_cdb(&text);
        }

        #[test]
        fn rules_text_never_panics(text in "[0-9a-f.:/=@,\"a-z -]{0,80}") {
            if let Ok(r) = parse_rules(text.as_bytes()) {
                let _ = r.lookup("1.2.3.4".parse().unwrap());
                let _ = r.lookup("2001:db8::1".parse().unwrap());
            }
        }
    }

    #[test]
    fn tcprules_man_page_example() {
        // tcprules(1): the exact address beats prefixes, prefixes beat the empty rule.
        let r = "joe@127.0.0.1:allow,N=\"first\"\n18.23.0.32:allow,N=\"second\"\n:allow,N=\"third\"\n127.:allow,N=\"fourth\"\n";
        assert_eq!(look(r, "10.119.75.38"), allow(&[("N", "third")]));
        assert_eq!(look(r, "18.23.0.32"), allow(&[("N", "second")]));
        assert_eq!(look(r, "127.0.0.1"), allow(&[("N", "fourth")]));
    }

    #[test]
    fn table() {
        let r = "# comment\n\
                 \n\
                 127.0.0.1:allow,RELAYCLIENT=\"\",TCPLOCALHOST=\"movie.edu\"\n\
                 10.0.:allow,RELAYCLIENT=/@fix.me/\n\
                 10.:deny\n\
                 192.168.1.37-53:allow,R=\"range\"\n\
                 172.16.0.0/12:allow,NET=\"cidr\"\n\
                 ::1:allow,V6=\"lo\"\n\
                 2001:db8::/32:allow,V6=\"doc\"\n\
                 2001:db8::a:deny\n\
                 =mail.example.com:allow,HOST=\"never\"\n\
                 :deny\n";
        assert_eq!(look(r, "127.0.0.1"), allow(&[("RELAYCLIENT", ""), ("TCPLOCALHOST", "movie.edu")]));
        assert_eq!(look(r, "::ffff:127.0.0.1"), allow(&[("RELAYCLIENT", ""), ("TCPLOCALHOST", "movie.edu")]));
        assert_eq!(look(r, "10.0.5.5"), allow(&[("RELAYCLIENT", "@fix.me")]));
        assert_eq!(look(r, "10.1.5.5"), Some(Action::Deny));
        assert_eq!(look(r, "192.168.1.37"), allow(&[("R", "range")]));
        assert_eq!(look(r, "192.168.1.53"), allow(&[("R", "range")]));
        assert_eq!(look(r, "192.168.1.54"), Some(Action::Deny));
        assert_eq!(look(r, "172.31.255.255"), allow(&[("NET", "cidr")]));
        assert_eq!(look(r, "172.32.0.1"), Some(Action::Deny));
        assert_eq!(look(r, "::1"), allow(&[("V6", "lo")]));
        assert_eq!(look(r, "0:0::1"), allow(&[("V6", "lo")]));
        assert_eq!(look(r, "2001:db8:1::5"), allow(&[("V6", "doc")]));
        assert_eq!(look(r, "2001:db8::a"), Some(Action::Deny));
        assert_eq!(look(r, "2001:db9::1"), Some(Action::Deny));
        assert_eq!(look(r, "8.8.8.8"), Some(Action::Deny));
    }

    #[test]
    fn first_of_equal_rules_wins_and_no_rule_allows() {
        assert_eq!(look("1.2.3.4:allow,A=\"1\"\n1.2.3.4:deny\n", "1.2.3.4"), allow(&[("A", "1")]));
        assert_eq!(look("1.2.3.4:deny\n", "1.2.3.5"), None);
        assert_eq!(look("10.2-3.:deny\n", "10.3.0.1"), Some(Action::Deny));
        assert_eq!(look("10.2-3.:deny\n", "10.4.0.1"), None);
    }

    /// A cdb as tcprules writes it (hash tables left empty: they are not read).
    fn cdb(records: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, d) in records {
            body.extend_from_slice(&(k.len() as u32).to_le_bytes());
            body.extend_from_slice(&(d.len() as u32).to_le_bytes());
            body.extend_from_slice(k);
            body.extend_from_slice(d);
        }
        let end = (2048 + body.len()) as u32;
        let mut out = Vec::new();
        for _ in 0..256 {
            out.extend_from_slice(&end.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
        }
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn cdb_records() {
        let c = cdb(&[
            (b"127.0.0.1", b"+RELAYCLIENT=\0+X=a b\0"),
            (b"10.", b"D"),
            (b"=host.example", b"+H=1\0"),
            (b"1.2.3.4", b""),
            (b"1.2.3.4", b"D"),
            (b"", b"+R=any\0"),
        ]);
        let r = parse_cdb(&c).unwrap();
        let l = |ip: &str| r.lookup(ip.parse().unwrap()).cloned();
        assert_eq!(l("127.0.0.1"), allow(&[("RELAYCLIENT", ""), ("X", "a b")]));
        assert_eq!(l("10.9.9.9"), Some(Action::Deny));
        assert_eq!(l("1.2.3.4"), allow(&[]));
        assert_eq!(l("8.8.8.8"), allow(&[("R", "any")]));
        assert!(parse_cdb(&c[..100]).is_err());
        let mut cut = c.clone();
        cut[2048] = 200; // first key length runs past the records
        assert_eq!(parse_cdb(&cut).unwrap_err().line, 1);
        let mut badpos = c.clone();
        badpos[0..4].copy_from_slice(&5u32.to_le_bytes());
        assert!(parse_cdb(&badpos).is_err());
    }

    #[test]
    fn errors() {
        let bad: &[(&str, usize)] = &[
            ("1.2.3.4\n", 1),
            ("1.2.3.4:permit\n", 1),
            ("#\n1.2.3.4:allow,X\n", 2),
            ("1.2.3.4:allow,X=\"open\n", 1),
            ("1.2.3.4:allow,X=\"v\"junk\n", 1),
            ("1.2.3.4:allowx\n", 1),
            ("1.2.3:allow\n", 1),
            ("1.2.3.256:allow\n", 1),
            ("1.2.3.9-3:allow\n", 1),
            ("1-255.1-255.1-255.:allow\n", 1),
            ("10.0.0.0/33:allow\n", 1),
            ("fe80::zz:allow\n", 1),
            ("1.2.3.4 :allow\n", 1),
        ];
        for (text, line) in bad {
            let e = parse_rules(text.as_bytes()).unwrap_err();
            assert_eq!(e.line, *line, "{text:?}");
        }
    }
}
