//! One delivery: check the envelope, choose the hosts (smtproutes with its
//! options, address literal, MX per RFC 5321 section 5, null MX per RFC
//! 7505), leave out this host (mail loops), try each address in turn within
//! the attempt's bounds, and hold the SMTP dialogue with the first that
//! answers; or the LMTP dialogue (RFC 2033) of an LMTP route, over TCP or
//! a Unix socket. Returns what the report says; the main writes it.
//! A `Session` (`smtp-remote -m`) keeps the connection after a transaction
//! and uses it again, after RSET, for the next message to the same next hop.

use super::auth;
use super::conn::{self, Conn};
use super::reply::Reply;
use super::report::{Kind, Outcome, RcptResult};
use super::routes::{Route, Routes};
use super::smtp::{self, BadAddress, Extensions, MailParams};
use super::spool::Spool;
use super::tls::{self, Pin, Policy};
use crate::dns::{self, Resolver};
use crate::envelope::Attrs;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::ServerName;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a kept connection's RSET may take to be answered (Postfix's
/// smtp_rset_timeout): a server that dropped the connection without a word
/// is found out within this, not within TIMEOUTREMOTE.
const RSET_TIMEOUT: Duration = Duration::from_secs(20);

/// Everything read from the environment, once.
pub struct Config {
    pub helo: String,
    pub routes: Routes,
    pub policy: Policy,
    /// The WebPKI verifier (roots plus `TLS_CAFILE`), built once for `verify`.
    pub webpki: Option<Arc<dyn ServerCertVerifier>>,
    pub auth_file: Option<String>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub port: u16,
    /// `SMTP_XCLIENT`, `SMTP_XFORWARD`: pass the original client's facts
    /// on (off unless told: they are the client's, not the next hop's).
    pub xclient: bool,
    pub xforward: bool,
    /// `TLS_PIN`: certificates accepted, and TLS required, when set.
    pub pins: Vec<Pin>,
    /// `AUTH_UNVERIFIED`: send credentials over TLS whose certificate
    /// nobody vouched for (off: a man in the middle would collect them).
    pub auth_unverified: bool,
    /// `SMTPD_PORTS`: the ports this host's own SMTP servers listen on; a
    /// next hop that is one of this host's addresses on one of them is a
    /// mail loop.
    pub own_ports: Vec<u16>,
    /// `SMTP_MAXMX`: the most exchangers looked up and tried per attempt.
    pub max_mx: usize,
    /// `SMTP_MAXADDRS`: the most addresses of one exchanger or relay tried.
    pub max_addrs: usize,
    /// `TIMEOUTATTEMPT`: the most time from the start of the attempt until a
    /// server is ready for MAIL (DNS, connections, greetings, TLS, AUTH).
    pub attempt_timeout: Duration,
}

impl Config {
    /// `Err` is a configuration problem: reported as a temporary failure,
    /// so mail waits until the operator fixes it.
    pub fn from_env() -> Result<Config, String> {
        let var = |n: &str| std::env::var(n).ok();
        let num = |n: &str, d: u64| -> Result<u64, String> {
            match var(n) {
                None => Ok(d),
                Some(v) => v.trim().parse::<u64>().ok().filter(|&x| x > 0).ok_or(format!("bad {n}: {v:?}")),
            }
        };
        let flag = |n: &str| -> Result<bool, String> {
            match var(n).as_deref().map(str::trim) {
                None | Some("") | Some("0") => Ok(false),
                Some("1") => Ok(true),
                Some(v) => Err(format!("bad {n}: {v:?} (0 or 1)")),
            }
        };
        let helo = match var("HELOHOST") {
            Some(h) if !h.is_empty() => h,
            // The kernel's host name, as a qmail install's control/me usually is.
            _ => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into()),
        };
        if helo.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(format!("bad HELOHOST: {helo:?}"));
        }
        let routes = match var("SMTPROUTES") {
            Some(p) if !p.is_empty() => {
                let text = std::fs::read_to_string(&p).map_err(|e| format!("unable to read {p}: {e}"))?;
                Routes::parse(&text).map_err(|e| format!("{p}: {e}"))?
            }
            _ => Routes::default(),
        };
        let policy = var("SMTP_TLS").unwrap_or_default();
        let policy = Policy::parse(policy.trim()).ok_or(format!("bad SMTP_TLS: {policy:?}"))?;
        let port = num("SMTP_PORT", 25)?;
        // Built once when any delivery may need it (SMTP_TLS or a route's tls=).
        let webpki = match (policy, routes.any_tls(Policy::Verify)) {
            (Policy::Verify, _) | (_, true) => {
                let cafile = var("TLS_CAFILE").filter(|s| !s.is_empty());
                Some(tls::roots(cafile.as_deref()).and_then(tls::webpki_verifier)?)
            }
            _ => None,
        };
        Ok(Config {
            helo,
            routes,
            policy,
            webpki,
            auth_file: var("SMTP_AUTHFILE").filter(|s| !s.is_empty()),
            connect_timeout: Duration::from_secs(num("TIMEOUTCONNECT", 60)?),
            timeout: Duration::from_secs(num("TIMEOUTREMOTE", 1200)?),
            port: u16::try_from(port).map_err(|_| "bad SMTP_PORT")?,
            xclient: flag("SMTP_XCLIENT")?,
            xforward: flag("SMTP_XFORWARD")?,
            auth_unverified: flag("AUTH_UNVERIFIED")?,
            max_mx: usize::try_from(num("SMTP_MAXMX", 5)?).map_err(|_| "bad SMTP_MAXMX")?,
            max_addrs: usize::try_from(num("SMTP_MAXADDRS", 2)?).map_err(|_| "bad SMTP_MAXADDRS")?,
            attempt_timeout: Duration::from_secs(num("TIMEOUTATTEMPT", 600)?),
            own_ports: var("SMTPD_PORTS")
                .unwrap_or_else(|| "25".into())
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|p| !p.is_empty())
                .map(|p| p.parse::<u16>().ok().filter(|&p| p > 0).ok_or(format!("bad SMTPD_PORTS: {p:?}")))
                .collect::<Result<_, _>>()?,
            pins: var("TLS_PIN")
                .unwrap_or_default()
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|p| !p.is_empty())
                .map(|p| tls::parse_pin(p).ok_or(format!("bad TLS_PIN: {p:?} (sha256:hex)")))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The attribute block of the one-message mode: `QUEUE_ATTRS`.
pub fn attrs_from_env() -> Result<Attrs, String> {
    match std::env::var_os("QUEUE_ATTRS") {
        None => Ok(Attrs::default()),
        Some(v) => Attrs::parse(std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str())).ok_or_else(|| "bad QUEUE_ATTRS".into()),
    }
}

/// One message to deliver: the envelope and its attributes.
pub struct Job {
    pub host: String,
    pub sender: Vec<u8>,
    pub rcpts: Vec<Vec<u8>>,
    /// The attribute block (`QUEUE_ATTRS`, or the job frame's in `-m` mode).
    pub attrs: Attrs,
    /// Header fields to send on top of the message (the `PREPEND`
    /// attribute: queue-run's DKIM signatures), LF form; usually empty.
    pub prepend: Vec<u8>,
}

impl Job {
    /// `Err`: a `PREPEND` that `message::prepend` refuses.
    pub fn new(host: String, sender: Vec<u8>, rcpts: Vec<Vec<u8>>, attrs: Attrs) -> Result<Job, &'static str> {
        let prepend = super::message::prepend(&attrs)?;
        Ok(Job { host, sender, rcpts, attrs, prepend })
    }
}

/// What goes into the report: the partner shown in the records, the
/// recipient results (empty unless the dialogue reached RCPT), the outcome.
pub struct Delivery {
    pub partner: String,
    pub rcpts: Vec<RcptResult>,
    pub outcome: Outcome,
}

