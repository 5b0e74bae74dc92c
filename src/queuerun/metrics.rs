//! queue-run's figures for Prometheus (queue-run(8), METRICS): the queue
//! (messages, recipients pending, the oldest message's age), delivery
//! attempts by result, DSNs queued, files set aside, and histograms of
//! attempt duration and of the delay from arrival to delivery; written as
//! a textfile (`METRICS_FILE`, atomically, every `METRICS_INTERVAL` seconds
//! and at exit) with prometheus-client's 0.0.4 text encoder. The runner
//! calls the small hooks below; it keeps the queue's figures in memory (one
//! entry per message it has looked at), so that no scan of the queue is
//! ever made for them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::config::Config;
use super::report::Outcome;
use super::state::{State, Status};

/// Default `METRICS_INTERVAL`, seconds.
pub const DEFAULT_INTERVAL: u64 = 10;

/// Seconds an attempt (one smtp-remote run) takes.
const ATTEMPT_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Seconds from arrival in the queue to delivery: first try, a few
/// retries, hours, days.
const DELAY_BUCKETS: [f64; 11] = [1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4.0 * 3600.0, 86400.0, 3.0 * 86400.0, 7.0 * 86400.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

/// What the runner tells, and the file it is written to.
pub struct QueueMetrics {
    path: Option<PathBuf>,
    interval: Duration,
    next: Instant,
    registry: Registry,
    /// Per message looked at: (arrival, recipients pending).
    msgs: HashMap<String, (u64, u64)>,
    messages: Gauge,
    pending: Gauge,
    oldest: Gauge<f64, AtomicU64>,
    running: Gauge,
    attempts: Family<ResultLabel, Counter>,
    dsns: Family<TypeLabel, Counter>,
    bad: Counter,
    attempt_secs: Histogram,
    delay_secs: Histogram,
    warned: bool,
}

impl QueueMetrics {
    /// `METRICS_FILE` (unset: no file, the hooks only count) and
    /// `METRICS_INTERVAL`, from the `-e` file's assignments, else the
    /// environment, like every other setting.
    pub fn from_config(cfg: &Config) -> Result<QueueMetrics, String> {
        let get = |k: &str| {
            cfg.env
                .iter()
                .rev()
                .find(|(ek, _)| ek == k)
                .map(|(_, v)| v.to_string_lossy().into_owned())
                .or_else(|| std::env::var(k).ok())
                .filter(|v| !v.is_empty())
        };
        let path = get("METRICS_FILE").map(PathBuf::from);
        let interval = match get("METRICS_INTERVAL") {
            None => DEFAULT_INTERVAL,
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=3600).contains(n))
                .ok_or_else(|| format!("METRICS_INTERVAL={v}: not a number from 1 to 3600"))?,
        };
        let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        Ok(QueueMetrics::new(path, Duration::from_secs(interval), start))
    }

    pub fn new(path: Option<PathBuf>, interval: Duration, start: f64) -> QueueMetrics {
        let mut registry = Registry::default();
        let messages = Gauge::default();
        registry.register("smtpd_queue_messages", "Messages in the queue that queue-run has looked at", messages.clone());
        let pending = Gauge::default();
        registry.register("smtpd_queue_recipients_pending", "Recipients still to be delivered (not delivered nor failed)", pending.clone());
        let oldest = Gauge::<f64, AtomicU64>::default();
        registry.register("smtpd_queue_oldest_message_age_seconds", "Age of the oldest message in the queue (0: none)", oldest.clone());
        let running = Gauge::default();
        registry.register("smtpd_queue_deliveries_running", "Delivery programs running now", running.clone());
        let attempts = Family::<ResultLabel, Counter>::default();
        registry.register(
            "smtpd_delivery_attempts",
            "Delivery results, one per recipient per attempt: delivered, deferred (temporary failure), failed (permanent)",
            attempts.clone(),
        );
        for result in ["delivered", "deferred", "failed"] {
            let _ = attempts.get_or_create(&ResultLabel { result });
        }
        let dsns = Family::<TypeLabel, Counter>::default();
        registry.register("smtpd_dsns", "Delivery status notifications queued, by type (failure, delay, success)", dsns.clone());
        for t in ["failure", "delay", "success"] {
            let _ = dsns.get_or_create(&TypeLabel { r#type: t });
        }
        let bad = Counter::default();
        registry.register("smtpd_queue_bad_files", "Files set aside into bad/ (corrupt queue files, refused drop files)", bad.clone());
        let attempt_secs = Histogram::new(ATTEMPT_BUCKETS);
        registry.register("smtpd_delivery_attempt_duration_seconds", "How long one run of the delivery program took", attempt_secs.clone());
        let delay_secs = Histogram::new(DELAY_BUCKETS);
        registry.register("smtpd_delivery_delay_seconds", "From arrival in the queue to delivery, per delivered recipient", delay_secs.clone());
        let started = Gauge::<f64, AtomicU64>::default();
        started.set(start);
        registry.register("smtpd_queue_run_start_time_seconds", "When this queue-run started, unix seconds", started);
        QueueMetrics {
            path,
            interval,
            next: Instant::now(),
            registry,
            msgs: HashMap::new(),
            messages,
            pending,
            oldest,
            running,
            attempts,
            dsns,
            bad,
            attempt_secs,
            delay_secs,
            warned: false,
        }
    }

    /// A message as it stands now (after a look at it, or an attempt).
    pub fn message(&mut self, id: &str, arrival: u64, st: &State) {
        let pending = st.rcpts.iter().filter(|r| r.status == Status::Pending).count() as u64;
        self.msgs.insert(id.to_owned(), (arrival, pending));
    }

    /// A message left the queue (done, gone, set aside).
    pub fn gone(&mut self, id: &str) {
        self.msgs.remove(id);
    }

    /// One attempt's results (one per recipient), the time the delivery
    /// program took, and the message's arrival (for the delay of what
    /// was delivered); `secs` is `None` for results given without a run
    /// (recipients that cannot be routed).
    pub fn attempt(&self, outs: &[Outcome], secs: Option<f64>, arrival: u64, now: u64) {
        for o in outs {
            let result = match o {
                Outcome::Delivered(_) => {
                    self.delay_secs.observe(now.saturating_sub(arrival) as f64);
                    "delivered"
                }
                Outcome::Temporary(_) => "deferred",
                Outcome::Permanent(_) => "failed",
            };
            self.attempts.get_or_create(&ResultLabel { result }).inc();
        }
        if let Some(s) = secs {
            self.attempt_secs.observe(s);
        }
    }

    /// A DSN was queued, of these kinds (`failure`, `delay`, `success`).
    pub fn dsn(&self, kinds: &[&str]) {
        for k in kinds {
            if let Some(t) = ["failure", "delay", "success"].into_iter().find(|t| t == k) {
                self.dsns.get_or_create(&TypeLabel { r#type: t }).inc();
            }
        }
    }

    /// A file was set aside into bad/.
    pub fn bad(&self) {
        self.bad.inc();
    }

    /// When the file is next due (None: no file).
    pub fn next_due(&self) -> Option<Instant> {
        self.path.as_ref().map(|_| self.next)
    }

    /// Write the file if it is due (or `force`, at exit), with `running`
    /// delivery programs at work. A failure is warned about once and
    /// retried at the next interval; it never stops deliveries.
    pub fn tick(&mut self, running: usize, force: bool) {
        let Some(path) = self.path.clone() else { return };
        let now = Instant::now();
        if !force && now < self.next {
            return;
        }
        self.next = now + self.interval;
        let text = self.render(running, super::runner::unix_now());
        match crate::textfile::write_atomic(&path, text.as_bytes(), 0o644) {
            Ok(()) => self.warned = false,
            Err(e) if !self.warned => {
                self.warned = true;
                crate::die::warn("queue-run", format_args!("unable to write the metrics file {}: {e}", path.display()));
            }
            Err(_) => {}
        }
    }

    /// The text exposition (format 0.0.4) at unix time `now`.
    pub fn render(&self, running: usize, now: u64) -> String {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.messages.set(count(self.msgs.len()));
        self.pending.set(self.msgs.values().map(|&(_, p)| p).sum::<u64>().try_into().unwrap_or(i64::MAX));
        let oldest = self.msgs.values().map(|&(t, _)| t).min();
        self.oldest.set(oldest.map_or(0.0, |t| now.saturating_sub(t) as f64));
        self.running.set(count(running));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.parse().ok()))
    }

    #[test]
    fn queue_figures() {
        let mut m = QueueMetrics::new(None, Duration::from_secs(10), 5.0);
        let mut st = State::new(1, 3);
        m.message("a", 1000, &st);
        st.rcpts[0].status = Status::Delivered;
        m.message("b", 1500, &st);
        let t = m.render(2, 4600);
        assert_eq!(value(&t, "smtpd_queue_messages"), Some(2.0));
        assert_eq!(value(&t, "smtpd_queue_recipients_pending"), Some(5.0));
        assert_eq!(value(&t, "smtpd_queue_oldest_message_age_seconds"), Some(3600.0));
        assert_eq!(value(&t, "smtpd_queue_deliveries_running"), Some(2.0));
        assert_eq!(value(&t, r#"smtpd_delivery_attempts_total{result="deferred"}"#), Some(0.0));
        m.gone("a");
        m.gone("b");
        m.attempt(&[Outcome::Delivered("ok".into()), Outcome::Temporary("later".into()), Outcome::Permanent("no".into())], Some(0.3), 1000, 1060);
        m.attempt(&[Outcome::Temporary("later".into())], Some(7.0), 1000, 1060);
        m.dsn(&["failure", "bogus"]);
        m.bad();
        let t = m.render(0, 5000);
        assert_eq!(value(&t, "smtpd_queue_messages"), Some(0.0));
        assert_eq!(value(&t, "smtpd_queue_oldest_message_age_seconds"), Some(0.0));
        assert_eq!(value(&t, r#"smtpd_delivery_attempts_total{result="delivered"}"#), Some(1.0));
        assert_eq!(value(&t, r#"smtpd_delivery_attempts_total{result="deferred"}"#), Some(2.0));
        assert_eq!(value(&t, r#"smtpd_delivery_attempts_total{result="failed"}"#), Some(1.0));
        assert_eq!(value(&t, r#"smtpd_dsns_total{type="failure"}"#), Some(1.0));
        assert_eq!(value(&t, "smtpd_queue_bad_files_total"), Some(1.0));
        assert_eq!(value(&t, "smtpd_delivery_attempt_duration_seconds_count"), Some(2.0));
        assert_eq!(value(&t, r#"smtpd_delivery_attempt_duration_seconds_bucket{le="0.5"}"#), Some(1.0));
        assert_eq!(value(&t, r#"smtpd_delivery_delay_seconds_bucket{le="60"}"#), Some(1.0));
        assert_eq!(value(&t, "smtpd_delivery_delay_seconds_sum"), Some(60.0));
    }
}
