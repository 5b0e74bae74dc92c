//! smtpd-supervise's figures for Prometheus: what it counts itself
//! (connections, watchdog kills, restarts), the sums of what sessions
//! report on `SMTPD_STATS_FD` (`crate::statsfd`), the gauges of the moment,
//! and their text exposition (format 0.0.4, prometheus-client's encoder).
//! Counters live here, in the long-lived supervisor, so that nothing is lost
//! when a worker exits. No I/O here: the server loop feeds it and writes the
//! text where -M says.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::statsfd::{End, Reason, Report, TlsVersion, AUTH_RESULTS, CLASSES};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabel {
    end: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabel {
    class: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TlsLabel {
    result: &'static str,
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// How the supervisor dealt with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    /// Handed to a session (a worker or a new child).
    Accepted,
    /// Refused by a `deny` rule.
    Denied,
    /// Over -C, the per-address limit.
    PerIpLimit,
}

impl Conn {
    const ALL: [Conn; 3] = [Conn::Accepted, Conn::Denied, Conn::PerIpLimit];
    fn as_str(self) -> &'static str {
        match self {
            Conn::Accepted => "accepted",
            Conn::Denied => "denied",
            Conn::PerIpLimit => "per_ip_limit",
        }
    }
}

/// The worker states of the `smtpd_workers` gauge.
pub const WORKER_STATES: [&str; 3] = ["idle", "busy", "retiring"];

/// The gauges, as the server loop sees them when the text is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Now {
    /// Sessions in progress (-c counts these).
    pub sessions: u64,
    /// -c.
    pub limit: u64,
    /// Hand-off workers by `WORKER_STATES`.
    pub workers: [u64; 3],
}

/// Every figure, with its label sets created up front so that each series
/// exists from the start at 0 (a series that appears late hides its first
/// increase from `rate()` and `increase()`).
pub struct Stats {
    registry: Registry,
    sessions: Family<EndLabel, Counter>,
    messages: Family<ResultLabel, Counter>,
    recipients: Counter,
    bytes: Counter,
    refusals: Family<RefusalLabel, Counter>,
    auth: Family<ResultLabel, Counter>,
    tls: Family<TlsLabel, Counter>,
    connections: Family<ResultLabel, Counter>,
    killed: Counter,
    restarts: Counter,
    reports: Family<ResultLabel, Counter>,
    active: Gauge,
    limit: Gauge,
    workers: Family<StateLabel, Gauge>,
}

