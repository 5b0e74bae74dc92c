//! DER (X.690) reading, just enough to walk an X.509 certificate: one
//! tag-length-value at a time. Pure, bounded: no allocation, no recursion.

/// One DER TLV from the front of `b`: (tag, contents, what follows).
/// Single-octet tags and definite lengths of at most four octets only, as
/// certificates use; anything else is `None`.
pub fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag number form
    }
    let first = *b.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    Some((tag, b.get(hdr..end)?, b.get(end..)?))
}

#[cfg(test)]
mod tests {
    use super::tlv;

    #[test]
    fn table() {
        assert_eq!(tlv(&[0x30, 0x02, 0x05, 0x00, 0xff]), Some((0x30, &[0x05, 0x00][..], &[0xff][..])));
        assert_eq!(tlv(&[0x04, 0x81, 0x01, 0xaa]), Some((0x04, &[0xaa][..], &[][..])));
        assert_eq!(tlv(&[0x04, 0x03, 0xaa]), None); // short
        assert_eq!(tlv(&[0x04, 0x80]), None); // indefinite
        assert_eq!(tlv(&[0x04, 0x85, 1, 1, 1, 1, 1]), None); // too long a length
        assert_eq!(tlv(&[0x1f, 0x01, 0x00]), None); // high tag number
        assert_eq!(tlv(&[]), None);
    }
}
