//! DKIM verification (RFC 6376 6, RFC 8463, RFC 8301): every DKIM-Signature
//! field of a message, up to a bound, checked over one pass of the body (one
//! canonicalizer per distinct body canonicalization and l=), with results
//! named as RFC 8601 2.7.1 names them. No DNS here: the caller's lookup
//! function returns each key record's text. Pure otherwise; the caller
//! passes the clock.
//!
//! Which result for what:
//! - pass: the body hash and the signature verify.
//! - fail: the body hash differs (`Failure::BodyHash`), the signature does
//!   not verify (`Failure::Signature`), or l= counts more than the body has.
//! - neutral: a failure as above under a key record with t=y (RFC 6376
//!   3.6.1: a testing domain's mail must be treated as unsigned, even when
//!   its signature fails); the failure is kept inside.
//! - policy: acceptable to RFC 6376 but not to the options: l= when
//!   `honour_length` is off, an RSA key shorter than `min_rsa_bits` (but of
//!   at least 1024 bits).
//! - temperror: the key lookup failed for now (DNS timeout, SERVFAIL).
//! - permerror: the field does not parse, lacks a required tag (v a b bh d h
//!   s), has v= other than 1, an unknown or forbidden algorithm (rsa-sha1,
//!   RFC 8301), an unknown canonicalization or query method, i= not under
//!   d=, h= without From, x= in the past or before t=; no key record
//!   (NXDOMAIN), a record that does not parse, a revoked key (p= empty), a
//!   key type that does not match a=, h= of the record without sha256, s=
//!   without email, t=s with i= in a subdomain, an RSA key under 1024 bits
//!   (RFC 8301 3.2) or a key that does not decode.
//!
//! l= is honoured by default: the first l octets of the canonical body are
//! hashed (RFC 6376 allows it; the result carries the length so that the
//! caller can say the rest is unsigned). t= in the future is not checked.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use ring::signature::{UnparsedPublicKey, ED25519, RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY};

use super::canon::{header_hash_input, BodyHash, BodyHasher, Canon};
use super::header::{self, Field, HeaderError};
use super::key::{self, Algorithm, KeyType, RecordError, RSA_VERIFY_MAX_BITS, RSA_VERIFY_MIN_BITS};
use super::tags::{self, TagError, TagList};

/// h= entries beyond this make the signature a permerror (a real one has tens).
pub const MAX_SIGNED_NAMES: usize = 1000;

/// The verifier's choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// DKIM-Signature fields evaluated, from the top; the rest are skipped
    /// (RFC 6376 6.1: verifiers MAY limit the number they try).
    pub max_signatures: usize,
    /// RSA keys shorter than this (but of at least 1024 bits) give `policy`.
    pub min_rsa_bits: u32,
    /// Honour l= (hash only that much of the body); off: `policy`.
    pub honour_length: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions { max_signatures: 10, min_rsa_bits: RSA_VERIFY_MIN_BITS, honour_length: true }
    }
}

/// The key lookup's answer when there is no record text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupError {
    /// NXDOMAIN or no TXT record: permerror.
    NotFound,
    /// Timeout, SERVFAIL: temperror.
    Temporary,
}

