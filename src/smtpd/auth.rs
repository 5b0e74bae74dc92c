//! SMTP AUTH (RFC 4954) for smtpd-rs, the way the fehcom AUTH patch for
//! qmail-smtpd does it: SMTPAUTH selects the mechanisms, PLAIN, LOGIN and
//! CRAM-MD5 exchanges are small state machines, and the credentials go to a
//! checkpassword program (see checkpassword.rs). Pure: no I/O here; the
//! session feeds lines in and writes the replies out.
//!
//! SMTPAUTH (read case-insensitively, as the patch does): unset, `-` or `0`:
//! no AUTH; empty (or any other value): PLAIN and LOGIN; `cram...`: CRAM-MD5
//! only; `+cram...`: PLAIN, LOGIN and CRAM-MD5; a leading `!` (`!`, `!cram`,
//! `!+cram`): the same, and AUTH is required before MAIL.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};

// Replies (RFC 4954 sections 4, 6; RFC 3463 codes).
pub const AUTH_OK: &str = "235 2.7.0 authentication successful\r\n";
pub const AUTH_FAILED: &str = "535 5.7.8 authentication credentials invalid\r\n";
pub const AUTH_TEMP: &str = "454 4.7.0 temporary authentication failure\r\n";
pub const AUTH_CANCELLED: &str = "501 5.7.0 authentication cancelled\r\n";
pub const AUTH_BAD_BASE64: &str = "501 5.5.2 cannot decode the base64 response\r\n";
pub const AUTH_MALFORMED: &str = "501 5.5.2 malformed authentication response\r\n";
pub const AUTH_LINE_TOO_LONG: &str = "500 5.5.6 authentication exchange line is too long\r\n";
pub const AUTH_UNKNOWN_MECH: &str = "504 5.5.4 unrecognized authentication type\r\n";
pub const AUTH_SYNTAX: &str = "501 5.5.4 syntax: AUTH mechanism [initial-response]\r\n";
pub const AUTH_ALREADY: &str = "503 5.5.1 already authenticated\r\n";
pub const AUTH_IN_TRANSACTION: &str = "503 5.5.1 AUTH not allowed during a mail transaction\r\n";
pub const AUTH_NEEDS_TLS: &str = "538 5.7.11 encryption required for requested authentication mechanism\r\n";
pub const AUTH_REQUIRED: &str = "530 5.7.0 authentication required\r\n";
pub const AUTH_TOO_MANY: &str = "421 4.7.0 too many authentication failures, closing connection\r\n";

/// RFC 4954 section 4: a line of the exchange may be 12288 octets long.
pub const MAX_AUTH_LINE: usize = 12288;
/// Longest user name or password passed on to checkpassword.
pub const MAX_CREDENTIAL: usize = 1024;
/// Failed attempts before the session is closed (with AUTH_TOO_MANY).
pub const MAX_FAILURES: u32 = 3;
/// Pause before a 535, against password guessing (the patch sleeps 5 s).
pub const FAILURE_DELAY_SECS: u64 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mech {
    Plain,
    Login,
    CramMd5,
}

impl Mech {
    /// The name as the patch passes it in SMTPAUTHMETHOD and logs it.
    pub fn lower_name(self) -> &'static str {
        match self {
            Mech::Plain => "plain",
            Mech::Login => "login",
            Mech::CramMd5 => "cram-md5",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Mech::Plain => "PLAIN",
            Mech::Login => "LOGIN",
            Mech::CramMd5 => "CRAM-MD5",
        }
    }
}

/// What SMTPAUTH allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthPolicy {
    pub plain_login: bool,
    pub cram: bool,
    /// `!`: MAIL is refused (530 5.7.0) until AUTH succeeded.
    pub required: bool,
}

impl AuthPolicy {
    /// The EHLO keyword line's text, e.g. `AUTH LOGIN PLAIN CRAM-MD5`
    /// (mechanisms in the patch's order).
    pub fn ehlo_keyword(&self) -> String {
        let mut s = String::from("AUTH");
        if self.plain_login {
            s.push_str(" LOGIN PLAIN");
        }
        if self.cram {
            s.push_str(" CRAM-MD5");
        }
        s
    }

    pub fn allows(&self, m: Mech) -> bool {
        match m {
            Mech::Plain | Mech::Login => self.plain_login,
            Mech::CramMd5 => self.cram,
        }
    }
}

