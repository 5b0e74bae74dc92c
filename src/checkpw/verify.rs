//! The checkpassword decision: what arrived on fd 3 (djb's interface,
//! `user\0secret\0challenge\0`) and the parsed password file in, a verdict
//! out. PLAIN and LOGIN bring the password; CRAM-MD5 (SMTPAUTHMETHOD
//! `cram-md5`) brings the client's hex digest and the challenge. No I/O
//! here: the hashes' CPU work only.

use super::cram::CramSecret;
use super::file::{valid_user, PasswdFile};
use super::hash::{self, HashError};

/// djb's checkpassword reads at most 512 bytes from fd 3.
pub const MAX_INPUT: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mech {
    /// PLAIN, LOGIN, or any caller that is not smtpd-rs (qmail-popup...).
    Password,
    CramMd5,
}

/// fd 3's fields.
#[derive(Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub mech: Mech,
    pub user: &'a [u8],
    pub secret: &'a [u8],
    pub challenge: &'a [u8],
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Request {{ {:?}, user {:?} }}", self.mech, String::from_utf8_lossy(self.user)) // never the secret
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// More than MAX_INPUT bytes: refused (exit 1), as djb's does.
    TooLong,
    /// The user or the secret is not NUL-terminated (exit 2).
    Malformed,
}

/// The mechanism from SMTPAUTHMETHOD: `cram-md5` (any case) is CRAM-MD5;
/// anything else, or unset, is a password (the third field, which
/// qmail-popup fills with its APOP timestamp, is then ignored).
pub fn mech_from_env(method: Option<&[u8]>) -> Mech {
    match method {
        Some(m) if m.eq_ignore_ascii_case(b"cram-md5") => Mech::CramMd5,
        _ => Mech::Password,
    }
}

/// Split fd 3's input: user and secret must end in NUL; the challenge may
/// be missing or unterminated (djb's accepts that too).
pub fn parse_request(input: &[u8], mech: Mech) -> Result<Request<'_>, RequestError> {
    if input.len() > MAX_INPUT {
        return Err(RequestError::TooLong);
    }
    let mut parts = input.splitn(3, |&b| b == 0);
    let user = parts.next().unwrap_or_default();
    let secret = parts.next().ok_or(RequestError::Malformed)?;
    let rest = parts.next().ok_or(RequestError::Malformed)?;
    let challenge = rest.split(|&b| b == 0).next().unwrap_or_default();
    Ok(Request { mech, user, secret, challenge })
}

/// Why a request was refused (exit 1); logged, never shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    UnknownUser,
    WrongPassword,
    Locked,
    /// CRAM-MD5 for a user whose line keeps no CRAM-MD5 secret.
    NoCramSecret,
    EmptyPassword,
}

