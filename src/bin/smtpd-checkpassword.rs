//! smtpd-checkpassword: a checkpassword program (fd 3, exit 0/1/2/111, exec
//! of prog...) over a password file of its own; see smtpd-checkpassword(8).
fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(smtpd::checkpw::check::main_with(args))
}
