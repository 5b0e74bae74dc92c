//! smtpd-checkpassword: read `user\0secret\0challenge\0` from fd 3, check it
//! against the password file, and on success exec `prog...` with USER set
//! (djb's checkpassword interface). Exit 1: rejected; 2: misuse; 111:
//! temporary failure (the file is missing, unreadable, open to others or
//! malformed). One line on stderr per failure, never with the secret.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use super::file::{PasswdFile, MAX_FILE};
use super::verify::{self, Reason, RequestError, Verdict, MAX_INPUT};
use crate::die;

pub const PROG: &str = "smtpd-checkpassword";
pub const USAGE: &str = "smtpd-checkpassword [ -f file ] prog...";

/// djb's exit codes.
pub const EXIT_REJECTED: i32 = 1;
pub const EXIT_MISUSE: i32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub file: PathBuf,
    pub prog: Vec<OsString>,
}

/// argv (without argv[0]) and CHECKPASSWORD_FILE's value. `prog...` keeps
/// its own options (parsing stops at the first free argument).
pub fn parse_args(args: &[OsString], env_file: Option<OsString>) -> Result<Config, String> {
    let mut opts = getopts::Options::new();
    opts.parsing_style(getopts::ParsingStyle::StopAtFirstFree);
    opts.optopt("f", "", "password file", "file");
    let lossy: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let m = opts.parse(&lossy).map_err(|e| format!("{e}; usage: {USAGE}"))?;
    let prog: Vec<OsString> = args.get(args.len() - m.free.len()..).unwrap_or_default().to_vec();
    if prog.is_empty() {
        return Err(format!("no program given; usage: {USAGE}"));
    }
    // Options (not prog...) must be UTF-8: getopts saw a lossy copy.
    options_utf8(args, m.free.len())?;
    let file = match m.opt_str("f") {
        Some(f) => OsString::from(f),
        None => env_file.filter(|f| !f.is_empty()).unwrap_or_else(|| OsString::from(super::DEFAULT_FILE)),
    };
    if file.is_empty() {
        return Err(format!("empty file name; usage: {USAGE}"));
    }
    Ok(Config { file: PathBuf::from(file), prog })
}

/// Err unless the arguments before the `free` last ones are UTF-8.
pub(crate) fn options_utf8(args: &[OsString], free: usize) -> Result<(), String> {
    let opts = args.get(..args.len().saturating_sub(free)).unwrap_or_default();
    match opts.iter().find(|a| a.to_str().is_none()) {
        Some(a) => Err(format!("option not UTF-8: {:?}", a.to_string_lossy())),
        None => Ok(()),
    }
}

/// The whole program; returns only an exit code (success execs prog).
pub fn main_with(args: Vec<OsString>) -> i32 {
    let cfg = parse_args(&args, std::env::var_os(super::FILE_VAR)).unwrap_or_else(|e| die::fatal(PROG, EXIT_MISUSE, e));
    let mut input = read_fd3();
    let method = std::env::var_os("SMTPAUTHMETHOD");
    let mech = verify::mech_from_env(method.as_ref().map(|m| m.as_bytes()));
    let how = method.as_ref().map_or_else(|| "password".into(), |m| m.to_string_lossy().to_ascii_lowercase());
    let req = match verify::parse_request(&input, mech) {
        Ok(r) => r,
        Err(RequestError::TooLong) => {
            die::info(PROG, format_args!("rejected ({how}): more than {MAX_INPUT} bytes on fd 3"));
            return EXIT_REJECTED;
        }
        Err(RequestError::Malformed) => die::fatal(PROG, EXIT_MISUSE, "fd 3 does not hold user\\0secret\\0"),
    };
    let file = read_file(&cfg.file);
    let verdict = verify::decide(&file, &req);
    let user = req.user.to_vec();
    input.fill(0);
    match verdict {
        Verdict::Accept => {}
        Verdict::Reject(r) => {
            let why = if r == Reason::UnknownUser && !super::file::valid_user(&user) { "bad user name" } else { r.text() };
            die::info(PROG, format_args!("rejected user <{}> ({how}): {why}", printable(&user)));
            return EXIT_REJECTED;
        }
        Verdict::Unusable(line, e) => die::fatal(PROG, die::EXIT_TEMP, format_args!("{} line {line}: {e}", cfg.file.display())),
    }
    let (prog, args) = match cfg.prog.split_first() {
        Some(p) => p,
        None => die::fatal(PROG, EXIT_MISUSE, "no program given"),
    };
    let err = std::process::Command::new(prog).args(args).env("USER", OsStr::from_bytes(&user)).exec();
    die::fatal(PROG, die::EXIT_TEMP, format_args!("unable to run {}: {err}", Path::new(prog).display()))
}

