//! The queue file readers: queue-inject's (src/queue/format.rs, whole buffer
//! and streaming) and queue-run's (src/queuerun/qfile.rs), plus queue-run's
//! state file. Both header readers must agree on what the writer writes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::queue::format;
use smtpd::queuerun::{qfile, state::State};

fuzz_target!(|data: &[u8]| {
    let whole = format::parse_header(data);
    let streamed = format::read_header(&mut std::io::Cursor::new(data));
    if let (Ok((h, _)), Ok(h2)) = (&whole, &streamed) {
        assert_eq!(h, h2, "whole and streaming readers differ");
    }
    let _ = qfile::parse(data);
    if let Ok((h, _)) = whole {
        // Written again by queue-inject's writer, read by both readers.
        let enc = format::encode_header(&h.id, h.time, &h.envelope, &h.attrs);
        let (h2, n) = format::parse_header(&enc).expect("format re-read");
        assert_eq!(h2, h);
        assert_eq!(n, enc.len());
        if qfile::valid_id(&h.id) {
            let (q, n) = qfile::parse(&enc).expect("queue-run cannot read what queue-inject writes");
            assert_eq!(n, enc.len());
            assert_eq!((q.id.as_str(), q.time), (h.id.as_str(), h.time));
            assert_eq!((&q.sender, &q.recipients), (&h.envelope.sender, &h.envelope.recipients));
            assert_eq!(q.attrs, h.attrs);
        }
    }
    if let Some(s) = State::parse(data) {
        assert_eq!(State::parse(&s.encode()).as_ref(), Some(&s), "state file round trip");
    }
});