impl Stats {
    /// `port`: the listening port, a label on every series (two supervisors,
    /// say ports 25 and 587, write files that a scraper merges); `start`:
    /// the supervisor's start, unix seconds.
    pub fn new(port: u16, start: f64) -> Stats {
        let mut registry = Registry::with_labels(std::iter::once((std::borrow::Cow::Borrowed("port"), port.to_string().into())));
        let sessions = Family::<EndLabel, Counter>::default();
        registry.register(
            "smtpd_sessions",
            "Sessions that smtpd-rs reported at their end, by how they ended (see smtpd-rs(8), LOG)",
            sessions.clone(),
        );
        for e in End::ALL {
            let _ = sessions.get_or_create(&EndLabel { end: e.as_str() });
        }
        let messages = Family::<ResultLabel, Counter>::default();
        registry.register(
            "smtpd_messages",
            "Messages whose data was read: accepted (queued) or refused (size, bare CR or LF, mail loop, queue failure)",
            messages.clone(),
        );
        for r in ["accepted", "refused"] {
            let _ = messages.get_or_create(&ResultLabel { result: r });
        }
        let recipients = Counter::default();
        registry.register("smtpd_recipients", "Recipients of the accepted messages", recipients.clone());
        let bytes = Counter::default();
        registry.register("smtpd_message_bytes", "Octets of the accepted messages, as received", bytes.clone());
        let refusals = Family::<RefusalLabel, Counter>::default();
        registry.register(
            "smtpd_refusals",
            "Refused commands and messages, by reply class (4xx, 5xx) and reason (policy, size, syntax, queue, auth)",
            refusals.clone(),
        );
        for class in CLASSES {
            for r in Reason::ALL {
                let _ = refusals.get_or_create(&RefusalLabel { class, reason: r.as_str() });
            }
        }
        let auth = Family::<ResultLabel, Counter>::default();
        registry.register("smtpd_auth", "AUTH checks by result (success, failure, tempfail)", auth.clone());
        for result in AUTH_RESULTS {
            let _ = auth.get_or_create(&ResultLabel { result });
        }
        let tls = Family::<TlsLabel, Counter>::default();
        registry.register("smtpd_tls_handshakes", "TLS handshakes that tls-wrap reported, by result and protocol version", tls.clone());
        for result in ["ok", "failed"] {
            for v in TlsVersion::ALL {
                let _ = tls.get_or_create(&TlsLabel { result, version: v.as_str() });
            }
        }
        let connections = Family::<ResultLabel, Counter>::default();
        registry.register(
            "smtpd_connections",
            "Connections accepted from the listening socket, by what the supervisor did (accepted, denied by a rule, over the per-address limit)",
            connections.clone(),
        );
        for c in Conn::ALL {
            let _ = connections.get_or_create(&ResultLabel { result: c.as_str() });
        }
        let killed = Counter::default();
        registry.register("smtpd_sessions_killed", "Sessions killed by the watchdog (-T)", killed.clone());
        let restarts = Counter::default();
        registry.register("smtpd_worker_restarts", "Children that died abnormally (a crash, or an idle worker that exited)", restarts.clone());
        let reports = Family::<ResultLabel, Counter>::default();
        registry.register("smtpd_reports", "Reports read on SMTPD_STATS_FD: counted (ok) or refused as malformed", reports.clone());
        for result in ["ok", "malformed"] {
            let _ = reports.get_or_create(&ResultLabel { result });
        }
        let active = Gauge::default();
        registry.register("smtpd_sessions_active", "Sessions in progress", active.clone());
        let limit = Gauge::default();
        registry.register("smtpd_sessions_limit", "Most sessions at once (-c)", limit.clone());
        let workers = Family::<StateLabel, Gauge>::default();
        registry.register("smtpd_workers", "Hand-off workers by state (idle, busy, retiring)", workers.clone());
        for state in WORKER_STATES {
            let _ = workers.get_or_create(&StateLabel { state });
        }
        let started = Gauge::<f64, AtomicU64>::default();
        started.set(start);
        registry.register("smtpd_supervise_start_time_seconds", "When this smtpd-supervise started, unix seconds", started);
        Stats {
            registry,
            sessions,
            messages,
            recipients,
            bytes,
            refusals,
            auth,
            tls,
            connections,
            killed,
            restarts,
            reports,
            active,
            limit,
            workers,
        }
    }

    /// Count one report. Label values come only from the fixed sets of
    /// `statsfd`, whatever the report said.
    pub fn report(&self, r: &Report) {
        match r {
            Report::Session(s) => {
                self.sessions.get_or_create(&EndLabel { end: s.end.as_str() }).inc();
                self.messages.get_or_create(&ResultLabel { result: "accepted" }).inc_by(s.messages);
                self.messages.get_or_create(&ResultLabel { result: "refused" }).inc_by(s.messages_refused);
                self.recipients.inc_by(s.recipients);
                self.bytes.inc_by(s.bytes);
                for (c, class) in CLASSES.into_iter().enumerate() {
                    for reason in Reason::ALL {
                        let n = s.refused[c][reason.index()];
                        if n > 0 {
                            self.refusals.get_or_create(&RefusalLabel { class, reason: reason.as_str() }).inc_by(n);
                        }
                    }
                }
                for (i, result) in AUTH_RESULTS.into_iter().enumerate() {
                    self.auth.get_or_create(&ResultLabel { result }).inc_by(s.auth[i]);
                }
            }
            Report::Tls(t) => {
                let result = if t.ok { "ok" } else { "failed" };
                self.tls.get_or_create(&TlsLabel { result, version: t.version.as_str() }).inc();
            }
        }
        self.reports.get_or_create(&ResultLabel { result: "ok" }).inc();
    }

    /// A datagram that was not a report.
    pub fn malformed(&self) {
        self.reports.get_or_create(&ResultLabel { result: "malformed" }).inc();
    }

    pub fn connection(&self, c: Conn) {
        self.connections.get_or_create(&ResultLabel { result: c.as_str() }).inc();
    }

    pub fn killed(&self) {
        self.killed.inc();
    }

    pub fn restart(&self) {
        self.restarts.inc();
    }