/// SMTPAUTH's value (None: unset) -> the policy, or None when AUTH is off.
pub fn parse_smtpauth(v: Option<&str>) -> Option<AuthPolicy> {
    let v = v?.to_ascii_lowercase();
    if v == "-" || v == "0" {
        return None;
    }
    let (required, rest) = match v.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, v.as_str()),
    };
    let p = if rest.starts_with("+cram") {
        AuthPolicy { plain_login: true, cram: true, required }
    } else if rest.starts_with("cram") {
        AuthPolicy { plain_login: false, cram: true, required }
    } else {
        AuthPolicy { plain_login: true, cram: false, required }
    };
    Some(p)
}

/// The mechanism named in `AUTH <name>`, case-insensitively.
pub fn parse_mech(name: &[u8]) -> Option<Mech> {
    if name.eq_ignore_ascii_case(b"PLAIN") {
        Some(Mech::Plain)
    } else if name.eq_ignore_ascii_case(b"LOGIN") {
        Some(Mech::Login)
    } else if name.eq_ignore_ascii_case(b"CRAM-MD5") {
        Some(Mech::CramMd5)
    } else {
        None
    }
}

/// What the exchange yields for checkpassword: `user\0secret\0challenge\0`
/// on fd 3, where `secret` is the password (PLAIN, LOGIN; challenge empty)
/// or the hex HMAC-MD5 digest (CRAM-MD5; challenge `<pid.time@host>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub mech: Mech,
    pub user: Vec<u8>,
    pub secret: Vec<u8>,
    pub challenge: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a password, even in a test failure.
        write!(f, "Credentials {{ {:?}, user {:?} }}", self.mech, String::from_utf8_lossy(&self.user))
    }
}

impl Credentials {
    /// The checkpassword input: `user\0secret\0challenge\0`.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.user.len() + self.secret.len() + self.challenge.len() + 3);
        for part in [&self.user, &self.secret, &self.challenge] {
            v.extend_from_slice(part);
            v.push(0);
        }
        v
    }
}

/// One step of an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this line (`334 ...\r\n`) and feed the client's answer to `respond`.
    Ask(String),
    /// The exchange is complete: run checkpassword with these.
    Check(Credentials),
    /// The exchange failed; send this reply. The session stays as it was.
    Fail(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    LoginUser,
    LoginPass { user: Vec<u8> },
    Plain,
    Cram { challenge: Vec<u8> },
    Over,
}

/// An AUTH exchange in progress.
#[derive(Debug, Clone)]
pub struct Exchange {
    mech: Mech,
    state: State,
}

/// CRAM-MD5's challenge, `<pid.time@host>` as the patch forms it.
pub fn cram_challenge(pid: u32, unix_time: u64, host: &str) -> Vec<u8> {
    format!("<{pid}.{unix_time}@{host}>").into_bytes()
}

/// Start `AUTH mech [initial]`. `challenge` is used by CRAM-MD5 (see
/// [`cram_challenge`]); an initial response with CRAM-MD5 is refused.
pub fn start(mech: Mech, initial: Option<&[u8]>, challenge: Vec<u8>) -> (Exchange, Step) {
    let mut ex = Exchange { mech, state: State::Over };
    let step = match (mech, initial) {
        (Mech::Login, None) => {
            ex.state = State::LoginUser;
            Step::Ask("334 VXNlcm5hbWU6\r\n".into()) // "Username:"
        }
        (Mech::Login, Some(i)) => {
            ex.state = State::LoginUser;
            ex.respond(i)
        }
        (Mech::Plain, None) => {
            ex.state = State::Plain;
            Step::Ask("334 \r\n".into())
        }
        (Mech::Plain, Some(i)) => {
            ex.state = State::Plain;
            ex.respond(i)
        }
        (Mech::CramMd5, None) => {
            let ask = format!("334 {}\r\n", b64().encode(&challenge));
            ex.state = State::Cram { challenge };
            Step::Ask(ask)
        }
        (Mech::CramMd5, Some(_)) => Step::Fail(AUTH_SYNTAX),
    };
    (ex, step)
}

impl Exchange {
    pub fn mech(&self) -> Mech {
        self.mech
    }

