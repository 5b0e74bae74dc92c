//! DKIM tag=value lists (RFC 6376 3.2): the DKIM-Signature field's value and
//! the key record in DNS. Parsing keeps where each value sits in the input
//! (the verifier blanks b= in place, 3.7), encoding joins `name=value` with
//! `; `. Bounded: at most MAX_TAGS tags, MAX_TAG_LIST octets. Pure, no I/O.

use std::fmt;
use std::ops::Range;

/// More tags than any DKIM-Signature or key record needs (each has ~15 kinds).
pub const MAX_TAGS: usize = 64;
/// A tag list longer than this is refused (a key record is at most 64 KiB of TXT).
pub const MAX_TAG_LIST: usize = 64 * 1024;

/// Why a tag list does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagError {
    TooLong,
    TooManyTags,
    /// A tag name that is not ALPHA *(ALPHA / DIGIT / "_"), or is missing.
    BadName { at: usize },
    /// No `=` after a tag name.
    NoEquals { at: usize },
    /// An octet a tag value may not hold (a control character, a CR or LF that
    /// is not part of folding white space).
    BadValue { at: usize },
    /// RFC 6376 3.2: "Tags with duplicate names MUST NOT occur within a single tag-list".
    Duplicate(String),
}

impl fmt::Display for TagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagError::TooLong => write!(f, "tag list longer than {MAX_TAG_LIST} octets"),
            TagError::TooManyTags => write!(f, "more than {MAX_TAGS} tags"),
            TagError::BadName { at } => write!(f, "bad tag name at octet {at}"),
            TagError::NoEquals { at } => write!(f, "no '=' after the tag name at octet {at}"),
            TagError::BadValue { at } => write!(f, "bad octet in a tag value at octet {at}"),
            TagError::Duplicate(n) => write!(f, "duplicate tag {n}="),
        }
    }
}

/// One `name=value` of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag<'a> {
    /// Tag names are case-sensitive (RFC 6376 3.2).
    pub name: &'a str,
    /// The value without the white space around it (inner folding kept).
    pub value: &'a [u8],
    /// Where the value sits in the input, from just after `=` to just before
    /// `;` or the end, white space included: what "b= deleted" blanks (3.7).
    pub span: Range<usize>,
}

/// A parsed tag list, in input order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagList<'a> {
    pub tags: Vec<Tag<'a>>,
}

impl<'a> TagList<'a> {
    /// Parse RFC 6376 3.2's tag-list; a trailing `;` and white space around
    /// every element are allowed, an empty element (`a=1;;b=2`) is not.
    /// Octets 0x80 and above are allowed in values (RFC 8616: UTF-8 in i=).
    pub fn parse(input: &'a [u8]) -> Result<TagList<'a>, TagError> {
        if input.len() > MAX_TAG_LIST {
            return Err(TagError::TooLong);
        }
        let mut tags: Vec<Tag<'a>> = Vec::new();
        let mut pos = skip_fws(input, 0);
        while pos < input.len() {
            if tags.len() == MAX_TAGS {
                return Err(TagError::TooManyTags);
            }
            // tag-name = ALPHA *ALNUMPUNC
            let start = pos;
            match input.get(pos) {
                Some(b) if b.is_ascii_alphabetic() => pos += 1,
                _ => return Err(TagError::BadName { at: pos }),
            }
            while input.get(pos).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
                pos += 1;
            }
            let name = std::str::from_utf8(input.get(start..pos).unwrap_or_default()).unwrap_or_default();
            pos = skip_fws(input, pos);
            if input.get(pos) != Some(&b'=') {
                return Err(TagError::NoEquals { at: pos });
            }
            pos += 1;
            let vstart = pos;
            while let Some(&b) = input.get(pos) {
                match b {
                    b';' => break,
                    b' ' | b'\t' => pos += 1,
                    b'\r' => {
                        // Only as folding: CR LF followed by WSP.
                        let next = pos + 2;
                        if input.get(pos + 1) == Some(&b'\n') && matches!(input.get(next), Some(b' ' | b'\t')) {
                            pos = next;
                        } else {
                            return Err(TagError::BadValue { at: pos });
                        }
                    }
                    0x21..=0x7e | 0x80..=0xff => pos += 1,
                    _ => return Err(TagError::BadValue { at: pos }),
                }
            }
            let span = vstart..pos;
            let raw = input.get(span.clone()).unwrap_or_default();
            let value = trim_fws(raw);
            if tags.iter().any(|t| t.name == name) {
                return Err(TagError::Duplicate(name.to_string()));
            }
            tags.push(Tag { name, value, span });
            if pos < input.len() {
                pos += 1; // the ';'
            }
            pos = skip_fws(input, pos);
        }
        Ok(TagList { tags })
    }

