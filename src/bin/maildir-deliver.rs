//! maildir-deliver: deliver one message into local Maildirs, report as
//! qmail-remote. See man/maildir-deliver.8; the work is in smtpd::deliver.
use smtpd::deliver::run;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;

// Nothing is ever written to fd 2: qmail-rspawn makes it a copy of fd 1,
// so a diagnostic there would corrupt the report. The report says it all.

fn main() {
    let args: Vec<Vec<u8>> = std::env::args_os().skip(1).map(|a| a.into_vec()).collect();
    // A write past RLIMIT_FSIZE fails with EFBIG (a temporary failure, as
    // a full disk) instead of killing us with SIGXFSZ.
    let _ = smtpd::sys::ignore_sigxfsz();
    if let Some(md) = std::env::var_os(run::ONE) {
        // The child that writes one message as the Maildir's owner.
        let (code, text) = run::one(std::path::Path::new(&md), &args);
        let _ = std::io::stdout().write_all(format!("{text}\n").as_bytes());
        std::process::exit(code);
    }
    let out = run::run(&args);
    // qmail-remote exits 0 whatever happened: the report says it all.
    let mut so = std::io::stdout().lock();
    if so.write_all(&out).and_then(|_| so.flush()).is_err() {
        std::process::exit(smtpd::die::EXIT_TEMP);
    }
}
