//! smtpd-checkpassword and smtpd-passwd: a checkpassword program (djb's
//! interface, as smtpd-rs drives it) over a password file of its own, and
//! the command that edits that file. Pure parts (the file format, the
//! hashes, CRAM-MD5, the decision) know no file descriptor; check.rs and
//! edit.rs do the I/O. See smtpd-checkpassword(8) and smtpd-passwd(8).

pub mod check;
pub mod cram;
pub mod edit;
pub mod file;
pub mod hash;
pub mod verify;

/// The password file when neither -f nor CHECKPASSWORD_FILE names one.
pub const DEFAULT_FILE: &str = "/etc/smtpd-rs/passwd";
/// The environment variable naming the password file (-f overrides it).
pub const FILE_VAR: &str = "CHECKPASSWORD_FILE";

/// Argument words as `OsString`s, for the tests of check.rs and edit.rs.
#[cfg(test)]
fn os(v: &[&str]) -> Vec<std::ffi::OsString> {
    v.iter().map(std::ffi::OsString::from).collect()
}
