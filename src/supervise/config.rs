//! smtpd-supervise's command line, once, into a typed [`Config`]; and the files
//! it names (rules, environment), read now and again on SIGHUP.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use nix::unistd::{Gid, Uid};

use crate::envfile;
use crate::passwd;
use crate::tcprules::{self, Rules};

pub const USAGE: &str = "usage: smtpd-supervise [-1DFHPQRWXadqsv] [-c limit] [-C perip] [-x rules] [-e envfile] \
[-u user] [-g group] [-U] [-w workers] [-m maxuse] [-T seconds] [-k seconds] [-S seconds] [-b backlog] \
[-B banner] [-l localname] [-t seconds] [-M metricsfile] [-L scoreboard] host port prog [arg ...]";

/// Everything the command line says.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// `prog` and its arguments, passed on untouched.
    pub prog: Vec<OsString>,
    /// -c: most sessions at once.
    pub limit: usize,
    /// -C: most sessions at once from one address.
    pub per_ip: usize,
    /// -b: listen backlog.
    pub backlog: i32,
    /// -x: rules file; -X: a missing file means no rules.
    pub rules_file: Option<PathBuf>,
    pub rules_missing_ok: bool,
    /// -e: environment file.
    pub env_file: Option<PathBuf>,
    /// -u/-g/-U: who to become after binding.
    pub uid: Option<Uid>,
    pub gid: Option<Gid>,
    /// 0 (-q) fatal only, 1 (-Q) warnings, 2 (-v, default) every connection.
    pub verbosity: u8,
    /// -B: bytes written to each connection before the program sees it.
    pub banner: Option<Vec<u8>>,
    /// -l: TCPLOCALHOST.
    pub local_name: Option<String>,
    /// -D: TCP_NODELAY on each connection.
    pub nodelay: bool,
    /// -1: print the local port on stdout once bound.
    pub print_port: bool,
    /// -W: hand-off workers; -w how many wait idle; -m sessions per worker.
    pub handoff: bool,
    pub workers: usize,
    pub max_use: u64,
    /// -F: each worker is a template forking a fresh process per session
    /// (HANDOFF_FORK=1); -m then bounds the template's sessions (default 100).
    pub fork: bool,
    /// -T: session wall-clock limit (None: no limit).
    pub session_limit: Option<Duration>,
    /// -k: how long running sessions may go on after SIGTERM.
    pub drain: Duration,
    /// -s: syslog (facility mail) instead of stderr.
    pub syslog: bool,
    /// -S: status line interval.
    pub status_interval: Option<Duration>,
    /// -a: read PROXY protocol headers from addresses the rules mark `PROXY="1"`.
    pub proxy: bool,
    /// `prog` is tls-wrap: `Some(true)` when its own options give its
    /// program a uid (-u or -U), `Some(false)` when they do not.
    pub tls_wrap: Option<bool>,
    /// -M: the Prometheus textfile to keep current (see `super::stats`).
    pub metrics_file: Option<PathBuf>,
    /// -L: the scoreboard file to keep current (`crate::scoreboard`).
    pub scoreboard_file: Option<PathBuf>,
}

/// A usage error: message for `fatal`, exit 100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Default -c, as tcpserver.
pub const DEFAULT_LIMIT: usize = 40;
/// Default -C: half of -c's default, as Postfix's client connection count limit is half its process limit.
pub const DEFAULT_PER_IP: usize = 20;
/// Default -T, seconds.
pub const DEFAULT_SESSION_LIMIT: u64 = 3600;
/// Default -k, seconds.
pub const DEFAULT_DRAIN: u64 = 30;
/// Default -m with -F: sessions one template forks before it is replaced.
pub const DEFAULT_FORK_MAX_USE: u64 = 100;
/// Default -b.
pub const DEFAULT_BACKLOG: i32 = 128;