/// One address to try, with what TLS needs to know about it.
#[derive(Debug, Clone)]
struct Target {
    addr: SocketAddr,
    /// The host name (MX or relay) for SNI, verification, TLSA and AUTH;
    /// `None` for an address literal.
    name: Option<String>,
    /// Whether the answer that led here was DNSSEC-validated (AD).
    secure: bool,
    /// The MX preference; 0 for a relay, a literal, an implicit MX.
    pref: u16,
}

/// One message, one connection (the qmail-remote interface): the
/// connection is closed with QUIT after the transaction.
pub fn deliver(cfg: &Config, job: &Job, spool: &mut Spool, dns: &Resolver) -> Delivery {
    Session { kept: None, reuse: None }.deliver(cfg, job, spool, dns)
}

/// The limits on one kept connection, as Postfix's
/// smtp_connection_reuse_count_limit and smtp_connection_reuse_time_limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    /// Most transactions over one connection.
    pub max_messages: u32,
    /// How long after it was opened a connection may start a transaction.
    pub max_age: Duration,
}

impl Reuse {
    pub const DEFAULT: Reuse = Reuse { max_messages: 100, max_age: Duration::from_secs(300) };

    /// `CONNECTION_REUSE_COUNT` and `CONNECTION_REUSE_TIME` (queue-run sets
    /// both for `smtp-remote -m`), each a positive number; unset: the default.
    pub fn from_env() -> Result<Reuse, String> {
        let num = |n: &str, d: u64| -> Result<u64, String> {
            match std::env::var(n) {
                Err(_) => Ok(d),
                Ok(v) if v.trim().is_empty() => Ok(d),
                Ok(v) => v.trim().parse::<u64>().ok().filter(|&x| x > 0).ok_or(format!("bad {n}: {v:?}")),
            }
        };
        let n = num("CONNECTION_REUSE_COUNT", u64::from(Reuse::DEFAULT.max_messages))?;
        Ok(Reuse {
            max_messages: u32::try_from(n).map_err(|_| "bad CONNECTION_REUSE_COUNT")?,
            max_age: Duration::from_secs(num("CONNECTION_REUSE_TIME", Reuse::DEFAULT.max_age.as_secs())?),
        })
    }
}

/// Deliveries in turn over kept connections (`smtp-remote -m`). A message
/// goes over the connection the one before it used when both take the same
/// route (`Key`), after RSET, within the `Reuse` limits; otherwise, or when
/// that connection turns out to be stale, by a fresh attempt exactly as in
/// one-message mode. At most one connection is kept, and none without `reuse`.
pub struct Session {
    kept: Option<Kept>,
    reuse: Option<Reuse>,
}

impl Session {
    pub fn new(reuse: Reuse) -> Session {
        Session { kept: None, reuse: Some(reuse) }
    }

    /// Whether a connection is kept open now.
    pub fn holds_connection(&self) -> bool {
        self.kept.is_some()
    }

    /// QUIT the kept connection, if any.
    pub fn close(&mut self) {
        if let Some(k) = self.kept.take() {
            k.conn.quit();
        }
    }

    pub fn deliver(&mut self, cfg: &Config, job: &Job, spool: &mut Spool, dns: &Resolver) -> Delivery {
        // Every address is checked before anything is sent: CR LF in an
        // address would end the command and smuggle others into the session
        // (issue 16.6); such an address is refused here, permanently.
        if let Err(e) = smtp::check_address(&job.sender) {
            let o = Outcome::perm(format!("Sorry, the sender address {}. (#5.1.7)", e.what()));
            return Delivery { partner: String::new(), rcpts: Vec::new(), outcome: o };
        }
        let bad: Vec<Option<BadAddress>> = job
            .rcpts
            .iter()
            .map(|r| if r.is_empty() { Some(BadAddress::NotAnAddress) } else { smtp::check_address(r).err() })
            .collect();
        if bad.iter().all(Option::is_some) {
            let o = Outcome::perm("Sorry, no recipient address is valid. (#5.1.3)");
            return Delivery { partner: String::new(), rcpts: merge(&bad, Vec::new()), outcome: o };
        }
        let mut d = self.attempt(cfg, job, &bad, spool, dns);
        if bad.iter().any(Option::is_some) {
            d.rcpts = merge(&bad, d.rcpts);
        }
        d
    }

    /// The kept connection when it suits this message, else a fresh attempt.
    fn attempt(&mut self, cfg: &Config, job: &Job, bad: &[Option<BadAddress>], spool: &mut Spool, dns: &Resolver) -> Delivery {
        let host = match ascii_host(&job.host) {
            Ok(h) => h,
            Err(o) => return Delivery { partner: String::new(), rcpts: Vec::new(), outcome: o },
        };
        let route = cfg.routes.lookup(&host);
        if let (Some(k), Some(reuse)) = (self.kept.take(), self.reuse) {
            if k.key == Key::of(&host, route) && k.opened.elapsed() < reuse.max_age && !k.conn.has_buffered_input() {
                if let Some((d, kept)) = k.reuse(cfg, job, bad, spool, reuse) {
                    self.kept = kept;
                    return d;
                }
                // Stale: nothing of the message went out; a fresh attempt.
            } else {
                k.conn.quit();
            }
        }
        let (d, kept) = attempt(cfg, &host, route, job, bad, spool, dns, self.reuse);
        self.kept = kept;
        d
    }
}

/// What two deliveries must have in common to share a connection: the
/// same route (relay, port, protocol and options, hence the same TLS
/// policy, pins, XCLIENT/XFORWARD settings and AUTH credentials), and,
/// for a destination found by MX, the same domain.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Relay(Route),
    Mx(String, Option<Route>),
}

impl Key {
    fn of(host: &str, route: Option<&Route>) -> Key {
        match route {
            Some(r) if r.relay.is_some() => Key::Relay(r.clone()),
            r => Key::Mx(host.to_string(), r.cloned()),
        }
    }
}

/// A connection kept after a transaction, with what its `Link` knew.
struct Kept {
    conn: Conn,
    ext: Extensions,
    key: Key,
    set: Settings,
    /// The domain it was opened for (texts).
    host: String,
    partner: String,
    tls: TlsMode,
    creds: Option<auth::Credentials>,
    lmtp: bool,
    opened: Instant,
    /// Transactions so far.
    used: u32,
}

impl Kept {
    /// The connection after a transaction, if `reuse` allows one more.
    #[allow(clippy::too_many_arguments)]
    fn after(conn: Option<(Conn, Extensions)>, key: Key, set: &Settings, host: &str, link: (String, TlsMode, Option<auth::Credentials>, bool), opened: Instant, used: u32, reuse: Reuse) -> Option<Kept> {
        let (conn, ext) = conn?;
        if used >= reuse.max_messages || opened.elapsed() >= reuse.max_age {
            conn.quit();
            return None;
        }
        let (partner, tls, creds, lmtp) = link;
        Some(Kept { conn, ext, key, set: set.clone(), host: host.to_string(), partner, tls, creds, lmtp, opened, used })
    }

    /// One more transaction, RSET first. `None`: the connection was stale
    /// (`Finished::stale`), dropped; nothing of the message went out.
    fn reuse(self, cfg: &Config, job: &Job, bad: &[Option<BadAddress>], spool: &mut Spool, reuse: Reuse) -> Option<(Delivery, Option<Kept>)> {
        let Kept { mut conn, ext, key, set, host, partner, tls, creds, lmtp, opened, used } = self;
        let link = Link { cfg, set: &set, host: &host, partner, tls, creds, lmtp };
        let mut msg = Message { job, bad, spool, rcpts: Vec::new() };
        let f = link.transaction(&mut conn, &ext, &mut msg, true);
        if f.stale {
            return None;
        }
        let Link { partner, tls, creds, .. } = link;
        let d = Delivery { partner: partner.clone(), rcpts: msg.rcpts, outcome: f.end.outcome };
        let conn = if !f.usable {
            None
        } else if closing(&d.outcome) {
            conn.quit();
            None
        } else {
            Some((conn, ext))
        };
        let kept = Kept::after(conn, key, &set, &host, (partner, tls, creds, lmtp), opened, used + 1, reuse);
        Some((d, kept))
    }
}

