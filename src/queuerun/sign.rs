//! queue-run's DKIM signing of outbound mail (queue-run(8) DKIM SIGNING;
//! doc/DESIGN.md says why here): the signing table (signtable.rs) and its
//! keys, read at start and on SIGHUP; one signing pass per message, at its
//! first delivery, over the queue file read in chunks (bounded memory
//! whatever the size) in the form smtp-remote sends (`dkim::canon::LfToCrlf`);
//! the fields handed to the delivery program as the PREPEND attribute, or
//! written with the message into a pipe for a foreign qmail-remote. A key
//! that cannot be used defers its domain's mail: never sent unsigned.
//! I/O: reads key files, the queue file, writes a pipe.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ChildStdin;
use std::sync::Arc;

use super::config::Config;
use super::signtable::{self, Entry, Stored, Unsignable};
use crate::die;
use crate::dkim::canon::LfToCrlf;
use crate::dkim::header::{self, HeaderReader};
use crate::dkim::key::SigningKey;
use crate::dkim::sign::{SignJob, Signer};
use crate::envelope;
use crate::queue::format::Header;

const PROG: &str = "queue-run";
/// Queue file reads, and the pipe copy.
const CHUNK: usize = 64 * 1024;
/// The largest key file read (a 4096-bit RSA key in PEM is about 3.3 KB).
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The signing set-up: the table's lines with their keys, made ready at
/// start (or SIGHUP). A key that cannot be used stays as its reason.
pub struct Signing {
    table: Option<PathBuf>,
    unsignable: Unsignable,
    entries: Vec<Entry>,
    /// One per entry: its signer, or why its key cannot be used.
    signers: Vec<Result<Signer, String>>,
}

/// What became of one message.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// The fields (LF form), x= (0: none), and what was signed, for the log.
    Signed { fields: Vec<u8>, expires: u64, what: String },
    Unsigned(String),
    Defer(String),
}

impl Signing {
    /// No signing (`DKIM_SIGN` unset).
    pub fn off() -> Signing {
        Signing { table: None, unsignable: Unsignable::Envelope, entries: Vec::new(), signers: Vec::new() }
    }

    /// Read `DKIM_SIGN` and every key it names. A table that cannot be read
    /// or has a bad line is an error (`file:line: ...`): fatal at start, the
    /// old set-up kept on SIGHUP. A key that is missing, unreadable, of the
    /// wrong type or size is only logged: mail for its domain is deferred.
    pub fn load(cfg: &Config) -> Result<Signing, String> {
        let Some(path) = cfg.dkim_sign.as_deref() else { return Ok(Signing::off()) };
        let entries = read_table(path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut keys: HashMap<PathBuf, Result<Arc<SigningKey>, String>> = HashMap::new();
        let mut signers = Vec::new();
        for e in &entries {
            let file = dir.join(&e.keyfile);
            let key = keys.entry(file.clone()).or_insert_with(|| read_key(&file)).clone();
            let signer = match key {
                Ok(k) => Ok(signer(e, k).map_err(|x| format!("DKIM_SIGN {}:{}: {x}", path.display(), e.line))?),
                Err(why) => {
                    die::warn(
                        PROG,
                        format_args!(
                            "DKIM_SIGN {}:{}: key {} unusable: {why}; mail signed by {} (selector {}) will be deferred",
                            path.display(),
                            e.line,
                            file.display(),
                            e.written_domain(),
                            e.selector
                        ),
                    );
                    Err(format!("{}: {why}", file.display()))
                }
            };
            signers.push(signer);
        }
        let bad = signers.iter().filter(|s| s.is_err()).count();
        die::info(
            PROG,
            format_args!(
                "DKIM signing: {} lines of {} ({} keys unusable), DKIM_UNSIGNABLE={}",
                entries.len(),
                path.display(),
                bad,
                cfg.dkim_unsignable.name()
            ),
        );
        Ok(Signing { table: Some(path.to_owned()), unsignable: cfg.dkim_unsignable, entries, signers })
    }

    pub fn is_on(&self) -> bool {
        self.table.is_some()
    }

    /// Get message `id` ready for a run of the delivery program: sign it if
    /// it has no signature yet (or its x= is half gone; `open` opens its
    /// queue file, read from `body_offset`), keeping the fields
    /// in `stored` (the state file's `dkim` line), then set the run's
    /// PREPEND attribute in `header.attrs` (any PREPEND from the queue file
    /// is dropped first, signing or not), or, for a foreign qmail-remote
    /// (`pipe`), return what to feed it. `Err`: this run is deferred, with
    /// the text for the report and the log (a key that cannot be used, the
    /// file unreadable, `DKIM_UNSIGNABLE=defer`).
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        &self,
        id: &str,
        open: &dyn Fn() -> io::Result<File>,
        body_offset: u64,
        header: &mut Header,
        stored: &mut Option<Stored>,
        pipe: bool,
        now: u64,
    ) -> Result<Option<Feed>, String> {
        let fields = self.fields_for(id, open, body_offset, &header.envelope.sender, stored, now)?;
        header.attrs.0.retain(|(n, _)| n != envelope::PREPEND);
        if fields.is_empty() {
            return Ok(None);
        }
        if !pipe {
            header.attrs.push(envelope::PREPEND, &fields);
            return Ok(None);
        }
        let file = open().map_err(|e| format!("Unable to read message: {e}. (#4.3.0)"))?;
        Ok(Some(Feed { prefix: fields, file, offset: body_offset }))
    }

