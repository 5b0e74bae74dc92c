//! sendmail: the local injector for cron jobs and scripts. See man/sendmail.8.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(smtpd::queuerun::sendmail::run(&args, std::io::stdin().lock()))
}
