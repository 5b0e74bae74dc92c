//! auth-check's settings, read once at start from the environment into a
//! typed `Config` (auth-check(8) ENVIRONMENT). A bad value is exit 55
//! (qmail-queue's "unable to read configuration") before any input is read.

use super::check::Policy;
use crate::envelope::Attrs;
use crate::host::{find_program, system_hostname};
use crate::queue::{Error, EXIT_CONFIG, EXIT_ENVELOPE};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default wait for one read inside a message (`QUEUE_TIMEOUT`), as queue-inject.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1200);
/// Default DKIM-Signature fields evaluated per message (`AUTHCHECK_DKIM_MAX`).
pub const DEFAULT_DKIM_MAX: usize = 10;
/// The program run next when `AUTHCHECK_QUEUE` is not set.
pub const NEXT: &str = "queue-inject";

#[derive(Debug, Clone)]
pub struct Config {
    /// The authserv-id of our field and SPF's receiver name.
    pub authserv_id: String,
    /// The next program: `<next>` per message, `<next> -s` per session.
    pub next: PathBuf,
    pub policy: Policy,
    /// Where a message larger than `spool::MEMORY` is kept.
    pub spool_dir: PathBuf,
    pub timeout: Duration,
    /// `QUEUE_ATTRS`: the block of a per-message run, and of a session's
    /// message that comes without an `A` frame.
    pub attrs: Attrs,
    pub dkim_max: usize,
    /// The UCSPI variables read when the attribute block has no client
    /// facts (a plain qmail-smtpd before us): TCPREMOTEIP, RELAYCLIENT,
    /// SMTPAUTHUSER, SMTP_AUTH_USER.
    pub ucspi: Vec<(String, String)>,
}

impl Config {
    pub fn from_env() -> Result<Config, Error> {
        let exe = std::env::current_exe().ok();
        Config::from_vars(&|k| std::env::var_os(k), exe.as_deref())
    }

