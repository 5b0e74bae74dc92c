//! Who may receive mail through this server: RCPTHOSTS (domains, qmail's
//! rcpthosts syntax), RECIPIENTS (addresses), RCPTCHECK (a program, asked by
//! the caller), and who may relay: RELAYCLIENT (qmail semantics, the
//! connection's) and RELAYCLIENTS (networks, checked against the client's
//! address). With none of them set every recipient is refused. Pure: the
//! lists are parsed from text given by the config loader; which relay right
//! applies to a session is the session's decision, running the RCPTCHECK
//! program the I/O layer's job.

use crate::smtp::command::{domain_of, is_postmaster};
use crate::smtp::reply;
use crate::tcprules::{self, Rules};
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

/// The recipient policy, read once at startup.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// RCPTHOSTS: accepted domains; `.example.com` accepts every subdomain.
    pub rcpthosts: Option<HashSet<Vec<u8>>>,
    /// RECIPIENTS: accepted addresses (lower case).
    pub recipients: Option<HashSet<Vec<u8>>>,
    /// RCPTCHECK: program asked about each recipient that passed the lists.
    pub rcptcheck: Option<PathBuf>,
    /// RELAYCLIENT: every recipient accepted, with this value appended.
    /// A right of the connection (the rule that matched the peer), which
    /// the session no longer applies after XCLIENT.
    pub relayclient: Option<Vec<u8>>,
    /// RELAYCLIENTS: networks whose clients may relay, checked against the
    /// client's address (after XCLIENT, the forwarded one).
    pub relaynets: Option<Rules>,
    /// POSTMASTER (default `postmaster@` SMTPD_HOSTNAME): what a bare
    /// `RCPT TO:<postmaster>` becomes, so that the queue holds an address
    /// it can deliver. `None`: kept bare.
    pub postmaster: Option<Vec<u8>>,
}

/// What to do with one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Accept, with this address in the envelope.
    Accept(Vec<u8>),
    /// The lists accept it; the RCPTCHECK program has the last word.
    Ask(Vec<u8>),
    /// Refuse with this reply.
    Refuse(&'static str),
}

impl Policy {
    /// Decide about `addr` (a checked mailbox, or `postmaster`) for a client
    /// with the relay right `relay` (the suffix to append, qmail's
    /// RELAYCLIENT value; `None`: no right to relay).
    pub fn check_rcpt(&self, addr: &[u8], relay: Option<&[u8]>) -> Decision {
        // RFC 5321 4.5.1: the postmaster of this host is always accepted; a
        // bare `postmaster` names it, and becomes its full address here.
        let own_postmaster = is_postmaster(addr);
        let addr = match (&self.postmaster, own_postmaster) {
            (Some(pm), true) => pm.as_slice(),
            _ => addr,
        };
        if let Some(suffix) = relay {
            // qmail: RELAYCLIENT's value is appended to the recipient.
            return Decision::Accept([addr, suffix].concat());
        }
        if self.rcpthosts.is_none() && self.recipients.is_none() && self.rcptcheck.is_none() {
            return Decision::Refuse(reply::NO_POLICY);
        }
        if routed(addr) && !own_postmaster {
            return Decision::Refuse(reply::ROUTING_REFUSED);
        }
        if let Some(hosts) = &self.rcpthosts {
            let ok = own_postmaster || domain_of(addr).is_some_and(|d| domain_listed(hosts, d));
            if !ok {
                return Decision::Refuse(reply::NOT_RCPTHOST);
            }
        }
        if let Some(list) = &self.recipients {
            if !list.contains(&addr.to_ascii_lowercase()) {
                return Decision::Refuse(reply::NO_MAILBOX);
            }
        }
        if self.rcptcheck.is_some() {
            return Decision::Ask(addr.to_vec());
        }
        Decision::Accept(addr.to_vec())
    }

    /// RELAYCLIENTS: is the client at `ip` (text as in TCPREMOTEIP) on a
    /// relay network?
    pub fn relay_net(&self, ip: Option<&str>) -> bool {
        let (Some(nets), Some(ip)) = (&self.relaynets, ip) else { return false };
        ip.parse::<IpAddr>().is_ok_and(|ip| nets.lookup(ip).is_some())
    }

    /// VRFY: is `addr` in RECIPIENTS?
    pub fn listed(&self, addr: &[u8]) -> bool {
        self.recipients.as_ref().is_some_and(|l| l.contains(&addr.to_ascii_lowercase()))
    }
}

