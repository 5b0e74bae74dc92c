//! queue-run's settings, read once from the environment (and an optional
//! `-e FILE` that overrides it, re-read on SIGHUP, read by `crate::envfile`
//! with systemd's `EnvironmentFile=` rules) into a typed `Config`. Pure: the
//! caller supplies the lookup and the file's assignments.

use super::backoff::Schedule;
use super::signtable::Unsignable;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `QUEUE_DIR`, default `/var/spool/smtpd-rs/queue` (as queue-inject).
    pub queue_dir: PathBuf,
    /// `SMTP_REMOTE` (or `QMAILREMOTE`): the delivery program; `None`: `smtp-remote`
    /// next to queue-run, else from `PATH`.
    pub remote: Option<OsString>,
    /// The delivery program came from `QMAILREMOTE` (and not `SMTP_REMOTE`):
    /// a qmail-remote that knows no PREPEND attribute, so DKIM signatures
    /// reach it in front of the message on a pipe (sign.rs).
    pub remote_is_qmail: bool,
    /// `DKIM_SIGN`: the signing table (signtable.rs); unset: no signing.
    pub dkim_sign: Option<PathBuf>,
    /// `DKIM_UNSIGNABLE`: `envelope` (default), `unsigned` or `defer`.
    pub dkim_unsignable: Unsignable,
    /// `QMAILQUEUE`: the queue program for DSNs; `None`: `queue-inject` next to
    /// queue-run, else from `PATH`.
    pub queue_prog: Option<OsString>,
    /// `CONCURRENCY`: deliveries at once (default 20, qmail's concurrencyremote).
    pub concurrency: usize,
    /// `CONCURRENCY_DOMAIN`: deliveries at once to one domain (default a
    /// quarter of `CONCURRENCY`, at least 1: one slow or tarpitting
    /// destination can never hold every slot, as Postfix's destination
    /// limit of 20 stays well below its process limit of 100).
    pub per_domain: usize,
    /// `QUEUE_LIFETIME`: seconds before temporary failures become permanent (7 days).
    pub lifetime: u64,
    /// `RETRY_SCHEDULE`: see `backoff`.
    pub schedule: Schedule,
    /// `SCAN_INTERVAL`: seconds between full scans of new/ (default 60).
    pub scan_interval: u64,
    /// `BOUNCE_HOST`, else `HELOHOST`, else the host name: Reporting-MTA and MAILER-DAEMON@.
    pub host: String,
    /// `DOUBLEBOUNCETO`: where a DSN that cannot be delivered goes; unset: dropped (logged).
    pub doublebounceto: Option<Vec<u8>>,
    /// `BOUNCE_MAX`: largest original message returned whole in a DSN (default 100000).
    pub bounce_max: usize,
    /// `DELAY_WARNING`: seconds after arrival for the delay DSN of a recipient
    /// that asked NOTIFY=DELAY (default 14400; 0: never).
    pub delay_warning: u64,
    /// `TERM_GRACE`: seconds SIGTERM waits for running attempts (default 10).
    pub term_grace: u64,
    /// `ATTEMPT_TIMEOUT`: seconds before a hung delivery program is killed (default 3600).
    pub attempt_timeout: u64,
    /// `REMOTE_MAXRCPT`: most recipients in one smtp-remote run (default 100).
    pub max_rcpt: usize,
    /// `CONNECTION_REUSE_COUNT`: most messages over one kept connection
    /// (default 100, as Postfix's smtp_connection_reuse_count_limit caps
    /// it); 0: no kept connections, one delivery program run per delivery.
    pub reuse_count: u32,
    /// `CONNECTION_REUSE_TIME`: seconds during which a connection takes
    /// new messages, from its start (default 300, Postfix's
    /// smtp_connection_reuse_time_limit).
    pub reuse_time: u64,
    /// `CONNECTION_IDLE_TIME`: seconds a kept connection waits for another
    /// message before it is closed (default 2, Postfix's
    /// smtp_connection_cache_time_limit).
    pub idle_time: u64,
    /// The `-e` file's assignments, in file order: set in the environment of
    /// every program queue-run runs (the delivery program, the queue
    /// program), as they are in queue-run's own settings.
    pub env: Vec<(OsString, OsString)>,
    /// `LOCAL_DELIVERY`: the delivery program for the domains of
    /// `LOCAL_DOMAINS`; `None`: `maildir-deliver` next to queue-run, else from `PATH`.
    pub local: Option<OsString>,
    /// `LOCAL_DOMAINS`: a file of domains, one a line, delivered by
    /// `LOCAL_DELIVERY` instead of `SMTP_REMOTE`; unset: none.
    pub local_domains_file: Option<PathBuf>,
    /// The domains of that file, lower case (filled by the caller, which reads it).
    pub local_domains: BTreeSet<String>,
}

