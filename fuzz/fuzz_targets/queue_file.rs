//! The queue file's one header reader (src/queue/format.rs), whole buffer and
//! streaming, which queue-run reads with too; queue-run's checks of a drop
//! file from maildrop/ (src/queuerun/pickup.rs, untrusted input); and
//! queue-run's state file. Both reading modes must agree, and what the
//! writer writes must read back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::queue::format;
use smtpd::queuerun::state::State;

fuzz_target!(|data: &[u8]| {
    let whole = format::parse_header(data);
    let streamed = format::read_header(&mut std::io::Cursor::new(data));
    if let (Ok((h, n)), Ok((h2, n2))) = (&whole, &streamed) {
        assert_eq!((h, *n as u64), (h2, *n2), "whole and streaming readers differ");
    }
    assert_eq!(whole.is_ok(), streamed.is_ok(), "one reader accepts what the other refuses");
    if let Ok((h, _)) = &whole {
        // A drop file: whatever passes keeps only local attributes and the
        // file owner's uid.
        if let Ok(c) = smtpd::queuerun::pickup::check(h, &h.id, 7, 1) {
            assert_eq!(c.uid, 7);
            assert!(c.attrs.0.iter().all(|(n, _)| n == "SUBMITTER_UID" || smtpd::queue::drop::local_attr(n)));
        }
    }
    if let Ok((h, _)) = whole {
        // Written again by queue-inject's writer, read back as queue-run reads it.
        let enc = format::encode_header(&h.id, h.time, &h.envelope, &h.attrs);
        let (h2, n) = format::read_header(&mut std::io::Cursor::new(&enc)).expect("queue-run cannot read what queue-inject writes");
        assert_eq!(h2, h);
        assert_eq!(n, enc.len() as u64);
    }
    if let Some(s) = State::parse(data) {
        assert_eq!(State::parse(&s.encode()).as_ref(), Some(&s), "state file round trip");
    }
});
