//! Replace a small text file all at once (a metrics textfile, the
//! scoreboard): write a work file beside it, then rename it over the old
//! one, so that a reader (node_exporter's textfile collector, metrics-http,
//! smtpd-supervise-status) sees the old text or the new, never a part. The
//! work file's name starts with a dot and ends in `.tmp`, so that
//! node_exporter, which reads only `*.prom`, never picks it up. No fsync:
//! these files are rewritten every few seconds and mean nothing after a
//! crash.

use std::io::{self, Write};
use std::path::Path;

/// Write `text` to `path` atomically with mode `mode` (0644: readable by
/// the metrics collector's user).
pub fn write_atomic(path: &Path, text: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(text)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_whole_and_leaves_no_work_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.prom");
        write_atomic(&p, b"a 1\n", 0o644).unwrap();
        write_atomic(&p, b"a 2\n", 0o644).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"a 2\n");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        assert!(write_atomic(&d.path().join("no/such/dir/x"), b"", 0o644).is_err());
    }
}
