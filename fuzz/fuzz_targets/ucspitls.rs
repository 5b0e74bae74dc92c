//! The UCSPI-TLS control-fd block (src/io/ucspitls.rs reads what
//! s6-ucspitlsd, sslserver -n or tls-wrap write after the handshake; the
//! writer is src/tlswrap/envblock.rs) and the UCSPITLS setting. Properties
//! besides "no panic": a block that parses re-encodes (items in order,
//! `KEY=VALUE\0` / `KEY\0`, then `\0`) to exactly its input; names are
//! non-empty [A-Za-z0-9_]; the Received comment made of the facts is
//! printable ASCII only (no header injection, whatever the peer sent); what
//! tls-wrap writes always parses back to the same facts.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::io::ucspitls::{parse_block, parse_ucspitls, TlsInfo};
use smtpd::tlswrap::envblock::{TlsFacts, MAX_BLOCK};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let p = parse_ucspitls(Some(s));
        assert!(!p.require || p.offer);
    }
    if let Ok(items) = parse_block(data) {
        let mut again = Vec::new();
        for (k, v) in &items {
            assert!(!k.is_empty() && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'));
            again.extend_from_slice(k.as_bytes());
            if let Some(v) = v {
                again.push(b'=');
                again.extend_from_slice(v.as_bytes());
            }
            again.push(0);
        }
        again.push(0);
        assert_eq!(again, data);
        let info = TlsInfo::from_items(&items);
        let c = info.received_comment();
        assert!(c.bytes().all(|b| (b' '..=b'~').contains(&b)), "{c:?}");
        assert!(info.client_cert_verified() == (info.peer_subject.is_some() || info.peer_hash.is_some()));
    }

    // Facts from the input (split at NULs) through tls-wrap's writer and back.
    let text = String::from_utf8_lossy(data);
    let mut f = text.split('\0');
    let mut next = || f.next().map(str::to_owned);
    let facts = TlsFacts {
        protocol: next().unwrap_or_default(),
        cipher: next().unwrap_or_default(),
        sni: next(),
        peer_cert_hash: next(),
        peer_cert_subject: next(),
    };
    let block = facts.encode_block();
    assert!(block.len() <= MAX_BLOCK);
    let items = parse_block(&block).expect("tls-wrap's block parses");
    let info = TlsInfo::from_items(&items);
    assert!(info.received_comment().bytes().all(|b| (b' '..=b'~').contains(&b)));
});
