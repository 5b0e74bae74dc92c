//! The client side of the SMTP dialogue, pure parts: what the EHLO reply
//! offers, and the exact bytes of each command we send (MAIL and RCPT with
//! their RFC 1870/6152/6531/3461 parameters, XCLIENT/XFORWARD). No I/O here.

use super::reply::Reply;
use crate::envelope::Attrs;
use crate::xtext;

/// What the server offered in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    pub esmtp: bool,
    pub pipelining: bool,
    /// SIZE limit; `Some(0)` means "SIZE offered, no fixed limit".
    pub size: Option<u64>,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    pub starttls: bool,
    /// SASL mechanisms, upper case.
    pub auth: Vec<String>,
    /// XCLIENT attribute names, upper case (`None`: not offered).
    pub xclient: Option<Vec<String>>,
    pub xforward: Option<Vec<String>>,
}

impl Extensions {
    /// Keywords of a 250 EHLO reply (RFC 5321 4.1.1.1); the first line is the
    /// server's name, the rest one keyword each.
    pub fn parse(reply: &Reply) -> Extensions {
        let mut e = Extensions { esmtp: true, ..Extensions::default() };
        for t in reply.texts().skip(1) {
            let t = String::from_utf8_lossy(t).to_ascii_uppercase();
            let mut w = t.split_ascii_whitespace();
            let Some(kw) = w.next() else { continue };
            let args: Vec<String> = w.map(String::from).collect();
            match kw {
                "PIPELINING" => e.pipelining = true,
                "SIZE" => e.size = Some(args.first().and_then(|a| a.parse().ok()).unwrap_or(0)),
                "8BITMIME" => e.eight_bit_mime = true,
                "SMTPUTF8" => e.smtputf8 = true,
                "DSN" => e.dsn = true,
                "STARTTLS" => e.starttls = true,
                "AUTH" => e.auth.extend(args),
                "XCLIENT" => e.xclient = Some(args),
                "XFORWARD" => e.xforward = Some(args),
                _ if kw.starts_with("AUTH=") => {
                    // Old-style `AUTH=LOGIN PLAIN` of pre-RFC 2554 servers.
                    e.auth.extend(std::iter::once(kw[5..].to_string()).chain(args))
                }
                _ => {}
            }
        }
        e.auth.sort();
        e.auth.dedup();
        e
    }
}

/// What MAIL declares beyond the sender.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub eight_bit: bool,
    pub smtputf8: bool,
    /// RET= and ENVID= (DSN), when the server offers DSN.
    pub ret: Option<String>,
    pub envid: Option<String>,
}

/// DSN parameters of one recipient (only sent when the server offers DSN).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    pub notify: Option<String>,
    pub orcpt: Option<String>,
}

pub fn mail_command(sender: &[u8], p: &MailParams) -> Vec<u8> {
    let mut c = b"MAIL FROM:<".to_vec();
    c.extend_from_slice(&quote_address(sender));
    c.push(b'>');
    if let Some(n) = p.size {
        c.extend_from_slice(format!(" SIZE={n}").as_bytes());
    }
    if p.eight_bit {
        c.extend_from_slice(b" BODY=8BITMIME");
    }
    if p.smtputf8 {
        c.extend_from_slice(b" SMTPUTF8");
    }
    if let Some(r) = &p.ret {
        c.extend_from_slice(format!(" RET={r}").as_bytes());
    }
    if let Some(e) = &p.envid {
        c.extend_from_slice(format!(" ENVID={e}").as_bytes());
    }
    c.extend_from_slice(b"\r\n");
    c
}

pub fn rcpt_command(rcpt: &[u8], p: &RcptParams) -> Vec<u8> {
    let mut c = b"RCPT TO:<".to_vec();
    c.extend_from_slice(&quote_address(rcpt));
    c.push(b'>');
    if let Some(n) = &p.notify {
        c.extend_from_slice(format!(" NOTIFY={n}").as_bytes());
    }
    if let Some(o) = &p.orcpt {
        c.extend_from_slice(format!(" ORCPT={o}").as_bytes());
    }
    c.extend_from_slice(b"\r\n");
    c
}