/// RFC 8601 2.7.1's result for one signature, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(Failure),
    Neutral(Failure),
    Policy(PolicyReason),
    TempError,
    PermError(PermReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    BodyHash,
    Signature,
    /// l= is larger than the canonical body (RFC 6376 3.5: it MUST NOT be).
    LengthBeyondBody,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyReason {
    LengthTag,
    RsaKeyShort { bits: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermReason {
    Syntax(TagError),
    MissingTag(&'static str),
    BadTag(&'static str),
    Version,
    UnknownAlgorithm,
    Sha1,
    Canonicalization,
    QueryMethod,
    IdentityNotUnderDomain,
    FromNotSigned,
    TooManySignedNames,
    Expired,
    NoKey,
    KeyRecord(RecordError),
    Revoked,
    KeyTypeMismatch,
    HashNotAllowed,
    StrictIdentity,
    RsaKeyTooSmall { bits: u32 },
    BadKey,
}

impl Outcome {
    /// The RFC 8601 result keyword.
    pub fn result(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::Neutral(_) => "neutral",
            Outcome::Policy(_) => "policy",
            Outcome::TempError => "temperror",
            Outcome::PermError(_) => "permerror",
        }
    }
}

/// The reason, as a short comment for Authentication-Results.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pass => write!(f, "good signature"),
            Outcome::Fail(r) => write!(f, "{r}"),
            Outcome::Neutral(r) => write!(f, "testing key, {r}"),
            Outcome::Policy(PolicyReason::LengthTag) => write!(f, "l= not accepted"),
            Outcome::Policy(PolicyReason::RsaKeyShort { bits }) => write!(f, "RSA key of {bits} bits too short"),
            Outcome::TempError => write!(f, "key lookup failed for now"),
            Outcome::PermError(r) => write!(f, "{r}"),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::BodyHash => write!(f, "body hash did not verify"),
            Failure::Signature => write!(f, "signature did not verify"),
            Failure::LengthBeyondBody => write!(f, "l= beyond the end of the body"),
        }
    }
}

impl fmt::Display for PermReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PermReason::Syntax(e) => write!(f, "signature syntax: {e}"),
            PermReason::MissingTag(t) => write!(f, "signature lacks {t}="),
            PermReason::BadTag(t) => write!(f, "bad {t}= value"),
            PermReason::Version => write!(f, "unknown v="),
            PermReason::UnknownAlgorithm => write!(f, "unknown algorithm"),
            PermReason::Sha1 => write!(f, "rsa-sha1 not accepted (RFC 8301)"),
            PermReason::Canonicalization => write!(f, "unknown canonicalization"),
            PermReason::QueryMethod => write!(f, "unknown query method"),
            PermReason::IdentityNotUnderDomain => write!(f, "i= not within d="),
            PermReason::FromNotSigned => write!(f, "From not signed"),
            PermReason::TooManySignedNames => write!(f, "too many signed fields"),
            PermReason::Expired => write!(f, "signature expired"),
            PermReason::NoKey => write!(f, "no key"),
            PermReason::KeyRecord(e) => write!(f, "{e}"),
            PermReason::Revoked => write!(f, "key revoked"),
            PermReason::KeyTypeMismatch => write!(f, "key type does not match a="),
            PermReason::HashNotAllowed => write!(f, "key record h= excludes sha256"),
            PermReason::StrictIdentity => write!(f, "key t=s but i= in a subdomain"),
            PermReason::RsaKeyTooSmall { bits } => write!(f, "RSA key of {bits} bits (RFC 8301: at least 1024)"),
            PermReason::BadKey => write!(f, "key does not decode"),
        }
    }
}

/// One signature's result and what Authentication-Results reports with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigResult {
    /// d= (lowercase) and s= as far as they could be read ("" if not).
    pub domain: String,
    pub selector: String,
    /// i=, or "@" and d= when absent (header.i).
    pub identity: String,
    pub algorithm: Option<Algorithm>,
    /// b= without white space (header.b takes a prefix of it, RFC 6008).
    pub b: String,
    pub outcome: Outcome,
    /// The key record had t=y.
    pub testing: bool,
    pub key_bits: Option<u32>,
    /// l=, when the signature covers only that much of the body.
    pub length: Option<u64>,
}

/// Checks the signatures of one message: the header section first, then
/// the body in chunks (CR LF form), then `finish` with a key lookup.
pub struct Verifier {
    header: Vec<u8>,
    sigs: Vec<Sig>,
    hashers: Vec<BodyHasher>,
    skipped: usize,
    opts: VerifyOptions,
}

struct Sig {
    result: SigResult,
    /// Index of the field among the header's fields.
    field: usize,
    parsed: Result<Parsed, Outcome>,
}

struct Parsed {
    algorithm: Algorithm,
    header_canon: Canon,
    names: Vec<Vec<u8>>,
    bh: Vec<u8>,
    b: Vec<u8>,
    /// The b= value's octets in the raw field.
    b_span: Range<usize>,
    length: Option<u64>,
    /// x=.
    expires: Option<u64>,
    identity_domain: String,
    /// Index into `hashers`.
    hasher: usize,
}

impl Verifier {
    /// `header`: the header section (see `header::HeaderReader`), without
    /// the empty line. Fails if it does not split into fields; the caller
    /// then reports every signature it cannot read as permerror.
    pub fn new(header: &[u8], opts: &VerifyOptions) -> Result<Verifier, HeaderError> {
        let fields = header::split_fields(header)?;
        let mut sigs = Vec::new();
        let mut hashers: Vec<BodyHasher> = Vec::new();
        let mut skipped = 0;
        for (i, f) in fields.iter().enumerate().filter(|(_, f)| f.is("dkim-signature")) {
            if sigs.len() == opts.max_signatures {
                skipped += 1;
                continue;
            }
            let (result, parsed) = parse_signature(f, opts);
            let parsed = parsed.map(|(mut p, body_canon)| {
                let limit = p.length;
                p.hasher = match hashers.iter().position(|h| h.canon() == body_canon && h.limit() == limit) {
                    Some(n) => n,
                    None => {
                        hashers.push(BodyHasher::new(body_canon, limit));
                        hashers.len() - 1
                    }
                };
                p
            });
            sigs.push(Sig { result, field: i, parsed });
        }
        Ok(Verifier { header: header.to_vec(), sigs, hashers, skipped, opts: opts.clone() })
    }

    /// Signatures that will be evaluated.
    pub fn signatures(&self) -> usize {
        self.sigs.len()
    }

    /// Signatures past `max_signatures`, not evaluated.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The names `finish` will look up (`selector._domainkey.domain`), each
    /// once, for a caller that wants to start its queries early.
    pub fn key_names(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for s in self.sigs.iter().filter(|s| s.parsed.is_ok()) {
            let n = key_name(&s.result);
            if !v.contains(&n) {
                v.push(n);
            }
        }
        v
    }

