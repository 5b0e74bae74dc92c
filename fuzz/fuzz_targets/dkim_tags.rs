//! DKIM tag lists (src/dkim/tags.rs), key records (src/dkim/key.rs) and
//! DKIM-Signature fields through the verifier (src/dkim/verify.rs): never
//! panic; a parsed list whose values encode back parses to the same tags;
//! each tag's span holds its value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::dkim::{key, tags, verify};

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = tags::TagList::parse(data) {
        for t in &list.tags {
            // The span is the value with folding white space around it.
            assert_eq!(tags::strip_fws(&data[t.span.clone()]), tags::strip_fws(t.value));
        }
        let pairs: Option<Vec<(&str, &str)>> = list
            .tags
            .iter()
            .map(|t| std::str::from_utf8(t.value).ok().filter(|v| tags::is_value(v)).map(|v| (t.name, v)))
            .collect();
        if let Some(pairs) = pairs {
            let enc = tags::encode(&pairs);
            let back = tags::TagList::parse(enc.as_bytes()).expect("encoded list parses");
            let again: Vec<(&str, &[u8])> = back.tags.iter().map(|t| (t.name, t.value)).collect();
            let first: Vec<(&str, &[u8])> = pairs.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
            assert_eq!(again, first);
        }
    }
    if let Ok(rec) = key::parse_key_record(data) {
        let _ = key::rsa_public_key(&rec.public_key);
    }
    let _ = key::rsa_public_key(data);
    let _ = key::decode_base64(data);

    // The input as a DKIM-Signature field's value, and as the key record.
    let mut msg = b"DKIM-Signature:".to_vec();
    msg.extend_from_slice(data);
    msg.extend_from_slice(b"\r\nFrom: a@b.example\r\nTo: c@d.example\r\n\r\nbody\r\n");
    let opts = verify::VerifyOptions::default();
    let _ = verify::verify_message(&msg, &opts, 1_700_000_000, &mut |_| Ok(data.to_vec()));
});
