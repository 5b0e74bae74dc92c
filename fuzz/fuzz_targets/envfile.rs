//! Environment files (src/envfile.rs: the one reader of smtpd-supervise's
//! and queue-run's `-e`); the supervisor-to-worker variable packet.
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
    let env = handoff::decode_env(data);
    let items: Vec<(&[u8], Option<&[u8]>)> = env
        .iter()
        .map(|(k, v)| (k.as_encoded_bytes(), v.as_ref().map(|v| v.as_encoded_bytes())))
        .collect();
    assert_eq!(handoff::decode_env(&handoff::encode_env(&items)), env);
});
