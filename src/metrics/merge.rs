//! Several Prometheus text expositions (format 0.0.4) made into one, as
//! node_exporter's textfile collector does: the samples of a family that
//! two files share (two supervisors, ports 25 and 587, both write
//! `smtpd_sessions_total`) go under one `# HELP` and `# TYPE`, since the
//! format wants each family in one group. A sample whose series another
//! file already gave is dropped, and so is a file's family whose type
//! disagrees with the first file's: both would make a scraper reject the
//! whole page. Pure, and linear in the input; no I/O here.

use std::collections::{HashMap, HashSet};

/// One family as it is being gathered.
#[derive(Default)]
struct Family {
    help: Option<String>,
    kind: Option<String>,
    samples: Vec<String>,
}

/// Merge `texts` (in order); lines that are neither `# HELP`, `# TYPE`,
/// other comments nor samples are dropped, and so are comments.
pub fn merge(texts: &[&str]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut fams: HashMap<String, Family> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut dropped = 0usize;
    for text in texts {
        // The family the next samples belong to, and whether this file's
        // block for it is being kept.
        let mut current: Option<(String, bool)> = None;
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ").or_else(|| line.strip_prefix("# TYPE ")) {
                let is_help = line.starts_with("# HELP ");
                let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
                if !valid_name(name) {
                    current = None;
                    continue;
                }
                let f = fams.entry(name.to_owned()).or_insert_with(|| {
                    order.push(name.to_owned());
                    Family::default()
                });
                let keep = if is_help {
                    f.help.get_or_insert_with(|| value.to_owned());
                    current.as_ref().filter(|(n, _)| n == name).is_none_or(|(_, k)| *k)
                } else {
                    match &f.kind {
                        None => {
                            f.kind = Some(value.to_owned());
                            true
                        }
                        Some(k) => k == value,
                    }
                };
                current = Some((name.to_owned(), keep));
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let Some(series) = series_of(line) else { continue };
            let metric = series.split('{').next().unwrap_or(series);
            let (family, keep) = match &current {
                Some((n, k)) if belongs(metric, n) => (n.clone(), *k),
                _ => {
                    // A sample with no TYPE before it: an untyped family of its own.
                    let n = metric.to_owned();
                    let k = fams.get(&n).is_none_or(|f| f.kind.is_none());
                    current = Some((n.clone(), k));
                    (n, k)
                }
            };
            if !keep || !seen.insert(series.to_owned()) {
                dropped += 1;
                continue;
            }
            let f = fams.entry(family.clone()).or_insert_with(|| {
                order.push(family.clone());
                Family::default()
            });
            f.samples.push(line.to_owned());
        }
    }
    let mut out = String::new();
    for name in &order {
        let Some(f) = fams.get(name) else { continue };
        if f.samples.is_empty() && f.kind.is_none() {
            continue;
        }
        if let Some(h) = &f.help {
            out.push_str(&format!("# HELP {name} {h}\n"));
        }
        if let Some(k) = &f.kind {
            out.push_str(&format!("# TYPE {name} {k}\n"));
        }
        for s in &f.samples {
            out.push_str(s);
            out.push('\n');
        }
    }
    if dropped > 0 {
        out.push_str(&format!("# metrics-http: {dropped} duplicate or conflicting samples dropped\n"));
    }
    out
}

/// The series of a sample line (`name{labels}`), up to its value.
fn series_of(line: &str) -> Option<&str> {
    let name_end = line.find(['{', ' ', '\t'])?;
    let name = line.get(..name_end)?;
    if !valid_name(name) {
        return None;
    }
    if line.get(name_end..)?.starts_with('{') {
        // The label set ends at the first `}` outside a quoted value.
        let mut quoted = false;
        let mut escaped = false;
        for (i, c) in line.char_indices().skip(name_end) {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '}' if !quoted => return line.get(..=i),
                _ => {}
            }
        }
        None
    } else {
        Some(name)
    }
}

/// Does sample `metric` belong to family `family` (histogram and summary
/// samples carry suffixes)?
fn belongs(metric: &str, family: &str) -> bool {
    metric == family
        || metric
            .strip_prefix(family)
            .is_some_and(|s| ["_bucket", "_sum", "_count", "_total", "_created"].contains(&s))
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':') && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "# HELP smtpd_sessions_total Sessions.\n# TYPE smtpd_sessions_total counter\n\
smtpd_sessions_total{port=\"25\",end=\"quit\"} 3\n\
# HELP d_seconds Delay.\n# TYPE d_seconds histogram\n\
d_seconds_bucket{le=\"1\"} 1\nd_seconds_bucket{le=\"+Inf\"} 2\nd_seconds_sum 3.5\nd_seconds_count 2\n";
    const B: &str = "# HELP smtpd_sessions_total Sessions.\n# TYPE smtpd_sessions_total counter\n\
smtpd_sessions_total{port=\"587\",end=\"quit\"} 5\n# HELP q Queue.\n# TYPE q gauge\nq 7\n";

    #[test]
    fn shared_families_are_grouped() {
        let m = merge(&[A, B]);
        assert_eq!(
            m,
            "# HELP smtpd_sessions_total Sessions.\n# TYPE smtpd_sessions_total counter\n\
smtpd_sessions_total{port=\"25\",end=\"quit\"} 3\nsmtpd_sessions_total{port=\"587\",end=\"quit\"} 5\n\
# HELP d_seconds Delay.\n# TYPE d_seconds histogram\n\
d_seconds_bucket{le=\"1\"} 1\nd_seconds_bucket{le=\"+Inf\"} 2\nd_seconds_sum 3.5\nd_seconds_count 2\n\
# HELP q Queue.\n# TYPE q gauge\nq 7\n"
        );
        assert_eq!(merge(&[A]), A, "one file passes unchanged");
    }

    #[test]
    fn duplicates_and_conflicts_are_dropped() {
        let m = merge(&[B, B]);
        assert_eq!(m.matches("port=\"587\"").count(), 1);
        assert!(m.ends_with("# metrics-http: 2 duplicate or conflicting samples dropped\n"));
        let conflict = "# TYPE q counter\nq 9\n";
        let m = merge(&[B, conflict]);
        assert!(m.contains("# TYPE q gauge\nq 7\n") && !m.contains("q 9"));
        // Quoted braces do not end a label set; junk lines are dropped.
        let odd = "x{a=\"}\\\"\"} 1\n}junk\n{\n123 4\n# just a comment\n";
        assert_eq!(merge(&[odd]), "x{a=\"}\\\"\"} 1\n");
    }
}
