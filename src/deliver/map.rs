//! maildir-deliver's map (`MAILDIR_MAP`): which addresses are local, where
//! each one's Maildir is, and which account owns it. Lines
//! `address maildir owner`, separated by white space:
//!
//! ```text
//! # address              maildir                        owner
//! alice@example.com      /var/mail/example.com/alice/   vmail
//! bob@example.com        /var/mail/bob/Maildir/             bob:bob
//! @example.org           /var/mail/example.org/all/     5000:5000
//! ```
//!
//! `@domain` catches every address of the domain that has no line of its
//! own. The owner is `user` (with the user's primary group), `user:group`,
//! or `uid:gid`. Addresses compare without regard to ASCII case.
//!
//! Extension addresses (`lookup`): the address itself first; then, for each
//! delimiter character (`MAILDIR_DELIMITERS`, default `+`) in the local
//! part, from the rightmost, the address cut there (`a-b-c@d` with `-`:
//! `a-b@d`, then `a@d`), as qmail-getpw finds the longest user name; then
//! `@domain`. The first line found wins. Pure: text in, entries out; owner
//! names are resolved by the caller. No I/O here.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    Num(u32),
    Name(String),
}

/// Whose Maildir it is: the user, and the group (`None`: the user's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub user: Id,
    pub group: Option<Id>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// An absolute path: the Maildir (with `tmp/`, `new/`, `cur/` in it).
    pub maildir: String,
    pub owner: Owner,
    /// Its line in the file, for messages.
    pub line: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Map {
    /// Keyed by the address or `@domain`, in ASCII lower case.
    entries: HashMap<String, Entry>,
}

/// A bad line of the file.
pub use crate::conflines::LineError as Error;

/// The default of `MAILDIR_DELIMITERS`: `user+ext@` (Postfix's, Sendmail's
/// and most providers' habit). qmail's is `-`; set `-+` for both.
pub const DEFAULT_DELIMITERS: &str = "+";

