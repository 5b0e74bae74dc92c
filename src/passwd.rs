//! Users and groups from /etc/passwd and /etc/group, read directly rather than
//! through NSS. The suite's binaries are linked statically (see
//! .cargo/config.toml), and glibc's getpwnam in a static binary dlopens NSS
//! modules such as libnss_systemd, which crashed here on an unknown name.
//! Parsing is pure; `lookup_*` read the files.

/// One `name:passwd:uid:gid:...` line's name, uid and gid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub id: u32,
    pub gid: u32,
}

/// Find `name` in passwd(5)-format text (group(5) too: its third field is
/// the gid, and `gid` then repeats it). Malformed lines are skipped.
pub fn parse_find(text: &str, pred: impl Fn(&Entry) -> bool, group: bool) -> Option<Entry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?.to_owned();
            let _pw = f.next()?;
            let id = f.next()?.parse().ok()?;
            let gid = if group { id } else { f.next()?.parse().ok()? };
            Some(Entry { name, id, gid })
        })
        .find(|e| pred(e))
}

/// A user by name, from /etc/passwd (or `$PASSWD_FILE` for tests).
pub fn user_by_name(name: &str) -> std::io::Result<Option<Entry>> {
    let text = std::fs::read_to_string(path("PASSWD_FILE", "/etc/passwd"))?;
    Ok(parse_find(&text, |e| e.name == name, false))
}

/// A user by uid, from /etc/passwd.
pub fn user_by_uid(uid: u32) -> std::io::Result<Option<Entry>> {
    let text = std::fs::read_to_string(path("PASSWD_FILE", "/etc/passwd"))?;
    Ok(parse_find(&text, |e| e.id == uid, false))
}

/// A group by name, from /etc/group.
pub fn group_by_name(name: &str) -> std::io::Result<Option<Entry>> {
    let text = std::fs::read_to_string(path("GROUP_FILE", "/etc/group"))?;
    Ok(parse_find(&text, |e| e.name == name, true))
}

fn path(var: &str, default: &str) -> std::path::PathBuf {
    std::env::var_os(var).map_or_else(|| default.into(), Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "root:x:0:0:root:/root:/bin/bash\n#c:x:1:1\nbad line\nnobody:x:65534:65534:nobody:/:/usr/sbin/nologin\n";

    #[test]
    fn table() {
        let e = parse_find(PW, |e| e.name == "nobody", false).unwrap();
        assert_eq!((e.id, e.gid), (65534, 65534));
        assert_eq!(parse_find(PW, |e| e.id == 0, false).unwrap().name, "root");
        assert_eq!(parse_find(PW, |e| e.name == "c", false), None);
        assert_eq!(parse_find(PW, |e| e.name == "bad line", false), None);
        let g = parse_find("mail:x:8:\nnogroup:x:65534:a,b\n", |e| e.name == "nogroup", true).unwrap();
        assert_eq!(g.id, 65534);
    }
}
