//! The password hashes of the checkpw file: argon2id (a PHC string, what
//! smtpd-passwd writes), SHA-512-crypt (`$6$`) and yescrypt (`$y$`), the
//! last two as crypt(3) and /etc/shadow have them; `!` or `*` in front
//! locks an entry, as in shadow(5). Parsing checks the form and refuses
//! costs that would let one line make every check take gigabytes or
//! minutes; verification is the RustCrypto crates' (constant-time
//! compares). Pure: no I/O; salts come from the caller.

use std::fmt;

use argon2::password_hash::phc::PasswordHash as PhcHash;
use argon2::password_hash::{Error as CrateError, PasswordHasher, PasswordVerifier};

/// Most memory a hash may ask for (argon2id m, yescrypt 128*N*r).
pub const MAX_MEMORY_KIB: u64 = 256 * 1024;
/// Most argon2id passes or yescrypt time factor.
pub const MAX_PASSES: u32 = 64;
/// Most argon2id lanes / yescrypt parallelism.
pub const MAX_PARALLELISM: u32 = 16;
/// Most SHA-512-crypt rounds (crypt(3) takes up to 999999999, minutes' worth).
pub const MAX_SHA_ROUNDS: u32 = 10_000_000;
/// Longest hash text kept (a long yescrypt or argon2id string is ~110).
pub const MAX_HASH_LEN: usize = 512;

/// Salt lengths of new hashes: argon2id 16 bytes (RFC 9106 section 3.1
/// recommends 128 bits), SHA-512-crypt 12 bytes (16 crypt-base64 characters,
/// the most it uses).
pub const ARGON2_SALT_LEN: usize = 16;
pub const SHA512_SALT_LEN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Argon2id,
    Sha512Crypt,
    Yescrypt,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Argon2id => "argon2id",
            Scheme::Sha512Crypt => "sha512-crypt",
            Scheme::Yescrypt => "yescrypt",
        }
    }
}

/// A parsed hash field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hash {
    Usable(Scheme, String),
    /// `!...` or `*...`: no password opens it.
    Locked(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashError {
    Empty,
    TooLong,
    /// Not `$argon2id$`, `$6$` or `$y$` (names what it starts with).
    UnknownScheme(String),
    Malformed(Scheme, String),
    TooCostly(Scheme, String),
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashError::Empty => f.write_str("empty hash"),
            HashError::TooLong => write!(f, "hash longer than {MAX_HASH_LEN} characters"),
            HashError::UnknownScheme(s) => {
                write!(f, "unsupported hash scheme {s:?} (argon2id, $6$ sha512-crypt and $y$ yescrypt are)")
            }
            HashError::Malformed(s, m) => write!(f, "malformed {} hash: {m}", s.name()),
            HashError::TooCostly(s, m) => write!(f, "{} hash too costly: {m}", s.name()),
        }
    }
}

impl Hash {
    pub fn as_str(&self) -> &str {
        match self {
            Hash::Usable(_, s) | Hash::Locked(s) => s,
        }
    }

    /// Whether `password` matches. Err when the hash cannot be computed
    /// (parameters the crate refuses), which is the file's fault, not the
    /// client's.
    pub fn verify(&self, password: &[u8]) -> Result<bool, HashError> {
        let (scheme, text) = match self {
            Hash::Locked(_) => return Ok(false),
            Hash::Usable(scheme, text) => (*scheme, text.as_str()),
        };
        let r = match scheme {
            Scheme::Argon2id => argon2::Argon2::default().verify_password(password, text),
            Scheme::Sha512Crypt => sha_crypt::ShaCrypt::default().verify_password(password, text),
            Scheme::Yescrypt => match yescrypt::PasswordHashRef::new(text) {
                Ok(h) => yescrypt::Yescrypt::default().verify_password(password, h),
                Err(e) => return Err(HashError::Malformed(scheme, e.to_string())),
            },
        };
        match r {
            Ok(()) => Ok(true),
            Err(CrateError::PasswordInvalid) => Ok(false),
            Err(e) => Err(HashError::Malformed(scheme, e.to_string())),
        }
    }
}

/// The hash field of a line.
pub fn parse_hash(s: &str) -> Result<Hash, HashError> {
    if s.is_empty() {
        return Err(HashError::Empty);
    }
    if s.len() > MAX_HASH_LEN {
        return Err(HashError::TooLong);
    }
    if s.starts_with(['!', '*']) {
        return Ok(Hash::Locked(s.to_owned()));
    }
    if s.starts_with("$argon2id$") {
        check_argon2id(s)?;
        Ok(Hash::Usable(Scheme::Argon2id, s.to_owned()))
    } else if s.starts_with("$6$") {
        check_sha512(s)?;
        Ok(Hash::Usable(Scheme::Sha512Crypt, s.to_owned()))
    } else if s.starts_with("$y$") {
        check_yescrypt(s)?;
        Ok(Hash::Usable(Scheme::Yescrypt, s.to_owned()))
    } else {
        let head: String = s.chars().take(12).collect();
        Err(HashError::UnknownScheme(head))
    }
}

