//! The only module with `unsafe`: thin wrappers over calls that std and nix
//! do not cover. Every block carries a `// SAFETY:` comment.
#![allow(unsafe_code)]

// ---- inotify (queue-run): nix 0.32's inotify module is not among the
// enabled features, and two raw calls are all queue-run needs.

/// Event bit: a name was created in the watched folder (link(2) included).
pub const IN_CREATE: u32 = libc::IN_CREATE;
/// Event bit: a name was moved into the watched folder.
pub const IN_MOVED_TO: u32 = libc::IN_MOVED_TO;
/// Event bit: the kernel's event queue overflowed; events were lost.
pub const IN_Q_OVERFLOW: u32 = libc::IN_Q_OVERFLOW;

/// An inotify fd (close-on-exec) watching `dir` for names created or moved in.
pub fn inotify_watch_dir(dir: &std::path::Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: inotify_init1 takes only flags and returns a new fd or -1.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by inotify_init1 and nothing else owns it.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: c is a valid NUL-terminated path that outlives the call; fd is open.
    let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_CREATE | libc::IN_MOVED_TO) };
    if wd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(owned)
}

/// Split what one read(2) of an inotify fd returned into (mask, name) pairs
/// (struct inotify_event: wd, mask, cookie, len, then len bytes of
/// NUL-padded name). Safe, bounded: a malformed tail is ignored.
pub fn inotify_events(buf: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let mut v = Vec::new();
    let mut i = 0;
    let word = |at: usize| -> Option<u32> { Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?)) };
    while let (Some(mask), Some(len)) = (word(i + 4), word(i + 12)) {
        let start = i + 16;
        let Some(name) = buf.get(start..start + len as usize) else { break };
        let name = name.split(|&b| b == 0).next().unwrap_or_default().to_vec();
        v.push((mask, name));
        i = start + len as usize;
    }
    v
}
