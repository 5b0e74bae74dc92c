//! The `Received:` trace header (RFC 5321 4.4) with the protocol word of
//! RFC 3848 / RFC 6531 and an RFC 5322 date. Pure: the caller gives the time.

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
    if let Some(r) = t.rcpt {
        h.extend_from_slice(b"\n\tfor <");
        h.extend_from_slice(r);
        h.push(b'>');
    }
    h.extend_from_slice(format!(";\n\t{}\n", rfc5322_date(t.now)).as_bytes());
    h
}

/// `Wed, 25 Nov 2026 16:37:15 +0000` (RFC 5322 3.3), in UTC.
pub fn rfc5322_date(now: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = now.div_euclid(86_400);
    let secs = now.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 -> (year, month 1..=12, day 1..=31), H. Hinnant's
/// proleptic Gregorian algorithm.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322_date(1_795_624_635), "Wed, 25 Nov 2026 16:37:15 +0000");
    }

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
    }
}
