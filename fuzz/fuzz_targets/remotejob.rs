//! The job channel of `smtp-remote -m` (src/remotejob.rs): a job payload
//! decodes or is refused, never a panic, and what decodes encodes back to a
//! frame that decodes to the same job; the answer reader takes any byte
//! stream, each report at most MAX_ANSWER octets.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::remotejob::{decode_job, encode_job, AnswerReader, MAX_ANSWER};

fuzz_target!(|data: &[u8]| {
    if let Ok(j) = decode_job(data) {
        assert!(!j.rcpts.is_empty());
        let rcpts: Vec<&[u8]> = j.rcpts.iter().map(Vec::as_slice).collect();
        let frame = encode_job(&j.host, &j.sender, &j.attrs, &j.queue_id, &rcpts);
        let (r, used) = smtpd::netstring::parse(&frame, usize::MAX).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(decode_job(&frame[r]).unwrap(), j);
    }
    let mut answers = AnswerReader::new(data);
    for _ in 0..data.len() + 1 {
        match answers.next_answer() {
            Ok(Some(report)) => assert!(report.len() <= MAX_ANSWER),
            Ok(None) | Err(_) => break,
        }
    }
});
