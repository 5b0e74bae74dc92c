//! Environment files: smtpd-supervise's (src/envfile.rs) and queue-run's
//! (src/queuerun/config.rs); the supervisor-to-worker variable packet.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::{envfile, handoff};

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = envfile::parse_envfile(data) {
        for (k, v) in &pairs {
            assert!(envfile::is_valid_name(k));
            assert!(!v.contains(&0));
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = smtpd::queuerun::config::parse_env_file(text);
    }
    let env = handoff::decode_env(data);
    let items: Vec<(&[u8], Option<&[u8]>)> = env
        .iter()
        .map(|(k, v)| (k.as_encoded_bytes(), v.as_ref().map(|v| v.as_encoded_bytes())))
        .collect();
    assert_eq!(handoff::decode_env(&handoff::encode_env(&items)), env);
});