    /// The text exposition (format 0.0.4), with the gauges set to `now`.
    pub fn render(&self, now: &Now) -> String {
        self.active.set(clamp(now.sessions));
        self.limit.set(clamp(now.limit));
        for (i, state) in WORKER_STATES.into_iter().enumerate() {
            self.workers.get_or_create(&StateLabel { state }).set(clamp(now.workers[i]));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statsfd::{self, SessionReport, TlsReport};

    /// The value of the sample `name{labels}` (labels as written, after port).
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.parse().ok()))
    }

    #[test]
    fn reports_are_summed_and_every_series_starts_at_zero() {
        let s = Stats::new(2525, 1_700_000_000.5);
        let t = s.render(&Now::default());
        assert_eq!(value(&t, r#"smtpd_sessions_total{port="2525",end="timeout"}"#), Some(0.0));
        assert_eq!(value(&t, r#"smtpd_refusals_total{port="2525",class="4xx",reason="queue"}"#), Some(0.0));
        assert_eq!(value(&t, r#"smtpd_tls_handshakes_total{port="2525",result="failed",version="unknown"}"#), Some(0.0));
        assert_eq!(value(&t, r#"smtpd_supervise_start_time_seconds{port="2525"}"#), Some(1_700_000_000.5));
        let mut r = SessionReport { messages: 2, recipients: 3, bytes: 100, messages_refused: 1, ..Default::default() };
        r.refused[1][Reason::Policy.index()] = 4;
        r.auth[1] = 1;
        s.report(&Report::Session(r));
        s.report(&Report::Session(SessionReport { end: End::Timeout, ..Default::default() }));
        s.report(&Report::Tls(TlsReport { ok: true, version: TlsVersion::V13 }));
        s.report(&Report::Tls(TlsReport { ok: false, version: TlsVersion::Unknown }));
        s.malformed();
        s.connection(Conn::Accepted);
        s.connection(Conn::PerIpLimit);
        s.killed();
        let t = s.render(&Now { sessions: 3, limit: 40, workers: [2, 3, 1] });
        for (series, v) in [
            (r#"smtpd_sessions_total{port="2525",end="quit"}"#, 1.0),
            (r#"smtpd_sessions_total{port="2525",end="timeout"}"#, 1.0),
            (r#"smtpd_messages_total{port="2525",result="accepted"}"#, 2.0),
            (r#"smtpd_messages_total{port="2525",result="refused"}"#, 1.0),
            (r#"smtpd_recipients_total{port="2525"}"#, 3.0),
            (r#"smtpd_message_bytes_total{port="2525"}"#, 100.0),
            (r#"smtpd_refusals_total{port="2525",class="5xx",reason="policy"}"#, 4.0),
            (r#"smtpd_auth_total{port="2525",result="failure"}"#, 1.0),
            (r#"smtpd_tls_handshakes_total{port="2525",result="ok",version="TLSv1.3"}"#, 1.0),
            (r#"smtpd_tls_handshakes_total{port="2525",result="failed",version="unknown"}"#, 1.0),
            (r#"smtpd_reports_total{port="2525",result="ok"}"#, 4.0),
            (r#"smtpd_reports_total{port="2525",result="malformed"}"#, 1.0),
            (r#"smtpd_connections_total{port="2525",result="accepted"}"#, 1.0),
            (r#"smtpd_connections_total{port="2525",result="per_ip_limit"}"#, 1.0),
            (r#"smtpd_sessions_killed_total{port="2525"}"#, 1.0),
            (r#"smtpd_sessions_active{port="2525"}"#, 3.0),
            (r#"smtpd_sessions_limit{port="2525"}"#, 40.0),
            (r#"smtpd_workers{port="2525",state="busy"}"#, 3.0),
        ] {
            assert_eq!(value(&t, series), Some(v), "{series} in\n{t}");
        }
        assert!(t.contains("# TYPE smtpd_sessions_total counter\n"));
        assert!(t.contains("# TYPE smtpd_workers gauge\n"));
    }

    #[test]
    fn the_series_are_a_fixed_set() {
        // However many and whatever reports arrive, the text has the same lines.
        let s = Stats::new(25, 0.0);
        let lines = s.render(&Now::default()).lines().count();
        for junk in [&b"session end=whatever refused_5xx_zzz=1"[..], b"tls result=ok version=TLSv9", b"session end=quit"] {
            if let Ok(r) = statsfd::parse(junk) {
                s.report(&r);
            }
        }
        assert_eq!(s.render(&Now::default()).lines().count(), lines);
    }
}
