//! What queue-run accepts from the drop folder (`QUEUE_DIR/maildrop/`,
//! written by queue-drop for local users, smtpd-queue(5) MAILDROP): every
//! drop file is untrusted input, checked here before it is queued through
//! queue-inject, and the `Received:` line that records who sent it. Pure:
//! the caller opened the file, read its header and fstat'ed it.

use crate::envelope::{Attrs, Envelope, MAX_ADDR};
use crate::queue::drop::{local_attr, SUBMITTER_UID};
use crate::queue::format::Header;
use crate::queue::{control_char, inject::MAX_RCPT};

/// A drop file that passed: what to queue, and who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub envelope: Envelope,
    /// The local attributes, then `SUBMITTER_UID`.
    pub attrs: Attrs,
    pub uid: u32,
}

/// Longest attribute value from a local user (ENVID is at most 100, ORCPT
/// about 500 octets in SMTP).
const MAX_VALUE: usize = 1000;

/// Check the drop file `name`: its header, its owner `file_uid` and link
/// count. The owner is the real uid of the process that created it (only
/// root can give a file away), and `SUBMITTER_UID` must say the same.
pub fn check(h: &Header, name: &str, file_uid: u32, nlink: u64) -> Result<Checked, String> {
    if h.id != name {
        return Err(format!("file says id {}", h.id));
    }
    if nlink != 1 {
        return Err(format!("{nlink} links to the file"));
    }
    let env = &h.envelope;
    if env.recipients.is_empty() || env.recipients.len() > MAX_RCPT {
        return Err(format!("{} recipients", env.recipients.len()));
    }
    for a in std::iter::once(&env.sender).chain(&env.recipients) {
        if a.len() > MAX_ADDR {
            return Err("an address longer than 1003 octets".into());
        }
        if control_char(a).is_some() {
            return Err("an address with a control character".into());
        }
    }
    let mut attrs = Attrs::default();
    let mut uid = None;
    for (name, value) in &h.attrs.0 {
        if name == SUBMITTER_UID {
            if uid.is_some() {
                return Err("two SUBMITTER_UID attributes".into());
            }
            uid = Some(std::str::from_utf8(value).ok().and_then(|v| v.parse::<u32>().ok()).ok_or("a bad SUBMITTER_UID")?);
            continue;
        }
        if !local_attr(name) {
            return Err(format!("attribute {name}, which a local user may not give"));
        }
        let rcpt = name.strip_prefix("RCPT.").and_then(|r| r.split_once('.')).and_then(|(n, _)| n.parse::<usize>().ok());
        if rcpt.is_some_and(|n| n >= env.recipients.len()) {
            return Err(format!("attribute {name} for no recipient"));
        }
        if value.len() > MAX_VALUE || control_char(value).is_some() {
            return Err(format!("a bad {name} value"));
        }
        attrs.0.push((name.clone(), value.clone()));
    }
    let uid = uid.ok_or("no SUBMITTER_UID")?;
    if uid != file_uid {
        return Err(format!("SUBMITTER_UID {uid} but the file belongs to uid {file_uid}"));
    }
    attrs.push(SUBMITTER_UID, uid.to_string());
    Ok(Checked { envelope: env.clone(), attrs, uid })
}

/// The `Received:` field put before a local message (as Postfix's pickup
/// does, RFC 5321 4.4): the host, the submitter's uid and name, the drop
/// file's name, the time.
pub fn received(host: &str, uid: u32, user: Option<&str>, name: &str, date: &str) -> String {
    let who = match user {
        Some(u) if !u.is_empty() && u.bytes().all(|b| b.is_ascii_graphic() && !b"()\\".contains(&b)) => format!("uid {uid} ({u})"),
        _ => format!("uid {uid}"),
    };
    format!("Received: by {host} (smtpd-rs queue-run, from {who})\n\tid {name}; {date}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(attrs: &[(&str, &str)], rcpts: &[&str]) -> Header {
        let mut a = Attrs::default();
        for (n, v) in attrs {
            a.push(n, v);
        }
        Header {
            id: "1700000000.ab".into(),
            time: 1,
            envelope: Envelope { sender: b"me@h.test".to_vec(), recipients: rcpts.iter().map(|r| r.as_bytes().to_vec()).collect() },
            attrs: a,
        }
    }

    #[test]
    fn table() {
        let ok = header(&[("BODY", "8BITMIME"), ("RCPT.0.NOTIFY", "NEVER"), ("SUBMITTER_UID", "65534")], &["a@b.test"]);
        let c = check(&ok, "1700000000.ab", 65534, 1).unwrap();
        assert_eq!(c.uid, 65534);
        assert_eq!(c.attrs.encode(), "BODY=8BITMIME\nRCPT.0.NOTIFY=NEVER\nSUBMITTER_UID=65534\n");
        let cases: &[(Header, &str, u32, u64, &str)] = &[
            (ok.clone(), "other", 65534, 1, "file says id"),
            (ok.clone(), "1700000000.ab", 0, 1, "belongs to uid 0"),
            (ok.clone(), "1700000000.ab", 65534, 2, "links"),
            (header(&[("BODY", "7BIT")], &["a@b.test"]), "1700000000.ab", 1, 1, "no SUBMITTER_UID"),
            (header(&[("SUBMITTER_UID", "x")], &["a@b.test"]), "1700000000.ab", 1, 1, "bad SUBMITTER_UID"),
            (header(&[("SUBMITTER_UID", "1"), ("SUBMITTER_UID", "1")], &["a@b.test"]), "1700000000.ab", 1, 1, "two"),
            (header(&[("SUBMITTER_UID", "1"), ("CLIENT_ADDR", "192.0.2.1")], &["a@b.test"]), "1700000000.ab", 1, 1, "CLIENT_ADDR"),
            (header(&[("SUBMITTER_UID", "1"), ("RCPT.1.NOTIFY", "NEVER")], &["a@b.test"]), "1700000000.ab", 1, 1, "for no recipient"),
            (header(&[("SUBMITTER_UID", "1"), ("ENVID", "a\nb")], &["a@b.test"]), "1700000000.ab", 1, 1, "bad ENVID"),
            (header(&[("SUBMITTER_UID", "1")], &["a@b.test\r\nRSET"]), "1700000000.ab", 1, 1, "control character"),
        ];
        for (h, name, uid, nlink, want) in cases {
            let e = check(h, name, *uid, *nlink).unwrap_err();
            assert!(e.contains(want), "{e} (wanted {want})");
        }
    }

    #[test]
    fn received_field() {
        assert_eq!(
            received("mx.test", 65534, Some("nobody"), "1.ab", "Thu, 1 Jan 1970 00:00:00 +0000"),
            "Received: by mx.test (smtpd-rs queue-run, from uid 65534 (nobody))\n\tid 1.ab; Thu, 1 Jan 1970 00:00:00 +0000\n"
        );
        assert!(received("h", 7, Some("a(b"), "n", "d").contains("from uid 7)"));
    }
}
