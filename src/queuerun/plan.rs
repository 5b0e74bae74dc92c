//! What to do with one queued message now: which recipients to try, grouped
//! by destination domain; how an attempt's outcomes change the recipients'
//! state; which DSNs are owed; when to look again. Pure: no I/O here.

use super::backoff::Schedule;
use super::dsn::Action;
use crate::queue::format::Header;
use super::report::Outcome;
use super::state::{State, Status};
use crate::envelope::Attrs;
use crate::queue::control_char;
use std::collections::HashSet;

/// RFC 3461 NOTIFY of one recipient. Without NOTIFY: failures only (no
/// delay warnings, as qmail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notify {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

pub fn notify_of(attrs: &Attrs, idx: usize) -> Notify {
    match attrs.get(&format!("RCPT.{idx}.NOTIFY")) {
        None => Notify { success: false, failure: true, delay: false },
        Some(v) => {
            let v = String::from_utf8_lossy(v).to_ascii_uppercase();
            let has = |w: &str| v.split(',').any(|x| x.trim() == w);
            Notify { success: has("SUCCESS"), failure: has("FAILURE"), delay: has("DELAY") }
        }
    }
}

/// Where a DSN about a message from `sender` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BounceTo {
    /// To the sender, from the null sender.
    Sender(Vec<u8>),
    /// The message was itself a DSN (null sender): to the postmaster, once,
    /// from `#@[]` (qmail's double-bounce sender).
    Postmaster(Vec<u8>),
    /// Nobody: a double bounce that failed, or no postmaster configured.
    Nobody,
}

/// qmail's double-bounce envelope sender: a DSN from it is never answered.
pub const DOUBLE_BOUNCE_SENDER: &[u8] = b"#@[]";

pub fn bounce_to(sender: &[u8], doublebounceto: Option<&[u8]>) -> BounceTo {
    if sender == DOUBLE_BOUNCE_SENDER {
        BounceTo::Nobody
    } else if sender.is_empty() || control_char(sender).is_some() {
        // A sender that cannot be written into an envelope (a file from a
        // writer that did not check) is no better than the null sender.
        match doublebounceto {
            Some(p) if !p.is_empty() => BounceTo::Postmaster(p.to_vec()),
            _ => BounceTo::Nobody,
        }
    } else {
        BounceTo::Sender(sender.to_vec())
    }
}

/// The settings plan needs.
#[derive(Debug, Clone)]
pub struct Policy<'a> {
    pub lifetime: u64,
    pub schedule: &'a Schedule,
    pub delay_warning: u64,
    pub doublebounceto: Option<&'a [u8]>,
    pub max_rcpt: usize,
}

/// The destination domain of a recipient: after the last `@`, lower case;
/// `None` without one.
pub fn domain_of(rcpt: &[u8]) -> Option<String> {
    let at = rcpt.iter().rposition(|&b| b == b'@')?;
    let d = &rcpt[at + 1..];
    if d.is_empty() {
        return None;
    }
    Some(String::from_utf8_lossy(d).to_lowercase())
}

/// Why recipient `i` cannot be handed to the delivery program at all, if so:
/// a control character in the sender or in the recipient (never passed on:
/// CR LF would become SMTP commands of their own, issue 16), or no domain.
pub fn undeliverable(h: &Header, i: usize) -> Option<&'static str> {
    let rcpt = h.envelope.recipients.get(i).map(Vec::as_slice).unwrap_or_default();
    if control_char(&h.envelope.sender).is_some() {
        Some("Sender address contains a control character; not sent. (#5.1.7)")
    } else if control_char(rcpt).is_some() {
        Some("Recipient address contains a control character; not sent. (#5.1.3)")
    } else if domain_of(rcpt).is_none() {
        Some("Recipient address has no domain. (#5.1.3)")
    } else {
        None
    }
}

