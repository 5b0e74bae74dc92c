//! Smarthost AUTH (RFC 4954): the credentials file and the client side of
//! PLAIN (RFC 4616), LOGIN and CRAM-MD5 (RFC 2195). Pure: the session sends
//! what these functions return.
//!
//! File format, one entry per line: `host user password`; `host` is the
//! relay as written in smtproutes (or the MX host name, or `*` for any);
//! the password is the rest of the line (it may contain spaces). Blank lines
//! and `#` lines are skipped.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// The first entry for `host` (case-insensitive), else the first `*` entry.
pub fn lookup(text: &str, host: &str) -> Option<Credentials> {
    let mut star = None;
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut it = line.splitn(3, [' ', '\t']);
        let (Some(h), Some(user), Some(pw)) = (it.next(), it.next(), it.next()) else { continue };
        let c = Credentials { user: user.to_string(), password: pw.trim_start().trim_end_matches(['\r', '\n']).to_string() };
        if h.eq_ignore_ascii_case(host.trim_end_matches('.')) {
            return Some(c);
        }
        if h == "*" && star.is_none() {
            star = Some(c);
        }
    }
    star
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    CramMd5,
    Plain,
    Login,
}

/// Our preference among what the server offers: CRAM-MD5 (the password
/// never crosses the wire), then PLAIN, then LOGIN.
pub fn choose(offered: &[String]) -> Option<Mechanism> {
    let has = |m: &str| offered.iter().any(|o| o == m);
    if has("CRAM-MD5") {
        Some(Mechanism::CramMd5)
    } else if has("PLAIN") {
        Some(Mechanism::Plain)
    } else if has("LOGIN") {
        Some(Mechanism::Login)
    } else {
        None
    }
}

/// `AUTH PLAIN <base64(\0user\0password)>` as one command (initial response).
pub fn plain_command(c: &Credentials) -> String {
    let mut raw = vec![0u8];
    raw.extend_from_slice(c.user.as_bytes());
    raw.push(0);
    raw.extend_from_slice(c.password.as_bytes());
    format!("AUTH PLAIN {}\r\n", B64.encode(raw))
}

pub fn b64(s: &str) -> String {
    format!("{}\r\n", B64.encode(s.as_bytes()))
}

/// The answer line to a CRAM-MD5 challenge (the text of the 334 reply):
/// base64(`user hex(hmac-md5(password, challenge))`). `None` if the
/// challenge is not base64.
pub fn cram_md5_response(c: &Credentials, challenge_b64: &[u8]) -> Option<String> {
    let challenge = B64.decode(challenge_b64.trim_ascii()).ok()?;
    let mut mac = Hmac::<Md5>::new_from_slice(c.password.as_bytes()).ok()?;
    mac.update(&challenge);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some(b64(&format!("{} {hex}", c.user)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_lookup() {
        let f = "# x\nsmart.example.org alice s3cret with space\n* bob pw\nSMART2.example alice2 p\n";
        assert_eq!(lookup(f, "smart.example.org"), Some(Credentials { user: "alice".into(), password: "s3cret with space".into() }));
        assert_eq!(lookup(f, "smart2.example."), Some(Credentials { user: "alice2".into(), password: "p".into() }));
        assert_eq!(lookup(f, "other"), Some(Credentials { user: "bob".into(), password: "pw".into() }));
        assert_eq!(lookup("a b\n", "a"), None);
    }

    #[test]
    fn mechanisms() {
        let c = Credentials { user: "tim".into(), password: "tanstaaftanstaaf".into() };
        // RFC 2195 section 2's example.
        let r = cram_md5_response(&c, b"PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+").unwrap();
        assert_eq!(r, "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n");
        assert_eq!(cram_md5_response(&c, b"!!"), None);
        let c = Credentials { user: "u".into(), password: "p".into() };
        assert_eq!(plain_command(&c), "AUTH PLAIN AHUAcA==\r\n");
        assert_eq!(choose(&["LOGIN".into(), "PLAIN".into()]), Some(Mechanism::Plain));
        assert_eq!(choose(&["XOAUTH2".into()]), None);
    }
}
