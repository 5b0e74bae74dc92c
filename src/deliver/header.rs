//! The lines maildir-deliver puts in front of a message, as qmail-local
//! does (`Return-Path: <sender>`, `Delivered-To: rcpt`, LF line ends as
//! in the queue and in a Maildir), and qmail's loop check: a message whose
//! header already has `Delivered-To:` with the address it is being
//! delivered to has been here before and would circle for ever. The scan
//! is bounded (`MAX_SCAN`). Pure: bytes in, bytes out. No I/O here.

/// The most bytes at the start of a message whose header section is
/// scanned for `Delivered-To:` (each hop adds its line at the top, so a
/// loop shows there long before this).
pub const MAX_SCAN: usize = 256 * 1024;

/// The two lines to prepend for one recipient.
pub fn prefix(sender: &[u8], rcpt: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(40 + sender.len() + rcpt.len());
    v.extend_from_slice(b"Return-Path: <");
    v.extend_from_slice(sender);
    v.extend_from_slice(b">\nDelivered-To: ");
    v.extend_from_slice(rcpt);
    v.push(b'\n');
    v
}

/// An address that can go into a header line as it is: no control
/// characters (CR or LF would end the line and start another field).
pub fn address_ok(a: &[u8]) -> bool {
    !a.iter().any(|&b| b < 0x20 || b == 0x7f)
}

/// The values of every `Delivered-To:` field in the header section at the
/// start of `head` (unfolded, trimmed, ASCII lower case). The section ends
/// at the first empty line or at the end of `head`.
pub fn delivered_to(head: &[u8]) -> Vec<Vec<u8>> {
    let head = head.get(..MAX_SCAN).unwrap_or(head);
    let mut out = Vec::new();
    // The field being read, if it is a Delivered-To.
    let mut current: Option<Vec<u8>> = None;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if matches!(line.first(), Some(b' ' | b'\t')) {
            // RFC 5322 2.2.3: a folded continuation of the field before.
            if let Some(v) = current.as_mut() {
                v.extend_from_slice(line);
            }
            continue;
        }
        if let Some(v) = current.take() {
            out.push(v);
        }
        if line.is_empty() {
            break;
        }
        if let Some(value) = field_value(line, b"delivered-to") {
            current = Some(value.to_vec());
        }
    }
    // A last field cut off by the bound still counts (it can only have
    // lost a folded tail).
    if let Some(v) = current {
        out.push(v);
    }
    out.into_iter().map(|v| v.trim_ascii().to_ascii_lowercase()).collect()
}

/// Is `rcpt` among the `Delivered-To:` values (case aside)?
pub fn loops(values: &[Vec<u8>], rcpt: &[u8]) -> bool {
    let r = rcpt.trim_ascii().to_ascii_lowercase();
    values.contains(&r)
}

/// The value of a field line if its name is `name` (lower case given).
fn field_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (n, v) = line.split_at(colon);
    // RFC 5322 3.6.8 allows no white space in the name; old mailers put
    // some before the colon: take the name without it.
    n.trim_ascii_end().eq_ignore_ascii_case(name).then(|| v.get(1..).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_lines() {
        assert_eq!(prefix(b"a@b", b"c@d"), b"Return-Path: <a@b>\nDelivered-To: c@d\n");
        assert_eq!(prefix(b"", b"c@d"), b"Return-Path: <>\nDelivered-To: c@d\n");
        assert!(address_ok(b"a@b") && address_ok(b"") && address_ok("\u{e9}@b".as_bytes()));
        assert!(!address_ok(b"a@b\nX-Evil: 1") && !address_ok(b"a\r@b") && !address_ok(b"a\0b") && !address_ok(b"a\x7f"));
    }

    #[test]
    fn loop_check() {
        let m = b"Return-Path: <x@y>\nDelivered-To: Alice@Example.com\nReceived: from a\n\tby b\nDelivered-To:\n  bob@example.com \r\nDelivered-To : carol@example.com\nSubject: hi\n\nDelivered-To: dave@example.com\n";
        let v = delivered_to(m);
        assert_eq!(v, vec![b"alice@example.com".to_vec(), b"bob@example.com".to_vec(), b"carol@example.com".to_vec()]);
        assert!(loops(&v, b"alice@EXAMPLE.com"));
        assert!(loops(&v, b"bob@example.com"));
        // Only the header counts, and only Delivered-To.
        assert!(!loops(&v, b"dave@example.com"));
        assert!(!loops(&delivered_to(b"X-Delivered-To: a@b\nDelivered-To-X: a@b\n\n"), b"a@b"));
        assert!(!loops(&v, b"alice@example.co"));
        // A field that ends the scanned part still counts.
        assert!(loops(&delivered_to(b"Subject: x\nDelivered-To: a@b"), b"a@b"));
        // Bounded: a Delivered-To past MAX_SCAN is not seen.
        let mut long = b"X-Pad: ".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_SCAN));
        long.extend_from_slice(b"\nDelivered-To: a@b\n\n");
        assert!(delivered_to(&long).is_empty());
        assert!(delivered_to(b"").is_empty());
    }
}