/// A new argon2id hash with the crate's defaults (RFC 9106's second
/// recommended option scaled to OWASP's: m=19456 KiB, t=2, p=1).
pub fn make_argon2id(password: &[u8], salt: &[u8; ARGON2_SALT_LEN]) -> Result<String, HashError> {
    argon2::Argon2::default()
        .hash_password_with_salt(password, salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Malformed(Scheme::Argon2id, e.to_string()))
}

/// A new SHA-512-crypt hash (5000 rounds, crypt(3)'s default, written
/// without `rounds=` as crypt(3) does).
pub fn make_sha512(password: &[u8], salt: &[u8; SHA512_SALT_LEN]) -> Result<String, HashError> {
    let h = sha_crypt::ShaCrypt::SHA512
        .hash_password_with_salt(password, salt)
        .map_err(|e| HashError::Malformed(Scheme::Sha512Crypt, e.to_string()))?;
    let s = h.as_str();
    Ok(s.strip_prefix("$6$rounds=5000$").map_or_else(|| s.to_owned(), |rest| format!("$6${rest}")))
}

/// Spend what a check of a default argon2id entry costs, for a user who has
/// none: an unknown name then takes as long to refuse as a wrong password.
pub fn dummy_verify(password: &[u8]) {
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c21wdGQtcnMgZHVtbXk$D7yBC3a3ZfnCmBP7TTQb4ZDZJIg5ZaJrO0m7GHnfwY8";
    let _ = std::hint::black_box(argon2::Argon2::default().verify_password(password, DUMMY));
}

fn check_argon2id(s: &str) -> Result<(), HashError> {
    let bad = |m: String| HashError::Malformed(Scheme::Argon2id, m);
    let h = PhcHash::new(s).map_err(|e| bad(e.to_string()))?;
    if h.salt.is_none() || h.hash.is_none() {
        return Err(bad("no salt or no hash".into()));
    }
    if h.version.is_some_and(|v| v != 0x13) {
        return Err(bad("only version 19 (v=19) is supported".into()));
    }
    let p = argon2::Params::try_from(&h).map_err(|e| bad(e.to_string()))?;
    let costly = |m: String| HashError::TooCostly(Scheme::Argon2id, m);
    if u64::from(p.m_cost()) > MAX_MEMORY_KIB {
        return Err(costly(format!("m={} KiB over {MAX_MEMORY_KIB}", p.m_cost())));
    }
    if p.t_cost() > MAX_PASSES || p.p_cost() > MAX_PARALLELISM {
        return Err(costly(format!("t={} p={} (at most t={MAX_PASSES} p={MAX_PARALLELISM})", p.t_cost(), p.p_cost())));
    }
    Ok(())
}

/// `$6$[rounds=N$]salt$hash`: salt of crypt-base64 characters (crypt(3)
/// uses the first 16), hash of exactly 86.
fn check_sha512(s: &str) -> Result<(), HashError> {
    let bad = |m: &str| HashError::Malformed(Scheme::Sha512Crypt, m.to_owned());
    let mut fields: Vec<&str> = s.get(3..).unwrap_or_default().split('$').collect();
    if fields.first().is_some_and(|f| f.starts_with("rounds=")) {
        let r = fields.remove(0);
        let params: sha_crypt::Params = r.parse().map_err(|_| bad("rounds= out of 1000..999999999"))?;
        let n: u32 = r.get(7..).and_then(|n| n.parse().ok()).unwrap_or(0);
        if n > MAX_SHA_ROUNDS {
            let _ = params;
            return Err(HashError::TooCostly(Scheme::Sha512Crypt, format!("rounds={n} over {MAX_SHA_ROUNDS}")));
        }
    }
    let [salt, hash] = fields[..] else { return Err(bad("want $6$[rounds=N$]salt$hash")) };
    if salt.is_empty() || !salt.bytes().all(is_crypt64) {
        return Err(bad("salt is not crypt base64"));
    }
    if hash.len() != 86 || !hash.bytes().all(is_crypt64) {
        return Err(bad("hash is not 86 crypt base64 characters"));
    }
    Ok(())
}

