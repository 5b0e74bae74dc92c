//! tls-wrap's command line and environment, read once into a typed Config.
//! Pure: argv and the environment come in as values, user and group names
//! are resolved through the caller's `Accounts`; nothing is opened here.
//!
//! Options follow s6-ucspitlsd / s6-tlsd where they overlap (-Y, -y, -Z, -z,
//! -K, -k, -v) and sslserver for the application's uid/gid (-u, -g, -U).
//! Privileges are given whole or not at all: a uid without a gid (or the
//! reverse) would leave the process with root's group or root's uid.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str =
    "tls-wrap [ -i ] [ -Y | -y ] [ -Z | -z ] [ -K ms ] [ -k snilevel ] [ -v verbosity ] [ -u user ] [ -g group ] [ -U ] prog...";

/// Default handshake timeout (-K), in milliseconds.
pub const DEFAULT_HANDSHAKE_MS: u64 = 60_000;

/// Whether (and how) the client is asked for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCert {
    None,
    Optional,
    Required,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// -i: handshake at once (implicit TLS, port 465) instead of UCSPI-TLS.
    pub implicit: bool,
    pub client_cert: ClientCert,
    /// -Z: leave CERTFILE, KEYFILE, ... in prog's environment.
    pub keep_env: bool,
    /// -K: handshake timeout; None = no limit (-K 0).
    pub handshake_timeout: Option<Duration>,
    /// -k: 0 ignores CERTFILE:x/KEYFILE:x, 1 (default) uses them beside
    /// CERTFILE/KEYFILE, 2 uses only them.
    pub sni_level: u8,
    pub verbosity: u8,
    /// -u/-g/-U: run prog under this uid/gid.
    pub app_uid: Option<u32>,
    pub app_gid: Option<u32>,
    pub prog: Vec<OsString>,
}

/// The TLS material and tls-wrap's own uid/gid, from the environment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsEnv {
    /// CERTFILE, KEYFILE.
    pub default: Option<(PathBuf, PathBuf)>,
    /// (name, CERTFILE:name, KEYFILE:name), name in lower case.
    pub sni: Vec<(String, PathBuf, PathBuf)>,
    pub cafile: Option<PathBuf>,
    pub cadir: Option<PathBuf>,
    /// TLS_UID / TLS_GID: what tls-wrap itself drops to (when root) once
    /// the keys are loaded, as s6-tlsd-io does.
    pub tls_uid: Option<u32>,
    pub tls_gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    Usage(String),
    Env(String),
}

/// Users and groups by name or number (passwd(5), group(5)); the caller's
/// reads the system's files, tests give their own.
pub trait Accounts {
    /// A user by name: (uid, primary gid).
    fn user(&self, name: &str) -> Result<Option<(u32, u32)>, String>;
    /// The primary gid of a uid that has a passwd entry.
    fn primary_gid(&self, uid: u32) -> Result<Option<u32>, String>;
    /// A group by name: its gid.
    fn group(&self, name: &str) -> Result<Option<u32>, String>;
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Usage(m) => write!(f, "{m}; usage: {USAGE}"),
            ConfigError::Env(m) => f.write_str(m),
        }
    }
}