impl Config {
    /// Parse `args` (without argv[0]). `env_uid_gid` supplies `$UID`/`$GID` for -U.
    pub fn parse(args: &[OsString], env_uid_gid: (Option<String>, Option<String>)) -> Result<Config, UsageError> {
        let mut o = getopts::Options::new();
        o.parsing_style(getopts::ParsingStyle::StopAtFirstFree);
        for f in ["1", "D", "d", "F", "H", "R", "W", "X", "a", "q", "Q", "s", "v", "U", "h", "p", "P", "r"] {
            o.optflagmulti(f, "", "");
        }
        for f in ["c", "C", "x", "e", "u", "g", "w", "m", "T", "k", "S", "b", "B", "l", "t", "M", "L"] {
            o.optopt(f, "", "", "");
        }
        // getopts wants UTF-8; only the options need it, prog's arguments are
        // taken back from `args` untouched.
        let lossy: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let m = o.parse(&lossy).map_err(|e| UsageError(format!("{e}; {USAGE}")))?;
        let nfree = m.free.len();
        let first_free = args.len() - nfree;
        if args[..first_free].iter().any(|a| a.to_str().is_none()) {
            return Err(UsageError("option with a non-UTF-8 value".into()));
        }
        if nfree < 3 {
            return Err(UsageError(USAGE.into()));
        }
        // -t: tcpserver's ident timeout, which takes a number; accepted and
        // ignored (no ident lookups here), but a number all the same, so that
        // `-t` never swallows the host.
        if let Some(t) = m.opt_str("t") {
            if t.parse::<u32>().is_err() {
                return Err(UsageError(format!("-t wants a number of seconds (it is ignored): {t}")));
            }
        }
        for f in ["h", "p", "r"] {
            if m.opt_present(f) {
                return Err(UsageError(format!(
                    "-{f} is not supported: smtpd-supervise does no DNS or ident lookups (see -H, -R)"
                )));
            }
        }
        let host = m.free[0].clone();
        let port = args[first_free + 1]
            .to_str()
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| UsageError(format!("port must be a number: {}", m.free[1])))?;
        let prog: Vec<OsString> = args[first_free + 2..].to_vec();
        if prog[0].is_empty() {
            return Err(UsageError("empty program name".into()));
        }

        let num = |f: &str, def: u64, min: u64| -> Result<u64, UsageError> {
            match m.opt_str(f) {
                None => Ok(def),
                Some(s) => s
                    .parse::<u64>()
                    .ok()
                    .filter(|&n| n >= min && n <= u64::from(u32::MAX))
                    .ok_or_else(|| UsageError(format!("-{f} wants a number of at least {min}: {s}"))),
            }
        };
        let secs = |n: u64| if n == 0 { None } else { Some(Duration::from_secs(n)) };
        let handoff = m.opt_present("W");
        if !handoff && (m.opt_present("w") || m.opt_present("m") || m.opt_present("F")) {
            return Err(UsageError("-w, -m and -F need -W (hand-off workers)".into()));
        }
        let fork = m.opt_present("F");
        let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as u64;

        let (mut uid, mut gid) = (None, None);
        if m.opt_present("U") {
            let (u, g) = env_uid_gid;
            let u = u.ok_or_else(|| UsageError("-U: $UID is not set".into()))?;
            let g = g.ok_or_else(|| UsageError("-U: $GID is not set".into()))?;
            uid = Some(Uid::from_raw(u.parse().map_err(|_| UsageError(format!("-U: $UID is not a number: {u}")))?));
            gid = Some(Gid::from_raw(g.parse().map_err(|_| UsageError(format!("-U: $GID is not a number: {g}")))?));
        }
        if let Some(u) = m.opt_str("u") {
            let (uu, ug) = lookup_user(&u)?;
            uid = Some(uu);
            if gid.is_none() {
                gid = ug;
            }
        }
        if let Some(g) = m.opt_str("g") {
            gid = Some(lookup_group(&g)?);
        }
        if uid.is_some() && gid.is_none() {
            return Err(UsageError("a numeric -u needs -g".into()));
        }
        if gid.is_some() && uid.is_none() {
            return Err(UsageError("-g needs -u: the supervisor would keep its uid".into()));
        }

