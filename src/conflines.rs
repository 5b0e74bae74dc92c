//! Line-oriented control files (smtproutes, the maildir map): the lines that
//! count, each trimmed and numbered from 1 (blank lines and lines starting
//! with `#` are skipped), and the error that names a line. Pure: the caller
//! reads the file.

use std::fmt;

/// What is wrong on which line (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub what: &'static str,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

/// The lines of `text` that are neither blank nor a `#` comment, trimmed,
/// with their line numbers.
pub fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(n, raw)| (n + 1, raw.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_and_numbered() {
        let got: Vec<(usize, &str)> = lines("a\n\n  # c\n\t b c \n#\nd").collect();
        assert_eq!(got, [(1, "a"), (4, "b c"), (6, "d")]);
        assert_eq!(LineError { line: 4, what: "no colon" }.to_string(), "line 4: no colon");
    }
}
