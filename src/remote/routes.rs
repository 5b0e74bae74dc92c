//! smtproutes (qmail-control(5), qmail-remote(8)): lines `domain:relay` or
//! `domain:relay:port`. `domain` matches the host exactly; `.domain` matches
//! any host below it; the empty domain matches every host (a smarthost).
//! An empty relay means "deliver by MX as usual" (an exception to a
//! smarthost line). The first match in qmail's order wins: the whole host,
//! then each suffix from a dot, then the empty domain. Pure: text in, routes out.
//!
//! Our extension: after the route, separated by white space, options for
//! the deliveries that take it (`tls=verify pin=sha256:... xforward`), each
//! overriding the variable of the same meaning. qmail's part never has
//! white space in it, so a qmail file means here what it means to qmail.
//! An unknown option is an error, not ignored: a later option (a delivery
//! protocol, say) must never be half-understood by an older smtp-remote.

use super::tls::{self, Pin, Policy};

/// Per-route settings; `None` (or no pins): the variable decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `tls=`: as `SMTP_TLS`.
    pub tls: Option<Policy>,
    /// `pin=` (repeatable): as `TLS_PIN`, replacing it for this route.
    pub pins: Vec<Pin>,
    /// `auth_unverified`: as `AUTH_UNVERIFIED`.
    pub auth_unverified: Option<bool>,
    /// `xclient`, `xforward`: as `SMTP_XCLIENT`, `SMTP_XFORWARD`.
    pub xclient: Option<bool>,
    pub xforward: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The relay host: a name, an IP address, or `[address]`. `None`: look up
    /// the MX of the domain (optionally on `port`).
    pub relay: Option<String>,
    pub port: Option<u16>,
    pub opts: Options,
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
            let (route, opts) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let (domain, rest) = route.split_once(':').ok_or(err("no colon"))?;
            let (relay, port) = split_relay(rest).ok_or(err("bad relay or port"))?;
            let opts = parse_options(opts).map_err(err)?;
            let domain = domain.to_ascii_lowercase();
            entries.push((domain, Route { relay, port, opts }));
        }
        Ok(Routes { entries })
    }

    /// Does any route ask for TLS level `p`?
    pub fn any_tls(&self, p: Policy) -> bool {
        self.entries.iter().any(|(_, r)| r.opts.tls == Some(p))
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

/// The options field: words separated by white space or commas, each
/// `name` (a flag, on), `name=0`/`name=1`, or `name=value`.
pub fn parse_options(text: &str) -> Result<Options, &'static str> {
    let mut o = Options::default();
    for word in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|w| !w.is_empty()) {
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (word, None),
        };
        let flag = |slot: &mut Option<bool>| -> Result<(), &'static str> {
            if slot.is_some() {
                return Err("option given twice");
            }
            *slot = Some(match value {
                None | Some("1") => true,
                Some("0") => false,
                Some(_) => return Err("a flag option takes 0 or 1"),
            });
            Ok(())
        };
        match name {
            "tls" => {
                if o.tls.is_some() {
                    return Err("option given twice");
                }
                o.tls = Some(value.and_then(Policy::parse).filter(|_| value != Some("")).ok_or("bad tls= level")?);
            }
            "pin" => o.pins.push(value.and_then(tls::parse_pin).ok_or("bad pin= (sha256:hex)")?),
            "auth_unverified" => flag(&mut o.auth_unverified)?,
            "xclient" => flag(&mut o.xclient)?,
            "xforward" => flag(&mut o.xforward)?,
            _ => return Err("unknown option"),
        }
    }
    Ok(o)
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
        Route { relay: relay.map(String::from), port, opts: Options::default() }
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

    #[test]
    fn options() {
        let pin = "sha256:".to_string() + &"ab".repeat(32);
        let colons = "sha256:".to_string() + &["CD"; 32].join(":");
        let t = Routes::parse(&format!(
            ":smart.example:587 tls=verify pin={pin},pin={colons}\tauth_unverified\n\
example.com: tls=dane xforward=1 xclient=0\n[192.0.2.1]:[::1]  \n"
        ))
        .unwrap();
        let smart = t.lookup("other.example").unwrap();
        assert_eq!((smart.relay.as_deref(), smart.port), (Some("smart.example"), Some(587)));
        assert_eq!(
            smart.opts,
            Options { tls: Some(Policy::Verify), pins: vec![[0xab; 32], [0xcd; 32]], auth_unverified: Some(true), ..Options::default() }
        );
        let ex = t.lookup("example.com").unwrap();
        assert_eq!((ex.relay.as_deref(), ex.port), (None, None));
        assert_eq!(ex.opts, Options { tls: Some(Policy::Dane), xforward: Some(true), xclient: Some(false), ..Options::default() });
        assert_eq!(t.lookup("[192.0.2.1]"), Some(&r(Some("[::1]"), None)));
        let bad: &[(&str, &str)] = &[
            ("a:b tls=secure", "bad tls= level"),
            ("a:b tls=", "bad tls= level"),
            ("a:b tls", "bad tls= level"),
            ("a:b tls=may tls=none", "option given twice"),
            ("a:b pin=ab", "bad pin= (sha256:hex)"),
            ("a:b pin=sha256:abcd", "bad pin= (sha256:hex)"),
            ("a:b pin=sha1:", "bad pin= (sha256:hex)"),
            ("a:b xforward=yes", "a flag option takes 0 or 1"),
            ("a:b xforward xforward", "option given twice"),
            ("a:b lmtp", "unknown option"),
            // qmail never has white space inside a route: an option now.
            ("a: relay.example", "unknown option"),
        ];
        for (line, what) in bad {
            assert_eq!(Routes::parse(line), Err(Error { line: 1, what }), "{line}");
        }
    }
}