/// One record per recipient: ours for a refused address, in between the
/// results of the recipients that went out. A good recipient the dialogue
/// never reached gets `r`, so that the message record decides for it, as
/// when no recipient has a record.
fn merge(bad: &[Option<BadAddress>], got: Vec<RcptResult>) -> Vec<RcptResult> {
    let mut got = got.into_iter();
    bad.iter()
        .map(|b| match b {
            Some(b) => RcptResult::Invalid(format!("Sorry, the recipient address {}. (#5.1.3)", b.what())),
            None => got.next().unwrap_or(RcptResult::Accepted),
        })
        .collect()
}

/// The attempt proper, on fresh connections, for the recipients `bad`
/// does not refuse; with `reuse`, the connection that carried the message
/// is handed back when it may carry another.
#[allow(clippy::too_many_arguments)]
fn attempt(
    cfg: &Config,
    host: &str,
    route: Option<&Route>,
    job: &Job,
    bad: &[Option<BadAddress>],
    spool: &mut Spool,
    dns: &Resolver,
    reuse: Option<Reuse>,
) -> (Delivery, Option<Kept>) {
    let none = |o: Outcome| (Delivery { partner: String::new(), rcpts: Vec::new(), outcome: o }, None);
    let set = Settings::new(cfg, route);
    let lmtp = route.is_some_and(Route::is_lmtp);
    let mut msg = Message { job, bad, spool, rcpts: Vec::new() };
    // One bad destination (a tarpit, thousands of MX) must not hold a
    // delivery slot for long: everything before MAIL shares one deadline.
    let deadline = Instant::now() + cfg.attempt_timeout;
    if let Some(path) = route.and_then(Route::socket) {
        return unix_attempt(cfg, &set, host, route, path, &mut msg, deadline, reuse);
    }
    let targets = match targets(cfg, host, route, dns, deadline) {
        Ok(t) => t,
        Err(o) => return none(o),
    };
    let creds_text = match &cfg.auth_file {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some(t),
            Err(e) => return none(Outcome::temp(format!("Unable to read {p}: {e}. (#4.3.0)"))),
        },
        None => None,
    };
    let mut last: Option<Delivery> = None;
    for t in &targets {
        let mut plaintext_retry = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let tls = match tls_mode(cfg, &set, t, dns, plaintext_retry) {
                Ok(m) => m,
                Err(o) => {
                    last = Some(Delivery { partner: t.addr.ip().to_string(), rcpts: Vec::new(), outcome: o });
                    break;
                }
            };
            let opened = Instant::now();
            let mut conn = match Conn::connect(t.addr, cfg.connect_timeout.min(left), cfg.timeout) {
                Ok(c) => c,
                Err(_) => break,
            };
            conn.set_limit(Some(deadline));
            let key = t.name.clone().unwrap_or_else(|| t.addr.ip().to_string());
            let creds = creds_text.as_deref().and_then(|text| auth::lookup(text, &key));
            let link = Link { cfg, set: &set, host, partner: t.addr.ip().to_string(), tls, creds, lmtp };
            msg.rcpts.clear();
            let (end, conn) = link.run(conn, &mut msg, reuse.is_some());
            let Link { partner, tls, creds, .. } = link;
            let r = Delivery { partner: partner.clone(), rcpts: std::mem::take(&mut msg.rcpts), outcome: end.outcome };
            match end.next {
                Next::Done => {
                    let kept = reuse.and_then(|u| Kept::after(conn, Key::of(host, route), &set, host, (partner, tls, creds, lmtp), opened, 1, u));
                    return (r, kept);
                }
                Next::PlaintextRetry if !plaintext_retry => {
                    plaintext_retry = true;
                    last = Some(r);
                }
                _ => {
                    last = Some(r);
                    break;
                }
            }
        }
    }
    let d = last.unwrap_or_else(|| {
        let none = |o: Outcome| Delivery { partner: String::new(), rcpts: Vec::new(), outcome: o };
        if Instant::now() >= deadline {
            return none(Outcome::temp(format!(
                "Sorry, I found no server to take the message within {} seconds (TIMEOUTATTEMPT). (#4.4.1)",
                cfg.attempt_timeout.as_secs()
            )));
        }
        let proto = if lmtp { "LMTP" } else { "SMTP" };
        none(Outcome::temp(format!("Sorry, I wasn't able to establish an {proto} connection. (#4.4.1)")))
    });
    (d, None)
}

/// LMTP over a Unix socket (routes.rs allows a path only with
/// proto=lmtp): no DNS, no TLS, no AUTH (which goes only over TLS), no
/// loop checks; one connection, and its result stands.
#[allow(clippy::too_many_arguments)]
fn unix_attempt(
    cfg: &Config,
    set: &Settings,
    host: &str,
    route: Option<&Route>,
    path: &str,
    msg: &mut Message<'_>,
    deadline: Instant,
    reuse: Option<Reuse>,
) -> (Delivery, Option<Kept>) {
    let partner = super::report::safe(path);
    let left = deadline.saturating_duration_since(Instant::now());
    let opened = Instant::now();
    let mut conn = match Conn::connect_unix(path, cfg.connect_timeout.min(left), cfg.timeout) {
        Ok(c) => c,
        Err(e) => {
            let o = Outcome::temp(format!("Sorry, I wasn't able to connect to the LMTP socket {partner}: {e}. (#4.4.1)"));
            return (Delivery { partner, rcpts: Vec::new(), outcome: o }, None);
        }
    };
    conn.set_limit(Some(deadline));
    let link = Link { cfg, set, host, partner, tls: TlsMode::off(), creds: None, lmtp: true };
    let (end, conn) = link.run(conn, msg, reuse.is_some());
    let Link { partner, tls, .. } = link;
    let d = Delivery { partner: partner.clone(), rcpts: std::mem::take(&mut msg.rcpts), outcome: end.outcome };
    let kept = reuse.and_then(|u| Kept::after(conn, Key::of(host, route), set, host, (partner, tls, None, true), opened, 1, u));
    (d, kept)
}

/// The port of a route's relay or exchangers: the route's own, else 24
/// for LMTP (which must not use 25, RFC 2033 5), else `SMTP_PORT`.
fn port_of(cfg: &Config, route: Option<&Route>) -> u16 {
    match route {
        Some(Route { port: Some(p), .. }) => *p,
        Some(r) if r.is_lmtp() => super::routes::LMTP_PORT,
        _ => cfg.port,
    }
}

/// The addresses to try, in order; `Err` is the final outcome (DNS failure,
/// no such domain, null MX).
fn targets(cfg: &Config, host: &str, route: Option<&Route>, dns: &Resolver, deadline: Instant) -> Result<Vec<Target>, Outcome> {
    let found = candidates(cfg, host, route, dns, deadline)?;
    let port = port_of(cfg, route);
    // LMTP goes to a mailbox store, never back into our queue (smtpd-rs
    // speaks no LMTP): that store is often on this very host.
    if !cfg.own_ports.contains(&port) || route.is_some_and(Route::is_lmtp) {
        // Another local service (a content filter, a test sink) is not us;
        // the greeting check still catches a loop through it.
        return Ok(found);
    }
    let mine = local_addrs();
    drop_self(found, |ip| is_me(ip, &mine)).map_err(|ip| {
        Outcome::perm(format!(
            "Sorry, mail for {} loops back to myself: {ip} port {port} is this host. (#5.4.6)",
            super::report::safe(host)
        ))
    })
}

