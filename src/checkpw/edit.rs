//! smtpd-passwd: add, change, import or delete one user of the password
//! file. The password comes on stdin (from a terminal: asked twice without
//! echo); the file is rewritten whole through a temporary file in its own
//! folder (fsync, rename, fsync the folder), keeping its other lines, its
//! mode and its owner, under an flock of the folder against a concurrent
//! smtpd-passwd. Exit 0 done, 100 usage or refused, 111 temporary.

use std::ffi::OsString;
use std::fs::{File, Permissions};
use std::io::{BufRead, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::cram::CramSecret;
use super::file::{valid_user, Entry, PasswdFile, MAX_FILE};
use super::hash::{self, Hash};
use super::verify::MAX_INPUT;
use crate::die;

pub const PROG: &str = "smtpd-passwd";
pub const USAGE: &str = "smtpd-passwd [ -f file ] [ -c ] [ -m argon2id|sha512 ] [ --cram ] user | [ -f file ] [ -c ] -H user | [ -f file ] -d user";

/// Mode of a file that -c creates: the session uid reads it only once
/// the operator has given it to that uid's group (smtpd-passwd(8)).
pub const NEW_MODE: u32 = 0o600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Argon2id,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A password from stdin, hashed with `method`; `cram`: also keep the
    /// CRAM-MD5 secret (--cram).
    Set { method: Method, cram: bool },
    /// -H: a hash from stdin as it is (e.g. from /etc/shadow).
    Import,
    /// -d.
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub file: PathBuf,
    pub create: bool,
    pub action: Action,
    pub user: Vec<u8>,
}

/// What went wrong, and so the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// 100: usage, a refused name or password, a malformed file.
    Perm(String),
    /// 111: I/O.
    Temp(String),
}

impl EditError {
    pub fn exit_code(&self) -> i32 {
        match self {
            EditError::Perm(_) => die::EXIT_PERM,
            EditError::Temp(_) => die::EXIT_TEMP,
        }
    }
}

impl std::fmt::Display for EditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EditError::Perm(m) | EditError::Temp(m) => f.write_str(m),
        }
    }
}

fn usage(m: impl std::fmt::Display) -> EditError {
    EditError::Perm(format!("{m}; usage: {USAGE}"))
}

/// argv (without argv[0]) and CHECKPASSWORD_FILE's value.
pub fn parse_args(args: &[OsString], env_file: Option<OsString>) -> Result<Config, EditError> {
    let mut opts = getopts::Options::new();
    // Options first, the user name last (so that it is the last argument).
    opts.parsing_style(getopts::ParsingStyle::StopAtFirstFree);
    opts.optopt("f", "", "password file", "file");
    opts.optflag("c", "", "create the file if missing");
    opts.optopt("m", "", "hash method", "argon2id|sha512");
    opts.optflag("", "cram", "also keep the CRAM-MD5 secret");
    opts.optflag("d", "", "delete the user");
    opts.optflag("H", "", "import a hash from stdin");
    let lossy: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let m = opts.parse(&lossy).map_err(usage)?;
    let [_] = m.free[..] else { return Err(usage("give one user name, after the options")) };
    super::check::options_utf8(args, 1).map_err(usage)?;
    // The user name from the original argument (the last one), as bytes.
    let user = args.last().map(|a| a.as_bytes().to_vec()).unwrap_or_default();
    if !valid_user(&user) {
        return Err(EditError::Perm(format!(
            "bad user name {:?}: 1 to {} bytes, no colon, space or control character, not starting with #",
            String::from_utf8_lossy(&user),
            super::file::MAX_USER
        )));
    }
    let method = match m.opt_str("m").as_deref() {
        None | Some("argon2id") => Method::Argon2id,
        Some("sha512") => Method::Sha512,
        Some(o) => return Err(usage(format!("unknown method {o:?} (argon2id or sha512)"))),
    };
    let (del, import, cram) = (m.opt_present("d"), m.opt_present("H"), m.opt_present("cram"));
    let action = match (del, import) {
        (true, true) => return Err(usage("-d and -H together")),
        (true, false) if m.opt_present("c") || m.opt_present("m") || cram => {
            return Err(usage("-d takes no -c, -m or --cram"))
        }
        (true, false) => Action::Delete,
        (false, true) if m.opt_present("m") || cram => {
            return Err(usage("-H takes no -m or --cram (a hash has no password to make a CRAM-MD5 secret of)"))
        }
        (false, true) => Action::Import,
        (false, false) => Action::Set { method, cram },
    };
    let file = match m.opt_str("f") {
        Some(f) => OsString::from(f),
        None => env_file.filter(|f| !f.is_empty()).unwrap_or_else(|| OsString::from(super::DEFAULT_FILE)),
    };
    if file.is_empty() {
        return Err(usage("empty file name"));
    }
    Ok(Config { file: PathBuf::from(file), create: m.opt_present("c"), action, user })
}

