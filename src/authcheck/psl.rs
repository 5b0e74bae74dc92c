//! The Public Suffix List (publicsuffix.org): the file's parser and the
//! organizational-domain lookup of RFC 7489 3.2, with the list's algorithm
//! (wildcards, exceptions, the implicit "*" rule; ICANN and private
//! sections). The list is read at run time, so that a site updates it
//! without a rebuild: Debian's `publicsuffix` package keeps
//! /usr/share/publicsuffix/public_suffix_list.dat current through ordinary
//! updates; `PUBLIC_SUFFIX_LIST` names another file. Names are compared in
//! A-label form (IDNA), lower case. `load` reads the file; the rest is pure.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where Debian's `publicsuffix` package puts the list.
pub const DEFAULT_PATH: &str = "/usr/share/publicsuffix/public_suffix_list.dat";
/// The variable naming another list file.
pub const ENV_VAR: &str = "PUBLIC_SUFFIX_LIST";
/// Bounds: the list is about 250 KB and 10,000 rules today.
pub const MAX_FILE: u64 = 8 << 20;
pub const MAX_RULES: usize = 200_000;

/// The two parts of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Between ===BEGIN ICANN DOMAINS=== and its END (and rules outside
    /// both markers, as in a hand-made list).
    Icann,
    /// Between ===BEGIN PRIVATE DOMAINS=== and its END: suffixes that
    /// companies offer to their customers (e.g. blogspot.com).
    Private,
}

#[derive(Debug)]
pub enum Error {
    Io(String),
    TooBig,
    /// No rule at all: a truncated or wrong file, not a list to trust.
    Empty,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => f.write_str(e),
            Error::TooBig => write!(f, "public suffix list larger than {MAX_FILE} bytes"),
            Error::Empty => f.write_str("public suffix list has no rules"),
        }
    }
}

/// What DMARC asks of a list (RFC 7489 3.2). Err: the list could not be
/// read (a temporary failure of the check, never a verdict).
pub trait Suffixes {
    fn organizational(&self, domain: &str) -> Result<Option<String>, String>;
}

impl Suffixes for List {
    fn organizational(&self, domain: &str) -> Result<Option<String>, String> {
        Ok(self.organizational_domain(domain))
    }
}

/// A list read at its first use: a process that checks no message with
/// differing domains never pays for reading it (about 3 ms of CPU for the
/// 10,000 rules). `check` at start-up tells a missing file at once.
#[derive(Debug)]
pub struct Lazy {
    path: PathBuf,
    list: std::cell::OnceCell<Result<List, String>>,
}

impl Lazy {
    pub fn new(path: PathBuf) -> Lazy {
        Lazy { path, list: std::cell::OnceCell::new() }
    }

