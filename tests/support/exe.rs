//! Executable scripts for the tests, written so that they can be run at
//! once. A file this process has open for writing is inherited by every
//! child another test thread forks at that moment, until that child's exec;
//! running the file meanwhile fails with ETXTBSY ("Text file busy"). So the
//! text goes to a side file, and install(1), a process of its own, writes
//! the executable: no descriptor open for writing on it ever exists here.
#![allow(dead_code)] // each test uses what it needs

use std::path::Path;
use std::process::Command;

/// Write `text` as the executable file `path` (mode 0755).
pub fn write(path: &Path, text: &str) {
    let side = std::path::PathBuf::from(format!("{}.text", path.display()));
    std::fs::write(&side, text).unwrap_or_else(|e| panic!("{}: {e}", side.display()));
    let st = Command::new("install").arg("-m").arg("755").arg(&side).arg(path).status().expect("install(1)");
    assert!(st.success(), "install -m 755 {} {}: {st}", side.display(), path.display());
    let _ = std::fs::remove_file(&side);
}

/// Copy the program `from` to `to` (mode 0755), the same way.
pub fn copy(from: &Path, to: &Path) {
    let st = Command::new("install").arg("-m").arg("755").arg(from).arg(to).status().expect("install(1)");
    assert!(st.success(), "install -m 755 {} {}: {st}", from.display(), to.display());
}