/// The DSN parameters from the attribute block (doc/PROTOCOLS.md section 1),
/// checked so that nothing in them can break the command line.
pub fn dsn_params(attrs: &Attrs, nrcpt: usize) -> (Option<String>, Option<String>, Vec<RcptParams>) {
    let word = |v: &[u8]| {
        let s = std::str::from_utf8(v).ok()?;
        (!s.is_empty() && s.len() <= 500 && s.bytes().all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>'))
            .then(|| s.to_string())
    };
    let ret = attrs.get("RET").and_then(word).filter(|r| r.eq_ignore_ascii_case("FULL") || r.eq_ignore_ascii_case("HDRS"));
    // Stored "as received", so already xtext; re-encode anything that is not.
    let as_xtext = |s: String| if xtext::decode(s.as_bytes()).is_some() { s } else { xtext::encode(s.as_bytes()) };
    let envid = attrs.get("ENVID").and_then(word).map(as_xtext);
    let rcpts = (0..nrcpt)
        .map(|i| RcptParams {
            notify: attrs.get(&format!("RCPT.{i}.NOTIFY")).and_then(word),
            orcpt: attrs.get(&format!("RCPT.{i}.ORCPT")).and_then(word).and_then(|o| {
                let (kind, addr) = o.split_once(';')?;
                Some(format!("{kind};{}", as_xtext(addr.to_string())))
            }),
        })
        .collect();
    (ret, envid, rcpts)
}

/// XFORWARD attribute names and the attribute-block names they come from.
const XFORWARD_MAP: &[(&str, &str)] = &[
    ("NAME", "CLIENT_NAME"),
    ("ADDR", "CLIENT_ADDR"),
    ("PORT", "CLIENT_PORT"),
    ("PROTO", "CLIENT_PROTO"),
    ("HELO", "CLIENT_HELO"),
    ("IDENT", "CLIENT_IDENT"),
    ("SOURCE", "CLIENT_SOURCE"),
];
const XCLIENT_MAP: &[(&str, &str)] = &[
    ("NAME", "CLIENT_NAME"),
    ("ADDR", "CLIENT_ADDR"),
    ("PORT", "CLIENT_PORT"),
    ("PROTO", "CLIENT_PROTO"),
    ("HELO", "CLIENT_HELO"),
    ("LOGIN", "CLIENT_LOGIN"),
];

/// Postfix limits one XCLIENT/XFORWARD command line to 512 octets: longer
/// sets are split over several commands.
const X_LINE: usize = 512;

/// Does the block carry facts about an original client at all?
pub fn has_client_attrs(attrs: &Attrs) -> bool {
    attrs.0.iter().any(|(n, _)| n.starts_with("CLIENT_"))
}

/// XFORWARD commands for the attributes the server named, each value xtext,
/// `[UNAVAILABLE]` when the block has none (Postfix XFORWARD_README).
pub fn xforward_commands(offered: &[String], attrs: &Attrs) -> Vec<Vec<u8>> {
    x_commands("XFORWARD", XFORWARD_MAP, offered, attrs)
}

/// XCLIENT commands likewise (Postfix XCLIENT_README); the server answers
/// the last one with a new 220 greeting.
pub fn xclient_commands(offered: &[String], attrs: &Attrs) -> Vec<Vec<u8>> {
    x_commands("XCLIENT", XCLIENT_MAP, offered, attrs)
}

fn x_commands(verb: &str, map: &[(&str, &str)], offered: &[String], attrs: &Attrs) -> Vec<Vec<u8>> {
    let mut items = Vec::new();
    for (x, ours) in map {
        if !offered.iter().any(|o| o == x) {
            continue;
        }
        let v = match attrs.get(ours) {
            Some(v) if !v.is_empty() => {
                let mut v = v.to_vec();
                if *x == "ADDR" && v.contains(&b':') && !v.starts_with(b"IPV6:") {
                    // Postfix writes IPv6 client addresses as IPV6:addr.
                    v.splice(0..0, b"IPV6:".iter().copied());
                }
                if *x == "PROTO" {
                    v.make_ascii_uppercase();
                }
                x_value(&v)
            }
            _ => "[UNAVAILABLE]".to_string(),
        };
        items.push(format!("{x}={v}"));
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    for it in items {
        if !cur.is_empty() && cur.len() + 1 + it.len() + 2 > X_LINE {
            out.push(format!("{cur}\r\n").into_bytes());
            cur.clear();
        }
        if cur.is_empty() {
            cur.push_str(verb);
        }
        cur.push(' ');
        cur.push_str(&it);
    }
    if !cur.is_empty() {
        out.push(format!("{cur}\r\n").into_bytes());
    }
    out
}

/// xtext with UTF-8 encoded too (the server may not be 8-bit clean here),
/// at most 255 octets of value.
fn x_value(v: &[u8]) -> String {
    let mut s = String::new();
    for &b in v.iter().take(255) {
        if (0x21..0x7f).contains(&b) && b != b'+' && b != b'=' {
            s.push(b as char);
        } else {
            s.push_str(&format!("+{b:02X}"));
        }
    }
    s
}

/// Why an envelope address (from argv) cannot go into a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadAddress {
    /// A byte below 32 or DEL: CR LF would end the command and start
    /// another (command smuggling); no other control byte is valid in a
    /// Mailbox or a Quoted-string either (RFC 5321 4.1.2).
    Control,
    /// The part after the last `@` is neither a domain name nor an address
    /// literal: `>` or a space there would end the path or add parameters.
    Domain,
    /// Empty (as a recipient), or without `@` and not a dot-atom
    /// (`postmaster` is fine).
    NotAnAddress,
}

impl BadAddress {
    /// For the report: "the sender address {what}".
    pub fn what(self) -> &'static str {
        match self {
            BadAddress::Control => "has a control character, which SMTP cannot carry",
            BadAddress::Domain => "has a domain that is neither a name nor an address literal",
            BadAddress::NotAnAddress => "is not an address",
        }
    }
}

