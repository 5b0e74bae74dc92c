//! This host as a program of the chain sees it at start-up: the kernel's
//! host name, and where the next program (queue-inject for smtpd-rs and
//! auth-check) is: on PATH, else beside our own binary, else the bare name
//! (the spawn then fails and the caller gives its temporary error). Reads
//! small files and metadata only; runs nothing.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// `name` from `path` (the value of PATH), else beside our own binary, else
/// the bare name. `exe` (our own path: a readlink of /proc/self/exe) is asked
/// for only when PATH does not have it, since per-session programs run this
/// for every connection.
pub fn find_program(name: &str, path: Option<&OsStr>, exe: &dyn Fn() -> Option<PathBuf>) -> PathBuf {
    if let Some(path) = path {
        for dir in std::env::split_paths(path) {
            let p = dir.join(name);
            if is_executable(&p) {
                return p;
            }
        }
    }
    if let Some(p) = exe().as_deref().and_then(Path::parent).map(|d| d.join(name)) {
        if is_executable(&p) {
            return p;
        }
    }
    PathBuf::from(name)
}

/// The kernel's host name, or `localhost` if it is empty or not printable
/// ASCII.
pub fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "localhost".to_owned())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
