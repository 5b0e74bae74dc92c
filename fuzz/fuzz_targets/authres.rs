//! Authentication-Results: the writer never lets a value end the field or
//! start another one and its authserv-id reads back; the reader of foreign
//! fields (authserv-id, forgery check) never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::authcheck::authres::{self, MethodResult};

fuzz_target!(|data: &[u8]| {
    let _ = authres::parse_authserv_id(&String::from_utf8_lossy(data));
    let _ = authres::is_ours(data, "mx.example.org");

    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{1}');
    let id = parts.next().unwrap_or("").to_string();
    let mut results = Vec::new();
    while let (Some(reason), Some(value)) = (parts.next(), parts.next()) {
        let r = MethodResult::new("spf", "fail").comment(value.to_string()).reason(reason.to_string());
        results.push(r.prop("smtp", "mailfrom", value.to_string()).prop("header", "b", reason.to_string()));
        if results.len() > 8 {
            break;
        }
    }
    let field = authres::write(&id, &results);
    // One field: every line after the first is a continuation line.
    let mut lines = field.split('\n');
    assert!(lines.next().is_some_and(|l| l.starts_with("Authentication-Results: ")));
    for l in lines {
        assert!(l.is_empty() || l.starts_with('\t'), "{field:?}");
    }
    assert!(field.ends_with('\n') && !field.contains('\r'));
    if authres::is_token(&id) {
        assert!(authres::is_ours(field.as_bytes(), &id), "{field:?}");
    }
});