/// The whole program: an exit code.
pub fn main_with(args: Vec<OsString>) -> i32 {
    let result = parse_args(&args, std::env::var_os(super::FILE_VAR)).and_then(|cfg| run(&cfg));
    match result {
        Ok(msg) => {
            die::info(PROG, msg);
            die::EXIT_OK
        }
        Err(e) => die::fatal(PROG, e.exit_code(), e),
    }
}

fn run(cfg: &Config) -> Result<String, EditError> {
    // Ask for the password before taking the lock, so that a slow typist
    // does not hold up another smtpd-passwd.
    let new_entry = match cfg.action {
        Action::Delete => None,
        Action::Import => Some(import_entry(&cfg.user, &read_line("Hash")?)?),
        Action::Set { method, cram } => Some(make_entry(&cfg.user, &read_password(&cfg.user)?, method, cram)?),
    };
    let path = cfg.file.as_path();
    let temp = |what: &str, e: std::io::Error| EditError::Temp(format!("{}: {what}: {e}", path.display()));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir_fd = File::open(dir).map_err(|e| EditError::Temp(format!("unable to open folder {}: {e}", dir.display())))?;
    let _lock = nix::fcntl::Flock::lock(dir_fd, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| EditError::Temp(format!("unable to lock folder {}: {e}", dir.display())))?;

    let (mut file, old) = match File::open(path) {
        Ok(f) => {
            let meta = f.metadata().map_err(|e| temp("unable to stat", e))?;
            if !meta.is_file() {
                return Err(EditError::Perm(format!("{}: not a regular file", path.display())));
            }
            let mut text = Vec::new();
            f.take(MAX_FILE as u64 + 1).read_to_end(&mut text).map_err(|e| temp("unable to read", e))?;
            let parsed = PasswdFile::parse(&text)
                .map_err(|e| EditError::Perm(format!("{}: {e} (fix it by hand first)", path.display())))?;
            (parsed, Some(meta))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && cfg.create => (PasswdFile::default(), None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(EditError::Perm(format!("{}: no such file (-c creates it)", path.display())))
        }
        Err(e) => return Err(temp("unable to open", e)),
    };

    let name = super::check::printable(&cfg.user);
    let msg = match new_entry {
        None if file.remove(&cfg.user) => format!("deleted {name} from {}", path.display()),
        None => return Err(EditError::Perm(format!("{}: no user {name}", path.display()))),
        Some(e) => match file.set(e) {
            true => format!("changed {name} in {}", path.display()),
            false => format!("added {name} to {}", path.display()),
        },
    };
    let mode = old.as_ref().map_or(NEW_MODE, |m| m.permissions().mode() & 0o7777);
    write_atomically(path, dir, &file.encode(), mode, old.as_ref().map(|m| (m.uid(), m.gid())))?;
    if mode & 0o007 != 0 {
        die::warn(
            PROG,
            format_args!("{} is open to others (mode {mode:04o}): smtpd-checkpassword refuses it; chmod o-rwx it", path.display()),
        );
    }
    Ok(msg)
}

fn make_entry(user: &[u8], password: &[u8], method: Method, cram: bool) -> Result<Entry, EditError> {
    let rng = ring::rand::SystemRandom::new();
    let fill = |buf: &mut [u8]| {
        ring::rand::SecureRandom::fill(&rng, buf).map_err(|_| EditError::Temp("unable to get random bytes for a salt".into()))
    };
    let text = match method {
        Method::Argon2id => {
            let mut salt = [0u8; hash::ARGON2_SALT_LEN];
            fill(&mut salt)?;
            hash::make_argon2id(password, &salt)
        }
        Method::Sha512 => {
            let mut salt = [0u8; hash::SHA512_SALT_LEN];
            fill(&mut salt)?;
            hash::make_sha512(password, &salt)
        }
    }
    .map_err(|e| EditError::Temp(e.to_string()))?;
    let hash = hash::parse_hash(&text).map_err(|e| EditError::Temp(format!("made an unusable hash: {e}")))?;
    let cram = cram.then(|| CramSecret::from_password(password));
    Ok(Entry { user: user.to_vec(), hash, cram })
}

fn import_entry(user: &[u8], line: &[u8]) -> Result<Entry, EditError> {
    let text = std::str::from_utf8(line).map_err(|_| EditError::Perm("the hash is not ASCII".into()))?.trim();
    let hash: Hash = hash::parse_hash(text).map_err(|e| EditError::Perm(format!("refusing the hash: {e}")))?;
    Ok(Entry { user: user.to_vec(), hash, cram: None })
}

/// A password for `user`: from a terminal, asked twice without echo; else
/// one line of stdin. Refused when empty, when it holds a NUL (fd 3 could
/// not carry it) or when user and password exceed what checkpassword reads.
pub fn read_password(user: &[u8]) -> Result<Vec<u8>, EditError> {
    use std::io::IsTerminal;
    let pw = if std::io::stdin().is_terminal() {
        let a = read_no_echo("Password: ")?;
        let b = read_no_echo("Again: ")?;
        if a != b {
            return Err(EditError::Perm("the two passwords differ".into()));
        }
        a
    } else {
        read_line("Password")?
    };
    check_password(user, &pw)?;
    Ok(pw)
}

/// What check_password enforces, pure for the tests.
pub fn check_password(user: &[u8], pw: &[u8]) -> Result<(), EditError> {
    if pw.is_empty() {
        return Err(EditError::Perm("empty password".into()));
    }
    if pw.contains(&0) {
        return Err(EditError::Perm("the password holds a NUL byte".into()));
    }
    // fd 3 carries user\0password\0\0 in at most 512 bytes.
    if user.len() + pw.len() + 3 > MAX_INPUT {
        let most = MAX_INPUT - 3 - user.len();
        return Err(EditError::Perm(format!("password too long: at most {most} bytes with this user name")));
    }
    Ok(())
}

/// One line of stdin (not a terminal), without its LF or CRLF, bounded.
fn read_line(what: &str) -> Result<Vec<u8>, EditError> {
    let mut line = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_INPUT as u64 + 2)
        .read_until(b'\n', &mut line)
        .map_err(|e| EditError::Temp(format!("unable to read stdin: {e}")))?;
    if line.is_empty() {
        return Err(EditError::Perm(format!("{what}: nothing on stdin")));
    }
    // Without its LF the line may be the last (no LF at the end of input)
    // or cut at the bound.
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > MAX_INPUT {
        return Err(EditError::Perm(format!("{what}: line longer than {MAX_INPUT} bytes")));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

/// Prompt on stderr, read a line from the terminal on stdin with echo off,
/// then put the terminal back as it was.
fn read_no_echo(prompt: &str) -> Result<Vec<u8>, EditError> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let term = |e: nix::Error| EditError::Temp(format!("unable to set up the terminal: {e}"));
    let saved = tcgetattr(&stdin).map_err(term)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    let _ = std::io::stderr().write_all(prompt.as_bytes());
    tcsetattr(&stdin, SetArg::TCSAFLUSH, &quiet).map_err(term)?;
    let line = read_line("Password");
    tcsetattr(&stdin, SetArg::TCSAFLUSH, &saved).map_err(term)?;
    line
}

/// Write `text` to `path` as a whole or not at all: a temporary file in
/// `dir` with `mode` (and the old file's owner, when that differs from
/// ours), fsync, rename over `path`, fsync `dir`.
fn write_atomically(path: &Path, dir: &Path, text: &[u8], mode: u32, owner: Option<(u32, u32)>) -> Result<(), EditError> {
    let io = |what: &str, e: std::io::Error| EditError::Temp(format!("{}: {what}: {e}", path.display()));
    let mut tmp = tempfile::Builder::new()
        .prefix(".smtpd-passwd.")
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(|e| io("unable to create a temporary file beside it", e))?;
    if let Some((uid, gid)) = owner {
        let meta = tmp.as_file().metadata().map_err(|e| io("unable to stat the temporary file", e))?;
        if (meta.uid(), meta.gid()) != (uid, gid) {
            nix::unistd::fchown(tmp.as_file(), Some(uid.into()), Some(gid.into())).map_err(|e| {
                EditError::Temp(format!("{}: unable to keep its owner {uid}:{gid}: {e}", path.display()))
            })?;
        }
    }
    // After the chown, which clears set-id bits.
    tmp.as_file().set_permissions(Permissions::from_mode(mode)).map_err(|e| io("unable to set the mode", e))?;
    tmp.write_all(text).map_err(|e| io("unable to write", e))?;
    tmp.as_file().sync_all().map_err(|e| io("unable to sync", e))?;
    tmp.persist(path).map_err(|e| io("unable to rename the temporary file over it", e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("unable to sync its folder", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::os;
    use super::*;

    #[test]
    fn arguments() {
        let c = parse_args(&os(&["alice"]), None).unwrap();
        assert_eq!(c.file, PathBuf::from(super::super::DEFAULT_FILE));
        assert_eq!((c.create, c.action, c.user.as_slice()), (false, Action::Set { method: Method::Argon2id, cram: false }, &b"alice"[..]));
        let c = parse_args(&os(&["-f", "/x/pw", "-c", "-m", "sha512", "--cram", "tim"]), Some("/y".into())).unwrap();
        assert_eq!((c.file.to_str(), c.create, c.action), (Some("/x/pw"), true, Action::Set { method: Method::Sha512, cram: true }));
        assert_eq!(parse_args(&os(&["-d", "tim"]), Some("/y".into())).unwrap().action, Action::Delete);
        assert_eq!(parse_args(&os(&["-d", "tim"]), Some("/y".into())).unwrap().file.to_str(), Some("/y"));
        assert_eq!(parse_args(&os(&["-c", "-H", "tim"]), None).unwrap().action, Action::Import);
        for bad in [
            &[][..],
            &["a", "b"][..],
            &["a", "-d"][..],
            &["-m", "md5", "a"][..],
            &["-d", "-H", "a"][..],
            &["-d", "--cram", "a"][..],
            &["-d", "-c", "a"][..],
            &["-H", "--cram", "a"][..],
            &["-H", "-m", "sha512", "a"][..],
            &["a:b"][..],
            &["#a"][..],
            &["a b"][..],
            &["-f", "", "a"][..],
        ] {
            assert!(matches!(parse_args(&os(bad), None), Err(EditError::Perm(_))), "{bad:?}");
        }
    }

    #[test]
    fn passwords_refused() {
        assert!(check_password(b"alice", b"s3cret").is_ok());
        assert!(check_password(b"alice", b"").is_err());
        assert!(check_password(b"alice", b"a\0b").is_err());
        // 5 + 504 + 3 = 512: fits; one more does not.
        assert!(check_password(b"alice", &[b'x'; 504]).is_ok());
        let e = check_password(b"alice", &[b'x'; 505]).unwrap_err();
        assert_eq!(e.to_string(), "password too long: at most 504 bytes with this user name");
    }

    #[test]
    fn entries() {
        let e = make_entry(b"tim", b"tanstaaftanstaaf", Method::Argon2id, true).unwrap();
        assert!(e.hash.verify(b"tanstaaftanstaaf").unwrap());
        assert_eq!(e.cram, Some(CramSecret::from_password(b"tanstaaftanstaaf")));
        let e = make_entry(b"tim", b"tanstaaftanstaaf", Method::Sha512, false).unwrap();
        assert!(e.hash.as_str().starts_with("$6$") && e.hash.verify(b"tanstaaftanstaaf").unwrap());
        assert_eq!(e.cram, None);
        let y = b"$y$j9T$F5Jx5fExrKuPp53xLKQ..1$1RQFZyzbGU4uV.c4QftxXYK3O3ixZ5JX//n4ep20am1 ";
        assert!(import_entry(b"tim", y).unwrap().hash.verify(b"tanstaaftanstaaf").unwrap());
        assert!(matches!(import_entry(b"tim", b"!"), Ok(Entry { hash: Hash::Locked(_), .. })));
        assert!(import_entry(b"tim", b"tanstaaftanstaaf").is_err());
        assert!(import_entry(b"tim", b"").is_err());
    }
}
