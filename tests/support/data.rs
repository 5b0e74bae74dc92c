//! The test data in tests/data/: the one place tests find their files, so
//! that no test reads anything outside the checkout.

use std::path::{Path, PathBuf};

/// tests/data/ of this checkout.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The test messages (tests/data/messages; TESTDATA_MESSAGES points at
/// another folder), sorted by name.
pub fn message_paths() -> Vec<PathBuf> {
    let dir = std::env::var_os("TESTDATA_MESSAGES").map(PathBuf::from).unwrap_or_else(|| dir().join("messages"));
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("test messages in {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no test messages in {}", dir.display());
    v
}

/// The test messages as (file name, contents).
#[allow(dead_code)]
pub fn messages() -> Vec<(String, Vec<u8>)> {
    message_paths()
        .into_iter()
        .map(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, bytes)
        })
        .collect()
}