/// qmail-remote (and Postfix's smtp_addr): when one of the targets is this
/// host, keep only those preferred to it, the better exchangers a backup
/// MX hands mail to; none left (this host is the best exchanger, or the
/// relay, or the literal): `Err` with the address that is this host.
fn drop_self(found: Vec<Target>, me: impl Fn(IpAddr) -> bool) -> Result<Vec<Target>, IpAddr> {
    let Some(first) = found.iter().filter(|t| me(t.addr.ip())).min_by_key(|t| t.pref) else { return Ok(found) };
    let (prefme, ip) = (first.pref, first.addr.ip());
    let kept: Vec<Target> = found.into_iter().filter(|t| t.pref < prefme).collect();
    if kept.is_empty() {
        Err(ip)
    } else {
        Ok(kept)
    }
}

/// An address that reaches this host: loopback (all of 127.0.0.0/8),
/// unspecified (connecting to 0.0.0.0 or :: reaches this host on Linux),
/// or one of its interfaces'; an IPv4-mapped address as its IPv4 address.
fn is_me(ip: IpAddr, mine: &[IpAddr]) -> bool {
    let ip = ip.to_canonical();
    ip.is_loopback() || ip.is_unspecified() || mine.contains(&ip)
}

/// Every interface's address (getifaddrs); none when that fails, which
/// leaves loopback and unspecified addresses to `is_me`.
fn local_addrs() -> Vec<IpAddr> {
    let Ok(ifs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    ifs.filter_map(|i| {
        let a = i.address?;
        if let Some(v4) = a.as_sockaddr_in() {
            Some(IpAddr::V4(v4.ip()))
        } else {
            a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
        }
    })
    .collect()
}

/// The targets smtproutes or DNS give, in order, at most `max_addrs` per
/// name and `max_mx` exchangers: so at most 1 + 2 x `max_mx` DNS queries
/// here (MX, then A and AAAA of each), whatever the answers hold.
fn candidates(cfg: &Config, host: &str, route: Option<&Route>, dns: &Resolver, deadline: Instant) -> Result<Vec<Target>, Outcome> {
    let port = port_of(cfg, route);
    if let Some(relay) = route.and_then(|r| r.relay.as_deref()) {
        // qmail: a relay is looked up by address only, never by MX.
        if let Some(ip) = literal(relay) {
            return Ok(vec![Target { addr: SocketAddr::new(ip, port), name: None, secure: false, pref: 0 }]);
        }
        // RFC 7672 2.2.2: a relay named by a secure A/AAAA answer is its own
        // TLSA base domain.
        return match dns.addrs(relay) {
            Ok(a) if !a.records.is_empty() => Ok(a
                .records
                .into_iter()
                .take(cfg.max_addrs)
                .map(|ip| Target { addr: SocketAddr::new(ip, port), name: Some(relay.to_string()), secure: a.secure, pref: 0 })
                .collect()),
            // A relay is the operator's own setting: a typo must not bounce
            // the day's mail (issue 17.11), so both answers are temporary.
            Ok(_) => Err(Outcome::temp(format!(
                "Sorry, the relay {} of my smtproutes has no address. (#4.4.4)",
                super::report::safe(relay)
            ))),
            Err(dns::Error::NoName) => Err(Outcome::temp(format!(
                "Sorry, the relay {} of my smtproutes does not exist in DNS. (#4.1.2)",
                super::report::safe(relay)
            ))),
            Err(dns::Error::Temp(_)) => Err(temp_dns()),
        };
    }
    if let Some(ip) = literal(host).filter(|_| host.starts_with('[')) {
        return Ok(vec![Target { addr: SocketAddr::new(ip, port), name: None, secure: false, pref: 0 }]);
    }
    let mx = match dns.mx(host) {
        Ok(a) => a,
        Err(dns::Error::NoName) => return Err(perm_dns(host)),
        Err(dns::Error::Temp(_)) => return Err(temp_dns()),
    };
    // RFC 7505 3: a single MX of "." means the domain accepts no mail.
    if mx.records.iter().any(|(_, ex)| ex == "." || ex.is_empty()) {
        return Err(Outcome {
            kind: Kind::Perm,
            text: format!("Sorry, {} does not accept mail (null MX). (#5.1.10)", super::report::safe(host)),
            reply: None,
        });
    }
    let mut exchangers = if mx.records.is_empty() {
        // RFC 5321 5.1: no MX, the domain itself is the implicit MX.
        vec![(0u16, host.to_string())]
    } else {
        mx.records.clone()
    };
    sort_mx(&mut exchangers, seed());
    // Postfix's smtp_mx_address_limit: the best few only (an answer of
    // 2000 MX must not cost 4000 queries and 2000 connections).
    exchangers.truncate(cfg.max_mx);
    let mut out = Vec::new();
    let mut soft = false;
    for (pref, name) in &exchangers {
        if Instant::now() >= deadline {
            soft = true;
            break;
        }
        match dns.addrs(name) {
            // RFC 7672 2.2.1-2: DANE only when the MX and the address
            // answers were both validated.
            Ok(a) => out.extend(a.records.into_iter().take(cfg.max_addrs).map(|ip| Target {
                addr: SocketAddr::new(ip, port),
                name: Some(name.clone()),
                secure: mx.secure && a.secure,
                pref: *pref,
            })),
            Err(dns::Error::Temp(_)) => soft = true,
            Err(dns::Error::NoName) => {}
        }
    }
    if out.is_empty() {
        return Err(if soft { temp_dns() } else { perm_nomx() });
    }
    Ok(out)
}

/// The host without its trailing dot; a U-label domain as its A-label,
/// which is what DNS and smtproutes know (RFC 5890).
fn ascii_host(host: &str) -> Result<String, Outcome> {
    let host = host.trim_end_matches('.');
    if host.is_ascii() {
        return Ok(host.to_string());
    }
    idna::domain_to_ascii_strict(host).map_err(|_| perm_dns(host))
}

/// Does the first word of the reply (the server's name in a greeting or an
/// EHLO reply, RFC 5321 4.2, 4.1.1.1) name us? Never for `localhost`, which
/// too many servers call themselves to mean anything.
fn names_me(r: &Reply, me: &str) -> bool {
    let me = me.trim_end_matches('.');
    if me.eq_ignore_ascii_case("localhost") || me.eq_ignore_ascii_case("localhost.localdomain") {
        return false;
    }
    let first = r.texts().next().unwrap_or_default();
    let word = first.split(|&b| b == b' ').next().unwrap_or_default();
    let word = word.strip_suffix(b".").unwrap_or(word);
    word.eq_ignore_ascii_case(me.as_bytes())
}

/// `[192.0.2.1]`, `[IPv6:2001:db8::1]`, or a bare address.
fn literal(s: &str) -> Option<IpAddr> {
    let inner = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(s);
    let inner = inner.strip_prefix("IPv6:").or_else(|| inner.strip_prefix("ipv6:")).unwrap_or(inner);
    inner.parse().ok()
}

/// By preference; equal preferences in random order (RFC 5321 5.1).
fn sort_mx(v: &mut [(u16, String)], mut seed: u64) {
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in (1..v.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v.sort_by_key(|(p, _)| *p);
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() | 1
}

fn temp_dns() -> Outcome {
    Outcome::temp("Sorry, I couldn't find any host by that name. (#4.1.2)")
}
fn perm_dns(host: &str) -> Outcome {
    Outcome::perm(format!("Sorry, I couldn't find any host named {}. (#5.1.2)", super::report::safe(host)))
}
fn perm_nomx() -> Outcome {
    Outcome::perm("Sorry, I couldn't find a mail exchanger or IP address. (#5.4.4)")
}

/// The settings of one delivery: the variables, each overridden by the
/// option of the same meaning on the route it takes.
#[derive(Clone)]
struct Settings {
    policy: Policy,
    /// The route's pins, else `TLS_PIN`'s.
    pins: Vec<Pin>,
    xclient: bool,
    xforward: bool,
    auth_unverified: bool,
}

impl Settings {
    fn new(cfg: &Config, route: Option<&Route>) -> Settings {
        let o = route.map(|r| &r.opts);
        Settings {
            policy: o.and_then(|o| o.tls).unwrap_or(cfg.policy),
            pins: o.map(|o| o.pins.clone()).filter(|p| !p.is_empty()).unwrap_or_else(|| cfg.pins.clone()),
            xclient: o.and_then(|o| o.xclient).unwrap_or(cfg.xclient),
            xforward: o.and_then(|o| o.xforward).unwrap_or(cfg.xforward),
            auth_unverified: o.and_then(|o| o.auth_unverified).unwrap_or(cfg.auth_unverified),
        }
    }
}

/// How TLS goes for one target.
#[derive(Clone)]
struct TlsMode {
    /// `None`: no STARTTLS at all.
    verifier: Option<Arc<dyn ServerCertVerifier>>,
    required: bool,
    dane: bool,
    /// The verifier checks the certificate itself (WebPKI, DANE records,
    /// pins), not just the handshake: credentials may go (RFC 4954 4).
    verified: bool,
    name: ServerName<'static>,
}

impl TlsMode {
    /// No STARTTLS at all (a Unix socket).
    fn off() -> TlsMode {
        let name = ServerName::IpAddress(IpAddr::from([127, 0, 0, 1]).into());
        TlsMode { verifier: None, required: false, dane: false, verified: false, name }
    }
}

fn tls_mode(cfg: &Config, set: &Settings, t: &Target, dns: &Resolver, plaintext: bool) -> Result<TlsMode, Outcome> {
    let name = match &t.name {
        Some(n) => ServerName::try_from(n.trim_end_matches('.').to_string()).unwrap_or_else(|_| ServerName::IpAddress(t.addr.ip().into())),
        None => ServerName::IpAddress(t.addr.ip().into()),
    };
    let mut m = TlsMode { verifier: None, required: false, dane: false, verified: false, name };
    if !set.pins.is_empty() {
        // Pins name the certificate itself: TLS required whatever the level.
        (m.verifier, m.required, m.verified) = (Some(tls::Pinned::verifier(set.pins.clone())), true, true);
        return Ok(m);
    }
    let any = || Some(tls::AnyCert::verifier());
    match set.policy {
        Policy::None => {}
        Policy::May => m.verifier = if plaintext { None } else { any() },
        Policy::Encrypt => (m.verifier, m.required) = (any(), true),
        Policy::Verify => (m.verifier, m.required, m.verified) = (cfg.webpki.clone(), true, true),
        Policy::Dane => {
            m.verifier = if plaintext { None } else { any() };
            // RFC 7672 2.2: only names reached through validated DNS get
            // TLSA lookups (an address literal or an insecure MX: `may`).
            if let (Some(host), true) = (&t.name, t.secure) {
                match dns.tlsa(host, t.addr.port()) {
                    Ok(a) if a.secure && !a.records.is_empty() => {
                        m.required = true;
                        m.dane = true;
                        // Secure but unusable records: encrypt without authentication.
                        match tls::Dane::verifier(a.records) {
                            Some(v) => (m.verifier, m.verified) = (Some(v), true),
                            None => m.verifier = any(),
                        }
                    }
                    Ok(_) | Err(dns::Error::NoName) => {}
                    Err(dns::Error::Temp(_)) => {
                        return Err(Outcome::temp(format!(
                            "TLSA lookup for {} failed temporarily. (#4.7.5)",
                            super::report::safe(host)
                        )))
                    }
                }
            }
        }
    }
    Ok(m)
}

enum Next {
    /// The outcome stands.
    Done,
    /// Try the next address (RFC 5321 5.1: connection-level failure).
    Another,
    /// Opportunistic TLS failed in the handshake: same host once more, in plaintext.
    PlaintextRetry,
}

struct End {
    outcome: Outcome,
    next: Next,
}

/// How a transaction ended, and whether the connection is still in step
/// with the server: then a QUIT follows (or, in a mode that keeps
/// connections, RSET and the next message's transaction); else it is
/// dropped as it is.
struct Finished {
    end: End,
    usable: bool,
    /// Nothing of the message went out (the failure came before its data)
    /// and the server is gone or going (the connection died, or a 421). On
    /// a kept connection that only means the server timed it out or reached
    /// a limit of its own: a fresh connection is tried at once. Ignored on
    /// a fresh connection, whose outcome stands as it always did.
    stale: bool,
}

enum Opened {
    /// Ready for MAIL, with what the server offers; `true`: XCLIENT gave
    /// the session this message's client facts, so it carries no other.
    Ready(Conn, Extensions, bool),
    /// The outcome, and the connection when it is still in step (for QUIT).
    Failed(End, Option<Conn>),
}

/// The connection's side of a delivery: who is at the other end and how
/// to talk to it. What belongs to one message is in `Message`, so that one
/// `Link` can carry several transactions.
struct Link<'a> {
    cfg: &'a Config,
    set: &'a Settings,
    /// The destination domain, for the texts.
    host: &'a str,
    partner: String,
    tls: TlsMode,
    creds: Option<auth::Credentials>,
    /// RFC 2033: LHLO (no HELO fallback), no loop checks on names, and one
    /// reply per accepted recipient after the data.
    lmtp: bool,
}

/// One message's side: its envelope, its data, and what became of each
/// recipient sent so far (in the order of the RCPT commands).
struct Message<'a> {
    job: &'a Job,
    /// Per recipient of the job: refused before the dialogue (not sent).
    bad: &'a [Option<BadAddress>],
    spool: &'a mut Spool,
    rcpts: Vec<RcptResult>,
}