    /// The file named by `PUBLIC_SUFFIX_LIST`, else DEFAULT_PATH.
    pub fn from_env() -> Lazy {
        let path = std::env::var_os(ENV_VAR).filter(|p| !p.is_empty()).map_or_else(|| PathBuf::from(DEFAULT_PATH), PathBuf::from);
        Lazy::new(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Is the file there and readable (without reading it)?
    pub fn check(&self) -> Result<(), Error> {
        std::fs::File::open(&self.path).map(drop).map_err(|e| Error::Io(format!("unable to open {}: {e}", self.path.display())))
    }

    /// The list, read now if it was not yet.
    pub fn get(&self) -> Result<&List, String> {
        self.list
            .get_or_init(|| List::load(&self.path).map_err(|e| format!("public suffix list {}: {e}", self.path.display())))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl Suffixes for Lazy {
    fn organizational(&self, domain: &str) -> Result<Option<String>, String> {
        Ok(self.get()?.organizational_domain(domain))
    }
}

/// A parsed list: rules keyed by their labels in A-label form.
#[derive(Debug, Clone, Default)]
pub struct List {
    ascii: Rules,
    /// The rules written with non-ASCII labels (about 500 of 10,000), kept
    /// as written until a name with an `xn--` label asks for them: IDNA
    /// conversion is most of the cost of reading the list, and only such a
    /// name can match one of them.
    idn_text: Vec<(String, Section)>,
    idn: std::cell::OnceCell<Rules>,
    /// Ignore the private section's rules (the default uses both, as the
    /// list's own algorithm and most DMARC implementations do).
    icann_only: bool,
}

#[derive(Debug, Clone, Default)]
struct Rules {
    normal: HashMap<String, Section>,
    /// "*.ck" is stored as "ck".
    wildcard: HashMap<String, Section>,
    /// "!www.ck" is stored as "www.ck".
    exception: HashMap<String, Section>,
}

impl Rules {
    /// One rule as written (`name`, `*.name`, `!name`); false when it is
    /// no valid name.
    fn add(&mut self, rule: &str, section: Section) -> bool {
        let (map, name) = if let Some(r) = rule.strip_prefix('!') {
            (&mut self.exception, r)
        } else if let Some(r) = rule.strip_prefix("*.") {
            (&mut self.wildcard, r)
        } else {
            (&mut self.normal, rule)
        };
        match to_alabel(name) {
            Some(a) => {
                map.insert(a, section);
                true
            }
            None => false,
        }
    }
}

impl List {
    /// The file named by `PUBLIC_SUFFIX_LIST`, else DEFAULT_PATH; the path
    /// read comes back for error messages.
    pub fn from_env() -> (String, Result<List, Error>) {
        let path = std::env::var(ENV_VAR).ok().filter(|p| !p.is_empty()).unwrap_or_else(|| DEFAULT_PATH.into());
        let r = List::load(Path::new(&path));
        (path, r)
    }

    /// Reads and parses a list file, at most MAX_FILE bytes.
    pub fn load(path: &Path) -> Result<List, Error> {
        let f = std::fs::File::open(path).map_err(|e| Error::Io(format!("unable to open {}: {e}", path.display())))?;
        let mut buf = Vec::new();
        f.take(MAX_FILE + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::Io(format!("unable to read {}: {e}", path.display())))?;
        if buf.len() as u64 > MAX_FILE {
            return Err(Error::TooBig);
        }
        let list = List::parse(&String::from_utf8_lossy(&buf));
        if list.is_empty() {
            return Err(Error::Empty);
        }
        Ok(list)
    }

    /// Parses the list's text: one rule per line (its first word), `//`
    /// comments, the section markers. Rules that are no valid name are
    /// skipped; at most MAX_RULES are kept.
    pub fn parse(text: &str) -> List {
        let mut l = List::default();
        // About one rule per 24 octets of the real list: no rehashing.
        l.ascii.normal.reserve((text.len() / 24).min(MAX_RULES));
        let mut section = Section::Icann;
        let mut n = 0;
        for line in text.lines() {
            let line = line.trim();
            if let Some(c) = line.strip_prefix("//") {
                if c.contains("===BEGIN PRIVATE DOMAINS===") {
                    section = Section::Private;
                } else if c.contains("===END PRIVATE DOMAINS===") || c.contains("===BEGIN ICANN DOMAINS===") {
                    section = Section::Icann;
                }
                continue;
            }
            let Some(rule) = line.split_whitespace().next() else { continue };
            if n >= MAX_RULES {
                break;
            }
            if rule.is_ascii() {
                if l.ascii.add(rule, section) {
                    n += 1;
                }
            } else {
                l.idn_text.push((rule.to_string(), section));
                n += 1;
            }
        }
        l
    }

    /// The rules with non-ASCII labels, converted at first use.
    fn idn(&self) -> &Rules {
        self.idn.get_or_init(|| {
            let mut r = Rules::default();
            for (rule, section) in &self.idn_text {
                r.add(rule, *section);
            }
            r
        })
    }

    /// Rules of the private section are ignored from now on.
    pub fn icann_only(mut self, yes: bool) -> List {
        self.icann_only = yes;
        self
    }

    /// Rules held (those with non-ASCII labels counted as written).
    pub fn len(&self) -> usize {
        self.ascii.normal.len() + self.ascii.wildcard.len() + self.ascii.exception.len() + self.idn_text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The public suffix of `domain` (A-label form, lower case), by the
    /// list's algorithm; None when `domain` is no valid name.
    pub fn public_suffix(&self, domain: &str) -> Option<String> {
        let d = to_alabel(domain)?;
        let labels: Vec<&str> = d.split('.').collect();
        let n = self.suffix_labels(&labels);
        Some(labels.get(labels.len() - n..)?.join("."))
    }

    /// RFC 7489 3.2: the organizational domain of `domain`: its public
    /// suffix and one label more. A name that is itself a public suffix is
    /// its own organizational domain (there is no label more to take).
    pub fn organizational_domain(&self, domain: &str) -> Option<String> {
        let d = to_alabel(domain)?;
        let labels: Vec<&str> = d.split('.').collect();
        let n = (self.suffix_labels(&labels) + 1).min(labels.len());
        Some(labels.get(labels.len() - n..)?.join("."))
    }

    /// How many labels (from the right) the prevailing rule covers.
    fn suffix_labels(&self, labels: &[&str]) -> usize {
        let total = labels.len();
        let mut best = 1; // the implicit "*" rule
        for i in 0..total {
            let suffix = labels.get(i..).unwrap_or_default().join(".");
            let here = total - i;
            // An exception prevails over everything: the suffix is the
            // exception's name less its leftmost label.
            if self.has(|r| &r.exception, &suffix) {
                return here - 1;
            }
            if self.has(|r| &r.normal, &suffix) {
                best = best.max(here);
            }
            if i > 0 && self.has(|r| &r.wildcard, &suffix) {
                best = best.max(here + 1);
            }
        }
        best
    }

    /// Is `key` a rule of the kind `map` picks, in a section we use? The
    /// non-ASCII rules are asked only for a key with an A-label.
    fn has(&self, map: impl Fn(&Rules) -> &HashMap<String, Section>, key: &str) -> bool {
        let mut found = map(&self.ascii).get(key);
        if found.is_none() && key.split('.').any(|l| l.starts_with("xn--")) {
            found = map(self.idn()).get(key);
        }
        match found {
            Some(Section::Private) => !self.icann_only,
            Some(Section::Icann) => true,
            None => false,
        }
    }
}

/// A name in A-label form, lower case, without a trailing dot; None when it
/// has an empty label or is no valid IDNA name.
pub fn to_alabel(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 1024 {
        return None;
    }
    let a = if name.is_ascii() { name.to_ascii_lowercase() } else { idna::domain_to_ascii(name).ok()? };
    if a.is_empty() || a.split('.').any(str::is_empty) {
        return None;
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "\
// comment
// ===BEGIN ICANN DOMAINS===
com
uk
co.uk
jp
*.kawasaki.jp
!city.kawasaki.jp
*.ck
!www.ck
公司.cn
cn
// ===END ICANN DOMAINS===
// ===BEGIN PRIVATE DOMAINS===
blogspot.com
// ===END PRIVATE DOMAINS===
";

    #[test]
    fn organizational_domains() {
        let l = List::parse(LIST);
        let org = |d: &str| l.organizational_domain(d);
        let table: &[(&str, Option<&str>)] = &[
            ("example.com", Some("example.com")),
            ("mail.Example.COM.", Some("example.com")),
            ("a.b.example.co.uk", Some("example.co.uk")),
            ("example.uk", Some("example.uk")),
            ("co.uk", Some("co.uk")),
            ("com", Some("com")),
            ("foo.bar.kawasaki.jp", Some("foo.bar.kawasaki.jp")),
            ("x.foo.bar.kawasaki.jp", Some("foo.bar.kawasaki.jp")),
            ("a.city.kawasaki.jp", Some("city.kawasaki.jp")),
            ("www.ck", Some("www.ck")),
            ("a.b.ck", Some("a.b.ck")),
            ("shop.公司.cn", Some("shop.xn--55qx5d.cn")),
            ("a.shop.xn--55qx5d.cn", Some("shop.xn--55qx5d.cn")),
            ("x.me.blogspot.com", Some("me.blogspot.com")),
            ("example.unlisted", Some("example.unlisted")),
            ("a..b", None),
            ("", None),
        ];
        for (d, want) in table {
            assert_eq!(org(d).as_deref(), *want, "{d}");
        }
        assert_eq!(l.public_suffix("a.b.example.co.uk").as_deref(), Some("co.uk"));
        let l = l.icann_only(true);
        assert_eq!(l.organizational_domain("x.me.blogspot.com").as_deref(), Some("blogspot.com"));
    }

    #[test]
    fn vendored_list_loads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/psl/public_suffix_list.dat");
        let l = List::load(&p).unwrap();
        assert!(l.len() > 5000, "{}", l.len());
        assert_eq!(l.organizational_domain("mail.example.co.uk").as_deref(), Some("example.co.uk"));
        assert_eq!(l.organizational_domain("www.city.kawasaki.jp").as_deref(), Some("city.kawasaki.jp"));
        assert!(matches!(List::load(&p.with_file_name("missing.dat")), Err(Error::Io(_))));
        // Read at first use; a missing file is told by check() and get().
        let lazy = Lazy::new(p.clone());
        assert!(lazy.check().is_ok());
        assert_eq!(lazy.organizational("a.b.example.co.uk"), Ok(Some("example.co.uk".into())));
        assert_eq!(lazy.get().map(List::len), Ok(l.len()));
        let missing = Lazy::new(p.with_file_name("missing.dat"));
        assert!(missing.check().is_err());
        assert!(missing.organizational("example.com").unwrap_err().contains("missing.dat"));
    }
}