    /// The client's answer (one line, without CRLF).
    pub fn respond(&mut self, line: &[u8]) -> Step {
        let state = std::mem::replace(&mut self.state, State::Over);
        if state == State::Over {
            return Step::Fail(AUTH_MALFORMED);
        }
        if line.len() > MAX_AUTH_LINE {
            return Step::Fail(AUTH_LINE_TOO_LONG);
        }
        if line == b"*" {
            return Step::Fail(AUTH_CANCELLED);
        }
        let Some(data) = decode(line) else { return Step::Fail(AUTH_BAD_BASE64) };
        match state {
            State::LoginUser => {
                if !good_credential(&data) {
                    return Step::Fail(AUTH_MALFORMED);
                }
                self.state = State::LoginPass { user: data };
                Step::Ask("334 UGFzc3dvcmQ6\r\n".into()) // "Password:"
            }
            State::LoginPass { user } => {
                if !good_credential(&data) {
                    return Step::Fail(AUTH_MALFORMED);
                }
                Step::Check(Credentials { mech: Mech::Login, user, secret: data, challenge: Vec::new() })
            }
            State::Plain => {
                // RFC 4616: [authzid] NUL authcid NUL passwd
                let mut parts = data.splitn(3, |&b| b == 0);
                let (Some(authz), Some(user), Some(pass)) = (parts.next(), parts.next(), parts.next()) else {
                    return Step::Fail(AUTH_MALFORMED);
                };
                if !good_credential(user) || !good_credential(pass) {
                    return Step::Fail(AUTH_MALFORMED);
                }
                // No proxy authentication: an authzid must name the same user.
                if !authz.is_empty() && authz != user {
                    return Step::Fail(AUTH_FAILED);
                }
                Step::Check(Credentials { mech: Mech::Plain, user: user.to_vec(), secret: pass.to_vec(), challenge: Vec::new() })
            }
            State::Cram { challenge } => {
                // "user hexdigest", split at the last space.
                let Some(sp) = data.iter().rposition(|&b| b == b' ') else { return Step::Fail(AUTH_MALFORMED) };
                let user = data[..sp].to_vec();
                let digest = data[sp + 1..].to_vec();
                if !good_credential(&user) || digest.len() != 32 || !digest.iter().all(u8::is_ascii_hexdigit) {
                    return Step::Fail(AUTH_MALFORMED);
                }
                Step::Check(Credentials { mech: Mech::CramMd5, user, secret: digest.to_ascii_lowercase(), challenge })
            }
            State::Over => Step::Fail(AUTH_MALFORMED),
        }
    }
}

/// Non-empty, bounded, no NUL (it would split checkpassword's fields).
fn good_credential(b: &[u8]) -> bool {
    !b.is_empty() && b.len() <= MAX_CREDENTIAL && !b.contains(&0)
}

/// Base64 with or without padding; `=` alone is the empty response.
fn decode(line: &[u8]) -> Option<Vec<u8>> {
    if line == b"=" {
        return Some(Vec::new());
    }
    b64().decode(line).ok()
}

fn b64() -> GeneralPurpose {
    GeneralPurpose::new(&alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent))
}

/// The AUTH command's argument: mechanism and optional initial response.
pub fn parse_auth_args(args: &[u8]) -> Result<(Mech, Option<&[u8]>), &'static str> {
    let args = args.trim_ascii();
    let mut it = args.splitn(2, |&b| b == b' ');
    let name = it.next().unwrap_or_default();
    if name.is_empty() {
        return Err(AUTH_SYNTAX);
    }
    let mech = parse_mech(name).ok_or(AUTH_UNKNOWN_MECH)?;
    let initial = it.next().map(<[u8]>::trim_ascii).filter(|s| !s.is_empty());
    if initial.is_some_and(|i| i.contains(&b' ')) {
        return Err(AUTH_SYNTAX);
    }
    Ok((mech, initial))
}

/// The variables the AUTH patch sets after a success, for the queue
/// program and the log: TCPREMOTEINFO, SMTPAUTHUSER and SMTP_AUTH_USER (the
/// user), SMTPAUTHMETHOD (`plain`, `login`, `cram-md5`), RELAYCLIENT (empty:
/// an authenticated client may relay).
pub fn success_env(user: &str, mech: Mech) -> Vec<(&'static str, String)> {
    vec![
        ("TCPREMOTEINFO", user.to_owned()),
        ("SMTPAUTHUSER", user.to_owned()),
        ("SMTP_AUTH_USER", user.to_owned()),
        ("SMTPAUTHMETHOD", mech.lower_name().to_owned()),
        ("RELAYCLIENT", String::new()),
    ]
}

/// The MAIL parameter `AUTH=` (RFC 4954 section 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailAuth {
    /// `AUTH=<>`: the submitter is not known.
    Unknown,
    /// `AUTH=<mailbox>`, xtext-decoded.
    Mailbox(Vec<u8>),
}