impl Link<'_> {
    /// One connection: open, the transaction; then QUIT, or (`keep`) the
    /// connection handed back for the next message when it is in step, the
    /// server is not closing it (421) and it carries no message's XCLIENT facts.
    fn run(&self, conn: Conn, msg: &mut Message<'_>, keep: bool) -> (End, Option<(Conn, Extensions)>) {
        let (mut conn, ext, private) = match self.open(conn, &msg.job.attrs) {
            Opened::Ready(c, ext, private) => (c, ext, private),
            Opened::Failed(end, conn) => {
                if let Some(c) = conn {
                    c.quit();
                }
                return (end, None);
            }
        };
        let f = self.transaction(&mut conn, &ext, msg, false);
        if !f.usable {
            return (f.end, None);
        }
        if keep && !private && !closing(&f.end.outcome) {
            conn.set_limit(None);
            return (f.end, Some((conn, ext)));
        }
        conn.quit();
        (f.end, None)
    }

    /// A kept connection's RSET reply (sent ahead of the transaction).
    /// `Some`: stop here, the connection is stale. `more_sent`: the
    /// transaction's commands went with it (PIPELINING), so a refusal other
    /// than 421 leaves their replies to decide.
    fn rset_reply(&self, conn: &mut Conn, more_sent: bool) -> Option<Finished> {
        conn.set_limit(Some(Instant::now() + RSET_TIMEOUT));
        let r = conn.read_reply();
        conn.set_limit(None);
        let end = match r {
            Ok(r) if r.is_positive() => return None,
            Ok(r) if r.code != 421 && more_sent => return None,
            Ok(r) => self.fail(&r, "RSET failed.", Next::Done),
            Err(e) => self.died(&e, false, false),
        };
        Some(Finished { end, usable: false, stale: true })
    }

    fn connected(&self, what: &str) -> String {
        format!("Connected to {} but {what}", self.partner)
    }

    /// The connection failed; `critical`: after the final dot (the message
    /// may have arrived); `answered`: a recipient was answered already, so
    /// the result stands (no next address).
    fn died(&self, e: &conn::Error, critical: bool, answered: bool) -> End {
        let next = if critical || answered { Next::Done } else { Next::Another };
        End { outcome: Outcome::temp(self.lost(e, critical)), next }
    }

    fn lost(&self, e: &conn::Error, critical: bool) -> String {
        let dup = if critical { "Possible duplicate! " } else { "" };
        let why = match e {
            conn::Error::Closed | conn::Error::Io(_) => "connection died.".to_string(),
            conn::Error::Timeout => "the connection timed out.".to_string(),
            conn::Error::Reply(r) => format!("it sent a bad reply ({r})."),
            conn::Error::Tls(t) => format!("TLS failed ({t})."),
        };
        format!("{} {dup}(#4.4.2)", self.connected(&why))
    }

    /// The server calls itself by our name: it is this host (through a
    /// route, a port forward, a NAT), and the mail would circle. Permanent
    /// as Postfix's "mail for X loops back to myself" for the best MX.
    fn looped(&self, how: &str) -> End {
        let host = super::report::safe(self.host);
        let what = format!("it {how} with my own name, {}: mail for {host} loops back to myself. (#5.4.6)", self.cfg.helo);
        End { outcome: Outcome::perm(self.connected(&what)), next: Next::Done }
    }

    fn fail(&self, reply: &Reply, what: &str, next: Next) -> End {
        End { outcome: Outcome::from_reply(reply, self.connected(what)), next }
    }

    /// EHLO (HELO when refused with 5xx), or LMTP's LHLO (RFC 2033 4.1),
    /// which has no fallback.
    fn hello(&self, conn: &mut Conn) -> Result<Result<Extensions, End>, conn::Error> {
        let verb = if self.lmtp { "LHLO" } else { "EHLO" };
        conn.send(format!("{verb} {}\r\n", self.cfg.helo).as_bytes());
        let r = conn.read_reply()?;
        if r.code == 250 {
            // An LMTP server is a mailbox store on this side, often this
            // very host under its own name: a delivery there never loops
            // back into the queue.
            if !self.lmtp && names_me(&r, &self.cfg.helo) {
                return Ok(Err(self.looped("answered EHLO")));
            }
            return Ok(Ok(Extensions::parse(&r)));
        }
        if r.code >= 500 && !self.lmtp {
            // RFC 5321 3.2: an old server; HELO instead.
            conn.send(format!("HELO {}\r\n", self.cfg.helo).as_bytes());
            let r = conn.read_reply()?;
            if r.code == 250 {
                return Ok(Ok(Extensions::default()));
            }
            return Ok(Err(End { outcome: Outcome::temp_reply(&r, self.connected("my name was rejected.")), next: Next::Another }));
        }
        Ok(Err(End { outcome: Outcome::temp_reply(&r, self.connected("my name was rejected.")), next: Next::Another }))
    }

    /// Greeting, EHLO/LHLO, STARTTLS, XCLIENT, AUTH: the connection ready
    /// for MAIL, with what the server offers.
    fn open(&self, mut conn: Conn, attrs: &Attrs) -> Opened {
        macro_rules! io {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => return Opened::Failed(self.died(&e, false, false), None),
                }
            };
        }
        macro_rules! keep {
            ($end:expr) => {{
                return Opened::Failed($end, Some(conn));
            }};
        }
        let greeting = io!(conn.read_reply());
        if greeting.code != 220 {
            // qmail-remote: a temporary failure whatever the code; try the next MX.
            keep!(End { outcome: Outcome::temp_reply(&greeting, self.connected("greeting failed.")), next: Next::Another });
        }
        if !self.lmtp && names_me(&greeting, &self.cfg.helo) {
            keep!(self.looped("greeted me"));
        }
        let mut ext = match io!(self.hello(&mut conn)) {
            Ok(e) => e,
            Err(end) => keep!(end),
        };

        // STARTTLS (RFC 3207).
        if let Some(verifier) = self.tls.verifier.clone() {
            if ext.starttls {
                conn.send(b"STARTTLS\r\n");
                let r = io!(conn.read_reply());
                if r.code == 220 {
                    let config = match tls::config(verifier) {
                        Ok(c) => c,
                        Err(e) => keep!(End { outcome: Outcome::temp(format!("TLS set-up failed: {e}. (#4.3.0)")), next: Next::Done }),
                    };
                    conn = match conn.start_tls(config, self.tls.name.clone()) {
                        Ok(c) => c,
                        Err(e) => {
                            let why = format!("the TLS handshake failed ({e}).");
                            let next = if self.tls.required { Next::Another } else { Next::PlaintextRetry };
                            let code = if self.tls.dane { "(#4.7.5)" } else { "(#4.7.0)" };
                            return Opened::Failed(End { outcome: Outcome::temp(format!("{} {code}", self.connected(&why))), next }, None);
                        }
                    };
                    ext = match io!(self.hello(&mut conn)) {
                        Ok(e) => e,
                        Err(end) => keep!(end),
                    };
                } else if self.tls.required {
                    keep!(End { outcome: Outcome::temp_reply(&r, self.connected("STARTTLS was refused. (#4.7.0)")), next: Next::Another });
                }
            }
        }
        if self.tls.required && !conn.is_tls() {
            keep!(End {
                outcome: Outcome::temp(self.connected("it does not offer STARTTLS, which my policy requires. (#4.7.0)")),
                next: Next::Another
            });
        }

        let forward = smtp::has_client_attrs(attrs);
        // XCLIENT: the server answers with a new greeting; EHLO again.
        let mut private = false;
        if let (Some(offered), true) = (ext.xclient.clone(), forward && self.set.xclient) {
            private = true;
            let mut ok = true;
            for c in smtp::xclient_commands(&offered, attrs) {
                conn.send(&c);
                let r = io!(conn.read_reply());
                ok &= r.code == 220;
                if !ok {
                    break;
                }
            }
            if ok {
                ext = match io!(self.hello(&mut conn)) {
                    Ok(e) => e,
                    Err(end) => keep!(end),
                };
            }
        }

        // AUTH (RFC 4954), only inside TLS.
        if let Some(creds) = self.creds.clone() {
            if !conn.is_tls() {
                keep!(End {
                    outcome: Outcome::temp(self.connected("TLS is not active and I send no password without it. (#4.7.0)")),
                    next: Next::Another
                });
            }
            // Over TLS that anyone in the middle could have set up, the
            // password would go to them: only to a verified (or pinned)
            // certificate, unless the operator says otherwise (as Postfix's
            // smtp_sasl_tls_security_options wants verify for a relayhost).
            if !self.tls.verified && !self.set.auth_unverified {
                keep!(End {
                    outcome: Outcome::temp(
                        self.connected("its certificate was not verified: not sending credentials over unverified TLS. (#4.7.0)")
                    ),
                    next: Next::Another
                });
            }
            let Some(mech) = auth::choose(&ext.auth) else {
                keep!(End { outcome: Outcome::temp(self.connected("it offers no AUTH mechanism I know. (#4.7.0)")), next: Next::Another });
            };
            let r = io!(self.authenticate(&mut conn, mech, &creds));
            if r.code != 235 {
                // A wrong password is the operator's to fix: mail waits (as
                // Postfix's smtp_sasl_auth_soft_bounce).
                keep!(End { outcome: Outcome::temp_reply(&r, self.connected("authentication failed.")), next: Next::Another });
            }
        }
        Opened::Ready(conn, ext, private)
    }

    /// One mail transaction on an open connection: XFORWARD, MAIL, RCPT,
    /// DATA, the message, and the reply to it (LMTP: the replies). Callable
    /// again on the same connection for the next message: `rset` sends RSET
    /// first (RFC 5321 4.1.1.5), in the same pipelined batch when it can.
    fn transaction(&self, conn: &mut Conn, ext: &Extensions, msg: &mut Message<'_>, rset: bool) -> Finished {
        // Whether the connection is in step for what follows (QUIT, RSET).
        let mut usable = true;
        macro_rules! io {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => return Finished { end: self.died(&e, false, !msg.rcpts.is_empty()), usable: false, stale: true },
                }
            };
        }
        macro_rules! keep {
            ($end:expr) => {{
                return Finished { end: $end, usable, stale: false };
            }};
        }
        let attrs = &msg.job.attrs;
        let forward = smtp::has_client_attrs(attrs);
        let xforward = ext.xforward.clone().filter(|_| forward && self.set.xforward);
        let mut rset_due = rset;
        if rset {
            conn.send(b"RSET\r\n");
            // Alone when nothing can go with it: XFORWARD waits for each reply.
            if xforward.is_some() || !ext.pipelining {
                rset_due = false;
                if let Some(f) = self.rset_reply(conn, false) {
                    return f;
                }
            }
        }
        if let Some(offered) = xforward {
            for c in smtp::xforward_commands(&offered, attrs) {
                conn.send(&c);
                // A refusal only loses the forwarded facts, not the mail.
                let _ = io!(conn.read_reply());
            }
        }

        // What the message needs against what the server offers.
        let scan = msg.spool.scan.prepended(&msg.job.prepend);
        if let Some(limit) = ext.size.filter(|&l| l > 0) {
            if scan.size > limit {
                keep!(End {
                    outcome: Outcome::perm(self.connected(&format!(
                        "the message ({} bytes) is larger than its SIZE limit of {limit}. (#5.3.4)",
                        scan.size
                    ))),
                    next: Next::Done
                });
            }
        }
        let header_utf8 = attrs.get("SMTPUTF8").is_some() && scan.header_eight_bit;
        let job = msg.job;
        let mut sender = job.sender.clone();
        let bad = msg.bad;
        let sent = |i: usize| bad.get(i).is_some_and(Option::is_none);
        let mut rcpts: Vec<Vec<u8>> = job.rcpts.iter().enumerate().filter(|(i, _)| sent(*i)).map(|(_, r)| r.clone()).collect();
        let mut wants_utf8 = header_utf8 || smtp::envelope_needs_utf8(&sender, &rcpts);
        if wants_utf8 && !ext.smtputf8 && !header_utf8 {
            // RFC 6531 3.2: only the domains are non-ASCII? Their A-labels
            // need no SMTPUTF8.
            if let Some((s, r)) = smtp::ascii_envelope(&sender, &rcpts) {
                (sender, rcpts, wants_utf8) = (s, r, false);
            }
        }
        if wants_utf8 && !ext.smtputf8 {
            keep!(End {
                outcome: Outcome::perm(self.connected("it does not support SMTPUTF8, which this message needs. (#5.6.7)")),
                next: Next::Done
            });
        }
        let eight = scan.eight_bit || attrs.get("BODY").is_some_and(|b| b.eq_ignore_ascii_case(b"8BITMIME"));
        let (ret, envid, rparams) = smtp::dsn_params(attrs, job.rcpts.len());
        // RCPT.n.* count every recipient of the command line.
        let rparams: Vec<smtp::RcptParams> = rparams.into_iter().enumerate().filter(|(i, _)| sent(*i)).map(|(_, p)| p).collect();
        let mp = MailParams {
            size: ext.size.map(|_| scan.size),
            eight_bit: eight && ext.eight_bit_mime,
            smtputf8: wants_utf8,
            ret: ret.filter(|_| ext.dsn),
            envid: envid.filter(|_| ext.dsn),
        };
        let mail = smtp::mail_command(&sender, &mp);
        let rcpt_cmds: Vec<Vec<u8>> = rcpts
            .iter()
            .zip(rparams)
            .map(|(r, p)| smtp::rcpt_command(r, &if ext.dsn { p } else { smtp::RcptParams::default() }))
            .collect();

        // The transaction: pipelined (RFC 2920) when offered, else step by
        // step. From here only the reply timeout counts: a transaction is
        // never cut short for the attempt's deadline (after the dot that
        // would risk a duplicate).
        conn.set_limit(None);
        let (mail_reply, data_reply) = if ext.pipelining {
            conn.send(&mail);
            for c in &rcpt_cmds {
                conn.send(c);
            }
            conn.send(b"DATA\r\n");
            if rset_due {
                if let Some(f) = self.rset_reply(conn, true) {
                    return f;
                }
            }
            let m = io!(conn.read_reply());
            for _ in &rcpt_cmds {
                let r = io!(conn.read_reply());
                record_rcpt(&mut msg.rcpts, &r);
            }
            let d = io!(conn.read_reply());
            if rset && (m.code == 421 || d.code == 421 || (!any_accepted(&msg.rcpts) && any_421(&msg.rcpts))) {
                // The server ends a kept session before the message: nothing
                // went out (a 354 is left unanswered, which discards it).
                return Finished { end: self.fail(if m.code == 421 { &m } else { &d }, "the session was closed.", Next::Done), usable: false, stale: true };
            }
            if d.code == 354 && (!m.is_positive() || !any_accepted(&msg.rcpts)) {
                // RFC 2920 3.1: DATA accepted though nothing else was: an
                // empty message ends it. An LMTP server doing this breaks
                // RFC 2033 4.2 (503 is due), and how many replies follow
                // is anyone's guess: no QUIT then.
                conn.send(b".\r\n");
                if self.lmtp {
                    io!(conn.flush());
                    usable = false;
                } else {
                    let _ = io!(conn.read_reply());
                }
            }
            (m, Some(d))
        } else {
            conn.send(&mail);
            let m = io!(conn.read_reply());
            if m.is_positive() {
                for c in &rcpt_cmds {
                    conn.send(c);
                    let r = io!(conn.read_reply());
                    record_rcpt(&mut msg.rcpts, &r);
                }
            }
            if rset && (m.code == 421 || (!any_accepted(&msg.rcpts) && any_421(&msg.rcpts))) {
                return Finished { end: self.fail(&m, "the session was closed.", Next::Done), usable: false, stale: true };
            }
            (m, None)
        };
        if !mail_reply.is_positive() {
            msg.rcpts.clear();
            keep!(self.fail(&mail_reply, "sender was rejected.", Next::Done));
        }
        if !any_accepted(&msg.rcpts) {
            let last = msg.rcpts.iter().rev().find_map(|r| match r {
                RcptResult::Refused(r) => Some(r.clone()),
                _ => None,
            });
            keep!(End {
                outcome: Outcome { kind: Kind::Perm, text: format!("Giving up on {}.", self.partner), reply: last },
                next: Next::Done
            });
        }
        let data_reply = match data_reply {
            Some(d) => d,
            None => {
                conn.send(b"DATA\r\n");
                let d = io!(conn.read_reply());
                if rset && d.code == 421 {
                    return Finished { end: self.fail(&d, "the session was closed.", Next::Done), usable: false, stale: true };
                }
                d
            }
        };
        if data_reply.code != 354 {
            let o = Outcome::from_reply(&data_reply, format!("{} failed on DATA command.", self.partner));
            keep!(End { outcome: o, next: Next::Done });
        }

        // The message itself. Dropping the connection without the final
        // dot makes the server discard what it got.
        let gone = |e: std::io::Error| Finished {
            end: End { outcome: Outcome::temp(format!("Unable to read message: {e}. (#4.3.0)")), next: Next::Done },
            usable: false,
            stale: false,
        };
        if let Err(e) = msg.spool.rewind() {
            return gone(e);
        }
        let mut enc = super::message::Encoder::new();
        let mut buf = vec![0u8; 65536];
        let mut out = Vec::with_capacity(70000);
        // queue-run's header fields first, through the same encoder.
        enc.encode(&msg.job.prepend, &mut out);
        conn.send(&out);
        loop {
            let n = match msg.spool.read(&mut buf) {
                Ok(n) => n,
                Err(e) => return gone(e),
            };
            out.clear();
            if n == 0 {
                enc.finish(&mut out);
                conn.send(&out);
                break;
            }
            enc.encode(buf.get(..n).unwrap_or_default(), &mut out);
            conn.send(&out);
            io!(conn.flush());
        }
        if self.lmtp {
            return self.lmtp_replies(conn, &mut msg.rcpts);
        }
        let r = match conn.read_reply() {
            Ok(r) => r,
            Err(e) => return Finished { end: self.died(&e, true, true), usable: false, stale: false },
        };
        let o = if r.is_positive() {
            Outcome { kind: Kind::Accepted, text: format!("{} accepted message.", self.partner), reply: Some(r) }
        } else {
            Outcome::from_reply(&r, format!("{} failed after I sent the message.", self.partner))
        };
        keep!(End { outcome: o, next: Next::Done })
    }

    /// RFC 2033 4.2: after the final dot, one reply for each recipient
    /// whose RCPT succeeded, in the order of the RCPT commands, each that
    /// recipient's own result. The message record is `K` when any was
    /// delivered (each refused one keeps its `h`/`s`), else `Z` or `D`.
    fn lmtp_replies(&self, conn: &mut Conn, rcpts: &mut [RcptResult]) -> Finished {
        let mut lost: Option<conn::Error> = None;
        for r in rcpts.iter_mut().filter(|r| **r == RcptResult::Accepted) {
            if let Some(e) = &lost {
                *r = RcptResult::Deferred(self.lost(e, true));
                continue;
            }
            match conn.read_reply() {
                Ok(reply) if reply.is_positive() => *r = RcptResult::Delivered(reply),
                Ok(reply) => *r = RcptResult::Failed(reply),
                Err(e) => {
                    *r = RcptResult::Deferred(self.lost(&e, true));
                    lost = Some(e);
                }
            }
        }
        let delivered = rcpts.iter().filter(|r| matches!(r, RcptResult::Delivered(_))).count();
        let temp = rcpts.iter().any(|r| match r {
            RcptResult::Failed(reply) | RcptResult::Refused(reply) => reply.code < 500,
            RcptResult::Deferred(_) => true,
            _ => false,
        });
        let outcome = if delivered == rcpts.len() {
            Outcome { kind: Kind::Accepted, text: format!("{} accepted message.", self.partner), reply: None }
        } else if delivered > 0 {
            let text = format!("{} accepted the message for {delivered} of {} recipients.", self.partner, rcpts.len());
            Outcome { kind: Kind::Accepted, text, reply: None }
        } else if let Some(e) = &lost {
            Outcome::temp(self.lost(e, true))
        } else if temp {
            Outcome::temp(format!("{} failed after I sent the message.", self.partner))
        } else {
            Outcome::perm(format!("{} failed after I sent the message.", self.partner))
        };
        Finished { end: End { outcome, next: Next::Done }, usable: lost.is_none(), stale: false }
    }

    fn authenticate(&self, conn: &mut Conn, mech: auth::Mechanism, c: &auth::Credentials) -> Result<Reply, conn::Error> {
        match mech {
            auth::Mechanism::Plain => {
                conn.send(auth::plain_command(c).as_bytes());
                conn.read_reply()
            }
            auth::Mechanism::Login => {
                conn.send(b"AUTH LOGIN\r\n");
                let r = conn.read_reply()?;
                if r.code != 334 {
                    return Ok(r);
                }
                conn.send(auth::b64(&c.user).as_bytes());
                let r = conn.read_reply()?;
                if r.code != 334 {
                    return Ok(r);
                }
                conn.send(auth::b64(&c.password).as_bytes());
                conn.read_reply()
            }
            auth::Mechanism::CramMd5 => {
                conn.send(b"AUTH CRAM-MD5\r\n");
                let r = conn.read_reply()?;
                if r.code != 334 {
                    return Ok(r);
                }
                let challenge = r.texts().next().unwrap_or_default().to_vec();
                match auth::cram_md5_response(c, &challenge) {
                    Some(resp) => conn.send(resp.as_bytes()),
                    // RFC 4954 4: "*" cancels the exchange.
                    None => conn.send(b"*\r\n"),
                }
                conn.read_reply()
            }
        }
    }
}

