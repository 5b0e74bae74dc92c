//! smtproutes (qmail-control(5), qmail-remote(8)): lines `domain:relay` or
//! `domain:relay:port`. `domain` matches the host exactly; `.domain` matches
//! any host below it; the empty domain matches every host (a smarthost).
//! An empty relay means "deliver by MX as usual" (an exception to a
//! smarthost line). The first match in qmail's order wins: the whole host,
//! then each suffix from a dot, then the empty domain. Pure: text in, routes out.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The relay host: a name, an IP address, or `[address]`. `None`: look up
    /// the MX of the domain (optionally on `port`).
    pub relay: Option<String>,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    entries: Vec<(String, Route)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub line: usize,
    pub what: &'static str,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

impl Routes {
    /// Parse the file. Blank lines and lines starting with `#` are skipped
    /// (qmail has no comments; a `#` domain matches nothing real anyway).
    /// For an IPv6 relay write `[addr]`, so the colon split stays clear.
    pub fn parse(text: &str) -> Result<Routes, Error> {
        let mut entries = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |what| Error { line: n + 1, what };
            let (domain, rest) = line.split_once(':').ok_or(err("no colon"))?;
            let (relay, port) = split_relay(rest).ok_or(err("bad relay or port"))?;
            let domain = domain.trim().to_ascii_lowercase();
            entries.push((domain, Route { relay, port }));
        }
        Ok(Routes { entries })
    }

    /// The route for `host`, if any line matches.
    pub fn lookup(&self, host: &str) -> Option<&Route> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let mut keys: Vec<&str> = vec![&host];
        for (i, c) in host.char_indices() {
            if c == '.' {
                keys.push(&host[i..]);
            }
        }
        keys.push("");
        keys.iter().find_map(|k| self.entries.iter().find(|(d, _)| d == k).map(|(_, r)| r))
    }
}

/// `relay`, `relay:port`, `[v6]`, `[v6]:port`, `:port` or empty.
fn split_relay(s: &str) -> Option<(Option<String>, Option<u16>)> {
    let s = s.trim();
    let (relay, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let relay = &s[..end + 2];
        match &s[end + 2..] {
            "" => (relay, None),
            p => (relay, Some(p.strip_prefix(':')?)),
        }
    } else {
        match s.split_once(':') {
            Some((r, p)) => (r, Some(p)),
            None => (s, None),
        }
    };
    let port = match port.map(str::trim) {
        None | Some("") => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0)?),
    };
    let relay = relay.trim();
    Some((if relay.is_empty() { None } else { Some(relay.to_string()) }, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(relay: Option<&str>, port: Option<u16>) -> Route {
        Route { relay: relay.map(String::from), port }
    }

    #[test]
    fn qmail_order() {
        let t = Routes::parse(
            "# comment\n\nexample.com:relay.example.net\n.example.com:sub-relay:2525\n\
local.example.com:\n:smarthost.example.org:587\n[192.0.2.7]:[2001:db8::1]:26\n",
        )
        .unwrap();
        assert_eq!(t.lookup("example.com"), Some(&r(Some("relay.example.net"), None)));
        assert_eq!(t.lookup("EXAMPLE.com."), Some(&r(Some("relay.example.net"), None)));
        assert_eq!(t.lookup("a.b.example.com"), Some(&r(Some("sub-relay"), Some(2525))));
        assert_eq!(t.lookup("local.example.com"), Some(&r(None, None)));
        assert_eq!(t.lookup("other.org"), Some(&r(Some("smarthost.example.org"), Some(587))));
        assert_eq!(t.lookup("[192.0.2.7]"), Some(&r(Some("[2001:db8::1]"), Some(26))));
        assert_eq!(Routes::parse("a.org:x\n").unwrap().lookup("b.org"), None);
        assert_eq!(Routes::parse("a.org::2525\n").unwrap().lookup("a.org"), Some(&r(None, Some(2525))));
    }

    #[test]
    fn errors() {
        assert_eq!(Routes::parse("nocolon\n"), Err(Error { line: 1, what: "no colon" }));
        assert!(Routes::parse("a:b:99999\n").is_err());
        assert!(Routes::parse("a:b:x\n").is_err());
        assert!(Routes::parse("a:b:0\n").is_err());
        assert!(Routes::parse("a:[::1\n").is_err());
        assert!(Routes::parse("a:[::1]x\n").is_err());
    }
}