/// Sender-specified routing: `%`, `!` or `@` in the local part
/// (`u%other.example@ours`, `other.example!u@ours`). A later hop that
/// honours the percent hack or bang paths would relay it (nmap's
/// smtp-open-relay counts it as relaying); refused as Postfix's
/// allow_untrusted_routing = no does, unless RELAYCLIENT is set.
fn routed(addr: &[u8]) -> bool {
    let local = match addr.iter().rposition(|&b| b == b'@') {
        Some(at) => &addr[..at],
        None => return false,
    };
    local.iter().any(|&b| b == b'%' || b == b'!' || b == b'@')
}

/// qmail's rcpthosts rule: the domain itself, or `.suffix` for any of its
/// parent domains. Case-insensitive.
pub fn domain_listed(hosts: &HashSet<Vec<u8>>, domain: &[u8]) -> bool {
    let d = domain.to_ascii_lowercase();
    if hosts.contains(&d) {
        return true;
    }
    d.iter().enumerate().any(|(i, &b)| b == b'.' && hosts.contains(&d[i..]))
}

/// Parse a RELAYCLIENTS file: one address or network a line in the rules
/// syntax of smtpd-supervise(8) (`1.2.3.4`, `10.`, `192.168.0.0/16`,
/// `2001:db8::/32`, ranges), `#` comments and blank lines skipped.
pub fn parse_networks(text: &[u8]) -> Result<Rules, tcprules::Error> {
    let mut rules = Vec::with_capacity(text.len() + text.len() / 4);
    for line in text.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        // An empty address would be a rule for every client: never here.
        if line.is_empty() || line[0] == b'#' {
            rules.push(b'\n');
            continue;
        }
        rules.extend_from_slice(line);
        rules.extend_from_slice(b":allow\n");
    }
    tcprules::parse_rules(&rules)
}

