//! The scoreboard file (smtpd-supervise -L, read by
//! smtpd-supervise-status): what every worker and session of one supervisor
//! is doing, as tab-separated text that `grep -v '^#'`, `cut` and awk read
//! as they are. Both sides of the format (pure): `encode` for the
//! supervisor, `parse` for readers, bounded whatever the file holds. No I/O
//! here (the supervisor writes it with `crate::textfile`).
//!
//! ```text
//! # smtpd-supervise scoreboard 1
//! # pid=812 time=1795625511.125 started=1795620000.000 listen=0.0.0.0:25 mode=handoff sessions=1 limit=40 served=1234 restarts=0
//! pid  state  since  served  remote  port
//! 901  session  1795625500.021  4  192.0.2.7  51384
//! 902  idle  1795625400.500  0  -  -
//! -  waiting  1795625511.100  0  198.51.100.2  40001
//! ```
//!
//! (the columns are separated by one tab each, shown here as spaces).
//! `since` (unix seconds) is when the row entered its state; `served`
//! counts the sessions the worker has finished; `remote` and `port` are the
//! client's (after a PROXY header, the real client's), `-` when idle.

use std::fmt;
use std::fmt::Write;
use std::net::IpAddr;

/// The first line.
pub const MAGIC: &str = "# smtpd-supervise scoreboard 1";
/// The column names.
pub const COLUMNS: &str = "pid\tstate\tsince\tserved\tremote\tport";
/// Largest file a reader accepts.
pub const MAX_FILE: usize = 4 << 20;
/// Most rows a reader accepts.
pub const MAX_ROWS: usize = 100_000;

/// What a row is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A hand-off worker waiting for a connection.
    Idle,
    /// Serving a session.
    Session,
    /// Serving a session that is in TLS (tls-wrap said so on `SMTPD_STATS_FD`).
    Tls,
    /// A worker told to exit (SIGHUP, -m reached, surplus, drain) that has not exited yet.
    Retiring,
    /// An accepted connection waiting for an idle worker (no pid yet).
    Waiting,
    /// A trusted proxy's connection whose PROXY header has not arrived (no pid).
    Proxy,
}

impl State {
    pub const ALL: [State; 6] = [State::Idle, State::Session, State::Tls, State::Retiring, State::Waiting, State::Proxy];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Session => "session",
            State::Tls => "tls",
            State::Retiring => "retiring",
            State::Waiting => "waiting",
            State::Proxy => "proxy",
        }
    }

    fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// The supervisor's own line.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub pid: u32,
    /// When the file was written, unix seconds.
    pub time: f64,
    /// When the supervisor started.
    pub started: f64,
    /// The listening addresses, comma-separated.
    pub listen: String,
    /// `classic`, `handoff` or `handoff-fork`.
    pub mode: String,
    pub sessions: u64,
    pub limit: u64,
    pub served: u64,
    pub restarts: u64,
}

/// One worker, session or waiting connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub pid: Option<u32>,
    pub state: State,
    pub since: f64,
    pub served: u64,
    pub remote: Option<IpAddr>,
    pub port: Option<u16>,
}

/// Why a file is not a scoreboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    TooLarge,
    NotScoreboard,
    BadHeader(&'static str),
    BadRow(usize),
    TooManyRows,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooLarge => write!(f, "larger than {MAX_FILE} octets"),
            ParseError::NotScoreboard => write!(f, "not a scoreboard (no \"{MAGIC}\" line)"),
            ParseError::BadHeader(w) => write!(f, "bad supervisor line: {w}"),
            ParseError::BadRow(n) => write!(f, "line {n}: bad row"),
            ParseError::TooManyRows => write!(f, "more than {MAX_ROWS} rows"),
        }
    }
}

/// The file's text.
pub fn encode(h: &Header, rows: &[Row]) -> String {
    let mut s = String::with_capacity(200 + rows.len() * 48);
    // Writing into a String cannot fail.
    let _ = writeln!(s, "{MAGIC}");
    let _ = writeln!(
        s,
        "# pid={} time={:.3} started={:.3} listen={} mode={} sessions={} limit={} served={} restarts={}",
        h.pid,
        h.time,
        h.started,
        clean(&h.listen),
        clean(&h.mode),
        h.sessions,
        h.limit,
        h.served,
        h.restarts
    );
    let _ = writeln!(s, "{COLUMNS}");
    for r in rows {
        let dash = |o: Option<String>| o.unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "{}\t{}\t{:.3}\t{}\t{}\t{}",
            dash(r.pid.map(|p| p.to_string())),
            r.state.as_str(),
            r.since,
            r.served,
            dash(r.remote.map(|a| a.to_string())),
            dash(r.port.map(|p| p.to_string()))
        );
    }
    s
}

/// Words without spaces, tabs or line ends (the header is split on spaces).
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_whitespace() || c.is_control() { '_' } else { c }).collect()
}

/// Read a scoreboard's text.
pub fn parse(text: &str) -> Result<(Header, Vec<Row>), ParseError> {
    if text.len() > MAX_FILE {
        return Err(ParseError::TooLarge);
    }
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err(ParseError::NotScoreboard);
    }
    let h = parse_header(lines.next().ok_or(ParseError::BadHeader("missing"))?)?;
    if lines.next() != Some(COLUMNS) {
        return Err(ParseError::BadHeader("no column names"));
    }
    let mut rows = Vec::new();
    for (i, l) in lines.enumerate() {
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if rows.len() >= MAX_ROWS {
            return Err(ParseError::TooManyRows);
        }
        rows.push(parse_row(l).ok_or(ParseError::BadRow(i + 4))?);
    }
    Ok((h, rows))
}