/// fd 3, at most MAX_INPUT + 1 bytes (one more than allowed, to see an
/// oversize input), then closed.
fn read_fd3() -> Vec<u8> {
    let fd3 = crate::sys::take_fd(3).unwrap_or_else(|e| die::fatal(PROG, EXIT_MISUSE, format_args!("unable to read fd 3: {e}")));
    let mut input = Vec::with_capacity(MAX_INPUT + 1);
    if let Err(e) = fd3.take(MAX_INPUT as u64 + 1).read_to_end(&mut input) {
        die::fatal(PROG, die::EXIT_TEMP, format_args!("unable to read fd 3: {e}"));
    }
    input
}

/// Open, check and parse the password file; any fault is a temporary
/// failure naming the path (the operator must fix it; clients retry).
fn read_file(path: &Path) -> PasswdFile {
    // O_NONBLOCK: a FIFO put there must not hang the check in open().
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .unwrap_or_else(|e| temp(path, format_args!("unable to open: {e}")));
    let meta = f.metadata().unwrap_or_else(|e| temp(path, format_args!("unable to stat: {e}")));
    if !meta.is_file() {
        temp(path, "not a regular file");
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        temp(path, format_args!("open to others (mode {mode:04o}): refusing it; chmod o-rwx it (see smtpd-passwd(8))"));
    }
    if meta.len() > MAX_FILE as u64 {
        temp(path, format_args!("larger than {MAX_FILE} bytes"));
    }
    let mut text = Vec::new();
    if let Err(e) = f.take(MAX_FILE as u64 + 1).read_to_end(&mut text) {
        temp(path, format_args!("unable to read: {e}"));
    }
    PasswdFile::parse(&text).unwrap_or_else(|e| temp(path, e))
}

/// `smtpd-checkpassword: fatal: PATH: msg`, exit 111.
fn temp(path: &Path, msg: impl std::fmt::Display) -> ! {
    die::fatal(PROG, die::EXIT_TEMP, format_args!("{}: {msg}", path.display()))
}

/// A user name for the log: printable ASCII as is, other bytes as \xNN,
/// at most 64 of them.
pub fn printable(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b.iter().take(64) {
        if c.is_ascii_graphic() && c != b'\\' {
            s.push(c as char);
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    if b.len() > 64 {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::os;
    use super::*;

    #[test]
    fn arguments() {
        let c = parse_args(&os(&["true"]), None).unwrap();
        assert_eq!(c, Config { file: PathBuf::from("/etc/smtpd-rs/passwd"), prog: os(&["true"]) });
        let c = parse_args(&os(&["true"]), Some("/srv/pw".into())).unwrap();
        assert_eq!(c.file, PathBuf::from("/srv/pw"));
        let c = parse_args(&os(&["-f", "/x/pw", "env", "-i", "-f", "y"]), Some("/srv/pw".into())).unwrap();
        assert_eq!(c, Config { file: PathBuf::from("/x/pw"), prog: os(&["env", "-i", "-f", "y"]) });
        let c = parse_args(&os(&["-f/x/pw", "--", "true"]), None).unwrap();
        assert_eq!(c, Config { file: PathBuf::from("/x/pw"), prog: os(&["true"]) });
        // An empty CHECKPASSWORD_FILE is as if unset.
        assert_eq!(parse_args(&os(&["true"]), Some("".into())).unwrap().file, PathBuf::from(super::super::DEFAULT_FILE));
        for bad in [&[][..], &["-f", "x"][..], &["-x", "true"][..], &["-f", "", "true"][..]] {
            assert!(parse_args(&os(bad), None).is_err(), "{bad:?}");
        }
        // Options must be UTF-8; prog... need not be.
        use std::os::unix::ffi::OsStringExt;
        let args = vec![OsString::from("-f"), OsString::from_vec(b"/p\xff".to_vec()), OsString::from("true")];
        assert!(parse_args(&args, None).is_err());
        let args = vec![OsString::from("-f"), OsString::from("/p"), OsString::from_vec(b"/bin/\xff".to_vec())];
        assert_eq!(parse_args(&args, None).unwrap().prog[0].as_bytes(), b"/bin/\xff");
    }

    #[test]
    fn log_names() {
        assert_eq!(printable(b"alice@example.com"), "alice@example.com");
        assert_eq!(printable(b"a b\n\\\xff"), "a\\x20b\\x0a\\x5c\\xff");
        assert_eq!(printable(&[b'x'; 70]), format!("{}...", "x".repeat(64)));
    }
}
