//! Who may receive mail through this server: RCPTHOSTS (domains, qmail's
//! rcpthosts syntax), RECIPIENTS (addresses), RCPTCHECK (a program, asked by
//! the caller), RELAYCLIENT (qmail semantics). With none of them set every
//! recipient is refused. Pure: the lists are parsed from text given by the
//! config loader; running the RCPTCHECK program is the I/O layer's job.

use crate::smtp::command::{domain_of, is_postmaster};
use crate::smtp::reply;
use std::collections::HashSet;
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
    pub relayclient: Option<Vec<u8>>,
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
    /// Decide about `addr` (a checked mailbox, or `postmaster`).
    pub fn check_rcpt(&self, addr: &[u8]) -> Decision {
        if let Some(suffix) = &self.relayclient {
            // qmail: RELAYCLIENT's value is appended to the recipient.
            return Decision::Accept([addr, suffix].concat());
        }
        if self.rcpthosts.is_none() && self.recipients.is_none() && self.rcptcheck.is_none() {
            return Decision::Refuse(reply::NO_POLICY);
        }
        if routed(addr) {
            return Decision::Refuse(reply::ROUTING_REFUSED);
        }
        if let Some(hosts) = &self.rcpthosts {
            let ok = is_postmaster(addr) || domain_of(addr).is_some_and(|d| domain_listed(hosts, d));
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
        }
    }

    #[test]
    fn table() {
        let none = Policy::default();
        assert_eq!(none.check_rcpt(b"a@b.c"), Decision::Refuse(reply::NO_POLICY));
        assert_eq!(none.check_rcpt(b"postmaster"), Decision::Refuse(reply::NO_POLICY));

        let h = with(Some(b"example.com\n.sub.org\n# comment\n  Upper.NET \n"), None, false, None);
        assert_eq!(h.check_rcpt(b"a@example.com"), Decision::Accept(b"a@example.com".to_vec()));
        assert_eq!(h.check_rcpt(b"a@EXAMPLE.com"), Decision::Accept(b"a@EXAMPLE.com".to_vec()));
        assert_eq!(h.check_rcpt(b"a@upper.net"), Decision::Accept(b"a@upper.net".to_vec()));
        assert_eq!(h.check_rcpt(b"a@x.example.com"), Decision::Refuse(reply::NOT_RCPTHOST));
        assert_eq!(h.check_rcpt(b"a@x.sub.org"), Decision::Accept(b"a@x.sub.org".to_vec()));
        assert_eq!(h.check_rcpt(b"a@y.x.sub.org"), Decision::Accept(b"a@y.x.sub.org".to_vec()));
        assert_eq!(h.check_rcpt(b"a@sub.org"), Decision::Refuse(reply::NOT_RCPTHOST));
        assert_eq!(h.check_rcpt(b"a@evil.com"), Decision::Refuse(reply::NOT_RCPTHOST));
        assert_eq!(h.check_rcpt(b"postmaster"), Decision::Accept(b"postmaster".to_vec()));
        // nmap smtp-open-relay: routing in the local part of a listed domain.
        for a in [&b"relaytest%nmap.scanme.org@example.com"[..], b"nmap.scanme.org!relaytest@example.com", b"\"a@evil.com\"@example.com"] {
            assert_eq!(h.check_rcpt(a), Decision::Refuse(reply::ROUTING_REFUSED), "{}", String::from_utf8_lossy(a));
        }

        let r = with(Some(b"example.com"), Some(b"list@example.com\n"), false, None);
        assert_eq!(r.check_rcpt(b"List@Example.com"), Decision::Accept(b"List@Example.com".to_vec()));
        assert_eq!(r.check_rcpt(b"other@example.com"), Decision::Refuse(reply::NO_MAILBOX));
        assert!(r.listed(b"LIST@example.com"));
        assert!(!r.listed(b"other@example.com"));

        let c = with(None, None, true, None);
        assert_eq!(c.check_rcpt(b"a@any.where"), Decision::Ask(b"a@any.where".to_vec()));
        let hc = with(Some(b"example.com"), None, true, None);
        assert_eq!(hc.check_rcpt(b"a@evil.com"), Decision::Refuse(reply::NOT_RCPTHOST));

        let relay = with(None, None, false, Some(b""));
        assert_eq!(relay.check_rcpt(b"a@evil.com"), Decision::Accept(b"a@evil.com".to_vec()));
        assert_eq!(relay.check_rcpt(b"a%evil.com@example.com"), Decision::Accept(b"a%evil.com@example.com".to_vec()));
        let relay = with(Some(b"x.y"), None, false, Some(b"@gw"));
        assert_eq!(relay.check_rcpt(b"a@b.c"), Decision::Accept(b"a@b.c@gw".to_vec()));
    }
}