fn parse_header(l: &str) -> Result<Header, ParseError> {
    let l = l.strip_prefix("# ").ok_or(ParseError::BadHeader("not a comment"))?;
    let mut h = Header {
        pid: 0,
        time: 0.0,
        started: 0.0,
        listen: String::new(),
        mode: String::new(),
        sessions: 0,
        limit: 0,
        served: 0,
        restarts: 0,
    };
    let mut seen_pid = false;
    for w in l.split(' ') {
        let (k, v) = w.split_once('=').ok_or(ParseError::BadHeader("a word is not key=value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|_| ParseError::BadHeader("a count is not a number"));
        let secs = |v: &str| v.parse::<f64>().ok().filter(|t| t.is_finite() && *t >= 0.0).ok_or(ParseError::BadHeader("bad time"));
        match k {
            "pid" => {
                h.pid = v.parse().map_err(|_| ParseError::BadHeader("bad pid"))?;
                seen_pid = true;
            }
            "time" => h.time = secs(v)?,
            "started" => h.started = secs(v)?,
            "listen" => h.listen = v.into(),
            "mode" => h.mode = v.into(),
            "sessions" => h.sessions = num(v)?,
            "limit" => h.limit = num(v)?,
            "served" => h.served = num(v)?,
            "restarts" => h.restarts = num(v)?,
            _ => {} // a later version's word
        }
    }
    if !seen_pid {
        return Err(ParseError::BadHeader("no pid"));
    }
    Ok(h)
}

fn opt(s: &str) -> Option<&str> {
    (s != "-").then_some(s)
}

fn parse_row(l: &str) -> Option<Row> {
    let f: Vec<&str> = l.split('\t').collect();
    let [pid, state, since, served, remote, port] = f.get(..6)? else { return None };
    Some(Row {
        pid: match opt(pid) {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        },
        state: State::parse(state)?,
        since: since.parse().ok().filter(|t: &f64| t.is_finite() && *t >= 0.0)?,
        served: served.parse().ok()?,
        remote: match opt(remote) {
            Some(a) => Some(a.parse().ok()?),
            None => None,
        },
        port: match opt(port) {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Header, Vec<Row>) {
        let h = Header {
            pid: 812,
            time: 1795625511.125,
            started: 1795620000.0,
            listen: "0.0.0.0:25".into(),
            mode: "handoff".into(),
            sessions: 2,
            limit: 40,
            served: 1234,
            restarts: 1,
        };
        let rows = vec![
            Row { pid: Some(901), state: State::Session, since: 1795625500.021, served: 4, remote: Some("192.0.2.7".parse().unwrap()), port: Some(51384) },
            Row { pid: Some(902), state: State::Idle, since: 1795625400.5, served: 0, remote: None, port: None },
            Row { pid: None, state: State::Waiting, since: 1795625511.1, served: 0, remote: Some("2001:db8::1".parse().unwrap()), port: Some(4) },
        ];
        (h, rows)
    }

    #[test]
    fn round_trip() {
        let (h, rows) = sample();
        let t = encode(&h, &rows);
        assert!(t.starts_with("# smtpd-supervise scoreboard 1\n# pid=812 time=1795625511.125 started=1795620000.000 listen=0.0.0.0:25 mode=handoff"));
        assert!(t.contains("\n901\tsession\t1795625500.021\t4\t192.0.2.7\t51384\n"));
        assert!(t.contains("\n902\tidle\t1795625400.500\t0\t-\t-\n"));
        assert_eq!(parse(&t), Ok((h, rows)));
    }

    #[test]
    fn bad_files() {
        let (h, rows) = sample();
        let t = encode(&h, &rows);
        assert_eq!(parse(""), Err(ParseError::NotScoreboard));
        assert_eq!(parse("hello\n"), Err(ParseError::NotScoreboard));
        assert_eq!(parse(&t.replace("pid=812", "pid=x")), Err(ParseError::BadHeader("bad pid")));
        assert_eq!(parse(&t.replace("\tsession\t", "\tdancing\t")), Err(ParseError::BadRow(4)));
        assert_eq!(parse(&t.replace("51384", "70000")), Err(ParseError::BadRow(4)));
        assert_eq!(parse(&t.replace("192.0.2.7", "192.0.2.777")), Err(ParseError::BadRow(4)));
        assert_eq!(parse(&t.replace("1795625500.021", "NaN")), Err(ParseError::BadRow(4)));
        assert!(matches!(parse(&"x".repeat(MAX_FILE + 1)), Err(ParseError::TooLarge)));
        // Header words of a later version, and odd text in names, are harmless.
        let later = t.replace("restarts=1", "restarts=1 colour=blue");
        assert!(parse(&later).is_ok());
        let h2 = Header { listen: "a b\tc\nd".into(), ..h };
        assert_eq!(parse(&encode(&h2, &[])).unwrap().0.listen, "a_b_c_d");
    }
}
