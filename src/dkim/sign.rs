//! DKIM signing (RFC 6376 5, RFC 8463): a `Signer` holds one domain's
//! selector, key and choices, made once at start-up; a `SignJob` signs one
//! message for one or more signers (an RSA and an Ed25519 key for the same
//! domain, say) over a single pass of the body, and returns the
//! `DKIM-Signature:` fields to put on top of the message. Never l=; t= always;
//! x= when asked. Pure apart from ring's random source for RSA blinding; the
//! caller passes the clock.

use std::fmt;
use std::sync::Arc;

use base64::Engine;

use super::canon::{header_hash_input, BodyHasher, Canon};
use super::header::{self, Field, HeaderError};
use super::key::{Algorithm, KeyError, SigningKey};

/// RFC 6376 5.4.1: the fields that SHOULD be signed when present, From first.
pub const DEFAULT_HEADERS: &[&str] = &[
    "from",
    "reply-to",
    "subject",
    "date",
    "to",
    "cc",
    "resent-date",
    "resent-from",
    "resent-to",
    "resent-cc",
    "in-reply-to",
    "references",
    "list-id",
    "list-help",
    "list-unsubscribe",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
];

/// Lines of the field are folded before this column (RFC 5322 2.1.1's 78).
const WIDTH: usize = 78;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignError {
    /// The message's header section cannot be split into fields.
    Header(HeaderError),
    /// d= is not a domain name of at least two labels.
    BadDomain,
    /// s= is not a selector (RFC 6376 3.1).
    BadSelector,
    /// A header field name that is not one (RFC 5322 3.6.8).
    BadHeaderName(String),
    /// The signed field list lacks From (RFC 6376 5.4: From MUST be signed).
    FromNotSigned,
    /// A job needs at least one signer.
    NoSigners,
    Key(KeyError),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::Header(e) => write!(f, "{e}"),
            SignError::BadDomain => write!(f, "signing domain is not a domain name"),
            SignError::BadSelector => write!(f, "selector is not a domain label sequence"),
            SignError::BadHeaderName(n) => write!(f, "not a header field name: {n}"),
            SignError::FromNotSigned => write!(f, "the signed header fields must include From"),
            SignError::NoSigners => write!(f, "no signer"),
            SignError::Key(e) => write!(f, "{e}"),
        }
    }
}

/// One domain's signing set-up: d=, s=, the key and what to sign.
#[derive(Debug, Clone)]
pub struct Signer {
    domain: String,
    selector: String,
    key: Arc<SigningKey>,
    header_canon: Canon,
    body_canon: Canon,
    headers: Vec<String>,
    oversign: Vec<String>,
    expire: Option<u64>,
}

impl Signer {
    /// A signer with the defaults: relaxed/relaxed, the fields of
    /// DEFAULT_HEADERS that the message has, From oversigned, no x=. The
    /// domain and selector in ASCII (an IDN domain as A-labels).
    pub fn new(domain: &str, selector: &str, key: Arc<SigningKey>) -> Result<Signer, SignError> {
        let domain = header::parse_domain(domain.as_bytes())
            .filter(|d| d.contains('.') && d.is_ascii())
            .ok_or(SignError::BadDomain)?;
        let selector =
            header::parse_domain(selector.as_bytes()).filter(|s| s.is_ascii()).ok_or(SignError::BadSelector)?;
        Ok(Signer {
            domain,
            selector,
            key,
            header_canon: Canon::Relaxed,
            body_canon: Canon::Relaxed,
            headers: DEFAULT_HEADERS.iter().map(|s| s.to_string()).collect(),
            oversign: vec!["from".to_string()],
            expire: None,
        })
    }

    /// c=header/body.
    pub fn with_canonicalization(mut self, header: Canon, body: Canon) -> Signer {
        self.header_canon = header;
        self.body_canon = body;
        self
    }

    /// The field names to sign when present (replacing DEFAULT_HEADERS);
    /// From must be among them.
    pub fn with_headers(mut self, names: &[&str]) -> Result<Signer, SignError> {
        self.headers = field_names(names)?;
        if !self.headers.iter().any(|h| h == "from") {
            return Err(SignError::FromNotSigned);
        }
        Ok(self)
    }