    /// The message's fields: the stored ones, or new ones.
    #[allow(clippy::too_many_arguments)]
    fn fields_for(
        &self,
        id: &str,
        open: &dyn Fn() -> io::Result<File>,
        body_offset: u64,
        sender: &[u8],
        stored: &mut Option<Stored>,
        now: u64,
    ) -> Result<Vec<u8>, String> {
        if !self.is_on() {
            return Ok(Vec::new());
        }
        if let Some(s) = stored {
            if s.fields.is_empty() || s.fresh(now) {
                return Ok(s.fields.clone());
            }
            die::info(PROG, format_args!("{id}: DKIM signature half way to its x=: signing again"));
        }
        let decision = match open() {
            Ok(mut f) => self.sign_file(&mut f, body_offset, sender, now),
            Err(e) => Decision::Defer(format!("Unable to read message for DKIM signing: {e}. (#4.3.0)")),
        };
        match decision {
            Decision::Signed { fields, expires, what } => {
                die::info(PROG, format_args!("{id}: DKIM signed: {what}"));
                *stored = Some(Stored { time: now, expires, fields: fields.clone() });
                Ok(fields)
            }
            Decision::Unsigned(why) => {
                die::info(PROG, format_args!("{id}: not DKIM signed: {why}"));
                *stored = Some(Stored { time: now, expires: 0, fields: Vec::new() });
                Ok(Vec::new())
            }
            Decision::Defer(why) => {
                die::warn(PROG, format_args!("{id}: deferred: {why}"));
                Err(why)
            }
        }
    }