impl Map {
    /// Parse the file. Blank lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Map, Error> {
        let mut entries = HashMap::new();
        for (n, line) in crate::conflines::lines(text) {
            let err = |what| Error { line: n, what };
            let mut fields = line.split_whitespace();
            let (Some(key), Some(maildir), Some(owner), None) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
                return Err(err("not three fields: address maildir owner"));
            };
            let key = parse_key(key).ok_or(err("bad address (local@domain or @domain)"))?;
            if !maildir.starts_with('/') {
                return Err(err("the maildir is not an absolute path"));
            }
            let owner = parse_owner(owner).map_err(err)?;
            let entry = Entry { maildir: maildir.to_string(), owner, line: n };
            if entries.insert(key, entry).is_some() {
                return Err(err("address given twice"));
            }
        }
        Ok(Map { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for `addr` by the rule above, and the key that matched.
    pub fn lookup(&self, addr: &[u8], delimiters: &str) -> Option<(&str, &Entry)> {
        let addr = std::str::from_utf8(addr).ok()?.to_ascii_lowercase();
        let at = addr.rfind('@')?;
        let (local, domain) = (&addr[..at], &addr[at..]);
        if domain.len() < 2 {
            return None;
        }
        let mut keys = vec![addr.clone()];
        for (i, c) in local.char_indices().rev() {
            if delimiters.contains(c) && i > 0 {
                keys.push(format!("{}{domain}", &local[..i]));
            }
        }
        keys.push(domain.to_string());
        keys.iter().find_map(|k| self.entries.get_key_value(k.as_str())).map(|(k, e)| (k.as_str(), e))
    }
}

/// `local@domain` or `@domain`, lower case; the domain not empty.
fn parse_key(k: &str) -> Option<String> {
    let at = k.rfind('@')?;
    let domain = &k[at + 1..];
    if domain.is_empty() || domain.starts_with('.') || domain.ends_with('.') {
        return None;
    }
    if k.chars().any(|c| c.is_control()) {
        return None;
    }
    Some(k.to_ascii_lowercase())
}

/// `user`, `user:group`, `uid:gid`; a numeric user needs its group.
fn parse_owner(s: &str) -> Result<Owner, &'static str> {
    let id = |t: &str| -> Result<Id, &'static str> {
        if t.is_empty() {
            return Err("empty user or group");
        }
        if t.bytes().all(|b| b.is_ascii_digit()) {
            return t.parse().map(Id::Num).map_err(|_| "uid or gid out of range");
        }
        if t.bytes().any(|b| !(b.is_ascii_alphanumeric() || b"_.-".contains(&b))) {
            return Err("bad user or group name");
        }
        Ok(Id::Name(t.to_string()))
    };
    let (user, group) = match s.split_once(':') {
        Some((u, g)) => (id(u)?, Some(id(g)?)),
        None => (id(s)?, None),
    };
    if matches!(user, Id::Num(_)) && group.is_none() {
        return Err("a numeric owner needs uid:gid");
    }
    Ok(Owner { user, group })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "# address maildir owner\n\n\
alice@Example.COM   /var/mail/alice/   vmail\n\
bob@example.com\t/var/mail/bob/Maildir/\tbob:staff\n\
bob-lists@example.com /var/mail/bob/Lists/ bob:staff\n\
@example.org /var/mail/org/ 5000:5001\n\
x@example.org /var/mail/x/ alice:100\n";

    fn owner(user: Id, group: Option<Id>) -> Owner {
        Owner { user, group }
    }

    #[test]
    fn parse_table() {
        let m = Map::parse(MAP).unwrap();
        let (k, e) = m.lookup(b"ALICE@example.com", "+").unwrap();
        assert_eq!((k, e.maildir.as_str(), e.line), ("alice@example.com", "/var/mail/alice/", 3));
        assert_eq!(e.owner, owner(Id::Name("vmail".into()), None));
        assert_eq!(m.lookup(b"bob@example.com", "").unwrap().1.owner, owner(Id::Name("bob".into()), Some(Id::Name("staff".into()))));
        assert_eq!(m.lookup(b"y@example.org", "").unwrap().1.owner, owner(Id::Num(5000), Some(Id::Num(5001))));
        assert_eq!(m.lookup(b"x@example.org", "").unwrap().1.owner, owner(Id::Name("alice".into()), Some(Id::Num(100))));
        let bad: &[(&str, &str)] = &[
            ("a@b /var/m/", "not three fields: address maildir owner"),
            ("a@b /var/m/ u extra", "not three fields: address maildir owner"),
            ("a@b m/ u", "the maildir is not an absolute path"),
            ("ab /var/m/ u", "bad address (local@domain or @domain)"),
            ("a@ /var/m/ u", "bad address (local@domain or @domain)"),
            ("a@.b /var/m/ u", "bad address (local@domain or @domain)"),
            ("a@b /var/m/ 1000", "a numeric owner needs uid:gid"),
            ("a@b /var/m/ 1000:", "empty user or group"),
            ("a@b /var/m/ :g", "empty user or group"),
            ("a@b /var/m/ 99999999999:1", "uid or gid out of range"),
            ("a@b /var/m/ us$er", "bad user or group name"),
            ("a@b /var/m/ u\nA@B /var/n/ v", "address given twice"),
        ];
        for (text, what) in bad {
            let line = text.lines().count();
            assert_eq!(Map::parse(text), Err(Error { line, what }), "{text}");
        }
        assert!(Map::parse("# only a comment\n\n").unwrap().is_empty());
    }

    #[test]
    fn extension_rule() {
        let m = Map::parse(MAP).unwrap();
        let key = |a: &str, d: &str| m.lookup(a.as_bytes(), d).map(|(k, _)| k.to_string());
        // The address itself first, whatever the delimiters.
        assert_eq!(key("bob-lists@example.com", "-"), Some("bob-lists@example.com".into()));
        assert_eq!(key("bob-lists@example.com", ""), Some("bob-lists@example.com".into()));
        // Longest base first (qmail-getpw): bob-lists-x -> bob-lists, not bob.
        assert_eq!(key("bob-lists-x@example.com", "-"), Some("bob-lists@example.com".into()));
        assert_eq!(key("bob-other@example.com", "-"), Some("bob@example.com".into()));
        assert_eq!(key("bob+tag@example.com", "+"), Some("bob@example.com".into()));
        assert_eq!(key("bob+a-b@example.com", "+-"), Some("bob@example.com".into()));
        // Only the delimiters given count.
        assert_eq!(key("bob-other@example.com", "+"), None);
        assert_eq!(key("bob+tag@example.com", ""), None);
        // A local part that starts with a delimiter has no base.
        assert_eq!(key("+bob@example.com", "+"), None);
        // The domain's catch-all last; case never matters.
        assert_eq!(key("x@EXAMPLE.org", "+"), Some("x@example.org".into()));
        assert_eq!(key("x+y@example.org", "+"), Some("x@example.org".into()));
        assert_eq!(key("z+y@example.org", "+"), Some("@example.org".into()));
        assert_eq!(key("nobody@example.net", "+"), None);
        assert_eq!(key("no-at-sign", "+"), None);
        assert_eq!(key("a@", "+"), None);
        // The domain is after the last @ (a quoted local part may hold one).
        assert_eq!(key("\"a@b\"@example.org", "+"), Some("@example.org".into()));
    }
}