/// Parse argv (without argv[0]). `env` looks a variable up (for -U);
/// `accounts` resolves the names -u and -g may give.
/// Options must be UTF-8; `prog...` is passed on as it came.
pub fn parse_args(args: &[OsString], env: &dyn Fn(&str) -> Option<OsString>, accounts: &dyn Accounts) -> Result<Options, ConfigError> {
    let usage = |m: String| ConfigError::Usage(m);
    let mut opts = getopts::Options::new();
    opts.parsing_style(getopts::ParsingStyle::StopAtFirstFree);
    opts.optflag("i", "", "implicit TLS");
    opts.optflagmulti("Y", "", "optional client certificate");
    opts.optflagmulti("y", "", "mandatory client certificate");
    opts.optflagmulti("Z", "", "keep TLS variables");
    opts.optflagmulti("z", "", "clean TLS variables");
    opts.optopt("K", "", "handshake timeout", "ms");
    opts.optopt("k", "", "SNI level", "n");
    opts.optopt("v", "", "verbosity", "n");
    opts.optopt("u", "", "uid", "uid");
    opts.optopt("g", "", "gid", "gid");
    opts.optflag("U", "", "uid and gid from $UID and $GID");
    // getopts wants UTF-8; only the option part needs to be, so give it a
    // lossy copy and take prog... from the original OsStrings.
    let lossy: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let m = opts.parse(&lossy).map_err(|e| usage(e.to_string()))?;
    let first_free = args.len() - m.free.len();
    let prog: Vec<OsString> = args[first_free..].to_vec();
    if prog.is_empty() {
        return Err(usage("no program given".into()));
    }
    // The last of -Y / -y / -Z / -z wins, as with s6's options; getopts
    // loses their order, so -y beats -Y and -z beats -Z when both are given.
    let client_cert = if m.opt_present("y") {
        ClientCert::Required
    } else if m.opt_present("Y") {
        ClientCert::Optional
    } else {
        ClientCert::None
    };
    let num = |o: &str, max: u64| -> Result<Option<u64>, ConfigError> {
        match m.opt_str(o) {
            None => Ok(None),
            Some(s) => parse_u64(&s).filter(|&n| n <= max).map(Some).ok_or_else(|| usage(format!("bad -{o} value: {s}"))),
        }
    };
    let handshake_ms = num("K", 86_400_000)?.unwrap_or(DEFAULT_HANDSHAKE_MS);
    // -u: a name, or a number; its passwd entry gives the group unless -g
    // does (as smtpd-supervise reads -u).
    let (mut app_uid, mut app_gid) = (None, None);
    if let Some(u) = m.opt_str("u") {
        let (uid, gid) = lookup_user(&u, accounts).map_err(usage)?;
        app_uid = Some(uid);
        app_gid = gid;
    }
    if let Some(g) = m.opt_str("g") {
        app_gid = Some(lookup_group(&g, accounts).map_err(usage)?);
    }
    if m.opt_present("U") {
        app_uid = env_id(env("UID"), "$UID")?.or(app_uid);
        app_gid = env_id(env("GID"), "$GID")?.or(app_gid);
    }
    match (app_uid, app_gid) {
        (Some(u), None) => return Err(usage(format!("-u {u} needs -g: the uid has no passwd entry to take its group from"))),
        (None, Some(_)) => return Err(usage("-g needs -u: prog would keep this process's uid".into())),
        _ => {}
    }
    Ok(Options {
        implicit: m.opt_present("i"),
        client_cert,
        keep_env: m.opt_present("Z") && !m.opt_present("z"),
        handshake_timeout: (handshake_ms > 0).then(|| Duration::from_millis(handshake_ms)),
        sni_level: num("k", 2)?.unwrap_or(1) as u8,
        verbosity: num("v", 9)?.unwrap_or(1) as u8,
        app_uid,
        app_gid,
        prog,
    })
}

