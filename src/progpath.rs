//! Where to find the next program of the chain (queue-inject for smtpd-rs
//! and auth-check): on PATH, else beside our own binary, else the bare name
//! (the spawn then fails and the caller gives its temporary error). Reads
//! file metadata only; runs nothing.

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

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
