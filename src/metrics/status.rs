//! smtpd-supervise-status's output: a parsed scoreboard (`crate::scoreboard`)
//! as a table for people (like s6-svstat and Apache's server-status), as
//! tab-separated lines, or as JSON lines. Pure: the caller reads the file
//! and says what time it is and whether the supervisor's pid is alive.

use std::fmt::Write;

use crate::scoreboard::{Header, Row, State};

/// The output forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Table,
    Tab,
    Json,
}

/// A scoreboard older than this is flagged (the supervisor rewrites it at
/// least every 10 s).
pub const STALE_SECS: f64 = 30.0;

/// Render `h` and `rows` at unix time `now`; `alive`: is `h.pid` running?
pub fn render(h: &Header, rows: &[Row], now: f64, alive: bool, form: Form) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    match form {
        Form::Table => {
            let age = (now - h.time).max(0.0);
            let note = if !alive {
                " (NOT RUNNING)".to_string()
            } else if age > STALE_SECS {
                format!(" (scoreboard {} old)", duration(age))
            } else {
                String::new()
            };
            let idle = rows.iter().filter(|r| r.state == State::Idle).count();
            let _ = writeln!(
                out,
                "smtpd-supervise pid {}{note}: {}, up {}, listening on {}",
                h.pid,
                h.mode,
                duration((now - h.started).max(0.0)),
                h.listen
            );
            let _ = writeln!(
                out,
                "sessions {}/{}, idle workers {idle}, served {}, restarts {}",
                h.sessions, h.limit, h.served, h.restarts
            );
            let _ = writeln!(out, "{:>8}  {:<8}  {:>8}  {:>6}  CLIENT", "PID", "STATE", "FOR", "SERVED");
            for r in rows {
                let pid = r.pid.map_or_else(|| "-".to_string(), |p| p.to_string());
                let client = match (r.remote, r.port) {
                    (Some(std::net::IpAddr::V6(a)), Some(p)) => format!("[{a}]:{p}"),
                    (Some(a), Some(p)) => format!("{a}:{p}"),
                    (Some(a), None) => a.to_string(),
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "{pid:>8}  {:<8}  {:>8}  {:>6}  {client}",
                    r.state.as_str(),
                    duration((now - r.since).max(0.0)),
                    r.served
                );
            }
        }
        Form::Tab => {
            let _ = writeln!(out, "{}", crate::scoreboard::COLUMNS);
            for r in rows {
                let dash = |o: Option<String>| o.unwrap_or_else(|| "-".into());
                let _ = writeln!(
                    out,
                    "{}\t{}\t{:.3}\t{}\t{}\t{}",
                    dash(r.pid.map(|p| p.to_string())),
                    r.state.as_str(),
                    r.since,
                    r.served,
                    dash(r.remote.map(|a| a.to_string())),
                    dash(r.port.map(|p| p.to_string()))
                );
            }
        }
        Form::Json => {
            let _ = writeln!(
                out,
                "{{\"supervisor\":{},\"running\":{alive},\"time\":{:.3},\"started\":{:.3},\"listen\":{},\"mode\":{},\"sessions\":{},\"limit\":{},\"served\":{},\"restarts\":{}}}",
                h.pid,
                h.time,
                h.started,
                json_str(&h.listen),
                json_str(&h.mode),
                h.sessions,
                h.limit,
                h.served,
                h.restarts
            );
            for r in rows {
                let num = |o: Option<String>| o.unwrap_or_else(|| "null".into());
                let _ = writeln!(
                    out,
                    "{{\"pid\":{},\"state\":\"{}\",\"since\":{:.3},\"served\":{},\"remote\":{},\"port\":{}}}",
                    num(r.pid.map(|p| p.to_string())),
                    r.state.as_str(),
                    r.since,
                    r.served,
                    num(r.remote.map(|a| format!("\"{a}\""))),
                    num(r.port.map(|p| p.to_string()))
                );
            }
        }
    }
    out
}

/// `4.2s`, `3m07s`, `5h02m`, `3d04h`.
pub fn duration(secs: f64) -> String {
    let s = secs as u64;
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86400 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}d{:02}h", s / 86400, s % 86400 / 3600)
    }
}

/// A JSON string (the header's words have no quotes or controls, but say so anyway).
fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> (Header, Vec<Row>) {
        let h = Header {
            pid: 812,
            time: 1000.0,
            started: 100.0,
            listen: "127.0.0.1:2525".into(),
            mode: "handoff".into(),
            sessions: 1,
            limit: 40,
            served: 7,
            restarts: 0,
        };
        let rows = vec![
            Row { pid: Some(901), state: State::Tls, since: 995.5, served: 3, remote: Some("192.0.2.7".parse().unwrap()), port: Some(51384) },
            Row { pid: Some(902), state: State::Idle, since: 700.0, served: 0, remote: None, port: None },
            Row { pid: None, state: State::Waiting, since: 999.0, served: 0, remote: Some("2001:db8::1".parse().unwrap()), port: Some(4000) },
        ];
        (h, rows)
    }

    #[test]
    fn table() {
        let (h, rows) = board();
        let t = render(&h, &rows, 1001.0, true, Form::Table);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "smtpd-supervise pid 812: handoff, up 15m01s, listening on 127.0.0.1:2525");
        assert_eq!(lines[1], "sessions 1/40, idle workers 1, served 7, restarts 0");
        assert_eq!(lines[3], "     901  tls           5.5s       3  192.0.2.7:51384");
        assert_eq!(lines[4], "     902  idle         5m01s       0  ");
        assert_eq!(lines[5], "       -  waiting       2.0s       0  [2001:db8::1]:4000");
        assert!(render(&h, &rows, 1001.0, false, Form::Table).contains("pid 812 (NOT RUNNING)"));
        assert!(render(&h, &rows, 1100.0, true, Form::Table).contains("(scoreboard 1m40s old)"));
    }

    #[test]
    fn machine_forms() {
        let (h, rows) = board();
        let t = render(&h, &rows, 1001.0, true, Form::Tab);
        assert_eq!(t.lines().nth(1), Some("901\ttls\t995.500\t3\t192.0.2.7\t51384"));
        let j = render(&h, &rows, 1001.0, true, Form::Json);
        let l: Vec<&str> = j.lines().collect();
        assert!(l[0].starts_with("{\"supervisor\":812,\"running\":true,\"time\":1000.000,"));
        assert_eq!(l[2], "{\"pid\":902,\"state\":\"idle\",\"since\":700.000,\"served\":0,\"remote\":null,\"port\":null}");
        assert_eq!(l[3], "{\"pid\":null,\"state\":\"waiting\",\"since\":999.000,\"served\":0,\"remote\":\"2001:db8::1\",\"port\":4000}");
        assert_eq!(duration(90061.0), "1d01h");
    }
}
