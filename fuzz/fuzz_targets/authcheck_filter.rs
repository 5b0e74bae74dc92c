//! auth-check's header filter (src/authcheck/filter.rs): never a panic;
//! the same output whatever the chunking; what it lets through has no
//! Authentication-Results field of ours left in its header section (a
//! second pass removes nothing), is never longer than the input, and is
//! the input itself when nothing was removed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::authcheck::filter::HeaderFilter;

const OURS: &str = "mx.example.org";

fn run(data: &[u8], chunk: usize) -> (Vec<u8>, usize) {
    let mut f = HeaderFilter::new(OURS);
    let mut out = Vec::new();
    for c in data.chunks(chunk.max(1)) {
        f.feed(c, &mut out);
    }
    f.finish(&mut out);
    (out, f.removed())
}

fuzz_target!(|data: &[u8]| {
    let chunk = data.first().map_or(1, |&b| b as usize % 17 + 1);
    let whole = run(data, usize::MAX);
    assert_eq!(whole, run(data, chunk));
    let again = run(&whole.0, chunk);
    assert_eq!(again, (whole.0.clone(), 0));
    assert!(whole.0.len() <= data.len());
    if whole.1 == 0 {
        assert_eq!(whole.0, data);
    }
});