    /// One pass over the message text (from `body_offset` of the queue
    /// file): header section, author domain, signers, body.
    fn sign_file(&self, f: &mut File, body_offset: u64, sender: &[u8], now: u64) -> Decision {
        let unreadable = |e: io::Error| Decision::Defer(format!("Unable to read message for DKIM signing: {e}. (#4.3.0)"));
        if let Err(e) = f.seek(SeekFrom::Start(body_offset)) {
            return unreadable(e);
        }
        // Most messages are small: buffers of their size (plus one octet, so
        // that the second read sees the end), at most CHUNK.
        let left = f.metadata().map_or(CHUNK as u64, |m| m.len().saturating_sub(body_offset));
        let cap = usize::try_from(left.saturating_add(1)).unwrap_or(CHUNK).clamp(1, CHUNK);
        let mut src = Chunks { file: f, conv: LfToCrlf::new(), buf: vec![0u8; cap], out: Vec::with_capacity(cap + cap / 8 + 2), eof: false };
        // The header section, in the form smtp-remote sends.
        let mut reader = HeaderReader::new();
        let body_start = loop {
            if let Err(e) = src.fill() {
                return unreadable(e);
            }
            match reader.push(&src.out) {
                Ok(Some(n)) => break n,
                Ok(None) if src.eof => {
                    reader.finish();
                    break src.out.len();
                }
                Ok(None) => {}
                Err(e) => return self.cannot_sign(&e.to_string()),
            }
        };
        let fields = match header::split_fields(reader.header()) {
            Ok(f) => f,
            Err(e) => return self.cannot_sign(&e.to_string()),
        };
        // RFC 5322.From's domain, which DMARC aligns on; else the policy's.
        let (domain, via) = match header::from_domain(&fields) {
            Ok(d) => (d, "From"),
            Err(e) => match self.unsignable {
                Unsignable::Envelope => match signtable::envelope_domain(sender) {
                    Some(d) => (d, "envelope sender"),
                    None => return Decision::Unsigned(format!("{e}, and no envelope sender domain")),
                },
                Unsignable::Unsigned => return Decision::Unsigned(format!("{e} (DKIM_UNSIGNABLE=unsigned)")),
                Unsignable::Defer => return Decision::Defer(format!("No DKIM signature possible: {e} (DKIM_UNSIGNABLE=defer). (#4.3.0)")),
            },
        };
        let Some(ascii) = signtable::ascii_domain(&domain) else {
            return Decision::Unsigned(format!("{via} domain {domain} is not a DNS name"));
        };
        let idx = signtable::lookup(&self.entries, &ascii);
        if idx.is_empty() {
            return Decision::Unsigned(format!("{via} domain {ascii} is not in the signing table"));
        }
        let mut signers: Vec<&Signer> = Vec::new();
        for &i in &idx {
            let (Some(e), Some(signer)) = (self.entries.get(i), self.signers.get(i)) else { continue };
            match signer {
                Ok(s) => signers.push(s),
                Err(why) => {
                    return Decision::Defer(format!(
                        "DKIM key for {} (selector {}) unusable: {why}; not sent unsigned. (#4.3.0)",
                        e.written_domain(),
                        e.selector
                    ))
                }
            }
        }
        let mut job = match SignJob::new(&signers, reader.header()) {
            Ok(j) => j,
            Err(e) => return self.cannot_sign(&e.to_string()),
        };
        // The body: the rest of the chunk that ended the header, then the file.
        job.body(src.out.get(body_start..).unwrap_or_default());
        while !src.eof {
            if let Err(e) = src.fill() {
                return unreadable(e);
            }
            job.body(&src.out);
        }
        let sigs = match job.finish(now) {
            Ok(s) => s,
            Err(e) => return Decision::Defer(format!("DKIM signing failed: {e}. (#4.3.0)")),
        };
        let lf: Vec<u8> = sigs.concat().split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect::<Vec<_>>().join(&b'\n');
        if !envelope::valid_prepend(&lf) {
            return self.cannot_sign(&format!("the signature fields would pass {} octets", envelope::MAX_PREPEND));
        }
        let expires = idx.iter().filter_map(|&i| self.entries.get(i)?.expire).min().map_or(0, |x| now.saturating_add(x));
        let what: Vec<String> =
            signers.iter().map(|s| format!("d={} s={} a={}", s.domain(), s.selector(), s.algorithm().name())).collect();
        Decision::Signed { fields: lf, expires, what: format!("{} ({via} domain {domain})", what.join(", ")) }
    }

    /// A header section that cannot be signed at all (no field syntax, too
    /// large): deferred under `DKIM_UNSIGNABLE=defer`, else sent unsigned.
    fn cannot_sign(&self, why: &str) -> Decision {
        match self.unsignable {
            Unsignable::Defer => Decision::Defer(format!("No DKIM signature possible: {why} (DKIM_UNSIGNABLE=defer). (#4.3.0)")),
            _ => Decision::Unsigned(format!("the header cannot be signed: {why}")),
        }
    }
}

/// The message text in the form smtp-remote sends, chunk by chunk.
struct Chunks<'a> {
    file: &'a mut File,
    conv: LfToCrlf,
    buf: Vec<u8>,
    out: Vec<u8>,
    eof: bool,
}