    /// The next chunk of the body.
    pub fn body(&mut self, chunk: &[u8]) {
        for h in &mut self.hashers {
            h.update(chunk);
        }
    }

    /// The results, one per evaluated signature, top to bottom. `now`:
    /// seconds since the epoch; `lookup`: the TXT record text (the strings of
    /// one record concatenated, RFC 6376 3.6.2.2) at a name, each name asked
    /// once. With several TXT records at the name, RFC 6376 leaves the choice
    /// to the verifier: give the first, as OpenDKIM and dkimpy do.
    pub fn finish(self, now: u64, lookup: &mut dyn FnMut(&str) -> Result<Vec<u8>, LookupError>) -> Vec<SigResult> {
        let hashes: Vec<BodyHash> = self.hashers.into_iter().map(BodyHasher::finish).collect();
        let fields = header::split_fields(&self.header).unwrap_or_default();
        let mut cache: HashMap<String, Result<Vec<u8>, LookupError>> = HashMap::new();
        let mut out = Vec::with_capacity(self.sigs.len());
        for sig in self.sigs {
            let mut result = sig.result;
            result.outcome = match sig.parsed {
                Err(o) => o,
                // 6.1.1: an expired signature needs no key.
                Ok(p) if p.expires.is_some_and(|x| now > x) => Outcome::PermError(PermReason::Expired),
                Ok(p) => {
                    let name = key_name(&result);
                    let answer = cache.entry(name.clone()).or_insert_with(|| lookup(&name));
                    let raw = fields.get(sig.field).map(|f| f.raw).unwrap_or_default();
                    let hash = hashes.get(p.hasher);
                    check(&p, raw, &fields, hash, answer, &self.opts, &mut result)
                }
            };
            out.push(result);
        }
        out
    }
}

/// Verify a whole message (CR LF form).
pub fn verify_message(
    msg: &[u8],
    opts: &VerifyOptions,
    now: u64,
    lookup: &mut dyn FnMut(&str) -> Result<Vec<u8>, LookupError>,
) -> Result<Vec<SigResult>, HeaderError> {
    let (header, body) = header::split_message(msg)?;
    let mut v = Verifier::new(header, opts)?;
    v.body(body);
    Ok(v.finish(now, lookup))
}

fn key_name(r: &SigResult) -> String {
    format!("{}._domainkey.{}", r.selector, r.domain)
}

