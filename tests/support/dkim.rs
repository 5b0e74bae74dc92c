//! Helpers of the DKIM tests (tests/dkim_*.rs): keys made by openssl in a
//! scratch folder at test time, the edge-case messages, the corpus in the
//! form smtp-remote transmits, signing with our signer, and the alterations
//! that must make a signature fail.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use smtpd::dkim::canon::lf_to_crlf;
use smtpd::dkim::header;
use smtpd::dkim::key::SigningKey;
use smtpd::dkim::sign::{SignJob, Signer};

/// Signing time of every test signature (2023-11-14): no x=, so any later clock verifies.
pub const NOW: u64 = 1_700_000_000;
pub const DOMAIN: &str = "example.com";

/// Keys made by openssl: RSA-2048 as `openssl genrsa` writes it (PKCS#8),
/// the same key in PKCS#1 (`openssl rsa -traditional`), and Ed25519.
pub struct Keys {
    pub dir: tempfile::TempDir,
    pub rsa_pkcs8: PathBuf,
    pub rsa_pkcs1: PathBuf,
    pub ed25519: PathBuf,
}

pub fn openssl(dir: &Path, args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl (Debian package openssl)");
    assert!(st.success(), "openssl {args:?}");
}

pub fn make_keys() -> Keys {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |f: &str| dir.path().join(f);
    openssl(dir.path(), &["genrsa", "-out", "rsa.pem", "2048"]);
    openssl(dir.path(), &["rsa", "-in", "rsa.pem", "-traditional", "-out", "rsa-pkcs1.pem"]);
    openssl(dir.path(), &["genpkey", "-algorithm", "ed25519", "-out", "ed25519.pem"]);
    Keys { rsa_pkcs8: p("rsa.pem"), rsa_pkcs1: p("rsa-pkcs1.pem"), ed25519: p("ed25519.pem"), dir }
}

pub fn load(path: &Path) -> Arc<SigningKey> {
    let pem = std::fs::read(path).expect("read key");
    Arc::new(SigningKey::from_pem(&pem).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// The character-strings of a zone entry as the key printer writes it,
/// concatenated: the record a DNS server would hand out.
pub fn record_from_zone_entry(entry: &str) -> String {
    zone_strings(entry).concat()
}

pub fn zone_strings(entry: &str) -> Vec<String> {
    let inner = &entry[entry.find('(').expect("(")..entry.rfind(')').expect(")")];
    inner.split('"').skip(1).step_by(2).map(str::to_string).collect()
}

/// Messages for the cases the test data lacks, in the queue's LF form
/// (some with CR LF or bare CR where the case needs them).
pub fn edge_messages() -> Vec<(String, Vec<u8>)> {
    let h = "From: Edge Case <edge@example.com>\nTo: someone@example.net\nSubject: edge case\n\
             Date: Mon, 1 Jan 2024 10:00:00 +0000\nMessage-ID: <edge@example.com>\n";
    let long_header = format!("X-Long: {}\n", "h".repeat(998 - 8));
    let over_998 = format!("X-Longer: {}\n", "h".repeat(1200));
    let big_line = "The quick brown fox jumps over the lazy dog; \t trailing white space   \n";
    let m: Vec<(&str, Vec<u8>)> = vec![
        ("empty-body", format!("{h}\n").into_bytes()),
        ("no-body-no-empty-line", h.as_bytes().to_vec()),
        ("no-final-newline", format!("{h}\nfirst line\nlast line has no newline").into_bytes()),
        ("no-final-newline-white-space", format!("{h}\nlast line ends in white space \t ").into_bytes()),
        ("trailing-spaces-and-tabs", format!("{h}\nspaces   \ntabs\t\t\nboth \t \n \t\n\nend\n\n\n").into_bytes()),
        ("only-empty-lines", format!("{h}\n\n\n\n\n").into_bytes()),
        ("only-white-space-lines", format!("{h}\n  \n\t\n \t \n").into_bytes()),
        ("bare-cr", format!("{h}\na\rb\nc\r\r\n\rline starting with CR\nends in CR\r").into_bytes()),
        (
            "bare-lf-among-crlf",
            b"From: edge@example.com\r\nSubject: mixed line ends\r\n\r\nline one\r\nbare LF line\nline three\r\n\n".to_vec(),
        ),
        (
            "lines-of-998",
            format!("{h}{long_header}\n{}\n{} \n{}\t\n", "b".repeat(998), "c".repeat(997), "d".repeat(997)).into_bytes(),
        ),
        ("header-line-over-998", format!("{h}{over_998}\nbody\n").into_bytes()),
        (
            "folded-odd-white-space",
            b"From:   Edge \t Case\n  <edge@example.com>  \nSubject:   folded \t\n\t  more  \n   again\t\nTo:\tsomeone@example.net\n\n  body with  inner   spaces\t\n".to_vec(),
        ),
        (
            "eight-bit",
            "From: Jörg <edge@example.com>\nSubject: café crème\n\ncafé crème\n\u{fffd} raw: \n".as_bytes().iter().copied().chain(*b"\x80\xff\n").collect(),
        ),
        ("dot-lines", format!("{h}\n.\n..\n.leading dot\n. \n").into_bytes()),
        ("two-from-mailboxes", b"From: a@example.com, b@example.com\nSubject: two\n\nx\n".to_vec()),
        ("big-2mb", format!("{h}\n{}", big_line.repeat(2 * 1024 * 1024 / big_line.len())).into_bytes()),
    ];
    m.into_iter().map(|(n, b)| (n.to_string(), b)).collect()
}

/// Every test message (tests/data/messages, then the edge cases) as
/// smtp-remote transmits it: (name, CR LF form).
pub fn corpus(testdata: &[PathBuf]) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = testdata
        .iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, lf_to_crlf(&std::fs::read(p).expect("read message")))
        })
        .collect();
    v.extend(edge_messages().into_iter().map(|(n, m)| (n, lf_to_crlf(&m))));
    v
}