        let verbosity = if m.opt_present("q") {
            0
        } else if m.opt_present("Q") && !m.opt_present("v") {
            1
        } else {
            2
        };
        Ok(Config {
            host,
            port,
            limit: num("c", DEFAULT_LIMIT as u64, 1)? as usize,
            per_ip: num("C", DEFAULT_PER_IP as u64, 1)? as usize,
            backlog: num("b", DEFAULT_BACKLOG as u64, 1)?.min(65535) as i32,
            rules_file: m.opt_str("x").map(PathBuf::from),
            rules_missing_ok: m.opt_present("X"),
            env_file: m.opt_str("e").map(PathBuf::from),
            uid,
            gid,
            verbosity,
            banner: m.opt_str("B").map(String::into_bytes),
            local_name: m.opt_str("l").filter(|l| l != "0"),
            nodelay: m.opt_present("D"),
            print_port: m.opt_present("1"),
            handoff,
            workers: num("w", nproc, 1)? as usize,
            max_use: num("m", if fork { DEFAULT_FORK_MAX_USE } else { 1 }, 1)?,
            fork,
            session_limit: secs(num("T", DEFAULT_SESSION_LIMIT, 0)?),
            drain: Duration::from_secs(num("k", DEFAULT_DRAIN, 0)?),
            syslog: m.opt_present("s"),
            status_interval: secs(num("S", 0, 0)?),
            proxy: m.opt_present("a"),
            tls_wrap: tls_wrap_drops(&prog),
            metrics_file: m.opt_str("M").map(PathBuf::from),
            scoreboard_file: m.opt_str("L").map(PathBuf::from),
            prog,
        })
    }
}

/// Whether `prog` (argv) is tls-wrap, by its file name, and if so whether
/// its options give its program a uid of its own (`-u`, or `-U`): the TLS
/// privilege model of tls-wrap(8), where the supervisor stays root only to
/// start tls-wrap. Reads tls-wrap's options as its getopts does: flags
/// `iYyZzU`, `K k v u g` with a value (attached or the next argument),
/// up to `--` or the first argument that is not an option.
pub fn tls_wrap_drops(prog: &[OsString]) -> Option<bool> {
    let name = prog.first().map(std::path::Path::new)?.file_name()?;
    if name != "tls-wrap" {
        return None;
    }
    let mut args = prog.iter().skip(1).map(|a| a.as_encoded_bytes());
    while let Some(a) = args.next() {
        if a == b"--" || a.len() < 2 || a[0] != b'-' {
            break;
        }
        for (i, &c) in a.iter().enumerate().skip(1) {
            match c {
                b'u' | b'U' => return Some(true),
                b'K' | b'k' | b'v' | b'g' => {
                    if i + 1 == a.len() {
                        args.next(); // the value is the next argument
                    }
                    break;
                }
                _ => {}
            }
        }
    }
    Some(false)
}

/// A user by name or number: (uid, primary gid when known). Read from
/// /etc/passwd directly (`crate::passwd`: no NSS in a static binary).
fn lookup_user(u: &str) -> Result<(Uid, Option<Gid>), UsageError> {
    if let Ok(n) = u.parse::<u32>() {
        let gid = passwd::user_by_uid(n).ok().flatten().map(|p| Gid::from_raw(p.gid));
        return Ok((Uid::from_raw(n), gid));
    }
    match passwd::user_by_name(u) {
        Ok(Some(p)) => Ok((Uid::from_raw(p.id), Some(Gid::from_raw(p.gid)))),
        Ok(None) => Err(UsageError(format!("unknown user: {u}"))),
        Err(e) => Err(UsageError(format!("unable to look up user {u}: {e}"))),
    }
}

