//! The AUTH decoders (src/auth.rs, RFC 4954 with PLAIN, LOGIN, CRAM-MD5):
//! the AUTH command's argument, the MAIL AUTH= value, and whole exchanges
//! driven by client lines. Properties besides "no panic": every prompt is one
//! `334 ` line of base64 ending in CRLF; every failure is one well-formed
//! reply line; an exchange ends (Check or Fail) and then only fails; the
//! credentials handed to checkpassword are non-empty, bounded, NUL-free
//! fields (so `user\0secret\0challenge\0` splits back into exactly them);
//! what a client encodes for PLAIN and LOGIN decodes to the same user and
//! password; CRAM-MD5 answers carry a 32-digit lower-case hex digest.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smtpd::smtpd::auth::{self, Mech, Step};

fn one_line(s: &str) {
    assert!(s.ends_with("\r\n") && s.len() <= 512, "{s:?}");
    assert!(!s[..s.len() - 2].contains(['\r', '\n', '\0']), "{s:?}");
}

fn check_step(step: &Step) {
    match step {
        Step::Ask(s) => {
            one_line(s);
            assert!(s.starts_with("334 "), "{s:?}");
            let b = s[4..s.len() - 2].as_bytes();
            assert!(b.iter().all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(c)), "{s:?}");
        }
        Step::Fail(r) => {
            one_line(r);
            assert!(matches!(r.as_bytes()[0], b'4' | b'5'), "{r:?}");
        }
        Step::Check(c) => {
            for f in [&c.user, &c.secret] {
                assert!(!f.is_empty() && f.len() <= auth::MAX_CREDENTIAL && !f.contains(&0));
            }
            assert!(!c.challenge.contains(&0));
            let enc = c.encode();
            let parts: Vec<&[u8]> = enc.split(|&b| b == 0).collect();
            assert_eq!(parts, vec![&c.user[..], &c.secret[..], &c.challenge[..], &b""[..]]);
            if c.mech == Mech::CramMd5 {
                assert_eq!(c.secret.len(), 32);
                assert!(c.secret.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)));
            } else {
                assert!(c.challenge.is_empty());
            }
        }
    }
}

fn b64(b: &[u8]) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b).into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };

    // The command argument and the MAIL parameter, on the raw input.
    if let Ok((mech, initial)) = auth::parse_auth_args(rest) {
        assert!(initial.map_or(true, |i| !i.is_empty() && !i.contains(&b' ')));
        assert!(auth::parse_mech(mech.name().as_bytes()) == Some(mech));
    }
    if let Some(auth::MailAuth::Mailbox(m)) = auth::parse_mail_auth(rest) {
        assert!(!m.is_empty());
    }

    // A whole exchange: the selector picks the mechanism and whether the
    // first line is an initial response; the rest is the client's lines.
    let mech = [Mech::Plain, Mech::Login, Mech::CramMd5][(sel % 3) as usize];
    let mut lines = rest.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let initial = if sel & 4 != 0 { lines.next() } else { None };
    let challenge = auth::cram_challenge(4242, 1_700_000_000, "fuzz.example");
    let (mut ex, mut step) = auth::start(mech, initial, challenge);
    check_step(&step);
    let mut asked = 0;
    while let Step::Ask(_) = step {
        asked += 1;
        assert!(asked <= 2, "more than two prompts");
        let Some(l) = lines.next() else { break };
        step = ex.respond(l);
        check_step(&step);
    }
    if !matches!(step, Step::Ask(_)) {
        // Over: whatever comes next only fails.
        for l in lines.take(3) {
            assert!(matches!(ex.respond(l), Step::Fail(_)));
        }
    }

    // What a client encodes decodes to the same fields.
    let mut halves = rest.splitn(2, |&b| b == 0);
    let (user, pass) = (halves.next().unwrap_or_default(), halves.next().unwrap_or_default());
    let good = |f: &[u8]| !f.is_empty() && f.len() <= auth::MAX_CREDENTIAL && !f.contains(&0);
    if good(user) && good(pass) {
        let mut plain = vec![0];
        plain.extend_from_slice(user);
        plain.push(0);
        plain.extend_from_slice(pass);
        let (_, s) = auth::start(Mech::Plain, Some(&b64(&plain)), Vec::new());
        match s {
            Step::Check(c) => assert!(c.user == user && c.secret == pass),
            other => panic!("PLAIN of good fields: {other:?}"),
        }
        let (mut ex, _) = auth::start(Mech::Login, None, Vec::new());
        assert!(matches!(ex.respond(&b64(user)), Step::Ask(_)));
        match ex.respond(&b64(pass)) {
            Step::Check(c) => assert!(c.user == user && c.secret == pass),
            other => panic!("LOGIN of good fields: {other:?}"),
        }
    }
});
