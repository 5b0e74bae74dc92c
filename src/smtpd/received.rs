//! The `Received:` trace header (RFC 5321 4.4) with the protocol word of
//! RFC 3848 / RFC 6531 and an RFC 5322 date. Pure: the caller gives the time.

use crate::date;

/// What the header says about one message.
#[derive(Debug, Clone, Copy)]
pub struct Trace<'a> {
    /// HELO/EHLO argument (already checked: a domain or an address literal).
    pub helo: &'a [u8],
    /// The client's host name, if known.
    pub remote_name: Option<&'a str>,
    /// The client's IP address, if known.
    pub remote_ip: Option<&'a str>,
    /// Our name.
    pub hostname: &'a str,
    /// RFC 3848 / RFC 6531 protocol word, see `protocol_word`.
    pub proto: &'a str,
    /// TLS protocol and cipher, as a comment after the protocol word.
    pub tls: Option<&'a str>,
    /// The recipient, named only when the message has exactly one.
    pub rcpt: Option<&'a [u8]>,
    /// The AUTH user, shown only when the operator asks for it
    /// (SMTPD_RECEIVED_AUTH): it tells the world who sent the message.
    pub auth_user: Option<&'a str>,
    /// The message's id (RFC 5321 4.4 `ID`): the queue id, or the
    /// session's own id for the message where the queue names none first.
    pub id: Option<&'a str>,
    /// Seconds since the epoch.
    pub now: i64,
}

/// RFC 3848 (SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA) and RFC 6531 3.7.3
/// (UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA) "with" words.
pub fn protocol_word(esmtp: bool, tls: bool, auth: bool, utf8: bool) -> &'static str {
    match (esmtp || utf8, utf8, tls, auth) {
        (false, _, _, _) => "SMTP",
        (true, false, false, false) => "ESMTP",
        (true, false, true, false) => "ESMTPS",
        (true, false, false, true) => "ESMTPA",
        (true, false, true, true) => "ESMTPSA",
        (true, true, false, false) => "UTF8SMTP",
        (true, true, true, false) => "UTF8SMTPS",
        (true, true, false, true) => "UTF8SMTPA",
        (true, true, true, true) => "UTF8SMTPSA",
    }
}

/// The header with LF line ends (as the queue stores messages), folded
/// with a tab.
pub fn received_header(t: &Trace<'_>) -> Vec<u8> {
    let mut h = Vec::with_capacity(200);
    h.extend_from_slice(b"Received: from ");
    h.extend_from_slice(t.helo);
    match (t.remote_name, t.remote_ip) {
        (Some(n), Some(ip)) => h.extend_from_slice(format!(" ({n} [{ip}])").as_bytes()),
        (None, Some(ip)) => h.extend_from_slice(format!(" ([{ip}])").as_bytes()),
        (Some(n), None) => h.extend_from_slice(format!(" ({n})").as_bytes()),
        (None, None) => {}
    }
    if let Some(u) = t.auth_user {
        // As Postfix's smtpd_sasl_authenticated_header; the name is shown
        // only if it is printable ASCII without parentheses or backslashes,
        // so that it cannot break the comment or fold the header.
        if u.bytes().all(|b| b.is_ascii_graphic() && b != b'(' && b != b')' && b != b'\\') {
            h.extend_from_slice(format!("\n\t(Authenticated sender: {u})").as_bytes());
        }
    }
    h.extend_from_slice(format!("\n\tby {} (smtpd-rs) with {}", t.hostname, t.proto).as_bytes());
    if let Some(c) = t.tls {
        h.extend_from_slice(format!(" ({c})").as_bytes());
    }
    if let Some(id) = t.id.filter(|id| id_ok(id) && id_ok(t.hostname)) {
        // In msg-id form (`<id@host>`): the queue id has dots, which an
        // RFC 5321 Atom may not, and a dot-atom is allowed only there.
        h.extend_from_slice(format!("\n\tid <{id}@{}>", t.hostname).as_bytes());
    }
    if let Some(r) = t.rcpt {
        h.extend_from_slice(b"\n\tfor <");
        h.extend_from_slice(r);
        h.push(b'>');
    }
    h.extend_from_slice(format!(";\n\t{}\n", date::rfc5322(t.now)).as_bytes());
    h
}

/// Dot-atom text (RFC 5322 3.2.3) of the characters ids and host names use.
fn id_ok(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(protocol_word(false, false, false, false), "SMTP");
        assert_eq!(protocol_word(true, false, false, false), "ESMTP");
        assert_eq!(protocol_word(true, true, true, false), "ESMTPSA");
        assert_eq!(protocol_word(true, true, false, true), "UTF8SMTPS");
    }

    #[test]
    fn header() {
        let t = Trace {
            helo: b"client.example",
            remote_name: None,
            remote_ip: Some("192.0.2.1"),
            hostname: "mx.example.org",
            proto: "ESMTP",
            tls: None,
            rcpt: Some(b"u@example.org"),
            auth_user: None,
            id: None,
            now: 0,
        };
        assert_eq!(
            String::from_utf8(received_header(&t)).unwrap(),
            "Received: from client.example ([192.0.2.1])\n\tby mx.example.org (smtpd-rs) with ESMTP\n\tfor <u@example.org>;\n\tThu, 1 Jan 1970 00:00:00 +0000\n"
        );
        let t = Trace { proto: "ESMTPS", tls: Some("using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384"), rcpt: None, ..t };
        assert!(String::from_utf8(received_header(&t))
            .unwrap()
            .contains("with ESMTPS (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384);\n"));
        let t = Trace { proto: "ESMTPSA", auth_user: Some("alice"), ..t };
        assert!(String::from_utf8(received_header(&t))
            .unwrap()
            .starts_with("Received: from client.example ([192.0.2.1])\n\t(Authenticated sender: alice)\n\tby "));
        let t = Trace { auth_user: Some("a)b\nc"), ..t };
        assert!(!String::from_utf8(received_header(&t)).unwrap().contains("Authenticated"));
        let t = Trace { auth_user: None, id: Some("1764930000.4521.3"), rcpt: Some(b"u@example.org"), ..t };
        assert!(String::from_utf8(received_header(&t))
            .unwrap()
            .contains("TLS_AES_256_GCM_SHA384)\n\tid <1764930000.4521.3@mx.example.org>\n\tfor <u@example.org>;\n"));
        // Never a broken header from an odd id.
        let t = Trace { id: Some("a b>"), ..t };
        assert!(!String::from_utf8(received_header(&t)).unwrap().contains("\tid "));
    }
}