impl Config {
    /// Build from a lookup (`None`: unset). An empty value counts as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>, hostname: &str) -> Result<Config, String> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let num = |k: &str, def: u64, min: u64, max: u64| -> Result<u64, String> {
            match get(k) {
                None => Ok(def),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| format!("{k}={v}: not a number from {min} to {max}")),
            }
        };
        let schedule = match get("RETRY_SCHEDULE") {
            None => Schedule::default(),
            Some(v) => Schedule::parse(&v).ok_or_else(|| format!("RETRY_SCHEDULE={v}: not qmail, qmail:<n> or a list of seconds"))?,
        };
        let host = get("BOUNCE_HOST").or_else(|| get("HELOHOST")).unwrap_or_else(|| hostname.to_owned());
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b)) {
            return Err(format!("bad host name for DSNs: {host:?} (set BOUNCE_HOST)"));
        }
        let doublebounceto = get("DOUBLEBOUNCETO").map(String::into_bytes);
        if doublebounceto.as_deref().is_some_and(|a| crate::queue::control_char(a).is_some()) {
            return Err("DOUBLEBOUNCETO: an address with a control character".into());
        }
        let concurrency = num("CONCURRENCY", 20, 1, 1000)? as usize;
        Ok(Config {
            queue_dir: PathBuf::from(get("QUEUE_DIR").unwrap_or_else(|| crate::queue::DEFAULT_QUEUE_DIR.into())),
            remote: get("SMTP_REMOTE").or_else(|| get("QMAILREMOTE")).map(OsString::from),
            remote_is_qmail: get("SMTP_REMOTE").is_none() && get("QMAILREMOTE").is_some(),
            dkim_sign: get("DKIM_SIGN").map(PathBuf::from),
            dkim_unsignable: match get("DKIM_UNSIGNABLE") {
                None => Unsignable::Envelope,
                Some(v) => Unsignable::parse(v.trim()).ok_or_else(|| format!("DKIM_UNSIGNABLE={v}: not envelope, unsigned or defer"))?,
            },
            queue_prog: get("QMAILQUEUE").map(OsString::from),
            concurrency,
            per_domain: num("CONCURRENCY_DOMAIN", (concurrency as u64 / 4).max(1), 1, 1000)? as usize,
            lifetime: num("QUEUE_LIFETIME", 7 * 86400, 0, 100 * 365 * 86400)?,
            schedule,
            scan_interval: num("SCAN_INTERVAL", 60, 1, 86400)?,
            host,
            doublebounceto,
            bounce_max: num("BOUNCE_MAX", 100_000, 0, 1 << 30)? as usize,
            delay_warning: num("DELAY_WARNING", 4 * 3600, 0, 100 * 365 * 86400)?,
            term_grace: num("TERM_GRACE", 10, 0, 3600)?,
            attempt_timeout: num("ATTEMPT_TIMEOUT", 3600, 1, 86400)?,
            max_rcpt: num("REMOTE_MAXRCPT", 100, 1, 10000)? as usize,
            reuse_count: num("CONNECTION_REUSE_COUNT", 100, 0, 1_000_000)? as u32,
            reuse_time: num("CONNECTION_REUSE_TIME", 300, 1, 86400)?,
            idle_time: num("CONNECTION_IDLE_TIME", 2, 0, 3600)?,
            env: Vec::new(),
            local: match (get("LOCAL_DELIVERY"), get("LOCAL_DOMAINS")) {
                (Some(_), None) => return Err("LOCAL_DELIVERY without LOCAL_DOMAINS: no domain would use it".into()),
                (l, _) => l.map(OsString::from),
            },
            local_domains_file: get("LOCAL_DOMAINS").map(PathBuf::from),
            local_domains: BTreeSet::new(),
        })
    }
}