/// Parse a list file: one item per line, blank lines and `#` comments
/// skipped, surrounding white space removed, folded to lower case.
pub fn parse_list(text: &[u8]) -> HashSet<Vec<u8>> {
    text.split(|&b| b == b'\n')
        .map(|l| l.trim_ascii())
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .map(|l| l.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(hosts: Option<&[u8]>, rcpts: Option<&[u8]>, check: bool, relay: Option<&[u8]>) -> Policy {
        Policy {
            rcpthosts: hosts.map(parse_list),
            recipients: rcpts.map(parse_list),
            rcptcheck: check.then(|| PathBuf::from("/bin/true")),
            relayclient: relay.map(<[u8]>::to_vec),
            relaynets: None,
            postmaster: None,
        }
    }

    #[test]
    fn table() {
        let none = Policy::default();
        assert_eq!(none.check_rcpt(b"a@b.c", None), Decision::Refuse(reply::NO_POLICY));
        assert_eq!(none.check_rcpt(b"postmaster", None), Decision::Refuse(reply::NO_POLICY));

        let h = with(Some(b"example.com\n.sub.org\n# comment\n  Upper.NET \n"), None, false, None);
        assert_eq!(h.check_rcpt(b"a@example.com", None), Decision::Accept(b"a@example.com".to_vec()));
        assert_eq!(h.check_rcpt(b"a@EXAMPLE.com", None), Decision::Accept(b"a@EXAMPLE.com".to_vec()));
        assert_eq!(h.check_rcpt(b"a@upper.net", None), Decision::Accept(b"a@upper.net".to_vec()));
        assert_eq!(h.check_rcpt(b"a@x.example.com", None), Decision::Refuse(reply::NOT_RCPTHOST));
        assert_eq!(h.check_rcpt(b"a@x.sub.org", None), Decision::Accept(b"a@x.sub.org".to_vec()));
        assert_eq!(h.check_rcpt(b"a@y.x.sub.org", None), Decision::Accept(b"a@y.x.sub.org".to_vec()));
        assert_eq!(h.check_rcpt(b"a@sub.org", None), Decision::Refuse(reply::NOT_RCPTHOST));
        assert_eq!(h.check_rcpt(b"a@evil.com", None), Decision::Refuse(reply::NOT_RCPTHOST));
        assert_eq!(h.check_rcpt(b"postmaster", None), Decision::Accept(b"postmaster".to_vec()));
        // Rewritten to this host's postmaster, accepted whatever its domain.
        let pm = Policy { postmaster: Some(b"postmaster@mx.other.test".to_vec()), ..h.clone() };
        for a in [&b"postmaster"[..], b"PostMaster"] {
            assert_eq!(pm.check_rcpt(a, None), Decision::Accept(b"postmaster@mx.other.test".to_vec()));
        }
        assert_eq!(pm.check_rcpt(b"postmaster@mx.other.test", None), Decision::Refuse(reply::NOT_RCPTHOST));
        assert_eq!(pm.check_rcpt(b"postmaster", Some(b"@gw")), Decision::Accept(b"postmaster@mx.other.test@gw".to_vec()));
        let listed = Policy { recipients: Some(parse_list(b"postmaster@mx.other.test\n")), ..pm.clone() };
        assert_eq!(listed.check_rcpt(b"postmaster", None), Decision::Accept(b"postmaster@mx.other.test".to_vec()));
        let checked = Policy { rcptcheck: Some("/x".into()), ..pm };
        assert_eq!(checked.check_rcpt(b"postmaster", None), Decision::Ask(b"postmaster@mx.other.test".to_vec()));
        // nmap smtp-open-relay: routing in the local part of a listed domain.
        for a in [&b"relaytest%nmap.scanme.org@example.com"[..], b"nmap.scanme.org!relaytest@example.com", b"\"a@evil.com\"@example.com"] {
            assert_eq!(h.check_rcpt(a, None), Decision::Refuse(reply::ROUTING_REFUSED), "{}", String::from_utf8_lossy(a));
        }

        let r = with(Some(b"example.com"), Some(b"list@example.com\n"), false, None);
        assert_eq!(r.check_rcpt(b"List@Example.com", None), Decision::Accept(b"List@Example.com".to_vec()));
        assert_eq!(r.check_rcpt(b"other@example.com", None), Decision::Refuse(reply::NO_MAILBOX));
        assert!(r.listed(b"LIST@example.com"));
        assert!(!r.listed(b"other@example.com"));

        let c = with(None, None, true, None);
        assert_eq!(c.check_rcpt(b"a@any.where", None), Decision::Ask(b"a@any.where".to_vec()));
        let hc = with(Some(b"example.com"), None, true, None);
        assert_eq!(hc.check_rcpt(b"a@evil.com", None), Decision::Refuse(reply::NOT_RCPTHOST));

        // A relay right accepts anything, with its suffix appended; a
        // RELAYCLIENT the session does not apply (after XCLIENT) is no right.
        let relay = with(None, None, false, Some(b""));
        assert_eq!(relay.check_rcpt(b"a@evil.com", Some(b"")), Decision::Accept(b"a@evil.com".to_vec()));
        assert_eq!(relay.check_rcpt(b"a%evil.com@example.com", Some(b"")), Decision::Accept(b"a%evil.com@example.com".to_vec()));
        assert_eq!(relay.check_rcpt(b"a@evil.com", None), Decision::Refuse(reply::NO_POLICY));
        let relay = with(Some(b"x.y"), None, false, Some(b"@gw"));
        assert_eq!(relay.check_rcpt(b"a@b.c", Some(b"@gw")), Decision::Accept(b"a@b.c@gw".to_vec()));
        assert_eq!(relay.check_rcpt(b"a@b.c", None), Decision::Refuse(reply::NOT_RCPTHOST));
    }

    #[test]
    fn relay_networks() {
        let nets = parse_networks(b"# internal\n10.\n\n192.168.0.0/16\n2001:db8::/32\n203.0.113.7\n").unwrap();
        let p = Policy { relaynets: Some(nets), ..Policy::default() };
        for ip in ["10.1.2.3", "192.168.200.1", "2001:db8::5", "203.0.113.7", "::ffff:10.0.0.1"] {
            assert!(p.relay_net(Some(ip)), "{ip}");
        }
        for ip in ["11.0.0.1", "192.169.0.1", "2001:db9::1", "203.0.113.66", "junk", ""] {
            assert!(!p.relay_net(Some(ip)), "{ip}");
        }
        assert!(!p.relay_net(None));
        assert!(!Policy::default().relay_net(Some("10.1.2.3")));
        // No rule for every client, whatever the file holds.
        assert!(parse_networks(b"10.0.0.1:allow\n").is_err());
        assert!(parse_networks(b"not an address\n").is_err());
        let empty = Policy { relaynets: Some(parse_networks(b"\n   \n# none\n").unwrap()), ..Policy::default() };
        assert!(!empty.relay_net(Some("10.1.2.3")));
    }
}