/// Read CERTFILE/KEYFILE, CERTFILE:name/KEYFILE:name, CAFILE/CADIR,
/// TLS_UID/TLS_GID from the (name, value) pairs of the environment.
pub fn parse_env(vars: &[(OsString, OsString)], opts: &Options, accounts: &dyn Accounts) -> Result<TlsEnv, ConfigError> {
    let err = |m: String| ConfigError::Env(m);
    let get = |k: &str| vars.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    let mut e = TlsEnv::default();
    if opts.sni_level < 2 {
        match (get("CERTFILE"), get("KEYFILE")) {
            (Some(c), Some(k)) => e.default = Some((c.into(), k.into())),
            (None, None) => {}
            (Some(_), None) => return Err(err("CERTFILE is set but KEYFILE is not".into())),
            (None, Some(_)) => return Err(err("KEYFILE is set but CERTFILE is not".into())),
        }
    }
    if opts.sni_level >= 1 {
        for (name, val) in vars {
            let Some(host) = name.to_str().and_then(|n| n.strip_prefix("CERTFILE:")) else { continue };
            if val.is_empty() {
                continue;
            }
            let host = host.to_ascii_lowercase();
            if !valid_sni_name(&host) {
                return Err(err(format!("bad name in CERTFILE:{host}")));
            }
            let key = vars
                .iter()
                .rev()
                .find(|(n, _)| n.to_str().and_then(|n| n.strip_prefix("KEYFILE:")).is_some_and(|h| h.eq_ignore_ascii_case(&host)))
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| err(format!("CERTFILE:{host} is set but KEYFILE:{host} is not")))?;
            if !e.sni.iter().any(|(h, _, _)| *h == host) {
                e.sni.push((host, val.into(), key.into()));
            }
        }
    }
    if e.default.is_none() && e.sni.is_empty() {
        return Err(err("no certificate: set CERTFILE and KEYFILE (or CERTFILE:name and KEYFILE:name)".into()));
    }
    e.cafile = get("CAFILE").map(PathBuf::from);
    e.cadir = get("CADIR").map(PathBuf::from);
    if opts.client_cert != ClientCert::None && e.cafile.is_none() && e.cadir.is_none() {
        return Err(err("-Y or -y given but neither CAFILE nor CADIR is set".into()));
    }
    // Numbers as s6-networking reads them, or names (resolved now).
    let name = |v: Option<OsString>, k: &str| v.map(|v| v.to_str().map(str::to_owned).ok_or_else(|| err(format!("bad {k}: not UTF-8"))));
    e.tls_uid = match name(get("TLS_UID"), "TLS_UID").transpose()? {
        None => None,
        Some(u) => Some(lookup_user(&u, accounts).map_err(|m| err(format!("TLS_UID: {m}")))?.0),
    };
    e.tls_gid = match name(get("TLS_GID"), "TLS_GID").transpose()? {
        None => None,
        Some(g) => Some(lookup_group(&g, accounts).map_err(|m| err(format!("TLS_GID: {m}")))?),
    };
    match (e.tls_uid, e.tls_gid) {
        (Some(_), None) => return Err(err("TLS_UID is set but TLS_GID is not: tls-wrap would keep root's group".into())),
        (None, Some(_)) => return Err(err("TLS_GID is set but TLS_UID is not: tls-wrap would stay root".into())),
        _ => {}
    }
    Ok(e)
}

/// The variables that carry TLS material; removed from prog's environment
/// unless -Z (the list s6-networking cleans).
pub fn is_tls_var(name: &OsStr) -> bool {
    let Some(n) = name.to_str() else { return false };
    matches!(n, "CADIR" | "CAFILE" | "CERTFILE" | "KEYFILE" | "TLS_UID" | "TLS_GID")
        || n.starts_with("CERTFILE:")
        || n.starts_with("KEYFILE:")
}