/// Recipients to try now, grouped by domain (order of first appearance),
/// each group at most `max_rcpt` long; the group without a domain holds the
/// recipients that are `undeliverable`. `force`: ignore the back-off (SIGALRM).
pub fn due(h: &Header, st: &State, now: u64, in_flight: &HashSet<usize>, force: bool, max_rcpt: usize) -> Vec<(Option<String>, Vec<usize>)> {
    let mut groups: Vec<(Option<String>, Vec<usize>)> = Vec::new();
    for (i, r) in st.rcpts.iter().enumerate() {
        if r.status != Status::Pending || in_flight.contains(&i) || (!force && r.next > now) {
            continue;
        }
        let d = match undeliverable(h, i) {
            Some(_) => None,
            None => h.envelope.recipients.get(i).and_then(|a| domain_of(a)),
        };
        match groups.iter_mut().rev().find(|(gd, g)| *gd == d && g.len() < max_rcpt.max(1)) {
            Some((_, g)) => g.push(i),
            None => groups.push((d, vec![i])),
        }
    }
    groups
}

/// Record the outcomes of one attempt (`idxs[k]` got `outcomes[k]`).
pub fn apply(h: &Header, st: &mut State, idxs: &[usize], outcomes: &[Outcome], now: u64, p: &Policy<'_>) {
    let to = bounce_to(&h.envelope.sender, p.doublebounceto);
    for (&i, o) in idxs.iter().zip(outcomes) {
        let notify = notify_of(&h.attrs, i);
        let Some(r) = st.rcpts.get_mut(i) else { continue };
        if r.status != Status::Pending {
            continue; // never undo a final status
        }
        r.attempts = r.attempts.saturating_add(1);
        r.set_text(o.text());
        match o {
            Outcome::Delivered(_) => {
                r.status = Status::Delivered;
                // Success DSNs only to a real sender, never to the postmaster.
                r.notified = !(notify.success && matches!(to, BounceTo::Sender(_)));
            }
            Outcome::Permanent(_) => fail(r, notify, &to),
            Outcome::Temporary(_) => {
                if now >= h.time.saturating_add(p.lifetime) {
                    // Given up: the text stays the remote's last word (the
                    // DSN's Status and Diagnostic-Code come from it).
                    r.expired = true;
                    fail(r, notify, &to);
                } else {
                    r.next = p.schedule.next(h.time, now, r.attempts);
                }
            }
        }
    }
}

fn fail(r: &mut super::state::Rcpt, notify: Notify, to: &BounceTo) {
    r.status = Status::Failed;
    r.notified = !(notify.failure && *to != BounceTo::Nobody);
}

/// DSNs owed now: (recipient index, action).
pub fn owed(h: &Header, st: &State, now: u64, p: &Policy<'_>) -> Vec<(usize, Action)> {
    let to = bounce_to(&h.envelope.sender, p.doublebounceto);
    let mut v = Vec::new();
    for (i, r) in st.rcpts.iter().enumerate() {
        match r.status {
            Status::Failed if !r.notified => v.push((i, Action::Failed)),
            Status::Delivered if !r.notified => v.push((i, Action::Relayed)),
            Status::Pending if delay_applies(h, i, r, p, &to) && now >= h.time.saturating_add(p.delay_warning) => {
                v.push((i, Action::Delayed))
            }
            _ => {}
        }
    }
    v
}

/// A delay DSN will be owed for this pending recipient once the warning time comes.
fn delay_applies(h: &Header, i: usize, r: &super::state::Rcpt, p: &Policy<'_>, to: &BounceTo) -> bool {
    !r.delay_notified
        && p.delay_warning > 0
        && r.attempts > 0
        && notify_of(&h.attrs, i).delay
        && matches!(to, BounceTo::Sender(_))
}

/// Mark the DSNs in `sent` as queued.
pub fn mark_notified(st: &mut State, sent: &[(usize, Action)]) {
    for &(i, a) in sent {
        if let Some(r) = st.rcpts.get_mut(i) {
            match a {
                Action::Delayed => r.delay_notified = true,
                _ => r.notified = true,
            }
        }
    }
}

/// When this message next needs a look (pending recipients not in flight;
/// a delay warning coming due), `None` if never (all done or in flight).
pub fn next_wake(h: &Header, st: &State, in_flight: &HashSet<usize>, p: &Policy<'_>) -> Option<u64> {
    let to = bounce_to(&h.envelope.sender, p.doublebounceto);
    st.rcpts
        .iter()
        .enumerate()
        .filter(|(i, r)| r.status == Status::Pending && !in_flight.contains(i))
        .map(|(i, r)| {
            if delay_applies(h, i, r, p, &to) {
                r.next.min(h.time.saturating_add(p.delay_warning))
            } else {
                r.next
            }
        })
        .min()
}