impl Chunks<'_> {
    /// Read and convert the next chunk into `out` (the last one, at EOF,
    /// ends a partial line and sets `eof`).
    fn fill(&mut self) -> io::Result<()> {
        self.out.clear();
        let n = read_some(self.file, &mut self.buf)?;
        match self.buf.get(..n) {
            Some(b) if n > 0 => self.conv.convert(b, &mut self.out),
            _ => {
                self.conv.finish(&mut self.out);
                self.eof = true;
            }
        }
        Ok(())
    }
}

fn read_some(f: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match f.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// A foreign qmail-remote's input: the signature fields, then the message.
pub struct Feed {
    prefix: Vec<u8>,
    file: File,
    offset: u64,
}

impl Feed {
    /// Write it into the program's fd 0 (a pipe) from a thread of its own,
    /// in CHUNK-sized pieces. A program that stops reading ends the copy
    /// (EPIPE); a read error of the queue file kills the program's process
    /// group, so that it cannot send a message cut short as if whole.
    pub fn start(self, mut stdin: ChildStdin, pgid: u32) {
        std::thread::spawn(move || {
            let Feed { prefix, mut file, offset } = self;
            if stdin.write_all(&prefix).is_err() {
                return;
            }
            let mut buf = vec![0u8; CHUNK];
            let copied = file.seek(SeekFrom::Start(offset)).and_then(|_| loop {
                let n = read_some(&mut file, &mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                if stdin.write_all(buf.get(..n).unwrap_or_default()).is_err() {
                    return Ok(());
                }
            });
            if let Err(e) = copied {
                die::warn(PROG, format_args!("unable to read the message for the delivery program ({e}): stopping it"));
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid as i32), nix::sys::signal::Signal::SIGKILL);
            }
        });
    }
}

/// `queue-run --dkim-record [keyfile domain selector]`: the DNS TXT records
/// (zone-file lines, as opendkim-genkey prints them) of one key, or of
/// every line of `DKIM_SIGN`. Lines whose key cannot be read are reported
/// on stderr and make it an error after the others are printed.
pub fn print_records(cfg: &Config, args: &[String], out: &mut dyn Write) -> Result<(), String> {
    let io = |e: io::Error| format!("unable to write: {e}");
    match args {
        [file, domain, selector] => {
            let d = signtable::ascii_domain(domain).filter(|d| d.contains('.')).ok_or(format!("{domain}: not a domain name"))?;
            let s = header::parse_domain(selector.as_bytes()).filter(|s| s.is_ascii()).ok_or(format!("{selector}: not a selector"))?;
            let key = read_key(Path::new(file)).map_err(|e| format!("{file}: {e}"))?;
            out.write_all(key.zone_entry(&s, &d).as_bytes()).map_err(io)
        }
        [] => {
            let path = cfg.dkim_sign.as_deref().ok_or("DKIM_SIGN is not set (or give: keyfile domain selector)")?;
            let entries = read_table(path)?;
            let dir = path.parent().unwrap_or(Path::new("."));
            let mut done: Vec<(String, String)> = Vec::new();
            let mut bad = 0;
            for e in entries {
                // `example.com` and `.example.com` lines share d= and so the record.
                if done.contains(&(e.domain.clone(), e.selector.clone())) {
                    continue;
                }
                let file = dir.join(&e.keyfile);
                match read_key(&file) {
                    Ok(k) => out.write_all(k.zone_entry(&e.selector, &e.domain).as_bytes()).map_err(io)?,
                    Err(why) => {
                        die::warn(PROG, format_args!("{}:{}: key {}: {why}", path.display(), e.line, file.display()));
                        bad += 1;
                    }
                }
                done.push((e.domain, e.selector));
            }
            if bad > 0 {
                return Err(format!("{bad} keys could not be used"));
            }
            Ok(())
        }
        _ => Err("usage: queue-run --dkim-record [keyfile domain selector]".into()),
    }
}