/// The key, the body hash, the header hash: RFC 6376 6.1.2 and 6.1.3.
fn check(
    p: &Parsed,
    raw: &[u8],
    fields: &[Field<'_>],
    hash: Option<&BodyHash>,
    answer: &Result<Vec<u8>, LookupError>,
    opts: &VerifyOptions,
    result: &mut SigResult,
) -> Outcome {
    let txt = match answer {
        Ok(t) => t,
        Err(LookupError::NotFound) => return Outcome::PermError(PermReason::NoKey),
        Err(LookupError::Temporary) => return Outcome::TempError,
    };
    let rec = match key::parse_key_record(txt) {
        Ok(r) => r,
        Err(e) => return Outcome::PermError(PermReason::KeyRecord(e)),
    };
    result.testing = rec.testing;
    if rec.is_revoked() {
        return Outcome::PermError(PermReason::Revoked);
    }
    if rec.key_type != p.algorithm.key_type() {
        return Outcome::PermError(PermReason::KeyTypeMismatch);
    }
    if !rec.sha256_allowed {
        return Outcome::PermError(PermReason::HashNotAllowed);
    }
    if rec.strict && p.identity_domain != result.domain {
        return Outcome::PermError(PermReason::StrictIdentity);
    }
    let public: &[u8] = match rec.key_type {
        KeyType::Rsa => {
            let Some((pkcs1, bits)) = key::rsa_public_key(&rec.public_key) else {
                return Outcome::PermError(PermReason::BadKey);
            };
            result.key_bits = Some(bits);
            if bits < RSA_VERIFY_MIN_BITS {
                return Outcome::PermError(PermReason::RsaKeyTooSmall { bits });
            }
            if bits > RSA_VERIFY_MAX_BITS {
                return Outcome::PermError(PermReason::BadKey);
            }
            if bits < opts.min_rsa_bits {
                return Outcome::Policy(PolicyReason::RsaKeyShort { bits });
            }
            pkcs1
        }
        KeyType::Ed25519 => {
            if rec.public_key.len() != 32 {
                return Outcome::PermError(PermReason::BadKey);
            }
            result.key_bits = Some(256);
            &rec.public_key
        }
    };
    let failed = |f: Failure| if rec.testing { Outcome::Neutral(f) } else { Outcome::Fail(f) };
    let Some(hash) = hash else {
        return failed(Failure::BodyHash);
    };
    if p.length.is_some_and(|l| hash.length < l) {
        return failed(Failure::LengthBeyondBody);
    }
    if hash.digest != p.bh {
        return failed(Failure::BodyHash);
    }
    // 3.7: the signature field itself with the b= value deleted.
    let blanked = [raw.get(..p.b_span.start).unwrap_or_default(), raw.get(p.b_span.end..).unwrap_or_default()].concat();
    let data = header_hash_input(p.header_canon, fields, &p.names, &blanked);
    let ok = match p.algorithm {
        Algorithm::RsaSha256 => {
            UnparsedPublicKey::new(&RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY, public).verify(&data, &p.b).is_ok()
        }
        Algorithm::Ed25519Sha256 => {
            let h = ring::digest::digest(&ring::digest::SHA256, &data);
            UnparsedPublicKey::new(&ED25519, public).verify(h.as_ref(), &p.b).is_ok()
        }
    };
    if ok {
        Outcome::Pass
    } else {
        failed(Failure::Signature)
    }
}

/// Parse one DKIM-Signature field (RFC 6376 3.5, 6.1.1): what is reported in
/// any case, and either what the check needs (with the body
/// canonicalization) or the outcome already known.
fn parse_signature(f: &Field<'_>, opts: &VerifyOptions) -> (SigResult, Result<(Parsed, Canon), Outcome>) {
    let mut r = SigResult {
        domain: String::new(),
        selector: String::new(),
        identity: String::new(),
        algorithm: None,
        b: String::new(),
        outcome: Outcome::PermError(PermReason::MissingTag("v")),
        testing: false,
        key_bits: None,
        length: None,
    };
    let perm = |why: PermReason| Err(Outcome::PermError(why));
    let list = match TagList::parse(f.value()) {
        Ok(l) => l,
        Err(e) => return (r, perm(PermReason::Syntax(e))),
    };
    // What is reported comes first, so that even a bad signature names its domain.
    let lossy = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    r.domain = list.get("d").map(|d| header::parse_domain(d).unwrap_or_else(|| lossy(d))).unwrap_or_default();
    r.selector = list.get("s").map(|s| header::parse_domain(s).unwrap_or_else(|| lossy(s))).unwrap_or_default();
    r.b = list.get("b").map(|b| lossy(&tags::strip_fws(b))).unwrap_or_default();
    r.identity = list.get("i").map(lossy).unwrap_or_else(|| format!("@{}", r.domain));
    let parsed = parse_tags(&list, f, opts, &mut r);
    (r, parsed)
}

fn parse_tags(
    list: &TagList<'_>,
    f: &Field<'_>,
    opts: &VerifyOptions,
    r: &mut SigResult,
) -> Result<(Parsed, Canon), Outcome> {
    let perm = |why: PermReason| Outcome::PermError(why);
    for t in ["v", "a", "b", "bh", "d", "h", "s"] {
        if list.get(t).is_none() {
            return Err(perm(PermReason::MissingTag(t)));
        }
    }
    let get = |t: &str| list.get(t).unwrap_or_default();
    if get("v") != b"1" {
        return Err(perm(PermReason::Version));
    }
    let algorithm = match get("a") {
        b"rsa-sha1" => return Err(perm(PermReason::Sha1)),
        a => Algorithm::parse(a).ok_or(perm(PermReason::UnknownAlgorithm))?,
    };
    r.algorithm = Some(algorithm);
    let b = key::decode_base64(get("b")).filter(|b| !b.is_empty()).ok_or(perm(PermReason::BadTag("b")))?;
    let bh = key::decode_base64(get("bh")).ok_or(perm(PermReason::BadTag("bh")))?;
    let (header_canon, body_canon) = match list.get("c") {
        None => (Canon::Simple, Canon::Simple),
        Some(c) => {
            let mut parts = c.splitn(2, |&b| b == b'/');
            let h = parts.next().and_then(Canon::parse);
            let b = parts.next().map_or(Some(Canon::Simple), Canon::parse);
            match (h, b) {
                (Some(h), Some(b)) => (h, b),
                _ => return Err(perm(PermReason::Canonicalization)),
            }
        }
    };
    let domain = header::parse_domain(get("d")).filter(|d| d.contains('.')).ok_or(perm(PermReason::BadTag("d")))?;
    header::parse_domain(get("s")).ok_or(perm(PermReason::BadTag("s")))?;
    let mut names = Vec::new();
    for n in tags::split_colons(get("h")) {
        if n.is_empty() || !n.iter().all(|&b| (33..=126).contains(&b)) {
            return Err(perm(PermReason::BadTag("h")));
        }
        if names.len() == MAX_SIGNED_NAMES {
            return Err(perm(PermReason::TooManySignedNames));
        }
        names.push(n.to_ascii_lowercase());
    }
    if !names.iter().any(|n| n == b"from") {
        return Err(perm(PermReason::FromNotSigned));
    }
    let identity_domain = match list.get("i") {
        None => domain.clone(),
        Some(i) => {
            let at = i.iter().rposition(|&b| b == b'@').ok_or(perm(PermReason::BadTag("i")))?;
            let d = header::parse_domain(i.get(at + 1..).unwrap_or_default()).ok_or(perm(PermReason::BadTag("i")))?;
            if d != domain && !d.ends_with(&format!(".{domain}")) {
                return Err(perm(PermReason::IdentityNotUnderDomain));
            }
            d
        }
    };
    let number = |t: &'static str| -> Result<Option<u64>, Outcome> {
        match list.get(t) {
            None => Ok(None),
            Some(v) if !v.is_empty() && v.len() <= 20 && v.iter().all(u8::is_ascii_digit) => {
                std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).map(Some).ok_or(perm(PermReason::BadTag(t)))
            }
            Some(_) => Err(perm(PermReason::BadTag(t))),
        }
    };
    let length = number("l")?;
    let t = number("t")?;
    let x = number("x")?;
    if let Some(q) = list.get("q") {
        if !tags::split_colons(q).any(|m| m == b"dns/txt") {
            return Err(perm(PermReason::QueryMethod));
        }
    }
    if let (Some(t), Some(x)) = (t, x) {
        if x < t {
            return Err(perm(PermReason::BadTag("x")));
        }
    }
    r.length = length;
    if length.is_some() && !opts.honour_length {
        return Err(Outcome::Policy(PolicyReason::LengthTag));
    }
    let b_tag = list.tag("b").ok_or(perm(PermReason::MissingTag("b")))?;
    let off = f.value_offset();
    let b_span = off + b_tag.span.start..off + b_tag.span.end;
    Ok((Parsed { algorithm, header_canon, names, bh, b, b_span, length, expires: x, identity_domain, hasher: 0 }, body_canon))
}