fn record_rcpt(rcpts: &mut Vec<RcptResult>, r: &Reply) {
    rcpts.push(if r.is_positive() { RcptResult::Accepted } else { RcptResult::Refused(r.clone()) });
}

fn any_accepted(rcpts: &[RcptResult]) -> bool {
    rcpts.contains(&RcptResult::Accepted)
}

fn any_421(rcpts: &[RcptResult]) -> bool {
    rcpts.iter().any(|r| matches!(r, RcptResult::Refused(x) if x.code == 421))
}

/// The server said 421: it closes the session (RFC 5321 3.8), so the
/// connection is not kept, even when it looks in step.
fn closing(o: &Outcome) -> bool {
    o.reply.as_ref().is_some_and(|r| r.code == 421)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(literal("[192.0.2.1]"), Some(IpAddr::from([192, 0, 2, 1])));
        assert_eq!(literal("[IPv6:::1]"), Some("::1".parse().unwrap()));
        assert_eq!(literal("192.0.2.1"), Some(IpAddr::from([192, 0, 2, 1])));
        assert_eq!(literal("[mx.example]"), None);
    }

    fn t(ip: &str, pref: u16) -> Target {
        Target { addr: SocketAddr::new(ip.parse().unwrap(), 25), name: None, secure: false, pref }
    }

    #[test]
    fn loops() {
        let me = |ip: IpAddr| is_me(ip, &["192.0.2.25".parse().unwrap()]);
        for ip in ["127.0.0.1", "127.9.9.9", "::1", "0.0.0.0", "::", "192.0.2.25", "::ffff:127.0.0.1", "::ffff:192.0.2.25"] {
            assert!(me(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["192.0.2.26", "10.0.0.1", "2001:db8::25"] {
            assert!(!me(ip.parse().unwrap()), "{ip}");
        }
        let ips = |v: &[Target]| v.iter().map(|t| t.addr.ip().to_string()).collect::<Vec<_>>();
        // A backup MX (preference 20) hands mail to the better one only.
        let v = vec![t("10.0.0.1", 10), t("192.0.2.25", 20), t("10.0.0.2", 20), t("10.0.0.3", 30)];
        assert_eq!(ips(&drop_self(v, me).unwrap()), ["10.0.0.1"]);
        // The best MX (or one of equal preference): a loop.
        let v = vec![t("10.0.0.1", 10), t("127.0.0.1", 10), t("10.0.0.3", 30)];
        assert_eq!(drop_self(v, me).unwrap_err(), "127.0.0.1".parse::<IpAddr>().unwrap());
        let v = vec![t("10.0.0.1", 0), t("10.0.0.2", 0)];
        assert_eq!(drop_self(v, me).unwrap().len(), 2);
        let r = |l: &str| Reply { code: 250, lines: vec![l.as_bytes().to_vec(), b"250 PIPELINING".to_vec()] };
        assert!(names_me(&r("250-MX.example.org. hello"), "mx.example.org"));
        assert!(names_me(&r("220 mx.example.org"), "mx.example.org."));
        assert!(!names_me(&r("250-mx.example.org.uk"), "mx.example.org"));
        assert!(!names_me(&r("250-other hello mx.example.org"), "mx.example.org"));
        assert!(!names_me(&r("220 localhost ESMTP"), "localhost"));
        assert!(!names_me(&Reply { code: 250, lines: vec![b"250".to_vec()] }, "mx.example.org"));
    }

    #[test]
    fn mx_order() {
        let mut seen_first = std::collections::HashSet::new();
        for s in 1..200u64 {
            let mut v = vec![(20, "c".to_string()), (10, "a".into()), (10, "b".into()), (30, "d".into())];
            sort_mx(&mut v, s * 7919);
            let prefs: Vec<u16> = v.iter().map(|x| x.0).collect();
            assert_eq!(prefs, vec![10, 10, 20, 30]);
            assert_eq!(v[2].1, "c");
            seen_first.insert(v[0].1.clone());
        }
        assert_eq!(seen_first.len(), 2, "equal preferences are shuffled");
    }
}