fn read_table(path: &Path) -> Result<Vec<Entry>, String> {
    let mut text = Vec::new();
    File::open(path)
        .and_then(|f| f.take(signtable::MAX_TABLE as u64 + 1).read_to_end(&mut text))
        .map_err(|e| format!("DKIM_SIGN: unable to read {}: {e}", path.display()))?;
    signtable::parse_table(&text).map_err(|e| match e.line {
        0 => format!("DKIM_SIGN {}: {}", path.display(), e.what),
        n => format!("DKIM_SIGN {}:{n}: {}", path.display(), e.what),
    })
}

/// A private key from a PEM file (never logged). A file that others may
/// read, or its group may write, is used with a warning.
fn read_key(path: &Path) -> Result<Arc<SigningKey>, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let md = f.metadata().map_err(|e| e.to_string())?;
    if !md.is_file() {
        return Err("not a regular file".into());
    }
    if md.mode() & 0o027 != 0 {
        die::warn(PROG, format_args!("DKIM key {} is mode {:o}: make it 0600 (or 0640), owned by queue-run's user", path.display(), md.mode() & 0o7777));
    }
    let mut pem = Vec::new();
    f.take(MAX_KEY_FILE + 1).read_to_end(&mut pem).map_err(|e| e.to_string())?;
    if pem.len() as u64 > MAX_KEY_FILE {
        return Err(format!("larger than {MAX_KEY_FILE} octets"));
    }
    SigningKey::from_pem(&pem).map(Arc::new).map_err(|e| e.to_string())
}