fn lookup_group(g: &str) -> Result<Gid, UsageError> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(Gid::from_raw(n));
    }
    match passwd::group_by_name(g) {
        Ok(Some(gr)) => Ok(Gid::from_raw(gr.id)),
        Ok(None) => Err(UsageError(format!("unknown group: {g}"))),
        Err(e) => Err(UsageError(format!("unable to look up group {g}: {e}"))),
    }
}

/// Read and parse the rules file; `Ok(None)` without -x (or missing with -X).
pub fn load_rules(cfg: &Config) -> Result<Option<Rules>, String> {
    let Some(path) = &cfg.rules_file else { return Ok(None) };
    let cdb = path.extension().is_some_and(|e| e == "cdb");
    let max = if cdb { tcprules::MAX_CDB } else { tcprules::MAX_FILE };
    let bytes = match read_bounded(path, max) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && cfg.rules_missing_ok => return Ok(None),
        Err(e) => return Err(format!("unable to read rules {}: {e}", path.display())),
    };
    let parsed = if cdb { tcprules::parse_cdb(&bytes) } else { tcprules::parse_rules(&bytes) };
    match parsed {
        Ok(r) => Ok(Some(r)),
        Err(e) if cdb && e.line > 0 => Err(format!("rules {}: record {}: {}", path.display(), e.line, e.what)),
        Err(e) => Err(format!("rules {}: {e}", path.display())),
    }
}

/// Read and parse the -e file; empty without -e.
pub fn load_env(cfg: &Config) -> Result<Vec<envfile::Pair>, String> {
    let Some(path) = &cfg.env_file else { return Ok(Vec::new()) };
    let text = read_bounded(path, envfile::MAX_FILE)
        .map_err(|e| format!("unable to read environment file {}: {e}", path.display()))?;
    envfile::parse_envfile(&text).map_err(|e| format!("environment file {}: {e}", path.display()))
}