    /// Build from a variable lookup (tests) and the path of our binary (to
    /// find queue-inject beside it).
    pub fn from_vars(get: &dyn Fn(&str) -> Option<OsString>, exe: Option<&Path>) -> Result<Config, Error> {
        let bad = |k: &str, why: &str| Error::new(EXIT_CONFIG, format_args!("{k}: {why}"));
        let text = |k: &str| -> Result<Option<String>, Error> {
            get(k).map(|v| v.into_string().map_err(|_| bad(k, "not UTF-8"))).transpose()
        };
        let choice = |k: &str, off: &str, on: &str| -> Result<bool, Error> {
            match text(k)?.as_deref().map(str::trim) {
                None | Some("") => Ok(false),
                Some(v) if v == off => Ok(false),
                Some(v) if v == on => Ok(true),
                Some(v) => Err(bad(k, &format!("{v:?} is neither {off} nor {on}"))),
            }
        };
        let authserv_id = match text("AUTHCHECK_AUTHSERV_ID")?.filter(|s| !s.is_empty()) {
            Some(id) => id,
            None => text("SMTPD_HOSTNAME")?.filter(|s| !s.is_empty()).unwrap_or_else(system_hostname),
        };
        if authserv_id.bytes().any(|b| !b.is_ascii_graphic() || b == b';') {
            return Err(bad("authserv-id", &format!("{authserv_id:?} is not a host name")));
        }
        let policy = Policy {
            spf_reject: choice("AUTHCHECK_SPF", "annotate", "reject")?,
            dmarc_reject: choice("AUTHCHECK_DMARC", "annotate", "reject")?,
            defer_temperror: choice("AUTHCHECK_TEMPERROR", "annotate", "defer")?,
            check_helo: !choice("AUTHCHECK_HELO", "1", "0")?,
        };
        let next = match get("AUTHCHECK_QUEUE").filter(|p| !p.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => find_program(NEXT, get("PATH").as_deref(), &|| exe.map(Path::to_path_buf)),
        };
        let spool_dir = [get("AUTHCHECK_SPOOL"), get("TMPDIR")]
            .into_iter()
            .flatten()
            .find(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        let timeout = match text("QUEUE_TIMEOUT")? {
            None => DEFAULT_TIMEOUT,
            Some(t) => t
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| (1..=86400).contains(s))
                .map(Duration::from_secs)
                .ok_or_else(|| bad("QUEUE_TIMEOUT", "not a number of seconds from 1 to 86400"))?,
        };
        let attrs = match get("QUEUE_ATTRS") {
            None => Attrs::default(),
            Some(a) => Attrs::parse(a.as_encoded_bytes())
                .ok_or_else(|| Error::new(EXIT_ENVELOPE, "QUEUE_ATTRS is not a valid attribute block"))?,
        };
        let dkim_max = match text("AUTHCHECK_DKIM_MAX")? {
            None => DEFAULT_DKIM_MAX,
            Some(n) => n
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| bad("AUTHCHECK_DKIM_MAX", "not a number from 1 to 100"))?,
        };
        let ucspi = ["TCPREMOTEIP", "RELAYCLIENT", "SMTPAUTHUSER", "SMTP_AUTH_USER"]
            .iter()
            .filter_map(|k| get(k).map(|v| (k.to_string(), v.to_string_lossy().into_owned())))
            .collect();
        Ok(Config { authserv_id, next, policy, spool_dir, timeout, attrs, dkim_max, ucspi })
    }

    /// One of the UCSPI variables captured at start.
    pub fn ucspi_var(&self, k: &str) -> Option<String> {
        self.ucspi.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, Error> {
        let v: Vec<(String, OsString)> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        Config::from_vars(&|k| v.iter().find(|(n, _)| n == k).map(|(_, x)| x.clone()), None)
    }

    #[test]
    fn defaults_and_errors() {
        let c = cfg(&[("SMTPD_HOSTNAME", "mx.test"), ("PATH", "/nonexistent")]).unwrap();
        assert_eq!(c.authserv_id, "mx.test");
        assert_eq!(c.next, PathBuf::from("queue-inject"));
        assert_eq!(c.policy, Policy { check_helo: true, ..Policy::default() });
        assert_eq!((c.spool_dir, c.timeout, c.dkim_max), (PathBuf::from("/tmp"), DEFAULT_TIMEOUT, 10));
        let c = cfg(&[
            ("SMTPD_HOSTNAME", "mx.test"),
            ("AUTHCHECK_AUTHSERV_ID", "example.net"),
            ("AUTHCHECK_QUEUE", "/var/qmail/bin/qmail-queue"),
            ("AUTHCHECK_SPF", "reject"),
            ("AUTHCHECK_DMARC", "reject"),
            ("AUTHCHECK_TEMPERROR", "defer"),
            ("AUTHCHECK_HELO", "0"),
            ("TMPDIR", "/var/tmp"),
            ("QUEUE_TIMEOUT", "30"),
            ("QUEUE_ATTRS", "CLIENT_ADDR=192.0.2.1\n"),
            ("AUTHCHECK_DKIM_MAX", "3"),
            ("TCPREMOTEIP", "192.0.2.9"),
        ])
        .unwrap();
        assert_eq!(c.authserv_id, "example.net");
        assert_eq!(c.next, PathBuf::from("/var/qmail/bin/qmail-queue"));
        assert_eq!(c.policy, Policy { spf_reject: true, dmarc_reject: true, defer_temperror: true, check_helo: false });
        assert_eq!((c.spool_dir.clone(), c.timeout, c.dkim_max), (PathBuf::from("/var/tmp"), Duration::from_secs(30), 3));
        assert_eq!(c.attrs.get("CLIENT_ADDR"), Some(&b"192.0.2.1"[..]));
        assert_eq!((c.ucspi_var("TCPREMOTEIP").as_deref(), c.ucspi_var("RELAYCLIENT")), (Some("192.0.2.9"), None));
        assert_eq!(cfg(&[("AUTHCHECK_SPOOL", "/s"), ("TMPDIR", "/t")]).unwrap().spool_dir, PathBuf::from("/s"));
        for bad in [
            ("AUTHCHECK_SPF", "yes"),
            ("AUTHCHECK_DMARC", "quarantine"),
            ("AUTHCHECK_TEMPERROR", "reject"),
            ("AUTHCHECK_HELO", "no"),
            ("QUEUE_TIMEOUT", "0"),
            ("AUTHCHECK_DKIM_MAX", "0"),
            ("SMTPD_HOSTNAME", "a;b"),
        ] {
            assert_eq!(cfg(&[bad]).unwrap_err().code, EXIT_CONFIG, "{bad:?}");
        }
        assert_eq!(cfg(&[("QUEUE_ATTRS", "bad name=x")]).unwrap_err().code, EXIT_ENVELOPE);
    }
}