#[cfg(test)]
mod tests {
    use super::super::testkeys;
    use super::*;
    use crate::dkim::key::SigningKey;
    use crate::dkim::sign::{sign_message, Signer};
    use std::sync::Arc;

    const NOW: u64 = 1_700_000_000;
    const MSG: &[u8] = b"From: Joe <joe@example.com>\r\nTo: a@b.example\r\nSubject: hi\r\n there\r\n\r\nbody  \r\nline two\r\n\r\n";

    fn key(pem: &str) -> Arc<SigningKey> {
        Arc::new(SigningKey::from_pem(pem.as_bytes()).unwrap())
    }

    struct Dns(HashMap<String, Result<Vec<u8>, LookupError>>, Vec<String>);

    impl Dns {
        fn lookup(&mut self) -> impl FnMut(&str) -> Result<Vec<u8>, LookupError> + '_ {
            |name| {
                self.1.push(name.to_string());
                self.0.get(name).cloned().unwrap_or(Err(LookupError::NotFound))
            }
        }
    }

    fn dns(records: &[(&str, &str)]) -> Dns {
        Dns(records.iter().map(|(n, r)| (n.to_string(), Ok(r.as_bytes().to_vec()))).collect(), Vec::new())
    }

    fn signed(s: &Signer, msg: &[u8]) -> Vec<u8> {
        let mut f = sign_message(&[s], msg, NOW).unwrap().remove(0);
        f.extend_from_slice(msg);
        f
    }

    fn outcomes(msg: &[u8], d: &mut Dns, opts: &VerifyOptions, now: u64) -> Vec<Outcome> {
        verify_message(msg, opts, now, &mut d.lookup()).unwrap().into_iter().map(|r| r.outcome).collect()
    }

    fn one(msg: &[u8], d: &mut Dns) -> Outcome {
        let mut v = outcomes(msg, d, &VerifyOptions::default(), NOW);
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    #[test]
    fn round_trip_all_algorithms_and_canonicalizations() {
        for pem in [testkeys::ED25519, testkeys::RSA_2048_PKCS8] {
            let k = key(pem);
            let rec = k.dns_record();
            for hc in [Canon::Simple, Canon::Relaxed] {
                for bc in [Canon::Simple, Canon::Relaxed] {
                    let s = Signer::new("example.com", "sel", k.clone()).unwrap().with_canonicalization(hc, bc);
                    let msg = signed(&s, MSG);
                    let mut d = dns(&[("sel._domainkey.example.com", &rec)]);
                    let r = verify_message(&msg, &VerifyOptions::default(), NOW, &mut d.lookup()).unwrap();
                    assert_eq!(r[0].outcome, Outcome::Pass, "{:?} {hc:?}/{bc:?}", k.algorithm());
                    assert_eq!((r[0].domain.as_str(), r[0].selector.as_str(), r[0].identity.as_str()), ("example.com", "sel", "@example.com"));
                    assert_eq!(r[0].algorithm, Some(k.algorithm()));
                    // One altered body octet, one altered signed field.
                    let body_at = msg.len() - 5;
                    let mut bad = msg.clone();
                    bad[body_at] ^= 1;
                    assert_eq!(one(&bad, &mut d), Outcome::Fail(Failure::BodyHash));
                    let bad = String::from_utf8(msg.clone()).unwrap().replace("Subject: hi", "Subject: hI").into_bytes();
                    assert_eq!(one(&bad, &mut d), Outcome::Fail(Failure::Signature));
                    // An added From breaks the oversigned list.
                    let bad = [b"From: evil@example.net\r\n", &msg[..]].concat();
                    assert_eq!(one(&bad, &mut d), Outcome::Fail(Failure::Signature));
                    // An unsigned field may be added.
                    let ok = [b"Received: by relay\r\n", &msg[..]].concat();
                    assert_eq!(one(&ok, &mut d), Outcome::Pass);
                }
            }
        }
    }

    #[test]
    fn relaxed_survives_whitespace_and_case_changes_simple_does_not() {
        let k = key(testkeys::ED25519);
        let mut d = dns(&[("sel._domainkey.example.com", &k.dns_record())]);
        for (c, expect) in [(Canon::Relaxed, Outcome::Pass), (Canon::Simple, Outcome::Fail(Failure::Signature))] {
            let s = Signer::new("example.com", "sel", k.clone()).unwrap().with_canonicalization(c, Canon::Relaxed);
            let msg = String::from_utf8(signed(&s, MSG)).unwrap();
            let changed = msg.replace("Subject: hi\r\n there", "SUBJECT:   hi\r\n\t  there").replace("body  \r\n", "body\r\n");
            assert_eq!(one(changed.as_bytes(), &mut d), expect, "{c:?}");
        }
    }

    #[test]
    fn two_signatures_one_pass_and_lookups_cached() {
        let rsa = key(testkeys::RSA_2048_PKCS1);
        let ed = key(testkeys::ED25519);
        let s1 = Signer::new("example.com", "r", rsa.clone()).unwrap();
        let s2 = Signer::new("example.com", "e", ed.clone()).unwrap().with_canonicalization(Canon::Simple, Canon::Simple);
        let fields = sign_message(&[&s1, &s2], MSG, NOW).unwrap();
        let msg = [fields.concat(), MSG.to_vec()].concat();
        let mut d = dns(&[("r._domainkey.example.com", &rsa.dns_record()), ("e._domainkey.example.com", &ed.dns_record())]);
        let (header, body) = header::split_message(&msg).unwrap();
        let mut v = Verifier::new(header, &VerifyOptions::default()).unwrap();
        assert_eq!(v.signatures(), 2);
        assert_eq!(v.key_names(), ["r._domainkey.example.com", "e._domainkey.example.com"]);
        assert_eq!(v.hashers.len(), 2);
        for c in body.chunks(3) {
            v.body(c);
        }
        let r = v.finish(NOW, &mut d.lookup());
        assert_eq!(r.iter().map(|r| r.outcome.clone()).collect::<Vec<_>>(), [Outcome::Pass, Outcome::Pass]);
        assert_eq!(r[0].key_bits, Some(2048));
        // The same selector twice is looked up once.
        let twice = [fields[0].clone(), fields[0].clone(), MSG.to_vec()].concat();
        d.1.clear();
        assert_eq!(outcomes(&twice, &mut d, &VerifyOptions::default(), NOW), [Outcome::Pass, Outcome::Pass]);
        assert_eq!(d.1, ["r._domainkey.example.com"]);
        // The bound: only the first signature is evaluated.
        let opts = VerifyOptions { max_signatures: 1, ..VerifyOptions::default() };
        let (header, _) = header::split_message(&twice).unwrap();
        let v = Verifier::new(header, &opts).unwrap();
        assert_eq!((v.signatures(), v.skipped()), (1, 1));
    }

    /// A signature field written by hand, signed with the test key.
    fn hand_signed(tags_before_b: &str, k: &SigningKey, msg: &[u8]) -> Vec<u8> {
        let (header, _) = header::split_message(msg).unwrap();
        let fields = header::split_fields(header).unwrap();
        let unsigned = format!("DKIM-Signature: {tags_before_b} b=");
        let list = TagList::parse(tags_before_b.as_bytes()).unwrap_or_default();
        let hc = match list.get("c").unwrap_or(b"simple") {
            c if c.starts_with(b"relaxed") => Canon::Relaxed,
            _ => Canon::Simple,
        };
        let names: Vec<&[u8]> = tags::split_colons(list.get("h").unwrap_or(b"from")).collect();
        let data = header_hash_input(hc, &fields, &names, unsigned.as_bytes());
        let sig = k.sign(&data).unwrap();
        use base64::Engine;
        let field = format!("{unsigned}{}\r\n", base64::engine::general_purpose::STANDARD.encode(sig));
        [field.as_bytes(), msg].concat()
    }

    fn bh(c: Canon, body: &[u8], l: Option<u64>) -> String {
        use base64::Engine;
        let mut h = BodyHasher::new(c, l);
        h.update(body);
        base64::engine::general_purpose::STANDARD.encode(h.finish().digest)
    }

    #[test]
    fn permerror_temperror_policy_table() {
        let k = key(testkeys::ED25519);
        let rec = k.dns_record();
        let body = &MSG[MSG.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
        let good_bh = bh(Canon::Simple, body, None);
        let base = |extra: &str| format!("v=1; a=ed25519-sha256; d=example.com; s=sel; h=from:to; bh={good_bh};{extra}");
        let perm = |r: PermReason| Outcome::PermError(r);
        let mut d = dns(&[("sel._domainkey.example.com", &rec)]);
        let run = |tags: &str, d: &mut Dns| one(&hand_signed(tags, &k, MSG), d);
        assert_eq!(run(&base(""), &mut d), Outcome::Pass);
        assert_eq!(run(&base(" i=joe@sub.example.com;"), &mut d), Outcome::Pass);
        assert_eq!(run(&base(" i=@example.com; q=dns/txt; z=From:x; foo=bar;"), &mut d), Outcome::Pass);
        assert_eq!(run(&base(" i=joe@example.org;"), &mut d), perm(PermReason::IdentityNotUnderDomain));
        assert_eq!(run(&base(" i=joe@notexample.com;"), &mut d), perm(PermReason::IdentityNotUnderDomain));
        assert_eq!(run(&base(" q=http;"), &mut d), perm(PermReason::QueryMethod));
        assert_eq!(run(&base(" c=fancy/simple;"), &mut d), perm(PermReason::Canonicalization));
        assert_eq!(run(&base(" t=20; x=10;"), &mut d), perm(PermReason::BadTag("x")));
        assert_eq!(run(&base(" l=x;"), &mut d), perm(PermReason::BadTag("l")));
        assert_eq!(run(&base(" l=99999999999999999999999;"), &mut d), perm(PermReason::BadTag("l")));
        assert_eq!(run(&format!("v=2; a=ed25519-sha256; d=example.com; s=sel; h=from; bh={good_bh};"), &mut d), perm(PermReason::Version));
        assert_eq!(run(&format!("v=1; a=rsa-sha1; d=example.com; s=sel; h=from; bh={good_bh};"), &mut d), perm(PermReason::Sha1));
        assert_eq!(run(&format!("v=1; a=rsa-md5; d=example.com; s=sel; h=from; bh={good_bh};"), &mut d), perm(PermReason::UnknownAlgorithm));
        assert_eq!(run(&format!("v=1; a=ed25519-sha256; d=example.com; s=sel; h=to:subject; bh={good_bh};"), &mut d), perm(PermReason::FromNotSigned));
        assert_eq!(run(&format!("v=1; a=ed25519-sha256; d=com; s=sel; h=from; bh={good_bh};"), &mut d), perm(PermReason::BadTag("d")));
        assert_eq!(run("v=1; a=ed25519-sha256; d=example.com; s=sel; h=from;", &mut d), perm(PermReason::MissingTag("bh")));
        assert_eq!(run(&format!("v=1; a=ed25519-sha256; d=example.com; h=from; bh={good_bh};"), &mut d), perm(PermReason::MissingTag("s")));
        assert_eq!(run(&format!("v=1; a=ed25519-sha256; d=example.com; s=sel; h=from; bh={good_bh}; v=1;"), &mut d), perm(PermReason::Syntax(TagError::Duplicate("v".into()))));
        // Expiry is checked against the clock.
        let x = base(&format!(" t={}; x={};", NOW - 100, NOW - 1));
        assert_eq!(run(&x, &mut d), perm(PermReason::Expired));
        let x = base(&format!(" t={}; x={};", NOW - 100, NOW));
        assert_eq!(run(&x, &mut d), Outcome::Pass);
        // l=: honoured (the rest of the body unsigned), or policy.
        let l_bh = bh(Canon::Simple, body, Some(4));
        let l_tags = format!("v=1; a=ed25519-sha256; d=example.com; s=sel; h=from:to; bh={l_bh}; l=4;");
        let with_l = hand_signed(&l_tags, &k, MSG);
        let extended = [&with_l[..], b"appended by a list\r\n"].concat();
        let r = verify_message(&extended, &VerifyOptions::default(), NOW, &mut d.lookup()).unwrap();
        assert_eq!((r[0].outcome.clone(), r[0].length), (Outcome::Pass, Some(4)));
        let strict = VerifyOptions { honour_length: false, ..VerifyOptions::default() };
        assert_eq!(outcomes(&with_l, &mut d, &strict, NOW), [Outcome::Policy(PolicyReason::LengthTag)]);
        let too_long = format!("v=1; a=ed25519-sha256; d=example.com; s=sel; h=from:to; bh={l_bh}; l=4000;");
        assert_eq!(run(&too_long, &mut d), Outcome::Fail(Failure::LengthBeyondBody));
        // Key problems.
        let tags = base("");
        let key_case = |record: Result<&str, LookupError>| {
            let mut d = Dns([("sel._domainkey.example.com".to_string(), record.map(|r| r.as_bytes().to_vec()))].into(), Vec::new());
            one(&hand_signed(&tags, &k, MSG), &mut d)
        };
        assert_eq!(key_case(Err(LookupError::NotFound)), perm(PermReason::NoKey));
        assert_eq!(key_case(Err(LookupError::Temporary)), Outcome::TempError);
        assert_eq!(key_case(Ok("v=DKIM1; k=ed25519; p=")), perm(PermReason::Revoked));
        assert_eq!(key_case(Ok("v=DKIM1; p=AQID")), perm(PermReason::KeyTypeMismatch));
        assert_eq!(key_case(Ok("k=ed25519; p=AQID")), perm(PermReason::BadKey));
        assert_eq!(key_case(Ok("k=ed25519; p=AQID; p=x")), perm(PermReason::KeyRecord(RecordError::Syntax(TagError::Duplicate("p".into())))));
        assert_eq!(key_case(Ok(&rec.replace("k=ed25519", "k=ed25519; h=sha1"))), perm(PermReason::HashNotAllowed));
        assert_eq!(key_case(Ok(&rec.replace("k=ed25519", "k=ed25519; s=web"))), perm(PermReason::KeyRecord(RecordError::NotForEmail)));
        assert_eq!(key_case(Ok(&rec.replace("k=ed25519", "k=ed25519; t=s"))), Outcome::Pass);
        let sub = hand_signed(&base(" i=@sub.example.com;"), &k, MSG);
        let mut strict_dns = dns(&[("sel._domainkey.example.com", &rec.replace("k=ed25519", "k=ed25519; t=s"))]);
        assert_eq!(one(&sub, &mut strict_dns), perm(PermReason::StrictIdentity));
        // Testing mode: a failure is neutral.
        let mut testing = dns(&[("sel._domainkey.example.com", &rec.replace("k=ed25519", "k=ed25519; t=y"))]);
        let mut bad = hand_signed(&tags, &k, MSG);
        let n = bad.len() - 3;
        bad[n] ^= 1;
        let r = verify_message(&bad, &VerifyOptions::default(), NOW, &mut testing.lookup()).unwrap();
        assert_eq!((r[0].outcome.clone(), r[0].testing), (Outcome::Neutral(Failure::BodyHash), true));
        assert_eq!(r[0].outcome.result(), "neutral");
    }

    #[test]
    fn rsa_key_sizes() {
        // A 1024-bit public key (what a 1024-bit signer publishes): permitted,
        // but policy when the options ask for 2048.
        let rsa = key(testkeys::RSA_2048_PKCS8);
        let s = Signer::new("example.com", "sel", rsa.clone()).unwrap();
        let msg = signed(&s, MSG);
        let mut d = dns(&[("sel._domainkey.example.com", &rsa.dns_record())]);
        let strict = VerifyOptions { min_rsa_bits: 3072, ..VerifyOptions::default() };
        assert_eq!(outcomes(&msg, &mut d, &strict, NOW), [Outcome::Policy(PolicyReason::RsaKeyShort { bits: 2048 })]);
        // A 512-bit key: permerror whatever the options (RFC 8301).
        let small = "v=DKIM1; k=rsa; p=MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAL6P3jO0g2aI2Z1jFs4q5Hyalyu2hgT9lLoAWiAVm1P1CDy5xRRwXEY6BtyVZoGxhY3D51j68rSUjuk29PsVWGsCAwEAAQ==";
        let mut d = dns(&[("sel._domainkey.example.com", small)]);
        assert_eq!(one(&msg, &mut d), Outcome::PermError(PermReason::RsaKeyTooSmall { bits: 512 }));
    }

    #[test]
    fn results_and_display() {
        assert_eq!(Outcome::Fail(Failure::BodyHash).to_string(), "body hash did not verify");
        assert_eq!(Outcome::PermError(PermReason::Revoked).result(), "permerror");
        let msg = b"DKIM-Signature: v=1; a=ed25519-sha256; d=Example.com; s=Sel; b=AAAA\r\n\tBBBB\r\nFrom: a@b.c\r\n\r\n";
        let mut d = dns(&[]);
        let r = verify_message(msg, &VerifyOptions::default(), NOW, &mut d.lookup()).unwrap();
        assert_eq!((r[0].domain.as_str(), r[0].selector.as_str(), r[0].b.as_str()), ("example.com", "sel", "AAAABBBB"));
        assert_eq!(r[0].outcome, Outcome::PermError(PermReason::MissingTag("bh")));
        assert!(d.1.is_empty(), "no lookup for a signature that does not parse");
        assert_eq!(verify_message(b"no header\r\n\r\n", &VerifyOptions::default(), NOW, &mut d.lookup()), Err(HeaderError::NotAField { line: 1 }));
        assert_eq!(verify_message(b"From: a@b.c\r\n\r\nx", &VerifyOptions::default(), NOW, &mut d.lookup()), Ok(vec![]));
    }
}