fn check_yescrypt(s: &str) -> Result<(), HashError> {
    let bad = |m: String| HashError::Malformed(Scheme::Yescrypt, m);
    let h = yescrypt::PasswordHashRef::new(s).map_err(|e| bad(e.to_string()))?;
    let mut fields = h.fields();
    let params_field = fields.next().ok_or_else(|| bad("no parameters".into()))?;
    let p: yescrypt::Params = params_field.as_str().parse().map_err(|e: yescrypt::Error| bad(e.to_string()))?;
    let (Some(salt), Some(hash), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err(bad("want $y$params$salt$hash".into()));
    };
    // Decodable crypt base64 (a length of 4n+1 is not).
    for f in [salt.as_str(), hash.as_str()] {
        if f.is_empty() || f.len() % 4 == 1 || !f.bytes().all(is_crypt64) {
            return Err(bad("salt or hash is not crypt base64".into()));
        }
    }
    // yescrypt's memory is 128 * r * N bytes (scrypt's V array).
    let kib = p.n().saturating_mul(u64::from(p.r())).saturating_mul(128) / 1024;
    if kib > MAX_MEMORY_KIB || p.p() > MAX_PARALLELISM {
        return Err(HashError::TooCostly(Scheme::Yescrypt, format!("{kib} KiB, p={}", p.p())));
    }
    Ok(())
}

