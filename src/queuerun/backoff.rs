//! When to try a temporarily failed recipient again. Pure.
//!
//! Default: qmail-send's quadratic schedule for remote deliveries, counted
//! from the message's arrival (`birth`): the next attempt after a failure at
//! `now` is `birth + (isqrt(now - birth) + skip)^2` with `skip` = 20, so the
//! gaps grow from about 7 minutes to a few hours over a week.
//! Alternative: a fixed list of delays in seconds after each failed attempt
//! (`RETRY_SCHEDULE=60,300,900`), the last one repeated.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// qmail-send's formula with its `chanskip` (20 for remote).
    Quadratic { skip: u64 },
    /// Delay after the 1st, 2nd, ... failure; the last repeats. Never empty.
    List(Vec<u64>),
}

/// qmail-send's remote `chanskip`.
pub const QMAIL_SKIP: u64 = 20;

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Quadratic { skip: QMAIL_SKIP }
    }
}

impl Schedule {
    /// Parse `RETRY_SCHEDULE`: `qmail`, `qmail:<skip>`, or a comma list of seconds.
    pub fn parse(s: &str) -> Option<Schedule> {
        let s = s.trim();
        if s == "qmail" {
            return Some(Schedule::default());
        }
        if let Some(k) = s.strip_prefix("qmail:") {
            return Some(Schedule::Quadratic { skip: k.parse().ok().filter(|&k| k > 0 && k < 100_000)? });
        }
        let v = s.split(',').map(|x| x.trim().parse::<u64>().ok()).collect::<Option<Vec<_>>>()?;
        if v.is_empty() || v.len() > 1000 {
            return None;
        }
        Some(Schedule::List(v))
    }

    /// Next attempt after the `attempts`-th failed attempt (1-based) at `now`
    /// of a message that arrived at `birth`. Always later than `now`.
    pub fn next(&self, birth: u64, now: u64, attempts: u32) -> u64 {
        let t = match self {
            Schedule::Quadratic { skip } => {
                let n = if birth > now { 0 } else { isqrt(now - birth) } + skip;
                birth.saturating_add(n.saturating_mul(n))
            }
            Schedule::List(v) => {
                let i = (attempts.max(1) as usize - 1).min(v.len().saturating_sub(1));
                now.saturating_add(v.get(i).copied().unwrap_or(60))
            }
        };
        t.max(now + 1)
    }
}

/// Integer square root (floor).
pub fn isqrt(x: u64) -> u64 {
    let mut r = ((x as f64).sqrt() as u64).min(u32::MAX as u64);
    while r * r > x {
        r -= 1;
    }
    while r < u32::MAX as u64 && (r + 1) * (r + 1) <= x {
        r += 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmail_schedule() {
        let s = Schedule::default();
        // First failure right at arrival: 20^2 = 400 s later.
        assert_eq!(s.next(1000, 1000, 1), 1400);
        // At 400 s: isqrt(400) = 20 -> 40^2 = 1600 s after birth.
        assert_eq!(s.next(1000, 1400, 2), 2600);
        // A day old: isqrt(86400) = 293 -> 313^2 = 97969.
        assert_eq!(s.next(0, 86400, 9), 97969);
        // Clock went backwards: still in the future.
        assert!(s.next(5000, 1000, 1) > 1000);
    }

    #[test]
    fn list_schedule() {
        let s = Schedule::parse("1, 2,5").unwrap();
        assert_eq!(s.next(0, 100, 1), 101);
        assert_eq!(s.next(0, 100, 2), 102);
        assert_eq!(s.next(0, 100, 3), 105);
        assert_eq!(s.next(0, 100, 30), 105);
        assert_eq!(Schedule::parse("0").unwrap().next(0, 100, 1), 101);
    }

    #[test]
    fn parse_table() {
        assert_eq!(Schedule::parse("qmail"), Some(Schedule::Quadratic { skip: 20 }));
        assert_eq!(Schedule::parse("qmail:1"), Some(Schedule::Quadratic { skip: 1 }));
        assert_eq!(Schedule::parse("qmail:0"), None);
        assert_eq!(Schedule::parse(""), None);
        assert_eq!(Schedule::parse("1,x"), None);
        assert_eq!(Schedule::parse("-1"), None);
    }

    #[test]
    fn isqrt_table() {
        for (x, r) in [(0, 0), (1, 1), (3, 1), (4, 2), (99, 9), (100, 10), (u64::MAX, 4294967295)] {
            assert_eq!(isqrt(x), r, "{x}");
        }
    }
}