    /// Which of the signed field names are listed once more than they occur,
    /// so that an added instance breaks the signature (default: From; a name
    /// not among the signed ones is ignored). Empty: none.
    pub fn with_oversign(mut self, names: &[&str]) -> Result<Signer, SignError> {
        self.oversign = field_names(names)?;
        Ok(self)
    }

    /// x= that many seconds after t= (None: no x=).
    pub fn with_expiry(mut self, seconds: Option<u64>) -> Signer {
        self.expire = seconds;
        self
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn selector(&self) -> &str {
        &self.selector
    }

    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// h= for a message with these fields: each configured name as often as
    /// it occurs, an oversigned one once more (so From is always in h=).
    pub fn signed_names(&self, fields: &[Field<'_>]) -> Vec<String> {
        let mut out = Vec::new();
        for name in &self.headers {
            let mut n = fields.iter().filter(|f| f.is(name)).count();
            if self.oversign.contains(name) {
                n += 1;
            }
            out.extend(std::iter::repeat(name.clone()).take(n));
        }
        out
    }
}

fn field_names(names: &[&str]) -> Result<Vec<String>, SignError> {
    names
        .iter()
        .map(|n| {
            let ok = !n.is_empty() && n.bytes().all(|b| (33..=126).contains(&b) && b != b':' && b != b';');
            ok.then(|| n.to_ascii_lowercase()).ok_or_else(|| SignError::BadHeaderName(n.to_string()))
        })
        .collect()
}

/// Signing one message: the header section first, then the body in chunks
/// (CR LF form, as transmitted), then `finish`.
pub struct SignJob<'a> {
    signers: Vec<&'a Signer>,
    header: Vec<u8>,
    /// One per body canonicalization among the signers.
    hashers: Vec<BodyHasher>,
}

impl<'a> SignJob<'a> {
    /// `header`: the header section (see `header::HeaderReader`), without
    /// the empty line. Fails if it does not split into fields.
    pub fn new(signers: &[&'a Signer], header: &[u8]) -> Result<SignJob<'a>, SignError> {
        if signers.is_empty() {
            return Err(SignError::NoSigners);
        }
        header::split_fields(header).map_err(SignError::Header)?;
        let mut hashers: Vec<BodyHasher> = Vec::new();
        for s in signers {
            if !hashers.iter().any(|h| h.canon() == s.body_canon) {
                hashers.push(BodyHasher::new(s.body_canon, None));
            }
        }
        Ok(SignJob { signers: signers.to_vec(), header: header.to_vec(), hashers })
    }

    /// The next chunk of the body.
    pub fn body(&mut self, chunk: &[u8]) {
        for h in &mut self.hashers {
            h.update(chunk);
        }
    }

    /// The signatures, one `DKIM-Signature: ...` field per signer in the
    /// order given, each folded and ending in CR LF. `now`: seconds since
    /// the epoch, for t= (and x=).
    pub fn finish(self, now: u64) -> Result<Vec<Vec<u8>>, SignError> {
        let fields = header::split_fields(&self.header).map_err(SignError::Header)?;
        let hashes: Vec<(Canon, Vec<u8>)> = self.hashers.into_iter().map(|h| (h.canon(), h.finish().digest)).collect();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out = Vec::new();
        for s in &self.signers {
            let bh = hashes.iter().find(|(c, _)| *c == s.body_canon).map(|(_, d)| b64.encode(d)).unwrap_or_default();
            let names = s.signed_names(&fields);
            let unsigned = unsigned_field(s, &names, &bh, now);
            let data = header_hash_input(s.header_canon, &fields, &names, unsigned.as_bytes());
            let sig = s.key.sign(&data).map_err(SignError::Key)?;
            let mut field = unsigned.into_bytes();
            fold_base64(&mut field, &b64.encode(sig));
            field.extend_from_slice(b"\r\n");
            out.push(field);
        }
        Ok(out)
    }
}

/// Sign a whole message (CR LF form): the fields to put on top of it.
pub fn sign_message(signers: &[&Signer], msg: &[u8], now: u64) -> Result<Vec<Vec<u8>>, SignError> {
    let (header, body) = header::split_message(msg).map_err(SignError::Header)?;
    let mut job = SignJob::new(signers, header)?;
    job.body(body);
    job.finish(now)
}

/// The field up to and including `b=` (the value the signature fills in):
/// tags folded at WIDTH, `b=` always on a line of its own so that its value
/// can be folded freely after signing without changing what was signed.
fn unsigned_field(s: &Signer, names: &[String], bh: &str, now: u64) -> String {
    let mut f = Folder { out: String::from("DKIM-Signature:"), col: "DKIM-Signature:".len() };
    f.push(" ", "v=1;");
    f.push(" ", &format!("a={};", s.key.algorithm().name()));
    f.push(" ", &format!("c={}/{};", s.header_canon.name(), s.body_canon.name()));
    f.push(" ", &format!("d={};", s.domain));
    f.push(" ", &format!("s={};", s.selector));
    f.push(" ", &format!("t={now};"));
    if let Some(x) = s.expire {
        f.push(" ", &format!("x={};", now.saturating_add(x)));
    }
    for (i, n) in names.iter().enumerate() {
        let piece = match (i == 0, i + 1 == names.len()) {
            (true, true) => format!("h={n};"),
            (true, false) => format!("h={n}:"),
            (false, true) => format!("{n};"),
            (false, false) => format!("{n}:"),
        };
        // FWS may follow the colon of h= (RFC 6376 3.5).
        f.push(if i == 0 { " " } else { "" }, &piece);
    }
    f.push(" ", &format!("bh={bh};"));
    f.out.push_str("\r\n\tb=");
    f.out
}

/// The b= value, folded: a line break and tab between pieces (base64 may be
/// folded anywhere, RFC 6376 3.5).
fn fold_base64(field: &mut Vec<u8>, b: &str) {
    // "\tb=" starts the line: 3 columns.
    let mut rest = b.as_bytes();
    let mut room = WIDTH - 3;
    while !rest.is_empty() {
        let (now, later) = rest.split_at(rest.len().min(room));
        field.extend_from_slice(now);
        rest = later;
        if !rest.is_empty() {
            field.extend_from_slice(b"\r\n\t");
            room = WIDTH - 1;
        }
    }
}

struct Folder {
    out: String,
    col: usize,
}

impl Folder {
    /// Append `piece` after `sep`, or on a new line (CR LF TAB) when it would
    /// pass WIDTH.
    fn push(&mut self, sep: &str, piece: &str) {
        if self.col + sep.len() + piece.len() > WIDTH && self.col > 1 {
            self.out.push_str("\r\n\t");
            self.col = 1;
        } else {
            self.out.push_str(sep);
            self.col += sep.len();
        }
        self.out.push_str(piece);
        self.col += piece.len();
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkeys;
    use super::*;
    use crate::dkim::tags::TagList;

    fn key(pem: &str) -> Arc<SigningKey> {
        Arc::new(SigningKey::from_pem(pem.as_bytes()).unwrap())
    }

    const MSG: &[u8] = b"From: Joe <joe@example.com>\r\nTo: a@b.example\r\nSubject: hi\r\n there\r\nX-Other: 1\r\n\r\nbody  \r\n\r\n";

    #[test]
    fn fields_look_right() {
        let k = key(testkeys::ED25519);
        let s = Signer::new("Example.COM", "sel", k).unwrap().with_expiry(Some(3600));
        let out = sign_message(&[&s], MSG, 1_700_000_000).unwrap();
        assert_eq!(out.len(), 1);
        let f = &out[0];
        let text = String::from_utf8(f.clone()).unwrap();
        assert!(text.starts_with("DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;"), "{text}");
        assert!(text.ends_with("\r\n"));
        for line in text.trim_end().split("\r\n") {
            assert!(line.len() <= WIDTH, "{line:?}");
        }
        let (_, value) = text.split_once(':').unwrap();
        let tags = TagList::parse(value.trim_end().as_bytes()).unwrap();
        assert_eq!(tags.get("s"), Some(&b"sel"[..]));
        assert_eq!(tags.get("t"), Some(&b"1700000000"[..]));
        assert_eq!(tags.get("x"), Some(&b"1700003600"[..]));
        assert_eq!(tags.get("h"), Some(&b"from:from:subject:to"[..]));
        assert_eq!(tags.get("l"), None);
        // relaxed body "body\r\n".
        let bh = base64::engine::general_purpose::STANDARD.encode(ring::digest::digest(&ring::digest::SHA256, b"body\r\n"));
        assert_eq!(tags.get("bh"), Some(bh.as_bytes()));
    }

    #[test]
    fn signed_names_oversign_and_config() {
        let k = key(testkeys::ED25519);
        let block = b"From: a@b.c\r\nTo: x\r\nTo: y\r\nReceived: z\r\nList-Id: l\r\n";
        let fields = header::split_fields(block).unwrap();
        let s = Signer::new("b.example", "s", k.clone()).unwrap();
        assert_eq!(s.signed_names(&fields), ["from", "from", "to", "to", "list-id"]);
        let s = s.with_oversign(&["From", "Subject"]).unwrap();
        assert_eq!(s.signed_names(&fields), ["from", "from", "subject", "to", "to", "list-id"]);
        let s = s.with_headers(&["Received", "from"]).unwrap().with_oversign(&[]).unwrap();
        assert_eq!(s.signed_names(&fields), ["received", "from"]);
        assert_eq!(Signer::new("b.example", "s", k.clone()).unwrap().with_headers(&["to"]).unwrap_err(), SignError::FromNotSigned);
        assert_eq!(
            Signer::new("b.example", "s", k.clone()).unwrap().with_headers(&["from", "a:b"]).unwrap_err(),
            SignError::BadHeaderName("a:b".into())
        );
        assert_eq!(Signer::new("localhost", "s", k.clone()).unwrap_err(), SignError::BadDomain);
        assert_eq!(Signer::new("a..b", "s", k.clone()).unwrap_err(), SignError::BadDomain);
        assert_eq!(Signer::new("b.example", "s;x", k.clone()).unwrap_err(), SignError::BadSelector);
        assert_eq!(Signer::new("b.example", "", k).unwrap_err(), SignError::BadSelector);
    }

    #[test]
    fn header_errors_and_no_signers() {
        let s = Signer::new("b.example", "s", key(testkeys::ED25519)).unwrap();
        assert_eq!(sign_message(&[&s], b"not a header\r\n\r\nbody", 0).unwrap_err(), SignError::Header(HeaderError::NotAField { line: 1 }));
        assert_eq!(SignJob::new(&[], b"A: b\r\n").err(), Some(SignError::NoSigners));
    }

    #[test]
    fn long_h_and_domain_still_fold() {
        let s = Signer::new("a-rather-long-subdomain.of-a-long-domain-name.example", "selector-2024-with-a-long-name", key(testkeys::ED25519))
            .unwrap()
            .with_headers(DEFAULT_HEADERS)
            .unwrap()
            .with_oversign(DEFAULT_HEADERS)
            .unwrap();
        let f = sign_message(&[&s], MSG, 1).unwrap().remove(0);
        let text = String::from_utf8(f).unwrap();
        for line in text.trim_end().split("\r\n") {
            assert!(line.len() <= WIDTH, "{line:?}");
        }
        let (_, value) = text.split_once(':').unwrap();
        let tags = TagList::parse(value.trim_end().as_bytes()).unwrap();
        let h = tags.get("h").unwrap();
        assert_eq!(crate::dkim::tags::split_colons(h).count(), DEFAULT_HEADERS.len() + 3);
    }

    #[test]
    fn two_signers_one_pass() {
        let rsa = Signer::new("example.com", "r", key(testkeys::RSA_2048_PKCS1)).unwrap().with_canonicalization(Canon::Simple, Canon::Simple);
        let ed = Signer::new("example.com", "e", key(testkeys::ED25519)).unwrap();
        let out = sign_message(&[&rsa, &ed], MSG, 5).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].starts_with(b"DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple;"));
        assert!(out[1].starts_with(b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;"));
    }
}
