//! DKIM's header section code and canonicalizers (src/dkim/header.rs,
//! src/dkim/canon.rs): never panic, and fed in two chunks (cut where the
//! first input octet says) they give what they give fed whole: the header
//! reader, both body canonicalizers, the LF to CR LF conversion.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::dkim::canon::{self, Canon};
use smtpd::dkim::header;

fuzz_target!(|input: &[u8]| {
    let Some((&c, data)) = input.split_first() else { return };
    let cut = c as usize * data.len() / 255;
    let (a, b) = data.split_at(cut);

    // The header reader, whole and in two chunks.
    let whole = header::split_message(data);
    let mut r = header::HeaderReader::new();
    let mut body = Vec::new();
    let mut err = None;
    for part in [a, b] {
        if r.is_done() {
            body.extend_from_slice(part);
            continue;
        }
        match r.push(part) {
            Ok(Some(n)) => body.extend_from_slice(&part[n..]),
            Ok(None) => {}
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    r.finish();
    match (&whole, err) {
        (Ok((h, bd)), None) => assert_eq!((*h, *bd), (r.header(), &body[..])),
        (Err(e1), Some(e2)) => assert_eq!(*e1, e2),
        (w, e) => panic!("whole {w:?} chunked {e:?}"),
    }

    if let Ok((h, _)) = whole {
        let _ = header::has_long_line(h);
        let _ = header::has_eight_bit(h);
        if let Ok(fields) = header::split_fields(h) {
            assert_eq!(fields.iter().map(|f| f.raw.len()).sum::<usize>(), h.len());
            let _ = header::from_domain(&fields);
            for f in &fields {
                let mut out = Vec::new();
                canon::header_field(Canon::Simple, f.raw, &mut out);
                assert_eq!(out, f.raw);
                out.clear();
                canon::header_field(Canon::Relaxed, f.raw, &mut out);
                assert!(out.ends_with(b"\r\n"));
            }
            let _ = canon::header_hash_input(Canon::Relaxed, &fields, &["from", "to", "from"], b"DKIM-Signature: b=");
        }
    }
    let _ = header::address_domains(data);

    // Body canonicalization and hashing, whole and in two chunks.
    for c in [Canon::Simple, Canon::Relaxed] {
        let whole = canon::body_canonical(c, data);
        let mut bc = canon::BodyCanon::new(c);
        let mut out = Vec::new();
        bc.feed(a, &mut |x| out.extend_from_slice(x));
        bc.feed(b, &mut |x| out.extend_from_slice(x));
        bc.finish(&mut |x| out.extend_from_slice(x));
        assert_eq!(out, whole);
        let mut h = canon::BodyHasher::new(c, None);
        h.update(a);
        h.update(b);
        assert_eq!(h.finish().length, whole.len() as u64);
    }

    // The queue's LF form to the transmitted form.
    let whole = canon::lf_to_crlf(data);
    let mut conv = canon::LfToCrlf::new();
    let mut out = Vec::new();
    conv.convert(a, &mut out);
    conv.convert(b, &mut out);
    conv.finish(&mut out);
    assert_eq!(out, whole);
    assert!(!whole.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
});
