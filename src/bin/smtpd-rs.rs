//! smtpd-rs: one SMTP server session on fd 0/1, log on fd 2. See smtpd-rs(8).

use smtpd::die;
use smtpd::io::serve::{serve, ProcessHooks};
use smtpd::io::ucspi::{peer_info, Conn};
use smtpd::queue_client::QueueClient;
use smtpd::smtp::reply;
use smtpd::smtpd_config::Config;
use std::io::Write;

const PROG: &str = "smtpd-rs";

fn main() {
    smtpd::sys::default_sigchld();
    let cfg = Config::from_env().unwrap_or_else(|e| {
        // Tell the client to come back later rather than leave it hanging.
        let _ = std::io::stdout().write_all(reply::CONFIG_ERROR.as_bytes());
        die::fatal(PROG, die::EXIT_TEMP, e)
    });
    let mut conn = Conn::stdio(cfg.timeout)
        .unwrap_or_else(|e| die::fatal(PROG, die::EXIT_TEMP, format_args!("unable to use fd 0 and 1: {e}")));
    let peer = peer_info(&|k| std::env::var(k).ok(), conn.read_fd());
    let mut queue = QueueClient::new(&cfg.queue);
    let mut hooks = ProcessHooks::new(&cfg);
    let end = serve(&mut conn, &cfg, peer, &mut queue, &mut hooks);
    queue.close();
    std::process::exit(end.exit_code())
}
