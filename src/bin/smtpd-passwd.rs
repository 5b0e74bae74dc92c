//! smtpd-passwd: add, change, import or delete a user of smtpd-checkpassword's
//! password file; see smtpd-passwd(8).
fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(smtpd::checkpw::edit::main_with(args))
}