impl Reason {
    pub fn text(self) -> &'static str {
        match self {
            Reason::UnknownUser => "unknown user",
            Reason::WrongPassword => "wrong password",
            Reason::Locked => "account locked",
            Reason::NoCramSecret => "no CRAM-MD5 secret kept for this user (smtpd-passwd --cram)",
            Reason::EmptyPassword => "empty password",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject(Reason),
    /// The user's line holds a hash that cannot be computed: the line
    /// number and why (a temporary failure: the file needs fixing).
    Unusable(usize, HashError),
}

/// Check `req` against `file`. An unknown user costs what a known one
/// does with the same mechanism (an argon2id hash for a password, an
/// HMAC-MD5 for CRAM-MD5), so timing does not tell names apart.
pub fn decide(file: &PasswdFile, req: &Request<'_>) -> Verdict {
    if req.secret.is_empty() {
        return Verdict::Reject(Reason::EmptyPassword);
    }
    let found = if valid_user(req.user) { file.find(req.user) } else { None };
    let Some((line, entry)) = found else {
        match req.mech {
            Mech::Password => hash::dummy_verify(req.secret),
            Mech::CramMd5 => {
                let _ = std::hint::black_box(CramSecret::from_password(b"").verify(req.challenge, req.secret));
            }
        }
        return Verdict::Reject(Reason::UnknownUser);
    };
    match req.mech {
        Mech::CramMd5 => match &entry.cram {
            None => Verdict::Reject(Reason::NoCramSecret),
            Some(c) if c.verify(req.challenge, req.secret) => Verdict::Accept,
            Some(_) => Verdict::Reject(Reason::WrongPassword),
        },
        Mech::Password => match entry.hash.verify(req.secret) {
            Ok(true) => Verdict::Accept,
            Ok(false) if matches!(entry.hash, hash::Hash::Locked(_)) => Verdict::Reject(Reason::Locked),
            Ok(false) => Verdict::Reject(Reason::WrongPassword),
            Err(e) => Verdict::Unusable(line, e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // alice: "Hello world!" (argon2id, libargon2's); tim: RFC 2195's
    // tanstaaftanstaaf ($6$ from Debian 12's libxcrypt, and the CRAM-MD5
    // states from Dovecot); bob: locked; carol: a hash the crate refuses to
    // compute (a $6$ hash whose last character has bits set that a 64-byte hash
    // cannot have: glibc ignores them, the crate refuses).
    const FILE: &str = "# users\n\
        alice:$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$d5d5wrrtHcPPxIwJfINQ2uUINJB5BwkpxOiG8viqrmw\n\
        tim:$6$rounds=5000$saltsaltsaltsalt$HEClAodQ0GVaAc2Z6wF1FTFLf7mP24JpPX01jayp806GBtznKba/OPx8vNWgD3aPc5IYRAf.eQcwbVTISZFqa.:{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b\n\
        bob:!$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$d5d5wrrtHcPPxIwJfINQ2uUINJB5BwkpxOiG8viqrmw\n\
        carol:$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inzz\n";

    const CHALLENGE: &str = "<1896.697170952@postoffice.reston.mci.net>";

    fn run(input: &[u8], method: Option<&str>) -> Result<Verdict, RequestError> {
        let f = PasswdFile::parse(FILE.as_bytes()).unwrap();
        let req = parse_request(input, mech_from_env(method.map(str::as_bytes)))?;
        Ok(decide(&f, &req))
    }

    #[test]
    fn table() {
        use Reason::*;
        use Verdict::*;
        type Case<'a> = (&'a [u8], Option<&'a str>, Result<Verdict, RequestError>);
        let cases: &[Case<'_>] = &[
            (b"alice\0Hello world!\0\0", Some("plain"), Ok(Accept)),
            (b"alice\0Hello world!\0\0", Some("login"), Ok(Accept)),
            (b"alice\0Hello world!\0", None, Ok(Accept)),
            // qmail-popup's timestamp in the third field changes nothing.
            (b"alice\0Hello world!\0<123.456@pop>\0", None, Ok(Accept)),
            (b"alice\0Hello world?\0\0", Some("plain"), Ok(Reject(WrongPassword))),
            (b"alice\0\0\0", Some("plain"), Ok(Reject(EmptyPassword))),
            (b"nobody\0\0\0", Some("plain"), Ok(Reject(EmptyPassword))),
            (b"nobody\0b913a602c7eda7a495b4e6e7334d3890\0<1.2@h>\0", Some("cram-md5"), Ok(Reject(UnknownUser))),
            (b"Alice\0Hello world!\0\0", Some("plain"), Ok(Reject(UnknownUser))),
            (b"nobody\0x\0\0", Some("plain"), Ok(Reject(UnknownUser))),
            (b"\0x\0\0", Some("plain"), Ok(Reject(UnknownUser))),
            (b"a:b\0x\0\0", Some("plain"), Ok(Reject(UnknownUser))),
            (b"tim\0tanstaaftanstaaf\0\0", Some("plain"), Ok(Accept)),
            (b"tim\0b913a602c7eda7a495b4e6e7334d3890\0<1896.697170952@postoffice.reston.mci.net>\0", Some("cram-md5"), Ok(Accept)),
            (b"tim\0B913A602C7EDA7A495B4E6E7334D3890\0<1896.697170952@postoffice.reston.mci.net>\0", Some("CRAM-MD5"), Ok(Accept)),
            (b"tim\0b913a602c7eda7a495b4e6e7334d3891\0<1896.697170952@postoffice.reston.mci.net>\0", Some("cram-md5"), Ok(Reject(WrongPassword))),
            (b"tim\0b913a602c7eda7a495b4e6e7334d3890\0<1896.697170953@postoffice.reston.mci.net>\0", Some("cram-md5"), Ok(Reject(WrongPassword))),
            // The password given as a CRAM-MD5 answer, the digest as a password: no.
            (b"tim\0tanstaaftanstaaf\0<1896.697170952@postoffice.reston.mci.net>\0", Some("cram-md5"), Ok(Reject(WrongPassword))),
            (b"tim\0b913a602c7eda7a495b4e6e7334d3890\0<1896.697170952@postoffice.reston.mci.net>\0", Some("plain"), Ok(Reject(WrongPassword))),
            (b"alice\0b913a602c7eda7a495b4e6e7334d3890\0<1896.697170952@postoffice.reston.mci.net>\0", Some("cram-md5"), Ok(Reject(NoCramSecret))),
            (b"bob\0Hello world!\0\0", Some("plain"), Ok(Reject(Locked))),
            (b"alice", Some("plain"), Err(RequestError::Malformed)),
            (b"alice\0Hello world!", Some("plain"), Err(RequestError::Malformed)),
            (b"", Some("plain"), Err(RequestError::Malformed)),
        ];
        for (input, method, want) in cases {
            assert_eq!(&run(input, *method), want, "{:?} {method:?}", String::from_utf8_lossy(input));
        }
        assert!(matches!(run(b"carol\0x\0\0", Some("plain")), Ok(Unusable(5, _))));
        assert_eq!(CHALLENGE.len(), 42);
    }

    #[test]
    fn input_limit() {
        // 512 bytes are read; 513 are refused, as djb's checkpassword does.
        let mut input = b"alice\0".to_vec();
        input.resize(MAX_INPUT - 1, b'x');
        input.push(0);
        assert_eq!(run(&input, Some("plain")), Ok(Verdict::Reject(Reason::WrongPassword)));
        input.insert(6, b'x');
        assert_eq!(run(&input, Some("plain")), Err(RequestError::TooLong));
    }

    #[test]
    fn debug_hides_the_secret() {
        let r = parse_request(b"alice\0Hello world!\0\0", Mech::Password).unwrap();
        let d = format!("{r:?}");
        assert!(d.contains("alice") && !d.contains("Hello"), "{d}");
    }
}
