//! DKIM (RFC 6376; ed25519-sha256 of RFC 8463; the algorithm and key-size
//! rules of RFC 8301): the pure parts that the signer (queue-run, on the way
//! out) and the verifier (the inbound checker) share. No I/O here: callers
//! read files, do DNS and read the clock.
//!
//! Both sides see the message as transmitted: CR LF line ends. The queue
//! stores LF; `canon::LfToCrlf` turns it into exactly what smtp-remote sends
//! (dot-stuffing aside, which is SMTP framing). Feed the converted stream to
//! a `header::HeaderReader` until it returns `Some(n)`: its `header()` is the
//! header section, `chunk[n..]` the first body octets.
//!
//! Signing (one `Signer` per domain and key, made at start-up):
//! ```text
//! let key = Arc::new(key::SigningKey::from_pem(&pem)?);   // RSA 2048-4096 or Ed25519
//! let signer = sign::Signer::new("example.com", "sel", key)?  // relaxed/relaxed, RFC 6376 5.4.1 fields, From oversigned
//!     .with_expiry(Some(7 * 86400));
//! let fields = header::split_fields(reader.header())?;      // NotAField, TooLarge: cannot sign
//! header::from_domain(&fields)        // the domain to look up in the signing table (FromError otherwise)
//! header::has_long_line(..) / has_eight_bit(..)   // what the caller's policy may refuse to sign
//! let mut job = sign::SignJob::new(&[&rsa_signer, &ed_signer], reader.header())?;
//! job.body(chunk); ...                                      // one pass for all signers
//! let dkim_fields: Vec<Vec<u8>> = job.finish(unix_now)?;    // "DKIM-Signature: ...\r\n" each, to put on top
//! key.zone_entry("sel", "example.com")                      // the DNS TXT record to publish
//! ```
//!
//! Verifying (every DKIM-Signature field, up to `max_signatures`):
//! ```text
//! let mut v = verify::Verifier::new(reader.header(), &verify::VerifyOptions::default())?;
//! v.key_names()                       // "sel._domainkey.example.com", to query early if wanted
//! v.body(chunk); ...
//! let results = v.finish(unix_now, &mut |name| dns_txt(name)); // Ok(text) | Err(NotFound | Temporary)
//! for r in results { r.outcome.result() /* pass fail neutral policy temperror permerror */, r.domain, r.selector, r.outcome /* Display: reason */ }
//! ```
//! `sign::sign_message` and `verify::verify_message` do the same for a whole
//! message in memory.

pub mod canon;
pub mod header;
pub mod key;
pub mod sign;
pub mod tags;
pub mod verify;

#[cfg(test)]
mod testkeys;