    /// The value of tag `name`, if present.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.tags.iter().find(|t| t.name == name).map(|t| t.value)
    }

    /// The tag `name` itself (with its span), if present.
    pub fn tag(&self, name: &str) -> Option<&Tag<'a>> {
        self.tags.iter().find(|t| t.name == name)
    }
}

/// `name=value; name=value`: the canonical form of a list (no folding; the
/// signer folds its field itself). Values must already be valid tag values.
pub fn encode(tags: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (n, v)) in tags.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(n);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// A value with every space, tab, CR and LF taken out: base64 values (b=,
/// bh=, p=) may be folded anywhere (RFC 6376 3.5, 3.6.1).
pub fn strip_fws(v: &[u8]) -> Vec<u8> {
    v.iter().copied().filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')).collect()
}

/// Split a colon-separated value (h=, q=, t= of a key record, s=) into its
/// elements, each without the white space around it.
pub fn split_colons(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b':').map(trim_fws)
}

/// Is `v` a valid tag value (so that `encode` yields a list that parses back)?
pub fn is_value(v: &str) -> bool {
    !v.starts_with([' ', '\t'])
        && !v.ends_with([' ', '\t'])
        && v.bytes().all(|b| matches!(b, b' ' | b'\t' | 0x21..=0x3a | 0x3c..=0x7e | 0x80..=0xff))
}

fn is_fws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Past white space and folding (CR LF WSP) from `pos`. A CR or LF that is not
/// folding stops the skip, and the caller then fails on it.
fn skip_fws(input: &[u8], mut pos: usize) -> usize {
    loop {
        match input.get(pos) {
            Some(b' ' | b'\t') => pos += 1,
            Some(b'\r') if input.get(pos + 1) == Some(&b'\n') && matches!(input.get(pos + 2), Some(b' ' | b'\t')) => {
                pos += 3
            }
            _ => return pos,
        }
    }
}