/// crypt(3)'s base64 alphabet: `./0-9A-Za-z`.
fn is_crypt64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known vectors made by other implementations.
    // Drepper's SHA-crypt specification, its SHA-512 examples.
    const SHA512_SPEC: &str =
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";
    const SHA512_SPEC_ROUNDS: &str =
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.";
    // Debian 12's libxcrypt (Python's crypt.crypt) for tanstaaftanstaaf.
    const SHA512_DEBIAN: &str = "$6$rounds=5000$saltsaltsaltsalt$HEClAodQ0GVaAc2Z6wF1FTFLf7mP24JpPX01jayp806GBtznKba/OPx8vNWgD3aPc5IYRAf.eQcwbVTISZFqa.";
    const YESCRYPT_DEBIAN: &str = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$1RQFZyzbGU4uV.c4QftxXYK3O3ixZ5JX//n4ep20am1";
    // The reference argon2 (libargon2, via Debian's python3-argon2).
    const ARGON2_REF: &str = "$argon2id$v=19$m=256,t=2,p=1$7guvJwWPDj7ZsaWGHL2GOw$AOOjcjeMHZytNFW6x8o0II78mUVylE212tELma3JAgY";
    const ARGON2_REF_SALT: &str = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$d5d5wrrtHcPPxIwJfINQ2uUINJB5BwkpxOiG8viqrmw";

    fn verify(h: &str, pw: &str) -> bool {
        parse_hash(h).unwrap_or_else(|e| panic!("{h}: {e}")).verify(pw.as_bytes()).unwrap()
    }

    #[test]
    fn known_vectors_verify() {
        for (h, pw) in [
            (SHA512_SPEC, "Hello world!"),
            (SHA512_SPEC_ROUNDS, "Hello world!"),
            (SHA512_DEBIAN, "tanstaaftanstaaf"),
            (YESCRYPT_DEBIAN, "tanstaaftanstaaf"),
            (ARGON2_REF, "tanstaaftanstaaf"),
            (ARGON2_REF_SALT, "Hello world!"),
        ] {
            assert!(verify(h, pw), "{h}");
            // One character off in the password, or in the hash: no.
            let mut wrong = pw.to_string();
            wrong.pop();
            wrong.push('?');
            assert!(!verify(h, &wrong), "{h} with {wrong}");
            assert!(!verify(h, ""), "{h} with nothing");
            let last = if h.ends_with('A') { 'B' } else { 'A' };
            let mut altered = h.to_string();
            altered.pop();
            altered.push(last);
            assert!(!parse_hash(&altered).unwrap().verify(pw.as_bytes()).unwrap_or(false), "{altered}");
        }
    }

    #[test]
    fn schemes_and_locks() {
        assert!(matches!(parse_hash(ARGON2_REF), Ok(Hash::Usable(Scheme::Argon2id, _))));
        assert!(matches!(parse_hash(SHA512_SPEC), Ok(Hash::Usable(Scheme::Sha512Crypt, _))));
        assert!(matches!(parse_hash(YESCRYPT_DEBIAN), Ok(Hash::Usable(Scheme::Yescrypt, _))));
        // shadow(5)'s locks: no password opens them.
        for locked in ["!", "*", "!!", &format!("!{YESCRYPT_DEBIAN}")] {
            let h = parse_hash(locked).unwrap();
            assert!(matches!(h, Hash::Locked(_)));
            assert_eq!(h.verify(b"tanstaaftanstaaf"), Ok(false));
            assert_eq!(h.verify(b""), Ok(false));
        }
    }

    #[test]
    fn refused_hashes() {
        let unknown = [
            "tanstaaftanstaaf",
            "$1$saltsalt$abcdefghijklmnopqrstuv",
            "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZF/C8i7a9",
            "$2b$10$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyzABCDE",
            "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$d5d5wrrtHcPPxIwJfINQ2uUINJB5BwkpxOiG8viqrmw",
            "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b",
        ];
        for h in unknown {
            assert!(matches!(parse_hash(h), Err(HashError::UnknownScheme(_))), "{h}");
        }
        assert_eq!(parse_hash(""), Err(HashError::Empty));
        assert_eq!(parse_hash(&"$6$".repeat(200)), Err(HashError::TooLong));
        let malformed = [
            "$argon2id$",
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA",
            "$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$d5d5wrrtHcPPxIwJfINQ2uUINJB5BwkpxOiG8viqrmw",
            "$argon2id$v=19$m=64,t=0,p=1$c2FsdHNhbHRzYWx0c2FsdA$d5d5wrrtHcPPxIwJfINQ2uUINJB5BwkpxOiG8viqrmw",
            "$6$",
            "$6$saltstring",
            "$6$saltstring$short",
            "$6$salt string$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
            "$6$rounds=10$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
            "$6$rounds=x$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
            "$6$a$b$c$d",
            "$y$",
            "$y$j9T$F5Jx5fExrKuPp53xLKQ..1",
            "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$1RQFZyzbGU4uV.c4QftxXYK3O3ixZ5JX//n4ep20am1$x",
            "$y$!!!$F5Jx5fExrKuPp53xLKQ..1$1RQFZyzbGU4uV.c4QftxXYK3O3ixZ5JX//n4ep20am1",
            "$y$j9T$F$1RQFZyzbGU4uV.c4QftxXYK3O3ixZ5JX//n4ep20am1",
            "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$1",
        ];
        for h in malformed {
            assert!(matches!(parse_hash(h), Err(HashError::Malformed(..))), "{h}: {:?}", parse_hash(h));
        }
        let costly = [
            // 4 GiB, 100 passes, 64 lanes, 999999999 rounds, yescrypt N=2^20 r=32.
            "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$d5d5wrrtHcPPxIwJfINQ2uUINJB5BwkpxOiG8viqrmw",
            "$argon2id$v=19$m=64,t=100,p=1$c2FsdHNhbHRzYWx0c2FsdA$d5d5wrrtHcPPxIwJfINQ2uUINJB5BwkpxOiG8viqrmw",
            "$argon2id$v=19$m=1024,t=1,p=64$c2FsdHNhbHRzYWx0c2FsdA$d5d5wrrtHcPPxIwJfINQ2uUINJB5BwkpxOiG8viqrmw",
            "$6$rounds=999999999$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
            "$y$jHT$F5Jx5fExrKuPp53xLKQ..1$1RQFZyzbGU4uV.c4QftxXYK3O3ixZ5JX//n4ep20am1",
        ];
        for h in costly {
            assert!(matches!(parse_hash(h), Err(HashError::TooCostly(..))), "{h}: {:?}", parse_hash(h));
        }
    }

    #[test]
    fn new_hashes_verify() {
        let a = make_argon2id(b"s3cret", &[7; ARGON2_SALT_LEN]).unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$BwcHBwcHBwcHBwcHBwcHBw$"), "{a}");
        assert!(verify(&a, "s3cret") && !verify(&a, "s3creT"));
        let s = make_sha512(b"s3cret", &[7; SHA512_SALT_LEN]).unwrap();
        assert!(s.starts_with("$6$") && !s.contains("rounds="), "{s}");
        assert!(verify(&s, "s3cret") && !verify(&s, "s3creT"));
        // What crypt(3) gives for the same salt and password (Debian 12's
        // libxcrypt, through Python's crypt.crypt).
        assert_eq!(
            s,
            "$6$5Qk/5Qk/5Qk/5Qk/$WOU9PQ.Kqc2Fk/ZP6DajuzT/jm9fEmYsIMZtTakXGgLmMhDwY6X1WV4IVlCq9IpyrRbD9lKt7BFuK5bUMRqkF."
        );
        // Different salts, different hashes.
        assert_ne!(make_argon2id(b"s3cret", &[8; ARGON2_SALT_LEN]).unwrap(), a);
        dummy_verify(b"anything"); // well-formed: never an error path
        assert!(argon2::Argon2::default()
            .verify_password(b"x", "$argon2id$v=19$m=19456,t=2,p=1$c21wdGQtcnMgZHVtbXk$D7yBC3a3ZfnCmBP7TTQb4ZDZJIg5ZaJrO0m7GHnfwY8")
            .is_err_and(|e| e == CrateError::PasswordInvalid));
    }
}
