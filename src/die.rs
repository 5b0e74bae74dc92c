//! Diagnostics on stderr, one line each, and the suite's common exit codes.
//! `prog: fatal: ...` then exit; `prog: warning: ...` and `prog: info: ...` go on.

use std::fmt::Display;
use std::io::Write;

/// Done.
pub const EXIT_OK: i32 = 0;
/// Usage error or permanent failure.
pub const EXIT_PERM: i32 = 100;
/// Temporary failure: try again later.
pub const EXIT_TEMP: i32 = 111;

/// Print `prog: fatal: msg` on stderr and exit with `code`.
pub fn fatal(prog: &str, code: i32, msg: impl Display) -> ! {
    line(prog, "fatal", msg);
    std::process::exit(code)
}

/// Exit with `code` at once, as a process that has nothing left to tidy
/// does: stdout flushed, then _exit(2). The runtime's own tear-down (its
/// signal stack disabled and unmapped, with the TLB flush an unmap costs)
/// is two system calls per session for what the kernel's exit frees anyway.
pub fn quick_exit(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    crate::sys::exit_now(code)
}

/// Print `prog: warning: msg` on stderr.
pub fn warn(prog: &str, msg: impl Display) {
    line(prog, "warning", msg);
}

/// Print `prog: info: msg` on stderr.
pub fn info(prog: &str, msg: impl Display) {
    line(prog, "info", msg);
}

/// One whole line in one write, so that lines of concurrent processes
/// sharing a log pipe do not interleave. Errors writing stderr are ignored:
/// there is nowhere else to report them.
fn line(prog: &str, level: &str, msg: impl Display) {
    let s = format!("{prog}: {level}: {msg}\n");
    let _ = std::io::stderr().lock().write_all(s.as_bytes());
}