/// The signer of one table line.
fn signer(e: &Entry, key: Arc<SigningKey>) -> Result<Signer, crate::dkim::sign::SignError> {
    let mut s = Signer::new(&e.domain, &e.selector, key)?.with_canonicalization(e.header_canon, e.body_canon).with_expiry(e.expire);
    if let Some(h) = &e.headers {
        s = s.with_headers(&h.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    if let Some(o) = &e.oversign {
        s = s.with_oversign(&o.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkim::verify::{self, LookupError, Outcome, VerifyOptions};
    use crate::envelope::Attrs;

    const ED: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+4Q6QZ4pmJyi3qs5qTzhqoJYBxlv1KzdqpoMwXfM3e\n-----END PRIVATE KEY-----\n";

    struct T {
        dir: tempfile::TempDir,
    }

    impl T {
        fn new(table: &str) -> T {
            use std::os::unix::fs::PermissionsExt;
            let t = T { dir: tempfile::tempdir().unwrap() };
            std::fs::write(t.dir.path().join("ed.pem"), ED).unwrap();
            std::fs::set_permissions(t.dir.path().join("ed.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
            std::fs::write(t.dir.path().join("table"), table).unwrap();
            t
        }
        fn cfg(&self, unsignable: Unsignable) -> Config {
            let mut c = Config::from_lookup(|_| None, "h.example").unwrap();
            c.dkim_sign = Some(self.dir.path().join("table"));
            c.dkim_unsignable = unsignable;
            c
        }
        fn queue_file(&self, text: &[u8]) -> (PathBuf, u64) {
            let p = self.dir.path().join("msg");
            let head = b"smtpd-queue 1\nid 1.2.3\n\n";
            std::fs::write(&p, [&head[..], text].concat()).unwrap();
            (p, head.len() as u64)
        }
    }

    fn decide(s: &Signing, t: &T, msg: &[u8], sender: &[u8]) -> Decision {
        let (p, off) = t.queue_file(msg);
        s.sign_file(&mut File::open(p).unwrap(), off, sender, 1_700_000_000)
    }

    fn verifies(fields: &[u8], msg: &[u8]) -> Vec<Outcome> {
        let key = SigningKey::from_pem(ED.as_bytes()).unwrap();
        let rec = key.dns_record();
        let whole = crate::dkim::canon::lf_to_crlf(&[fields, msg].concat());
        let mut lookup = |_: &str| -> Result<Vec<u8>, LookupError> { Ok(rec.clone().into_bytes()) };
        verify::verify_message(&whole, &VerifyOptions::default(), 1_700_000_100, &mut lookup).unwrap().into_iter().map(|r| r.outcome).collect()
    }

    #[test]
    fn signs_by_from_domain_then_envelope() {
        let t = T::new("example.com ed ed.pem\n.example.com ed ed.pem c=simple/simple\nenv.example e2 ed.pem x=86400\n");
        let s = Signing::load(&t.cfg(Unsignable::Envelope)).unwrap();
        let msg = b"From: A <a@Example.COM>\nSubject: hi\n\nbody\r\nbare\rCR\n";
        let Decision::Signed { fields, expires, what } = decide(&s, &t, msg, b"x@env.example") else { panic!() };
        assert_eq!((expires, what.as_str()), (0, "d=example.com s=ed a=ed25519-sha256 (From domain example.com)"));
        assert!(fields.starts_with(b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;"));
        assert!(!fields.contains(&b'\r') && fields.ends_with(b"\n"));
        assert_eq!(verifies(&fields, msg), [Outcome::Pass]);
        // A subdomain: the dotted line, d= the parent.
        let Decision::Signed { fields, what, .. } = decide(&s, &t, b"From: a@mail.example.com\n\nx", b"") else { panic!() };
        assert!(what.starts_with("d=example.com s=ed"), "{what}");
        assert_eq!(verifies(&fields, b"From: a@mail.example.com\n\nx"), [Outcome::Pass]);
        // No usable From: the envelope sender's domain, with its x=.
        let two = b"From: a@example.com\nFrom: b@example.com\n\nx\n";
        let Decision::Signed { expires, what, .. } = decide(&s, &t, two, b"bounce@ENV.example") else { panic!() };
        assert_eq!((expires, what.as_str()), (1_700_000_000 + 86400, "d=env.example s=e2 a=ed25519-sha256 (envelope sender domain env.example)"));
        assert_eq!(decide(&s, &t, two, b""), Decision::Unsigned("2 From fields, and no envelope sender domain".into()));
        // Not in the table.
        assert_eq!(decide(&s, &t, b"From: a@other.example\n\nx\n", b"x@env.example"), Decision::Unsigned("From domain other.example is not in the signing table".into()));
        // A header that does not split: unsigned, whatever the sender.
        let d = decide(&s, &t, b"From someone Mon Jan 1\nFrom: a@example.com\n\nx\n", b"x@env.example");
        assert_eq!(d, Decision::Unsigned("the header cannot be signed: header line 1 is not a header field".into()));
    }

    #[test]
    fn unsignable_policies() {
        let t = T::new("example.com ed ed.pem\nenv.example ed ed.pem\n");
        let no_from = b"Subject: none\n\nx\n";
        let s = Signing::load(&t.cfg(Unsignable::Unsigned)).unwrap();
        assert_eq!(decide(&s, &t, no_from, b"x@env.example"), Decision::Unsigned("no From field (DKIM_UNSIGNABLE=unsigned)".into()));
        let s = Signing::load(&t.cfg(Unsignable::Defer)).unwrap();
        let Decision::Defer(why) = decide(&s, &t, no_from, b"x@env.example") else { panic!() };
        assert!(why.contains("no From field (DKIM_UNSIGNABLE=defer)") && why.ends_with("(#4.3.0)"), "{why}");
        assert!(matches!(decide(&s, &t, b"not a header\n\nx", b""), Decision::Defer(_)));
        // Over MAX_HEADER_BYTES of header: cannot be signed.
        let big = format!("From: a@example.com\nX: {}\n\nx\n", "y".repeat(header::MAX_HEADER_BYTES));
        assert!(matches!(decide(&s, &t, big.as_bytes(), b""), Decision::Defer(w) if w.contains("header section over")));
    }

    #[test]
    fn key_problems_defer_and_bad_lines_are_fatal() {
        let t = T::new("example.com ed ed.pem\nexample.com gone missing.pem\nfine.example ed ed.pem\n");
        std::fs::write(t.dir.path().join("ec.pem"), "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIP3U4SgmNzRC5Iu+OUPL9shsC5YdtskNDK3e9dO2pT7PoAoGCCqGSM49\nAwEHoUQDQgAENEip3VSu950V/63xKLLihVhBbi7gQu2CNn9ESEOiIRCTSm8g2B/u\nQ2zpBW68AMut7zKTfhCpNKCksOanxDks2w==\n-----END EC PRIVATE KEY-----\n").unwrap();
        let s = Signing::load(&t.cfg(Unsignable::Envelope)).unwrap();
        let Decision::Defer(why) = decide(&s, &t, b"From: a@example.com\n\nx\n", b"") else { panic!() };
        assert!(why.starts_with("DKIM key for example.com (selector gone) unusable: ") && why.contains("missing.pem"), "{why}");
        assert!(why.contains("not sent unsigned"), "{why}");
        assert!(matches!(decide(&s, &t, b"From: a@fine.example\n\nx\n", b""), Decision::Signed { .. }));
        std::fs::write(t.dir.path().join("table"), "ec.example ec ec.pem\n").unwrap();
        let s = Signing::load(&t.cfg(Unsignable::Envelope)).unwrap();
        let Decision::Defer(why) = decide(&s, &t, b"From: a@ec.example\n\nx\n", b"") else { panic!() };
        assert!(why.contains("unsupported key type: EC key"), "{why}");
        // A bad line: an error naming the file and line.
        std::fs::write(t.dir.path().join("table"), "# ok\nexample.com ed ed.pem\nexample.com\n").unwrap();
        let e = Signing::load(&t.cfg(Unsignable::Envelope)).err().unwrap();
        assert!(e.starts_with("DKIM_SIGN ") && e.ends_with("table:3: want: domain selector keyfile [options]"), "{e}");
        std::fs::remove_file(t.dir.path().join("table")).unwrap();
        assert!(Signing::load(&t.cfg(Unsignable::Envelope)).err().unwrap().contains("unable to read"));
    }

    #[test]
    fn stored_fields_are_reused_and_prepend_is_set_or_piped() {
        let t = T::new("example.com ed ed.pem x=7200\n");
        let s = Signing::load(&t.cfg(Unsignable::Envelope)).unwrap();
        let (p, off) = t.queue_file(b"From: a@example.com\n\nx\n");
        let mut h = Header { id: "1.2.3".into(), time: 0, envelope: Default::default(), attrs: Attrs::default() };
        h.attrs.push("PREPEND", "X-Injected: from the queue file\n");
        h.attrs.push("BODY", "8BITMIME");
        let mut stored = None;
        let open = |p: &Path| {
            let p = p.to_owned();
            move || File::open(&p)
        };
        assert!(s.prepare("1.2.3", &open(&p), off, &mut h, &mut stored, false, 1000).unwrap().is_none());
        let first = stored.clone().unwrap();
        assert_eq!((first.time, first.expires), (1000, 8200));
        assert_eq!(h.attrs.get("PREPEND"), Some(&first.fields[..]));
        assert_eq!(h.attrs.get("BODY"), Some(&b"8BITMIME"[..]));
        assert_eq!(h.attrs.0.iter().filter(|(n, _)| n == "PREPEND").count(), 1);
        // Reused while fresh, even if the file changed; made again past half its x=.
        std::fs::write(&p, b"gone").unwrap();
        assert!(s.prepare("1.2.3", &open(&p), off, &mut h, &mut stored, false, 4599).is_ok());
        assert_eq!(stored.as_ref(), Some(&first));
        let (p, off) = t.queue_file(b"From: a@example.com\n\nx\n");
        s.prepare("1.2.3", &open(&p), off, &mut h, &mut stored, false, 4600).unwrap();
        assert_eq!(stored.as_ref().map(|s| s.time), Some(4600));
        // A foreign qmail-remote: no PREPEND attribute, the fields to feed.
        let feed = s.prepare("1.2.3", &open(&p), off, &mut h, &mut stored, true, 4601).unwrap().unwrap();
        assert_eq!(h.attrs.get("PREPEND"), None);
        assert_eq!(feed.prefix, stored.unwrap().fields);
        // Signing off: a queued PREPEND still goes.
        let mut h2 = Header { id: "x".into(), time: 0, envelope: Default::default(), attrs: Attrs::default() };
        h2.attrs.push("PREPEND", "X-Injected: 1\n");
        assert!(Signing::off().prepare("x", &open(&p), off, &mut h2, &mut None, false, 1).unwrap().is_none());
        assert!(h2.attrs.is_empty());
    }
}
