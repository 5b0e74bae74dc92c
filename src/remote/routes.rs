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
//! An unknown option is an error, not ignored: a later option must never
//! be half-understood by an older smtp-remote.
//!
//! LMTP (RFC 2033) routes: `proto=lmtp` with a relay `host[:port]` (TCP,
//! port 24 unless given) or an absolute path, a Unix socket
//! (`example.com:/var/run/dovecot/lmtp proto=lmtp`). A relay starting with
//! `/` is taken whole, colons included, since a host name never starts with
//! one; qmail would take it for a host name that cannot exist, so no qmail
//! line changes meaning.

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
    /// `proto=`: the protocol spoken to the relay.
    pub proto: Proto,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Proto {
    #[default]
    Smtp,
    /// RFC 2033: LHLO, and one reply per accepted recipient after the data.
    Lmtp,
}

/// The port of an LMTP relay over TCP without one: 24, the port Dovecot's
/// documentation and most set-ups use (RFC 2033 section 5 forbids 25).
pub const LMTP_PORT: u16 = 24;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The relay host: a name, an IP address, or `[address]`; or, for LMTP,
    /// the absolute path of a Unix socket. `None`: look up the MX of the
    /// domain (optionally on `port`).
    pub relay: Option<String>,
    pub port: Option<u16>,
    pub opts: Options,
}

impl Route {
    /// The Unix socket of an LMTP route, if its relay is one.
    pub fn socket(&self) -> Option<&str> {
        self.relay.as_deref().filter(|r| r.starts_with('/'))
    }

    pub fn is_lmtp(&self) -> bool {
        self.opts.proto == Proto::Lmtp
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    entries: Vec<(String, Route)>,
}

/// A bad line of the file.
pub use crate::conflines::LineError as Error;

impl Routes {
    /// Parse the file. Blank lines and lines starting with `#` are skipped
    /// (qmail has no comments; a `#` domain matches nothing real anyway).
    /// For an IPv6 relay write `[addr]`, so the colon split stays clear.
    pub fn parse(text: &str) -> Result<Routes, Error> {
        let mut entries = Vec::new();
        for (n, line) in crate::conflines::lines(text) {
            let err = |what| Error { line: n, what };
            let (route, opts) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let (domain, rest) = route.split_once(':').ok_or(err("no colon"))?;
            let (relay, port) = split_relay(rest).ok_or(err("bad relay or port"))?;
            let opts = parse_options(opts).map_err(err)?;
            check_lmtp(relay.as_deref(), &opts).map_err(err)?;
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
    let mut proto_seen = false;
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
            "proto" => {
                if proto_seen {
                    return Err("option given twice");
                }
                proto_seen = true;
                o.proto = match value {
                    Some("smtp") => Proto::Smtp,
                    Some("lmtp") => Proto::Lmtp,
                    _ => return Err("bad proto= (smtp or lmtp)"),
                };
            }
            _ => return Err("unknown option"),
        }
    }
    Ok(o)
}

/// What an LMTP route must and must not have. LMTP is for the final
/// delivery to a known store: never by MX; a Unix socket has no TLS (nor
/// AUTH, which needs TLS here), and only LMTP may use a socket.
fn check_lmtp(relay: Option<&str>, o: &Options) -> Result<(), &'static str> {
    let socket = relay.is_some_and(|r| r.starts_with('/'));
    match o.proto {
        Proto::Smtp if socket => Err("a Unix socket relay needs proto=lmtp"),
        Proto::Lmtp if relay.is_none() => Err("proto=lmtp needs a relay (host or socket path)"),
        Proto::Lmtp if socket && (o.tls.is_some() || !o.pins.is_empty() || o.auth_unverified.is_some()) => {
            Err("no TLS over a Unix socket")
        }
        _ => Ok(()),
    }
}

/// `relay`, `relay:port`, `[v6]`, `[v6]:port`, `:port`, a socket path
/// (whole, colons and all) or empty.
fn split_relay(s: &str) -> Option<(Option<String>, Option<u16>)> {
    let s = s.trim();
    if s.starts_with('/') {
        return Some((Some(s.to_string()), None));
    }
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
            ("a:b proto=esmtp", "bad proto= (smtp or lmtp)"),
            ("a:b proto", "bad proto= (smtp or lmtp)"),
            ("a:b proto=lmtp proto=lmtp", "option given twice"),
            ("a:/run/lmtp", "a Unix socket relay needs proto=lmtp"),
            ("a:/run/lmtp proto=smtp", "a Unix socket relay needs proto=lmtp"),
            ("a: proto=lmtp", "proto=lmtp needs a relay (host or socket path)"),
            ("a::24 proto=lmtp", "proto=lmtp needs a relay (host or socket path)"),
            ("a:/run/lmtp proto=lmtp tls=may", "no TLS over a Unix socket"),
            ("a:/run/lmtp proto=lmtp auth_unverified", "no TLS over a Unix socket"),
            // qmail never has white space inside a route: an option now.
            ("a: relay.example", "unknown option"),
        ];
        for (line, what) in bad {
            assert_eq!(Routes::parse(line), Err(Error { line: 1, what }), "{line}");
        }
    }

    #[test]
    fn lmtp_routes() {
        let t = Routes::parse(
            "example.com:/var/run/dovecot/lmtp proto=lmtp\n.example.com:/run/odd:name proto=lmtp xforward\nexample.org:mail.example.org proto=lmtp tls=verify\nexample.net:[192.0.2.9]:2424 proto=lmtp\nrelay.example:smart.example:587 proto=smtp\n",
        )
        .unwrap();
        let lmtp = |o: Options| Options { proto: Proto::Lmtp, ..o };
        let com = t.lookup("example.com").unwrap();
        assert_eq!(com, &Route { relay: Some("/var/run/dovecot/lmtp".into()), port: None, opts: lmtp(Options::default()) });
        assert_eq!(com.socket(), Some("/var/run/dovecot/lmtp"));
        assert!(com.is_lmtp());
        // A path is taken whole: its colons are no port.
        let sub = t.lookup("a.example.com").unwrap();
        assert_eq!((sub.socket(), sub.port), (Some("/run/odd:name"), None));
        assert_eq!(sub.opts, lmtp(Options { xforward: Some(true), ..Options::default() }));
        let org = t.lookup("example.org").unwrap();
        assert_eq!((org.relay.as_deref(), org.socket(), org.port), (Some("mail.example.org"), None, None));
        assert_eq!(org.opts, lmtp(Options { tls: Some(Policy::Verify), ..Options::default() }));
        let net = t.lookup("example.net").unwrap();
        assert_eq!((net.relay.as_deref(), net.port, net.is_lmtp()), (Some("[192.0.2.9]"), Some(2424), true));
        let smtp = t.lookup("relay.example").unwrap();
        assert_eq!((smtp.port, smtp.is_lmtp(), smtp.socket()), (Some(587), false, None));
        // qmail's lines keep their meaning: no option, SMTP.
        let q = Routes::parse("example.com:relay.example.net:2525\n:smart\n").unwrap();
        assert!(!q.lookup("example.com").unwrap().is_lmtp());
        assert_eq!(q.lookup("x.org").unwrap().opts, Options::default());
    }
}
