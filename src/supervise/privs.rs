//! Dropping root after the port is bound: supplementary groups, then gid, then
//! uid (setgroups, setresgid, setresuid), then a check that root cannot be had back.

use nix::unistd::{getegid, geteuid, getgid, getuid, setgroups, setresgid, setresuid, setuid, Gid, Uid};

/// Become `uid`:`gid` for good, with no supplementary groups.
pub fn drop_to(uid: Uid, gid: Gid) -> Result<(), String> {
    if !geteuid().is_root() {
        if getuid() == uid && geteuid() == uid && getgid() == gid && getegid() == gid {
            return Ok(());
        }
        return Err(format!("not running as root: unable to become uid {uid} gid {gid}"));
    }
    setgroups(&[]).map_err(|e| format!("unable to drop supplementary groups: {e}"))?;
    setresgid(gid, gid, gid).map_err(|e| format!("unable to set gid {gid}: {e}"))?;
    setresuid(uid, uid, uid).map_err(|e| format!("unable to set uid {uid}: {e}"))?;
    if !uid.is_root() && (setuid(Uid::from_raw(0)).is_ok() || geteuid().is_root()) {
        return Err("root privileges could be regained after dropping them".into());
    }
    if getuid() != uid || geteuid() != uid || getgid() != gid || getegid() != gid {
        return Err("uid or gid did not change as asked".into());
    }
    Ok(())
}