fn read_bounded(path: &std::path::Path, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut v = Vec::new();
    f.take(max as u64 + 1).read_to_end(&mut v)?;
    if v.len() > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "file too large"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Config, UsageError> {
        let a: Vec<OsString> = args.iter().map(OsString::from).collect();
        Config::parse(&a, (Some("65534".into()), Some("65534".into())))
    }

    #[test]
    fn defaults_and_tail() {
        let c = p(&["0", "25", "smtpd-rs", "-x", "y"]).unwrap();
        assert_eq!(c.host, "0");
        assert_eq!(c.port, 25);
        assert_eq!(c.prog, vec![OsString::from("smtpd-rs"), "-x".into(), "y".into()]);
        assert_eq!(c.limit, 40);
        assert_eq!(c.per_ip, 20);
        assert!(!c.handoff);
        assert_eq!(c.max_use, 1);
        assert_eq!(c.session_limit, Some(Duration::from_secs(3600)));
        assert_eq!(c.verbosity, 2);
    }

    #[test]
    fn options() {
        let c = p(&["-W", "-w", "3", "-m", "100", "-c", "5", "-C", "2", "-U", "-T", "0", "-a", "-s", "::1", "2525", "p"])
            .unwrap();
        assert!(c.handoff && c.proxy && c.syslog);
        assert_eq!((c.workers, c.max_use, c.limit, c.per_ip), (3, 100, 5, 2));
        assert_eq!(c.uid, Some(Uid::from_raw(65534)));
        assert_eq!(c.session_limit, None);
        let c = p(&["-u", "nobody", "0", "1", "p"]).unwrap();
        assert!(c.uid.is_some() && c.gid.is_some());
        assert!(!c.fork);
        // -F: a template per worker, replaced after 100 sessions unless -m says.
        let c = p(&["-W", "-F", "0", "1", "p"]).unwrap();
        assert!(c.fork && c.max_use == DEFAULT_FORK_MAX_USE);
        let c = p(&["-W", "-F", "-m", "7", "0", "1", "p"]).unwrap();
        assert!(c.fork && c.max_use == 7);
        assert!(p(&["-F", "0", "1", "p"]).is_err(), "-F needs -W");
    }

    #[test]
    fn ignored_options_take_what_they_are_documented_to() {
        // -t takes its number (tcpserver's ident timeout), not the host.
        let c = p(&["-t", "26", "-d", "-H", "-P", "-R", "-Q", "127.0.0.1", "2525", "prog"]).unwrap();
        assert_eq!((c.host.as_str(), c.port, c.verbosity), ("127.0.0.1", 2525, 1));
        assert_eq!(c.prog, vec![OsString::from("prog")]);
        let c = p(&["-t26", "0", "25", "prog"]).unwrap();
        assert_eq!(c.host, "0");
        // The usage line names every option the parser takes.
        for f in ["1", "D", "d", "F", "H", "R", "W", "X", "a", "q", "Q", "s", "v", "P"] {
            let cluster = USAGE.split('[').nth(1).unwrap_or("");
            assert!(cluster.contains(f), "-{f} in {USAGE}");
        }
        for f in ["-c", "-C", "-x", "-e", "-u", "-g", "-U", "-w", "-m", "-T", "-k", "-S", "-b", "-B", "-l", "-t"] {
            assert!(USAGE.contains(&format!("[{f}")), "{f} in {USAGE}");
        }
    }

    #[test]
    fn usage_and_man_page_synopsis_agree() {
        let man = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/smtpd-supervise.8")).unwrap();
        let synopsis = man.split(".SH SYNOPSIS").nth(1).and_then(|s| s.split(".SH ").next()).unwrap();
        let mut from_man: Vec<char> = synopsis
            .lines()
            .filter_map(|l| l.strip_prefix(".B \\-"))
            .flat_map(|o| o.chars().filter(char::is_ascii_alphanumeric))
            .collect();
        let mut from_usage: Vec<char> = USAGE
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("[-"))
            .flat_map(|o| o.chars().filter(char::is_ascii_alphanumeric))
            .collect();
        from_man.sort_unstable();
        from_usage.sort_unstable();
        assert_eq!(from_man, from_usage, "SYNOPSIS of smtpd-supervise(8) and USAGE");
    }

    #[test]
    fn tls_wrap_and_its_uid() {
        let t = |a: &[&str]| tls_wrap_drops(&a.iter().map(OsString::from).collect::<Vec<_>>());
        assert_eq!(t(&["smtpd-rs"]), None);
        assert_eq!(t(&["/usr/local/bin/tls-wrapper", "-u", "1"]), None);
        assert_eq!(t(&["/usr/local/bin/tls-wrap", "-u", "smtpd", "-g", "smtpd", "smtpd-rs"]), Some(true));
        assert_eq!(t(&["tls-wrap", "-i", "-K", "30000", "-usmtpd", "smtpd-rs"]), Some(true));
        assert_eq!(t(&["tls-wrap", "-iU", "smtpd-rs"]), Some(true));
        assert_eq!(t(&["tls-wrap", "-i", "smtpd-rs", "-u", "x"]), Some(false), "smtpd-rs's -u is not tls-wrap's");
        assert_eq!(t(&["tls-wrap", "-K", "-u", "smtpd-rs"]), Some(false), "-u is -K's value here");
        assert_eq!(t(&["tls-wrap", "-v2", "--", "-u"]), Some(false));
        assert_eq!(t(&["tls-wrap"]), Some(false));
        let c = p(&["0", "25", "tls-wrap", "-u", "smtpd", "-g", "smtpd", "smtpd-rs"]).unwrap();
        assert_eq!(c.tls_wrap, Some(true));
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &["0", "25"][..],
            &["-Z", "0", "25", "p"],
            &["0", "port", "p"],
            &["0", "70000", "p"],
            &["-w", "2", "0", "25", "p"],
            &["-c", "0", "0", "25", "p"],
            &["-c", "x", "0", "25", "p"],
            &["-u", "no-such-user-here", "0", "25", "p"],
            &["-h", "0", "25", "p"],
            &["-g", "nogroup", "0", "25", "p"],
            &["-t", "127.0.0.1", "0", "p"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }
}
