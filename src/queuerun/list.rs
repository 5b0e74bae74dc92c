//! `queue-run --list`: one block per message, like qmail-qread or
//! `postqueue -p`. Pure formatting: no I/O here.

use crate::queue::format::Header;
use crate::queue::printable_address;
use super::state::{State, Status};

/// `1h02m`, `3d04h`, `45s`.
pub fn span(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        s => format!("{}d{:02}h", s / 86400, s / 3600 % 24),
    }
}

/// The block for one message.
pub fn entry(h: &Header, size: u64, st: Option<&State>, now: u64) -> String {
    let mut s = format!(
        "{}  age {}  {} bytes  from <{}>\n",
        h.id,
        span(now.saturating_sub(h.time)),
        size,
        printable_address(&h.envelope.sender)
    );
    for (i, r) in h.envelope.recipients.iter().enumerate() {
        let rs = st.and_then(|st| st.rcpts.get(i));
        let what = match rs {
            None => "pending  not tried yet".to_owned(),
            Some(r) => match r.status {
                Status::Delivered => "delivered".to_owned(),
                Status::Failed if r.notified => format!("failed{}  bounced", if r.expired { " (queue lifetime)" } else { "" }),
                Status::Failed => format!("failed{}  bounce pending", if r.expired { " (queue lifetime)" } else { "" }),
                Status::Pending if r.attempts == 0 => "pending  not tried yet".to_owned(),
                Status::Pending if r.next <= now => format!("pending  attempts {}  next now", r.attempts),
                Status::Pending => format!("pending  attempts {}  next in {}", r.attempts, span(r.next - now)),
            },
        };
        s.push_str(&format!("  <{}>  {what}", printable_address(r)));
        if let Some(r) = rs.filter(|r| !r.text.is_empty()) {
            s.push_str("  ");
            s.push_str(&r.text);
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Attrs, Envelope};

    #[test]
    fn spans() {
        assert_eq!(span(5), "5s");
        assert_eq!(span(400), "6m40s");
        assert_eq!(span(3720), "1h02m");
        assert_eq!(span(2 * 86400 + 3600), "2d01h");
    }

    #[test]
    fn block() {
        let h = Header {
            id: "100.1.1".into(),
            time: 100,
            envelope: Envelope {
                sender: b"a@b".to_vec(),
                recipients: vec![b"c@d".to_vec(), b"e@f".to_vec(), b"g@h".to_vec()],
            },
            attrs: Attrs::default(),
        };
        let mut st = State::new(1, 3);
        st.rcpts[0].status = Status::Delivered;
        st.rcpts[0].text = "250 ok".into();
        st.rcpts[1].attempts = 2;
        st.rcpts[1].next = 600;
        st.rcpts[1].text = "451 later".into();
        let out = entry(&h, 1234, Some(&st), 200);
        assert_eq!(
            out,
            "100.1.1  age 1m40s  1234 bytes  from <a@b>\n  <c@d>  delivered  250 ok\n  <e@f>  pending  attempts 2  next in 6m40s  451 later\n  <g@h>  pending  not tried yet\n"
        );
        assert!(entry(&h, 1, None, 100).contains("<g@h>  pending  not tried yet"));
    }
}