/// Parse the value of `AUTH=`; None when it is not valid xtext. The session
/// keeps the value only from an authenticated (or trusted) client and treats
/// it as `<>` otherwise, as RFC 4954 section 5 says.
pub fn parse_mail_auth(value: &[u8]) -> Option<MailAuth> {
    if value == b"<>" {
        return Some(MailAuth::Unknown);
    }
    if value.is_empty() || value.len() > 1000 {
        return None;
    }
    crate::xtext::decode(value).filter(|v| !v.is_empty()).map(MailAuth::Mailbox)
}

/// HMAC-MD5 of `challenge` keyed by `secret`, in lower-case hex: what a
/// CRAM-MD5 client sends after the user name (RFC 2195).
pub fn cram_md5_digest(secret: &[u8], challenge: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = match Hmac::<md5::Md5>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(), // HMAC takes keys of any length
    };
    mac.update(challenge);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &[u8]) -> Vec<u8> {
        b64().encode(s).into_bytes()
    }

    #[test]
    fn smtpauth_values() {
        let p = |plain_login, cram, required| Some(AuthPolicy { plain_login, cram, required });
        let table: &[(Option<&str>, Option<AuthPolicy>)] = &[
            (None, None),
            (Some("-"), None),
            (Some("0"), None),
            (Some(""), p(true, false, false)),
            (Some("1"), p(true, false, false)),
            (Some("!"), p(true, false, true)),
            (Some("cram"), p(false, true, false)),
            (Some("CRAM"), p(false, true, false)),
            (Some("+cram"), p(true, true, false)),
            (Some("!cram"), p(false, true, true)),
            (Some("!+cram"), p(true, true, true)),
        ];
        for (v, want) in table {
            assert_eq!(parse_smtpauth(*v), *want, "{v:?}");
        }
        assert_eq!(parse_smtpauth(Some("")).unwrap().ehlo_keyword(), "AUTH LOGIN PLAIN");
        assert_eq!(parse_smtpauth(Some("+cram")).unwrap().ehlo_keyword(), "AUTH LOGIN PLAIN CRAM-MD5");
        assert_eq!(parse_smtpauth(Some("cram")).unwrap().ehlo_keyword(), "AUTH CRAM-MD5");
        assert!(!parse_smtpauth(Some("cram")).unwrap().allows(Mech::Plain));
    }

    #[test]
    fn auth_args() {
        assert_eq!(parse_auth_args(b"plain"), Ok((Mech::Plain, None)));
        assert_eq!(parse_auth_args(b"PLAIN AGFsaWNlAHB3"), Ok((Mech::Plain, Some(&b"AGFsaWNlAHB3"[..]))));
        assert_eq!(parse_auth_args(b"cram-md5"), Ok((Mech::CramMd5, None)));
        assert_eq!(parse_auth_args(b""), Err(AUTH_SYNTAX));
        assert_eq!(parse_auth_args(b"GSSAPI"), Err(AUTH_UNKNOWN_MECH));
        assert_eq!(parse_auth_args(b"PLAIN a b"), Err(AUTH_SYNTAX));
    }

    #[test]
    fn plain_with_initial_response() {
        let (_, step) = start(Mech::Plain, Some(&enc(b"\0alice\0s3cret")), vec![]);
        let Step::Check(c) = step else { panic!("{step:?}") };
        assert_eq!((c.user.as_slice(), c.secret.as_slice()), (&b"alice"[..], &b"s3cret"[..]));
        assert_eq!(c.encode(), b"alice\0s3cret\0\0");
        // authzid equal to the user is fine; another one is not.
        assert!(matches!(start(Mech::Plain, Some(&enc(b"alice\0alice\0pw")), vec![]).1, Step::Check(_)));
        assert_eq!(start(Mech::Plain, Some(&enc(b"bob\0alice\0pw")), vec![]).1, Step::Fail(AUTH_FAILED));
    }

    #[test]
    fn plain_in_two_steps_and_bad_input() {
        let (mut ex, step) = start(Mech::Plain, None, vec![]);
        assert_eq!(step, Step::Ask("334 \r\n".into()));
        assert!(matches!(ex.respond(&enc(b"\0u\0p")), Step::Check(_)));
        // Any answer after the end is an error, never a second Check.
        assert_eq!(ex.respond(&enc(b"\0u\0p")), Step::Fail(AUTH_MALFORMED));
        for (bad, reply) in [
            (&b"*"[..], AUTH_CANCELLED),
            (b"not base64!", AUTH_BAD_BASE64),
            (b"=", AUTH_MALFORMED),
        ] {
            let (mut ex, _) = start(Mech::Plain, None, vec![]);
            assert_eq!(ex.respond(bad), Step::Fail(reply), "{bad:?}");
        }
        for bad in [&b"\0alice"[..], b"\0\0pw", b"\0alice\0", b"alice", b"\0al\0ice\0pw\0x"] {
            let (mut ex, _) = start(Mech::Plain, None, vec![]);
            let got = ex.respond(&enc(bad));
            // The password may contain no NUL: the last case is malformed too.
            assert_eq!(got, Step::Fail(AUTH_MALFORMED), "{bad:?}");
        }
        let (mut ex, _) = start(Mech::Plain, None, vec![]);
        assert_eq!(ex.respond(&vec![b'A'; MAX_AUTH_LINE + 4]), Step::Fail(AUTH_LINE_TOO_LONG));
    }

    #[test]
    fn login_exchange() {
        let (mut ex, step) = start(Mech::Login, None, vec![]);
        assert_eq!(step, Step::Ask("334 VXNlcm5hbWU6\r\n".into()));
        assert_eq!(ex.respond(&enc(b"alice")), Step::Ask("334 UGFzc3dvcmQ6\r\n".into()));
        let Step::Check(c) = ex.respond(&enc(b"s3cret")) else { panic!() };
        assert_eq!((c.mech, c.user.as_slice(), c.secret.as_slice()), (Mech::Login, &b"alice"[..], &b"s3cret"[..]));
        // Initial response carries the user name.
        let (mut ex, step) = start(Mech::Login, Some(&enc(b"bob")), vec![]);
        assert_eq!(step, Step::Ask("334 UGFzc3dvcmQ6\r\n".into()));
        assert_eq!(ex.respond(b"*"), Step::Fail(AUTH_CANCELLED));
        let (mut ex, _) = start(Mech::Login, None, vec![]);
        assert_eq!(ex.respond(&enc(b"a\0b")), Step::Fail(AUTH_MALFORMED));
    }

    #[test]
    fn cram_md5_exchange() {
        let chal = cram_challenge(4242, 1_700_000_000, "mx.example.org");
        assert_eq!(chal, b"<4242.1700000000@mx.example.org>");
        let (mut ex, step) = start(Mech::CramMd5, None, chal.clone());
        assert_eq!(step, Step::Ask(format!("334 {}\r\n", b64().encode(&chal))));
        let digest = cram_md5_digest(b"s3cret", &chal);
        let Step::Check(c) = ex.respond(&enc(format!("alice {digest}").as_bytes())) else { panic!() };
        assert_eq!(c.encode(), [b"alice\0".to_vec(), digest.into_bytes(), b"\0".to_vec(), chal.clone(), b"\0".to_vec()].concat());
        for bad in [&b"alice"[..], b"alice 1234", b" 0123456789abcdef0123456789abcdef", b"alice 0123456789abcdef0123456789abcdeg"] {
            let (mut ex, _) = start(Mech::CramMd5, None, chal.clone());
            assert_eq!(ex.respond(&enc(bad)), Step::Fail(AUTH_MALFORMED), "{bad:?}");
        }
        assert_eq!(start(Mech::CramMd5, Some(b"x"), chal).1, Step::Fail(AUTH_SYNTAX));
    }

    #[test]
    fn rfc2195_example_digest() {
        // RFC 2195 section 2: tim / tanstaaftanstaaf.
        let chal = b"<1896.697170952@postoffice.reston.mci.net>";
        assert_eq!(cram_md5_digest(b"tanstaaftanstaaf", chal), "b913a602c7eda7a495b4e6e7334d3890");
    }

    #[test]
    fn mail_auth_param() {
        assert_eq!(parse_mail_auth(b"<>"), Some(MailAuth::Unknown));
        assert_eq!(parse_mail_auth(b"alice+40example.org"), Some(MailAuth::Mailbox(b"alice@example.org".to_vec())));
        assert_eq!(parse_mail_auth(b"bad+4"), None);
        assert_eq!(parse_mail_auth(b""), None);
    }

    #[test]
    fn env_after_success() {
        let e = success_env("alice", Mech::CramMd5);
        assert!(e.contains(&("TCPREMOTEINFO", "alice".into())));
        assert!(e.contains(&("SMTPAUTHMETHOD", "cram-md5".into())));
        assert!(e.contains(&("RELAYCLIENT", String::new())));
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let c = Credentials { mech: Mech::Plain, user: b"u".to_vec(), secret: b"hunter2".to_vec(), challenge: vec![] };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