/// The domains of a `LOCAL_DOMAINS` file (as qmail's control/locals): one
/// a line, blank lines and `#` lines skipped, lower case, no trailing dot.
pub fn parse_domains(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('.').to_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| m.get(k).cloned(), "box.example")
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.concurrency, 20);
        assert_eq!(c.lifetime, 604800);
        assert_eq!(c.schedule, Schedule::Quadratic { skip: 20 });
        assert_eq!(c.host, "box.example");
        assert_eq!(c.remote, None);
        assert_eq!(c.doublebounceto, None);
        assert_eq!((c.reuse_count, c.reuse_time, c.idle_time), (100, 300, 2));
    }

    #[test]
    fn settings_and_errors() {
        let c = cfg(&[("QMAILREMOTE", "/x/qr"), ("RETRY_SCHEDULE", "1,2"), ("HELOHOST", "h.example"), ("CONCURRENCY", "3")]).unwrap();
        assert_eq!(c.remote, Some("/x/qr".into()));
        assert_eq!(c.schedule, Schedule::List(vec![1, 2]));
        assert_eq!(c.host, "h.example");
        assert_eq!(c.concurrency, 3);
        assert_eq!(cfg(&[("SMTP_REMOTE", "/a"), ("QMAILREMOTE", "/b")]).unwrap().remote, Some("/a".into()));
        assert!(cfg(&[("CONCURRENCY", "0")]).is_err());
        assert!(cfg(&[("CONCURRENCY", "x")]).is_err());
        assert!(cfg(&[("RETRY_SCHEDULE", "soon")]).is_err());
        assert!(cfg(&[("BOUNCE_HOST", "bad host")]).is_err());
        assert!(cfg(&[("DOUBLEBOUNCETO", "pm@x\nRSET")]).is_err());
        assert_eq!(cfg(&[("CONCURRENCY", "")]).unwrap().concurrency, 20);
        let r = cfg(&[("CONNECTION_REUSE_COUNT", "0"), ("CONNECTION_REUSE_TIME", "60"), ("CONNECTION_IDLE_TIME", "0")]).unwrap();
        assert_eq!((r.reuse_count, r.reuse_time, r.idle_time), (0, 60, 0));
        assert!(cfg(&[("CONNECTION_REUSE_TIME", "0")]).is_err());
        assert!(cfg(&[("CONNECTION_IDLE_TIME", "x")]).is_err());
        // The per-domain default stays well below the total.
        assert_eq!(cfg(&[]).unwrap().per_domain, 5);
        assert_eq!(cfg(&[("CONCURRENCY", "2")]).unwrap().per_domain, 1);
        assert_eq!(cfg(&[("CONCURRENCY", "2"), ("CONCURRENCY_DOMAIN", "2")]).unwrap().per_domain, 2);
        // DKIM: the table, the policy, and which delivery program gets the PREPEND attribute.
        let c = cfg(&[("DKIM_SIGN", "/etc/dkim/table"), ("DKIM_UNSIGNABLE", "defer")]).unwrap();
        assert_eq!((c.dkim_sign, c.dkim_unsignable, c.remote_is_qmail), (Some("/etc/dkim/table".into()), Unsignable::Defer, false));
        assert_eq!(cfg(&[]).unwrap().dkim_unsignable, Unsignable::Envelope);
        assert!(cfg(&[("DKIM_UNSIGNABLE", "never")]).is_err());
        assert!(cfg(&[("QMAILREMOTE", "/var/qmail/bin/qmail-remote")]).unwrap().remote_is_qmail);
        assert!(!cfg(&[("QMAILREMOTE", "/q"), ("SMTP_REMOTE", "/s")]).unwrap().remote_is_qmail);
        let l = cfg(&[("LOCAL_DOMAINS", "/etc/locals"), ("LOCAL_DELIVERY", "/x/md")]).unwrap();
        assert_eq!((l.local, l.local_domains_file), (Some("/x/md".into()), Some("/etc/locals".into())));
        assert!(cfg(&[("LOCAL_DELIVERY", "/x/md")]).is_err());
        assert_eq!(cfg(&[("LOCAL_DOMAINS", "/etc/locals")]).unwrap().local, None);
        let d = parse_domains("# ours\nExample.COM.\n\n  example.org \n");
        assert_eq!(d.into_iter().collect::<Vec<_>>(), ["example.com", "example.org"]);
    }
}
