//! tls-wrap: TLS (UCSPI-TLS or implicit) for the program it runs. See tls-wrap(8).
fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(smtpd::tlswrap::run::main_with(args))
}
