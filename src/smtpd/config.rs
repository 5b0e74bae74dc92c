//! smtpd-rs's settings: environment variables (and the small list files they
//! name) read once at startup into a typed `Config`. A bad value is an error
//! here, never a surprise in the middle of a session.

pub use crate::queue::client::QueueProgram;
use crate::smtpd::auth::{parse_smtpauth, AuthPolicy};
use crate::io::ucspitls::{parse_ucspitls, TlsInfo, TlsPolicy};
use crate::smtpd::policy::{parse_list, parse_networks, Policy};
use crate::smtp::command::check_mailbox;
use crate::host::{find_program, system_hostname};
use crate::smtp::data::DEFAULT_MAXHOPS;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default MAXRCPT (recipients per message).
pub const DEFAULT_MAXRCPT: usize = 100;
/// Default SMTPD_TIMEOUT in seconds.
pub const DEFAULT_TIMEOUT: u64 = 300;
/// Protocol errors (500-505, 555 replies) before the session is ended with 421.
pub const MAX_ERRORS: u32 = 20;

#[derive(Debug, Clone)]
pub struct Config {
    /// SMTPD_HOSTNAME, default the system's host name.
    pub hostname: String,
    /// DATABYTES: largest message in octets, 0 for no limit.
    pub databytes: u64,
    /// MAXRCPT: most recipients per message, 0 for no limit.
    pub maxrcpt: usize,
    /// MAXHOPS: most Received/Delivered-To fields in a message's header, 0 for no limit.
    pub maxhops: u32,
    /// SMTPD_TIMEOUT: longest wait for the client (read or write).
    pub timeout: Duration,
    /// SMTPD_PREGREET: how long to watch for a client that talks first.
    pub pregreet: Duration,
    /// HELO_CHECK set: the HELO/EHLO name must resolve.
    pub helo_check: bool,
    /// RCPTCHECK_TIMEOUT: how long the RCPTCHECK program may take.
    pub rcptcheck_timeout: Duration,
    /// SMTPD_RECEIVED_AUTH set: name the AUTH user in the Received header.
    pub received_auth: bool,
    /// XCLIENT set: this peer may use XCLIENT.
    pub xclient: bool,
    /// XFORWARD set: this peer may use XFORWARD.
    pub xforward: bool,
    pub policy: Policy,
    pub queue: QueueProgram,
    /// UCSPITLS (s/qmail's values), see io/ucspitls.rs.
    pub tls_policy: TlsPolicy,
    /// UCSPITLS is not set at all (as opposed to `-`): worth a log line
    /// when a UCSPI-TLS server is in front.
    pub ucspitls_unset: bool,
    /// TLS already active from the start (SSL_PROTOCOL set: implicit TLS).
    pub tls_initial: Option<TlsInfo>,
    /// SMTPAUTH (the fehcom AUTH patch's values); None: no AUTH.
    pub auth: Option<AuthPolicy>,
    /// SMTPAUTH_PLAINTEXT set: AUTH also without TLS (a trusted network).
    pub auth_plaintext: bool,
    /// The checkpassword program and its arguments (smtpd-rs's arguments).
    pub checkpassword: Vec<OsString>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Read the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        // Our own path is looked up (readlink of /proc/self/exe) only when
        // queue-inject is not on PATH: this runs for every session.
        let mut cfg = Config::from_vars_exe(&|k| std::env::var_os(k), &|| std::env::current_exe().ok())?;
        cfg.checkpassword = std::env::args_os().skip(1).collect();
        if cfg.checkpassword.is_empty() {
            // As the AUTH patch: no checkpassword program, no AUTH.
            cfg.auth = None;
        }
        Ok(cfg)
    }

    /// Build from a variable lookup (for tests) and the path of our binary
    /// (to find `queue-inject` beside it).
    pub fn from_vars(get: &dyn Fn(&str) -> Option<OsString>, exe: Option<&Path>) -> Result<Config, ConfigError> {
        Config::from_vars_exe(get, &|| exe.map(Path::to_path_buf))
    }

    /// `from_vars`, with our binary's path asked for only when needed.
    fn from_vars_exe(get: &dyn Fn(&str) -> Option<OsString>, exe: &dyn Fn() -> Option<PathBuf>) -> Result<Config, ConfigError> {
        let text = |k: &str| -> Result<Option<String>, ConfigError> {
            get(k).map(|v| v.into_string().map_err(|_| ConfigError(format!("{k} is not UTF-8")))).transpose()
        };
        let number = |k: &str, default: u64| -> Result<u64, ConfigError> {
            match text(k)? {
                None => Ok(default),
                Some(v) if v.trim().is_empty() => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| ConfigError(format!("{k}={v}: not a number"))),
            }
        };
        let hostname = match text("SMTPD_HOSTNAME")? {
            Some(h) if !h.is_empty() => h,
            _ => system_hostname(),
        };
        if hostname.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(ConfigError(format!("SMTPD_HOSTNAME={hostname}: not a host name")));
        }
        let timeout = number("SMTPD_TIMEOUT", DEFAULT_TIMEOUT)?;
        if timeout == 0 {
            return Err(ConfigError("SMTPD_TIMEOUT=0: must be at least 1 second".into()));
        }
        let list = |k: &str| -> Result<Option<_>, ConfigError> {
            match get(k) {
                None => Ok(None),
                Some(p) => std::fs::read(&p)
                    .map(|t| Some(parse_list(&t)))
                    .map_err(|e| ConfigError(format!("{k}: unable to read {}: {e}", Path::new(&p).display()))),
            }
        };
        let relaynets = match get("RELAYCLIENTS").filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => {
                let shown = Path::new(&p).display().to_string();
                let t = std::fs::read(&p).map_err(|e| ConfigError(format!("RELAYCLIENTS: unable to read {shown}: {e}")))?;
                Some(parse_networks(&t).map_err(|e| ConfigError(format!("RELAYCLIENTS: {shown}: {e}")))?)
            }
        };
        // RFC 5321 4.5.1: mail to a bare `postmaster` must reach someone. A
        // host name that makes no address (a container's `my_box`) leaves it
        // bare, as before; a bad POSTMASTER is an error.
        let postmaster = match text("POSTMASTER")?.filter(|p| !p.is_empty()) {
            Some(p) if check_mailbox(p.as_bytes(), false).is_ok() => Some(p),
            Some(p) => return Err(ConfigError(format!("POSTMASTER={p}: not an address (user@domain)"))),
            None => Some(format!("postmaster@{hostname}")).filter(|p| check_mailbox(p.as_bytes(), false).is_ok()),
        };
        let policy = Policy {
            rcpthosts: list("RCPTHOSTS")?,
            recipients: list("RECIPIENTS")?,
            rcptcheck: get("RCPTCHECK").filter(|p| !p.is_empty()).map(PathBuf::from),
            relayclient: get("RELAYCLIENT").map(|v| v.into_encoded_bytes()),
            relaynets,
            postmaster: postmaster.map(String::into_bytes),
        };
        let queue = match get("QMAILQUEUE").filter(|q| !q.is_empty()) {
            Some(q) => QueueProgram::PerMessage(PathBuf::from(q)),
            None => {
                // QUEUE_SESSION_PROGRAM: another session-mode program (run as
                // `path -s`, e.g. auth-check) in place of queue-inject.
                let qi = match get("QUEUE_SESSION_PROGRAM").filter(|p| !p.is_empty()) {
                    Some(p) => PathBuf::from(p),
                    None => find_program("queue-inject", get("PATH").as_deref(), exe),
                };
                if get("QUEUE_SESSION").is_some_and(|v| v == "0") {
                    QueueProgram::PerMessage(qi)
                } else {
                    QueueProgram::Session(qi)
                }
            }
        };
        Ok(Config {
            hostname,
            databytes: number("DATABYTES", 0)?,
            maxrcpt: usize::try_from(number("MAXRCPT", DEFAULT_MAXRCPT as u64)?).unwrap_or(usize::MAX),
            maxhops: u32::try_from(number("MAXHOPS", u64::from(DEFAULT_MAXHOPS))?).unwrap_or(u32::MAX),
            timeout: Duration::from_secs(timeout),
            pregreet: Duration::from_millis(number("SMTPD_PREGREET", 0)?),
            helo_check: get("HELO_CHECK").is_some(),
            rcptcheck_timeout: Duration::from_secs(number("RCPTCHECK_TIMEOUT", 60)?.max(1)),
            received_auth: get("SMTPD_RECEIVED_AUTH").is_some(),
            xclient: get("XCLIENT").is_some(),
            xforward: get("XFORWARD").is_some(),
            policy,
            queue,
            tls_policy: parse_ucspitls(text("UCSPITLS")?.as_deref()),
            ucspitls_unset: get("UCSPITLS").is_none(),
            tls_initial: TlsInfo::from_env(&|k| get(k).and_then(|v| v.into_string().ok())),
            auth: parse_smtpauth(text("SMTPAUTH")?.as_deref()),
            auth_plaintext: get("SMTPAUTH_PLAINTEXT").is_some(),
            checkpassword: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let v: Vec<(String, OsString)> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        Config::from_vars(&|k| v.iter().find(|(n, _)| n == k).map(|(_, x)| x.clone()), None)
    }

    #[test]
    fn defaults_and_errors() {
        let c = cfg(&[("SMTPD_HOSTNAME", "mx.test"), ("PATH", "/nonexistent")]).unwrap();
        assert_eq!((c.hostname.as_str(), c.databytes, c.maxrcpt, c.maxhops), ("mx.test", 0, 100, 100));
        assert_eq!(c.timeout, Duration::from_secs(300));
        assert!(!c.helo_check && !c.xclient && !c.xforward);
        assert!(c.policy.rcpthosts.is_none() && c.policy.relayclient.is_none());
        assert_eq!(c.queue, QueueProgram::Session(PathBuf::from("queue-inject")));
        let c = cfg(&[("QMAILQUEUE", "/var/qmail/bin/qmail-queue"), ("RELAYCLIENT", "")]).unwrap();
        assert_eq!(c.queue, QueueProgram::PerMessage(PathBuf::from("/var/qmail/bin/qmail-queue")));
        assert_eq!(c.policy.relayclient, Some(vec![]));
        let c = cfg(&[("QUEUE_SESSION", "0"), ("PATH", "/nonexistent")]).unwrap();
        assert_eq!(c.queue, QueueProgram::PerMessage(PathBuf::from("queue-inject")));
        let c = cfg(&[("QUEUE_SESSION_PROGRAM", "/usr/local/bin/auth-check")]).unwrap();
        assert_eq!(c.queue, QueueProgram::Session(PathBuf::from("/usr/local/bin/auth-check")));
        let c = cfg(&[("QUEUE_SESSION_PROGRAM", "/usr/local/bin/auth-check"), ("QMAILQUEUE", "/bin/qq")]).unwrap();
        assert_eq!(c.queue, QueueProgram::PerMessage(PathBuf::from("/bin/qq")), "QMAILQUEUE wins");
        assert!(cfg(&[("DATABYTES", "x")]).is_err());
        assert!(cfg(&[("MAXHOPS", "-1")]).is_err());
        let pm = |h: &str, v: &str| cfg(&[("SMTPD_HOSTNAME", h), ("POSTMASTER", v)]).map(|c| c.policy.postmaster);
        assert_eq!(pm("mx.test", "").unwrap().as_deref(), Some(&b"postmaster@mx.test"[..]));
        assert_eq!(pm("mx.test", "hostmaster@example.com").unwrap().as_deref(), Some(&b"hostmaster@example.com"[..]));
        assert!(pm("mx.test", "postmaster").is_err() && pm("mx.test", "a b@c").is_err());
        assert_eq!(pm("my_box", "").unwrap(), None, "no address from this host name: kept bare");
        assert_eq!(cfg(&[("MAXHOPS", "0")]).map(|c| c.maxhops).unwrap(), 0);
        assert!(cfg(&[("SMTPD_TIMEOUT", "0")]).is_err());
        assert!(cfg(&[("SMTPD_HOSTNAME", "a b")]).is_err());
        assert!(cfg(&[("RCPTHOSTS", "/nonexistent/rcpthosts")]).is_err());
        assert!(cfg(&[("RELAYCLIENTS", "/nonexistent/relayclients")]).is_err());
        assert_eq!(cfg(&[("DATABYTES", "1000"), ("MAXRCPT", "5")]).map(|c| (c.databytes, c.maxrcpt)).unwrap(), (1000, 5));
    }
}