/// A host name, or `*.` followed by one (wildcard for one label).
fn valid_sni_name(h: &str) -> bool {
    let h = h.strip_prefix("*.").unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// A uid or gid from the variable `name` (unset: None; not a number that
/// fits 32 bits: an error naming it).
fn env_id(v: Option<std::ffi::OsString>, name: &str) -> Result<Option<u32>, ConfigError> {
    match v {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .and_then(parse_u64)
            .filter(|&n| n <= u32::MAX as u64)
            .map(|n| Some(n as u32))
            .ok_or_else(|| ConfigError::Env(format!("bad {name}: {}", v.to_string_lossy()))),
    }
}

/// A user by name or number: its uid, and its primary gid when its
/// passwd entry is known.
fn lookup_user(u: &str, accounts: &dyn Accounts) -> Result<(u32, Option<u32>), String> {
    if let Some(n) = parse_u64(u) {
        let n = u32::try_from(n).map_err(|_| format!("bad user: {u}"))?;
        return Ok((n, accounts.primary_gid(n)?));
    }
    match accounts.user(u)? {
        Some((uid, gid)) => Ok((uid, Some(gid))),
        None => Err(format!("unknown user: {u}")),
    }
}

/// A group by name or number.
fn lookup_group(g: &str, accounts: &dyn Accounts) -> Result<u32, String> {
    if let Some(n) = parse_u64(g) {
        return u32::try_from(n).map_err(|_| format!("bad group: {g}"));
    }
    accounts.group(g)?.ok_or_else(|| format!("unknown group: {g}"))
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }
    fn noenv(_: &str) -> Option<OsString> {
        None
    }

    /// smtpd 999/999 (group smtpd 999), tlswrap 998/998, nobody 65534;
    /// uid 1001 has no entry.
    struct Fake;
    impl Accounts for Fake {
        fn user(&self, name: &str) -> Result<Option<(u32, u32)>, String> {
            Ok(match name {
                "smtpd" => Some((999, 999)),
                "tlswrap" => Some((998, 998)),
                "nobody" => Some((65534, 65534)),
                "broken" => return Err("unable to read /etc/passwd".into()),
                _ => None,
            })
        }
        fn primary_gid(&self, uid: u32) -> Result<Option<u32>, String> {
            Ok([(999, 999), (998, 998), (65534, 65534)].iter().find(|(u, _)| *u == uid).map(|(_, g)| *g))
        }
        fn group(&self, name: &str) -> Result<Option<u32>, String> {
            Ok(match name {
                "smtpd" => Some(999),
                "mail" => Some(8),
                _ => None,
            })
        }
    }

    fn parse(a: &[&str]) -> Result<Options, ConfigError> {
        parse_args(&args(a), &noenv, &Fake)
    }
    fn vars(v: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        v.iter().map(|(a, b)| (OsString::from(a), OsString::from(b))).collect()
    }

    #[test]
    fn defaults_and_prog_keeps_its_flags() {
        let o = parse(&["smtpd-rs", "-x", "/bin/checkpassword"]).unwrap();
        assert!(!o.implicit);
        assert_eq!(o.client_cert, ClientCert::None);
        assert_eq!(o.handshake_timeout, Some(Duration::from_secs(60)));
        assert_eq!(o.sni_level, 1);
        assert_eq!(o.prog, args(&["smtpd-rs", "-x", "/bin/checkpassword"]));
    }

    #[test]
    fn options() {
        let o = parse(&["-i", "-Y", "-K", "0", "-k2", "-u", "10", "-g", "20", "--", "-p", "a"]).unwrap();
        assert!(o.implicit);
        assert_eq!(o.client_cert, ClientCert::Optional);
        assert_eq!(o.handshake_timeout, None);
        assert_eq!(o.sni_level, 2);
        assert_eq!((o.app_uid, o.app_gid), (Some(10), Some(20)));
        assert_eq!(o.prog, args(&["-p", "a"]));
        let o = parse(&["-Y", "-y", "p"]).unwrap();
        assert_eq!(o.client_cert, ClientCert::Required);
    }

    #[test]
    fn dash_u_reads_uid_gid() {
        let env = |k: &str| match k {
            "UID" => Some(OsString::from("1001")),
            "GID" => Some(OsString::from("1002")),
            _ => None,
        };
        let o = parse_args(&args(&["-U", "p"]), &env, &Fake).unwrap();
        assert_eq!((o.app_uid, o.app_gid), (Some(1001), Some(1002)));
        let bad = |k: &str| (k == "UID").then(|| OsString::from("x"));
        assert!(matches!(parse_args(&args(&["-U", "p"]), &bad, &Fake), Err(ConfigError::Env(_))));
    }

    #[test]
    fn bad_usage() {
        for a in [&[][..], &["-i"][..], &["-K", "x", "p"][..], &["-k", "3", "p"][..], &["-q", "p"][..], &["-u", "-1", "p"][..]] {
            assert!(matches!(parse(a), Err(ConfigError::Usage(_))), "{a:?}");
        }
    }

    #[test]
    fn non_utf8_prog_args_pass_through() {
        use std::os::unix::ffi::OsStringExt;
        let raw = OsString::from_vec(vec![0xff, 0xfe]);
        let o = parse_args(&[OsString::from("-i"), OsString::from("p"), raw.clone()], &noenv, &Fake).unwrap();
        assert_eq!(o.prog[1], raw);
    }

    #[test]
    fn env_certificates() {
        let o = parse(&["p"]).unwrap();
        let e = parse_env(
            &vars(&[("CERTFILE", "/c"), ("KEYFILE", "/k"), ("CERTFILE:Mail.Example.org", "/c2"), ("KEYFILE:mail.example.org", "/k2"), ("TLS_UID", "5"), ("TLS_GID", "6")]),
            &o,
            &Fake,
        )
        .unwrap();
        assert_eq!(e.default, Some(("/c".into(), "/k".into())));
        assert_eq!(e.sni, vec![("mail.example.org".into(), "/c2".into(), "/k2".into())]);
        assert_eq!((e.tls_uid, e.tls_gid), (Some(5), Some(6)));
        let certs = [("CERTFILE", "/c"), ("KEYFILE", "/k")];
        let ids = |v: &[(&str, &str)]| {
            let mut all = certs.to_vec();
            all.extend_from_slice(v);
            parse_env(&vars(&all), &o, &Fake).map(|e| (e.tls_uid, e.tls_gid))
        };
        assert_eq!(ids(&[("TLS_UID", "tlswrap"), ("TLS_GID", "mail")]), Ok((Some(998), Some(8))));
        assert_eq!(ids(&[]), Ok((None, None)));
        for half in [&[("TLS_UID", "998")][..], &[("TLS_GID", "998")], &[("TLS_UID", "tlswrap")]] {
            assert!(matches!(ids(half), Err(ConfigError::Env(_))), "{half:?}");
        }
        assert!(ids(&[("TLS_UID", "nosuchuser"), ("TLS_GID", "1")]).is_err());
        assert!(ids(&[("TLS_UID", "1"), ("TLS_GID", "nosuchgroup")]).is_err());
    }

    #[test]
    fn user_and_group_names_and_halves() {
        let ids = |a: &[&str]| parse(a).map(|o| (o.app_uid, o.app_gid));
        assert_eq!(ids(&["-u", "smtpd", "p"]), Ok((Some(999), Some(999))));
        assert_eq!(ids(&["-u", "smtpd", "-g", "mail", "p"]), Ok((Some(999), Some(8))));
        assert_eq!(ids(&["-u", "999", "p"]), Ok((Some(999), Some(999))), "a number with a passwd entry");
        assert_eq!(ids(&["-u", "1001", "-g", "1001", "p"]), Ok((Some(1001), Some(1001))));
        assert_eq!(ids(&["p"]), Ok((None, None)));
        // A uid without a group, a group without a uid: refused.
        for bad in [&["-u", "1001", "p"][..], &["-g", "999", "p"], &["-g", "mail", "p"]] {
            assert!(matches!(parse(bad), Err(ConfigError::Usage(_))), "{bad:?}");
        }
        for bad in [&["-u", "nosuchuser", "p"][..], &["-u", "smtpd", "-g", "nosuchgroup", "p"], &["-u", "broken", "p"]] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        // -U with only $UID is half too.
        let only_uid = |k: &str| (k == "UID").then(|| OsString::from("1001"));
        assert!(matches!(parse_args(&args(&["-U", "p"]), &only_uid, &Fake), Err(ConfigError::Usage(_))));
    }

    #[test]
    fn env_errors() {
        let o = parse(&["p"]).unwrap();
        for v in [
            &[][..],
            &[("CERTFILE", "/c")][..],
            &[("KEYFILE", "/k")][..],
            &[("CERTFILE", "/c"), ("KEYFILE", "/k"), ("CERTFILE:a.b", "/x")][..],
            &[("CERTFILE", "/c"), ("KEYFILE", "/k"), ("CERTFILE:a b", "/x"), ("KEYFILE:a b", "/y")][..],
            &[("CERTFILE", "/c"), ("KEYFILE", "/k"), ("TLS_UID", "no such user"), ("TLS_GID", "0")][..],
        ] {
            assert!(parse_env(&vars(v), &o, &Fake).is_err(), "{v:?}");
        }
        let y = parse(&["-y", "p"]).unwrap();
        assert!(parse_env(&vars(&[("CERTFILE", "/c"), ("KEYFILE", "/k")]), &y, &Fake).is_err());
        assert!(parse_env(&vars(&[("CERTFILE", "/c"), ("KEYFILE", "/k"), ("CAFILE", "/ca")]), &y, &Fake).is_ok());
    }

    #[test]
    fn sni_levels() {
        let v = vars(&[("CERTFILE", "/c"), ("KEYFILE", "/k"), ("CERTFILE:*.a.b", "/c2"), ("KEYFILE:*.a.b", "/k2")]);
        let k0 = parse(&["-k", "0", "p"]).unwrap();
        assert!(parse_env(&v, &k0, &Fake).unwrap().sni.is_empty());
        let k2 = parse(&["-k", "2", "p"]).unwrap();
        let e = parse_env(&v, &k2, &Fake).unwrap();
        assert_eq!(e.default, None);
        assert_eq!(e.sni.len(), 1);
    }

    #[test]
    fn tls_vars() {
        for n in ["CERTFILE", "KEYFILE:x", "CERTFILE:a.b", "CAFILE", "CADIR", "TLS_UID", "TLS_GID"] {
            assert!(is_tls_var(OsStr::new(n)), "{n}");
        }
        for n in ["CERTFILES", "PATH", "SSLCTLFD", "UID"] {
            assert!(!is_tls_var(OsStr::new(n)), "{n}");
        }
    }
}
