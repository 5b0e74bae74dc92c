//! metrics-http: answer one HTTP GET of the metrics path on fd 0/1 with the
//! metrics files named as arguments, merged. See man/metrics-http.8.

use smtpd::die;
use smtpd::metrics::serve::{parse_args, run, PROG};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = parse_args(&args).unwrap_or_else(|e| die::fatal(PROG, die::EXIT_PERM, e));
    std::process::exit(run(&opts))
}