/// The messages our header splitter refuses (an mbox `From ` line, a body
/// with no header, a header section without its empty line): the signer's
/// caller sends them unsigned or signs for the envelope domain.
pub const REFUSED: &[&str] = &["msg_19", "msg_25", "msg_35", "msg_43"];

/// Sign a CR LF message with `signers` over one pass of the body in chunks
/// of `chunk` octets; the signed message, or None if the header is refused.
pub fn sign(signers: &[&Signer], msg: &[u8], chunk: usize) -> Option<Vec<u8>> {
    let mut r = header::HeaderReader::new();
    let mut parts = msg.chunks(chunk);
    let mut first_body: &[u8] = &[];
    for c in parts.by_ref() {
        if let Some(n) = r.push(c).expect("header within bounds") {
            first_body = &c[n..];
            break;
        }
    }
    r.finish();
    let mut job = match SignJob::new(signers, r.header()) {
        Ok(j) => j,
        Err(_) => return None,
    };
    job.body(first_body);
    for c in parts {
        job.body(c);
    }
    let fields = job.finish(NOW).expect("sign");
    Some([fields.concat(), msg.to_vec()].concat())
}

/// The same message with one body octet changed (the first letter or digit
/// of the body), or a line added to a body that has none.
pub fn alter_body(msg: &[u8]) -> Vec<u8> {
    let (h, body) = header::split_message(msg).expect("header");
    let start = msg.len() - body.len();
    let mut out = msg.to_vec();
    match body.iter().position(u8::is_ascii_alphanumeric) {
        Some(i) => out[start + i] = if out[start + i] == b'a' { b'b' } else { b'a' },
        None => {
            if start == h.len() {
                out.extend_from_slice(b"\r\n"); // no empty line yet
            }
            out.extend_from_slice(b"x\r\n");
        }
    }
    out
}

/// The same message with one signed header field changed: the last letter
/// or digit in the value of the first field (below the DKIM-Signature
/// fields) named in `signed`, or an added From field when none has one.
pub fn alter_header(msg: &[u8], signed: &[&str]) -> Vec<u8> {
    let (h, _) = header::split_message(msg).expect("header");
    let fields = header::split_fields(h).expect("fields");
    let mut at = 0;
    for f in &fields {
        if !f.is("dkim-signature") && signed.iter().any(|n| f.is(n)) {
            let v0 = at + f.value_offset();
            if let Some(i) = f.value().iter().rposition(u8::is_ascii_alphanumeric) {
                let mut out = msg.to_vec();
                out[v0 + i] = if out[v0 + i] == b'a' { b'b' } else { b'a' };
                return out;
            }
        }
        at += f.raw.len();
    }
    let sigs: usize = fields.iter().take_while(|f| f.is("dkim-signature")).map(|f| f.raw.len()).sum();
    [&msg[..sigs], b"From: added@example.org\r\n", &msg[sigs..]].concat()
}

/// h= of the first DKIM-Signature field of a message.
pub fn signed_names(msg: &[u8]) -> Vec<String> {
    let (h, _) = header::split_message(msg).expect("header");
    let fields = header::split_fields(h).expect("fields");
    let sig = fields.iter().find(|f| f.is("dkim-signature")).expect("a signature");
    let tags = smtpd::dkim::tags::TagList::parse(sig.value()).expect("tags");
    smtpd::dkim::tags::split_colons(tags.get("h").expect("h="))
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

/// RFC 5322 3.6's counts as libopendkim checks them: one Date, one From, at
/// most one of the other unique fields.
pub fn rfc5322_counts_ok(msg: &[u8]) -> bool {
    let (h, _) = header::split_message(msg).unwrap();
    let fields = header::split_fields(h).unwrap();
    let n = |name: &str| fields.iter().filter(|f| f.is(name)).count();
    n("date") == 1
        && n("from") == 1
        && ["sender", "reply-to", "to", "cc", "bcc", "message-id", "in-reply-to", "references", "subject"]
            .iter()
            .all(|x| n(x) <= 1)
}