/// Can `addr` go between `<` and `>` once `quote_address` has quoted its
/// local part? The empty (null) address passes; a caller that needs a
/// mailbox checks emptiness itself.
pub fn check_address(addr: &[u8]) -> Result<(), BadAddress> {
    if addr.iter().any(|&b| b < 32 || b == 127) {
        return Err(BadAddress::Control);
    }
    if addr.is_empty() {
        return Ok(());
    }
    let Some(at) = addr.iter().rposition(|&b| b == b'@') else {
        return if is_dot_atom(addr) { Ok(()) } else { Err(BadAddress::NotAnAddress) };
    };
    let domain = addr.get(at + 1..).unwrap_or_default();
    if is_domain(domain) {
        Ok(())
    } else {
        Err(BadAddress::Domain)
    }
}

/// A domain name (letters, digits, `-`, `.`, `_` as real zones have it, and
/// UTF-8 for U-labels, RFC 6531) or an address literal whose content is
/// RFC 5321 4.1.3 dcontent (%d33-90 / %d94-126).
fn is_domain(d: &[u8]) -> bool {
    if let Some(inner) = d.strip_prefix(b"[").and_then(|x| x.strip_suffix(b"]")) {
        return !inner.is_empty() && inner.iter().all(|&b| (33..=90).contains(&b) || (94..=126).contains(&b));
    }
    !d.is_empty() && d.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_' || b >= 0x80)
}

/// The address inside `<>`: the local part quoted when it is not a
/// dot-atom (RFC 5321 4.1.2), as qmail-remote's addrmangle does; a local
/// part that already is a Quoted-string (smtpd-rs keeps `"john.doe"` as the
/// client sent it) goes as it is, never quoted twice. An address without
/// `@` (e.g. `postmaster`) and the null sender go as they are.
pub fn quote_address(addr: &[u8]) -> Vec<u8> {
    let at = match addr.iter().rposition(|&b| b == b'@') {
        Some(i) => i,
        None => return addr.to_vec(),
    };
    let (local, domain) = (&addr[..at], &addr[at..]);
    if is_dot_atom(local) || is_quoted_string(local) {
        return addr.to_vec();
    }
    let mut q = vec![b'"'];
    for &b in local {
        if b == b'"' || b == b'\\' {
            q.push(b'\\');
        }
        q.push(b);
    }
    q.push(b'"');
    q.extend_from_slice(domain);
    q
}

/// RFC 5321 4.1.2 Quoted-string: DQUOTE *QcontentSMTP DQUOTE, where
/// QcontentSMTP is qtextSMTP (%d32-33 / %d35-91 / %d93-126, and UTF-8 per
/// RFC 6531 3.3) or a quoted-pairSMTP (backslash and %d32-126).
fn is_quoted_string(s: &[u8]) -> bool {
    let Some(inner) = s.strip_prefix(b"\"").and_then(|x| x.strip_suffix(b"\"")) else { return false };
    let mut it = inner.iter();
    while let Some(&b) = it.next() {
        match b {
            b'\\' => match it.next() {
                Some(&q) if (32..=126).contains(&q) => {}
                _ => return false,
            },
            b'"' => return false,
            32..=126 | 0x80.. => {}
            _ => return false,
        }
    }
    true
}

fn is_dot_atom(s: &[u8]) -> bool {
    const SPECIAL: &[u8] = b"!#$%&'*+-/=?^_`{|}~";
    !s.is_empty()
        && s.split(|&b| b == b'.').all(|atom| {
            !atom.is_empty() && atom.iter().all(|&b| b.is_ascii_alphanumeric() || SPECIAL.contains(&b) || b >= 0x80)
        })
}