/// Every recipient has its final status and its DSN (if any) queued.
pub fn complete(st: &State) -> bool {
    st.rcpts.iter().all(|r| r.done())
}

/// The attribute block for a run with the recipients `idxs`: message-wide
/// attributes as they are; `RCPT.<n>.*` renumbered to the position in the
/// run's argument list, others' left out.
pub fn attrs_for(attrs: &Attrs, idxs: &[usize]) -> Attrs {
    let mut out = Attrs::default();
    for (name, value) in &attrs.0 {
        match name.strip_prefix("RCPT.").and_then(|r| r.split_once('.')) {
            Some((n, rest)) => {
                if let Some(pos) = n.parse::<usize>().ok().and_then(|n| idxs.iter().position(|&i| i == n)) {
                    out.0.push((format!("RCPT.{pos}.{rest}"), value.clone()));
                }
            }
            None => out.0.push((name.clone(), value.clone())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;

    fn header(sender: &str, rcpts: &[&str], attrs: &[(&str, &str)]) -> Header {
        let mut a = Attrs::default();
        for (n, v) in attrs {
            a.push(n, v);
        }
        Header {
            id: "1.1.1".into(),
            time: 1000,
            envelope: Envelope {
                sender: sender.into(),
                recipients: rcpts.iter().map(|r| r.as_bytes().to_vec()).collect(),
            },
            attrs: a,
        }
    }

    fn policy(s: &Schedule) -> Policy<'_> {
        Policy { lifetime: 10_000, schedule: s, delay_warning: 500, doublebounceto: Some(b"pm@here"), max_rcpt: 2 }
    }

    #[test]
    fn grouping() {
        let h = header("s@x", &["a@X.org", "b@y.org", "c@x.org", "d@x.org", "nodomain"], &[]);
        let mut st = State::new(1, 5);
        let none = HashSet::new();
        let g = due(&h, &st, 1000, &none, false, 2);
        assert_eq!(
            g,
            vec![
                (Some("x.org".into()), vec![0, 2]),
                (Some("y.org".into()), vec![1]),
                (Some("x.org".into()), vec![3]),
                (None, vec![4])
            ]
        );
        st.rcpts[0].status = Status::Delivered;
        st.rcpts[1].next = 2000;
        let busy: HashSet<usize> = [2].into();
        assert_eq!(due(&h, &st, 1000, &busy, false, 2), vec![(Some("x.org".into()), vec![3]), (None, vec![4])]);
        assert_eq!(due(&h, &st, 1000, &busy, true, 2).len(), 3);
    }

    #[test]
    fn control_characters_are_never_grouped() {
        let h = header("s@x", &["a@x.org", "b@x.org\r\nRSET", "c@x.org"], &[]);
        let st = State::new(1, 3);
        let none = HashSet::new();
        assert_eq!(due(&h, &st, 1000, &none, false, 5), vec![(Some("x.org".into()), vec![0, 2]), (None, vec![1])]);
        assert!(undeliverable(&h, 1).unwrap().contains("Recipient address contains a control character"));
        let h = header("s@x\n", &["a@x.org"], &[]);
        assert_eq!(due(&h, &State::new(1, 1), 1000, &none, false, 5), vec![(None, vec![0])]);
        assert!(undeliverable(&h, 0).unwrap().ends_with("(#5.1.7)"));
        assert_eq!(bounce_to(b"s@x\n", Some(b"pm")), BounceTo::Postmaster(b"pm".to_vec()));
    }

    #[test]
    fn outcomes() {
        let s = Schedule::default();
        let p = policy(&s);
        let h = header("s@x", &["a@x", "b@x", "c@x"], &[("RCPT.0.NOTIFY", "SUCCESS"), ("RCPT.2.NOTIFY", "NEVER")]);
        let mut st = State::new(1, 3);
        apply(&h, &mut st, &[0, 1, 2], &[Outcome::Delivered("ok".into()), Outcome::Temporary("451".into()), Outcome::Permanent("550".into())], 1000, &p);
        assert_eq!((st.rcpts[0].status, st.rcpts[0].notified), (Status::Delivered, false)); // success DSN owed
        assert_eq!((st.rcpts[1].status, st.rcpts[1].next, st.rcpts[1].attempts), (Status::Pending, 1400, 1));
        assert_eq!((st.rcpts[2].status, st.rcpts[2].notified), (Status::Failed, true)); // NEVER
        assert_eq!(owed(&h, &st, 1000, &p), vec![(0, Action::Relayed)]);
        assert!(!complete(&st));
        // A final status is never undone.
        apply(&h, &mut st, &[0], &[Outcome::Permanent("x".into())], 1000, &p);
        assert_eq!(st.rcpts[0].status, Status::Delivered);
        // Past the lifetime a temporary failure is permanent.
        apply(&h, &mut st, &[1], &[Outcome::Temporary("451 later".into())], 11_000, &p);
        assert_eq!((st.rcpts[1].status, st.rcpts[1].expired), (Status::Failed, true));
        assert_eq!(st.rcpts[1].text, "451 later");
        assert_eq!(owed(&h, &st, 11_000, &p), vec![(0, Action::Relayed), (1, Action::Failed)]);
        mark_notified(&mut st, &[(0, Action::Relayed), (1, Action::Failed)]);
        assert!(complete(&st));
    }

    #[test]
    fn bounce_addressing() {
        assert_eq!(bounce_to(b"a@b", Some(b"pm")), BounceTo::Sender(b"a@b".to_vec()));
        assert_eq!(bounce_to(b"", Some(b"pm")), BounceTo::Postmaster(b"pm".to_vec()));
        assert_eq!(bounce_to(b"", None), BounceTo::Nobody);
        assert_eq!(bounce_to(b"#@[]", Some(b"pm")), BounceTo::Nobody);
        // Null sender without postmaster: nothing owed, message completes.
        let s = Schedule::default();
        let mut p = policy(&s);
        p.doublebounceto = None;
        let h = header("", &["a@x"], &[("RCPT.0.NOTIFY", "SUCCESS,FAILURE")]);
        let mut st = State::new(1, 1);
        apply(&h, &mut st, &[0], &[Outcome::Permanent("550".into())], 1000, &p);
        assert!(complete(&st));
        let mut st = State::new(1, 1);
        apply(&h, &mut st, &[0], &[Outcome::Delivered("250".into())], 1000, &p);
        assert!(complete(&st));
    }

    #[test]
    fn delay_warnings() {
        let s = Schedule::List(vec![100]);
        let p = policy(&s);
        let h = header("s@x", &["a@x", "b@x"], &[("RCPT.0.NOTIFY", "DELAY,FAILURE")]);
        let mut st = State::new(1, 2);
        apply(&h, &mut st, &[0, 1], &[Outcome::Temporary("451".into()), Outcome::Temporary("451".into())], 1000, &p);
        assert_eq!(owed(&h, &st, 1499, &p), vec![]);
        assert_eq!(owed(&h, &st, 1500, &p), vec![(0, Action::Delayed)]);
        let none = HashSet::new();
        assert_eq!(next_wake(&h, &st, &none, &p), Some(1100));
        mark_notified(&mut st, &[(0, Action::Delayed)]);
        assert_eq!(owed(&h, &st, 1500, &p), vec![]);
        assert!(!complete(&st));
    }

    #[test]
    fn attrs_renumbered() {
        let mut a = Attrs::default();
        a.push("BODY", "8BITMIME");
        a.push("RCPT.0.NOTIFY", "NEVER");
        a.push("RCPT.2.ORCPT", "rfc822;c@x");
        a.push("RCPT.3.NOTIFY", "SUCCESS");
        let out = attrs_for(&a, &[2, 3]);
        assert_eq!(out.encode(), "BODY=8BITMIME\nRCPT.0.ORCPT=rfc822;c@x\nRCPT.1.NOTIFY=SUCCESS\n");
        assert_eq!(domain_of(b"a@B.Example"), Some("b.example".into()));
        assert_eq!(domain_of(b"a@"), None);
        assert_eq!(domain_of(b"\"a@b\"@c"), Some("c".into()));
    }
}