fn trim_fws(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| !is_fws(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|&b| !is_fws(b)).map_or(start, |e| e + 1);
    v.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(input: &[u8]) -> Result<Vec<(String, String)>, TagError> {
        TagList::parse(input).map(|l| {
            l.tags.iter().map(|t| (t.name.to_string(), String::from_utf8_lossy(t.value).into_owned())).collect()
        })
    }

    fn p(v: &[(&str, &str)]) -> Result<Vec<(String, String)>, TagError> {
        Ok(v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect())
    }

    #[test]
    fn table() {
        assert_eq!(pairs(b"v=1; a=rsa-sha256"), p(&[("v", "1"), ("a", "rsa-sha256")]));
        assert_eq!(pairs(b"v=1;a=b;"), p(&[("v", "1"), ("a", "b")]));
        assert_eq!(pairs(b" v = 1 ; a = b ; "), p(&[("v", "1"), ("a", "b")]));
        assert_eq!(pairs(b""), p(&[]));
        assert_eq!(pairs(b"  "), p(&[]));
        assert_eq!(pairs(b"n="), p(&[("n", "")]));
        assert_eq!(pairs(b"n=;p="), p(&[("n", ""), ("p", "")]));
        // Folding inside and around values; inner folding is kept.
        assert_eq!(pairs(b"b=ab\r\n cd;\r\n\th=from : to"), p(&[("b", "ab\r\n cd"), ("h", "from : to")]));
        assert_eq!(pairs(b"n=a b\tc"), p(&[("n", "a b\tc")]));
        assert_eq!(pairs("i=jö@x".as_bytes()), p(&[("i", "jö@x")]));
        assert_eq!(pairs(b"a_1=x"), p(&[("a_1", "x")]));
        // Errors.
        assert_eq!(pairs(b"a=1;;b=2"), Err(TagError::BadName { at: 4 }));
        assert_eq!(pairs(b";"), Err(TagError::BadName { at: 0 }));
        assert_eq!(pairs(b"1a=2"), Err(TagError::BadName { at: 0 }));
        assert_eq!(pairs(b"_a=2"), Err(TagError::BadName { at: 0 }));
        assert_eq!(pairs(b"a"), Err(TagError::NoEquals { at: 1 }));
        assert_eq!(pairs(b"a-b=1"), Err(TagError::NoEquals { at: 1 }));
        assert_eq!(pairs(b"a=1; a=2"), Err(TagError::Duplicate("a".into())));
        assert_eq!(pairs(b"a=1; A=2"), p(&[("a", "1"), ("A", "2")])); // case-sensitive names
        assert_eq!(pairs(b"a=x\ny"), Err(TagError::BadValue { at: 3 }));
        assert_eq!(pairs(b"a=x\r\ny"), Err(TagError::BadValue { at: 3 }));
        assert_eq!(pairs(b"a=x\0"), Err(TagError::BadValue { at: 3 }));
        assert_eq!(pairs(b"a=x\r\n"), Err(TagError::BadValue { at: 3 }));
        assert_eq!(pairs(&vec![b'a'; MAX_TAG_LIST + 1]), Err(TagError::TooLong));
        let many: String = (0..=MAX_TAGS).map(|i| format!("t{i}=1;")).collect();
        assert_eq!(pairs(many.as_bytes()), Err(TagError::TooManyTags));
    }

    #[test]
    fn spans_cover_the_value_and_its_white_space() {
        let input = b"a=1; b= AbC\r\n dE= ;bh=x";
        let l = TagList::parse(input).unwrap();
        let b = l.tag("b").unwrap();
        assert_eq!(&input[b.span.clone()], b" AbC\r\n dE= ");
        assert_eq!(strip_fws(b.value), b"AbCdE=");
        let bh = l.tag("bh").unwrap();
        assert_eq!(&input[bh.span.clone()], b"x");
    }

    #[test]
    fn helpers() {
        assert_eq!(split_colons(b"from : To:\r\n subject").collect::<Vec<_>>(), vec![&b"from"[..], b"To", b"subject"]);
        assert!(is_value("rsa-sha256"));
        assert!(is_value("a b"));
        assert!(!is_value("a;b"));
        assert!(!is_value(" a"));
        assert!(!is_value("a\r\n"));
        assert_eq!(encode(&[("v", "1"), ("a", "ed25519-sha256")]), "v=1; a=ed25519-sha256");
    }

    proptest::proptest! {
        #[test]
        fn encode_parse_round_trip(tags in proptest::collection::btree_map("[a-zA-Z][a-zA-Z0-9_]{0,5}", "([!-:<-~]{1,8}( [!-:<-~]{1,8}){0,2})?", 0..10)) {
            let v: Vec<(&str, &str)> = tags.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            let s = encode(&v);
            let l = TagList::parse(s.as_bytes()).unwrap();
            let back: Vec<(&str, &str)> = l.tags.iter().map(|t| (t.name, std::str::from_utf8(t.value).unwrap())).collect();
            proptest::prop_assert_eq!(back, v);
        }

        #[test]
        fn never_panics(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = TagList::parse(&input);
        }
    }
}