/// The envelope with each non-ASCII domain as its A-label, if every local
/// part is ASCII and every domain converts (RFC 5890, strict form).
pub fn ascii_envelope(sender: &[u8], rcpts: &[Vec<u8>]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let one = |a: &[u8]| -> Option<Vec<u8>> {
        if a.is_ascii() {
            return Some(a.to_vec());
        }
        let at = a.iter().rposition(|&b| b == b'@')?;
        let (local, domain) = (&a[..at], &a[at + 1..]);
        if !local.is_ascii() {
            return None;
        }
        let d = idna::domain_to_ascii_strict(std::str::from_utf8(domain).ok()?).ok()?;
        Some([local, b"@", d.as_bytes()].concat())
    };
    Some((one(sender)?, rcpts.iter().map(|r| one(r)).collect::<Option<Vec<_>>>()?))
}

/// Is anything in the envelope non-ASCII (then SMTPUTF8 is needed)?
pub fn envelope_needs_utf8(sender: &[u8], rcpts: &[Vec<u8>]) -> bool {
    !sender.is_ascii() || rcpts.iter().any(|r| !r.is_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ehlo(lines: &[&str]) -> Extensions {
        let mut r = Reply { code: 250, lines: vec![] };
        for (i, l) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            r.lines.push(format!("250{sep}{l}").into_bytes());
        }
        Extensions::parse(&r)
    }

    #[test]
    fn ehlo_keywords() {
        let e = ehlo(&["mx.example hi", "PIPELINING", "SIZE 1000", "8BITMIME", "smtputf8", "DSN", "STARTTLS",
            "AUTH PLAIN LOGIN", "AUTH=LOGIN CRAM-MD5", "XFORWARD NAME ADDR PROTO HELO", "XCLIENT ADDR NAME"]);
        assert!(e.pipelining && e.eight_bit_mime && e.smtputf8 && e.dsn && e.starttls);
        assert_eq!(e.size, Some(1000));
        assert_eq!(e.auth, vec!["CRAM-MD5", "LOGIN", "PLAIN"]);
        assert_eq!(e.xforward.as_deref(), Some(&["NAME".to_string(), "ADDR".into(), "PROTO".into(), "HELO".into()][..]));
        assert_eq!(ehlo(&["x", "SIZE"]).size, Some(0));
        assert_eq!(ehlo(&["x"]), Extensions { esmtp: true, ..Extensions::default() });
    }

    #[test]
    fn commands() {
        let p = MailParams { size: Some(12), eight_bit: true, smtputf8: true, ret: Some("HDRS".into()), envid: Some("q+2B1".into()) };
        assert_eq!(mail_command(b"a@b", &p), b"MAIL FROM:<a@b> SIZE=12 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=q+2B1\r\n");
        assert_eq!(mail_command(b"", &MailParams::default()), b"MAIL FROM:<>\r\n");
        let r = RcptParams { notify: Some("SUCCESS,FAILURE".into()), orcpt: Some("rfc822;x@y".into()) };
        assert_eq!(rcpt_command(b"x@y", &r), b"RCPT TO:<x@y> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y\r\n");
    }

    #[test]
    fn quoting() {
        let t: &[(&[u8], &[u8])] = &[
            (b"a.b@c", b"a.b@c"),
            (b"postmaster", b"postmaster"),
            (b"a b@c", b"\"a b\"@c"),
            (b"a..b@c", b"\"a..b\"@c"),
            (b".a@c", b"\".a\"@c"),
            (b"a\"b@c", b"\"a\\\"b\"@c"),
            (b"x@y@z", b"\"x@y\"@z"),
            (b"@c", b"\"\"@c"),
            (b"j\xc3\xb6rg@c", b"j\xc3\xb6rg@c"),
            // Already quoted: as it is (issue: quoted twice on the way out).
            (b"\"john.doe\"@c", b"\"john.doe\"@c"),
            (b"\"a b\"@c", b"\"a b\"@c"),
            (b"\"a\\\"b\"@c", b"\"a\\\"b\"@c"),
            (b"\"\"@c", b"\"\"@c"),
            // Not a well-formed Quoted-string: quoted (and escaped) whole.
            (b"\"a\"b\"@c", b"\"\\\"a\\\"b\\\"\"@c"),
            (b"\"a\\\"@c", b"\"\\\"a\\\\\\\"\"@c"),
            (b"\"a\"x@c", b"\"\\\"a\\\"x\"@c"),
            (b"\"@c", b"\"\\\"\"@c"),
        ];
        for (i, o) in t {
            assert_eq!(quote_address(i), o.to_vec(), "{}", String::from_utf8_lossy(i));
        }
        assert!(envelope_needs_utf8(b"a@b", &[b"j\xc3\xb6rg@c".to_vec()]));
        let (s, r) = ascii_envelope(b"a@b\xc3\xbccher.example", &[b"x@y".to_vec()]).unwrap();
        assert_eq!((s, r), (b"a@xn--bcher-kva.example".to_vec(), vec![b"x@y".to_vec()]));
        assert_eq!(ascii_envelope(b"a@b", &[b"j\xc3\xb6rg@c".to_vec()]), None);
        assert!(!envelope_needs_utf8(b"a@b", &[b"c@d".to_vec()]));
    }

    #[test]
    fn address_checks() {
        use BadAddress::*;
        let t: &[(&[u8], Result<(), BadAddress>)] = &[
            (b"", Ok(())),
            (b"a@b.example", Ok(())),
            (b"postmaster", Ok(())),
            (b"a b@c", Ok(())),
            (b"\"john.doe\"@c", Ok(())),
            (b"x@[192.0.2.1]", Ok(())),
            (b"x@[IPv6:2001:db8::1]", Ok(())),
            (b"j\xc3\xb6rg@b\xc3\xbccher.example", Ok(())),
            (b"x@_dmarc.example", Ok(())),
            (b"x@example.net>\r\nRSET\r\nMAIL FROM:<a@b", Err(Control)),
            (b"a\tb@c", Err(Control)),
            (b"a@c\x7f", Err(Control)),
            (b"a@c\n", Err(Control)),
            (b"a@c> NOTIFY=NEVER", Err(Domain)),
            (b"a@c>", Err(Domain)),
            (b"a@", Err(Domain)),
            (b"a@[1.2.3.4", Err(Domain)),
            (b"a@[]", Err(Domain)),
            (b"a@[1]2]", Err(Domain)),
            (b"a@b c", Err(Domain)),
            (b"post master", Err(NotAnAddress)),
            (b"a>b", Err(NotAnAddress)),
        ];
        for (a, want) in t {
            assert_eq!(check_address(a), *want, "{}", String::from_utf8_lossy(a));
        }
    }

    #[test]
    fn dsn_from_attrs() {
        let a = Attrs::parse(b"RET=HDRS\nENVID=abc\nRCPT.1.NOTIFY=NEVER\nRCPT.0.ORCPT=rfc822;a+2B2Bb@c\nRCPT.1.ORCPT=rfc822;x+2By@z\nRCPT.0.NOTIFY=bad+20word\n").unwrap();
        let (ret, envid, r) = dsn_params(&a, 2);
        assert_eq!((ret.as_deref(), envid.as_deref()), (Some("HDRS"), Some("abc")));
        assert_eq!(r[0], RcptParams { notify: None, orcpt: Some("rfc822;a+2Bb@c".into()) });
        assert_eq!(r[1], RcptParams { notify: Some("NEVER".into()), orcpt: Some("rfc822;x+2By@z".into()) });
    }

    #[test]
    fn xforward_and_xclient() {
        let a = Attrs::parse(b"CLIENT_ADDR=2001:db8::1\nCLIENT_HELO=evil+20name\nCLIENT_PROTO=esmtp\n").unwrap();
        let off: Vec<String> = ["NAME", "ADDR", "PROTO", "HELO", "SOURCE"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            xforward_commands(&off, &a),
            vec![b"XFORWARD NAME=[UNAVAILABLE] ADDR=IPV6:2001:db8::1 PROTO=ESMTP HELO=evil+20name SOURCE=[UNAVAILABLE]\r\n".to_vec()]
        );
        let off: Vec<String> = ["ADDR", "LOGIN"].iter().map(|s| s.to_string()).collect();
        assert_eq!(xclient_commands(&off, &a), vec![b"XCLIENT ADDR=IPV6:2001:db8::1 LOGIN=[UNAVAILABLE]\r\n".to_vec()]);
        let long = Attrs::parse(format!("CLIENT_NAME={}\nCLIENT_HELO={}\n", "n".repeat(300), "h".repeat(300)).as_bytes()).unwrap();
        let cmds = xforward_commands(&["NAME".into(), "HELO".into()], &long);
        assert_eq!(cmds.len(), 2);
        assert!(cmds.iter().all(|c| c.len() <= X_LINE));
        assert!(!has_client_attrs(&Attrs::default()));
        assert!(has_client_attrs(&a));
    }
}
